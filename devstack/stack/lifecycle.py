"""``up``: start every part of the stack in order, each waited for, and on any failure
stop what was started; ``down``: stop every process a stack recorded, newest first."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from devstack.stack import procs
from devstack.stack.errors import StackError
from devstack.stack.options import POOL, Options
from devstack.stack.postgres import start_postgres, stop_postgres
from devstack.stack.server import (
    create_pool,
    create_service_limits,
    deploy,
    publish_manual_form,
    start_server,
)
from devstack.stack.state import Stack
from devstack.stack.workers import start_rollback_workers
from devstack.stack.world import start_sandbox


def up(opts: Options) -> Stack:
    """Start the stack; on any failure, stop what was started and raise StackError."""
    state = opts.state_dir.resolve()
    previous = Stack.load(state)
    if previous and any(procs.alive(p) for p in previous.procs):
        raise StackError(f"a stack is already running from {state}: stop it first (down)")
    (state / "logs").mkdir(parents=True, exist_ok=True)
    token_file = state / "api-token"
    token_file.write_text(secrets.token_urlsafe(24))
    token_file.chmod(0o600)
    api = f"http://127.0.0.1:{opts.api_port}"
    stack = Stack(
        state_dir=str(state),
        api_url=f"{api}/api",
        ui_url=api,
        receiver_url=f"http://127.0.0.1:{opts.receiver_port}",
        config="",
        token_file=str(token_file),
        env={
            "PREFECT_API_URL": f"{api}/api",
            "PREFECT_UI_URL": api,
            "PREFECT_UI_API_URL": f"{api}/api",  # the UI's own default is port 4200
            "PREFECT_HOME": str(state / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        },
    )
    try:
        _start_all(stack, opts)
    except BaseException:
        down(state)
        raise
    return stack


def _start_all(stack: Stack, opts: Options) -> None:
    say = (lambda *_: None) if opts.quiet else (lambda msg: print(msg, flush=True))
    state = Path(stack.state_dir)
    if opts.sandbox:
        start_sandbox(stack, opts, state)
        say(f"sandbox   {stack.moto_url} (config {stack.config})")
    else:
        config = opts.config or os.environ.get("ROLLBACK_CONFIG")
        if not config:
            raise StackError("no config: pass --config FILE, set ROLLBACK_CONFIG or use SANDBOX=1")
        stack.config = str(Path(config).resolve())
    stack.env["ROLLBACK_CONFIG"] = stack.config
    db = None
    if opts.postgres:
        db = start_postgres(stack, opts, state / "postgres")
        say(f"postgres  127.0.0.1:{opts.pg_port} (data {stack.postgres_dir})")
    start_server(stack, opts, db)
    say(f"prefect   {stack.ui_url} ({'PostgreSQL' if db else 'SQLite'})")
    create_pool(stack.api_url)
    limits = create_service_limits(stack.api_url, stack.config)
    say(f"limits    {len(limits)} global concurrency limit(s): rollback-<env>-<service>")
    deploy(stack, opts.deployments)
    say(f"deployed  {', '.join(opts.deployments) or 'all deployments'} from prefect.yaml")
    if publish_manual_form(stack.api_url, stack.config):
        say("form      rollback-manual: pick-lists of the config's environments and services")
    for i in range(1, opts.workers + 1):
        stack.start_worker(i, opts)
    stack.wait_workers(opts.workers)
    say(f"workers   {opts.workers} on {POOL} (polling every {opts.query_seconds:g}s)")
    if opts.rollback_workers:
        start_rollback_workers(stack, opts)
        say(f"workers   {opts.rollback_workers} long-lived rollback worker(s) (+ health guard)")
    _start_receiver(stack, opts)
    stack.save()


def _start_receiver(stack: Stack, opts: Options) -> None:
    cmd = [procs.exe("rollback"), "serve", "--config", stack.config, "--host", "127.0.0.1"]
    cmd += ["--port", str(opts.receiver_port), "--mode", opts.receiver_mode]
    proc = stack.spawn("receiver", cmd, {"ROLLBACK_API_TOKEN": stack.token()})
    procs.wait_http(proc, f"{stack.receiver_url}/healthz", timeout=60)


def down(state_dir: Path, quiet: bool = True) -> list[str]:
    """Stop every process the stack at ``state_dir`` started, newest first."""
    stack = Stack.load(state_dir.resolve())
    if stack is None:
        return []
    stopped = []
    for proc in reversed(stack.procs):
        if proc.name == "postgres" and stack.postgres_dir:
            stop_postgres(stack.postgres_dir, proc)
        else:
            procs.stop(proc)
        stopped.append(f"{proc.name} ({proc.pid})")
        if not quiet:
            print(f"stopped {proc.name} (pid {proc.pid})", flush=True)
    stack.procs = []
    stack.save()
    return stopped
