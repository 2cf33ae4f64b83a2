"""The worker reads a queued run it heard of (flows/background.py): the server announces a
new run's Pending state before the run is visible to other requests, so a run not found
yet is read again for a while — a storm lost two of twenty runs to the 30 s sweep
before this. A run that is no longer waiting, or not ours, is left alone."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.exceptions import ObjectNotFound
from prefect.states import Pending, Running

from flows import background
from flows.background import QUEUE_TAG, _queued_run


class Api:
    """The Prefect client's ``read_flow_run``: not found ``hidden`` times, then the run."""

    def __init__(self, run: Any, hidden: int) -> None:
        self.run, self.hidden, self.reads = run, hidden, 0

    def read_flow_run(self, run_id: uuid.UUID) -> Any:
        self.reads += 1
        if self.reads <= self.hidden:
            raise ObjectNotFound(http_exc=Exception("404"))
        return self.run


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "NOT_YET_VISIBLE_S", (0.0, 0.0, 0.0))


def run(state: Any, tags: list[str]) -> Any:
    return SimpleNamespace(id=uuid.uuid4(), state=state, tags=tags)


def test_a_run_announced_before_it_is_visible_is_read_again() -> None:
    queued = run(Pending(), [QUEUE_TAG])
    api = Api(queued, hidden=2)
    assert _queued_run(api, str(queued.id)) is queued
    assert api.reads == 3


def test_a_run_never_found_is_given_up_after_the_retries() -> None:
    api = Api(run(Pending(), [QUEUE_TAG]), hidden=99)
    assert _queued_run(api, str(uuid.uuid4())) is None
    assert api.reads == 4  # the first read and three more


def test_a_run_no_longer_waiting_or_not_queued_for_workers_is_left_alone() -> None:
    for other in (run(Running(), [QUEUE_TAG]), run(Pending(), ["rollback"])):
        assert _queued_run(Api(other, hidden=0), str(other.id)) is None
    assert _queued_run(Api(None, hidden=0), "not-a-run-id") is None
