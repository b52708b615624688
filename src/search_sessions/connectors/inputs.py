"""Inputs before a run: the files an input names, their formats, and what is begun
before the dataflow starts: the pre-scans of ``--order auto``, and the emptying of the
output files.

Free of Bytewax, so the command line can list the inputs and begin the pre-scans while
the rest of the package (Bytewax included) is imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import os
import stat
import threading
import zlib
from pathlib import Path
from typing import Any, Final

from ..config import Config
from ..core.cores import native_block_decoder
from ..core.formats import aol_header, aol_layout
from ..core.formats import make_decoder as line_decoder
from ..errors import ConfigError, InputError
from .readahead import host_cores, reads_ahead
from .specs import Scheme, scheme_of, sqlite_path

INPUT_SUFFIXES = (
    ".jsonl",
    ".json",
    ".ndjson",
    ".csv",
    ".tsv",
    ".jsonl.gz",
    ".json.gz",
    ".ndjson.gz",
    ".csv.gz",
    ".tsv.gz",
    ".gz",
    ".parquet",
)
"""The files a directory input reads (with ``--format aol`` also ``.txt`` and ``.txt.gz``,
the AOL collection's own names; with ``auto``, a ``.txt`` with the AOL header too; with
``auto`` or ``trec``, ``.xml`` too: ``.xml.gz`` is any ``.gz``)."""

AOL_SUFFIXES = (".txt", ".txt.gz")
XML_SUFFIXES = (".xml", ".xml.gz")

GZIP_MAGIC = b"\x1f\x8b"
_XML_STARTS = (b"<?xml", b"<sessiontrack")
_JSON_SUFFIXES = tuple(s for s in INPUT_SUFFIXES if ".json" in s or ".ndjson" in s)


def format_of(name: str, configured: str, head: bytes) -> str:
    """The format of input ``name`` whose first bytes are ``head`` (decompressed; only
    its first line that is not blank or dashes is looked at): the ``configured`` one
    unless it is ``auto``; else by the name's suffix (``.csv``, ``.tsv``, ``.xml``, also
    gzipped, and ``.parquet``; a ``.tsv`` under an AOL-layout header is ``aol``), else
    ``aol`` when that line is an AOL-layout header or row (:func:`~.formats.aol_layout`:
    the AOL log, Webis-SMC-12), ``trec`` when it starts ``<?xml`` or ``<sessiontrack``
    (the TREC Session Track's XML) and the name is not a JSON one (``.jsonl``, ``.json``,
    ``.ndjson``, also gzipped), else ``jsonl``.

    >>> format_of("day1.csv.gz", "auto", b""), format_of("day1.csv", "jsonl", b"")
    ('csv', 'jsonl')
    >>> format_of("user-ct-01.txt", "auto", b"AnonID\\tQuery\\tQueryTime\\tItemRank")
    'aol'
    >>> format_of("webis-smc-12.tsv", "auto", b"UserID\\tQuery\\tTimeStamp\\tClickRank")
    'aol'
    >>> format_of("-", "auto", b'{"type": "search"}')
    'jsonl'
    >>> format_of("sessiontrack2013.xml.gz", "auto", b""), format_of("log", "auto", b"<?xml ")
    ('trec', 'trec')
    """
    if configured != "auto":
        return configured
    lower = name.lower()
    if lower.endswith((".csv", ".csv.gz")):
        return "csv"
    if lower.endswith((".tsv", ".tsv.gz")):
        # (A TSV of events names a type column; a copy of the AOL log saved as .tsv not.)
        return "aol" if head and aol_header(_first_row(head)) else "tsv"
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(XML_SUFFIXES):
        return "trec"
    first = _first_row(head)
    if aol_layout(first):
        return "aol"
    if first.lstrip().startswith(_XML_STARTS) and not lower.endswith(_JSON_SUFFIXES):
        return "trec"  # (a file named as JSON is JSON Lines, a first line of <?xml invalid)
    return "jsonl"


def _first_row(head: bytes) -> bytes:
    """The first line of ``head`` that is not blank or a rule of dashes (an annotated copy
    of the AOL log may start with one), without a byte-order mark."""
    for line in head.removeprefix(b"\xef\xbb\xbf").splitlines():
        if line.strip(b" \t-"):
            return line
    return b""


def file_format(path: str, configured: str) -> str:
    """The format of the file at ``path`` (see :func:`format_of`), reading its first
    line only when its name does not tell."""
    fmt = format_of(path, configured, b"")
    if fmt in ("jsonl", "tsv") and configured == "auto":
        with reopen(path) as f:
            fmt = format_of(path, configured, f.read(4096))
    return fmt


def first_line(path: str, limit: int = 1 << 20) -> bytes:
    """The first line of a file (decompressed if gzip), at most ``limit`` bytes of it."""
    with reopen(path) as f:
        return f.readline(limit)


def reopen(path: str) -> gzip.GzipFile | io.BufferedReader:
    """The file opened again from its start, decompressed if gzip."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    return GzipInput(path) if gzipped else open(path, "rb")


_BROKEN_GZIP = (EOFError, gzip.BadGzipFile, zlib.error)


def _named(method: Any) -> Any:
    def wrapped(self: GzipInput, *args: Any) -> Any:
        try:
            return method(self, *args)
        except _BROKEN_GZIP as exc:
            raise InputError(f"{self.label}: not a whole gzip file ({exc})") from None

    return wrapped


class GzipInput(gzip.GzipFile):
    """A gzip input (of ``path``, or read from ``fileobj``) whose broken stream, cut
    short or corrupt, is an :class:`InputError` naming it (the blocks before the break
    have been read: a run stops there with that one line)."""

    def __init__(self, path: str, fileobj: Any = None) -> None:
        super().__init__(filename=None if fileobj is not None else path, mode="rb", fileobj=fileobj)
        self.label = path

    read = _named(gzip.GzipFile.read)
    read1 = _named(gzip.GzipFile.read1)
    readline = _named(gzip.GzipFile.readline)
    readlines = _named(gzip.GzipFile.readlines)
    peek = _named(gzip.GzipFile.peek)
    seek = _named(gzip.GzipFile.seek)
    __next__ = _named(gzip.GzipFile.__next__)


def expand_inputs(inputs: tuple[str, ...], input_format: str = "auto") -> tuple[str, ...]:
    """Input partitions in a fixed order: arguments in order, a directory's files sorted,
    a Kafka topic's partitions in partition order (asking the broker).

    The order matters: ties in event time are broken by (partition, line),
    so the same arguments always give the same sessions.
    """
    parts: list[str] = []
    for item in inputs:
        scheme = scheme_of(item)
        if scheme is Scheme.STDIO:
            parts.append(item)
        elif scheme is Scheme.KAFKA:
            from .kafka import list_partitions

            parts.extend(list_partitions(item))
        elif scheme is Scheme.SQL:
            raise ConfigError(f"{item}: SQL databases are outputs, not inputs")
        else:
            parts.extend(_files(item, input_format))
    if len(set(parts)) != len(parts):
        raise ConfigError("the same input is named twice")
    return tuple(parts)


def resolve_inputs(cfg: Config) -> Config:
    """``cfg`` with its input partitions listed (see :func:`expand_inputs`), once."""
    if cfg.partitions:
        return cfg
    if cfg.recovery_dir is not None and any(scheme_of(i) is Scheme.STDIO for i in cfg.inputs):
        raise ConfigError(
            "--recovery-dir cannot resume standard input (what was read is gone); "
            "write it to a file first (or use Kafka) and run on that"
        )
    if cfg.order == "sort":
        streams = [i for i in cfg.inputs if scheme_of(i) is Scheme.KAFKA]
        if streams:
            raise ConfigError(
                f"--order sort reads an input to its end first; {streams[0]} is a stream "
                "(use --order time or auto for Kafka inputs)"
            )
    if cfg.input_format in _FILES_ONLY and any(scheme_of(i) is Scheme.STDIO for i in cfg.inputs):
        raise ConfigError(
            f"--format {cfg.input_format}: standard input cannot be read as "
            f"{_FILES_ONLY[cfg.input_format]} (save it to a file and run on that)"
        )
    return dataclasses.replace(cfg, partitions=expand_inputs(cfg.inputs, cfg.input_format))


_FILES_ONLY: Final = {"parquet": "Parquet", "trec": "TREC Session Track XML"}
"""The formats read from files only, by what they are called in messages."""


def _aol_text(path: Path, input_format: str) -> bool:
    """A ``.txt`` file that ``--format auto`` reads from a directory: one in the AOL
    layout (a ``.txt.gz`` is read as any ``.gz`` is, its layout found the same way)."""
    if input_format != "auto" or not path.name.endswith(".txt"):
        return False
    return file_format(str(path), "auto") == "aol"


def _files(item: str, input_format: str) -> list[str]:
    path = Path(item)
    if path.is_dir():
        suffixes = INPUT_SUFFIXES + (AOL_SUFFIXES if input_format == "aol" else ())
        suffixes += XML_SUFFIXES if input_format in ("auto", "trec") else ()
        found = sorted(
            str(p)
            for p in path.rglob("*")
            if p.is_file() and (p.name.endswith(suffixes) or _aol_text(p, input_format))
        )
        if not found:
            raise InputError(f"{item}: directory holds no input files ({', '.join(suffixes)})")
        return found
    if path.is_file():
        return [str(path)]
    raise InputError(f"{item}: no such file or directory")


def start_scans(cfg: Config) -> tuple[tuple[int, Any], ...]:
    """``--order auto``: the native pre-scans of the plain JSON Lines files (the first
    :data:`EARLY_SCANS` of them), ``(input, scan job)``, begun at once on threads of their
    own, so that they run while the dataflow starts (see ``Decoder.start_scan``). One
    process's partitions take their answers (:class:`~.base.OrderScans`); a local
    cluster's launcher hands them to its processes (``Config.scanned``). Only for a fresh
    run: a resumed input keeps the decision its snapshot holds."""
    if cfg.order != "auto" or cfg.recovery_dir is not None or guesses_order(cfg):
        return ()  # (where it guesses, such files are streamed at once instead)
    known = {i for i, _ in cfg.scanned}
    # (A local cluster's launcher scans on all its cores: its processes wait for it.)
    threads = min(host_cores(), 8) if cfg.processes > 1 else 1 + reads_ahead(cfg)
    jobs: list[tuple[int, Any]] = []
    for i, path in enumerate(cfg.partitions):
        if len(jobs) == EARLY_SCANS:
            break
        if i in known:
            continue
        if scheme_of(path) is not Scheme.FILE or path.lower().endswith((".json", ".json.gz")):
            continue  # (a .json file may hold one JSON array)
        if file_format(path, cfg.input_format) != "jsonl":
            continue
        with open(path, "rb") as f:
            if f.read(2) == GZIP_MAGIC:
                continue
        native = native_block_decoder(line_decoder("jsonl", i, cfg.layout, None))
        if native is None:
            return ()
        jobs.append((i, native.start_scan(path, cfg.lateness_us, threads)))
    return tuple(jobs)


def guesses_order(cfg: Config) -> bool:
    """Whether a fresh run of ``--order auto`` streams its files of lines on the guess
    that they are in order, instead of pre-scanning them (see
    ``LinePartition.sniff``): where it can start again afresh on finding one out of
    order, with none of what it wrote seen: one process of one worker, without a
    recovery directory, every output a file (or ``/dev/null``), none a stream, database
    or topic.

    >>> guesses_order(Config(inputs=("a.jsonl",), searches="s.jsonl"))
    True
    >>> guesses_order(Config(inputs=("a.jsonl",), searches="-"))
    False
    """
    if cfg.guess_order is False or cfg.order != "auto" or cfg.recovery_dir is not None:
        return False
    for field, flag in OUTPUT_FLAGS:
        spec = getattr(cfg, field)
        if spec is None:
            continue
        if scheme_of(spec) is not Scheme.FILE or spec.startswith(("sqlite:", "postgres")):
            return False
        path = _output_path(flag, spec)
        if path is None or (is_stream(path) and os.path.realpath(path) != os.devnull):
            return False
    return True


EARLY_SCANS = 8
"""The most pre-scans begun at once (each holds a thread and a 2 MB chunk); the other
inputs are scanned when their partitions first read, as before."""


OUTPUT_FLAGS: Final = (
    ("searches", "--searches"),
    ("sessions", "--sessions"),
    ("dead_letter", "--dead-letter"),
    ("late", "--late"),
    ("rollups", "--rollups"),
)
"""The :class:`Config` fields that are outputs, and their flags."""


def output_specs(cfg: Config) -> list[str]:
    """The outputs a run writes (those given), in :data:`OUTPUT_FLAGS` order."""
    return [spec for field, _ in OUTPUT_FLAGS if (spec := getattr(cfg, field)) is not None]


def check_outputs(cfg: Config) -> None:
    """Refuse, before anything is emptied, a file or SQLite output that cannot be one: no
    path, an existing directory (a Parquet output would replace it, contents and all),
    one of the inputs (emptied before it is read), or a file another output writes (a
    database takes several: a table each); and a recovery directory that is a file."""
    rec = cfg.recovery_dir
    if rec is not None and os.path.exists(rec) and not os.path.isdir(rec):
        raise ConfigError(f"--recovery-dir {rec}: that is a file (give a directory)")
    inputs = [p for p in cfg.partitions if scheme_of(p) is Scheme.FILE and os.path.exists(p)]
    taken: dict[str, tuple[str, bool]] = {}  # real path: (flag, a file output)
    for field, flag in OUTPUT_FLAGS:
        spec = getattr(cfg, field)
        path = _output_path(flag, spec) if spec is not None else None
        if path is None or is_stream(path):
            continue  # (several outputs may share a stream, as they share `-`)
        if os.path.isdir(path):
            raise ConfigError(f"{flag} {spec}: that is a directory (give a file's path)")
        real, is_file = os.path.realpath(path), scheme_of(spec) is Scheme.FILE
        other, other_is_file = taken.setdefault(real, (flag, is_file))
        if other != flag and (is_file or other_is_file):  # (a database takes several)
            raise ConfigError(f"{flag} {spec}: {other} is written there too")
        if os.path.exists(path) and any(os.path.samefile(path, p) for p in inputs):
            raise ConfigError(
                f"{flag} {spec} is also an input: it would be emptied before it is read"
            )


_STANDARD: Final = {
    "-": 1,
    **{f"{d}/{n}": n for d in ("/dev/fd", "/proc/self/fd") for n in (1, 2)},
    "/dev/stdout": 1,
    "/dev/stderr": 2,
}


def standard_stream(path: str) -> int | None:
    """1 for an output path naming standard output (``-``, ``/dev/stdout``,
    ``/dev/fd/1``), 2 for standard error (``/dev/stderr`` ...), else ``None``. They
    name the command's own streams: during a run descriptors 1 and 2 are not them
    (see :mod:`search_sessions.runtime.streams`).

    >>> standard_stream("/dev/stderr"), standard_stream("-"), standard_stream("x")
    (2, 1, None)
    """
    return _STANDARD.get(path)


def is_stream(path: str) -> bool:
    """Whether an output path names a stream rather than a file: standard output (``-``),
    or an existing FIFO, character device or socket (``/dev/stdout``, ``/dev/stderr``, a
    named pipe, ``/dev/null``). A stream is written by one worker, as it comes: it has no
    position to snapshot and to cut back to, and is not emptied before a run.

    >>> is_stream("-"), is_stream("/dev/null"), is_stream("out.jsonl")
    (True, True, False)
    """
    if standard_stream(path) is not None:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _output_path(flag: str, spec: str) -> str | None:
    """The file an output spec writes (``None`` for standard output, Kafka, PostgreSQL)."""
    scheme = scheme_of(spec)
    if scheme is Scheme.SQL and spec.startswith("sqlite:///"):
        path = sqlite_path(spec)
        if not path:
            raise ConfigError(f"{flag} {spec}: give the database's path (sqlite:///PATH.db)")
        return path
    if scheme is not Scheme.FILE:
        return None
    if not spec:
        raise ConfigError(f"{flag} needs a path ('-' for standard output)")
    if spec.startswith(("sqlite:", "postgres:", "postgresql:", "kafka:")):
        raise ConfigError(
            f"{flag} {spec}: not an address (use sqlite:///PATH.db, postgresql://..., "
            "kafka://HOST:PORT/TOPIC)"
        )
    return spec


def begin_emptying(cfg: Config) -> threading.Thread | None:
    """A fresh run's output files emptied on a thread of its own, begun while the run
    starts (``start_output`` finds them empty): a file of the last run's hundreds of
    megabytes took 30-50 ms to truncate. ``None`` where there is none to empty, and for a
    run with a recovery directory (a resumed run keeps its outputs)."""
    if cfg.recovery_dir is not None:
        return None
    full = [s for s in output_specs(cfg) if scheme_of(s) is Scheme.FILE and _full(s)]
    if not full:
        return None
    thread = threading.Thread(target=_empty, args=(full,), name="empty-outputs", daemon=True)
    thread.start()
    return thread


def _full(path: str) -> bool:
    """A plain file (not Parquet: its directory of parts starts otherwise) with bytes."""
    return (
        not path.lower().endswith(".parquet")
        and not is_stream(path)  # (/dev/stdout may be a file the shell redirected it to)
        and os.path.isfile(path)
        and os.path.getsize(path) > 0
    )


def _empty(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # (start_output, on the run's thread, says)
            os.truncate(path, 0)
