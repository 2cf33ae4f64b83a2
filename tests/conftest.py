"""Shared fixtures: one moto server per session reached through AWS_ENDPOINT_URL,
and one Prefect test server per session (prefect_test_harness)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack.sandbox import moto_server
from tests.servers import reset_moto

# Fake credentials for the local AWS stand-in; set before any boto3 client exists.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)


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
