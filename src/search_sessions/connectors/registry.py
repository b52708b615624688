"""From specs to Bytewax sources and sinks: the connectors' registry.

The rest of the package names inputs and outputs only through these
functions: :func:`expand_inputs` turns the inputs given into the list of input
partitions (a directory's files, a topic's partitions), :func:`open_partition`
builds the partition that reads one, :func:`output_sink` the sink for an output,
and :func:`prepare_output` / :func:`start_output` get an output ready before a run.
Optional back-ends (Kafka, PostgreSQL, pyarrow for Parquet) are imported only when a
spec needs them; a missing one raises an ``ImportError`` that names the pip extra.
"""

from __future__ import annotations

import os
from typing import Any

from bytewax.outputs import FixedPartitionedSink

from ..config import Config
from ..core.schema import OutputKind
from .base import LinePartition, PartitionContext
from .files import (
    FilePartition,
    JsonLinesSink,
    LanePartition,
    ReadPart,
    StdinPartition,
)
from .inputs import expand_inputs, file_format, is_stream, resolve_inputs
from .specs import Scheme, scheme_of, source_label, sqlite_path

__all__ = [
    "expand_inputs",
    "open_partition",
    "output_sink",
    "prepare_output",
    "resolve_inputs",
    "source_label",
    "start_output",
]


def open_partition(
    cfg: Config, rp: ReadPart, place: int, shard_keys: list[str], **ctx: Any
) -> LinePartition:
    """The partition that reads ``rp`` (an input, or a lane of one), the ``place``-th of
    the source; ``ctx`` carries the rest of its :class:`PartitionContext`."""
    name = cfg.partitions[rp.input_index]
    context = PartitionContext(cfg, place, rp.input_index, source_label(name), shard_keys, **ctx)
    scheme = scheme_of(name)
    if scheme is Scheme.STDIO:
        return StdinPartition(context, cfg.block_bytes)
    if scheme is Scheme.KAFKA:
        from .kafka import KafkaPartition

        return KafkaPartition(context, name, cfg.tail, cfg.stop_at_end)
    if _is_parquet(name, cfg.input_format):
        from .parquet import ParquetPartition

        return ParquetPartition(context, name, cfg.block_bytes, rp.lane, rp.lanes)
    if file_format(name, cfg.input_format) == "trec":
        from .trec import TrecPartition

        return TrecPartition(context, name, cfg.block_bytes, rp.lane, rp.lanes)
    if rp.lanes > 1:
        return LanePartition(context, name, cfg.block_bytes, rp.lane, rp.lanes)
    return FilePartition(context, name, cfg.block_bytes)


def output_sink(
    spec: str, kind: OutputKind, keys: list[str] | None = None
) -> FixedPartitionedSink[bytes, Any]:
    """A file (or ``-``), a Kafka topic (``kafka://``), a SQL table (``sqlite:///``,
    ``postgresql://``), a Parquet file (``.parquet``: one writer, ``keys`` ignored). With
    ``keys`` (the shard keys, one per worker) every worker appends to a JSON Lines file
    itself (see :class:`~search_sessions.connectors.files.JsonLinesSink`)."""
    scheme = scheme_of(spec)
    if scheme is Scheme.KAFKA:
        from .kafka import KafkaSink

        return KafkaSink(spec, kind)
    if scheme is Scheme.SQL:
        from .sql import SqlSink

        return SqlSink(spec, kind)
    if scheme is Scheme.FILE and _is_parquet(spec):
        from .parquet import ParquetSink

        return ParquetSink(spec, kind)
    return JsonLinesSink(spec, keys)


def _is_parquet(name: str, input_format: str = "auto") -> bool:
    """A Parquet input (by ``--format``, or by name) or output (by name, any case); the
    Parquet module itself is imported only then (it loads pyarrow)."""
    return input_format == "parquet" or (
        input_format == "auto" and name.lower().endswith(".parquet")
    )


def prepare_output(spec: str) -> None:
    """Create the directory a file or SQLite output goes into."""
    scheme = scheme_of(spec)
    if scheme is Scheme.FILE:
        parent = os.path.dirname(spec)
    elif scheme is Scheme.SQL and spec.startswith("sqlite:///"):
        parent = os.path.dirname(sqlite_path(spec))
    else:
        return
    if parent:
        os.makedirs(parent, exist_ok=True)


def start_output(spec: str, kind: OutputKind | None = None) -> None:
    """Start an output afresh: a file empty (Bytewax only opens a sink once it has a
    record), a database with its tables (they stay: rows are upserted), a Parquet file
    without its old parts (and, given its ``kind``, empty with the kind's schema)."""
    scheme = scheme_of(spec)
    if scheme is Scheme.FILE and _is_parquet(spec):
        from .parquet import start_parquet

        start_parquet(spec, kind)
    elif scheme is Scheme.FILE and not is_stream(spec):
        open(spec, "wb").close()
    elif scheme is Scheme.SQL:
        from .sql import Database

        Database(spec).close()
