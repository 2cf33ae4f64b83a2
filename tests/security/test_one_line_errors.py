"""No traceback reaches a user: each fault the CLI meets ends in one line on stderr and
the documented exit code (2 fix the input, 1 failed), through the real ``rollback``
command against the moto server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import cli_env
from tests.fakes.flow_config import write_config
from tests.fakes.http_sink import http_sink
from tests.functional.world import make_world, service_task_definition

ROLLBACK = str(Path(sys.executable).with_name("rollback"))


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROLLBACK, *args], capture_output=True, text=True, timeout=150, env=cli_env(**env)
    )


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line; fails (showing everything) on a traceback or more lines."""
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def refusing_proxy(
    upstream: str, operation: str, code: str = "AccessDeniedException"
) -> Iterator[str]:
    """In front of moto: answers one operation (by X-Amz-Target suffix) with a 400 AWS
    error, forwards every other request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            target = self.headers.get("X-Amz-Target", "")
            if target.endswith("." + operation):
                payload = json.dumps(
                    {"__type": code, "message": f"not authorized to perform {operation}"}
                ).encode()
                self._answer(400, payload, {"Content-Type": "application/x-amz-json-1.1"})
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            req = urllib.request.Request(upstream + self.path, data=body, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    status, data, rheaders = resp.status, resp.read(), resp.headers
            except urllib.error.HTTPError as exc:
                status, data, rheaders = exc.code, exc.read(), exc.headers
            keep = {
                k: v
                for k, v in rheaders.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            self._answer(status, data, keep)

        def _answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def without_tables(config: Path) -> Path:
    """The same world, configured not to create tables and naming tables that are not there."""
    data = yaml.safe_load(config.read_text())
    data["stores"].update(
        create_tables=False, audit_table="missing-audit", history_table="missing-history"
    )
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def history(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``rollback history`` of staging with ``config``."""
    return cli("history", "--config", str(config), "--env", "staging", **env)


def run(config: Path, prefect_api_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``rollback run`` of staging/api with ``config``, flows on the test Prefect server."""
    args = ("--env", "staging", "--service", "api", "--reason", "test")
    return cli("run", "--config", str(config), *args, PREFECT_API_URL=prefect_api_url, **env)


# -- missing table (create_tables: false): fix the setup, exit 2 ------------------------
def test_missing_table_history_is_one_line_exit_2(aws: str, tmp_path: Path) -> None:
    config = without_tables(make_world(tmp_path))
    out = history(config)
    assert out.returncode == 2, out.stderr
    line = one_line(out)
    assert "missing-" in line and "create_tables" in line


def test_missing_table_run_is_one_line_exit_2(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    config = without_tables(make_world(tmp_path))
    out = run(config, prefect_api_url)
    assert out.returncode == 2, out.stderr
    line = one_line(out)
    assert "missing-" in line and "create_tables" in line
    assert service_task_definition("api-staging") == "api:4"  # nothing touched


# -- AWS unreachable: exit 1 ------------------------------------------------------------
def test_unreachable_aws_history_is_one_line_exit_1(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    dead = f"http://127.0.0.1:{closed_port()}"
    out = history(config, AWS_ENDPOINT_URL=dead)
    assert out.returncode == 1, out.stderr
    assert "127.0.0.1" in one_line(out) or "unreachable" in one_line(out).lower()


def test_unreachable_aws_run_is_one_line_exit_1(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    config = make_world(tmp_path)
    dead = f"http://127.0.0.1:{closed_port()}"
    out = run(config, prefect_api_url, AWS_ENDPOINT_URL=dead)
    assert out.returncode == 1, out.stdout + out.stderr
    one_line(out)


# -- Slack down: one warning, the outcome unchanged -------------------------------------
def with_slack(data: dict[str, Any]) -> None:
    data["notifications"] = {"slack": {"webhook_env": "TEST_SLACK_URL"}}


def test_slack_down_is_one_warning_and_the_rollback_succeeds(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    config = make_world(tmp_path, edit=with_slack)
    with http_sink(status=503) as sink:
        out = run(config, prefect_api_url, TEST_SLACK_URL=sink.url + "/services/T0/B0/secretpart")
    assert out.returncode == 0, out.stderr
    assert "rollback succeeded" in out.stdout.lower()
    line = one_line(out)
    assert "Slack" in line and "503" in line
    assert "secretpart" not in out.stderr + out.stdout
    assert service_task_definition("api-staging") == "api:3"


def test_slack_unreachable_is_one_warning_and_the_rollback_succeeds(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    config = make_world(tmp_path, edit=with_slack)
    out = run(
        config,
        prefect_api_url,
        TEST_SLACK_URL=f"http://127.0.0.1:{closed_port()}/services/T0/B0/secretpart",
    )
    assert out.returncode == 0, out.stderr
    line = one_line(out)
    assert "Slack" in line and "secretpart" not in line


# -- AWS API errors: one line naming the call -------------------------------------------
def test_dynamodb_access_denied_names_the_call(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    with refusing_proxy(aws, "Query") as proxy:
        out = history(config, AWS_ENDPOINT_URL_DYNAMODB=proxy)
    assert out.returncode == 1, out.stderr
    line = one_line(out)
    assert "Query" in line and "AccessDenied" in line


def test_ecs_update_service_denied_fails_with_one_line_naming_the_call(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    config = make_world(tmp_path)
    with refusing_proxy(aws, "UpdateService") as proxy:
        out = run(config, prefect_api_url, AWS_ENDPOINT_URL_ECS=proxy)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert len([ln for ln in out.stderr.splitlines() if ln.strip()]) <= 1, out.stderr
    assert "UpdateService" in out.stdout + out.stderr
    assert service_task_definition("api-staging") == "api:4"


def test_codedeploy_api_error_is_one_line_naming_the_call(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    config = write_config(
        tmp_path / "rollback.yaml",
        "web",
        {"type": "codedeploy", "application": "web", "deployment_group": "web-prod"},
    )
    with refusing_proxy(aws, "ListDeployments") as proxy:
        out = cli(
            "run",
            "--config",
            str(config),
            "--env",
            "staging",
            "--service",
            "web",
            PREFECT_API_URL=prefect_api_url,
            AWS_ENDPOINT_URL_CODEDEPLOY=proxy,
        )
    assert out.returncode in (1, 3), out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert len([ln for ln in out.stderr.splitlines() if ln.strip()]) <= 1, out.stderr
    assert "ListDeployments" in out.stdout + out.stderr


def test_unknown_audit_id_is_one_line_exit_2(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path, history=False)
    out = cli("audit", "--config", str(config), "no\nsuch-id")
    assert out.returncode == 2
    assert "no such-id" not in one_line(out)  # the id is shown escaped, on one line
