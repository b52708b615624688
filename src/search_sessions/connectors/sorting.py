"""External sort of a bounded input by event time, in bounded memory.

With ``--order sort`` (or when ``auto`` finds an input out of order) a file,
a lane of one, or standard input is read to its end before any of its events
are streamed: decoded events collect in memory, and each time they pass this
partition's share of ``--sort-memory`` they are sorted and spilled to a run
file under ``--temp-dir``; at the end of the input the runs are merged
(:func:`merge_runs`) and the partition streams the events in order. Events
sort by ``(time, input, line)``, the order the batch answer uses, so ties keep
input order and the events still name their file and line.

With the native core the events stay in Rust (``search_sessions_native.SortBuffer``:
the native decoder's blocks go in, and a ``MergeStream`` deals the merged events out
to the shards a batch at a time), and its runs are frames of packed native events;
this module still budgets the memory, names the runs and removes them. Both give the
events in the same order, so the same records.

The Python core's runs are msgpack frames of events
(:func:`~search_sessions.core.events.pack_events`). Either's are in a directory
``search-sessions-sort-PID-*`` that is removed when the partition closes, when the
process exits, or (after a kill -9) by the next sort that finds its process gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import shutil
import struct
import tempfile
from bisect import bisect_right
from collections.abc import Iterator
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol
from zlib import crc32

from ..core.cores import NATIVE
from ..core.events import Event, pack_events, unpack_events
from ..errors import RunError

__all__ = [
    "ExternalSort",
    "Merged",
    "SortBudget",
    "budget_for",
    "event_bytes",
    "merge_runs",
    "native_event_bytes",
]

_PREFIX: Final = "search-sessions-sort-"
_FRAME: Final = 1024
"""Events per frame of a run file: what a merge holds per run (about 400KB)."""
FAN_IN: Final = 16
"""The most runs merged at once; more are first merged into fewer, 16 at a time."""
_LEN = struct.Struct("<I")
_TIME = itemgetter(0)
"""The sort key. Events are added in input order and sorts are stable, so events of
the same time keep it: the order ``(time, input, line)`` of the whole tuple, at a
sixth of the cost of comparing tuples."""


def event_bytes(line_bytes: int, events: int) -> int:
    """About how much memory decoded events take: twice their lines' bytes (strings
    and tuples of them) plus 200 bytes each (the tuple, its ints, a list slot).
    Measured with tracemalloc at 411 bytes per event for 106-byte lines."""
    return 2 * line_bytes + 200 * events


def native_event_bytes(line_bytes: int, events: int) -> int:
    """About how much memory the native core's events take: 128 bytes each (short
    strings are held inline) and, for the longer strings and result lists, at most their
    lines' bytes."""
    return line_bytes + 128 * events


class Merged(Protocol):
    """A sorted input's events in order, taken a batch at a time (the native core's
    ``MergeStream``, or :class:`_PythonMerged`)."""

    def take(self, n: int, n_shards: int, newest: int) -> tuple[list[Any], int, int]:
        """The next ``n`` events (fewer at the end) dealt to ``n_shards`` shards by
        ``crc32(user) % n_shards``: ``(per shard, newest time, how many)``."""
        ...

    def skip(self, n: int, newest: int) -> int:
        """Passes over the next ``n`` events; the time of the last (``newest`` if none)."""
        ...


class _PythonMerged:
    """The Python core's events in order (see :class:`Merged`)."""

    def __init__(self, events: Iterator[Event]) -> None:
        self.events = events

    def take(self, n: int, n_shards: int, newest: int) -> tuple[list[Any], int, int]:
        batch = list(islice(self.events, n))
        per_shard: list[list[Event]] = [batch] if n_shards == 1 else [[] for _ in range(n_shards)]
        if n_shards > 1:
            for ev in batch:
                per_shard[crc32(ev[4].encode()) % n_shards].append(ev)
        return per_shard, batch[-1][0] if batch else newest, len(batch)

    def skip(self, n: int, newest: int) -> int:
        for ev in islice(self.events, n):
            newest = ev[0]
        return newest


class SortBudget:
    """``--sort-memory`` of one process, shared by the partitions sorting in it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sorting: set[int] = set()

    def share(self) -> int:
        return self.total // max(1, len(self.sorting))


_BUDGETS: dict[int, SortBudget] = {}


def budget_for(total: int) -> SortBudget:
    """This process's budget of ``total`` bytes (one per process: its workers share it)."""
    return _BUDGETS.setdefault(total, SortBudget(total))


class ExternalSort:
    """Collects one partition's events and gives them back sorted (see the module doc)."""

    def __init__(self, budget: SortBudget, temp_dir: str | None, native: bool = False) -> None:
        self.budget = budget
        self.temp_dir = temp_dir
        self.buffer: list[Event] = []
        self.held = 0
        self.runs: list[str] = []
        self.written = 0
        self.dir: str | None = None
        self.files: list[BinaryIO] = []
        # The native core's SortBuffer: where the native core runs the shards (``native``),
        # even for events the Python core decoded (CSV, TSV, AOL, TREC, Parquet), which it
        # takes over once: the sort, runs, merge and dealing are then the native core's.
        self.native: Any = NATIVE.SortBuffer() if native and NATIVE is not None else None
        budget.sorting.add(id(self))

    def add(self, events: list[Event] | Any, line_bytes: int) -> None:
        """Events decoded from ``line_bytes`` bytes of input, in input order: a list of
        the Python core's, or (sorting natively) the native core's ``EventBlock`` (emptied)."""
        if self.native is None:
            self.buffer.extend(events)
            self.held += event_bytes(line_bytes, len(events))
        else:
            n = len(events)
            self.native.add(_block(events))
            self.held += native_event_bytes(line_bytes, n)
        if self.held >= self.budget.share():
            self._spill()

    def sorted(self) -> Merged:
        """Every event added, in order: merged from the runs, or the buffer sorted
        when everything fitted in memory."""
        self.budget.sorting.discard(id(self))
        if self.native is not None:
            return self._sorted_native()
        self.buffer.sort(key=_TIME)
        if not self.runs:
            return _PythonMerged(iter(self.buffer))
        if self.buffer:
            self._spill()
        while len(self.runs) > FAN_IN:
            # Merge the first runs into one until few enough are left to merge at once
            # (each open run holds a file and a frame of events). The merged run holds
            # the earliest input, so it goes first: runs stay in input order.
            first, rest = self.runs[:FAN_IN], self.runs[FAN_IN:]
            self.runs = []
            self._write_run(self._merge(first))
            for path in first:
                os.unlink(path)
            self.runs += rest
        return _PythonMerged(self._merge(self.runs))

    def _sorted_native(self) -> Merged:
        """:meth:`sorted` of the native core's events (the same runs, merged in Rust)."""
        if self.runs and len(self.native):
            self._spill()
        while len(self.runs) > FAN_IN:
            first, rest = self.runs[:FAN_IN], self.runs[FAN_IN:]
            path = self._next_run()
            try:
                self.native.merge(first).write_run(path)
            except OSError as exc:
                self.close()
                raise RunError(f"cannot merge sorted runs: {exc}") from None
            for done in first:
                os.unlink(done)
            self.runs = [path, *rest]
        try:
            return self.native.merge(self.runs)
        except OSError as exc:
            self.close()
            raise RunError(f"cannot read sorted runs: {exc}") from None

    def _merge(self, paths: list[str]) -> Iterator[Event]:
        files = [open(path, "rb") for path in paths]  # noqa: SIM115 - closed in close()
        self.files += files
        return chain.from_iterable(merge_runs([_frames(f) for f in files]))

    def close(self) -> None:
        """Remove the runs (the partition is done, or failed)."""
        self.budget.sorting.discard(id(self))
        self.buffer = []
        self.native = None
        for f in self.files:
            f.close()
        self.files = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            atexit.unregister(self.close)
            self.dir = None

    def _spill(self) -> None:
        self.held = 0
        if self.native is not None:
            path = self._next_run()
            try:
                self.native.spill(path)
            except OSError as exc:
                self.close()
                raise RunError(f"cannot spill a sorted run: {exc}") from None
            self.runs.append(path)
            return
        self.buffer.sort(key=_TIME)
        self._write_run(iter(self.buffer))
        self.buffer = []

    def _next_run(self) -> str:
        """The path of the next run file (in this sort's directory, made at the first)."""
        if self.dir is None:
            self.dir = _make_dir(self.temp_dir)
            atexit.register(self.close)
        path = os.path.join(self.dir, f"run-{self.written:05d}")
        self.written += 1
        return path

    def _write_run(self, events: Iterator[Event]) -> None:
        """Write sorted events as the next run, in frames."""
        path = self._next_run()
        try:
            with open(path, "wb") as f:
                while frame := list(islice(events, _FRAME)):
                    data = pack_events(frame)
                    f.write(_LEN.pack(len(data)))
                    f.write(data)
        except OSError as exc:
            self.close()
            raise RunError(f"cannot spill a sorted run to {path}: {exc.strerror}") from None
        for done in self.files:
            done.close()
        self.files = []
        self.runs.append(path)


def _block(events: list[Event] | Any) -> Any:
    """Events as the native core's ``EventBlock``."""
    if isinstance(events, list):
        assert NATIVE is not None
        return NATIVE.block_from_bytes(NATIVE.pack_events(events))
    return events


def _frames(f: BinaryIO) -> Iterator[list[Event]]:
    while header := f.read(_LEN.size):
        (size,) = _LEN.unpack(header)
        yield unpack_events(f.read(size))


def merge_runs(runs: list[Iterator[list[Event]]]) -> Iterator[list[Event]]:
    """Merge sorted runs, each given as its frames (non-empty sorted lists), into sorted
    chunks, a frame's worth at a time: every event up to the smallest last event of the
    runs' current frames can go (no later frame holds a smaller one), and sorting those
    few sorted pieces together is a merge done in C by ``list.sort``. Events are unique
    (``(time, input, line, ...)``), so nothing equal is left behind.

    >>> runs = [[[(1,), (4,)], [(6,), (9,)]], [[(2,), (3,)], [(5,), (7,), (8,)]]]
    >>> [[t for (t,) in chunk] for chunk in merge_runs([iter(r) for r in runs])]
    [[1, 2, 3], [4], [5, 6, 7, 8], [9]]
    """
    heads: list[list[Event]] = []
    live: list[Iterator[list[Event]]] = []
    for run in runs:
        frame = next(run, None)
        if frame:
            heads.append(frame)
            live.append(run)
    while heads:
        bound = min(head[-1] for head in heads)
        out: list[Event] = []
        for i, head in enumerate(heads):
            cut = bisect_right(head, bound)
            if cut:
                out += head[:cut]
                heads[i] = head[cut:]
        out.sort(key=_TIME)  # stable: the pieces are in run order, so in input order
        yield out
        for i in range(len(heads) - 1, -1, -1):
            if not heads[i]:
                frame = next(live[i], None)
                if frame:
                    heads[i] = frame
                else:
                    del heads[i], live[i]


def _make_dir(temp_dir: str | None) -> str:
    """A fresh directory for this process's runs, after removing those left by
    processes that are gone (killed mid-sort)."""
    _more_files()
    parent = Path(temp_dir or tempfile.gettempdir())
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for old in parent.glob(f"{_PREFIX}*"):
            pid = old.name[len(_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        return tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=parent)
    except OSError as exc:
        raise RunError(f"cannot make a directory for sorted runs in {parent}: {exc}") from None


def _more_files() -> None:
    """Let this process open as many files as it may: many inputs sorting at once each
    merge up to :data:`FAN_IN` runs (the soft limit is often 1024, the hard far more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
