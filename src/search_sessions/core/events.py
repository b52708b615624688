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

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, Union
from zlib import crc32

import msgspec

from .layout import KIND_OF_TYPE, InputLayout, event_types
from .schema import CLICK, KIND_NAMES, RESULTS, SEARCH
from .time import EPOCH, MAX_US, MIN_US, BadTime, format_time, parse_time

__all__ = [
    "Block",
    "Event",
    "EventDecoder",
    "decode_block",
    "event_to_json",
    "pack_events",
    "unpack_events",
]

Event = tuple[int, int, int, int, str, Any, int | None, str | None]
"""``(time_us, part, seq, kind, user, payload, rank, search_id)``.

``payload`` is the query (search), the tuple of items (results), the clicked
item (click) or ``None``; ``rank`` is a click's given rank.
"""


PLAIN: Final = InputLayout()
"""Our own field and type names, epoch numbers read by size."""


class EventDecoder:
    """Decodes raw lines of one input partition into :data:`Event` tuples.

    :meth:`decode` returns the event, or a one-line reason when the record is
    invalid; it never raises on input. ``layout`` names the input's fields and
    types when they are not ours (see :mod:`search_sessions.core.layout`).
    """

    __slots__ = ("_decode", "_tag_at", "layout", "part", "unit")

    def __init__(self, part: int, layout: InputLayout = PLAIN) -> None:
        self.part = part
        self.layout = layout
        self.unit = layout.time_unit
        self._decode = msgspec.json.Decoder(event_types(layout)).decode
        self._tag_at = f"`$.{layout.name_of('type')}`"

    def decode(self, raw: bytes, seq: int) -> Event | str | list[Event]:
        """The event on the line, or why there is none (other formats' decoders may
        return a list: the several events, or none, a line holds)."""
        try:
            ev = self._decode(raw)
        except (msgspec.DecodeError, ValueError) as exc:
            return _reason(exc, raw, self._tag_at)
        return self.event(ev, seq)

    def event(self, ev: Any, seq: int) -> Event | str:
        """The event tuple of a decoded struct (see :func:`event_types`), or why not."""
        tv = ev.time
        try:
            if tv.__class__ is not str:
                raise ValueError
            # An aware datetime minus EPOCH is fast; a naive one raises TypeError.
            t = (_fromisoformat(tv) - EPOCH) // _ONE_US
            if t < MIN_US or t > MAX_US:
                raise ValueError
        except (ValueError, TypeError, OverflowError):
            try:
                t = parse_time(tv, self.unit)
            except BadTime as exc:
                return str(exc)
        user = ev.user
        if user.__class__ is not str:
            user = str(user)
        kind = KIND_OF_TYPE[ev.__class__]
        if kind == SEARCH:
            return (t, self.part, seq, kind, user, ev.query, None, ev.search_id)
        if kind == RESULTS:
            return (t, self.part, seq, kind, user, tuple(ev.items), None, ev.search_id)
        if kind == CLICK:
            return (t, self.part, seq, kind, user, ev.item, ev.rank, ev.search_id)
        return (t, self.part, seq, kind, user, None, None, None)


_fromisoformat = datetime.fromisoformat
_ONE_US: Final = timedelta(microseconds=1)


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
    decode: Callable[[bytes, int], Any] = decoder.decode  # an Event, a reason or a list
    positions = range(seq + 1, seq + 1 + len(lines)) if seqs is None else seqs
    only = per_shard[0] if n_shards == 1 else None
    for line, seq in zip(lines, positions, strict=True):
        ev = decode(line, seq)
        if ev.__class__ is not tuple:
            if ev.__class__ is list:
                # A line of several events (AOL: a search and its click), or none.
                for one in ev:
                    newest = _deal(one, newest, lateness_us, per_shard, maybe_late)
                continue
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


def _deal(
    ev: Event,
    newest: int,
    lateness_us: int,
    per_shard: list[list[Event]],
    maybe_late: list[list[tuple[Event, int]]],
) -> int:
    """Deal one event as :func:`decode_block` does; the partition's newest time after it."""
    n_shards = len(per_shard)
    t = ev[0]
    shard = crc32(ev[4].encode()) % n_shards
    if t < newest - lateness_us:
        maybe_late[shard].append((ev, newest))
        return newest
    per_shard[shard].append(ev)
    return max(newest, t)


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


def _reason(exc: Exception, raw: bytes, tag_at: str = "`$.type`") -> str:
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 ({exc.reason} at byte {exc.start} of a string)"
    if text.startswith("JSON is malformed"):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return f"not UTF-8 ({uexc.reason} at byte {uexc.start})"
        return f"not JSON: {text[len('JSON is malformed: ') :]}"
    if text.startswith("Invalid value") and tag_at in text:
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
