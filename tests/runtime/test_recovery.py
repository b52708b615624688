"""Crash and resume: kill -9 real processes mid-run, rerun the same command, compare."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from search_sessions.config import Config
from search_sessions.runtime.recovery import prepare_recovery
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
    ("kills", "extra"),
    # (tests/crash kills many more layouts; these also check the resumed summary)
    [
        (("snapshot:2:group", "commit:6:group"), ()),
        (("commit:4:self@1",), ("--processes", "2")),
    ],
)
def test_kill_9_and_resume_equals_uninterrupted(
    log: Path, tmp_path: Path, kills: tuple[str, ...], extra: tuple[str, ...]
) -> None:
    """Killed at crash points of the job's own state (search_sessions.crashpoints: once
    an epoch is committed, inside a snapshot), never by a sleep."""
    clean = subprocess.run(
        command(log, tmp_path / "clean", tmp_path / "rec-clean", *extra),
        capture_output=True,
        timeout=300,
    )
    assert clean.returncode == 0, clean.stderr
    want = outputs(tmp_path / "clean")
    assert len(want["searches"]) > 10_000 and want["dead"]

    out = tmp_path / "crash"
    cmd = command(log, out, tmp_path / "rec-crash", *extra)
    fired = tmp_path / "crash.log"
    for i, kill in enumerate(kills):
        env = {**os.environ, "SEARCH_SESSIONS_CRASH": kill, "SEARCH_SESSIONS_CRASH_LOG": str(fired)}
        proc = subprocess.run(
            cmd, capture_output=True, timeout=300, env=env, start_new_session=True
        )
        assert proc.returncode != 0, "the run ended before its kill"
        assert len(fired.read_text().splitlines()) == i + 1, proc.stderr
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


def test_a_resumed_run_with_other_options_is_refused_naming_each(log: Path, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    first = subprocess.run(command(log, tmp_path / "a", rec), capture_output=True, timeout=300)
    assert first.returncode == 0, first.stderr
    want = outputs(tmp_path / "a")
    changed = subprocess.run(
        command(log, tmp_path / "a", rec, "--gap", "20m", "--dimension", "platform"),
        capture_output=True,
        timeout=60,
    )
    assert changed.returncode == 2
    err = changed.stderr.decode()
    assert "--gap: the job has 0:30:00, this run 0:20:00" in err
    assert '--dimension: the job has [], this run ["platform"]' in err
    assert "remove the directory or use another --recovery-dir" in err
    assert "panicked" not in err and "Traceback" not in err
    moved = subprocess.run(
        command(log, tmp_path / "b", rec), capture_output=True, timeout=60
    )  # another output path: the snapshots are keyed by it
    assert moved.returncode == 2 and b"--searches: the job has" in moved.stderr
    # Options that do not change the state are free; nothing was written twice.
    free = command(log, tmp_path / "a", rec, "--quiet", "--snapshot-interval", "2s", "--strict")
    again = subprocess.run(free, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert outputs(tmp_path / "a") == want


def test_a_directory_of_another_version_is_refused(log: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "part-0.sqlite3").write_bytes(b"")  # snapshots without a job: an older tool
    proc = subprocess.run(command(log, tmp_path / "o", old), capture_output=True, timeout=60)
    assert proc.returncode == 2 and b"made by an older search-sessions" in proc.stderr
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "job.json").write_text(json.dumps({"format": 1, "tool": "0.0.1", "job": {}}))
    proc = subprocess.run(command(log, tmp_path / "o", rec), capture_output=True, timeout=60)
    assert proc.returncode == 2 and b"is of format 1 (search-sessions 0.0.1)" in proc.stderr


@pytest.mark.parametrize("extra", [(), ("--processes", "2")])
def test_one_run_per_recovery_directory(log: Path, tmp_path: Path, extra: tuple[str, ...]) -> None:
    """A second run on a directory in use is refused at once and the first is unharmed;
    the lock of a killed run does not block the restart."""
    clean = subprocess.run(
        command(log, tmp_path / "clean", tmp_path / "rec-clean", *extra),
        capture_output=True,
        timeout=300,
    )
    assert clean.returncode == 0, clean.stderr
    rec, out = tmp_path / "rec", tmp_path / "out"
    cmd = command(log, out, rec, *extra)
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (rec / "lock-0").exists() or not (rec / "lock-0").read_text().strip():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.01)
    started = time.monotonic()
    second = subprocess.run(cmd, capture_output=True, timeout=60)
    assert time.monotonic() - started < 10
    assert second.returncode == 2
    holder = (rec / "lock-0").read_text().strip()
    assert f"is in use by process {holder}".encode() in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    assert outputs(out) == outputs(tmp_path / "clean")
    # Killed while holding the lock: the restart runs.
    out2, rec2 = tmp_path / "out2", tmp_path / "rec2"
    cmd2 = command(log, out2, rec2, *extra)
    crash = {**os.environ, "SEARCH_SESSIONS_CRASH": "commit:2:group"}
    victim = subprocess.run(cmd2, capture_output=True, env=crash, start_new_session=True)
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    again = subprocess.run(cmd2, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert outputs(out2) == outputs(tmp_path / "clean")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only), grown to 256 MiB by ``grow(path)``."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_a_full_disk_fails_clearly_and_the_rerun_resumes_exactly(
    log: Path, tmp_path: Path, small_disk: Path
) -> None:
    clean = subprocess.run(
        command(log, tmp_path / "clean", tmp_path / "rec-clean"), capture_output=True, timeout=300
    )
    assert clean.returncode == 0, clean.stderr
    cmd = command(log, small_disk, tmp_path / "rec")
    full = subprocess.run(cmd, capture_output=True, timeout=300)
    assert full.returncode == 1
    err = full.stderr.decode().strip().splitlines()
    assert err[-1].startswith(f"Error: could not write {small_disk}/"), err
    assert "No space left on device" in err[-1] and "Traceback" not in full.stderr.decode()
    remount = ["mount", "-o", "remount,size=256m", str(small_disk)]
    assert subprocess.run(remount).returncode == 0
    again = subprocess.run(cmd, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert outputs(small_disk) == outputs(tmp_path / "clean")


def _prepare(barrier: Any, directory: str) -> None:
    barrier.wait()
    prepare_recovery(Config(inputs=("events.jsonl",), recovery_dir=directory))


def test_processes_starting_together_create_one_store(tmp_path: Path) -> None:
    """The processes of a cluster may start at once on a new shared directory."""
    ctx = multiprocessing.get_context("spawn")
    for i in range(6):
        barrier = ctx.Barrier(3)
        directory = str(tmp_path / f"state{i}")
        procs = [ctx.Process(target=_prepare, args=(barrier, directory)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        assert len(list(Path(directory).glob("part-*.sqlite3"))) == 1


def test_a_killed_launcher_takes_its_cluster_with_it(log: Path, tmp_path: Path) -> None:
    """kill -9 of a local cluster's launcher only (by its process 0, once epoch 2 is
    committed, its inputs held until then): its processes die too, rather than run on,
    orphaned, holding the recovery directory's locks."""
    cmd = command(log, tmp_path / "out", tmp_path / "rec", "--processes", "2")
    fired = tmp_path / "crash.log"
    env = {
        **os.environ,
        "SEARCH_SESSIONS_CRASH": "commit:2:launcher@0",
        "SEARCH_SESSIONS_CRASH_LOG": str(fired),
    }
    launcher = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    assert launcher.wait(timeout=300) == -signal.SIGKILL
    assert "-> launcher" in fired.read_text()
    deadline = time.monotonic() + 5
    try:
        while left := [p for p in _group(launcher.pid) if _state(p) != "Z"]:
            assert time.monotonic() < deadline, f"the cluster outlived its launcher: {left}"
            time.sleep(0.05)
    finally:
        for pid in _group(launcher.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # The lock went with them: the same directory takes a new run at once.
    again = subprocess.run(cmd, capture_output=True, timeout=300)
    assert b"in use by process" not in again.stderr
    assert again.returncode == 0, again.stderr


def _group(pgid: int) -> list[int]:
    """The processes of process group ``pgid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def _state(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[1][:1]
    except (OSError, IndexError):
        return "Z"
