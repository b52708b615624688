"""Input order: bounded inputs in any order give the batch answer under ``--order sort``
and ``auto`` (an external sort in bounded memory), for 1 and 2 workers and 2 processes;
a sort resumes exactly from any snapshot; too many late events are explained."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zlib import crc32

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_sessions.config import Config
from search_sessions.connectors.base import LinePartition
from search_sessions.connectors.registry import resolve_inputs
from search_sessions.connectors.source import EventSource
from search_sessions.core.cores import block_events
from search_sessions.errors import ConfigError

from ..conftest import RunFlow, write_events, write_parts
from ..oracle import canon, oracle

CLI = [sys.executable, "-m", "search_sessions"]
T0 = 1_704_067_200


def _traffic(n_users: int, per_user: int, seed: int = 1) -> list[dict[str, Any]]:
    """Sessions of search, results, click for many users over a day, in time order."""
    rnd = random.Random(seed)
    events: list[dict[str, Any]] = []
    for u in range(n_users):
        t = T0 + rnd.randrange(0, 3600)
        for i in range(per_user):
            t += rnd.choice([5, 40, 400, 3000])  # some gaps cut sessions
            q = f"q{rnd.randrange(30)}"
            items = [f"d{rnd.randrange(50)}" for _ in range(4)]
            events.append({"type": "search", "user": f"u{u}", "time": t, "query": q})
            events.append({"type": "results", "user": f"u{u}", "time": t + 1, "items": items})
            if i % 3:
                click = {"type": "click", "user": f"u{u}", "time": t + 3, "item": items[1]}
                events.append(click)
    # Times as text with offsets and microseconds, and as epoch numbers.
    for i, ev in enumerate(events):
        if i % 3 == 1:
            ev["time"] = _iso(ev["time"], "+02:00")
    return sorted(events, key=lambda e: _seconds(e["time"]))


def _iso(t: float, offset: str) -> str:
    from datetime import datetime, timedelta, timezone

    hours = int(offset[1:3]) * (1 if offset[0] == "+" else -1)
    tz = timezone(timedelta(hours=hours))
    return datetime.fromtimestamp(t, tz).isoformat(timespec="microseconds")


def _seconds(t: float | str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(t).timestamp() if isinstance(t, str) else t


@pytest.fixture(scope="module")
def traffic() -> list[dict[str, Any]]:
    return _traffic(60, 12)


def _user_sorted(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """As warehouse exports are: ORDER BY user, time."""
    return sorted(events, key=lambda e: (e["user"], _seconds(e["time"])))


def _disorder_late(events: list[dict[str, Any]], in_order: float = 0.6) -> list[dict[str, Any]]:
    """In time order for its first 60% (a dozen blocks), the rest shuffled: hours out of
    order, but only after the first blocks."""
    cut = int(len(events) * in_order)
    rest = events[cut:]
    random.Random(12).shuffle(rest)
    return events[:cut] + rest


def _within_lateness(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neighbours up to 30s apart swapped here and there: out of order, within --lateness."""
    out = list(events)
    for i in range(0, len(out) - 1, 5):
        if abs(_seconds(out[i + 1]["time"]) - _seconds(out[i]["time"])) <= 30:
            out[i], out[i + 1] = out[i + 1], out[i]
    assert out != events
    return out


def _check(out: dict[str, list[dict[str, Any]]], path: Path) -> None:
    want = oracle([str(path)])
    assert out["late"] == []
    assert canon(out["sessions"]) == canon(want.sessions)
    assert canon(out["searches"]) == canon(want.searches)


@pytest.mark.parametrize("order", ["auto", "sort"])
@pytest.mark.parametrize("parallel", [{}, {"workers": 2}, {"processes": 2}])
def test_user_sorted_input_gives_the_batch_answer(
    tmp_path: Path,
    run_flow: RunFlow,
    traffic: list[dict[str, Any]],
    order: str,
    parallel: dict[str, int],
) -> None:
    path = write_events(tmp_path / "by_user.jsonl", list(_user_sorted(traffic)))
    # Small blocks: two workers read the file in lanes, each sorted on its own.
    out, summary = run_flow([path], order=order, block_bytes=8192, **parallel)
    _check(out, path)
    assert summary.counts["late"] == 0


def test_time_order_sets_user_sorted_events_apart_as_late(
    tmp_path: Path, run_flow: RunFlow, traffic: list[dict[str, Any]]
) -> None:
    path = write_events(tmp_path / "by_user.jsonl", list(_user_sorted(traffic)))
    out, summary = run_flow([path], order="time")
    assert len(out["late"]) == summary.counts["late"]
    assert summary.counts["late"] > summary.counts["events"] // 2
    assert "--order sort" in summary.text()
    assert "were late" in summary.text()


def test_a_tiny_sort_memory_spills_runs_and_merges_them_exactly(
    tmp_path: Path, run_flow: RunFlow
) -> None:
    events = _traffic(300, 10, seed=2)  # ~9k events, ~1 MB: many times the 1 MB budget's share
    random.Random(3).shuffle(events)
    path = write_events(tmp_path / "shuffled.jsonl", list(events))
    temp = tmp_path / "sort-tmp"
    out, _ = run_flow([path], order="sort", sort_memory=1 << 20, temp_dir=str(temp), workers=2)
    _check(out, path)
    assert not any(temp.iterdir()), "sorted runs are removed at the end"


def test_runs_spill_to_the_temp_dir_while_sorting(tmp_path: Path) -> None:
    """Reading a shuffled input through one partition with a 1 MB budget spills several
    runs under --temp-dir, and closing the partition removes them."""
    events = _traffic(400, 10, seed=4)
    random.Random(5).shuffle(events)
    path = write_events(tmp_path / "shuffled.jsonl", list(events))
    temp = tmp_path / "t"
    cfg = resolve_inputs(
        Config(inputs=(str(path),), order="sort", sort_memory=1 << 20, temp_dir=str(temp))
    )
    part = EventSource(cfg, ["shard-0"]).build_part("read", "00000 " + str(path), None)
    while part.merged is None:
        part.next_batch()
    runs = [p for d in temp.iterdir() for p in d.iterdir()]
    assert len(runs) >= 2
    times = [ev[0] for ev in _drain(part)["events"]]
    assert times == sorted(times) and len(times) == len(events)
    part.close()
    assert not any(temp.iterdir())


def _drain(part: LinePartition, batches: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"events": [], "dead": [], "stats": {}}
    n = 0
    while batches is None or n < batches:
        try:
            items = part.next_batch()
        except StopIteration:
            break
        n += 1
        for key, value in items:
            if key == "dead_letter":
                out["dead"] += [json.loads(x)["source"] for x in value.splitlines()]
            elif key == "stats":
                out["stats"] = value
            else:
                events = block_events(value[3])
                assert not value[4], "a sorted input has no late events"
                out["events"] += events
    return out


@pytest.mark.parametrize("after", [0, 1, 3, 6, 9, 12])
@pytest.mark.parametrize("order", ["shuffled", "disorder_late", "in_order"])
def test_a_sort_resumes_exactly_from_any_snapshot(tmp_path: Path, after: int, order: str) -> None:
    """A snapshot taken while sorting (or while streaming the sorted events) resumes to
    the same events and dead letters, none twice (the sort itself starts over); auto's
    decision is the snapshot's (an input it streams is not scanned again)."""
    events = _traffic(40, 6, seed=6)  # 15 blocks
    if order == "shuffled":
        random.Random(7).shuffle(events)
    else:
        events = _disorder_late(events) if order == "disorder_late" else _within_lateness(events)
    lines: list[dict[str, Any] | str] = list(events)
    for i in range(0, len(lines), 97):
        lines.insert(i, "{not json")
    path = write_events(tmp_path / "events.jsonl", lines)
    cfg = resolve_inputs(
        Config(inputs=(str(path),), order="auto", block_bytes=4096, sort_memory=1 << 20)
    )
    src = EventSource(cfg, ["shard-0", "shard-1"])
    name = src.parts[0].name
    whole = _drain(src.build_part("read", name, None))
    first = src.build_part("read", name, None)
    assert first.sorting == (order != "in_order")
    head = _drain(first, after)
    state = first.snapshot()
    first.close()
    resumed = src.build_part("read", name, state)
    assert resumed.sorting == first.sorting
    rest = _drain(resumed)
    assert sorted(head["events"] + rest["events"]) == sorted(whole["events"])
    assert head["dead"] + rest["dead"] == whole["dead"]
    assert (rest["stats"] or head["stats"]) == whole["stats"]  # sent once, at its end


def test_auto_says_which_file_it_sorts_in_one_line(
    tmp_path: Path, traffic: list[dict[str, Any]]
) -> None:
    by_user = write_events(tmp_path / "by_user.jsonl", list(_user_sorted(traffic)))
    in_order = write_events(tmp_path / "in_order.jsonl", list(traffic))
    done = subprocess.run(
        [*CLI, "run", str(by_user), str(in_order), "--searches", "none", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    )
    notes = done.stderr.strip().splitlines()
    assert len(notes) == 1
    assert str(by_user) in notes[0] and "sorting it by event time" in notes[0]


def test_kafka_inputs_are_not_sorted() -> None:
    with pytest.raises(ConfigError, match="--order sort"):
        resolve_inputs(Config(inputs=("kafka://127.0.0.1:1/events",), order="sort"))


def test_stdin_out_of_order_is_sorted_under_auto(
    tmp_path: Path, traffic: list[dict[str, Any]]
) -> None:
    path = write_events(tmp_path / "by_user.jsonl", list(_user_sorted(traffic)))
    out = tmp_path / "searches.jsonl"
    with open(path, "rb") as stdin:
        done = subprocess.run(
            [*CLI, "run", "-", "--searches", str(out), "--quiet"],
            stdin=stdin,
            capture_output=True,
            text=True,
            check=True,
        )
    assert "<stdin> is not in time order" in done.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert canon(got) == canon(oracle([str(path)]).searches)


def test_a_run_killed_while_sorting_resumes_exactly(tmp_path: Path) -> None:
    """kill -9 during the sort (a slow, tiny-budget sort of a shuffled file), then the
    same command: the outputs equal an uninterrupted run's."""
    events = _traffic(2000, 12, seed=8)
    random.Random(9).shuffle(events)
    path = write_events(tmp_path / "shuffled.jsonl", list(events))

    def command(out: Path, recovery: Path | None) -> list[str]:
        cmd = [*CLI, "run", str(path), "--order", "sort", "--sort-memory", "1MB", "--quiet"]
        cmd += ["--searches", str(out / "s.jsonl"), "--sessions", str(out / "x.jsonl")]
        if recovery is not None:
            cmd += ["--recovery-dir", str(recovery), "--snapshot-interval", "0.05s"]
        return cmd

    base = tmp_path / "base"
    subprocess.run(command(base, None), check=True)
    out, rec = tmp_path / "out", tmp_path / "rec"
    temp = Path(tempfile.mkdtemp(dir=tmp_path))
    env = dict(os.environ, TMPDIR=str(temp))
    proc = subprocess.Popen(command(out, rec), env=env)
    # Killed once the sort has spilled a run (it is still sorting or streaming then).
    for _ in range(400):
        if any(d.iterdir() for d in temp.glob("search-sessions-sort-*")) or proc.poll() is not None:
            break
        subprocess.run(["sleep", "0.01"], check=True)
    assert proc.poll() is None, "killed while it runs"
    proc.kill()
    proc.wait()
    subprocess.run(command(out, rec), env=env, check=True)
    for name in ("s.jsonl", "x.jsonl"):
        assert sorted((out / name).read_text().splitlines()) == sorted(
            (base / name).read_text().splitlines()
        )
    assert not list(temp.glob("search-sessions-sort-*")), "runs left by the killed sort go"


@st.composite
def shuffled(draw: st.DrawFn) -> list[bytes]:
    """Events over a few hours in any order (far beyond the lateness), some duplicated."""
    kinds = ["app_open", "search", "search", "results", "click", "app_close"]
    out = []
    for _ in range(draw(st.integers(1, 60))):
        kind = draw(st.sampled_from(kinds))
        rec: dict[str, Any] = {"type": kind, "user": draw(st.sampled_from(["a", "b", 7]))}
        rec["time"] = T0 + draw(st.integers(0, 4 * 3600)) // draw(st.sampled_from([1, 60]))
        if kind == "search":
            rec["query"] = draw(st.sampled_from(["dogs", "cats"]))
        elif kind == "results":
            rec["items"] = draw(st.lists(st.sampled_from(["x", "y"]), max_size=3))
        elif kind == "click":
            rec["item"] = draw(st.sampled_from(["x", "y", "z"]))
        out.append(json.dumps(rec).encode())
    return draw(st.permutations(out + out[: draw(st.integers(0, 3))]))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=shuffled(), n_files=st.integers(1, 2), workers=st.integers(1, 2))
def test_any_order_equals_the_batch_oracle(
    lines: list[bytes], n_files: int, workers: int, tmp_path: Path, run_flow: RunFlow
) -> None:
    paths = write_parts(lines, n_files, Path(tempfile.mkdtemp(dir=tmp_path)))
    out, summary = run_flow(paths, order="sort", gap=100, lateness=5, workers=workers)
    want = oracle([str(p) for p in paths], gap=100, lateness=5)
    assert out["late"] == []
    assert canon(out["sessions"]) == canon(want.sessions)
    assert canon(out["searches"]) == canon(want.searches)
    assert summary.counts["duplicates"] == want.duplicates


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 20), max_size=300),
    run_size=st.integers(1, 50),
    frame=st.integers(1, 9),
)
def test_merging_runs_keeps_input_order_among_equal_times(
    times: list[int], run_size: int, frame: int
) -> None:
    """Runs of events in input order, each sorted by time alone (stably) and cut into
    frames, merge to the order (time, line) of the whole input."""
    from operator import itemgetter

    from search_sessions.connectors.sorting import merge_runs

    events = [(t, 0, line, 1, "u", "q", None, None) for line, t in enumerate(times, 1)]
    runs = []
    for i in range(0, len(events), run_size):
        run = sorted(events[i : i + run_size], key=itemgetter(0))
        runs.append(iter([run[j : j + frame] for j in range(0, len(run), frame)]))
    merged = [ev for chunk in merge_runs(runs) for ev in chunk]
    assert merged == sorted(events, key=itemgetter(0, 2))


@pytest.mark.parametrize("core", ["python", "native", "native-tuples"])
@pytest.mark.parametrize("budget_bytes", [1, 1 << 30])
def test_many_runs_are_merged_in_passes_of_a_few(
    tmp_path: Path, core: str, budget_bytes: int
) -> None:
    """More runs than are merged at once: they are merged into fewer first, still in
    input order (equal times keep their lines' order), and the merged ones removed;
    or none, everything held. The same with the native core's blocks, which the native
    core keeps, sorts, spills and merges, and deals to the shards as the Python one."""
    from search_sessions.connectors.sorting import FAN_IN, ExternalSort, SortBudget
    from search_sessions.core.cores import NATIVE, block_events

    if core != "python" and NATIVE is None:
        pytest.skip("no native core")
    # 1: every add spills. "native-tuples": the Python core's events (a format the Python
    # core decodes), sorted by the native core that runs the shards.
    sort = ExternalSort(SortBudget(budget_bytes), str(tmp_path), core != "python")
    rnd = random.Random(11)
    events = [
        (rnd.randrange(40), 0, line, 1, f"u{line % 7}", "q", None, None) for line in range(1, 2001)
    ]
    for i in range(0, len(events), 50):
        block = events[i : i + 50]
        sort.add(
            block if core != "native" else NATIVE.block_from_bytes(NATIVE.pack_events(block)), 0
        )
    assert len(sort.runs) == (40 if budget_bytes == 1 else 0)
    assert (sort.native is not None) == (core != "python")
    merged = sort.sorted()
    assert len(sort.runs) <= FAN_IN
    want = sorted(events, key=lambda e: (e[0], e[2]))
    assert merged.skip(3, -1) == want[2][0]
    got: list[tuple[object, ...]] = []
    while True:
        per_shard, newest, n = merged.take(100, 3, -1)
        if not n:
            break
        batch = want[3 + len(got) : 3 + len(got) + n]
        assert newest == batch[-1][0]
        for shard, events_of in enumerate(per_shard):
            mine = [e for e in batch if crc32(str(e[4]).encode()) % 3 == shard]
            assert block_events(events_of) == mine
        got += batch
    assert len(got) == len(want) - 3
    assert len(list(tmp_path.glob("*/run-*"))) == len(sort.runs)
    sort.close()
    assert not any(tmp_path.iterdir())


def _write_as(layout: str, events: list[dict[str, Any]], directory: Path) -> Path:
    """``events`` in one of the input layouts (``jsonl``, ``gzip``, ``json_array``,
    ``parquet``, ``csv``)."""
    import gzip

    plain = write_events(directory / "events.jsonl", list(events))
    if layout == "jsonl":
        return plain
    if layout == "gzip":
        path = directory / "events.jsonl.gz"
        path.write_bytes(gzip.compress(plain.read_bytes()))
    elif layout == "json_array":
        path = directory / "events.json"
        path.write_text(json.dumps(events))
    elif layout == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = directory / "events.parquet"
        cols = ("type", "user", "time", "query", "items", "item")
        table = pa.table({c: [e.get(c) for e in events] for c in cols if c != "time"})
        table = table.append_column("time", pa.array([str(e["time"]) for e in events]))
        pq.write_table(table, path)
    else:
        path = directory / "events.csv"
        rows = ["type,user,time,query,items,item"]
        for e in events:
            items = "|".join(e.get("items", []))
            rows.append(
                f"{e['type']},{e['user']},{e['time']},{e.get('query', '')},{items},"
                f"{e.get('item', '')}"
            )
        path.write_text("\n".join(rows) + "\n")
    plain.unlink()
    return path


@pytest.mark.parametrize("layout", ["gzip", "json_array", "parquet", "csv"])
def test_user_sorted_inputs_of_every_layout_are_sorted_under_auto(
    tmp_path: Path, run_flow: RunFlow, traffic: list[dict[str, Any]], layout: str
) -> None:
    """auto finds a gzipped, JSON-array, Parquet or CSV input out of order too, and the
    answer is the batch answer of the same events as JSON Lines."""
    events = _user_sorted(traffic)
    path = _write_as(layout, events, tmp_path)
    plain = write_events(tmp_path / "plain.jsonl", list(events))
    out, summary = run_flow([path])
    assert summary.counts["late"] == 0
    _check(out, plain)


# auto decides on the whole input -------------------------------------------------------

SMALL_BLOCKS = 8192  # the traffic is ~20 blocks: disorder can start after several
LAYOUTS = ["jsonl", "gzip", "csv", "parquet"]


def _said(err: str) -> list[str]:
    return [line for line in err.splitlines() if "is not in time order" in line]


@pytest.mark.parametrize(
    ("layout", "parallel"),
    [(layout, p) for layout in LAYOUTS for p in ({}, {"workers": 2})]
    + [("jsonl", {"processes": 2})],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}{n}" for k, n in v.items()) or "1",
)
def test_disorder_after_the_first_blocks_is_sorted_under_auto(
    tmp_path: Path,
    run_flow: RunFlow,
    traffic: list[dict[str, Any]],
    layout: str,
    parallel: dict[str, int],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """auto pre-scans the whole input: a file in order for its first blocks and out of
    order later is sorted (one line says so, naming a line past the ordered part) and
    gives the batch answer; two workers read a plain file in lanes that decide alike."""
    events = _disorder_late(traffic)
    path = _write_as(layout, events, tmp_path)
    out, summary = run_flow([path], block_bytes=SMALL_BLOCKS, **parallel)
    assert summary.counts["late"] == 0
    _check(out, write_events(tmp_path / "plain.jsonl", list(events)))
    (said,) = _said(capfd.readouterr().err)
    assert f"{path} is not in time order (line " in said
    line = int(said.split("(line ")[1].split()[0])
    assert line > int(len(events) * 0.6)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_input_in_order_within_the_lateness_is_streamed(
    tmp_path: Path,
    run_flow: RunFlow,
    traffic: list[dict[str, Any]],
    layout: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The pre-scan leaves an input in order (within --lateness) streamed as it is read:
    not sorted, nothing said, the batch answer, 1 and 2 workers alike."""
    events = _within_lateness(traffic)
    path = _write_as(layout, events, tmp_path)
    cfg = resolve_inputs(Config(inputs=(str(path),), block_bytes=SMALL_BLOCKS))
    src = EventSource(cfg, ["shard-0", "shard-1"])
    parts = [src.build_part("read", rp.name, None) for rp in src.parts]
    assert not any(p.sorting for p in parts)
    assert len(parts) == (2 if layout in ("jsonl", "csv") else 1)  # lanes, or whole
    for p in parts:
        p.close()
    plain = write_events(tmp_path / "plain.jsonl", list(events))
    for parallel in ({}, {"workers": 2}):
        out, summary = run_flow([path], block_bytes=SMALL_BLOCKS, **parallel)
        assert summary.counts["late"] == 0
        _check(out, plain)
    assert _said(capfd.readouterr().err) == []


def test_the_lanes_of_a_file_decide_alike_from_one_scan(
    tmp_path: Path,
    traffic: list[dict[str, Any]],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of order only in its last block (which one lane reads; each lane alone is in
    order): every lane sorts, in one process (the file scanned once, said once) or
    another (which scans it for itself and says nothing)."""
    from search_sessions.connectors import files

    scans = []
    real = files.LanePartition.first_late

    def counted(part: Any, times: Iterator[list[int | None]]) -> Any:
        scans.append(part.path)  # (by the native core, or through the times)
        return real(part, times)

    monkeypatch.setattr(files.LanePartition, "first_late", counted)
    events = [*traffic, dict(traffic[0], user="latecomer")]  # hours older than the others
    path = write_events(tmp_path / "late_end.jsonl", list(events))
    cfg = resolve_inputs(Config(inputs=(str(path),), block_bytes=SMALL_BLOCKS))
    keys = ["shard-0", "shard-1"]
    src = EventSource(cfg, keys)
    lanes = [src.build_part("read", rp.name, None) for rp in src.parts]
    assert len(lanes) == 2 and all(p.sorting for p in lanes)
    assert len(scans) == 1
    (said,) = _said(capfd.readouterr().err)
    assert f"line {len(events)} is " in said
    other = EventSource(cfg, keys)  # as another process: lane 1 only
    assert other.build_part("read", other.parts[1].name, None).sorting
    assert len(scans) == 2 and _said(capfd.readouterr().err) == []
    for p in lanes:
        p.close()


@pytest.mark.parametrize("disorder", [False, True])
def test_a_local_clusters_launcher_scans_lanes_once_for_every_process(
    tmp_path: Path,
    traffic: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    disorder: bool,
) -> None:
    """The launcher of a local cluster pre-scans the files read in lanes (natively, on
    all its cores); the processes take its answer, the one they would have found, and
    scan nothing themselves."""
    from dataclasses import replace

    from search_sessions.connectors import files

    pytest.importorskip("search_sessions_native")
    events = [*traffic, dict(traffic[0], user="latecomer")] if disorder else traffic
    path = write_events(tmp_path / "events.jsonl", list(events))
    cfg = resolve_inputs(
        Config(inputs=(str(path),), block_bytes=SMALL_BLOCKS, workers=1, processes=2)
    )
    scanned = files.scan_lanes_first(cfg)
    assert [i for i, _ in scanned] == [0]
    keys = ["shard-0", "shard-1"]
    alone = EventSource(cfg, keys).build_part("read", EventSource(cfg, keys).parts[1].name, None)
    assert (scanned[0][1] is not None) == disorder == alone.sorting
    alone.close()

    def no_scan(part: Any, times: Any) -> Any:
        raise AssertionError("scanned again")

    monkeypatch.setattr(files.LanePartition, "first_late", no_scan)
    src = EventSource(replace(cfg, scanned=scanned), keys)
    lanes = [src.build_part("read", rp.name, None) for rp in src.parts]
    assert [p.sorting for p in lanes] == [disorder, disorder]
    for p in lanes:
        p.close()
    assert files.scan_lanes_first(replace(cfg, order="time")) == ()


@pytest.mark.parametrize("disorder", [False, True])
def test_standard_input_is_held_to_its_end_and_said_sorted_only_when_out_of_order(
    tmp_path: Path,
    traffic: list[dict[str, Any]],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    disorder: bool,
) -> None:
    """Standard input can be read only once, so auto cannot pre-scan it: it is read to
    its end and streamed in time order (the answer streaming it would give when it is
    in order), and said to be out of order only when it is, naming the line."""
    events = _disorder_late(traffic) if disorder else _within_lateness(traffic)
    path = write_events(tmp_path / "stdin.jsonl", list(events))
    cfg = resolve_inputs(Config(inputs=("-",), block_bytes=SMALL_BLOCKS))
    src = EventSource(cfg, ["shard-0"])
    with open(path) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        part = src.build_part("read", src.parts[0].name, None)
        times = [ev[0] for ev in _drain(part)["events"]]
    assert times == sorted(times) and len(times) == len(events)
    said = _said(capfd.readouterr().err)
    assert len(said) == disorder
    if disorder:
        assert "<stdin> is not in time order (line " in said[0]
        assert int(said[0].split("(line ")[1].split()[0]) > int(len(events) * 0.6)


def test_pre_scans_begun_early_find_what_the_partitions_would(
    tmp_path: Path, traffic: list[dict[str, Any]]
) -> None:
    """``start_scans`` (begun by the command line before Bytewax loads; a local cluster's
    launcher hands the answers to its processes) finds, for every plain JSON Lines file,
    the answer its partition's own pre-scan finds; other inputs are left to theirs."""
    from dataclasses import replace

    from search_sessions.connectors.inputs import EARLY_SCANS, start_scans

    pytest.importorskip("search_sessions_native")
    ordered = write_events(tmp_path / "a.jsonl", list(traffic))
    late = write_events(tmp_path / "b.jsonl", [*traffic, dict(traffic[0], user="latecomer")])
    (tmp_path / "c.csv").write_text("type,user,time\nsearch,u1,2024-01-01T00:00:00Z\n")
    inputs = (str(ordered), str(late), str(tmp_path / "c.csv"))
    for processes in (1, 2):
        cfg = resolve_inputs(Config(inputs=inputs, processes=processes))
        jobs = start_scans(cfg)
        assert [i for i, _ in jobs] == [0, 1]
        found = {i: job.result(lambda: False) for i, job in jobs}
        src = EventSource(cfg, ["shard-0"])
        for i in (0, 1):
            part = src.build_part("read", src.parts[i].name, None)
            assert (found[i] is not None) == part.sorting == (i == 1)
            part.close()
    assert start_scans(replace(cfg, order="time")) == ()
    assert start_scans(replace(cfg, recovery_dir=str(tmp_path / "r"))) == ()
    many = tuple(str(write_events(tmp_path / f"m{i}.jsonl", traffic)) for i in range(10))
    assert len(start_scans(resolve_inputs(Config(inputs=many)))) == EARLY_SCANS
