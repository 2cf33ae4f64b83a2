"""How an accepted request becomes a rollback flow run.

Two start paths behind one small protocol:

- ``EmbeddedLauncher``: this process runs ``rollback_flow`` in background threads, one
  at a time per service, so ``rollback serve`` alone is a complete auto-rollback service.
- ``DeploymentLauncher``: ``run_deployment`` of the auto-rollback deployment on a Prefect
  server (idempotency key = the delivery/message id, so the same id is the same run),
  plus a ``rollback.requested`` event for the Prefect event feed.

``Intake`` is the one door both the receiver and the health guard go through: dedup of
source events (the audit table's event claims), "already in flight", then the launcher.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rollback.config import Config
from rollback.models import RollbackRequest, new_id
from rollback.runtime import Runtime

log = logging.getLogger(__name__)

EVENT_NAME = "rollback.requested"
# Label on the events this receiver emits: the deployment trigger ignores them (the run
# is already started), and acts only on events from a Prefect Cloud webhook.
VIA_LABEL = "rollback.via"


@dataclass(frozen=True)
class Started:
    flow_run_id: str | None
    monitor_url: str | None


class Launcher(Protocol):
    mode: str

    def start(self, request: RollbackRequest, audit_id: str, idempotency_key: str) -> Started:
        """Start one rollback run; returns at once, never waits for the rollback."""
        ...

    def busy(self, environment: str, service: str) -> str | None:
        """The audit id this launcher is running or about to run for the service."""
        ...

    def run_of(self, audit_id: str) -> Started | None:
        """What ``start`` answered for ``audit_id`` in this process, if anything."""
        ...

    def close(self) -> None: ...


def monitor_url(config: Config, flow_run_id: str | None) -> str | None:
    """The flow run's page in the Prefect UI (None without a UI URL)."""
    return config.flow_run_url(flow_run_id)


def flow_parameters(config: Config, request: RollbackRequest, audit_id: str) -> dict[str, Any]:
    hooks = config.webhooks
    config_path = (hooks.flow_config_path if hooks else None) or config.source or None
    return {
        "request": request.model_dump(mode="json"),
        "config_path": config_path,
        "audit_id": audit_id,
    }


def default_mode(config: Config, environ: Any = None) -> Literal["embedded", "deployment"]:
    """The config's mode; ``auto`` means deployment only when PREFECT_API_URL is set."""
    mode = config.webhooks.mode if config.webhooks else "auto"
    if mode != "auto":
        return mode
    env = os.environ if environ is None else environ
    return "deployment" if env.get("PREFECT_API_URL") else "embedded"


def make_launcher(config: Config, mode: str | None = None) -> Launcher:
    chosen = mode or default_mode(config)
    if chosen == "embedded":
        return EmbeddedLauncher(config)
    if chosen == "deployment":
        return DeploymentLauncher(config)
    raise ValueError(f"unknown start mode {chosen!r} (embedded or deployment)")


class _Runs:
    """Audit id -> Started, bounded (oldest forgotten first)."""

    def __init__(self, size: int = 10_000) -> None:
        self._data: OrderedDict[str, Started] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, audit_id: str, started: Started) -> None:
        with self._lock:
            self._data[audit_id] = started
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def get(self, audit_id: str) -> Started | None:
        with self._lock:
            return self._data.get(audit_id)


class EmbeddedLauncher:
    """Runs ``rollback_flow`` in this process: one worker thread per service, so runs of
    one service queue up and runs of different services go in parallel."""

    mode = "embedded"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._pending: dict[str, list[str]] = {}
        self._futures: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._runs = _Runs()
        self.results: dict[str, Any] = {}

    def warm_up(self) -> None:
        """Reach the Prefect API once (an ephemeral server takes seconds to start)."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.api_healthcheck()

    def start(self, request: RollbackRequest, audit_id: str, idempotency_key: str) -> Started:
        from prefect.client.orchestration import get_client
        from prefect.states import Pending

        from flows.rollback_flow import rollback_flow

        params = flow_parameters(self.config, request, audit_id)
        # The run exists before the response goes out, so its id and URL can be returned.
        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run(
                rollback_flow,
                name=f"rollback-{request.environment}-{request.service}",
                parameters=params,
                state=Pending(),
                tags=["rollback", f"trigger:{request.trigger}"],
            )
        started = Started(str(flow_run.id), monitor_url(self.config, str(flow_run.id)))
        self._runs.put(audit_id, started)
        key = f"{request.environment}/{request.service}"
        with self._lock:
            self._pending.setdefault(key, []).append(audit_id)
            pool = self._executors.get(key)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rollback-{key}")
                self._executors[key] = pool
            future = pool.submit(self._run, key, audit_id, flow_run, params)
            self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        log.info("started rollback %s of %s (flow run %s)", audit_id, key, flow_run.id)
        return started

    def _run(self, key: str, audit_id: str, flow_run: Any, params: dict[str, Any]) -> None:
        from prefect.flow_engine import run_flow

        from flows.rollback_flow import rollback_flow

        try:
            self.results[audit_id] = run_flow(
                rollback_flow,
                flow_run=flow_run,
                parameters={
                    "request": RollbackRequest.model_validate(params["request"]),
                    "config_path": params["config_path"],
                    "audit_id": audit_id,
                },
            )
            log.info(
                "rollback %s of %s ended %s", audit_id, key, self.results[audit_id].get("status")
            )
        except Exception as exc:  # noqa: BLE001 - a worker thread must never die silently
            self.results[audit_id] = {"status": "crashed", "error": type(exc).__name__}
            log.exception("rollback %s of %s crashed", audit_id, key)
        finally:
            with self._lock:
                pending = self._pending.get(key, [])
                if audit_id in pending:
                    pending.remove(audit_id)

    def busy(self, environment: str, service: str) -> str | None:
        with self._lock:
            pending = self._pending.get(f"{environment}/{service}")
            return pending[0] if pending else None

    def run_of(self, audit_id: str) -> Started | None:
        return self._runs.get(audit_id)

    def wait_idle(self, timeout: float = 60) -> bool:
        """Wait for every queued run to end (tests, benchmarks, the health guard)."""
        import concurrent.futures

        with self._lock:
            futures = list(self._futures)
        _, not_done = concurrent.futures.wait(futures, timeout=timeout)
        return not not_done

    def close(self) -> None:
        with self._lock:
            pools = list(self._executors.values())
        for pool in pools:
            pool.shutdown(wait=True)


class DeploymentLauncher:
    """Starts the auto-rollback deployment on the Prefect server (``run_deployment``,
    ``timeout=0``: returns the run id at once) and emits ``rollback.requested``."""

    mode = "deployment"

    def __init__(self, config: Config, deployment: str | None = None) -> None:
        self.config = config
        hooks = config.webhooks
        self.deployment = deployment or (hooks.deployment if hooks else "rollback/rollback-auto")
        self._runs = _Runs()

    def start(self, request: RollbackRequest, audit_id: str, idempotency_key: str) -> Started:
        from prefect.deployments import run_deployment
        from prefect.events import emit_event

        flow_run = run_deployment(
            self.deployment,
            parameters=flow_parameters(self.config, request, audit_id),
            timeout=0,
            idempotency_key=idempotency_key,
            as_subflow=False,
            tags=["rollback", f"trigger:{request.trigger}"],
        )
        run_id = str(flow_run.id)
        started = Started(run_id, monitor_url(self.config, run_id))
        self._runs.put(audit_id, started)
        emit_event(
            EVENT_NAME,
            resource={
                "prefect.resource.id": f"rollback.service.{request.environment}.{request.service}",
                VIA_LABEL: "receiver",
            },
            related=[
                {
                    "prefect.resource.id": f"prefect.flow-run.{run_id}",
                    "prefect.resource.role": "flow-run",
                }
            ],
            payload={
                "environment": request.environment,
                "service": request.service,
                "reason": request.reason,
                "requested_by": request.requested_by,
                "trigger": request.trigger,
                "source_event_id": request.source_event_id,
                "audit_id": audit_id,
                "flow_run_id": run_id,
            },
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"rollback:{idempotency_key}"),
        )
        log.info("started deployment %s for %s (flow run %s)", self.deployment, audit_id, run_id)
        return started

    def busy(self, environment: str, service: str) -> str | None:
        return None  # runs are on workers: the audit store's lock tells

    def run_of(self, audit_id: str) -> Started | None:
        return self._runs.get(audit_id)

    def close(self) -> None:
        return None


# -- the intake ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Acceptance:
    """What became of a request: started, a duplicate of an earlier one, or refused
    because a rollback of that service is in flight."""

    status: Literal["accepted", "duplicate", "in_flight"]
    audit_id: str | None
    flow_run_id: str | None = None
    monitor_url: str | None = None


class Intake:
    """Dedup, in-flight check and start, shared by every way a rollback is requested."""

    def __init__(self, config: Config, launcher: Launcher, runtime: Runtime | None = None) -> None:
        self.config = config
        self.launcher = launcher
        self.rt = runtime or Runtime(config)
        self._seen: OrderedDict[str, Acceptance] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._service_locks: dict[str, threading.Lock] = {}
        self._tables_ready = False

    def seen(self, event_id: str | None) -> Acceptance | None:
        """A source event this process already accepted (memory only, no I/O)."""
        if not event_id:
            return None
        with self._seen_lock:
            return self._seen.get(event_id)

    def _remember(self, event_id: str | None, acceptance: Acceptance) -> None:
        if not event_id:
            return
        with self._seen_lock:
            self._seen[event_id] = acceptance
            while len(self._seen) > 50_000:
                self._seen.popitem(last=False)

    def _service_lock(self, key: str) -> threading.Lock:
        with self._seen_lock:
            return self._service_locks.setdefault(key, threading.Lock())

    def submit(self, request: RollbackRequest) -> Acceptance:
        """Start ``request`` unless its source event was claimed already (duplicate) or a
        rollback of the service is in flight. Blocking I/O: call from a worker thread."""
        event_id = request.source_event_id
        known = self.seen(event_id)
        if known:
            return Acceptance("duplicate", known.audit_id, known.flow_run_id, known.monitor_url)
        if not self._tables_ready:
            self.rt.ensure_tables()
            self._tables_ready = True
        env, service = request.environment, request.service
        with self._service_lock(f"{env}/{service}"):
            # In flight: the event is not claimed, the running rollback answers for it.
            holder = self.launcher.busy(env, service) or self.rt.locks.holder(env, service)
            if holder:
                return Acceptance("in_flight", holder)
            audit_id = new_id()
            if event_id:
                owner = self.rt.markers.claim_event(event_id, audit_id)
                if owner != audit_id:
                    return self._duplicate(request, owner)
            started = self.launcher.start(request, audit_id, event_id or audit_id)
        accepted = Acceptance("accepted", audit_id, started.flow_run_id, started.monitor_url)
        self._remember(event_id, accepted)
        return accepted

    def _duplicate(self, request: RollbackRequest, owner: str) -> Acceptance:
        started = self.launcher.run_of(owner)
        if started is None:
            record = self.rt.audit.get(owner)
            if record is not None:
                url = monitor_url(self.config, record.flow_run_id)
                started = Started(record.flow_run_id, url)
            else:
                # Claimed, but no run ever recorded it (the process died in between):
                # start it now under the same audit id and idempotency key.
                log.warning(
                    "event %s was claimed by %s but never ran: starting it",
                    request.source_event_id,
                    owner,
                )
                started = self.launcher.start(request, owner, request.source_event_id or owner)
        dup = Acceptance(
            "duplicate",
            owner,
            started.flow_run_id if started else None,
            started.monitor_url if started else None,
        )
        if started is not None:
            self._remember(request.source_event_id, dup)
        return dup
