"""Pause a flow run for a person's input, with a state message that says what it waits for.

Prefect's ``pause_flow_run(wait_for_input=...)`` proposes a Paused state without a
message, so the run page shows a bare "Paused" badge. ``pause_for_input`` does the same
steps (propose Paused with the input keyset, save the form's schema, poll until
resumed) with the message set — "waiting for ROLLBACK-PROD until 03:15 UTC: open ⋮ →
Resume" is then on the run page and in the run list. It uses the same Prefect 3.8
helpers ``pause_flow_run`` uses (prefect is pinned in pyproject.toml).
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

from prefect import get_client, get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.input import keyset_from_paused_state
from prefect.input.run_input import run_input_subclass_from_type
from prefect.states import Paused, State
from prefect.utilities.engine import propose_state_sync

T = TypeVar("T")


def pause_for_input(
    wait_for_input: type[T], *, message: str, timeout: int, poll_interval: int = 1
) -> Any:
    """Pause the current flow run until a person resumes it with ``wait_for_input``;
    returns the input; raises ``FlowPauseTimeout`` after ``timeout`` seconds."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("only a flow run can be paused")
    counter = context.observed_flow_pauses.get("counter", 0) + 1
    context.observed_flow_pauses["counter"] = counter
    model = run_input_subclass_from_type(wait_for_input)
    proposed: State[Any] = Paused(
        timeout_seconds=timeout, reschedule=False, pause_key=str(counter), message=message
    )
    keyset = keyset_from_paused_state(proposed)
    proposed.state_details.run_input_keyset = {k: v for k, v in keyset.items()}  # noqa: C416
    run_id = context.flow_run.id
    with get_client(sync_client=True) as client:
        state = propose_state_sync(client=client, state=proposed, flow_run_id=run_id)
        if state.is_running():  # resumed already (a pause seen before)
            return model.load(keyset)
        if not state.is_paused():
            raise RuntimeError(f"the flow run could not pause: the server answered {state}")
        model.save(keyset)  # the Resume form's schema and description
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            time.sleep(poll_interval)
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_running():
                get_run_logger().info("resumed: reading the answer")
                return model.load(keyset)
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_running():
            return model.load(keyset)
    raise FlowPauseTimeout("the flow run was paused and never resumed")
