"""``rollback report``: the metrics report from the command line, without a Prefect
server (the same steps as the ``metrics-report`` flow)."""

from __future__ import annotations

from typing import Annotated

import typer

from rollback.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    config: Annotated[str, typer.Option("--config", "-c", help="YAML config file.")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment name, or all.")] = "all",
    days: Annotated[
        int | None, typer.Option(help="Window in days (default: reports.days).")
    ] = None,
    out: Annotated[
        str | None, typer.Option("--out", help="Output directory (default: reports.out_dir).")
    ] = None,
    s3_prefix: Annotated[
        str | None, typer.Option(help="s3://bucket/prefix (default: reports.s3_prefix).")
    ] = None,
    now: Annotated[
        str | None, typer.Option(help="End of the window, ISO (reproducible reports).")
    ] = None,
) -> None:
    """Write deployment-stats JSON, cloudwatch-metrics JSON, a markdown summary and a
    chart per environment."""
    from reports import pipeline
    from rollback.config import load_config
    from rollback.runtime import Runtime

    try:
        cfg = load_config(config)
        written = pipeline.generate(
            Runtime(cfg),
            env,
            days=days,
            now=now,
            out_dir=out or (None if s3_prefix else cfg.reports.out_dir),
            s3_prefix=s3_prefix or cfg.reports.s3_prefix,
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for item in written:
        for location in item.locations:
            typer.echo(location)
