"""Shards and their routing: one shard per worker, each on its own worker.

Bytewax sends a keyed item to worker ``seahash(key) % workers``. With a handful
of shard keys that hash lands unevenly, so a run with W workers uses the W keys
of :data:`~.routes_table.ROUTED_SHARDS` (made by ``tools/probe_routes.py``),
which Bytewax routes one to each worker: shard *i* runs on worker *i*.

>>> shard_keys(2)
['shard-4', 'shard-0']
"""

from __future__ import annotations

from ..errors import ConfigError
from .routes_table import BYTEWAX_VERSION, ROUTED_SHARDS


def shard_keys(n_workers: int) -> list[str]:
    """One shard key per worker, chosen so Bytewax routes key *i* to worker *i*."""
    picks = ROUTED_SHARDS.get(n_workers)
    if picks is None:
        raise ConfigError(
            f"{n_workers} workers in all: the routing table (for Bytewax {BYTEWAX_VERSION}) "
            f"goes up to {max(ROUTED_SHARDS)}"
        )
    return [f"shard-{i}" for i in picks]


def is_shard_key(key: str) -> bool:
    """Whether an item's key names a shard (not an output or counters)."""
    return key.startswith("shard-")
