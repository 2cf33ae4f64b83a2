"""CloudWatch sums over a window (the health guard's error rates): one GetMetricData
call per check, translated errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from rollback import aws


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
