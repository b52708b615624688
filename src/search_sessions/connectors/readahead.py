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

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

from ..config import Config

_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


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


def submit(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """``fn(*args)`` on a reader thread (two in a process, made at the first call)."""
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=2, thread_name_prefix="read-ahead"))
    return _POOL[0].submit(fn, *args)


class Ahead(NamedTuple):
    """One block being read and decoded: its line positions (when not line numbers and
    known before it is read), the future of ``(whether it had data, whether the input
    ended with it, the block decoded)``, and the partition's ``(offset, seq)`` before it
    (its snapshot's position meanwhile)."""

    positions: list[int] | None
    done: Future[Any]
    before: tuple[int, int]
