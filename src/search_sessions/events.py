"""Input events: decoded once, at the edge, into compact tuples.

A line is decoded by msgspec into a typed struct chosen by its ``type`` tag
(``search`` or the tutorial's ``Search``), then flattened into an
:data:`Event` tuple that the rest of the core works on::

    (time_us, part, seq, kind, user, payload, rank, search_id)

``time_us`` is UTC microseconds since the epoch; ``part`` and ``seq`` are the
input partition's index and the line number, which break ties in event time
and name the event's source. Tuples sort by ``(time_us, part, seq)``, which is
unique, so sorting never compares payloads.

>>> decoder = EventDecoder(part=0)
>>> decoder.decode(b'{"type": "search", "user": 7, "time": 0, "query": "dogs"}', seq=1)
(0, 0, 1, 1, '7', 'dogs', None, None)
>>> decoder.decode(b'{"type": "search"}', seq=2)
'Object missing required field `user`'
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, Union
from zlib import crc32

import msgspec

from .kinds import APP_CLOSE, APP_OPEN, CLICK, KIND_NAMES, RESULTS, SEARCH
from .schema import KIND_OF, AnyEvent

__all__ = [
    "APP_CLOSE",
    "APP_OPEN",
    "CLICK",
    "EPOCH",
    "KIND_NAMES",
    "RESULTS",
    "SEARCH",
    "UTC",
    "BadTime",
    "Event",
    "EventDecoder",
    "event_to_json",
    "format_time",
    "pack_events",
    "parse_time",
    "unpack_events",
]

Event = tuple[int, int, int, int, str, Any, int | None, str | None]
"""``(time_us, part, seq, kind, user, payload, rank, search_id)``.

``payload`` is the query (search), the tuple of items (results), the clicked
item (click) or ``None``; ``rank`` is a click's given rank.
"""

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_MIN_US: Final = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // _US
_MAX_US: Final = (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // _US


class BadTime(ValueError):
    pass


def parse_time(value: str | int | float) -> int:
    """UTC microseconds from an RFC 3339 / ISO 8601 string or epoch seconds.

    A string without an offset is UTC.

    >>> parse_time("1970-01-01T00:00:01.5Z"), parse_time(1.5)
    (1500000, 1500000)
    >>> parse_time("1970-01-01 02:00:01+02:00")
    1000000
    """
    if isinstance(value, str):
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
    elif isinstance(value, int):
        us = value * 1_000_000
    else:
        if value != value or value in (float("inf"), float("-inf")):
            raise BadTime(f"bad time {value!r}: not a finite number")
        us = round(value * 1_000_000)
    if not _MIN_US <= us <= _MAX_US:
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


class EventDecoder:
    """Decodes raw lines of one input partition into :data:`Event` tuples.

    :meth:`decode` returns the event, or a one-line reason when the record is
    invalid; it never raises on input.
    """

    __slots__ = ("_decode", "part")

    def __init__(self, part: int) -> None:
        self.part = part
        self._decode = msgspec.json.Decoder(AnyEvent).decode

    def decode(self, raw: bytes, seq: int) -> Event | str:
        try:
            ev = self._decode(raw)
        except (msgspec.DecodeError, ValueError) as exc:
            return _reason(exc, raw)
        tv = ev.time
        try:
            if tv.__class__ is not str:
                raise ValueError
            # An aware datetime minus EPOCH is fast; a naive one raises TypeError.
            t = (_fromisoformat(tv) - EPOCH) // _US
            if t < _MIN_US or t > _MAX_US:
                raise ValueError
        except (ValueError, TypeError, OverflowError):
            try:
                t = parse_time(tv)
            except BadTime as exc:
                return str(exc)
        user = ev.user
        if user.__class__ is not str:
            user = str(user)
        kind = KIND_OF[ev.__class__]
        if kind == SEARCH:
            return (t, self.part, seq, kind, user, ev.query, None, ev.search_id)
        if kind == RESULTS:
            return (t, self.part, seq, kind, user, tuple(ev.items), None, ev.search_id)
        if kind == CLICK:
            return (t, self.part, seq, kind, user, ev.item, ev.rank, ev.search_id)
        return (t, self.part, seq, kind, user, None, None, None)


_fromisoformat = datetime.fromisoformat


Block = tuple[
    list[list[Event]], list[list[tuple[Event, int]]], list[tuple[int, bytes, str]], int, int
]
"""What :func:`decode_block` returns: per-shard events, per-shard maybe-late events
(each with its partition's newest time before it), invalid lines as
``(line_number, line, reason)``, the partition's newest event time, and the bytes read."""


def decode_block(
    decoder: EventDecoder,
    lines: list[bytes],
    seq: int,
    newest: int,
    lateness_us: int,
    n_shards: int,
    seqs: list[int] | None = None,
) -> Block:
    """Decode a block of one partition's lines and deal its events to shards.

    ``seq`` is the number of lines before the block (or ``seqs`` gives each
    line's position, such as Kafka offsets); a user's shard is
    ``crc32(user) % n_shards``, the same in every process. An event older than
    the partition's newest time so far minus ``lateness_us`` is set apart as
    maybe late (the shards decide against the global watermark).
    """
    per_shard: list[list[Event]] = [[] for _ in range(n_shards)]
    maybe_late: list[list[tuple[Event, int]]] = [[] for _ in range(n_shards)]
    bad: list[tuple[int, bytes, str]] = []
    decode = decoder.decode
    positions = range(seq + 1, seq + 1 + len(lines)) if seqs is None else seqs
    only = per_shard[0] if n_shards == 1 else None
    for line, seq in zip(lines, positions, strict=True):
        ev = decode(line, seq)
        if isinstance(ev, str):
            # Blank lines fail to decode too; they are skipped, not invalid.
            if not line.isspace():
                bad.append((seq, line, ev))
            continue
        t = ev[0]
        if t < newest - lateness_us:
            maybe_late[crc32(ev[4].encode()) % n_shards].append((ev, newest))
            continue
        if only is not None:
            only.append(ev)
        else:
            per_shard[crc32(ev[4].encode()) % n_shards].append(ev)
        if t > newest:
            newest = t
    return per_shard, maybe_late, bad, newest, sum(map(len, lines))


_PackedEvent = tuple[
    int, int, int, int, str, Union[str, tuple[str, ...], None], Union[int, None], Union[str, None]
]
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder(list[_PackedEvent]).decode


def pack_events(events: list[Event]) -> bytes:
    """Events as one msgpack blob, for a shard in another process: about twice as
    cheap to send and rebuild as pickling the tuples.

    >>> evs = [(0, 0, 1, 2, "u", ("a", "b"), None, "s1"), (1, 0, 2, 3, "u", "a", 1, None)]
    >>> unpack_events(pack_events(evs)) == evs
    True
    """
    return _pack(events)


def unpack_events(data: bytes) -> list[Event]:
    """The events :func:`pack_events` packed, equal to the originals."""
    return _unpack(data)


def _reason(exc: Exception, raw: bytes) -> str:
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 ({exc.reason} at byte {exc.start} of a string)"
    if text.startswith("JSON is malformed"):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return f"not UTF-8 ({uexc.reason} at byte {uexc.start})"
        return f"not JSON: {text[len('JSON is malformed: ') :]}"
    if text.startswith("Invalid value") and "`$.type`" in text:
        return f"unknown event type: {text}"
    if text.startswith("Expected `object`"):
        return f"not a JSON object: {text}"
    return text


def event_to_json(ev: Event) -> dict[str, Any]:
    """The event as a normalised input record (used for the late output)."""
    t, _part, _seq, kind, user, payload, rank, sid = ev
    out: dict[str, Any] = {"type": KIND_NAMES[kind], "user": user, "time": format_time(t)}
    if kind == SEARCH:
        out["query"] = payload
    elif kind == RESULTS:
        out["items"] = list(payload)
    elif kind == CLICK:
        out["item"] = payload
        if rank is not None:
            out["rank"] = rank
    if sid is not None:
        out["search_id"] = sid
    return out
