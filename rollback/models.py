"""Plain models shared by every stage: requests, versions, checks, records, outcomes.

Decisions are made by pure functions over these models (see ``rollback.decisions``).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Trigger = Literal["manual", "webhook", "alarm", "health", "schedule", "verification"]
AUTOMATIC_TRIGGERS: frozenset[str] = frozenset(
    {"webhook", "alarm", "health", "schedule", "verification"}
)

# Events our own actions emit carry this prefix, so a request caused by a rollback is
# recognised and refused (loop prevention).
ROLLBACK_SOURCE_PREFIX = "rollback:"


def service_limit_name(environment: str, service: str) -> str:
    """Name of the Prefect global concurrency limit (1 slot) of one service."""
    return f"rollback-{environment}-{service}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if ts else None


def in_utc(ts: datetime) -> datetime:
    """``ts`` in UTC (a naive time is taken as UTC)."""
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class RollbackRequest(BaseModel):
    """The rollback to perform: which service, to what, why and who asks."""

    model_config = ConfigDict(extra="forbid")

    environment: str = Field(description="Environment name from the config, e.g. prod.")
    service: str = Field(description="Service name within the environment, e.g. api.")
    to: str | None = Field(
        default=None,
        description="Target version (ECS: revision, family:revision or image tag). "
        "Empty: the last good version.",
    )
    reason: str = Field(default="", description="Why roll back; shown in the audit log.")
    requested_by: str = Field(default="unknown", description="Who asks (user or system).")
    trigger: Trigger = Field(default="manual", description="What started this rollback.")
    dry_run: bool = Field(default=False, description="Plan only: run checks, change nothing.")
    source_event_id: str | None = Field(
        default=None, description="Id of the event that caused this (dedup, loop prevention)."
    )
    confirmation: str | None = Field(
        default=None, description="Typed confirmation for protected environments."
    )
    allow_destroy: bool = Field(
        default=False, description="Allow a rollback whose plan destroys resources."
    )
    force_order: bool = Field(
        default=False,
        description="A person vouches that the target is older when neither the platform "
        "nor the history can tell (recorded in the target_older check; never for automatic "
        "triggers).",
    )
    authenticated_by: str | None = Field(
        default=None,
        description="Set by the entrance: the name of the credential that admitted this "
        "request (github-hmac, sns:<topic arn>, alarm-token, api-token, cli:<user>). Never "
        "trusted from run parameters: the flow re-derives it (see rollback.entrance).",
    )

    @property
    def automatic(self) -> bool:
        return self.trigger in AUTOMATIC_TRIGGERS


@dataclass(frozen=True)
class Version:
    """One deployable version of a target, as the platform knows it.

    ``id`` is what the history records and what ``--to`` accepts back; ``order`` ranks
    versions of one target (higher is newer) when the platform has such a notion.
    """

    id: str
    label: str = ""
    order: int | None = None
    images: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    active: bool = True
    detail: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.label or self.id


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


class Status(enum.StrEnum):
    """Audit status of one rollback attempt; transitions are explicit (see TRANSITIONS)."""

    REQUESTED = "requested"
    REFUSED = "refused"
    PLANNED = "planned"
    EXECUTING = "executing"
    STABILIZING = "stabilizing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    # A request that arrived while a rollback of the service was in flight: recorded,
    # linked to that rollback (``linked_audit_id``), never executed on its own.
    ABSORBED = "absorbed"

    @property
    def final(self) -> bool:
        return not TRANSITIONS[self]


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.REQUESTED: frozenset(
        {Status.REFUSED, Status.PLANNED, Status.EXECUTING, Status.FAILED, Status.INTERRUPTED}
    ),
    Status.EXECUTING: frozenset({Status.STABILIZING, Status.FAILED, Status.INTERRUPTED}),
    Status.STABILIZING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.INTERRUPTED}),
    Status.REFUSED: frozenset(),
    Status.PLANNED: frozenset(),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
    Status.INTERRUPTED: frozenset(),
    Status.ABSORBED: frozenset(),
}


def allowed_predecessors(new: Status) -> frozenset[Status]:
    return frozenset(s for s, nexts in TRANSITIONS.items() if new in nexts)


@dataclass(frozen=True)
class DeploymentRecord:
    """One deploy or rollback of a service, as kept in the deployment history."""

    environment: str
    service: str
    version: str
    status: Literal["success", "failed"]
    kind: Literal["deploy", "rollback"] = "deploy"
    image_tag: str | None = None
    commit_sha: str | None = None
    committed_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    from_version: str | None = None
    trigger: str | None = None
    record_id: str = field(default_factory=new_id)
    schema_version: int | None = None
    min_schema_version: int | None = None
    max_schema_version: int | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


@dataclass(frozen=True)
class AuditRecord:
    """One rollback attempt: who, when, what, why, the checks and the status trail."""

    audit_id: str
    environment: str
    service: str
    status: Status
    requested_at: datetime
    requested_by: str = "unknown"
    trigger: str = "manual"
    reason: str = ""
    source_event_id: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    checks: tuple[CheckResult, ...] = ()
    transitions: tuple[tuple[str, str], ...] = ()  # (status, iso timestamp)
    flow_run_id: str | None = None
    outcome_reason: str | None = None
    dry_run: bool = False
    authenticated_by: str | None = None
    linked_audit_id: str | None = None  # ABSORBED: the in-flight rollback it joined

    @property
    def finished_at(self) -> datetime | None:
        if self.status.final and self.transitions:
            return parse_iso(self.transitions[-1][1])
        return None


@dataclass(frozen=True)
class StabilizeResult:
    stable: bool
    detail: str
    polls: int = 0


@dataclass
class RollbackOutcome:
    """What a rollback run ends with; the CLI prints it, the notification tells it."""

    status: str
    environment: str
    service: str
    audit_id: str
    from_version: str | None = None
    to_version: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    flow_run_id: str | None = None
    reason: str | None = None
    trigger: str = "manual"
    requested_by: str = "unknown"
    request_reason: str = ""
    timeline: list[tuple[str, str]] = field(default_factory=list)
    duration_s: float | None = None
    headline: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "environment": self.environment,
            "service": self.service,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "checks": [c.as_dict() for c in self.checks],
            "audit_id": self.audit_id,
            "flow_run_id": self.flow_run_id,
            "reason": self.reason,
        }
