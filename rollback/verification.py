"""Deploy verification by analysis: is the new version worse than its baseline?

Pure functions over plain arrays (numpy/SciPy, no I/O). For each metric:

- **too little data** — fewer than ``min_samples`` one-minute points in the baseline or
  in the bake window: ``inconclusive``, never ``fail``;
- **absolute rule** — the bake window's mean above ``max_value`` (e.g. a 5XX rate in
  percent above 10): ``fail``;
- **relative rule** — a one-sided Mann–Whitney U test (bake greater than baseline,
  asymptotic, tie- and continuity-corrected) with p < ``alpha`` **and** a relative
  effect ``(bake mean - baseline mean) / baseline mean`` of at least ``min_effect``:
  ``fail``;
- else ``pass``.

A minute's verdict over several metrics is ``fail`` if one fails, ``pass`` if all pass,
else ``inconclusive``; the final verdict is ``fail`` after ``fails_in_a_row`` failing
minutes in a row (or a failing last minute), ``pass`` when the last minute passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Verdict = Literal["pass", "fail", "inconclusive"]
PASS, FAIL, INCONCLUSIVE = 0, 1, 2
VERDICTS: tuple[Verdict, Verdict, Verdict] = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class MetricRule:
    """How one metric is judged (values in the metric's unit; rates in percent)."""

    name: str
    min_effect: float
    max_value: float | None = None
    alpha: float = 0.05
    min_samples: int = 5


@dataclass(frozen=True)
class MetricEvidence:
    """What one metric showed: both windows, the test, the effect and the rule."""

    name: str
    verdict: Verdict
    baseline: float
    bake: float
    baseline_samples: int
    bake_samples: int
    u: float | None
    p_value: float | None
    effect: float | None
    rule: str | None  # the rule that failed (or why inconclusive)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("baseline", "bake", "u", "p_value", "effect"):
            value = data[key]
            data[key] = None if value is None or math.isnan(value) else _finite(value)
        return data

    def line(self) -> str:
        """One line of evidence: metric, baseline → now, rule."""
        effect = "" if self.effect is None else f", effect {_pct(self.effect)}"
        p = "" if self.p_value is None else f", p={self.p_value:.3g}"
        return (
            f"{self.name}: {self.baseline:.4g} → {self.bake:.4g}{effect}{p} "
            f"({self.rule or self.verdict})"
        )


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _pct(effect: float) -> str:
    return "+inf" if math.isinf(effect) else f"{effect:+.0%}"


def analyse_batch(
    baseline: np.ndarray,
    bake: np.ndarray,
    max_value: np.ndarray,
    min_effect: np.ndarray,
    alpha: float = 0.05,
    min_samples: int = 5,
) -> dict[str, np.ndarray]:
    """Verdicts of M metrics at once: ``baseline`` (M, B) and ``bake`` (M, K) dense
    one-minute points; ``max_value`` (M,) with NaN for no absolute rule; ``min_effect``
    (M,). Returns arrays ``verdict`` (codes PASS/FAIL/INCONCLUSIVE), ``u``, ``p``,
    ``effect``, ``baseline``, ``bake`` (means), ``absolute``, ``relative`` (bools)."""
    base = np.atleast_2d(np.asarray(baseline, dtype=float))
    new = np.atleast_2d(np.asarray(bake, dtype=float))
    rows = base.shape[0]
    nb, nk = base.shape[1], new.shape[1]
    if nb == 0 or nk == 0:
        nan = np.full(rows, np.nan)
        return {
            "verdict": np.full(rows, INCONCLUSIVE),
            "u": nan,
            "p": nan,
            "effect": nan,
            "baseline": base.mean(axis=1) if nb else nan,
            "bake": new.mean(axis=1) if nk else nan,
            "absolute": np.zeros(rows, bool),
            "relative": np.zeros(rows, bool),
        }
    base_mean, bake_mean = base.mean(axis=1), new.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.where(
            base_mean > 0,
            (bake_mean - base_mean) / np.where(base_mean > 0, base_mean, 1.0),
            np.where(bake_mean > base_mean, np.inf, 0.0),
        )
    u, p = mann_whitney_greater(new, base)
    limit = np.asarray(max_value, dtype=float)
    absolute = ~np.isnan(limit) & (bake_mean > np.nan_to_num(limit, nan=np.inf))
    relative = (p < alpha) & (effect >= np.asarray(min_effect, dtype=float))
    short = min(nb, nk) < min_samples
    verdict = np.where(absolute | relative, FAIL, PASS)
    if short:
        verdict = np.full(rows, INCONCLUSIVE)
    return {
        "verdict": verdict,
        "u": u,
        "p": p,
        "effect": effect,
        "baseline": base_mean,
        "bake": bake_mean,
        "absolute": absolute & (not short),
        "relative": relative & (not short),
    }


def mann_whitney_greater(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise one-sided Mann–Whitney U test (``x`` greater than ``y``): U of ``x`` and
    the p-value of the normal approximation with tie and continuity corrections — what
    ``scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic",
    axis=1)`` returns (checked equal in the unit tests). U is counted by comparing every
    pair (bake windows are short) and ties from one sort, several times faster than
    ranking thousands of rows with ``rankdata``. A row with every value equal has p = 1."""
    from scipy import special  # loaded by the first analysis, not by every config load

    rows, nx = x.shape
    ny = y.shape[1]
    n = nx + ny
    xs, ys = x[:, :, None], y[:, None, :]
    u = np.count_nonzero(xs > ys, axis=(1, 2)) + 0.5 * np.count_nonzero(xs == ys, axis=(1, 2))
    # Ties: sum over tie groups of t^3 - t. A group of t equal values has t - 1 elements
    # equal to their predecessor, at positions k = 1..t-1 in the group, and
    # sum_k 3k(k+1) = t^3 - t: only the (few) tied elements are visited.
    ordered = np.sort(np.concatenate([x, y], axis=1), axis=1)
    same = np.zeros((rows, n), bool)
    np.equal(ordered[:, 1:], ordered[:, :-1], out=same[:, 1:])
    tied = np.flatnonzero(same)
    tie_term: np.ndarray = np.zeros(rows)
    if tied.size:
        run_start = np.ones(tied.size, bool)
        run_start[1:] = np.diff(tied) != 1
        first = np.maximum.accumulate(np.where(run_start, np.arange(tied.size), 0))
        k = (np.arange(tied.size) - first + 1).astype(float)
        tie_term = np.bincount(tied // n, weights=3 * k * (k + 1), minlength=rows)
    sigma = np.sqrt(nx * ny / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - nx * ny / 2 - 0.5) / sigma
    p = np.where(sigma > 0, special.ndtr(-z), 1.0)
    return u.astype(float), p


def _points(values: Sequence[float | None]) -> np.ndarray:
    """The finite points of a series (missing minutes dropped)."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def analyse_metric(
    rule: MetricRule, baseline: Sequence[float | None], bake: Sequence[float | None]
) -> MetricEvidence:
    """The verdict and evidence of one metric (missing minutes are not samples)."""
    base, new = _points(baseline), _points(bake)
    limit = np.nan if rule.max_value is None else rule.max_value
    if len(base) == 0 or len(new) == 0:
        out = analyse_batch(
            np.empty((1, 0)), np.empty((1, 0)), np.array([limit]), np.array([rule.min_effect])
        )
    else:
        out = analyse_batch(
            base[None, :],
            new[None, :],
            np.array([limit]),
            np.array([rule.min_effect]),
            rule.alpha,
            rule.min_samples,
        )
    code = int(out["verdict"][0])
    short = min(len(base), len(new)) < rule.min_samples
    why: str | None = None
    if short:
        why = (
            f"too little data ({len(base)} baseline, {len(new)} bake minutes; "
            f"{rule.min_samples} needed)"
        )
    elif bool(out["absolute"][0]):
        why = f"absolute: {float(out['bake'][0]):.4g} > max {rule.max_value:g}"
    elif bool(out["relative"][0]):
        why = (
            f"relative: Mann-Whitney p={float(out['p'][0]):.3g} < {rule.alpha:g} and effect "
            f"{_pct(float(out['effect'][0]))} >= {rule.min_effect:+.0%}"
        )
    tested = not short
    return MetricEvidence(
        name=rule.name,
        verdict=VERDICTS[code],
        baseline=float(out["baseline"][0]) if len(base) else math.nan,
        bake=float(out["bake"][0]) if len(new) else math.nan,
        baseline_samples=len(base),
        bake_samples=len(new),
        u=float(out["u"][0]) if tested else None,
        p_value=float(out["p"][0]) if tested else None,
        effect=float(out["effect"][0]) if tested else None,
        rule=why,
    )


def rate_series(
    errors: Sequence[float | None], totals: Sequence[float | None], min_total: float = 1
) -> list[float | None]:
    """Per-minute rates in percent; a minute with fewer than ``min_total`` requests is
    no sample (None)."""
    out: list[float | None] = []
    for e, t in zip(errors, totals, strict=True):
        if t is None or t < min_total or e is None:
            out.append(None)
        else:
            out.append(100.0 * e / t)
    return out


def combine(evidence: Sequence[MetricEvidence]) -> Verdict:
    """One minute's verdict over every metric."""
    verdicts = {e.verdict for e in evidence}
    if "fail" in verdicts:
        return "fail"
    if verdicts == {"pass"}:
        return "pass"
    return "inconclusive"


def final_verdict(minutes: Sequence[Verdict], fails_in_a_row: int = 2) -> Verdict:
    """The bake's verdict from its per-minute verdicts (oldest first)."""
    run = 0
    for verdict in minutes:
        run = run + 1 if verdict == "fail" else 0
        if run >= fails_in_a_row:
            return "fail"
    if not minutes:
        return "inconclusive"
    last = minutes[-1]
    return last if last in ("pass", "fail") else "inconclusive"


def health_failed(probes: Sequence[bool], in_a_row: int = 2) -> bool:
    """True when the last ``in_a_row`` health probes all failed (False = unhealthy)."""
    return len(probes) >= in_a_row and not any(probes[-in_a_row:])


def failed_rule(evidence: Sequence[MetricEvidence]) -> str | None:
    """The first failing metric's rule, for the one-line summary."""
    for e in evidence:
        if e.verdict == "fail":
            return f"{e.name}: {e.rule}"
    return None


@dataclass(frozen=True)
class Judgement:
    """A bake window's analysis: per-minute verdicts, the final one, and the evidence
    of the last minute analysed (the one that decided)."""

    minutes: tuple[Verdict, ...]
    verdict: Verdict
    evidence: tuple[MetricEvidence, ...]
    rule: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "metrics": [e.as_dict() for e in self.evidence],
            "rule": self.rule,
            "minutes": list(self.minutes),
        }

    def summary(self, limit: int = 2) -> list[str]:
        """At most ``limit`` lines: the failing metrics first (metric, baseline → now, rule)."""
        ranked = sorted(self.evidence, key=lambda e: e.verdict != "fail")
        return [e.line() for e in ranked[:limit]]


def judge(
    rules: Sequence[MetricRule],
    baseline: Sequence[Sequence[float | None]],
    bake: Sequence[Sequence[float | None]],
    fails_in_a_row: int = 2,
    health_probes: Sequence[bool] = (),
    health_failures: int = 2,
) -> Judgement:
    """Judge each bake minute (the bake so far against the whole baseline), stopping at
    ``fails_in_a_row`` failing minutes. ``baseline[i]``/``bake[i]`` are metric i's
    one-minute series; ``health_probes`` one probe per bake minute (True = healthy)."""
    minutes = max((len(s) for s in bake), default=0)
    if health_probes:
        minutes = max(minutes, len(health_probes))
    verdicts: list[Verdict] = []
    evidence: list[MetricEvidence] = []
    for m in range(1, minutes + 1):
        evidence = [
            analyse_metric(rule, base, series[:m])
            for rule, base, series in zip(rules, baseline, bake, strict=True)
        ]
        verdict = combine(evidence) if evidence else "inconclusive"
        probes = list(health_probes[:m])
        if probes and health_failed(probes, health_failures):
            verdict = "fail"
            evidence.append(_health_evidence(probes, health_failures))
        elif probes and not evidence:
            verdict = "pass"
        verdicts.append(verdict)
        if final_verdict(verdicts, fails_in_a_row) == "fail":
            break
    final = final_verdict(verdicts, fails_in_a_row)
    rule = failed_rule(evidence) if final == "fail" else None
    return Judgement(tuple(verdicts), final, tuple(evidence), rule)


def _health_evidence(probes: Sequence[bool], in_a_row: int) -> MetricEvidence:
    healthy = sum(probes)
    return MetricEvidence(
        name="health-url",
        verdict="fail",
        baseline=1.0,
        bake=healthy / len(probes),
        baseline_samples=0,
        bake_samples=len(probes),
        u=None,
        p_value=None,
        effect=None,
        rule=f"absolute: health URL failed {in_a_row}x in a row",
    )
