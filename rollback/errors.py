"""Errors, named by how the caller reacts to them.

Every error message says what was wrong and what to do about it.
"""

from __future__ import annotations


class RollbackError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(RollbackError):
    """The configuration or the request is invalid: fix the input and run again."""


class TransientError(RollbackError):
    """A passing fault (throttling, 5xx, timeout, connection): safe to retry."""


class TargetError(RollbackError):
    """The platform refused or failed an operation: not worth retrying as is."""


class NotFoundError(TargetError):
    """A version, service or resource that was asked for does not exist."""


class StoreError(RollbackError):
    """The audit or history store failed or is missing a table."""


class MissingTableError(StoreError):
    """A store table does not exist and the config does not create it: create it first."""


class AlreadyRecordedError(StoreError):
    """A conditional write lost: the record already holds that or a later state."""


class LockHeldError(RollbackError):
    """Another rollback of the same service is in flight: wait for it to finish."""


class NeedsHumanError(RollbackError):
    """Automation stops here; a person must decide (escalated, not retried)."""
