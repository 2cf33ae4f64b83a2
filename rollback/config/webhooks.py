"""Config sections for the webhook receiver, alarm routing and the health guard.

Secrets are never here: the config names the environment variables that hold them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GithubRule(_Strict):
    """Which failed GitHub run means which service must be rolled back."""

    repository: str = Field(description="owner/name, compared case-insensitively")
    workflow: str | None = Field(
        default=None, description="workflow name, file name or path; empty: any workflow"
    )
    branch: str | None = Field(default=None, description="head branch (deployment ref)")
    github_environment: str | None = Field(
        default=None, description="deployment_status only: the GitHub deployment environment"
    )
    environment: str
    service: str


class GithubWebhookConfig(_Strict):
    secret_env: str = "GITHUB_WEBHOOK_SECRET"
    conclusions: list[str] = Field(default_factory=lambda: ["failure", "timed_out"])
    deployment_states: list[str] = Field(default_factory=lambda: ["failure", "error"])
    rollback_pattern: str = Field(
        default="rollback",
        description="regex (case-insensitive): a workflow whose name or path matches is a "
        "rollback itself and never triggers one",
    )
    ignore_actors: list[str] = Field(
        default_factory=list,
        description="GitHub logins whose runs never trigger a rollback (our own bot)",
    )
    events: list[str] = Field(
        default_factory=lambda: ["push", "workflow_dispatch", "schedule", "release", "deployment"],
        description="workflow_run.event values that may trigger a rollback; a pull_request "
        "run (or any other) never does",
    )
    rules: list[GithubRule] = Field(default_factory=list)


class SnsConfig(_Strict):
    topic_arns: list[str] = Field(
        default_factory=list,
        description="topics accepted; empty: no topic is accepted (SNS is off)",
    )
    confirm_subscriptions: bool = Field(
        default=True, description="confirm subscriptions, only to the topics above"
    )
    max_age_s: int = Field(
        default=3600, gt=0, description="refuse messages whose Timestamp is older than this"
    )
    clock_skew_s: int = Field(
        default=300, ge=0, description="refuse messages stamped further in the future"
    )
    cert_cache_size: int = Field(
        default=64, gt=0, description="signing certificates kept (least recently used dropped)"
    )
    cert_fetch_timeout_s: float = Field(
        default=3, gt=0, description="a certificate or SubscribeURL fetch gives up after this"
    )


class CloudwatchWebhookConfig(_Strict):
    token_env: str = Field(
        default="ROLLBACK_ALARM_TOKEN",
        description="env var holding the bearer token of the alarm shapes (alarm action, "
        "EventBridge API destination); unset: those shapes are refused. Never the API token.",
    )


Mode = Literal["auto", "embedded", "deployment", "worker"]


class WebhooksConfig(_Strict):
    github: GithubWebhookConfig | None = None
    sns: SnsConfig = Field(default_factory=SnsConfig)
    cloudwatch: CloudwatchWebhookConfig = Field(default_factory=CloudwatchWebhookConfig)
    api_token_env: str = Field(
        default="ROLLBACK_API_TOKEN",
        description="env var holding the bearer token of POST /rollback and /deployment/*",
    )
    max_body_bytes: int = Field(default=MIB, gt=0)
    mode: Mode = Field(
        default="auto",
        description="how a request becomes a flow run: embedded (this process), deployment "
        "(run_deployment on a Prefect server), worker (a queued flow run that a long-lived "
        "`rollback worker` runs), auto (deployment when PREFECT_API_URL is set)",
    )
    deployment: str = Field(default="rollback/rollback-auto", description="flow/deployment")
    flow_config_path: str | None = Field(
        default=None,
        description="config path the deployment's flow runs read (default: this config's path)",
    )
    estimated_duration: str = "2-5 minutes"


class AlarmRoute(_Strict):
    environment: str
    service: str


class ServiceHealth(_Strict):
    """What the health guard watches for one service."""

    environment: str
    service: str
    url: str | None = None
    timeout_s: float = Field(default=3, gt=0)
    lambda_function: str | None = Field(default=None, description="AWS/Lambda FunctionName")
    lambda_error_rate_pct: float = Field(default=5, ge=0)
    api_name: str | None = Field(default=None, description="AWS/ApiGateway ApiName")
    api_5xx_rate_pct: float = Field(default=10, ge=0)
    metric_window_minutes: int = Field(default=5, ge=1)
    min_requests: int = Field(
        default=1, ge=1, description="fewer requests than this in the window: no verdict"
    )


class HealthGuardConfig(_Strict):
    failures_to_trigger: int = Field(default=2, ge=1)
    services: list[ServiceHealth] = Field(default_factory=list)
