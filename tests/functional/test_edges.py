"""Edges a user meets: a health URL that fails verification, a missing table, and the
sandbox command that keeps a seeded AWS stand-in up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.sandbox import free_port
from flows.rollback_flow import rollback_flow
from rollback.config import load_config
from rollback.errors import StoreError
from rollback.health import consecutive_ok
from rollback.models import RollbackRequest
from rollback.runtime import Runtime
from tests.conftest import cli_env
from tests.functional.world import make_world, service_task_definition
from tests.servers import answers


@contextmanager
def health_server(statuses: list[int]) -> Iterator[str]:
    """Answers GET with the given statuses in turn (the last one repeats)."""
    answers = list(statuses)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            status = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()


def test_consecutive_ok_needs_an_unbroken_streak() -> None:
    with health_server([200, 500, 200, 200, 200]) as url:
        assert consecutive_ok(url, 3, interval_s=0.01).passed
    with health_server([200, 500]) as url:
        check = consecutive_ok(url, 2, interval_s=0.01, max_attempts=4)
        assert not check.passed and "HTTP 500" in check.detail


@pytest.mark.usefixtures("prefect_server")
def test_failing_health_url_fails_the_verification(aws: str, tmp_path: Path) -> None:
    with health_server([503]) as url:

        def unhealthy(data: dict[str, Any]) -> None:
            svc = data["environments"]["staging"]["services"]["api"]
            svc.update(health_url=url, health_checks=2)

        config = make_world(tmp_path, edit=unhealthy)
        result = rollback_flow(
            request=RollbackRequest(environment="staging", service="api"), config_path=str(config)
        )
    assert result["status"] == "failed"
    assert "verification: health" in result["reason"] and "HTTP 503" in result["reason"]
    assert service_task_definition("api-staging") == "api:3"  # switched, then not verified


def test_missing_table_is_a_clear_error_naming_it(aws: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "stores": {"audit_table": "no-such-audit", "create_tables": False},
                "environments": {
                    "prod": {"services": {"api": {"type": "ecs", "cluster": "c", "service": "s"}}}
                },
            }
        )
    )
    with pytest.raises(StoreError, match="'no-such-audit' does not exist.*create_tables"):
        Runtime(load_config(path)).ensure_tables()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job starts


@pytest.mark.parametrize(
    "stop", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C, started as a background job", "kill"]
)
def test_sandbox_command_serves_a_seeded_world_until_interrupted(tmp_path: Path, stop: int) -> None:
    port, config = free_port(), tmp_path / "sandbox.yaml"
    rollback = str(Path(sys.executable).with_name("rollback"))
    env = cli_env()
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.Popen(
        [rollback, "sandbox", "--port", str(port), "--config-out", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not any("Ctrl-C" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, lines
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in text
        # The printed variables and the written config work from another process.
        out = subprocess.run(
            [rollback, "history", "--config", str(config), "--env", "prod", "--json"],
            env={**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert [r["version"] for r in json.loads(out.stdout)][:2] == ["api:4", "api:3"]
    finally:
        # WHEN it is stopped THEN it ends, and its moto server with it
        os.kill(proc.pid, stop)
        assert proc.wait(timeout=20) == 0
        assert "sandbox stopped" in proc.stdout.read()
        assert not answers(f"http://127.0.0.1:{port}/moto-api/")
