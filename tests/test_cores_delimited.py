"""The native core's CSV and TSV rows against the Python core's: the same events, and
the same bytes out of whole runs (the native decoder defers every row it is not sure
of to the Python core, which then decodes it or says why not)."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_sessions.core.cores import native_block_decoder
from search_sessions.core.formats import CsvDecoder
from search_sessions.core.layout import InputLayout

from .conftest import mutated
from .test_cores import T0, _time, both_cores_agree

pytest.importorskip("search_sessions_native")

COLUMNS = ("type", "user", "time", "query", "items", "item", "rank", "search_id", "variant")
KINDS = (
    *("app_open", "search", "search", "results", "click", "click", "app_close"),
    *("Search", "ClickResult", "conversion", "purchase", "nope", ""),
)
RANKS = ("", "", "1", "12", "02", "+3", " 3", "3.0", "0", "-1", str(2**63 - 1), str(2**63))


@st.composite
def header(draw: st.DrawFn) -> list[str]:
    """The columns in some order, one sometimes left out, sometimes an extra one, some
    with spaces around the name or given twice."""
    names = list(draw(st.permutations(COLUMNS)))
    if draw(st.integers(0, 4)) == 0:
        names.pop(draw(st.integers(0, len(names) - 1)))
    if draw(st.integers(0, 4)) == 0:
        names.insert(draw(st.integers(0, len(names))), "extra")
    if draw(st.integers(0, 6)) == 0:
        i = draw(st.integers(0, len(names) - 1))
        names[i] = f" {names[i]} "
    if draw(st.integers(0, 15)) == 0:
        names.append(draw(st.sampled_from(names)).strip())
    return names


@st.composite
def cells(draw: st.DrawFn, t: float) -> dict[str, str]:
    """One event's cells (most of them right, some not)."""
    kind = draw(st.sampled_from(KINDS))
    out = {name: "" for name in (*COLUMNS, "extra")}
    out["type"] = kind
    out["user"] = draw(st.sampled_from(["a", "b", "ü", "7", "", " a", "x,y"]))
    out["time"] = (
        str(_time(draw, t))
        if draw(st.integers(0, 12))
        else draw(st.sampled_from(["", "soon", "1e3", " 1704067200"]))
    )
    out["query"] = draw(st.sampled_from(["dogs", "", "a, b", 'say "hi"', "x\ty", " Dö", "[q]"]))
    listed = draw(st.lists(st.sampled_from(["x", "y", "a|b", "ü", ""]), max_size=3))
    out["items"] = draw(
        st.sampled_from(["|".join(listed), json.dumps(listed), "[1]", "[bad", "x||"])
    )
    out["item"] = draw(st.sampled_from(["x", "y", "", "a,b", "2.5"]))
    out["rank"] = draw(st.sampled_from(RANKS))
    out["search_id"] = draw(st.sampled_from(["", "", "s1", "s2"]))
    out["variant"] = draw(st.sampled_from(["", "A", "B", "1", "true"]))
    out["extra"] = draw(st.sampled_from(["", "z", '"q"']))
    return out


def _row(names: list[str], values: dict[str, str], delimiter: str, how: int) -> str:
    row = [values.get(n.strip(), "") for n in names]
    if how == 0:  # joined as they are: a delimiter or quote in a cell breaks the row
        return delimiter.join(row) + "\n"
    buf = io.StringIO()
    if how == 1:
        csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(
            row
        )
    else:
        csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerow(row)
    return buf.getvalue()


@st.composite
def table(draw: st.DrawFn, delimiter: str) -> tuple[list[str], list[bytes]]:
    """A header and rows: out of order by up to 90 s, some repeated, some broken, a
    blank line or the header again here and there, CRLF line ends on some."""
    names = draw(header())
    rows: list[tuple[float, int, bytes]] = []
    for i in range(draw(st.integers(1, 40))):
        t = T0 + draw(st.integers(0, 3_000)) + draw(st.sampled_from([0, 0, 0.25, 0.000001]))
        text = _row(names, draw(cells(t)), delimiter, draw(st.integers(0, 4)))
        broken = draw(st.integers(0, 12))
        if broken == 1:
            text = text[: draw(st.integers(0, len(text)))]
        elif broken == 2:
            at = draw(st.integers(0, len(text) - 1))
            text = text[:at] + '"' + text[at:]
        elif broken == 3:
            text = text.rstrip("\n") + delimiter + "\n"
        if draw(st.integers(0, 5)) == 0:
            text = text.rstrip("\n") + "\r\n"
        raw = text.encode() if draw(st.integers(0, 30)) else b"\xff" + text.encode()
        rows.append((t + draw(st.integers(0, 90)), i, raw.rstrip(b"\n")))
        if draw(st.integers(0, 7)) == 0:
            rows.append((t + draw(st.integers(0, 90)), i, raw.rstrip(b"\n")))
        if draw(st.integers(0, 20)) == 0:
            rows.append(
                (t, i, draw(st.sampled_from([b"", b"   ", delimiter.join(names).encode()])))
            )
    return names, [raw for _t, _i, raw in sorted(rows)]


def _header_line(names: list[str], delimiter: str, quoted: bool) -> bytes:
    return _row(names, {n.strip(): n for n in names}, delimiter, 1 if quoted else 0).encode()


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    delimiter=st.sampled_from([",", "\t"]),
    dims=st.sampled_from([(), ("variant",)]),
    quoted=st.booleans(),
)
def test_native_rows_are_the_python_cores_events(
    data: st.DataObject, delimiter: str, dims: tuple[str, ...], quoted: bool
) -> None:
    """Row by row: the native decoder gives the Python core's event, or defers."""
    names, rows = data.draw(table(delimiter))
    layout = InputLayout(dimensions=dims)
    py = CsvDecoder(0, layout, _header_line(names, delimiter, quoted), delimiter)
    native = native_block_decoder(py)
    assert native is not None
    for seq, row in enumerate(rows, start=2):
        got = native.decode_native(row, seq)
        if got is not None:
            assert got == py.decode(row, seq), row
    assert native.times(rows) == py.times(rows)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    delimiter=st.sampled_from([",", "\t"]),
    n_files=st.integers(1, 2),
    workers=st.integers(1, 2),
    dims=st.sampled_from([(), ("variant",)]),
    order=st.sampled_from(["time", "auto", "sort"]),
    block_bytes=st.sampled_from([1 << 19, 300]),
    read_ahead=st.booleans(),
    spill=st.booleans(),
)
def test_native_core_writes_the_python_cores_bytes_from_csv(
    data: st.DataObject,
    delimiter: str,
    n_files: int,
    workers: int,
    dims: tuple[str, ...],
    order: str,
    block_bytes: int,
    read_ahead: bool,
    spill: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whole runs over CSV or TSV files (each with its header row), as the JSON Lines
    test in ``test_cores`` runs them."""
    names, rows = data.draw(table(delimiter))
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    head = _header_line(names, delimiter, data.draw(st.booleans()))
    size = -(-len(rows) // n_files)
    paths = []
    for i in range(n_files):
        p = d / f"p{i}.{'csv' if delimiter == ',' else 'tsv'}"
        p.write_bytes(head + b"".join(r + b"\n" for r in rows[i * size : (i + 1) * size]))
        paths.append(p)
    both_cores_agree(
        paths,
        d,
        monkeypatch,
        workers=workers,
        order=order,
        read_ahead=read_ahead,
        spill=spill,
        dimensions=dims,
        block_bytes=block_bytes,
    )


_HEADER = b"type,user,time,query,items,item,rank,search_id,variant\n"
_CSV = CsvDecoder(0, InputLayout(dimensions=("variant",)), _HEADER)
_MUTATIONS = (b"\x00", b'"', b",", b"\t", b"|", b"[", b"\r", b"\xff", b"\xc3\xa9", b"1", b" ")


def _same_or_deferred(row: bytes) -> None:
    native = native_block_decoder(_CSV)
    assert native is not None
    got = native.decode_native(row, 2)
    if got is not None:
        assert got == _CSV.decode(row, 2), row
    assert native.times([row]) == _CSV.times([row])


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_as_rows(row: bytes) -> None:
    """(No panic either: a panic would be an exception here.)"""
    _same_or_deferred(row)


@settings(max_examples=1500, deadline=None)
@given(data=st.data())
def test_mutated_rows(data: st.DataObject) -> None:
    values = data.draw(cells(T0 + 5.0))
    row = _row(list(COLUMNS), values, ",", data.draw(st.integers(0, 2))).encode()
    _same_or_deferred(mutated(data, row, _MUTATIONS))
