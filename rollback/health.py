"""HTTP health probe: N consecutive 2xx answers."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from rollback.models import CheckResult


def probe(url: str, timeout_s: float = 3) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return 200 <= resp.status < 300, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return False, f"unreachable ({type(getattr(exc, 'reason', exc)).__name__})"


def consecutive_ok(
    url: str, needed: int, interval_s: float = 0.5, max_attempts: int | None = None
) -> CheckResult:
    """Pass after ``needed`` 2xx answers in a row, within ``max_attempts`` probes."""
    attempts = max_attempts or needed * 3
    streak, last = 0, ""
    for i in range(attempts):
        ok, last = probe(url)
        streak = streak + 1 if ok else 0
        if streak >= needed:
            return CheckResult("health", True, f"{needed} consecutive 2xx from {url}")
        if i + 1 < attempts:
            time.sleep(interval_s)
    return CheckResult("health", False, f"{url}: no {needed} consecutive 2xx (last: {last})")
