"""Bytewax outputs: one JSON Lines file per output, whatever the parallelism.

Upstream steps send pre-encoded blocks of lines (``bytes``), so a sink only
writes. Each sink has a single partition, so one worker owns the file; its
snapshot is the byte offset, and a resumed partition truncates the file
back to it (so a restart neither loses nor repeats a line).
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


class _StdoutPartition(StatefulSinkPartition[bytes, None]):
    def write_batch(self, values: list[bytes]) -> None:
        out = sys.stdout.buffer
        out.write(b"".join(values))
        out.flush()

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        sys.stdout.buffer.flush()


class JsonLinesSink(FixedPartitionedSink[bytes, Any]):
    """Writes blocks of JSON lines to ``path`` (``-`` for standard output).

    >>> JsonLinesSink("out.jsonl").list_parts()
    ['out.jsonl']
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def list_parts(self) -> list[str]:
        return [self.path]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: Any
    ) -> StatefulSinkPartition[bytes, Any]:
        if self.path == "-":
            return _StdoutPartition()
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
