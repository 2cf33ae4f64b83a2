"""nginx blue/green: roll back by pointing the active upstream at the other color.

The nginx configuration ``include``s ``active_link``, a symlink to one color's upstream
file. A switch replaces that link atomically (``ln -s new tmp && mv -T tmp active``),
tests the configuration, reloads nginx (graceful: in-flight requests finish on the old
workers) and probes the site through nginx. Any step failing puts the previous link
back and reloads again, so the site is never left on a broken configuration.

The version is the color name. ``current()`` is the color whose upstream file the
active link points to; ``candidates()`` are the other colors.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rollback import health
from rollback.errors import NeedsHumanError, NotFoundError, TargetError
from rollback.models import CheckResult, StabilizeResult, Version
from rollback.targets.base import Progress, ServiceConfig, TargetBase, register

log = logging.getLogger(__name__)
BACKUP_SUFFIX = ".previous"
NGINX_TIMEOUT_S = 30


class NginxColor(BaseModel):
    """One color: its upstream file and the URL that probes its backends directly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream_file: str = Field(description="absolute, or relative to upstreams_dir")
    health_url: str


class NginxServiceConfig(ServiceConfig):
    type: Literal["nginx"]
    conf: str = Field(description="the nginx.conf that includes active_link")
    upstreams_dir: str
    active_link: str = Field(description="the symlink the conf includes (absolute or relative)")
    colors: dict[str, NginxColor]
    nginx_bin: str = "nginx"
    health_interval_s: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _two_colors(self) -> NginxServiceConfig:
        if len(self.colors) < 2:
            raise ValueError("colors: at least two colors (e.g. blue and green) are needed")
        return self

    def path(self, value: str) -> Path:
        return Path(self.upstreams_dir, value)  # an absolute value stays as it is

    def link_path(self) -> Path:
        return self.path(self.active_link)

    def upstream_paths(self) -> dict[str, Path]:
        return {color: self.path(c.upstream_file) for color, c in self.colors.items()}


# -- pure helpers ------------------------------------------------------------------------
def color_of(link: Path, link_value: str, upstreams: Mapping[str, Path]) -> str | None:
    """The color whose upstream file ``link_value`` (the text of symlink ``link``) names."""
    pointed = os.path.normpath(link.parent / link_value)
    for color, upstream in upstreams.items():
        if os.path.normpath(upstream) == pointed:
            return color
    return None


def other_colors(colors: Mapping[str, object], current: str) -> list[str]:
    """The candidates: every color but the current one, in config order."""
    return [c for c in colors if c != current]


def link_text(link: Path, upstream: Path) -> str:
    """What the symlink should hold: relative when the upstream sits beside it."""
    if upstream.is_absolute() and upstream.parent == link.parent:
        return upstream.name
    return str(upstream)


# -- file system and nginx: the side effects ---------------------------------------------
def replace_link(link: Path, value: str) -> None:
    """Point ``link`` at ``value`` atomically: a new symlink renamed over the old one."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(value, tmp)
    os.replace(tmp, link)


class NginxCli:
    """The nginx binary for one configuration file: test and reload."""

    def __init__(self, binary: str, conf: str) -> None:
        self.binary = binary
        self.conf = conf

    def _run(self, what: str, *args: str) -> None:
        cmd = [self.binary, *args, "-c", self.conf]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NGINX_TIMEOUT_S)
        except FileNotFoundError as exc:
            raise TargetError(f"nginx binary {self.binary!r} not found: set nginx_bin") from exc
        except subprocess.TimeoutExpired as exc:
            raise TargetError(f"nginx {what} timed out after {NGINX_TIMEOUT_S}s") from exc
        if proc.returncode != 0:
            tail = " ".join((proc.stderr or proc.stdout).split())[-500:]
            raise TargetError(f"nginx {what} of {self.conf} failed: {tail}")

    def test(self) -> None:
        self._run("config test", "-t", "-q")

    def reload(self) -> None:
        self._run("reload", "-s", "reload")


# -- the target ----------------------------------------------------------------------------
@register("nginx", NginxServiceConfig)
class NginxTarget(TargetBase):
    config: NginxServiceConfig
    proves_versions = True  # only the configured colors

    def __init__(self, config: NginxServiceConfig, cli: NginxCli | None = None) -> None:
        super().__init__(config)
        self.cli = cli or NginxCli(config.nginx_bin, config.conf)

    def _version(self, color: str) -> Version:
        upstream = self.config.upstream_paths()[color]
        return Version(
            id=color, label=f"{color} ({upstream.name})", detail=(("upstream", str(upstream)),)
        )

    def _active(self) -> tuple[Path, str]:
        link = self.config.link_path()
        try:
            return link, os.readlink(link)
        except OSError as exc:
            raise NotFoundError(
                f"active upstream link {link} is missing or not a symlink: point it at one "
                "color's upstream file"
            ) from exc

    def current(self) -> Version:
        link, value = self._active()
        color = color_of(link, value, self.config.upstream_paths())
        if color is None:
            raise NotFoundError(
                f"{link} points at {value}, which is no configured color "
                f"({', '.join(self.config.colors)})"
            )
        return self._version(color)

    def lookup(self, spec: str) -> Version:
        color = spec.strip()
        if color not in self.config.colors:
            raise NotFoundError(
                f"no color {color!r} in the config (colors: {', '.join(self.config.colors)})"
            )
        return self._version(color)

    def candidates(self) -> list[Version]:
        return [self._version(c) for c in other_colors(self.config.colors, self.current().id)]

    # -- checks ----------------------------------------------------------------------------
    def _color_health(self, color: str) -> CheckResult:
        cfg = self.config
        result = health.consecutive_ok(
            cfg.colors[color].health_url, cfg.health_checks, cfg.health_interval_s
        )
        return CheckResult("target_color_health", result.passed, f"{color}: {result.detail}")

    def check(self, current: Version, target: Version) -> list[CheckResult]:
        upstream = self.config.upstream_paths()[target.id]
        checks = [
            CheckResult(
                "upstream_file",
                upstream.is_file(),
                f"{upstream} {'exists' if upstream.is_file() else 'is missing'}",
            ),
            self._color_health(target.id),
        ]
        try:
            self.cli.test()
            checks.append(CheckResult("nginx_config", True, f"nginx -t passes on {self.cli.conf}"))
        except TargetError as exc:
            checks.append(CheckResult("nginx_config", False, f"before switching: {exc}"))
        return checks

    # -- change ----------------------------------------------------------------------------
    def execute(self, target: Version) -> None:
        cfg = self.config
        link, previous = self._active()
        # The backup names the color being left, for a human and for recovery.
        replace_link(link.with_name(link.name + BACKUP_SUFFIX), previous)
        new = link_text(link, cfg.upstream_paths()[target.id])
        log.info("nginx %s: %s -> %s", link, previous, new)
        step = "switch link"
        try:
            replace_link(link, new)
            step = "nginx -t"
            self.cli.test()
            step = "reload"
            self.cli.reload()
            if cfg.health_url:
                step = "health through nginx"
                probe = health.consecutive_ok(
                    cfg.health_url, cfg.health_checks, cfg.health_interval_s
                )
                if not probe.passed:
                    raise TargetError(probe.detail)
        except (TargetError, OSError) as exc:
            self._restore(link, previous, target.id, step, exc)

    def _restore(self, link: Path, previous: str, color: str, step: str, exc: Exception) -> None:
        """Put the previous link back and reload; always raises."""
        log.error("nginx switch to %s failed at %s: %s; restoring %s", color, step, exc, previous)
        try:
            replace_link(link, previous)
            self.cli.reload()
        except (TargetError, OSError) as restore_exc:
            raise NeedsHumanError(
                f"switch to {color} failed at {step} ({exc}) and restoring {link} -> "
                f"{previous} failed too ({restore_exc}): fix nginx by hand"
            ) from exc
        raise TargetError(
            f"switch to {color} failed at {step}: {exc}; restored {link} -> {previous} and reloaded"
        ) from exc

    def stabilize(self, target: Version, timeout_s: float, progress: Progress) -> StabilizeResult:
        detail = "nginx reloaded: old workers finish their requests, new ones use the target"
        progress(detail)
        return StabilizeResult(True, detail, 0)

    def verify(self, target: Version) -> list[CheckResult]:
        link, value = self._active()
        color = color_of(link, value, self.config.upstream_paths())
        return [
            CheckResult(
                "active_color", color == target.id, f"{link} -> {value} ({color or 'no color'})"
            )
        ]
