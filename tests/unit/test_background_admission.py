"""The worker's admission (flows/background.py): a queued flow run is
automatic only with the intake's claim for its audit id — the same rule as a deployment
run, named ``prefect-worker:rollback-auto``. Pure: the claim comes from a fake store."""

from __future__ import annotations

from typing import Any

from flows.background import admit
from rollback.models import RollbackRequest


class Claims:
    """The audit table's event claims, in memory."""

    def __init__(self, claims: dict[str, tuple[str, str | None]]) -> None:
        self.claims = claims

    def event_claim(self, event_id: str) -> tuple[str, str | None] | None:
        return self.claims.get(event_id)


class FakeRuntime:
    def __init__(self, claims: dict[str, tuple[str, str | None]]) -> None:
        self.markers = Claims(claims)


def webhook(**kw: Any) -> RollbackRequest:
    fields: dict[str, Any] = {
        "environment": "prod",
        "service": "api",
        "requested_by": "octocat",
        "trigger": "webhook",
        "authenticated_by": "github-hmac",
        "source_event_id": "github:1",
    }
    return RollbackRequest(**(fields | kw))


def test_a_request_the_intake_claimed_for_this_audit_id_stays_automatic() -> None:
    # GIVEN the intake claimed github:1 for audit a1, admitted by the GitHub HMAC
    rt = FakeRuntime({"github:1": ("a1", "github-hmac")})
    # WHEN the worker receives the flow run for a1
    got = admit(rt, webhook(), "a1")  # type: ignore[arg-type]
    # THEN it keeps its trigger and the credential the claim names
    assert (got.trigger, got.authenticated_by, got.note) == ("webhook", "github-hmac", None)


def test_a_queued_run_without_the_claim_is_a_manual_request() -> None:
    # GIVEN no claim at all, or a claim for another audit id
    for claims in ({}, {"github:1": ("other", "github-hmac")}):
        got = admit(FakeRuntime(claims), webhook(), "a1")  # type: ignore[arg-type]
        # THEN the run is manual, named after the worker's queue, and says why
        assert got.trigger == "manual"
        assert got.authenticated_by == "prefect-worker:rollback-auto"
        assert got.note and "not granted" in got.note


def test_a_request_without_a_source_event_needs_the_intake_grant() -> None:
    req = webhook(trigger="manual", source_event_id=None, authenticated_by="api-token")
    granted = admit(FakeRuntime({"intake:a1": ("a1", "api-token")}), req, "a1")  # type: ignore[arg-type]
    assert granted.authenticated_by == "api-token"
    forged = admit(FakeRuntime({}), req, "a1")  # type: ignore[arg-type]
    assert forged.authenticated_by == "prefect-worker:rollback-auto"
