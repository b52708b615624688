"""The Bytewax dataflow: read -> sessionize (per shard) -> write.

::

    read_events ──► split_control ──► sessionize ──► to_outputs ─┐
                         └── dead letters, stats ────────────────┴► merge_outputs ─► write_*

``sessionize`` (:mod:`.shard`) is a thin ``stateful_batch`` step around the
plain-Python :class:`~search_sessions.core.sessions.Sessionizer`; ``rollup``
(:mod:`.rollup`) merges the shards' window sums. Step ids are stable: recovery
keys on them.

The flow is importable for ``python -m bytewax.run``: write the job's config
with ``search-sessions run ... --print-config > job.json``, then::

    SEARCH_SESSIONS_CONFIG=job.json python -m bytewax.run search_sessions.dataflow.flow:flow -w 2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from ..config import Config
from ..connectors.base import STATS
from ..connectors.registry import output_sink, resolve_inputs
from ..connectors.source import EventSource
from ..core.schema import OutputKind
from .rollup import RollupLogic
from .routing import is_shard_key, shard_keys
from .shard import ROLLUP_PARTIAL, OutItem, ShardLogic
from .stats import StatsSink


def _value(item: tuple[str, Any]) -> Any:
    return item[1]


def _is_kind(kind: str) -> Callable[[OutItem], bool]:
    def check(item: OutItem) -> bool:
        return item[0] == kind

    return check


def _is_shard_item(item: tuple[str, Any]) -> bool:
    return is_shard_key(item[0])


def build_flow(cfg: Config, process_id: int | None = None) -> Dataflow:
    """The whole job for one config; the same flow runs on 1 worker or a cluster.

    ``process_id`` (in a cluster) tells which shards live in other processes:
    events for those are packed, which is cheaper to send than pickled tuples.
    """
    cfg = resolve_inputs(cfg)
    flow = Dataflow("search_sessions")
    keys = shard_keys(cfg.workers * cfg.processes)
    source = EventSource(cfg, keys, remote=_remote_shards(cfg, len(keys), process_id))
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
    _write_records(cfg, merged, keys)
    if cfg.rollups is not None:
        _write_rollups(cfg, merged, len(keys))
    if cfg.stats_file is not None:
        stats = op.map("stats_values", op.filter("only_stats", merged, _is_kind(STATS)), _value)
        op.output("write_stats", stats, StatsSink(cfg.stats_file))
    return flow


def _remote_shards(cfg: Config, n_shards: int, process_id: int | None) -> frozenset[int]:
    """The shards in other processes than ``process_id`` (all of them when unknown)."""
    if cfg.processes == 1:
        return frozenset()
    # Shard i runs on worker i (see shard_keys); a process holds `workers` in a row.
    mine = (
        range(0, 0)
        if process_id is None
        else range(process_id * cfg.workers, (process_id + 1) * cfg.workers)
    )
    return frozenset(i for i in range(n_shards) if i not in mine)


def _write_records(cfg: Config, merged: Stream[OutItem], keys: list[str]) -> None:
    """An output step per record output the config names."""
    outputs = {
        OutputKind.SEARCHES: cfg.searches,
        OutputKind.SESSIONS: cfg.sessions,
        OutputKind.LATE: cfg.late,
        OutputKind.DEAD_LETTER: cfg.dead_letter,
    }
    for kind, spec in outputs.items():
        if spec is None:
            continue
        chosen = op.map(f"keyed_{kind}", op.filter(f"only_{kind}", merged, _is_kind(kind)), _value)
        sink = output_sink(spec, kind, keys if cfg.parallel_writes else None)
        op.output(f"write_{kind}", chosen, sink)


def _write_rollups(cfg: Config, merged: Stream[OutItem], n_shards: int) -> None:
    """The shards' partial sums, merged per window length, to the rollups output."""
    assert cfg.rollups is not None
    partials = op.map(
        "to_windows",
        op.filter("only_rollup", merged, _is_kind(ROLLUP_PARTIAL)),
        lambda kv: kv[1][1],
    )
    lengths = dict(cfg.rollup_windows)
    keep = cfg.recovery_dir is not None

    def build_rollup(resume: bytes | None) -> RollupLogic:
        return RollupLogic(lengths, n_shards, resume, keep)

    rolled = op.stateful_batch("rollup", partials, build_rollup)
    op.output(
        "write_rollups",
        op.map("rollup_lines", rolled, lambda kv: (OutputKind.ROLLUPS, kv[1])),
        output_sink(cfg.rollups, OutputKind.ROLLUPS),
    )


def __getattr__(name: str) -> Dataflow:
    """``search_sessions.dataflow.flow:flow`` for ``python -m bytewax.run``, built from
    the config in $SEARCH_SESSIONS_CONFIG."""
    if name != "flow":
        raise AttributeError(name)
    import json
    import os

    from ..config import config_from_json

    path = os.environ.get("SEARCH_SESSIONS_CONFIG")
    if not path:
        raise RuntimeError(
            "set SEARCH_SESSIONS_CONFIG to a file from `search-sessions run --print-config`"
        )
    with open(path) as f:
        return build_flow(config_from_json(json.load(f)))
