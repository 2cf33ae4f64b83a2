"""Pure decisions: which version to roll back to, whether each check passes, what the
outcome is called. No boto3, no Prefect: plain functions over plain models."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from rollback.models import (
    ROLLBACK_SOURCE_PREFIX,
    AuditRecord,
    CheckResult,
    DeploymentRecord,
    RollbackRequest,
    Status,
    Version,
)

# Statuses that mean "an automatic rollback really ran" (counted by cooldown and cap).
_ACTED = frozenset({Status.EXECUTING, Status.STABILIZING, Status.SUCCEEDED, Status.FAILED})
_IN_FLIGHT = frozenset({Status.EXECUTING, Status.STABILIZING})


# -- target resolution --------------------------------------------------------------------
def history_candidates(
    records: Iterable[DeploymentRecord], current_id: str, bad: frozenset[str]
) -> list[str]:
    """Versions of successful deploys, newest first, minus the current and bad ones.

    The caller looks each up on the platform and keeps the first that is older than the
    current version (``is_older``).
    """
    ordered = sorted(
        (r for r in records if r.kind == "deploy" and r.status == "success"),
        key=lambda r: r.started_at or r.finished_at or datetime.min,
        reverse=True,
    )
    seen: list[str] = []
    for record in ordered:
        if (
            record.version != current_id
            and record.version not in bad
            and record.version not in seen
        ):
            seen.append(record.version)
    return seen


def is_older(target: Version, current: Version) -> bool | None:
    """True/False when both versions carry an order; None when the platform has none."""
    if target.order is None or current.order is None:
        return None
    return target.order < current.order


def fallback_candidates(
    candidates: Sequence[Version], current: Version, bad: frozenset[str]
) -> list[Version]:
    """Platform versions older than current, active and not bad, newest first (used when
    the history has nothing usable); the caller keeps the first whose checks pass."""
    return [
        v
        for v in candidates
        if v.id != current.id and v.id not in bad and v.active and is_older(v, current) is not False
    ]


# -- safety checks ------------------------------------------------------------------------
def _deployed_at(record: DeploymentRecord) -> datetime | None:
    return record.started_at or record.finished_at


def _last_deploy(records: Iterable[DeploymentRecord], version_id: str) -> datetime | None:
    """When ``version_id`` last went live by a deploy (of any outcome); rollbacks to it
    do not count: they say nothing about which release came first."""
    times = [
        t
        for r in records
        if r.kind == "deploy" and version_id in (r.version, r.image_tag)
        for t in (_deployed_at(r),)
        if t is not None
    ]
    return max(times) if times else None


def version_order(
    target: Version, current: Version, records: Iterable[DeploymentRecord] = ()
) -> tuple[bool | None, str]:
    """(is the target older than current?, on what basis). The platform's order where it
    has one, else the history's deploy times (the latest deploy of each); None when
    neither can tell."""
    older = is_older(target, current)
    if older is not None:
        return older, "platform order"
    records = list(records)
    target_at, current_at = _last_deploy(records, target.id), _last_deploy(records, current.id)
    if target_at is None or current_at is None:
        unknown = [str(v) for v, at in ((target, target_at), (current, current_at)) if at is None]
        return None, f"no deploy of {' or '.join(unknown)} in the history"
    basis = f"history: {target.id} deployed {target_at:%Y-%m-%d %H:%M}, {current.id} {current_at:%Y-%m-%d %H:%M}"
    return target_at < current_at, basis


def check_target_older(
    current: Version,
    target: Version,
    records: Iterable[DeploymentRecord] = (),
    *,
    automatic: bool = False,
    force_order: bool = False,
    requested_by: str = "",
) -> CheckResult:
    """A rollback only goes back. An order that cannot be established is refused for
    automatic triggers; a human may override it (``force_order``), and the detail says so."""
    older, basis = version_order(target, current, records)
    if older:
        return CheckResult("target_older", True, f"{target} is older than {current} ({basis})")
    if older is False:
        return CheckResult(
            "target_older",
            False,
            f"{target} is not older than the current {current} ({basis}): "
            "a rollback only goes back",
        )
    if automatic:
        return CheckResult(
            "target_older",
            False,
            f"cannot tell whether {target} is older than {current} ({basis}): "
            "an automatic rollback needs a known order",
        )
    if force_order:
        return CheckResult(
            "target_older",
            True,
            f"order of {target} and {current} unknown ({basis}): forced by "
            f"{requested_by or 'the requester'} with --force-order",
        )
    return CheckResult(
        "target_older",
        False,
        f"cannot tell whether {target} is older than {current} ({basis}): "
        "check it and rerun with --force-order",
    )


def check_known_version(
    target: Version,
    spec: str | None,
    records: Iterable[DeploymentRecord],
    *,
    pattern: str | None = None,
    image_found: bool | None = None,
) -> CheckResult:
    """For platforms that cannot prove a version is the service's own: the target must be
    a successful deploy of this service in the history, or match ``pattern`` (whole) and,
    when ``image_found`` is not None (an ECR repository is configured), exist there."""
    names = {target.id, *([spec.strip()] if spec and spec.strip() else [])}
    for record in records:
        if (
            record.kind == "deploy"
            and record.status == "success"
            and names & {record.version, record.image_tag}
        ):
            when = _deployed_at(record)
            at = f" on {when:%Y-%m-%d %H:%M}" if when else ""
            return CheckResult(
                "known_version", True, f"{target} was deployed successfully{at} (history)"
            )
    matched = pattern_match(pattern, target, spec)
    if matched is None:
        hint = f" and does not match version_pattern {pattern}" if pattern else ""
        return CheckResult(
            "known_version",
            False,
            f"{target} was never deployed successfully to this service (history){hint}: "
            "refusing a version this service never ran",
        )
    if image_found is None:
        return CheckResult("known_version", True, f"{matched} matches version_pattern {pattern}")
    if image_found:
        return CheckResult(
            "known_version", True, f"{matched} matches version_pattern {pattern}, image in ECR"
        )
    return CheckResult(
        "known_version",
        False,
        f"{matched} matches version_pattern {pattern} but has no image in ECR",
    )


def pattern_match(pattern: str | None, target: Version, spec: str | None) -> str | None:
    """The version text (the target id, else the requested spec) that ``pattern`` matches
    whole, or None."""
    if not pattern:
        return None
    for text in (target.id, (spec or "").strip()):
        if text and re.fullmatch(pattern, text):
            return text
    return None


def check_not_on_target(current: Version, target: Version, resumed: str | None) -> CheckResult:
    if resumed and current.id == target.id:
        return CheckResult(
            "not_on_target",
            True,
            f"resuming interrupted rollback {resumed}: the service already runs {target}",
        )
    if current.id == target.id:
        return CheckResult("not_on_target", False, f"the service already runs {target}")
    return CheckResult("not_on_target", True, f"service runs {current}, target {target}")


def check_not_bad(target: Version, bad: frozenset[str]) -> CheckResult:
    if target.id in bad:
        return CheckResult(
            "not_bad_version",
            False,
            f"{target} was rolled back from before and is marked bad",
        )
    return CheckResult("not_bad_version", True, f"{target} is not marked bad")


def check_loop(request: RollbackRequest) -> CheckResult:
    source = request.source_event_id or ""
    if request.automatic and source.startswith(ROLLBACK_SOURCE_PREFIX):
        return CheckResult(
            "loop_prevention",
            False,
            f"the triggering event {source} was caused by a rollback: not rolling back again",
        )
    return CheckResult("loop_prevention", True, "the trigger is not a rollback")


def check_auto_policy(
    request: RollbackRequest,
    recent: Sequence[AuditRecord],
    *,
    auto_rollback: bool,
    cooldown_s: float,
    max_per_hour: int,
    now: datetime,
    own_audit_id: str,
) -> CheckResult:
    """Automatic triggers: the environment allows them, the last automatic rollback of
    this service is older than the cooldown, and the hourly cap is not reached."""
    if not request.automatic:
        return CheckResult("auto_policy", True, "manual request")
    if not auto_rollback:
        return CheckResult(
            "auto_policy", False, "automatic rollback is disabled for this environment"
        )
    acted = [
        r
        for r in recent
        if r.audit_id != own_audit_id and r.trigger != "manual" and r.status in _ACTED
    ]
    in_cooldown = [r for r in acted if now - r.requested_at < timedelta(seconds=cooldown_s)]
    if in_cooldown:
        last = max(in_cooldown, key=lambda r: r.requested_at)
        age = (now - last.requested_at).total_seconds()
        return CheckResult(
            "auto_policy",
            False,
            f"an automatic rollback ran {age:.0f}s ago (cooldown {cooldown_s:.0f}s, "
            f"audit {last.audit_id}): needs a human",
        )
    last_hour = [r for r in acted if now - r.requested_at < timedelta(hours=1)]
    if len(last_hour) >= max_per_hour:
        return CheckResult(
            "auto_policy",
            False,
            f"{len(last_hour)} automatic rollbacks in the last hour (cap {max_per_hour}): "
            "needs a human",
        )
    return CheckResult("auto_policy", True, "automatic rollback allowed")


def check_confirmation(given: str | None, expected: str, protected: bool) -> CheckResult:
    if not protected:
        return CheckResult("confirmation", True, "environment is not protected")
    if given is None:
        return CheckResult(
            "confirmation", False, f"protected environment: confirm with the text {expected}"
        )
    if given.strip() == expected:
        return CheckResult("confirmation", True, "typed confirmation matches")
    return CheckResult("confirmation", False, f"typed confirmation does not match {expected}")


def find_interrupted(recent: Iterable[AuditRecord], own_audit_id: str) -> list[AuditRecord]:
    """Attempts that were changing the service when their process died. Only called by
    the lock holder, so no other attempt can still be live."""
    return [r for r in recent if r.audit_id != own_audit_id and r.status in _IN_FLIGHT]


def check_schema(
    records: Sequence[DeploymentRecord], target_id: str, current_id: str, bad: frozenset[str]
) -> CheckResult:
    """Migration gate: the target must run on the schema the database is at now.

    The database schema is the ``schema_version`` of the newest deploy that recorded one
    (failed deploys count: their migration may have run). A release's range is the
    ``min/max_schema_version`` of its newest deploy record. Unknown data never blocks.
    """
    deploys = _newest_deploys(records)
    schema = next((r.schema_version for r in deploys if r.schema_version is not None), None)
    target = next(
        (
            r
            for r in deploys
            if r.version == target_id
            and (r.min_schema_version is not None or r.max_schema_version is not None)
        ),
        None,
    )
    if schema is None or target is None:
        return CheckResult("schema_compatible", True, "no schema data recorded")
    if _runs_on(target, schema):
        return CheckResult(
            "schema_compatible",
            True,
            f"{target_id} runs on schema {_range(target)}; the database is at {schema}",
        )
    safe = _safe_version(deploys, schema, target_id, current_id, bad)
    return CheckResult(
        "schema_compatible",
        False,
        f"{target_id} runs on schema {_range(target)} but the database is at {schema}; "
        + (f"newest safe target: {safe}" if safe else "no earlier version runs on it"),
    )


def schema_safe_target(
    records: Sequence[DeploymentRecord], target_id: str, current_id: str, bad: frozenset[str]
) -> str | None:
    """The migration gate's newest safe target when ``target_id`` cannot run on the
    database schema; None when the target is fine or nothing earlier is safe."""
    if check_schema(records, target_id, current_id, bad).passed:
        return None
    deploys = _newest_deploys(records)
    schema = next((r.schema_version for r in deploys if r.schema_version is not None), None)
    if schema is None:
        return None
    return _safe_version(deploys, schema, target_id, current_id, bad)


def _newest_deploys(records: Iterable[DeploymentRecord]) -> list[DeploymentRecord]:
    return sorted(
        (r for r in records if r.kind == "deploy"),
        key=lambda r: r.started_at or r.finished_at or datetime.min,
        reverse=True,
    )


def _safe_version(
    deploys: Sequence[DeploymentRecord],
    schema: int,
    target_id: str,
    current_id: str,
    bad: frozenset[str],
) -> str | None:
    return next(
        (
            r.version
            for r in deploys
            if r.status == "success"
            and r.version not in (current_id, target_id)
            and r.version not in bad
            and _runs_on(r, schema)
        ),
        None,
    )


def _runs_on(record: DeploymentRecord, schema: int) -> bool:
    low, high = record.min_schema_version, record.max_schema_version
    return (low is None or low <= schema) and (high is None or schema <= high)


def _range(record: DeploymentRecord) -> str:
    low = "*" if record.min_schema_version is None else record.min_schema_version
    high = "*" if record.max_schema_version is None else record.max_schema_version
    return f"{low}..{high}"


def check_snapshot(
    prefix: str, latest: datetime | None, max_age_h: float, now: datetime
) -> CheckResult:
    if latest is None:
        return CheckResult("db_snapshot", False, f"no RDS snapshot named {prefix}* found")
    age_h = (now - latest).total_seconds() / 3600
    if age_h > max_age_h:
        return CheckResult(
            "db_snapshot",
            False,
            f"newest snapshot {prefix}* is {age_h:.1f}h old (limit {max_age_h:g}h): take one first",
        )
    return CheckResult("db_snapshot", True, f"snapshot {prefix}* is {age_h:.1f}h old")


# -- the bad-version ledger -----------------------------------------------------------------
def clears_mark(record: DeploymentRecord, marked_at: datetime | None) -> bool:
    """A bad mark is cleared only by a successful deploy of that version that finished
    after the mark (a late import of an old success never clears it). A mark whose time
    is unknown is cleared only by ``rollback unmark``."""
    if marked_at is None or record.kind != "deploy" or record.status != "success":
        return False
    finished = record.finished_at or record.started_at
    return finished is not None and finished > marked_at


# -- outcome ------------------------------------------------------------------------------
def headline(
    status: str,
    environment: str,
    service: str,
    from_version: str | None,
    to_version: str | None,
    deploy_failed: bool,
    cause: str | None = None,
) -> str:
    """One honest line: a failed deploy that was rolled back is never called a success,
    and a deploy is only called failed when the history or the triggering event says so;
    otherwise ``cause`` (e.g. "Alarm 'api-5xx' fired") says what started the rollback."""
    where = f"{environment}/{service}"
    move = f"{from_version or '?'} → {to_version or '?'}"
    if deploy_failed:
        cause = f"Deploy of {from_version} failed"
    if status == "succeeded":
        if cause:
            return f"{cause}, rollback succeeded: {where} {move}"
        return f"Rollback succeeded: {where} {move}"
    if status == "failed":
        prefix = f"{cause} and the " if cause else "The "
        return f"{prefix}rollback FAILED: {where} {move}, needs a human"
    if status == "refused":
        return f"Rollback refused, nothing changed: {where}"
    if status == "planned":
        return f"DRY RUN: rollback planned, nothing changed: {where} {move}"
    return f"Rollback {status}: {where} {move}"
