"""The rollback a person starts from the Prefect UI (deployment ``rollback-manual``).

Its parameters are only what a person decides: environment, service, target version,
reason, who asks, dry run. Nothing in the form can loosen the guard: the trigger is
always ``manual``, there is no confirmation field (a protected environment pauses with
the plan and the typed text is only ever the answer to that pause), and the config
path, audit id and source event id are the system's, not the form's.

The deploy step turns environment and service into pick-lists of the configured names
(``devstack.forms.pick_lists``, published by ``devstack.stack.publish_manual_form``),
so a typo cannot even start a run; the run checks them against the config all the same.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import Failed, State

from flows.outcome import outcome_state
from flows.rollback_flow import run_rollback
from rollback.config import load_config
from rollback.models import RollbackRequest


@flow(
    name="rollback",
    flow_run_name="rollback-{environment}-{service}",
    persist_result=False,
    validate_parameters=True,
)
def manual_rollback(
    environment: str,
    service: str,
    reason: str,
    requested_by: str,
    to: str = "",
    dry_run: bool = False,
) -> State[Any]:
    """Roll one service back by hand. A protected environment pauses before any change
    and shows the plan; type its confirmation text in the run's Resume form.

    Args:
        environment: The environment, as the config names it (e.g. prod).
        service: The service in that environment (e.g. api).
        reason: Why roll back; written to the audit log and the notification.
        requested_by: Who asks: your name or handle, for the audit log.
        to: Target version (ECS: revision, family:revision or image tag). Leave empty
            for the last good version.
        dry_run: Plan only: run every check, change nothing, ask no confirmation.
    """
    config = load_config(None)  # $ROLLBACK_CONFIG of the worker, never the form's
    problem = _blank(reason=reason, requested_by=requested_by)
    if problem:
        return Failed(message=problem)
    request = RollbackRequest(
        environment=environment,
        service=service,
        to=to.strip() or None,
        reason=reason.strip(),
        requested_by=requested_by.strip(),
        trigger="manual",
        dry_run=dry_run,
    )
    return outcome_state(run_rollback(request, config))


def _blank(**fields: str) -> str | None:
    missing = [name for name, value in fields.items() if not value.strip()]
    return f"{' and '.join(missing)} must not be empty" if missing else None
