"""Per-search and per-session records for one emitted session (SPEC 4).

Plain Python, no Bytewax. Within a session each ``search`` owns the events
after it up to the next search; results and clicks that carry a
``search_id`` attach to the search with that id instead (the latest such
search before them, else the first after them; none if the session has no
search with that id).

>>> evs = [(0, 0, 1, 1, "u", "dogs", None, None),
...        (1_000_000, 0, 2, 2, "u", ("a", "b"), None, None),
...        (2_000_000, 0, 3, 3, "u", "b", None, None)]
>>> session, searches = session_records("u", evs, "gap", 0)
>>> searches[0]["first_click_rank"], searches[0]["ctr"], session["duration"]
(2, 1.0, 2.0)
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any, Final

from .events import CLICK, RESULTS, SEARCH, Event, format_time

LONG_CLICK_US: Final = 30_000_000


def stable_id(*parts: object) -> str:
    """A short id that depends only on its parts (same input, same id, any run)."""
    return blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def session_id_for(user: str, start_us: int, ordinal: int) -> str:
    """``ordinal`` tells apart sessions of one user that start at the same instant."""
    return stable_id("s", user, start_us, ordinal)


class _Search:
    __slots__ = ("index", "t", "query", "sid", "items", "clicks", "first_click", "long_click")

    def __init__(self, index: int, t: int, query: str, sid: str | None) -> None:
        self.index = index
        self.t = t
        self.query = query
        self.sid = sid
        self.items: tuple[str, ...] | None = None
        self.clicks = 0
        self.first_click: tuple[int, int | None] | None = None
        self.long_click = False


def session_records(
    user: str,
    events: list[Event],
    end_reason: str,
    ordinal: int,
    long_click_us: int = LONG_CLICK_US,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The session record and its per-search records, in search order."""
    start = events[0][0]
    end = events[-1][0]
    session_id = session_id_for(user, start, ordinal)
    searches: list[_Search] = []
    by_id: dict[str, list[_Search]] = {}
    for i, ev in enumerate(events):
        if ev[3] == SEARCH:
            s = _Search(i, ev[0], ev[5], ev[7])
            searches.append(s)
            if s.sid is not None:
                by_id.setdefault(s.sid, []).append(s)

    clicks_total = 0
    current: _Search | None = None
    next_search = 0
    n = len(events)
    for i, ev in enumerate(events):
        kind = ev[3]
        if kind == SEARCH:
            current = searches[next_search]
            next_search += 1
            continue
        if kind != RESULTS and kind != CLICK:
            continue
        if kind == CLICK:
            clicks_total += 1
        sid = ev[7]
        target = current if sid is None else _by_id(by_id, sid, i)
        if target is None:
            continue
        if kind == RESULTS:
            target.items = ev[5]
            continue
        target.clicks += 1
        if target.first_click is None:
            rank = ev[6]
            if rank is None and target.items is not None:
                try:
                    rank = target.items.index(ev[5]) + 1
                except ValueError:
                    rank = None
            target.first_click = (ev[0], rank)
        if i == n - 1 or events[i + 1][0] - ev[0] >= long_click_us:
            target.long_click = True

    records = []
    clicked_searches = 0
    last_search = len(searches) - 1
    for pos, s in enumerate(searches):
        clicked = s.clicks > 0
        clicked_searches += clicked
        results = None if s.items is None else len(s.items)
        zero = results == 0
        rank = s.first_click[1] if s.first_click is not None else None
        if not clicked:
            rr: float | None = 0.0
        elif rank is None:
            rr = None
        else:
            rr = 1.0 / rank
        records.append(
            {
                "search_id": s.sid if s.sid is not None else stable_id("q", user, s.t, session_id, pos),
                "session_id": session_id,
                "user": user,
                "query": s.query,
                "time": format_time(s.t),
                "results": results,
                "zero_results": zero,
                "clicks": s.clicks,
                "clicked": clicked,
                "ctr": 1.0 if clicked else 0.0,
                "first_click_rank": rank,
                "reciprocal_rank": rr,
                "time_to_first_click": (
                    (s.first_click[0] - s.t) / 1e6 if s.first_click is not None else None
                ),
                "abandoned": not clicked and not zero,
                "reformulated": not clicked and pos < last_search,
                "long_click": s.long_click,
            }
        )
    session = {
        "session_id": session_id,
        "user": user,
        "start": format_time(start),
        "end": format_time(end),
        "duration": (end - start) / 1e6,
        "events": n,
        "searches": len(searches),
        "clicked_searches": clicked_searches,
        "clicks": clicks_total,
        "ctr": clicked_searches / len(searches) if searches else None,
        "end_reason": end_reason,
    }
    return session, records


def _by_id(by_id: dict[str, list[_Search]], sid: str, index: int) -> _Search | None:
    candidates = by_id.get(sid)
    if not candidates:
        return None
    chosen = candidates[0]
    for s in candidates:
        if s.index < index:
            chosen = s
    return chosen


def session_ordinals(starts: list[tuple[str, int]]) -> list[int]:
    """For each (user, start), how many earlier entries share it (0 for the first)."""
    seen: dict[tuple[str, int], int] = {}
    out = []
    for key in starts:
        k = seen.get(key, 0)
        out.append(k)
        seen[key] = k + 1
    return out

