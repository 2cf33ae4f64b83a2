"""The report's named findings and the history API, end to end: a generated history of a
few thousand records (3 environments x 6 services over 60 days) loaded with
``rollback history import``, rollback attempts in the audit log, ``rollback report`` run
as a subprocess against the moto server, and the receiver's history/stats paths over
HTTP. Planted in the history: a failure never restored, a service that fails far more
often than the others (fixed forward), refused attempts with their failed check, a
service idle for 40 days."""

from __future__ import annotations

import json
import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback.config import load_config
from rollback.models import AuditRecord, CheckResult, Status
from rollback.stores.audit import AuditStore
from tests.conftest import cli_env
from tests.functional.receiver_rig import Receiver
from tests.servers import reset_moto

ROOT = Path(__file__).resolve().parents[2]
CLI = str(ROOT / ".venv" / "bin" / "rollback")
ENVIRONMENTS = ("prod", "staging", "dev")
SERVICES = ("api", "web", "search", "billing", "auth", "legacy")
# "now" of the report: recent (the API's stats read up to the real now), on the hour
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
NOW_ISO = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
STAMP = NOW.strftime("%Y%m%d-%H%M%S")
UNRESTORED_ID = "prod-search-unrestored"


def iso(ts: datetime) -> str:
    return ts.isoformat()


def history_lines() -> list[dict[str, Any]]:
    """Deploys every ~10 hours for 60 days per environment and service (3% failed, each
    failure fixed forward by the next deploy); staging/billing fails 40% of the time;
    prod/search's last deploy (search:29) failed 48 hours ago and nothing followed;
    prod/legacy has not been deployed for 40 days."""
    rng = random.Random(13)
    lines: list[dict[str, Any]] = []
    for env in ENVIRONMENTS:
        for service in SERVICES:
            end = NOW - timedelta(hours=50)
            if (env, service) == ("prod", "legacy"):
                end = NOW - timedelta(days=40)
            fail_rate = 0.4 if (env, service) == ("staging", "billing") else 0.03
            when, n = NOW - timedelta(days=60), 0
            while when < end:
                n += 1
                step = timedelta(hours=rng.uniform(7, 13))
                failed = rng.random() < fail_rate and when + step < end  # the last one holds
                lines.append(
                    {
                        "environment": env,
                        "service": service,
                        "version": f"{service}:1.{n}",
                        "status": "failed" if failed else "success",
                        "started_at": iso(when - timedelta(seconds=rng.randint(60, 600))),
                        "finished_at": iso(when),
                        "committed_at": iso(when - timedelta(hours=rng.uniform(1, 30))),
                        "record_id": f"{env}-{service}-{n}",
                    }
                )
                when += step
    lines.append(
        {
            "environment": "prod",
            "service": "search",
            "version": "search:29",
            "status": "failed",
            "started_at": iso(NOW - timedelta(hours=48, minutes=5)),
            "finished_at": iso(NOW - timedelta(hours=48)),
            "record_id": UNRESTORED_ID,
        }
    )
    # a staging rollback restoring a failed api deploy (an alarm), a fix-forward elsewhere
    lines += [
        {
            "environment": "staging",
            "service": "api",
            "version": "api:900",
            "status": "failed",
            "finished_at": iso(NOW - timedelta(hours=30)),
            "started_at": iso(NOW - timedelta(hours=30, minutes=4)),
            "record_id": "staging-api-900",
        },
        {
            "environment": "staging",
            "service": "api",
            "version": "api:899",
            "status": "success",
            "kind": "rollback",
            "from_version": "api:900",
            "trigger": "alarm",
            "finished_at": iso(NOW - timedelta(hours=29)),
            "started_at": iso(NOW - timedelta(hours=29, minutes=2)),
            "record_id": "a-staging-api-rb",
        },
    ]
    return lines


def write_config(tmp_path: Path) -> Path:
    service = {"type": "ecs", "cluster": "c", "service": "s"}
    config = {
        "stores": {"history_table": "hist", "audit_table": "audit", "create_tables": True},
        "environments": {e: {"services": dict.fromkeys(SERVICES, service)} for e in ENVIRONMENTS},
        "reports": {"out_dir": str(tmp_path / "default-out"), "timezone": "Europe/Paris"},
        "webhooks": {"api_token_env": "TEST_API_TOKEN", "mode": "embedded"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def attempt(
    audit_id: str, env: str, service: str, status: Status, hours_ago: float, **kw: Any
) -> AuditRecord:
    requested = NOW - timedelta(hours=hours_ago)
    done = requested + timedelta(seconds=40)
    return AuditRecord(
        audit_id,
        env,
        service,
        status,
        requested_at=requested,
        transitions=(("requested", iso(requested)), (status.value, iso(done))),
        **kw,
    )


def seed_audit() -> None:
    audit = AuditStore("audit")
    audit.ensure(create=True)
    refused = (
        CheckResult("health", True),
        CheckResult("cooldown", False, "last rollback 3 minutes ago"),
    )
    for record in (
        attempt("a-search-refused", "prod", "search", Status.REFUSED, 47, checks=refused),
        attempt(
            "a-api-refused",
            "prod",
            "api",
            Status.REFUSED,
            5,
            trigger="webhook",
            checks=(CheckResult("target-version-exists", False, "no such task definition"),),
        ),
        attempt("a-staging-api-rb", "staging", "api", Status.SUCCEEDED, 29.1, trigger="alarm"),
    ):
        audit.create(record)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=cli_env(), timeout=120, check=False
    )


@pytest.fixture(scope="module")
def world(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tables, history and audit log, made once for both tests (they only read)."""
    reset_moto(moto_url)
    tmp_path = tmp_path_factory.mktemp("findings")
    config = write_config(tmp_path)
    lines = history_lines()
    jsonl = tmp_path / "history.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines))
    imported = run_cli("history", "import", str(jsonl), "--config", str(config))
    assert imported.returncode == 0, imported.stderr
    assert f"{len(lines)} stored, 0 already present, 0 refused" in imported.stdout
    seed_audit()
    return config


def read_report(out: Path, env: str) -> tuple[dict[str, Any], str]:
    stats = json.loads((out / f"deployment-stats-{env}-30d-{STAMP}.json").read_text())
    summary = (out / f"deployment-summary-{env}-30d-{STAMP}.md").read_text()
    return stats, summary


def test_report_names_what_to_do(world: Path, tmp_path: Path) -> None:
    # GIVEN a generated history of a few thousand records and an audit log (world)
    out = tmp_path / "out"

    # WHEN the report of every environment is written by the CLI
    result = run_cli(
        "report", "--config", str(world), "--env", "all", "--days", "30",
        "--out", str(out), "--now", NOW_ISO,
    )  # fmt: skip

    # THEN the prod report names the unrestored failure: where, which version, since
    # when, and the attempt made on it
    assert result.returncode == 0, result.stderr
    prod, prod_md = read_report(out, "prod")
    findings = prod["findings"]
    unrestored = {u["recordId"]: u for u in findings["unrestored"]}
    search = unrestored[UNRESTORED_ID]
    assert search["service"] == "prod/search"
    assert search["version"] == "search:29"
    assert search["since"].startswith((NOW - timedelta(hours=48)).strftime("%Y-%m-%dT%H:%M"))
    assert search["openHours"] == 48.0
    assert search["auditIds"] == ["a-search-refused"]
    for text in ("prod/search", "search:29", "a-search-refused"):
        assert text in prod_md
    # AND the refused attempts with their audit id and the check that failed
    refused = {r["auditId"]: r for r in findings["refused"]}
    assert refused["a-search-refused"]["failedCheck"] == "cooldown"
    assert refused["a-api-refused"]["failedCheck"] == "target-version-exists"
    assert refused["a-api-refused"]["service"] == "prod/api"
    assert refused["a-api-refused"]["trigger"] == "webhook"
    for text in ("a-api-refused", "target-version-exists", "cooldown"):
        assert text in prod_md
    # AND the stale service, idle for 40 days
    stale = {s["service"]: s for s in findings["stale"]}
    assert set(stale) == {"prod/legacy"}
    assert stale["prod/legacy"]["daysSinceDeploy"] >= 40
    assert "prod/legacy" in prod_md

    # AND the staging report names the worst change-failure service and the fix-forwards
    staging, staging_md = read_report(out, "staging")
    worst = staging["findings"]["worstChangeFailure"]
    assert "billing" in worst[0]["service"]
    assert worst[0]["changeFailureRatePercent"] > 2 * worst[1]["changeFailureRatePercent"]
    assert "billing" in staging_md
    restored_by = staging["findings"]["restoredBy"]
    assert restored_by["fixForward"]["count"] >= 10
    events = {e["recordId"]: e for e in staging["events"]}
    assert events["staging-api-900"]["restoredBy"] == "alarm"
    assert events["a-staging-api-rb"]["kind"] == "rollback"
    # AND every environment has its files, dev with nothing to name
    dev, _ = read_report(out, "dev")
    assert dev["findings"]["unrestored"] == [] and dev["findings"]["refused"] == []


def test_history_api_paths(world: Path) -> None:
    # GIVEN the receiver on the same tables
    receiver = Receiver(load_config(world))
    try:
        client, auth = receiver.client, receiver.bearer()

        # WHEN the newest records of every environment are asked for (no environment)
        newest = client.get("/deployment/history", params={"limit": 10}, headers=auth)

        # THEN ten records come back, newest first, across environments
        assert newest.status_code == 200, newest.text
        data = newest.json()["data"]
        assert len(data) == 10
        times = [r["finished_at"] for r in data]
        assert times == sorted(times, reverse=True)
        ids = [r["record_id"] for r in data[:3]]  # the last things that happened
        assert ids == ["a-staging-api-rb", "staging-api-900", UNRESTORED_ID]
        assert {r["environment"] for r in data} >= {"prod", "staging"}

        # AND one record by its id; an unknown id is 404; no token is 401
        one = client.get(f"/deployment/history/{UNRESTORED_ID}", headers=auth)
        assert one.status_code == 200, one.text
        assert one.json()["data"]["version"] == "search:29"
        assert one.json()["data"]["environment"] == "prod"
        assert client.get("/deployment/history/no-such-id", headers=auth).status_code == 404
        assert client.get("/deployment/history", params={"limit": 10}).status_code == 401

        # AND the stats honour period (days is the older name)
        month = client.get("/deployment/stats", params={"environment": "prod", "period": 30},
                           headers=auth)  # fmt: skip
        week = client.get("/deployment/stats", params={"environment": "prod", "period": 7},
                          headers=auth)  # fmt: skip
        assert month.status_code == 200 and week.status_code == 200, month.text
        m, w = month.json()["data"], week.json()["data"]
        assert m["window"]["days"] == 30 and w["window"]["days"] == 7
        assert m["stats"]["totalDeployments"] > w["stats"]["totalDeployments"] > 0
        # AND the seed's bare `?period=30` answers for every environment
        every = client.get("/deployment/stats", params={"period": 30}, headers=auth)
        assert every.status_code == 200, every.text
        by_env = every.json()["data"]["environments"]
        assert set(by_env) == set(ENVIRONMENTS), sorted(by_env)
        assert by_env["prod"]["stats"] == m["stats"]
    finally:
        receiver.close()
        receiver.launcher.close()
