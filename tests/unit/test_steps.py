"""Multi-step versions: composing and splitting step versions."""

from __future__ import annotations

import pytest

from rollback.errors import NotFoundError
from rollback.models import Version
from rollback.targets.steps import compose, split

NAMES = ["1-terraform", "2-ecs"]


def test_compose_and_split_round_trip():
    whole = compose(NAMES, [Version("v3"), Version("api:3")])
    assert whole.id == "1-terraform=v3|2-ecs=api:3"
    assert split(whole.id, NAMES) == ["v3", "api:3"]


def test_one_spec_for_every_step():
    assert split("v3", NAMES) == ["v3", "v3"]


def test_a_composite_missing_a_step_is_not_found():
    with pytest.raises(NotFoundError, match="no version for step"):
        split("1-terraform=v3", NAMES)
