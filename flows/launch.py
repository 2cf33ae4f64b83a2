"""How an accepted request becomes a rollback flow run.

Two start paths behind one small protocol:

- ``EmbeddedLauncher``: this process runs ``requested_rollback`` (the rollback flow whose
  final state shows the outcome) in background threads, one
  at a time per service, so ``rollback serve`` alone is a complete auto-rollback service.
- ``DeploymentLauncher``: ``run_deployment`` of the auto-rollback deployment on a Prefect
  server (idempotency key = the delivery/message id, so the same id is the same run),
  plus a ``rollback.requested`` event for the Prefect event feed.

``Intake`` is the one door both the receiver and the health guard go through: dedup of
source events (the audit table's event claims), "already in flight", then the launcher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from rollback import aws
from rollback.bounded import BoundedMap
from rollback.config import Config
from rollback.errors import ConfigError, RollbackError
from rollback.models import AuditRecord, RollbackRequest, Status, new_id, utcnow
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


def flow_parameters(config: Config, request: RollbackRequest, audit_id: str) -> dict[str, Any]:
    hooks = config.webhooks
    config_path = (hooks.flow_config_path if hooks else None) or config.source or None
    return {
        "request": request.model_dump(mode="json"),
        "config_path": config_path,
        "audit_id": audit_id,
    }


def default_mode(
    config: Config, environ: Any = None
) -> Literal["embedded", "deployment", "worker"]:
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
    if chosen == "worker":
        from flows.background import WorkerLauncher  # long-lived workers (queued runs)

        return WorkerLauncher(config)
    raise ValueError(f"unknown start mode {chosen!r} (embedded, deployment or worker)")


class _Runs:
    """Audit id -> Started, bounded (oldest forgotten first), shared by threads."""

    def __init__(self, size: int = 10_000) -> None:
        self._data: BoundedMap[Started] = BoundedMap(size)
        self._lock = threading.Lock()

    def put(self, audit_id: str, started: Started) -> None:
        with self._lock:
            self._data[audit_id] = started

    def get(self, audit_id: str) -> Started | None:
        with self._lock:
            return self._data.get(audit_id)


class InFlight:
    """The futures still running, so a caller can wait for them (tests, benchmarks, the
    health guard)."""

    def __init__(self) -> None:
        self._futures: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def track(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    def wait(self, timeout: float) -> bool:
        """True when every tracked future ended within ``timeout`` seconds."""
        import concurrent.futures

        with self._lock:
            futures = list(self._futures)
        _, not_done = concurrent.futures.wait(futures, timeout=timeout)
        return not not_done


class EmbeddedLauncher:
    """Runs ``rollback_flow`` in this process: one worker thread per service, so runs of
    one service queue up and runs of different services go in parallel."""

    mode = "embedded"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._pending: dict[str, list[str]] = {}
        self._in_flight = InFlight()
        self._lock = threading.Lock()
        self._runs = _Runs()
        # The last outcomes of this process's runs (tests, the health guard): bounded, a
        # long-lived receiver must not grow with every rollback it ever ran.
        self.results: BoundedMap[dict[str, Any]] = BoundedMap(1_000)

    def warm_up(self) -> None:
        """Reach the Prefect API once (an ephemeral server takes seconds to start)."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.api_healthcheck()

    def start(self, request: RollbackRequest, audit_id: str, idempotency_key: str) -> Started:
        from prefect.client.orchestration import get_client
        from prefect.states import Pending

        from flows.outcome import requested_rollback

        params = flow_parameters(self.config, request, audit_id)
        # The run exists before the response goes out, so its id and URL can be returned.
        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run(
                requested_rollback,
                name=f"rollback-{request.environment}-{request.service}",
                parameters=params,
                state=Pending(),
                tags=["rollback", f"trigger:{request.trigger}"],
            )
        started = Started(str(flow_run.id), self.config.flow_run_url(str(flow_run.id)))
        self._runs.put(audit_id, started)
        key = f"{request.environment}/{request.service}"
        with self._lock:
            self._pending.setdefault(key, []).append(audit_id)
            pool = self._executors.get(key)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rollback-{key}")
                self._executors[key] = pool
            self._in_flight.track(pool.submit(self._run, key, audit_id, flow_run, params))
        log.info("started rollback %s of %s (flow run %s)", audit_id, key, flow_run.id)
        return started

    def _run(self, key: str, audit_id: str, flow_run: Any, params: dict[str, Any]) -> None:
        from prefect.flow_engine import run_flow

        from flows.outcome import requested_rollback, result_of

        try:
            # The rollback-auto entry point: a refused rollback ends Failed "Refused".
            state: Any = run_flow(
                requested_rollback,
                flow_run=flow_run,
                parameters={
                    "request": RollbackRequest.model_validate(params["request"]),
                    "config_path": params["config_path"],
                    "audit_id": audit_id,
                },
                return_type="state",
            )
            self.results[audit_id] = result_of(state)
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
        return self._in_flight.wait(timeout)

    def close(self) -> None:
        with self._lock:
            pools = list(self._executors.values())
        for pool in pools:
            pool.shutdown(wait=True)


class OnWorkers:
    """What the launchers whose runs execute in other processes share: the started runs
    (bounded) and one Prefect API request at a time — 20 concurrent flow-run creations
    against a SQLite-backed server took 65–80 s each here, one at a time 0.05–0.1 s
    (bench/RESULTS.md, storm). Which run holds a service is the audit store's lock."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._runs = _Runs()
        self._api = threading.Lock()

    def busy(self, environment: str, service: str) -> str | None:
        return None  # runs are on workers: the audit store's lock tells

    def run_of(self, audit_id: str) -> Started | None:
        return self._runs.get(audit_id)

    def close(self) -> None:
        return None


class DeploymentLauncher(OnWorkers):
    """Starts the auto-rollback deployment on the Prefect server (``run_deployment``,
    ``timeout=0``: returns the run id at once) and emits ``rollback.requested``."""

    mode = "deployment"

    def __init__(self, config: Config, deployment: str | None = None) -> None:
        super().__init__(config)
        hooks = config.webhooks
        self.deployment = deployment or (hooks.deployment if hooks else "rollback/rollback-auto")

    def start(self, request: RollbackRequest, audit_id: str, idempotency_key: str) -> Started:
        from prefect.deployments import run_deployment
        from prefect.events import emit_event

        with self._api:
            flow_run: Any = run_deployment(  # sync here: returns the run, not a coroutine
                self.deployment,
                parameters=flow_parameters(self.config, request, audit_id),
                timeout=0,
                idempotency_key=idempotency_key,
                as_subflow=False,
                tags=["rollback", f"trigger:{request.trigger}"],
            )
        run_id = str(flow_run.id)
        started = Started(run_id, self.config.flow_run_url(run_id))
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


# -- the intake ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Acceptance:
    """What became of a request: started; a duplicate of an earlier one; absorbed (an
    automatic request recorded and linked to the rollback already in flight); or, for a
    manual request, refused because a rollback of that service is in flight."""

    status: Literal["accepted", "duplicate", "absorbed", "in_flight"]
    audit_id: str | None
    flow_run_id: str | None = None
    monitor_url: str | None = None
    linked_audit_id: str | None = None


class RequestMismatch(ConfigError):
    """A manual request reused an idempotency key with another request: fix the key."""

    def __init__(self, event_id: str, fields: list[str]) -> None:
        super().__init__(
            f"this Idempotency-Key was first used for another request ({', '.join(fields)} "
            "differ): use a new key for a new request"
        )
        self.event_id = event_id
        self.fields = fields


_FINGERPRINT_FIELDS = ("environment", "service", "to", "reason", "requested_by", "dry_run")


def fingerprint(request: RollbackRequest) -> str:
    """What a manual request asks, as short hashes per field (no text from outside kept):
    a reused idempotency key with another body is told apart and the fields named."""
    data = request.model_dump(include=set(_FINGERPRINT_FIELDS))
    return json.dumps(
        {k: hashlib.sha256(repr(data[k]).encode()).hexdigest()[:16] for k in _FINGERPRINT_FIELDS},
        sort_keys=True,
    )


def fingerprint_mismatch(stored: str | None, current: str) -> list[str]:
    """The fields that differ between two fingerprints (none when either is missing)."""
    if not stored:
        return []
    try:
        old = json.loads(stored)
    except ValueError:
        return []
    new = json.loads(current)
    return [k for k in _FINGERPRINT_FIELDS if k in old and old[k] != new.get(k)]


class Intake:
    """Dedup, in-flight check and start, shared by every way a rollback is requested.

    Every incident is recorded: an automatic request for a service whose rollback is in
    flight becomes an ``absorbed`` audit record linked to that rollback. The event claim
    carries the name of the credential that admitted the request (``authenticated_by``).
    """

    def __init__(self, config: Config, launcher: Launcher, runtime: Runtime | None = None) -> None:
        self.config = config
        self.launcher = launcher
        self.rt = runtime or Runtime(config)
        self._seen: BoundedMap[tuple[Acceptance, str | None]] = BoundedMap(50_000)
        self._seen_lock = threading.Lock()
        self._service_locks: dict[str, threading.Lock] = {}
        self._tables_ready = False

    def seen(self, event_id: str | None) -> Acceptance | None:
        """A source event this process already accepted (memory only, no I/O)."""
        if not event_id:
            return None
        with self._seen_lock:
            known = self._seen.get(event_id)
        return known[0] if known else None

    def known(self, request: RollbackRequest) -> Acceptance | None:
        """``request``'s source event as this process answered it (memory only, no I/O),
        as a duplicate; RequestMismatch when a manual request reuses its key."""
        event_id = request.source_event_id
        if not event_id:
            return None
        with self._seen_lock:
            known = self._seen.get(event_id)
        if known is None:
            return None
        acceptance, stored = known
        if not request.automatic:
            fields = fingerprint_mismatch(stored, fingerprint(request))
            if fields:
                raise RequestMismatch(event_id, fields)
        return Acceptance(
            "duplicate",
            acceptance.audit_id,
            acceptance.flow_run_id,
            acceptance.monitor_url,
            acceptance.linked_audit_id,
        )

    def _remember(self, request: RollbackRequest, acceptance: Acceptance) -> None:
        event_id = request.source_event_id
        if not event_id:
            return
        stored = None if request.automatic else fingerprint(request)
        with self._seen_lock:
            self._seen[event_id] = (acceptance, stored)

    def _service_lock(self, key: str) -> threading.Lock:
        with self._seen_lock:
            return self._service_locks.setdefault(key, threading.Lock())

    def ready(self) -> str | None:
        """None when the stores answer (tables there, or created as configured), else
        why not. Checked on every call (readiness), unlike the intake's one-time check."""
        try:
            for table in (self.rt.audit, self.rt.history):
                table.ensure(self.config.stores.create_tables)
        except RollbackError as exc:
            return str(exc)
        except (ClientError, BotoCoreError) as exc:
            return str(aws.translate(exc, "check the stores"))
        return None

    def submit(self, request: RollbackRequest) -> Acceptance:
        """Start ``request`` unless its source event was claimed already (duplicate) or a
        rollback of the service is in flight (absorbed; a manual request: in_flight).
        Blocking I/O: call from a worker thread."""
        event_id = request.source_event_id
        if request.automatic and not event_id:
            raise ValueError("an automatic request needs a source_event_id")
        known = self.known(request)
        if known:
            return known
        if not self._tables_ready:
            self.rt.ensure_tables()
            self._tables_ready = True
        env, service = request.environment, request.service
        with self._service_lock(f"{env}/{service}"):
            holder = self.launcher.busy(env, service) or self.rt.locks.holder(env, service)
            if holder and not request.automatic:
                return Acceptance("in_flight", holder)
            audit_id = new_id()
            if event_id:
                owner = self._claim(request, audit_id)
                if owner != audit_id:
                    return self._duplicate(request, owner)
            if holder:
                return self._absorb(request, audit_id, holder)
            if not event_id:
                # The entrance's grant for a request without a source event: the flow
                # run reads it to name the credential (rollback.entrance.claim_key).
                self.rt.markers.claim_event(
                    f"intake:{audit_id}", audit_id, authenticated_by=request.authenticated_by
                )
            started = self.launcher.start(request, audit_id, event_id or audit_id)
        accepted = Acceptance("accepted", audit_id, started.flow_run_id, started.monitor_url)
        self._remember(request, accepted)
        return accepted

    def _claim(self, request: RollbackRequest, audit_id: str) -> str:
        event_id = request.source_event_id or ""
        manual = not request.automatic
        owner = self.rt.markers.claim_event(
            event_id,
            audit_id,
            authenticated_by=request.authenticated_by,
            fingerprint=fingerprint(request) if manual else None,
        )
        if owner != audit_id and manual:
            stored = self.rt.markers.event_fingerprint(event_id)
            fields = fingerprint_mismatch(stored, fingerprint(request))
            if fields:
                raise RequestMismatch(event_id, fields)
        return owner

    def _absorb(self, request: RollbackRequest, audit_id: str, holder: str) -> Acceptance:
        """Record the incident, linked to the rollback in flight; nothing is started."""
        self.rt.audit.create(
            AuditRecord(
                audit_id=audit_id,
                environment=request.environment,
                service=request.service,
                status=Status.ABSORBED,
                requested_at=utcnow(),
                requested_by=request.requested_by,
                trigger=request.trigger,
                reason=request.reason,
                source_event_id=request.source_event_id,
                outcome_reason=f"a rollback of {request.environment}/{request.service} was "
                f"in flight (audit {holder}): this incident is linked to it",
                dry_run=request.dry_run,
                authenticated_by=request.authenticated_by,
                linked_audit_id=holder,
            )
        )
        absorbed = Acceptance("absorbed", audit_id, linked_audit_id=holder)
        self._remember(request, absorbed)
        return absorbed

    def _duplicate(self, request: RollbackRequest, owner: str) -> Acceptance:
        started = self.launcher.run_of(owner)
        linked = None
        if started is None:
            record = self.rt.audit.get(owner)
            if record is not None:
                linked = record.linked_audit_id
                url = self.config.flow_run_url(record.flow_run_id)
                started = Started(record.flow_run_id, url)
            else:
                # Claimed, but no run ever recorded it (the process died in between):
                # start it now under the same audit id and idempotency key.
                log.warning(
                    "event %s was claimed by %s but never ran: starting it",
                    printable(request.source_event_id),
                    owner,
                )
                started = self.launcher.start(request, owner, request.source_event_id or owner)
        dup = Acceptance(
            "duplicate",
            owner,
            started.flow_run_id if started else None,
            started.monitor_url if started else None,
            linked,
        )
        if started is not None:
            self._remember(request, dup)
        return dup


def printable(value: object, limit: int = 200) -> str:
    """Text from outside, safe for one log line: cut to ``limit`` and every control or
    non-printable character escaped (no forged log lines)."""
    text = str(value)[:limit]
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")
