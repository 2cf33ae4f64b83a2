"""A local AWS sandbox: a moto server on 127.0.0.1 seeded with a demo ECS service whose
latest deploy (v4) is bad, ECR images, the stores and a short deployment history."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from rollback.models import DeploymentRecord, utcnow

ACCOUNT = "123456789012"
REGION = "us-east-1"
CLUSTER = "demo-cluster"
SANDBOX_ENV = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_DEFAULT_REGION": REGION,
}


def image(repo: str, tag: str) -> str:
    return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repo}:{tag}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(port: int | None = None, running_tasks: int = 1) -> Iterator[str]:
    """Run ``moto_server`` on 127.0.0.1 until the context ends; yields its URL."""
    port = port or free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    env = {**os.environ, "MOTO_ECS_SERVICE_RUNNING": str(running_tasks)}
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on port {port}") from None
                time.sleep(0.05)
        yield url
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 5) -> None:
    """Terminate a child process; kill it if it has not ended after ``grace_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def demo_config(config_path: Path, poll_interval_s: float = 0.2) -> dict[str, Any]:
    data: dict[str, Any] = {
        "stores": {
            "audit_table": "rollback-audit-log",
            "history_table": "deployment-history",
            "create_tables": True,
        },
        "environments": {
            "prod": {
                "protected": True,
                "confirmation": "ROLLBACK-PROD",
                "auto_rollback": True,
                "services": {
                    "api": {
                        "type": "ecs",
                        "cluster": CLUSTER,
                        "service": "api",
                        "ecr_repository": "api",
                        "stabilize_timeout_s": 60,
                        "poll_interval_s": poll_interval_s,
                    },
                    "worker": {
                        "type": "lambda",
                        "function": "demo-worker",
                        "alias": "live",
                        "stabilize_timeout_s": 30,
                        "poll_interval_s": poll_interval_s,
                    },
                },
            },
            "staging": {
                "protected": False,
                "auto_rollback": True,
                "services": {
                    "api": {
                        "type": "ecs",
                        "cluster": CLUSTER,
                        "service": "api-staging",
                        "ecr_repository": "api",
                        "stabilize_timeout_s": 60,
                        "poll_interval_s": poll_interval_s,
                    }
                },
            },
        },
        # Next to the config, absolute: a worker runs the report flow from the repository
        # root, and the sandbox's reports belong to the sandbox (not to ./reports-out).
        "reports": {"out_dir": str(config_path.parent.resolve() / "reports")},
    }
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return data


def seed(clients: Any = None, services: dict[str, str] | None = None) -> None:
    """Create the demo world through the AWS API (the moto server behind AWS_ENDPOINT_URL).

    ``services`` maps ECS service name to the task family it runs (default: api and
    api-staging on family ``api``), each on v4, the bad deploy.
    """
    from rollback import aws

    ecs = aws.client("ecs")
    ecr = aws.client("ecr")
    services = services or {"api": "api", "api-staging": "api"}
    ecs.create_cluster(clusterName=CLUSTER)
    with suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName="api")
    for family in sorted(set(services.values())):
        for n in range(1, 5):
            ecs.register_task_definition(
                family=family,
                containerDefinitions=[
                    {
                        "name": "app",
                        "image": image("api", f"v{n}"),
                        "memory": 256,
                        "essential": True,
                    },
                    {"name": "sidecar", "image": "public.ecr.aws/nginx/nginx:1.27", "memory": 64},
                ],
            )
    for n in range(1, 5):
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": f"sha256:{n:064d}"},
            "layers": [],
        }
        ecr.put_image(repositoryName="api", imageManifest=json.dumps(manifest), imageTag=f"v{n}")
    for name, family in services.items():
        ecs.create_service(
            cluster=CLUSTER, serviceName=name, taskDefinition=f"{family}:4", desiredCount=1
        )


def demo_history(environment: str, service: str, family: str = "api") -> list[DeploymentRecord]:
    """v1..v3 deployed fine over the last days; v4, an hour ago, failed."""
    now = utcnow()
    records = []
    for n, hours_ago, status in (
        (1, 72, "success"),
        (2, 48, "success"),
        (3, 24, "success"),
        (4, 1, "failed"),
    ):
        start = now - timedelta(hours=hours_ago)
        records.append(
            DeploymentRecord(
                environment=environment,
                service=service,
                version=f"{family}:{n}",
                status=status,  # type: ignore[arg-type]
                image_tag=f"v{n}",
                commit_sha=f"{n:040x}",
                committed_at=start - timedelta(hours=2),
                started_at=start,
                finished_at=start + timedelta(minutes=4),
            )
        )
    return records


def seed_all(config_path: Path) -> None:
    """Seed AWS, write the config, create the stores and load the demo history."""
    from devstack.sandbox_lambda import seed_lambda
    from rollback.config import load_config
    from rollback.runtime import Runtime

    demo_config(config_path)
    seed()
    seed_lambda("demo-worker")  # versions 1..3, alias live on 3 (the bad one)
    rt = Runtime(load_config(config_path))
    rt.ensure_tables()
    for env in ("prod", "staging"):
        rt.history.import_many(demo_history(env, "api"))
