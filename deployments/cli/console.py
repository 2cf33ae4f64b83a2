"""What a person at a terminal sees of a flow run in the CLI process: our own warnings
and errors, one line each, never a traceback.

Prefect's console handler would print the engine's own lines ("Task run failed with
exception ...", "Encountered exception during execution") with full tracebacks, several
times per fault when a stage retries. The CLI already prints progress, the result and,
for an error, one ``error:`` line of its own; so on the terminal the engine's lines are
dropped and ours are flattened to one line. Nothing is lost: the API log handler still
sends every record, tracebacks included, to the Prefect server (the run's logs in the
UI), and ``ROLLBACK_DEBUG=1`` keeps Prefect's console as it is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rollback.text import log_safe

_LINE_LIMIT = 1000


class _NotPrefectInternals(logging.Filter):
    """Drops records the Prefect package logs itself (engine state lines, retries)."""

    def __init__(self, package_dir: str) -> None:
        super().__init__()
        self._package_dir = package_dir

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL or not record.pathname.startswith(
            self._package_dir
        )


class _OneLineFormatter(logging.Formatter):
    """Formats a copy of the record without exception or stack, as one bounded line (the
    record itself stays whole for the other handlers)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        bare = logging.makeLogRecord(record.__dict__)
        bare.exc_info = bare.exc_text = bare.stack_info = None
        return log_safe(self._inner.format(bare), limit=_LINE_LIMIT)


def one_line_console() -> None:
    """Apply the policy above to Prefect's console handlers (idempotent). Call after
    Prefect is imported, in a CLI process only."""
    if os.environ.get("ROLLBACK_DEBUG"):
        return
    import prefect
    from prefect.logging.handlers import PrefectConsoleHandler

    package_dir = str(Path(prefect.__file__).parent) + os.sep
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, _OneLineFormatter
            ):
                handler.addFilter(_NotPrefectInternals(package_dir))
                handler.setFormatter(_OneLineFormatter(handler.formatter))
