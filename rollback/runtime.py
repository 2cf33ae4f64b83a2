"""Everything a rollback run talks to, built once per run from the validated config.

Adapters are created lazily; tests may pass their own clients or targets.
"""

from __future__ import annotations

from typing import Any

from rollback.config import Config
from rollback.ecr import EcrImages
from rollback.metric_series import MetricSeries
from rollback.metric_sums import MetricSums
from rollback.notifiers.github_deployments import GithubDeployments
from rollback.notifiers.slack import SlackNotifier, slack_url
from rollback.notifiers.sns import SnsPublisher
from rollback.platform_rollbacks import AwsPlatformRollbacks
from rollback.report_metrics import CloudWatchMetrics
from rollback.report_uploads import S3Output
from rollback.snapshots import RdsSnapshots
from rollback.stores.audit import AuditStore
from rollback.stores.health_state import HealthStateStore
from rollback.stores.history import HistoryStore
from rollback.stores.locks import LockStore
from rollback.stores.markers import MarkerStore
from rollback.targets.base import RunContext, Target, build_target


class Runtime:
    def __init__(
        self,
        config: Config,
        dynamodb: Any = None,
        targets: dict[str, Target] | None = None,
        *,
        tables_checked: bool = False,
    ):
        self.config = config
        stores = config.stores
        block = config.aws.credentials_block
        self.audit = AuditStore(stores.audit_table, dynamodb, block)
        self.locks = LockStore(stores.audit_table, dynamodb, block)
        self.markers = MarkerStore(stores.audit_table, dynamodb, block)
        self.history = HistoryStore(
            stores.history_table, dynamodb, block, ttl_days=stores.history_ttl_days
        )
        self._targets = dict(targets or {})
        self.run_context = RunContext()
        self._tables_checked = tables_checked  # True: this process checked them already

    def ensure_tables(self) -> None:
        """Check (or create, if configured) both tables, once per runtime."""
        if not self._tables_checked:
            for table in (self.audit, self.history):
                table.ensure(self.config.stores.create_tables)
            self._tables_checked = True

    def target(self, environment: str, service: str) -> Target:
        key = f"{environment}/{service}"
        if key not in self._targets:
            self._targets[key] = build_target(self.config.service(environment, service))
        target = self._targets[key]
        target.bind(self.run_context, self.config.aws.credentials_block)
        return target

    # -- the other adapters: every AWS client gets the configured credentials ---------------
    def ecr_images(self) -> EcrImages:
        return EcrImages(credentials_block=self.config.aws.credentials_block)

    def rds_snapshots(self) -> RdsSnapshots:
        return RdsSnapshots(credentials_block=self.config.aws.credentials_block)

    def metric_sums(self) -> MetricSums:
        return MetricSums(credentials_block=self.config.aws.credentials_block)

    def sns(self) -> SnsPublisher:
        return SnsPublisher(credentials_block=self.config.aws.credentials_block)

    def metric_series(self) -> MetricSeries:
        return MetricSeries(credentials_block=self.config.aws.credentials_block)

    def platform_rollbacks(self) -> AwsPlatformRollbacks:
        return AwsPlatformRollbacks(credentials_block=self.config.aws.credentials_block)

    def report_metrics(self) -> CloudWatchMetrics:
        """The hourly CloudWatch series of the metrics reports."""
        return CloudWatchMetrics(credentials_block=self.config.aws.credentials_block)

    def report_uploads(self, s3_prefix: str) -> S3Output:
        """Report files under ``s3_prefix`` (s3://bucket/prefix)."""
        return S3Output(s3_prefix, credentials_block=self.config.aws.credentials_block)

    def github_deployments(self) -> GithubDeployments | None:
        cfg = self.config.notifications.github_deployments
        return GithubDeployments(cfg.base_url, cfg.token_env) if cfg else None

    def health_state(self) -> HealthStateStore:
        block = self.config.aws.credentials_block
        return HealthStateStore(self.config.stores.audit_table, None, block)

    def slack(self) -> SlackNotifier | None:
        cfg = self.config.notifications.slack
        if cfg is None:
            return None
        url = slack_url(cfg)
        return SlackNotifier(url, timeout_s=cfg.timeout_s) if url else None
