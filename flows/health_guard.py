"""The health guard (every minute): probe each guarded service and read its error rates;
N consecutive failures request a rollback (trigger ``health``) through the same intake
as the webhooks — dedup, in-flight check, launcher.

The failure count lives in the audit table, so a restarted guard keeps counting. One
failing streak is one source event (``health:<env>/<service>@<streak start>``): a
service that stays unhealthy after its rollback asks once, never every minute.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger

from flows.launch import EmbeddedLauncher, Intake, Launcher, make_launcher
from rollback.config import Config, load_config
from rollback.config.webhooks import ServiceHealth
from rollback.metric_sums import MetricSums
from rollback.models import RollbackRequest, utcnow
from rollback.runtime import Runtime
from rollback.stores.health_state import HealthState, HealthStateStore
from tasks.health import error_rates, probe_service, record_health, should_roll_back

ROLLBACK_WAIT_S = 900


@flow(name="health-guard", persist_result=False)
def health_guard_flow(
    config_path: str | None = None, mode: str | None = None
) -> list[dict[str, Any]]:
    """Check every service in ``health_guard.services``; roll back the ones that failed
    ``failures_to_trigger`` times in a row. ``mode``: embedded or deployment (default:
    deployment when a Prefect API is configured).

    Args:
        config_path: The YAML config file; empty means $ROLLBACK_CONFIG on the worker.
        mode: How rollbacks start: deployment (runs of rollback-auto), embedded (in
            this process) or worker (the long-lived `rollback worker`, which also runs
            these ticks); empty: deployment when a Prefect API is configured.
    """
    config = load_config(config_path)
    launcher = make_launcher(config, mode)
    try:
        return run_guard(config, launcher)
    finally:
        if isinstance(launcher, EmbeddedLauncher):
            # Embedded: the rollbacks run in this process, which must outlive them.
            launcher.wait_idle(ROLLBACK_WAIT_S)
        launcher.close()


def run_guard(
    config: Config,
    launcher: Launcher,
    runtime: Runtime | None = None,
    metrics: MetricSums | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    guard = config.health_guard
    if guard is None or not guard.services:
        get_run_logger().info("no services under the health guard (health_guard.services)")
        return []
    rt = runtime or Runtime(config)
    rt.ensure_tables()
    store = rt.health_state()
    metrics = metrics or rt.metric_sums()
    intake = Intake(config, launcher, rt)
    now = now or utcnow()
    return [
        _guard_one(check, store, metrics, intake, guard.failures_to_trigger, now)
        for check in guard.services
    ]


def _guard_one(
    check: ServiceHealth,
    store: HealthStateStore,
    metrics: MetricSums,
    intake: Intake,
    failures_to_trigger: int,
    now: datetime,
) -> dict[str, Any]:
    results = [*probe_service(check), *error_rates(check, metrics, now)]
    state = record_health(store, check, results)
    summary: dict[str, Any] = {
        "environment": check.environment,
        "service": check.service,
        "healthy": all(c.passed for c in results),
        "failures": state.failures,
        "checks": [c.as_dict() for c in results],
        "rollback": None,
    }
    if should_roll_back(state, failures_to_trigger):
        acceptance = intake.submit(_request(check, state))
        summary["rollback"] = {
            "status": acceptance.status,
            "audit_id": acceptance.audit_id,
            "flow_run_id": acceptance.flow_run_id,
        }
        get_run_logger().warning(
            "%s/%s: %d failures in a row, rollback %s (audit %s)",
            check.environment,
            check.service,
            state.failures,
            acceptance.status,
            acceptance.audit_id,
        )
    return summary


def _request(check: ServiceHealth, state: HealthState) -> RollbackRequest:
    return RollbackRequest(
        environment=check.environment,
        service=check.service,
        reason=f"health guard: {state.failures} failed checks in a row: {state.detail}"[:500],
        requested_by="health-guard",
        trigger="health",
        authenticated_by="health-guard",
        source_event_id=f"health:{check.environment}/{check.service}@{state.since}",
    )
