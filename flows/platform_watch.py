"""Do not fight the platform: when ECS (deployment circuit breaker with rollback) or
CodeDeploy (automatic rollback covering the event) rolls a failed deployment back by
itself, we record that rollback, mark the failed version bad once the switch happened,
notify, and watch that the service settles on another version. Only if it does not
within the service's ``stabilize_timeout_s`` is our own rollback requested — through
the one ``Intake``, like every automatic request.

The watch runs in a background thread of the receiver (one per incident); the event is
claimed first, so a redelivery (or ECS's second event kind about the same deployment)
starts no second watch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from flows.launch import Acceptance, Intake, printable
from rollback.config import Config
from rollback.errors import RollbackError
from rollback.models import DeploymentRecord, new_id, utcnow
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
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()
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
        with self._lock:
            future = self._pool.submit(self._watch, watch_id, plan, authenticated_by)
            self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return WatchStarted("watching", watch_id)

    def wait_idle(self, timeout: float = 60) -> bool:
        import concurrent.futures

        with self._lock:
            futures = list(self._futures)
        _, not_done = concurrent.futures.wait(futures, timeout=timeout)
        return not not_done

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the watch -----------------------------------------------------------------------
    def _watch(self, watch_id: str, plan: Plan, authenticated_by: str) -> None:
        failure = plan.failure
        try:
            started = utcnow()
            now = self._await_switch(plan)
            if now is not None:
                self._record(plan, now, started)
                self.results[watch_id] = "rolled_back"
                return
            acceptance = self._fallback(plan, authenticated_by)
            self.results[watch_id] = f"fallback:{acceptance.status}:{acceptance.audit_id}"
        except Exception as exc:  # noqa: BLE001 - a watch thread must never die silently
            self.results[watch_id] = f"error:{type(exc).__name__}"
            log.exception(
                "watch of %s/%s (%s) failed", failure.environment, failure.service, watch_id
            )

    def _await_switch(self, plan: Plan) -> str | None:
        """The version the service settled on after the platform's rollback, or None
        when it did not within the timeout (or the platform's rollback failed)."""
        deadline = time.monotonic() + plan.timeout_s
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
            time.sleep(min(plan.poll_s, max(0.0, deadline - time.monotonic())))

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
