"""GitHub deployment statuses of an outcome (``notifications.github_deployments``): the
failed deployment is marked, and the rollback version gets a deployment and a status with
the run link as ``log_url``. A failure is a warning, never a changed outcome."""

from __future__ import annotations

from prefect import get_run_logger

from rollback.errors import RollbackError
from rollback.models import RollbackOutcome
from rollback.notifiers.github_deployments import GithubDeployments, statuses_for
from rollback.runtime import Runtime
from rollback.text import log_safe
from tasks._common import stage


def github_deployments(rt: Runtime) -> GithubDeployments | None:
    return rt.github_deployments()


def rollback_ref(rt: Runtime, outcome: RollbackOutcome) -> str | None:
    """The commit of the version rolled back to, from the deployment history."""
    for record in rt.history.query(outcome.environment, outcome.service, limit=200):
        if record.version == outcome.to_version and record.commit_sha:
            return record.commit_sha
    return None


@stage("github-deployment-status", retries=2)
def mirror(rt: Runtime, outcome: RollbackOutcome, run_url: str | None) -> str:
    """Mark the failed deployment and record the rollback's; returns what was done."""
    cfg = rt.config.notifications.github_deployments
    target = cfg.target_for(outcome.environment, outcome.service) if cfg else None
    states = statuses_for(outcome.status, outcome.trigger)
    client = github_deployments(rt)
    if target is None or states is None or client is None:
        return "nothing to mirror"
    failed_state, rollback_state = states
    done = []
    failed = client.newest(target.repository, target.environment)
    if failed is not None:
        client.status(
            target.repository,
            failed.id,
            failed_state,
            run_url,
            f"rolled back to {outcome.to_version or '?'} (audit {outcome.audit_id})",
        )
        done.append(f"deployment {failed.id} {failed_state}")
    ref = rollback_ref(rt, outcome)
    if ref is None:
        done.append(f"no commit known for {outcome.to_version}: no deployment created")
        return "; ".join(done)
    description = f"rollback:{outcome.audit_id} {outcome.from_version} -> {outcome.to_version}"
    new_id = client.create(target.repository, ref, target.environment, description)
    client.status(target.repository, new_id, rollback_state, run_url, description)
    done.append(f"deployment {new_id} of {ref[:12]} {rollback_state}")
    return "; ".join(done)


def github_outcome(rt: Runtime, outcome: RollbackOutcome, run_url: str | None) -> None:
    if rt.config.notifications.github_deployments is None:
        return
    log = get_run_logger()
    try:
        log.info("GitHub deployments: %s", log_safe(mirror(rt, outcome, run_url)))
    except RollbackError as exc:
        log.warning("GitHub deployment status not set: %s", log_safe(exc))
