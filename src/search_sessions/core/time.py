"""Event time: UTC microseconds since the epoch, parsed and formatted.

Every time in the core is an ``int`` of microseconds (timezone-aware UTC by
construction); text appears only at the edges, RFC 3339 with a ``Z``.
:data:`NEVER` and :data:`FOREVER` bound every real time.

>>> format_time(parse_time("2024-01-01T02:00:00.25+02:00"))
'2024-01-01T00:00:00.250000Z'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "EPOCH",
    "FOREVER",
    "MAX_US",
    "MIN_US",
    "NEVER",
    "UTC",
    "BadTime",
    "epoch_unit",
    "format_time",
    "parse_time",
    "to_us",
]

NEVER: Final = -(1 << 62)
"""A time before every event: a partition that has reported nothing yet."""
FOREVER: Final = 1 << 62
"""A time after every event: the watermark once every input has ended."""


def to_us(d: timedelta) -> int:
    """A timedelta in whole microseconds, the core's unit of time.

    >>> to_us(timedelta(minutes=30))
    1800000000
    """
    return d // timedelta(microseconds=1)


EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
MIN_US: Final = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // _US
MAX_US: Final = (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // _US


class BadTime(ValueError):
    """A time that is not RFC 3339 / ISO 8601 text or a finite epoch number in range."""


UNIT_US: Final = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}
"""Microseconds per unit of an epoch number."""

_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def epoch_unit(value: float) -> str:
    """The unit ``auto`` reads an epoch number in, by its size: seconds below 1e11 (up to
    the year 5138), milliseconds below 1e14, microseconds below 1e17, else nanoseconds.

    >>> epoch_unit(1_700_000_000), epoch_unit(1_700_000_000_000), epoch_unit(1.7e18)
    ('s', 'ms', 'ns')
    """
    size = abs(value)
    if size < 1e11:
        return "s"
    if size < 1e14:
        return "ms"
    return "us" if size < 1e17 else "ns"


def parse_time(value: str | int | float, unit: str = "auto") -> int:
    """UTC microseconds from an RFC 3339 / ISO 8601 string or an epoch number.

    A string without an offset is UTC. An epoch number (or a string that is one, as
    CSV cells are) is in ``unit``: ``s``, ``ms``, ``us``, ``ns``, or ``auto``
    (:func:`epoch_unit`).

    >>> parse_time("1970-01-01T00:00:01.5Z"), parse_time(1.5), parse_time("1500", "ms")
    (1500000, 1500000, 1500000)
    >>> parse_time("1970-01-01 02:00:01+02:00")
    1000000
    """
    if isinstance(value, str):
        if _NUMBER.match(value):
            try:
                number = float(value)
            except ValueError:  # `\s` there takes more than float() does ("\x1c5")
                raise BadTime(f"bad time {value!r}: not RFC 3339 / ISO 8601") from None
            if number.is_integer() and "." not in value and "e" not in value.lower():
                number = int(value)
            return parse_time(number, unit)
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(value.upper())
            except ValueError:
                raise BadTime(f"bad time {value!r}: not RFC 3339 / ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        try:
            us = (dt - EPOCH) // _US
        except OverflowError:
            raise BadTime(f"bad time {value!r}: out of range") from None
    elif isinstance(value, bool):
        raise BadTime(f"bad time {value!r}: not a time")
    else:
        if value != value or value in (float("inf"), float("-inf")):
            raise BadTime(f"bad time {value!r}: not a finite number")
        scale = UNIT_US[epoch_unit(value) if unit == "auto" else unit]
        if isinstance(value, int):
            # Nanoseconds: whole microseconds, rounded down.
            us = value * int(scale) if scale >= 1 else value // 1000
        else:
            try:
                us = round(value * scale)
            except OverflowError:  # 1e305 seconds: infinite microseconds
                raise BadTime(f"bad time {value!r}: out of range") from None
    if not MIN_US <= us <= MAX_US:
        raise BadTime(f"bad time {value!r}: out of range")
    return us


_MINUTE_TEXT: dict[int, str] = {}
_SECOND_TEXT: dict[int, str] = {}
_SECONDS = [f"{i:02d}" for i in range(60)]
_MILLIS = [f".{i:03d}000Z" for i in range(1000)]


def format_time(us: int) -> str:
    """RFC 3339 UTC text for microseconds since the epoch (fraction only when there is one).

    >>> format_time(1_500_000), format_time(0), format_time(-1)
    ('1970-01-01T00:00:01.500000Z', '1970-01-01T00:00:00Z', '1969-12-31T23:59:59.999999Z')
    """
    seconds, frac = divmod(us, 1_000_000)
    prefix = _SECOND_TEXT.get(seconds)
    if prefix is None:
        prefix = _second_text(seconds)
    if frac:
        if frac % 1000:
            return prefix + "." + str(frac + 1_000_000)[1:] + "Z"
        return prefix + _MILLIS[frac // 1000]
    return prefix + "Z"


def _second_text(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` for epoch seconds, from caches of minutes and seconds."""
    if len(_SECOND_TEXT) > 8192:
        _SECOND_TEXT.clear()
        _MINUTE_TEXT.clear()
    minute, second = divmod(seconds, 60)
    prefix = _MINUTE_TEXT.get(minute)
    if prefix is None:
        prefix = _MINUTE_TEXT[minute] = (EPOCH + timedelta(minutes=minute)).isoformat()[:17]
    text = _SECOND_TEXT[seconds] = prefix + _SECONDS[second]
    return text
