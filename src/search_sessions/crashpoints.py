"""Crash points: a kill -9 at a moment chosen from the job's own state, for crash tests.

In the spirit of FoundationDB's simulation and of failpoints (TiKV's ``fail-rs``): the
crash harness (``tests/crash``) sets ``SEARCH_SESSIONS_CRASH`` and the process kills
itself, its process group or its launcher with SIGKILL when the job reaches that
state, not after a guessed sleep, so a test's verdict does not depend on the
machine's load. Unset (always, outside crash tests) every hook is one ``is None``
test.

``SEARCH_SESSIONS_CRASH=POINT:N[:TARGET][@PROCESS]``

========== ==========================================================================
POINT      the moment
========== ==========================================================================
commit     the recovery store has committed epoch ``N``
snapshot   inside the ``N``-th snapshot of a shard's state (while snapshots are taken)
input-end  the ``N``-th input (file, lane, partition) of this process has been read
           to its end, before that is passed on (between two input files)
sort-run   the ``N``-th block of an input being sorted is added to its sorted runs
merge      the ``N``-th batch of a sorted input's merge is about to be sent
flush      the ``N``-th step of the final flush: a shard has made its final records,
           or an output block was written after that
========== ==========================================================================

``TARGET``: ``self`` (this process, the default), ``group`` (this process's group:
a whole local run) or ``launcher`` (the local cluster's launcher, which takes its
processes with it; a process without one kills itself). ``@PROCESS``: only that
cluster process fires (default: every process may). Until a ``commit`` or
``snapshot`` point has fired, inputs hold at their end (:func:`hold`), so the job
cannot finish before the kill, however fast it runs.
When it fires, the point and what it saw are appended to the file named by
``SEARCH_SESSIONS_CRASH_LOG``, if set.

>>> parse("merge:3:group@1")
Crash(point='merge', at=3, target='group', process=1)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Final

ENV: Final = "SEARCH_SESSIONS_CRASH"
LOG_ENV: Final = "SEARCH_SESSIONS_CRASH_LOG"
POINTS: Final = ("commit", "snapshot", "input-end", "sort-run", "merge", "flush")
TARGETS: Final = ("self", "group", "launcher")
_HOLDING: Final = ("commit", "snapshot")
_POLL_S: Final = 0.005


@dataclass
class Crash:
    """An armed crash point (see the module's docstring)."""

    point: str
    at: int
    target: str = "self"
    process: int | None = None
    count: int = field(default=0, repr=False, compare=False)


def parse(text: str) -> Crash:
    """``POINT:N[:TARGET][@PROCESS]`` as a :class:`Crash`; ValueError when malformed."""
    spec, _, proc = text.partition("@")
    point, _, rest = spec.partition(":")
    at_text, _, target = rest.partition(":")
    if point not in POINTS:
        raise ValueError(f"{ENV}: unknown point {point!r} (one of {', '.join(POINTS)})")
    if (target or "self") not in TARGETS:
        raise ValueError(f"{ENV}: unknown target {target!r} (one of {', '.join(TARGETS)})")
    return Crash(point, int(at_text), target or "self", int(proc) if proc else None)


_ARMED: Crash | None = parse(os.environ[ENV]) if os.environ.get(ENV) else None
_LOCK = threading.Lock()
_state: dict[str, Any] = {
    "process": 0,
    "recovery": "",
    "launcher": None,
    "last_poll": 0.0,
    "flushing": False,
}


def armed() -> bool:
    return _ARMED is not None


def configure(process_id: int | None, recovery_dir: str | None) -> None:
    """Tell the crash points which cluster process this is and where the store is."""
    _state["process"] = process_id or 0
    _state["recovery"] = recovery_dir or ""
    if _ARMED is not None and _ARMED.point == "commit" and recovery_dir:
        _watch_commits(recovery_dir)


def _watch_commits(recovery_dir: str) -> None:
    """Read the store's committed epoch in a child process, never in this one: SQLite's
    POSIX locks are per process, and a second SQLite library (Python's, beside the one
    in Bytewax) closing the file drops Bytewax's locks (seen: SIGBUS on the -shm map)."""
    code = (
        "import os, sys, time\n"
        "from search_sessions.crashpoints import committed_epoch\n"
        "parent, last = os.getppid(), -1\n"
        "while os.getppid() == parent:\n"
        "    e = committed_epoch(sys.argv[1])\n"
        "    if e != last:\n"
        "        print(e, flush=True); last = e\n"
        "    time.sleep(0.005)\n"
    )
    import subprocess  # (here: a run imports this module, a crash test runs this)

    proc = subprocess.Popen(
        [sys.executable, "-c", code, recovery_dir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        # Not this process's standard error: the stream filter behind it would wait for
        # the watcher, which waits for this process to go.
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    _state["watcher"] = proc


def launched_by(pid: int) -> None:
    """This process is one of a local cluster started by ``pid`` (the ``launcher``)."""
    _state["launcher"] = pid


def hit(point: str, detail: str = "") -> None:
    """The job has reached ``point`` once more: kill when that is the armed count."""
    crash = _ARMED
    if crash is None or crash.point != point:
        return
    with _LOCK:
        crash.count += 1
        if crash.count >= crash.at:
            _fire(crash, f"{point} #{crash.count}" + (f" ({detail})" if detail else ""))


def flushing() -> None:
    """A shard has made its final records (one ``flush``); output blocks written from
    now on count for ``flush`` too."""
    _state["flushing"] = True
    hit("flush", "a shard's final records made")


def wrote() -> None:
    """An output block was written (counted for ``flush`` once the input has ended)."""
    if _ARMED is not None and _state["flushing"]:
        hit("flush")


def hold() -> bool:
    """Whether an input at its end must wait (a time-driven point has not fired yet):
    polls the ``commit`` point too. Inputs call it instead of ending."""
    crash = _ARMED
    if crash is None or crash.point not in _HOLDING:
        return False
    if crash.point == "commit":
        _poll_commit(crash)
    return True


def poll() -> None:
    """Check the ``commit`` point (inputs call it before each block)."""
    crash = _ARMED
    if crash is not None and crash.point == "commit":
        _poll_commit(crash)


def _poll_commit(crash: Crash) -> None:
    now = time.monotonic()
    if now - float(_state["last_poll"]) < _POLL_S:
        return
    _state["last_poll"] = now
    watcher = _state.get("watcher")
    if watcher is None:
        return
    try:
        seen = os.read(watcher.stdout.fileno(), 4096).split()
    except BlockingIOError:
        return
    epoch = int(seen[-1]) if seen else 0
    if epoch >= crash.at:
        with _LOCK:
            _fire(crash, f"commit: epoch {epoch} committed")


def committed_epoch(recovery_dir: str) -> int:
    """The epoch up to which Bytewax has committed snapshots in ``recovery_dir`` (0:
    none, or no store); the schema of Bytewax 0.21's store. Not to be called in a
    process that runs Bytewax on that store (see :func:`_watch_commits`)."""
    if not recovery_dir:
        return 0
    import sqlite3  # (here: only the watcher's process reads the store)

    epochs = []
    for name in sorted(os.listdir(recovery_dir)):
        if not (name.startswith("part-") and name.endswith(".sqlite3")):
            continue
        uri = f"file:{os.path.join(recovery_dir, name)}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=0.1)) as db:
                row = db.execute("SELECT MIN(commit_epoch) FROM commits").fetchone()
        except sqlite3.Error:
            return 0
        epochs.append(int(row[0] or 0))
    return min(epochs) if epochs else 0


def _fire(crash: Crash, what: str) -> None:
    if crash.process is not None and crash.process != _state["process"]:
        return
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} process {_state['process']}: {what} -> {crash.target}\n")
            f.flush()
            os.fsync(f.fileno())
    if crash.target == "group":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    elif crash.target == "launcher" and _state["launcher"] is not None:
        os.kill(_state["launcher"], signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


class _Hooks:
    """The hooks under one name, for modules that import ``CRASH as crashpoints``
    (``from .. import crashpoints`` would load the package's ``__init__``)."""

    hit = staticmethod(hit)
    hold = staticmethod(hold)
    poll = staticmethod(poll)
    wrote = staticmethod(wrote)
    flushing = staticmethod(flushing)
    configure = staticmethod(configure)
    launched_by = staticmethod(launched_by)


CRASH: Final = _Hooks()
