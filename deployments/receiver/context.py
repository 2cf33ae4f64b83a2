"""What every router of the receiver shares: the config, the secrets (read from the
environment per request), the one ``Intake``, and how an accepted request is answered."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deployments import events
from deployments.receiver.errors import RefusalLog, Refused, unavailable
from deployments.signatures import SnsVerifier
from flows.launch import Acceptance, Intake, Launcher, RequestMismatch, printable
from rollback.config import Config
from rollback.config.webhooks import WebhooksConfig
from rollback.errors import RollbackError
from rollback.models import RollbackRequest
from rollback.runtime import Runtime

log = logging.getLogger("deployments.receiver")


@dataclass
class Context:
    config: Config
    hooks: WebhooksConfig
    env: Mapping[str, str]
    launcher: Launcher
    runtime: Runtime
    intake: Intake
    verifier: SnsVerifier
    refusals: RefusalLog = field(default_factory=RefusalLog)

    def secret(self, name: str | None) -> str | None:
        """The value of the environment variable ``name`` (never logged or returned)."""
        return self.env.get(name) if name else None

    async def submit(self, request: RollbackRequest) -> Acceptance:
        """The intake's answer; store faults (throttling after the bounded retries, a
        missing table, AWS unreachable) become 503 with Retry-After."""
        try:
            known = self.intake.known(request) if request.source_event_id else None
            if known:  # a redelivery answered from memory, without a worker thread
                return known
            return await run_in_threadpool(self.intake.submit, request)
        except RequestMismatch as exc:
            raise Refused(422, str(exc)) from None
        except (RollbackError, ClientError, BotoCoreError) as exc:
            log.warning(
                "could not take a request for %s/%s: %s",
                request.environment,
                request.service,
                printable(exc, 300),
            )
            raise unavailable(
                "could not record the request: the audit store is not available; retry later"
            ) from None

    async def act(self, mapped: events.Mapped, authenticated_by: str) -> JSONResponse:
        """Submit a mapped webhook request, admitted by ``authenticated_by``."""
        if isinstance(mapped, events.Ignored):
            log.info("ignored: %s", printable(mapped.reason, 300))
            return JSONResponse({"status": "ignored", "reason": mapped.reason})
        request = mapped.model_copy(update={"authenticated_by": authenticated_by})
        acceptance = await self.submit(request)
        log.info(
            "%s %s/%s from %s by %s: %s (audit %s)",
            request.trigger,
            request.environment,
            request.service,
            printable(request.source_event_id),
            printable(authenticated_by),
            acceptance.status,
            acceptance.audit_id,
        )
        return webhook_answer(request, acceptance)


def webhook_answer(request: RollbackRequest, acceptance: Acceptance) -> JSONResponse:
    """202 accepted; 200 duplicate or absorbed (with the in-flight rollback's id)."""
    body: dict[str, object] = {
        "status": acceptance.status,
        "audit_id": acceptance.audit_id,
        "flow_run_id": acceptance.flow_run_id,
        "monitor_url": acceptance.monitor_url,
    }
    if acceptance.linked_audit_id:
        body["linked_audit_id"] = acceptance.linked_audit_id
    if acceptance.status == "absorbed":
        body["reason"] = (
            f"a rollback of {request.environment}/{request.service} is already in flight "
            f"(audit {acceptance.linked_audit_id}): this incident is recorded and linked to it"
        )
    return JSONResponse(body, status_code=202 if acceptance.status == "accepted" else 200)
