"""Verification stage: fetch the baseline and bake-window series of a service's metrics
(one GetMetricData call) and judge them (``rollback.verification``, pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rollback.config.verification import MetricSpec, VerificationSettings
from rollback.metric_series import MetricSeries, SeriesQuery
from rollback.verification import Judgement, judge, rate_series
from tasks._common import stage


@dataclass(frozen=True)
class Windows:
    """Per-metric one-minute series: the baseline before the deploy, the bake after."""

    start: datetime  # the deploy, floored to the minute
    baseline: list[list[float | None]]
    bake: list[list[float | None]]


def floor_minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _queries(spec: MetricSpec) -> list[SeriesQuery]:
    dims = tuple(sorted(spec.dimensions.items()))
    out = [SeriesQuery(spec.namespace, spec.metric, spec.stat, dims)]
    if spec.per:
        out.append(SeriesQuery(spec.namespace, spec.per, spec.stat, dims))
    return out


def _series(spec: MetricSpec, raw: list[list[float | None]]) -> list[float | None]:
    if spec.per:
        return rate_series(raw[0], raw[1], spec.min_count)
    return raw[0]


def fetch_windows(
    source: MetricSeries, settings: VerificationSettings, deployed_at: datetime, until: datetime
) -> Windows:
    """Baseline ``[deploy - baseline_minutes, deploy)`` and bake ``[deploy, until)``
    (at most ``bake_minutes``), read in one call over the whole span."""
    start = floor_minute(deployed_at)
    end = min(floor_minute(until), start + timedelta(minutes=settings.bake_minutes))
    end = max(end, start)
    first = start - timedelta(minutes=settings.baseline_minutes)
    queries: list[SeriesQuery] = []
    spans: list[tuple[int, int]] = []
    for spec in settings.metrics:
        qs = _queries(spec)
        spans.append((len(queries), len(queries) + len(qs)))
        queries.extend(qs)
    raw = source.minutes(queries, first, end) if queries else []
    cut = settings.baseline_minutes
    baseline, bake = [], []
    for spec, (a, b) in zip(settings.metrics, spans, strict=True):
        series = _series(spec, raw[a:b])
        baseline.append(series[:cut])
        bake.append(series[cut:])
    return Windows(start, baseline, bake)


def analyse(
    settings: VerificationSettings, windows: Windows, health_probes: list[bool] | None = None
) -> Judgement:
    return judge(
        settings.rules(),
        windows.baseline,
        windows.bake,
        settings.fails_in_a_row,
        health_probes or (),
        settings.health_failures,
    )


@stage("fetch-verification-windows")
def fetch_windows_task(
    source: MetricSeries, settings: VerificationSettings, deployed_at: datetime, until: datetime
) -> Windows:
    return fetch_windows(source, settings, deployed_at, until)
