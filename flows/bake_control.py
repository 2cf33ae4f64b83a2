"""Ending a live bake early, from any process: a person's promote (a marker in the audit
table, written by ``rollback verify promote``) or abort (the verify run cancelled). The
bake loop (``flows.verify_deploy.bake``) reads both every ``CONTROL_POLL_S`` seconds."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prefect import get_run_logger

from rollback.errors import RollbackError
from rollback.models import iso, new_id, utcnow
from rollback.runtime import Runtime
from rollback.stores.markers import Bake, mark_ts
from rollback.text import log_safe

CONTROL_POLL_S = 2.0  # how often a live bake looks for a promote or a cancel


@dataclass(frozen=True)
class Ending:
    """A person ended the bake early: ``promoted`` (``rollback verify promote``) or
    ``aborted`` (the flow run was cancelled)."""

    verdict: str
    by: str
    at: str
    reason: str

    def as_result(self, analysis: str) -> dict[str, Any]:
        return {"verdict": self.verdict, "analysis": analysis, "ended_by": asdict(self)}


class BakeControl:
    """What a person says about a live bake, from any process: promote (a marker in the
    audit table, written by ``rollback verify promote``) or abort (the run cancelled).
    Read every ``CONTROL_POLL_S`` — more often than the minute the metrics move by."""

    def __init__(self, rt: Runtime, bake: Bake) -> None:
        self.rt = rt
        self.bake = bake

    @classmethod
    def start(cls, rt: Runtime, bake: Bake) -> BakeControl | None:
        """Record the live bake; None (no promote, the bake goes on) if the store fails."""
        try:
            rt.markers.start_bake(bake)
        except RollbackError as exc:
            get_run_logger().warning("bake not recorded, promote unavailable: %s", exc)
            return None
        return cls(rt, bake)

    def wait(self, until: datetime) -> Ending | None:
        """Sleep until ``until`` unless a person ends the bake first."""
        while True:
            ending = self.ending()
            left = (until - utcnow()).total_seconds()
            if ending is not None or left <= 0:
                return ending
            time.sleep(min(CONTROL_POLL_S, left))

    def ending(self) -> Ending | None:
        b = self.bake
        try:
            stored = self.rt.markers.bake(b.environment, b.service)
        except RollbackError as exc:  # the store away for a moment: the bake goes on
            get_run_logger().warning("could not read the bake marker: %s", exc)
            stored = None
        if stored is not None and stored.bake_id == b.bake_id and stored.promoted_by:
            self.close("promoted")
            return _promoted(stored)
        if _run_cancelled(b.run_id):
            self.close("aborted")
            return Ending("aborted", "prefect", iso(utcnow()) or "", "the flow run was cancelled")
        return None

    def close(self, verdict: str) -> Ending | None:
        """Record how the bake ended; a promote that came first wins (returned)."""
        b = self.bake
        try:
            stored = self.rt.markers.close_bake(b.environment, b.service, b.bake_id, verdict)
        except RollbackError as exc:  # our verdict stands (a promote in flight is lost)
            get_run_logger().warning("could not record the end of the bake: %s", exc)
            return None
        if verdict != "promoted" and stored.verdict == "promoted":
            return _promoted(stored)
        return None


def live_bake(
    environment: str, service: str, deployed_at: datetime, version: str | None, end: datetime
) -> Bake:
    run_id = _flow_run_id()
    return Bake(
        bake_id=run_id or new_id(),
        environment=environment,
        service=service,
        deployed_at=iso(deployed_at) or "",
        version=version,
        run_id=run_id,
        live_until=mark_ts(end + timedelta(minutes=2)),  # after that, a dead bake is over
    )


def _promoted(bake: Bake) -> Ending:
    by, at = bake.promoted_by or "?", bake.promoted_at or ""
    return Ending("promoted", by, at, bake.promote_reason or "")


def _flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else None


def _run_cancelled(run_id: str | None) -> bool:
    """True once the run is cancelling or cancelled (from the UI, the API or the CLI)."""
    if not run_id:
        return False
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(run_id)).state
    except Exception as exc:  # noqa: BLE001 - the API away for a moment: the bake goes on
        logging.getLogger(__name__).warning("could not read run %s: %s", run_id, log_safe(exc))
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())
