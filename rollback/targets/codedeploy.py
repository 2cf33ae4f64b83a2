"""CodeDeploy deployment groups: stop a deployment in progress (CodeDeploy rolls it back),
or redeploy the revision of the last successful deployment.

Versions are deployments. ``id`` is the deployment id (``d-...``), which the history
records and ``--to`` accepts; ``lookup`` also accepts a revision, written as
``s3://bucket/key`` or ``github:owner/repo@commit``, or a deployment's description,
and answers with the newest *Succeeded* deployment of the group that carries it.
``order`` is the deployment's creation time in epoch milliseconds, so "older" means
"deployed earlier". The version running now is the group's newest deployment,
whatever its status.

Execute does one of two things:

* the newest deployment is still in progress: ``stop_deployment(autoRollbackEnabled=True)``;
  CodeDeploy then creates a rollback deployment of the last successful revision, and
  stabilize waits for that one (named by the stopped deployment's ``rollbackInfo``, or
  else the newest deployment created after it);
* nothing in progress: ``create_deployment`` with the target's revision; the new
  deployment's id is logged and named by verify.

Stabilize polls the deployment it watches: Succeeded is done, Failed or Stopped is a
failed rollback, anything else waits until the timeout.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from rollback import aws
from rollback.errors import NotFoundError, TargetError
from rollback.models import CheckResult, StabilizeResult, Version
from rollback.targets._polling import State, poll_until
from rollback.targets.base import Progress, ServiceConfig, TargetBase, register

log = logging.getLogger(__name__)
IN_PROGRESS = ("Created", "Queued", "InProgress", "Baking", "Ready")
FAILED = ("Failed", "Stopped")
MAX_DEPLOYMENTS = 100
_BATCH = 25


class CodeDeployConfig(ServiceConfig):
    type: Literal["codedeploy"]
    application: str
    deployment_group: str


@register("codedeploy", CodeDeployConfig)
class CodeDeployTarget(TargetBase):
    config: CodeDeployConfig
    proves_versions = True  # only deployments of the configured group

    def __init__(self, config: CodeDeployConfig, client: Any = None):
        super().__init__(config)
        self._client = client
        self._in_progress: str | None = None  # newest deployment, if still running
        self._stopped: str | None = None  # deployment this run stopped
        self._watch: str | None = None  # deployment whose outcome is the rollback's

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.aws_client("codedeploy")
        return self._client

    @property
    def where(self) -> str:
        return f"{self.config.application}/{self.config.deployment_group}"

    # -- reads ---------------------------------------------------------------------------
    def _get(self, deployment_id: str) -> dict[str, Any]:
        try:
            return dict(self.client.get_deployment(deploymentId=deployment_id)["deploymentInfo"])
        except ClientError as exc:
            if aws.error_code(exc) in (
                "DeploymentDoesNotExistException",
                "InvalidDeploymentIdException",
            ):
                raise NotFoundError(f"CodeDeploy deployment {deployment_id!r} not found") from exc
            raise aws.translate(exc, f"get CodeDeploy deployment {deployment_id}") from exc

    def _deployments(self, statuses: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Deployments of the group, newest first (at most MAX_DEPLOYMENTS)."""
        cfg = self.config
        kwargs: dict[str, Any] = {
            "applicationName": cfg.application,
            "deploymentGroupName": cfg.deployment_group,
        }
        if statuses:
            kwargs["includeOnlyStatuses"] = list(statuses)
        ids: list[str] = []
        try:
            for page in self.client.get_paginator("list_deployments").paginate(**kwargs):
                ids.extend(page.get("deployments", []))
            infos: list[dict[str, Any]] = []
            for start in range(0, min(len(ids), MAX_DEPLOYMENTS), _BATCH):
                chunk = ids[start : start + _BATCH]
                out = self.client.batch_get_deployments(deploymentIds=chunk)
                infos.extend(out.get("deploymentsInfo", []))
        except ClientError as exc:
            if aws.error_code(exc) in (
                "ApplicationDoesNotExistException",
                "DeploymentGroupDoesNotExistException",
            ):
                raise NotFoundError(
                    f"CodeDeploy deployment group {self.where} not found: "
                    "check application and deployment_group in the config"
                ) from exc
            raise aws.translate(exc, f"list CodeDeploy deployments of {self.where}") from exc
        return newest_first(infos)

    def current(self) -> Version:
        deployments = self._deployments()
        if not deployments:
            raise NotFoundError(
                f"CodeDeploy deployment group {self.where} has no deployments (or does not "
                "exist): check application and deployment_group in the config"
            )
        newest = deployments[0]
        self._in_progress = newest["deploymentId"] if newest["status"] in IN_PROGRESS else None
        return version_of(newest)

    def lookup(self, spec: str) -> Version:
        spec = spec.strip()
        if not matches_revision_form(spec):
            try:
                info = self._get(spec)
            except NotFoundError:
                info = None
            if info is not None:
                if (info.get("applicationName"), info.get("deploymentGroupName")) != (
                    self.config.application,
                    self.config.deployment_group,
                ):
                    raise NotFoundError(
                        f"CodeDeploy deployment {spec!r} is not of {self.where}: a rollback "
                        "stays within the service's own deployment group"
                    )
                return version_of(info)
        for info in self._deployments(("Succeeded",)):
            if spec in (revision_key(info.get("revision", {})), info.get("description")):
                return version_of(info)
        raise NotFoundError(
            f"no deployment of {self.where} has id, revision or description {spec!r}"
        )

    def candidates(self) -> list[Version]:
        return [version_of(i) for i in self._deployments(("Succeeded",))]

    # -- checks --------------------------------------------------------------------------
    def check(self, current: Version, target: Version) -> list[CheckResult]:
        checks = [_succeeded(target)]
        if _status(current) in IN_PROGRESS:
            succeeded = self.candidates()
            checks.append(stop_restores(current, target, succeeded[0] if succeeded else None))
        return checks

    # -- change --------------------------------------------------------------------------
    def execute(self, target: Version) -> None:
        if self._in_progress is None and self._stopped is None:
            self.current()
        if self._in_progress:
            self._stop(self._in_progress)
        else:
            self._redeploy(target)

    def _stop(self, deployment_id: str) -> None:
        log.info("CodeDeploy stop_deployment %s in %s (auto rollback)", deployment_id, self.where)
        try:
            out = self.client.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
        except ClientError as exc:
            raise aws.translate(exc, f"stop CodeDeploy deployment {deployment_id}") from exc
        log.info("stop of %s: %s %s", deployment_id, out.get("status"), out.get("statusMessage"))
        self._stopped, self._in_progress, self._watch = deployment_id, None, None

    def _redeploy(self, target: Version) -> None:
        cfg = self.config
        revision = revision_of(target)
        description = f"rollback to {target.id}"
        if self.context.audit_id:
            description += f" (audit {self.context.audit_id})"
        try:
            out = self.client.create_deployment(
                applicationName=cfg.application,
                deploymentGroupName=cfg.deployment_group,
                revision=revision,
                description=description,
            )
        except ClientError as exc:
            raise aws.translate(exc, f"create CodeDeploy deployment in {self.where}") from exc
        self._watch = out["deploymentId"]
        log.info(
            "CodeDeploy deployment %s started in %s: revision %s of %s",
            self._watch,
            self.where,
            revision_key(revision),
            target.id,
        )

    def stabilize(self, target: Version, timeout_s: float, progress: Progress) -> StabilizeResult:
        return poll_until(
            self._poll,
            timeout_s=timeout_s,
            interval_s=self.config.poll_interval_s,
            progress=progress,
        )

    def _poll(self) -> tuple[State, str]:
        if self._watch is None and self._stopped:
            stopped = self._get(self._stopped)
            state, line, rollback_id = after_stop(stopped)
            if rollback_id is None and state == "waiting" and stopped["status"] in FAILED:
                rollback_id = self._newest_after(stopped)
            if rollback_id is None:
                return state, line
            self._watch = rollback_id
            log.info("CodeDeploy rolls %s back with deployment %s", self._stopped, rollback_id)
        if self._watch is None:  # resumed run: nothing started here, watch the newest
            self._watch = self._deployments()[0]["deploymentId"]
        return deployment_state(self._get(self._watch))

    def _newest_after(self, stopped: dict[str, Any]) -> str | None:
        newest = self._deployments()[0]
        if newest["deploymentId"] != stopped["deploymentId"] and _created(newest) >= _created(
            stopped
        ):
            return str(newest["deploymentId"])
        return None

    def verify(self, target: Version) -> list[CheckResult]:
        if self._watch is None:
            self._watch = self._deployments()[0]["deploymentId"]
        info = self._get(self._watch)
        want, got = revision_key(revision_of(target)), revision_key(info.get("revision", {}))
        return [
            CheckResult(
                "deployment_succeeded",
                info["status"] == "Succeeded",
                f"rollback deployment {info['deploymentId']} is {info['status']}",
            ),
            CheckResult(
                "revision_is_target",
                want == got,
                f"deployment {info['deploymentId']} deployed {got}"
                + ("" if want == got else f", expected {want}"),
            ),
        ]


# -- pure helpers -------------------------------------------------------------------------
def revision_key(revision: dict[str, Any]) -> str:
    """A short stable name for a revision: s3://bucket/key, github:repo@commit, or the
    kind of an inline AppSpec."""
    kind = revision.get("revisionType", "")
    if kind == "S3":
        s3 = revision.get("s3Location", {})
        key = f"s3://{s3.get('bucket', '')}/{s3.get('key', '')}"
        return key + (f"?versionId={s3['version']}" if s3.get("version") else "")
    if kind == "GitHub":
        gh = revision.get("gitHubLocation", {})
        return f"github:{gh.get('repository', '')}@{gh.get('commitId', '')}"
    if kind in ("String", "AppSpecContent"):
        content = revision.get("string") or revision.get("appSpecContent") or {}
        return f"{kind.lower()}:{content.get('sha256', '') or 'inline'}"
    return kind or "unknown revision"


def matches_revision_form(spec: str) -> bool:
    return spec.startswith(("s3://", "github:"))


def _created(info: dict[str, Any]) -> float:
    ts = info.get("createTime")
    if isinstance(ts, datetime):
        return ts.timestamp()
    return float(ts or 0)


def newest_first(infos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(infos, key=_created, reverse=True)


def version_of(info: dict[str, Any]) -> Version:
    revision = info.get("revision", {})
    key = revision_key(revision)
    return Version(
        id=str(info["deploymentId"]),
        label=f"{info['deploymentId']} ({key})",
        order=int(_created(info) * 1000),
        active=info.get("status") == "Succeeded",
        detail=(
            ("status", str(info.get("status", ""))),
            ("revision", json.dumps(revision, sort_keys=True)),
            ("revision_key", key),
            ("description", str(info.get("description") or "")),
        ),
    )


def revision_of(version: Version) -> dict[str, Any]:
    raw = dict(version.detail).get("revision")
    if not raw:
        raise TargetError(f"{version} carries no revision to redeploy")
    return dict(json.loads(raw))


def _status(version: Version) -> str:
    return dict(version.detail).get("status", "")


def deployment_state(info: dict[str, Any]) -> tuple[State, str]:
    """Pure: Succeeded is done, Failed/Stopped failed, anything else still waiting."""
    status = info.get("status", "?")
    line = f"deployment {info.get('deploymentId')} is {status}"
    overview = info.get("deploymentOverview") or {}
    if any(overview.values()):
        line += " (" + ", ".join(f"{k} {v}" for k, v in overview.items() if v) + ")"
    if status == "Succeeded":
        return "done", line
    if status in FAILED:
        error = (info.get("errorInformation") or {}).get("message")
        return "failed", line + (f": {error}" if error else "")
    return "waiting", line


def after_stop(info: dict[str, Any]) -> tuple[State, str, str | None]:
    """Pure: what a stopped deployment says. The rollback deployment id once CodeDeploy
    names it; failed if the deployment finished before the stop landed."""
    status = info.get("status", "?")
    did = info.get("deploymentId")
    rollback_id = (info.get("rollbackInfo") or {}).get("rollbackDeploymentId")
    if status == "Succeeded":
        return "failed", f"deployment {did} finished before it could be stopped", None
    if rollback_id:
        return "waiting", f"deployment {did} {status}, rolled back by {rollback_id}", rollback_id
    return "waiting", f"deployment {did} is {status}, no rollback deployment yet", None


def stop_restores(current: Version, target: Version, last_good: Version | None) -> CheckResult:
    """Stopping with auto rollback restores the last successful revision, nothing else."""
    if last_good is None:
        return CheckResult(
            "stop_restores_target",
            False,
            f"{current} is in progress but no earlier deployment succeeded: nothing to restore",
        )
    same = target.id == last_good.id or revision_key(revision_of(target)) == revision_key(
        revision_of(last_good)
    )
    if same:
        return CheckResult(
            "stop_restores_target",
            True,
            f"stopping {current.id} restores {last_good}, the last successful deployment",
        )
    return CheckResult(
        "stop_restores_target",
        False,
        f"{current.id} is in progress: stopping it restores {last_good}, not {target}; "
        "wait for it to finish or roll back to the last successful deployment",
    )


def _succeeded(target: Version) -> CheckResult:
    status = _status(target)
    return CheckResult(
        "target_succeeded",
        status == "Succeeded",
        f"{target.id} was {status or 'unknown'}"
        + ("" if status == "Succeeded" else ": only a successful deployment is a target"),
    )
