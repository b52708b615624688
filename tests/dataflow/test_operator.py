"""The ``sessionize`` operator in flows of one's own: the example, the oracle, errors,
late events, and recovery; on 1 and 2 workers."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from search_sessions.config import Config
from search_sessions.core.schema import AppClose
from search_sessions.dataflow.operator import sessionize
from search_sessions.simulate import SimSpec, write

from ..oracle import canon, oracle

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Config(inputs=("test",))
Outputs = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "events.jsonl"
    spec = SimSpec(
        events=4_000, users=120, seed=3, days=0.1, disorder=30, duplicates=0.01, bad=0.005
    )
    write(spec, str(path))
    return path


class _Lines(StatelessSourcePartition[Any]):
    def __init__(self, items: list[Any], batch: int, at_end: Callable[[], None]) -> None:
        self.items, self.batch, self.at, self.at_end = items, batch, 0, at_end

    def next_batch(self) -> list[Any]:
        if self.at >= len(self.items):
            self.at_end()
            raise StopIteration()
        self.at += self.batch
        return self.items[self.at - self.batch : self.at]


class UserSplitSource(DynamicSource[Any]):
    """Each worker reads its users' lines (and its share of broken ones) in file order,
    as bytes, str or dicts in turn: one in-order partition per worker."""

    def __init__(self, lines: list[bytes], at_end: Callable[[], None], batch: int = 150) -> None:
        self.lines, self.at_end, self.batch = lines, at_end, batch

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Lines:
        mine = []
        for i, line in enumerate(self.lines):
            try:
                obj = json.loads(line)
                user = str(obj["user"])
            except (ValueError, KeyError, TypeError):
                obj, user = None, str(i)
            if zlib.crc32(user.encode()) % worker_count != worker_index:
                continue
            if i % 3 == 2 and isinstance(obj, dict):
                mine.append(obj)
            elif i % 3 == 1 and line.isascii():
                mine.append(line.decode())
            else:
                mine.append(line)
        return _Lines(mine, self.batch, self.at_end)


def sessionize_flow(source: Any, cfg: Config = CONFIG) -> tuple[Dataflow, Outputs]:
    flow = Dataflow("test_operator")
    out = sessionize("sessionize", op.input("events", flow, source), cfg)
    got: Outputs = {name: [] for name in ("searches", "sessions", "late", "errors")}
    for name, records in got.items():
        op.output(f"write_{name}", getattr(out, name), TestingSink(records))
    return flow, got


def run_workers(flow: Dataflow, workers: int, **kw: Any) -> None:
    if workers == 1:
        run_main(flow, **kw)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers, **kw)


def run_example(workers: int) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "examples/own_flow.py", "-w", str(workers)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return sorted(proc.stdout.splitlines())


def test_example_gives_the_tutorial_answer_on_1_and_2_workers() -> None:
    one, two = run_example(1), run_example(2)
    assert one == two
    ctr = {f[2]: f[3] for f in (line.split("\t") for line in one) if f[0] == "search"}
    assert ctr == {"dogs": "ctr=1.0", "cats": "ctr=1.0", "fruit": "ctr=0.0"}
    assert sum(line.startswith("session\t") for line in one) == 2
    assert [line for line in one if line.startswith("error")] == [
        "error\tworker-0:5\tObject missing required field `item`"
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_matches_the_batch_oracle(sim_log: Path, workers: int) -> None:
    sessions_at_end: list[int] = []
    source = UserSplitSource(
        sim_log.read_bytes().splitlines(), lambda: sessions_at_end.append(len(got["sessions"]))
    )
    flow, got = sessionize_flow(source)
    run_workers(flow, workers)
    want = oracle([str(sim_log)])
    # The watermark moved with the input: sessions came out before its end.
    assert len(sessions_at_end) == workers and min(sessions_at_end) > 0
    assert len(want.searches) > 500
    assert canon(got["searches"]) == canon(want.searches)
    assert canon(got["sessions"]) == canon(want.sessions)
    assert got["late"] == []
    assert len(got["errors"]) == len(want.invalid) > 0


def test_invalid_items_go_to_errors_and_late_events_to_late() -> None:
    items: list[Any] = [
        {"type": "search", "user": "a", "time": "2024-01-01T00:10:00Z", "query": "x"},
        b"not json",
        42,
        {"type": "teleport", "user": "a", "time": 0},
        {"type": "search", "user": "b", "time": "2024-01-01T00:00:00Z", "query": "old"},
        "  ",
        AppClose(user="a", time="2024-01-01T00:10:01Z"),
    ]
    flow, got = sessionize_flow(TestingSource(items, batch_size=1))
    run_main(flow)
    errors = {e["source"]: (e["reason"], e["record"]) for e in got["errors"]}
    assert errors.keys() == {"worker-0:2", "worker-0:3", "worker-0:4"}
    assert errors["worker-0:2"][0].startswith("not JSON")
    assert errors["worker-0:2"][1] == "not json"
    assert errors["worker-0:3"] == ("not a JSON object: got int", 42)
    assert errors["worker-0:4"][0].startswith("unknown event type")
    [late] = got["late"]
    assert late["source"] == "worker-0:5"
    assert late["reason"].startswith("late: event time 2024-01-01T00:00:00Z")
    assert late["record"]["query"] == "old"
    assert [(s["query"], s["user"]) for s in got["searches"]] == [("x", "a")]
    assert [s["end_reason"] for s in got["sessions"]] == ["app_close"]


def test_resumes_after_a_crash_with_the_same_answer(sim_log: Path, tmp_path: Path) -> None:
    lines = sim_log.read_bytes().splitlines()[:1_500]
    whole, want = sessionize_flow(TestingSource(lines, batch_size=100))
    run_main(whole)
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    crashing = [*lines[:700], TestingSource.ABORT(), *lines[700:]]
    flow, got = sessionize_flow(TestingSource(crashing, batch_size=100))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    before = len(got["searches"])
    assert 0 < before < len(want["searches"])
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    # It went on from the last snapshot, not from the start.
    assert len(got["searches"]) - before < len(want["searches"])
    # At least once: the epoch under way at the crash may be written twice.
    for name in ("searches", "sessions", "errors"):
        assert set(canon(got[name])) == set(canon(want[name])), name
