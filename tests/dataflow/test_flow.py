"""Whole dataflow runs: real files, 1 and 2 workers, 2 processes, split inputs, the oracle."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from search_sessions.demo import tutorial_lines
from search_sessions.simulate import SimSpec, write

from ..conftest import RunFlow, read_jsonl, write_events
from ..oracle import canon, oracle


@pytest.fixture(scope="module")
def noisy_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "events.jsonl"
    write(
        SimSpec(
            events=20_000, users=300, seed=11, days=0.5, disorder=30, duplicates=0.01, bad=0.003
        ),
        str(path),
    )
    return path


def split_by_user(src: Path, dest: Path, n: int) -> list[Path]:
    """Every user's lines in one of n files, in their original order."""
    paths = [dest / f"part-{i}.jsonl" for i in range(n)]
    files = [open(p, "wb") for p in paths]  # noqa: SIM115
    with open(src, "rb") as f:
        for i, line in enumerate(f):
            try:
                user = str(json.loads(line).get("user"))
            except Exception:
                user = str(i)
            files[sum(user.encode()) % n].write(line)
    for f in files:
        f.close()
    return paths


def split_contiguous(src: Path, dest: Path, n: int) -> list[Path]:
    lines = src.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // n)
    paths = []
    for i in range(n):
        p = dest / f"chunk-{i}.jsonl"
        p.write_bytes(b"".join(lines[i * size : (i + 1) * size]))
        paths.append(p)
    return paths


def test_tutorial_example(tmp_path: Path, run_flow: RunFlow) -> None:
    path = tmp_path / "tutorial.jsonl"
    path.write_bytes(b"\n".join(tutorial_lines()) + b"\n")
    out, summary = run_flow([path])
    by_query = {s["query"]: (s["ctr"], s["clicks"]) for s in out["searches"]}
    assert by_query == {"dogs": (1.0, 1), "cats": (1.0, 2), "fruit": (0.0, 0)}
    assert summary.counts["sessions"] == 2 and summary.counts["searches"] == 3


def test_matches_batch_oracle(noisy_log: Path, run_flow: RunFlow, each_core: str) -> None:
    out, summary = run_flow([noisy_log])
    want = oracle([str(noisy_log)])
    assert canon(out["searches"]) == canon(want.searches)
    assert canon(out["sessions"]) == canon(want.sessions)
    assert sorted(d["source"] for d in out["dead"]) == sorted(want.invalid)
    assert out["late"] == []
    c = summary.counts
    assert c["invalid"] == len(want.invalid) > 0
    assert c["duplicates"] == want.duplicates > 0
    assert c["lines"] == 20_000
    assert c["sessions"] == len(want.sessions) and c["searches"] == len(want.searches)


def _all(out: dict[str, list[dict[str, object]]]) -> dict[str, list[str]]:
    return {k: canon(v) for k, v in out.items() if k != "dead"}


def test_workers_processes_and_splits_agree(
    noisy_log: Path, tmp_path: Path, run_flow: RunFlow, each_core: str
) -> None:
    base, s1 = run_flow([noisy_log])
    two_workers, s2 = run_flow([noisy_log], workers=2)
    two_procs, s3 = run_flow([noisy_log], processes=2)
    by_user = split_by_user(noisy_log, tmp_path, 3)
    three_files, s4 = run_flow(by_user, workers=2)
    (tmp_path / "c").mkdir()
    chunks = split_contiguous(noisy_log, tmp_path / "c", 3)
    three_chunks, s5 = run_flow(chunks, processes=2)
    (tmp_path / "u2").mkdir()
    two_files = split_by_user(noisy_log, tmp_path / "u2", 2)  # read whole, one per process
    two_by_user, s6 = run_flow(two_files, processes=2)
    want = _all(base)
    assert _all(two_by_user) == want
    assert _all(two_workers) == want
    assert _all(two_procs) == want
    # One file read in lanes by two workers: dead letters keep the file's line numbers.
    assert base["dead"] and canon(two_workers["dead"]) == canon(base["dead"])
    assert canon(two_procs["dead"]) == canon(base["dead"])
    assert _all(three_files) == want
    assert _all(three_chunks) == want
    for s in (s2, s3, s4, s5, s6):
        for k in (
            "events",
            "invalid",
            "duplicates",
            "late",
            "sessions",
            "searches",
            "clicked_searches",
        ):
            assert s.counts[k] == s1.counts[k], k


@pytest.mark.parametrize("fork", [True, False])
def test_two_processes_forked_or_started_fresh_agree(
    noisy_log: Path,
    run_flow: RunFlow,
    monkeypatch: pytest.MonkeyPatch,
    fork: bool,
    request: pytest.FixtureRequest,
) -> None:
    """Cluster processes are forked, or started as new interpreters when this process
    runs other threads; both give the one-process answer."""
    import search_sessions.runtime.cluster as ex

    if not ex.can_fork():
        # Earlier tests left native threads in this process (pyarrow's and DuckDB's
        # pools), so forking is off here: run this test in a fresh interpreter.
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
            cwd=request.config.rootpath,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout[-3000:]
        return
    forked: list[int] = []
    real_fork = ex._fork

    def counting_fork(*args: Any) -> Any:
        forked.append(1)
        return real_fork(*args)

    monkeypatch.setattr(ex, "_fork", counting_fork)
    monkeypatch.setattr(ex, "can_fork", lambda: fork)
    base, _ = run_flow([noisy_log])
    two, _ = run_flow([noisy_log], processes=2)
    # (The noisy log is out of order: streamed on the guess that it was in order, the
    # cluster finds it is not and starts again with it sorted, forking twice each time.)
    assert len(forked) == (4 if fork else 0)
    assert _all(two) == _all(base)


def test_gzip_and_directory_inputs(noisy_log: Path, tmp_path: Path, run_flow: RunFlow) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    parts = split_by_user(noisy_log, d, 2)
    with open(parts[0], "rb") as f, gzip.open(d / "part-0.jsonl.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    parts[0].unlink()
    base, _ = run_flow([noisy_log])
    from_dir, _ = run_flow([d])
    assert _all(from_dir) == _all(base)


def test_late_events_go_to_late_output_with_source(tmp_path: Path, run_flow: RunFlow) -> None:
    path = write_events(
        tmp_path / "late.jsonl",
        [
            {"type": "search", "user": "a", "time": "2024-01-01T00:00:00Z", "query": "q"},
            {"type": "search", "user": "b", "time": "2024-01-01T01:00:00Z", "query": "r"},
            {"type": "click", "user": "a", "time": "2024-01-01T00:00:30Z", "item": "x"},
        ],
    )
    # A stream's order (under the default auto, this file would be sorted first).
    out, summary = run_flow([path], order="time")
    assert summary.counts["late"] == 1
    (late,) = out["late"]
    assert late["source"] == f"{path}:3"
    assert late["record"] == {
        "type": "click",
        "user": "a",
        "time": "2024-01-01T00:00:30Z",
        "item": "x",
    }
    assert "watermark 2024-01-01T00:59:00Z" in late["reason"]
    a = next(s for s in out["searches"] if s["user"] == "a")
    assert a["clicks"] == 0, "a late event is never merged into a session"


def test_dead_letters_keep_the_original_text(tmp_path: Path, run_flow: RunFlow) -> None:
    path = write_events(
        tmp_path / "bad.jsonl",
        [
            {"type": "search", "user": "a", "time": 0, "query": "q"},
            "",
            "{oops",
            b'{"type": "search", "user": "a", "time": 1, "query": "\xff"}',
            {"type": "zap", "user": "a", "time": 2},
        ],
    )
    out, summary = run_flow([path])
    got = {d["source"]: d for d in out["dead"]}
    assert set(got) == {f"{path}:3", f"{path}:4", f"{path}:5"}
    assert got[f"{path}:3"]["record"] == "{oops"
    assert got[f"{path}:4"]["record"].endswith('"query": "\\xff"}')
    assert "unknown event type" in got[f"{path}:5"]["reason"]
    assert summary.counts["invalid"] == 3 and summary.counts["searches"] == 1


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "search_sessions.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.parametrize("extra", [[], ["--processes", "2"]])
def test_strict_stops_at_first_invalid_record(tmp_path: Path, extra: list[str]) -> None:
    path = write_events(
        tmp_path / "bad.jsonl", [{"type": "search", "user": "a", "time": 0, "query": "q"}, "{oops"]
    )
    proc = run_cli("run", str(path), "--strict", "--searches", str(tmp_path / "s.jsonl"), *extra)
    assert proc.returncode == 1
    assert f"invalid record at {path}:2: not JSON" in proc.stderr.decode()


def test_stdin_to_stdout() -> None:
    data = b"\n".join(tutorial_lines()) + b"\n"
    proc = run_cli("run", "-", stdin=data)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert sorted((r["query"], r["ctr"]) for r in rows) == [
        ("cats", 1.0),
        ("dogs", 1.0),
        ("fruit", 0.0),
    ]
    assert "searches 3" in proc.stderr.decode()


def test_json_array_file(tmp_path: Path, run_flow: RunFlow) -> None:
    path = tmp_path / "events.json"
    records = [json.loads(x) for x in tutorial_lines()]
    records.insert(3, {"type": "search", "user": 1})
    path.write_text(json.dumps(records, indent=2))
    out, _summary = run_flow([path])
    assert sorted((s["query"], s["ctr"]) for s in out["searches"]) == [
        ("cats", 1.0),
        ("dogs", 1.0),
        ("fruit", 0.0),
    ]
    (dead,) = out["dead"]
    assert dead["source"] == f"{path}:4" and "`time`" in dead["reason"]


def test_alignment_holds_back_partitions_far_ahead() -> None:
    from search_sessions.connectors.base import Alignment
    from search_sessions.core.time import NEVER

    a = Alignment(horizon_us=100)
    a.join(0, NEVER)
    a.join(1, NEVER)
    assert not a.should_wait(1, NEVER), "nothing read yet: read"
    assert a.should_wait(1, 1_000), "partition 0 has not started"
    assert not a.should_wait(0, 950)
    assert not a.should_wait(1, 1_000), "within the horizon"
    assert a.should_wait(1, 1_200)
    a.leave(0)
    assert not a.should_wait(1, 1_200), "a finished file holds nothing back"


def test_flow_runs_under_bytewax_run(noisy_log: Path, tmp_path: Path, run_flow: RunFlow) -> None:
    want, _ = run_flow([noisy_log])
    job = tmp_path / "job.json"
    out = tmp_path / "bw"
    out.mkdir()
    printed = run_cli(
        "run",
        str(noisy_log),
        "--searches",
        str(out / "s.jsonl"),
        "--sessions",
        str(out / "ss.jsonl"),
        "--workers",
        "2",
        "--print-config",
    )
    assert printed.returncode == 0
    job.write_bytes(printed.stdout)
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "search_sessions.dataflow.flow:flow", "-w", "2"],
        env={**os.environ, "SEARCH_SESSIONS_CONFIG": str(job)},
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(x) for x in (out / "s.jsonl").read_bytes().splitlines()]
    assert canon(got) == canon(want["searches"])


def _last_rows(path: Path) -> dict[str, dict[str, object]]:
    """The last rollup row for each key (what an upserting sink keeps)."""
    rows: dict[str, dict[str, object]] = {}
    for rec in read_jsonl(path):
        key = [rec["level"], rec["window"], rec["window_start"], rec.get("query")]
        key += [rec.get("dimension"), json.dumps(rec.get("value"))]
        rows[json.dumps(key)] = rec
    return rows


def test_conversions_typeahead_and_dimensions_agree_everywhere(
    noisy_log: Path, tmp_path: Path, run_flow: RunFlow
) -> None:
    """The issue #13 rules through the real flow: the oracle's answer for 1 and 2 workers
    and 2 processes, and dimension rollups equal to aggregating the search records."""
    opts: dict[str, Any] = {
        "dimensions": ("platform", "variant"),
        "collapse_typeahead": timedelta(seconds=2),
        "currency": "USD",
        "rollup_windows": (("1h", 3600),),
    }
    want = oracle([str(noisy_log)], typeahead=2, dimensions=opts["dimensions"], currency="USD")
    assert any(s["conversions"] for s in want.sessions)
    assert any(s["keystrokes"] > 1 for s in want.searches)
    assert any(s["dimensions"]["platform"] is not None for s in want.searches)
    results = []
    for i, parallel in enumerate([{}, {"workers": 2}, {"processes": 2}]):
        rollups = tmp_path / f"rollups{i}.jsonl"
        out, _ = run_flow([noisy_log], rollups=str(rollups), **opts, **parallel)
        assert canon(out["searches"]) == canon(want.searches), parallel
        assert canon(out["sessions"]) == canon(want.sessions), parallel
        results.append(_last_rows(rollups))
    assert results[0] == results[1] == results[2]
    dims = [r for r in results[0].values() if r["level"] == "dimension"]
    by_value: dict[tuple[object, ...], list[dict[str, Any]]] = {}
    for s in want.searches:
        hour = s["time"][:13]
        for name, value in s["dimensions"].items():
            by_value.setdefault((hour, name, json.dumps(value)), []).append(s)
    assert len(dims) == len(by_value)
    for row in dims:
        group = by_value[
            (str(row["window_start"])[:13], row["dimension"], json.dumps(row["value"]))
        ]
        assert row["searches"] == len(group)
        assert row["conversion_rate"] == sum(s["converted"] for s in group) / len(group)
        assert row["ctr"] == sum(s["clicked"] for s in group) / len(group)


def test_sessions_starting_at_one_instant_keep_their_ids_whatever_the_batches(
    each_core: str, tmp_path: Path, run_flow: RunFlow
) -> None:
    """Two sessions of one user start at one instant (an app_close alone, then a click at
    that instant): their ids differ, and are the same in batches of two lines, in one
    batch and on two workers (they were both the ordinal 0 when the first session left
    in an earlier batch than the second)."""
    t0 = 1_704_067_200
    events: list[dict[str, Any]] = [
        {"type": "app_close", "user": "u", "time": t0},
        {"type": "click", "user": "u", "time": t0, "item": "x"},
    ]
    events += [
        {"type": "search", "user": f"v{k}", "time": t0 + 60 * k, "query": "q"} for k in range(1, 80)
    ]
    path = write_events(tmp_path / "events.jsonl", events)
    ids = []
    for kw in ({"block_bytes": 120}, {}, {"workers": 2, "block_bytes": 120}):
        out, _ = run_flow([path], lateness=0, **kw)
        ids.append(sorted(s["session_id"] for s in out["sessions"] if s["user"] == "u"))
    assert len(set(ids[0])) == 2
    assert ids[0] == ids[1] == ids[2]
    want = oracle([str(path)], lateness=0)
    assert ids[0] == sorted(s["session_id"] for s in want.sessions if s["user"] == "u")
