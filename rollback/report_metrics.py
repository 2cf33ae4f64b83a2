"""CloudWatch metrics of the configured services, hourly over a report's window.

``CloudWatchMetrics`` is the adapter (one ``GetMetricData`` call per batch of up to 500
metrics, paged); it returns ``MetricSeries``, never boto3 dicts. What the report makes of
them (summaries, error rates) is pure and lives in ``reports.cloudwatch``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from rollback import aws
from rollback.config.reporting import MetricSpec

log = logging.getLogger(__name__)
PERIOD_S = 3600
_BATCH = 500  # GetMetricData accepts at most 500 queries per call


@dataclass(frozen=True)
class MetricQuery:
    service: str
    spec: MetricSpec


@dataclass(frozen=True)
class MetricSeries:
    """Hourly datapoints of one metric of one service, oldest first."""

    service: str
    key: str
    namespace: str
    name: str
    stat: str
    dimensions: tuple[tuple[str, str], ...]
    timestamps: tuple[datetime, ...]
    values: tuple[float, ...]


class MetricsSource(Protocol):
    def series(
        self, queries: list[MetricQuery], start: datetime, end: datetime
    ) -> list[MetricSeries]:
        """Hourly datapoints in ``[start, end)`` for each query, in query order."""
        ...


class CloudWatchMetrics(aws.AwsAdapter):
    service = "cloudwatch"

    def series(
        self, queries: list[MetricQuery], start: datetime, end: datetime
    ) -> list[MetricSeries]:
        out: list[MetricSeries] = []
        for first in range(0, len(queries), _BATCH):
            out.extend(self._batch(queries[first : first + _BATCH], start, end))
        return out

    def _batch(
        self, queries: list[MetricQuery], start: datetime, end: datetime
    ) -> list[MetricSeries]:
        request = [
            {
                "Id": f"m{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": q.spec.namespace,
                        "MetricName": q.spec.name,
                        "Dimensions": [
                            {"Name": k, "Value": v} for k, v in sorted(q.spec.dimensions.items())
                        ],
                    },
                    "Period": PERIOD_S,
                    "Stat": q.spec.stat,
                },
                "ReturnData": True,
            }
            for i, q in enumerate(queries)
        ]
        points: dict[str, dict[datetime, float]] = {f"m{i}": {} for i in range(len(queries))}
        kwargs: dict[str, Any] = {
            "MetricDataQueries": request,
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        while True:
            try:
                page = self.client.get_metric_data(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise aws.translate(exc, "read CloudWatch metrics") from exc
            for result in page.get("MetricDataResults", []):
                for ts, value in zip(result["Timestamps"], result["Values"], strict=True):
                    points[result["Id"]][ts.astimezone(UTC)] = float(value)
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        series = []
        for i, q in enumerate(queries):
            ordered = sorted(points[f"m{i}"].items())
            series.append(
                MetricSeries(
                    service=q.service,
                    key=q.spec.key,
                    namespace=q.spec.namespace,
                    name=q.spec.name,
                    stat=q.spec.stat,
                    dimensions=tuple(sorted(q.spec.dimensions.items())),
                    timestamps=tuple(t for t, _ in ordered),
                    values=tuple(v for _, v in ordered),
                )
            )
        log.info("read %d CloudWatch series", len(series))
        return series
