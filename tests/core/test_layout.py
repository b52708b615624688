"""Field and type mapping, and epoch units, on the JSON decoder (every format and Kafka
go through it or the same structs)."""

from __future__ import annotations

import pytest

from search_sessions.config import Config, parse_mapping
from search_sessions.core.events import EventDecoder
from search_sessions.core.layout import InputLayout
from search_sessions.core.time import parse_time
from search_sessions.errors import ConfigError

T = 1_704_067_200  # 2024-01-01T00:00:00Z


def test_renamed_fields_and_extra_type_names_decode_to_the_same_events() -> None:
    layout = InputLayout(
        fields=(("user", "anon_id"), ("time", "ts"), ("query", "q"), ("type", "event")),
        types=(("search", "query_submitted"), ("click", "result_click")),
    )
    d = EventDecoder(0, layout)
    plain = EventDecoder(0)
    mapped = d.decode(b'{"event": "query_submitted", "anon_id": 7, "ts": 0, "q": "dogs"}', 1)
    assert mapped == plain.decode(b'{"type": "search", "user": "7", "time": 0, "query": "dogs"}', 1)
    click = d.decode(b'{"event": "result_click", "anon_id": "a", "ts": 1, "item": "x"}', 2)
    assert click == (1_000_000, 0, 2, 3, "a", "x", None, None)
    # Our own names stay accepted as types; the old field names are not the fields now.
    assert d.decode(b'{"event": "search", "anon_id": "a", "ts": 1, "q": "x"}', 3)[3] == 1
    reason = d.decode(b'{"event": "search", "user": "a", "ts": 1, "q": "x"}', 4)
    assert reason == "Object missing required field `anon_id`"


def test_an_unknown_mapped_type_is_a_clear_dead_letter_reason() -> None:
    d = EventDecoder(0, InputLayout(types=(("search", "q"),)))
    reason = d.decode(b'{"type": "nope", "user": "a", "time": 1}', 1)
    assert isinstance(reason, str) and "unknown event type" in reason


@pytest.mark.parametrize(
    ("value", "unit", "want"),
    [
        (T, "auto", T * 10**6),
        (T * 1000, "auto", T * 10**6),
        (T * 1000 + 250, "auto", T * 10**6 + 250_000),
        (T * 10**6 + 7, "auto", T * 10**6 + 7),
        (T * 10**9 + 7_999, "auto", T * 10**6 + 7),
        (T * 1000, "ms", T * 10**6),
        (1500, "ms", 1_500_000),
        (1500, "s", 1_500_000_000),
        (1.5, "s", 1_500_000),
        (2.5, "ms", 2500),
        (str(T * 1000), "auto", T * 10**6),
        ("1500", "ms", 1_500_000),
        ("2024-01-01T02:00:00.123456+02:00", "ms", T * 10**6 + 123_456),
        ("2024-01-01 00:00:00", "auto", T * 10**6),
    ],
)
def test_epoch_numbers_in_their_unit(value: int | float | str, unit: str, want: int) -> None:
    assert parse_time(value, unit) == want
    d = EventDecoder(0, InputLayout(time_unit=unit))
    line = f'{{"type": "app_open", "user": "a", "time": {value!r}}}'.replace("'", '"')
    assert d.decode(line.encode(), 1)[0] == want


def test_config_checks_mappings() -> None:
    assert parse_mapping(["user=anon_id"], "--field") == (("user", "anon_id"),)
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_mapping(["user"], "--field")
    with pytest.raises(ConfigError, match="--field 'usr'"):
        Config(inputs=("-",), fields=(("usr", "x"),))
    with pytest.raises(ConfigError, match="--type 'query'"):
        Config(inputs=("-",), types=(("query", "x"),))
    with pytest.raises(ConfigError, match="time unit"):
        Config(inputs=("-",), time_unit="min")


@pytest.mark.parametrize(
    ("fields", "types", "error"),
    [
        ((), (("click", "Search"),), "'Search' already names search events"),
        ((), (("search", "q"), ("click", "q")), "'q' already names search events"),
        ((), (("app_open", "search"),), "'search' already names search events"),
        ((("type", "user"),), (), "'user' cannot be both type and user"),
        ((("user", "id"), ("item", "id")), (), "'id' cannot be both user and item"),
        ((("user", "a"), ("user", "b")), (), "--field user is given twice"),
    ],
)
def test_config_refuses_names_that_stand_for_two_things(
    fields: tuple[tuple[str, str], ...], types: tuple[tuple[str, str], ...], error: str
) -> None:
    """(msgspec would refuse them with a traceback when the decoder is made.)"""
    with pytest.raises(ConfigError, match=error):
        Config(inputs=("-",), fields=fields, types=types)


def test_a_mapping_given_twice_or_swapped_is_one_layout() -> None:
    cfg = Config(inputs=("-",), fields=(("user", "type"), ("type", "user")))
    cfg = Config(inputs=("-",), fields=cfg.fields, types=(("search", "q"), ("search", "q")))
    d = EventDecoder(0, cfg.layout)
    ev = d.decode(b'{"user": "search", "type": "u", "time": 1, "query": "x"}', 1)
    assert not isinstance(ev, str) and ev[4] == "u"
    assert not isinstance(d.decode(b'{"user": "q", "type": "u", "time": 1, "query": "x"}', 2), str)


def test_an_unknown_type_under_a_renamed_type_field_says_so() -> None:
    d = EventDecoder(0, InputLayout(fields=(("type", "event"),)))
    reason = d.decode(b'{"event": "nope", "user": "a", "time": 1}', 1)
    assert isinstance(reason, str) and reason.startswith("unknown event type")
    assert "`$.event`" in reason
