"""The shard keys really land one per worker: the table in routes_table.py, and
the keys probed at start-up beyond it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from search_sessions.dataflow import probe, routing
from search_sessions.dataflow.routes_table import BYTEWAX_VERSION, ROUTED_SHARDS
from search_sessions.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

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


# Every size to 32, then two larger ones: about 3 s (all 64 would take ~10 s).
CHECKED_SIZES = [*range(1, 33), 48, max(ROUTED_SHARDS)]


def test_table_is_what_the_probe_finds_now() -> None:
    """The committed table is the probe's answer for this Bytewax (regenerate: make routes)."""
    found = {n: probe.routed_shards(n) for n in CHECKED_SIZES}
    assert found == {n: ROUTED_SHARDS[n] for n in CHECKED_SIZES}


def test_table_was_probed_with_the_installed_bytewax() -> None:
    """Upgrading Bytewax without regenerating the table fails here, loudly."""
    assert probe.bytewax_version() == BYTEWAX_VERSION, "regenerate the table: make routes"


def test_bytewax_version_is_the_installed_ones_without_importlib_metadata() -> None:
    """The version comes from the dist-info's name (importlib.metadata costs a run's
    start 40 ms), and it is the one the package metadata gives."""
    code = (
        "import sys\n"
        "from search_sessions.dataflow import probe\n"
        "v = probe.bytewax_version()\n"
        "print(v, 'importlib.metadata' in sys.modules)\n"
        "from importlib import metadata\n"
        "print(metadata.version('bytewax'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [out[2], "False", out[2]] and out[2] == BYTEWAX_VERSION


def test_table_covers_one_to_its_largest_size() -> None:
    assert sorted(ROUTED_SHARDS) == list(range(1, max(ROUTED_SHARDS) + 1))
    for n, picks in ROUTED_SHARDS.items():
        assert len(set(picks)) == n


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("probe_routes", ROOT / "tools/probe_routes.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_tool_regenerates_the_committed_file_exactly(tmp_path: Path) -> None:
    tool = load_tool()
    committed = (ROOT / "src/search_sessions/dataflow/routes_table.py").read_text()
    assert tool.render(ROUTED_SHARDS, BYTEWAX_VERSION) == committed
    out = tmp_path / "table.py"
    assert tool.main(["--max-workers", "3", "--output", str(out)]) == 0
    assert "    3: (2, 1, 0),\n}\n# fmt: on\n" in out.read_text()


def test_beyond_the_table_keys_are_probed_and_route_one_per_worker(tmp_path: Path) -> None:
    """shard_keys probes in a child process; Bytewax then routes one key to each worker."""
    workers = max(ROUTED_SHARDS) + 1
    keys = routing.shard_keys(workers)
    # The child's answer is this process's (so every process of a cluster agrees).
    assert keys == [f"shard-{i}" for i in probe.routed_shards(workers)]
    proc = run_probe(tmp_path, PROBE, workers)
    seen = dict(re.findall(r"W(\d+) @\d+: \('([^']+)'", proc.stdout))
    assert sorted(seen, key=int) == [str(i) for i in range(workers)], proc.stdout + proc.stderr
    assert [seen[str(i)] for i in range(workers)] == keys


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    routing._routed.cache_clear()
    yield
    routing._routed.cache_clear()


@pytest.mark.usefixtures("fresh_cache")
def test_a_failed_probe_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(ConfigError, match=r"covers 1\.\.\d+ workers on Bytewax .*make routes"):
        routing.shard_keys(max(ROUTED_SHARDS) + 1)


@pytest.mark.usefixtures("fresh_cache")
def test_another_bytewax_is_probed_even_within_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_probe(n: int) -> tuple[int, ...]:
        calls.append(n)
        return tuple(range(n))

    monkeypatch.setattr(routing, "bytewax_version", lambda: "99.0")
    monkeypatch.setattr(routing, "routed_shards_in_subprocess", fake_probe)
    assert routing.shard_keys(2) == ["shard-0", "shard-1"]
    assert routing.shard_keys(2) == ["shard-0", "shard-1"]
    assert calls == [2]  # once per size and process


def test_no_workers_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least one worker"):
        routing.shard_keys(0)


ORPHAN = r"""
import ctypes, os, signal, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphans come here
parent = subprocess.Popen([sys.executable, "-c",
    "from search_sessions.dataflow.probe import routed_shards_in_subprocess as r; r(256)"])
children = f"/proc/{parent.pid}/task/{parent.pid}/children"
while not open(children).read().split():  # until the run has started its probe
    time.sleep(0.01)
probe = int(open(children).read().split()[0])
os.kill(parent.pid, signal.SIGKILL)
parent.wait()
_, status = os.waitpid(probe, 0)  # the probe, an orphan now
print(os.waitstatus_to_exitcode(status))
"""


def test_a_probe_whose_run_was_killed_exits() -> None:
    """A probe of 256 workers takes about 10 s: killed, its run leaves no reader for it.
    Its exit status tells its parent watch (``ORPHANED``) from an end of its own (0, or
    1 when it prints its answer into the dead run's pipe)."""
    done = subprocess.run(
        [sys.executable, "-c", ORPHAN], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.split() == [str(probe.ORPHANED)], done.stderr


def test_more_workers_than_supported_are_refused() -> None:
    from search_sessions.config import MAX_WORKERS, Config

    Config(inputs=("-",), workers=MAX_WORKERS // 2, processes=2)
    with pytest.raises(ConfigError, match=f"at most {MAX_WORKERS}"):
        Config(inputs=("-",), workers=MAX_WORKERS // 2 + 1, processes=2)
