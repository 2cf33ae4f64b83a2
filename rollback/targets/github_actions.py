"""GitHub Actions: roll back by dispatching a rollback workflow and waiting for its run.

A version is a git ref, tag or commit sha, as the deployment history records it
(``order`` is None: git has no order the flow could compare, so the history decides
and ``candidates()`` is empty). ``lookup`` resolves it to a commit sha on GitHub. The
version running now is the ref of the newest GitHub deployment of the environment
(``deployment_environment``, default: the rollback's environment name).

Execute dispatches ``workflow`` on ``ref`` with the configured static ``inputs`` plus
``environment``, ``version``, ``reason`` and ``audit_id`` (ours win on a name clash).
GitHub does not say which run a dispatch started: stabilize takes the first
workflow_dispatch run created after it that was not there before (preferring one whose
title carries the audit id, e.g. ``run-name: rollback ${{ inputs.audit_id }}``) and
waits for it to complete. Failure or timeout is a failed rollback. With
``commit_status`` the outcome is posted as a commit status on the commit rolled back to.

The token comes from the environment variable ``token_env`` or the Prefect Secret block
``token_secret_block``; it is never logged or put in a message.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Literal

from pydantic import Field

from rollback.errors import ConfigError, NotFoundError, RollbackError, TargetError, TransientError
from rollback.models import CheckResult, StabilizeResult, Version, utcnow
from rollback.targets._polling import State, poll_until
from rollback.targets.base import Progress, RunContext, ServiceConfig, TargetBase, register

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.github.com"
# Runs created this long before our dispatch still count (clock skew with GitHub); runs
# already listed before the dispatch are excluded by id.
CLOCK_SKEW = timedelta(minutes=2)
UNKNOWN = "unknown"


class GithubActionsConfig(ServiceConfig):
    type: Literal["github_actions"]
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="owner/name")
    workflow: str = Field(description="workflow file name, e.g. rollback.yml")
    ref: str = Field(default="main", description="branch or tag the workflow runs on")
    inputs: dict[str, str] = Field(default_factory=dict, description="extra static inputs")
    token_env: str = "GITHUB_TOKEN"
    token_secret_block: str | None = Field(default=None, description="Prefect Secret block")
    base_url: str = DEFAULT_BASE_URL
    run_timeout_s: float = Field(default=1800, gt=0)
    commit_status: bool = False
    status_context: str = "rollback"
    deployment_environment: str | None = None
    throttle: bool | None = Field(
        default=None,
        description="PyGithub request pacing and retries; default on for api.github.com, "
        "off for any other base_url (local fakes)",
    )


@dataclass(frozen=True)
class RunInfo:
    """One workflow run, as far as a rollback cares."""

    id: int
    status: str
    conclusion: str | None
    html_url: str
    event: str
    created_at: datetime
    title: str = ""


@register("github_actions", GithubActionsConfig)
class GithubActionsTarget(TargetBase):
    config: GithubActionsConfig

    def __init__(self, config: GithubActionsConfig, client: Any = None):
        super().__init__(config)
        self._client = client
        self._repo: Any = None
        self._since: datetime | None = None
        self._before: frozenset[int] = frozenset()
        self._run: RunInfo | None = None

    # -- client --------------------------------------------------------------------------
    def _token(self) -> str:
        cfg = self.config
        if cfg.token_secret_block:
            from prefect.blocks.system import Secret

            try:
                secret: Any = Secret.load(cfg.token_secret_block)  # sync: no event loop runs
                token = str(secret.get() or "")
            except ValueError as exc:  # no such block
                raise ConfigError(
                    f"Prefect Secret block {cfg.token_secret_block!r} cannot be loaded: "
                    "create it or fix token_secret_block"
                ) from exc
            where = f"Prefect Secret block {cfg.token_secret_block!r}"
        else:
            token = os.environ.get(cfg.token_env, "")
            where = f"environment variable {cfg.token_env}"
        if not token:
            raise ConfigError(f"no GitHub token: set {where} (a token with actions:write)")
        return token

    @property
    def client(self) -> Any:
        if self._client is None:
            from github import Auth, Github

            cfg = self.config
            throttle = cfg.throttle if cfg.throttle is not None else _is_github_com(cfg.base_url)
            pacing: dict[str, Any] = (
                {}
                if throttle
                else {"seconds_between_requests": 0, "seconds_between_writes": 0, "retry": 0}
            )
            self._client = Github(
                auth=Auth.Token(self._token()),
                base_url=cfg.base_url,
                timeout=30,
                **pacing,
            )
        return self._client

    @property
    def repo(self) -> Any:
        if self._repo is None:
            self._repo = self._call("get repository", self.client.get_repo, self.config.repository)
        return self._repo

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One GitHub API call, its errors translated (the token never appears)."""
        try:
            return fn(*args, **kwargs)
        except RollbackError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated below, re-raised
            raise translate(exc, f"{what} ({self.config.repository})") from exc

    # -- reads ---------------------------------------------------------------------------
    def current(self) -> Version:
        env = self.config.deployment_environment or self.context.environment
        deployments = self._call(
            "list GitHub deployments",
            lambda: list(islice(self.repo.get_deployments(environment=env), 1)),
        )
        if not deployments:
            return Version(id=UNKNOWN, label=f"unknown (no GitHub deployment for {env})")
        d = deployments[0]
        return Version(id=d.ref, label=f"{d.ref} ({d.sha[:7]})", detail=(("sha", d.sha),))

    def lookup(self, spec: str) -> Version:
        spec = spec.strip()
        repo = self.repo  # a missing repository is its own error, not a missing ref
        try:
            commit = self._call("get commit", repo.get_commit, spec)
        except NotFoundError as exc:
            raise NotFoundError(
                f"{spec!r} is not a branch, tag or commit of {self.config.repository}"
            ) from exc
        sha = str(commit.sha)
        label = sha[:12] if spec == sha else f"{spec} ({sha[:7]})"
        return Version(id=spec, label=label, detail=(("sha", sha),))

    def candidates(self) -> list[Version]:
        return []  # git refs have no order: the deployment history names the versions

    def _workflow(self) -> Any:
        return self._call("get workflow", self.repo.get_workflow, self.config.workflow)

    # -- checks --------------------------------------------------------------------------
    def check(self, current: Version, target: Version) -> list[CheckResult]:
        try:
            state = self._workflow().state
        except NotFoundError:
            return [
                CheckResult(
                    "workflow_active",
                    False,
                    f"workflow {self.config.workflow} not found in {self.config.repository}",
                )
            ]
        return [
            CheckResult(
                "workflow_active",
                state == "active",
                f"workflow {self.config.workflow} is {state}",
            )
        ]

    # -- change --------------------------------------------------------------------------
    def execute(self, target: Version) -> None:
        cfg = self.config
        workflow = self._workflow()
        self._since = utcnow() - CLOCK_SKEW
        self._before = frozenset(r.id for r in self._runs(workflow))
        self._run = None
        inputs = dispatch_inputs(cfg.inputs, self.context, target.id)
        self._call("dispatch workflow", workflow.create_dispatch, cfg.ref, inputs, throw=True)
        log.info(
            "dispatched %s on %s@%s for version %s (audit %s)",
            cfg.workflow,
            cfg.repository,
            cfg.ref,
            target.id,
            self.context.audit_id,
        )

    def _runs(self, workflow: Any) -> list[RunInfo]:
        assert self._since is not None
        created = ">=" + self._since.strftime("%Y-%m-%dT%H:%M:%SZ")
        runs = self._call(
            "list workflow runs",
            lambda: list(islice(workflow.get_runs(event="workflow_dispatch", created=created), 50)),
        )
        return [run_info(r) for r in runs]

    def _find_run(self) -> RunInfo | None:
        if self._since is None:  # not dispatched by this object (resumed run)
            self._since = utcnow() - timedelta(seconds=self.config.run_timeout_s)
        runs = self._runs(self._workflow())
        return pick_run(runs, self._since, self._before, self.context.audit_id)

    def _get_run(self, run_id: int) -> RunInfo:
        return run_info(self._call("get workflow run", self.repo.get_workflow_run, run_id))

    def stabilize(self, target: Version, timeout_s: float, progress: Progress) -> StabilizeResult:
        limit = min(timeout_s, self.config.run_timeout_s)

        def poll() -> tuple[State, str]:
            if self._run is None:
                self._run = self._find_run()
                line = (
                    f"run {self._run.id} started: {self._run.html_url}"
                    if self._run
                    else f"waiting for the run of {self.config.workflow} to appear"
                )
                return "waiting", line
            self._run = self._get_run(self._run.id)
            return run_state(self._run)

        result = poll_until(
            poll,
            timeout_s=limit,
            interval_s=self.config.poll_interval_s,
            progress=progress,
            gave_up="not completed",
        )
        if not result.stable:
            self._report(target, ok=False, description=result.detail)
        return result

    def verify(self, target: Version) -> list[CheckResult]:
        run = self._find_run() if self._run is None else self._get_run(self._run.id)
        if run is None:
            return [CheckResult("workflow_run", False, "no run of the dispatched workflow found")]
        self._run = run
        ok = run.status == "completed" and run.conclusion == "success"
        checks = [
            CheckResult(
                "workflow_run",
                ok,
                f"run {run.id} {run.status}, conclusion {run.conclusion}: {run.html_url}",
            )
        ]
        reported = self._report(target, ok=ok, description=f"rollback {run.conclusion}")
        if reported is not None:
            checks.append(reported)
        return checks

    def _report(self, target: Version, ok: bool, description: str) -> CheckResult | None:
        """Post the rollback outcome as a commit status on the target commit, when
        configured. A lost status never changes the outcome: it is reported, not raised."""
        if not self.config.commit_status:
            return None
        sha = dict(target.detail).get("sha")
        state = "success" if ok else "failure"
        if not sha:
            return CheckResult("commit_status", True, f"{target} has no commit sha: not posted")
        url = self._run.html_url if self._run else None
        try:
            commit = self._call("get commit", self.repo.get_commit, sha)
            link = {"target_url": url} if url else {}
            self._call(
                "create commit status",
                commit.create_status,
                state=state,
                description=description[:140],
                context=self.config.status_context,
                **link,
            )
        except RollbackError as exc:
            log.warning("commit status for %s not posted: %s", sha[:12], exc)
            return CheckResult("commit_status", True, f"commit status not posted: {exc}")
        log.info("commit status %s (%s) posted on %s", state, self.config.status_context, sha[:12])
        return CheckResult(
            "commit_status", True, f"status {state} ({self.config.status_context}) on {sha[:12]}"
        )


# -- pure helpers -------------------------------------------------------------------------
def _is_github_com(base_url: str) -> bool:
    return base_url.rstrip("/") == DEFAULT_BASE_URL


def dispatch_inputs(static: dict[str, str], context: RunContext, version: str) -> dict[str, str]:
    """Workflow inputs: the configured static ones plus who/what/why of this rollback."""
    return {
        **static,
        "environment": context.environment,
        "version": version,
        "reason": context.reason,
        "audit_id": context.audit_id,
    }


def run_info(run: Any) -> RunInfo:
    return RunInfo(
        id=int(run.id),
        status=str(run.status),
        conclusion=run.conclusion,
        html_url=str(run.html_url),
        event=str(run.event),
        created_at=run.created_at,
        title=str(getattr(run, "display_title", "") or ""),
    )


def pick_run(
    runs: list[RunInfo], since: datetime, before: frozenset[int], audit_id: str
) -> RunInfo | None:
    """The run our dispatch started: a workflow_dispatch run created after ``since`` that
    was not listed before the dispatch; one titled with the audit id wins, else the
    earliest such run."""
    new = [
        r
        for r in runs
        if r.event == "workflow_dispatch" and r.created_at >= since and r.id not in before
    ]
    if audit_id:
        titled = [r for r in new if audit_id in r.title]
        if titled:
            return titled[0]
    return min(new, key=lambda r: (r.created_at, r.id)) if new else None


def run_state(run: RunInfo) -> tuple[State, str]:
    """Pure: completed+success is done, completed+anything else failed, else waiting."""
    line = f"run {run.id} {run.status}"
    if run.status != "completed":
        return "waiting", f"{line}: {run.html_url}"
    line += f", conclusion {run.conclusion}: {run.html_url}"
    return ("done" if run.conclusion == "success" else "failed"), line


def translate(exc: Exception, what: str) -> RollbackError:
    """Our error for a PyGithub/requests failure: transient, not found, or refused."""
    from github import GithubException
    from requests import exceptions as req

    if isinstance(exc, GithubException):
        status = exc.status
        message = (exc.data or {}).get("message", "") if isinstance(exc.data, dict) else ""
        if status in (429, 500, 502, 503, 504) or (
            status == 403 and "rate limit" in message.lower()
        ):
            return TransientError(f"{what}: GitHub answered {status} {message}".rstrip())
        if status in (404, 422):
            return NotFoundError(f"{what}: GitHub answered {status} {message}".rstrip())
        if status in (401, 403):
            return TargetError(
                f"{what}: GitHub refused ({status} {message}): check the token's access "
                "to the repository (actions:write, statuses:write)"
            )
        return TargetError(f"{what}: GitHub answered {status} {message}".rstrip())
    if isinstance(exc, req.ConnectionError | req.Timeout):
        return TransientError(f"{what}: cannot reach GitHub ({type(exc).__name__})")
    return TargetError(f"{what}: {type(exc).__name__}")
