"""What to start: the stack's settings, where it runs from, its work pool's name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: prefect.yaml, the workers' cwd
POOL = "rollback-pool"


@dataclass
class Options:
    state_dir: Path = ROOT / ".stack"
    workers: int = 1  # process workers on the pool
    worker_limit: int | None = None
    rollback_workers: int = 0  # long-lived `rollback worker` processes (flows/background.py)
    receiver_mode: str = "deployment"  # worker: requests go to the long-lived workers
    postgres: bool = False
    sandbox: bool = False
    sandbox_services: int = 0  # 0: the demo world; n: staging svc-01..svc-n (ECS)
    config: Path | None = None  # without the sandbox: $ROLLBACK_CONFIG
    api_port: int = 4200
    receiver_port: int = 8080
    moto_port: int = 5055
    pg_port: int = 5433
    deployments: tuple[str, ...] = ()  # empty: prefect deploy --all
    query_seconds: float = 1
    quiet: bool = False
