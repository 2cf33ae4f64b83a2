"""Automatic rollbacks on long-lived workers: no process start on the hot path.

An accepted request becomes a flow run of ``requested_rollback`` that the intake creates
``Pending`` and tags ``rollback-auto-queue`` (``WorkerLauncher``), so the answer links to
it. ``rollback worker`` is a long-lived process that listens to the Prefect server's
event stream for those runs (``prefect.flow-run.Pending``, related to the tag) and runs
each one in-process, on that very flow run (``run_flow``): the rollback is a flow run in
the UI with its logs, artifact and final state, started ~0.1–0.2 s after the request
instead of 3–7 s (a process worker's poll and a new Python process).

Why the event stream and not Prefect's background tasks (``task.delay()`` served by
``prefect.task_worker.serve``, the first design): both are Prefect-native and start a run
in ~0.15 s, but a background task run is a second run per rollback — its own task run,
states and parameter file, and the task worker rebuilds its settings and API clients
for each one. Measured on this machine (``bench/prefect_floor.py``), 20 empty six-task
flow runs at once cost 0.48–0.49 CPU-s each through a background task and 0.31–0.35
through the event stream (1.4–1.7×), all processes counted; a warm rollback's own work
is ~0.2 CPU-s on top (``bench/storm.py``).

What the worker keeps, and how:

- **Only the intake's requests are automatic.** Anyone who can reach the Prefect API can
  create a run with our tag, so its parameters prove nothing. Before running, the worker
  reads the event claim for the request's audit id in our audit table (written by
  ``Intake``, where the Prefect server cannot write) and applies ``entrance.admit``, as a
  deployment run does: without the claim the request is manual (a protected environment
  is then refused: nobody is there to type the confirmation). The config is the
  worker's own (``--config``), never a parameter.
- **One execution per request.** Every worker hears every event; the first to claim
  ``dispatch:<flow run id>`` in the audit table runs it. A worker claims only when it has
  a free slot (``--limit``), so a busy worker never holds a run a free one could start.
- **Nothing is lost.** The event stream is not a queue: the queue is the server's
  database, where the runs wait ``Pending``. The worker lists them when it starts and
  after every reconnection (requests accepted while no worker ran, or while the server
  restarted) and every ``requeue_after_s / 2`` (an event a reconnection missed).
- **A worker killed mid-rollback** leaves its audit record in flight and the service's
  lease lock to expire; the next request for the service marks the attempt interrupted
  and resumes it from what the service runs (``rollback_flow``), never switching twice.
  A worker asked to stop (SIGTERM) takes no new run and finishes the ones it runs.
- **The health guard** ticks inside the worker (``GuardLoop``): one worker at a time
  holds the guard's lease in the audit table, and the Prefect variable
  ``health_guard_paused`` (``true``) pauses it from the UI or ``prefect variable set``.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from flows.launch import OnWorkers, Started, flow_parameters
from rollback import entrance
from rollback.config import Config
from rollback.errors import LockHeldError
from rollback.models import RollbackRequest, new_id
from rollback.runtime import Runtime
from rollback.stopping import wait_for_stop
from rollback.text import log_safe

log = logging.getLogger(__name__)

QUEUE_NAME = "rollback-auto"
QUEUE_TAG = "rollback-auto-queue"
PENDING_EVENT = "prefect.flow-run.Pending"
ENTRANCE = "prefect-worker"
PAUSE_VARIABLE = "health_guard_paused"
GUARD_LOCK = ("__worker__", "health-guard")
LISTENING = "rollback worker: listening for queued rollbacks"


def admit(rt: Runtime, request: RollbackRequest, audit_id: str) -> entrance.Admission:
    """The request as the intake granted it: the claim on its source event (or on
    ``intake:<audit id>``) must name this audit id, else it is a manual request."""
    claim = rt.markers.event_claim(entrance.claim_key(request, audit_id))
    return entrance.admit(
        request,
        audit_id=audit_id,
        deployment=QUEUE_NAME,
        claim=claim,
        local_user=getpass.getuser(),
        kind=ENTRANCE,
    )


class WorkerLauncher(OnWorkers):
    """Queues accepted requests for the long-lived workers: a ``Pending`` flow run with
    the queue's tag (one API call pair; the answer carries its UI link), through one API
    client kept open (a new client costs ~20 ms of CPU: its TLS context)."""

    mode = "worker"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._client: Any = None

    def start(self, request: RollbackRequest, audit_id: str, idempotency_key: str) -> Started:
        from prefect.states import Pending

        from flows.outcome import requested_rollback

        with self._api:
            client = self._client = self._client or open_client()
            flow_run = client.create_flow_run(
                requested_rollback,
                name=f"rollback-{request.environment}-{request.service}",
                parameters=flow_parameters(self.config, request, audit_id),
                state=Pending(message="queued for a rollback worker"),
                tags=["rollback", f"trigger:{request.trigger}", "worker", QUEUE_TAG],
            )
        run_id = str(flow_run.id)
        started = Started(run_id, self.config.flow_run_url(run_id))
        self._runs.put(audit_id, started)
        log.info("queued rollback %s for a worker (flow run %s)", audit_id, run_id)
        return started

    def close(self) -> None:
        with self._api:
            if self._client is not None:
                self._client.__exit__(None, None, None)
                self._client = None


def open_client() -> Any:
    """A synchronous Prefect API client, open until its ``__exit__``; safe to share
    between threads (httpx)."""
    from prefect import get_client

    client = get_client(sync_client=True)
    client.__enter__()
    return client


# -- inside the worker ----------------------------------------------------------------------
class Dispatcher:
    """Runs the queued flow runs this worker hears of, ``limit`` at a time, each once."""

    def __init__(self, rt: Runtime, limit: int) -> None:
        self.rt = rt
        self.me = f"worker-{uuid.uuid4()}"
        self.api = open_client()
        self._pool = ThreadPoolExecutor(limit, thread_name_prefix="rollback")
        self._offered: set[str] = set()
        self._lock = threading.Lock()

    def offer(self, flow_run_id: str) -> bool:
        """Queue ``flow_run_id`` for a free slot, unless it is queued here already."""
        with self._lock:
            if flow_run_id in self._offered:
                return False
            self._offered.add(flow_run_id)
        try:
            self._pool.submit(self._take, flow_run_id)
        except RuntimeError:  # stopping: the run stays Pending for another worker
            return False
        return True

    def sweep(self, older_than_s: float = 0) -> int:
        """Offer every queued run still ``Pending`` for ``older_than_s`` seconds."""
        offered = sum(self.offer(run_id) for run_id in waiting_runs(self.api, older_than_s))
        if offered:
            log.warning("picked up %d waiting rollback(s) from the server's queue", offered)
        return offered

    def stop(self) -> None:
        """Take no new run; wait for the ones running (queued ones stay Pending)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.api.__exit__(None, None, None)

    def _take(self, flow_run_id: str) -> None:
        try:
            log.info("flow run %s: %s", flow_run_id, self.run(flow_run_id))
        except Exception:  # noqa: BLE001 - one run's crash never stops the worker
            log.exception("queued flow run %s failed in the worker", flow_run_id)
        finally:
            with self._lock:
                self._offered.discard(flow_run_id)

    def run(self, flow_run_id: str) -> str:
        """Claim, admit and run one queued flow run (see the module docstring); what
        became of it."""
        flow_run = _queued_run(self.api, flow_run_id)
        if flow_run is None:
            return "not waiting"
        # 1. One execution per run, whatever the number of workers that heard of it.
        if self.rt.markers.claim_event(f"dispatch:{flow_run_id}", self.me) != self.me:
            return "taken by another worker"
        params = flow_run.parameters or {}
        try:
            request = RollbackRequest.model_validate(params.get("request"))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            _fail(
                self.api,
                flow_run_id,
                f"not a rollback request: {log_safe(where)}: {first.get('msg')}",
            )
            return "invalid"
        audit_id = str(params.get("audit_id") or new_id())
        # 2. Automatic only when the intake claimed this request for this audit id.
        admission = admit(self.rt, request, audit_id)
        if admission.note:
            log.warning("flow run %s: %s", flow_run_id, admission.note)
        request = request.model_copy(
            update={"trigger": admission.trigger, "authenticated_by": admission.authenticated_by}
        )
        return str(run_queued(self.rt.config, flow_run, request, audit_id).get("status"))


def run_queued(
    config: Config, flow_run: Any, request: RollbackRequest, audit_id: str
) -> dict[str, Any]:
    """The ``rollback-auto`` flow (``requested_rollback``: a refused rollback ends Failed
    "Refused", as on the deployment path) in this process, on the queued flow run."""
    from prefect.flow_engine import run_flow

    from flows.outcome import requested_rollback, result_of

    params = {"request": request, "config_path": config.source or None, "audit_id": audit_id}
    state: Any = run_flow(
        requested_rollback, flow_run=flow_run, parameters=params, return_type="state"
    )
    return result_of(state)


# The server announces a new run's Pending state before the transaction that creates it
# is visible to other requests: a run not found yet is read again for a while.
NOT_YET_VISIBLE_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


def _queued_run(client: Any, flow_run_id: str) -> Any:
    """The flow run when it still waits for a worker (Pending, with the queue's tag)."""
    from prefect.exceptions import ObjectNotFound

    try:
        key = UUID(flow_run_id)
    except ValueError:
        return None
    for pause in (*NOT_YET_VISIBLE_S, None):
        try:
            run = client.read_flow_run(key)
            break
        except ObjectNotFound:
            if pause is None:
                log.warning("flow run %s announced but never found", flow_run_id)
                return None
            time.sleep(pause)
        except Exception as exc:  # noqa: BLE001 - the server is away: the sweep retries
            log.warning("could not read flow run %s: %s", flow_run_id, type(exc).__name__)
            return None
    waiting = run.state is not None and run.state.is_pending()
    return run if waiting and QUEUE_TAG in (run.tags or []) else None


def _fail(client: Any, flow_run_id: str, message: str) -> None:
    from prefect.states import Failed

    client.set_flow_run_state(UUID(flow_run_id), Failed(message=message), force=True)
    log.warning("flow run %s: %s", flow_run_id, message)


def waiting_runs(client: Any, older_than_s: float = 0) -> list[str]:
    """Ids of the queued flow runs Pending for at least ``older_than_s`` seconds."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[QUEUE_TAG]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING])),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=200,
    )
    return [
        str(run.id)
        for run in runs
        if run.state is not None and (run.state.timestamp is None or run.state.timestamp <= cutoff)
    ]


class Listener:
    """The server's stream of ``Pending`` events of queued runs → ``on_run``. Reconnects
    for as long as the worker runs; after each (re)connection, ``on_connect`` (a sweep
    of what waited while nobody listened)."""

    def __init__(
        self,
        on_run: Callable[[str], Any],
        on_connect: Callable[[], Any],
        stop: threading.Event,
    ) -> None:
        self.on_run = on_run
        self.on_connect = on_connect
        self.stop = stop

    def start(self) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: asyncio.run(self._listen()), name="rollback-events", daemon=True
        )
        thread.start()
        return thread

    async def _listen(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

        wanted = EventFilter(
            event=EventNameFilter(name=[PENDING_EVENT]),
            related=EventRelatedFilter(id=[f"prefect.tag.{QUEUE_TAG}"]),
        )
        failures = 0
        while not self.stop.is_set():
            # No reconnection inside the subscriber: it would resume without a sweep, and
            # a run created while it was away is announced to nobody (a server restart).
            try:
                async with get_events_subscriber(filter=wanted, reconnection_attempts=0) as events:
                    await asyncio.to_thread(self.on_connect)
                    failures = 0
                    async for event in events:
                        self.on_run(event.resource.id.removeprefix("prefect.flow-run."))
                log.warning("event stream closed by the server: listening again")
            except Exception as exc:  # noqa: BLE001 - the server is away: listen again
                failures += 1
                log.warning(
                    "event stream lost (%s): listening again in %d s",
                    type(exc).__name__,
                    min(failures, 5),
                )
            await asyncio.sleep(min(max(failures, 1), 5))


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
    on_ready: Callable[[], Any] | None = None,
) -> None:
    """Run queued rollbacks until SIGTERM or Ctrl-C (``rollback worker``); needs
    PREFECT_API_URL. ``on_ready`` is called once the worker listens."""
    from flows.outcome import tables_checked

    rt = Runtime(config)
    rt.ensure_tables()
    tables_checked(config)  # once here, not in every run
    stop = threading.Event()
    dispatcher = Dispatcher(rt, limit)
    ready = threading.Event()

    def connected() -> None:
        dispatcher.sweep()  # what waited while nobody listened
        if not ready.is_set():
            ready.set()
            if on_ready:
                on_ready()

    Listener(dispatcher.offer, connected, stop).start()
    _every(max(requeue_after_s / 2, 1), stop, "sweep", lambda: dispatcher.sweep(requeue_after_s))
    guard = config.health_guard
    if health_interval_s > 0 and guard is not None and guard.services:
        loop = GuardLoop(config, f"worker-{uuid.uuid4()}", health_interval_s)
        _every(health_interval_s, stop, "health-guard", lambda: loop.tick(rt))
    try:
        wait_for_stop(stop)
    finally:
        log.warning("rollback worker stopping: finishing the rollbacks it runs")
        dispatcher.stop()


__all__ = ["Dispatcher", "GuardLoop", "Listener", "WorkerLauncher", "serve_worker"]
