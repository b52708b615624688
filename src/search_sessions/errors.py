"""The package's exceptions: one base class, a few kinds.

The CLI maps them to exit codes (2 for :class:`ConfigError`, 1 for the others);
library callers catch :class:`SearchSessionsError` for all of them.
"""

from __future__ import annotations


class SearchSessionsError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(SearchSessionsError, ValueError):
    """Options that cannot work together, or a value out of range."""


class InputError(SearchSessionsError):
    """An input that cannot be read at all (missing file, unknown topic)."""


class OutputError(SearchSessionsError):
    """An output that cannot be written (Kafka delivery failed, say)."""


class RunError(SearchSessionsError, RuntimeError):
    """The dataflow failed; the message says why (the first line of the cause)."""


class StrictError(InputError, ValueError):
    """Under ``strict``, the first invalid record; the message names where it is."""
