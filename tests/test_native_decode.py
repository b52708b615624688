"""The native decoder against the Python core (``core.events.EventDecoder``).

The native decoder may defer any line to the Python core (``decode_native`` returns
``None``), but an event it returns must be exactly the Python core's: the same values
and the same Python types in every slot (``1`` is not ``1.0`` nor ``True`` here). And it
must not defer the common spellings, or the fast path is never taken.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_sessions.core.events import EventDecoder
from search_sessions.core.layout import InputLayout
from search_sessions.simulate import SimSpec, generate

from .conftest import mutated

native = pytest.importorskip("search_sessions_native")

PLAIN = InputLayout()
LAYOUTS = [
    PLAIN,
    InputLayout(dimensions=("variant", "platform")),
    InputLayout(currency="usd", time_unit="ms"),
    InputLayout(
        fields=(("user", "anon_id"), ("type", "event"), ("query", "q")),
        types=(("search", "query_submitted"), ("conversion", "buy")),
        dimensions=("platform",),
        currency="EUR",
        time_unit="s",
    ),
]


def decoders(layout: InputLayout, part: int = 2) -> tuple[Any, EventDecoder]:
    py = EventDecoder(part, layout)
    nat = native.Decoder(
        part,
        list(layout.fields),
        list(layout.types),
        layout.time_unit,
        list(layout.dimensions),
        layout.currency,
        py.decode,
    )
    return nat, py


DECODERS = [decoders(layout) for layout in LAYOUTS]


def same(a: Any, b: Any) -> bool:
    """Equal, with the same type in every slot, all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a == 0:
        return str(a) == str(b)  # 0.0 and -0.0
    return bool(a == b)


def check(nat: Any, py: EventDecoder, line: bytes, seq: int = 1) -> bool:
    """Asserts the native event, if any, is the Python core's; whether there was one."""
    got = nat.decode_native(line, seq)
    if got is None:
        return False
    want = py.decode(line, seq)
    assert same(got, want), (line, got, want)
    return True


# Spellings ---------------------------------------------------------------------------

TAGS = [
    "app_open",
    "search",
    "results",
    "click",
    "app_close",
    "conversion",
    "purchase",
    "add_to_cart",
    "AppOpen",
    "Search",
    "Results",
    "ClickResult",
    "AppClose",
    "query_submitted",
    "buy",
    "bogus",
    "Search ",
    "SEARCH",
]


def js(value: Any, ascii_: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ascii_)


@st.composite
def iso_times(draw: st.DrawFn) -> str:
    """RFC 3339 / ISO 8601 text in the spellings logs use, and some odd ones."""
    from datetime import datetime

    low, high = datetime(1, 1, 3), datetime(9999, 12, 28)  # noqa: DTZ001
    dt = draw(st.datetimes(min_value=low, max_value=high))
    date = draw(st.sampled_from(["%Y-%m-%d", "%Y%m%d"]))
    text = f"{dt.year:04d}" + dt.strftime(date)[len(str(dt.year)) :]
    text += draw(st.sampled_from(["T", "t", " ", "T", "x"]))
    text += dt.strftime(draw(st.sampled_from(["%H:%M:%S", "%H:%M", "%H%M%S", "%H"])))
    digits = draw(st.sampled_from([0, 0, 3, 6, 6, 9, 12]))
    if digits:
        frac = f"{dt.microsecond:06d}" + "".join(
            draw(st.lists(st.sampled_from("0123456789"), min_size=6, max_size=6))
        )
        text += draw(st.sampled_from([".", ","])) + frac[:digits]
    offset = draw(
        st.sampled_from(
            [
                "Z",
                "z",
                "",
                "+02:00",
                "-05:30",
                "+0000",
                "+00:00",
                "-00:00",
                "+14:00",
                "+23:59",
                "+24:00",
                "+05:30:15",
                "+01:00:00.5",
                "+1",
            ]
        )
    )
    return text + offset


def epoch_numbers() -> st.SearchStrategy[str]:
    seconds = st.integers(-62_000_000_000, 253_000_000_000)
    return st.one_of(
        seconds.map(str),  # int seconds
        seconds.map(lambda s: str(s * 1000 + 123)),  # ms
        seconds.map(lambda s: str(s * 1_000_000 + 456)),  # us
        st.integers(-(2**63), 2**63 - 1).map(str),  # ns, or out of range
        st.floats(-1e19, 1e19, allow_nan=False).map(repr),
        st.floats(1e8, 2e9).map(lambda f: f"{f:.3f}"),
        st.sampled_from(["-0", "0", "1e9", "1.7E9", "1e400", "-1e-400", "12345678901234567890123"]),
    )


def times() -> st.SearchStrategy[str]:
    """A `time` value's JSON text."""
    return st.one_of(
        iso_times().map(js),
        iso_times().map(js),
        epoch_numbers(),
        epoch_numbers(),
        epoch_numbers().map(lambda n: js(n if n[0] != "-" else " " + n)),
        st.sampled_from(
            [
                '"soon"',
                "true",
                "null",
                "[]",
                '"1970-01-01T00:00:00\\u005a"',
                '"2024-01-01T00:00:00\\u0000Z"',
                '"\\u0661"',
                '"2024-W01-1"',
                '"2024-001"',
                '"2024-02-30T00:00:00Z"',
                '"2024-01-01T24:00:00Z"',
                '"2024-01-01T23:59:60"',
                '"2024-01-01T23:60:00+02:00"',
                '"2024-01-01T99"',
                '"2024-01-01T00:00:00.1234567+24:00"',
            ]
        ),
    )


def users() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=12).map(lambda s: js(s, ascii_=True)),
        st.integers(-(2**63), 2**63 - 1).map(str),
        st.from_regex(r"[a-z0-9_-]{1,10}", fullmatch=True).map(js),
        st.text(max_size=12).map(js),
        st.integers(-(2**64), 2**64).map(str),
        st.sampled_from(["-0", "1.0", "true", "null", "[1]", '"\\ud800"', '"a\\"b"', "1e3"]),
    )


def strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=10).map(js),
        st.from_regex(r"[a-z0-9 ]{0,10}", fullmatch=True).map(js),
        st.text(max_size=10).map(lambda s: js(s, ascii_=True)),
        st.sampled_from(
            [
                "null",
                "1",
                "true",
                "[]",
                "{}",
                '"\\ud83d\\ude00"',
                '"\\u0000"',
                '"\\udc00"',
                '"\\ud800\\u0041"',
                '"\\ud800x"',
                '"\\uD83D\\uDE00"',
                '["\\ud800"]',
                '"\\x"',
                '{"\\ud800":1}',
                '"\\/\\b\\f\\n\\r\\t"',
            ]
        ),
    )


def numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["-0", "-0.0", "1e400", "0", "2", "null", '"1"', "true", "1E2", "5e-324"]),
    )


def any_json() -> st.SearchStrategy[str]:
    return st.one_of(strings(), numbers(), st.sampled_from(["[1,[2,{}]]", '{"a":{"b":[]}}']))


def fields() -> st.SearchStrategy[list[tuple[str, str]]]:
    """(key, JSON text) pairs of an event object, in some order, maybe with repeats."""
    pairs = {
        "type": st.one_of(st.sampled_from(TAGS).map(js), st.sampled_from(["1", "null"])),
        "user": users(),
        "time": times(),
        "query": strings(),
        "items": st.one_of(
            st.lists(st.text(max_size=6), max_size=4).map(js),
            st.sampled_from(['["a", 1]', "null", '"a"', "[]", '["\\u00e9"]']),
        ),
        "item": strings(),
        "rank": st.one_of(
            st.integers(-2, 30).map(str), st.sampled_from(["null", "1.0", "99999999999999999999"])
        ),
        "search_id": strings(),
        "value": numbers(),
        "currency": st.one_of(
            st.sampled_from(["usd", "USD", "eur", "EUR", "ß", "null", "1"]).map(
                lambda c: c if c in ("null", "1") else js(c)
            )
        ),
        "kind": strings(),
        "variant": any_json(),
        "platform": any_json(),
        "anon_id": users(),
        "event": st.sampled_from(TAGS).map(js),
        "q": strings(),
        "x": any_json(),
        "y": any_json(),
        "us\\u0065r": users(),  # an escaped key
    }
    required = ["type", "user", "time", "event", "anon_id"]
    optional = [k for k in pairs if k not in required]

    needs = {
        "search": ["query", "q"],
        "Search": ["query", "q"],
        "query_submitted": ["query", "q"],
        "results": ["items"],
        "Results": ["items"],
        "click": ["item"],
        "ClickResult": ["item"],
    }

    @st.composite
    def build(draw: st.DrawFn) -> list[tuple[str, str]]:
        tag = draw(st.sampled_from(TAGS))
        keys = [k for k in required if draw(st.integers(0, 9)) > 0]
        keys += [k for k in needs.get(tag, []) if draw(st.integers(0, 9)) > 0]
        more = draw(st.lists(st.sampled_from(optional), max_size=6, unique=True))
        keys += [k for k in more if k not in keys]
        if "us\\u0065r" in keys and draw(st.integers(0, 4)) > 0:
            keys.remove("us\\u0065r")
        if draw(st.integers(0, 9)) == 0 and keys:  # a repeated key
            keys.append(draw(st.sampled_from(keys)))
        keys = draw(st.permutations(keys))
        good = {"type": js(tag), "event": js(tag)}
        return [
            (k, good[k] if k in good and draw(st.integers(0, 9)) > 0 else draw(pairs[k]))
            for k in keys
        ]

    return build()


def render(pairs: list[tuple[str, str]], spaced: bool) -> bytes:
    sep = ", " if spaced else ","
    colon = ": " if spaced else ":"
    return ("{" + sep.join(f'"{k}"{colon}{v}' for k, v in pairs) + "}\n").encode()


# Properties --------------------------------------------------------------------------


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(fields(), st.booleans(), st.sampled_from(range(len(LAYOUTS))))
def test_native_events_are_the_python_cores(
    pairs: list[tuple[str, str]], spaced: bool, which: int
) -> None:
    nat, py = DECODERS[which]
    check(nat, py, render(pairs, spaced))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=80), st.sampled_from(range(len(LAYOUTS))))
def test_random_bytes(line: bytes, which: int) -> None:
    nat, py = DECODERS[which]
    check(nat, py, line)


MUTATIONS = [
    b"\x00",
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"1",
    b"-",
    b".",
    b"e",
    b",",
    b":",
    b" ",
    b"\xff",
    b"\xef\xbb\xbf",
    b"\xc3\xa9",
    b"null",
]


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(fields(), st.data(), st.sampled_from(range(len(LAYOUTS))))
def test_mutated_lines(pairs: list[tuple[str, str]], data: st.DataObject, which: int) -> None:
    nat, py = DECODERS[which]
    line = mutated(data, render(pairs, False), MUTATIONS)
    check(nat, py, line, seq=data.draw(st.integers(1, 2)))


def test_a_byte_order_mark_is_left_to_the_python_core() -> None:
    nat, py = DECODERS[0]
    line = b'\xef\xbb\xbf{"type":"app_open","user":"u","time":0}'
    assert nat.decode_native(line, 1) is None
    assert isinstance(py.decode(line, 1), tuple)


# The fast path is taken ----------------------------------------------------------------


def share_native(nat: Any, py: EventDecoder, lines: list[bytes]) -> float:
    """The share of the valid lines the native decoder decodes (checking each)."""
    valid = [line for line in lines if isinstance(py.decode(line, 1), tuple)]
    assert len(valid) > 0.95 * len(lines)
    return sum(check(nat, py, line) for line in valid) / len(valid)


@pytest.mark.parametrize(
    ("spec", "layout"),
    [
        (SimSpec(events=2000, users=50), PLAIN),
        (SimSpec(events=2000, users=50, seed=3, conversions=0.5), InputLayout(currency="USD")),
        (
            SimSpec(events=2000, users=50, seed=2, variants=("A", "B")),
            InputLayout(dimensions=("variant", "platform")),
        ),
    ],
)
def test_simulated_lines_take_the_fast_path(spec: SimSpec, layout: InputLayout) -> None:
    nat, py = decoders(layout)
    assert share_native(nat, py, list(generate(spec))) >= 0.99


def independent_lines(n: int, seed: int) -> list[bytes]:
    """Lines as another producer writes them: integer users, offset times with
    microseconds, epoch numbers (int and float seconds, int ms), any field order."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.randrange(1_600_000_000, 1_800_000_000)
        time: Any = rng.choice(
            [
                f"2024-03-05T10:11:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}+02:00",
                "2024-03-05T10:11:12Z",
                t,
                t + rng.random(),
                t * 1000 + rng.randrange(1000),
            ]
        )
        kind = rng.choice(["app_open", "search", "results", "click", "conversion", "app_close"])
        ev: dict[str, Any] = {"type": kind, "user": rng.randrange(10**9), "time": time}
        ev.update(
            {
                "search": {"query": "red shoes", "search_id": f"s{rng.randrange(99)}"},
                "results": {"items": ["a", "b", "c"]},
                "click": {"item": "b", "rank": rng.randrange(1, 10)},
                "conversion": {"item": "b", "value": rng.choice([19.99, 5, None])},
            }.get(kind, {})
        )
        keys = list(ev)
        rng.shuffle(keys)
        out.append(json.dumps({k: ev[k] for k in keys}).encode() + b"\n")
    return out


def test_independent_lines_take_the_fast_path() -> None:
    nat, py = decoders(PLAIN)
    assert share_native(nat, py, independent_lines(3000, seed=5)) >= 0.99


def test_decode_block_gives_the_python_cores_blocks() -> None:
    """decode_block with the native decoder: the same events, shards and dead letters."""
    from search_sessions.core.events import decode_block

    layout = InputLayout(dimensions=("variant", "platform"))
    nat, py = decoders(layout)
    sim = generate(SimSpec(events=3000, users=40, bad=0.02, variants=("A", "B")))
    lines = [line.rstrip(b"\n") + b"\n" for line in sim]
    lines += [b"\n", b'{"type":"bogus"}\n', b"not json\n"]
    want = decode_block(py, lines, 10, -(1 << 62), 5_000_000, 3)
    shards, late, bad, newest, size, _events, n = nat.decode_block(
        lines, 10, -(1 << 62), 5_000_000, 3
    )
    assert [b.tuples() for b in shards] == want[0]
    assert not any(late) and not any(want[1])  # in order: nothing maybe late
    assert bad == want[2]
    assert (newest, size, n) == (want[3], want[4], len(lines))
    # The same lines as one bytes (a block read raw), the last without its newline.
    raw = b"".join(lines)[:-1]
    shards, late, bad, newest, size, _events, n = nat.decode_block(
        raw, 10, -(1 << 62), 5_000_000, 3
    )
    assert [b.tuples() for b in shards] == want[0]
    assert bad == [*want[2][:-1], (want[2][-1][0], b"not json", want[2][-1][2])]
    assert (newest, size, n) == (want[3], want[4] - 1, len(lines))
