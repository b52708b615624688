"""The source of a run: every input partition of the config, as one Bytewax source."""

from __future__ import annotations

from bytewax.inputs import FixedPartitionedSource

from ..config import Config
from ..control import JOINED
from .base import Alignment, LinePartition, OrderScans, PartState, SourceItem
from .files import read_partitions
from .registry import open_partition, resolve_inputs


class EventSource(FixedPartitionedSource[SourceItem, PartState]):
    """Every input file (and ``-``, and Kafka partition) of the config, a plain file
    in lanes when there are several workers (see :func:`read_partitions`).

    >>> from search_sessions.config import Config
    >>> EventSource(Config(inputs=("-",)), ["shard-0"]).list_parts()
    ['00000 -']
    """

    def __init__(
        self,
        cfg: Config,
        shard_keys: list[str],
        remote: frozenset[int] = frozenset(),
    ) -> None:
        """``remote``: the shards in other processes; their events travel packed."""
        cfg = resolve_inputs(cfg)
        self.cfg = cfg
        self.shard_keys = shard_keys
        self.remote = remote
        self.alignment = Alignment(cfg.gap_us + cfg.lateness_us)
        self.scans = OrderScans(cfg.scanned, cfg.prescans)
        self.parts = read_partitions(cfg, len(shard_keys), cfg.block_bytes)
        self.by_name = {p.name: (place, p) for place, p in enumerate(self.parts)}

    def list_parts(self) -> list[str]:
        JOINED.set()  # a worker builds the dataflow: the cluster has formed
        return [p.name for p in self.parts]

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartState | None
    ) -> LinePartition:
        place, rp = self.by_name[for_part]
        partition = open_partition(
            self.cfg,
            rp,
            place,
            self.shard_keys,
            resume=resume_state,
            remote=self.remote,
            scans=self.scans,
        )
        if partition.aligned and not partition.ended:
            # An input that had ended before a restart is not read again: were it to
            # join, the others would wait for it forever.
            partition.alignment = self.alignment
            partition.sniff()
            if not partition.sorts:
                # A sorted input's first line is not its first event.
                partition.find_first_time()
            self.alignment.join(place, partition.aligned_at)
        return partition
