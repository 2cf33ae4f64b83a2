"""``rollback serve``: the webhook receiver under uvicorn.

The start mode is explicit: ``--mode embedded`` runs rollbacks in this process,
``--mode deployment`` starts the auto-rollback deployment on the Prefect server,
``--mode worker`` queues a flow run (Pending) for the long-lived ``rollback worker``
processes (``flows/background.py``); without
``--mode`` the config's ``webhooks.mode`` decides (``auto``: deployment only when
PREFECT_API_URL is set when the server starts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    config: Annotated[str, typer.Option("--config", "-c", help="YAML config file.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    mode: Annotated[
        str | None,
        typer.Option(
            help="embedded, deployment or worker (default: from the config / environment)."
        ),
    ] = None,
) -> None:
    """Run the webhook receiver and REST API (FastAPI + uvicorn)."""
    import uvicorn

    from deployments.receiver import create_app
    from flows.launch import EmbeddedLauncher, default_mode, make_launcher
    from rollback.config import load_config

    cfg = load_config(config)
    chosen = mode or default_mode(cfg)
    if chosen not in ("embedded", "deployment", "worker"):
        typer.echo(
            f"error: --mode must be embedded, deployment or worker, not {chosen!r}", err=True
        )
        raise typer.Exit(2)
    launcher = make_launcher(cfg, chosen)
    if isinstance(launcher, EmbeddedLauncher):
        typer.echo("starting in embedded mode: rollbacks run in this process")
        from deployments.cli.local_api import tie_temporary_api

        tie_temporary_api()  # from the main thread: a killed receiver leaves no server
        launcher.warm_up()  # the first webhook must not wait for a Prefect API to start
    elif chosen == "worker":
        typer.echo("starting in worker mode: rollbacks run on `rollback worker` processes")
    else:
        typer.echo(f"starting in deployment mode: runs of {launcher.deployment}")  # type: ignore[attr-defined]
    app = create_app(cfg, launcher)
    typer.echo(f"receiver on http://{host}:{port} (OpenAPI at /docs)")
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    finally:
        launcher.close()


@contextmanager
def background_server(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread until the context ends; yields its URL
    (tests and benchmarks: a real HTTP server on loopback)."""
    import socket

    import uvicorn

    if not port:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
