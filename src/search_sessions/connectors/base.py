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

import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from bytewax.inputs import StatefulSourcePartition

from ..config import Config
from ..control import (
    FAILURE,
    METRICS,
    STOP,
    guessed_wrong,
    say_block_ranges,
    say_guessed_wrong,
)
from ..core.cores import (
    core_name,
    is_panic,
    native_block_decoder,
    pack_for_shard,
)
from ..core.events import Event, EventDecoder, OrderScan, decode_block
from ..core.schema import OutputKind, Problem
from ..core.time import NEVER
from ..crashpoints import CRASH as crashpoints
from ..errors import InputError, StrictError
from .readahead import Ahead, Task, reads_ahead, submit
from .sorting import ExternalSort, Merged, budget_for

STATS: Final = "stats"
"""The item key of a partition's or shard's counters (summed into the run's summary)."""

ShardBatch = tuple[int, int, bool, list[Event] | bytes, list[tuple[Event, int]], int, int]
"""``(part, newest_us, closed, events, maybe_late, idle_us, shard)``; see ``Sessionizer.ingest``.
``events`` is packed (:func:`~search_sessions.core.events.pack_events`) for a shard in another
process."""

SourceItem = tuple[str, Any]
"""``(key, value)``: a shard key and its batch, or a dead-letter block, or counters."""
StreamState = tuple[int, int, int, int, int, int, bool]
"""Snapshot of a streaming partition: ``(byte_offset, lines_read, newest_us, lines, events,
invalid, ended)``; the counters travel with it so a resumed run's summary still adds up."""
SortState = tuple[str, int, int, bool]
"""Snapshot of a sorting partition: ``("sorted", events_streamed, dead_letters_sent,
ended)``. A resumed one sorts its input again and skips what it had sent."""
PartState = StreamState | SortState

_SORTED: Final = "sorted"
_MERGE_BATCH: Final = 4096
_HELD_POLL: Final = timedelta(milliseconds=5)
_ALL_LATE: Final = 1 << 63
"""A lateness that sets no event apart (a sorting partition takes them all)."""

_encode = msgspec.json.encode

Late = tuple[int, int]
"""Where an input goes out of order: ``(line, µs older than a line before it)``."""


class OrderScans:
    """What the pre-scans of ``--order auto`` found in one process, per input: the
    lanes of a file scan it once (the first to ask does), and so decide alike."""

    def __init__(
        self, found: Iterable[tuple[int, Late | None]] = (), begun: Iterable[tuple[int, Any]] = ()
    ) -> None:
        """``found``: what the launcher of a local cluster scanned for every process
        (:func:`~.files.scan_lanes_first`); ``begun``: scans begun before the dataflow
        started (:func:`~.files.start_scans`), whose answers are taken instead."""
        self._lock = threading.Lock()
        self._begun = dict(begun)
        self._inputs: dict[int, tuple[threading.Lock, list[Late | None]]] = {
            i: (threading.Lock(), [None if late is None else (late[0], late[1])])
            for i, late in found
        }

    def late(self, input_index: int, scan: Callable[[], Late | None]) -> Late | None:
        with self._lock:
            lock, found = self._inputs.setdefault(input_index, (threading.Lock(), []))
        with lock:
            if not found:
                job = self._begun.pop(input_index, None)
                found.append(scan() if job is None else _late(job.result(STOP.is_set)))
            return found[0]


def _line_count(lines: list[bytes] | bytes) -> int:
    """How many lines: a list's, or those of one ``bytes`` (the last may lack its newline)."""
    if isinstance(lines, list):
        return len(lines)
    return lines.count(b"\n") + (lines[-1:] not in (b"", b"\n"))


def block_time_range(events: Any) -> tuple[int, int]:
    """The earliest and latest time of a shard's events (a native block, or tuples)."""
    if isinstance(events, list):
        times = [ev[0] for ev in events]
        return min(times), max(times)
    got: tuple[int, int] = events.time_range()
    return got


def _lines_of(lines: list[bytes] | bytes) -> list[bytes]:
    """A block's lines: a list's, or those of one ``bytes`` cut as the native core cuts
    them (after each ``\\n``; the last may lack one).

    >>> _lines_of(b'a\\nb\\n'), _lines_of(b'a\\n\\nb'), _lines_of([b'x'])
    ([b'a\\n', b'b\\n'], [b'a\\n', b'\\n', b'b'], [b'x'])
    """
    if isinstance(lines, list):
        return lines
    cut = lines.split(b"\n")
    last = cut.pop()
    return [line + b"\n" for line in cut] + ([last] if last else [])


def _late(late: tuple[int, int] | None) -> Late | None:
    return None if late is None else (late[0], late[1])


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
    scans: OrderScans = field(default_factory=OrderScans, compare=False)
    """Shared by a source's partitions in a process (see :meth:`LinePartition.sniff`)."""


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
    """Decodes lines into per-shard batches; a subclass supplies the lines (:meth:`read`).

    A bounded input (a file, a lane of one, standard input) is streamed in the order it
    is read, or sorted by event time first (see :mod:`.sorting`): always with
    ``--order sort``; with ``auto`` when it holds an event older than an earlier one by
    more than the lateness (one it would set apart as late), see :meth:`sniff`.
    """

    counts_as_input = True
    """Whether its counters count it as one input (a file's lanes after the first do not)."""
    bounded = True
    """Whether the input ends (so can be sorted first)."""
    aligned = False
    """Whether it is kept in step with the process's other aligned partitions (files:
    see :class:`Alignment`)."""
    can_read_ahead = False
    """Whether its next block can be read while the last one is in the shards (files;
    see :mod:`.readahead`)."""

    def __init__(self, ctx: PartitionContext) -> None:
        cfg = ctx.cfg
        self.cfg = cfg
        self.part = ctx.part
        self.input_index = ctx.input_index
        self.label = ctx.label
        self.shard_keys = ctx.shard_keys
        self.remote = ctx.remote
        self.decoder: EventDecoder | None = None  # made at the first read: see make_decoder
        self.native = core_name() == "native"
        self.block_decoder: Any | None = None  # the native core's, for JSON Lines
        self.block_decoder_of: EventDecoder | None = None  # the decoder it stands for
        resume = ctx.resume
        self.sorter: ExternalSort | None = None
        self.merged: Merged | None = None
        self.skip = self.dead_skip = self.emitted = self.dead_seen = 0
        self.sniffing = False
        self.scans = ctx.scans
        self.watch: OrderScan | None = None  # auto, sorting an input it could not pre-scan
        self.guessing: OrderScan | None = None
        self.block_ranges: list[tuple[int, int, int]] | None = None
        """A lane guessing (see :meth:`_check_guess`): ``(first line, earliest time,
        latest time)`` of each of its blocks, to check against the other lanes'."""
        """``auto``, streaming on the guess that the input is in order: the pre-scan's
        scan, kept as it reads (see :meth:`sniff`)."""
        sorted_ended = False
        if resume is not None and resume[0] == _SORTED:
            _, self.skip, self.dead_skip, sorted_ended = resume
            resume = None
            self.sorter = None if sorted_ended else self._new_sorter(cfg)
        elif resume is None or resume[1] == 0:
            # Nothing read yet: the order is still to choose.
            self.sorter = self._new_sorter(cfg) if self._sorts(cfg.order) else None
            self.sniffing = self.bounded and cfg.order == "auto"
        self.sorting = self.sorter is not None or sorted_ended
        """Whether it sorts (it never goes back to streaming as read)."""
        offset, seq, newest, lines, events, invalid, ended = resume or (  # type: ignore[misc]
            0,
            0,
            NEVER,
            0,
            0,
            0,
            sorted_ended,
        )
        self.offset, self.seq, self.newest = offset, seq, newest
        self.lateness = cfg.lateness_us
        self.ended = ended
        self.ending = False
        """Read to its end, the end held back for a crash test (:mod:`..crashpoints`)."""
        self.alignment: Alignment | None = None
        self.read_ahead = self.native and reads_ahead(cfg)
        self.ahead: Ahead | None = None
        """The next block, read and being decoded (:mod:`.readahead`)."""
        self.merge_ahead: Task[tuple[list[Any], int, int]] | None = None
        """A sorted input's next batch, being merged on a reader thread."""
        self.first_us = NEVER  # before reading: the time of its first event, when known
        self.clock = ctx.clock
        self.last_data = self.clock()
        self.idle_after = cfg.idle_timeout.total_seconds() if cfg.idle_timeout is not None else None
        self.stats = {"lines": lines, "events": events, "invalid": invalid}

    def _sorts(self, order: str) -> bool:
        return order == "sort" and self.bounded

    def _new_sorter(self, cfg: Config) -> ExternalSort:
        return ExternalSort(budget_for(cfg.sort_memory), cfg.temp_dir, self.native)

    @property
    def sorts(self) -> bool:
        """Whether this partition sorts its input, or may yet decide to (``auto``)."""
        return self.sorting or self.sniffing

    @abstractmethod
    def read(self) -> tuple[list[bytes], bool]:
        """Next lines (each with its newline) and whether the input has ended."""

    reads_raw = False
    """Whether :meth:`read_raw` can stand for :meth:`read` (plain and gzip files)."""

    def read_raw(self) -> tuple[bytes, bool]:
        """:meth:`read`'s next lines as one ``bytes`` (the native core cuts them: no
        object per line), and whether the input has ended."""
        raise NotImplementedError

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
        if self.ended or STOP.is_set() or guessed_wrong(self.cfg.guess_marker):
            # A stop keeps the position: the snapshot resumes from here.
            raise StopIteration()
        if self.ending:
            return self._held_end()
        crashpoints.poll()
        if self.alignment is not None and self.alignment.should_wait(self.part, self.aligned_at):
            return self._waiting()
        if self.decoder is None:
            self.decoder = self.make_decoder()
            self.block_decoder = native_block_decoder(self.decoder)
            self.block_decoder_of = self.decoder
        if self.sniffing:
            self.sniff()  # (standard input, or a partition built outside a source)
        if self.merged is not None:
            return self._merge_batch()
        if self.sorting:
            return self._sort_batch()
        at_end, idle_us, positions, decoded, kept = self._take_block()
        if self.guessing is not None and not self._check_guess(decoded, kept):
            raise StopIteration()  # (to start again: see sniff)
        if at_end and self.block_ranges is not None:
            say_block_ranges(self.cfg.guess_marker, self.input_index, self.block_ranges)
        per_shard, maybe_late, bad, newest, size, n_events, n_lines = decoded
        dead = [self._dead_letter(line, seq, reason) for seq, line, reason in bad]
        self.seq += n_lines
        if positions is None:
            self._consumed(size)
        self.newest = newest
        self._count(n_lines, n_events, len(dead))
        if at_end and crashpoints.hold():
            at_end, self.ending = False, True
        out = self._shard_items(per_shard, maybe_late, at_end, idle_us)
        if dead:
            out.append((OutputKind.DEAD_LETTER, b"".join(dead)))
        if at_end:
            out.append(self._end())
        elif not self.ending and self._reads_ahead():
            self.ahead = self._read_ahead()
        return out

    def _take_block(self) -> tuple[bool, int, list[int] | None, Any, list[bytes] | bytes]:
        """Whether the input ended with the next block, its idle time, its positions
        (when not line numbers), the block decoded (see :meth:`_decode`) and, where the
        partition guesses its order (:meth:`_check_guess`), its lines."""
        ahead = self.ahead
        if ahead is None and not self._reads_ahead():
            if self.reads_raw and self._native():  # (as the reader thread would read it)
                got, at_end, decoded, kept = self._read_decode(self.newest)
                return at_end, self._idle_us(got), None, decoded, kept
            lines, at_end = self._read_block()
            idle_us = self._idle_us(bool(lines))
            positions = self._block_positions(lines)
            return at_end, idle_us, positions, self._decode(lines, positions), lines
        ahead = ahead or self._read_ahead()
        self.ahead = None
        got_data, at_end, decoded, kept = ahead.done.result()
        return at_end, self._idle_us(got_data), ahead.positions, decoded, kept

    def _read_block(self) -> tuple[list[bytes] | bytes, bool]:
        """The next block's lines (one ``bytes`` of them, for the native core, where the
        partition can) and whether the input ended with it."""
        if self.reads_raw and self._native():
            return self.read_raw()
        return self.read()

    def _block_positions(self, lines: list[bytes] | bytes) -> list[int] | None:
        # (A partition that reads raw blocks numbers its lines: no positions.)
        return self.positions(len(lines)) if isinstance(lines, list) else None

    def _native(self) -> bool:
        """Whether the native core decodes the next block (a partition may swap decoders
        for a block, in its read: Kafka's unreadable messages)."""
        return self.block_decoder is not None and self.decoder is self.block_decoder_of

    def _reads_natively(self) -> bool:
        """Whether the native core reads the next block as well as decoding it (a plain
        file's, where the partition keeps no lines: see :meth:`_read_native`)."""
        return False

    def _read_native(self, newest: int) -> tuple[Any, int]:
        """The next block read and decoded by the native core (see :meth:`_decode`),
        and its size in bytes (0: the input has ended)."""
        raise NotImplementedError

    def _decode(self, lines: list[bytes] | bytes, positions: list[int] | None) -> Any:
        """``(per_shard, maybe_late, bad, newest, size, events, lines)`` of the lines after line
        ``seq`` (see :meth:`_read_block`), by the native core or the Python core."""
        if self._native():
            return self._native_decode(lines, positions, self.seq, self.newest)
        assert isinstance(lines, list)
        assert self.decoder is not None
        per_shard, maybe_late, bad, newest, size = decode_block(
            self.decoder,
            lines,
            self.seq,
            self.newest,
            self.lateness,
            len(self.shard_keys),
            positions,
        )
        n_events = sum(map(len, per_shard)) + sum(map(len, maybe_late))
        return per_shard, maybe_late, bad, newest, size, n_events, len(lines)

    def _reads_ahead(self) -> bool:
        return self.read_ahead and self.can_read_ahead and self._native()

    def _read_ahead(self) -> Ahead:
        """Read the next block and decode it on a reader thread (:mod:`.readahead`), where
        the partition reads blocks raw (its position moves there: its snapshot holds the
        one before meanwhile); else read it now and decode it there."""
        before = (self.offset, self.seq)
        if self.reads_raw:
            return Ahead(None, submit(self._read_decode, self.newest), before)
        lines, at_end = self._read_block()
        positions = self._block_positions(lines)
        decoded = submit(self._decode_read, lines, at_end, positions, self.seq, self.newest)
        return Ahead(positions, decoded, before)

    def _read_decode(self, newest: int) -> tuple[bool, bool, Any, bytes]:
        if self._reads_natively():
            decoded, size = self._read_native(newest)
            return bool(size), not size, decoded, b""
        data, at_end = self.read_raw()
        decoded = self._native_decode(data, None, self.seq, newest)
        return bool(data), at_end, decoded, data if self.guessing is not None else b""

    def _decode_read(
        self,
        lines: list[bytes] | bytes,
        at_end: bool,
        positions: list[int] | None,
        seq: int,
        newest: int,
    ) -> tuple[bool, bool, Any, list[bytes] | bytes]:
        decoded = self._native_decode(lines, positions, seq, newest)
        return bool(lines), at_end, decoded, lines

    def _settle(self) -> None:
        """Waits for a block being read ahead (its reading uses the file), or merged."""
        if self.ahead is not None and not self.ahead.done.cancel():
            self.ahead.done.exception()  # (its error, if any, is the reading's to say)
        if self.merge_ahead is not None and not self.merge_ahead.cancel():
            self.merge_ahead.exception()

    def _native_decode(
        self, lines: list[bytes] | bytes, positions: list[int] | None, seq: int, newest: int
    ) -> Any:
        """The native core's ``decode_block`` of the lines after line ``seq``; a panic in it
        (a bug) ends the run with one line naming the input, not with an abort."""
        assert self.block_decoder is not None
        return self._guarded(
            lambda: f"lines {seq + 1}-{seq + _line_count(lines)}",
            self.block_decoder.decode_block,
            lines,
            seq,
            newest,
            self.lateness,
            len(self.shard_keys),
            positions,
        )

    def _guarded(self, lines: Callable[[], str], call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``, a native core's call on the input's ``lines``: a panic in it (a
        bug) ends the run with one line naming them, not with an abort."""
        try:
            return call(*args)
        except BaseException as exc:
            if not is_panic(exc):
                raise
            FAILURE.append(
                f"{self.label}: the native core failed on {lines()} ({exc}); "
                "SEARCH_SESSIONS_CORE=python reads them with the Python core"
            )
            raise InputError(FAILURE[-1]) from None

    def scan_times(self) -> Iterator[list[int | None]] | None:
        """The whole input's event times, a list per block of lines (or records), one
        per line (``None``: none), read apart from the partition's own reading (see
        :meth:`~search_sessions.core.events.EventDecoder.times`), for :meth:`sniff`;
        ``None`` for an input that can be read only once (standard input)."""
        return None

    def sniff(self) -> None:
        """``auto``: decide, before reading, whether to sort this input (so an input
        in order can say where it starts, see :meth:`_waiting`).

        The event times of the whole input are pre-scanned (:meth:`scan_times`, once
        per file in a process: a file's lanes decide alike): it is sorted when some
        event is older than an earlier one by more than the lateness, as streaming it
        would set that event apart as late. An input that can be read only once
        cannot be pre-scanned: it is sorted (held until its end, see
        :mod:`.sorting`), which streamed in order is the same answer, and said to be
        out of order only when it was (:meth:`_sort_batch`).

        Where the run can start again (``Config.guess_order``: no recovery directory,
        every output a file) a JSON Lines, CSV or TSV file is not pre-scanned: it is
        streamed on the guess that it is in order, the scan kept as it reads
        (:meth:`_check_guess`; a file's lanes each check their own lines, and their
        blocks are checked against each other's at the end). Found out of order, the
        run (every process of a local cluster) stops and starts again afresh, this
        input sorted: the same decision at the same line, without reading an input in
        order twice.
        """
        if not self.sniffing:
            return
        self.sniffing = False
        if self.cfg.guess_order is True and self.guesses_order:
            self.guessing = OrderScan(self.lateness)
            self.block_ranges = [] if self.in_lanes else None
            return
        times = self.scan_times()
        if times is None:
            self.watch = OrderScan(self.lateness)
            self._start_sorting()
            return
        late = self.scans.late(self.input_index, lambda: self.first_late(times))
        if late is not None:
            if self.counts_as_input:  # one line per file, whatever its lanes
                self._say_sorting(late)
            self._start_sorting()

    guesses_order = False
    """Whether ``auto`` may stream this input on the guess that it is in order (see
    :meth:`sniff`): a plain or gzip file of JSON Lines, CSV or TSV."""

    in_lanes = False
    """Whether it is one lane of a file others read too (see ``LanePartition``)."""

    def _check_guess(self, decoded: Any, lines: list[bytes] | bytes) -> bool:
        """Streaming on the guess that the input is in order (see :meth:`sniff`): the
        pre-scan's :class:`OrderScan` of the block's lines; whether the guess holds (if
        not, :data:`~..control.GUESSED_WRONG` says where it failed). A block
        in which the decoder set no event apart as maybe late (its test is the scan's,
        from the same newest time), with no bad line that has a time, only moves the
        scan on; any other is timed line by line, as the pre-scan times it."""
        assert self.guessing is not None and self.decoder is not None
        per_shard, maybe_late, bad, newest, _, n_events, n_lines = decoded
        scan = self.guessing
        # (The pre-scan's reading of times: the native core's where it decodes the block.)
        native = self.block_decoder if self._native() else None
        times = self.decoder.times if native is None else native.times
        timed_bad = bool(bad) and any(t is not None for t in times([b for _, b, _ in bad]))
        if not timed_bad and not any(map(len, maybe_late)) and scan.newest <= self.newest:
            if n_events:
                scan.newest = max(scan.newest, newest)
            scan.lines += n_lines
            if self.block_ranges is not None and n_events:
                lo = min(block_time_range(events)[0] for events in per_shard if len(events))
                self.block_ranges.append((self.seq + 1, lo, newest))
            return True
        block = _lines_of(lines)
        block_times = times(block)
        if scan.add(block_times, range(self.seq + 1, self.seq + 1 + len(block))):
            assert scan.late is not None
            say_guessed_wrong(self.cfg.guess_marker, (self.input_index, scan.late))
            return False
        timed = [t for t in block_times if t is not None]
        if self.block_ranges is not None and timed:
            self.block_ranges.append((self.seq + 1, min(timed), max(timed)))
        return True

    def first_late(self, times: Iterator[list[int | None]]) -> Late | None:
        """Where the input first goes out of order (see :meth:`sniff`), given its times
        (plain files: the native core scans them itself)."""
        scan = OrderScan(self.lateness)
        for block in times:
            if scan.add(block) or STOP.is_set():
                break  # (a stopped run reads nothing: a resumed one decides again)
        return scan.late

    def _start_sorting(self) -> None:
        self.sorter = self._new_sorter(self.cfg)
        self.sorting = True

    def _say_sorting(self, late: Late) -> None:
        line, age = late
        print(
            f"search-sessions: {self.label} is not in time order (line {line} is "
            f"{_span(age)} older than a line before it, more than --lateness); sorting it "
            "by event time first (--order sort; --order time streams it as it is)",
            file=sys.stderr,
            flush=True,
        )

    def _sort_batch(self) -> list[SourceItem]:
        """Sorting: read and decode a block, keep its events; send only dead letters.
        The native core decodes into blocks it keeps (no Python object per event)."""
        assert self.decoder is not None
        lines, at_end = self._read_block()
        positions = self._block_positions(lines)
        if self._native():
            assert self.block_decoder is not None
            # (Decoded on two threads where it reads ahead: nothing else runs meanwhile.)
            threads = 2 if self.read_ahead else 1
            per_shard, _, bad, _, size, _, n_lines = self.block_decoder.decode_block(
                lines, self.seq, NEVER, _ALL_LATE, 1, positions, threads
            )
            events = per_shard[0]  # in input order
            times, seqs = events.times_and_seqs() if self.watch is not None else ([], [])
        else:
            assert isinstance(lines, list)
            per_shard, _, bad, _, size = decode_block(
                self.decoder, lines, self.seq, NEVER, _ALL_LATE, 1, positions
            )
            events, n_lines = per_shard[0], len(lines)
            times, seqs = [ev[0] for ev in events], [ev[2] for ev in events]
        watch = self.watch
        if watch is not None and watch.add(times, seqs):
            assert watch.late is not None
            self._say_sorting(watch.late)
            self.watch = None
        return self._sorted_block(n_lines, events, bad, size, at_end)

    def _sorted_block(
        self,
        n_lines: int,
        events: list[Event] | Any,
        bad: list[tuple[int, bytes, str]],
        size: int,
        at_end: bool,
    ) -> list[SourceItem]:
        assert self.sorter is not None
        dead = []
        for seq, line, reason in bad:
            self.dead_seen += 1
            if self.dead_seen > self.dead_skip:  # a resumed sort sent these before
                dead.append(self._dead_letter(line, seq, reason))
        if self.positions(0) is None:
            self._consumed(size)
        self.seq += n_lines
        self._count(n_lines, len(events), len(bad))
        crashpoints.hit("sort-run", f"{self.label}: {self.seq} lines read")
        self.sorter.add(events, size)
        if at_end:
            self._start_merge()
        return [(OutputKind.DEAD_LETTER, b"".join(dead))] if dead else []

    def _start_merge(self) -> None:
        """The input has been read: stream its events in order from where a resumed
        run had got to."""
        assert self.sorter is not None
        merged = self.sorter.sorted()
        self.newest = merged.skip(self.skip, self.newest)
        self.emitted = self.skip
        self.merged = merged

    def _merge_batch(self) -> list[SourceItem]:
        assert self.merged is not None and self.sorter is not None
        n = len(self.shard_keys)
        ahead, self.merge_ahead = self.merge_ahead, None
        if ahead is not None:
            per_shard, newest, taken = ahead.result()
        else:
            per_shard, newest, taken = self.merged.take(_MERGE_BATCH, n, self.newest)
        if taken and self.read_ahead and self.sorter.native is not None:
            # The next batch merged (the native core, without the GIL) while the shards
            # take this one. Not sent, it is not counted: a resumed run merges it again.
            self.merge_ahead = submit(self.merged.take, _MERGE_BATCH, n, newest)
        if taken:
            crashpoints.hit("merge", f"{self.label}: {self.emitted} events sent")
        elif crashpoints.hold():
            self.ending = True
            return self._held_end()
        self.newest = newest
        self.emitted += taken
        at_end = not taken
        out = self._shard_items(per_shard, [[] for _ in range(n)], at_end, -1)
        if at_end:
            self.sorter.close()
            out.append(self._end())
        return out

    def _shard_items(
        self,
        per_shard: list[Any],
        maybe_late: list[Any],
        at_end: bool,
        idle_us: int,
    ) -> list[SourceItem]:
        """One :data:`ShardBatch` for every shard: its events (packed for a shard in
        another process, and always by the native core's decoder) and this partition's
        progress."""
        remote = self.remote
        native = self.native
        return [
            (
                key,
                (
                    self.part,
                    self.newest,
                    at_end,
                    pack_for_shard(per_shard[i], native) if i in remote else per_shard[i],
                    maybe_late[i],
                    idle_us,
                    i,
                ),
            )
            for i, key in enumerate(self.shard_keys)
        ]

    def _held_end(self) -> list[SourceItem]:
        """The input has been read to its end, which a crash test holds back until its
        kill (so the job cannot finish first): end once it no longer does."""
        n = len(self.shard_keys)
        empty: list[list[Any]] = [[] for _ in range(n)]
        if crashpoints.hold():
            # Progress alone keeps the shards busy, so they take snapshots meanwhile.
            return self._shard_items(empty, list(empty), False, -1)
        self.ending = False
        if self.merged is not None and self.sorter is not None:
            self.sorter.close()
        return [*self._shard_items(empty, list(empty), True, -1), self._end()]

    def next_awake(self) -> datetime | None:
        # Held at its end: look again shortly rather than spin.
        return datetime.now(UTC) + _HELD_POLL if self.ending else None

    def _waiting(self) -> list[SourceItem]:
        """While alignment holds this partition back (it is polled again at once, and
        other partitions on this worker go on meanwhile)."""
        if self.newest == NEVER and self.first_us != NEVER and not self.sniffing:
            # (An input that may yet be sorted cannot say where it starts.)
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
        crashpoints.hit("input-end", self.label)
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

    def close(self) -> None:
        self._settle()
        if self.sorter is not None:
            self.sorter.close()

    def snapshot(self) -> PartState:
        if self.sorting:
            return (
                _SORTED,
                max(self.emitted, self.skip),
                max(self.dead_seen, self.dead_skip),
                self.ended,
            )
        s = self.stats
        # A block read ahead is not sent yet: a resumed run reads it again.
        offset, seq = (self.offset, self.seq) if self.ahead is None else self.ahead.before
        return (
            offset,
            seq,
            self.newest,
            s["lines"],
            s["events"],
            s["invalid"],
            self.ended,
        )


def _span(us: int) -> str:
    """A duration for people: ``3h 12m``, ``45s``.

    >>> _span(11_520_000_000), _span(45_000_000), _span(90_061_000_000)
    ('3h 12m', '45s', '1d 1h')
    """
    s = us // 1_000_000
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            rest = s % size // sub_size
            return f"{s // size}{unit}" + (f" {rest}{sub}" if rest else "")
    return f"{s // 60}m" if s >= 60 else f"{s}s"
