"""Verification: the platform's own view, plus the optional health URL. A step of the
``stabilize-and-verify`` stage (read-only: a retry of the stage repeats it safely)."""

from __future__ import annotations

from prefect import get_run_logger

from rollback import health
from rollback.models import CheckResult, RollbackRequest, Version
from rollback.runtime import Runtime


def verify(rt: Runtime, request: RollbackRequest, target: Version) -> list[CheckResult]:
    log = get_run_logger()
    cfg = rt.config.service(request.environment, request.service)
    results = rt.target(request.environment, request.service).verify(target)
    if cfg.health_url:
        results.append(health.consecutive_ok(cfg.health_url, cfg.health_checks))
    for c in results:
        log.info("verify %-20s %s  %s", c.name, "pass" if c.passed else "FAIL", c.detail)
    return results
