"""ECS services: roll back by pointing the service at an older task definition revision."""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from botocore.exceptions import ClientError

from rollback import aws
from rollback.errors import NotFoundError
from rollback.models import CheckResult, StabilizeResult, Version
from rollback.targets._polling import State, poll_until
from rollback.targets.base import Progress, ServiceConfig, TargetBase, register

log = logging.getLogger(__name__)
_REVISION = re.compile(r"^(?:arn:[^/]+/)?(?P<family>[\w-]+):(?P<rev>\d+)$")
MAX_CANDIDATES = 25


class EcsServiceConfig(ServiceConfig):
    type: Literal["ecs"]
    cluster: str
    service: str


def image_tag(image: str) -> tuple[str, str | None]:
    """('repo-name', 'tag') of an image reference; tag is None for a digest or no tag."""
    if "@" in image:
        return image.split("@", 1)[0].rsplit("/", 1)[-1], None
    path = image.rsplit("/", 1)[-1]
    if ":" in path:
        repo, tag = path.split(":", 1)
        return repo, tag
    return path, None


def _version(td: dict[str, Any]) -> Version:
    containers = td.get("containerDefinitions", [])
    family, rev = td["family"], int(td["revision"])
    return Version(
        id=f"{family}:{rev}",
        label=f"{family}:{rev}",
        order=rev,
        images=tuple(c.get("image", "") for c in containers),
        containers=tuple(sorted(c["name"] for c in containers)),
        active=td.get("status", "ACTIVE") == "ACTIVE",
        detail=(("arn", td["taskDefinitionArn"]),),
    )


def arn_of(version: Version) -> str:
    return dict(version.detail).get("arn", version.id)


@register("ecs", EcsServiceConfig)
class EcsTarget(TargetBase):
    config: EcsServiceConfig
    proves_versions = True  # only revisions of the running task family

    def __init__(self, config: EcsServiceConfig, client: Any = None, ecr_client: Any = None):
        super().__init__(config)
        self._client = client
        self._ecr = ecr_client
        self._family: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.aws_client("ecs")
        return self._client

    @property
    def ecr(self) -> Any:
        if self._ecr is None:
            self._ecr = self.aws_client("ecr")
        return self._ecr

    # -- reads ---------------------------------------------------------------------------
    def _service(self) -> dict[str, Any]:
        cfg = self.config
        try:
            out = self.client.describe_services(cluster=cfg.cluster, services=[cfg.service])
        except ClientError as exc:
            raise aws.translate(exc, f"describe ECS service {cfg.cluster}/{cfg.service}") from exc
        services = [s for s in out.get("services", []) if s.get("status") != "INACTIVE"]
        if not services:
            raise NotFoundError(
                f"ECS service {cfg.service!r} not found in cluster {cfg.cluster!r}: "
                "check cluster and service in the config"
            )
        return services[0]

    def _describe(self, task_definition: str) -> Version:
        try:
            out = self.client.describe_task_definition(taskDefinition=task_definition)
        except ClientError as exc:
            code = aws.error_code(exc)
            if code in ("ClientException", "InvalidParameterException"):
                raise NotFoundError(f"task definition {task_definition!r} not found") from exc
            raise aws.translate(exc, f"describe task definition {task_definition}") from exc
        return _version(out["taskDefinition"])

    def current(self) -> Version:
        version = self._describe(self._service()["taskDefinition"])
        self._family = version.id.split(":")[0]
        return version

    def _family_name(self) -> str:
        if self._family is None:
            self.current()
        assert self._family is not None
        return self._family

    def lookup(self, spec: str) -> Version:
        """A revision of the running task family only: a number, ``family:revision`` (or
        its ARN) of that family, or an image tag one of its revisions uses."""
        spec = spec.strip()
        family = self._family_name()
        if spec.isdigit():
            return self._describe(f"{family}:{spec}")
        named = _REVISION.match(spec)
        if named:
            if named["family"] != family:
                raise NotFoundError(
                    f"{spec!r} is not a revision of task family {family!r}, which the service "
                    "runs: a rollback stays within the service's own family"
                )
            version = self._describe(f"{family}:{named['rev']}")
            if spec.startswith("arn:") and spec != arn_of(version):
                raise NotFoundError(f"{spec!r} is not the task definition {arn_of(version)}")
            return version
        # Otherwise an image tag: the newest revision whose images carry that tag (of the
        # configured ECR repository when there is one).
        repo = self.config.ecr_repository
        for version in self.candidates(active_only=False):
            if any(
                image_tag(img)[1] == spec and repo in (None, image_tag(img)[0])
                for img in version.images
            ):
                return version
        raise NotFoundError(f"no revision of task family {family!r} uses image tag {spec!r}")

    def candidates(self, active_only: bool = True) -> list[Version]:
        kwargs: dict[str, Any] = {"familyPrefix": self._family_name(), "sort": "DESC"}
        if active_only:
            kwargs["status"] = "ACTIVE"
        try:
            arns = self.client.list_task_definitions(**kwargs).get("taskDefinitionArns", [])
        except ClientError as exc:
            raise aws.translate(exc, "list task definitions") from exc
        family = self._family_name()
        revisions = sorted(
            (int(a.rsplit(":", 1)[1]), a)
            for a in arns
            if a.rsplit("/", 1)[-1].split(":")[0] == family
        )
        newest_first = [arn for _, arn in reversed(revisions)]  # not every API honours sort
        return [self._describe(arn) for arn in newest_first[:MAX_CANDIDATES]]

    # -- checks --------------------------------------------------------------------------
    def check(self, current: Version, target: Version) -> list[CheckResult]:
        checks = [
            CheckResult(
                "task_definition_active",
                target.active,
                f"{target.id} is {'ACTIVE' if target.active else 'INACTIVE'}",
            ),
            same_family(current, target),
            _same_containers(current, target),
        ]
        if self.config.ecr_repository:
            checks.append(self._images_exist(target))
        return checks

    def _images_exist(self, target: Version) -> CheckResult:
        repo = self.config.ecr_repository
        missing, seen = [], []
        for image in target.images:
            name, tag = image_tag(image)
            if name != repo:
                continue
            ref = {"imageTag": tag} if tag else {"imageDigest": image.split("@", 1)[1]}
            seen.append(tag or ref["imageDigest"])
            try:
                self.ecr.describe_images(repositoryName=repo, imageIds=[ref])
            except ClientError as exc:
                if aws.error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                    missing.append(f"{repo}:{tag}")
                    continue
                raise aws.translate(exc, f"describe ECR image {repo}:{tag}") from exc
        if missing:
            return CheckResult("images_exist", False, f"missing in ECR: {', '.join(missing)}")
        if not seen:
            return CheckResult("images_exist", True, f"no image of repository {repo} to check")
        return CheckResult("images_exist", True, f"found in ECR {repo}: {', '.join(seen)}")

    # -- change --------------------------------------------------------------------------
    def execute(self, target: Version) -> None:
        cfg = self.config
        log.info("ECS update_service %s/%s -> %s", cfg.cluster, cfg.service, arn_of(target))
        try:
            self.client.update_service(
                cluster=cfg.cluster, service=cfg.service, taskDefinition=arn_of(target)
            )
        except ClientError as exc:
            raise aws.translate(exc, f"update ECS service {cfg.service}") from exc

    def stabilize(self, target: Version, timeout_s: float, progress: Progress) -> StabilizeResult:
        def poll() -> tuple[State, str]:
            stable, line = _stability(self._service(), arn_of(target))
            return ("done" if stable else "waiting"), line

        return poll_until(
            poll,
            timeout_s=timeout_s,
            interval_s=self.config.poll_interval_s,
            progress=progress,
            gave_up="not stable",
        )

    def verify(self, target: Version) -> list[CheckResult]:
        svc = self._service()
        arn = arn_of(target)
        checks = [
            CheckResult(
                "service_on_target",
                svc["taskDefinition"] == arn,
                f"service task definition is {svc['taskDefinition'].rsplit('/', 1)[-1]}",
            ),
            CheckResult(
                "task_counts",
                svc.get("runningCount") == svc.get("desiredCount"),
                f"running {svc.get('runningCount')} of desired {svc.get('desiredCount')}",
            ),
        ]
        checks.append(self._task_images(target))
        return checks

    def _task_images(self, target: Version) -> CheckResult:
        cfg = self.config
        try:
            arns = self.client.list_tasks(
                cluster=cfg.cluster, serviceName=cfg.service, desiredStatus="RUNNING"
            ).get("taskArns", [])
            tasks = (
                self.client.describe_tasks(cluster=cfg.cluster, tasks=arns)["tasks"] if arns else []
            )
        except ClientError as exc:
            raise aws.translate(exc, f"list tasks of {cfg.service}") from exc
        if not tasks:
            return CheckResult("task_images", True, "no running tasks listed: image check skipped")
        wrong = [
            c.get("image")
            for t in tasks
            for c in t.get("containers", [])
            if c.get("image") and c.get("image") not in target.images
        ]
        return CheckResult(
            "task_images",
            not wrong,
            f"{len(tasks)} task(s) run the target images"
            if not wrong
            else f"tasks run other images: {', '.join(sorted(set(wrong)))}",
        )


def family_of(version: Version) -> str:
    return version.id.rsplit(":", 1)[0]


def same_family(current: Version, target: Version) -> CheckResult:
    """Pure: the target is a revision of the task family the service runs (revisions are
    only ever compared within one family)."""
    if family_of(current) == family_of(target):
        return CheckResult("same_family", True, f"{target.id} is of family {family_of(current)}")
    return CheckResult(
        "same_family",
        False,
        f"{target.id} is of family {family_of(target)}, the service runs family "
        f"{family_of(current)}: a rollback stays within the service's own family",
    )


def _same_containers(current: Version, target: Version) -> CheckResult:
    if current.containers == target.containers:
        return CheckResult("same_containers", True, f"containers: {', '.join(target.containers)}")
    return CheckResult(
        "same_containers",
        False,
        f"container names differ: current {list(current.containers)}, "
        f"target {list(target.containers)}",
    )


def _stability(svc: dict[str, Any], target_arn: str) -> tuple[bool, str]:
    """Pure: is the service settled on the target? (moto can leave deployments[0]
    stale, so the top-level taskDefinition is what counts.)"""
    on_target = svc.get("taskDefinition") == target_arn
    running, desired = svc.get("runningCount", 0), svc.get("desiredCount", 0)
    deployments = svc.get("deployments", [])
    primary: dict[str, Any] = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
    settled = len(deployments) <= 1 or primary.get("rolloutState") == "COMPLETED"
    line = (
        f"task definition {svc.get('taskDefinition', '?').rsplit('/', 1)[-1]}, "
        f"running {running}/{desired}, {len(deployments)} deployment(s)"
    )
    return on_target and running == desired and settled, line
