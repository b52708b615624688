"""Shards and their routing: one shard per worker, each on its own worker.

Bytewax sends a keyed item to worker ``seahash(key) % workers``. With a handful
of shard keys that hash lands unevenly, so a run with W workers uses W keys that
Bytewax routes one to each worker: shard *i* runs on worker *i*. They come from
:data:`~.routes_table.ROUTED_SHARDS` (made by ``tools/probe_routes.py``) or,
beyond it or on another Bytewax version, from probing Bytewax at start-up
(:mod:`.probe`, the code that made the table).

>>> shard_keys(2)
['shard-4', 'shard-0']
"""

from __future__ import annotations

import functools

from ..errors import ConfigError
from .probe import KEY_PREFIX, ProbeError, bytewax_version, routed_shards_in_subprocess
from .routes_table import BYTEWAX_VERSION, ROUTED_SHARDS

REGENERATE = "make routes (python tools/probe_routes.py --max-workers N --output ...)"


def shard_keys(n_workers: int) -> list[str]:
    """One shard key per worker, chosen so Bytewax routes key *i* to worker *i*.

    Every process of a cluster calls this and gets the same keys: the table is
    fixed, and the probe's answer depends only on Bytewax's hash.
    """
    return [f"{KEY_PREFIX}{i}" for i in _routed(n_workers)]


def _installed_bytewax() -> str | None:
    try:
        return bytewax_version()
    except ModuleNotFoundError:  # PackageNotFoundError: Bytewax on sys.path, not installed
        return None


@functools.cache  # a failure raises, so it is not cached and the next call retries
def _routed(n_workers: int) -> tuple[int, ...]:
    if n_workers < 1:
        raise ConfigError(f"at least one worker is needed, got {n_workers}")
    installed = _installed_bytewax()
    picks = ROUTED_SHARDS.get(n_workers)
    if picks is not None and installed == BYTEWAX_VERSION:
        return picks
    # Never fall back to more shards than workers (or a modulo of the table):
    # two shards on a worker, or one worker with none, breaks shard i == worker i.
    try:
        return routed_shards_in_subprocess(n_workers)
    except ProbeError as exc:
        raise ConfigError(_unsupported(n_workers, installed, exc)) from exc


def _unsupported(n_workers: int, installed: str | None, exc: ProbeError) -> str:
    """What is supported, what failed, and what to do about it."""
    top = max(ROUTED_SHARDS)
    if installed == BYTEWAX_VERSION:
        advice = f"use at most {top} workers, or extend the table"
    else:
        advice = f"install Bytewax {BYTEWAX_VERSION}, or regenerate the table for {installed}"
    return (
        f"cannot choose shard keys for {n_workers} workers: the routing table covers "
        f"1..{top} workers on Bytewax {BYTEWAX_VERSION} (installed: {installed or 'unknown'}), "
        f"and probing Bytewax at start-up failed ({exc}); {advice} with {REGENERATE}"
    )


def is_shard_key(key: str) -> bool:
    """Whether an item's key names a shard (not an output or counters)."""
    return key.startswith(KEY_PREFIX)
