"""The two cores behind one interface: which one runs, and a shard of each.

The per-event work (decoding JSON lines, sessionizing, per-search and session records)
is done by the **native core**, the Rust extension ``search_sessions_native`` (the
``native/`` crate), where it is installed, and otherwise by this package's **Python
core** (:mod:`.events`, :mod:`.sessions`, :mod:`.searches`), which is its executable
reference: both give the same bytes. ``SEARCH_SESSIONS_CORE=python`` picks the Python
core; ``native`` insists on the native one (an error where it is not installed).

Python hands the native core blocks, never events: a block of lines to decode (each
line it is not sure of goes back to :meth:`EventDecoder.decode`, which gives the
dead-letter reason), packed blocks of events for a shard, and encoded lines back.

>>> core_name() in ("native", "python")
True
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import msgspec

from .events import Event, EventDecoder, pack_events, unpack_events
from .formats import CsvDecoder
from .rollups import DimensionAgg, QueryAgg, WindowAgg, WindowKey, aggregate
from .schema import SearchRecord
from .searches import Rules, render
from .sessions import EmittedSession, Sessionizer

NATIVE: Any
# The native core allocates with mimalloc (about a fifth faster than glibc's malloc for
# its many small strings); committing its arenas as they fill, not all at once, and
# giving freed pages back at once, not 10 ms later, keep its peak memory at or under
# the Python core's (the blocks' large vectors are used again, not freed: see
# native/src/pool.rs). Read when the module loads; a set value is kept.
os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
try:  # the extension module built from native/ by `make setup`, where cargo is
    import search_sessions_native as NATIVE  # type: ignore[no-redef]
except ImportError:  # pragma: no cover - depends on the machine
    NATIVE = None

__all__ = [
    "NATIVE",
    "CoreError",
    "Emission",
    "NativeShard",
    "PythonShard",
    "ShardCore",
    "block_events",
    "core_name",
    "is_panic",
    "native_block_decoder",
    "pack_for_shard",
    "times_reader",
]

ENV: Final = "SEARCH_SESSIONS_CORE"

_encode_lines = msgspec.json.Encoder().encode_lines


class CoreError(ValueError):
    """``SEARCH_SESSIONS_CORE`` names a core that is not there, or no core."""


def core_name() -> str:
    """The core in use: ``native`` or ``python`` (see the module's doc)."""
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted == "python":
        return "python"
    if wanted == "native":
        if NATIVE is None:
            raise CoreError(
                f"{ENV}=native, but the native core is not installed: "
                "install Rust's cargo (https://rustup.rs) and run `make setup`"
            )
        return "native"
    if wanted:
        raise CoreError(f"{ENV}={wanted!r}: not a core (native or python)")
    return "python" if NATIVE is None else "native"


def is_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a panic of the native core (a bug there: PyO3 turns it into
    ``PanicException``, which the caller reports naming the input)."""
    return type(exc).__name__ == "PanicException"


def rollup_partials(emitted: Emission, lengths: dict[str, int]) -> dict[WindowKey, WindowAgg]:
    """A shard's partial rollup sums of what it emitted, per ``(length, window start)``:
    the Python core's records summed by :func:`~.rollups.aggregate`, the native core's
    search lines read and summed in Rust, to the same sums (a non-finite conversion value,
    written as ``null``, counts as NaN: its window's sum stays non-finite)."""
    if emitted.records:
        return aggregate(emitted.records, lengths, emitted.times)
    if not emitted.times or NATIVE is None:
        return {}
    names = list(lengths)
    partials = NATIVE.rollup_partials(emitted.searches, emitted.times, list(lengths.values()))
    return {(names[i], start): _window_agg(fields) for i, start, fields in partials}


def _window_agg(fields: tuple[Any, ...]) -> WindowAgg:
    """A :class:`~.rollups.WindowAgg` of the native core's fields (in its order)."""
    counts, rest = fields[:9], fields[9:]
    searches, clicked, clicks, rank_sum, ranks, zero, abandoned, reformulated, long_click = counts
    rr_ranks, rr_n, ttfc, queries, conversions, converted, values, short, dims = rest
    return WindowAgg(
        searches=searches,
        clicked=clicked,
        clicks=clicks,
        rank_sum=rank_sum,
        ranks=ranks,
        zero=zero,
        abandoned=abandoned,
        reformulated=reformulated,
        long_click=long_click,
        rr_ranks=dict(rr_ranks),
        rr_n=rr_n,
        ttfc=ttfc,
        queries={query: QueryAgg(*q) for query, q in queries},
        conversions=conversions,
        converted=converted,
        values=values,
        short_click=short,
        dimensions={key: _dimension_agg(d) for key, d in dims},
    )


def _dimension_agg(d: tuple[Any, ...]) -> DimensionAgg:
    searches, clicked, converted, values, zero, abandoned, rank_sum, ranks, rr_ranks, rr_n = d
    return DimensionAgg(
        searches=searches,
        clicked=clicked,
        converted=converted,
        values=values,
        zero=zero,
        abandoned=abandoned,
        rank_sum=rank_sum,
        ranks=ranks,
        rr_ranks=dict(rr_ranks),
        rr_n=rr_n,
    )


def native_block_decoder(decoder: EventDecoder) -> Any | None:
    """The native core's block decoder for a JSON Lines, CSV or TSV decoder (``None``
    for the other layouts' decoders, or with the Python core). Its ``decode_block`` is
    :func:`~.events.decode_block` with each shard's events packed."""
    if NATIVE is None or core_name() != "native":
        return None
    columns = None
    if type(decoder) is CsvDecoder:
        columns = (decoder.delimiter, decoder.header_line, decoder.names)
    elif type(decoder) is not EventDecoder:
        return None
    layout = decoder.layout
    return NATIVE.Decoder(
        decoder.part,
        list(layout.fields),
        list(layout.types),
        layout.time_unit,
        list(layout.dimensions),
        layout.currency,
        decoder.decode,
        columns,
    )


def times_reader(decoder: EventDecoder) -> Callable[[list[bytes]], list[int | None]]:
    """``decoder.times`` (the pre-scan of ``--order auto``), by the native core for JSON
    Lines."""
    native = native_block_decoder(decoder)
    return decoder.times if native is None else native.times


def pack_for_shard(events: Any, native: bool) -> Any:
    """A shard's events (a list of tuples, or the native core's ``EventBlock``) as one
    block of bytes, for a shard in another process."""
    if isinstance(events, bytes) or not events:
        return events
    if native and NATIVE is not None:
        return (
            events.pack() if isinstance(events, NATIVE.EventBlock) else NATIVE.pack_events(events)
        )
    return pack_events(events)


def block_events(events: Any) -> list[Event]:
    """A shard batch's events as tuples, however they travel (a list, packed bytes of
    either core, the native core's ``EventBlock``): for tests and tools."""
    if NATIVE is not None and isinstance(events, NATIVE.EventBlock):
        return list(events.tuples())
    if isinstance(events, bytes):
        if not events:
            return []
        if events.startswith(b"\x80"):
            return unpack_events(events)
        return list(NATIVE.unpack_events(events))
    return list(events)


class Emission(NamedTuple):
    """What a shard emits at once: its search and session lines (JSON Lines), how many
    sessions, and with rollups the searches' times and (the Python core's) records: the
    native core's are summed from its lines (see :func:`rollup_partials`)."""

    searches: bytes
    sessions: bytes
    n_sessions: int
    records: list[SearchRecord]
    times: list[int] | None


_NOTHING: Final = Emission(b"", b"", 0, [], None)


class ShardCore:
    """One shard's sessionizing and records, by either core (see :func:`shard_core`).

    ``core`` is the core's own shard; its counters are read through."""

    core: Any
    counters = property(lambda self: self.core.counters)
    duplicates = property(lambda self: self.core.duplicates)
    late = property(lambda self: self.core.late)
    watermark = property(lambda self: self.core.watermark)
    all_closed = property(lambda self: self.core.all_closed)
    open_users: int

    def ingest(
        self,
        part: int,
        newest: int,
        closed: bool,
        events: list[Event] | bytes,
        maybe_late: Any,
        idle_us: int,
    ) -> list[tuple[Event, int]]:
        """``Sessionizer.ingest``: the late events, each with the watermark it missed."""
        raise NotImplementedError

    def advance(self, with_records: bool) -> Emission:
        """The sessions the watermark has made final, rendered."""
        raise NotImplementedError

    def flush(self, with_records: bool) -> Emission:
        """End of input: every pending session, rendered."""
        raise NotImplementedError

    def snapshot(self) -> bytes:
        raise NotImplementedError


def shard_core(
    n_parts: int,
    gap_us: int,
    lateness_us: int,
    max_session_us: int,
    rules: Rules,
    resume: bytes | None,
) -> ShardCore:
    """A shard of the core in use, new or from its snapshot."""
    if core_name() == "native":
        return NativeShard(n_parts, gap_us, lateness_us, max_session_us, rules, resume)
    return PythonShard(n_parts, gap_us, lateness_us, max_session_us, rules, resume)


class PythonShard(ShardCore):
    """The Python core's shard: a :class:`Sessionizer`, its snapshot a pickle."""

    def __init__(
        self,
        n_parts: int,
        gap_us: int,
        lateness_us: int,
        max_session_us: int,
        rules: Rules,
        resume: bytes | None,
    ) -> None:
        if resume and not resume.startswith(b"\x80"):
            raise CoreError(
                "the recovery store holds the native core's shard state: resume with "
                f"the native core (unset {ENV}), or start again with a new --recovery-dir"
            )
        self.core: Sessionizer = (
            pickle.loads(resume)
            if resume
            else Sessionizer(n_parts, gap_us, lateness_us, max_session_us)
        )
        self.rules = rules

    open_users = property(lambda self: len(self.core.pending))

    def ingest(
        self,
        part: int,
        newest: int,
        closed: bool,
        events: list[Event] | bytes,
        maybe_late: Any,
        idle_us: int,
    ) -> list[tuple[Event, int]]:
        evs = unpack_events(events) if isinstance(events, bytes) else events
        return self.core.ingest(part, newest, closed, evs, maybe_late, idle_us)

    def advance(self, with_records: bool) -> Emission:
        return self._render(self.core.advance(), with_records)

    def flush(self, with_records: bool) -> Emission:
        return self._render(self.core.flush(), with_records)

    def _render(self, emitted: list[EmittedSession], with_records: bool) -> Emission:
        if not emitted:
            return _NOTHING
        times: list[int] | None = [] if with_records else None
        sessions, searches = render(emitted, self.rules, self.core.counters, times)
        return Emission(
            _encode_lines(searches) if searches else b"",
            _encode_lines(sessions),
            len(sessions),
            searches,
            times,
        )

    def snapshot(self) -> bytes:
        return pickle.dumps(self.core, protocol=pickle.HIGHEST_PROTOCOL)


class NativeShard(ShardCore):
    """The native core's shard; its snapshot is its own bytes."""

    def __init__(
        self,
        n_parts: int,
        gap_us: int,
        lateness_us: int,
        max_session_us: int,
        rules: Rules,
        resume: bytes | None,
    ) -> None:
        if resume and resume.startswith(b"\x80"):
            raise CoreError(
                "the recovery store holds the Python core's shard state: resume with "
                f"{ENV}=python, or start again with a new --recovery-dir"
            )
        self.core = NATIVE.Shard(
            n_parts,
            gap_us,
            lateness_us,
            max_session_us,
            rules.long_click_us,
            rules.short_click_us,
            rules.typeahead_us,
            list(rules.dimensions),
            resume or None,
        )

    open_users = property(lambda self: self.core.open_users)

    def ingest(
        self,
        part: int,
        newest: int,
        closed: bool,
        events: Any,
        maybe_late: Any,
        idle_us: int,
    ) -> list[tuple[Event, int]]:
        late: list[tuple[Event, int]] = self.core.ingest(
            part, newest, closed, events, maybe_late, idle_us
        )
        return late

    def advance(self, with_records: bool) -> Emission:
        return self._emission(self.core.advance(with_records))

    def flush(self, with_records: bool) -> Emission:
        return self._emission(self.core.flush(with_records))

    @staticmethod
    def _emission(got: tuple[bytes, bytes, list[int] | None, int]) -> Emission:
        searches, sessions, times, n = got
        if not n:
            return _NOTHING
        return Emission(searches, sessions, n, [], times)

    def snapshot(self) -> bytes:
        data: bytes = self.core.snapshot()
        return data
