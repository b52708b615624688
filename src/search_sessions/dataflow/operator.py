"""``sessionize``: sessions and per-search metrics as one operator in your own flow.

For people who write their own Bytewax flows: any source, ``sessionize``, any
sinks. Inside it the command's own pieces do the work, so the answers are the
command's: items are decoded by :class:`~search_sessions.core.events.EventDecoder`
and sessionized per shard by a :class:`~search_sessions.core.sessions.Sessionizer`
(one shard per worker, every user on one shard, as in :mod:`.shard`), with the
global watermark of SPEC 3.

::

    up ─► by_worker ─► decode ─┬─► shards ─► searches, sessions, late
                               └─► errors

**Partitions.** The watermark needs every input partition's progress. Inside
a flow the source's partitions are unknown, so each *worker* is one partition:
the items that reach ``sessionize`` on worker *i*, in the order they reach it,
are partition *i*. ``by_worker`` runs where the upstream items are (no
exchange) and learns its worker's index from a stateless input step
(``workers``) built on every worker; ``decode``, a stateful step keyed by that
worker's shard key (which Bytewax routes back to the same worker), numbers the
worker's items (``seq``, from 1), decodes them, and sends every shard its events
and the worker's newest event time. Both keep their state in snapshots.
The watermark is the minimum over workers of their newest event time, minus
``lateness``.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, cast

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream, operator
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.operators import StatefulBatchLogic

from ..config import Config
from ..connectors.base import ShardBatch
from ..core.events import Event, EventDecoder, decode_block, event_to_json
from ..core.schema import OutputKind
from ..core.searches import render
from ..core.sessions import EmittedSession
from ..core.time import NEVER, format_time
from ..errors import StrictError
from .routing import shard_keys
from .shard import ingest, sessionizer

__all__ = ["SessionizeOut", "sessionize"]

ERRORS: Final = "errors"
"""The kind of an invalid item's record."""

_DEFAULT_CONFIG: Final = Config(inputs=("<stream>",))
_encode = msgspec.json.encode
_asdict = msgspec.structs.asdict
_keys = cache(shard_keys)

OutItem = tuple[str, Any]
"""``(kind, record)``: an :class:`OutputKind` or :data:`ERRORS`, and a record as a dict."""

Stamped = tuple[int, list[Any]]
"""``(worker, items)``: a batch of upstream items and the worker they reached."""
DecodeState = tuple[int, int, int]
"""``(worker, seq, newest_us)``: how many items that worker passed on, its newest event time."""


@dataclass(frozen=True)
class SessionizeOut:
    """The streams :func:`sessionize` returns, each of plain dicts (JSON-ready).

    ``searches`` and ``sessions`` hold the records of SPEC 4 with their fields in
    output order. ``late`` and ``errors`` hold ``{"source", "reason", "record"}``:
    ``source`` is ``worker-I:SEQ``, the SEQ-th item (from 1) that reached the
    operator on worker I; ``record`` is the late event normalised, or the invalid
    item as given (bytes as text).
    """

    searches: Stream[dict[str, Any]]
    sessions: Stream[dict[str, Any]]
    late: Stream[dict[str, Any]]
    errors: Stream[dict[str, Any]]


@operator
def sessionize(step_id: str, up: Stream[Any], config: Config | None = None) -> SessionizeOut:
    """Cut a stream of search events into sessions and per-search records.

    Items are events as JSON objects (SPEC 1): dicts (``time`` may be a
    ``datetime``), JSON text (``str`` or ``bytes``, a blank line is skipped), or
    the structs of :mod:`search_sessions.core.schema`. Anything else, or an
    invalid event, comes out on ``errors`` with a reason (``config.strict``
    raises :class:`~search_sessions.errors.StrictError` instead). From
    ``config`` only the session rules (``gap``, ``lateness``, ``max_session``,
    ``long_click``) and ``strict`` are read.

    Contract. Partition *i* is what reaches the operator on worker *i*, in
    arrival order. Events sort by (time, worker, arrival): ties in event time
    keep arrival order on one worker and go by worker index across workers.
    An event is late, and goes to ``late``, when it is older than the watermark
    (the minimum over workers of their newest event time, minus ``lateness``)
    as it arrives. So when each worker's items are out of order by at most
    ``lateness``, nothing is late and the records equal the batch answer for
    all the items (with ids the command gives), for any number of workers;
    every open session is emitted at end of input. A worker that has seen no
    item holds the watermark back, so sessions then come out at end of input:
    use a source with a partition per worker (each in time order, partitions
    on one worker within ``lateness`` of each other) or ``op.redistribute`` a
    single ordered partition. State (per worker and per shard) is snapshotted
    for Bytewax recovery; resume with the same number of workers.

    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSink, TestingSource, run_main
    >>> flow = Dataflow("doc")
    >>> events = op.input("in", flow, TestingSource([
    ...     {"type": "search", "user": "u", "time": 0, "query": "dogs"},
    ...     {"type": "click", "user": "u", "time": 2, "item": "rover"},
    ...     {"type": "click", "user": "u"},
    ... ]))
    >>> out = sessionize("sessionize", events, None)
    >>> searches, errors = [], []
    >>> op.output("searches", out.searches, TestingSink(searches))
    >>> op.output("errors", out.errors, TestingSink(errors))
    >>> run_main(flow)
    >>> [(s["query"], s["ctr"]) for s in searches], [e["reason"] for e in errors]
    ([('dogs', 1.0)], ['Object missing required field `time`'])
    """
    cfg = config if config is not None else _DEFAULT_CONFIG
    workers = _Workers()
    op.input("workers", up.flow(), workers)
    stamped = op.flat_map_batch("by_worker", up, workers.stamp)

    def build_decoder(resume: DecodeState | None) -> _DecodeLogic:
        return _DecodeLogic(cfg, workers.here()[1], resume)

    decoded = op.stateful_batch("decode", stamped, build_decoder)
    split = op.branch("split_errors", op.map("unkey", decoded, _value), _is_error)

    def build_shard(resume: bytes | None) -> _ShardLogic:
        return _ShardLogic(cfg, workers.here()[1], resume)

    to_shards = cast("Stream[tuple[str, ShardBatch]]", split.falses)
    shards = op.map("records", op.stateful_batch("shards", to_shards, build_shard), _value)
    return SessionizeOut(
        searches=_only("searches", shards, OutputKind.SEARCHES),
        sessions=_only("sessions", shards, OutputKind.SESSIONS),
        late=_only("late", shards, OutputKind.LATE),
        errors=op.map("errors", split.trues, _value),
    )


def _value(item: tuple[str, Any]) -> Any:
    return item[1]


def _is_error(item: tuple[str, Any]) -> bool:
    return item[0] == ERRORS


def _only(step_id: str, items: Stream[OutItem], kind: str) -> Stream[dict[str, Any]]:
    def pick(item: OutItem) -> dict[str, Any] | None:
        return item[1] if item[0] == kind else None

    return op.filter_map(step_id, items, pick)


class _NoItems(StatelessSourcePartition[Any]):
    def next_batch(self) -> list[Any]:
        raise StopIteration()


class _Workers(DynamicSource[Any]):
    """Learns each worker's index and the worker count, and tells the worker's thread.

    Bytewax builds a dynamic source once on each worker, on that worker's thread,
    before any item flows; it emits nothing and ends at once. Keyed by thread id:
    each worker is a thread, and ``threading.local`` does not survive between
    Bytewax's calls into Python from a worker thread.
    """

    def __init__(self) -> None:
        self.where: dict[int, tuple[int, int]] = {}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NoItems:
        self.where[threading.get_ident()] = (worker_index, worker_count)
        return _NoItems()

    def here(self) -> tuple[int, int]:
        """``(worker_index, worker_count)`` of the calling worker."""
        try:
            return self.where[threading.get_ident()]
        except KeyError:
            raise RuntimeError("sessionize: not on a worker of the flow it is in") from None

    def stamp(self, batch: list[Any]) -> list[tuple[str, Stamped]]:
        """The batch keyed by this worker's shard key, which Bytewax routes back to it."""
        index, count = self.here()
        return [(_keys(count)[index], (index, batch))]


class _DecodeLogic(StatefulBatchLogic[Stamped, tuple[str, Any], DecodeState]):
    """One upstream worker (partition): numbers its items, decodes them, and sends
    each shard its events and the worker's newest event time."""

    def __init__(self, cfg: Config, n_workers: int, resume: DecodeState | None) -> None:
        self.keys = _keys(n_workers)
        self.lateness_us = cfg.lateness_us
        self.strict = cfg.strict
        self.layout = cfg.layout
        self.part, self.seq, self.newest = resume or (-1, 0, NEVER)
        self.decoder: EventDecoder | None = None

    def on_batch(self, values: list[Stamped]) -> tuple[Iterable[tuple[str, Any]], bool]:
        part = self.part = values[0][0]
        if self.decoder is None:
            self.decoder = EventDecoder(part, self.layout)
        items = [item for _, batch in values for item in batch]
        first = self.seq
        lines, seqs, out = self._lines(items)
        per_shard, maybe_late, bad, newest, _ = decode_block(
            self.decoder, lines, first, self.newest, self.lateness_us, len(self.keys), seqs
        )
        out += [self._error(seq, items[seq - first - 1], reason) for seq, _, reason in bad]
        moved = newest != self.newest
        self.seq = first + len(items)
        self.newest = newest
        out += [
            (key, (part, newest, False, per_shard[i], maybe_late[i], -1, i))
            for i, key in enumerate(self.keys)
            if moved or per_shard[i] or maybe_late[i]
        ]
        return out, StatefulBatchLogic.RETAIN

    def _lines(self, items: list[Any]) -> tuple[list[bytes], list[int], list[tuple[str, Any]]]:
        """The items as JSON lines with their positions, and errors for the rest."""
        lines: list[bytes] = []
        seqs: list[int] = []
        errors: list[tuple[str, Any]] = []
        for seq, item in enumerate(items, self.seq + 1):
            line = _as_line(item)
            if line is None:
                continue
            if isinstance(line, str):
                errors.append(self._error(seq, item, line))
            else:
                lines.append(line)
                seqs.append(seq)
        return lines, seqs, errors

    def _error(self, seq: int, item: Any, reason: str) -> tuple[str, dict[str, Any]]:
        source = f"worker-{self.part}:{seq}"
        if self.strict:
            raise StrictError(f"invalid record at {source}: {reason}")
        if isinstance(item, bytes):
            item = item.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
        return (ERRORS, {"source": source, "reason": reason, "record": item})

    def snapshot(self) -> DecodeState:
        return (self.part, self.seq, self.newest)


def _as_line(item: Any) -> bytes | str | None:
    """The item as a line of JSON, ``None`` if blank, or why it cannot be one."""
    if isinstance(item, bytes):
        return item if item.strip() else None
    if isinstance(item, str):
        if not item.strip():
            return None
        try:
            return item.encode()
        except UnicodeEncodeError as exc:
            return f"not UTF-8 ({exc.reason} at character {exc.start})"
    if isinstance(item, dict | msgspec.Struct):
        try:
            return _encode(item)
        except (TypeError, ValueError) as exc:
            return f"not JSON: {exc}"
    return f"not a JSON object: got {type(item).__name__}"


class _ShardLogic(StatefulBatchLogic[ShardBatch, OutItem, bytes]):
    """One shard's :class:`Sessionizer`, as the command's shards run it, with records
    as dicts; its snapshot is the pickled Sessionizer, taken at every epoch (the
    user's run, not the config, decides whether Bytewax keeps it)."""

    def __init__(self, cfg: Config, n_parts: int, resume: bytes | None) -> None:
        self.rules = cfg.rules
        self.labels = [f"worker-{i}" for i in range(n_parts)]
        self.core = sessionizer(cfg, n_parts, resume)

    def on_batch(self, values: list[ShardBatch]) -> tuple[Iterable[OutItem], bool]:
        late = ingest(self.core, values)
        return self._records(self.core.advance(), late), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[OutItem], bool]:
        return self._records(self.core.flush(), []), StatefulBatchLogic.DISCARD

    def snapshot(self) -> bytes:
        return pickle.dumps(self.core, protocol=pickle.HIGHEST_PROTOCOL)

    def _records(
        self, emitted: list[EmittedSession], late: list[tuple[Event, int]]
    ) -> list[OutItem]:
        out: list[OutItem] = []
        if emitted:
            sessions, searches = render(emitted, self.rules, self.core.counters)
            out += [(OutputKind.SEARCHES, _asdict(r)) for r in searches]
            out += [(OutputKind.SESSIONS, _asdict(r)) for r in sessions]
        labels = self.labels
        out += [
            (
                OutputKind.LATE,
                {
                    "source": f"{labels[ev[1]]}:{ev[2]}",
                    "reason": f"late: event time {format_time(ev[0])} is older than "
                    f"the watermark {format_time(wm)}",
                    "record": event_to_json(ev, self.rules.dimensions),
                },
            )
            for ev, wm in late
        ]
        return out
