"""Target resolution, a step of ``prepare``: explicit --to, else the last good deploy in
the history, else the newest older platform version; an interrupted rollback is resumed,
never overshot."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from prefect import get_run_logger

from rollback import decisions
from rollback.errors import NotFoundError
from rollback.models import AuditRecord, DeploymentRecord, RollbackRequest, Version
from rollback.runtime import Runtime

HISTORY_DEPTH = 200  # newest records read per rollback


@dataclass(frozen=True)
class Change:
    """The one change a rollback makes: what runs, the target, the version left."""

    current: Version
    target: Version
    from_version: str


@dataclass(frozen=True)
class Resolution:
    current: Version
    target: Version | None
    source: str  # how the target was chosen, or why none was
    from_version: str
    resumed: str | None = None  # audit id of the interrupted rollback being resumed
    # The service's recent deployment history, read once here and reused by the checks
    # (migration gate) and the outcome wording.
    history: tuple[DeploymentRecord, ...] = ()

    @property
    def change(self) -> Change:
        """The change to make (only once a target is chosen); small, for the stages after
        ``prepare`` (a task's parameters are walked by Prefect: the history stays here)."""
        assert self.target is not None
        return Change(self.current, self.target, self.from_version)


def resolve_target(
    rt: Runtime, request: RollbackRequest, bad: frozenset[str], interrupted: AuditRecord | None
) -> Resolution:
    log = get_run_logger()
    target = rt.target(request.environment, request.service)
    current = target.current()
    log.info("%s/%s runs %s", request.environment, request.service, current)
    records = tuple(rt.history.query(request.environment, request.service, limit=HISTORY_DEPTH))

    def resolved(version: Version | None, source: str, **kw: Any) -> Resolution:
        kw.setdefault("from_version", current.id)
        return Resolution(current, version, source, history=records, **kw)

    if interrupted and interrupted.to_version and not request.to:
        # Never roll back further than the interrupted request asked.
        return resolved(
            target.lookup(interrupted.to_version),
            f"resuming interrupted rollback {interrupted.audit_id}",
            from_version=interrupted.from_version or current.id,
            resumed=interrupted.audit_id,
        )
    if request.to:
        try:
            return resolved(target.lookup(request.to), f"requested {request.to}")
        except NotFoundError as exc:
            return resolved(None, str(exc))

    for version_id in decisions.history_candidates(records, current.id, bad):
        try:
            version = target.lookup(version_id)
        except NotFoundError as exc:
            log.warning(
                "history names %s but it is no version of this service: %s", version_id, exc
            )
            continue
        if decisions.version_order(version, current, records)[0] is not False:
            return _schema_safe(
                target, resolved(version, "last successful deploy in history"), bad, log
            )

    for version in decisions.fallback_candidates(target.candidates(), current, bad):
        if all(c.passed for c in target.check(current, version)):  # e.g. images still in ECR
            return resolved(version, "newest older platform version (no usable history)")
    # A target may word this itself (e.g. "no earlier published version of FUNCTION").
    reason = (
        target.no_target_reason or f"no earlier good version of {request.service} to roll back to"
    )
    return resolved(None, reason)


def _schema_safe(target: Any, chosen: Resolution, bad: frozenset[str], log: Any) -> Resolution:
    """Migration gate: when the chosen version cannot run on the database schema and the
    gate names a newest safe one, choose that instead and say so (the request named none)."""
    assert chosen.target is not None
    safe_id = decisions.schema_safe_target(chosen.history, chosen.target.id, chosen.current.id, bad)
    if safe_id is None:
        return chosen
    try:
        safe = target.lookup(safe_id)
    except NotFoundError:
        log.warning("the migration gate names %s but the platform has no such version", safe_id)
        return chosen
    log.info("migration gate: %s cannot run on the schema; choosing %s", chosen.target, safe)
    return replace(
        chosen,
        target=safe,
        source=f"newest safe target of the migration gate ({chosen.target} cannot run on the "
        "database schema)",
    )
