"""The ``rollback`` command line as a user runs it: a real subprocess, real exit codes,
against the moto server (and the session's Prefect test server for flow runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rollback.config import load_config
from rollback.runtime import Runtime
from tests.conftest import cli_env
from tests.functional.world import make_world, service_task_definition

ROLLBACK = str(Path(sys.executable).with_name("rollback"))


def cli(*args: str, api_url: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = {"PREFECT_API_URL": api_url} if api_url else {}
    return subprocess.run(
        [ROLLBACK, *args], capture_output=True, text=True, timeout=120, env=cli_env(**extra)
    )


def test_help_lists_every_command() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for command in ("run", "history", "record-deployment", "sandbox", "demo", "audit"):
        assert command in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "nope", "--service", "api"], "unknown environment 'nope'"),
        (["--env", "staging", "--service", "web"], "unknown service 'web'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(aws: str, tmp_path: Path, args, message) -> None:
    config = make_world(tmp_path, history=False)
    out = cli("run", "--config", str(config), *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_invalid_config_names_the_key_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "environments:\n  prod:\n    servces: {}\n    services:\n"
        "      api: {type: ecs, cluster: c}\n"
    )
    out = cli("run", "--config", str(bad), "--env", "prod", "--service", "api")
    assert out.returncode == 2
    line = out.stderr.strip()
    assert str(bad) in line and "servces: unknown key" in line and "service: Field required" in line
    assert "Traceback" not in out.stderr


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    out = cli("run", "--config", str(tmp_path / "none.yaml"), "--env", "x", "--service", "y")
    assert out.returncode == 2 and "cannot read config" in out.stderr


def test_run_json_success_refusal_and_dry_run(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    config = make_world(tmp_path)
    base = ["run", "--config", str(config), "--env", "staging", "--service", "api", "--json"]

    planned = cli(*base, "--dry-run", api_url=prefect_api_url)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout.strip().splitlines()[-1])
    assert plan["status"] == "planned" and plan["to_version"] == "api:3"
    assert service_task_definition("api-staging") == "api:4"

    done = cli(*base, "--reason", "broken", "--by", "alice", api_url=prefect_api_url)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= {
        "status",
        "environment",
        "service",
        "from_version",
        "to_version",
        "checks",
        "audit_id",
        "flow_run_id",
        "reason",
    }
    assert (result["status"], result["from_version"], result["to_version"]) == (
        "succeeded",
        "api:4",
        "api:3",
    )
    assert result["flow_run_id"] and result["reason"] is None
    assert service_task_definition("api-staging") == "api:3"

    refused = cli(*base, "--to", "api:3", api_url=prefect_api_url)
    assert refused.returncode == 3
    answer = json.loads(refused.stdout.strip().splitlines()[-1])
    assert answer["status"] == "refused" and "already runs" in answer["reason"]


def test_record_deployment_and_history(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    rt = Runtime(load_config(config))
    rt.markers.mark_bad("staging", "api", "api:5")  # e.g. a reused version, bad before
    out = cli(
        "record-deployment",
        "--config",
        str(config),
        "--env",
        "staging",
        "--service",
        "api",
        "--version",
        "api:5",
        "--status",
        "success",
        "--image-tag",
        "v5",
        "--commit",
        "abc123",
        "--started",
        "2099-01-01T10:00:00Z",
        "--finished",
        "2099-01-01T10:05:00Z",
    )
    assert out.returncode == 0, out.stderr
    assert rt.markers.bad_versions("staging", "api") == frozenset()  # redeployed: good again
    listed = cli("history", "--config", str(config), "--env", "staging", "--json", "--limit", "2")
    records = json.loads(listed.stdout)
    assert records[0]["version"] == "api:5" and records[0]["commit_sha"] == "abc123"
    assert len(records) == 2

    bad_status = cli(
        "record-deployment",
        "--config",
        str(config),
        "--env",
        "staging",
        "--service",
        "api",
        "--version",
        "x",
        "--status",
        "maybe",
    )
    assert bad_status.returncode == 2 and "status must be success or failed" in bad_status.stderr


def test_history_import_is_all_or_nothing(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path, history=False)
    good = tmp_path / "good.jsonl"
    good.write_text(
        "\n".join(
            json.dumps(
                {
                    "environment": "prod",
                    "service": "api",
                    "version": f"api:{n}",
                    "status": "success",
                    "kind": "deploy",
                    "started_at": f"2026-01-0{n}T00:00:00Z",
                    "finished_at": f"2026-01-0{n}T00:03:00Z",
                }
            )
            for n in range(1, 4)
        )
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + '\n{"environment": "prod", "service": "api"}\n')

    refused = cli("history", "import", "--config", str(config), str(bad))
    assert refused.returncode == 2 and "bad.jsonl:4" in refused.stderr
    assert "nothing imported" in refused.stderr
    rt = Runtime(load_config(config))
    assert rt.history.query("prod", "api") == []

    ok = cli("history", "import", "--config", str(config), str(good))
    assert ok.returncode == 0 and "imported 3" in ok.stdout
    assert [r.version for r in rt.history.query("prod", "api")] == ["api:3", "api:2", "api:1"]
