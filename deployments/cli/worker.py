"""``rollback worker``: a long-lived process that runs automatic rollbacks in-process.

The receiver in ``--mode worker``, the health guard and the deploy verification queue a
``Pending`` flow run (``flows/background.py``); a worker hears of it on the Prefect
server's event stream and runs it in-process within a fraction of a second — no new
Python process per rollback. It also picks up runs that waited while no worker listened
(a server restart, a worker down) and, unless ``--health-interval 0``, runs the health
guard's ticks (one worker at a time). SIGTERM: no new run; the running ones finish.
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
            help="Seconds a queued run may wait before the worker looks for it again "
            "(an event missed while reconnecting).",
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
    from flows.background import LISTENING, serve_worker
    from rollback.config import load_config

    if not os.environ.get("PREFECT_API_URL"):
        typer.echo("error: rollback worker needs a Prefect server: set PREFECT_API_URL", err=True)
        raise typer.Exit(2)
    cfg = load_config(config)
    serve_worker(
        cfg,
        limit=limit,
        requeue_after_s=requeue_after,
        health_interval_s=health_interval,
        on_ready=lambda: typer.echo(f"{LISTENING} (pid {os.getpid()}, limit {limit})"),
    )
