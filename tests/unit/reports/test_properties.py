"""Properties over generated histories: services add up to the environment, and the
order records arrive in changes nothing."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reports.load import audit_frame, records_frame
from reports.metrics import compute
from rollback.models import DeploymentRecord
from tests.unit.reports.builders import NOW, attempt

SERVICES = ("api", "web", "db")
VERSIONS = ("v0", "v1", "v2", "v3")


def _fields(minutes: st.SearchStrategy[int]) -> st.SearchStrategy[tuple]:  # type: ignore[type-arg]
    return st.tuples(
        st.sampled_from(SERVICES),
        st.sampled_from(VERSIONS),
        st.sampled_from(("success", "success", "failed")),
        st.sampled_from(("deploy", "deploy", "rollback")),
        st.sampled_from(VERSIONS),
        st.sampled_from(("manual", "alarm", "health", "webhook")),
        minutes,
        st.one_of(st.none(), st.integers(min_value=0, max_value=3600)),
        st.one_of(st.none(), st.integers(min_value=0, max_value=48 * 60)),
        st.sampled_from(("prod", "prod", "staging")),
    )


# Minutes from now: anywhere over 45 days, or a few hours on a grid where ties are common.
ANY_DAY = st.integers(min_value=-2, max_value=45 * 24 * 6).map(lambda n: -10 * n)
CROWDED = st.integers(min_value=-1, max_value=6).map(lambda n: -60 * n)


def _record(i: int, f: tuple) -> DeploymentRecord:  # type: ignore[type-arg]
    service, version, status, kind, from_v, trigger, minutes, took_s, lead_min, env = f
    finished = NOW + timedelta(minutes=minutes)
    return DeploymentRecord(
        environment=env,
        service=service,
        version=version,
        status=status,
        kind=kind,
        from_version=from_v if kind == "rollback" else None,
        trigger=trigger if kind == "rollback" else None,
        started_at=finished - timedelta(seconds=took_s) if took_s is not None else None,
        finished_at=finished,
        committed_at=finished - timedelta(minutes=lead_min) if lead_min is not None else None,
        record_id=f"id{i:04d}",
    )


def histories(minutes: st.SearchStrategy[int]) -> st.SearchStrategy[list[DeploymentRecord]]:
    return st.lists(_fields(minutes), max_size=60).map(
        lambda fs: [_record(i, f) for i, f in enumerate(fs)]
    )


SETTINGS = settings(max_examples=50, deadline=None)


@SETTINGS
@given(records=histories(st.one_of(ANY_DAY, CROWDED)), days=st.sampled_from((1, 7, 30)))
def test_per_service_numbers_add_up_to_the_environment(records, days) -> None:  # type: ignore[no-untyped-def]
    doc = compute(records_frame(records), audit_frame([]), "prod", NOW, days).document
    services, per = doc["services"].values(), doc["serviceDora"].values()
    for key in ("totalDeployments", "successfulDeployments", "failedDeployments"):
        assert sum(s[key] for s in services) == doc["stats"][key]
    for key in ("changeFailures", "rolledBackDeployments", "restoredCount", "unrestoredCount"):
        assert sum(s[key] for s in per) == doc["dora"][key]
    assert sum(s["rollbacks"] for s in per) == doc["rollbacks"]["recordedInHistory"]["count"]
    assert (
        doc["dora"]["restoredCount"] + doc["dora"]["unrestoredCount"]
        == doc["dora"]["changeFailures"]
    )
    stats = doc["stats"]
    assert stats["successfulDeployments"] + stats["failedDeployments"] == stats["totalDeployments"]
    # the environment's average duration is the services' averages weighted by count
    timed = [
        r
        for r in records
        if r.environment == "prod"
        and r.kind == "deploy"
        and r.started_at
        and NOW - timedelta(days=days) <= r.finished_at < NOW
    ]
    if timed:
        weighted = sum(
            s["averageDuration"] * sum(1 for r in timed if r.service == name)
            for name, s in doc["services"].items()
            if s["averageDuration"] is not None
        ) / len(timed)
        assert abs(weighted - stats["averageDuration"]) <= 0.1


@SETTINGS
@given(records=histories(CROWDED), seed=st.integers(0, 2**32 - 1))
def test_shuffling_the_records_changes_nothing(records, seed) -> None:  # type: ignore[no-untyped-def]
    attempts = [
        attempt(s, -i, trigger=t)
        for i, (s, t) in enumerate(
            [("succeeded", "alarm"), ("refused", "manual"), ("failed", "health")] * 3
        )
    ]
    shuffled, shuffled_attempts = list(records), list(attempts)
    random.Random(seed).shuffle(shuffled)
    random.Random(seed).shuffle(shuffled_attempts)
    a = compute(records_frame(records), audit_frame(attempts), "prod", NOW, 30)
    b = compute(records_frame(shuffled), audit_frame(shuffled_attempts), "prod", NOW, 30)
    assert a.document == b.document
    assert a.services == b.services
    assert a.events.equals(b.events)
    assert a.daily.equals(b.daily)
