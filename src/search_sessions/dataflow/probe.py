"""Find shard keys that Bytewax routes one to each worker, by asking Bytewax.

Bytewax sends a keyed item to a worker chosen by hashing its key; the function
is internal to Bytewax, so rather than copy it this module runs a tiny dataflow
with W worker threads in this process: candidate keys ``shard-0``, ``shard-1``,
... go through a stateful step (which runs on the key's worker), and a sink,
whose partitions know their worker index, records where each key landed. Worker
*w* then gets the smallest candidate routed to it, so the answer depends only on
the hash, never on thread timing: every process of a cluster computes the same
keys. Routing goes by global worker index, so P processes of w workers route
like one process of P*w workers.

``tools/probe_routes.py`` uses :func:`routed_shards` to write the table in
``routes_table.py``; :mod:`.routing` falls back to
:func:`routed_shards_in_subprocess` for worker counts beyond the table.

This module imports only Bytewax and the standard library, and no other module
of the package, because :func:`routed_shards_in_subprocess` runs this very file
as a script (so it works whether or not the package is installed).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

KEY_PREFIX = "shard-"
# With C candidates a given worker of W owns none with odds about exp(-C/W):
# 16 per worker leaves every worker one in all but ~1e-5 of cases, and a miss
# only costs a rerun with twice as many.
CANDIDATES_PER_WORKER = 16
MAX_CANDIDATES_PER_WORKER = 256


class ProbeError(RuntimeError):
    """Bytewax could not be probed, or its routing left a worker without a key."""


def bytewax_version() -> str:
    """The installed Bytewax version, e.g. ``"0.21.1"``: read from the name of the one
    ``bytewax-<version>.dist-info`` beside the imported package (every run asks, and
    importing :mod:`importlib.metadata` to read it took 40 ms of a run's start), else
    from :func:`importlib.metadata.version` (which raises
    :class:`~importlib.metadata.PackageNotFoundError`, a :class:`ModuleNotFoundError`,
    when Bytewax is not installed)."""
    import bytewax  # (a namespace package: no __file__)

    found = []
    for portion in bytewax.__path__:
        try:
            names = [e.name for e in os.scandir(os.path.dirname(portion))]
        except OSError:
            continue
        found += [n for n in names if n.startswith("bytewax-") and n.endswith(".dist-info")]
    if len(found) == 1:
        return found[0].removeprefix("bytewax-").removesuffix(".dist-info")
    from importlib import metadata

    return metadata.version("bytewax")


class _Recorder(StatelessSinkPartition[str]):
    """One worker's sink partition: notes the keys that reached this worker."""

    def __init__(self, worker: int, seen: list[tuple[str, int]], lock: threading.Lock) -> None:
        self._worker = worker
        self._seen = seen
        self._lock = lock

    def write_batch(self, items: list[str]) -> None:
        with self._lock:
            self._seen.extend((key, self._worker) for key in items)


class _RecordingSink(DynamicSink[str]):
    """A sink with a partition on every worker, so an item is written where it is."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Recorder:
        return _Recorder(worker_index, self.seen, self._lock)


def probe_routes(n_workers: int, n_candidates: int) -> dict[int, int]:
    """Run Bytewax with ``n_workers`` threads: candidate *i* -> the worker it lands on."""
    # Imported here: bytewax.testing imports asyncio (25-30 ms), and every run imports
    # this module (routing's fallback) but only a probe runs it.
    from bytewax.testing import TestingSource, cluster_main

    keys = [f"{KEY_PREFIX}{i}" for i in range(n_candidates)]
    flow = Dataflow("probe_routes")
    # One batch: a batch per item wakes every worker once per item (5-10x slower).
    candidates = op.input("candidates", flow, TestingSource(keys, batch_size=len(keys)))
    keyed = op.key_on("key", candidates, str)
    # The stateful step runs on the worker that owns the key; the map keeps it there.
    owned = op.stateful_map("owner", keyed, lambda state, key: (state, key))
    sink = _RecordingSink()
    op.output("where", op.map("drop_key", owned, lambda kv: kv[1]), sink)
    cluster_main(flow, [], 0, worker_count_per_proc=n_workers)
    routes = {int(key.removeprefix(KEY_PREFIX)): worker for key, worker in sink.seen}
    if sorted(routes) != list(range(n_candidates)):
        raise ProbeError(f"the probe saw {len(routes)} of {n_candidates} candidate keys")
    return routes


def smallest_per_worker(routes: dict[int, int], n_workers: int) -> tuple[int, ...] | None:
    """For each worker in order, the smallest candidate routed to it (None if one has none)."""
    best: dict[int, int] = {}
    for candidate, worker in sorted(routes.items()):
        best.setdefault(worker, candidate)
    if sorted(best) != list(range(n_workers)):
        return None
    return tuple(best[w] for w in range(n_workers))


def routed_shards(n_workers: int) -> tuple[int, ...]:
    """The W integers *i* such that Bytewax routes ``shard-{i}`` to workers 0..W-1 in order.

    Runs Bytewax in this process (W threads, well under a second for 64).

    >>> routed_shards(3)
    (2, 1, 0)
    """
    if n_workers < 1:
        raise ProbeError(f"at least one worker is needed, got {n_workers}")
    n_candidates = CANDIDATES_PER_WORKER * n_workers
    while n_candidates <= MAX_CANDIDATES_PER_WORKER * n_workers:
        picks = smallest_per_worker(probe_routes(n_workers, n_candidates), n_workers)
        if picks is not None:
            return picks
        n_candidates *= 2
    raise ProbeError(
        f"no key among shard-0..shard-{n_candidates // 2 - 1} lands on some of the "
        f"{n_workers} workers"
    )


def routed_shards_in_subprocess(n_workers: int) -> tuple[int, ...]:
    """:func:`routed_shards`, computed by a child Python, for a caller that runs flows.

    The child keeps the probe's worker threads (and Bytewax's global state) away
    from the caller, which is about to run its own dataflow.
    """
    # -P: do not put this file's directory (dataflow/, with flow.py...) on sys.path.
    import subprocess  # (here: a run imports this module, for this fallback)

    command = [sys.executable, "-P", __file__, str(n_workers), str(os.getpid())]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=60 + n_workers, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"the probe did not run: {exc}") from exc
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise ProbeError(f"the probe failed: {lines[-1]}")
    try:
        picks = tuple(int(i) for i in json.loads(proc.stdout))
    except (ValueError, TypeError) as exc:
        raise ProbeError(f"the probe printed {proc.stdout[:200]!r}") from exc
    if len(picks) != n_workers or len(set(picks)) != n_workers:
        raise ProbeError(f"the probe gave {len(picks)} keys for {n_workers} workers")
    return picks


ORPHANED = 3
"""The probe's exit status when it stopped because its run was gone."""


def _exit_with_parent(parent: int) -> None:
    """Exit when the run that started this probe, process ``parent``, is gone (killed,
    say): its answer has no reader then, and its threads would run on for minutes. (Its
    pid comes from the run: one killed before this probe started is seen too.)"""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(ORPHANED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -P probe.py W [PARENT_PID]``: print :func:`routed_shards` for W workers as
    JSON (stopping when process PARENT_PID, which started it, is gone)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2) or not all(a.isdigit() for a in args):
        print("usage: probe.py N_WORKERS [PARENT_PID]", file=sys.stderr)
        return 2
    if len(args) == 2:
        _exit_with_parent(int(args[1]))
    try:
        picks = routed_shards(int(args[0]))
    except ProbeError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(list(picks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
