"""The rollback flow: one Prefect flow run per rollback, the same for every trigger.

Reads like the runbook: record the request → prepare (take the service lock, recover an
interrupted run, resolve the target, safety checks) → the typed confirmation for
protected environments → execute → stabilize and verify → record → notify.

Each stage is one task run (Prefect's bookkeeping of a task run cost ~40 ms of CPU in
the client and the server together here: bench/RESULTS.md, storm): the steps before the
change are one ``prepare``, stabilize and verify one stage, each step logged in its
stage, so a rollback is six task runs and the run's log and timeline still read step by
step.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from prefect import flow, get_client, get_run_logger
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.context import get_run_context
from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
from prefect.input import RunInput

from flows.pause import pause_for_input
from rollback import decisions, entrance, progress
from rollback.config import Config, load_config
from rollback.errors import ConfigError, RollbackError
from rollback.models import (
    CheckResult,
    RollbackOutcome,
    RollbackRequest,
    Status,
    iso,
    new_id,
    service_limit_name,
    utcnow,
)
from rollback.runtime import Runtime
from rollback.targets.base import RunContext
from rollback.text import log_safe
from tasks.audit import open_audit, record_outcome
from tasks.execute import execute
from tasks.notify import notify, show_plan
from tasks.resolve import Resolution
from tasks.safety import prepare, release_lock
from tasks.stabilize import stabilize

CONFIRM_TIMEOUT_S = 900
HTTP_LOCKED = 423  # the server's answer when the service's slot is held


class ConfirmRollback(RunInput):
    """Type the confirmation text to roll back a protected environment."""

    confirmation: str


@flow(
    name="rollback",
    flow_run_name="rollback-{request.environment}-{request.service}",
    persist_result=False,
    validate_parameters=True,
)
def rollback_flow(
    request: RollbackRequest, config_path: str | None = None, audit_id: str | None = None
) -> dict[str, Any]:
    """Roll one service back to its last good version (or the version in ``to``).

    Args:
        request: The rollback to perform: which service, to what, why and who asks.
        config_path: The YAML config file; empty means $ROLLBACK_CONFIG on the worker.
        audit_id: Leave empty: set by the webhook receiver to name the audit record.
    """
    config = load_config(config_path)
    return run_rollback(request, config, audit_id=audit_id)


def run_rollback(
    request: RollbackRequest,
    config: Config,
    runtime: Runtime | None = None,
    audit_id: str | None = None,
) -> dict[str, Any]:
    # Bad input is a clear error before anything is written or touched.
    config.service(request.environment, request.service)
    rt = runtime or Runtime(config)
    run = _Run(request, rt, audit_id or new_id())
    return run.go().as_dict() | {"headline": run.outcome.headline}


class _Run:
    """State of one rollback run; each method is one step of the runbook."""

    def __init__(self, request: RollbackRequest, rt: Runtime, audit_id: str) -> None:
        self.request = request
        self.rt = rt
        self.log = get_run_logger()
        self.started = time.monotonic()
        ctx = get_run_context()
        flow_run = getattr(ctx, "flow_run", None)
        self.flow_run_id = str(flow_run.id) if flow_run else None
        self.in_deployment = bool(flow_run and flow_run.deployment_id)
        self.deployment_id = flow_run.deployment_id if flow_run else None
        self.outcome = RollbackOutcome(
            status="requested",
            environment=request.environment,
            service=request.service,
            audit_id=audit_id,
            flow_run_id=self.flow_run_id,
            trigger=request.trigger,
            requested_by=request.requested_by,
            request_reason=request.reason,
        )
        self.locked = False
        self.deploy_failed = False
        self.finishing = False

    def step(self, event: str) -> None:
        self.outcome.timeline.append((iso(utcnow()) or "", event))
        progress.emit(event)

    def go(self) -> RollbackOutcome:
        # 0. Which entrance asked: a deployment run's parameters never make it automatic.
        admission = self._admit()
        self.request = self.request.model_copy(
            update={
                "trigger": admission.trigger,
                "authenticated_by": admission.authenticated_by,
            }
        )
        self.outcome.trigger = admission.trigger
        req, rt, audit_id = self.request, self.rt, self.outcome.audit_id
        rt.run_context = RunContext(
            audit_id=audit_id,
            environment=req.environment,
            service=req.service,
            reason=req.reason,
            requested_by=req.requested_by,
            trigger=req.trigger,
        )
        # 1. The audit record exists before anything is checked or changed.
        open_audit(rt, req, audit_id, self.flow_run_id)
        self.step(
            f"requested by {req.requested_by} ({req.trigger}, via {req.authenticated_by}): "
            f"{req.reason or 'no reason'}"
        )
        if admission.note:
            self.log.warning("%s", admission.note)
            self.step(admission.note)
        try:
            # On a Prefect server, a service's runs also take its global concurrency
            # slot, so the UI shows who holds the service (the lease lock still decides).
            with self._service_slot():
                return self._checked_rollback()
        except ConcurrencySlotAcquisitionError as exc:
            where = f"{req.environment}/{req.service}"
            if not _slot_held(exc):
                return self._finish(
                    Status.FAILED,
                    f"could not take the concurrency slot of {where}: {exc} (nothing was changed)",
                )
            slot = CheckResult(
                "service_slot", False, f"another run holds the concurrency slot of {where}"
            )
            self.outcome.checks = [slot]
            return self._finish(Status.REFUSED, slot.detail)
        except RollbackError as exc:
            if self.finishing:  # the final write itself failed: nothing more to record
                raise
            # Before any change (a change's own errors are handled in _change).
            return self._finish(Status.FAILED, f"{exc} (nothing was changed)")
        finally:
            if self.locked:
                try:
                    release_lock(rt, req, audit_id)
                except RollbackError as exc:  # the lease runs out by itself
                    self.log.warning("could not release the lock (its lease expires): %s", exc)

    def _end_dead_run(self, flow_run_id: str | None, dead_audit_id: str) -> None:
        """The dead attempt's flow run would stay RUNNING forever (its process is gone):
        end it CRASHED, naming who found it. Best effort: the audit already says it."""
        from uuid import UUID

        from prefect.states import Crashed

        if not flow_run_id:
            return
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(UUID(flow_run_id))
                if run.state is None or run.state.is_final():
                    return
                client.set_flow_run_state(
                    run.id,
                    Crashed(
                        message=f"rollback {dead_audit_id} was interrupted (its process ended); "
                        f"found and resumed by {self.outcome.audit_id}"
                    ),
                    force=True,
                )
            self.log.warning(
                "flow run %s of rollback %s marked crashed", flow_run_id, dead_audit_id
            )
        except Exception as exc:  # noqa: BLE001 - another server's run, or none: the audit tells
            self.log.info("could not end flow run %s: %s", flow_run_id, type(exc).__name__)

    def _admit(self) -> entrance.Admission:
        """The trigger and credential this run really has (see ``rollback.entrance``)."""
        import getpass

        req, audit_id = self.request, self.outcome.audit_id
        deployment: str | None = None
        claim = None
        if self.deployment_id is not None:
            with get_client(sync_client=True) as client:
                deployment = client.read_deployment(self.deployment_id).name
            self.rt.ensure_tables()
            claim = self.rt.markers.event_claim(entrance.claim_key(req, audit_id))
        return entrance.admit(
            req,
            audit_id=audit_id,
            deployment=deployment,
            claim=claim,
            local_user=getpass.getuser(),
        )

    def _checked_rollback(self) -> RollbackOutcome:
        req, rt, audit_id = self.request, self.rt, self.outcome.audit_id
        # 2. Prepare, one task run: the service lock (one rollback per service at a time,
        # across processes and hosts), an interrupted attempt marked and resumed, the
        # target, then every check (all recorded, even after one fails). Until it
        # answers, the lock may be ours: releasing a lock someone else holds is a no-op.
        self.locked = True
        plan = prepare(rt, req, audit_id)
        self.locked = plan.locked
        interrupted, resolution, checks = plan.interrupted, plan.resolution, plan.checks
        if interrupted:
            self.step(f"found interrupted rollback {interrupted.audit_id}: marked interrupted")
            self._end_dead_run(interrupted.flow_run_id, interrupted.audit_id)
        self.outcome.from_version = resolution.from_version
        self.outcome.to_version = resolution.target.id if resolution.target else None
        self.deploy_failed = self._deploy_failed(resolution)
        # The plan goes on the timeline before any question about it is asked.
        self.step(
            ("DRY RUN " if req.dry_run else "")
            + f"plan: {resolution.from_version} → {self.outcome.to_version or '?'} "
            f"({resolution.source}); {sum(c.passed for c in checks)}/{len(checks)} checks pass"
        )
        self.outcome.checks = checks
        checks.append(self._confirmation(resolution, checks))
        failed = [c for c in checks if not c.passed]
        if failed:
            return self._finish(Status.REFUSED, "; ".join(f"{c.name}: {c.detail}" for c in failed))
        if req.dry_run:
            return self._finish(Status.PLANNED, None)
        assert resolution.target is not None
        return self._change(resolution)

    def _change(self, resolution: Resolution) -> RollbackOutcome:
        req, rt, audit_id = self.request, self.rt, self.outcome.audit_id
        change = resolution.change
        try:
            # 4. Execute. The record names from/to before the change (in the same task
            # run, first), so a crash loses nothing; a resumed attempt does not switch twice.
            self.step(execute(rt, req, audit_id, change, self.outcome.checks))
            # 5. Stabilize: the version left is marked bad (only a switch that happened
            # gets here), then wait for the platform to settle on the target.
            # 6. Verify what really runs (same task run: both only read the platform).
            settled = stabilize(rt, req, audit_id, change)
            if not settled.stable.stable:
                return self._finish(Status.FAILED, f"stabilization: {settled.stable.detail}")
            self.step(f"stable: {settled.stable.detail}")
            results = settled.verification
            self.outcome.checks = [*self.outcome.checks, *results]
            bad_results = [c for c in results if not c.passed]
            if bad_results:
                return self._finish(
                    Status.FAILED,
                    "verification: " + "; ".join(f"{c.name}: {c.detail}" for c in bad_results),
                )
            self.step("verified")
            return self._finish(Status.SUCCEEDED, None)
        except RollbackError as exc:
            return self._finish(Status.FAILED, f"{type(exc).__name__}: {exc}")

    def _service_slot(self) -> AbstractContextManager[object]:
        """The service's strict 1-slot limit, when this run is a deployment run on a
        server that has it (created by the stack/deploy step); otherwise nothing."""
        if not self.in_deployment:  # an ephemeral API shares nothing across processes
            return nullcontext()
        name = service_limit_name(self.request.environment, self.request.service)
        with get_client(sync_client=True) as client:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                self.log.warning("no concurrency limit %s on the server: lock only", name)
                return nullcontext()
        # A second run of the same service is refused, not queued behind it: no retry
        # after the server's 423. No timeout either: a busy server is slow, not "held"
        # (a 2 s timeout refused lone runs when several runs started at once).
        return concurrency(name, occupy=1, strict=True, max_retries=0)

    def _confirmation(self, resolution: Resolution, checks: list[CheckResult]) -> CheckResult:
        req, cfg = self.request, self.rt.config
        env = cfg.environment(req.environment)
        if req.automatic:
            return CheckResult(
                "confirmation", True, "automatic trigger: environment policy applies"
            )
        if req.dry_run:  # a plan changes nothing: there is nothing to confirm
            return CheckResult("confirmation", True, "dry run: nothing changes, nothing to confirm")
        expected = cfg.confirmation_for(req.environment)
        given = req.confirmation
        if env.protected and given is None and self.in_deployment and all(c.passed for c in checks):
            given = self._ask_confirmation(resolution, checks, expected)
            # The world may have moved while a person read the plan: re-check it.
            now_runs = self.rt.target(req.environment, req.service).current()
            if now_runs.id != resolution.current.id:
                return CheckResult(
                    "confirmation",
                    False,
                    f"the service changed to {now_runs} while waiting for confirmation: "
                    "request the rollback again",
                )
        return decisions.check_confirmation(given, expected, env.protected)

    def _ask_confirmation(
        self, resolution: Resolution, checks: list[CheckResult], expected: str
    ) -> str | None:
        """Pause the deployment run; the Prefect UI shows the plan and a form."""
        plan = "\n".join(
            f"- {c.name}: {'pass' if c.passed else 'FAIL'} — {c.detail}" for c in checks
        )
        description = (
            f"**Protected environment {self.request.environment}.** Roll "
            f"{self.request.service} back from {resolution.from_version} to "
            f"{self.outcome.to_version}? Type `{expected}` to confirm.\n\n{plan}"
        )
        # Keep the service lock for as long as the question may stay open.
        req, rt = self.request, self.rt
        rt.locks.renew(
            req.environment,
            req.service,
            self.outcome.audit_id,
            CONFIRM_TIMEOUT_S + rt.config.stores.lock_lease_s,
        )
        # The plan in plain sight while it waits: timeline, log lines, artifact, state.
        deadline = utcnow() + _seconds(CONFIRM_TIMEOUT_S)
        waiting = (
            f"waiting for {expected} until {deadline:%H:%M} UTC: open ⋮ → Resume and type "
            f"it to roll {req.service} back from {resolution.from_version} to "
            f"{self.outcome.to_version}"
        )
        self.step(waiting)
        for c in checks:
            self.log.info(
                "check %s: %s — %s", c.name, "pass" if c.passed else "FAIL", log_safe(c.detail)
            )
        self.log.warning("%s", log_safe(waiting))  # the last line before the pause
        show_plan(self.outcome, rt.config.flow_run_url(self.flow_run_id), waiting)
        asked = time.monotonic()
        try:
            answer = pause_for_input(
                ConfirmRollback.with_initial_data(description=description),
                message=waiting,
                timeout=CONFIRM_TIMEOUT_S,
            )
        except FlowPauseTimeout:
            self.step(f"no confirmation by {deadline:%H:%M} UTC: waited {CONFIRM_TIMEOUT_S}s")
            return None
        self.step(f"answered after waiting {round(time.monotonic() - asked)}s")
        return str(answer.confirmation)

    def _deploy_failed(self, resolution: Resolution) -> bool:
        """Was the version being rolled back from a failed deploy? Only when the history
        says so, or the trigger was a failed-deploy event (honest outcome)."""
        if self.request.trigger == "webhook":  # a failed deploy run or deployment status
            return True
        return any(
            r.version == resolution.current.id and r.kind == "deploy" and r.status == "failed"
            for r in resolution.history
        )

    def _cause(self) -> str | None:
        """What started an automatic rollback that was not a failed deploy."""
        req = self.request
        if req.trigger == "alarm":
            name = req.requested_by.removeprefix("cloudwatch:")
            return f"Alarm {name!r} fired"
        if req.trigger == "health":
            return "Health check failed"
        if req.trigger == "verification":
            return "Deploy verification failed"
        if req.automatic:
            return f"Automatic trigger {req.trigger!r}"
        return None

    def _finish(self, status: Status, reason: str | None) -> RollbackOutcome:
        req, rt, out = self.request, self.rt, self.outcome
        self.finishing = True
        out.status = status.value
        out.reason = reason
        out.duration_s = round(time.monotonic() - self.started, 3)
        try:
            # The outcome is recorded (and the service freed) before anyone is told.
            record_outcome(rt, req, out, release_lock=self.locked)
            self.locked = False
        except RollbackError as exc:
            # AWS went away after the change: the run still ends, says where it stands,
            # and tells people; the record stays in flight until the next request finds it.
            self.log.error("could not record the outcome: %s", exc)
            out.reason = (f"{reason}; " if reason else "") + (
                f"the outcome could not be recorded ({exc}): the next request for "
                f"{req.environment}/{req.service} marks this attempt interrupted and "
                "resumes from what the service runs"
            )
            if status != Status.REFUSED:
                out.status = Status.FAILED.value
        out.headline = decisions.headline(
            out.status,
            req.environment,
            req.service,
            out.from_version,
            out.to_version,
            self.deploy_failed,
            self._cause(),
        )
        if req.dry_run and not out.headline.startswith("DRY RUN"):
            out.headline = f"DRY RUN: {out.headline}"
        self.step(out.headline + (f" — {out.reason}" if out.reason else ""))
        try:
            notify(rt, out, rt.config.flow_run_url(self.flow_run_id))
        except RollbackError as exc:  # a lost notification never changes the outcome
            self.log.error("notification failed: %s", exc)
        return out


def _slot_held(exc: ConcurrencySlotAcquisitionError) -> bool:
    """Did the server answer "held" (423), rather than fail to answer?"""
    response = getattr(exc.__cause__, "response", None)
    return getattr(response, "status_code", None) == HTTP_LOCKED


def _seconds(value: float | None) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value or 0)


__all__ = ["rollback_flow", "run_rollback", "ConfigError"]
