"""The Target protocol every rollback platform implements, and the registry of types.

Adding a platform is adding one module under ``rollback/targets/`` that defines a config
model (a subclass of ``ServiceConfig`` with ``type: Literal[...]``) and a target class,
and registers them with ``@register``. Nothing else changes: modules are discovered.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rollback.models import CheckResult, StabilizeResult, Version

Progress = Callable[[str], None]


class ServiceConfig(BaseModel):
    """Settings every target type shares; each type adds its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    stabilize_timeout_s: float = Field(default=600, gt=0)
    poll_interval_s: float = Field(default=5, gt=0)
    health_url: str | None = None
    health_checks: int = Field(default=3, ge=1, description="consecutive 2xx needed")
    rds_snapshot_prefix: str | None = Field(
        default=None, description="migration gate: require a recent RDS snapshot with this prefix"
    )
    snapshot_max_age_h: float = Field(default=24, gt=0)
    version_pattern: str | None = Field(
        default=None,
        description="targets that cannot prove a version is theirs (terraform, github_actions, "
        "steps): a version never deployed is accepted only if it matches this regex whole",
    )
    ecr_repository: str | None = Field(
        default=None, description="image repository: images must exist there (ECR)"
    )

    @field_validator("version_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class Target(Protocol):
    """A rollback target: one deployed thing that can be put back on an older version.

    A target class may set ``proves_versions = True`` when ``lookup`` only ever returns a
    version of this very service (an ECS revision of its family, a published version of
    its Lambda function, a configured nginx color). Every other target's versions must be
    known from the deployment history or match ``version_pattern`` (check ``known_version``).
    """

    def current(self) -> Version:
        """The version running now."""
        ...

    def lookup(self, spec: str) -> Version:
        """The version named by ``spec`` (``--to`` or a history entry); NotFoundError if none."""
        ...

    def candidates(self) -> list[Version]:
        """Versions the platform still has, newest first (fallback when no history)."""
        ...

    def check(self, current: Version, target: Version) -> list[CheckResult]:
        """Platform-specific safety checks for moving from current to target."""
        ...

    def execute(self, target: Version) -> None:
        """Switch to target (one change, idempotent)."""
        ...

    def stabilize(self, target: Version, timeout_s: float, progress: Progress) -> StabilizeResult:
        """Wait until the platform settles on target, or the timeout passes."""
        ...

    def verify(self, target: Version) -> list[CheckResult]:
        """Confirm the platform really runs target."""
        ...

    # What the core needs beyond the runbook steps; ``TargetBase`` has the defaults.
    proves_versions: bool

    @property
    def no_target_reason(self) -> str | None:
        """How this platform words "nothing to roll back to" (None: the core's words)."""
        ...

    def bind(self, context: RunContext, credentials_block: str | None) -> None:
        """Who/why of the run and the credentials its AWS clients use (set by Runtime)."""
        ...

    def prepare(self, before: Callable[[], str | None]) -> None:
        """Before the change: ``before()`` reads the from-version the audit record holds
        (a saga puts finished steps back to it, not to what this process remembers)."""
        ...


@dataclass(frozen=True)
class TargetType:
    name: str
    config_model: type[ServiceConfig]
    factory: Callable[..., Target]


_REGISTRY: dict[str, TargetType] = {}
_DISCOVERED = False


def register(name: str, config_model: type[ServiceConfig]) -> Callable[[Any], Any]:
    """Class decorator: make ``type: name`` in the config build this target."""

    def wrap(cls: Any) -> Any:
        _REGISTRY[name] = TargetType(name, config_model, cls)
        return cls

    return wrap


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    import rollback.targets as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"rollback.targets.{info.name}")
    _DISCOVERED = True


def target_types() -> dict[str, TargetType]:
    _discover()
    return dict(_REGISTRY)


def parse_service_config(data: Any) -> ServiceConfig:
    """Validate one service entry by its ``type``; errors name the field."""
    if isinstance(data, ServiceConfig):
        return data
    if not isinstance(data, dict):
        raise ValueError("a service must be a mapping with a 'type' key")
    types = target_types()
    kind = data.get("type")
    if kind not in types:
        known = ", ".join(sorted(types))
        raise ValueError(f"unknown service type {kind!r} (known: {known})")
    try:
        return types[kind].config_model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_validation_errors(exc)) from None


def format_validation_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def build_target(config: ServiceConfig, **clients: Any) -> Target:
    """The target object for a validated service config (clients may be injected)."""
    return target_types()[config.type].factory(config, **clients)


@dataclass(frozen=True)
class RunContext:
    """Who/why of the rollback in progress, for targets that pass it on (e.g. workflow
    inputs, commit statuses). Set by the runtime before any target method runs."""

    audit_id: str = ""
    environment: str = ""
    service: str = ""
    reason: str = ""
    requested_by: str = ""
    trigger: str = "manual"


# A target check with this name is waived when the request sets allow_destroy.
DESTROY_CHECK = "no_destroy"


class TargetBase:
    """Convenience base: holds the config and run context; subclasses implement the
    protocol."""

    type_name: ClassVar[str] = ""
    # True when lookup() can only return this service's own versions (see Target).
    proves_versions: bool = False

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.context = RunContext()
        self.credentials_block: str | None = None

    @property
    def no_target_reason(self) -> str | None:
        return None

    def bind(self, context: RunContext, credentials_block: str | None) -> None:
        self.context = context
        self.credentials_block = credentials_block

    def prepare(self, before: Callable[[], str | None]) -> None:
        return None

    def aws_client(self, service: str) -> Any:
        """A boto3 client from the one credentials owner, with this run's credentials."""
        from rollback import aws

        return aws.client(service, self.credentials_block)
