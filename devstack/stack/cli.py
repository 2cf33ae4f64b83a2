"""The local stack: everything the service needs, on 127.0.0.1, started and stopped by pid.

``python -m devstack.stack up`` (``make stack``) starts, in order: the moto sandbox
with a seeded world and a ready config (``--sandbox``), PostgreSQL (``--postgres``; the
machine's binaries refuse root, so they run as the ``postgres`` user), a Prefect server
(SQLite otherwise), the ``rollback-pool`` work pool, one global concurrency limit per
configured service, ``prefect deploy --all``, the process workers (manual runs from the
UI, reports), N long-lived ``rollback worker`` processes (automatic rollbacks, health
guard) and the webhook receiver (worker mode when there are long-lived workers, else
deployment mode). It waits until each answers, prints the URLs, records every pid in
``<state>/stack.json`` and returns; ``down`` (``make stack-down``) stops exactly those.

The API token of the receiver is generated into ``<state>/api-token`` (mode 0600) and
never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devstack.stack.errors import StackError
from devstack.stack.lifecycle import down, up
from devstack.stack.options import ROOT, Options
from devstack.stack.state import Stack
from devstack.stack.world import seed_world


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "seed":
        seed_world(args.config, args.services)
        return 0
    if args.command == "down":
        stopped = down(args.state_dir, quiet=False)
        print("nothing to stop" if not stopped else f"stack stopped ({len(stopped)} processes)")
        return 0
    try:
        stack = up(_options(args))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print_started(stack)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start the stack and return once everything answers")
    start.add_argument("--state-dir", type=Path, default=ROOT / ".stack")
    start.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WORKERS", "1")),
        help="long-lived rollback workers (automatic rollbacks, health guard); 0: none, the "
        "receiver then starts deployment runs on the process workers",
    )
    start.add_argument(
        "--process-workers",
        type=int,
        default=1,
        help="process workers on the pool (manual runs from the UI, reports)",
    )
    start.add_argument("--worker-limit", type=int, default=None)
    start.add_argument("--postgres", action="store_true", default=_flag("POSTGRES"))
    start.add_argument("--sandbox", action="store_true", default=_flag("SANDBOX"))
    start.add_argument("--sandbox-services", type=int, default=0)
    start.add_argument("--config", type=Path, default=None)
    for name, default in (("api", 4200), ("receiver", 8080), ("moto", 5055), ("pg", 5433)):
        start.add_argument(f"--{name}-port", type=int, default=default)
    start.add_argument("--deployment", action="append", default=[], dest="deployments")
    stop = sub.add_parser("down", help="stop what `up` started (by pid)")
    stop.add_argument("--state-dir", type=Path, default=ROOT / ".stack")
    seeder = sub.add_parser("seed", help="(internal) seed the sandbox world")
    seeder.add_argument("--config", type=Path, required=True)
    seeder.add_argument("--services", type=int, default=0)
    return parser


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes")


def _options(args: argparse.Namespace) -> Options:
    return Options(
        state_dir=args.state_dir,
        workers=args.process_workers,
        rollback_workers=args.workers,
        receiver_mode="worker" if args.workers else "deployment",
        worker_limit=args.worker_limit,
        postgres=args.postgres,
        sandbox=args.sandbox,
        sandbox_services=args.sandbox_services,
        config=args.config,
        api_port=args.api_port,
        receiver_port=args.receiver_port,
        moto_port=args.moto_port,
        pg_port=args.pg_port,
        deployments=tuple(args.deployments),
    )


def _print_started(stack: Stack) -> None:
    print(f"\nPrefect UI:  {stack.ui_url}")
    print(f"Receiver:    {stack.receiver_url}  (bearer token in {stack.token_file})")
    print(f"Config:      {stack.config}")
    print(f"Logs:        {Path(stack.state_dir, 'logs')}")
    print(f"Reports:     {_reports_dir(stack)}")
    print("Use it from a shell:")
    for key in ("PREFECT_API_URL", "AWS_ENDPOINT_URL", "ROLLBACK_CONFIG"):
        if key in stack.env:
            print(f"  export {key}={stack.env[key]}")
    print("Stop it: make stack-down")


def _reports_dir(stack: Stack) -> str:
    """Where the report deployments write (a relative out_dir is under the repository,
    the workers' working directory)."""
    from rollback.config import load_config

    out_dir = load_config(stack.config).reports.out_dir
    return str(ROOT / out_dir) if out_dir else "none (reports.out_dir is empty)"
