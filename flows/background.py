"""Automatic rollbacks on long-lived workers: no process start on the hot path.

An accepted request becomes a Prefect *background task* run (``rollback_task.delay``);
``rollback worker`` is a long-lived process that serves that task
(``prefect.task_worker.serve``) and runs ``rollback_flow`` in-process, so each rollback is
still its own flow run in the UI (``requested_rollback``, as the ``rollback-auto``
deployment), with its logs, artifact and final state — started ~0.2 s after the
request instead of 3–7 s (a process worker's poll and a new Python process).

What the served path keeps from the deployment path, and how:

- **Only the intake's requests are automatic.** Anyone who can reach the Prefect API can
  create a run of this task, so its parameters prove nothing. Before running, the task
  reads the event claim for the request's audit id in our audit table (written by
  ``Intake``, where the Prefect server cannot write) and applies ``entrance.admit``, as a
  deployment run does: without the claim the request is manual (a protected
  environment is then refused: nobody is there to type the confirmation). The config is
  the worker's own (``--config``), never a parameter.
- **One execution per request.** The server's queue of background task runs is in
  memory, so ``Requeuer`` puts back task runs still ``Scheduled`` after a while (a
  server restart emptied the queue); a run can therefore be delivered twice. The task
  claims ``dispatch:<audit id>`` in the audit table first: only the first delivery runs.
- **A worker killed mid-rollback** leaves its audit record in flight and the service's
  lease lock to expire; the next request for the service marks the attempt interrupted
  and resumes it from what the service runs (``rollback_flow``), never switching twice.
- **The health guard** ticks inside the worker (``GuardLoop``): one worker at a time
  holds the guard's lease in the audit table, and the Prefect variable
  ``health_guard_paused`` (``true``) pauses it from the UI or ``prefect variable set``.
"""

from __future__ import annotations

import getpass
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.context import get_run_context

from flows.launch import OnWorkers, Started, flow_parameters
from rollback import entrance
from rollback.config import Config
from rollback.errors import LockHeldError
from rollback.models import RollbackRequest
from rollback.runtime import Runtime

log = logging.getLogger(__name__)

TASK_NAME = "rollback-auto"
QUEUE_TAG = "rollback-auto-queue"
ENTRANCE = "prefect-task"
PAUSE_VARIABLE = "health_guard_paused"
GUARD_LOCK = ("__worker__", "health-guard")

# The worker's config, loaded once at its edge (``serve_worker``); the task never takes
# a config path from its parameters.
_worker: dict[str, Any] = {}


@dataclass(frozen=True)
class Delivery:
    """What the served task did with one delivered request."""

    status: str
    audit_id: str
    flow_run_id: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "audit_id": self.audit_id,
            "flow_run_id": self.flow_run_id,
            "note": self.note,
        }


@task(name=TASK_NAME, tags=[QUEUE_TAG], persist_result=False, retries=0)
def rollback_task(request: dict[str, Any], audit_id: str, flow_run_id: str | None = None) -> dict:
    """Run one accepted automatic rollback in this worker (see the module docstring)."""
    config: Config = _worker["config"]
    rt: Runtime = _worker.get("runtime") or Runtime(config)
    req = RollbackRequest.model_validate(request)
    ctx = get_run_context()
    me = str(getattr(getattr(ctx, "task_run", None), "id", None) or uuid.uuid4())
    rt.ensure_tables()
    # 1. One execution per request, whatever the number of deliveries.
    owner = rt.markers.claim_event(f"dispatch:{audit_id}", me)
    if owner != me:
        get_run_logger().info("rollback %s already dispatched (%s): skipped", audit_id, owner)
        return Delivery("duplicate", audit_id).as_dict()
    # 2. Automatic only when the intake claimed this request for this audit id.
    admission = admit(rt, req, audit_id)
    if admission.note:
        get_run_logger().warning("%s", admission.note)
    req = req.model_copy(
        update={"trigger": admission.trigger, "authenticated_by": admission.authenticated_by}
    )
    result = run_in_process(config, req, audit_id, flow_run_id)
    return Delivery(
        str(result.get("status")), audit_id, result.get("flow_run_id"), admission.note
    ).as_dict()


def admit(rt: Runtime, request: RollbackRequest, audit_id: str) -> entrance.Admission:
    """The request as the intake granted it: the claim on its source event (or on
    ``intake:<audit id>``) must name this audit id, else it is a manual request."""
    claim = rt.markers.event_claim(entrance.claim_key(request, audit_id))
    return entrance.admit(
        request,
        audit_id=audit_id,
        deployment=TASK_NAME,
        claim=claim,
        local_user=getpass.getuser(),
        kind=ENTRANCE,
    )


def run_in_process(
    config: Config, request: RollbackRequest, audit_id: str, flow_run_id: str | None
) -> dict[str, Any]:
    """The ``rollback-auto`` flow (``requested_rollback``: a refused rollback ends Failed
    "Refused", as on the deployment path) in this process, on the flow run the launcher
    created (so the receiver's answer links to it) when it is still the one waiting for
    this request."""
    from prefect.flow_engine import run_flow

    from flows.outcome import requested_rollback, result_of

    flow_run = _waiting_run(flow_run_id, audit_id)
    config_path = config.source or None
    state: Any
    if flow_run is None:
        state = requested_rollback(request, config_path, audit_id, return_state=True)
    else:
        params = {"request": request, "config_path": config_path, "audit_id": audit_id}
        state = run_flow(
            requested_rollback, flow_run=flow_run, parameters=params, return_type="state"
        )
    return result_of(state)


def _waiting_run(flow_run_id: str | None, audit_id: str) -> Any:
    from prefect import get_client

    if not flow_run_id:
        return None
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
    except Exception:  # noqa: BLE001 - a missing or foreign run: start a new one
        return None
    waiting = run.state is not None and run.state.is_pending()
    if not waiting or (run.parameters or {}).get("audit_id") != audit_id:
        return None
    return run


class WorkerLauncher(OnWorkers):
    """Submits accepted requests to the long-lived workers (``rollback_task.delay``).

    The flow run is created first (Pending), so the answer carries its UI link; the
    worker runs the rollback on that flow run."""

    mode = "worker"

    def start(self, request: RollbackRequest, audit_id: str, idempotency_key: str) -> Started:
        from prefect import get_client
        from prefect.states import Pending

        from flows.outcome import requested_rollback

        with self._api, get_client(sync_client=True) as client:
            flow_run = client.create_flow_run(
                requested_rollback,
                name=f"rollback-{request.environment}-{request.service}",
                parameters=flow_parameters(self.config, request, audit_id),
                state=Pending(message="queued for a rollback worker"),
                tags=["rollback", f"trigger:{request.trigger}", "worker"],
            )
            run_id = str(flow_run.id)
            rollback_task.delay(request.model_dump(mode="json"), audit_id, run_id)
        started = Started(run_id, self.config.flow_run_url(run_id))
        self._runs.put(audit_id, started)
        log.info("queued rollback %s for a worker (flow run %s)", audit_id, run_id)
        return started


# -- inside the worker: putting back lost deliveries, the health guard ----------------------
class Requeuer:
    """Puts back runs of ``rollback_task`` still Scheduled after ``after_s`` seconds.

    The server keeps its queue of background task runs in memory: after a restart the
    runs are in its database, Scheduled, but nobody is told. Setting their state to
    Scheduled again enqueues them (Prefect's ``EnqueueScheduledTasks`` rule). A run that
    was only waiting for a free worker may be delivered twice: the dispatch claim runs it
    once."""

    def __init__(self, after_s: float = 30) -> None:
        self.after_s = after_s

    def sweep(self) -> int:
        from datetime import UTC, datetime, timedelta

        from prefect import get_client
        from prefect.client.schemas.filters import (
            TaskRunFilter,
            TaskRunFilterState,
            TaskRunFilterStateType,
            TaskRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.states import Scheduled, State

        cutoff = datetime.now(UTC) - timedelta(seconds=self.after_s)
        put_back = 0
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    tags=TaskRunFilterTags(all_=[QUEUE_TAG]),
                    state=TaskRunFilterState(
                        type=TaskRunFilterStateType(any_=[StateType.SCHEDULED])
                    ),
                ),
                limit=200,
            )
            for run in runs:
                state = run.state
                if state is None or not state.state_details.deferred:
                    continue
                if state.timestamp and state.timestamp > cutoff:
                    continue
                again: State[Any] = Scheduled()
                again.state_details.deferred = True
                again.state_details.task_parameters_id = state.state_details.task_parameters_id
                client.set_task_run_state(run.id, again, force=True)
                put_back += 1
        if put_back:
            log.warning("put back %d queued rollback(s) the server had lost", put_back)
        return put_back


class GuardLoop:
    """The health guard inside the worker: one tick per ``interval_s`` by whichever
    worker holds the guard's lease; the Prefect variable ``health_guard_paused`` set to
    ``true`` pauses it."""

    def __init__(self, config: Config, holder: str, interval_s: float = 60) -> None:
        self.config = config
        self.holder = holder
        self.interval_s = interval_s
        self.ticks = 0

    def should_tick(self, rt: Runtime) -> bool:
        if paused():
            log.info("health guard paused (variable %s)", PAUSE_VARIABLE)
            return False
        try:
            rt.locks.acquire(*GUARD_LOCK, self.holder, self.interval_s * 1.5)
        except LockHeldError:
            return False  # another worker is the guard
        return True

    def tick(self, rt: Runtime) -> list[dict[str, Any]] | None:
        from flows.health_guard import health_guard_flow

        if not self.should_tick(rt):
            return None
        self.ticks += 1
        return health_guard_flow(config_path=self.config.source or None, mode="worker")


def paused() -> bool:
    from prefect.variables import Variable

    try:
        value = Variable.get(PAUSE_VARIABLE, default=None)
    except Exception:  # noqa: BLE001 - the server is away: keep guarding
        return False
    return str(value).strip().lower() in ("true", "1", "yes", "paused")


def _every(interval_s: float, stop: threading.Event, name: str, fn: Any) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                fn()
            except Exception:  # noqa: BLE001 - a background loop never dies of one error
                log.exception("%s failed; next try in %.0f s", name, interval_s)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


def serve_worker(
    config: Config,
    *,
    limit: int = 10,
    requeue_after_s: float = 30,
    health_interval_s: float = 60,
    timeout: float | None = None,
) -> None:
    """Serve ``rollback_task`` until stopped (``rollback worker``). Needs PREFECT_API_URL."""
    from prefect.task_worker import serve

    rt = Runtime(config)
    rt.ensure_tables()
    _worker.update(config=config, runtime=rt)
    stop = threading.Event()
    requeuer = Requeuer(requeue_after_s)
    requeuer.sweep()  # what a restarted server forgot, before the first delivery
    _every(max(requeue_after_s / 2, 1), stop, "requeue", requeuer.sweep)
    guard = config.health_guard
    if health_interval_s > 0 and guard is not None and guard.services:
        loop = GuardLoop(config, f"worker-{uuid.uuid4()}", health_interval_s)
        _every(health_interval_s, stop, "health-guard", lambda: loop.tick(rt))
    try:
        serve(rollback_task, limit=limit, timeout=timeout)
    finally:
        stop.set()


__all__ = ["GuardLoop", "Requeuer", "WorkerLauncher", "rollback_task", "serve_worker"]
