"""The input contract: partitions that decode lines into per-shard batches.

A source partition (a file, a lane of one, standard input, a Kafka topic
partition) reads a block of lines, decodes them
(:func:`search_sessions.core.events.decode_block`) and emits for every shard one
:data:`ShardBatch`: that shard's events plus the partition's progress (its
newest event time, whether it has ended). Every shard hears from every
partition, which is how each one computes the global watermark without a
separate broadcast. Invalid records leave as dead-letter lines.

Items are ``(key, value)`` pairs: ``(shard_key, ShardBatch)``,
``(OutputKind.DEAD_LETTER, bytes)`` or ``(STATS, dict)``. A concrete partition
subclasses :class:`LinePartition` and supplies :meth:`LinePartition.read`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from bytewax.inputs import StatefulSourcePartition

from ..config import Config
from ..control import FAILURE, METRICS, STOP
from ..core.events import Event, EventDecoder, decode_block, pack_events
from ..core.schema import OutputKind, Problem
from ..core.time import NEVER
from ..errors import StrictError

STATS: Final = "stats"
"""The item key of a partition's or shard's counters (summed into the run's summary)."""

ShardBatch = tuple[int, int, bool, list[Event] | bytes, list[tuple[Event, int]], int, int]
"""``(part, newest_us, closed, events, maybe_late, idle_us, shard)``; see ``Sessionizer.ingest``.
``events`` is packed (:func:`~search_sessions.core.events.pack_events`) for a shard in another
process."""

SourceItem = tuple[str, Any]
"""``(key, value)``: a shard key and its batch, or a dead-letter block, or counters."""
PartState = tuple[int, int, int, int, int, int, bool]
"""Snapshot of a partition: ``(byte_offset, lines_read, newest_us, lines, events, invalid,
ended)``; the counters travel with it so a resumed run's summary still adds up."""

_encode = msgspec.json.encode


@dataclass(frozen=True)
class PartitionContext:
    """What every partition is built with, whatever it reads."""

    cfg: Config
    part: int
    """Its place among the source's partitions (its progress is reported under it)."""
    input_index: int
    """Its input in ``cfg.partitions`` (the same unless an input is read in lanes):
    events carry it and tie-break on it."""
    label: str
    """How sources are named: ``FILE`` in ``FILE:LINE``, ``TOPIC:PARTITION`` for Kafka."""
    shard_keys: list[str]
    resume: PartState | None = None
    remote: frozenset[int] = frozenset()
    """Shards in other processes: their events travel packed."""
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)


class Alignment:
    """Keeps one process's file partitions within ``horizon`` of event time of each other.

    Files are read concurrently, and the watermark is the minimum over them, so a
    file whose events are hours ahead of another's (files split by day, say) would
    pile up its events in memory until the slow one caught up. A partition that
    is more than ``horizon`` ahead of the slowest open file in its process waits
    instead (like Flink's watermark alignment). It changes when events are read,
    never the result. Partitions in other processes are not seen.
    """

    def __init__(self, horizon_us: int) -> None:
        self.horizon_us = horizon_us
        self.newest: dict[int, int] = {}

    def join(self, part: int, newest: int) -> None:
        self.newest[part] = newest

    def leave(self, part: int) -> None:
        self.newest.pop(part, None)

    def should_wait(self, part: int, newest: int) -> bool:
        self.newest[part] = newest
        if newest == NEVER:
            return False
        slowest = min(self.newest.values())
        return newest - slowest > self.horizon_us


class LinePartition(StatefulSourcePartition[SourceItem, PartState], ABC):
    """Decodes lines into per-shard batches; a subclass supplies the lines (:meth:`read`)."""

    counts_as_input = True
    """Whether its counters count it as one input (a file's lanes after the first do not)."""

    def __init__(self, ctx: PartitionContext) -> None:
        cfg = ctx.cfg
        self.cfg = cfg
        self.part = ctx.part
        self.input_index = ctx.input_index
        self.label = ctx.label
        self.shard_keys = ctx.shard_keys
        self.remote = ctx.remote
        self.decoder: EventDecoder | None = None  # made at the first read: see make_decoder
        offset, seq, newest, lines, events, invalid, ended = ctx.resume or (
            0,
            0,
            NEVER,
            0,
            0,
            0,
            False,
        )
        self.offset, self.seq, self.newest = offset, seq, newest
        self.lateness = cfg.lateness_us
        self.ended = ended
        self.alignment: Alignment | None = None
        self.first_us = NEVER  # before reading: the time of its first event, when known
        self.clock = ctx.clock
        self.last_data = self.clock()
        self.idle_after = cfg.idle_timeout.total_seconds() if cfg.idle_timeout is not None else None
        self.stats = {"lines": lines, "events": events, "invalid": invalid}

    @abstractmethod
    def read(self) -> tuple[list[bytes], bool]:
        """Next lines (each with its newline) and whether the input has ended."""

    def make_decoder(self) -> EventDecoder:
        """The decoder for this partition's lines (a format with a header row reads it
        first), made when the partition first reads."""
        return EventDecoder(self.input_index, self.cfg.layout)

    @property
    def aligned_at(self) -> int:
        """Where this partition is in event time, for :class:`Alignment`: before it has
        read anything, the time of its first event, so it need not read a block (and
        hold its events) just to find out whether it should wait."""
        return self.newest if self.newest != NEVER else self.first_us

    def find_first_time(self) -> None:
        """Set ``first_us`` before reading, where that is cheap (files)."""

    def positions(self, n: int) -> list[int] | None:
        """Positions of the lines just read, when they are not line numbers."""
        return None

    def next_batch(self) -> list[SourceItem]:
        if self.ended or STOP.is_set():
            # A stop keeps the position: the snapshot resumes from here.
            raise StopIteration()
        if self.alignment is not None and self.alignment.should_wait(self.part, self.aligned_at):
            return self._waiting()
        if self.decoder is None:
            self.decoder = self.make_decoder()
        lines, at_end = self.read()
        idle_us = self._idle_us(bool(lines))
        positions = self.positions(len(lines))
        per_shard, maybe_late, bad, newest, size = decode_block(
            self.decoder,
            lines,
            self.seq,
            self.newest,
            self.lateness,
            len(self.shard_keys),
            positions,
        )
        dead = [self._dead_letter(line, seq, reason) for seq, line, reason in bad]
        self.seq += len(lines)
        if positions is None:
            self._consumed(size)
        self.newest = newest
        self._count(len(lines), sum(map(len, per_shard)) + sum(map(len, maybe_late)), len(dead))
        remote = self.remote
        out: list[SourceItem] = [
            (
                key,
                (
                    self.part,
                    newest,
                    at_end,
                    pack_events(per_shard[i]) if i in remote and per_shard[i] else per_shard[i],
                    maybe_late[i],
                    idle_us,
                    i,
                ),
            )
            for i, key in enumerate(self.shard_keys)
        ]
        if dead:
            out.append((OutputKind.DEAD_LETTER, b"".join(dead)))
        if at_end:
            out.append(self._end())
        return out

    def _waiting(self) -> list[SourceItem]:
        """While alignment holds this partition back (it is polled again at once, and
        other partitions on this worker go on meanwhile)."""
        if self.newest == NEVER and self.first_us != NEVER:
            # Say once where it starts, or the watermark would wait for it (as if
            # it had read its first event: its events are not late against that).
            self.newest = self.first_us
            return [
                (key, (self.part, self.newest, False, [], [], -1, i))
                for i, key in enumerate(self.shard_keys)
            ]
        return []

    def _idle_us(self, got_data: bool) -> int:
        """How long (wall clock, µs) the input has been silent once that passed the idle
        timeout, else -1."""
        now = self.clock()
        if got_data:
            self.last_data = now
        silence = now - self.last_data
        if self.idle_after is not None and silence >= self.idle_after:
            return int(silence * 1e6)
        return -1

    def _count(self, lines: int, events: int, invalid: int) -> None:
        self.stats["lines"] += lines
        self.stats["invalid"] += invalid
        self.stats["events"] += events
        METRICS.events_in += events
        METRICS.invalid += invalid

    def _end(self) -> SourceItem:
        """The input has ended: leave the alignment, report the counters."""
        self.ended = True
        if self.alignment is not None:
            self.alignment.leave(self.part)
        return (STATS, dict(self.stats, partitions=int(self.counts_as_input)))

    def _consumed(self, size: int) -> None:
        """The lines just decoded took ``size`` bytes from ``offset`` on."""
        self.offset += size

    def _dead_letter(self, line: bytes, seq: int, reason: str) -> bytes:
        where = f"{self.label}:{seq}"
        if self.cfg.strict:
            FAILURE.append(f"invalid record at {where}: {reason}")
            raise StrictError(FAILURE[-1])
        text = line.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
        return _encode(Problem(where, reason, text)) + b"\n"

    def snapshot(self) -> PartState:
        s = self.stats
        return (
            self.offset,
            self.seq,
            self.newest,
            s["lines"],
            s["events"],
            s["invalid"],
            self.ended,
        )
