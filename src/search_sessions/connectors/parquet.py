"""Parquet: events in, records out, through pyarrow (imported only when a run uses Parquet).

Input: a ``.parquet`` file (or any file with ``--format parquet``) is one input
partition, read a record batch at a time (bounded memory). Each row becomes one
JSON object line, so the JSON decoder (and with it ``--field``, ``--type`` and
``--time-unit``) reads it like a JSON Lines record: timestamp columns become
RFC 3339 text (a zone-less timestamp is UTC), epoch numbers stay numbers, list
columns become arrays, nulls are left out. Only the columns the decoder reads
are loaded (a wide table costs nothing extra). Positions are row numbers
(1-based): a dead letter names ``FILE:ROW``, and a resumed partition skips the
rows it had read (whole row groups by the footer, then a slice).

Output: one Parquet file per output, whatever the parallelism: the sink has a
single partition, so one worker writes it. The schema is fixed per record kind
(:func:`arrow_schema`, derived from :mod:`search_sessions.core.schema`). To be
exact after a ``kill -9`` (a Parquet file is only readable once its footer is
written, and pyarrow cannot append to one), each epoch's rows go to a numbered
part file in a hidden sibling directory (``.NAME.parts/``), written in row groups
of up to :data:`ROW_GROUP_ROWS` rows; at a snapshot the part is finished (footer,
``fsync``) and the snapshot state is the number of parts (and rows) committed. A
resumed partition deletes the parts beyond its state, so the epochs after the
snapshot are written again, once. When the run ends (``close()``) the parts are
combined, batch by batch, into ``NAME`` (written to a temporary name, then renamed
over it) and the directory is removed. The file's footer lists how many rows each
part held, so a run resumed after that (stopped by a signal, or killed between
``close()`` and Bytewax's last commit) rebuilds its committed parts from the
file itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final, NoReturn

# pyarrow's jemalloc starts a background thread when it loads; a process with other
# threads cannot fork a local cluster (see runtime.cluster.can_fork), so keep it off.
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.json as pa_json  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from ..config import FIELD_NAMES
from ..control import FAILURE
from ..core.events import EventDecoder, time_values
from ..core.schema import OutputKind, field_types
from ..core.time import NEVER
from ..crashpoints import CRASH as crashpoints
from ..errors import InputError, OutputError
from .base import LinePartition, PartitionContext

__all__ = [
    "ROW_GROUP_ROWS",
    "ParquetPartition",
    "ParquetSink",
    "arrow_schema",
    "parts_dir",
    "start_parquet",
]

ROW_GROUP_ROWS: Final = 1 << 16
"""Rows per row group written (and buffered before one is written)."""

BYTES_PER_ROW: Final = 128
"""A partition reads ``block_bytes / BYTES_PER_ROW`` rows at a time (4096 for 512 KB)."""

REQUIRED_COLUMNS: Final = ("type", "user", "time")
"""Fields every event has: a file without a column for one of them cannot be read."""

TIME_FIELDS: Final = frozenset({"time", "start", "end", "window_start", "window_end"})
"""Record fields holding RFC 3339 UTC times (``timestamp[us, UTC]`` in Parquet)."""

PARTS_KEY: Final = b"search_sessions.parts"
"""Footer metadata: the cumulative row counts of the parts a file was combined from."""

_PART_COMPRESSION: Final = "snappy"
"""Parts are temporary: fast to write and read back."""
_FILE_COMPRESSION: Final = "zstd"


# Input -------------------------------------------------------------------------


def _column_converter(field: Any) -> Callable[[Any], list[Any]]:
    """How one column of a record batch becomes Python values that JSON encodes as the
    decoder expects: timestamps as RFC 3339 text (zone-less ones are UTC; digits past
    the microsecond truncated), decimals as numbers, everything else as it is.

    Timestamps are formatted in Arrow, as UTC wall-clock times (a zone-less view of the
    instants) with a ``Z``: ten times cheaper than formatting them in their zone, and
    than making ``datetime`` objects."""
    t = field.type
    if pa.types.is_timestamp(t):
        utc, wall = pa.timestamp("us", "UTC"), pa.timestamp("us")

        def times(col: Any) -> list[Any]:
            text = col.cast(utc, safe=False).view(wall).cast(pa.string())
            return pc.binary_join_element_wise(text, "Z", "").to_pylist()

        return times
    if pa.types.is_decimal(t):
        target = pa.int64() if t.scale == 0 else pa.float64()
        return lambda col: col.cast(target, safe=False).to_pylist()
    return lambda col: col.to_pylist()


def _refuse(message: str) -> NoReturn:
    """An input that cannot be read at all: the run's error message (Bytewax's own
    names only the partition)."""
    FAILURE.append(message)
    raise InputError(message)


class ParquetPartition(LinePartition):
    """A Parquet file of events, one JSON object line per row (see the module docstring).

    Parquet files are never read in lanes; should the source still cut one into
    lanes (a file not named ``.parquet`` read with ``--format parquet``), lane 0
    reads it all and the other lanes are empty.
    """

    aligned = True

    def __init__(
        self,
        ctx: PartitionContext,
        path: str,
        block_bytes: int,
        lane: int = 0,
        lanes: int = 1,
    ) -> None:
        super().__init__(ctx)
        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            _refuse(f"{path}: not a readable Parquet file ({exc})")
        self.counts_as_input = lane == 0
        self.total = self.file.metadata.num_rows if lane == 0 else 0
        self.batch_rows = max(16, block_bytes // BYTES_PER_ROW)
        schema = self.file.schema_arrow
        wanted = {ctx.cfg.layout.name_of(f) for f in FIELD_NAMES} | set(ctx.cfg.dimensions)
        names = [n for n in dict.fromkeys(schema.names) if n in wanted]
        missing = [
            ctx.cfg.layout.name_of(f)
            for f in REQUIRED_COLUMNS
            if ctx.cfg.layout.name_of(f) not in names
        ]
        if missing:
            _refuse(
                f"{path}: no column {', '.join(missing)} (its columns: "
                f"{', '.join(schema.names[:20])}); name them with --field, "
                "e.g. --field user=anon_id"
            )
        self.columns = names
        self.converters = [_column_converter(schema.field(n)) for n in names]
        # Rows encode as a struct of the file's columns whose nulls are left out.
        row = msgspec.defstruct(
            "ParquetRow",
            [(f"f{i}", object, None) for i in range(len(names))],
            rename={f"f{i}": n for i, n in enumerate(names)},
            omit_defaults=True,
            gc=False,
        )
        self.row: Callable[..., Any] = row
        self.encode = msgspec.json.Encoder().encode
        self.batches: Iterator[Any] | None = None

    def make_decoder(self) -> EventDecoder:
        # Rows arrive as JSON objects named as the file's columns.
        return EventDecoder(self.input_index, self.cfg.layout)

    def read(self) -> tuple[list[bytes], bool]:
        if self.batches is None:
            self.batches = self._batches(self.seq)
        batch = next(self.batches, None)
        if batch is None:
            return [], True
        lines = self._lines(batch)
        return lines, self.seq + len(lines) >= self.total

    def _batches(self, skip: int) -> Iterator[Any]:
        """Record batches of the file from row ``skip`` on: whole row groups are skipped
        by the footer's row counts, the rest of the way by slicing."""
        meta = self.file.metadata
        groups: list[int] = []
        for g in range(meta.num_row_groups if self.total else 0):
            n = meta.row_group(g).num_rows
            if not groups and skip >= n:
                skip -= n
                continue
            groups.append(g)
        if not groups:
            return
        for batch in self.file.iter_batches(
            batch_size=self.batch_rows, row_groups=groups, columns=self.columns, use_threads=False
        ):
            if skip:
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                batch = batch.slice(skip)
                skip = 0
            yield batch

    def _lines(self, batch: Any) -> list[bytes]:
        cols = [convert(col) for convert, col in zip(self.converters, batch.columns, strict=True)]
        encode, row = self.encode, self.row
        return [encode(row(*values)) + b"\n" for values in zip(*cols, strict=True)]

    def _consumed(self, size: int) -> None:
        pass  # positions are rows (seq); the byte offset stays 0

    def scan_times(self) -> Iterator[list[int | None]]:
        # The time column alone, each value read as in a row's line (its JSON value).
        if not self.total:
            return  # a lane past the first is empty
        name = self.cfg.layout.name_of("time")
        convert = self.converters[self.columns.index(name)]
        with contextlib.closing(pq.ParquetFile(self.path)) as file:
            for batch in file.iter_batches(1 << 16, columns=[name], use_threads=False):
                values = msgspec.json.decode(self.encode(convert(batch.column(0))))
                yield time_values(values, self.cfg.layout.time_unit)

    def find_first_time(self) -> None:
        if self.newest != NEVER or self.seq or not self.total:
            return
        decoder = EventDecoder(self.input_index, self.cfg.layout)
        for batch in self._batches(0):
            for line in self._lines(batch.slice(0, 100)):
                ev = decoder.decode(line, 0)
                if isinstance(ev, tuple):
                    self.first_us = ev[0]
                    return
            return

    def close(self) -> None:
        super().close()
        self.batches = None
        self.file.close()


# Output ------------------------------------------------------------------------

_ARROW_TYPES: Final[dict[type, Any]] = {
    str: pa.string(),
    int: pa.int64(),
    bool: pa.bool_(),
    float: pa.float64(),
    object: pa.string(),  # ``Any`` (a problem's record): JSON text, or the line as text
}


def arrow_schema(kind: OutputKind) -> Any:
    """The Parquet schema of an output kind, from its record types: fields in record
    order, ``X | None`` fields nullable, times ``timestamp[us, UTC]``, ``Any`` fields
    JSON text. A kind with several record types (rollups) has their union, led by
    the tag column (``level``); a column one type lacks is null in its rows.

    >>> arrow_schema(OutputKind.SESSIONS).field("start").type
    TimestampType(timestamp[us, tz=UTC])
    >>> rollups = arrow_schema(OutputKind.ROLLUPS)
    >>> rollups.names[:4], rollups.field("query").nullable, rollups.field("window").nullable
    (['level', 'window', 'window_start', 'window_end'], True, False)
    >>> rollups.field("dimension").nullable, rollups.field("value").type
    (True, DataType(string))
    """
    types = kind.record_types
    columns: dict[str, tuple[Any, bool]] = {}
    tag = types[0].__struct_config__.tag_field
    if tag is not None:
        columns[tag] = (pa.string(), False)
    order: list[str] = list(columns)
    for record_type in types:
        fields = field_types(record_type)
        for i, (name, scalar, nullable) in enumerate(fields):
            arrow = pa.timestamp("us", "UTC") if name in TIME_FIELDS else _ARROW_TYPES[scalar]
            if name in columns:
                was, was_nullable = columns[name]
                columns[name] = (was, was_nullable or nullable)
                continue
            columns[name] = (arrow, nullable)
            # A column new in a later type goes after the one before it in that type.
            after = fields[i - 1][0] if i else (tag or "")
            order.insert(order.index(after) + 1 if after in order else len(order), name)
    # Required only where every record type has it, never null.
    everywhere = set.intersection(*({n for n, _, _ in field_types(t)} for t in types))
    if tag is not None:
        everywhere.add(tag)
    return pa.schema(
        [pa.field(n, columns[n][0], nullable=columns[n][1] or n not in everywhere) for n in order]
    )


def parts_dir(path: str) -> str:
    """The hidden directory beside ``path`` holding its parts while a run writes it.

    >>> parts_dir("out/searches.parquet")
    'out/.searches.parquet.parts'
    """
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}.parts")


def _temp_path(path: str, unique: bool = False) -> str:
    head, name = os.path.split(path)
    mark = f".{os.getpid()}.{threading.get_ident()}" if unique else ""
    return os.path.join(head, f".{name}{mark}.tmp")


def _part_path(directory: str, i: int) -> str:
    return os.path.join(directory, f"part-{i:06d}.parquet")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _write_file(
    path: str, schema: Any, batches: Iterator[Any], parts: list[int], unique: bool = False
) -> None:
    """Write ``batches`` to ``path`` atomically (a temporary name renamed over it), in row
    groups of :data:`ROW_GROUP_ROWS`, with the parts' cumulative row counts in the footer.
    ``unique``: a temporary name of this thread's own (several may write the same file)."""
    tmp = _temp_path(path, unique)
    meta = {PARTS_KEY: json.dumps(parts).encode()}
    with pq.ParquetWriter(tmp, schema.with_metadata(meta), compression=_FILE_COMPRESSION) as w:
        pending: list[Any] = []
        rows = 0
        for batch in batches:
            pending.append(batch)
            rows += batch.num_rows
            if rows >= ROW_GROUP_ROWS:
                w.write_table(pa.Table.from_batches(pending), row_group_size=rows)
                pending, rows = [], 0
        if rows:
            w.write_table(pa.Table.from_batches(pending), row_group_size=rows)
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(os.path.dirname(os.path.abspath(path)))


def start_parquet(path: str, kind: OutputKind | None) -> None:
    """Start a Parquet output afresh: no old parts, and (knowing its kind) an empty file
    with the kind's schema, so an output that gets no record is still a valid file."""
    _remove(parts_dir(path))
    _remove(_temp_path(path))
    if kind is None:
        _remove(path)
    else:
        _write_file(path, arrow_schema(kind), iter(()), [])


def _parts_in(path: str) -> list[int] | None:
    """The cumulative row counts of the parts a finished file holds (None if no such file)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    raw = meta.get(PARTS_KEY)
    return None if raw is None else [int(n) for n in json.loads(raw)]


PartsState = tuple[int, int]
"""A Parquet sink's snapshot: ``(parts, rows)`` committed."""


class _LinesToTable:
    """Blocks of JSON lines of one kind to an Arrow table of its schema."""

    def __init__(self, kind: OutputKind, schema: Any) -> None:
        self.schema = schema
        self.parse_schema = pa.schema([f.with_nullable(True) for f in schema])
        json_fields = [
            name for t in kind.record_types for name, s, _ in field_types(t) if s is object
        ]
        self.json_fields = tuple(dict.fromkeys(json_fields))
        self.decode = msgspec.json.Decoder(dict[str, Any]).decode
        self.encode = msgspec.json.encode

    def __call__(self, data: bytes) -> Any:
        if self.json_fields:
            data = self._texts(data)
        options = pa_json.ParseOptions(
            explicit_schema=self.parse_schema, unexpected_field_behavior="ignore"
        )
        # One block: a line longer than a block would not parse.
        read = pa_json.ReadOptions(block_size=len(data) + 1, use_threads=False)
        table = pa_json.read_json(io.BytesIO(data), read_options=read, parse_options=options)
        return table.cast(self.schema)

    def _texts(self, data: bytes) -> bytes:
        """``Any`` fields (a late event's record) as JSON text, as in the SQL tables."""
        out = []
        for line in data.splitlines():
            rec = self.decode(line)
            for name in self.json_fields:
                value = rec.get(name)
                if value is not None and not isinstance(value, str):
                    rec[name] = self.encode(value).decode()
            out.append(self.encode(rec))
        out.append(b"")
        return b"\n".join(out)


class _ParquetSinkPartition(StatefulSinkPartition[bytes, PartsState]):
    """Writes one Parquet output: parts per epoch, combined at the end (module docstring)."""

    def __init__(self, path: str, kind: OutputKind, resume: PartsState | None) -> None:
        self.path = path
        self.kind = kind
        self.schema = arrow_schema(kind)
        self.to_table = _LinesToTable(kind, self.schema)
        self.dir = parts_dir(path)
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.writer: Any = None
        self.part_rows = 0
        self.failed = False
        self.split_pending: list[int] | None = None
        """Committed parts still only in the finished file (see :meth:`_restore`)."""
        self.parts, self.rows = resume if resume is not None else (0, 0)
        if resume is None:
            _remove(self.dir)
            os.makedirs(self.dir)
        else:
            self._restore()

    def _restore(self) -> None:
        """Back to the committed parts: drop later ones (from the epochs after the
        snapshot, written again now); if the parts are gone because a run had combined
        them, find them in the finished file."""
        k = self.parts
        _remove(_temp_path(self.path))
        os.makedirs(self.dir, exist_ok=True)
        committed = {os.path.basename(_part_path(self.dir, i)) for i in range(k)}
        present = set(os.listdir(self.dir))
        if committed <= present:
            for name in present - committed:
                os.remove(os.path.join(self.dir, name))
            rows = sum(pq.read_metadata(_part_path(self.dir, i)).num_rows for i in range(k))
            if rows != self.rows:
                raise OutputError(f"{self.path}: its parts hold {rows} rows, not {self.rows}")
            return
        cum = _parts_in(self.path)
        if cum is None or len(cum) < k or (cum[k - 1] if k else 0) != self.rows:
            raise OutputError(
                f"{self.path}: cannot resume: the rows written before the snapshot are "
                f"missing ({self.dir} and the file were changed); delete the recovery "
                "directory and the outputs to start over"
            )
        for name in present:
            os.remove(os.path.join(self.dir, name))
        self.split_pending = cum[:k]

    def _split(self) -> None:
        """Write the committed parts back out of the finished file (one pass over it)."""
        assert self.split_pending is not None
        cum, self.split_pending = self.split_pending, None
        if not cum:
            return
        src = pq.ParquetFile(self.path)
        try:
            batches = src.iter_batches(batch_size=ROW_GROUP_ROWS, use_threads=False)
            carry, done = None, 0
            for i, end in enumerate(cum):
                part = _part_path(self.dir, i)
                with pq.ParquetWriter(part, self.schema, compression=_PART_COMPRESSION) as w:
                    while done < end:
                        if carry is None:
                            carry = next(batches)
                        take = min(carry.num_rows, end - done)
                        w.write_table(pa.Table.from_batches([carry.slice(0, take)]))
                        done += take
                        carry = carry.slice(take) if take < carry.num_rows else None
                _fsync(part)
            _fsync(self.dir)
        finally:
            src.close()

    def write_batch(self, values: list[bytes]) -> None:
        self.failed = True  # until it returns: a failed sink does not combine at close
        for block in values:
            if block:
                self.buffer.append(block)
                self.buffered += block.count(b"\n")
        if self.buffered >= ROW_GROUP_ROWS:
            self._flush()
        self.failed = False
        crashpoints.wrote()

    def _flush(self) -> None:
        """The buffered lines as a row group of the epoch's part."""
        if not self.buffered:
            return
        table = self.to_table(b"".join(self.buffer))
        self.buffer, self.buffered = [], 0
        if self.writer is None:
            if self.split_pending is not None:
                self._split()
            self.writer = pq.ParquetWriter(
                _part_path(self.dir, self.parts), self.schema, compression=_PART_COMPRESSION
            )
        self.writer.write_table(table, row_group_size=max(1, table.num_rows))
        self.part_rows += table.num_rows

    def _finish_part(self) -> None:
        """Close the epoch's part (footer written, data on disk)."""
        self._flush()
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        _fsync(_part_path(self.dir, self.parts))
        _fsync(self.dir)
        self.parts += 1
        self.rows += self.part_rows
        self.part_rows = 0

    def snapshot(self) -> PartsState:
        self.failed = True
        self._finish_part()
        self.failed = False
        return (self.parts, self.rows)

    def close(self) -> None:
        """The run is over: combine the parts into the file (and drop them).

        Bytewax calls this as it drops the sink, where an exception aborts the process
        with no message of its own: the reason goes to ``FAILURE`` first (the run's error
        message). After a failed write the parts are left as they are."""
        if self.failed:
            return
        try:
            self._combine()
        except Exception as exc:
            FAILURE.append(f"{self.path}: could not finish the Parquet file: {exc}")
            raise

    def _combine(self) -> None:
        self._finish_part()
        if self.split_pending is not None:
            if len(self.split_pending) == len(_parts_in(self.path) or ()):
                # Nothing new since a finished run: the file is already the result.
                _remove(self.dir)
                return
            self._split()
        paths = [_part_path(self.dir, i) for i in range(self.parts)]
        cum, total = [], 0
        for p in paths:
            total += pq.read_metadata(p).num_rows
            cum.append(total)
        _write_file(self.path, self.schema, self._part_batches(paths), cum)
        _remove(self.dir)

    @staticmethod
    def _part_batches(paths: list[str]) -> Iterator[Any]:
        for p in paths:
            f = pq.ParquetFile(p)
            try:
                yield from f.iter_batches(batch_size=ROW_GROUP_ROWS, use_threads=False)
            finally:
                f.close()


class ParquetSink(FixedPartitionedSink[bytes, PartsState]):
    """Writes blocks of JSON lines of one record kind to a Parquet file (one writer).

    >>> ParquetSink("out/searches.parquet", OutputKind.SEARCHES).part_fn("shard-3")
    0
    """

    def __init__(self, path: str, kind: OutputKind) -> None:
        self.path = path
        self.kind = kind

    def list_parts(self) -> list[str]:
        # Every worker lists the parts as the flow starts. Bytewax builds the partition
        # only once it has a record, so without this an output that gets none would have
        # no file when the run did not start it (``start_output`` with the kind does).
        if not os.path.exists(self.path):
            # (On a host of a cluster without the output's directory, not its writer.)
            with contextlib.suppress(OSError):
                _write_file(self.path, arrow_schema(self.kind), iter(()), [], unique=True)
        return [self.path]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartsState | None
    ) -> _ParquetSinkPartition:
        return _ParquetSinkPartition(self.path, self.kind, resume_state)
