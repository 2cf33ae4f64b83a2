"""Config of the e-mail channel: an SNS topic (its e-mail subscriptions get the text)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SnsNotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic_arn: str | None = Field(default=None, description="default topic for every env")
    environments: dict[str, str] = Field(
        default_factory=dict, description="per-environment topic ARNs (win over topic_arn)"
    )

    def topic_for(self, environment: str) -> str | None:
        return self.environments.get(environment) or self.topic_arn


class GithubDeploymentTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: str = Field(description="owner/name")
    environment: str = Field(description="the GitHub deployment environment, e.g. production")


class GithubDeploymentsConfig(BaseModel):
    """Mirror rollbacks into GitHub deployments: the failed deployment gets ``failure``
    (rollback succeeded) and the rollback version a deployment + status with the run link
    as ``log_url``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_env: str = Field(default="GITHUB_TOKEN", description="env var holding the token")
    base_url: str = "https://api.github.com"
    services: dict[str, GithubDeploymentTarget] = Field(
        default_factory=dict, description='"<env>/<service>" -> repository and environment'
    )

    def target_for(self, environment: str, service: str) -> GithubDeploymentTarget | None:
        return self.services.get(f"{environment}/{service}")
