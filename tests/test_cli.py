"""The command line, through click's CliRunner."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from search_sessions.cli import main
from search_sessions.config import parse_duration

COMMANDS = sorted(main.commands)


def test_there_are_the_documented_commands() -> None:
    assert set(COMMANDS) >= {"run", "demo", "simulate"}


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "search-sessions" in result.output


def test_demo_prints_the_tutorial_ctr() -> None:
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    searches = [ln for ln in lines if ln.startswith("search ")]
    assert [("dogs" in s, "ctr=1.0" in s) for s in searches[:2]] == [(True, True), (False, True)]
    assert "cats" in searches[1] and "fruit" in searches[2] and "ctr=0.0" in searches[2]
    assert sum(ln.startswith("session ") for ln in lines) == 2


def test_simulate_is_deterministic_and_realistic(tmp_path: Path) -> None:
    runner = CliRunner()
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    for path, seed in ((a, "3"), (b, "3"), (c, "4")):
        r = runner.invoke(
            main,
            [
                "simulate",
                "--events",
                "20000",
                "--users",
                "200",
                "--seed",
                seed,
                "--output",
                str(path),
            ],
        )
        assert r.exit_code == 0, r.output
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    recs = [json.loads(x) for x in a.read_bytes().splitlines()]
    assert len(recs) == 20_000
    kinds = Counter(r["type"] for r in recs)
    assert set(kinds) == {"app_open", "search", "results", "click", "app_close"} | {
        "conversion",
        "purchase",
        "add_to_cart",
    }
    queries = Counter(r["query"] for r in recs if r["type"] == "search")
    top = queries.most_common(1)[0][1]
    assert top > 20 * sorted(queries.values())[len(queries) // 2], "Zipf: the head dominates"
    results = [r["items"] for r in recs if r["type"] == "results"]
    assert max(map(len, results)) == 10 and any(not x for x in results)
    times = [r["time"] for r in recs]
    assert times == sorted(times), "no disorder asked for"


def test_simulate_noise_options(tmp_path: Path) -> None:
    out = tmp_path / "noisy.jsonl"
    r = CliRunner().invoke(
        main,
        [
            "simulate",
            "--events",
            "5000",
            "--users",
            "50",
            "--bad",
            "0.05",
            "--duplicates",
            "0.05",
            "--disorder",
            "20",
            "--output",
            str(out),
        ],
    )
    assert r.exit_code == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) == 5000
    assert len(lines) - len(set(lines)) > 100
    bad = 0
    for line in lines:
        try:
            json.loads(line)["user"]
        except Exception:
            bad += 1
    assert bad > 50


def test_run_writes_outputs_and_summary(tmp_path: Path) -> None:
    runner = CliRunner()
    events = tmp_path / "e.jsonl"
    runner.invoke(
        main,
        ["simulate", "--events", "3000", "--users", "30", "--bad", "0.01", "--output", str(events)],
    )
    out = tmp_path / "out"
    r = runner.invoke(
        main,
        [
            "run",
            str(events),
            "--searches",
            str(out / "s.jsonl"),
            "--sessions",
            str(out / "ss.jsonl"),
            "--dead-letter",
            str(out / "d.jsonl"),
            "--late",
            str(out / "l.jsonl"),
            "--gap",
            "20m",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "events read 3,000" in r.stderr and "events/s" in r.stderr
    n_dead = len((out / "d.jsonl").read_bytes().splitlines())
    assert n_dead > 0 and f"invalid {n_dead}," in r.stderr
    assert (out / "l.jsonl").read_bytes() == b""


def test_run_rejects_missing_input_and_bad_duration(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(tmp_path / "nope.jsonl")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = runner.invoke(main, ["run", "-", "--gap", "soon"])
    assert r.exit_code == 2 and "not a duration" in r.output
    # (Longer than times and durations added in 64-bit microseconds can hold.)
    for big in ("10000001d", "1000000000d", "99999999999999999999999w"):
        r = runner.invoke(main, ["run", "-", "--lateness", big])
        assert r.exit_code == 2 and "too long: at most 10000000d" in r.output, r.output


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("1d", 86400), ("45", 45), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_standard_input_with_a_recovery_dir_is_refused_in_one_line(tmp_path: Path) -> None:
    """What was read from a pipe is gone: such a run could never resume."""
    rec = tmp_path / "rec"
    args = ["run", "-", "--recovery-dir", str(rec), "--searches", str(tmp_path / "s.jsonl")]
    result = CliRunner().invoke(main, args, input='{"type": "app_open"}\n')
    assert result.exit_code == 2
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert errors == [
        "Error: --recovery-dir cannot resume standard input (what was read is gone); "
        "write it to a file first (or use Kafka) and run on that"
    ]
    assert not rec.exists()


LINE = b'{"type": "search", "user": "u", "time": "2024-01-01T00:00:00Z", "query": "q"}\n'


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--searches", "OUT/adir"], "that is a directory"),
        (["--searches", "OUT/adir.parquet"], "that is a directory"),
        (["--sessions", "IN"], "is also an input: it would be emptied"),
        (["--searches", "OUT/a.jsonl", "--late", "OUT/a.jsonl"], "--searches is written there"),
        (["--searches", "sqlite:///OUT/a.db", "--late", "OUT/a.db"], "--searches is written there"),
        (["--dead-letter", ""], "--dead-letter needs a path"),
        (["--searches", "sqlite:///"], "give the database's path"),
        (["--searches", "sqlite://x.db"], "not an address"),
        (["--searches", "OUT/afile/x.jsonl"], "cannot make its directory"),
        (["--recovery-dir", "OUT/afile"], "that is a file"),
    ],
)
def test_outputs_that_cannot_be_are_refused_before_anything_is_emptied(
    tmp_path: Path, args: list[str], error: str
) -> None:
    """(A Parquet output replaced a directory of that name, contents and all; an output
    naming an input emptied it before it was read.)"""
    out = tmp_path / "out"
    (out / "adir").mkdir(parents=True)
    (out / "adir.parquet").mkdir()
    (out / "adir" / "keep.txt").write_text("keep")
    (out / "adir.parquet" / "keep.txt").write_text("keep")
    (out / "afile").write_text("x")
    src = tmp_path / "in.jsonl"
    src.write_bytes(LINE)
    args = [a.replace("OUT", str(out)).replace("IN", str(src)) for a in args]
    r = CliRunner().invoke(main, ["run", str(src), "--quiet", *args])
    assert r.exit_code == 2 and error in r.output, r.output
    assert "Traceback" not in r.output
    assert src.read_bytes() == LINE
    assert (out / "adir.parquet" / "keep.txt").read_text() == "keep"


def test_none_is_no_output_for_every_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_bytes(LINE)
    flags = ["--searches", "--sessions", "--dead-letter", "--late"]
    r = CliRunner().invoke(
        main, ["run", "in.jsonl", "--quiet", *(x for f in flags for x in (f, "none"))]
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("order", ["auto", "time"])
@pytest.mark.parametrize("keep", [10, 0.5])
def test_a_broken_gzip_input_is_one_line_naming_it(tmp_path: Path, order: str, keep: float) -> None:
    """(A run of the command as users start it: Bytewax's own report of a failed step is
    filtered there. Cut after its header, the file breaks where the run starts looking at
    it; cut in half, once the run is under way.)"""
    import gzip
    import subprocess
    import sys

    whole = gzip.compress(LINE * 2000)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: int(keep if keep >= 1 else len(whole) * keep)])
    args = ["run", str(cut), "--quiet", "--searches", "none", "--order", order]
    cmd = [sys.executable, "-m", "search_sessions", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"Error: {cut}: not a whole gzip file (Compressed file ended before the "
        "end-of-stream marker was reached)"
    )


def test_parquet_from_standard_input_is_refused() -> None:
    r = CliRunner().invoke(main, ["run", "-", "--format", "parquet"], input=b"PAR1")
    assert r.exit_code == 2 and "standard input cannot be read as Parquet" in r.output


def _three_users(path: Path) -> Path:
    """Searches of three users, a click, and a line that is not JSON (a dead letter)."""
    lines = [
        json.dumps(
            {"type": "search", "user": f"u{u}", "time": f"2024-01-01T00:0{u}:00Z", "query": "q"}
        )
        for u in range(3)
    ]
    lines.insert(
        1,
        json.dumps(
            {"type": "click", "user": "u0", "time": "2024-01-01T00:00:05Z", "item": "a", "rank": 1}
        ),
    )
    path.write_text("\n".join([*lines, "not json"]) + "\n")
    return path


@pytest.mark.parametrize("extra", [[], ["--workers", "2"], ["--recovery-dir", "REC"]])
def test_outputs_may_be_streams_such_as_dev_stderr(tmp_path: Path, extra: list[str]) -> None:
    """An output path that is a stream (``/dev/stdout``, ``/dev/stderr``, a named pipe)
    is written as standard output is: it has no position to snapshot (a run with
    snapshots stopped on "Illegal seek") and several outputs may share it."""
    import subprocess
    import sys

    log = _three_users(tmp_path / "log.jsonl")
    extra = [str(tmp_path / "rec") if a == "REC" else a for a in extra]
    args = ["run", str(log), "--quiet", "--searches", "/dev/stdout", "--sessions", "/dev/stdout"]
    args += ["--dead-letter", "/dev/stderr", *extra]
    cmd = [sys.executable, "-m", "search_sessions", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len([x for x in records if "search_id" in x]) == 3
    assert len([x for x in records if "search_id" not in x]) == 3  # sessions
    assert [json.loads(line)["record"] for line in r.stderr.splitlines()] == ["not json"]


def test_an_output_may_be_a_named_pipe_written_by_several_processes(tmp_path: Path) -> None:
    """A named pipe is opened once, by the one writer (not emptied first, which would end
    its reader's input), and gets every line whole."""
    import os
    import subprocess
    import sys
    import threading

    log = _three_users(tmp_path / "log.jsonl")
    fifo = tmp_path / "searches.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    args = ["run", str(log), "--quiet", "--searches", str(fifo), "--processes", "2"]
    r = subprocess.run([sys.executable, "-m", "search_sessions", *args], timeout=120)
    assert r.returncode == 0
    reader.join(timeout=30)
    plain = tmp_path / "searches.jsonl"
    args = ["run", str(log), "--quiet", "--searches", str(plain)]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert sorted(got[0].splitlines()) == sorted(plain.read_bytes().splitlines())


def test_dev_stdout_redirected_to_a_file_is_standard_output_not_that_file(tmp_path: Path) -> None:
    """``/dev/stdout`` is the command's standard output even when the shell sent it to a
    file: the file is neither emptied first nor written over from its start."""
    import subprocess
    import sys

    log = _three_users(tmp_path / "log.jsonl")
    out = tmp_path / "out.txt"
    out.write_text("kept\n")
    args = ["run", str(log), "--quiet", "--searches", "/dev/stdout", "--sessions", "/dev/stdout"]
    cmd = [sys.executable, "-m", "search_sessions", *args, "--dead-letter", "none"]
    with out.open("a") as stdout:
        assert subprocess.run(cmd, stdout=stdout, timeout=120).returncode == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "kept" and len(lines) == 7
