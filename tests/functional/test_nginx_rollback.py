"""nginx blue/green end to end: a real nginx in the foreground on 127.0.0.1 in front of
two small HTTP backends, switched by the rollback flow under continuous traffic."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.sandbox import stop_process
from flows.rollback_flow import rollback_flow
from rollback.config import load_config
from rollback.models import DeploymentRecord, RollbackRequest, utcnow
from rollback.runtime import Runtime
from tests.servers import free_port, wait_http

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("prefect_server"),
    pytest.mark.skipif(NGINX is None, reason="nginx cannot be found: run `make tools`"),
]


# -- backends and nginx ------------------------------------------------------------------
def backend(body: str, status: int = 200) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 answering every GET with ``status`` and ``body``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@dataclass
class Site:
    root: Path
    front: str
    config: Path
    link: Path
    servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def get(self) -> str:
        with urllib.request.urlopen(self.front, timeout=3) as resp:
            return str(resp.read().decode())

    def active(self) -> str:
        return os.readlink(self.link)


NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {root}/upstreams/active.conf;
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://app; }}
    }}
}}
"""


@pytest.fixture
def site(aws: str, tmp_path: Path) -> Iterator[Site]:
    """blue (active) and green healthy, red unhealthy, broken failing `nginx -t`."""
    servers = {"blue": backend("blue"), "green": backend("green"), "red": backend("red", 503)}
    ups = tmp_path / "upstreams"
    (tmp_path / "tmp").mkdir()
    ups.mkdir()
    for color, server in servers.items():
        port = server.server_address[1]
        (ups / f"{color}.conf").write_text(f"upstream app {{ server 127.0.0.1:{port}; }}\n")
    green_port = servers["green"].server_address[1]
    (ups / "broken.conf").write_text(f"upstream app {{ server 127.0.0.1:{green_port}; bogus; }}\n")
    os.symlink("blue.conf", ups / "active.conf")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(user=user, root=tmp_path, port=port))

    colors = {
        color: {
            "upstream_file": f"{color}.conf",
            "health_url": f"http://127.0.0.1:{servers[color].server_address[1]}/health",
        }
        for color in servers
    }
    colors["broken"] = {"upstream_file": "broken.conf", "health_url": colors["green"]["health_url"]}
    front = f"http://127.0.0.1:{port}/"
    config = tmp_path / "rollback.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "stores": {"create_tables": True},
                "environments": {
                    "prod": {
                        "services": {
                            "web": {
                                "type": "nginx",
                                "conf": str(conf),
                                "upstreams_dir": str(ups),
                                "active_link": "active.conf",
                                "colors": colors,
                                "nginx_bin": NGINX,
                                "health_url": front,
                                "health_checks": 2,
                                "health_interval_s": 0.05,
                            }
                        }
                    }
                },
            }
        )
    )
    rt = Runtime(load_config(config))
    rt.ensure_tables()
    # What each color last carried: blue (live) was deployed last, green before it. The
    # history gives colors their order (target_older): a rollback only goes back.
    start = utcnow() - timedelta(hours=5)
    for n, color in enumerate(("red", "broken", "green", "blue")):
        rt.history.append(
            DeploymentRecord("prod", "web", color, "success", started_at=start + timedelta(hours=n))
        )
    proc = subprocess.Popen(
        [str(NGINX), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(front, timeout=10)
        yield Site(tmp_path, front, config, ups / "active.conf", list(servers.values()))
    finally:
        stop_process(proc)
        for server in servers.values():
            server.shutdown()
            server.server_close()


class Traffic:
    """Requests to the site in a loop (bounded) until stopped; counts every answer."""

    def __init__(self, site: Site, max_requests: int = 20_000) -> None:
        self.site, self.max = site, max_requests
        self.bodies: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        for _ in range(self.max):
            if self._stop.is_set():
                return
            try:
                self.bodies.append(self.site.get())
            except OSError as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> Traffic:
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # keep the traffic going a little after the switch
        self._stop.set()
        self._thread.join(timeout=10)


def run(site: Site, **fields: Any) -> dict[str, Any]:
    request = RollbackRequest(environment="prod", service="web", requested_by="tester", **fields)
    return rollback_flow(request=request, config_path=str(site.config))


# -- tests -------------------------------------------------------------------------------
def test_switch_under_traffic_loses_no_request(site: Site) -> None:
    # GIVEN blue is live and serving, and the history says green was the last good deploy
    # before it (see the fixture)
    assert site.get() == "blue"
    # WHEN the rollback runs while a client keeps requesting the site
    with Traffic(site) as traffic:
        result = run(site, reason="blue misbehaves")
    # THEN nginx serves green, and not one request failed during the switch
    assert result["status"] == "succeeded", result
    assert (result["from_version"], result["to_version"]) == ("blue", "green")
    assert site.active() == "green.conf"
    assert os.readlink(site.link.with_name("active.conf.previous")) == "blue.conf"
    assert site.get() == "green"
    assert traffic.failures == []
    assert len(traffic.bodies) > 20
    assert traffic.bodies[0] == "blue" and traffic.bodies[-1] == "green"


def test_unhealthy_color_is_refused_and_nothing_changes(site: Site) -> None:
    # GIVEN the red backends answer 503
    # WHEN a rollback to red is requested
    result = run(site, to="red", reason="try red")
    # THEN it is refused by the health check, and blue still serves
    assert result["status"] == "refused", result
    failed = {c["name"]: c["detail"] for c in result["checks"] if not c["passed"]}
    assert "target_color_health" in failed and "HTTP 503" in failed["target_color_health"]
    assert site.active() == "blue.conf"
    assert site.get() == "blue"


def test_config_failing_nginx_t_restores_the_link(site: Site) -> None:
    # GIVEN a color whose backends are healthy but whose upstream file is invalid
    # WHEN a rollback to it runs
    result = run(site, to="broken", reason="try broken")
    # THEN the rollback failed at `nginx -t`, the link is back on blue and blue serves
    assert result["status"] == "failed", result
    assert "nginx -t" in result["reason"] and "restored" in result["reason"]
    assert site.active() == "blue.conf"
    assert site.get() == "blue"
