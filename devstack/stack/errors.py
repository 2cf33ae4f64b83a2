"""The one error of the local stack."""

from __future__ import annotations


class StackError(RuntimeError):
    """A part of the stack did not start; the message names it and its log file."""
