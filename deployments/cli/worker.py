"""``rollback worker``: a long-lived process that runs automatic rollbacks in-process.

It serves the ``rollback-auto`` background task (``flows/background.py``): the receiver
in ``--mode worker`` and the health guard queue a task run, a worker picks it up within
a fraction of a second and runs ``rollback_flow`` as a flow run of its own — no new
Python process per rollback. It also puts back requests a restarted Prefect server lost
and, unless ``--health-interval 0``, runs the health guard's ticks (one worker at a time).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    config: Annotated[str, typer.Option("--config", "-c", help="YAML config file.")],
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Rollbacks run at once by this worker.")
    ] = 10,
    requeue_after: Annotated[
        float,
        typer.Option(
            "--requeue-after",
            min=1,
            help="Seconds a queued request may wait before it is put back (server restarts).",
        ),
    ] = 30,
    health_interval: Annotated[
        float,
        typer.Option(
            "--health-interval", min=0, help="Seconds between health-guard ticks; 0: no guard."
        ),
    ] = 60,
) -> None:
    """Serve automatic rollbacks on this long-lived process (needs PREFECT_API_URL)."""
    from flows.background import serve_worker
    from rollback.config import load_config

    if not os.environ.get("PREFECT_API_URL"):
        typer.echo("error: rollback worker needs a Prefect server: set PREFECT_API_URL", err=True)
        raise typer.Exit(2)
    cfg = load_config(config)
    typer.echo(f"rollback worker: serving automatic rollbacks (limit {limit})")
    serve_worker(cfg, limit=limit, requeue_after_s=requeue_after, health_interval_s=health_interval)
