"""The report steps as plain functions; the flow wraps them in tasks, the CLI calls
them directly (no Prefect server needed for a one-off report). Every store and client
comes from the ``Runtime`` it is given: nothing here builds an adapter."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from reports import chart, render
from reports.cloudwatch import metric_queries, metrics_document
from reports.load import read_audit, read_history
from reports.metrics import Report, compute, utc_timestamp
from reports.publish import write_local
from rollback.config import Config
from rollback.errors import ConfigError
from rollback.models import utcnow
from rollback.report_uploads import OutputFile
from rollback.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """One environment's report: its files and where they went."""

    environment: str
    names: render.FileNames
    locations: list[str] = field(default_factory=list)


def report_now(value: str | datetime | None) -> pd.Timestamp:
    """The report's "now" (UTC, whole seconds): ``value`` or the current time."""
    if value is None or value == "":
        return utc_timestamp(utcnow()).floor("s")
    try:
        return utc_timestamp(value).floor("s")
    except (ValueError, TypeError):
        raise ConfigError(
            f"--now must be an ISO timestamp like 2024-05-01T09:00:00Z, not {value!r}"
        ) from None


def environments(config: Config, environment: str) -> list[str]:
    """``all`` means every configured environment; a name must be configured."""
    if environment == "all":
        return sorted(config.environments)
    config.environment(environment)  # ConfigError naming the known ones
    return [environment]


def compute_for(
    config: Config,
    history: pd.DataFrame,
    audit: pd.DataFrame,
    environment: str,
    now: pd.Timestamp,
    days: int,
) -> Report:
    """``compute`` with what the config knows: its services (named when stale) and the
    history's retention (the previous-period warning)."""
    env = config.environments.get(environment)
    return compute(
        history,
        audit,
        environment,
        now,
        days,
        retention_days=config.stores.history_ttl_days,
        known_services=sorted(env.services) if env else (),
    )


def read_metrics(rt: Runtime, report: Report) -> dict[str, Any]:
    """The cloudwatch-metrics document for one environment's window."""
    config, env = rt.config, report.environment
    services = set(config.environments[env].services) if env in config.environments else set()
    queries = metric_queries(
        config.reports, env, services | {r["service"] for r in report.services}
    )
    series = []
    if queries:
        series = rt.report_metrics().series(
            queries, report.window.start.to_pydatetime(), report.window.end.to_pydatetime()
        )
    doc = report.document
    return metrics_document(env, doc["window"], doc["generatedAt"], series, recent_deploys(report))


def recent_deploys(report: Report) -> list[dict[str, Any]]:
    """The window's deploys that failed or were rolled back, and rollbacks (what a
    CloudWatch breach is set beside)."""
    return [
        {"service": e["service"], "version": e["version"], "finishedAt": e["finishedAt"],
         "recordId": e["recordId"]}
        for e in report.document.get("events", [])
    ]  # fmt: skip


def render_files(
    report: Report, metrics: dict[str, Any], timezone: str = "UTC"
) -> list[OutputFile]:
    """The four files of one environment, named as the docs say."""
    names = render.FileNames.of(report.environment, report.window.days, report.window.end)
    figure = chart.deploys_figure(report.daily, f"Deploys per day — {report.environment}")
    return [
        OutputFile(names.stats, render.to_json(report.document).encode(), "application/json"),
        OutputFile(names.metrics, render.to_json(metrics).encode(), "application/json"),
        OutputFile(
            names.summary,
            render.summary_markdown(report, names.chart, timezone, metrics).encode(),
            "text/markdown; charset=utf-8",
        ),
        OutputFile(names.chart, chart.png(figure), "image/png"),
    ]


def store_files(
    rt: Runtime, files: list[OutputFile], out_dir: str | None, s3_prefix: str | None
) -> list[str]:
    """Write to the local directory and/or upload to the S3 prefix."""
    if not out_dir and not s3_prefix:
        raise ConfigError("no output location: give an output directory or reports.s3_prefix")
    locations = write_local(files, out_dir) if out_dir else []
    if s3_prefix:
        s3 = rt.report_uploads(s3_prefix)
        locations += [s3.put(f) for f in files]
    return locations


def generate(
    rt: Runtime,
    environment: str,
    days: int | None = None,
    now: str | datetime | None = None,
    out_dir: str | None = None,
    s3_prefix: str | None = None,
) -> list[Written]:
    """The whole report without Prefect: read, compute, render, store, per environment."""
    config = rt.config
    names = environments(config, environment)
    at = report_now(now)
    days = config.reports.days if days is None else days
    if days <= 0:
        raise ConfigError(f"days must be positive, not {days}")
    history = read_history(rt, names, at, days)
    audit = read_audit(rt, names, at, days, history)
    written = []
    for env in names:
        report = compute_for(config, history, audit, env, at, days)
        files = render_files(report, read_metrics(rt, report), config.reports.timezone)
        locations = store_files(rt, files, out_dir, s3_prefix)
        written.append(Written(env, render.FileNames.of(env, days, at), locations))
        log.info("report for %s: %s", env, ", ".join(locations))
    return written
