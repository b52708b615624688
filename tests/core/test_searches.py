"""Per-search and session fields (SPEC 4) with explicit timestamps."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from search_sessions.core.events import Event
from search_sessions.core.schema import APP_CLOSE, APP_OPEN, CLICK, RESULTS, SEARCH
from search_sessions.core.searches import session_records

S = 1_000_000


def e(
    t: float, kind: int, payload: Any = None, rank: int | None = None, sid: str | None = None
) -> Event:
    return (int(t * S), 0, int(t * 1000), kind, "u", payload, rank, sid)


def records(
    events: list[Event], reason: str = "gap"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    session, searches = session_records("u", events, reason, 0)
    return msgspec.structs.asdict(session), [msgspec.structs.asdict(s) for s in searches]


def test_tutorial_session_for_user_1() -> None:
    session, searches = records(
        [
            e(0, APP_OPEN),
            e(1, SEARCH, "dogs"),
            e(2, RESULTS, ("fido", "rover", "buddy")),
            e(3, CLICK, "rover"),
            e(4, SEARCH, "cats"),
            e(5, RESULTS, ("fluffy", "burrito", "kathy")),
            e(6, CLICK, "fluffy"),
            e(8, CLICK, "kathy"),
            e(10, APP_CLOSE),
        ],
        "app_close",
    )
    assert [(s["query"], s["ctr"], s["clicks"]) for s in searches] == [
        ("dogs", 1.0, 1),
        ("cats", 1.0, 2),
    ]
    assert searches[0]["first_click_rank"] == 2 and searches[0]["reciprocal_rank"] == 0.5
    assert searches[1]["first_click_rank"] == 1
    assert searches[0]["time_to_first_click"] == 2.0
    assert session == {
        "session_id": session["session_id"],
        "user": "u",
        "start": "1970-01-01T00:00:00Z",
        "end": "1970-01-01T00:00:10Z",
        "duration": 10.0,
        "events": 9,
        "searches": 2,
        "clicked_searches": 2,
        "clicks": 3,
        "ctr": 1.0,
        "end_reason": "app_close",
        "conversions": 0,
        "conversion_value": 0.0,
        "success": False,
        "time_to_success": None,
        "dimensions": {},
    }


def test_no_search_means_no_search_records_and_null_ctr() -> None:
    session, searches = records([e(0, APP_OPEN), e(1, CLICK, "x"), e(2, APP_CLOSE)])
    assert searches == []
    assert session["ctr"] is None and session["searches"] == 0 and session["clicks"] == 1


def test_events_before_first_search_belong_to_none() -> None:
    _, searches = records([e(0, RESULTS, ("a",)), e(1, CLICK, "a"), e(2, SEARCH, "q")])
    assert searches[0]["clicks"] == 0 and searches[0]["results"] is None


def test_zero_results_is_not_abandoned() -> None:
    _, (s,) = records([e(0, SEARCH, "q"), e(1, RESULTS, ())])
    assert s["results"] == 0 and s["zero_results"] and not s["abandoned"]
    assert s["reciprocal_rank"] == 0.0 and s["first_click_rank"] is None


def test_no_results_event_means_null_results_and_abandoned() -> None:
    _, (s,) = records([e(0, SEARCH, "q")])
    assert s["results"] is None and not s["zero_results"] and s["abandoned"]


def test_last_results_counts() -> None:
    _, (s,) = records(
        [e(0, SEARCH, "q"), e(1, RESULTS, ("a", "b")), e(2, RESULTS, ("a", "b", "c"))]
    )
    assert s["results"] == 3


def test_click_rank_given_takes_precedence() -> None:
    _, (s,) = records([e(0, SEARCH, "q"), e(1, RESULTS, ("a", "b")), e(2, CLICK, "b", rank=7)])
    assert s["first_click_rank"] == 7
    assert abs(s["reciprocal_rank"] - 1 / 7) < 1e-12


def test_clicked_item_not_in_results_has_unknown_rank() -> None:
    _, (s,) = records([e(0, SEARCH, "q"), e(1, RESULTS, ("a",)), e(2, CLICK, "zzz")])
    assert s["clicked"] and s["first_click_rank"] is None and s["reciprocal_rank"] is None


def test_reformulation() -> None:
    _, (a, b, c) = records(
        [
            e(0, SEARCH, "q"),
            e(1, SEARCH, "q2"),
            e(2, RESULTS, ("x",)),
            e(3, CLICK, "x"),
            e(4, SEARCH, "q3"),
        ]
    )
    assert a["reformulated"] and not b["reformulated"] and not c["reformulated"]


def test_long_click_by_dwell_and_by_last_event() -> None:
    base = [e(0, SEARCH, "q"), e(1, RESULTS, ("x", "y"))]
    _, (s,) = records([*base, e(2, CLICK, "x"), e(31.999, APP_CLOSE)])
    assert not s["long_click"], "dwell 29.999 s"
    _, (s,) = records([*base, e(2, CLICK, "x"), e(32, APP_CLOSE)])
    assert s["long_click"], "dwell exactly 30 s"
    _, (s,) = records([*base, e(2, CLICK, "x")])
    assert s["long_click"], "a click that ends the session"
    _, (s, _r) = records([*base, e(2, CLICK, "x"), e(3, CLICK, "y"), e(60, SEARCH, "r")])
    assert s["long_click"], "some click's dwell is long enough"


def test_search_id_attaches_across_interleaving() -> None:
    _, (a, b) = records(
        [
            e(0, SEARCH, "first", sid="A"),
            e(1, SEARCH, "second", sid="B"),
            e(2, RESULTS, ("a1", "a2"), sid="A"),
            e(3, RESULTS, ("b1",), sid="B"),
            e(4, CLICK, "a2", sid="A"),
        ]
    )
    assert (
        a["search_id"] == "A"
        and a["clicks"] == 1
        and a["first_click_rank"] == 2
        and a["results"] == 2
    )
    assert b["search_id"] == "B" and b["clicks"] == 0 and b["results"] == 1
    assert not a["reformulated"] and not b["reformulated"]


def test_search_id_with_no_matching_search_attaches_to_none() -> None:
    _, (a,) = records([e(0, SEARCH, "q", sid="A"), e(1, CLICK, "x", sid="Z")])
    assert a["clicks"] == 0


def test_derived_search_ids_are_stable_and_distinct() -> None:
    evs = [e(0, SEARCH, "q"), e(1, SEARCH, "q")]
    _, (a, b) = records(evs)
    _, (a2, b2) = records(list(evs))
    assert a["search_id"] == a2["search_id"] != b["search_id"] == b2["search_id"]


def test_time_to_first_click_uses_first_click() -> None:
    _, (s,) = records(
        [e(0, SEARCH, "q"), e(1, RESULTS, ("x",)), e(2.5, CLICK, "x"), e(9, CLICK, "x")]
    )
    assert s["time_to_first_click"] == 2.5 and s["clicks"] == 2


def test_a_sum_beyond_the_floats_is_infinite_not_an_error() -> None:
    """(``math.fsum`` raises there; a conversion value near 1.8e308 is valid, and the
    record writes the sum as null, as the native core does.)"""
    from search_sessions.core.searches import total

    assert total([1e308, 1e308]) == math.inf
    assert math.isnan(total([math.inf, -math.inf]))
    assert total([0.1] * 10) == 1.0
