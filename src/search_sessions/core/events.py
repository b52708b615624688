"""Input events: decoded once, at the edge, into compact tuples.

A line is decoded by msgspec into a typed struct chosen by its ``type`` tag
(``search`` or the tutorial's ``Search``), then flattened into an
:data:`Event` tuple that the rest of the core works on::

    (time_us, part, seq, kind, user, payload, rank, search_id[, dimensions])

``time_us`` is UTC microseconds since the epoch; ``part`` and ``seq`` are the
input partition's index and the line number, which break ties in event time
and name the event's source. Tuples sort by ``(time_us, part, seq)``, which is
unique, so sorting never compares payloads. ``dimensions``, the values of the
``--dimension`` fields (a tuple, ``None`` for each one missing), is there only when
the layout names dimensions.

>>> decoder = EventDecoder(part=0)
>>> decoder.decode(b'{"type": "search", "user": 7, "time": 0, "query": "dogs"}', seq=1)
(0, 0, 1, 1, '7', 'dogs', None, None)
>>> decoder.decode(b'{"type": "search"}', seq=2)
'Object missing required field `user`'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from operator import attrgetter
from pickle import HIGHEST_PROTOCOL, dumps, loads
from typing import Any, Final
from zlib import crc32

import msgspec

from .layout import KIND_OF_TYPE, InputLayout, event_types, time_type
from .schema import CLICK, CONVERSION, CONVERSION_ALIASES, KIND_NAMES, RESULTS, SEARCH
from .time import EPOCH, MAX_US, MIN_US, NEVER, BadTime, format_time, parse_time

__all__ = [
    "Block",
    "Event",
    "EventDecoder",
    "OrderScan",
    "ReasonedDecoder",
    "decode_block",
    "event_to_json",
    "pack_events",
    "time_values",
    "unpack_events",
]

Event = tuple[int, int, int, int, str, Any, int | None, str | None]
"""``(time_us, part, seq, kind, user, payload, rank, search_id)``.

``payload`` is the query (search), the tuple of items (results), the clicked
item (click), ``(item, value, kind)`` (conversion) or ``None``; ``rank`` is a
click's given rank. A ninth item, the dimension values, follows when the layout
has dimensions.
"""


PLAIN: Final = InputLayout()
"""Our own field and type names, epoch numbers read by size."""


BOM: Final = b"\xef\xbb\xbf"
"""UTF-8's byte-order mark: skipped at the start of an input."""


class EventDecoder:
    """Decodes raw lines of one input partition into :data:`Event` tuples.

    :meth:`decode` returns the event, or a one-line reason when the record is
    invalid; it never raises on input. ``layout`` names the input's fields and
    types when they are not ours (see :mod:`search_sessions.core.layout`).
    """

    __slots__ = (
        "_decode",
        "_decode_time",
        "_dims",
        "_tag_at",
        "currency",
        "layout",
        "part",
        "unit",
    )

    def __init__(self, part: int, layout: InputLayout = PLAIN) -> None:
        self.part = part
        self.layout = layout
        self.unit = layout.time_unit
        self.currency = None if layout.currency is None else layout.currency.upper()
        self._decode = msgspec.json.Decoder(event_types(layout)).decode
        self._decode_time = msgspec.json.Decoder(time_type(layout)).decode
        self._tag_at = f"`$.{layout.name_of('type')}`"
        names = [f"dim_{i}" for i in range(len(layout.dimensions))]
        self._dims: Callable[[Any], tuple[Any, ...]] | None = (
            None
            if not names
            else attrgetter(*names)
            if len(names) > 1
            else (lambda ev, get=attrgetter(names[0]): (get(ev),))
        )

    def decode(self, raw: bytes, seq: int) -> Event | str | list[Event]:
        """The event on the line, or why there is none (other formats' decoders may
        return a list: the several events, or none, a line holds)."""
        try:
            ev = self._decode(raw)
        except (msgspec.DecodeError, ValueError) as exc:
            if seq == 1 and raw.startswith(BOM):
                # A file's byte-order mark (Windows tools write one): not part of the event.
                return self.decode(raw[len(BOM) :], seq)
            return _reason(exc, raw, self._tag_at)
        return self.event(ev, seq)

    def times(self, lines: list[bytes]) -> list[int | None]:
        """The event time of each line, ``None`` for a line without one, reading only the
        time field (about a third of the cost of :meth:`decode`): the pre-scan of
        ``--order auto``. Every line :meth:`decode` reads as an event has the same time
        here; lines it refuses for other reasons have theirs too.

        >>> EventDecoder(0).times([b'{"time": "1970-01-01T00:00:01Z", "x": 1}\\n', b"{}", b"{"])
        [1000000, None, None]
        """
        decode = self._decode_time
        values: list[Any] = []
        append = values.append
        for line in lines:
            try:
                append(decode(line).time)
            except (msgspec.DecodeError, ValueError):
                try:  # a byte-order mark, as in decode (only a first line has one)
                    append(decode(line.removeprefix(BOM)).time if line.startswith(BOM) else None)
                except (msgspec.DecodeError, ValueError):
                    append(None)
        return time_values(values, self.unit)

    def event(self, ev: Any, seq: int) -> Event | str:
        """The event tuple of a decoded struct (see :func:`event_types`), or why not."""
        tv = ev.time
        # The same reading as time_values (inlined: this is the hot path).
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
        out: Event
        if kind == SEARCH:
            out = (t, self.part, seq, kind, user, ev.query, None, ev.search_id)
        elif kind == RESULTS:
            out = (t, self.part, seq, kind, user, tuple(ev.items), None, ev.search_id)
        elif kind == CLICK:
            out = (t, self.part, seq, kind, user, ev.item, ev.rank, ev.search_id)
        elif kind == CONVERSION:
            conv = self._conversion(ev)
            if conv.__class__ is str:
                return conv
            out = (t, self.part, seq, kind, user, conv, None, ev.search_id)
        else:
            out = (t, self.part, seq, kind, user, None, None, None)
        if self._dims is not None:
            return (*out, self._dims(ev))
        return out

    def _conversion(self, ev: Any) -> tuple[str | None, float | None, str | None] | str:
        """A conversion's ``(item, value, kind)``, or why it is refused: a currency other
        than ``--currency``, or a value that is not finite."""
        value = ev.value
        if value is not None and (value != value or value in (_INF, -_INF)):
            return f"conversion value {value!r} is not a finite number"
        currency = ev.currency
        if self.currency is not None and currency is not None and currency.upper() != self.currency:
            return f"conversion in currency {currency!r}, not {self.currency} (--currency)"
        tag = ev.__struct_config__.tag
        kind = tag if tag in CONVERSION_ALIASES else ev.kind
        return (ev.item, value, kind)


_fromisoformat = datetime.fromisoformat


class ReasonedDecoder(EventDecoder):
    """An :class:`EventDecoder` that first gives the reasons already found for some
    positions (``reasons``, taken once each: a Kafka message that cannot be read, a TREC
    element that is no event): a block with such items is decoded by it, the others by
    a plain decoder (the native core's, where it is in use), which costs nothing per item."""

    __slots__ = ("reasons",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reasons: dict[int, str] = {}

    def decode(self, raw: bytes, seq: int) -> Event | str | list[Event]:
        reason = self.reasons.pop(seq, None)
        return reason if reason is not None else super().decode(raw, seq)


_ONE_US: Final = timedelta(microseconds=1)
_INF: Final = float("inf")


def time_values(values: list[Any], unit: str) -> list[int | None]:
    """Event times in µs of decoded ``time`` field values, each read as
    :meth:`EventDecoder.event` reads one (RFC 3339 / ISO 8601 text, or an epoch number
    in ``unit``); ``None`` for a missing value or one that is not a time.

    >>> time_values(["1970-01-01T00:00:01+01:00", 2, "3000", None, "soon", True], "ms")
    [-3599000000, 2000, 3000000, None, None, None]
    """
    out: list[int | None] = []
    append = out.append
    for tv in values:
        try:
            if tv.__class__ is not str:
                raise ValueError
            t = (_fromisoformat(tv) - EPOCH) // _ONE_US
            if t < MIN_US or t > MAX_US:
                raise ValueError
        except (ValueError, TypeError, OverflowError):
            if not isinstance(tv, str | int | float):  # (a list, say)
                append(None)
                continue
            try:
                t = parse_time(tv, unit)
            except BadTime:
                append(None)
                continue
        append(t)
    return out


class OrderScan:
    """Finds where an input goes out of order: its first event older than an earlier
    one by more than ``lateness_us`` (one :func:`decode_block` would set apart as maybe
    late), given the input's event times in order, block by block.

    >>> scan = OrderScan(lateness_us=10)
    >>> scan.add([100, None, 95, 120]), scan.add([109, 150]), scan.late
    (False, True, (5, 11))
    """

    def __init__(self, lateness_us: int) -> None:
        self.lateness_us = lateness_us
        self.newest = NEVER
        self.lines = 0
        self.late: tuple[int, int] | None = None
        """``(line, how much older)`` of the first such event, once found."""

    def add(self, times: list[int | None], lines: Iterable[int] | None = None) -> bool:
        """The times of the input's next lines (``None``: no event), numbered on from the
        last block's, or by ``lines``; whether the input is now known to be out of order."""
        if self.late is not None:
            return True
        newest, lateness = self.newest, self.lateness_us
        numbers = range(self.lines + 1, self.lines + 1 + len(times)) if lines is None else lines
        for t, line in zip(times, numbers, strict=True):
            if t is None:
                continue
            if t > newest:
                newest = t
            elif t < newest - lateness:
                self.late = (line, newest - t)
                break
        self.newest = newest
        self.lines += len(times)
        return self.late is not None


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


def pack_events(events: list[Event]) -> bytes:
    """Events as one blob, for a shard in another process or a sorted run on disk.

    Pickled: as cheap to send and rebuild as msgpack with a typed decoder (about
    0.8 us per event), and it keeps every slot's type (a conversion's payload, the
    optional dimensions) without a schema per shape.

    >>> evs = [(0, 0, 1, 2, "u", ("a", "b"), None, "s1"),
    ...        (1, 0, 2, 5, "u", ("a", 2.5, None), None, None, ("web",))]
    >>> unpack_events(pack_events(evs)) == evs
    True
    """
    return dumps(events, HIGHEST_PROTOCOL)


def unpack_events(data: bytes) -> list[Event]:
    """The events :func:`pack_events` packed, equal to the originals."""
    events: list[Event] = loads(data)
    return events


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


def event_to_json(ev: Event, dimensions: tuple[str, ...] = ()) -> dict[str, Any]:
    """The event as a normalised input record (used for the late output);
    ``dimensions`` names the values of a ninth slot."""
    t, _part, _seq, kind, user, payload, rank, sid = ev[:8]
    out: dict[str, Any] = {"type": KIND_NAMES[kind], "user": user, "time": format_time(t)}
    if kind == SEARCH:
        out["query"] = payload
    elif kind == RESULTS:
        out["items"] = list(payload)
    elif kind == CLICK:
        out["item"] = payload
        if rank is not None:
            out["rank"] = rank
    elif kind == CONVERSION:
        for name, v in zip(("item", "value", "kind"), payload, strict=True):
            if v is not None:
                out[name] = v
    if sid is not None:
        out["search_id"] = sid
    if len(ev) > 8:
        for name, v in zip(dimensions, ev[8], strict=False):
            if v is not None:
                out[name] = v
    return out
