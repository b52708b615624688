"""Clean output streams: records alone on standard output, Bytewax's messages as one
clear line each on standard error (real processes, real pipes)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_sessions.runtime.process import free_ports
from search_sessions.runtime.streams import rewrite
from search_sessions.simulate import SimSpec, write

CLI = [sys.executable, "-m", "search_sessions.cli", "run"]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("streams") / "events.jsonl"
    write(SimSpec(events=5_000, users=100, seed=4), str(path))
    return path


def test_rewrite_folds_panics_and_retries() -> None:
    got = list(
        rewrite(
            iter(
                [
                    "worker 3:\terror connecting to worker 0: Connection refused; retrying",
                    "thread '<unnamed>' panicked at src/inputs.rs:1:2:",
                    "Box<dyn Any>",
                    "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
                    "thread 'x' panicked at src/a.rs:3:4:",
                    "first part",
                    "second part",
                ]
            )
        )
    )
    assert got == [
        "search-sessions: worker 3 is waiting for worker 0 (Connection refused); retrying",
        "search-sessions: Bytewax failed (at src/a.rs:3:4): first part second part",
    ]


def test_a_cluster_forming_writes_only_records_to_stdout(log: Path, tmp_path: Path) -> None:
    """Process 1 starts first and retries until process 0 listens: its retries go to
    standard error as our own lines; standard output (searches) holds only records."""
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    one = subprocess.Popen(
        [*CLI, str(log), "--process-id", "1", "--addresses", addresses, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.5)  # long enough for a connection attempt to fail
    zero = subprocess.run(
        [*CLI, str(log), "--process-id", "0", "--addresses", addresses, "--quiet"],
        capture_output=True,
        timeout=120,
    )
    out1, err1 = one.communicate(timeout=120)
    assert zero.returncode == 0 and one.returncode == 0, (zero.stderr, err1)
    records = (zero.stdout + out1).decode().splitlines()
    assert records and all(json.loads(line)["search_id"] for line in records)
    errors = (zero.stderr + err1).decode().splitlines()
    assert any(e.startswith("search-sessions: worker 1 is waiting for worker 0") for e in errors)
    assert not any("error connecting" in e or "panicked" in e for e in errors), errors


def test_a_failed_run_says_so_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "search"}\n')
    for extra in ([], ["--processes", "2"]):
        proc = subprocess.run([*CLI, str(bad), "--strict", *extra], capture_output=True, timeout=60)
        assert proc.returncode == 1 and proc.stdout == b""
        lines = proc.stderr.decode().strip().splitlines()
        assert lines == [
            f"Error: invalid record at {bad}:1: Object missing required field `user`"
        ], lines


def test_a_member_whose_peers_never_come_gives_up(log: Path) -> None:
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    args = [*CLI, str(log), "--process-id", "1", "--addresses", addresses, "--quiet"]
    started = time.monotonic()
    proc = subprocess.run([*args, "--join-timeout", "2s"], capture_output=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == b""
    assert 2 <= time.monotonic() - started < 30
    # Bytewax's retry lines pass through the stream filter, which may still be writing
    # one after the error line: the error is the one line that says so, not the last.
    errors = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("Error: process 1: the other processes of the cluster (127.0.0.1:")
    assert "did not all connect within 2s" in errors[0]


def test_a_local_cluster_forms_without_retries(log: Path, tmp_path: Path) -> None:
    """Each process dials only processes that already listen (process i dials 0 to
    i - 1), so Bytewax never has to retry and back off, with any number of processes."""
    out = tmp_path / "searches.jsonl"
    proc = subprocess.run(
        [*CLI, str(log), "--searches", str(out), "--processes", "4"],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"retrying" not in proc.stderr, proc.stderr
