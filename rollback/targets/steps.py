"""Multi-step rollbacks: several targets rolled back in order as one saga.

``type: steps`` lists the targets (e.g. terraform then ecs). A version of the whole is
the versions of its steps; ``--to``/history give either one spec that every step looks
up on its own (an image tag like ``v3`` works for terraform and ECS alike), or an
explicit ``step=version|step=version`` id, which is what the history records.

Execute runs the steps in order, each stabilized before the next starts. If a step
fails, it and the steps already switched are put back, newest first, to their before-versions
as read from the audit record (the flow hands them over via ``before``), and the error
says exactly which steps ran, which failed and which were undone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from rollback import progress
from rollback.errors import NotFoundError, RollbackError, TargetError
from rollback.models import CheckResult, StabilizeResult, Version
from rollback.targets.base import (
    Progress,
    RunContext,
    ServiceConfig,
    Target,
    TargetBase,
    build_target,
    parse_service_config,
    register,
)

log = logging.getLogger(__name__)
SEP, EQ = "|", "="


class StepsServiceConfig(ServiceConfig):
    type: Literal["steps"]
    steps: list[ServiceConfig] = Field(min_length=1)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> list[ServiceConfig]:
        if not isinstance(value, list) or not value:
            raise ValueError("steps must be a non-empty list of target settings")
        out = []
        for i, item in enumerate(value, 1):
            if isinstance(item, dict) and item.get("type") == "steps":
                raise ValueError(f"step {i}: steps cannot nest")
            try:
                out.append(parse_service_config(item))
            except ValueError as exc:
                raise ValueError(f"step {i}: {exc}") from None
        return out


def step_names(config: StepsServiceConfig) -> list[str]:
    return [f"{i}-{step.type}" for i, step in enumerate(config.steps, 1)]


def compose(names: list[str], versions: list[Version]) -> Version:
    return Version(
        id=SEP.join(f"{n}{EQ}{v.id}" for n, v in zip(names, versions, strict=True)),
        label=", ".join(f"{n} {v}" for n, v in zip(names, versions, strict=True)),
        detail=tuple((n, v.id) for n, v in zip(names, versions, strict=True)),
    )


def split(spec: str, names: list[str]) -> list[str]:
    """Per-step specs: an explicit composite id, or the same spec for every step."""
    if EQ not in spec:
        return [spec] * len(names)
    parts = dict(p.split(EQ, 1) for p in spec.split(SEP) if EQ in p)
    missing = [n for n in names if n not in parts]
    if missing:
        raise NotFoundError(f"version {spec!r} names no version for step(s) {', '.join(missing)}")
    return [parts[n] for n in names]


@register("steps", StepsServiceConfig)
class StepsTarget(TargetBase):
    config: StepsServiceConfig

    def __init__(self, config: StepsServiceConfig, steps: list[Target] | None = None) -> None:
        super().__init__(config)
        self.names = step_names(config)
        self.steps = steps or [build_target(s) for s in config.steps]
        # The whole is proven only when every step's platform proves its own part.
        self.proves_versions = all(s.proves_versions for s in self.steps)
        self.before: Version | None = None  # set from the audit record before execute

    def bind(self, context: RunContext, credentials_block: str | None) -> None:
        super().bind(context, credentials_block)
        self._bind()

    def prepare(self, before: Callable[[], str | None]) -> None:
        """The before-versions come from the audit record, not this process's memory."""
        from_version = before()
        self.before = self.lookup(from_version) if from_version else None

    def _bind(self) -> None:
        for step in self.steps:
            step.bind(self.context, self.credentials_block)

    def current(self) -> Version:
        self._bind()
        return compose(self.names, [s.current() for s in self.steps])

    def lookup(self, spec: str) -> Version:
        self._bind()
        specs = split(spec, self.names)
        return compose(self.names, [s.lookup(p) for s, p in zip(self.steps, specs, strict=True)])

    def candidates(self) -> list[Version]:
        return []  # the history or --to says where the whole goes back to

    def _parts(self, version: Version) -> list[Version]:
        return [self.steps[i].lookup(vid) for i, (_, vid) in enumerate(version.detail)]

    def check(self, current: Version, target: Version) -> list[CheckResult]:
        checks = []
        for name, step, cur, tgt in self._zip(current, target):
            for c in step.check(cur, tgt):
                checks.append(CheckResult(c.name, c.passed, f"[{name}] {c.detail}"))
        return checks

    def _zip(self, current: Version, target: Version) -> list[tuple[str, Target, Version, Version]]:
        return list(
            zip(self.names, self.steps, self._parts(current), self._parts(target), strict=True)
        )

    def execute(self, target: Version) -> None:
        self._bind()
        before = self.before or self.current()
        deadline = time.monotonic() + self.config.stabilize_timeout_s
        done: list[tuple[str, Target, Version]] = []
        for name, step, old, new in self._zip(before, target):
            if old.id == new.id:
                log.info("step %s already on %s", name, new)
                continue
            try:
                step.execute(new)
                result = step.stabilize(
                    new, max(deadline - time.monotonic(), 1), _say(f"step {name} → {new}")
                )
                if not result.stable:
                    raise TargetError(f"did not stabilize: {result.detail}")
                done.append((name, step, old))
                log.info("step %s switched to %s", name, new)
            except RollbackError as exc:
                # The failed step may be half-applied: put it back too, then the others.
                undone, stuck = self._undo([*done, (name, step, old)])
                raise TargetError(
                    f"step {name} failed ({exc}); steps that ran: "
                    f"{', '.join(n for n, _, _ in done) or 'none'}; "
                    f"undone: {', '.join(undone) or 'none'}"
                    + (f"; NOT undone: {'; '.join(stuck)}" if stuck else "")
                ) from exc

    def _undo(self, done: list[tuple[str, Target, Version]]) -> tuple[list[str], list[str]]:
        undone, stuck = [], []
        for name, step, old in reversed(done):
            try:
                step.execute(old)
                step.stabilize(
                    old, self.config.stabilize_timeout_s, _say(f"undo step {name} → {old}")
                )
                undone.append(name)
                log.warning("step %s put back on %s", name, old)
            except RollbackError as exc:
                stuck.append(f"{name}: {exc}")
        return undone, stuck

    def stabilize(self, target: Version, timeout_s: float, progress: Progress) -> StabilizeResult:
        deadline = time.monotonic() + timeout_s
        details = []
        for name, step, tgt in zip(self.names, self.steps, self._parts(target), strict=True):
            result = step.stabilize(tgt, max(deadline - time.monotonic(), 1), progress)
            details.append(f"{name}: {result.detail}")
            if not result.stable:
                return StabilizeResult(False, "; ".join(details))
        return StabilizeResult(True, "; ".join(details))

    def verify(self, target: Version) -> list[CheckResult]:
        results = []
        for name, step, tgt in zip(self.names, self.steps, self._parts(target), strict=True):
            for c in step.verify(tgt):
                results.append(CheckResult(c.name, c.passed, f"[{name}] {c.detail}"))
        return results


def _say(what: str) -> Progress:
    """Progress of one step while the saga waits for it: logged and shown to whoever
    watches the run (the CLI prints progress lines), prefixed with what it waits for."""

    def say(line: str) -> None:
        text = f"{what}: {line}"
        log.info("%s", text)
        progress.emit(text)

    return say
