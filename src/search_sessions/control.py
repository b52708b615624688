"""Run control shared by every layer: the stop flag, the failure note, live counters.

Plain Python, importing nothing of the package, so the connectors and dataflow
steps that set and read these never import the runtime that owns the run.
Wall-clock progress lines and the Prometheus endpoint read :data:`METRICS`
(see :mod:`search_sessions.runtime.progress`).

>>> m = Metrics()
>>> m.events_in += 10; m.searches_out += 4; m.clicked_out += 1
>>> m.ctr
0.25
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .core.time import FOREVER, NEVER

STOP = threading.Event()
"""Set on SIGINT/SIGTERM: inputs end where they are, shards keep their state (not
flushed as end of input), sinks flush, and the last snapshot holds it all."""

JOINED = threading.Event()
"""Set once this process's workers build the dataflow: every process of the cluster
has connected (Bytewax connects them all before building)."""

FAILURE: list[str] = []
"""Why this process stopped with an error, when we know better than Bytewax's panic."""

GUESSED_WRONG: list[tuple[int, tuple[int, int]]] = []
"""``--order auto`` streaming an input on the guess that it is in order (see
``LinePartition.sniff``): ``(input, (line, how much older))`` of one found out of order.
The inputs then end where they are and the shards keep their sessions, as on a stop;
the run starts again afresh, that input sorted."""


@dataclass
class Metrics:
    """Counters of one process (every worker thread in it adds to the same one)."""

    events_in: int = 0
    invalid: int = 0
    late: int = 0
    searches_out: int = 0
    clicked_out: int = 0
    sessions_out: int = 0
    open_sessions: dict[int, int] = field(default_factory=dict)  # per shard
    watermark: dict[int, int] = field(default_factory=dict)  # per shard, event-time us

    def reset(self) -> None:
        """Back to zero (a run started again in the same process)."""
        fresh = Metrics()
        for name in vars(fresh):
            setattr(self, name, getattr(fresh, name))

    @property
    def ctr(self) -> float | None:
        return self.clicked_out / self.searches_out if self.searches_out else None

    @property
    def open_total(self) -> int:
        return sum(self.open_sessions.values())

    @property
    def low_watermark(self) -> int | None:
        marks = [w for w in self.watermark.values() if w not in (NEVER, FOREVER)]
        return min(marks) if marks else None


METRICS = Metrics()
"""This process's metrics."""
