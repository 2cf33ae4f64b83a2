"""The sandbox behind the stack (``--sandbox``): a moto server and its seeded world, the
demo's or a fleet of staging ECS services, with a config that points at it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from devstack.stack import procs
from devstack.stack.errors import StackError
from devstack.stack.options import ROOT, Options
from devstack.stack.state import Stack


def start_sandbox(stack: Stack, opts: Options, state: Path) -> None:
    """moto on ``opts.moto_port``, seeded; the stack's config is ``<state>/config.yaml``."""
    from devstack.sandbox import SANDBOX_ENV

    stack.moto_url = f"http://127.0.0.1:{opts.moto_port}"
    stack.env.update(SANDBOX_ENV | {"AWS_ENDPOINT_URL": stack.moto_url})
    proc = stack.spawn(
        "moto",
        [procs.exe("moto_server"), "-H", "127.0.0.1", "-p", str(opts.moto_port)],
        {"MOTO_ECS_SERVICE_RUNNING": "1"},
    )
    procs.wait_http(proc, f"{stack.moto_url}/moto-api/", timeout=30)
    stack.config = str(state / "config.yaml")
    seed(stack, opts.sandbox_services)


def seed(stack: Stack, services: int = 0) -> None:
    """(Re)seed the sandbox world in a child process (its AWS environment stays there)."""
    cmd = [sys.executable, "-m", "devstack.stack", "seed", "--config", stack.config]
    result = subprocess.run(
        [*cmd, "--services", str(services)],
        env=stack.child_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode:
        raise StackError(f"seeding the sandbox failed: {result.stderr.strip()[-2000:]}")


def seed_world(config_path: Path, services: int) -> None:
    """The demo world (services=0) or a fleet of ``services`` staging ECS services, each
    on api:4 (the bad deploy) with api:1..3 good in its history."""
    from devstack import sandbox
    from rollback.config import load_config
    from rollback.runtime import Runtime

    if not services:
        sandbox.seed_all(config_path)
        return
    names = [f"svc-{i:02d}" for i in range(1, services + 1)]
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(fleet_config(names), indent=2))
    sandbox.seed(services=dict.fromkeys(names, "api"))
    rt = Runtime(load_config(config_path))
    rt.ensure_tables()
    for name in names:
        rt.history.import_many(sandbox.demo_history("staging", name, "api"))


def fleet_config(names: list[str]) -> dict[str, Any]:
    from devstack.sandbox import CLUSTER

    def ecs(name: str) -> dict[str, Any]:
        return {
            "type": "ecs",
            "cluster": CLUSTER,
            "service": name,
            "ecr_repository": "api",
            "stabilize_timeout_s": 60,
            "poll_interval_s": 0.2,
        }

    return {
        "stores": {"create_tables": True},
        "environments": {
            "staging": {"protected": False, "services": {n: ecs(n) for n in names}},
        },
    }
