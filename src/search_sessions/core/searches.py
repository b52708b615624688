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
>>> searches[0].first_click_rank, searches[0].ctr, session.duration
(2, 1.0, 2.0)
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any, Final

from .events import Event
from .schema import CLICK, RESULTS, SEARCH, SearchRecord, SessionRecord
from .time import format_time

LONG_CLICK_US: Final = 30_000_000


def session_id_for(user: str, start_us: int, ordinal: int) -> str:
    """``ordinal`` tells apart sessions of one user that start at the same instant."""
    return blake2b(f"s\x1f{user}\x1f{start_us}\x1f{ordinal}".encode(), digest_size=8).hexdigest()


# Per-search working state, a list for speed:
_T, _QUERY, _SID, _ITEMS, _CLICKS, _FIRST_T, _FIRST_RANK, _LONG, _INDEX = range(9)


def session_records(
    user: str,
    events: list[Event],
    end_reason: str,
    ordinal: int,
    long_click_us: int = LONG_CLICK_US,
) -> tuple[SessionRecord, list[SearchRecord]]:
    """The session record and its per-search records, in search order."""
    start = events[0][0]
    end = events[-1][0]
    session_id = session_id_for(user, start, ordinal)
    searches, clicks_total = _attach(events, long_click_us)
    records, clicked_searches = _search_records(searches, session_id, user)
    session = SessionRecord(
        session_id,
        user,
        format_time(start),
        format_time(end),
        (end - start) / 1e6,
        len(events),
        len(searches),
        clicked_searches,
        clicks_total,
        clicked_searches / len(searches) if searches else None,
        end_reason,
    )
    return session, records


def _attach(events: list[Event], long_click_us: int) -> tuple[list[list[Any]], int]:
    """The session's searches as working state, in order, with their results and clicks
    attached; and the number of clicks in the session."""
    searches: list[list[Any]] = []
    seen_ids: dict[str, list[Any]] = {}  # search_id -> latest such search so far
    clicks_total = 0
    current: list[Any] | None = None
    last_click: list[Any] | None = None  # search of the previous event, if it was a click
    last_click_t = 0
    early: dict[int, list[Any]] = {}  # searches met by id before their own event
    for i, ev in enumerate(events):
        if last_click is not None:
            if ev[0] - last_click_t >= long_click_us:
                last_click[_LONG] = True
            last_click = None
        kind = ev[3]
        if kind == SEARCH:
            current = early.pop(i, None) if early else None
            if current is None:
                current = [ev[0], ev[5], ev[7], None, 0, None, None, False, i]
            searches.append(current)
            if ev[7] is not None:
                seen_ids[ev[7]] = current
            continue
        if kind == CLICK:
            clicks_total += 1
        elif kind != RESULTS:
            continue
        sid = ev[7]
        target = current if sid is None else seen_ids.get(sid) or _later(events, i, sid, early)
        if target is None:
            continue
        if kind == RESULTS:
            target[_ITEMS] = ev[5]
            continue
        target[_CLICKS] += 1
        if target[_FIRST_T] is None:
            rank = ev[6]
            items = target[_ITEMS]
            if rank is None and items is not None:
                try:
                    rank = items.index(ev[5]) + 1
                except ValueError:
                    rank = None
            target[_FIRST_T] = ev[0]
            target[_FIRST_RANK] = rank
        last_click = target
        last_click_t = ev[0]
    if last_click is not None:
        last_click[_LONG] = True
    return searches, clicks_total


def _search_records(
    searches: list[list[Any]], session_id: str, user: str
) -> tuple[list[SearchRecord], int]:
    """The records of a session's searches (from :func:`_attach`), and how many were
    clicked."""
    records = []
    clicked_searches = 0
    last_search = len(searches) - 1
    for pos, s in enumerate(searches):
        n_clicks: int = s[_CLICKS]
        clicked = n_clicks > 0
        items = s[_ITEMS]
        results = None if items is None else len(items)
        zero = results == 0
        first_rank: int | None = s[_FIRST_RANK]
        t: int = s[_T]
        if clicked:
            clicked_searches += 1
            rr = None if first_rank is None else 1.0 / first_rank
            ttfc: float | None = (s[_FIRST_T] - t) / 1e6
        else:
            rr = 0.0
            ttfc = None
        given: str | None = s[_SID]
        records.append(
            SearchRecord(
                given if given is not None else f"{session_id}-{pos}",
                session_id,
                user,
                s[_QUERY],
                format_time(t),
                results,
                zero,
                n_clicks,
                clicked,
                1.0 if clicked else 0.0,
                first_rank,
                rr,
                ttfc,
                not clicked and not zero,
                not clicked and pos < last_search,
                s[_LONG],
            )
        )
    return records, clicked_searches


def _later(
    events: list[Event], index: int, sid: str, early: dict[int, list[Any]]
) -> list[Any] | None:
    """The first search after ``index`` with id ``sid`` (a result or click that came
    before its search, say from clock skew), made now and kept in ``early``."""
    for j in range(index + 1, len(events)):
        ev = events[j]
        if ev[3] == SEARCH and ev[7] == sid:
            found = early.get(j)
            if found is None:
                found = early[j] = [ev[0], ev[5], ev[7], None, 0, None, None, False, j]
            return found
    return None


def render(
    emitted: list[tuple[str, list[Event], str]],
    long_click_us: int,
    counts: list[int],
    times_us: list[int] | None = None,
) -> tuple[list[SessionRecord], list[SearchRecord]]:
    """Records for a batch of emitted sessions; adds to ``counts`` (sessions,
    searches, clicked searches, clicks) and, when given, to ``times_us`` each
    search's time (one search record per ``search`` event, in event order)."""
    sessions: list[SessionRecord] = []
    searches: list[SearchRecord] = []
    seen: dict[tuple[str, int], int] = {}  # (user, start) -> sessions so far
    n_searches = clicked = clicks = 0
    for user, evs, reason in emitted:
        key = (user, evs[0][0])
        ordinal = seen.get(key, 0)
        seen[key] = ordinal + 1
        session, records = session_records(user, evs, reason, ordinal, long_click_us)
        n_searches += session.searches
        clicked += session.clicked_searches
        clicks += session.clicks
        searches += records
        sessions.append(session)
        if times_us is not None:
            times_us += [ev[0] for ev in evs if ev[3] == SEARCH]
    counts[0] += len(sessions)
    counts[1] += n_searches
    counts[2] += clicked
    counts[3] += clicks
    return sessions, searches
