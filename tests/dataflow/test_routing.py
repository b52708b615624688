"""The shard keys really land one per worker (the table in _routes.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import os
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource
from search_sessions.dataflow.routing import shard_keys

flow = Dataflow("probe")
keys = op.key_on("k", op.input("in", flow, TestingSource(shard_keys(int(os.environ["NW"])))), str)
op.inspect_debug("seen", op.stateful_map("st", keys, lambda s, v: (None, v)))
"""


def run_probe(tmp_path: Path, source: str, workers: int) -> subprocess.CompletedProcess[str]:
    """Run the flow in ``source`` with ``python -m bytewax.run -w workers``."""
    (tmp_path / "probe.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "bytewax.run", "probe:flow", "-w", str(workers)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"NW": str(workers), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_each_worker_owns_one_shard(tmp_path: Path, workers: int) -> None:
    proc = run_probe(tmp_path, PROBE, workers)
    seen = dict(re.findall(r"W(\d+) @\d+: \('([^']+)'", proc.stdout))
    assert sorted(seen) == [str(i) for i in range(workers)], proc.stdout + proc.stderr


SINK_PROBE = """
import os
import threading
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import StatefulSinkPartition
from bytewax.testing import TestingSource
from search_sessions.dataflow.routing import shard_keys
from search_sessions.connectors.files import JsonLinesSink

class Part(StatefulSinkPartition):
    def write_batch(self, values):
        for key, ident in values:
            where = "same" if ident == threading.get_ident() else "other"
            print(f"WROTE {key} {where}", flush=True)

    def snapshot(self):
        return None

class Probe(JsonLinesSink):
    def build_part(self, step_id, for_part, resume_state):
        return Part()

keys = shard_keys(int(os.environ["NW"]))
flow = Dataflow("probe")
keyed = op.key_on("k", op.input("in", flow, TestingSource(keys)), str)
made = op.stateful_map("st", keyed, lambda s, v: (None, (v, threading.get_ident())))
op.output("out", made, Probe("unused", keys))
"""


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_each_worker_writes_its_own_shards_lines(tmp_path: Path, workers: int) -> None:
    """With every worker appending to a file, a shard's lines never leave its worker."""
    proc = run_probe(tmp_path, SINK_PROBE, workers)
    wrote = re.findall(r"WROTE (\S+) (\w+)", proc.stdout)
    assert len(wrote) == workers, proc.stdout + proc.stderr
    assert {where for _, where in wrote} == {"same"}, proc.stdout
