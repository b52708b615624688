"""``--order auto`` streaming a JSON Lines file on the guess that it is in order: where a
run can start again (file outputs, no recovery directory), it reads no input twice to
pre-scan it; an input found out of order stops the run (every process of a local
cluster), which starts again afresh with it sorted. Either way the outputs, the summary
and what is said are those of the pre-scan's decision."""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_sessions import Summary, run
from search_sessions.config import Config
from search_sessions.connectors.base import LinePartition
from search_sessions.connectors.inputs import guesses_order

T0 = 1_704_067_200
OUTPUTS = ("searches", "sessions", "dead_letter", "late")


def _events(n: int, seed: int) -> list[bytes]:
    """``n`` lines of search, results and click events of a few users, in time order."""
    rnd = random.Random(seed)
    t = T0
    lines: list[bytes] = []
    while len(lines) < n:
        t += rnd.choice([1, 5, 30, 200, 2500])
        user = f"u{rnd.randrange(6)}"
        items = [f"d{rnd.randrange(9)}" for _ in range(3)]
        evs: list[dict[str, Any]] = [
            {"type": "search", "user": user, "time": t, "query": f"q{rnd.randrange(5)}"},
            {"type": "results", "user": user, "time": t + 1, "items": items},
        ]
        if rnd.random() < 0.5:
            evs.append({"type": "click", "user": user, "time": t + 2, "item": items[0]})
        lines += [json.dumps(ev).encode() for ev in evs]
    return lines[:n]


def _run(inputs: Path | list[Path], out: Path, **kw: Any) -> tuple[dict[str, bytes], Summary]:
    out.mkdir()
    paths = inputs if isinstance(inputs, list) else [inputs]
    cfg = Config(
        inputs=tuple(map(str, paths)),
        **{name: str(out / f"{name}.jsonl") for name in OUTPUTS},
        **kw,
    )
    summary = run(cfg)
    return {name: (out / f"{name}.jsonl").read_bytes() for name in OUTPUTS}, summary


def _guessed_and_scanned(
    inputs: Path | list[Path], tmp: Path, capfd: pytest.CaptureFixture[str], **kw: Any
) -> dict[bool | None, tuple[dict[str, list[bytes]], dict[str, int], str]]:
    """The run guessing (``None``: where it can) and the run pre-scanning (``False``):
    each one's records as sorted lines (several workers write them in any order), its
    counts and what it said."""
    got = {}
    for guess in (None, False):
        capfd.readouterr()
        outs, summary = _run(inputs, tmp / f"out-{guess}", guess_order=guess, **kw)
        records = {name: sorted(data.splitlines()) for name, data in outs.items()}
        got[guess] = (records, summary.counts, capfd.readouterr().err)
    return got


def _both(
    lines: list[bytes], tmp: Path, capfd: pytest.CaptureFixture[str], **kw: Any
) -> tuple[Any, ...]:
    """The run guessing and the run pre-scanning, each with what it said."""
    path = tmp / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    capfd.readouterr()
    guessed = _run(path, tmp / "guessed", **kw)
    said_guessed = capfd.readouterr().err
    scanned = _run(path, tmp / "scanned", guess_order=False, **kw)
    return guessed, said_guessed, scanned, capfd.readouterr().err


@pytest.fixture
def guesses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many blocks partitions checked while streaming on the guess."""
    seen: list[int] = []
    real = LinePartition._check_guess

    def counted(self: LinePartition, decoded: Any, lines: Any) -> bool:
        seen.append(1)
        return real(self, decoded, lines)

    monkeypatch.setattr(LinePartition, "_check_guess", counted)
    return seen


def _counts(summary: Summary) -> dict[str, int]:
    return summary.counts


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(20, 400),
    seed=st.integers(0, 10_000),
    moves=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 60)), max_size=3),
    bad=st.lists(
        st.tuples(
            st.floats(0, 1),
            st.sampled_from(
                [
                    b"",
                    b"not json",
                    b'{"type": "bogus", "user": "x", "time": %d}' % (T0 + 10**6),
                    b'{"type": "bogus", "user": "x", "time": %d}' % (T0 - 10**6),
                    b'{"type": "search", "time": %d}' % (T0 + 10**7),
                    b'{"type": "click", "user": "y", "time": "2024-01-01T00:00:00+02:00"}',
                ]
            ),
        ),
        max_size=4,
    ),
    block=st.sampled_from([256, 2048, 1 << 19]),
    lateness=st.sampled_from([0, 60, 3600]),
)
def test_guessing_decides_as_the_pre_scan(
    each_core: str,
    capfd: pytest.CaptureFixture[str],
    guesses: list[int],
    n: int,
    seed: int,
    moves: list[tuple[float, int]],
    bad: list[tuple[float, bytes]],
    block: int,
    lateness: int,
) -> None:
    """Streams in order, out of order at any line (events moved back, bad lines with
    times far off, which the pre-scan counts too), in blocks of any size: the same bytes
    in every output, the same summary and the same line said as a pre-scan's run."""
    lines = _events(n, seed)
    for where, back in moves:
        i = int(where * (len(lines) - 1))
        lines.insert(max(0, i - back), lines.pop(i))
    for where, line in bad:
        lines.insert(int(where * len(lines)), line)
    kw = {"block_bytes": block, "lateness": timedelta(seconds=lateness)}
    with tempfile.TemporaryDirectory() as tmp:
        guesses.clear()
        guessed, said_guessed, scanned, said_scanned = _both(lines, Path(tmp), capfd, **kw)
    assert guesses  # (the first run streamed on the guess; the second never did)
    assert guessed[0] == scanned[0]
    assert _counts(guessed[1]) == _counts(scanned[1])
    assert said_guessed == said_scanned


def test_out_of_order_at_the_end_starts_again_sorted(
    each_core: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], guesses: list[int]
) -> None:
    """An input in order but for its last line is streamed to that line, then the run
    starts again with it sorted: nothing of the first run is left in the outputs or the
    summary, and one line says it was sorted, naming that line."""
    lines = _events(3000, 5)
    lines.append(lines[100])  # hours older than the line before it
    (outs, summary), said, (want, scanned), _ = _both(lines, tmp_path, capfd, block_bytes=4096)
    assert len(guesses) > 20  # (it streamed many blocks first)
    assert outs == want
    assert summary.counts == scanned.counts
    assert summary.counts["lines"] == len(lines) and summary.counts["late"] == 0
    assert said.count("is not in time order") == 1
    assert f"(line {len(lines)} is " in said


def test_an_input_in_order_is_read_once(
    each_core: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], guesses: list[int]
) -> None:
    """In order: streamed on the guess with nothing said, the answer of --order time."""
    lines = _events(2000, 9)
    (outs, summary), said, (want, _), _ = _both(lines, tmp_path, capfd, block_bytes=4096)
    assert guesses and said == ""
    assert outs == want
    streamed, _ = _run(tmp_path / "events.jsonl", tmp_path / "time", order="time")
    for name in OUTPUTS:  # (records leave in another order: the watermark moves otherwise)
        assert sorted(outs[name].splitlines()) == sorted(streamed[name].splitlines())
    assert summary.counts["lines"] == len(lines)


@pytest.mark.parametrize(
    ("kw", "guess"),
    [
        ({}, True),
        ({"searches": "/dev/null"}, True),
        ({"searches": "-"}, False),
        ({"searches": "/dev/stderr"}, False),
        ({"searches": "sqlite:///x.db"}, False),
        ({"searches": "kafka://127.0.0.1:1/out"}, False),
        ({"workers": 2}, True),
        ({"processes": 2}, True),
        ({"recovery_dir": "state"}, False),
        ({"order": "time"}, False),
        ({"order": "sort"}, False),
        ({"guess_order": False}, False),
    ],
)
def test_only_a_run_that_can_start_again_guesses(
    tmp_path: Path, kw: dict[str, Any], guess: bool
) -> None:
    cfg = Config(inputs=("a.jsonl",), searches=str(tmp_path / "s.jsonl"))
    assert guesses_order(replace(cfg, **kw)) is guess


@pytest.mark.parametrize("parallel", [{"workers": 2}, {"processes": 2}])
@pytest.mark.parametrize("late_in", [None, 0, 1])
def test_a_local_cluster_starts_again_when_any_process_finds_disorder(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    guesses: list[int],
    parallel: dict[str, int],
    late_in: int | None,
) -> None:
    """Two files read whole by two workers or processes, either out of order at its end:
    the process that finds it stops the cluster, which starts again with that file
    sorted; the records (in any order: two writers), the summary and what is said are
    those of a pre-scanned run."""
    files = []
    for k in (0, 1):
        lines = _events(1500, 20 + k)
        if late_in == k:
            lines.append(lines[10])
        path = tmp_path / f"part-{k}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        files.append(path)
    got = _guessed_and_scanned(files, tmp_path, capfd, block_bytes=4096, **parallel)
    assert got[None] == got[False]
    said = got[None][2]
    assert said.count("is not in time order") == (late_in is not None)
    if late_in is not None:
        assert f"part-{late_in}.jsonl is not in time order (line 1501 is" in said
    if "processes" not in parallel:
        assert guesses  # (forked processes count their own)


@pytest.mark.parametrize("parallel", [{"workers": 2}, {"processes": 2}])
@pytest.mark.parametrize("seed", range(4))
def test_lanes_of_a_file_decide_as_its_pre_scan(
    each_core: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    parallel: dict[str, int],
    seed: int,
) -> None:
    """One file read in lanes, each lane checking its own lines as it reads them and the
    lanes' blocks checked against each other at the end: in order, or out of order
    within one lane or only across lanes (a line moved back just past a block's start),
    the run decides as the pre-scan of the whole file does, naming the same line."""
    rnd = random.Random(seed)
    lines = _events(2500, seed)
    kind = ["in order", "late at the end", "moved back", "moved back at a block"][seed]
    if kind == "late at the end":
        lines.append(lines[5])
    elif kind == "moved back":
        i = rnd.randrange(1000, 2400)
        lines.insert(i - 200, lines.pop(i))
    elif kind == "moved back at a block":
        # The first line of block 7 (lane 1's) gets the latest time of block 5 (lane 1's
        # too), far older than block 6 (lane 0's): out of order only across the lanes.
        block_of, start = [], 0
        for line in lines:
            block_of.append(start // 4096)
            start += len(line) + 1
        latest = {
            b: max(json.loads(lines[i])["time"] for i in range(len(lines)) if block_of[i] == b)
            for b in (5, 6)
        }
        assert latest[6] - latest[5] > 60
        at = block_of.index(7)
        ev = json.loads(lines[at])
        ev["time"] = latest[5]
        lines[at] = json.dumps(ev).encode()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    got = _guessed_and_scanned(path, tmp_path, capfd, block_bytes=4096, **parallel)
    assert got[None] == got[False]
    assert (kind == "in order") == ("is not in time order" not in got[None][2])
    if kind == "moved back at a block":
        assert f"(line {at + 1} is " in got[None][2]


def test_a_native_block_knows_its_earliest_and_latest_time() -> None:
    """``EventBlock.time_range``, which the lanes' check of blocks takes in the native
    core (the Python core's blocks are lists: their times are read in Python)."""
    from search_sessions.connectors.base import block_time_range
    from search_sessions.core.cores import native_block_decoder
    from search_sessions.core.events import EventDecoder
    from search_sessions.core.time import NEVER

    native = native_block_decoder(EventDecoder(0))
    if native is None:
        pytest.skip("the native core is not installed")
    times = [30, 10, 50, 20]
    lines = b"".join(
        json.dumps({"type": "search", "user": f"u{t}", "time": T0 + t, "query": "q"}).encode()
        + b"\n"
        for t in times
    )
    (block,), *_ = native.decode_block(lines, 0, NEVER, 10**12, 1)
    assert block.time_range() == ((T0 + 10) * 10**6, (T0 + 50) * 10**6)
    (empty,), *_ = native.decode_block(b"", 0, NEVER, 10**12, 1)
    assert empty.time_range() is None
    assert block_time_range(block) == block_time_range(block.tuples()) == block.time_range()


def _write_table(lines: list[bytes], path: Path, sep: str) -> Path:
    """JSON Lines events as CSV or TSV rows (a bad line as a row of its own)."""
    rows = [sep.join(("type", "user", "time", "query", "items", "item"))]
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            rows.append(line.decode())
            continue
        items = "|".join(e.get("items", []))
        rows.append(
            sep.join(
                (e["type"], e["user"], str(e["time"]), e.get("query", ""), items, e.get("item", ""))
            )
        )
    path.write_text("".join(row + "\n" for row in rows))
    return path


@pytest.mark.parametrize("parallel", [{}, {"workers": 2}])
@pytest.mark.parametrize("sep", [",", "\t"], ids=["csv", "tsv"])
@pytest.mark.parametrize("kind", ["in order", "late at the end", "sorted by user"])
def test_csv_and_tsv_files_are_guessed_as_their_pre_scan_decides(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    guesses: list[int],
    parallel: dict[str, int],
    sep: str,
    kind: str,
) -> None:
    """CSV and TSV files (read whole, or in lanes) are streamed on the guess too: the
    records, the summary and what is said are a pre-scanned run's."""
    lines = _events(2000, 7)
    if kind == "late at the end":
        lines.append(lines[3])
    elif kind == "sorted by user":
        lines.sort(key=lambda line: json.loads(line)["user"])
    path = _write_table(lines, tmp_path / ("events.csv" if sep == "," else "events.tsv"), sep)
    got = _guessed_and_scanned(path, tmp_path, capfd, block_bytes=4096, **parallel)
    assert guesses
    assert got[None] == got[False]
    assert (kind == "in order") == ("is not in time order" not in got[None][2])
    assert got[None][1]["lines"] == len(lines) + 1  # (and the header row)
