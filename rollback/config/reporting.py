"""Config section for the scheduled metrics reports.

``metrics`` describes the CloudWatch metrics a report fetches, keyed by ``env/service``
(one environment) or by service name (every environment); the exact key wins.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Strict):
    """One CloudWatch metric of a service, fetched hourly over the report window."""

    namespace: str = Field(description="e.g. AWS/Lambda, AWS/ApiGateway, AWS/ECS")
    name: str = Field(description="metric name, e.g. Errors, 5XXError, CPUUtilization")
    dimensions: dict[str, str] = Field(default_factory=dict)
    stat: Literal["Sum", "Average", "Maximum", "Minimum", "SampleCount"] = "Sum"
    label: str | None = Field(default=None, description="key in the report; default: name")

    @property
    def key(self) -> str:
        return self.label or self.name


class ReportsConfig(_Strict):
    out_dir: str | None = Field(default="reports-out", description="local output directory")
    s3_prefix: str | None = Field(default=None, description="s3://bucket/prefix for the files")
    timezone: str = Field(default="UTC", description="schedules and local times in the summary")
    days: int = Field(default=30, gt=0, description="default window in days")
    scan_segments: int = Field(default=4, ge=1, le=64, description="parallel history scan")
    metrics: dict[str, list[MetricSpec]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError(f"s3_prefix must look like s3://bucket/prefix, not {value!r}")
        return value

    def metrics_for(self, environment: str, service: str) -> list[MetricSpec]:
        """The metrics configured for one service: ``env/service`` first, then ``service``."""
        exact = self.metrics.get(f"{environment}/{service}")
        return list(exact if exact is not None else self.metrics.get(service, []))

    def services_with_metrics(self, environment: str) -> set[str]:
        """Service names that have an ``env/service`` key for this environment."""
        prefix = f"{environment}/"
        return {k[len(prefix) :] for k in self.metrics if k.startswith(prefix)}
