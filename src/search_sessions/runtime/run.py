"""Running a job to its end: in this process, or as a cluster of local processes.

``run(cfg)`` is what the CLI (and a library user) calls. With ``processes > 1``
it starts that many processes on loopback addresses (:mod:`.cluster`), each
running one process of the same Bytewax cluster, and waits for them; the
counters every process contributes end up in one stats file, read back into a
:class:`Summary`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass

from ..config import Config
from ..connectors.files import first_late_of, read_partitions, scan_lanes_first
from ..connectors.inputs import guesses_order, output_specs, start_scans
from ..connectors.registry import resolve_inputs, start_output
from ..control import GUESSED_WRONG, METRICS, STOP, found_wrong, lanes_out_of_order
from ..dataflow.stats import STAT_FIELDS
from ..errors import OutputError, SearchSessionsError
from .cluster import run_cluster
from .process import run_process
from .recovery import RecoveryGuard, prepare_recovery


@dataclass(frozen=True)
class Summary:
    """Counters of a finished run, with its wall time."""

    counts: dict[str, int]
    elapsed: float
    stopped: bool = False

    @property
    def events_per_second(self) -> float:
        return self.counts.get("lines", 0) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ctr(self) -> float | None:
        searches = self.counts.get("searches", 0)
        return self.counts.get("clicked_searches", 0) / searches if searches else None

    def text(self) -> str:
        if self.stopped:
            return (
                f"stopped by a signal after {self.elapsed:.2f}s; outputs are flushed and, with "
                "--recovery-dir, the same command resumes where this run stopped"
            )
        c = self.counts
        ctr = "n/a" if self.ctr is None else f"{self.ctr:.4f}"
        return (
            f"events read {c.get('lines', 0):,} (valid {c.get('events', 0):,}), "
            f"invalid {c.get('invalid', 0):,}, duplicates {c.get('duplicates', 0):,}, "
            f"late {c.get('late', 0):,}; sessions {c.get('sessions', 0):,}, "
            f"searches {c.get('searches', 0):,}, CTR {ctr}; "
            f"elapsed {self.elapsed:.2f}s, {self.events_per_second:,.0f} events/s"
        ) + self._late_note()

    def _late_note(self) -> str:
        """A second line when more than 1% of valid events came late: what it means and
        what to do."""
        late, valid = self.counts.get("late", 0), self.counts.get("events", 0)
        if not valid or late * 100 <= valid:
            return ""
        return (
            f"\nnote: {late / valid:.1%} of valid events were late (older than the watermark "
            "when read) and are not in any session: the input is out of time order by more "
            "than --lateness. For files or stdin use --order sort; for streams a larger "
            "--lateness."
        )


def run(cfg: Config, process_id: int | None = None, addresses: list[str] | None = None) -> Summary:
    """Run the job described by ``cfg`` to the end of its input and sum up.

    With ``process_id`` and ``addresses`` this process is one member of a
    cluster started elsewhere (one per host, say); only the member that owns the
    counters has them all, the others' summaries count what passed through them.
    """
    started = time.perf_counter()
    # Every process of a local cluster gets the same list of partitions.
    cfg = resolve_inputs(cfg)
    if process_id is not None and addresses is not None:
        # Shards are laid out over every worker of the cluster.
        cfg = dataclasses.replace(cfg, processes=len(addresses))
    elif cfg.recovery_dir is None and cfg.workers * cfg.processes > 1:
        # All workers are on this host: each appends its own lines to the files
        # (a resumable file needs one writer, which can cut it back to a snapshot).
        cfg = dataclasses.replace(cfg, parallel_writes=True)
    guard: RecoveryGuard | None = None
    if cfg.recovery_dir is not None:
        # This run's processes: one of a cluster spread over hosts, or all of a local one.
        ids = [process_id] if process_id is not None else list(range(cfg.processes))
        guard = RecoveryGuard(cfg, ids)
    with guard or nullcontext(), tempfile.TemporaryDirectory(prefix="search-sessions-") as tmp:
        stats_path = os.path.join(tmp, "stats.json")
        if cfg.recovery_dir is not None:
            # A resumed run adds to the counters it had; keep them beside its state.
            stats_path = os.path.join(cfg.recovery_dir, "stats.json")
        cfg = dataclasses.replace(cfg, stats_file=stats_path)
        fresh = not prepare_recovery(cfg)
        # (A library user's config may allow the guess where the run cannot start again.)
        guess = guesses_order(cfg) and process_id is None and fresh
        GUESSED_WRONG.clear()  # (an earlier run's, in this process)
        marker = os.path.join(tmp, "out-of-order.jsonl") if guess else None
        cfg = dataclasses.replace(cfg, guess_order=guess, guess_marker=marker)
        if cfg.emptying is not None:
            cfg.emptying.join()
        if fresh:
            _start_outputs(cfg)
        stopped = False
        if process_id is None and fresh and not cfg.prescans:
            # The pre-scans run while the dataflow starts (cli.py begins them earlier).
            cfg = dataclasses.replace(cfg, prescans=start_scans(cfg))
        if process_id is not None:
            run_process(cfg, process_id, addresses, join_timeout=cfg.join_timeout.total_seconds())
        elif cfg.processes == 1:
            run_process(cfg)
            if (found := _guessed_wrong(cfg)) and not STOP.is_set():
                run_process(_start_again(cfg, found))
        else:
            if fresh:  # (a resumed input keeps the decision its snapshot holds)
                cfg = dataclasses.replace(cfg, scanned=_scanned(cfg), prescans=())
            stopped = run_cluster(cfg, tmp)
            if (found := _guessed_wrong(cfg)) and not (stopped or STOP.is_set()):
                cfg = _start_again(cfg, cfg.scanned + found)
                cfg = dataclasses.replace(cfg, scanned=cfg.scanned + _scanned(cfg), prescans=())
                stopped = run_cluster(cfg, tmp)
        counts = {}
        if os.path.exists(stats_path):
            with open(stats_path) as f:
                counts = json.load(f)
        stopped = STOP.is_set() or stopped
        if guard is not None and not stopped:
            guard.finished()
    counts = {k: counts.get(k, 0) for k in STAT_FIELDS}
    return Summary(counts, time.perf_counter() - started, stopped=stopped)


def _scanned(cfg: Config) -> tuple[tuple[int, tuple[int, int] | None], ...]:
    """A local cluster's pre-scans, done by its launcher for every process: the answers of
    those begun early (:func:`~..connectors.inputs.start_scans`), and the lanes' of the
    inputs they did not cover (:func:`~..connectors.files.scan_lanes_first`)."""
    found = tuple((i, job.result(STOP.is_set)) for i, job in cfg.prescans)
    if STOP.is_set():
        return ()  # (a stopped scan found nothing: the processes decide)
    known = {i for i, _ in found} | {i for i, _ in cfg.scanned}
    return found + scan_lanes_first(cfg, frozenset(known))


def _guessed_wrong(cfg: Config) -> tuple[tuple[int, tuple[int, int]], ...]:
    """The inputs a run streaming them on the guess that they were in order found out of
    order, with where (see ``LinePartition.sniff``): as their partitions found it, for
    files read whole; for files read in lanes (found by a lane, or by the check of the
    lanes' blocks against each other at the end), as their pre-scan finds it, which
    names the first line out of order in the file, not in one lane."""
    if not cfg.guess_order:
        return ()
    found = dict(found_wrong(cfg.guess_marker))
    lanes = {
        rp.input_index
        for rp in read_partitions(cfg, cfg.workers * cfg.processes, cfg.block_bytes)
        if rp.lanes > 1
    }
    for i in set(lanes_out_of_order(cfg.guess_marker, cfg.lateness_us)) | (lanes & set(found)):
        late = first_late_of(cfg, i)
        if late is not None:
            found[i] = late
    return tuple(sorted(found.items()))


def _start_again(cfg: Config, scanned: tuple[tuple[int, tuple[int, int] | None], ...]) -> Config:
    """A run that streamed inputs on the guess that they were in order, stopped where it
    found one was not (see ``LinePartition.sniff``), set up to start again afresh: its
    outputs emptied once its sinks have closed, its counters at zero, the inputs found
    out of order sorted (``scanned``: what is known) and the others pre-scanned (those
    of one process begun here)."""
    gc.collect()  # (the stopped dataflow's sinks flush and close: then their files empty)
    METRICS.reset()
    if cfg.stats_file is not None and os.path.exists(cfg.stats_file):
        os.remove(cfg.stats_file)
    _start_outputs(cfg)
    # (The guess's notes stay in the run's directory: without a marker, none is read.)
    cfg = dataclasses.replace(cfg, guess_order=False, guess_marker=None, scanned=scanned)
    return dataclasses.replace(cfg, prescans=start_scans(cfg))


def _start_outputs(cfg: Config) -> None:
    """Start every output afresh (files empty, databases with their tables)."""
    for spec in output_specs(cfg):
        try:
            start_output(spec)
        except SearchSessionsError:
            raise
        except Exception as exc:  # (OSError, a database's own errors)
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise OutputError(f"{spec}: cannot start this output: {lines[0]}") from exc
