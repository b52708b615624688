"""Parquet in and out: a Parquet file of events gives what the same events as JSON Lines
give; Parquet outputs hold what the JSON Lines outputs hold, for any parallelism, and
stay exact through kill -9 and a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from search_sessions import RunError, run
from search_sessions.config import Config
from search_sessions.connectors.parquet import ParquetSink, arrow_schema, parts_dir
from search_sessions.connectors.registry import resolve_inputs, start_output
from search_sessions.connectors.source import EventSource
from search_sessions.control import FAILURE
from search_sessions.core.schema import OutputKind, field_names
from search_sessions.core.time import format_time
from search_sessions.simulate import SimSpec
from search_sessions.simulate import write as simulate

from ..conftest import RunFlow, read_jsonl, read_resumed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EVENT_COLUMNS = ("type", "user", "time", "query", "items", "item", "rank", "search_id")


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated day (users spelt as strings: a Parquet column has one type)."""
    raw = tmp_path_factory.mktemp("pq") / "raw.jsonl"
    simulate(SimSpec(events=6_000, users=150, seed=11), str(raw))
    path = raw.with_name("events.jsonl")
    with open(raw) as f, open(path, "w") as out:
        for line in f:
            ev = json.loads(line)
            ev["user"] = str(ev["user"])
            out.write(json.dumps(ev) + "\n")
    return path


def event_rows(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path)


def to_us(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def write_parquet(path: Path, rows: list[dict[str, Any]], time_type: Any, **rename: str) -> Path:
    """``rows`` as a Parquet file in several row groups, the time column as ``time_type``
    (a timestamp type, or int64 for epoch milliseconds), columns renamed as asked."""
    times = [to_us(r["time"]) for r in rows]
    if not pa.types.is_timestamp(time_type):
        time_col = pa.array([t // 1000 for t in times], time_type)
    elif time_type.tz is None:  # wall-clock times, UTC here
        time_col = pa.array(times, pa.timestamp("us")).cast(time_type)
    else:  # instants, shown in any zone
        time_col = pa.array(times, pa.timestamp("us", "UTC")).cast(time_type)
    columns: dict[str, Any] = {
        "type": pa.array([r["type"] for r in rows]),
        "user": pa.array([r["user"] for r in rows]),
        "time": time_col,
        "query": pa.array([r.get("query") for r in rows], pa.string()),
        "items": pa.array([r.get("items") for r in rows], pa.list_(pa.string())),
        "item": pa.array([r.get("item") for r in rows], pa.string()),
        "rank": pa.array([r.get("rank") for r in rows], pa.int32()),
        "search_id": pa.array([r.get("search_id") for r in rows], pa.string()),
        "value": pa.array([r.get("value") for r in rows], pa.float64()),
        "currency": pa.array([r.get("currency") for r in rows], pa.string()),
        "platform": pa.array([r.get("platform") for r in rows], pa.string()),
        "ignored": pa.array([1.5] * len(rows)),  # columns the events do not use
    }
    table = pa.table({rename.get(k, k): v for k, v in columns.items()})
    pq.write_table(table, path, row_group_size=700)
    assert pq.ParquetFile(path).metadata.num_row_groups > 2
    return path


def key_of(rec: dict[str, Any]) -> str:
    return json.dumps(rec, sort_keys=True)


def sorted_records(records: list[dict[str, Any]]) -> list[str]:
    return sorted(map(key_of, records))


@pytest.mark.parametrize(
    ("time_type", "extra"),
    [
        (pa.timestamp("us", "UTC"), {}),
        (pa.timestamp("ms"), {}),  # no zone: UTC
        (pa.int64(), {"time_unit": "ms"}),  # epoch milliseconds
        (pa.timestamp("ns", "America/New_York"), {"fields": (("user", "anon_id"),)}),
        (pa.timestamp("us", "UTC"), {"dimensions": ("platform",)}),
    ],
    ids=["timestamp-utc", "timestamp-naive", "epoch-ms", "renamed-zoned-ns", "dimension"],
)
def test_parquet_input_gives_what_json_lines_give(
    log: Path, tmp_path: Path, run_flow: RunFlow, time_type: Any, extra: dict[str, Any]
) -> None:
    want, want_summary = run_flow([log], dimensions=extra.get("dimensions", ()))
    rename = {"user": "anon_id"} if extra.get("fields") else {}
    path = write_parquet(tmp_path / "events.parquet", event_rows(log), time_type, **rename)
    got, summary = run_flow([path], block_bytes=1 << 14, **extra)  # 128 rows a read
    assert len(want["searches"]) > 300
    if extra.get("dimensions"):
        assert {s["dimensions"]["platform"] for s in got["searches"]} == {"web", "ios", "android"}
    for name in ("searches", "sessions"):
        assert sorted_records(got[name]) == sorted_records(want[name]), name
    assert got["dead"] == [] and summary.counts == want_summary.counts


@pytest.mark.parametrize(
    ("name", "fmt"), [("events.pq", "parquet"), ("EVENTS.PARQUET", "auto")], ids=["pq", "upper"]
)
def test_a_parquet_file_is_read_whole_by_several_workers(
    log: Path, tmp_path: Path, run_flow: RunFlow, name: str, fmt: str
) -> None:
    """Parquet files are not read in lanes; should the source cut one into lanes anyway
    (its name not ending ``.parquet``), the first lane reads it all, the others nothing."""
    want, _ = run_flow([log])
    path = write_parquet(tmp_path / name, event_rows(log), pa.timestamp("us", "UTC"))
    got, summary = run_flow([path], input_format=fmt, workers=2, block_bytes=1 << 12)
    assert sorted_records(got["sessions"]) == sorted_records(want["sessions"])
    assert summary.counts["partitions"] == 1 and summary.counts["lines"] == len(event_rows(log))


def test_bad_rows_go_to_the_dead_letter_as_file_and_row(tmp_path: Path, run_flow: RunFlow) -> None:
    rows: list[dict[str, Any]] = [
        {"type": "app_open", "user": "u1", "time": "2024-01-01T00:00:00Z"},
        {"type": "search", "user": "u1", "time": "2024-01-01T00:00:01Z", "query": "dogs"},
        {"type": "search", "user": "u1", "time": "2024-01-01T00:00:02Z"},  # no query
        {"type": "bogus", "user": "u1", "time": "2024-01-01T00:00:03Z"},
        {"type": "results", "user": "u1", "time": "2024-01-01T00:00:04Z", "items": ["a", "b"]},
        {"type": "click", "user": "u1", "time": "2024-01-01T00:00:05Z", "item": "b"},
    ]
    path = write_parquet(tmp_path / "bad.parquet", rows * 400, pa.timestamp("us", "UTC"))
    got, summary = run_flow([path])
    dead = got["dead"]
    assert [d["source"] for d in dead[:2]] == [f"{path}:3", f"{path}:4"]
    assert len(dead) == 800 and summary.counts["invalid"] == 800
    assert "query" in dead[0]["reason"]
    record = json.loads(dead[1]["record"])  # the row as JSON, nulls left out
    assert record["type"] == "bogus" and "query" not in record
    assert record["time"].startswith("2024-01-01")
    assert "ignored" not in record  # only the columns events are read from
    assert got["searches"][0]["clicks"] == 1 and got["searches"][0]["first_click_rank"] == 2


def test_a_file_without_an_event_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nouser.parquet"
    pq.write_table(pa.table({"type": ["app_open"], "time": [0]}), path)
    cfg = Config(inputs=(str(path),), searches=str(tmp_path / "s.jsonl"), progress=False)
    FAILURE.clear()  # a failed run earlier in this process leaves its reason there
    with pytest.raises(RunError, match="no column user"):
        run(cfg)


@pytest.mark.parametrize("after", [0, 1, 4, 9])
def test_a_partition_resumes_after_exactly_the_rows_it_had_read(tmp_path: Path, after: int) -> None:
    """Batches of 16 rows over row groups of 700: a snapshot after some batches resumes
    at the row after the last one read (inside a row group, or at its start)."""
    rows = [
        {"type": "search", "user": f"u{i % 9}", "time": format_time(i * 1_000_000), "query": "q"}
        for i in range(2_000)
    ]
    rows[100]["type"] = "nope"
    path = write_parquet(tmp_path / "e.parquet", rows, pa.timestamp("us", "UTC"))
    cfg = resolve_inputs(Config(inputs=(str(path),), block_bytes=16 * 128, order="time"))

    def read(resume_after: int | None) -> dict[str, Any]:
        src = EventSource(cfg, ["shard-0", "shard-1"])
        (rp,) = src.parts
        out: dict[str, Any] = {"events": [], "dead": []}
        read_resumed(src, rp.name, out, resume_after)
        out["events"].sort()
        return out

    whole = read(None)
    assert len(whole["events"]) == 1_999
    assert [d["source"] for d in whole["dead"]] == [f"{path}:101"]
    assert [ev[2] for ev in whole["events"][:3]] == [1, 2, 3]  # seq: row numbers
    assert read(after) == whole


# Outputs ----------------------------------------------------------------------


def parquet_records(path: Path) -> list[dict[str, Any]]:
    """A Parquet output's rows as the JSON Lines output has them: times as RFC 3339 text,
    a missing (null) column of the other rollup row type left out."""
    table = pq.read_table(path)
    out = []
    for row in table.to_pylist():
        rec = {}
        for k, v in row.items():
            if isinstance(v, datetime):
                v = format_time((v - EPOCH) // timedelta(microseconds=1))
            elif k in ("dimensions", "value") and isinstance(v, str):
                v = json.loads(v)  # JSON text, as in the SQL tables
            rec[k] = v
        if rec.get("level") is not None:
            keep = set(field_names(ROLLUP_TYPES[rec["level"]])) | {"level"}
            rec = {k: v for k, v in rec.items() if k in keep}
        out.append(rec)
    return out


ROLLUP_TYPES = {t.__struct_config__.tag: t for t in OutputKind.ROLLUPS.record_types}


def last_per_key(rows: list[dict[str, Any]]) -> list[str]:
    """Rollup rows are re-emitted as windows fill: the last row per key is the result."""
    last = {(r["level"], r["window"], r["window_start"], r.get("query")): r for r in rows}
    return sorted(map(key_of, last.values()))


def late_records(path: Path, parquet: bool) -> list[str]:
    rows = parquet_records(path) if parquet else read_jsonl(path)
    for r in rows:
        if parquet:
            r["record"] = json.loads(r["record"])  # JSON text, as in the SQL tables
    return sorted(map(key_of, rows))


def outputs_config(src: Path, out: Path, suffix: str, **kw: Any) -> Config:
    out.mkdir(exist_ok=True)
    return Config(
        inputs=(str(src),),
        searches=str(out / f"searches{suffix}"),
        sessions=str(out / f"sessions{suffix}"),
        dead_letter=str(out / f"dead{suffix}"),
        late=str(out / f"late{suffix}"),
        rollups=str(out / f"rollups{suffix}"),
        rollup_windows=(("10m", 600), ("1h", 3600)),
        order="time",
        lateness=timedelta(seconds=5),
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Events out of order within the lateness (so every parallelism gives the same
    records) and bad lines, with their JSON Lines outputs."""
    base = tmp_path_factory.mktemp("noisy")
    src = base / "events.jsonl"
    simulate(SimSpec(events=8_000, users=200, seed=4, disorder=3, bad=0.01), str(src))
    run(outputs_config(src, base / "jsonl", ".jsonl"))
    return src, base / "jsonl"


@pytest.mark.parametrize(
    "parallel", [{}, {"workers": 2}, {"processes": 2}], ids=["1", "workers-2", "processes-2"]
)
def test_parquet_outputs_hold_what_json_lines_outputs_hold(
    noisy: tuple[Path, Path], tmp_path: Path, parallel: dict[str, int]
) -> None:
    src, want = noisy
    out = tmp_path / "pq"
    run(outputs_config(src, out, ".parquet", **parallel))
    assert sorted(os.listdir(out)) == [  # one file each, no parts left
        "dead.parquet",
        "late.parquet",
        "rollups.parquet",
        "searches.parquet",
        "sessions.parquet",
    ]
    for name in ("searches", "sessions", "dead"):
        expected = read_jsonl(want / f"{name}.jsonl")
        assert expected
        assert sorted_records(parquet_records(out / f"{name}.parquet")) == sorted_records(
            expected
        ), name
        count = duckdb.sql(f"select count(*) from '{out / f'{name}.parquet'}'").fetchall()
        assert count == [(len(expected),)]
    assert pq.read_table(out / "late.parquet").num_rows == 0  # an empty file, not none
    assert last_per_key(parquet_records(out / "rollups.parquet")) == last_per_key(
        read_jsonl(want / "rollups.jsonl")
    )
    searches = pq.ParquetFile(out / "searches.parquet")
    assert searches.schema_arrow.remove_metadata() == arrow_schema(OutputKind.SEARCHES)
    assert searches.schema_arrow.field("time").type == pa.timestamp("us", "UTC")
    ctr = duckdb.sql(f"select avg(ctr) from '{out / 'searches.parquet'}'").fetchall()[0][0]
    assert 0 < ctr < 1


def test_late_events_are_written_with_their_record_as_json_text(
    tmp_path: Path, run_flow: RunFlow
) -> None:
    src = tmp_path / "events.jsonl"
    events = [
        {"type": "search", "user": f"u{i}", "time": 3600 + i, "query": "q"} for i in range(50)
    ]
    events += [
        {"type": "click", "user": f"u{i}", "time": i, "item": "x", "rank": 2} for i in range(5)
    ]
    src.write_text("".join(json.dumps(ev) + "\n" for ev in events))
    want, _ = run_flow([src], order="time", lateness=5)
    assert len(want["late"]) == 5
    out = tmp_path / "pq"
    run(outputs_config(src, out, ".parquet", workers=2))
    assert late_records(out / "late.parquet", True) == sorted(map(key_of, want["late"]))


def test_schemas_follow_the_record_structs() -> None:
    for kind in OutputKind:
        schema = arrow_schema(kind)
        for record_type in kind.record_types:
            assert set(field_names(record_type)) <= set(schema.names), kind
    rollups = arrow_schema(OutputKind.ROLLUPS)
    assert rollups.names[0] == "level" and not rollups.field("searches").nullable
    assert rollups.field("query").nullable and rollups.field("clicks").nullable
    assert arrow_schema(OutputKind.LATE).field("record").type == pa.string()


def test_an_output_without_records_is_an_empty_file_with_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "dead.parquet"
    start_output(str(path), OutputKind.DEAD_LETTER)
    assert pq.read_table(path).schema.remove_metadata() == arrow_schema(OutputKind.DEAD_LETTER)
    os.remove(path)
    # Even when the run did not start it: the sink makes it as the flow starts.
    ParquetSink(str(path), OutputKind.DEAD_LETTER).list_parts()
    assert pq.read_table(path).num_rows == 0


def test_a_sink_partition_resumes_at_its_committed_parts(tmp_path: Path) -> None:
    """Rows after the last snapshot are dropped on resume and written again; a resume
    after the parts were combined (a stop) finds them in the file."""
    path = str(tmp_path / "s.parquet")
    lines = [
        json.dumps({"source": f"f:{i}", "reason": "r", "record": {"n": i}}).encode() + b"\n"
        for i in range(10)
    ]
    sink = ParquetSink(path, OutputKind.LATE)
    part = sink.build_part("w", path, None)
    part.write_batch([b"".join(lines[:3])])
    state = part.snapshot()
    part.write_batch([b"".join(lines[3:5])])
    part.snapshot()  # not committed: the store still holds `state`
    part.write_batch([lines[5]])  # a half-written epoch
    assert state == (1, 3)
    part = sink.build_part("w", path, state)  # (after a kill -9)
    part.write_batch([b"".join(lines[3:6])])
    state = part.snapshot()
    part.close()
    assert not os.path.exists(parts_dir(path))
    got = [r["source"] for r in pq.read_table(path).to_pylist()]
    assert got == [f"f:{i}" for i in range(6)]
    # Killed after combining, before the store took the last snapshot: the file holds
    # a part more than the state, which is written again.
    part = sink.build_part("w", path, (1, 3))
    part.write_batch([b"".join(lines[3:6])])
    assert part.snapshot() == state
    part.close()
    assert [r["source"] for r in pq.read_table(path).to_pylist()] == got
    # Stopped after that: resumed from the file itself, then more rows.
    part = sink.build_part("w", path, state)
    part.write_batch([b"".join(lines[6:])])
    part.snapshot()
    part.close()
    rows = pq.read_table(path).to_pylist()
    assert [r["source"] for r in rows] == [f"f:{i}" for i in range(10)]
    assert json.loads(rows[9]["record"]) == {"n": 9}
    # A finished job run again leaves the file as it is.
    before = os.stat(path).st_mtime_ns
    sink.build_part("w", path, (3, 10)).close()
    assert os.stat(path).st_mtime_ns == before


# Recovery through real processes ---------------------------------------------


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "events.jsonl"
    cli = Path(sys.executable).with_name("search-sessions")
    subprocess.run(
        [str(cli), "simulate", "--events", "300000", "--seed", "3", "--output", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def command(src: Path, out: Path, rec: Path) -> list[str]:
    return [
        str(Path(sys.executable).with_name("search-sessions")),
        "run",
        str(src),
        "--quiet",
        "--searches",
        str(out / "searches.parquet"),
        "--sessions",
        str(out / "sessions.parquet"),
        "--rollup",
        "1h",
        "--rollups",
        str(out / "rollups.parquet"),
        "--recovery-dir",
        str(rec),
        "--snapshot-interval",
        "0.2s",
    ]


def interrupt(cmd: list[str], out: Path, sig: int, parts: int) -> None:
    """Start ``cmd`` and send ``sig`` once the searches output has ``parts`` more parts.
    The job cannot end first, however fast it runs: an armed crash point that never
    fires holds its input at the end (see ``search_sessions.crashpoints``)."""
    pdir = Path(parts_dir(str(out / "searches.parquet")))
    had = len(os.listdir(pdir)) if pdir.exists() else 0
    env = {**os.environ, "SEARCH_SESSIONS_CRASH": "commit:1000000"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, start_new_session=True, env=env)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if pdir.exists() and len(os.listdir(pdir)) >= had + parts:
            os.killpg(proc.pid, sig)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 0), err


KEYS = {
    "searches": ["session_id", "search_id"],
    "sessions": ["session_id"],
    "rollups": ["level", "window", "window_start", "query"],
}


def final(out: Path) -> dict[str, Any]:
    """Each output as a table sorted by its key (rollups: the last row per key), compared
    in Arrow: the files hold tens of thousands of rows."""
    got = {}
    for name, keys in KEYS.items():
        table = pq.read_table(out / f"{name}.parquet").replace_schema_metadata(None)
        if name == "rollups":
            index = table.append_column("i", pa.array(range(table.num_rows), pa.int64()))
            last = index.group_by(keys, use_threads=False).aggregate([("i", "max")])
            table = table.take(last["i_max"])
        got[name] = table.sort_by([(k, "ascending") for k in keys])
    return got


def test_kill_9_then_a_signal_then_resume_equals_an_uninterrupted_run(
    big_log: Path, tmp_path: Path
) -> None:
    clean_out = tmp_path / "clean"
    clean = subprocess.run(command(big_log, clean_out, tmp_path / "rec-clean"), timeout=120)
    assert clean.returncode == 0
    want = final(clean_out)
    assert want["searches"].num_rows > 50_000

    out = tmp_path / "crash"
    cmd = command(big_log, out, tmp_path / "rec-crash")
    interrupt(cmd, out, signal.SIGKILL, parts=2)  # parts on disk, no file yet
    assert len(os.listdir(parts_dir(str(out / "searches.parquet")))) >= 2
    interrupt(cmd, out, signal.SIGINT, parts=2)  # stops cleanly: combined, parts gone
    assert not os.path.exists(parts_dir(str(out / "searches.parquet")))
    partial = pq.read_table(out / "searches.parquet").num_rows
    assert 0 < partial < want["searches"].num_rows
    done = subprocess.run(cmd, timeout=120)
    assert done.returncode == 0
    got = final(out)
    for name, table in want.items():
        assert got[name].equals(table), name
    assert not any(name.startswith(".") for name in os.listdir(out))
