"""POST /rollback says what will happen to a protected environment: never "Rollback
initiated" for a run that can only be refused. The real app, the embedded launcher
(where a run cannot pause), the moto sandbox. (Server mode, where the run pauses and the
answer is 202 awaiting_confirmation: tests/functional/test_ui_manual_run.py.)"""

from __future__ import annotations

from tests.functional.receiver_rig import Receiver, audit_count, running

BODY = {
    "environment": "prod",
    "service": "api",
    "rollback_type": "quick",
    "user_id": "alice",
    "reason": "5xx",
}


def test_embedded_without_confirmation_is_403_and_starts_nothing(receiver: Receiver) -> None:
    # GIVEN the embedded receiver (its runs cannot pause) and prod, a protected environment
    # WHEN the dashboard asks for a rollback without the confirmation text
    resp = receiver.post("/rollback", json=BODY, headers=receiver.bearer())
    # THEN 403 naming the text to send, no audit record, no run, prod untouched
    assert resp.status_code == 403, resp.text
    assert resp.json() == {
        "status": "error",
        "message": "confirmation required (ROLLBACK-PROD)",
    }
    assert audit_count(receiver.config, "prod") == 0
    assert running("api") == "api:4"


def test_a_wrong_confirmation_is_403_and_starts_nothing(receiver: Receiver) -> None:
    resp = receiver.post(
        "/rollback", json=BODY | {"confirmation": "yes"}, headers=receiver.bearer()
    )
    assert resp.status_code == 403, resp.text
    assert "ROLLBACK-PROD" in resp.json()["message"]
    assert audit_count(receiver.config, "prod") == 0


def test_a_dry_run_or_the_right_text_is_initiated(receiver: Receiver) -> None:
    # GIVEN a dry run (changes nothing: nothing to confirm)  THEN it is initiated
    resp = receiver.post("/rollback", json=BODY | {"dry_run": True}, headers=receiver.bearer())
    assert resp.status_code == 200 and resp.json()["message"] == "Rollback initiated", resp.text
    receiver.wait()
    # GIVEN the right text  THEN initiated, and prod rolls back
    resp = receiver.post(
        "/rollback", json=BODY | {"confirmation": "ROLLBACK-PROD"}, headers=receiver.bearer()
    )
    assert resp.status_code == 200 and resp.json()["message"] == "Rollback initiated", resp.text
    receiver.wait()
    assert running("api") == "api:3"


def test_the_api_docs_page_needs_no_cdn(receiver: Receiver) -> None:
    import re

    # GIVEN the receiver on a machine without internet
    # WHEN a browser opens /docs
    page = receiver.client.get("/docs")
    assert page.status_code == 200
    # THEN every script and stylesheet it loads is served by the receiver itself
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))]
    for asset in assets:
        assert receiver.client.get(asset).status_code == 200, asset
    assert receiver.client.get("/openapi.json").json()["paths"]["/rollback"]
