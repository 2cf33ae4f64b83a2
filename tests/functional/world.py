"""The demo world for functional tests: a seeded moto server and a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devstack.sandbox import CLUSTER, demo_config, demo_history, seed
from rollback import aws
from rollback.config import load_config
from rollback.runtime import Runtime


def make_world(
    tmp_path: Path,
    history: bool = True,
    edit: Any = None,
    services: dict[str, str] | None = None,
) -> Path:
    """Seed ECS/ECR (prod/api and staging/api on api:4, the bad deploy), create the
    stores, load the demo history; return the config path. ``edit(data)`` may change the
    config dict before it is written."""
    path = tmp_path / "config.yaml"
    data = demo_config(path, poll_interval_s=0.05)
    data["stores"]["lock_lease_s"] = 5
    if edit:
        edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    seed(services=services)
    rt = Runtime(load_config(path))
    rt.ensure_tables()
    if history:
        for env in ("prod", "staging"):
            rt.history.import_many(demo_history(env, "api"))
    return path


def service_task_definition(service: str = "api") -> str:
    """The family:revision the ECS service runs now, read from the AWS API."""
    svc = aws.client("ecs").describe_services(cluster=CLUSTER, services=[service])["services"][0]
    return str(svc["taskDefinition"].rsplit("/", 1)[-1])


def audit_records(config_path: Path, environment: str, service: str) -> list[Any]:
    rt = Runtime(load_config(config_path))
    return rt.audit.recent(environment, service)
