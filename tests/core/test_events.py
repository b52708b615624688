"""Decoding (SPEC 1): every type and alias, time spellings, and every kind of bad record."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search_sessions.core.events import EventDecoder, OrderScan, pack_events, unpack_events
from search_sessions.core.layout import InputLayout
from search_sessions.core.schema import APP_CLOSE, APP_OPEN, CLICK, RESULTS, SEARCH
from search_sessions.core.time import format_time, parse_time

T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z


def format_time_s(seconds: int) -> str:
    return format_time(seconds * 1_000_000 + 123_456)


def dec(obj: object) -> object:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return EventDecoder(part=3).decode(raw, seq=9)


@pytest.mark.parametrize(
    ("tag", "kind", "extra"),
    [
        ("app_open", APP_OPEN, {}),
        ("AppOpen", APP_OPEN, {}),
        ("search", SEARCH, {"query": "q"}),
        ("Search", SEARCH, {"query": "q"}),
        ("results", RESULTS, {"items": ["a"]}),
        ("Results", RESULTS, {"items": ["a"]}),
        ("click", CLICK, {"item": "a"}),
        ("ClickResult", CLICK, {"item": "a"}),
        ("app_close", APP_CLOSE, {}),
        ("AppClose", APP_CLOSE, {}),
    ],
)
def test_every_type_and_alias(tag: str, kind: int, extra: dict[str, object]) -> None:
    ev = dec({"type": tag, "user": "u", "time": "2024-01-01T00:00:00Z", **extra})
    assert isinstance(ev, tuple)
    assert ev[:5] == (T0, 3, 9, kind, "u")


@pytest.mark.parametrize(
    "spelling",
    [
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T01:00:00+01:00",
        "2023-12-31T19:00:00-05:00",
        "2024-01-01T00:00:00",
        "2024-01-01 00:00:00Z",
        "2024-01-01t00:00:00z",
        "2024-01-01T00:00:00.000Z",
        1704067200,
        1704067200.0,
    ],
)
def test_time_spellings_are_the_same_instant(spelling: object) -> None:
    assert parse_time(spelling) == T0  # type: ignore[arg-type]


def test_fractional_times() -> None:
    assert parse_time(1704067200.25) == T0 + 250_000
    assert parse_time("2024-01-01T00:00:00.123456Z") == T0 + 123_456
    assert format_time(T0 + 123_456) == "2024-01-01T00:00:00.123456Z"
    assert format_time(T0) == "2024-01-01T00:00:00Z"


def test_integer_user_is_its_decimal_string() -> None:
    a = dec({"type": "app_open", "user": 42, "time": 0})
    b = dec({"type": "app_open", "user": "42", "time": 0})
    assert isinstance(a, tuple) and isinstance(b, tuple)
    assert a[4] == b[4] == "42"


def test_payloads_search_id_and_rank() -> None:
    s = dec({"type": "search", "user": "u", "time": 0, "query": "dogs", "search_id": "s1"})
    r = dec({"type": "results", "user": "u", "time": 0, "items": [], "search_id": "s1"})
    c = dec({"type": "click", "user": "u", "time": 0, "item": "x", "rank": 4, "search_id": "s1"})
    assert s == (0, 3, 9, SEARCH, "u", "dogs", None, "s1")
    assert r == (0, 3, 9, RESULTS, "u", (), None, "s1")
    assert c == (0, 3, 9, CLICK, "u", "x", 4, "s1")


def test_unknown_fields_are_ignored() -> None:
    ev = dec({"type": "search", "user": "u", "time": 0, "query": "q", "device": "ios", "x": [1]})
    assert isinstance(ev, tuple)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b"42", "not a JSON object"),
        (b'{"type": "teleport", "user": "u", "time": 0}', "unknown event type"),
        (b'{"user": "u", "time": 0}', "missing required field `type`"),
        (b'{"type": "search", "time": 0, "query": "q"}', "missing required field `user`"),
        (b'{"type": "search", "user": "u", "query": "q"}', "missing required field `time`"),
        (b'{"type": "search", "user": "u", "time": 0}', "missing required field `query`"),
        (b'{"type": "search", "user": "u", "time": 0, "query": 1}', "$.query"),
        (b'{"type": "search", "user": true, "time": 0, "query": "q"}', "$.user"),
        (b'{"type": "search", "user": null, "time": 0, "query": "q"}', "$.user"),
        (b'{"type": "search", "user": "u", "time": "soon", "query": "q"}', "bad time"),
        (
            b'{"type": "search", "user": "u", "time": "2024-13-01T00:00:00Z", "query": "q"}',
            "bad time",
        ),
        (b'{"type": "search", "user": "u", "time": 1e300, "query": "q"}', "out of range"),
        (b'{"type": "search", "user": "u", "time": [], "query": "q"}', "$.time"),
        (b'{"type": "results", "user": "u", "time": 0, "items": "a"}', "$.items"),
        (b'{"type": "results", "user": "u", "time": 0, "items": [1]}', "$.items"),
        (b'{"type": "click", "user": "u", "time": 0}', "missing required field `item`"),
        (b'{"type": "click", "user": "u", "time": 0, "item": "a", "rank": 0}', "$.rank"),
        (b'{"type": "click", "user": "u", "time": 0, "item": "a", "rank": 1.5}', "$.rank"),
        (b'{"type": "search", "user": "u", "time": 0, "query": "q", "search_id": 3}', "search_id"),
        (b'{"type": "search", "user": "u", "time": 0, "query": "\xff"}', "not UTF-8"),
        (b'{"type": "search", "user": "u", "time": 0, "query": "q"} trailing', "not JSON"),
    ],
)
def test_invalid_records_get_a_reason(raw: bytes, words: str) -> None:
    reason = dec(raw)
    assert isinstance(reason, str), reason
    assert words in reason
    assert "\n" not in reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(raw: bytes) -> None:
    out = dec(raw)
    assert isinstance(out, (tuple, str))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["search", "results", "click", "app_open", "AppClose", "x"]),
            "user": json_values,
            "time": json_values | st.sampled_from(["2024-01-01T00:00:00Z", "nope"]),
            "query": json_values,
            "items": json_values,
            "item": json_values,
            "rank": json_values,
        },
    )
)
def test_random_json_never_crashes(obj: dict[str, object]) -> None:
    out = dec(obj)
    assert isinstance(out, (tuple, str))


texts = st.text(max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["search", "results", "click", "app_open", "app_close"]),
                "user": texts | st.integers(),
                "time": st.integers(-(10**9), 10**10).map(format_time_s),
                "query": texts,
                "items": st.lists(texts, max_size=4),
                "item": texts,
            },
            optional={"rank": st.integers(1, 50), "search_id": texts},
        ),
        max_size=20,
    )
)
def test_packed_events_come_back_equal(records: list[dict[str, object]]) -> None:
    """Events sent to a shard in another process are packed; unpacked, they must be the
    very same tuples (same types too: results' items stay a tuple)."""
    events = [dec(r) for r in records]
    assert all(isinstance(e, tuple) for e in events)
    back = unpack_events(pack_events(events))  # type: ignore[arg-type]
    assert back == events
    assert [tuple(map(type, e)) for e in back] == [tuple(map(type, e)) for e in events]


time_fields = (
    json_values
    | st.integers(-(10**19), 10**19)
    | st.floats()
    | st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat())
    | st.sampled_from(["2024-01-01T00:00:00.1234567Z", "2024-01-01", "1e3", " 12 ", "0001-01-01"])
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["search", "app_open", "x"]), "user": st.just("u")},
            optional={"time": time_fields, "ts": time_fields, "query": st.just("q")},
        ),
        max_size=8,
    ),
    st.sampled_from(["auto", "s", "ms", "us", "ns"]),
    st.booleans(),
)
def test_times_are_the_times_decode_reads(
    records: list[dict[str, object]], unit: str, renamed: bool
) -> None:
    """The pre-scan of --order auto reads only the time field: every line decode reads
    as an event has the very same time there."""
    layout = InputLayout(fields=(("time", "ts"),) if renamed else (), time_unit=unit)
    decoder = EventDecoder(0, layout)
    lines = [json.dumps(r).encode() for r in records] + [b"", b"{", b"[1]"]
    times = decoder.times(lines)
    assert len(times) == len(lines)
    for seq, (line, t) in enumerate(zip(lines, times, strict=True)):
        ev = decoder.decode(line, seq)
        if isinstance(ev, tuple):
            assert t == ev[0]


def test_an_order_scan_finds_the_first_event_older_than_the_lateness() -> None:
    scan = OrderScan(lateness_us=60)
    assert not scan.add([0, 100, None, 40, 160])  # 40 is 60 older than 100: not more
    assert scan.add([99, 100, 0])  # 99 is 61 older than 160 (line 6)
    assert scan.late == (6, 61)
    assert scan.add([500]) and scan.late == (6, 61)  # the first one stays


@pytest.mark.parametrize(
    ("time", "unit", "reason"),
    [
        ('"\\u001c5"', "auto", "not RFC 3339 / ISO 8601"),
        ("1e305", "s", "out of range"),
        ('"1e305"', "s", "out of range"),
    ],
)
def test_times_that_used_to_abort_the_run_are_bad_times(time: str, unit: str, reason: str) -> None:
    """A separator character before digits, and epoch numbers whose microseconds overflow
    a float, raised ValueError and OverflowError out of the decoder (found by the native
    prototype's differential test): now dead letters."""
    decoder = EventDecoder(0, InputLayout(time_unit=unit))
    line = f'{{"type": "app_open", "user": "u", "time": {time}}}'.encode()
    got = decoder.decode(line, 1)
    assert isinstance(got, str) and reason in got, got
