"""The ``sessionize`` step: Bytewax glue around one shard's core.

One Bytewax key per shard (one shard per worker), many users per shard, whole
batches in and blocks of encoded lines out. The sessionizing itself is done by the
core in use (:mod:`search_sessions.core.cores`): the native one, or the plain Python
one in :mod:`search_sessions.core.sessions`.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from typing import Any, Final

import msgspec
from bytewax.operators import StatefulBatchLogic

from ..config import Config
from ..connectors.base import STATS, ShardBatch
from ..connectors.registry import source_label
from ..control import FAILURE, METRICS, STOP, guessed_wrong
from ..core.cores import Emission, ShardCore, is_panic, rollup_partials, shard_core
from ..core.events import Event, event_to_json, unpack_events
from ..core.rollups import WindowAgg
from ..core.schema import OutputKind, Problem
from ..core.sessions import Sessionizer
from ..core.time import FOREVER, NEVER, format_time
from ..crashpoints import CRASH as crashpoints
from ..errors import RunError

_encode_lines = msgspec.json.Encoder().encode_lines
OutItem = tuple[str, Any]
"""``(kind, payload)``: an :class:`OutputKind` and a block of lines, counters, or a
rollup partial."""

ROLLUP_PARTIAL: Final = "rollup_partial"
"""The item key of a shard's partial rollup sums."""


def sessionizer(cfg: Config, n_parts: int, resume: bytes | None) -> Sessionizer:
    """A shard's :class:`Sessionizer`: from its snapshot (a pickle), or new."""
    if resume:
        core: Sessionizer = pickle.loads(resume)
        return core
    return Sessionizer(n_parts, cfg.gap_us, cfg.lateness_us, cfg.max_session_us)


def ingest(core: Sessionizer, values: list[ShardBatch]) -> list[tuple[Event, int]]:
    """Feed a shard's batches (events packed or not) to ``core``; returns the late events."""
    late: list[tuple[Event, int]] = []
    for part, newest, closed, events, maybe_late, idle_us, _shard in values:
        evs = unpack_events(events) if isinstance(events, bytes) else events
        late += core.ingest(part, newest, closed, evs, maybe_late, idle_us)
    return late


class ShardLogic(StatefulBatchLogic[ShardBatch, OutItem, bytes]):
    """Bytewax glue for one shard: feed batches in, its core's encoded records out.

    Its snapshot is the core's state as bytes (the Python core's a pickle), taken at
    once, so later batches cannot change a snapshot Bytewax has not written yet.
    """

    def __init__(self, cfg: Config, resume: bytes | None, n_parts: int) -> None:
        """``n_parts``: how many partitions the source has (each reports its progress)."""
        self.cfg = cfg
        self.labels = [source_label(p) for p in cfg.partitions]
        self.shard = -1
        self.core: ShardCore = shard_core(
            n_parts, cfg.gap_us, cfg.lateness_us, cfg.max_session_us, cfg.rules, resume
        )

    def on_batch(self, values: list[ShardBatch]) -> tuple[Iterable[OutItem], bool]:
        try:
            return self._on_batch(values)
        except BaseException as exc:
            if not is_panic(exc):
                raise
            FAILURE.append(
                f"shard {self.shard}: the native core failed ({exc}); "
                "SEARCH_SESSIONS_CORE=python runs the Python core"
            )
            raise RunError(FAILURE[-1]) from None

    def _on_batch(self, values: list[ShardBatch]) -> tuple[Iterable[OutItem], bool]:
        crashpoints.poll()  # (a process may have no input partition to poll it)
        core = self.core
        late: list[tuple[Event, int]] = []
        for part, newest, closed, events, maybe_late, idle_us, _shard in values:
            late += core.ingest(part, newest, closed, events, maybe_late, idle_us)
        self.shard = values[-1][6]
        before = list(core.counters)
        emitted = core.advance(self.cfg.rollups is not None)
        out = self._render(emitted, late)
        self._report(before, len(late))
        done = core.all_closed
        out += self._rollup_items(emitted, FOREVER if done else core.watermark)
        if done:
            crashpoints.flushing()
            out.append((STATS, self._stats()))
            return out, StatefulBatchLogic.DISCARD
        return out, StatefulBatchLogic.RETAIN

    def _rollup_items(self, emitted: Emission, watermark: int) -> list[OutItem]:
        """Per rollup length, this shard's partial sums and how far it has got: no search
        it emits later can be older than its watermark minus ``max_session`` (a pending
        session ends by ``start + max_session``, and newer events are not late)."""
        cfg = self.cfg
        if cfg.rollups is None:
            return []
        low = watermark if watermark in (NEVER, FOREVER) else watermark - cfg.max_session_us
        by_name: dict[str, dict[int, WindowAgg]] = {name: {} for name, _ in cfg.rollup_windows}
        for (name, start), agg in rollup_partials(emitted, dict(cfg.rollup_windows)).items():
            by_name[name][start] = agg
        return [
            (ROLLUP_PARTIAL, (name, (name, self.shard, low, mine)))
            for name, mine in by_name.items()
        ]

    def _report(self, before: list[int], late: int) -> None:
        core = self.core
        after = core.counters
        METRICS.sessions_out += after[0] - before[0]
        METRICS.searches_out += after[1] - before[1]
        METRICS.clicked_out += after[2] - before[2]
        METRICS.late += late
        METRICS.open_sessions[id(self)] = core.open_users
        METRICS.watermark[id(self)] = core.watermark

    def on_eof(self) -> tuple[Iterable[OutItem], bool]:
        if STOP.is_set() or guessed_wrong(self.cfg.guess_marker):
            return [], StatefulBatchLogic.RETAIN
        emitted = self.core.flush(self.cfg.rollups is not None)
        out = self._render(emitted, [])
        crashpoints.flushing()
        out += self._rollup_items(emitted, FOREVER)
        out.append((STATS, self._stats()))
        return out, StatefulBatchLogic.DISCARD

    def snapshot(self) -> bytes:
        # Bytewax asks at every epoch even without a recovery store; only pay for it then.
        if self.cfg.recovery_dir is None:
            return b""
        snap = self.core.snapshot()
        crashpoints.hit("snapshot", f"shard {self.shard}")
        return snap

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

    def _render(self, emitted: Emission, late: list[tuple[Event, int]]) -> list[OutItem]:
        """The output items of what the core emitted and of the late events."""
        cfg = self.cfg
        out: list[OutItem] = []
        if emitted.searches and cfg.searches is not None:
            out.append((OutputKind.SEARCHES, emitted.searches))
        if emitted.n_sessions and cfg.sessions is not None:
            out.append((OutputKind.SESSIONS, emitted.sessions))
        if late and cfg.late is not None:
            out.append((OutputKind.LATE, self._late_lines(late)))
        return out

    def _late_lines(self, late: list[tuple[Event, int]]) -> bytes:
        labels = self.labels
        return _encode_lines(
            [
                Problem(
                    f"{labels[ev[1]]}:{ev[2]}",
                    f"late: event time {format_time(ev[0])} is older than "
                    f"the watermark {format_time(wm)}",
                    event_to_json(ev, self.cfg.dimensions),
                )
                for ev, wm in late
            ]
        )
