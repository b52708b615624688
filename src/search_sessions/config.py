"""Run configuration: one frozen, validated object built by the CLI.

Pure data: building a :class:`Config` checks its values and does no I/O (the
input partitions are listed by :func:`search_sessions.connectors.registry.resolve_inputs`
when a run starts). It round-trips through JSON (:func:`config_to_json`,
:func:`config_from_json`), which is how cluster processes and
``python -m bytewax.run`` get it.

>>> cfg = Config(inputs=("-",), gap=parse_duration("30m"))
>>> cfg.gap_us
1800000000
>>> config_from_json(config_to_json(cfg)) == cfg
True
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from .core.layout import InputLayout, type_names
from .core.searches import Rules
from .core.time import to_us
from .errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION_DAYS: Final = 10_000_000
"""The longest duration (about 27,000 years): event times and durations are added in
64-bit microseconds by the native core (years 1-9999 take 2.5e17 of their 9.2e18)."""


def parse_duration(text: str) -> timedelta:
    """Read a duration such as ``90s``, ``30m``, ``12h``, ``1d`` (bare numbers are seconds).

    >>> parse_duration("90s")
    datetime.timedelta(seconds=90)
    """
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 90s, 30m, 12h, 1d)")
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"]
    if seconds > MAX_DURATION_DAYS * 86_400:
        raise ConfigError(f"duration {text!r} is too long: at most {MAX_DURATION_DAYS}d")
    return timedelta(seconds=seconds)


def parse_rollup_window(text: str) -> tuple[str, int]:
    """A rollup window length, named as given, in whole seconds that divide a day.

    >>> parse_rollup_window("1h")
    ('1h', 3600)
    """
    seconds = parse_duration(text).total_seconds()
    if seconds < 1 or seconds != int(seconds) or (86_400 % seconds and seconds % 86_400):
        raise ConfigError(
            f"rollup window {text!r}: use whole seconds that divide a day (1m, 1h, 1d)"
        )
    return text, int(seconds)


MAX_WORKERS: Final = 256
"""The most workers a run may have in all its processes: beyond the routing table
(:mod:`~search_sessions.dataflow.routing`), Bytewax's routing is probed with that many
threads, which takes 2 s for 128, 10 s for 256, and 40 s and 1.2 GB for 400 (timely
connects every worker to every other)."""

ORDERS = ("auto", "time", "sort")
FORMATS = ("auto", "jsonl", "csv", "tsv", "aol", "parquet", "trec")
TIME_UNITS = ("auto", "s", "ms", "us", "ns")
FIELD_NAMES = (
    "type",
    "user",
    "time",
    "query",
    "items",
    "item",
    "rank",
    "search_id",
    "value",
    "currency",
    "kind",
)
"""The input fields ``--field`` can rename."""
TYPE_NAMES = ("app_open", "search", "results", "click", "app_close", "conversion")
"""The event types ``--type`` can give other names."""


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{what} {value!r}: use one of {', '.join(choices)}")


def parse_mapping(items: tuple[str, ...] | list[str], what: str) -> tuple[tuple[str, str], ...]:
    """``NAME=VALUE`` pairs as given to ``--field`` or ``--type``.

    >>> parse_mapping(["user=anon_id", "time=ts"], "--field")
    (('user', 'anon_id'), ('time', 'ts'))
    """
    out = []
    for item in items:
        name, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"{what} {item!r}: use NAME=VALUE, e.g. {what} user=anon_id")
        out.append((name.strip(), value.strip()))
    return tuple(out)


def parse_size(text: str) -> int:
    """Bytes from ``512MB``, ``2GB``, ``300M``, ``1g`` or a bare number of bytes.

    >>> parse_size("256MB"), parse_size("1g")
    (268435456, 1073741824)
    """
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", text, re.IGNORECASE)
    if not m:
        raise ConfigError(f"not a size: {text!r} (use e.g. 256MB, 2GB)")
    scale = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * scale)


@dataclass(frozen=True)
class Config:
    """Everything a run needs; the CLI builds it, the flow and core read it.

    ``inputs`` are paths (files or directories), ``-`` for standard input, or
    Kafka topics; ``partitions`` lists what they expand to (a directory's
    files, a topic's partitions), filled in when a run starts.
    Output fields are paths, or ``None`` for no such output (``searches`` is
    written to standard output when it is ``-``).

    ``parallel_writes``: every worker appends to the file outputs of the shards
    (searches, sessions, late); :func:`~search_sessions.runtime.run.run` sets it for
    a run on one host without a recovery store; otherwise one
    worker writes each file.
    """

    inputs: tuple[str, ...]
    gap: timedelta = timedelta(minutes=30)
    lateness: timedelta = timedelta(minutes=1)
    max_session: timedelta = timedelta(hours=12)
    long_click: timedelta = timedelta(seconds=30)
    short_click: timedelta = timedelta(seconds=10)
    """A click followed by another event sooner than this is a short click (a pogo-stick)."""
    collapse_typeahead: timedelta | None = None
    """Keystroke requests at most this far apart join one search intent (``None``: off)."""
    dimensions: tuple[str, ...] = ()
    """Fields of the events copied into the records and rolled up (``--dimension``)."""
    currency: str | None = None
    """The one currency conversions may have (``None``: not checked)."""
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
    block_bytes: int = 1 << 19
    """How much of a file a partition reads and decodes at a time."""
    read_ahead: bool | None = None
    """Whether file partitions decode their next block on a reader thread meanwhile (the
    native core; ``None``: where the host has more cores than the run has workers; see
    :mod:`~search_sessions.connectors.readahead`)."""
    scanned: tuple[tuple[int, tuple[int, int] | None], ...] = ()
    """``--order auto``: pre-scans done by a local cluster's launcher, ``(input, where it
    goes out of order or None)`` (see
    :func:`~search_sessions.connectors.files.scan_lanes_first`)."""
    prescans: tuple[tuple[int, Any], ...] = field(default=(), compare=False, repr=False)
    """``--order auto``, one process: pre-scans begun before the dataflow starts, ``(input,
    native scan job)`` (see :func:`~search_sessions.connectors.files.start_scans`; not
    part of the job's JSON)."""
    guess_order: bool | None = None
    """``--order auto``: whether files of lines are streamed on the guess that they
    are in order, the run starting again with one sorted if it is not, instead of
    pre-scanned (see ``LinePartition.sniff``). ``None``: where the run can start again,
    as ``run`` finds (:func:`~search_sessions.connectors.inputs.guesses_order`), which
    sets it ``True`` for the partitions; ``False``: never."""
    guess_marker: str | None = None
    """Where the processes of a run guessing the order of its inputs note one found out
    of order (see :func:`~search_sessions.control.say_guessed_wrong`); set by ``run``."""
    emptying: Any = field(default=None, compare=False, repr=False)
    """A thread emptying the output files of a fresh run while the dataflow starts (see
    :func:`~search_sessions.connectors.inputs.begin_emptying`; not part of the job's
    JSON)."""
    order: str = "auto"
    """``time`` (a watermark with lateness), ``sort`` (bounded inputs sorted by event time
    first) or ``auto`` (sort a file whose pre-scanned event times are out of order, and
    standard input)."""
    sort_memory: int = 256 << 20
    """Bytes of events a process holds while sorting before it spills a sorted run."""
    temp_dir: str | None = None
    """Where sorted runs are spilled (the system's temporary directory by default)."""
    input_format: str = "auto"
    """``jsonl``, ``csv``, ``tsv``, ``aol``, ``parquet``, ``trec`` (the TREC Session Track's
    XML), or ``auto`` (by file name and first line)."""
    fields: tuple[tuple[str, str], ...] = ()
    """``(field, name in the input)`` pairs: ``user`` is ``anon_id`` in these logs."""
    types: tuple[tuple[str, str], ...] = ()
    """``(type, name in the input)`` pairs: a ``search`` is a ``query_submitted``."""
    time_unit: str = "auto"
    """Unit of epoch-number times: ``s``, ``ms``, ``us``, ``ns``, or ``auto`` (by size)."""
    join_timeout: timedelta = timedelta(seconds=60)
    """A member of a cluster spread over hosts (``--process-id``) gives up when the
    others have not all connected within this long."""
    partitions: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("at least one input is needed")
        for name, value in (("gap", self.gap), ("max_session", self.max_session)):
            if value <= timedelta(0):
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.lateness < timedelta(0):
            raise ConfigError(f"lateness must not be negative, got {self.lateness}")
        if self.workers < 1 or self.processes < 1:
            raise ConfigError("workers and processes must be at least 1")
        if self.workers * self.processes > MAX_WORKERS:
            raise ConfigError(
                f"{self.workers * self.processes} workers in all (--workers times the "
                f"processes): at most {MAX_WORKERS} are supported"
            )
        if self.rollups is not None and not self.rollup_windows:
            raise ConfigError("--rollups needs at least one --rollup window length")
        if self.snapshot_interval <= timedelta(0):
            raise ConfigError("snapshot_interval must be positive")
        if self.tail and self.stop_at_end:
            raise ConfigError(
                "--tail with --stop-at-end would read nothing (--tail starts at the end where "
                "--stop-at-end stops); to finish a --tail job, resume it with --stop-at-end alone"
            )
        _check_choice("order", self.order, ORDERS)
        _check_choice("format", self.input_format, FORMATS)
        _check_choice("time unit", self.time_unit, TIME_UNITS)
        if self.sort_memory < 1 << 20:
            raise ConfigError(f"sort memory must be at least 1MB, got {self.sort_memory:,} bytes")
        if self.short_click < timedelta(0) or self.long_click < timedelta(0):
            raise ConfigError("click dwell thresholds must not be negative")
        if self.collapse_typeahead is not None and self.collapse_typeahead < timedelta(0):
            raise ConfigError(
                f"--collapse-typeahead must not be negative, got {self.collapse_typeahead}"
            )
        self._check_dimensions()
        for what, pairs, names in (
            ("--field", self.fields, FIELD_NAMES),
            ("--type", self.types, TYPE_NAMES),
        ):
            for ours, theirs in pairs:
                _check_choice(what, ours, names)
                if not theirs:
                    raise ConfigError(f"{what} {ours}= needs the input's name for it")
        self._check_names()

    def _check_names(self) -> None:
        """No input name may stand for two of our fields, nor a type name for two types."""
        fields: dict[str, str] = {}
        for ours, theirs in self.fields:
            if fields.setdefault(ours, theirs) != theirs:
                raise ConfigError(f"--field {ours} is given twice")
        read_as: dict[str, str] = {}
        for ours in FIELD_NAMES:
            theirs = fields.get(ours, ours)
            other = read_as.setdefault(theirs, ours)
            if other != ours:
                raise ConfigError(
                    f"--field: the input's field {theirs!r} cannot be both {other} and {ours}"
                )
        kinds = type_names()
        for ours, theirs in self.types:
            other = kinds.setdefault(theirs, ours)
            if other != ours:
                raise ConfigError(
                    f"--type {ours}={theirs}: {theirs!r} already names {other} events"
                )

    def _check_dimensions(self) -> None:
        taken = {theirs for _, theirs in self.fields} | (
            set(FIELD_NAMES) - {ours for ours, _ in self.fields}
        )
        seen: set[str] = set()
        for name in self.dimensions:
            if not name:
                raise ConfigError("--dimension needs a field name")
            if name in taken:
                raise ConfigError(
                    f"--dimension {name}: that is an event field, not a dimension "
                    f"(dimensions are extra fields such as variant or platform)"
                )
            if name in seen:
                raise ConfigError(f"--dimension {name} is given twice")
            seen.add(name)

    @property
    def layout(self) -> InputLayout:
        """How the inputs name fields and types, their epoch unit, dimensions and currency."""
        return InputLayout(self.fields, self.types, self.time_unit, self.dimensions, self.currency)

    @property
    def rules(self) -> Rules:
        """The options of the per-search rules."""
        return Rules(
            self.long_click_us,
            to_us(self.short_click),
            None if self.collapse_typeahead is None else to_us(self.collapse_typeahead),
            self.dimensions,
        )

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


DURATION_FIELDS = (
    "gap",
    "lateness",
    "max_session",
    "long_click",
    "short_click",
    "collapse_typeahead",
    "snapshot_interval",
    "idle_timeout",
    "join_timeout",
)
"""Config fields that are durations (``timedelta``; seconds in JSON)."""


def config_to_json(cfg: Config) -> dict[str, Any]:
    """The config as JSON data (durations in seconds)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.name in ("prescans", "emptying"):
            continue  # (this process's threads)
        v = getattr(cfg, f.name)
        out[f.name] = v.total_seconds() if isinstance(v, timedelta) else v
    return out


def config_from_json(data: dict[str, Any]) -> Config:
    """The config :func:`config_to_json` wrote."""
    kw = dict(data)
    for name in DURATION_FIELDS:
        if kw.get(name) is not None:
            kw[name] = timedelta(seconds=kw[name])
    for name in ("inputs", "partitions", "dimensions"):
        if name in kw:
            kw[name] = tuple(kw[name])
    for name in ("fields", "types"):
        kw[name] = tuple(tuple(pair) for pair in kw.get(name, ()))
    kw["rollup_windows"] = tuple(tuple(w) for w in kw.get("rollup_windows", ()))
    return Config(**kw)
