"""Frames from records, store dicts and CSV files come out the same."""

from __future__ import annotations

import pandas as pd
import pytest

from reports.load import (
    HISTORY_COLUMNS,
    audit_frame,
    audit_from_csv,
    audit_services,
    history_frame,
    history_from_csv,
    records_frame,
)
from reports.pipeline import environments, report_now
from rollback.config import parse_config
from rollback.errors import ConfigError
from rollback.models import AuditRecord, Status
from rollback.stores.history import record_to_dict
from tests.unit.reports.builders import NOW, at, deploy, rollback


def test_records_dicts_and_csv_give_the_same_frame(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # GIVEN records with numeric-looking versions
    records = [deploy("api", "42", -2, commit_h=-3), rollback("api", "42", "41", -1)]
    from_records = records_frame(records)
    rows = [record_to_dict(r) for r in records]
    pd.DataFrame(rows).to_csv(tmp_path / "h.csv", index=False)
    from_csv = history_from_csv(tmp_path / "h.csv")
    # THEN the frames match, versions stay text and times are UTC
    assert list(from_records.columns) == list(HISTORY_COLUMNS)
    assert from_csv["version"].tolist() == ["42", "41"]
    assert str(from_csv["finished_at"].dt.tz) == "UTC"
    assert from_csv["finished_at"].tolist() == from_records["finished_at"].tolist()
    assert from_csv["committed_at"].isna().tolist() == [False, True]


def test_missing_columns_and_kind_get_defaults() -> None:
    df = history_frame(
        [
            {
                "environment": "prod",
                "service": "api",
                "version": "v1",
                "status": "success",
                "finished_at": "2024-06-01T08:00:00Z",
            }
        ]
    )
    assert df.loc[0, "kind"] == "deploy"
    assert df.loc[0, "finished_at"] == pd.Timestamp("2024-06-01T08:00:00Z")


def test_audit_frame_from_records_and_csv_strings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    record = AuditRecord(
        audit_id="a1",
        environment="prod",
        service="api",
        status=Status.SUCCEEDED,
        requested_at=NOW,
        trigger="alarm",
        transitions=(("requested", NOW.isoformat()), ("succeeded", at(0.5).isoformat())),
    )
    df = audit_frame([record])
    assert df.loc[0, "status"] == "succeeded"
    assert df.loc[0, "finished_at"] == pd.Timestamp(at(0.5))
    pd.DataFrame(
        {
            "audit_id": ["a", "b"],
            "dry_run": ["False", "True"],
            "status": ["failed"] * 2,
            "requested_at": [NOW.isoformat()] * 2,
        }
    ).to_csv(tmp_path / "a.csv", index=False)
    assert audit_from_csv(tmp_path / "a.csv")["dry_run"].tolist() == [False, True]


def test_report_now_parses_iso_and_rejects_nonsense() -> None:
    assert report_now("2024-06-01T11:00:00+02:00") == pd.Timestamp("2024-06-01T09:00:00Z")
    assert report_now("2024-06-01T09:00:00.900Z") == pd.Timestamp("2024-06-01T09:00:00Z")
    with pytest.raises(ConfigError, match="--now must be an ISO timestamp"):
        report_now("yesterday")


def test_environments_all_or_one_configured() -> None:
    svc = {"api": {"type": "ecs", "cluster": "c", "service": "s"}}
    cfg = parse_config({"environments": {"prod": {"services": svc}, "dev": {"services": svc}}})
    assert environments(cfg, "all") == ["dev", "prod"]
    assert environments(cfg, "prod") == ["prod"]
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        environments(cfg, "qa")


def test_the_audit_is_read_for_the_configured_services_and_those_in_the_history() -> None:
    # GIVEN prod's history with api and legacy (no longer configured), staging's with api
    history = records_frame(
        [deploy("api", "1", -2), deploy("legacy", "1", -3), deploy("api", "1", -2, env="staging")]
    )
    # WHEN the services whose attempts prod's report reads are listed
    pairs = audit_services({"prod": ["web", "api"]}, history)
    # THEN each configured one and each one seen in prod's history, once
    assert pairs == [("prod", "api"), ("prod", "legacy"), ("prod", "web")]
    assert audit_services({"dev": []}, history) == []
