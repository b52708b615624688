"""Reading ahead: a file partition's next block, decoded on a thread of its own.

With the native core, decoding a block is about a third of a run's time, and it
runs without the GIL (as do the shards' sessionizing and encoding). So while the
worker runs block *n* through the shards and the sinks, a reader thread decodes
block *n + 1*: one process keeps two cores busy, as a database's scan and
aggregation threads do.

What stays as it was: blocks are decoded in order and emitted in order, each with the
partition's state after the one before it (its line numbers and newest event time),
so the events, their routing and every output are the same as without reading ahead
(``tests/test_cores.py`` compares them). A snapshot taken while a block is read ahead
holds the partition's position before it: a resumed run reads that block again.

It is on where the process has a spare core: more cores than the workers of all the
processes on this host (``Config.read_ahead``: ``None`` decides so, ``True`` and
``False`` force it). Two processes on two cores do not read ahead.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Generic, NamedTuple, TypeVar

from ..config import Config

T = TypeVar("T")

_PENDING, _RUNNING, _DONE, _CANCELLED = range(4)


def reads_ahead(cfg: Config) -> bool:
    """Whether file partitions read ahead in this run (see the module's doc)."""
    if cfg.read_ahead is not None:
        return cfg.read_ahead
    return host_cores() > cfg.workers * cfg.processes


def host_cores() -> int:
    """The cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Task(Generic[T]):
    """A call run on a reader thread: the part of ``concurrent.futures.Future`` used here
    (which would import ``concurrent.futures`` and ``logging``: 3 ms and 1-2 MB a
    process, for two threads and a lock)."""

    __slots__ = ("_call", "_error", "_finished", "_state", "_value")

    def __init__(self, call: Callable[[], T]) -> None:
        self._call: Callable[[], T] | None = call
        self._state = _PENDING
        self._finished = threading.Lock()
        self._finished.acquire()  # released once it has run or been cancelled
        self._value: T | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        with _LOCK:
            if self._state != _PENDING:
                return
            self._state = _RUNNING
        call, self._call = self._call, None
        assert call is not None
        try:
            self._value = call()
        except BaseException as exc:  # (as a Future: the caller's result() raises it)
            self._error = exc
        self._state = _DONE
        self._finished.release()

    def cancel(self) -> bool:
        """Cancel it if it has not started; whether it is cancelled."""
        with _LOCK:
            if self._state == _PENDING:
                self._state, self._call = _CANCELLED, None
                self._finished.release()
            return self._state == _CANCELLED

    def done(self) -> bool:
        return self._state in (_DONE, _CANCELLED)

    def exception(self) -> BaseException | None:
        """Wait for it; its error (``None`` when it returned or was cancelled)."""
        with self._finished:
            return self._error

    def result(self) -> T:
        """Wait for it; its value, or its error raised."""
        with self._finished:
            if self._error is not None:
                raise self._error
            if self._state == _CANCELLED:
                raise RuntimeError("a cancelled read-ahead task has no result")
            return self._value  # type: ignore[return-value]


_LOCK = threading.Lock()
_QUEUE: SimpleQueue[Task[Any] | None] = SimpleQueue()
_THREADS: list[threading.Thread] = []
_IDLE = threading.Semaphore(0)
"""Released by a reader as it finishes a task: taken by a task it can run next."""
_READERS = 2


def _reader(queue: SimpleQueue[Task[Any] | None], idle: threading.Semaphore) -> None:
    while (task := queue.get()) is not None:
        task._run()
        del task  # (its value is the caller's: not kept alive here while idle)
        idle.release()


def _stop_readers() -> None:
    """At exit, before the interpreter finalizes: let a task running in the native core
    finish (a thread taking the GIL back after finalization would be ended mid-call)."""
    for _ in _THREADS:
        _QUEUE.put(None)
    for t in _THREADS:
        t.join()
    _THREADS.clear()


def _forget_readers() -> None:
    """In a forked child, which has none of its parent's threads (nor should it share
    the state of their queue)."""
    global _QUEUE, _IDLE
    _QUEUE, _IDLE = SimpleQueue(), threading.Semaphore(0)
    _THREADS.clear()


os.register_at_fork(after_in_child=_forget_readers)


def submit(fn: Callable[..., T], *args: Any) -> Task[T]:
    """``fn(*args)`` on a reader thread (at most two in a process: the first made at the
    first call, the second when a task finds the first busy)."""
    task: Task[T] = Task(lambda: fn(*args))
    _QUEUE.put(task)
    # A second thread only when the first is busy (as ThreadPoolExecutor): one partition
    # reading ahead keeps to one thread, whose allocator's memory stays its own.
    if not _IDLE.acquire(blocking=False):
        with _LOCK:
            if len(_THREADS) < _READERS:
                t = threading.Thread(
                    target=_reader,
                    args=(_QUEUE, _IDLE),
                    name=f"read-ahead_{len(_THREADS)}",
                    daemon=True,
                )
                t.start()
                _THREADS.append(t)
    return task


atexit.register(_stop_readers)


class Ahead(NamedTuple):
    """One block being read and decoded: its line positions (when not line numbers and
    known before it is read), the future of ``(whether it had data, whether the input
    ended with it, the block decoded)``, and the partition's ``(offset, seq)`` before it
    (its snapshot's position meanwhile)."""

    positions: list[int] | None
    done: Task[Any]
    before: tuple[int, int]
