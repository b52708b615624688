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

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

try:  # hashlib's blake2b itself, without hashlib loading OpenSSL (3 ms and 3 MB a process)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without its own BLAKE2
    from hashlib import blake2b

from .events import Event
from .schema import CLICK, CONVERSION, RESULTS, SEARCH, SearchRecord, SessionRecord
from .time import format_time


def total(values: Iterable[float]) -> float:
    """``math.fsum``, exact in any order, but a sum beyond the floats is infinite (written
    as ``null``, as the native core's ``json::fsum`` does) where ``fsum`` raises: values
    near 1.8e308 are valid conversion values, and their sum must not stop the run."""
    try:
        return math.fsum(values)
    except OverflowError:  # "intermediate overflow in fsum"
        return math.inf
    except ValueError:  # "-inf + inf in fsum" (JSON has neither)
        return math.nan


LONG_CLICK_US: Final = 30_000_000


def session_id_for(user: str, start_us: int, ordinal: int) -> str:
    """``ordinal`` tells apart sessions of one user that start at the same instant."""
    return blake2b(f"s\x1f{user}\x1f{start_us}\x1f{ordinal}".encode(), digest_size=8).hexdigest()


SHORT_CLICK_US: Final = 10_000_000


@dataclass(frozen=True)
class Rules:
    """The options of the per-search and per-session rules (SPEC 4 and the README).

    ``typeahead_us``: a search at most this long after the previous one, with no click
    or conversion between them, whose query extends the previous one's or is one
    edit away from it, joins that search's intent (``None``: each search is its own).
    ``dimensions`` names the ninth slot of the events (``--dimension``).
    """

    long_click_us: int = LONG_CLICK_US
    short_click_us: int = SHORT_CLICK_US
    typeahead_us: int | None = None
    dimensions: tuple[str, ...] = ()


DEFAULT_RULES: Final = Rules()

# Per-search (per-intent) working state, a list for speed:
(
    _T,
    _QUERY,
    _SID,
    _ITEMS,
    _CLICKS,
    _FIRST_T,
    _FIRST_RANK,
    _LONG,
    _LAST_T,
    _KEYS,
    _SHORT,
    _CONV,
    _VALUES,
    _DIMS,
) = range(14)


def _state(ev: Event) -> list[Any]:
    return [ev[0], ev[5], ev[7], None, 0, None, None, False, ev[0], 1, False, 0, None, None]


def session_records(
    user: str,
    events: list[Event],
    end_reason: str,
    ordinal: int,
    rules: Rules = DEFAULT_RULES,
    times_us: list[int] | None = None,
) -> tuple[SessionRecord, list[SearchRecord]]:
    """The session record and its per-search records, in search order; adds each
    search's time to ``times_us`` when given."""
    start = events[0][0]
    end = events[-1][0]
    session_id = session_id_for(user, start, ordinal)
    searches, totals = _attach(events, rules)
    clicks_total, conversions, values, success_t, first_dims = totals
    records, clicked_searches = _search_records(searches, session_id, user, rules.dimensions)
    if times_us is not None:
        times_us += [s[_T] for s in searches]
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
        conversions,
        total(values) if values else 0.0,
        success_t is not None,
        None if success_t is None else (success_t - start) / 1e6,
        dict(zip(rules.dimensions, first_dims, strict=True)) if first_dims is not None else {},
    )
    return session, records


_Totals = tuple[int, int, list[float], int | None, list[Any] | None]
"""A session's clicks, conversions, conversion values, first success time and first
dimension values."""


def _intents(events: list[Event], typeahead_us: int | None) -> dict[int, list[Any]]:
    """Each search event's working state (by index) when requests collapse: the
    requests of one intent share theirs, which holds the first request's time and the
    last one's query, id and time. Without collapse, empty (states are made on use)."""
    states: dict[int, list[Any]] = {}
    if typeahead_us is None:
        return states  # made as the searches are met (see _attach and _later)
    prev: list[Any] | None = None
    prev_q = ""
    prev_t = 0
    for i, ev in enumerate(events):
        kind = ev[3]
        if kind != SEARCH:
            if kind in (CLICK, CONVERSION):
                prev = None
            continue
        q = ev[5].strip().lower()
        if prev is not None and ev[0] - prev_t <= typeahead_us and continues_typing(q, prev_q):
            prev[_QUERY] = ev[5]
            prev[_SID] = ev[7]
            prev[_LAST_T] = ev[0]
            prev[_KEYS] += 1
            states[i] = prev
        else:
            states[i] = prev = _state(ev)
        prev_q = q
        prev_t = ev[0]
    return states


def continues_typing(q: str, prev: str) -> bool:
    """Whether query ``q`` continues ``prev`` as typing does: it starts with it, or is
    one insertion, deletion or substitution away from it (both trimmed, lower-cased).

    >>> [continues_typing(q, "run") for q in ("runn", "rnu", "rn", "ran", "x")]
    [True, False, True, True, False]
    """
    if q.startswith(prev):
        return True
    n, m = len(q), len(prev)
    if abs(n - m) > 1:
        return False
    i = 0
    while i < n and i < m and q[i] == prev[i]:
        i += 1
    if n == m:
        return q[i + 1 :] == prev[i + 1 :]
    if n > m:
        return q[i + 1 :] == prev[i:]
    return q[i:] == prev[i + 1 :]


def _attach(events: list[Event], rules: Rules) -> tuple[list[list[Any]], _Totals]:
    """The session's searches (intents) as working state, in order, with their results,
    clicks and conversions attached; and the session's totals."""
    states = _intents(events, rules.typeahead_us)
    long_us = rules.long_click_us
    short_us = rules.short_click_us
    n_dims = len(rules.dimensions)
    searches: list[list[Any]] = []
    seen_ids: dict[str, list[Any]] = {}  # search_id -> latest such search so far
    clicks_total = conversions = 0
    values: list[float] = []
    success_t: int | None = None
    current: list[Any] | None = None
    click_t: int | None = None  # the previous event's time, if it was a click
    click_target: list[Any] | None = None  # and the search it went to
    latest: list[Any] = [None] * n_dims
    first: list[Any] | None = [None] * n_dims if n_dims else None
    for i, ev in enumerate(events):
        t = ev[0]
        if click_t is not None:
            dwell = t - click_t
            if dwell >= long_us:
                if click_target is not None:
                    click_target[_LONG] = True
                if success_t is None:
                    success_t = click_t
            elif dwell < short_us and click_target is not None:
                click_target[_SHORT] = True
            click_t = None
        if n_dims:
            _note_dimensions(ev, latest, first)  # type: ignore[arg-type]
        kind = ev[3]
        if kind == SEARCH:
            state = states.get(i)
            if state is None:
                state = states[i] = _state(ev)
            if state is not current:
                searches.append(state)
                current = state
            if n_dims:
                state[_DIMS] = tuple(latest)
            if ev[7] is not None:
                seen_ids[ev[7]] = state
            continue
        sid = ev[7]
        if kind == CONVERSION:
            conversions += 1
            value = ev[5][1]
            if value is not None:
                values.append(value)
            if success_t is None:
                success_t = t
            target = (
                seen_ids.get(sid) or _later(events, i, sid, states)
                if sid is not None
                else _converted_search(ev[5][0], searches, current)
            )
            if target is not None:
                _add_conversion(target, value)
            continue
        if kind == CLICK:
            clicks_total += 1
        elif kind != RESULTS:
            continue
        target = current if sid is None else seen_ids.get(sid) or _later(events, i, sid, states)
        if kind == RESULTS:
            if target is not None:
                target[_ITEMS] = ev[5]
            continue
        click_t = t
        click_target = target
        if target is not None:
            _add_click(target, ev)
    if click_t is not None:
        if click_target is not None:
            click_target[_LONG] = True
        if success_t is None:
            success_t = click_t
    return searches, (clicks_total, conversions, values, success_t, first)


def _note_dimensions(ev: Event, latest: list[Any], first: list[Any]) -> None:
    """The session's latest and first value of each dimension, after ``ev``."""
    for d, v in enumerate(ev[8]):  # type: ignore[misc]
        if v is not None:
            latest[d] = v
            if first[d] is None:
                first[d] = v


def _converted_search(
    item: str | None, searches: list[list[Any]], current: list[Any] | None
) -> list[Any] | None:
    """The search a conversion without ``search_id`` goes to: the latest whose latest
    results held its item; without an item, the latest search."""
    if item is None:
        return current
    for s in reversed(searches):
        items = s[_ITEMS]
        if items is not None and item in items:
            return s
    return None


def _add_conversion(target: list[Any], value: float | None) -> None:
    target[_CONV] += 1
    if value is not None:
        if target[_VALUES] is None:
            target[_VALUES] = [value]
        else:
            target[_VALUES].append(value)


def _add_click(target: list[Any], ev: Event) -> None:
    """A click on ``target``; its first click sets the time and rank (the click's own
    ``rank``, else its item's place in the results shown)."""
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


def _search_records(
    searches: list[list[Any]], session_id: str, user: str, dimensions: tuple[str, ...]
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
        if clicked:
            clicked_searches += 1
            rr = None if first_rank is None else 1.0 / first_rank
            ttfc: float | None = (s[_FIRST_T] - s[_LAST_T]) / 1e6
        else:
            rr = 0.0
            ttfc = None
        given: str | None = s[_SID]
        n_conv: int = s[_CONV]
        values = s[_VALUES]
        records.append(
            SearchRecord(
                given if given is not None else f"{session_id}-{pos}",
                session_id,
                user,
                s[_QUERY],
                format_time(s[_T]),
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
                s[_SHORT],
                s[_KEYS],
                n_conv,
                n_conv > 0,
                total(values) if values else 0.0,
                dict(zip(dimensions, s[_DIMS], strict=True)) if dimensions else {},
            )
        )
    return records, clicked_searches


def _later(
    events: list[Event], index: int, sid: str, states: dict[int, list[Any]]
) -> list[Any] | None:
    """The search (intent) of the first search event after ``index`` with id ``sid``:
    a result, click or conversion that came before its search, say from clock skew."""
    for j in range(index + 1, len(events)):
        ev = events[j]
        if ev[3] == SEARCH and ev[7] == sid:
            state = states.get(j)
            if state is None:
                state = states[j] = _state(ev)
            return state
    return None


def render(
    emitted: list[tuple[str, list[Event], str]],
    rules: Rules,
    counts: list[int],
    times_us: list[int] | None = None,
) -> tuple[list[SessionRecord], list[SearchRecord]]:
    """Records for a batch of emitted sessions; adds to ``counts`` (sessions,
    searches, clicked searches, clicks) and, when given, to ``times_us`` each
    search record's time, in order."""
    sessions: list[SessionRecord] = []
    searches: list[SearchRecord] = []
    seen: dict[tuple[str, int], int] = {}  # (user, start) -> sessions so far
    n_searches = clicked = clicks = 0
    for user, evs, reason in emitted:
        key = (user, evs[0][0])
        ordinal = seen.get(key, 0)
        seen[key] = ordinal + 1
        session, records = session_records(user, evs, reason, ordinal, rules, times_us)
        n_searches += session.searches
        clicked += session.clicked_searches
        clicks += session.clicks
        searches += records
        sessions.append(session)
    counts[0] += len(sessions)
    counts[1] += n_searches
    counts[2] += clicked
    counts[3] += clicks
    return sessions, searches
