"""The local stack (``python -m devstack.stack``; how to use it: ``devstack/stack/cli.py``).

One module per part: ``options`` (what to start), ``procs`` (processes by pid),
``api`` (Prefect REST calls), ``state`` (the stack's record and its processes),
``world`` (the moto sandbox), ``postgres``, ``server`` (Prefect server, pool, limits,
deployments), ``workers`` (long-lived rollback workers), ``lifecycle`` (up, down) and
``cli``. The names below are what tests, benchmarks and docs use.
"""

from devstack.stack.errors import StackError
from devstack.stack.lifecycle import down, up
from devstack.stack.options import POOL, ROOT, Options
from devstack.stack.procs import Proc
from devstack.stack.server import create_pool, create_service_limits, deploy, publish_manual_form
from devstack.stack.state import Stack
from devstack.stack.workers import wait_rollback_workers
from devstack.stack.world import fleet_config, seed, seed_world

__all__ = [
    "POOL",
    "ROOT",
    "Options",
    "Proc",
    "Stack",
    "StackError",
    "create_pool",
    "create_service_limits",
    "deploy",
    "down",
    "fleet_config",
    "publish_manual_form",
    "seed",
    "seed_world",
    "up",
    "wait_rollback_workers",
]
