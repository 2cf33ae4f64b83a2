"""CloudWatch one-minute series (deploy verification): one GetMetricData call for
every query of a window, aligned to the minutes of the window."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from rollback import aws

MAX_QUERIES = 500  # GetMetricData's limit per call


@dataclass(frozen=True)
class SeriesQuery:
    namespace: str
    metric: str
    stat: str
    dimensions: tuple[tuple[str, str], ...] = field(default_factory=tuple)


class MetricSeries(aws.AwsAdapter):
    """Per-minute values of CloudWatch metrics over ``[start, end)``."""

    service = "cloudwatch"

    def minutes(
        self, queries: list[SeriesQuery], start: datetime, end: datetime
    ) -> list[list[float | None]]:
        """One list per query, one value per whole minute of the window (None: no data)."""
        if not queries:
            return []
        if len(queries) > MAX_QUERIES:
            raise ValueError(f"at most {MAX_QUERIES} metric queries per window")
        count = int((end - start).total_seconds() // 60)
        request = [
            {
                "Id": f"q{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": q.namespace,
                        "MetricName": q.metric,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in q.dimensions],
                    },
                    "Period": 60,
                    "Stat": q.stat,
                },
                "ReturnData": True,
            }
            for i, q in enumerate(queries)
        ]
        values: dict[str, dict[datetime, float]] = {f"q{i}": {} for i in range(len(queries))}
        token: str | None = None
        try:
            while True:
                kwargs = {"NextToken": token} if token else {}
                out = self.client.get_metric_data(
                    MetricDataQueries=request, StartTime=start, EndTime=end, **kwargs
                )
                for result in out.get("MetricDataResults", []):
                    into = values.setdefault(result["Id"], {})
                    for ts, value in zip(result["Timestamps"], result["Values"], strict=True):
                        into[ts.replace(second=0, microsecond=0)] = float(value)
                token = out.get("NextToken")
                if not token:
                    break
        except (ClientError, BotoCoreError) as exc:
            raise aws.translate(exc, "read CloudWatch metrics for verification") from exc
        grid = [start + timedelta(minutes=m) for m in range(count)]
        return [[values[f"q{i}"].get(t) for t in grid] for i in range(len(queries))]
