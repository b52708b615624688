"""Conversions, satisfaction, keystroke collapse and dimensions (issue #13 rules), with
explicit timestamps, and the core against the oracle on random sessions."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from search_sessions.core.events import Event, EventDecoder
from search_sessions.core.layout import InputLayout
from search_sessions.core.schema import (
    APP_CLOSE,
    APP_OPEN,
    CLICK,
    CONVERSION,
    KIND_NAMES,
    RESULTS,
    SEARCH,
)
from search_sessions.core.searches import DEFAULT_RULES, Rules, continues_typing, session_records

from .. import oracle

S = 1_000_000


def e(
    t: float,
    kind: int,
    payload: Any = None,
    rank: int | None = None,
    sid: str | None = None,
    dims: tuple[Any, ...] | None = None,
) -> Event:
    ev = (int(t * S), 0, int(t * 1000), kind, "u", payload, rank, sid)
    return ev if dims is None else (*ev, dims)  # type: ignore[return-value]


def conv(t: float, item: str | None = None, value: float | None = None, sid: str | None = None,
         dims: tuple[Any, ...] | None = None) -> Event:  # fmt: skip
    return e(t, CONVERSION, (item, value, None), None, sid, dims)


def records(
    events: list[Event], rules: Rules = DEFAULT_RULES
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    session, searches = session_records("u", events, "gap", 0, rules)
    return msgspec.structs.asdict(session), [msgspec.structs.asdict(s) for s in searches]


# Conversions ---------------------------------------------------------------------------


def test_conversion_by_search_id_even_to_an_earlier_search() -> None:
    session, searches = records(
        [
            e(0, SEARCH, "a", sid="s1"),
            e(1, SEARCH, "b", sid="s2"),
            conv(2, "x", 10.0, sid="s1"),
            conv(3, "y", 2.5, sid="nope"),  # no search has it: none, but the session counts it
        ]
    )
    assert [(s["conversions"], s["converted"], s["conversion_value"]) for s in searches] == [
        (1, True, 10.0),
        (0, False, 0.0),
    ]
    assert (session["conversions"], session["conversion_value"]) == (2, 12.5)


def test_conversion_by_item_goes_to_the_latest_search_that_showed_it() -> None:
    _, searches = records(
        [
            e(0, SEARCH, "a"),
            e(1, RESULTS, ("x", "y")),
            e(2, SEARCH, "b"),
            e(3, RESULTS, ("z",)),
            conv(4, "x", 5.0),  # shown by "a" only
            e(5, SEARCH, "c"),
            e(6, RESULTS, ("x",)),
            conv(7, "x", 1.0),  # now "c" is the latest to show it
            conv(8, "q", 1.0),  # shown by none: attached to none
        ]
    )
    assert [s["conversion_value"] for s in searches] == [5.0, 0.0, 1.0]


def test_only_results_shown_before_the_conversion_count() -> None:
    _, searches = records(
        [
            e(0, SEARCH, "a"),
            e(1, RESULTS, ("x",)),
            e(2, SEARCH, "b"),
            e(3, RESULTS, ("y",)),
            conv(4, "y"),
            e(5, RESULTS, ("z",)),  # b's latest list changes after the conversion
            conv(6, "y"),  # no search's latest list has y now
        ]
    )
    assert [s["conversions"] for s in searches] == [0, 1]


def test_conversion_without_item_goes_to_the_latest_search_and_none_before_any() -> None:
    session, searches = records(
        [conv(0, None, 3.0), e(1, SEARCH, "a"), e(2, SEARCH, "b"), conv(3, None, None)]
    )
    assert [(s["conversions"], s["conversion_value"]) for s in searches] == [(0, 0.0), (1, 0.0)]
    assert (session["conversions"], session["conversion_value"]) == (2, 3.0)


def test_conversion_with_an_id_of_a_later_search_attaches_to_it() -> None:
    _, searches = records([e(0, SEARCH, "a"), conv(1, sid="s9"), e(2, SEARCH, "b", sid="s9")])
    assert [s["conversions"] for s in searches] == [0, 1]


def test_conversions_decode_with_aliases_and_currency() -> None:
    d = EventDecoder(0, InputLayout(currency="usd"))
    assert d.decode(b'{"type":"purchase","user":"u","time":0,"item":"x","value":3}', 1) == (
        0, 0, 1, CONVERSION, "u", ("x", 3.0, "purchase"), None, None
    )  # fmt: skip
    ok = d.decode(b'{"type":"conversion","user":"u","time":0,"currency":"USD","kind":"k"}', 2)
    assert isinstance(ok, tuple) and ok[5] == (None, None, "k")
    bad = d.decode(b'{"type":"add_to_cart","user":"u","time":0,"currency":"EUR"}', 3)
    assert bad == "conversion in currency 'EUR', not USD (--currency)"
    assert "value" in str(
        EventDecoder(0).decode(b'{"type":"conversion","user":"u","time":0,"value":"x"}', 4)
    )


# Satisfaction -------------------------------------------------------------------------


def test_short_and_long_clicks_and_success() -> None:
    session, searches = records(
        [
            e(0, APP_OPEN),
            e(1, SEARCH, "a"),
            e(2, RESULTS, ("x", "y")),
            e(3, CLICK, "x"),
            e(12.999, SEARCH, "b"),  # 9.999 s after the click: short
            e(13, RESULTS, ("x",)),
            e(14, CLICK, "x"),
            e(24, SEARCH, "c"),  # exactly 10 s: neither short nor long
            e(25, CLICK, "z"),
            e(55, APP_CLOSE),  # exactly 30 s: long
        ]
    )
    assert [(s["short_click"], s["long_click"]) for s in searches] == [
        (True, False),
        (False, False),
        (False, True),
    ]
    assert session["success"] and session["time_to_success"] == 25.0


def test_success_by_conversion_or_a_last_click_and_none_without() -> None:
    session, _ = records([e(0, SEARCH, "a"), conv(4)])
    assert (session["success"], session["time_to_success"]) == (True, 4.0)
    session, searches = records([e(0, SEARCH, "a"), e(2, CLICK, "x")])
    assert (session["success"], session["time_to_success"]) == (True, 2.0)
    assert searches[0]["short_click"] is False  # a last click is followed by nothing
    session, _ = records([e(0, SEARCH, "a"), e(2, CLICK, "x"), e(3, SEARCH, "b")])
    assert (session["success"], session["time_to_success"]) == (False, None)


def test_unattached_long_click_is_a_success_and_earliest_counts() -> None:
    session, _ = records([e(0, APP_OPEN), e(1, CLICK, "x", sid="none"), e(40, SEARCH, "a")])
    assert session["time_to_success"] == 1.0


def test_thresholds_are_options() -> None:
    evs = [e(0, SEARCH, "a"), e(1, CLICK, "x"), e(6, SEARCH, "b")]
    _, searches = records(evs, Rules(short_click_us=5 * S))
    assert searches[0]["short_click"] is False
    _, searches = records(evs, Rules(long_click_us=5 * S))
    assert searches[0]["long_click"] is True


# Keystroke collapse --------------------------------------------------------------------

TYPE = Rules(typeahead_us=2 * S)


def test_typeahead_bursts_collapse_into_one_intent() -> None:
    session, searches = records(
        [
            e(0, SEARCH, "ru", sid="k1"),
            e(0.1, RESULTS, ("a",)),
            e(0.5, SEARCH, "Run ", sid="k2"),
            e(0.6, RESULTS, ("b", "c")),
            e(2.5, SEARCH, "running", sid="k3"),  # exactly 2 s after the previous request
            e(2.7, RESULTS, ("c", "d")),
            e(4, CLICK, "d"),
            e(5, SEARCH, "runnin", sid="k4"),  # a click in between: a new search
        ],
        TYPE,
    )
    first, second = searches
    assert first["keystrokes"] == 3 and first["query"] == "running"
    assert first["search_id"] == "k3" and first["time"] == "1970-01-01T00:00:00Z"
    assert first["results"] == 2 and first["first_click_rank"] == 2
    assert first["time_to_first_click"] == 1.5  # from the last request
    assert first["reformulated"] is False and second["keystrokes"] == 1
    assert session["searches"] == 2


def test_typeahead_edit_rules_and_boundaries() -> None:
    def intents(queries: list[str], step: float = 1.0) -> list[int]:
        evs = [e(i * step, SEARCH, q) for i, q in enumerate(queries)]
        return [s["keystrokes"] for s in records(evs, TYPE)[1]]

    assert intents(["cat", "cart"]) == [2]  # one insertion
    assert intents(["cart", "cat"]) == [2]  # one deletion
    assert intents(["cat", "cut"]) == [2]  # one substitution
    assert intents(["cat", "dog"]) == [1, 1]
    assert intents(["cat", "cuts"]) == [1, 1]  # two edits
    assert intents(["a", "b", "bc"]) == [3]  # each request against the previous one
    assert intents(["cat", "cats"], step=2.000001) == [1, 1]
    assert intents(["cat", "cats"]) == [2]
    assert records([e(0, SEARCH, "cat"), e(1, SEARCH, "cats")])[1][0]["keystrokes"] == 1


def test_a_conversion_between_requests_breaks_the_intent() -> None:
    _, searches = records([e(0, SEARCH, "ca"), conv(0.5), e(1, SEARCH, "cat")], TYPE)
    assert [s["keystrokes"] for s in searches] == [1, 1]


def testcontinues_typing() -> None:
    assert (
        continues_typing("shoes", "sh")
        and continues_typing("shoe", "shoes")
        and continues_typing("shxes", "shoes")
    )
    assert (
        not continues_typing("sxoe", "shoes")
        and not continues_typing("", "ab")
        and continues_typing("ab", "")
    )


# Dimensions ---------------------------------------------------------------------------

DIMS = Rules(dimensions=("variant", "platform"))


def test_dimensions_from_the_search_else_the_latest_earlier_event() -> None:
    session, searches = records(
        [
            e(0, APP_OPEN, dims=("A", "ios")),
            e(1, SEARCH, "a", dims=(None, None)),
            e(2, RESULTS, ("x",), dims=("B", None)),
            e(3, SEARCH, "b", dims=(None, "web")),
        ],
        DIMS,
    )
    assert [s["dimensions"] for s in searches] == [
        {"variant": "A", "platform": "ios"},
        {"variant": "B", "platform": "web"},
    ]
    assert session["dimensions"] == {"variant": "A", "platform": "ios"}
    session, searches = records([e(0, SEARCH, "a", dims=(None, None))], DIMS)
    assert searches[0]["dimensions"] == session["dimensions"] == {"variant": None, "platform": None}


def test_dimension_values_decode_as_given() -> None:
    d = EventDecoder(0, InputLayout(dimensions=("v", "n")))
    ev = d.decode(b'{"type":"search","user":"u","time":0,"query":"q","v":true,"n":2.5}', 1)
    assert isinstance(ev, tuple) and ev[8] == (True, 2.5)
    bad = d.decode(b'{"type":"search","user":"u","time":0,"query":"q","v":[1]}', 2)
    assert isinstance(bad, str) and "$.v" in bad


# Against the oracle -------------------------------------------------------------------


@st.composite
def session_events(draw: st.DrawFn) -> list[Event]:
    n = draw(st.integers(1, 25))
    out: list[Event] = []
    t = 0
    for i in range(n):
        t += draw(
            st.sampled_from([0, 100_000, 500_000, 2_000_000, 9_999_999, 10_000_000, 40_000_000])
        )
        kind = draw(st.sampled_from([SEARCH, SEARCH, RESULTS, CLICK, CLICK, CONVERSION, APP_OPEN]))
        sid = draw(st.sampled_from([None, None, None, "s1", "s2"]))
        rank = None
        if kind == SEARCH:
            payload: Any = draw(st.sampled_from(["ca", "cat", "cats", "cut", "dog", " Cat", "c"]))
        elif kind == RESULTS:
            payload = tuple(draw(st.lists(st.sampled_from("xyz"), max_size=3)))
        elif kind == CLICK:
            payload = draw(st.sampled_from("xyzw"))
            rank = draw(st.sampled_from([None, None, 2]))
        elif kind == CONVERSION:
            payload = (
                draw(st.sampled_from([None, "x", "y", "w"])),
                draw(st.sampled_from([None, 1.5, 0.1, 7.0])),
                None,
            )
        else:
            payload, sid = None, None
        dims = (draw(st.sampled_from([None, "A", "B"])), draw(st.sampled_from([None, 1, True])))
        out.append((t, 0, i, kind, "u", payload, rank, sid, dims))  # type: ignore[arg-type]
    return out


def _oracle_records(events: list[Event], typeahead: float | None) -> oracle.Result:
    evs = []
    for t, part, seq, kind, user, payload, rank, sid, dims in events:  # type: ignore[misc]
        ev = oracle.Ev(t, part, seq, KIND_NAMES[kind], user, sid=sid, rank=rank, dims=dims)
        if kind == SEARCH:
            ev.query = payload
        elif kind == RESULTS:
            ev.items = payload
        elif kind == CLICK:
            ev.item = payload
        elif kind == CONVERSION:
            ev.item, ev.value, ev.ckind = payload
        evs.append(ev)
    res = oracle.Result()
    rules = oracle.Rules(
        30 * S, 10 * S, None if typeahead is None else int(typeahead * S), ("v", "p")
    )
    oracle._emit(res, "u", evs, "gap", 0, rules)
    return res


@given(events=session_events(), typeahead=st.sampled_from([None, 0.5, 2.0]))
def test_session_records_equal_the_oracle(events: list[Event], typeahead: float | None) -> None:
    rules = Rules(
        typeahead_us=None if typeahead is None else int(typeahead * S), dimensions=("v", "p")
    )
    session, searches = records(events, rules)
    want = _oracle_records(events, typeahead)
    assert searches == want.searches
    assert session == want.sessions[0]
