"""The ``sessionize`` step: Bytewax glue around one shard's :class:`Sessionizer`.

One Bytewax key per shard (one shard per worker), many users per shard, whole
batches in and blocks of encoded lines out. The sessionizing itself is
plain Python in :mod:`search_sessions.core.sessions`.
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
from ..control import METRICS, STOP
from ..core.events import Event, event_to_json, unpack_events
from ..core.rollups import WindowAgg, aggregate
from ..core.schema import OutputKind, Problem, SearchRecord
from ..core.searches import render
from ..core.sessions import EmittedSession, Sessionizer
from ..core.time import FOREVER, NEVER, format_time
from ..crashpoints import CRASH as crashpoints

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
    """Bytewax glue for one shard: feed batches in, render emitted sessions out.

    Its snapshot is the pickled :class:`Sessionizer`: pickled at once, so later
    batches cannot change a snapshot Bytewax has not written yet.
    """

    def __init__(self, cfg: Config, resume: bytes | None, n_parts: int) -> None:
        """``n_parts``: how many partitions the source has (each reports its progress)."""
        self.cfg = cfg
        self.labels = [source_label(p) for p in cfg.partitions]
        self.shard = -1
        self.core = sessionizer(cfg, n_parts, resume)

    def on_batch(self, values: list[ShardBatch]) -> tuple[Iterable[OutItem], bool]:
        crashpoints.poll()  # (a process may have no input partition to poll it)
        core = self.core
        late = ingest(core, values)
        self.shard = values[-1][6]
        emitted = core.advance()
        before = list(core.counters)
        out, searches, times = self._render(emitted, late)
        self._report(before, len(late))
        done = core.all_closed
        out += self._rollup_items(searches, times, FOREVER if done else core.watermark)
        if done:
            crashpoints.flushing()
            out.append((STATS, self._stats()))
            return out, StatefulBatchLogic.DISCARD
        return out, StatefulBatchLogic.RETAIN

    def _rollup_items(
        self, searches: list[SearchRecord], times_us: list[int], watermark: int
    ) -> list[OutItem]:
        """Per rollup length, this shard's partial sums and how far it has got: no search
        it emits later can be older than its watermark minus ``max_session`` (a pending
        session ends by ``start + max_session``, and newer events are not late).
        ``times_us`` are the searches' times."""
        cfg = self.cfg
        if cfg.rollups is None:
            return []
        low = watermark if watermark in (NEVER, FOREVER) else watermark - cfg.max_session_us
        by_name: dict[str, dict[int, WindowAgg]] = {name: {} for name, _ in cfg.rollup_windows}
        if searches:
            for (name, start), agg in aggregate(
                searches, dict(cfg.rollup_windows), times_us
            ).items():
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
        METRICS.open_sessions[id(self)] = len(core.pending)
        METRICS.watermark[id(self)] = core.watermark

    def on_eof(self) -> tuple[Iterable[OutItem], bool]:
        if STOP.is_set():
            return [], StatefulBatchLogic.RETAIN
        out, searches, times = self._render(self.core.flush(), [])
        crashpoints.flushing()
        out += self._rollup_items(searches, times, FOREVER)
        out.append((STATS, self._stats()))
        return out, StatefulBatchLogic.DISCARD

    def snapshot(self) -> bytes:
        # Bytewax asks at every epoch even without a recovery store; only pay for it then.
        if self.cfg.recovery_dir is None:
            return b""
        snap = pickle.dumps(self.core, protocol=pickle.HIGHEST_PROTOCOL)
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

    def _render(
        self, emitted: list[EmittedSession], late: list[tuple[Event, int]]
    ) -> tuple[list[OutItem], list[SearchRecord], list[int]]:
        """The output items, and the searches with their times (kept only for rollups)."""
        cfg = self.cfg
        out: list[OutItem] = []
        search_list: list[SearchRecord] = []
        times: list[int] = []
        if emitted:
            session_list, search_list = render(
                emitted,
                cfg.rules,
                self.core.counters,
                None if cfg.rollups is None else times,
            )
            if search_list and cfg.searches is not None:
                out.append((OutputKind.SEARCHES, _encode_lines(search_list)))
            if cfg.sessions is not None:
                out.append((OutputKind.SESSIONS, _encode_lines(session_list)))
        if late and cfg.late is not None:
            out.append((OutputKind.LATE, self._late_lines(late)))
        return out, search_list, times

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
