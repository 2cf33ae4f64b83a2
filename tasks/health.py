"""Health-guard stage: probe the health URL, read error rates from CloudWatch, count
consecutive failures in the store. The rules (``rate_check``, ``should_roll_back``)
are pure functions; the tasks are thin."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import get_run_logger

from rollback import health
from rollback.config.webhooks import ServiceHealth
from rollback.metric_sums import MetricSums, RateQuery
from rollback.models import CheckResult
from rollback.stores.health_state import HealthState, HealthStateStore
from tasks._common import stage

LAMBDA = ("AWS/Lambda", "FunctionName", "Errors", "Invocations")
API_GATEWAY = ("AWS/ApiGateway", "ApiName", "5XXError", "Count")


# -- pure rules ----------------------------------------------------------------------------
def rate_check(
    name: str, errors: float, total: float, threshold_pct: float, min_requests: int
) -> CheckResult:
    """Passes unless errors/total is above the threshold (too few requests: no verdict)."""
    if total < min_requests:
        return CheckResult(name, True, f"{total:.0f} requests (< {min_requests}): no verdict")
    rate = errors / total * 100
    detail = f"{rate:.1f}% ({errors:.0f}/{total:.0f}), threshold {threshold_pct:g}%"
    return CheckResult(name, rate <= threshold_pct, detail)


def should_roll_back(state: HealthState, failures_to_trigger: int) -> bool:
    return state.failures >= failures_to_trigger


def rate_queries(check: ServiceHealth) -> list[tuple[str, RateQuery, float]]:
    out = []
    if check.lambda_function:
        out.append(
            (
                "lambda_error_rate",
                RateQuery(*LAMBDA[:2], check.lambda_function, *LAMBDA[2:]),
                check.lambda_error_rate_pct,
            )
        )
    if check.api_name:
        out.append(
            (
                "api_5xx_rate",
                RateQuery(*API_GATEWAY[:2], check.api_name, *API_GATEWAY[2:]),
                check.api_5xx_rate_pct,
            )
        )
    return out


# -- tasks ---------------------------------------------------------------------------------
@stage("probe-health", retries=0)
def probe_service(check: ServiceHealth) -> list[CheckResult]:
    if not check.url:
        return []
    ok, detail = health.probe(check.url, check.timeout_s)
    return [CheckResult("health_url", ok, f"{check.url}: {detail}")]


@stage("error-rates")
def error_rates(check: ServiceHealth, metrics: MetricSums, now: datetime) -> list[CheckResult]:
    wanted = rate_queries(check)
    if not wanted:
        return []
    # Whole minutes, ending at the next minute boundary: the newest datapoints count.
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=check.metric_window_minutes)
    values = metrics.rates([q for _, q, _ in wanted], start, end)
    return [
        rate_check(name, errors, total, threshold, check.min_requests)
        for (name, _, threshold), (errors, total) in zip(wanted, values, strict=True)
    ]


@stage("record-health")
def record_health(
    store: HealthStateStore, check: ServiceHealth, results: list[CheckResult]
) -> HealthState:
    failed = [c for c in results if not c.passed]
    detail = "; ".join(f"{c.name}: {c.detail}" for c in (failed or results)) or "no checks"
    state = store.record(check.environment, check.service, not failed, detail)
    log = get_run_logger()
    for c in results:
        log.info(
            "%s/%s %-18s %s  %s",
            check.environment,
            check.service,
            c.name,
            "pass" if c.passed else "FAIL",
            c.detail,
        )
    if failed:
        log.warning(
            "%s/%s unhealthy (%d in a row): %s",
            check.environment,
            check.service,
            state.failures,
            detail,
        )
    return state
