"""Input partitions: a plain file read in lanes by several workers gives exactly the
events, line numbers and dead letters of reading it whole, and resumes from a snapshot."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_sessions.config import Config
from search_sessions.connectors.files import read_partitions
from search_sessions.connectors.registry import resolve_inputs
from search_sessions.connectors.source import EventSource

from ..conftest import RunFlow, drain, read_resumed, write_events

BLOCK = 64  # bytes: small blocks, so lines longer than a block and empty blocks happen


def config(
    *inputs: str, block_bytes: int = BLOCK, order: str = "auto", read_ahead: bool | None = None
) -> Config:
    return resolve_inputs(
        Config(inputs=inputs, block_bytes=block_bytes, order=order, read_ahead=read_ahead)
    )


def _lines() -> list[bytes]:
    out = []
    for i in range(120):
        ev = {"type": "search", "user": f"u{i % 7}", "time": i, "query": f"q{i}"}
        if i % 17 == 5:
            ev["query"] = "long " * (i % 40 + 20)  # longer than several blocks
        out.append(json.dumps(ev).encode())
        if i % 23 == 3:
            out.append(b"")  # blank: skipped, still counted
        if i % 29 == 7:
            out.append(b"{broken")  # a dead letter with its line number
    return out


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(_lines()))  # no newline after the last line
    return path


def read(
    path: Path, workers: int, resume_after: int | None = None, read_ahead: bool = False
) -> dict[str, Any]:
    cfg = config(str(path), read_ahead=read_ahead)
    src = EventSource(cfg, [f"shard-{i}" for i in range(workers)])
    out: dict[str, Any] = {"events": [], "dead": [], "stats": {}}

    def ahead(part: Any) -> None:
        if read_ahead and resume_after and part.native:
            assert part.ahead is not None  # the snapshot is taken with a block ahead

    for rp in src.parts:
        read_resumed(src, rp.name, out, resume_after, ahead)
    out["events"].sort()
    out["dead"].sort(key=lambda d: d["source"])
    return out


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_lanes_read_exactly_what_one_reader_reads(log: Path, workers: int) -> None:
    whole = read(log, 1)
    assert len(whole["events"]) == 120
    assert [d["source"] for d in whole["dead"]] == sorted(
        f"{log}:{i + 1}" for i, line in enumerate(_lines()) if line == b"{broken"
    )
    lanes = read(log, workers)
    assert len(read_partitions(config(str(log)), workers, BLOCK)) == workers
    assert lanes == whole  # events with their line numbers, dead letters, counters


@pytest.mark.parametrize("read_ahead", [False, True])
@pytest.mark.parametrize("after", [0, 1, 3])
def test_a_lane_resumes_from_its_snapshot(log: Path, after: int, read_ahead: bool) -> None:
    """(Reading ahead, a snapshot holds the position before the block read ahead.)"""
    assert read(log, 3, resume_after=after, read_ahead=read_ahead) == read(log, 1)


@pytest.mark.parametrize("after", [1, 2, 5])
def test_a_file_read_ahead_resumes_from_its_snapshot(log: Path, after: int) -> None:
    assert read(log, 1, resume_after=after, read_ahead=True) == read(log, 1)


def test_lane_w_of_every_file_goes_to_worker_w(tmp_path: Path) -> None:
    """Bytewax deals sorted partition names to workers in turn (tests/test_routing.py)."""
    big = [tmp_path / f"{name}.jsonl" for name in ("b", "a")]
    for p in big:
        p.write_bytes(b"x" * (BLOCK * 4))
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"x")
    parts = read_partitions(config(str(big[0]), str(small), str(big[1])), 3, BLOCK)
    assert [p.name for p in parts] == sorted(p.name for p in parts)
    laned = [(p.input_index, p.lane) for p in parts if p.lanes == 3]
    assert laned == [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1), (2, 2)]
    assert all(place % 3 == lane for place, (_, lane) in enumerate(laned))
    assert [(p.input_index, p.lanes) for p in parts if p.lanes == 1] == [(1, 1)]


def _events_file(path: Path, start: int, n: int) -> Path:
    return write_events(
        path,
        [{"type": "search", "user": f"u{i}", "time": start + i, "query": "q"} for i in range(n)],
    )


def test_files_read_whole_only_when_they_keep_workers_in_step(tmp_path: Path) -> None:
    """Balanced files over the same stretch of time (split by user): whole, one per
    worker. Files split by time, uneven files, or fewer files than workers: lanes."""

    def lanes(*paths: Path) -> set[int]:
        cfg = config(*(str(p) for p in paths))
        return {p.lanes for p in read_partitions(cfg, 2, BLOCK)}

    a = _events_file(tmp_path / "a.jsonl", 0, 50)
    b = _events_file(tmp_path / "b.jsonl", 60, 50)  # a minute later: same stretch
    assert lanes(a, b) == {1}
    later = _events_file(tmp_path / "later.jsonl", 3 * 3600, 50)  # hours later
    assert lanes(a, later) == {2}
    small = _events_file(tmp_path / "small.jsonl", 0, 10)  # a third of the bytes
    assert lanes(a, small) == {2}
    assert lanes(a) == {2}
    assert lanes(a, b, small) == {2}  # 3 files on 2 workers


@pytest.mark.parametrize("order", ["time", "auto"])
def test_a_file_ahead_in_time_waits_and_says_where_it_starts(tmp_path: Path, order: str) -> None:
    """Files split by time: the later one reads nothing until the earlier one has caught
    up to within gap + lateness, but reports its first event time at once, so the
    watermark (the minimum over files) can follow the earlier file meanwhile."""
    early = _events_file(tmp_path / "early.jsonl", 0, 300)
    late = _events_file(tmp_path / "late.jsonl", 10 * 3600, 300)
    # (auto finds both files in order by pre-scanning them, before reading them)
    cfg = config(str(early), str(late), block_bytes=BLOCK * 16, order=order)
    src = EventSource(cfg, ["shard-0"])
    p_early, p_late = (src.build_part("read", rp.name, None) for rp in src.parts)
    said = p_late.next_batch()
    assert [(v[1], v[3]) for _, v in said] == [(10 * 3600 * 1_000_000, [])]
    assert p_late.next_batch() == []
    out: dict[str, Any] = {"events": [], "dead": [], "stats": {}}
    drain(p_early, out)
    assert len(out["events"]) == 300
    drain(p_late, out)
    assert len(out["events"]) == 600


@pytest.mark.parametrize("workers", [1, 2])
def test_a_byte_order_mark_before_the_first_line_is_skipped(
    tmp_path: Path, run_flow: RunFlow, workers: int
) -> None:
    """Windows tools start UTF-8 files with a byte-order mark: it is not part of the
    first event (which used to go to the dead letter as not JSON)."""
    path = tmp_path / "bom.jsonl"
    bom = b"\xef\xbb\xbf"
    lines = [
        bom + b'{"type": "search", "user": "u1", "time": "2024-01-01T00:00:00Z", "query": "a"}',
        b'{"type": "click", "user": "u1", "time": "2024-01-01T00:00:02Z", "item": "x"}',
        bom + b'{"type": "search", "user": "u2", "time": "2024-01-01T00:00:03Z", "query": "b"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    records, _ = run_flow([path], workers=workers)
    assert [(r["user"], r["query"], r["clicks"]) for r in records["searches"]] == [("u1", "a", 1)]
    # Only at the start of the input: a mark on a later line is an invalid record.
    assert [d["source"] for d in records["dead"]] == [f"{path}:3"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    last_newline=st.booleans(),
    block=st.integers(1, 40),
    gzipped=st.booleans(),
    workers=st.integers(1, 3),
)
def test_a_block_read_raw_holds_the_lines_read_would(
    tmp_path: Path,
    lines: list[bytes],
    last_newline: bool,
    block: int,
    gzipped: bool,
    workers: int,
) -> None:
    """The native core takes a block as one ``bytes`` (``read_raw``): the same lines,
    block by block, as ``read`` (``readlines``: up to the block size, and the line that
    takes it past), for a whole file, gzipped or not, and for lanes."""
    data = b"\n".join(lines) + (b"\n" if last_newline and lines else b"")
    path = tmp_path / f"events-{len(list(tmp_path.iterdir()))}.jsonl"
    path.write_bytes(gzip.compress(data) if gzipped else data)

    def blocks(raw: bool) -> list[bytes]:
        cfg = config(str(path), block_bytes=block)
        src = EventSource(cfg, [f"shard-{i}" for i in range(workers)])
        out = []
        for rp in src.parts:
            part = src.build_part("read", rp.name, None)
            while True:
                got, at_end = part.read_raw() if raw else part.read()
                out.append(got if raw else b"".join(got))
                if at_end:
                    break
            part.close()
        return out

    assert blocks(raw=True) == blocks(raw=False)


def test_a_fresh_runs_outputs_are_emptied_early(tmp_path: Path) -> None:
    """The command line empties a fresh run's old output files on a thread while the run
    starts; a run with a recovery directory (which may resume) keeps them, and a
    Parquet output is left to its own start."""
    from search_sessions.connectors.inputs import begin_emptying

    old = {name: tmp_path / name for name in ("s.jsonl", "se.jsonl", "r.parquet")}
    for path in old.values():
        path.write_bytes(b"last run\n")
    cfg = Config(
        inputs=("x",),
        searches=str(old["s.jsonl"]),
        sessions=str(old["se.jsonl"]),
        rollups=str(old["r.parquet"]),
        rollup_windows=(("1h", 3600),),
        dead_letter=str(tmp_path / "absent.jsonl"),
    )
    assert begin_emptying(dataclasses.replace(cfg, recovery_dir=str(tmp_path))) is None
    assert old["s.jsonl"].read_bytes() == b"last run\n"
    thread = begin_emptying(cfg)
    assert thread is not None
    thread.join()
    assert old["s.jsonl"].read_bytes() == old["se.jsonl"].read_bytes() == b""
    assert old["r.parquet"].read_bytes() == b"last run\n"
    assert not (tmp_path / "absent.jsonl").exists()


def test_a_fresh_file_sink_holds_only_its_own_lines(tmp_path: Path) -> None:
    """A file sink starting afresh opens its file without O_TRUNC (ext4 writes back a
    file opened so when it is closed): what the run started empty is written as it is,
    and a file that still has an older run's bytes (a library user's own sink, not
    started by ``start_output``) is still emptied first."""
    from search_sessions.connectors.files import JsonLinesSink
    from search_sessions.connectors.registry import start_output

    started, left = tmp_path / "started.jsonl", tmp_path / "left.jsonl"
    for path in (started, left):
        path.write_bytes(b'{"an older run": "and a longer line than the new ones"}\n' * 100)
    start_output(str(started))
    inode = started.stat().st_ino
    for path in (started, left, tmp_path / "new.jsonl"):
        part = JsonLinesSink(str(path)).build_part("write_searches", str(path), None)
        part.write_batch([b'{"a": 1}\n', b'{"b": 2}\n'])
        assert part.snapshot() == 18
        part.close()
        assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert started.stat().st_ino == inode
