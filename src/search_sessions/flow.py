"""The Bytewax dataflow: read -> sessionize (per shard) -> write.

::

    read_events ──► split_control ──► sessionize ──► to_outputs ─┐
                         └── dead letters, stats ────────────────┴► merge_outputs ─► write_*

``sessionize`` is a thin ``stateful_batch`` step around the plain-Python
:class:`~search_sessions.sessions.Sessionizer`: one Bytewax key per shard
(one shard per worker), many users per shard, whole batches in and blocks of
encoded lines out. Step ids are stable: recovery keys on them.

The flow is importable for ``python -m bytewax.run``: write the job's config
with ``search-sessions run ... --print-config > job.json``, then::

    SEARCH_SESSIONS_CONFIG=job.json python -m bytewax.run search_sessions.flow:flow -w 2
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Iterable
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink

from ._routes import ROUTED_SHARDS
from .config import Config
from .events import Event, event_to_json, format_time, parse_time, unpack_events
from .progress import METRICS
from .records import SearchRecord
from .rollups import WindowAgg, aggregate, window_records
from .searches import render
from .sessions import FOREVER, NEVER, EmittedSession, Sessionizer
from .sinks import JsonLinesSink, StatsSink
from .sources import STOP, JsonLinesSource, ShardBatch, source_name

_encode = msgspec.json.encode
_encode_lines = msgspec.json.Encoder().encode_lines
OutItem = tuple[str, Any]


def shard_keys(n_workers: int) -> list[str]:
    """One shard key per worker, chosen so Bytewax routes key *i* to worker *i*."""
    picks = ROUTED_SHARDS.get(n_workers) or tuple(range(4 * n_workers))
    return [f"shard-{i}" for i in picks]


class ShardLogic(StatefulBatchLogic[ShardBatch, OutItem, bytes]):
    """Bytewax glue for one shard: feed batches in, render emitted sessions out.

    Its snapshot is the pickled :class:`Sessionizer`: pickled at once, so later
    batches cannot change a snapshot Bytewax has not written yet.
    """

    def __init__(self, cfg: Config, resume: bytes | None, n_parts: int) -> None:
        """``n_parts``: how many partitions the source has (each reports its progress)."""
        self.cfg = cfg
        self.shard = -1
        if resume:
            self.core: Sessionizer = pickle.loads(resume)
        else:
            self.core = Sessionizer(n_parts, cfg.gap_us, cfg.lateness_us, cfg.max_session_us)

    def on_batch(self, values: list[ShardBatch]) -> tuple[Iterable[OutItem], bool]:
        core = self.core
        late: list[tuple[Event, int]] = []
        for part, newest, closed, events, maybe_late, idle_us, shard in values:
            evs = unpack_events(events) if isinstance(events, bytes) else events
            late.extend(core.ingest(part, newest, closed, evs, maybe_late, idle_us))
            self.shard = shard
        emitted = core.advance()
        before = list(core.counters)
        out, searches = self._render(emitted, late)
        self._report(before, len(late))
        done = core.all_closed
        out += self._rollup_items(searches, FOREVER if done else core.watermark)
        if done:
            out.append(("stats", self._stats()))
            return out, StatefulBatchLogic.DISCARD
        return out, StatefulBatchLogic.RETAIN

    def _rollup_items(self, searches: list[SearchRecord], watermark: int) -> list[OutItem]:
        """Per rollup length, this shard's partial sums and how far it has got: no search
        it emits later can be older than its watermark minus ``max_session`` (a pending
        session ends by ``start + max_session``, and newer events are not late)."""
        cfg = self.cfg
        if cfg.rollups is None:
            return []
        low = watermark if watermark in (NEVER, FOREVER) else watermark - cfg.max_session_us
        by_name: dict[str, dict[int, WindowAgg]] = {name: {} for name, _ in cfg.rollup_windows}
        if searches:
            for key, agg in aggregate(searches, dict(cfg.rollup_windows), parse_time).items():
                name, start = key.split("|", 1)
                by_name[name][int(start)] = agg
        return [("rollup", (name, (name, self.shard, low, mine))) for name, mine in by_name.items()]

    def _report(self, before: list[int], late: int) -> None:
        core = self.core
        after = core.counters
        METRICS.sessions_out += after[0] - before[0]
        METRICS.searches_out += after[1] - before[1]
        METRICS.clicked_out += after[2] - before[2]
        METRICS.late += late
        METRICS.open_sessions[id(self)] = len(core.pending)
        METRICS.watermark[id(self)] = core.watermark

    def on_eof(self) -> tuple[Iterable[OutItem], bool]:
        if STOP.is_set():
            return [], StatefulBatchLogic.RETAIN
        out, searches = self._render(self.core.flush(), [])
        out += self._rollup_items(searches, FOREVER)
        out.append(("stats", self._stats()))
        return out, StatefulBatchLogic.DISCARD

    def snapshot(self) -> bytes:
        # Bytewax asks at every epoch even without a recovery store; only pay for it then.
        if self.cfg.recovery_dir is None:
            return b""
        return pickle.dumps(self.core, protocol=pickle.HIGHEST_PROTOCOL)

    def _stats(self) -> dict[str, int]:
        core = self.core
        counts = core.counters
        return {
            "duplicates": core.duplicates,
            "late": core.late,
            "sessions": counts[0],
            "searches": counts[1],
            "clicked_searches": counts[2],
            "clicks": counts[3],
        }

    def _render(
        self, emitted: list[EmittedSession], late: list[tuple[Event, int]]
    ) -> tuple[list[OutItem], list[SearchRecord]]:
        cfg = self.cfg
        out: list[OutItem] = []
        search_list: list[SearchRecord] = []
        if emitted:
            session_list, search_list = render(emitted, cfg.long_click_us, self.core.counters)
            if search_list and cfg.searches is not None:
                out.append(("searches", _encode_lines(search_list)))
            if cfg.sessions is not None:
                out.append(("sessions", _encode_lines(session_list)))
        if late and cfg.late is not None:
            lines = [
                _encode(
                    {
                        "source": source_name(cfg, ev[1], ev[2]),
                        "reason": f"late: event time {format_time(ev[0])} is older than "
                        f"the watermark {format_time(wm)}",
                        "record": event_to_json(ev),
                    }
                )
                for ev, wm in late
            ]
            out.append(("late", b"\n".join(lines) + b"\n"))
        return out, search_list


RollupPartial = tuple[str, int, int, dict[int, WindowAgg]]
"""``(length name, shard, low_us, {window_start_us: partial sums})`` from one shard batch."""
RollupState = tuple[str, dict[int, WindowAgg], dict[int, int]]


class RollupLogic(StatefulBatchLogic[RollupPartial, bytes, RollupState | None]):
    """All windows of one length: merges the shards' partial sums and emits a window's
    rows again whenever they change (the last row per key is exact; an upserting sink
    keeps it). A window is forgotten once every shard is past its end, so memory
    follows the open windows."""

    def __init__(
        self, lengths: dict[str, int], n_shards: int, resume: RollupState | None, keep: bool
    ) -> None:
        self.lengths = lengths
        self.n_shards = n_shards
        self.name, self.windows, self.lows = resume if resume is not None else ("", {}, {})
        self.keep = keep

    def on_batch(self, values: list[RollupPartial]) -> tuple[Iterable[bytes], bool]:
        touched: dict[int, set[str]] = {}
        self.name = values[0][0]
        self.length_s = self.lengths[self.name]
        for _name, shard, low, partials in values:
            for start, part in partials.items():
                agg = self.windows.get(start)
                if agg is None:
                    agg = self.windows[start] = WindowAgg()
                agg.merge(part)
                touched.setdefault(start, set()).update(part.queries)
            if low > self.lows.get(shard, NEVER):
                self.lows[shard] = low
        lines = []
        for start in sorted(touched):
            window, rows = window_records(
                f"{self.name}|{start}", self.windows[start], self.length_s, touched[start]
            )
            lines.append(_encode({"level": "window", **window}))
            lines += [_encode({"level": "query", **row}) for row in rows]
        if len(self.lows) == self.n_shards:
            done_before = min(self.lows.values())
            size = self.length_s * 1_000_000
            for start in [s for s in self.windows if s + size <= done_before]:
                del self.windows[start]
        out = [b"\n".join(lines) + b"\n"] if lines else []
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> RollupState | None:
        return copy.deepcopy((self.name, self.windows, self.lows)) if self.keep else None


def output_sink(
    path: str, kind: str, keys: list[str] | None = None
) -> FixedPartitionedSink[bytes, Any]:
    """A file (or ``-``), a Kafka topic (``kafka://``), a SQL table (``sqlite:///``,
    ``postgresql://``). With ``keys`` (the shard keys, one per worker) every worker
    appends to a file itself (see :class:`~search_sessions.sinks.JsonLinesSink`)."""
    if path.startswith("kafka://"):
        from .kafka import KafkaSink

        return KafkaSink(path, kind)
    if path.startswith(("sqlite:///", "postgresql://", "postgres://")):
        from .sql import SqlSink

        return SqlSink(path, kind)
    return JsonLinesSink(path, keys)


def _value(item: tuple[str, Any]) -> Any:
    return item[1]


def _is_kind(kind: str) -> Callable[[OutItem], bool]:
    def check(item: OutItem) -> bool:
        return item[0] == kind

    return check


def _is_shard_item(item: tuple[str, Any]) -> bool:
    return item[0].startswith("shard-")


def build_flow(cfg: Config, process_id: int | None = None) -> Dataflow:
    """The whole job for one config; the same flow runs on 1 worker or a cluster.

    ``process_id`` (in a cluster) tells which shards live in other processes:
    events for those are packed, which is cheaper to send than pickled tuples.
    """
    flow = Dataflow("search_sessions")
    keys = shard_keys(cfg.workers * cfg.processes)
    remote: frozenset[int] = frozenset()
    if cfg.processes > 1:
        # Shard i runs on worker i (see shard_keys); a process holds `workers` in a row.
        mine = (
            range(0, 0)
            if process_id is None
            else range(process_id * cfg.workers, (process_id + 1) * cfg.workers)
        )
        remote = frozenset(i for i in range(len(keys)) if i not in mine)
    source = JsonLinesSource(cfg, keys, remote=remote)
    n_parts = len(source.parts)
    raw = op.input("read_events", flow, source)
    split = op.branch("split_control", raw, _is_shard_item)

    def build_shard(resume: bytes | None) -> ShardLogic:
        return ShardLogic(cfg, resume, n_parts)

    shards = op.stateful_batch("sessionize", split.trues, build_shard)
    # Every item from here on is (kind, (key, payload)): the key is the shard that
    # made it, so a file written by every worker takes it on that shard's worker.
    rendered = op.map("to_outputs", shards, lambda kv: (kv[1][0], (kv[0], kv[1][1])))
    control = op.map("control_outputs", split.falses, lambda kv: (kv[0], kv))
    merged = op.merge("merge_outputs", rendered, control)
    outputs = {
        "searches": cfg.searches,
        "sessions": cfg.sessions,
        "late": cfg.late,
        "dead_letter": cfg.dead_letter,
    }
    for kind, path in outputs.items():
        if path is None:
            continue
        chosen = op.map(f"keyed_{kind}", op.filter(f"only_{kind}", merged, _is_kind(kind)), _value)
        op.output(
            f"write_{kind}", chosen, output_sink(path, kind, keys if cfg.parallel_writes else None)
        )
    if cfg.rollups is not None:
        partials = op.map(
            "to_windows",
            op.filter("only_rollup", merged, _is_kind("rollup")),
            lambda kv: kv[1][1],
        )
        lengths = dict(cfg.rollup_windows)
        n_shards = len(keys)

        def build_rollup(resume: RollupState | None) -> RollupLogic:
            return RollupLogic(lengths, n_shards, resume, cfg.recovery_dir is not None)

        rolled = op.stateful_batch("rollup", partials, build_rollup)
        op.output(
            "write_rollups",
            op.map("rollup_lines", rolled, lambda kv: ("rollups", kv[1])),
            output_sink(cfg.rollups, "rollups"),
        )
    if cfg.stats_file is not None:
        stats = op.map("stats_values", op.filter("only_stats", merged, _is_kind("stats")), _value)
        op.output("write_stats", stats, StatsSink(cfg.stats_file))
    return flow


def __getattr__(name: str) -> Dataflow:
    """``search_sessions.flow:flow`` for ``python -m bytewax.run``, from $SEARCH_SESSIONS_CONFIG."""
    if name != "flow":
        raise AttributeError(name)
    import json
    import os

    from .execute import config_from_json

    path = os.environ.get("SEARCH_SESSIONS_CONFIG")
    if not path:
        raise RuntimeError(
            "set SEARCH_SESSIONS_CONFIG to a file from `search-sessions run --print-config`"
        )
    with open(path) as f:
        return build_flow(config_from_json(json.load(f)))
