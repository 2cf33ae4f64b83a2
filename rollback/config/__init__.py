"""The one validated configuration model, loaded once at the edge and passed down.

Secrets never live here: the config names the environment variable or Prefect Secret
block that holds them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rollback.bounded import BoundedMap
from rollback.config.notifications import GithubDeploymentsConfig, SnsNotifyConfig
from rollback.config.reporting import ReportsConfig
from rollback.config.verification import VerificationConfig
from rollback.config.webhooks import AlarmRoute, HealthGuardConfig, WebhooksConfig
from rollback.errors import ConfigError
from rollback.targets.base import ServiceConfig, format_validation_errors, parse_service_config

CONFIG_ENV = "ROLLBACK_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoresConfig(_Strict):
    audit_table: str = "rollback-audit-log"
    history_table: str = "deployment-history"
    create_tables: bool = False
    lock_lease_s: float = Field(default=120, gt=0, description="lock expiry unless renewed")
    history_ttl_days: int = Field(default=90, gt=0)


class SlackConfig(_Strict):
    webhook_env: str = "SLACK_WEBHOOK_URL"
    secret_block: str | None = None
    channels: dict[str, str] = Field(
        default_factory=lambda: {
            "prod": "#deployments-production",
            "staging": "#deployments-staging",
        }
    )
    default_channel: str = "#deployments"
    timeout_s: float = 5

    def channel_for(self, environment: str) -> str:
        return self.channels.get(environment, self.default_channel)


class NotificationsConfig(_Strict):
    slack: SlackConfig | None = None
    sns: SnsNotifyConfig | None = None  # e-mail through an SNS topic
    github_deployments: GithubDeploymentsConfig | None = None  # statuses on GitHub


class AwsConfig(_Strict):
    credentials_block: str | None = Field(
        default=None, description="name of a prefect-aws AwsCredentials block"
    )


class EnvironmentConfig(_Strict):
    protected: bool = False
    confirmation: str | None = None
    auto_rollback: bool = False
    cooldown_s: float = Field(default=900, ge=0)
    max_auto_per_hour: int = Field(default=3, ge=1)
    services: dict[str, ServiceConfig]
    # Deploy verification (bake window analysis), per-service overrides inside.
    verification: VerificationConfig | None = None

    @field_validator("services", mode="before")
    @classmethod
    def _services(cls, value: Any) -> dict[str, ServiceConfig]:
        if not isinstance(value, dict) or not value:
            raise ValueError("needs at least one service (a mapping of name to settings)")
        out = {}
        for name, data in value.items():
            try:
                out[str(name)] = parse_service_config(data)
            except ValueError as exc:
                raise ValueError(f"service {name!r}: {exc}") from None
        return out


class Config(_Strict):
    stores: StoresConfig = Field(default_factory=StoresConfig)
    environments: dict[str, EnvironmentConfig]
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    webhooks: WebhooksConfig | None = None
    alarms: dict[str, AlarmRoute] = Field(default_factory=dict)
    health_guard: HealthGuardConfig | None = None
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    prefect_ui_url: str | None = Field(
        default=None, description="base URL of the Prefect UI, for links in notifications"
    )
    source: str = Field(default="", exclude=True)

    def environment(self, name: str) -> EnvironmentConfig:
        if name not in self.environments:
            known = ", ".join(sorted(self.environments))
            raise ConfigError(f"unknown environment {name!r} (configured: {known})")
        return self.environments[name]

    def service(self, environment: str, service: str) -> ServiceConfig:
        env = self.environment(environment)
        if service not in env.services:
            known = ", ".join(sorted(env.services))
            raise ConfigError(
                f"unknown service {service!r} in environment {environment!r} (configured: {known})"
            )
        return env.services[service]

    def flow_run_url(self, flow_run_id: str | None) -> str | None:
        """The flow run's page in the Prefect UI (None without a run or a UI URL)."""
        if not flow_run_id:
            return None
        base = self.prefect_ui_url
        if not base:
            from prefect.settings import PREFECT_UI_URL

            base = PREFECT_UI_URL.value()
        if not base:
            return None
        base = base.rstrip("/")
        # The V2 UI (the default UI of Prefect 3.8); the V1 pages live at the bare base.
        v2 = base if base.endswith("/v2") else f"{base}/v2"
        return f"{v2}/runs/flow-run/{flow_run_id}"

    def confirmation_for(self, environment: str) -> str:
        return self.environment(environment).confirmation or f"ROLLBACK-{environment.upper()}"


def parse_config(data: Any, source: str = "<config>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping")
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_errors(exc)}") from None


# The last configs this process parsed, by path, with the text they came from: a
# long-lived worker runs every rollback with the same file and parses it once (the YAML
# parse was ~15 % of a warm rollback's worker CPU); a changed file is parsed again.
_PARSED: BoundedMap[tuple[str, Config]] = BoundedMap(32)
_PARSED_LOCK = threading.Lock()


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the YAML config (path, or $ROLLBACK_CONFIG)."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"no config given: pass --config FILE or set {CONFIG_ENV}")
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc.strerror or exc}") from None
    with _PARSED_LOCK:
        known = _PARSED.get(str(file))
    if known is not None and known[0] == text:
        return known[1]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    config = parse_config(data, str(file))
    with _PARSED_LOCK:
        _PARSED[str(file)] = (text, config)
    return config
