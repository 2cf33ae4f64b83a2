"""The migration gate in the real flow: schema data in the history, RDS snapshots in
the moto server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.rollback_flow import rollback_flow
from rollback import aws as aws_api
from rollback.config import load_config
from rollback.models import DeploymentRecord, RollbackRequest, utcnow
from rollback.runtime import Runtime
from tests.functional.world import make_world, service_task_definition

pytestmark = pytest.mark.usefixtures("prefect_server")


def schema_history(config: Path) -> None:
    now = utcnow()
    rt = Runtime(load_config(config))
    for n, low, high, schema, status in (
        (2, 1, 2, 2, "success"),
        (3, 2, 3, 3, "success"),
        (4, 3, 4, 4, "failed"),
    ):
        rt.history.append(
            DeploymentRecord(
                environment="staging",
                service="api",
                version=f"api:{n}",
                status=status,
                started_at=now - timedelta(minutes=30 - n),
                schema_version=schema,
                min_schema_version=low,
                max_schema_version=high,
            )
        )


def run(config: Path, **kw: Any) -> dict[str, Any]:
    return rollback_flow(
        request=RollbackRequest(environment="staging", service="api", **kw),
        config_path=str(config),
    )


def test_schema_gate_refuses_and_names_what_is_safe(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path, history=False)
    schema_history(config)
    result = run(config)
    assert result["status"] == "refused"
    gate = next(c for c in result["checks"] if c["name"] == "schema_compatible")
    assert not gate["passed"] and "database is at 4" in gate["detail"]
    assert service_task_definition("api-staging") == "api:4"


def test_snapshot_required_and_found(aws: str, tmp_path: Path) -> None:
    def snap(data: dict[str, Any]) -> None:
        data["environments"]["staging"]["services"]["api"]["rds_snapshot_prefix"] = "pre-rollback-"

    config = make_world(tmp_path, edit=snap)
    refused = run(config)
    assert refused["status"] == "refused"
    assert "no RDS snapshot named pre-rollback-*" in refused["reason"]

    rds = aws_api.client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier="app-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
        AllocatedStorage=20,
    )
    rds.create_db_snapshot(DBInstanceIdentifier="app-db", DBSnapshotIdentifier="pre-rollback-1")
    done = run(config)
    assert done["status"] == "succeeded", done
    assert next(c for c in done["checks"] if c["name"] == "db_snapshot")["passed"]
