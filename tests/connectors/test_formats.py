"""CSV, TSV and AOL inputs through the real dataflow: the same events in any layout give
the JSON Lines answer, whole or in lanes, gzipped or on standard input; dead letters keep
the file's own line numbers."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from search_sessions import run
from search_sessions.config import Config
from search_sessions.connectors.files import format_of, read_partitions
from search_sessions.connectors.registry import resolve_inputs

from ..conftest import Records, RunFlow, read_jsonl, write_events

T0 = datetime(2024, 1, 1, tzinfo=UTC)
CLI = str(Path(sys.executable).with_name("search-sessions"))

# The CSV and TSV files name things their own way.
FIELDS = (("user", "anon_id"), ("type", "event"), ("time", "ts"), ("query", "q"))
TYPES = (("search", "query_submitted"), ("click", "result_click"))
THEIR_TYPE = dict(TYPES)
COLUMNS = ["event", "anon_id", "ts", "q", "items", "item", "rank", "search_id"]


def events() -> list[dict[str, Any]]:
    """Searches, results and clicks of 13 users, interleaved, in time order; a pause of
    40 minutes every 100 events ends sessions by gap."""
    out: list[dict[str, Any]] = []
    t = T0
    for i in range(240):
        t += timedelta(seconds=7, milliseconds=i % 1000)
        if i % 100 == 99:
            t += timedelta(minutes=40)
        user = f"u{i % 13}"
        ev: dict[str, Any] = {"user": user, "time": t}
        step = (i // 13) % 5
        if step == 0:
            ev.update(type="search", query=f"query {i % 9}, with a comma")
            if i % 3 == 0:
                ev["search_id"] = f"s-{i}"
        elif step == 1:
            items = [f"item {j}" for j in range(i % 4)]  # none for some: zero results
            if i % 7 == 0:
                items.append("a|b")  # written as a JSON array in CSV
            ev.update(type="results", items=items)
        elif step in (2, 3):
            ev.update(type="click", item=f"item {i % 3}")
            if i % 2:
                ev["rank"] = i % 3 + 1
        elif i % 2:
            ev.update(type="app_close")
        else:
            ev.update(type="app_open")
        out.append(ev)
    return out


def as_json(ev: dict[str, Any]) -> dict[str, Any]:
    return dict(ev, time=ev["time"].isoformat().replace("+00:00", "Z"))


def items_cell(items: list[str]) -> str:
    if any("|" in x or not x for x in items):
        return json.dumps(items)
    return "|".join(items)


def row(ev: dict[str, Any], time_text: str) -> list[str]:
    kind = ev["type"]
    cells = {
        "event": THEIR_TYPE.get(kind, kind),
        "anon_id": ev["user"],
        "ts": time_text,
        "q": ev.get("query", ""),
        "items": items_cell(ev["items"]) if "items" in ev else "",
        "item": ev.get("item", ""),
        "rank": str(ev.get("rank", "")),
        "search_id": ev.get("search_id", ""),
    }
    return [cells[c] for c in COLUMNS]


def epoch_ms(t: datetime) -> str:
    return str(int(t.timestamp() * 1000))


def in_plus_two(t: datetime) -> str:
    return t.astimezone(timezone(timedelta(hours=2))).isoformat(timespec="microseconds")


def write_table(
    path: Path, evs: list[dict[str, Any]], delimiter: str, when: Any, bad: dict[int, str]
) -> bytes:
    """Rows with a header; ``bad`` lines go in at those line numbers (header = line 1)."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    rows = [buf.getvalue()]
    for ev in evs:
        buf.seek(0)
        buf.truncate()
        while len(rows) + 1 in bad:
            rows.append(bad[len(rows) + 1] + "\n")
        writer.writerow(row(ev, when(ev["time"])))
        rows.append(buf.getvalue())
    data = "".join(rows).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return data


def canon(records: Records) -> dict[str, list[str]]:
    return {
        name: sorted(json.dumps(r, sort_keys=True) for r in records[name])
        for name in ("searches", "sessions")
    }


BAD = {
    30: "query_submitted,u1,1704067200000",  # too few cells
    77: "unheard_of,u1,1704067200000,,,,,",
    150: "query_submitted,,1704067200000,q,,,,",
    151: "result_click,u2,1704067200000,,,x,zero,",
}
BAD_REASONS = {
    30: "row has 3 cells, the header 8",
    77: "unknown event type: Invalid value 'unheard_of' - at `$.event`",
    150: "Object missing required field `anon_id`",
    151: "Expected `int | null`, got `str` - at `$.rank`",
}


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The JSON Lines answer (one worker)."""
    tmp = tmp_path_factory.mktemp("answer")
    src = write_events(tmp / "events.jsonl", [as_json(e) for e in events()])
    cfg = Config(
        inputs=(str(src),),
        searches=str(tmp / "searches.jsonl"),
        sessions=str(tmp / "sessions.jsonl"),
        block_bytes=4096,
    )
    run(cfg)
    records = {n: read_jsonl(tmp / f"{n}.jsonl") for n in ("searches", "sessions")}
    assert len(records["searches"]) > 30 and len(records["sessions"]) > 20
    assert any(r["clicks"] for r in records["searches"])
    return canon(records)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    ("name", "delimiter", "when"),
    [
        ("events.csv", ",", epoch_ms),
        ("events.tsv", "\t", in_plus_two),
        ("events.tsv.gz", "\t", in_plus_two),
    ],
)
def test_csv_and_tsv_give_the_json_answer(
    tmp_path: Path,
    run_flow: RunFlow,
    answer: dict[str, list[str]],
    name: str,
    delimiter: str,
    when: Any,
    workers: int,
) -> None:
    path = tmp_path / name
    bad = {n: line.replace(",", delimiter) for n, line in BAD.items()}
    data = write_table(path, events(), delimiter, when, bad)
    assert len(data) > 2 * 4096
    cfg = resolve_inputs(Config(inputs=(str(path),), block_bytes=4096))
    lanes = {p.lanes for p in read_partitions(cfg, workers, 4096)}
    assert lanes == {1 if name.endswith(".gz") else workers}
    records, summary = run_flow(
        [path], workers=workers, block_bytes=4096, fields=FIELDS, types=TYPES
    )
    assert canon(records) == answer
    dead = sorted(records["dead"], key=lambda d: int(d["source"].rpartition(":")[2]))
    assert [(d["source"], d["reason"]) for d in dead] == [
        (f"{path}:{n}", reason) for n, reason in sorted(BAD_REASONS.items())
    ]
    assert [d["record"] for d in dead] == [bad[n] for n in sorted(bad)]
    assert summary.counts["invalid"] == len(BAD)
    assert summary.counts["lines"] == 1 + len(events()) + len(BAD)  # the header too


def test_stdin_csv_through_the_cli(tmp_path: Path, answer: dict[str, list[str]]) -> None:
    data = write_table(tmp_path / "events.csv", events(), ",", epoch_ms, BAD)
    out = tmp_path / "out"
    args = [CLI, "run", "-", "--format", "csv", "--time-unit", "ms"]
    for ours, theirs in FIELDS:
        args += ["--field", f"{ours}={theirs}"]
    for ours, theirs in TYPES:
        args += ["--type", f"{ours}={theirs}"]
    args += ["--searches", str(out / "searches.jsonl"), "--sessions", str(out / "sessions.jsonl")]
    args += ["--dead-letter", str(out / "dead.jsonl")]
    proc = subprocess.run(args, input=data, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    records = {n: read_jsonl(out / f"{n}.jsonl") for n in ("searches", "sessions", "dead")}
    assert canon(records) == answer
    assert sorted(d["source"] for d in records["dead"]) == sorted(f"<stdin>:{n}" for n in BAD)


@pytest.mark.parametrize("workers", [1, 2])
def test_csv_out_of_order_is_sorted(
    tmp_path: Path, run_flow: RunFlow, answer: dict[str, list[str]], workers: int
) -> None:
    shuffled = events()
    random.Random(7).shuffle(shuffled)
    path = tmp_path / "shuffled.csv"
    write_table(path, shuffled, ",", epoch_ms, {})
    records, summary = run_flow(
        [path], workers=workers, block_bytes=4096, fields=FIELDS, types=TYPES, order="sort"
    )
    assert canon(records) == answer
    assert summary.counts["late"] == 0


def test_csv_files_split_by_user_are_read_whole(tmp_path: Path) -> None:
    """Whether files keep workers in step is judged by their first events (in CSV too)."""
    evs = events()
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"part{i}.csv")
        write_table(paths[-1], [e for e in evs if int(e["user"][1:]) % 2 == i], ",", epoch_ms, {})
    later = tmp_path / "later.csv"
    write_table(
        later, [dict(e, time=e["time"] + timedelta(hours=5)) for e in evs[1::2]], ",", epoch_ms, {}
    )

    def lanes(*files: Path) -> set[int]:
        cfg = Config(inputs=tuple(map(str, files)), fields=FIELDS, types=TYPES)
        return {p.lanes for p in read_partitions(resolve_inputs(cfg), 2, 1024)}

    assert lanes(*paths) == {1}
    assert lanes(paths[0], later) == {2}


AOL = """\
AnonID\tQuery\tQueryTime\tItemRank\tClickURL
1\tdogs\t2006-03-01 07:00:00\t\t
1\tdogs\t2006-03-01 07:00:00\t1\thttp://dogs.com
1\tcats\t2006-03-01 07:01:00\t2\thttp://cats.com
1\tcats\t2006-03-01 07:01:00\t5\thttp://morecats.com
-----------------------------------------------------
2\tfruit\t2006-03-01 08:00:00\t\t
3\tbad time\t2006-03-01 08:00:99\t\t
2\tfruit\t2006-03-01 09:00:00\t1\thttp://fruit.com
2\tapples\t2006-03-01 09:05:00\t\t
"""


def aol_searches(records: Records) -> list[tuple[Any, ...]]:
    return sorted(
        (r["user"], r["time"], r["query"], r["clicks"], r["ctr"], r["first_click_rank"])
        for r in records["searches"]
    )


AOL_SEARCHES = [
    ("1", "2006-03-01T07:00:00Z", "dogs", 1, 1.0, 1),
    ("1", "2006-03-01T07:01:00Z", "cats", 2, 1.0, 2),
    ("2", "2006-03-01T08:00:00Z", "fruit", 0, 0.0, None),
    ("2", "2006-03-01T09:00:00Z", "fruit", 1, 1.0, 1),
    ("2", "2006-03-01T09:05:00Z", "apples", 0, 0.0, None),
]


@pytest.mark.parametrize("workers", [1, 2])
def test_aol_log(tmp_path: Path, run_flow: RunFlow, workers: int) -> None:
    """The first line tells the format; a click row brings in its search once."""
    path = tmp_path / "user-ct-test-collection-01.txt"
    path.write_text(AOL)
    records, summary = run_flow([path], workers=workers, block_bytes=64)
    assert aol_searches(records) == AOL_SEARCHES
    sessions = sorted(
        (s["user"], s["searches"], s["clicks"], s["ctr"]) for s in records["sessions"]
    )
    assert sessions == [("1", 2, 3, 1.0), ("2", 1, 0, 0.0), ("2", 2, 1, 0.5)]
    assert [(d["source"], d["reason"]) for d in records["dead"]] == [
        (f"{path}:8", "bad time '2006-03-01 08:00:99': not RFC 3339 / ISO 8601")
    ]
    assert summary.ctr == 0.6
    # In lanes a click's search row may be in the other lane: it comes twice, counts once.
    assert (summary.counts["duplicates"] > 0) == (workers > 1)


WEBIS_HEADER = "UserID\tQuery\tTimeStamp\tClickRank\tClickDomain\tMissionID\tComment"


def _webis(aol: str) -> str:
    """The AOL rows as Webis-SMC-12 lays them out: its header, a mission id and a comment
    after the AOL columns, a rule of dashes between users."""
    rows = []
    for row in aol.splitlines()[1:]:
        cells = row.split("\t")
        rows.append(row if len(cells) < 3 else "\t".join([*cells, "1", "a comment"]))
    return "\n".join([WEBIS_HEADER, "-" * 40, *rows]) + "\n"


@pytest.mark.parametrize(
    ("name", "header"), [("webis-smc-12.txt", True), ("webis.tsv", True), ("w.txt", False)]
)
def test_webis_smc_12_is_read_as_the_aol_layout(
    tmp_path: Path, run_flow: RunFlow, name: str, header: bool
) -> None:
    """Webis-SMC-12 (AOL rows annotated with missions) is found to be in the AOL layout by
    its header, by its first row when it has none, whatever its suffix, and gives the
    AOL answer: the header is no dead letter, nor are the rules and extra columns."""
    path = tmp_path / name
    text = _webis(AOL)
    path.write_text(text if header else text.split("\n", 1)[1])
    records, _ = run_flow([path])
    assert aol_searches(records) == AOL_SEARCHES
    assert [d["source"] for d in records["dead"]] == [f"{path}:{9 if header else 8}"]


def test_aol_clicks_bring_their_search_when_auto_looked_at_the_block_first(
    tmp_path: Path, run_flow: RunFlow
) -> None:
    """``--order auto`` decodes the first block to decide whether to sort: with a decoder
    of its own, or the AOL reader would think it had already put in those clicks'
    searches (lone clicks, and a resumed run that sorts without looking differs)."""
    path = tmp_path / "user-ct-test-collection-01.txt"
    rows = [
        "AnonID\tQuery\tQueryTime\tItemRank\tClickURL",
        "5\tdogs\t2006-03-01 07:00:00\t2\thttp://a.com",
        "5\tdogs\t2006-03-01 07:00:00\t1\thttp://b.com",
        "6\tcats\t2006-03-01 06:00:00\t3\thttp://c.com",
    ]
    path.write_text("\n".join(rows) + "\n")
    records, _ = run_flow([path])  # out of order: auto sorts it
    assert aol_searches(records) == [
        ("5", "2006-03-01T07:00:00Z", "dogs", 2, 1.0, 2),
        ("6", "2006-03-01T06:00:00Z", "cats", 1, 1.0, 3),
    ]


def test_aol_on_stdin_is_told_by_its_first_line(tmp_path: Path) -> None:
    out = tmp_path / "searches.jsonl"
    args = [CLI, "run", "-", "--searches", str(out), "--dead-letter", str(tmp_path / "d.jsonl")]
    proc = subprocess.run(args, input=AOL.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert aol_searches({"searches": read_jsonl(out)}) == AOL_SEARCHES
    assert [d["source"] for d in read_jsonl(tmp_path / "d.jsonl")] == ["<stdin>:8"]


def test_format_of() -> None:
    assert format_of("a.csv", "auto", b"") == "csv"
    assert format_of("a.CSV.gz", "auto", b"") == "csv"
    assert format_of("a.tsv.gz", "auto", b"") == "tsv"
    assert format_of("a.parquet", "auto", b"") == "parquet"
    assert format_of("a.txt", "auto", b"anonid\tquery\tquerytime\titemrank\tclickurl\n") == "aol"
    assert format_of("a.jsonl", "auto", b"\xef\xbb\xbfAnonID\tQuery\tQueryTime\n") == "aol"
    assert format_of("a.txt", "auto", b'{"type": "search"}\n') == "jsonl"
    webis = b"UserID\tQuery\tTimeStamp\tClickRank\tClickDomain\tMissionID\tComment\n"
    assert format_of("webis-smc-12.txt", "auto", webis) == "aol"
    assert format_of("webis-smc-12.tsv", "auto", webis) == "aol"
    row = b"2722\tyahoo\t2006-03-01 08:51:35\t1\thttp://www.yahoo.com\t1\t\n"
    assert format_of("w.txt", "auto", b"----\n\n" + row) == "aol"  # no header
    assert format_of("e.tsv", "auto", b"user\tquery\ttime\ttype\n") == "tsv"
    assert format_of("e.tsv", "auto", b"userid\tquery\ttime\ttype\n") == "tsv"
    assert format_of("a.csv", "tsv", b"") == "tsv"
    assert format_of("a.txt", "aol", b"") == "aol"


def test_a_directory_reads_aol_text_files_by_their_header(tmp_path: Path) -> None:
    """(``--format auto`` took ``x.txt.gz``, as any ``.gz``, but not ``x.txt``.)"""
    import gzip

    from search_sessions.connectors.inputs import expand_inputs

    header = b"AnonID\tQuery\tQueryTime\tItemRank\tClickURL\n"
    (tmp_path / "log-01.txt").write_bytes(header + b"1\tdogs\t2006-03-01 07:17:12\t\t\n")
    (tmp_path / "log-02.txt.gz").write_bytes(gzip.compress(header))
    (tmp_path / "notes.txt").write_bytes(b"not a log\n")
    found = [Path(p).name for p in expand_inputs((str(tmp_path),))]
    assert found == ["log-01.txt", "log-02.txt.gz"]
    assert len(expand_inputs((str(tmp_path),), "aol")) == 3
