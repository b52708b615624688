"""Sessionizing: one shard's users, their pending events, the watermark.

Plain Python, no Bytewax. A :class:`Sessionizer` owns many users (a shard):
it keeps each user's not-yet-final events, the newest event time reported by
every input partition, and a heap of per-user deadlines, so that advancing
the watermark only touches users that may have something to emit. A
session's events are dropped from memory as soon as it is emitted.

Rules (SPEC 2-3), for a user's events sorted by ``(time, partition, line)``:
a new session starts after a gap strictly greater than ``gap``, at an
``app_open``, after an ``app_close``, and when the session would last longer
than ``max_session``. When a cut has several reasons the reason recorded is
``app_close``, else whichever of ``gap``/``max_session`` passed first, else
``app_open``: the order in which a streaming run can learn them, so the
reason never depends on when events arrive.

>>> s = Sessionizer(n_parts=1, gap_us=10, lateness_us=0, max_session_us=100)
>>> evs = [(0, 0, 1, 1, "u", "q", None, None), (5, 0, 2, 3, "u", "x", None, None)]
>>> late = s.ingest(0, 5, False, evs, [])
>>> [(u, len(evs), why) for u, evs, why in s.advance()]
[]
>>> _ = s.ingest(0, 40, False, [], [])
>>> [(u, len(evs), why) for u, evs, why in s.advance()]
[('u', 2, 'gap')]
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from .events import Event
from .schema import APP_CLOSE, APP_OPEN, KIND_NAMES
from .time import FOREVER, NEVER

Cut = tuple[int, int, str | None]
"""``(start, stop, reason)``: ``events[start:stop]`` is a session; ``reason`` is ``None``
for the last one, whose end is not known from the events alone."""

EmittedSession = tuple[str, list[Event], str]
"""``(user, events, end_reason)``."""


def dedup_sorted(events: list[Event]) -> tuple[list[Event], int]:
    """Drop exact duplicates (same time, type, user and payload) from sorted events.

    The first copy in input order is kept. Returns the events and how many were dropped.
    """
    for i in range(1, len(events)):
        if events[i][0] == events[i - 1][0]:
            break
    else:
        return events, 0
    out: list[Event] = []
    run_t = NEVER
    run_keys: set[tuple[object, ...]] = set()
    for ev in events:
        key = ev[3:]
        if ev[0] != run_t:
            run_t = ev[0]
            run_keys = {key}
            out.append(ev)
        elif key not in run_keys:
            run_keys.add(key)
            out.append(ev)
    return out, len(events) - len(out)


def cut_sessions(events: list[Event], gap_us: int, max_session_us: int) -> list[Cut]:
    """Split one user's sorted, de-duplicated events into sessions."""
    return _cut(events, gap_us, max_session_us)[0]


def _cut(events: list[Event], gap_us: int, max_session_us: int) -> tuple[list[Cut], bool]:
    """:func:`cut_sessions`, and whether two events share a time (so may be duplicates):
    one pass instead of a separate duplicate check."""
    cuts: list[Cut] = []
    start = 0
    start_t = events[0][0]
    prev = events[0]
    ties = False
    for i in range(1, len(events)):
        ev = events[i]
        t = ev[0]
        prev_t = prev[0]
        if t == prev_t:
            ties = True
        if prev[3] == APP_CLOSE:
            reason = "app_close"
        elif t - prev_t > gap_us or t - start_t > max_session_us:
            if t - start_t > max_session_us and (
                t - prev_t <= gap_us or start_t + max_session_us < prev_t + gap_us
            ):
                reason = "max_session"
            else:
                reason = "gap"
        elif ev[3] == APP_OPEN:
            reason = "app_open"
        else:
            prev = ev
            continue
        cuts.append((start, i, reason))
        start = i
        start_t = t
        prev = ev
    cuts.append((start, len(events), None))
    return cuts, ties


def _open_end(last_t: int, start_t: int, gap_us: int, max_session_us: int) -> tuple[int, str]:
    """When an open session ends if nothing follows it, and why."""
    by_gap = last_t + gap_us
    by_max = start_t + max_session_us
    return (by_max, "max_session") if by_max < by_gap else (by_gap, "gap")


class Sessionizer:
    """The state and logic of one shard: many users, one watermark.

    Feed it with :meth:`ingest` (one input partition's batch for this shard),
    then call :meth:`advance` to take the sessions the watermark made final,
    and :meth:`flush` at end of input.
    """

    def __init__(self, n_parts: int, gap_us: int, lateness_us: int, max_session_us: int) -> None:
        self.gap_us = gap_us
        self.lateness_us = lateness_us
        self.max_session_us = max_session_us
        self.newest = [NEVER] * n_parts
        self.closed = [False] * n_parts
        self.idle_us = [-1] * n_parts
        self.watermark = NEVER
        self.pending: dict[str, list[Event]] = {}
        self.deadline: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []
        self.duplicates = 0
        self.late = 0
        self.counters = [0, 0, 0, 0]
        """Sessions, searches, clicked searches and clicks emitted (kept by the flow)."""

    @property
    def newest_time(self) -> int:
        """The newest event time reported by any partition."""
        return max(self.newest)

    def ingest(
        self,
        part: int,
        newest: int,
        closed: bool,
        events: Iterable[Event],
        maybe_late: Iterable[tuple[Event, int]],
        idle_us: int = -1,
    ) -> list[tuple[Event, int]]:
        """Take one partition's events for this shard and its progress report.

        ``maybe_late`` holds the events older than their partition's own
        watermark, each with the partition's newest time before it; they are
        late if older than the global watermark too. ``idle_us`` is how long
        (wall-clock microseconds) the partition has been silent once that passed
        the idle timeout, else -1: an idle partition stops holding the watermark
        back, and when every open partition is idle the watermark moves on with
        the wall clock from the newest event time. Returns the late events, each
        with the watermark it missed.
        """
        pending = self.pending
        deadline = self.deadline
        heap = self.heap
        gap = min(self.gap_us, self.max_session_us)
        late: list[tuple[Event, int]] = []
        for ev, newest_before in maybe_late:
            wm = self._watermark_for(part, newest_before)
            if ev[0] < wm:
                late.append((ev, wm))
            else:
                events = [*events, ev]
        # How long after an event of each kind its user may have a session to emit.
        wait = [gap] * len(KIND_NAMES)
        wait[APP_OPEN] = wait[APP_CLOSE] = 0
        push = heapq.heappush
        for ev in events:
            user = ev[4]
            evs = pending.get(user)
            due = ev[0] + wait[ev[3]]
            if evs is None:
                pending[user] = [ev]
                deadline[user] = due
                push(heap, (due, user))
            else:
                evs.append(ev)
                if due < deadline[user]:
                    deadline[user] = due
                    push(heap, (due, user))
        self.late += len(late)
        if newest > self.newest[part]:
            self.newest[part] = newest
        if closed:
            self.closed[part] = True
        self.idle_us[part] = idle_us
        self._update_watermark()
        return late

    def _watermark_for(self, part: int, newest_before: int) -> int:
        low = newest_before
        for q, t in enumerate(self.newest):
            if q != part and not self.closed[q] and self.idle_us[q] < 0 and t < low:
                low = t
        return low - self.lateness_us if low != NEVER else NEVER

    def _update_watermark(self) -> None:
        open_parts = [p for p, c in enumerate(self.closed) if not c]
        if not open_parts:
            self.watermark = FOREVER
            return
        active = [self.newest[p] for p in open_parts if self.idle_us[p] < 0]
        if active:
            low = min(active)
            wm = low - self.lateness_us if low != NEVER else NEVER
        else:
            newest = self.newest_time
            silence = min(self.idle_us[p] for p in open_parts)
            wm = newest - self.lateness_us + silence if newest != NEVER else NEVER
        if wm > self.watermark:
            self.watermark = wm

    @property
    def all_closed(self) -> bool:
        return all(self.closed)

    def advance(self) -> list[EmittedSession]:
        """Emit every session the watermark has made final."""
        wm = self.watermark
        if wm == FOREVER:
            return self.flush()
        heap = self.heap
        out: list[EmittedSession] = []
        while heap and heap[0][0] < wm:
            due, user = heapq.heappop(heap)
            if self.deadline.get(user) != due:
                continue
            self._emit_user(user, wm, out, final=False)
        return out

    def flush(self) -> list[EmittedSession]:
        """End of input: emit every pending session."""
        out: list[EmittedSession] = []
        for user in list(self.pending):
            self._emit_user(user, FOREVER, out, final=True)
        self.heap.clear()
        return out

    def _emit_user(self, user: str, wm: int, out: list[EmittedSession], final: bool) -> None:
        evs = self.pending[user]
        evs.sort()
        gap_us = self.gap_us
        max_us = self.max_session_us
        cuts, ties = _cut(evs, gap_us, max_us)
        if ties:
            evs, dups = dedup_sorted(evs)
            if dups:
                self.duplicates += dups
                cuts = cut_sessions(evs, gap_us, max_us)
        end_of_input = self.newest_time - self.lateness_us
        keep_from = len(evs)
        next_due = FOREVER
        done: list[tuple[int, int, str]] = []
        for start, stop, reason in cuts:
            last = evs[stop - 1]
            start_t = evs[start][0]
            if last[3] == APP_CLOSE:
                due = last[0]
                if reason is None:
                    reason = "app_close"
            else:
                due, open_reason = _open_end(last[0], start_t, gap_us, max_us)
                if reason is not None:
                    due = min(due, evs[stop][0])
                elif final and due >= end_of_input:
                    reason = "end_of_input"
                else:
                    reason = open_reason
            if due < wm:
                done.append((start, stop, reason))
            else:
                keep_from = start
                next_due = due
                break
        # Sessions that start at the instant the first one kept starts (ended there by
        # app_close or app_open) wait for it: emitted together, their ids count them
        # apart (``session_id_for``'s ordinal), whatever the batches.
        while done and keep_from < len(evs) and evs[done[-1][0]][0] == evs[keep_from][0]:
            keep_from = done.pop()[0]
        for start, stop, reason in done:
            out.append((user, evs if stop - start == len(evs) else evs[start:stop], reason))
        if keep_from == len(evs):
            del self.pending[user]
            del self.deadline[user]
        else:
            self.pending[user] = evs[keep_from:]
            self.deadline[user] = next_due
            heapq.heappush(self.heap, (next_due, user))
