"""The task decorator every stage uses: retries only for transient faults, with
exponential backoff and jitter; no result caching (adapters are live objects)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from rollback.aws import is_transient


def retry_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: retry throttling/5xx/timeouts, never a refusal."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as err:  # noqa: BLE001 - the state's own exception
            exc = err
    return isinstance(exc, BaseException) and is_transient(exc)


def stage(name: str, retries: int = 3, **kwargs: Any) -> Any:
    return task(
        name=name,
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=0.5),
        retry_jitter_factor=0.5,
        retry_condition_fn=retry_transient,
        cache_policy=NO_CACHE,
        persist_result=False,
        **kwargs,
    )
