"""Config of deploy verification (bake window analysis), per environment with
per-service overrides:

```yaml
environments:
  prod:
    verification:
      bake_minutes: 10
      baseline_minutes: 60
      alpha: 0.05
      metrics:
        - {name: 5xx-rate, namespace: AWS/ApiGateway, metric: 5XXError, per: Count,
           dimensions: {ApiName: public-api}, stat: Sum, max_pct: 10, min_effect: 0.5}
      services:
        api: {bake_minutes: 15}        # replaces only the fields it names
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # numpy/SciPy load only when a verification runs
    from rollback.verification import MetricRule

RATE_MIN_EFFECT = 0.5  # error rates: +50 %
OTHER_MIN_EFFECT = 0.2  # latency and other statistics: +20 %


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Strict):
    """One CloudWatch metric compared between the baseline and the bake window."""

    name: str = Field(min_length=1, max_length=64)
    namespace: str
    metric: str
    per: str | None = Field(
        default=None,
        description="denominator metric (same namespace and dimensions): the series is "
        "metric/per in percent per minute, e.g. 5XXError per Count",
    )
    dimensions: dict[str, str] = Field(default_factory=dict)
    stat: str = Field(default="Average", description="Sum, Average, Maximum, p99, ...")
    max_pct: float | None = Field(default=None, ge=0, description="rates: absolute ceiling, %")
    max_value: float | None = Field(default=None, description="others: absolute ceiling")
    min_effect: float | None = Field(
        default=None, description="relative effect needed to fail (default +50 % rates, +20 %)"
    )
    min_count: float = Field(
        default=1, ge=0, description="rates: a minute with fewer requests is no sample"
    )

    @model_validator(mode="after")
    def _ceilings(self) -> MetricSpec:
        if self.max_pct is not None and self.per is None:
            raise ValueError(f"metric {self.name!r}: max_pct needs per (a rate)")
        return self

    def rule(self, alpha: float, min_samples: int) -> MetricRule:
        from rollback.verification import MetricRule

        rate = self.per is not None
        default_effect = RATE_MIN_EFFECT if rate else OTHER_MIN_EFFECT
        return MetricRule(
            name=self.name,
            min_effect=self.min_effect if self.min_effect is not None else default_effect,
            max_value=self.max_pct if rate else self.max_value,
            alpha=alpha,
            min_samples=min_samples,
        )


class VerificationSettings(_Strict):
    bake_minutes: int = Field(default=10, ge=1, le=240)
    baseline_minutes: int = Field(default=60, ge=5, le=1440)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_samples: int = Field(default=5, ge=2, description="minutes with data per window")
    fails_in_a_row: int = Field(default=2, ge=1, description="failing minutes that end a bake")
    health_failures: int = Field(default=2, ge=1, description="health URL failures in a row")
    metrics: list[MetricSpec] = Field(default_factory=list)

    def rules(self) -> list[MetricRule]:
        return [m.rule(self.alpha, self.min_samples) for m in self.metrics]


class VerificationConfig(VerificationSettings):
    services: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-service overrides of the fields above"
    )

    @model_validator(mode="after")
    def _overrides(self) -> VerificationConfig:
        for name in self.services:
            self.for_service(name)  # validate each override now, naming the service
        return self

    def for_service(self, service: str) -> VerificationSettings:
        base = self.model_dump(exclude={"services"})
        override = self.services.get(service) or {}
        try:
            return VerificationSettings.model_validate(base | dict(override))
        except ValueError as exc:
            raise ValueError(f"verification.services[{service!r}]: {exc}") from None


def verification_for(config: Any, environment: str, service: str) -> VerificationSettings | None:
    """The verification settings of one service, or None when none are configured."""
    env = config.environment(environment)
    config.service(environment, service)
    cfg: VerificationConfig | None = getattr(env, "verification", None)
    return cfg.for_service(service) if cfg is not None else None
