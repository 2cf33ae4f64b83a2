"""The empty flow of ``bench/prefect_floor.py`` and the long-lived processes that run it.

``floor_flow(n)`` is a flow of ``n`` no-op task runs, each logging one line: no work of
ours, only Prefect's bookkeeping. Run as a script, this module is one of the benchmark's
long-lived processes (its own Python process, as a worker would be):

    python floor_flows.py in-process LIMIT  # reads "RUN <k> <tag> <n>" lines on stdin
                                          # and calls the flow k times at once, in threads
    python floor_flows.py listen TAG LIMIT  # the event stream (flows/background.py):
                                          # runs each Pending flow run tagged TAG
    python floor_flows.py serve LIMIT     # Prefect background tasks: serves
                                          # ``floor_background`` (task_worker.serve)

Each prints ``READY`` once it can take work.
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

from prefect import flow, get_client, get_run_logger, tags, task

READY = "READY"


@task(name="floor-step", persist_result=False)
def step(i: int) -> int:
    get_run_logger().info("step %d", i)
    return i


@flow(name="floor", persist_result=False)
def floor_flow(n: int = 6) -> int:
    for i in range(n):
        step(i)
    return n


def run_queued(flow_run_id: str) -> None:
    """``floor_flow`` in this process, on the flow run created ``Pending`` elsewhere."""
    from prefect.flow_engine import run_flow

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    run_flow(floor_flow, flow_run=run, parameters=run.parameters, return_type="state")


@task(name="floor-background", persist_result=False)
def floor_background(flow_run_id: str) -> None:
    """The earlier design: a background task run that runs the queued flow run."""
    run_queued(flow_run_id)


def in_process(limit: int) -> None:
    """Each ``RUN k tag n`` line: ``floor_flow(n)`` k times at once (up to ``limit``
    threads, as the listener), tagged ``tag``."""

    def one(tag: str, n: int) -> None:
        with tags(tag):
            floor_flow(n)

    print(READY, flush=True)
    with ThreadPoolExecutor(limit) as pool:
        for line in sys.stdin:
            _, k, tag, n = line.split()
            for _ in range(int(k)):
                pool.submit(one, tag, int(n))


async def listen(tag: str, limit: int) -> None:
    """Every ``prefect.flow-run.Pending`` event related to ``tag``: run that flow run."""
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    wanted = EventFilter(
        event=EventNameFilter(name=["prefect.flow-run.Pending"]),
        related=EventRelatedFilter(id=[f"prefect.tag.{tag}"]),
    )
    with ThreadPoolExecutor(limit) as pool:
        async with get_events_subscriber(filter=wanted) as events:
            print(READY, flush=True)
            async for event in events:
                pool.submit(run_queued, event.resource.id.removeprefix("prefect.flow-run."))


def main(argv: list[str]) -> None:
    role, *rest = argv
    if role == "in-process":
        in_process(int(rest[0]))
    elif role == "listen":
        asyncio.run(listen(rest[0], int(rest[1])))
    elif role == "serve":
        from prefect.task_worker import serve

        print(READY, flush=True)  # subscribed: the server's /task_workers/filter says when
        serve(floor_background, limit=int(rest[0]))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
