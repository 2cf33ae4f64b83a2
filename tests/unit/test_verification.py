"""The verification analysis on recorded one-minute series (pure: numpy/SciPy only)."""

from __future__ import annotations

import math

import numpy as np

from rollback import verification as v

# A healthy API: 5XX rate in percent per minute, an hour before the deploy.
BASELINE_5XX = [0.4, 0.6, 0.5, 0.3, 0.7, 0.5, 0.4, 0.6, 0.5, 0.8] * 6
# After a bad deploy: errors climb to 3-4 % (below the 10 % absolute ceiling).
REGRESSED_5XX = [2.9, 3.4, 3.1, 3.8, 3.6, 4.0, 3.3, 3.7, 3.5, 3.9]
HEALTHY_5XX = [0.5, 0.4, 0.7, 0.5, 0.6, 0.4, 0.5, 0.6, 0.3, 0.5]
RATE = v.MetricRule("5xx-rate", min_effect=0.5, max_value=10)
LATENCY = v.MetricRule("p99-latency", min_effect=0.2)


def test_a_regression_fails_the_relative_rule() -> None:
    # GIVEN a bake window whose error rate is 7x the baseline  WHEN analysed
    e = v.analyse_metric(RATE, BASELINE_5XX, REGRESSED_5XX)
    # THEN fail, with the evidence: both means, U, p-value and effect
    assert e.verdict == "fail" and e.rule is not None and e.rule.startswith("relative")
    assert e.p_value is not None and e.p_value < 0.001
    assert e.effect is not None and e.effect > 5
    assert math.isclose(e.baseline, float(np.mean(BASELINE_5XX)))
    assert e.u == 600.0  # every bake minute above every baseline minute: U = 10 * 60
    assert "5xx-rate" in e.line() and "→" in e.line()


def test_a_healthy_deploy_passes() -> None:
    e = v.analyse_metric(RATE, BASELINE_5XX, HEALTHY_5XX)
    assert e.verdict == "pass" and e.rule is None


def test_significant_but_small_effect_passes() -> None:
    # GIVEN latency 5 % higher, consistently (significant, but below the 20 % effect)
    base = [100.0 + (i % 7) for i in range(60)]
    bake = [x * 1.05 + 3 for x in base[:10]]
    e = v.analyse_metric(LATENCY, base, bake)
    assert e.p_value is not None and e.p_value < 0.05
    assert e.verdict == "pass"


def test_the_absolute_ceiling_fails_even_without_a_baseline_shift() -> None:
    base = [12.0, 11.0, 13.0, 12.5, 11.5, 12.0] * 10  # always bad
    e = v.analyse_metric(RATE, base, [12.0, 11.5, 12.5, 12.0, 13.0])
    assert e.verdict == "fail" and e.rule is not None and e.rule.startswith("absolute")


def test_too_little_traffic_is_inconclusive_never_fail() -> None:
    # GIVEN minutes without requests (no sample) and only three bake minutes with data
    bake = v.rate_series([5, 0, 0, 4, 0, 6], [10, 0, 0, 8, 0, 9])
    assert bake[1] is None
    e = v.analyse_metric(RATE, BASELINE_5XX, bake)
    assert e.verdict == "inconclusive" and e.p_value is None
    assert e.rule is not None and "too little data" in e.rule
    assert v.analyse_metric(RATE, [], []).verdict == "inconclusive"


def test_constant_series_do_not_warn_or_fail() -> None:
    e = v.analyse_metric(RATE, [0.0] * 60, [0.0] * 10)
    assert e.verdict == "pass" and e.effect == 0.0


def test_minute_and_final_verdicts() -> None:
    fail = v.analyse_metric(RATE, BASELINE_5XX, REGRESSED_5XX)
    ok = v.analyse_metric(LATENCY, [1.0] * 10, [1.0] * 10)
    short = v.analyse_metric(LATENCY, [1.0] * 10, [1.0])
    assert v.combine([ok, fail]) == "fail"
    assert v.combine([ok, ok]) == "pass"
    assert v.combine([ok, short]) == "inconclusive"
    assert v.final_verdict(["inconclusive", "fail", "pass", "fail", "fail"]) == "fail"
    assert v.final_verdict(["inconclusive", "fail", "pass"]) == "pass"
    assert v.final_verdict(["inconclusive", "inconclusive"]) == "inconclusive"
    assert v.final_verdict([]) == "inconclusive"
    assert v.health_failed([True, False, False]) and not v.health_failed([False, True])
    assert v.failed_rule([ok, fail]) == f"5xx-rate: {fail.rule}"


def test_batch_equals_one_by_one() -> None:
    rng = np.random.default_rng(7)
    base = rng.gamma(2.0, 1.0, size=(40, 60))
    bake = rng.gamma(2.0, 1.0, size=(40, 10)) * np.linspace(0.8, 3.0, 40)[:, None]
    limits = np.full(40, np.nan)
    effects = np.full(40, 0.5)
    out = v.analyse_batch(base, bake, limits, effects)
    rule = v.MetricRule("m", min_effect=0.5)
    singles = [
        v.analyse_metric(rule, list(b), list(k)).verdict for b, k in zip(base, bake, strict=True)
    ]
    assert [v.VERDICTS[c] for c in out["verdict"]] == singles
    assert "fail" in singles and "pass" in singles


def test_the_fast_test_is_scipys_mann_whitney() -> None:
    from scipy.stats import mannwhitneyu

    # GIVEN recorded-like rows with ties (rounded values) and constant rows
    rng = np.random.default_rng(3)
    x = np.round(rng.gamma(2.0, 1.0, size=(200, 10)) * rng.uniform(0.5, 2, (200, 1)), 1)
    y = np.round(rng.gamma(2.0, 1.0, size=(200, 60)), 1)
    # WHEN both compute the one-sided test
    u, p = v.mann_whitney_greater(x, y)
    ref = mannwhitneyu(x, y, alternative="greater", axis=1, method="asymptotic")
    # THEN U and p agree
    assert np.allclose(u, ref.statistic) and np.allclose(p, ref.pvalue, rtol=1e-9, atol=1e-12)
    u0, p0 = v.mann_whitney_greater(np.zeros((1, 5)), np.zeros((1, 5)))
    assert p0[0] == 1.0 and u0[0] == 12.5


def test_the_chart_draws_gaps_and_empty_windows() -> None:
    from reports.verification_chart import verification_png

    data = verification_png(["5xx-rate", "latency"], [BASELINE_5XX, []], [[None, 3.0], []], "t")
    assert data.startswith(b"\x89PNG")
