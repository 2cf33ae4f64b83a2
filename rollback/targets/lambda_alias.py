"""Lambda aliases: roll back by pointing the alias at an older published version.

A version is the published version number as a string ("3"); ``order`` is that number,
so the flow compares versions without asking AWS. ``$LATEST`` is never a target: it is
not immutable, so "rolling back" to it would run whatever was uploaded last.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from botocore.exceptions import ClientError

from rollback import aws
from rollback.errors import NotFoundError
from rollback.models import CheckResult, StabilizeResult, Version
from rollback.targets._polling import State, poll_until
from rollback.targets.base import Progress, ServiceConfig, TargetBase, register

log = logging.getLogger(__name__)
LATEST = "$LATEST"


class LambdaAliasConfig(ServiceConfig):
    type: Literal["lambda"]
    function: str
    alias: str


@register("lambda", LambdaAliasConfig)
class LambdaAliasTarget(TargetBase):
    config: LambdaAliasConfig
    proves_versions = True  # only published versions of the configured function

    def __init__(self, config: LambdaAliasConfig, client: Any = None):
        super().__init__(config)
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.aws_client("lambda")
        return self._client

    @property
    def no_target_reason(self) -> str:
        """Why the flow found nothing to roll back to (shown in the refusal)."""
        return f"no earlier published version of {self.config.function} to roll back to"

    # -- reads ---------------------------------------------------------------------------
    def _alias(self) -> dict[str, Any]:
        cfg = self.config
        try:
            return dict(self.client.get_alias(FunctionName=cfg.function, Name=cfg.alias))
        except ClientError as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                raise NotFoundError(
                    f"alias {cfg.alias!r} of Lambda function {cfg.function!r} not found: "
                    "check function and alias in the config"
                ) from exc
            raise aws.translate(exc, f"get alias {cfg.function}:{cfg.alias}") from exc

    def _describe(self, number: str) -> Version:
        fn = self.config.function
        try:
            out = self.client.get_function_configuration(FunctionName=fn, Qualifier=number)
        except ClientError as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                raise NotFoundError(
                    f"version {number} of Lambda function {fn!r} not found"
                ) from exc
            raise aws.translate(exc, f"get Lambda function {fn}:{number}") from exc
        return version_of(out)

    def current(self) -> Version:
        return self._describe(str(self._alias()["FunctionVersion"]))

    def lookup(self, spec: str) -> Version:
        return self._describe(parse_spec(spec, self.config.function))

    def candidates(self) -> list[Version]:
        fn = self.config.function
        found: list[dict[str, Any]] = []
        try:
            for page in self.client.get_paginator("list_versions_by_function").paginate(
                FunctionName=fn
            ):
                found.extend(page.get("Versions", []))
        except ClientError as exc:
            raise aws.translate(exc, f"list versions of Lambda function {fn}") from exc
        return published_newest_first(found)

    # -- checks --------------------------------------------------------------------------
    def check(self, current: Version, target: Version) -> list[CheckResult]:
        checks = [_published(target)]
        if target.id != LATEST:
            checks.append(self._exists(target))
        return checks

    def _exists(self, target: Version) -> CheckResult:
        try:
            found = self._describe(target.id)
        except NotFoundError as exc:
            return CheckResult("version_exists", False, str(exc))
        state = dict(found.detail).get("state") or "unknown"
        return CheckResult("version_exists", True, f"{found} exists (state {state})")

    # -- change --------------------------------------------------------------------------
    def execute(self, target: Version) -> None:
        cfg = self.config
        log.info("Lambda update_alias %s:%s -> version %s", cfg.function, cfg.alias, target.id)
        try:
            # Weighted routing is cleared too: a rollback sends all traffic to the target.
            self.client.update_alias(
                FunctionName=cfg.function,
                Name=cfg.alias,
                FunctionVersion=target.id,
                RoutingConfig={"AdditionalVersionWeights": {}},
            )
        except ClientError as exc:
            raise aws.translate(exc, f"update alias {cfg.function}:{cfg.alias}") from exc

    def stabilize(self, target: Version, timeout_s: float, progress: Progress) -> StabilizeResult:
        def poll() -> tuple[State, str]:
            settled, line = alias_state(self._alias(), target.id)
            return ("done" if settled else "waiting"), line

        return poll_until(
            poll,
            timeout_s=timeout_s,
            interval_s=self.config.poll_interval_s,
            progress=progress,
            gave_up="not settled",
        )

    def verify(self, target: Version) -> list[CheckResult]:
        alias = self._alias()
        weights = routing_weights(alias)
        return [
            CheckResult(
                "alias_on_target",
                str(alias.get("FunctionVersion")) == target.id,
                f"alias {self.config.alias} points at version {alias.get('FunctionVersion')}",
            ),
            CheckResult(
                "no_routing_weights",
                not weights,
                "no weighted routing" if not weights else f"weighted routing left: {weights}",
            ),
        ]


# -- pure helpers -------------------------------------------------------------------------
NEWEST = 2**63 - 1  # the order of $LATEST


def version_of(conf: dict[str, Any]) -> Version:
    """Our Version for one entry of get_function_configuration / list_versions_by_function."""
    number = str(conf["Version"])
    name = conf.get("FunctionName", "")
    return Version(
        id=number,
        label=f"{name}:{number}" if name else number,
        # $LATEST is the newest code there is: never "older" than a published version.
        order=int(number) if number.isdigit() else (NEWEST if number == LATEST else None),
        active=conf.get("State", "Active") != "Failed",
        detail=(
            ("arn", conf.get("FunctionArn", "")),
            ("description", conf.get("Description", "")),
            ("code_sha256", conf.get("CodeSha256", "")),
            ("state", conf.get("State", "")),
        ),
    )


def published_newest_first(configs: list[dict[str, Any]]) -> list[Version]:
    """Published versions (never $LATEST), highest number first."""
    versions = [version_of(c) for c in configs if str(c.get("Version")) != LATEST]
    return sorted(versions, key=lambda v: v.order or 0, reverse=True)


def parse_spec(spec: str, function: str) -> str:
    """The version number (or $LATEST) named by "3", "fn:3" or a qualified function ARN."""
    spec = spec.strip()
    if spec.isdigit() or spec == LATEST:
        return spec
    head, sep, tail = spec.rpartition(":")
    if sep and (tail.isdigit() or tail == LATEST):
        name = head.rsplit(":function:", 1)[-1]
        if name != function:
            raise NotFoundError(
                f"{spec!r} names function {name!r}, not the configured {function!r}"
            )
        return tail
    raise NotFoundError(
        f"{spec!r} is not a version of Lambda function {function!r}: "
        "give a published version number such as 3"
    )


def routing_weights(alias: dict[str, Any]) -> dict[str, float]:
    return dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})


def alias_state(alias: dict[str, Any], target_id: str) -> tuple[bool, str]:
    """Pure: does the alias send all traffic to the target version?"""
    on = str(alias.get("FunctionVersion"))
    weights = routing_weights(alias)
    line = f"alias {alias.get('Name', '?')} -> version {on}" + (
        f", weights {weights}" if weights else ""
    )
    return on == target_id and not weights, line


def _published(target: Version) -> CheckResult:
    if target.id == LATEST or target.order is None:
        return CheckResult(
            "published_version",
            False,
            f"{target} is not a published version: $LATEST is never a rollback target",
        )
    return CheckResult("published_version", True, f"{target} is a published version")
