"""Crash and resume: kill -9 real processes mid-run, rerun the same command, compare."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_sessions.simulate import SimSpec, write

OUTPUTS = ("searches", "sessions", "dead", "late")


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "events.jsonl"
    write(
        SimSpec(events=150_000, users=2_000, seed=5, disorder=20, duplicates=0.01, bad=0.002),
        str(path),
    )
    return path


def command(log: Path, out: Path, rec: Path, *extra: str) -> list[str]:
    out.mkdir(exist_ok=True)
    return [
        sys.executable,
        "-m",
        "search_sessions.cli",
        "run",
        str(log),
        "--searches",
        str(out / "searches.jsonl"),
        "--sessions",
        str(out / "sessions.jsonl"),
        "--dead-letter",
        str(out / "dead.jsonl"),
        "--late",
        str(out / "late.jsonl"),
        "--rollup",
        "1h",
        "--rollups",
        str(out / "rollups.jsonl"),
        "--recovery-dir",
        str(rec),
        "--snapshot-interval",
        "100ms",
        *extra,
    ]


def outputs(out: Path) -> dict[str, list[str]]:
    got = {}
    for name in OUTPUTS:
        data = (out / f"{name}.jsonl").read_bytes()
        assert not data or data.endswith(b"\n"), f"{name}: half-written last line"
        lines = data.decode().splitlines()
        for line in lines:
            json.loads(line)
        got[name] = sorted(lines)
    # Rollup rows are re-emitted as windows fill (how often depends on batching):
    # the last row per key is the result.
    last: dict[tuple[object, ...], str] = {}
    for line in (out / "rollups.jsonl").read_text().splitlines():
        r = json.loads(line)
        last[(r["level"], r["window_start"], r.get("query"))] = line
    got["rollups"] = sorted(last.values())
    return got


def summary_line(stderr: bytes) -> str:
    return [ln for ln in stderr.decode().splitlines() if ln.startswith("events read")][-1]


@pytest.mark.parametrize(
    ("kill_at", "extra"),
    [((0.3,), ()), ((0.15, 0.6), ()), ((0.4,), ("--processes", "2"))],
)
def test_kill_9_and_resume_equals_uninterrupted(
    log: Path, tmp_path: Path, kill_at: tuple[float, ...], extra: tuple[str, ...]
) -> None:
    """Killed when the searches output reaches each fraction of its final size."""
    clean = subprocess.run(
        command(log, tmp_path / "clean", tmp_path / "rec-clean", *extra),
        capture_output=True,
        timeout=300,
    )
    assert clean.returncode == 0, clean.stderr
    want = outputs(tmp_path / "clean")
    assert len(want["searches"]) > 10_000 and want["dead"]
    final_size = (tmp_path / "clean" / "searches.jsonl").stat().st_size

    out = tmp_path / "crash"
    cmd = command(log, out, tmp_path / "rec-crash", *extra)
    kills = 0
    for fraction in kill_at:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        searches = out / "searches.jsonl"
        while proc.poll() is None:
            if searches.exists() and searches.stat().st_size >= fraction * final_size:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        proc.wait()
    assert kills == len(kill_at), "the run ended before it could be killed"
    final = subprocess.run(cmd, capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert outputs(out) == want
    assert (
        summary_line(final.stderr).split("; elapsed")[0]
        == summary_line(clean.stderr).split("; elapsed")[0]
    )


def test_rerun_of_a_finished_run_changes_nothing(log: Path, tmp_path: Path) -> None:
    cmd = command(log, tmp_path / "out", tmp_path / "rec")
    first = subprocess.run(cmd, capture_output=True, timeout=300)
    assert first.returncode == 0, first.stderr
    before = outputs(tmp_path / "out")
    again = subprocess.run(cmd, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert outputs(tmp_path / "out") == before


@pytest.mark.parametrize(
    ("extra", "signum", "to_group"),
    [
        ((), signal.SIGTERM, False),
        (("--processes", "2"), signal.SIGTERM, False),
        # Ctrl-C in a terminal: every process hears it, and the parent forwards it too.
        (("--processes", "2"), signal.SIGINT, True),
    ],
)
def test_a_signal_stops_cleanly_and_resumes(
    log: Path, tmp_path: Path, extra: tuple[str, ...], signum: int, to_group: bool
) -> None:
    clean = subprocess.run(
        command(log, tmp_path / "clean", tmp_path / "rec-clean", *extra), capture_output=True
    )
    assert clean.returncode == 0, clean.stderr
    want = outputs(tmp_path / "clean")
    final_size = (tmp_path / "clean" / "searches.jsonl").stat().st_size

    out = tmp_path / "stop"
    cmd = command(log, out, tmp_path / "rec-stop", *extra)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    searches = out / "searches.jsonl"
    while proc.poll() is None:
        if searches.exists() and searches.stat().st_size >= 0.3 * final_size:
            if to_group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert b"stopped by a signal" in err
    partial = outputs(out)
    assert set(partial["searches"]) <= set(want["searches"])
    assert len(partial["searches"]) < len(want["searches"])
    final = subprocess.run(cmd, capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert outputs(out) == want
