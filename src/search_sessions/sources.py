"""Bytewax input: JSON Lines files, directories and standard input.

Each file (or ``-``) is one input partition, or, with several workers, a plain
file is read in lanes, one partition per worker (see :func:`read_partitions`).
A partition reads a block of lines, decodes them (:mod:`search_sessions.events`),
and emits for every shard one :data:`ShardBatch`: that shard's events plus the partition's
progress (its newest event time, whether it has ended). Every shard hears
from every partition, which is how each one computes the global watermark
without a separate broadcast. Invalid records leave as dead-letter lines.

Items are ``(key, value)`` pairs: ``(shard_key, ShardBatch)``,
``("dead_letter", bytes)`` or ``("stats", dict)``.
"""

from __future__ import annotations

import gzip
import io
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple

import msgspec
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from .config import Config
from .events import Event, EventDecoder, decode_block, pack_events
from .progress import METRICS
from .sessions import NEVER

ShardBatch = tuple[int, int, bool, list[Event] | bytes, list[tuple[Event, int]], int, int]
"""``(part, newest_us, closed, events, maybe_late, idle_us, shard)``; see ``Sessionizer.ingest``.
``events`` is packed (:func:`~search_sessions.events.pack_events`) for a shard in another
process."""

SourceItem = tuple[str, Any]
PartState = tuple[int, int, int, int, int, int, bool]
"""Snapshot of a partition: ``(byte_offset, lines_read, newest_us, lines, events, invalid,
ended)``; the counters travel with it so a resumed run's summary still adds up."""

_encode = msgspec.json.encode


STOP = threading.Event()
"""Set on SIGINT/SIGTERM: inputs end where they are, shards keep their state (not
flushed as end of input), sinks flush, and the last snapshot holds it all."""


FAILURE: list[str] = []
"""Why this process stopped with an error, when we know better than Bytewax's panic."""


class StrictError(ValueError):
    """Raised under ``--strict`` at the first invalid record."""


def source_name(cfg: Config, part: int, seq: int) -> str:
    """``FILE:LINE`` for an input position (``<stdin>`` for standard input)."""
    name = cfg.partitions[part]
    if name == "-":
        return f"<stdin>:{seq}"
    if name.startswith("kafka://"):
        from .kafka import KafkaPartitionName

        k = KafkaPartitionName.parse(name)
        return f"{k.topic}:{k.partition}:{seq}"
    return f"{name}:{seq}"


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


class _LinePartition(StatefulSourcePartition[SourceItem, PartState]):
    """Decodes lines into per-shard batches; subclasses supply the lines."""

    def __init__(
        self,
        cfg: Config,
        part: int,
        shard_keys: list[str],
        resume: PartState | None,
        clock: Callable[[], float] = time.monotonic,
        input_index: int | None = None,
    ):
        """``part`` numbers this partition among the source's (its progress is reported
        under it); ``input_index`` is its input in ``cfg.partitions`` (the same unless
        an input is read in lanes), which events carry and sources are named by."""
        self.cfg = cfg
        self.part = part
        self.input_index = part if input_index is None else input_index
        self.counts_as_input = True
        self.shard_keys = shard_keys
        self.decoder = EventDecoder(self.input_index)
        offset, seq, newest, lines, events, invalid, ended = resume or (0, 0, NEVER, 0, 0, 0, False)
        self.offset, self.seq, self.newest = offset, seq, newest
        self.lateness = cfg.lateness_us
        self.ended = ended
        self.alignment: Alignment | None = None
        self.first_us = NEVER  # before reading: the time of its first event, when known
        self.remote: frozenset[int] = frozenset()
        self.clock = clock
        self.last_data = clock()
        self.idle_after = cfg.idle_timeout.total_seconds() if cfg.idle_timeout is not None else None
        self.stats = {"lines": lines, "events": events, "invalid": invalid}

    def _read(self) -> tuple[list[bytes], bool]:
        """Next lines (each with its newline) and whether the input has ended."""
        raise NotImplementedError

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
            # Polled again at once: other partitions on this worker go on meanwhile.
            if self.newest == NEVER and self.first_us != NEVER:
                # Say once where it starts, or the watermark would wait for it (as if
                # it had read its first event: its events are not late against that).
                self.newest = self.first_us
                return [
                    (key, (self.part, self.newest, False, [], [], -1, i))
                    for i, key in enumerate(self.shard_keys)
                ]
            return []
        lines, at_end = self._read()
        now = self.clock()
        if lines:
            self.last_data = now
        silence = now - self.last_data
        idle_us = (
            int(silence * 1e6) if self.idle_after is not None and silence >= self.idle_after else -1
        )
        n_shards = len(self.shard_keys)
        positions = self.positions(len(lines))
        block = decode_block(
            self.decoder, lines, self.seq, self.newest, self.lateness, n_shards, positions
        )
        per_shard, maybe_late, bad, newest, size = block
        dead = [self._dead_letter(line, seq, reason) for seq, line, reason in bad]
        n_lines = len(lines)
        self.seq += n_lines
        if positions is None:
            self._consumed(size)
        self.newest = newest
        self.stats["lines"] += n_lines
        n_events = sum(map(len, per_shard)) + sum(map(len, maybe_late))
        self.stats["invalid"] += len(dead)
        self.stats["events"] += n_events
        METRICS.events_in += n_events
        METRICS.invalid += len(dead)
        part = self.part
        remote = self.remote
        out: list[SourceItem] = [
            (
                key,
                (
                    part,
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
            out.append(("dead_letter", b"".join(dead)))
        if at_end:
            self.ended = True
            if self.alignment is not None:
                self.alignment.leave(part)
            out.append(("stats", dict(self.stats, partitions=int(self.counts_as_input))))
        return out

    def _consumed(self, size: int) -> None:
        """The lines just decoded took ``size`` bytes from ``offset`` on."""
        self.offset += size

    def _dead_letter(self, line: bytes, seq: int, reason: str) -> bytes:
        where = source_name(self.cfg, self.input_index, seq)
        if self.cfg.strict:
            FAILURE.append(f"invalid record at {where}: {reason}")
            raise StrictError(FAILURE[-1])
        text = line.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
        return _encode({"source": where, "reason": reason, "record": text}) + b"\n"

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


class _FilePartition(_LinePartition):
    def __init__(self, path: str, block_bytes: int, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        raw = io.BufferedReader(io.FileIO(path, "rb"), buffer_size=1 << 20)
        self.file: BinaryIO
        if raw.peek(2)[:2] == b"\x1f\x8b":
            self.file = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        else:
            self.file = raw
        self._raw = raw
        self.block_bytes = block_bytes
        self.elements = _json_array(self.file) if path.endswith((".json", ".json.gz")) else None
        if self.elements is None and self.offset:
            self.file.seek(self.offset)

    def _read(self) -> tuple[list[bytes], bool]:
        if self.elements is not None:
            # A JSON array: positions are element numbers (1-based), not lines.
            block = self.elements[self.seq : self.seq + 4096]
            return block, not block
        lines = self.file.readlines(self.block_bytes)
        return lines, not lines

    def find_first_time(self) -> None:
        if self.newest == NEVER and self.elements is None and self.file is self._raw:
            self.first_us = first_event_time(self._raw.peek(1 << 16))

    def positions(self, n: int) -> list[int] | None:
        # A JSON array resumes by element count (seq), not by byte offset.
        return None if self.elements is None else list(range(self.seq + 1, self.seq + 1 + n))

    def close(self) -> None:
        self.file.close()
        self._raw.close()


class _LanePartition(_LinePartition):
    """One lane of a plain JSON Lines file that several workers read at once.

    The file is cut into blocks of ``block_bytes``; a line belongs to the block its
    first byte is in, and lane ``w`` of ``n`` reads blocks ``w``, ``w + n``,
    ``w + 2n``, ... So all workers move through the file, and through its event
    time, together: one big file, or files split by time, keep every process busy
    without one running hours of event time ahead of another. Lines keep the
    file's own numbers: the lines of the blocks in between are counted, not decoded.
    ``offset`` (in the snapshot) is always the start of a line.
    """

    def __init__(self, path: str, block_bytes: int, lane: int, lanes: int, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size  # read up to the size it had at the start
        self.block_bytes = block_bytes
        self.lane = lane
        self.lanes = lanes
        self.counts_as_input = lane == 0
        self.scratch = bytearray(block_bytes)  # reused for counting the other lanes' lines

    def _read(self) -> tuple[list[bytes], bool]:
        size = self.size
        block = self.block_bytes
        while self.offset < size:
            pos = self.offset
            k, start = self._next_block()
            if start > pos:
                self.seq += self._count_lines(pos, start)
                self.offset = start
            end = self._line_start((k + 1) * block)
            if end <= start:
                continue  # no line starts in block k: on to the next one of this lane
            self.offset = end
            data = os.pread(self.fd, end - start, start)
            return io.BytesIO(data).readlines(), end >= size
        return [], True

    def _consumed(self, size: int) -> None:
        pass  # _read has moved offset past the block

    def find_first_time(self) -> None:
        if self.newest == NEVER and self.offset < self.size:
            self.first_us = first_event_time(os.pread(self.fd, 1 << 16, self._next_block()[1]))

    def _next_block(self) -> tuple[int, int]:
        """This lane's next block (the first of its blocks whose range ends after
        ``offset``) and where its first line to read starts."""
        k = self.offset // self.block_bytes
        k += (self.lane - k) % self.lanes
        return k, max(self.offset, self._line_start(k * self.block_bytes))

    def _line_start(self, at: int) -> int:
        """Where the first line that starts at or after byte ``at`` starts (the file's
        size when none does)."""
        if at <= 0:
            return 0
        pos = at - 1
        step = 1 << 10  # most lines are short; a long one grows the reads
        while pos < self.size:
            chunk = os.pread(self.fd, step, pos)
            nl = chunk.find(b"\n")
            if nl >= 0:
                return pos + nl + 1
            pos += len(chunk)
            step = min(step * 4, 1 << 20)
        return self.size

    def _count_lines(self, start: int, stop: int) -> int:
        """Lines in ``[start, stop)``, both line starts."""
        n = 0
        buf = self.scratch
        while start < stop:
            got = os.preadv(self.fd, [memoryview(buf)[: stop - start]], start)
            if got <= 0:
                break
            n += buf.count(b"\n", 0, got)
            start += got
        return n

    def close(self) -> None:
        os.close(self.fd)


def _json_array(file: BinaryIO) -> list[bytes] | None:
    """The elements of a file holding one JSON array, or None for JSON Lines."""
    head = file.read(64).lstrip()
    file.seek(0)
    if not head.startswith(b"["):
        return None
    data = file.read()
    try:
        return [bytes(r) for r in msgspec.json.decode(data, type=list[msgspec.Raw])]
    except msgspec.DecodeError:
        file.seek(0)
        return None


class _StdinPartition(_LinePartition):
    """Reads what standard input has, without blocking the worker for long."""

    def __init__(self, block_bytes: int, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.fd = sys.stdin.buffer.fileno()
        self.block_bytes = block_bytes
        self.rest = b""

    def _read(self) -> tuple[list[bytes], bool]:
        ready, _, _ = select.select([self.fd], [], [], 0.05)
        if not ready:
            return [], False
        data = os.read(self.fd, self.block_bytes)
        if not data:
            lines = [self.rest] if self.rest else []
            self.rest = b""
            return lines, True
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        return data[:cut].splitlines(keepends=True), False


class ReadPart(NamedTuple):
    """One partition of the source: an input, or one lane of it."""

    name: str
    """Bytewax's name for it; names sort in list order (see :func:`read_partitions`)."""
    input_index: int
    """The input in ``cfg.partitions``."""
    lane: int
    lanes: int


def read_partitions(cfg: Config, n_workers: int, block_bytes: int) -> list[ReadPart]:
    """The source's partitions, one per input, except that with several workers the
    plain JSON Lines files (not gzip, not a JSON array) bigger than one block are read
    in lanes, one per worker (see :class:`_LanePartition`), unless reading them whole
    already keeps every worker equally busy over the same stretch of event time (see
    :func:`_whole_files_fit`: files split by user, say). Lanes cost a few percent; a
    big file, or files split by time, read whole would leave workers idle or hours of
    event time apart.

    Bytewax sorts partition names and deals them out to workers in turn, so the names
    start with their place in this list: plain files first, a file's lanes in worker
    order, so lane *w* (or the *w*-th file of each round) is read by worker *w*.

    >>> from search_sessions.config import Config
    >>> read_partitions(Config(inputs=("-",)), 2, 1 << 19)
    [ReadPart(name='00000 -', input_index=0, lane=0, lanes=1)]
    """
    plain: list[int] = []
    other: list[int] = []
    sizes: dict[int, int] = {}
    for i, name in enumerate(cfg.partitions):
        size = _plain_file_size(name) if n_workers > 1 else None
        if size is not None and size > block_bytes:
            plain.append(i)
            sizes[i] = size
        else:
            other.append(i)
    lanes = 1 if _whole_files_fit(cfg, plain, sizes, n_workers) else n_workers
    order = [(i, lane, lanes) for i in plain for lane in range(lanes)]
    order += [(i, 0, 1) for i in other]
    parts = []
    for place, (i, lane, n) in enumerate(order):
        label = cfg.partitions[i] if n == 1 else f"{cfg.partitions[i]} lane {lane}/{n}"
        parts.append(ReadPart(f"{place:05d} {label}", i, lane, n))
    return parts


def _whole_files_fit(cfg: Config, plain: list[int], sizes: dict[int, int], n_workers: int) -> bool:
    """Whether the plain files, read whole and dealt out to the workers in turn, give
    every worker the same number of files and bytes within 20%, all starting within
    ``gap + lateness`` of event time of each other (judged by each file's first event)."""
    if not plain or len(plain) % n_workers:
        return False
    load = [0] * n_workers
    for place, i in enumerate(plain):
        load[place % n_workers] += sizes[i]
    if max(load) > 1.2 * min(load):
        return False
    firsts = []
    for i in plain:
        with open(cfg.partitions[i], "rb") as f:
            firsts.append(first_event_time(f.read(1 << 16)))
    if NEVER in firsts:
        return False
    return max(firsts) - min(firsts) <= cfg.gap_us + cfg.lateness_us


def first_event_time(head: bytes) -> int:
    """The time of the first valid event among the whole lines of ``head`` (the start
    of an input), else NEVER."""
    decoder = EventDecoder(0)
    for line in (head[: head.rfind(b"\n") + 1] or head).splitlines()[:100]:
        ev = decoder.decode(line, 0)
        if not isinstance(ev, str):
            return ev[0]
    return NEVER


def _plain_file_size(name: str) -> int | None:
    """The size of a JSON Lines file (not gzip, not a JSON array), else None."""
    if name == "-" or name.startswith("kafka://") or name.endswith((".json", ".json.gz")):
        return None
    try:
        with open(name, "rb") as f:
            if f.read(2) == b"\x1f\x8b":
                return None
            return os.fstat(f.fileno()).st_size
    except OSError:
        return None


class JsonLinesSource(FixedPartitionedSource[SourceItem, PartState]):
    """Every input file (and ``-``, and Kafka partition) of the config, a plain file
    in lanes when there are several workers (see :func:`read_partitions`).

    >>> from search_sessions.config import Config
    >>> JsonLinesSource(Config(inputs=("-",)), ["shard-0"]).list_parts()
    ['00000 -']
    """

    def __init__(
        self,
        cfg: Config,
        shard_keys: list[str],
        block_bytes: int = 1 << 19,
        remote: frozenset[int] = frozenset(),
    ) -> None:
        """``remote``: the shards in other processes; their events travel packed."""
        self.cfg = cfg
        self.shard_keys = shard_keys
        self.remote = remote
        self.block_bytes = block_bytes
        self.alignment = Alignment(cfg.gap_us + cfg.lateness_us)
        self.parts = read_partitions(cfg, len(shard_keys), block_bytes)
        self.by_name = {p.name: (place, p) for place, p in enumerate(self.parts)}

    def list_parts(self) -> list[str]:
        return [p.name for p in self.parts]

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartState | None
    ) -> _LinePartition:
        place, rp = self.by_name[for_part]
        name = self.cfg.partitions[rp.input_index]
        args = (self.cfg, place, self.shard_keys, resume_state)
        where = {"input_index": rp.input_index}
        partition: _LinePartition
        if name == "-":
            partition = _StdinPartition(self.block_bytes, *args, **where)
        elif name.startswith("kafka://"):
            from .kafka import KafkaPartition

            partition = KafkaPartition(
                name, self.cfg.tail, self.cfg.stop_at_end, 4096, *args, **where
            )
        else:
            if rp.lanes > 1:
                partition = _LanePartition(
                    name, self.block_bytes, rp.lane, rp.lanes, *args, **where
                )
            else:
                partition = _FilePartition(name, self.block_bytes, *args, **where)
            partition.alignment = self.alignment
            partition.find_first_time()
            self.alignment.join(place, partition.aligned_at)
        partition.remote = self.remote
        return partition
