"""Do not fight the platform: when ECS (deployment circuit breaker with rollback) or
CodeDeploy (automatic rollback covering the event) rolls a failed deployment back by
itself, we record that rollback, mark the failed version bad once the switch happened,
notify, and watch that the service settles on another version. Only if it does not
within the service's ``stabilize_timeout_s`` is our own rollback requested — through
the one ``Intake``, like every automatic request.

The watch runs in a background thread of the receiver (one per incident); the event is
claimed first, so a redelivery (or ECS's second event kind about the same deployment)
starts no second watch. Each watch is kept open in the marker store until it ends, with
its deadline (wall clock, from the event): a receiver that starts again resumes the open
ones (``resume``), the deadline unchanged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flows.launch import Acceptance, InFlight, Intake, printable
from rollback.config import Config
from rollback.errors import RollbackError
from rollback.models import DeploymentRecord, iso, new_id, parse_iso, utcnow
from rollback.notifiers.mail import subject_of
from rollback.notifiers.platform import PLATFORM_TRIGGERS, platform_slack, platform_text
from rollback.platform_rollbacks import PlatformFailure, PlatformRollbacks, codedeploy_covers
from rollback.runtime import Runtime

log = logging.getLogger(__name__)

Notify = Callable[[str, str, str, str], None]  # environment, service, subject, body


@dataclass(frozen=True)
class Plan:
    """The platform rolls ``failure`` back itself; ``failed`` is the version it leaves."""

    failure: PlatformFailure
    failed: str
    timeout_s: float
    poll_s: float
    deadline: datetime | None = None  # set when the watch starts; kept across restarts

    def as_json(self, authenticated_by: str) -> dict[str, object]:
        """What the marker store keeps of an open watch (plain JSON)."""
        data = asdict(self) | {"authenticated_by": authenticated_by}
        return data | {"deadline": iso(self.deadline) if self.deadline else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> tuple[Plan, str]:
        """The plan and the credential of a watch kept by ``as_json``."""
        plan = cls(
            failure=PlatformFailure(**data["failure"]),
            failed=str(data["failed"]),
            timeout_s=float(data["timeout_s"]),
            poll_s=float(data["poll_s"]),
            deadline=parse_iso(data.get("deadline")),
        )
        return plan, str(data["authenticated_by"])

    def seconds_left(self) -> float:
        if self.deadline is None:
            return self.timeout_s
        return max(0.0, (self.deadline - utcnow()).total_seconds())


@dataclass(frozen=True)
class WatchStarted:
    status: str  # watching | duplicate
    watch_id: str


class PlatformWatch:
    """Decides whether the platform rolls back itself, and watches it do so."""

    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        intake: Intake,
        platform: PlatformRollbacks,
        notify: Notify | None = None,
    ) -> None:
        self.config = config
        self.rt = runtime
        self.intake = intake
        self.platform = platform
        self.notify = notify or self._default_notify
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="platform-watch")
        self._in_flight = InFlight()
        self._lock = threading.Lock()
        self._running: set[str] = set()  # watch ids watched by this process
        self._not_kept: set[str] = set()  # watches the store did not take (not durable)
        self._stopping = threading.Event()
        self.results: dict[str, str] = {}

    # -- the decision (blocking I/O: one platform read) --------------------------------
    def plan(self, failure: PlatformFailure) -> Plan | None:
        """A plan when the platform rolls this failure back itself, else None."""
        svc = self.config.service(failure.environment, failure.service)
        timeout = float(getattr(svc, "stabilize_timeout_s", 600))
        poll = float(getattr(svc, "poll_interval_s", 5))
        if failure.platform == "ecs":
            state = self.platform.ecs_service(svc.cluster, svc.service)  # type: ignore[attr-defined]
            if not state.circuit_breaker_rollback:
                return None
            failed = state.task_definition_of(failure.deployment_id) or state.task_definition
            return Plan(failure, failed, timeout, poll)
        info = self.platform.codedeploy_deployment(failure.deployment_id)
        covered = codedeploy_covers(
            failure.state, info.auto_rollback_enabled, info.auto_rollback_events
        )
        if not covered and not info.rollback_deployment_id:
            return None
        return Plan(failure, failure.deployment_id, timeout, poll)

    def start(self, plan: Plan, authenticated_by: str) -> WatchStarted:
        """Claim the event and watch in the background (a duplicate starts nothing)."""
        watch_id = f"watch-{new_id()}"
        owner = self.rt.markers.claim_event(
            plan.failure.source_event_id, watch_id, authenticated_by=authenticated_by
        )
        if owner != watch_id:
            return WatchStarted("duplicate", owner)
        plan = replace(plan, deadline=utcnow() + timedelta(seconds=plan.timeout_s))
        # Kept open before watching: a receiver that stops now resumes it on start.
        try:
            self.rt.markers.open_watch(watch_id, plan.as_json(authenticated_by))
        except RollbackError as exc:  # the event is claimed: watch anyway, not durably
            log.warning("watch %s not kept open (a restart would lose it): %s", watch_id, exc)
            self._not_kept.add(watch_id)
        self._submit(watch_id, plan, authenticated_by)
        return WatchStarted("watching", watch_id)

    def resume(self) -> None:
        """Resume, in the background, the watches an earlier receiver left open (their
        deadlines unchanged). Called once when the receiver starts."""
        self._submit_call(self._resume_open)

    def _resume_open(self) -> None:
        try:
            kept = self.rt.markers.open_watches()
        except RollbackError as exc:
            log.warning("could not read the open platform watches: %s", exc)
            return
        for watch_id, data in kept.items():
            plan, authenticated_by = Plan.from_json(data)
            failure = plan.failure
            log.info("resuming watch %s of %s/%s", watch_id, failure.environment, failure.service)
            self._submit(watch_id, plan, authenticated_by)

    def _submit(self, watch_id: str, plan: Plan, authenticated_by: str) -> None:
        with self._lock:
            if watch_id in self._running:
                return
            self._running.add(watch_id)
        self._submit_call(self._watch, watch_id, plan, authenticated_by)

    def _submit_call(self, fn: Callable[..., None], *args: Any) -> None:
        self._in_flight.track(self._pool.submit(fn, *args))

    def wait_idle(self, timeout: float = 60) -> bool:
        return self._in_flight.wait(timeout)

    def close(self) -> None:
        """Stop watching (the receiver ends): the watches stay open in the store, for
        the next receiver to resume."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:  # a watch cancelled before it ran is stopped too, not lost
            for watch_id in self._running:
                self.results.setdefault(watch_id, "stopped")

    # -- the watch -----------------------------------------------------------------------
    def _watch(self, watch_id: str, plan: Plan, authenticated_by: str) -> None:
        failure = plan.failure
        try:
            started = utcnow()
            now = self._await_switch(plan)
            if self._stopping.is_set():
                self.results[watch_id] = "stopped"  # still open: the next receiver resumes
                return
            if now is not None:
                # Closed first: of two receivers that resumed it, one records it.
                if self.rt.markers.close_watch(watch_id) or watch_id in self._not_kept:
                    self._record(plan, now, started)
                self.results[watch_id] = "rolled_back"
                return
            acceptance = self._fallback(plan, authenticated_by)  # deduplicated by the intake
            self.rt.markers.close_watch(watch_id)
            self.results[watch_id] = f"fallback:{acceptance.status}:{acceptance.audit_id}"
        except Exception as exc:  # noqa: BLE001 - a watch thread must never die silently
            self.results[watch_id] = f"error:{type(exc).__name__}"
            log.exception(
                "watch of %s/%s (%s) failed", failure.environment, failure.service, watch_id
            )

    def _await_switch(self, plan: Plan) -> str | None:
        """The version the service settled on after the platform's rollback, or None
        when it did not within the timeout (or the platform's rollback failed)."""
        deadline = time.monotonic() + plan.seconds_left()
        failure = plan.failure
        rollback_id: str | None = None
        while True:
            if failure.platform == "ecs":
                svc = self.config.service(failure.environment, failure.service)
                state = self.platform.ecs_service(svc.cluster, svc.service)  # type: ignore[attr-defined]
                if state.task_definition != plan.failed and state.steady:
                    return state.task_definition
            else:
                if rollback_id is None:
                    info = self.platform.codedeploy_deployment(failure.deployment_id)
                    rollback_id = info.rollback_deployment_id
                if rollback_id is not None:
                    status = self.platform.codedeploy_deployment(rollback_id).status
                    if status == "Succeeded":
                        return rollback_id
                    if status in ("Failed", "Stopped"):
                        return None
            if time.monotonic() >= deadline:
                return None
            if self._stopping.wait(min(plan.poll_s, max(0.0, deadline - time.monotonic()))):
                return None

    def _record(self, plan: Plan, now: str, started: datetime) -> None:
        failure = plan.failure
        env, service = failure.environment, failure.service
        # The switch away happened: only now is the failed version marked bad.
        self.rt.markers.mark_bad(env, service, plan.failed)
        self.rt.history.append(
            DeploymentRecord(
                environment=env,
                service=service,
                version=now,
                status="success",
                kind="rollback",
                from_version=plan.failed,
                trigger=PLATFORM_TRIGGERS[failure.platform],
                started_at=started,
                finished_at=utcnow(),
            )
        )
        log.info(
            "%s rolled %s/%s back from %s to %s",
            failure.platform,
            env,
            service,
            printable(plan.failed),
            printable(now),
        )
        subject, body = platform_text(
            failure.platform, env, service, plan.failed, now, "rolled_back"
        )
        self._tell(env, service, subject, body)

    def _fallback(self, plan: Plan, authenticated_by: str) -> Acceptance:
        failure = plan.failure
        log.warning(
            "%s did not roll %s/%s back within %ss: requesting our own rollback",
            failure.platform,
            failure.environment,
            failure.service,
            plan.timeout_s,
        )
        subject, body = platform_text(
            failure.platform, failure.environment, failure.service, plan.failed, None, "timeout"
        )
        self._tell(failure.environment, failure.service, subject, body)
        request = failure.request("#platform-timeout").model_copy(
            update={
                "authenticated_by": authenticated_by,
                "reason": (
                    f"{failure.reason} — the platform's own rollback did not complete "
                    f"within {plan.timeout_s:g}s"
                )[:500],
            }
        )
        return self.intake.submit(request)

    def _tell(self, environment: str, service: str, subject: str, body: str) -> None:
        try:
            self.notify(environment, service, subject, body)
        except (RollbackError, OSError) as exc:
            log.warning("could not notify about %s/%s: %s", environment, service, exc)

    def _default_notify(self, environment: str, service: str, subject: str, body: str) -> None:
        """Slack and the SNS e-mail topic, whichever are configured."""
        slack = self.rt.slack()
        cfg = self.config.notifications.slack
        if slack is not None and cfg is not None:
            slack.send(platform_slack(subject, body, cfg.channel_for(environment)))
        sns = self.config.notifications.sns
        topic = sns.topic_for(environment) if sns else None
        if topic:
            self.rt.sns().publish(topic, subject_of(subject), body)
