"""The recovery store: Bytewax's snapshot partitions in a directory, the job they
belong to, and a lock per process so that one run at a time uses them.

A recovery directory holds, beside Bytewax's ``part-*.sqlite3`` files:

- ``job.json``: what the state depends on (:data:`STATE_OPTIONS`: the inputs as
  resolved, the session and search rules, rollup windows, workers and processes,
  the output paths, and the directory's format version). A run whose options
  differ is refused with a :class:`~search_sessions.errors.ConfigError` naming each
  difference; :data:`FREE_OPTIONS` may change between runs. Output paths may not
  change, even once the job has finished (``finished`` is set at the end of a run that
  reached the end of its input): a resumed run appends to its outputs, so a new path
  would miss what was written before, and Bytewax keys each output's snapshot by it.
- ``lock-I``: held (``flock``) by the run of process ``I`` while it runs and naming
  its PID. The kernel drops the lock when that process dies, however it dies, so a
  lock left by a killed run never blocks the restart; a second run started while the
  first is alive is refused at once and leaves the first unharmed.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Final

from ..config import DURATION_FIELDS, Config, config_to_json
from ..errors import ConfigError

FORMAT: Final = 2
"""The recovery directory's format: the snapshots' shape (2: events may carry
conversions and dimensions). A directory of another format is refused."""

STATE_OPTIONS: Final = (
    "partitions",
    "input_format",
    "fields",
    "types",
    "time_unit",
    "order",
    "gap",
    "lateness",
    "max_session",
    "long_click",
    "short_click",
    "collapse_typeahead",
    "dimensions",
    "currency",
    "rollup_windows",
    "idle_timeout",
    "workers",
    "processes",
    "block_bytes",
)
"""The options the snapshots depend on: they must be the same when a run resumes."""

OUTPUT_OPTIONS: Final = ("searches", "sessions", "dead_letter", "late", "rollups")
"""Output paths: fixed for the life of the job."""

FREE_OPTIONS: Final = (
    "quiet (progress)",
    "metrics_port",
    "metrics_host",
    "snapshot_interval",
    "strict",
    "sort_memory",
    "temp_dir",
    "tail",
    "stop_at_end",
    "join_timeout",
    "read_ahead",
)
"""Options that do not change the state: a resumed run may give others (documented)."""

_LABELS: Final = {
    "partitions": "inputs",
    "input_format": "format",
    "rollup_windows": "rollup",
    "fields": "field",
    "types": "type",
    "dimensions": "dimension",
}


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # 30 ms: only when asked

    try:
        return version("search-sessions")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def job_record(cfg: Config) -> dict[str, Any]:
    """What ``job.json`` holds for ``cfg``: JSON data, durations in seconds."""
    data = config_to_json(cfg)
    job = {name: _plain(data[name]) for name in STATE_OPTIONS + OUTPUT_OPTIONS}
    return {"format": FORMAT, "tool": tool_version(), "finished": False, "job": job}


def _plain(value: Any) -> Any:
    """Tuples as lists, as JSON gives them back."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def differences(saved: dict[str, Any], cfg: Config) -> list[str]:
    """How ``cfg`` differs from the job saved in a recovery directory, one line per
    option (empty when it may resume)."""
    if saved.get("format") != FORMAT:
        return [
            f"the directory is of format {saved.get('format')!r} (search-sessions "
            f"{saved.get('tool', '?')}), this version ({tool_version()}) reads format {FORMAT}"
        ]
    mine = job_record(cfg)["job"]
    theirs = saved.get("job", {})
    names = STATE_OPTIONS + OUTPUT_OPTIONS
    return [
        f"--{_LABELS.get(name, name).replace('_', '-')}: the job has "
        f"{_show(name, theirs.get(name))}, this run {_show(name, mine[name])}"
        for name in names
        if theirs.get(name) != mine[name]
    ]


def _show(name: str, value: Any) -> str:
    if value is None:
        return "none"
    if name in DURATION_FIELDS:
        return str(timedelta(seconds=value))
    return json.dumps(value)


class RecoveryGuard:
    """Locks a recovery directory for the processes this run starts and checks (or
    records) its job. Use as a context manager around the run; :meth:`finished` marks
    the job done."""

    def __init__(self, cfg: Config, process_ids: list[int]) -> None:
        assert cfg.recovery_dir is not None
        self.cfg = cfg
        self.path = Path(cfg.recovery_dir)
        self.process_ids = process_ids
        self._locks: list[IO[str]] = []

    def __enter__(self) -> RecoveryGuard:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            for pid in self.process_ids:
                self._locks.append(self._lock(pid))
            self._check_job()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _lock(self, process_id: int) -> IO[str]:
        path = self.path / f"lock-{process_id}"
        f = open(path, "a+")  # noqa: SIM115 - held until the run ends
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise ConfigError(
                f"recovery directory {self.path} is in use by process {holder} (its lock "
                f"{path.name}); wait for that run to end or stop it, or use another "
                "--recovery-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        return f

    def _release(self) -> None:
        for f in self._locks:
            f.close()  # closing the file drops the lock
        self._locks.clear()

    def _check_job(self) -> None:
        with init_lock(self.path):
            self._check_job_locked()

    def _check_job_locked(self) -> None:
        job_path = self.path / "job.json"
        has_state = any(self.path.glob("part-*.sqlite3"))
        if not job_path.exists():
            if has_state:
                raise ConfigError(
                    f"recovery directory {self.path} holds snapshots but no job.json: it "
                    "was made by an older search-sessions (or another tool); to start over, "
                    "remove it or use another --recovery-dir"
                )
            _write_json(job_path, job_record(self.cfg))
            return
        try:
            saved = json.loads(job_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{job_path}: unreadable ({exc}); remove the directory") from None
        diffs = differences(saved, self.cfg)
        if diffs:
            lines = "\n  ".join(diffs)
            state = "a finished job" if saved.get("finished") else "another job"
            raise ConfigError(
                f"recovery directory {self.path} belongs to {state}:\n  {lines}\n"
                "Run with the job's options to resume it; to start over with these, remove "
                "the directory or use another --recovery-dir."
            )

    def finished(self) -> None:
        """Record that the job reached the end of its input."""
        _write_json(self.path / "job.json", {**job_record(self.cfg), "finished": True})


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def prepare_recovery(cfg: Config) -> bool:
    """Create the recovery store when missing; True when resuming from an existing one."""
    if cfg.recovery_dir is None:
        return False
    from bytewax.recovery import init_db_dir

    path = Path(cfg.recovery_dir)
    path.mkdir(parents=True, exist_ok=True)
    # The processes of a cluster may start together on a new shared directory: one
    # creates the store, the others find it.
    with init_lock(path):
        if any(path.glob("part-*.sqlite3")):
            return True
        init_db_dir(path, 1)
    return False


@contextmanager
def init_lock(path: Path) -> Iterator[None]:
    """Exclusive use of the recovery directory ``path`` for a moment (``flock`` on
    ``path/init.lock``): checking its job, creating its store."""
    with open(path / "init.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file drops the lock


__all__ = [
    "FORMAT",
    "FREE_OPTIONS",
    "STATE_OPTIONS",
    "RecoveryGuard",
    "differences",
    "job_record",
    "prepare_recovery",
]
