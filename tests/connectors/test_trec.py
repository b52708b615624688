"""The TREC Session Track XML log: its sessions map to events with explicit times (relative
or epoch), bad elements are dead letters naming their XML line, a broken file is one error
line, and a run on it gives the same bytes in either core and for any parallelism."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from search_sessions.cli import main
from search_sessions.config import Config
from search_sessions.connectors.files import format_of, read_partitions
from search_sessions.connectors.registry import resolve_inputs
from search_sessions.connectors.source import EventSource
from search_sessions.core.cores import NATIVE
from search_sessions.core.trec import TrecItem, TrecParser, XmlError

from ..conftest import RunFlow, read_resumed

S = "1372177054.53"  # a session's starttime (epoch seconds)
S_US = 1_372_177_054_530_000


def parse(xml: str, chunk: int | None = None) -> list[TrecItem]:
    """The items of a file's text, fed whole or ``chunk`` bytes at a time."""
    data = xml.encode()
    parser = TrecParser()
    if chunk is None:
        return parser.feed(data, final=True)
    items = []
    for i in range(0, len(data), chunk):
        items += parser.feed(data[i : i + chunk])
    return items + parser.feed(b"", final=True)


def events(xml: str) -> list[dict[str, Any]]:
    items = parse(xml)
    assert [i.reason for i in items if i.reason] == []
    return [json.loads(i.line) for i in items]


def track(*sessions: str) -> str:
    return (
        '<?xml version="1.0"?>\n<sessiontrack2013>\n' + "".join(sessions) + "</sessiontrack2013>\n"
    )


INTERACTION = """<session num="3" starttime="{start}" userid="27">
 <topic num="10"><desc>dogs &amp; cats</desc></topic>
 <interaction num="1" starttime="{t}" type="reformulate">
  <query>dog breeds</query>
  <results>
   <result rank="2"><url>http://b.com/</url><title>B</title><snippet>..</snippet></result>
   <result rank="1"><url>http://a.com/</url><clueweb12id>clueweb12-0000</clueweb12id></result>
   <result rank="3"><clueweb12id>clueweb12-0003</clueweb12id></result>
  </results>
  <clicked>
   <click num="1" starttime="{click}" endtime="45.6"><rank>3</rank><url>http://c.com/</url></click>
   <click num="2" starttime="{click}"><clueweb12id>clueweb12-0001</clueweb12id></click>
  </clicked>
  <unknown a="b">ignored</unknown>
 </interaction>
 <currentquery starttime="{current}"><query> last query </query></currentquery>
</session>
"""


def test_an_interaction_is_a_search_its_results_and_clicks_at_relative_times() -> None:
    """Times below the session's starttime are relative to it (exact to the µs)."""
    got = events(track(INTERACTION.format(start=S, t="0.0", click="12.3", current="300.2")))
    ids = {"user": "27", "search_id": "3-1"}
    click = S_US + 12_300_000
    assert got == [
        {"type": "search", **ids, "time": S_US, "query": "dog breeds"},
        # by rank; a result without a url is named by its ClueWeb id
        {
            "type": "results",
            **ids,
            "time": S_US,
            "items": ["http://a.com/", "http://b.com/", "clueweb12-0003"],
        },
        {"type": "click", **ids, "time": click, "item": "http://c.com/", "rank": 3},
        {"type": "click", **ids, "time": click, "item": "clueweb12-0001"},  # no rank
        {
            "type": "search",
            "user": "27",
            "time": S_US + 300_200_000,
            "query": "last query",
            "search_id": "3-current",
        },
    ]
    lines = parse(track(INTERACTION.format(start=S, t=0, click=1, current=2)))
    assert [i.xml_line for i in lines] == [5, 7, 13, 14, 18]  # each element's own line


def test_times_not_below_the_session_start_are_epoch_seconds() -> None:
    xml = track(INTERACTION.format(start=S, t="1372177060", click="1372177070.25", current="5"))
    times = [e["time"] for e in events(xml)]
    assert times == [
        1_372_177_060_000_000,
        1_372_177_060_000_000,
        1_372_177_070_250_000,
        1_372_177_070_250_000,
        S_US + 5_000_000,  # (relative: below the start)
    ]


@pytest.mark.parametrize("start", ["", "12:34:56.789000", "soon"], ids=["none", "2012", "word"])
def test_a_session_without_a_numeric_starttime_has_epoch_times(start: str) -> None:
    session = INTERACTION.format(start=start, t="7.5", click="1000", current="86400")
    if not start:
        session = session.replace(' starttime=""', "", 1)
    assert [e["time"] for e in events(track(session))] == [
        7_500_000,
        7_500_000,
        1_000_000_000,
        1_000_000_000,
        86_400_000_000,
    ]


def test_a_session_without_userid_is_its_nums_user_and_ids_fall_back_to_ordinals() -> None:
    xml = track(
        '<session num="41"><interaction starttime="1"><query>a</query></interaction>'
        '<interaction starttime="2"><query>b</query></interaction>'
        '<currentquery starttime="3"><query>c</query></currentquery></session>\n',
        '<session><interaction num="9" starttime="1"><query>d</query>'
        "<results><result><url>y</url></result><result rank='1'><url>x</url></result>"
        "</results></interaction></session>\n",
    )
    got = events(xml)
    assert [(e["user"], e["search_id"]) for e in got] == [
        ("41", "41-1"),
        ("41", "41-2"),
        ("41", "41-current"),
        ("2", "2-9"),  # the second session, without a num
        ("2", "2-9"),
    ]
    assert got[-1]["items"] == ["y", "x"]  # a result without a rank: as they come


def test_an_interaction_without_results_or_clicks_is_a_search_and_empty_results_are_none() -> None:
    xml = track(
        f'<session num="1" starttime="{S}"><interaction num="1" starttime="0">'
        "<query>x</query></interaction><interaction num='2' starttime='1'>"
        "<query>y</query><results/></interaction></session>"
    )
    assert [(e["type"], e.get("items")) for e in events(xml)] == [
        ("search", None),
        ("search", None),
        ("results", []),
    ]


def test_the_file_streams_in_any_chunks() -> None:
    xml = track(*(INTERACTION.format(start=S, t=i, click=i + 1, current=i + 2) for i in range(4)))
    assert parse(xml, chunk=1) == parse(xml, chunk=7) == parse(xml)


BAD = track(
    f'<session num="1" starttime="{S}" userid="u">\n',
    '<interaction num="1" starttime="1"><results><result><url>a</url></result></results>'
    "</interaction>\n",  # line 4: no query
    '<interaction num="2" starttime="later"><query>q</query></interaction>\n',
    '<interaction num="3"><query>q</query></interaction>\n',
    '<interaction num="4" starttime="2"><query>dogs</query>\n',  # line 7: good
    "<results>\n<result><url>a</url></result>\n<result><title>t</title></result>\n</results>\n",
    "<clicked>\n",
    '<click starttime="3"><rank>0</rank><url>a</url></click>\n',  # line 13
    '<click starttime="3"><rank>9223372036854775808</rank><url>a</url></click>\n',
    '<click starttime="3"><rank>2.0</rank><url>a</url></click>\n',
    "<click><rank>1</rank><url>a</url></click>\n",
    '<click starttime="3"><rank>1</rank></click>\n',
    '<click starttime="1e400"><url>a</url></click>\n',
    '<click starttime="3"><rank> 9223372036854775807 </rank><url>a</url></click>\n',  # good
    "</clicked></interaction></session>\n",
    '<interaction num="5" starttime="1"><query>q</query></interaction>\n',
)


def test_bad_elements_are_items_with_their_line_and_reason() -> None:
    got = [(i.xml_line, i.reason) for i in parse(BAD)]
    assert got == [
        (4, "interaction has no query"),
        (5, "interaction starttime 'later' is not a number of seconds"),
        (6, "interaction has no starttime"),
        (7, None),
        (10, "result has no url (the results are left out)"),
        (13, "click rank '0' is not an integer from 1 to 2**63-1"),
        (14, "click rank '9223372036854775808' is not an integer from 1 to 2**63-1"),
        (15, "click rank '2.0' is not an integer from 1 to 2**63-1"),
        (16, "click has no starttime"),
        (17, "click has no url"),
        (18, "click starttime '1e400' is after the year 9999"),
        (19, None),
        (21, "interaction outside a session"),
    ]


def test_bad_elements_go_to_the_dead_letter_as_file_and_line(
    tmp_path: Path, run_flow: RunFlow
) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(BAD)
    got, summary = run_flow([path])
    dead = got["dead"]
    assert [d["source"] for d in dead] == [
        f"{path}:{n}" for n in (4, 5, 6, 10, 13, 14, 15, 16, 17, 18, 21)
    ]
    assert dead[0]["reason"] == "interaction has no query"
    assert dead[0]["record"] == (
        '<interaction num="1" starttime="1"><results><result><url>a</url></result>'
        "</results></interaction>"
    )
    assert summary.counts["invalid"] == 11
    (search,) = got["searches"]  # the run went on
    assert (search["query"], search["clicks"], search["first_click_rank"]) == (
        "dogs",
        1,
        2**63 - 1,
    )


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "search_sessions", "run", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (BAD[:300], "line 6, column 30: unclosed token"),
        (
            BAD.replace("<query>dogs</query>", "<query>dogs</qery>"),
            "line 7, column 49: mismatched tag",
        ),
        ("", "line 1, column 1: no element found"),
    ],
    ids=["cut", "mismatched", "empty"],
)
def test_a_file_that_is_not_well_formed_is_one_error_line(
    tmp_path: Path, text: str, where: str
) -> None:
    path = tmp_path / "broken.xml"
    path.write_text(text)
    r = cli(str(path), "--quiet", "--searches", "none")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [f"Error: {path}: not well-formed XML at {where}"]


def test_xml_error_names_line_and_column() -> None:
    with pytest.raises(XmlError, match="at line 2, column 8: mismatched tag") as caught:
        TrecParser().feed(b"<a>\n  <b></a>", final=True)
    assert (caught.value.line, caught.value.column) == (2, 8)


# Runs on a generated log ------------------------------------------------------


def generated(n_sessions: int = 320, seed: int = 5) -> str:
    """A TREC-like log: sessions of 1-8 interactions with results and clicks, relative
    times (2013) or epoch ones (no session start, or a 2012 time of day), some without a
    userid, users with several sessions, a few bad elements; sessions not in time order."""
    rnd = random.Random(seed)
    parts = []
    for s in range(1, n_sessions + 1):
        start = 1_372_000_000 + rnd.randrange(0, 86_400 * 3) + rnd.randrange(100) / 100
        style = rnd.choice(["relative", "relative", "epoch", "2012"])
        user = f' userid="{rnd.randrange(40)}"' if rnd.random() < 0.8 else ""
        attr = {"relative": f' starttime="{start}"', "epoch": "", "2012": ' starttime="09:15:02.5"'}
        parts.append(f'<session num="{s}"{attr[style]}{user}>\n<topic num="{s % 50}"/>\n')
        t = 0.0
        for i in range(1, rnd.randrange(2, 10)):
            t += rnd.randrange(5, 400) + rnd.randrange(1000) / 1000
            at = t if style == "relative" else start + t
            query = "" if rnd.random() < 0.01 else f"<query>q{rnd.randrange(60)} &amp; more</query>"
            parts.append(f'<interaction num="{i}" starttime="{at:.3f}">{query}\n<results>\n')
            urls = [f"http://d{rnd.randrange(30)}.org/{i}" for _ in range(rnd.randrange(0, 6))]
            parts += [
                f'<result rank="{r}"><url>{u}</url></result>\n' for r, u in enumerate(urls, 1)
            ]
            parts.append("</results>\n<clicked>\n")
            for c in range(rnd.randrange(0, 3) if urls else 0):
                k = rnd.randrange(len(urls))
                rank = k + 1 if rnd.random() < 0.97 else -1
                ct = at + rnd.randrange(1, 90) + c
                parts.append(
                    f'<click num="{c + 1}" starttime="{ct:.2f}"><rank>{rank}</rank>'
                    f"<url>{urls[k]}</url></click>\n"
                )
            parts.append("</clicked>\n</interaction>\n")
        if rnd.random() < 0.5:
            at = t + 30 if style == "relative" else start + t + 30
            parts.append(f'<currentquery starttime="{at:.1f}"><query>last</query></currentquery>\n')
        parts.append("</session>\n")
    return track(*parts)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trec") / "sessiontrack2013.xml"
    path.write_text(generated())
    return path


OUTPUTS = ("searches", "sessions", "dead")


def run_cli(src: Path, out: Path, *args: str) -> dict[str, bytes]:
    out.mkdir()
    files = {name: out / f"{name}.jsonl" for name in OUTPUTS}
    r = CliRunner().invoke(
        main,
        [
            "run",
            str(src),
            "--searches",
            str(files["searches"]),
            "--sessions",
            str(files["sessions"]),
            "--dead-letter",
            str(files["dead"]),
            "--quiet",
            *args,
        ],
    )
    assert r.exit_code == 0, r.output
    return {name: p.read_bytes() for name, p in files.items()}


def sorted_lines(outputs: dict[str, bytes]) -> dict[str, list[bytes]]:
    return {name: sorted(data.splitlines()) for name, data in outputs.items()}


def test_both_cores_give_the_same_bytes(
    log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if NATIVE is None:
        pytest.skip("the native core is not installed")
    native = run_cli(log, tmp_path / "native")
    monkeypatch.setenv("SEARCH_SESSIONS_CORE", "python")
    python = run_cli(log, tmp_path / "python")
    assert native == python
    searches = native["searches"].splitlines()
    assert len(searches) > 1000 and native["dead"].count(b"\n") > 10
    dead = [json.loads(x) for x in native["dead"].splitlines()]
    assert {d["reason"] for d in dead} == {
        "interaction has no query",
        "click rank '-1' is not an integer from 1 to 2**63-1",
    }
    assert all(d["source"].startswith(f"{log}:") for d in dead)


@pytest.mark.parametrize("parallel", [["--workers", "2"], ["--processes", "2"]])
def test_workers_and_processes_give_what_one_worker_gives(
    log: Path, tmp_path: Path, parallel: list[str]
) -> None:
    one = run_cli(log, tmp_path / "one")
    got = run_cli(log, tmp_path / "many", *parallel)
    assert sorted_lines(got) == sorted_lines(one)


def test_gzip_and_auto_detection_give_the_same_records(log: Path, tmp_path: Path) -> None:
    want = run_cli(log, tmp_path / "plain")
    (tmp_path / "in").mkdir()
    gz = tmp_path / "in" / "log.xml.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    named = tmp_path / "in" / "track.log"  # no telling name: the first line tells
    named.write_bytes(log.read_bytes())
    unnamed_gz = tmp_path / "in" / "track.gz"
    unnamed_gz.write_bytes(gzip.compress(log.read_bytes()))
    for i, (path, args) in enumerate(
        [(gz, ()), (named, ()), (unnamed_gz, ()), (named, ("--format", "trec"))]
    ):
        got = run_cli(path, tmp_path / f"out{i}", *args)
        got["dead"] = got["dead"].replace(str(path).encode(), str(log).encode())
        assert got == want, path


def test_format_of_and_directories() -> None:
    assert format_of("sessiontrack2013.xml", "auto", b"") == "trec"
    assert format_of("SESSIONTRACK2014.XML.GZ", "auto", b"") == "trec"
    assert format_of("x.csv", "auto", b'<?xml version="1.0"?>') == "csv"  # the name tells
    assert format_of("x.jsonl.gz", "auto", b'<?xml version="1.0"?>') == "jsonl"
    assert format_of("x", "auto", b"<sessiontrack2012>") == "trec"
    assert format_of("x", "auto", b'\xef\xbb\xbf<?xml version="1.0"?>') == "trec"
    assert format_of("x.xml", "jsonl", b"") == "jsonl"


def test_a_directory_reads_xml_files_whole(log: Path, tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(log.read_bytes())
    (tmp_path / "b.jsonl").write_text('{"type": "app_open", "user": "x", "time": 0}\n')
    cfg = resolve_inputs(Config(inputs=(str(tmp_path),), workers=2, block_bytes=1 << 12))
    assert [Path(p).name for p in cfg.partitions] == ["a.xml", "b.jsonl"]
    assert [(rp.lane, rp.lanes) for rp in read_partitions(cfg, 2, 1 << 12)] == [(0, 1), (0, 1)]
    jsonl_only = resolve_inputs(Config(inputs=(str(tmp_path),), input_format="jsonl"))
    assert [Path(p).name for p in jsonl_only.partitions] == ["b.jsonl"]


def test_standard_input_is_refused_in_one_line(log: Path) -> None:
    r = CliRunner().invoke(main, ["run", "-", "--format", "trec"], input=log.read_bytes())
    assert r.exit_code == 2
    assert "standard input cannot be read as TREC Session Track XML" in r.output
    r = cli("-", "--quiet", "--searches", "none", stdin=log.read_text())  # auto: by its first line
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "Error: standard input looks like TREC Session Track XML, which is read from files "
        "only (save it to a file and run on that)"
    )


@pytest.mark.parametrize("after", [0, 1, 3])
def test_a_partition_resumes_after_exactly_the_events_it_had_read(log: Path, after: int) -> None:
    """Blocks of 16 items: a snapshot after some resumes at the item after the last read,
    dead letters still naming their XML lines."""
    cfg = resolve_inputs(Config(inputs=(str(log),), block_bytes=16 * 128, order="time"))

    def read(resume_after: int | None) -> dict[str, Any]:
        src = EventSource(cfg, ["shard-0", "shard-1"])
        (rp,) = src.parts
        out: dict[str, Any] = {"events": [], "dead": []}
        read_resumed(src, rp.name, out, resume_after)
        out["events"].sort()
        return out

    whole = read(None)
    assert len(whole["events"]) > 3000
    assert sorted(ev[2] for ev in whole["events"])[:3] == [1, 2, 3]  # seq: ordinals
    assert read(after) == whole


def test_out_of_order_sessions_are_sorted_and_said_by_their_xml_line(
    log: Path, tmp_path: Path
) -> None:
    r = cli(str(log), "--searches", str(tmp_path / "s.jsonl"))
    assert r.returncode == 0, r.stderr
    said = r.stderr.splitlines()[0]
    assert said.startswith(f"search-sessions: {log} is not in time order (line ")
    line = int(said.split("(line ")[1].split()[0])
    text = log.read_text().splitlines()[line - 1]
    assert text.startswith(("<interaction", "<click", "<currentquery")), text
    sorted_first = run_cli(log, tmp_path / "sorted", "--order", "sort")
    assert (tmp_path / "s.jsonl").read_bytes() == sorted_first["searches"]
