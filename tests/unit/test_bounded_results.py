"""The embedded launcher's memory of outcomes is bounded: a long-lived receiver does not
grow with every rollback it ever ran."""

from __future__ import annotations

from rollback.bounded import BoundedMap


def test_the_oldest_outcomes_are_forgotten_past_the_bound() -> None:
    results: BoundedMap[int] = BoundedMap(3)
    for n in range(10):
        results[f"audit-{n}"] = n
    assert list(results) == ["audit-7", "audit-8", "audit-9"]


def test_rewriting_an_outcome_keeps_it_as_the_newest() -> None:
    results: BoundedMap[int] = BoundedMap(2)
    results["a"], results["b"] = 1, 2
    results["a"] = 3
    results["c"] = 4
    assert dict(results) == {"a": 3, "c": 4}
