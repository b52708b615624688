"""The run's counters: every partition and shard adds to one JSON file at the end."""

from __future__ import annotations

import json
import os

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

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
