"""Shared fixtures: one moto server per session reached through AWS_ENDPOINT_URL,
and one Prefect test server per session (prefect_test_harness).

Under pytest-xdist (``make test``: ``-n 2 --dist loadfile``) a session is one worker
process: each has its own moto server, Prefect test server, environment and tmp dirs,
on ports the OS picked. Each file is one unit of work (its module fixtures set up once),
except the files that start a whole local stack (STACK_TEST_FILES): together they are
one unit, started first, on one worker, one file after the other, so that two stacks
never share the two cores. (Not ``--dist loadgroup``: xdist 3.8 marks a group by
renaming node ids, which pytest 9 ignores, so its groups are silently not kept.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from xdist.scheduler import LoadFileScheduling

from devstack.sandbox import moto_server
from tests.servers import reset_moto

# Fake credentials for the local AWS stand-in; set before any boto3 client exists.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)


STACK_TEST_FILES = frozenset(
    f"tests/functional/{name}.py"
    for name in (
        "test_ui_manual_run",
        "test_ui_browser",
        "test_every_deployment",
        "test_scale_out",
        "test_long_lived_worker",
    )
)


class StacksInOneUnit(LoadFileScheduling):
    """``--dist loadfile``, with the stack files counted as one file."""

    def _split_scope(self, nodeid: str) -> str:  # xdist's own schedulers extend this
        file = super()._split_scope(nodeid)
        return "stacks" if file in STACK_TEST_FILES else file


@pytest.hookimpl(optionalhook=True)  # a hook of xdist's: unknown under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> StacksInOneUnit | None:
    return StacksInOneUnit(config, log) if config.getvalue("dist") == "loadfile" else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the stack files first: the longest unit of work starts first
    and the other files fill in beside it (xdist keeps this order with
    ``--no-loadscope-reorder``). Without xdist the order is pytest's."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in STACK_TEST_FILES)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        old = os.environ.get("AWS_ENDPOINT_URL")
        os.environ["AWS_ENDPOINT_URL"] = url
        yield url
        if old is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = old


@pytest.fixture
def aws(moto_url: str) -> Iterator[str]:
    """A clean moto server for this test (state reset before it)."""
    reset_moto(moto_url)
    yield moto_url


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real Prefect API for flow runs, shared by the session (12-15 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_server: None) -> str:
    """The test server's API URL, for subprocesses that should use it too."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for running the ``rollback`` CLI as a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(extra)
    return env
