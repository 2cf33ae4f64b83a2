"""Pure decisions of the Lambda alias target: version parsing, ordering, settledness."""

from __future__ import annotations

import pytest

from rollback import decisions
from rollback.errors import NotFoundError
from rollback.targets.lambda_alias import (
    _published,
    alias_state,
    parse_spec,
    published_newest_first,
    version_of,
)


def _conf(number: str, state: str = "Active") -> dict[str, str]:
    return {"FunctionName": "fn", "Version": number, "State": state, "FunctionArn": "arn"}


def test_versions_are_ordered_by_number_and_latest_is_left_out() -> None:
    # GIVEN versions as AWS lists them ($LATEST first, "10" after "9" only numerically)
    configs = [_conf("$LATEST"), _conf("1"), _conf("10"), _conf("9")]
    # WHEN
    versions = published_newest_first(configs)
    # THEN
    assert [v.id for v in versions] == ["10", "9", "1"]
    assert [v.order for v in versions] == [10, 9, 1]
    assert versions[0].label == "fn:10"


def test_default_target_is_newest_published_version_older_than_current() -> None:
    # GIVEN the alias on 3 and versions 1..4 published
    current = version_of(_conf("3"))
    candidates = published_newest_first([_conf(n) for n in ("$LATEST", "1", "2", "3", "4")])
    # WHEN
    chosen = decisions.fallback_candidates(candidates, current, frozenset())
    # THEN 4 (newer) and 3 (current) are skipped
    assert [v.id for v in chosen] == ["2", "1"]


def test_no_older_version_leaves_no_candidate() -> None:
    current = version_of(_conf("1"))
    candidates = published_newest_first([_conf("$LATEST"), _conf("1")])
    assert decisions.fallback_candidates(candidates, current, frozenset()) == []


def test_failed_version_is_not_active() -> None:
    assert version_of(_conf("2", state="Failed")).active is False
    assert version_of(_conf("2")).active is True


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("3", "3"),
        (" 12 ", "12"),
        ("fn:3", "3"),
        ("arn:aws:lambda:us-east-1:123456789012:function:fn:7", "7"),
        ("$LATEST", "$LATEST"),
    ],
)
def test_parse_spec_accepts_numbers_names_and_arns(spec: str, expected: str) -> None:
    assert parse_spec(spec, "fn") == expected


@pytest.mark.parametrize("spec", ["other-fn:3", "v3", "fn:live", ""])
def test_parse_spec_refuses_other_functions_and_non_versions(spec: str) -> None:
    with pytest.raises(NotFoundError):
        parse_spec(spec, "fn")


def test_latest_is_never_a_published_target() -> None:
    latest = version_of(_conf("$LATEST"))
    # Issue 9: $LATEST ranks newest, so target_older says "not older" instead of
    # "cannot tell" (every target type now needs an established order).
    assert latest.order is not None and latest.order > version_of(_conf("999")).order
    assert _published(latest).passed is False
    assert "$LATEST is never a rollback target" in _published(latest).detail
    assert _published(version_of(_conf("2"))).passed is True


def test_alias_settles_only_on_target_without_weights() -> None:
    weighted = {
        "Name": "live",
        "FunctionVersion": "2",
        "RoutingConfig": {"AdditionalVersionWeights": {"3": 0.1}},
    }
    plain = {"Name": "live", "FunctionVersion": "2", "RoutingConfig": {}}
    assert alias_state(weighted, "2") == (False, "alias live -> version 2, weights {'3': 0.1}")
    assert alias_state(plain, "2") == (True, "alias live -> version 2")
    assert alias_state(plain, "1")[0] is False
