"""The metrics report flow: deployment statistics, DORA keys, rollbacks and CloudWatch
metrics per environment, as JSON, markdown and a chart, on a schedule.

Reads like the runbook: read the history and the audit log once → per environment,
compute the numbers → fetch the service metrics → write the files → publish the summary.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from reports import pipeline
from rollback.config import load_config
from rollback.errors import ConfigError
from rollback.runtime import Runtime
from tasks.report import (
    compute_report,
    publish_artifacts,
    read_audit,
    read_history,
    read_metrics,
    write_files,
)


@flow(name="metrics-report", persist_result=False, validate_parameters=True)
def metrics_report(
    environment: str = "all",
    days: int = 30,
    out_dir: str | None = None,
    s3_prefix: str | None = None,
    config_path: str | None = None,
    now: str | None = None,
) -> dict[str, list[str]]:
    """Write the report files of ``environment`` (or ``all``) for the last ``days`` days.

    ``out_dir`` / ``s3_prefix`` default to the config's ``reports`` section; ``now`` (ISO)
    fixes the end of the window so a report can be reproduced.

    Args:
        environment: One environment of the config, or all of them.
        days: Length of the window in days, ending now (or at ``now``).
        out_dir: Folder for the JSON, markdown and chart files; empty: the config's
            reports.out_dir.
        s3_prefix: s3://bucket/prefix to upload the files to; empty: the config's
            reports.s3_prefix.
        config_path: The YAML config file; empty means $ROLLBACK_CONFIG on the worker.
        now: End of the window (ISO 8601, e.g. 2026-01-31T09:00:00Z); empty: now.
    """
    config = load_config(config_path)
    if days <= 0:
        raise ConfigError(f"days must be positive, not {days}")
    names = pipeline.environments(config, environment)
    at = pipeline.report_now(now)
    out_dir = out_dir or config.reports.out_dir
    s3_prefix = s3_prefix or config.reports.s3_prefix
    get_run_logger().info("report for %s over %d days up to %s", ", ".join(names), days, at)
    rt = Runtime(config)

    # Both stores are read once, only over the windows the reports use.
    history = read_history(rt, names, at, days)
    audit = read_audit(rt, names, at, days, history)
    written = {}
    for env in names:
        report = compute_report(config, history, audit, env, at, days)
        metrics = read_metrics(rt, report)
        written[env] = write_files(rt, report, metrics, out_dir, s3_prefix)
        publish_artifacts(config, report)
    return written
