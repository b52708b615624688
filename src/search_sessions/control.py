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

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

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
``LinePartition.sniff``): ``(input, (line, how much older))`` of one found out of order
in this process. The inputs then end where they are and the shards keep their
sessions, as on a stop; the run starts again afresh, that input sorted."""


def guessed_wrong(marker: str | None) -> bool:
    """Whether an input streamed on a guess of its order was found out of order, in this
    process or, through the ``marker`` file (``Config.guess_marker``), in another
    process of a local cluster."""
    return bool(GUESSED_WRONG) or (marker is not None and os.path.exists(marker))


def say_guessed_wrong(marker: str | None, found: tuple[int, tuple[int, int]]) -> None:
    """Note an input found out of order (see :data:`GUESSED_WRONG`), for every process."""
    GUESSED_WRONG.append(found)
    if marker is not None:
        with open(marker, "a") as f:  # (one short append: lines of several processes)
            f.write(json.dumps([found[0], *found[1]]) + "\n")


def say_block_ranges(marker: str | None, input_index: int, ranges: list[Any]) -> None:
    """A lane guessing the order of its file, at its end: ``(first line, earliest time,
    latest time)`` of its blocks, checked against the other lanes' once the run is done
    (:func:`lanes_out_of_order`)."""
    if marker is not None:
        with open(f"{marker}.ranges", "a") as f:  # (one short append, as above)
            f.write(json.dumps([input_index, ranges]) + "\n")


def lanes_out_of_order(marker: str | None, lateness_us: int) -> list[int]:
    """The inputs read in lanes whose blocks, in the file's order, hold a time older
    than one of an earlier block by more than ``lateness_us`` (each lane checked its own
    lines as it read them: this is the rest of the pre-scan's test)."""
    if marker is None or not os.path.exists(f"{marker}.ranges"):
        return []
    by_input: dict[int, list[Any]] = {}
    with open(f"{marker}.ranges") as f:
        for line in f:
            i, ranges = json.loads(line)
            by_input.setdefault(i, []).extend(ranges)
    out = []
    for i, blocks in sorted(by_input.items()):
        newest = NEVER
        for _, earliest, latest in sorted(blocks):
            if earliest < newest - lateness_us:
                out.append(i)
                break
            newest = max(newest, latest)
    return out


def found_wrong(marker: str | None) -> tuple[tuple[int, tuple[int, int]], ...]:
    """The inputs found out of order (see :func:`say_guessed_wrong`), once each."""
    found = dict(GUESSED_WRONG)
    if marker is not None and os.path.exists(marker):
        with open(marker) as f:
            for line in f:
                i, at, age = json.loads(line)
                found.setdefault(i, (at, age))
    return tuple(sorted(found.items()))


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
