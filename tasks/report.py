"""Report stages: read the stores, compute, fetch metrics, write files, publish artifacts.

Thin wrappers over ``reports.pipeline``; retries (transient AWS faults only) live on
the decorator.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from reports import pipeline, render
from reports.metrics import Report
from rollback.config import Config
from rollback.runtime import Runtime
from rollback.text import markdown_escape
from tasks._common import stage


@stage("read-deployment-history")
def read_history(
    rt: Runtime, environments: list[str], now: pd.Timestamp, days: int
) -> pd.DataFrame:
    history = pipeline.read_history(rt, environments, now, days)
    get_run_logger().info(
        "read %d history records of %s from %s",
        len(history),
        ", ".join(environments),
        rt.config.stores.history_table,
    )
    return history


@stage("read-audit-log")
def read_audit(
    rt: Runtime, environments: list[str], now: pd.Timestamp, days: int, history: pd.DataFrame
) -> pd.DataFrame:
    audit = pipeline.read_audit(rt, environments, now, days, history)
    get_run_logger().info(
        "read %d rollback attempts from %s", len(audit), rt.config.stores.audit_table
    )
    return audit


@stage("compute-report", retries=0)
def compute_report(
    config: Config,
    history: pd.DataFrame,
    audit: pd.DataFrame,
    environment: str,
    now: pd.Timestamp,
    days: int,
) -> Report:
    report = pipeline.compute_for(config, history, audit, environment, now, days)
    stats = report.document["stats"]
    get_run_logger().info(
        "%s: %d deployments, success rate %s, change failure rate %s",
        environment,
        stats["totalDeployments"],
        stats["successRate"],
        report.document["dora"]["changeFailureRatePercent"],
    )
    return report


@stage("read-cloudwatch-metrics")
def read_metrics(rt: Runtime, report: Report) -> dict[str, Any]:
    metrics = pipeline.read_metrics(rt, report)
    count = sum(len(m) for m in metrics["services"].values())
    get_run_logger().info("%s: %d CloudWatch series", report.environment, count)
    return metrics


@stage("write-report-files")
def write_files(
    rt: Runtime,
    report: Report,
    metrics: dict[str, Any],
    out_dir: str | None,
    s3_prefix: str | None,
) -> list[str]:
    files = pipeline.render_files(report, metrics, rt.config.reports.timezone)
    locations = pipeline.store_files(rt, files, out_dir, s3_prefix)
    get_run_logger().info("%s: wrote %s", report.environment, ", ".join(locations))
    return locations


def artifact_key(prefix: str, environment: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{environment}".lower()).strip("-")


@stage("publish-report-artifacts", retries=0)
def publish_artifacts(config: Config, report: Report) -> None:
    # The chart is a file next to the markdown, not reachable from the UI: leave it out.
    # Service names and versions in it come from the history: render escapes them. The
    # table artifact holds them as data (the UI shows cells as text, not markdown).
    markdown = render.summary_markdown(report, None, config.reports.timezone)
    create_markdown_artifact(
        markdown,
        key=artifact_key("deployment-summary", report.environment),
        description=f"Deployment summary for {markdown_escape(report.environment)}",
    )
    create_table_artifact(
        render.service_table(report),
        key=artifact_key("deployment-services", report.environment),
        description=f"Deployments per service for {markdown_escape(report.environment)}",
    )
    get_run_logger().info("%s: published summary and service table artifacts", report.environment)
