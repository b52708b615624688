"""Bytewax outputs: one JSON Lines file per output, whatever the parallelism.

Upstream steps send pre-encoded blocks of lines (``bytes``), so a sink only
writes. Two ways to share a file between workers:

- one writer (the default, and always with a recovery store): the sink has a
  single partition, so one worker owns the file; its snapshot is the byte
  offset, and a resumed partition truncates the file back to it (so a restart
  neither loses nor repeats a line);
- every worker appends (``JsonLinesSink`` given the shard keys: a run on one host
  without a recovery store): one partition per worker, each an ``O_APPEND`` descriptor that takes
  whole blocks of lines in one ``write``, so blocks never interleave inside a
  line and no worker ships its lines to another process.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, BinaryIO

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition


class _FilePartition(StatefulSinkPartition[bytes, int]):
    def __init__(self, path: str, resume_offset: int | None) -> None:
        if resume_offset is None:
            self.file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        else:
            self.file = open(path, "r+b")  # noqa: SIM115
            self.file.truncate(resume_offset)
            self.file.seek(resume_offset)

    def write_batch(self, values: list[bytes]) -> None:
        self.file.write(b"".join(values))
        self.file.flush()  # readers (and a live tail) see whole lines as they come

    def snapshot(self) -> int:
        self.file.flush()
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


class _AppendPartition(StatefulSinkPartition[bytes, None]):
    """One of several workers appending blocks of whole lines to the same file."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def write_batch(self, values: list[bytes]) -> None:
        data = memoryview(b"".join(values))
        while data:
            # One write per block: appends by several processes do not interleave
            # within it. A short write happens only on errors like a full disk.
            data = data[os.write(self.fd, data) :]

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        os.close(self.fd)


class _StdoutPartition(StatefulSinkPartition[bytes, None]):
    def write_batch(self, values: list[bytes]) -> None:
        out = sys.stdout.buffer
        out.write(b"".join(values))
        out.flush()

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        sys.stdout.buffer.flush()


def writer_parts(n: int) -> list[str]:
    """Names for one partition per worker. Bytewax sorts a sink's partition names,
    deals them out to the workers in turn and reads ``part_fn``'s answer as an
    index into that order, so partition *i* (in sorted order) is on worker *i*
    (``tests/test_routing.py`` checks that a shard's lines stay on its worker)."""
    return [f"worker-{i:04d}" for i in range(n)]


class JsonLinesSink(FixedPartitionedSink[bytes, Any]):
    """Writes blocks of JSON lines to ``path`` (``-`` for standard output).

    With ``keys`` (one shard key per worker, see ``flow.shard_keys``) every
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
        self.writers = {} if keys is None or path == "-" else {k: i for i, k in enumerate(keys)}

    def list_parts(self) -> list[str]:
        return writer_parts(len(self.writers)) if self.writers else [self.path]

    def part_fn(self, item_key: str) -> int:
        return self.writers.get(item_key, 0)

    def build_part(
        self, step_id: str, for_part: str, resume_state: Any
    ) -> StatefulSinkPartition[bytes, Any]:
        if self.path == "-":
            return _StdoutPartition()
        if self.writers:
            return _AppendPartition(self.path)
        return _FilePartition(self.path, resume_state)


STAT_FIELDS = (
    "partitions",
    "lines",
    "events",
    "invalid",
    "duplicates",
    "late",
    "sessions",
    "searches",
    "clicked_searches",
    "clicks",
)


class _StatsPartition(StatefulSinkPartition[dict[str, int], dict[str, int]]):
    def __init__(self, path: str, resume: dict[str, int] | None) -> None:
        self.path = path
        self.totals = dict.fromkeys(STAT_FIELDS, 0) if resume is None else dict(resume)

    def write_batch(self, values: list[dict[str, int]]) -> None:
        for counts in values:
            for k, v in counts.items():
                self.totals[k] = self.totals.get(k, 0) + v

    def snapshot(self) -> dict[str, int]:
        return dict(self.totals)

    def close(self) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.totals, f)
        os.replace(tmp, self.path)


class StatsSink(FixedPartitionedSink[dict[str, int], dict[str, int]]):
    """Adds up counters from every source and shard into one JSON file at the end."""

    def __init__(self, path: str) -> None:
        self.path = path

    def list_parts(self) -> list[str]:
        return ["stats"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: dict[str, int] | None
    ) -> _StatsPartition:
        return _StatsPartition(self.path, resume_state)
