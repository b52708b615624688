"""CSV, TSV and AOL input rows: events as JSON gives them, several events from one AOL
line, and a one-line reason for every bad row."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search_sessions.core.events import EventDecoder
from search_sessions.core.formats import AolDecoder, CsvDecoder, make_decoder
from search_sessions.core.layout import InputLayout
from search_sessions.core.schema import APP_CLOSE, APP_OPEN, CLICK, RESULTS, SEARCH

T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
HEADER = b"type,user,time,query,items,item,rank,search_id\n"


def csv_row(line: bytes, header: bytes = HEADER, **kw: object) -> object:
    return CsvDecoder(3, header=header, **kw).decode(line, 9)  # type: ignore[arg-type]


def test_csv_every_type() -> None:
    d = CsvDecoder(3, header=HEADER)
    rows = [
        b"app_open,u1,2024-01-01T00:00:00Z,,,,,\n",
        b"search,u1,2024-01-01T00:00:05Z,dogs,,,,s-1\n",
        b"results,u1,2024-01-01T00:00:06Z,,fido|rover|buddy,,,\n",
        b"click,u1,2024-01-01T00:00:07Z,,,rover,2,\n",
        b"app_close,u1,2024-01-01T00:01:00Z,,,,,\r\n",
    ]
    assert [d.decode(r, i) for i, r in enumerate(rows, 2)] == [
        (T0, 3, 2, APP_OPEN, "u1", None, None, None),
        (T0 + 5_000_000, 3, 3, SEARCH, "u1", "dogs", None, "s-1"),
        (T0 + 6_000_000, 3, 4, RESULTS, "u1", ("fido", "rover", "buddy"), None, None),
        (T0 + 7_000_000, 3, 5, CLICK, "u1", "rover", 2, None),
        (T0 + 60_000_000, 3, 6, APP_CLOSE, "u1", None, None, None),
    ]


def test_csv_equals_json() -> None:
    """A row decodes to the event of the JSON object with the same fields."""
    json_dec = EventDecoder(3)
    line = b'{"type": "Search", "user": 7, "time": "2024-01-01T02:00:00.5+02:00", "query": "x"}'
    assert csv_row(b"Search,7,2024-01-01T02:00:00.5+02:00,x,,,,") == json_dec.decode(line, 9)


def test_header_row_and_blank_lines_hold_no_event() -> None:
    d = CsvDecoder(0, header=HEADER)
    assert d.decode(HEADER, 1) == []
    assert d.decode(HEADER.rstrip(b"\n"), 500) == []  # a header repeated (files joined)
    assert isinstance(d.decode(b"\n", 2), str)  # blank lines are skipped by decode_block


def test_header_with_byte_order_mark() -> None:
    header = b"\xef\xbb\xbfuser,type,time\r\n"
    d = CsvDecoder(0, header=header)
    assert d.decode(header, 1) == []
    assert d.decode(b"u,app_open,0\r\n", 2) == (0, 0, 2, APP_OPEN, "u", None, None, None)


def test_column_order_and_unknown_columns() -> None:
    header = b"time,extra,user,query,type\n"
    assert csv_row(b"60,whatever,u,cats,search", header) == (
        60_000_000,
        3,
        9,
        SEARCH,
        "u",
        "cats",
        None,
        None,
    )


def test_field_and_type_mapping() -> None:
    layout = InputLayout(
        fields=(("user", "anon_id"), ("type", "event"), ("time", "ts"), ("query", "q")),
        types=(("search", "query_submitted"),),
        time_unit="ms",
    )
    d = CsvDecoder(0, layout, b"event,anon_id,ts,q\n")
    assert d.decode(b"query_submitted,a1,1704067200500,dogs", 2) == (
        T0 + 500_000,
        0,
        2,
        SEARCH,
        "a1",
        "dogs",
        None,
        None,
    )
    assert d.decode(b"search,a1,1704067200000,cats", 3)[5] == "cats"  # type: ignore[index]
    assert d.decode(b"submitted,a1,0,x", 4) == (
        "unknown event type: Invalid value 'submitted' - at `$.event`"
    )
    assert d.decode(b"search,,0,x", 5) == "Object missing required field `anon_id`"


def test_items_json_array_or_bar_list() -> None:
    assert csv_row(b'results,u,0,,"[""a|b"", ""c, d""]",,,')[5] == ("a|b", "c, d")  # type: ignore[index]
    assert csv_row(b"results,u,0,,a|b,,,")[5] == ("a", "b")  # type: ignore[index]
    assert csv_row(b"results,u,0,,one,,,")[5] == ("one",)  # type: ignore[index]
    assert csv_row(b"results,u,0,,,,,")[5] == ()  # type: ignore[index]
    assert csv_row(b"results,u,0,,[],,,")[5] == ()  # type: ignore[index]
    assert csv_row(b"results,u,0,,[1],,,") == "Expected `str`, got `int` - at `$.items[0]`"
    assert csv_row(b"results,u,0,,[a,,,").startswith("`items` is not a JSON array")  # type: ignore[union-attr]


def test_empty_cells() -> None:
    # Empty rank and search_id are none; empty query and item are the empty string.
    assert csv_row(b"click,u,0,,,,,") == (0, 3, 9, CLICK, "u", "", None, None)
    assert csv_row(b"search,u,0,,,,,") == (0, 3, 9, SEARCH, "u", "", None, None)
    assert csv_row(b",u,0,q,,,,") == "Object missing required field `type`"
    assert csv_row(b"search,,0,q,,,,") == "Object missing required field `user`"
    assert csv_row(b"search,u,,q,,,,") == "Object missing required field `time`"


def test_missing_column_is_named() -> None:
    assert csv_row(b"search,u,0", b"type,user,time\n") == (
        "Object missing required field `query` (the header has no such column: type, user, time)"
    )


def test_quoted_cells() -> None:
    assert csv_row(b'search,u,0,"dogs, cats",,,,')[5] == "dogs, cats"  # type: ignore[index]
    assert csv_row(b'search,u,0,"say ""hi""",,,,')[5] == 'say "hi"'  # type: ignore[index]
    assert csv_row(b'search,u,0,"a\n') == (
        "a quoted cell does not end on its line (cells spanning lines: not supported)"
    )
    assert csv_row(b'search,u,0,"a"b,,,,') == "bad quoting: ',' expected after '\"'"


def test_numbers_in_cells() -> None:
    assert csv_row(b"click,u,0,,,x,3,")[6] == 3  # type: ignore[index]
    assert csv_row(b"click,7,0,,,x,,") == (0, 3, 9, CLICK, "7", "x", None, None)
    assert csv_row(b"click,u,0,,,x,0,") == "Expected `int` >= 1 - at `$.rank`"
    assert csv_row(b"click,u,0,,,x,two,") == "Expected `int | null`, got `str` - at `$.rank`"


@pytest.mark.parametrize(
    ("cell", "unit", "us"),
    [
        (b"1704067200", "auto", T0),
        (b"1704067200123", "auto", T0 + 123_000),
        (b"1704067200123", "ms", T0 + 123_000),
        (b"1704067200.25", "s", T0 + 250_000),
        (b"2024-01-01T02:00:00+02:00", "auto", T0),
        (b"2024-01-01 00:00:00.123456", "auto", T0 + 123_456),
        (b"2023-12-31T19:00:00.000001-05:00", "ms", T0 + 1),
    ],
)
def test_times(cell: bytes, unit: str, us: int) -> None:
    d = CsvDecoder(0, InputLayout(time_unit=unit), b"type,user,time\n")
    assert d.decode(b"app_open,u," + cell, 2) == (us, 0, 2, APP_OPEN, "u", None, None, None)


def test_bad_rows() -> None:
    assert csv_row(b"search,u,0,q") == "row has 4 cells, the header 8"
    assert csv_row(b"search,u,0,q,,,,,") == "row has 9 cells, the header 8"
    assert csv_row(b"searched,u,0,q,,,,") == (
        "unknown event type: Invalid value 'searched' - at `$.type`"
    )
    assert csv_row(b"search,u,yesterday,q,,,,") == ("bad time 'yesterday': not RFC 3339 / ISO 8601")
    assert csv_row(b"search,u,0,caf\xe9,,,,") == "not UTF-8 (invalid continuation byte at byte 14)"


def test_tsv() -> None:
    d = make_decoder("tsv", 1, header=b"type\tuser\ttime\tquery\n")
    assert d.decode(b"search\tu\t0\tdogs, cats\n", 2) == (
        0,
        1,
        2,
        SEARCH,
        "u",
        "dogs, cats",
        None,
        None,
    )
    assert d.decode(b'search\tu\t0\t"a\tb"\n', 3)[5] == "a\tb"  # type: ignore[index]
    assert d.decode(b"search\tu\t0\n", 4) == "row has 3 cells, the header 4"


# AOL -------------------------------------------------------------------------

AOL_HEADER = b"AnonID\tQuery\tQueryTime\tItemRank\tClickURL\n"
T_AOL = 1_141_197_432_000_000  # 2006-03-01 07:17:12 UTC


def aol(*lines: bytes) -> list[object]:
    d = AolDecoder(2)
    return [d.decode(line, seq) for seq, line in enumerate(lines, 1)]


def test_aol_searches() -> None:
    assert aol(
        AOL_HEADER,
        b"142\trentdirect.com\t2006-03-01 07:17:12\t\t\n",
        b"142\twww.prescriptionfortime.com\t2006-03-01 07:17:13\n",  # three columns only
    ) == [
        [],
        (T_AOL, 2, 2, SEARCH, "142", "rentdirect.com", None, None),
        (T_AOL + 1_000_000, 2, 3, SEARCH, "142", "www.prescriptionfortime.com", None, None),
    ]


def test_aol_click_brings_in_its_search_once() -> None:
    assert aol(
        b"217\tlottery\t2006-03-01 07:17:12\t1\thttp://www.calottery.com\n",
        b"217\tlottery\t2006-03-01 07:17:12\t4\thttp://www.lottery.com\n",
    ) == [
        [
            (T_AOL, 2, 1, SEARCH, "217", "lottery", None, None),
            (T_AOL, 2, 1, CLICK, "217", "http://www.calottery.com", 1, None),
        ],
        [(T_AOL, 2, 2, CLICK, "217", "http://www.lottery.com", 4, None)],
    ]


def test_aol_click_after_its_search_row() -> None:
    assert aol(
        b"217\tlottery\t2006-03-01 07:17:12\t\t\n",
        b"217\tlottery\t2006-03-01 07:17:12\t1\thttp://www.calottery.com\n",
    ) == [
        (T_AOL, 2, 1, SEARCH, "217", "lottery", None, None),
        [(T_AOL, 2, 2, CLICK, "217", "http://www.calottery.com", 1, None)],
    ]


def test_aol_same_query_twice() -> None:
    # The same query later is another search; another user's search in between
    # does not change whose search a click is on.
    out = aol(
        b"1\tdogs\t2006-03-01 07:17:12\t1\thttp://a.com\n",
        b"2\tdogs\t2006-03-01 07:17:12\t\t\n",
        b"1\tdogs\t2006-03-01 07:17:12\t2\thttp://b.com\n",
        b"1\tdogs\t2006-03-01 07:20:00\t1\thttp://a.com\n",
    )
    t2 = T_AOL + 168_000_000
    assert out[2] == [(T_AOL, 2, 3, CLICK, "1", "http://b.com", 2, None)]
    assert out[3] == [
        (t2, 2, 4, SEARCH, "1", "dogs", None, None),
        (t2, 2, 4, CLICK, "1", "http://a.com", 1, None),
    ]


def test_aol_header_dashes_blank_and_extra_columns() -> None:
    assert aol(
        b"anonid\tquery\tquerytime\n",
        b"--------------------------------------------\n",
        b" - - - \r\n",
        b"\n",
        b"5\tq\t2006-03-01 07:17:12\t\t\tnote\tmore\n",
        b"5\tq\t2006-03-01 07:17:12\t3\thttp://x.com\tnote\n",
    ) == [
        [],
        [],
        [],
        [],
        (T_AOL, 2, 5, SEARCH, "5", "q", None, None),
        [(T_AOL, 2, 6, CLICK, "5", "http://x.com", 3, None)],
    ]


def test_aol_bad_rows() -> None:
    assert aol(
        b"142\tdogs\n",
        b"142\tdogs\t2006-13-01 07:17:12\t\t\n",
        b"142\tdogs\tMarch 1st\t\t\n",
        b"142\tdogs\t2006-03-01 07:17:12\tone\thttp://x.com\n",
        b"142\tdogs\t2006-03-01 07:17:12\t0\thttp://x.com\n",
        b"142\tdogs\t2006-03-01 07:17:12\t1\t\n",
        b"\tdogs\t2006-03-01 07:17:12\t\t\n",
        b"142\tcaf\xe9\t2006-03-01 07:17:12\t\t\n",
    ) == [
        "AOL row has 2 column(s), not AnonID, Query, QueryTime[, ItemRank, ...]",
        "bad time '2006-13-01 07:17:12': not RFC 3339 / ISO 8601",
        "bad time 'March 1st': not RFC 3339 / ISO 8601",
        "bad ItemRank 'one': not an integer",
        "bad ItemRank 0: ranks start at 1",
        "click row (ItemRank 1) without a ClickURL",
        "AOL row without an AnonID",
        "not UTF-8 (invalid continuation byte at byte 7)",
    ]


def test_make_decoder() -> None:
    assert type(make_decoder("jsonl", 0)) is EventDecoder
    assert isinstance(make_decoder("csv", 0, header=b"type,user,time"), CsvDecoder)
    assert isinstance(make_decoder("aol", 0), AolDecoder)
    with pytest.raises(ValueError, match="parquet"):
        make_decoder("parquet", 0)


def test_csv_conversions_read_an_empty_item_as_none() -> None:
    d = CsvDecoder(0, header=b"type,user,time,item,value,currency\n")
    ev = d.decode(b"conversion,u1,1704067207,,12.5,USD\n", seq=2)
    assert isinstance(ev, tuple) and ev[5] == (None, 12.5, None)
    click = d.decode(b"click,u1,1704067207,,,\n", seq=3)
    assert isinstance(click, tuple) and click[5] == ""


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["search", "app_open", '"search"', "x", ""]),
            st.sampled_from(["u", '"u, v"', '"u', ""]),
            st.integers(-(10**15), 10**15).map(str)
            | st.floats(allow_nan=False).map(str)
            | st.sampled_from(["2024-01-01T02:00:00+02:00", '"2024-01-01 00:00:01"', "", "x"]),
        ).map(lambda cells: ",".join(cells).encode()),
        max_size=8,
    ),
    st.sampled_from(["auto", "ms"]),
    st.sampled_from([b"type,user,time\n", b"user,time,type\r\n", b"type,user,ts\n"]),
)
def test_csv_times_are_the_times_decode_reads(lines: list[bytes], unit: str, header: bytes) -> None:
    """The pre-scan reads only a row's time cell: every row decode reads as an event
    has the very same time there (a header row, a quoted cell, a short row included)."""
    decoder = CsvDecoder(0, InputLayout(time_unit=unit), header)
    lines = [header, *lines, b"search,u,1,extra", b"\xff,u,2"]
    times = decoder.times(lines)
    assert len(times) == len(lines) and times[0] is None
    for seq, (line, t) in enumerate(zip(lines, times, strict=True)):
        ev = decoder.decode(line, seq)
        if isinstance(ev, tuple):
            assert t == ev[0]
