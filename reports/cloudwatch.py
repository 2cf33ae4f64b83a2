"""What the report makes of CloudWatch metrics: which series to read for an environment,
their summaries and the error rates against the runbook thresholds. Pure functions; the
adapter that reads the series is ``rollback.report_metrics.CloudWatchMetrics``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from rollback.config.reporting import ReportsConfig
from rollback.report_metrics import PERIOD_S, MetricQuery, MetricSeries


def metric_queries(
    config: ReportsConfig, environment: str, services: set[str] | list[str]
) -> list[MetricQuery]:
    """What to fetch for one environment: every known service's configured metrics."""
    names = sorted(set(services) | config.services_with_metrics(environment))
    return [
        MetricQuery(service, spec)
        for service in names
        for spec in config.metrics_for(environment, service)
    ]


def summarize(values: tuple[float, ...] | list[float]) -> dict[str, Any]:
    """sum / avg / max / p95 of the hourly datapoints (p95 interpolates linearly)."""
    if not values:
        return {"datapoints": 0, "sum": None, "avg": None, "max": None, "p95": None}
    array = np.asarray(values, dtype=float)
    return {
        "datapoints": int(array.size),
        "sum": round(float(array.sum()), 4),
        "avg": round(float(array.mean()), 4),
        "max": round(float(array.max()), 4),
        "p95": round(float(np.percentile(array, 95)), 4),
    }


def metrics_document(
    environment: str,
    window: dict[str, Any],
    generated_at: str,
    series: list[MetricSeries],
    deploys: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``cloudwatch-metrics`` JSON: per service and metric, datapoints and summary."""
    services: dict[str, dict[str, Any]] = {}
    for s in series:
        services.setdefault(s.service, {})[s.key] = {
            "namespace": s.namespace,
            "metric": s.name,
            "stat": s.stat,
            "dimensions": dict(s.dimensions),
            "periodSeconds": PERIOD_S,
            "summary": summarize(s.values),
            "datapoints": [
                {"timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": v}
                for t, v in zip(s.timestamps, s.values, strict=True)
            ],
        }
    return {
        "environment": environment,
        "generatedAt": generated_at,
        "window": window,
        "services": services,
        "errorRates": error_rates(series, deploys or []),
    }


# Runbook thresholds: (errors metric, requests metric, threshold %, label)
RATE_PAIRS = (
    ("Errors", "Invocations", 5.0, "Lambda errors"),
    ("5XXError", "Count", 10.0, "5XX"),
    ("HTTPCode_Target_5XX_Count", "RequestCount", 10.0, "5XX"),
)
NEAR = 3600  # a deploy "near" a breach finished within an hour before or after it


def error_rates(series: list[MetricSeries], deploys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Errors / requests per hour for each service with both metrics, compared with the
    runbook threshold; breaching hours named with the deploys that finished near them
    (``deploys``: dicts with service, version, finishedAt)."""
    out = []
    by_name = {(s.service, s.namespace, s.name): s for s in series}
    for (service, namespace, name), errors in sorted(by_name.items()):
        for err, req, threshold, label in RATE_PAIRS:
            requests = by_name.get((service, namespace, req))
            if name != err or requests is None:
                continue
            counts = dict(zip(requests.timestamps, requests.values, strict=True))
            hours = [(t, e, counts[t]) for t, e in zip(errors.timestamps, errors.values,
                                                        strict=True) if counts.get(t)]  # fmt: skip
            total_e, total_r = sum(h[1] for h in hours), sum(h[2] for h in hours)
            breaches = []
            for t, e, r in hours:
                if e / r * 100 > threshold:
                    near = [
                        d for d in deploys
                        if d["service"] == service
                        and abs(datetime.fromisoformat(d["finishedAt"].replace("Z", "+00:00"))
                                .timestamp() - t.timestamp()) <= NEAR
                    ]  # fmt: skip
                    breaches.append(
                        {
                            "hour": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "percent": round(e / r * 100, 2),
                            "deploysNear": near,
                        }
                    )
            out.append(
                {
                    "service": service,
                    "rate": f"{label} ({err}/{req})",
                    "thresholdPercent": threshold,
                    "overallPercent": round(total_e / total_r * 100, 2) if total_r else None,
                    "breaches": breaches,
                }
            )
    return out
