"""How a rollback's outcome looks in Prefect: the flow run's final state.

A refused rollback must not look like a done one. ``outcome_state`` maps the outcome
(the dict ``run_rollback`` returns, unchanged for the CLI's ``--json``) onto the run's
final state:

- ``succeeded`` (and a dry run's ``planned``) → Completed: the rollback did what was asked;
- ``refused`` → Failed, named ``Refused``, with the refusal as its message. Failed rather
  than Cancelled: the UI shows it red with the name "Refused", failure automations
  reach on-call (the service still runs the version someone wanted gone), and Cancelled
  reads as "somebody stopped it", which nobody did;
- ``failed`` (or anything else) → Failed with the reason.

``requested_rollback`` is the request-shaped entry point that ends in that state: the
``rollback-auto`` deployment and the CLI run it (``flows/manual.py`` is the one for
people in the UI).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import Completed, Failed, State

from flows.rollback_flow import run_rollback
from rollback.config import Config, load_config
from rollback.models import RollbackRequest
from rollback.runtime import Runtime

DONE = ("succeeded", "planned")
# Config files whose tables this process checked when it started (a long-lived
# ``rollback worker``): its runs skip the check (two DescribeTable calls per run).
_TABLES_CHECKED: set[str] = set()


def tables_checked(config: Config) -> None:
    """Say this process checked ``config``'s tables (``rollback worker``, at its start)."""
    if config.source:
        _TABLES_CHECKED.add(config.source)


def outcome_state(result: dict[str, Any]) -> State[Any]:
    """The final state of a rollback's flow run; its data is ``result`` itself."""
    status = str(result.get("status"))
    headline = str(result.get("headline") or status)
    reason = result.get("reason")
    if status in DONE:
        return Completed(message=headline, data=result)
    message = f"{headline} — {reason}" if reason else headline
    if status == "refused":
        return Failed(name="Refused", message=message, data=result)
    return Failed(message=message, data=result)


def result_of(state: State[Any]) -> dict[str, Any]:
    """The outcome dict of a finished run's state; an error the run raised is raised."""
    value = state.result(raise_on_failure=False)
    if isinstance(value, BaseException):
        raise value
    return dict(value)


@flow(
    name="rollback",
    flow_run_name="rollback-{request.environment}-{request.service}",
    persist_result=False,
    validate_parameters=True,
)
def requested_rollback(
    request: RollbackRequest, config_path: str | None = None, audit_id: str | None = None
) -> State[Any]:
    """Roll one service back as the request says; the run ends Completed only when the
    rollback did what was asked (refused: Failed "Refused"; failed: Failed).

    Args:
        request: The rollback to perform: which service, to what, why and who asks.
            Its trigger counts only when an automatic entrance (the webhook receiver,
            the health guard) claimed the request for this run's audit id.
        config_path: The YAML config file; empty means $ROLLBACK_CONFIG on the worker.
        audit_id: Set by the webhook receiver to name the audit record; leave empty.
    """
    config = load_config(config_path)
    rt = Runtime(config, tables_checked=config.source in _TABLES_CHECKED)
    return outcome_state(run_rollback(request, config, rt, audit_id=audit_id))
