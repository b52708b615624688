"""Files: JSON Lines (and JSON arrays, CSV, TSV, the AOL log, gzip) in, JSON Lines out,
standard input and output.

Input: each file (or ``-``) is one input partition, or, with several workers,
a plain file is read in lanes, one partition per worker (see
:func:`read_partitions`). Its format is ``--format``, or, with ``auto``, told by its
name or its first line (:func:`format_of`); the lines are decoded by the format's
decoder (:mod:`search_sessions.core.formats`), made from the file's header row for
CSV and TSV.

Output: one JSON Lines file per output, whatever the parallelism. Upstream
steps send pre-encoded blocks of lines (``bytes``), so a sink only writes. Two
ways to share a file between workers:

- one writer (the default, and always with a recovery store): the sink has a
  single partition, so one worker owns the file; its snapshot is the byte
  offset, and a resumed partition truncates the file back to it (so a restart
  neither loses nor repeats a line);
- every worker appends (``JsonLinesSink`` given the shard keys: a run on one host
  without a recovery store): one partition per worker, each an ``O_APPEND``
  descriptor that takes whole blocks of lines in one ``write``, so blocks never
  interleave inside a line and no worker ships its lines to another process.
"""

from __future__ import annotations

import io
import os
import select
import sys
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, BinaryIO, Final, NamedTuple

import msgspec
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from ..config import Config
from ..control import FAILURE, STOP
from ..core.cores import NATIVE, native_block_decoder, times_reader
from ..core.events import EventDecoder, OrderScan
from ..core.formats import HEADED, LINE_FORMATS
from ..core.formats import make_decoder as line_decoder
from ..core.time import NEVER
from ..crashpoints import CRASH as crashpoints
from ..errors import InputError, OutputError
from .base import Late, LinePartition, PartitionContext
from .inputs import (
    GZIP_MAGIC,
    GzipInput,
    file_format,
    first_line,
    format_of,
    is_stream,
    reopen,
    standard_stream,
)
from .readahead import host_cores, reads_ahead
from .specs import Scheme, scheme_of

_SCAN_BYTES: Final = 1 << 20
"""How much of a file the pre-scan of ``--order auto`` reads at a time."""


def _scan_times(path: str, decoder: EventDecoder) -> Iterator[list[int | None]]:
    """The event times of a file's lines (decompressed if gzip), a block at a time,
    through a file of its own, so a partition's reading position stays."""
    times = times_reader(decoder)
    with reopen(path) as f:
        while lines := f.readlines(_SCAN_BYTES):
            yield times(lines)


def _native_scan(part: LinePartition, path: str) -> Callable[[], Late | None] | None:
    """The native core's pre-scan of a plain file (see :meth:`LinePartition.sniff`),
    read and timed in Rust, on two threads where the run reads ahead; ``None`` where it
    does not do it (the Python core, other formats, gzip)."""
    native = native_block_decoder(part.make_decoder())
    if native is None:
        return None
    with open(path, "rb") as f:
        if f.read(2) == GZIP_MAGIC:
            return None
    threads = 2 if reads_ahead(part.cfg) else 1
    return partial(native.scan_order, path, part.lateness, threads, STOP.is_set)


GUESSED_FORMATS: Final = frozenset({"jsonl", "csv", "tsv"})
"""The formats ``--order auto`` may stream on the guess that a file is in order (see
``LinePartition.sniff``): one event a line, or none (not the AOL layout, whose click
lines may bring their search along)."""


def first_late_of(cfg: Config, input_index: int) -> Late | None:
    """The pre-scan of one plain file of lines (as its partitions scan it): for a file
    read in lanes found out of order while streamed on a guess, where it first goes out
    of order."""
    path = cfg.partitions[input_index]
    fmt = file_format(path, cfg.input_format)
    header = first_line(path) if fmt in HEADED else None
    decoder = line_decoder(fmt, input_index, cfg.layout, header)
    native = native_block_decoder(decoder)
    if native is not None:
        late = native.scan_order(path, cfg.lateness_us, min(host_cores(), 8), STOP.is_set)
        return None if late is None else (late[0], late[1])
    scan = OrderScan(cfg.lateness_us)
    for block in _scan_times(path, decoder):
        if scan.add(block):
            break
    return scan.late


def scan_lanes_first(
    cfg: Config, done: frozenset[int] = frozenset()
) -> tuple[tuple[int, Late | None], ...]:
    """``--order auto`` on a local cluster: the native pre-scans of the plain JSON Lines
    files read in lanes (but the inputs in ``done``), ``(input, where it goes out of
    order)``, done once by the launcher on all its cores, where every process would scan
    the whole file itself (each must decide alike). Other inputs are scanned by the
    processes as before."""
    if cfg.order != "auto" or cfg.guess_order is True:
        return ()  # (guessing: streamed at once, see LinePartition.sniff)
    threads = min(host_cores(), 8)
    found = []
    for rp in read_partitions(cfg, cfg.workers * cfg.processes, cfg.block_bytes):
        path = cfg.partitions[rp.input_index]
        if rp.lanes < 2 or rp.lane != 0 or rp.input_index in done:
            continue
        if file_format(path, cfg.input_format) != "jsonl":
            continue
        native = native_block_decoder(line_decoder("jsonl", rp.input_index, cfg.layout, None))
        if native is None:
            return ()
        late = native.scan_order(path, cfg.lateness_us, threads, STOP.is_set)
        if STOP.is_set():
            return ()  # (a stopped scan found nothing: the processes decide)
        found.append((rp.input_index, late))
    return tuple(found)


def _fd_path(fd: int, path: str) -> str:
    """A name the native core opens this open file by: its /proc name, where there is
    one (the file open, even if renamed or replaced since), else its path."""
    fd_dir = "/proc/self/fd"
    return f"{fd_dir}/{fd}" if os.path.isdir(fd_dir) else path


class FilePartition(LinePartition):
    """A whole file (plain or gzip, by its first bytes): lines in its format (a CSV or
    TSV header row is decoded as no event: the lines keep the file's own numbers), or
    one JSON array."""

    aligned = True

    def __init__(self, ctx: PartitionContext, path: str, block_bytes: int) -> None:
        super().__init__(ctx)
        self.path = path
        self.format = file_format(path, ctx.cfg.input_format)
        raw = io.BufferedReader(io.FileIO(path, "rb"), buffer_size=1 << 20)
        self.file: BinaryIO
        if raw.peek(2)[:2] == GZIP_MAGIC:
            self.file = GzipInput(path, fileobj=raw)  # type: ignore[assignment]
        else:
            self.file = raw
        self._raw = raw
        self.fd_path = _fd_path(raw.fileno(), path)
        self.block_bytes = block_bytes
        is_json = self.format == "jsonl" and path.endswith((".json", ".json.gz"))
        self.elements = _json_array(self.file) if is_json else None
        if self.elements is None and self.offset:
            self.file.seek(self.offset)

    @property
    def can_read_ahead(self) -> bool:  # type: ignore[override]
        return self.elements is None  # (a JSON array's elements are in memory)

    @property
    def guesses_order(self) -> bool:  # type: ignore[override]
        return self.elements is None and self.format in GUESSED_FORMATS

    def read(self) -> tuple[list[bytes], bool]:
        if self.elements is not None:
            # A JSON array: positions are element numbers (1-based), not lines.
            block = self.elements[self.seq : self.seq + 4096]
            return block, not block
        lines = self.file.readlines(self.block_bytes)
        return lines, not lines

    @property
    def reads_raw(self) -> bool:  # type: ignore[override]
        return self.elements is None

    def _reads_natively(self) -> bool:
        # A plain file, its lines decoded by the native core, and no guess to check
        # against its lines (sniff).
        return (
            self.elements is None
            and self.file is self._raw
            and self.guessing is None
            and self._native()
        )

    def _read_native(self, newest: int) -> tuple[Any, int]:
        assert self.block_decoder is not None
        at = self.file.tell()
        decoded, size = self._guarded(
            lambda: f"the lines after line {self.seq}",
            self.block_decoder.decode_file,
            self.fd_path,
            at,
            self.block_bytes,
            self.seq,
            newest,
            self.lateness,
            len(self.shard_keys),
        )
        if size:
            self.file.seek(at + size)  # (where read_raw and read go on from)
        return decoded, size

    def read_raw(self) -> tuple[bytes, bool]:
        # The lines readlines(block_bytes) returns: lines while they total no more than
        # block_bytes, and the line that takes them past it.
        data = self.file.read(self.block_bytes)
        if len(data) == self.block_bytes:
            data += self.file.readline()
        return data, not data

    def make_decoder(self) -> EventDecoder:
        header = first_line(self.path) if self.format in HEADED else None
        return line_decoder(self.format, self.input_index, self.cfg.layout, header)

    def scan_times(self) -> Iterator[list[int | None]]:
        decoder = self.make_decoder()  # its own: the AOL one has a state
        if self.elements is not None:
            elements = self.elements
            times = times_reader(decoder)
            return (times(elements[i : i + 4096]) for i in range(0, len(elements), 4096))
        return _scan_times(self.path, decoder)

    def first_late(self, times: Iterator[list[int | None]]) -> Late | None:
        scan = None if self.elements is not None else _native_scan(self, self.path)
        return scan() if scan is not None else super().first_late(times)

    def find_first_time(self) -> None:
        if self.newest == NEVER and self.elements is None and self.file is self._raw:
            self.first_us = first_event_time(self._raw.peek(1 << 16), self.make_decoder())

    def positions(self, n: int) -> list[int] | None:
        # A JSON array resumes by element count (seq), not by byte offset.
        return None if self.elements is None else list(range(self.seq + 1, self.seq + 1 + n))

    def close(self) -> None:
        self._settle()
        self.file.close()
        self._raw.close()
        super().close()


class LanePartition(LinePartition):
    """One lane of a plain file of lines that several workers read at once.

    The file is cut into blocks of ``block_bytes``; a line belongs to the block its
    first byte is in, and lane ``w`` of ``n`` reads blocks ``w``, ``w + n``,
    ``w + 2n``, ... So all workers move through the file, and through its event
    time, together: one big file, or files split by time, keep every process busy
    without one running hours of event time ahead of another. Lines keep the
    file's own numbers: the lines of the blocks in between are counted, not decoded.
    ``offset`` (in the snapshot) is always the start of a line. Every lane's decoder
    is made from the file's first line when that is a header row (CSV, TSV); lane 0
    reads it as no event.
    """

    aligned = True

    def __init__(
        self, ctx: PartitionContext, path: str, block_bytes: int, lane: int, lanes: int
    ) -> None:
        super().__init__(ctx)
        self.path = path
        self.format = file_format(path, ctx.cfg.input_format)
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size  # read up to the size it had at the start
        self.block_bytes = block_bytes
        self.lane = lane
        self.lanes = lanes
        self.counts_as_input = lane == 0
        # The other lanes' lines are counted by the native core: a Python count of a
        # whole file's bytes in every lane was 18 ms a lane of 1M events with two lanes,
        # and grows to most of the file's with many. Else in a buffer reused.
        self.counter = NATIVE.count_newlines if self.native and NATIVE is not None else None
        self.scratch = bytearray(block_bytes if self.counter is None else 0)
        self.fd_path = _fd_path(self.fd, path)

    can_read_ahead = True

    reads_raw = True

    in_lanes = True

    @property
    def guesses_order(self) -> bool:  # type: ignore[override]
        return self.format in GUESSED_FORMATS

    def read_raw(self) -> tuple[bytes, bool]:
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
            return os.pread(self.fd, end - start, start), end >= size
        return b"", True

    def read(self) -> tuple[list[bytes], bool]:
        data, at_end = self.read_raw()
        return io.BytesIO(data).readlines(), at_end

    def _consumed(self, size: int) -> None:
        pass  # _read has moved offset past the block

    def make_decoder(self) -> EventDecoder:
        header = os.pread(self.fd, self._line_start(1), 0) if self.format in HEADED else None
        return line_decoder(self.format, self.input_index, self.cfg.layout, header)

    def scan_times(self) -> Iterator[list[int | None]]:
        # The whole file, not just this lane: its lanes decide alike (see sniff).
        return _scan_times(self.path, self.make_decoder())

    def first_late(self, times: Iterator[list[int | None]]) -> Late | None:
        scan = _native_scan(self, self.path)
        return scan() if scan is not None else super().first_late(times)

    def find_first_time(self) -> None:
        if self.newest == NEVER and self.offset < self.size:
            head = os.pread(self.fd, 1 << 16, self._next_block()[1])
            self.first_us = first_event_time(head, self.make_decoder())

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
        if self.counter is not None:
            return int(self.counter(self.fd_path, start, stop))
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
        self._settle()
        os.close(self.fd)
        super().close()


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


class StdinPartition(LinePartition):
    """Reads what standard input has, without blocking the worker for long.

    With ``--format csv`` or ``tsv`` the first line is the header row, and with
    ``auto`` the first line tells whether the input is the AOL log; so, unless the
    format is ``jsonl`` or ``aol``, no line is decoded before the first whole line
    has come (:meth:`_first_line`). A header row is kept out of the lines returned
    and counted as line 1, so ``<stdin>:LINE`` stays the line's number in the input.
    """

    def __init__(self, ctx: PartitionContext, block_bytes: int) -> None:
        super().__init__(ctx)
        self.fd = sys.stdin.buffer.fileno()
        self.block_bytes = block_bytes
        self.rest = b""
        configured = ctx.cfg.input_format
        self.format = "jsonl" if configured == "auto" else configured
        self.header: bytes | None = None
        self.first_pending = configured == "auto" or configured in HEADED

    def make_decoder(self) -> EventDecoder:
        # Until the first line has come this is a stand-in, never given a line.
        return line_decoder(self.format, self.input_index, self.cfg.layout, self.header)

    def read(self) -> tuple[list[bytes], bool]:
        lines, at_end = self._read()
        if self.first_pending and lines:
            lines = self._first_line(lines)
        return lines, at_end

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

    def _first_line(self, lines: list[bytes]) -> list[bytes]:
        """The first whole line has come: it settles the format (and the decoder, made
        again); a header row is taken out of ``lines``, counted as line 1."""
        self.first_pending = False
        self.format = format_of("-", self.cfg.input_format, lines[0])
        if self.format not in LINE_FORMATS:
            FAILURE.append(
                "standard input looks like TREC Session Track XML, which is read from files "
                "only (save it to a file and run on that)"
            )
            raise InputError(FAILURE[-1])
        if self.format in HEADED:
            self.header = lines[0]
            lines = lines[1:]
            self.seq += 1
            self.stats["lines"] += 1
        self.decoder = self.make_decoder()
        return lines


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
    plain files of lines (JSON Lines, CSV, TSV, the AOL log; not gzip, not a JSON
    array) bigger than one block are read in lanes, one per worker (see
    :class:`LanePartition`), unless reading them whole already keeps every worker
    equally busy over the same stretch of event time (see :func:`_whole_files_fit`:
    files split by user, say). Lanes cost a few percent; a big file, or files split
    by time, read whole would leave workers idle or hours of event time apart.

    Bytewax sorts partition names and deals them out to workers in turn, so the names
    start with their place in this list: plain files first, a file's lanes in worker
    order, so lane *w* (or the *w*-th file of each round) is read by worker *w*.

    >>> from search_sessions.config import Config
    >>> read_partitions(Config(inputs=("-",), partitions=("-",)), 2, 1 << 19)
    [ReadPart(name='00000 -', input_index=0, lane=0, lanes=1)]
    """
    plain: list[int] = []
    other: list[int] = []
    sizes: dict[int, int] = {}
    lanes_possible = n_workers > 1 and cfg.input_format in LINE_FORMATS | {"auto"}
    for i, name in enumerate(cfg.partitions):
        size = _plain_file_size(name, cfg.input_format) if lanes_possible else None
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
        name = cfg.partitions[i]
        with open(name, "rb") as f:
            head = f.read(1 << 16)
        fmt = format_of(name, cfg.input_format, head)
        if fmt not in LINE_FORMATS:
            return False
        header = head.partition(b"\n")[0] if fmt in HEADED else None
        firsts.append(first_event_time(head, line_decoder(fmt, 0, cfg.layout, header)))
    if NEVER in firsts:
        return False
    return max(firsts) - min(firsts) <= cfg.gap_us + cfg.lateness_us


def first_event_time(head: bytes, decoder: EventDecoder | None = None) -> int:
    """The time of the first valid event among the whole lines of ``head`` (the start
    of an input, or of a lane's block), decoded by ``decoder`` (JSON Lines in our names
    by default), else NEVER."""
    if decoder is None:
        decoder = EventDecoder(0)
    for seq, line in enumerate((head[: head.rfind(b"\n") + 1] or head).splitlines()[:100], 1):
        ev = decoder.decode(line, seq)
        if isinstance(ev, tuple):
            return ev[0]
        if isinstance(ev, list) and ev:
            return ev[0][0]
    return NEVER


def _plain_file_size(name: str, input_format: str = "auto") -> int | None:
    """The size of a plain file of lines (not gzip, not a JSON array, not Parquet, not
    XML), else None."""
    if scheme_of(name) is not Scheme.FILE or name.endswith((".json", ".json.gz", ".parquet")):
        return None
    try:
        with open(name, "rb") as f:
            if f.read(2) == GZIP_MAGIC:
                return None
            if file_format(name, input_format) not in LINE_FORMATS:
                return None
            return os.fstat(f.fileno()).st_size
    except OSError:
        return None


# Outputs ----------------------------------------------------------------------


def _write_failed(path: str, exc: OSError) -> OutputError:
    """The one-line reason a file output failed (a full disk, say), noted for the run's
    error message."""
    FAILURE.append(
        f"could not write {path}: {exc.strerror or exc}; with --recovery-dir, rerun the same "
        "command once that is fixed and the job resumes from its last snapshot"
    )
    return OutputError(FAILURE[-1])


class _FileSinkPartition(StatefulSinkPartition[bytes, int]):
    def __init__(self, path: str, resume_offset: int | None) -> None:
        self.path = path
        if resume_offset is None:
            # Not open(path, "wb"): start_output left the file empty, and ext4 writes back
            # a file that was opened with O_TRUNC when it is closed (its auto_da_alloc:
            # 50-80 ms at the end of a 1M run, blocking, for two outputs).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
            self.file: BinaryIO = os.fdopen(fd, "wb")  # (closed in close())
            if os.fstat(fd).st_size:  # (not started by start_output: a library user's sink)
                self.file.truncate(0)
        else:
            self.file = open(path, "r+b")  # noqa: SIM115
            self.file.truncate(resume_offset)
            self.file.seek(resume_offset)

    def write_batch(self, values: list[bytes]) -> None:
        try:
            self.file.writelines(values)  # (not joined first: no copy of the batch)
            self.file.flush()  # readers (and a live tail) see whole lines as they come
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc
        crashpoints.wrote()

    def snapshot(self) -> int:
        try:
            self.file.flush()
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


class _AppendPartition(StatefulSinkPartition[bytes, None]):
    """One of several workers appending blocks of whole lines to the same file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def write_batch(self, values: list[bytes]) -> None:
        data = memoryview(b"".join(values))
        try:
            while data:
                # One write per block: appends by several processes do not interleave
                # within it. A short write happens only on errors like a full disk.
                data = data[os.write(self.fd, data) :]
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc
        crashpoints.wrote()

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        os.close(self.fd)


class _StreamPartition(StatefulSinkPartition[bytes, None]):
    """Standard output (``-``), or a ``path`` that is a stream (see :func:`is_stream`):
    written as it comes, with no position to snapshot (a stream cannot be cut back)."""

    def __init__(self, path: str = "-") -> None:
        self.path = path
        std = standard_stream(path)
        # (The run's own standard streams, not descriptors 1 and 2: see runtime.streams.)
        self.file: BinaryIO = (
            open(path, "wb")  # noqa: SIM115 - closed in close()
            if std is None
            else (sys.stdout if std == 1 else sys.stderr).buffer
        )

    def write_batch(self, values: list[bytes]) -> None:
        try:
            self.file.writelines(values)
            self.file.flush()
        except BrokenPipeError as exc:
            what = "standard output" if self.path == "-" else self.path
            FAILURE.append(f"{what} was closed by its reader (as `| head` does)")
            raise OutputError(FAILURE[-1]) from exc
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        if standard_stream(self.path) is None:
            self.file.close()
        else:
            self.file.flush()


def writer_parts(n: int) -> list[str]:
    """Names for one partition per worker. Bytewax sorts a sink's partition names,
    deals them out to the workers in turn and reads ``part_fn``'s answer as an
    index into that order, so partition *i* (in sorted order) is on worker *i*
    (``tests/test_routing.py`` checks that a shard's lines stay on its worker)."""
    return [f"worker-{i:04d}" for i in range(n)]


class JsonLinesSink(FixedPartitionedSink[bytes, Any]):
    """Writes blocks of JSON lines to ``path`` (``-`` for standard output).

    With ``keys`` (one shard key per worker, see
    :func:`~search_sessions.dataflow.routing.shard_keys`) every
    worker appends to the file itself: an item keyed by shard *i* goes to the
    partition on worker *i*, which is where shard *i* runs; other keys go to
    worker 0. No state is kept, so this is for runs without a recovery store.

    >>> JsonLinesSink("out.jsonl").list_parts()
    ['out.jsonl']
    >>> JsonLinesSink("out.jsonl", ["shard-4", "shard-0"]).part_fn("shard-0")
    1
    """

    def __init__(self, path: str, keys: list[str] | None = None) -> None:
        self.path = path
        self.writers = {} if keys is None or is_stream(path) else {k: i for i, k in enumerate(keys)}

    def list_parts(self) -> list[str]:
        return writer_parts(len(self.writers)) if self.writers else [self.path]

    def part_fn(self, item_key: str) -> int:
        return self.writers.get(item_key, 0)

    def build_part(
        self, step_id: str, for_part: str, resume_state: Any
    ) -> StatefulSinkPartition[bytes, Any]:
        if is_stream(self.path):
            return _StreamPartition(self.path)
        if self.writers:
            return _AppendPartition(self.path)
        return _FileSinkPartition(self.path, resume_state)
