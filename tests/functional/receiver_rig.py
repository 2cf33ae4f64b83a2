"""The receiver under test, shared by the webhook and security tests: the real FastAPI
app served by uvicorn on loopback, the embedded launcher running the real rollback flow
on the session Prefect server, against the moto sandbox; secrets generated per test.

The fixtures at the end (``world``, ``receiver``, ``local_http``, ``signer``,
``sns_receiver``) reach the tests through ``tests/functional/conftest.py`` and
``tests/security/conftest.py``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deployments.cli.serve import background_server
from deployments.receiver import create_app
from deployments.signatures import SnsVerifier
from devstack import sandbox
from flows.launch import EmbeddedLauncher
from rollback import aws
from rollback.config import Config, load_config
from rollback.runtime import Runtime
from tests.unit.webhooks.helpers import SnsSigner, github_headers, new_secret

REPO = "octo-org/octo-repo"
TOPIC = "arn:aws:sns:us-east-1:123456789012:alarms"


def write_config(path: Path, **extra: Any) -> Path:
    data = sandbox.demo_config(path, poll_interval_s=0.05)
    for env in data["environments"].values():
        env["cooldown_s"] = 900
    data["webhooks"] = {
        "github": {
            "secret_env": "TEST_GITHUB_SECRET",
            "rules": [
                {"repository": REPO, "workflow": "test", "environment": "staging", "service": "api"}
            ],
        },
        "api_token_env": "TEST_API_TOKEN",
        "cloudwatch": {"token_env": "TEST_ALARM_TOKEN"},
        "sns": {"topic_arns": [TOPIC]},
        "mode": "embedded",
    }
    data["alarms"] = {
        "api-5xx": {"environment": "staging", "service": "api"},
        "Test alert": {"environment": "staging", "service": "api"},
    }
    data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def edit_config(path: Path, change: Any) -> Config:
    """Apply ``change(data)`` to the YAML at ``path`` and load it."""
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


def seed_world(config_path: Path) -> Config:
    sandbox.seed()
    config = load_config(config_path)
    rt = Runtime(config)
    rt.ensure_tables()
    for env in ("prod", "staging"):
        rt.history.import_many(sandbox.demo_history(env, "api"))
    return config


def running(service: str = "api-staging") -> str:
    ecs = aws.client("ecs")
    out = ecs.describe_services(cluster=sandbox.CLUSTER, services=[service])
    return str(out["services"][0]["taskDefinition"].rsplit("/", 1)[-1])


def audit_count(config: Config, env: str = "staging", service: str = "api") -> int:
    return len(Runtime(config).audit.recent(env, service))


class Receiver:
    """The app under test with its launcher and generated secrets (one per entrance)."""

    def __init__(
        self,
        config: Config,
        verifier: SnsVerifier | None = None,
        environ: Mapping[str, str] | None = None,
        platform: Any = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.github_secret = new_secret()
        self.token = new_secret()
        self.alarm_token = new_secret()
        self.config = config
        self.launcher = EmbeddedLauncher(config)
        self.environ = {
            "TEST_GITHUB_SECRET": self.github_secret,
            "TEST_API_TOKEN": self.token,
            "TEST_ALARM_TOKEN": self.alarm_token,
        } | dict(environ or {})
        self.app = create_app(
            config,
            self.launcher,
            runtime=runtime,
            sns_verifier=verifier,
            environ=self.environ,
            platform=platform,
        )
        self.texts: list[str] = []
        self._server = background_server(self.app)
        self.url = self._server.__enter__()
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def close(self) -> None:
        self.client.close()
        self._server.__exit__(None, None, None)

    def stop(self) -> None:
        """Wait for the rollbacks, then stop the server and the launcher."""
        self.wait()
        self.close()
        self.launcher.close()

    def post(self, path: str, **kwargs: Any) -> Any:
        resp = self.client.post(path, **kwargs)
        self.texts.append(resp.text)
        return resp

    def github(
        self, payload: Any, secret: str | None = "", delivery: str | None = None, **kw: Any
    ) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        key = self.github_secret if secret == "" else secret
        return self.post(
            "/webhooks/github", content=body, headers=github_headers(key, body, delivery, **kw)
        )

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def alarm_bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.alarm_token}"}

    def wait(self) -> None:
        assert self.launcher.wait_idle(60)

    def assert_no_secret(self, caplog: pytest.LogCaptureFixture) -> None:
        for text in [*self.texts, caplog.text]:
            for secret in (self.github_secret, self.token, self.alarm_token):
                assert secret not in text


class LocalHttp:
    """A tiny HTTP server on loopback: serves ``files``, answers ``status`` elsewhere,
    waits ``stall_s`` on paths starting with ``/stall``, and records every path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status = 200
        self.stall_s = 3.0
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                outer.hits.append(self.path)
                path = self.path.split("?")[0]
                if path.startswith("/stall"):
                    threading.Event().wait(outer.stall_s)
                    path = "/cert.pem"
                elif path.startswith("/certs/"):
                    path = "/cert.pem"  # unique URLs, one certificate
                body = outer.files.get(path, b"ok")
                code = 200 if path in outer.files else outer.status
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    return  # the client gave up (timeout)

            def log_message(self, *args: Any) -> None:
                return

        ThreadingHTTPServer.request_queue_size = 256
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def local_verifier(local: LocalHttp, region: str = "us-east-1") -> SnsVerifier:
    """A verifier that fetches certificates from ``local`` (instead of SNS hosts) and
    reads their region as ``region``."""
    return SnsVerifier(
        url_allowed=lambda url: url.startswith(local.url + "/"), region_of=lambda url: region
    )


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def world(aws: str, prefect_server: None, tmp_path: Path) -> Config:
    """The moto sandbox seeded (staging/api runs the bad api:4) and its config."""
    return seed_world(write_config(tmp_path / "config.yaml"))


@pytest.fixture
def receiver(world: Config) -> Iterator[Receiver]:
    """The receiver over ``world``; its rollbacks are waited for before it stops."""
    rx = Receiver(world)
    yield rx
    rx.stop()


@pytest.fixture
def local_http() -> Iterator[LocalHttp]:
    server = LocalHttp()
    yield server
    server.close()


@pytest.fixture
def signer(local_http: LocalHttp) -> SnsSigner:
    """An SNS signer whose certificate ``local_http`` serves at ``/cert.pem``."""
    signer = SnsSigner()
    local_http.files["/cert.pem"] = signer.cert_pem
    return signer


@pytest.fixture
def sns_receiver(world: Config, local_http: LocalHttp) -> Iterator[Receiver]:
    """The receiver over ``world``, fetching SNS certificates from ``local_http``."""
    rx = Receiver(world, local_verifier(local_http))
    yield rx
    rx.stop()
