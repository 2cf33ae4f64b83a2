"""Health-guard stage: probe the health URL, read error rates from CloudWatch, count
consecutive failures in the store. The rules (``rate_check``, ``should_roll_back``)
are pure functions; the tasks are thin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from prefect import get_run_logger

from rollback import aws, health
from rollback.config.webhooks import ServiceHealth
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


# -- the CloudWatch adapter ------------------------------------------------------------------
@dataclass(frozen=True)
class RateQuery:
    namespace: str
    dimension: str
    value: str
    errors: str
    total: str


class MetricSums(aws.AwsAdapter):
    """Sums of CloudWatch metrics over a window: one GetMetricData call."""

    service = "cloudwatch"

    def rates(
        self, queries: list[RateQuery], start: datetime, end: datetime
    ) -> list[tuple[float, float]]:
        """(errors, total) per query, summed over ``[start, end)``."""
        period = max(60, int((end - start).total_seconds()) // 60 * 60)
        metric_queries = []
        for i, q in enumerate(queries):
            for suffix, name in (("e", q.errors), ("t", q.total)):
                metric_queries.append(
                    {
                        "Id": f"{suffix}{i}",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": q.namespace,
                                "MetricName": name,
                                "Dimensions": [{"Name": q.dimension, "Value": q.value}],
                            },
                            "Period": period,
                            "Stat": "Sum",
                        },
                    }
                )
        if not metric_queries:
            return []
        try:
            out = self.client.get_metric_data(
                MetricDataQueries=metric_queries, StartTime=start, EndTime=end
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws.translate(exc, "read CloudWatch error rates") from exc
        sums = {r["Id"]: float(sum(r.get("Values", []))) for r in out["MetricDataResults"]}
        return [(sums.get(f"e{i}", 0.0), sums.get(f"t{i}", 0.0)) for i in range(len(queries))]


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
