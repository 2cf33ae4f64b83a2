"""Automatic means an automatic entrance: which trigger and credential a run really has.

A rollback flow run's parameters say what started it, but parameters are only as
trustworthy as whoever set them. Two ways a run is started:

- **In-process** (the CLI, the embedded receiver, the health guard): our own code in a
  process that already holds the store credentials; what it passes is what it is.
- **A Prefect deployment run**: anyone who can start runs on the Prefect server (the UI's
  Custom Run form, the API) sets the parameters. Such a run is automatic only when the
  entrance that accepted the request — the receiver or the health guard, through
  ``Intake`` — claimed its source event *for this audit id*: the claim is written to our
  own audit table, where the Prefect server cannot write. Anything else is a manual run:
  a protected environment asks for the typed confirmation, whatever the trigger field
  said.

Pure: the caller reads the claim and the run context; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollback.models import RollbackRequest


@dataclass(frozen=True)
class Admission:
    """The trigger and credential name a run goes on with; ``note`` says what changed."""

    trigger: str
    authenticated_by: str
    note: str | None = None


def claim_key(request: RollbackRequest, audit_id: str) -> str:
    """The event claim an entrance writes for a request (its source event, else the
    audit id itself)."""
    return request.source_event_id or f"intake:{audit_id}"


def admit(
    request: RollbackRequest,
    *,
    audit_id: str,
    deployment: str | None,
    claim: tuple[str, str | None] | None,
    local_user: str,
    kind: str = "prefect-deployment",
) -> Admission:
    """What ``request`` may be.

    Args:
        request: the run's request, as its parameters carried it.
        audit_id: the run's audit id.
        deployment: the deployment's name when this is a deployment run, else None.
        claim: (audit id, credential name) of the claim on ``claim_key(...)``, if any.
        local_user: the OS user of this process (in-process runs without a credential).
        kind: what ``deployment`` names: ``prefect-deployment``, or ``prefect-worker``
            for a flow run queued for ``rollback worker`` (same rule).
    """
    if deployment is None:
        return Admission(request.trigger, request.authenticated_by or f"cli:{local_user}")
    granted = claim is not None and claim[0] == audit_id
    if granted:
        assert claim is not None
        return Admission(request.trigger, claim[1] or "intake")
    entrance = f"{kind}:{deployment}"
    if request.automatic:
        return Admission(
            "manual",
            entrance,
            f"trigger {request.trigger!r} was not granted by an automatic entrance "
            "(no event claim for this audit id): treated as a manual request",
        )
    return Admission("manual", entrance)
