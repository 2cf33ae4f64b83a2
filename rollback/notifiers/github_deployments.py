"""GitHub deployments and deployment statuses (PyGithub's requester: one REST call per
method, our own models out, errors translated). The token comes from the environment
and is never logged."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from rollback.errors import ConfigError, RollbackError, TransientError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GithubDeployment:
    id: int
    sha: str
    ref: str
    environment: str


class GithubDeployments:
    def __init__(self, base_url: str, token_env: str, client: Any = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_env = token_env
        self._client = client

    def __repr__(self) -> str:
        return f"GithubDeployments(base_url={self.base_url!r}, token=<secret>)"

    @property
    def client(self) -> Any:
        if self._client is None:
            from github import Auth, Github

            token = os.environ.get(self.token_env, "")
            if not token:
                raise ConfigError(f"no GitHub token: set environment variable {self.token_env}")
            pacing: dict[str, Any] = (
                {}
                if self.base_url == "https://api.github.com"
                else {"seconds_between_requests": 0, "seconds_between_writes": 0, "retry": 0}
            )
            self._client = Github(
                auth=Auth.Token(token), base_url=self.base_url, timeout=15, **pacing
            )
        return self._client

    def _call(self, what: str, verb: str, path: str, **kwargs: Any) -> Any:
        from github import GithubException

        try:
            _, data = self.client.requester.requestJsonAndCheck(
                verb, f"{self.base_url}{path}", **kwargs
            )
        except GithubException as exc:
            if exc.status >= 500 or exc.status == 429:
                raise TransientError(f"GitHub answered HTTP {exc.status} to {what}") from None
            raise RollbackError(f"GitHub refused to {what}: HTTP {exc.status}") from None
        except OSError as exc:
            raise TransientError(f"GitHub unreachable to {what}: {type(exc).__name__}") from None
        return data

    def newest(self, repository: str, environment: str) -> GithubDeployment | None:
        """The newest deployment of ``repository`` to ``environment``."""
        data = self._call(
            f"list deployments of {repository}",
            "GET",
            f"/repos/{repository}/deployments",
            parameters={"environment": environment, "per_page": 1},
        )
        if not isinstance(data, list) or not data:
            return None
        first = data[0]
        return GithubDeployment(
            int(first["id"]), str(first.get("sha", "")), str(first.get("ref", "")), environment
        )

    def create(self, repository: str, ref: str, environment: str, description: str) -> int:
        """A deployment of ``ref`` (the rollback version's commit); returns its id."""
        data = self._call(
            f"create a deployment in {repository}",
            "POST",
            f"/repos/{repository}/deployments",
            input={
                "ref": ref,
                "environment": environment,
                "task": "rollback",
                "auto_merge": False,
                "required_contexts": [],
                "description": description[:140],
            },
        )
        return int(data["id"])

    def status(
        self,
        repository: str,
        deployment_id: int,
        state: str,
        log_url: str | None,
        description: str,
    ) -> None:
        """Add a status (``success``, ``failure``, ``inactive``, ...) to a deployment."""
        body: dict[str, Any] = {"state": state, "description": description[:140]}
        if log_url:
            body["log_url"] = log_url
        self._call(
            f"set deployment {deployment_id} to {state}",
            "POST",
            f"/repos/{repository}/deployments/{deployment_id}/statuses",
            input=body,
        )


def statuses_for(outcome_status: str, trigger: str) -> tuple[str, str] | None:
    """(state for the failed deployment, state for the rollback's deployment), or None
    when the outcome changed nothing (refused, planned). A failed-deploy trigger already
    left GitHub's deployment ``failure``: once rolled back it becomes ``inactive``; an
    alarm, health or verification rollback tells GitHub the deployment failed."""
    if outcome_status not in ("succeeded", "failed"):
        return None
    failed_state = "inactive" if trigger == "webhook" else "failure"
    if outcome_status == "failed":
        return "failure", "failure"
    return failed_state, "success"
