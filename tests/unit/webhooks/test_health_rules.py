"""Health-guard rules (pure) and the start-mode choice."""

from __future__ import annotations

import pytest

from flows.launch import default_mode
from rollback.config import parse_config
from rollback.config.webhooks import ServiceHealth
from rollback.stores.health_state import HealthState
from tasks.health import rate_check, rate_queries, should_roll_back


@pytest.mark.parametrize(
    ("errors", "total", "threshold", "passed"),
    [
        (5, 100, 5, True),
        (6, 100, 5, False),
        (0, 0, 5, True),
        (11, 100, 10, False),
        (1, 1000, 0, False),
    ],
)
def test_rate_check(errors: float, total: float, threshold: float, passed: bool) -> None:
    assert rate_check("r", errors, total, threshold, min_requests=1).passed is passed


def test_rate_check_needs_enough_requests() -> None:
    check = rate_check("r", 3, 4, 5, min_requests=10)
    assert check.passed and "no verdict" in check.detail


def test_should_roll_back_after_n_in_a_row() -> None:
    assert not should_roll_back(HealthState(1, "t"), 2)
    assert should_roll_back(HealthState(2, "t"), 2)
    assert should_roll_back(HealthState(5, "t"), 2)


def test_rate_queries_defaults_from_the_runbook() -> None:
    check = ServiceHealth(environment="prod", service="api", lambda_function="f", api_name="g")
    [(lname, lq, lt), (aname, aq, at)] = rate_queries(check)
    assert (lname, lq.namespace, lq.errors, lq.total, lt) == (
        "lambda_error_rate",
        "AWS/Lambda",
        "Errors",
        "Invocations",
        5,
    )
    assert (aname, aq.namespace, aq.errors, aq.total, at) == (
        "api_5xx_rate",
        "AWS/ApiGateway",
        "5XXError",
        "Count",
        10,
    )
    assert rate_queries(ServiceHealth(environment="prod", service="api", url="http://x")) == []


def _config(mode: str | None) -> object:
    hooks = {"mode": mode} if mode else {}
    return parse_config(
        {
            "environments": {
                "prod": {"services": {"api": {"type": "ecs", "cluster": "c", "service": "s"}}}
            },
            "webhooks": hooks,
        }
    )


def test_default_mode() -> None:
    assert default_mode(_config(None), {}) == "embedded"
    assert (
        default_mode(_config(None), {"PREFECT_API_URL": "http://127.0.0.1:4200/api"})
        == "deployment"
    )
    assert default_mode(_config("embedded"), {"PREFECT_API_URL": "http://x/api"}) == "embedded"
    assert default_mode(_config("deployment"), {}) == "deployment"
