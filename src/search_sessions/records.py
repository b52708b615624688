"""Output records as msgspec structs (fields in output order).

Kept apart from :mod:`search_sessions.searches` so that module can be
compiled with mypyc (which does not build msgspec struct classes).
"""

from __future__ import annotations

import msgspec


class SearchRecord(msgspec.Struct):
    """One search and how it went (SPEC 4); fields in output order."""

    search_id: str
    session_id: str
    user: str
    query: str
    time: str
    results: int | None
    zero_results: bool
    clicks: int
    clicked: bool
    ctr: float
    first_click_rank: int | None
    reciprocal_rank: float | None
    time_to_first_click: float | None
    abandoned: bool
    reformulated: bool
    long_click: bool


class SessionRecord(msgspec.Struct):
    """One session (SPEC 4); ``duration`` in seconds."""

    session_id: str
    user: str
    start: str
    end: str
    duration: float
    events: int
    searches: int
    clicked_searches: int
    clicks: int
    ctr: float | None
    end_reason: str
