"""The native records (``search_sessions_native.render``) against the Python core's
``core.searches.render`` and msgspec's ``encode_lines``: the same bytes, counts and
times; and each JSON writer and text rule of the native core against msgspec and
CPython, one value at a time."""

from __future__ import annotations

import math
import sys

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from search_sessions.core.schema import APP_CLOSE, APP_OPEN, CLICK, CONVERSION, RESULTS, SEARCH
from search_sessions.core.searches import Rules, continues_typing, render, session_id_for
from search_sessions.core.time import MAX_US, MIN_US, format_time

native = pytest.importorskip("search_sessions_native")

ENCODER = msgspec.json.Encoder()
REASONS = ("gap", "app_close", "app_open", "max_session", "end_of_input")

# Text with what JSON escapes, what it does not (DEL, U+2028), Python's extra
# spaces (\x1c-\x1f), final sigmas, combining marks and capitals newer than CPython's
# Unicode (U+A7CB, U+10D50), which its str.lower leaves alone.
ODD = '\x00\x08\x1c\x1f\x7f"\\/ \t\n\xa0\u2028\u2029ΣσΑé\u0301İ\ua7cb\U00010d50\ue000😀'  # noqa: RUF001
odd_text = st.text(alphabet=st.sampled_from("abcd" + ODD), max_size=6)
users = st.one_of(st.sampled_from(["u", "v", "ü\x1f"]), st.text(max_size=5))
queries = st.one_of(st.sampled_from(["d", "do", "dog", "dgo", "dogs", " Dog", "cat"]), odd_text)
items = st.sampled_from(["a", "b", "c", "é\n"])
sids = st.one_of(st.none(), st.sampled_from(["x", "y", "z"]))
values = st.one_of(
    st.none(),
    st.sampled_from([0.1, 1e300, -0.0, 0.0, 2.0, 1e-300, 5e-324, -7.0, 1e16]),
    st.floats(-1e300, 1e300, allow_nan=False),
)
dim_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**100), 2**100),
    st.floats(),
    odd_text,
)


@st.composite
def payloads(draw: st.DrawFn, kind: int) -> object:
    if kind == SEARCH:
        return draw(queries)
    if kind == RESULTS:
        return tuple(draw(st.lists(items, max_size=4)))
    if kind == CLICK:
        return draw(items)
    if kind == CONVERSION:
        item = draw(st.one_of(st.none(), items))
        return (item, draw(values), draw(st.one_of(st.none(), st.sampled_from(["purchase"]))))
    return None


# Gaps that land on either side of the click thresholds and the typeahead window.
gaps = st.one_of(
    st.sampled_from([0, 0, 1, 500_000, 2_000_000, 9_999_999, 10_000_000, 29_999_999]),
    st.sampled_from([30_000_000, 31_000_000]),
    st.integers(0, 100_000_000),
)
kinds = st.sampled_from([SEARCH, SEARCH, RESULTS, CLICK, CLICK, CONVERSION, APP_OPEN, APP_CLOSE])


@st.composite
def sessions(draw: st.DrawFn, n_dims: int) -> tuple[str, list[tuple], str]:
    user = draw(users)
    t = draw(
        st.one_of(
            st.sampled_from([0, 1_700_000_000_000_000, 1_700_000_000_250_000, MIN_US, -1]),
            st.integers(MIN_US, MAX_US - 10**12),
        )
    )
    events = []
    for seq in range(draw(st.integers(1, 12))):
        t += draw(gaps)
        kind = draw(kinds)
        rank = (
            draw(st.one_of(st.none(), st.integers(1, 5), st.just(2**64 - 1)))
            if kind == CLICK
            else None
        )
        sid = draw(sids) if kind in (SEARCH, RESULTS, CLICK, CONVERSION) else None
        ev: tuple = (t, 0, seq, kind, user, draw(payloads(kind)), rank, sid)
        if n_dims:
            ev += (tuple(draw(dim_values) for _ in range(n_dims)),)
        events.append(ev)
    return user, events, draw(st.sampled_from(REASONS))


@st.composite
def batches(draw: st.DrawFn) -> tuple[list, Rules]:
    dims = draw(st.sampled_from([(), ("variant",), ("platform", 'odd\x01"key')]))
    rules = Rules(
        long_click_us=draw(st.sampled_from([30_000_000, 1_000_000, 0])),
        short_click_us=draw(st.sampled_from([10_000_000, 500_000, 0])),
        typeahead_us=draw(st.sampled_from([None, None, 2_000_000, 0, 10**9])),
        dimensions=dims,
    )
    emitted = draw(st.lists(sessions(len(dims)), min_size=1, max_size=4))
    if len(emitted) > 1 and draw(st.booleans()):  # one user, one start: ordinals 0, 1
        emitted[1] = (emitted[0][0], emitted[0][1], emitted[1][2])
    return emitted, rules


def python_render(emitted: list, rules: Rules, counts: list[int]) -> tuple:
    times: list[int] = []
    sessions_, searches = render(emitted, rules, counts, times)
    return ENCODER.encode_lines(searches), ENCODER.encode_lines(sessions_), counts, times


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.lists(st.integers(0, 1000), min_size=4, max_size=4))
def test_native_render_writes_the_python_cores_bytes(batch: tuple, counts: list[int]) -> None:
    emitted, rules = batch
    try:
        want = python_render(emitted, rules, list(counts))
    except OverflowError:  # fsum's intermediate overflow: the native sum is null
        assume(False)
    got = native.render(
        emitted,
        rules.long_click_us,
        rules.short_click_us,
        rules.typeahead_us,
        list(rules.dimensions),
        counts,
    )
    assert got[0] == want[0]
    assert got[1] == want[1]
    assert list(got[2]) == want[2]
    assert list(got[3]) == want[3]


def test_native_render_of_nothing() -> None:
    assert native.render([], 1, 1, None, [], [1, 2, 3, 4]) == (b"", b"", [1, 2, 3, 4], [])


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.floats(), st.floats(width=32), st.integers(-(2**60), 2**60).map(float)))
def test_floats_as_msgspec_writes_them(x: float) -> None:
    assert native.json_float(x) == ENCODER.encode(x)


@pytest.mark.parametrize(
    "x",
    [
        1.0,
        0.5,
        1e16,
        1e15,
        1e-7,
        1e-5,
        123456789012345680.0,
        5e-324,
        sys.float_info.max,
        -0.0,
        2.0**-1074 * 3,
        9007199254740993.0,
        1e21,
        1e22,
        1e23,
        0.1 + 0.2,
    ],
)
def test_float_spellings(x: float) -> None:
    assert native.json_float(x) == ENCODER.encode(x)


@settings(max_examples=1000, deadline=None)
@given(st.text())
def test_strings_as_msgspec_writes_them(s: str) -> None:
    assume(not any("\ud800" <= c <= "\udfff" for c in s))
    assert native.json_str(s) == ENCODER.encode(s)


def test_every_ascii_and_separator_as_msgspec_writes_it() -> None:
    s = "".join(map(chr, range(128))) + "\u2028\u2029\x85\ufeff"
    assert native.json_str(s) == ENCODER.encode(s)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.integers(MIN_US, MAX_US), st.integers(-1000, 1000).map(lambda k: k * 250_000)))
def test_times_as_format_time_writes_them(us: int) -> None:
    assert native.json_time(us) == ENCODER.encode(format_time(us))


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(allow_nan=False), st.sampled_from([1e16, 1.0, 1e-16, -1e16])),
        max_size=8,
    )
)
def test_fsum_is_pythons(xs: list[float]) -> None:
    try:
        want = math.fsum(xs)
    except OverflowError:
        want = math.inf
    except ValueError:  # -inf + inf
        assert math.isnan(native.fsum(xs))
        return
    got = native.fsum(xs)
    assert got == want and math.copysign(1, got) == math.copysign(1, want)


def test_typing_key_of_every_code_point_is_pythons() -> None:
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        assert native.typing_key(c) == c.strip().lower(), hex(cp)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.sampled_from("aA " + ODD + "\u0345\u00ad'\u2019\u1c89"), max_size=8))
def test_typing_key_in_context_is_pythons(q: str) -> None:
    assert native.typing_key(q) == q.strip().lower()


@settings(max_examples=1000, deadline=None)
@given(odd_text, odd_text)
def test_continues_typing_is_pythons(q: str, prev: str) -> None:
    assert native.continues_typing(q, prev) == continues_typing(q, prev)


@given(st.text(), st.integers(MIN_US, MAX_US), st.integers(0, 3))
def test_session_ids_are_pythons(user: str, start: int, ordinal: int) -> None:
    assume(not any("\ud800" <= c <= "\udfff" for c in user))
    assert native.session_id_for(user, start, ordinal) == session_id_for(user, start, ordinal)
