"""Config sections for the webhook receiver, alarm routing and the health guard."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GithubRule(_Strict):
    repository: str
    workflow: str | None = None
    branch: str | None = None
    environment: str
    service: str


class GithubWebhookConfig(_Strict):
    secret_env: str = "GITHUB_WEBHOOK_SECRET"
    conclusions: list[str] = Field(default_factory=lambda: ["failure", "timed_out"])
    rollback_pattern: str = "rollback"
    rules: list[GithubRule] = Field(default_factory=list)


class WebhooksConfig(_Strict):
    github: GithubWebhookConfig | None = None
    api_token_env: str = "ROLLBACK_API_TOKEN"


class AlarmRoute(_Strict):
    environment: str
    service: str


class HealthGuardConfig(_Strict):
    failures_to_trigger: int = Field(default=2, ge=1)
