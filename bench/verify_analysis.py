"""Deploy verification analysis at scale: 500 services x 6 metrics x 70 one-minute points
(60 baseline minutes, 10 bake minutes), every metric judged by the absolute ceiling, the
one-sided Mann-Whitney U test and the relative effect (``rollback.verification``).

The vectorised analysis (one ``analyse_batch`` call: numpy + SciPy over a 3000-row
matrix) is compared with a plain-Python loop computing the same verdicts (midranks, the
tie- and continuity-corrected normal approximation SciPy's asymptotic method uses);
the verdicts must be equal.

Goals: vectorised <= 1 s (wall); >= 20x faster than the loop (CPU time of the process,
best of several runs: the machine is shared); verdicts equal.
Run: ``.venv/bin/python bench/verify_analysis.py [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rollback.verification import FAIL, INCONCLUSIVE, PASS, analyse_batch  # noqa: E402

SERVICES, METRICS, BASELINE, BAKE = 500, 6, 60, 10
ALPHA, MIN_SAMPLES = 0.05, 5


def world(seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Error rates and latencies, with ~10 % of the services regressing."""
    rng = np.random.default_rng(seed)
    rows = SERVICES * METRICS
    scale = rng.uniform(0.2, 300, size=(rows, 1))
    base = rng.gamma(4.0, 1.0, size=(rows, BASELINE)) * scale / 4
    factor = np.where(rng.random((rows, 1)) < 0.1, rng.uniform(1.1, 3.0, (rows, 1)), 1.0)
    bake = rng.gamma(4.0, 1.0, size=(rows, BAKE)) * scale / 4 * factor
    bake = np.round(bake, 1)  # recorded values: ties happen
    base = np.round(base, 1)
    is_rate = (np.arange(rows) % METRICS) < 2
    limits = np.where(is_rate, 10.0 * scale[:, 0] / 4, np.nan)
    effects = np.where(is_rate, 0.5, 0.2)
    return base, bake, limits, effects


def plain_verdicts(base: np.ndarray, bake: np.ndarray, limits: np.ndarray, effects: np.ndarray):
    """The same analysis, one metric at a time, in plain Python."""
    out = []
    for b_row, k_row, limit, min_effect in zip(
        base.tolist(), bake.tolist(), limits.tolist(), effects.tolist(), strict=True
    ):
        nb, nk = len(b_row), len(k_row)
        if min(nb, nk) < MIN_SAMPLES:
            out.append(INCONCLUSIVE)
            continue
        b_mean, k_mean = sum(b_row) / nb, sum(k_row) / nk
        effect = (
            (k_mean - b_mean) / b_mean if b_mean > 0 else (math.inf if k_mean > b_mean else 0.0)
        )
        pooled = sorted([(x, 1) for x in k_row] + [(x, 0) for x in b_row])
        rank_sum, ties, i, n = 0.0, 0.0, 0, nb + nk
        while i < n:
            j = i
            while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
                j += 1
            mid = (i + j) / 2 + 1
            t = j - i + 1
            ties += t**3 - t
            rank_sum += mid * sum(1 for k in range(i, j + 1) if pooled[k][1] == 1)
            i = j + 1
        u = rank_sum - nk * (nk + 1) / 2
        sigma = math.sqrt(nk * nb / 12 * ((n + 1) - ties / (n * (n - 1))))
        p = 0.5 * math.erfc(((u - nk * nb / 2 - 0.5) / sigma) / math.sqrt(2)) if sigma else 1.0
        absolute = not math.isnan(limit) and k_mean > limit
        relative = p < ALPHA and effect >= min_effect
        out.append(FAIL if absolute or relative else PASS)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base, bake, limits, effects = world()
    analyse_batch(base[:10], bake[:10], limits[:10], effects[:10])  # import/JIT warm-up
    # CPU time of this process, best of N for both: the machine is shared, and waiting
    # for a core is not the analysis' cost (wall-clock figures are printed too).
    runs, walls = [], []
    for _ in range(7):
        t0, w0 = time.process_time(), time.perf_counter()
        fast = analyse_batch(base, bake, limits, effects, ALPHA, MIN_SAMPLES)
        runs.append(time.process_time() - t0)
        walls.append(time.perf_counter() - w0)
    vector_s, vector_wall = min(runs), min(walls)
    loops, loop_walls = [], []
    for _ in range(3):
        t0, w0 = time.process_time(), time.perf_counter()
        slow = plain_verdicts(base, bake, limits, effects)
        loops.append(time.process_time() - t0)
        loop_walls.append(time.perf_counter() - w0)
    loop_s, loop_wall = min(loops), min(loop_walls)
    equal = fast["verdict"].tolist() == slow
    fails = int((fast["verdict"] == FAIL).sum())
    ratio = loop_s / vector_s
    ok = vector_wall <= 1.0 and ratio >= 20 and equal
    print(f"{SERVICES} services x {METRICS} metrics x {BASELINE + BAKE} points: {fails} fail")
    print(
        f"vectorised (numpy/SciPy): {vector_s * 1000:.1f} ms CPU "
        f"({vector_wall * 1000:.1f} ms wall)   goal <= 1000 ms"
    )
    print(
        f"plain-Python loop:        {loop_s * 1000:.1f} ms CPU ({loop_wall * 1000:.1f} ms wall)"
        f"   ratio {ratio:.0f}x CPU, {loop_wall / vector_wall:.0f}x wall (goal >= 20x)"
    )
    print(f"verdicts equal: {equal}   {'OK' if ok else 'GOAL MISSED'}")
    if args.json:
        print(
            json.dumps(
                {
                    "vector_cpu_s": vector_s,
                    "vector_wall_s": vector_wall,
                    "loop_cpu_s": loop_s,
                    "loop_wall_s": loop_wall,
                    "ratio_cpu": ratio,
                    "equal": equal,
                    "ok": ok,
                }
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
