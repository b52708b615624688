"""The ``rollup`` step: merges every shard's partial window sums, one state per length."""

from __future__ import annotations

import pickle
from collections.abc import Iterable

import msgspec
from bytewax.operators import StatefulBatchLogic

from ..core.rollups import WindowAgg, window_records
from ..core.time import NEVER

_encode = msgspec.json.encode


RollupPartial = tuple[str, int, int, dict[int, WindowAgg]]
"""``(length name, shard, low_us, {window_start_us: partial sums})`` from one shard batch."""
RollupState = tuple[str, dict[int, WindowAgg], dict[int, int]]


class RollupLogic(StatefulBatchLogic[RollupPartial, bytes, bytes | None]):
    """All windows of one length: merges the shards' partial sums and emits a window's
    rows again whenever they change (the last row per key is exact; an upserting sink
    keeps it). A window is forgotten once every shard is past its end, so memory
    follows the open windows."""

    def __init__(
        self, lengths: dict[str, int], n_shards: int, resume: bytes | None, keep: bool
    ) -> None:
        self.lengths = lengths
        self.n_shards = n_shards
        state: RollupState = pickle.loads(resume) if resume else ("", {}, {})
        self.name, self.windows, self.lows = state
        self.keep = keep

    def on_batch(self, values: list[RollupPartial]) -> tuple[Iterable[bytes], bool]:
        touched: dict[int, tuple[set[str], set[tuple[str, str]]]] = {}
        self.name = values[0][0]
        self.length_s = self.lengths[self.name]
        for _name, shard, low, partials in values:
            for start, part in partials.items():
                agg = self.windows.get(start)
                if agg is None:
                    agg = self.windows[start] = WindowAgg()
                agg.merge(part)
                queries, dims = touched.setdefault(start, (set(), set()))
                queries.update(part.queries)
                dims.update(part.dimensions)
            if low > self.lows.get(shard, NEVER):
                self.lows[shard] = low
        lines = []
        for start in sorted(touched):
            window, rows = window_records(
                (self.name, start), self.windows[start], self.length_s, *touched[start]
            )
            lines.append(_encode(window))
            lines += [_encode(row) for row in rows]
        if len(self.lows) == self.n_shards:
            done_before = min(self.lows.values())
            size = self.length_s * 1_000_000
            for start in [s for s in self.windows if s + size <= done_before]:
                del self.windows[start]
        out = [b"\n".join(lines) + b"\n"] if lines else []
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        # Pickled at once (later batches cannot change it), and about ten times cheaper
        # than a deep copy that Bytewax would pickle again anyway.
        if not self.keep:
            return None
        return pickle.dumps((self.name, self.windows, self.lows), pickle.HIGHEST_PROTOCOL)
