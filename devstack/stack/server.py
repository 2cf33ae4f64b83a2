"""The Prefect side of the stack: ``prefect server start``, the work pool, one global
concurrency limit per configured service, ``prefect deploy`` and the manual form."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devstack.stack import procs
from devstack.stack.api import call
from devstack.stack.errors import StackError
from devstack.stack.options import POOL, ROOT, Options
from devstack.stack.state import Stack
from rollback.models import service_limit_name


def start_server(stack: Stack, opts: Options, database_url: str | None) -> None:
    """``prefect server start`` on SQLite, or on ``database_url``; returns once it answers."""
    server_env = {"PREFECT_API_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    stack.database = "postgresql" if database_url else "sqlite"
    stack.database_url = database_url
    cmd = [procs.exe("prefect"), "server", "start", "--host", "127.0.0.1"]
    proc = stack.spawn("prefect-server", [*cmd, "--port", str(opts.api_port)], server_env)
    procs.wait_http(proc, f"{stack.api_url}/health", timeout=90)


def create_pool(api_url: str) -> None:
    from prefect.workers.process import ProcessWorker

    body = {
        "name": POOL,
        "type": "process",
        "description": "Rollback flow runs as processes on the worker's host.",
        "base_job_template": ProcessWorker.get_default_base_job_template(),
    }
    call(api_url, "POST", "/work_pools/", body, ok_conflict=True)


def create_service_limits(api_url: str, config_path: str) -> list[str]:
    """One strict global concurrency limit (1 slot) per configured service."""
    from rollback.config import load_config

    config = load_config(config_path)
    names = [
        service_limit_name(env, service)
        for env, env_cfg in config.environments.items()
        for service in env_cfg.services
    ]
    for name in names:
        created = call(api_url, "POST", "/v2/concurrency_limits/", {"name": name, "limit": 1}, True)
        if created is None:  # exists: make sure it is one slot
            call(api_url, "PATCH", f"/v2/concurrency_limits/{name}", {"limit": 1})
    return names


def publish_manual_form(api_url: str, config_path: str) -> bool:
    """Give ``rollback-manual`` its Custom Run form built from the config: pick-lists of
    the configured environments and services (``devstack.forms``). Run it after every
    ``prefect deploy``, which resets the form; False when it is not deployed."""
    from devstack.forms import MANUAL_DEPLOYMENT, pick_lists
    from rollback.config import load_config

    flow_name, name = MANUAL_DEPLOYMENT.split("/")
    query = {"flows": {"name": {"any_": [flow_name]}}, "deployments": {"name": {"any_": [name]}}}
    found = call(api_url, "POST", "/deployments/filter", query) or []
    config = load_config(config_path)
    for deployment in found:
        form = pick_lists(deployment["parameter_openapi_schema"], config)
        path = f"/deployments/{deployment['id']}"
        call(api_url, "PATCH", path, {"parameter_openapi_schema": form})
    return bool(found)


def deploy(stack: Stack, names: tuple[str, ...] = ()) -> None:
    """``prefect deploy --all`` (or the named deployments) from the repository root."""
    selection = [a for n in names for a in ("-n", n)] or ["--all"]
    log = Path(stack.state_dir, "logs", "deploy.log")
    with log.open("w") as out:
        result = subprocess.run(
            [procs.exe("prefect"), "--no-prompt", "deploy", *selection],
            cwd=ROOT,
            env=stack.child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    if result.returncode:
        tail = log.read_text()[-1500:]
        raise StackError(f"prefect deploy failed (log {log}):\n{tail}")
