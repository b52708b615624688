"""Run configuration: one frozen, validated object built by the CLI.

>>> cfg = Config(inputs=("-",), gap=parse_duration("30m"))
>>> cfg.gap_us
1800000000
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Read a duration such as ``90s``, ``30m``, ``12h``, ``1d`` (bare numbers are seconds).

    >>> parse_duration("90s")
    datetime.timedelta(seconds=90)
    """
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 12h, 1d)")
    return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"])


def to_us(d: timedelta) -> int:
    """A timedelta in whole microseconds, the core's unit of time."""
    return d // timedelta(microseconds=1)


@dataclass(frozen=True)
class Config:
    """Everything a run needs; the CLI builds it, the flow and core read it.

    ``inputs`` are paths (files or directories) or ``-`` for standard input.
    Output fields are paths, or ``None`` for no such output (``searches`` is
    written to standard output when it is ``-``).

    ``parallel_writes``: every worker appends to the file outputs of the shards
    (searches, sessions, late); :func:`~search_sessions.execute.run` sets it for
    a run on one host without a recovery store; otherwise one
    worker writes each file.
    """

    inputs: tuple[str, ...]
    gap: timedelta = timedelta(minutes=30)
    lateness: timedelta = timedelta(minutes=1)
    max_session: timedelta = timedelta(hours=12)
    long_click: timedelta = timedelta(seconds=30)
    searches: str | None = "-"
    sessions: str | None = None
    dead_letter: str | None = None
    late: str | None = None
    stats_file: str | None = None
    workers: int = 1
    processes: int = 1
    strict: bool = False
    rollups: str | None = None
    rollup_windows: tuple[tuple[str, int], ...] = ()
    recovery_dir: str | None = None
    idle_timeout: timedelta | None = None
    progress: bool = True
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    tail: bool = False
    stop_at_end: bool = False
    snapshot_interval: timedelta = timedelta(seconds=1)
    parallel_writes: bool = False
    partitions: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("at least one input is needed")
        for name, value in (("gap", self.gap), ("max_session", self.max_session)):
            if value <= timedelta(0):
                raise ValueError(f"{name} must be positive, got {value}")
        if self.lateness < timedelta(0):
            raise ValueError(f"lateness must not be negative, got {self.lateness}")
        if self.workers < 1 or self.processes < 1:
            raise ValueError("workers and processes must be at least 1")
        if self.rollups is not None and not self.rollup_windows:
            raise ValueError("--rollups needs at least one --rollup window length")
        if self.snapshot_interval <= timedelta(0):
            raise ValueError("snapshot_interval must be positive")
        if not self.partitions:
            object.__setattr__(self, "partitions", expand_inputs(self.inputs))

    @property
    def gap_us(self) -> int:
        return to_us(self.gap)

    @property
    def lateness_us(self) -> int:
        return to_us(self.lateness)

    @property
    def max_session_us(self) -> int:
        return to_us(self.max_session)

    @property
    def long_click_us(self) -> int:
        return to_us(self.long_click)


INPUT_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz", ".gz")


def expand_inputs(inputs: tuple[str, ...]) -> tuple[str, ...]:
    """Input partitions in a fixed order: arguments in order, a directory's files sorted.

    The order matters: ties in event time are broken by (partition, line),
    so the same arguments always give the same sessions.
    """
    parts: list[str] = []
    for item in inputs:
        if item == "-":
            parts.append("-")
            continue
        if item.startswith("kafka://"):
            from .kafka import list_partitions

            parts.extend(list_partitions(item))
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(
                str(p) for p in path.rglob("*") if p.is_file() and p.name.endswith(INPUT_SUFFIXES)
            )
            if not found:
                raise ValueError(f"{item}: directory holds no .jsonl, .json or .gz files")
            parts.extend(found)
        elif path.is_file():
            parts.append(str(path))
        else:
            raise ValueError(f"{item}: no such file or directory")
    if len(set(parts)) != len(parts):
        raise ValueError("the same input is named twice")
    return tuple(parts)
