"""Safety stage: everything before a change, in one task run (``prepare``): the lock,
interrupted-run recovery, the bad versions, the target and every check. Each step is
logged, so the run's log reads as the runbook. A failed check is an answer (recorded,
never retried), not an error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from prefect import get_run_logger

from rollback import decisions
from rollback.errors import AlreadyRecordedError, LockHeldError
from rollback.models import AuditRecord, CheckResult, RollbackRequest, Status, utcnow
from rollback.runtime import Runtime
from rollback.targets.base import DESTROY_CHECK
from tasks._common import stage
from tasks.resolve import Resolution, resolve_target


@dataclass(frozen=True)
class Plan:
    """What ``prepare`` found: the lock, the attempt it resumes (if any), the target and
    every check (the lock first)."""

    locked: bool
    interrupted: AuditRecord | None
    resolution: Resolution
    checks: list[CheckResult]


@stage("prepare")
def prepare(rt: Runtime, request: RollbackRequest, audit_id: str) -> Plan:
    """Lock → interrupted attempt → bad versions → target → checks. Every step reads or
    takes only what is ours (a retry after a transient fault is safe: the lock is
    re-entrant for this audit id, recovery and reads are idempotent)."""
    log = get_run_logger()
    # One rollback per service at a time, across processes and hosts.
    lock = acquire_lock(rt, request, audit_id)
    log.info("lock: %s", lock.detail)
    # A dead attempt's record would stay in flight forever: mark it, resume from it.
    interrupted = recover_interrupted(rt, request, audit_id) if lock.passed else None
    log.info("interrupted: %s", interrupted.audit_id if interrupted else "none found")
    bad = rt.markers.bad_versions(request.environment, request.service)
    log.info("bad versions: %s", ", ".join(sorted(bad)) or "none")
    resolution = resolve_target(rt, request, bad, interrupted)
    chosen = resolution.target or "none"
    log.info("target: %s (%s)", chosen, resolution.source)
    # Every check, all recorded, even after one fails.
    checks = [lock, *run_checks(rt, request, audit_id, resolution, bad)]
    return Plan(lock.passed, interrupted, resolution, checks)


def acquire_lock(rt: Runtime, request: RollbackRequest, audit_id: str) -> CheckResult:
    try:
        rt.locks.acquire(
            request.environment, request.service, audit_id, rt.config.stores.lock_lease_s
        )
    except LockHeldError as exc:
        return CheckResult("service_lock", False, str(exc))
    return CheckResult("service_lock", True, f"lock held by this rollback ({audit_id})")


@stage("release-lock")
def release_lock(rt: Runtime, request: RollbackRequest, audit_id: str) -> None:
    rt.locks.release(request.environment, request.service, audit_id)


def recover_interrupted(rt: Runtime, request: RollbackRequest, audit_id: str) -> AuditRecord | None:
    """Mark attempts whose process died mid-change as interrupted; return the newest."""
    recent = rt.audit.recent(request.environment, request.service, limit=50)
    dead = decisions.find_interrupted(recent, audit_id)
    for record in dead:
        try:
            rt.audit.transition(
                record.audit_id,
                Status.INTERRUPTED,
                outcome_reason=f"process ended during {record.status.value}; found by {audit_id}",
            )
            get_run_logger().warning(
                "rollback %s (%s -> %s) was interrupted during %s",
                record.audit_id,
                record.from_version,
                record.to_version,
                record.status.value,
            )
        except AlreadyRecordedError:
            pass
    return max(dead, key=lambda r: r.requested_at) if dead else None


def run_checks(
    rt: Runtime,
    request: RollbackRequest,
    audit_id: str,
    resolution: Resolution,
    bad: frozenset[str],
) -> list[CheckResult]:
    env = rt.config.environment(request.environment)
    now = utcnow()
    recent = rt.audit.recent(request.environment, request.service, since=now - timedelta(hours=1))
    checks = [
        decisions.check_loop(request),
        decisions.check_auto_policy(
            request,
            recent,
            auto_rollback=env.auto_rollback,
            cooldown_s=env.cooldown_s,
            max_per_hour=env.max_auto_per_hour,
            now=now,
            own_audit_id=audit_id,
        ),
    ]
    target = resolution.target
    if target is None:
        checks.append(CheckResult("target_resolved", False, resolution.source))
        return checks
    checks.append(CheckResult("target_resolved", True, f"{target} ({resolution.source})"))
    current = resolution.current
    if resolution.resumed and current.id == target.id:
        checks.append(decisions.check_not_on_target(current, target, resolution.resumed))
    else:
        checks += _identity(rt, request, resolution)
        checks += [
            decisions.check_not_on_target(current, target, None),
            decisions.check_not_bad(target, bad),
        ]
        checks += _migration_gate(rt, request, resolution, bad, now)
        for c in rt.target(request.environment, request.service).check(current, target):
            if c.name == DESTROY_CHECK and not c.passed and request.allow_destroy:
                c = CheckResult(c.name, True, f"{c.detail} (allowed by the request)")
            checks.append(c)
    log = get_run_logger()
    for c in checks:
        log.info("check %-22s %s  %s", c.name, "pass" if c.passed else "FAIL", c.detail)
    return checks


def _identity(rt: Runtime, request: RollbackRequest, resolution: Resolution) -> list[CheckResult]:
    """The target is this service's own version (``known_version`` where the platform
    cannot prove it) and older than what runs (``target_older``)."""
    target, current = resolution.target, resolution.current
    assert target is not None
    checks = []
    platform = rt.target(request.environment, request.service)
    if not platform.proves_versions:
        cfg = rt.config.service(request.environment, request.service)
        spec = request.to  # what the person typed, e.g. the tag of a steps release
        image_found = None
        matched = decisions.pattern_match(cfg.version_pattern, target, spec)
        if matched and cfg.ecr_repository:
            image_found = rt.ecr_images().exists(cfg.ecr_repository, matched)
        checks.append(
            decisions.check_known_version(
                target,
                spec,
                resolution.history,
                pattern=cfg.version_pattern,
                image_found=image_found,
            )
        )
    checks.append(
        decisions.check_target_older(
            current,
            target,
            resolution.history,
            automatic=request.automatic,
            force_order=request.force_order,
            requested_by=request.requested_by,
        )
    )
    return checks


def _migration_gate(
    rt: Runtime,
    request: RollbackRequest,
    resolution: Resolution,
    bad: frozenset[str],
    now: datetime,
) -> list[CheckResult]:
    assert resolution.target is not None
    checks = [
        decisions.check_schema(resolution.history, resolution.target.id, resolution.current.id, bad)
    ]
    cfg = rt.config.service(request.environment, request.service)
    if cfg.rds_snapshot_prefix:
        latest = rt.rds_snapshots().latest(cfg.rds_snapshot_prefix)
        checks.append(
            decisions.check_snapshot(cfg.rds_snapshot_prefix, latest, cfg.snapshot_max_age_h, now)
        )
    return checks
