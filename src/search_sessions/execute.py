"""Running the dataflow: in this process, or as a cluster of local processes.

``run(cfg)`` is what the CLI calls. With ``processes > 1`` it starts that many
processes on loopback addresses, each running one process of the same Bytewax
cluster, and waits for them; the counters every process contributes end up in
one stats file, read back into a :class:`Summary`. The processes are forked
once everything is imported (so they start at once), or, when this process
already runs other threads (which a fork would not copy), started as copies
of this module (``python -m search_sessions.execute``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .config import Config
from .sinks import STAT_FIELDS


@dataclass(frozen=True)
class Summary:
    """Counters of a finished run, with its wall time."""

    counts: dict[str, int]
    elapsed: float
    stopped: bool = False

    @property
    def events_per_second(self) -> float:
        return self.counts.get("lines", 0) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ctr(self) -> float | None:
        searches = self.counts.get("searches", 0)
        return self.counts.get("clicked_searches", 0) / searches if searches else None

    def text(self) -> str:
        if self.stopped:
            return (
                f"stopped by a signal after {self.elapsed:.2f}s; outputs are flushed and, with "
                "--recovery-dir, the same command resumes where this run stopped"
            )
        c = self.counts
        ctr = "n/a" if self.ctr is None else f"{self.ctr:.4f}"
        return (
            f"events read {c.get('lines', 0):,} (valid {c.get('events', 0):,}), "
            f"invalid {c.get('invalid', 0):,}, duplicates {c.get('duplicates', 0):,}, "
            f"late {c.get('late', 0):,}; sessions {c.get('sessions', 0):,}, "
            f"searches {c.get('searches', 0):,}, CTR {ctr}; "
            f"elapsed {self.elapsed:.2f}s, {self.events_per_second:,.0f} events/s"
        )


class RunError(RuntimeError):
    """The dataflow failed; the message says why (the first line of the cause)."""


def config_to_json(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = v.total_seconds() if isinstance(v, timedelta) else v
    return out


def config_from_json(data: dict[str, Any]) -> Config:
    kw = dict(data)
    for name in (
        "gap",
        "lateness",
        "max_session",
        "long_click",
        "snapshot_interval",
        "idle_timeout",
    ):
        if kw.get(name) is not None:
            kw[name] = timedelta(seconds=kw[name])
    for name in ("inputs", "partitions"):
        kw[name] = tuple(kw[name])
    kw["rollup_windows"] = tuple(tuple(w) for w in kw.get("rollup_windows", ()))
    return Config(**kw)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def prepare_recovery(cfg: Config) -> bool:
    """Create the recovery store when missing; True when resuming from an existing one."""
    if cfg.recovery_dir is None:
        return False
    from bytewax.recovery import init_db_dir

    path = Path(cfg.recovery_dir)
    if path.is_dir() and any(path.glob("part-*.sqlite3")):
        return True
    path.mkdir(parents=True, exist_ok=True)
    init_db_dir(path, 1)
    return False


def run_process(
    cfg: Config,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    wait_port: int | None = None,
) -> None:
    """Run this process's share of the dataflow (all of it when alone).

    ``wait_port``: a local cluster's later processes start with the first one and
    wait, ready to run, until it listens on this loopback port.
    """
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from .flow import build_flow

    flow = build_flow(cfg, process_id)
    # The hot path allocates millions of small, mostly long-lived objects; the
    # default thresholds make the cyclic GC rescan them all the time (measured:
    # decoding alone ran 2.5x slower). Nothing here builds reference cycles.
    gc.set_threshold(200_000, 50, 100)
    _stop_on_signals()
    from .progress import METRICS, Reporter, serve_metrics

    server = None
    if cfg.metrics_port is not None:
        server = serve_metrics(METRICS, cfg.metrics_port + (process_id or 0), cfg.metrics_host)
    prefix = f"[process {process_id}] " if process_id is not None else ""
    if wait_port is not None:
        # Dialling process 0 before it listens makes Bytewax print "retrying" lines
        # and back off for a second.
        _wait_listening(wait_port)
    reporter = Reporter(METRICS, prefix=prefix).start() if cfg.progress else None
    try:
        cli_main(
            flow,
            workers_per_process=cfg.workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=cfg.snapshot_interval,
            recovery_config=(
                RecoveryConfig(Path(cfg.recovery_dir)) if cfg.recovery_dir is not None else None
            ),
        )
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        from .sources import FAILURE

        raise RunError(FAILURE[0] if FAILURE else _root_message(exc)) from exc
    finally:
        if reporter is not None:
            reporter.stop()
        if server is not None:
            server.shutdown()


SECOND_SIGNAL_AFTER = 1.0
"""Seconds after which another SIGINT/SIGTERM is a second one, which is fatal. Sooner it is
the same stop: Ctrl-C reaches a local cluster's processes from the terminal and again
from the parent, which forwards it for the case it alone was signalled."""


def _stop_on_signals() -> None:
    """SIGINT/SIGTERM end the run cleanly (see ``sources.STOP``); a second one is fatal."""
    from .sources import STOP

    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    first = [0.0]

    def handle(signum: int, _frame: object) -> None:
        now = time.monotonic()
        if not STOP.is_set():
            first[0] = now
            STOP.set()
        elif now - first[0] >= SECOND_SIGNAL_AFTER:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _root_message(exc: BaseException) -> str:
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    from .sources import StrictError

    if isinstance(cause, StrictError):
        return str(cause)
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def run(cfg: Config, process_id: int | None = None, addresses: list[str] | None = None) -> Summary:
    """Run the job described by ``cfg`` to the end of its input and sum up.

    With ``process_id`` and ``addresses`` this process is one member of a
    cluster started elsewhere (one per host, say); only the member that owns the
    counters has them all, the others' summaries count what passed through them.
    """
    started = time.perf_counter()
    if process_id is not None and addresses is not None:
        # Shards are laid out over every worker of the cluster.
        cfg = dataclasses.replace(cfg, processes=len(addresses))
    elif cfg.recovery_dir is None and cfg.workers * cfg.processes > 1:
        # All workers are on this host: each appends its own lines to the files
        # (a resumable file needs one writer, which can cut it back to a snapshot).
        cfg = dataclasses.replace(cfg, parallel_writes=True)
    with tempfile.TemporaryDirectory(prefix="search-sessions-") as tmp:
        stats_path = os.path.join(tmp, "stats.json")
        if cfg.recovery_dir is not None:
            # A resumed run adds to the counters it had; keep them beside its state.
            stats_path = os.path.join(cfg.recovery_dir, "stats.json")
        cfg = dataclasses.replace(cfg, stats_file=stats_path)
        if not prepare_recovery(cfg):
            _start_outputs(cfg)
        stopped = False
        if process_id is not None:
            run_process(cfg, process_id, addresses)
        elif cfg.processes == 1:
            run_process(cfg)
        else:
            stopped = _run_cluster(cfg, tmp)
        counts = {}
        if os.path.exists(stats_path):
            with open(stats_path) as f:
                counts = json.load(f)
    counts = {k: counts.get(k, 0) for k in STAT_FIELDS}
    from .sources import STOP

    return Summary(counts, time.perf_counter() - started, stopped=STOP.is_set() or stopped)


def _start_outputs(cfg: Config) -> None:
    """Start every file output empty: Bytewax only opens a sink once it has a record."""
    for path in (cfg.searches, cfg.sessions, cfg.dead_letter, cfg.late, cfg.rollups):
        if path is None or path == "-" or path.startswith("kafka://"):
            continue
        if path.startswith(("sqlite:///", "postgresql://", "postgres://")):
            from .sql import Database

            Database(path).close()  # the tables exist (and stay: rows are upserted)
            continue
        open(path, "wb").close()


def _run_cluster(cfg: Config, tmp: str) -> bool:
    ports = free_ports(cfg.processes)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    errs = [os.path.join(tmp, f"error-{i}") for i in range(cfg.processes)]
    # Later processes start with process 0 and wait, ready, until it listens.
    waits = [None] + [ports[0]] * (cfg.processes - 1)
    procs: list[_Process]
    if can_fork():
        _import_process_code()
        # What is imported now stays put: the children's collector need not scan (and
        # copy, page by page) the objects they share with this process.
        gc.freeze()
        try:
            procs = [_fork(cfg, i, addresses, errs[i], waits[i]) for i in range(cfg.processes)]
        finally:
            gc.unfreeze()
    else:
        config_path = os.path.join(tmp, "config.json")
        with open(config_path, "w") as f:
            json.dump(config_to_json(cfg), f)
        # Children share our standard error (progress lines); a failure's one-line
        # reason also goes to its error file for the message below.
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "search_sessions.execute",
                    config_path,
                    str(i),
                    ";".join(addresses),
                    errs[i],
                    *([] if waits[i] is None else ["--wait-port", str(waits[i])]),
                ],
            )
            for i in range(cfg.processes)
        ]
    stopped = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopped
        stopped = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = _wait_all(procs)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if any(codes):
        messages = []
        for i, code in enumerate(codes):
            if code:
                try:
                    with open(errs[i], errors="replace") as f:
                        messages.append(f.read().strip())
                except OSError:
                    messages.append(f"process {i} exited with {code}")
        # The process that met the cause says it; the others only saw a peer fail.
        messages.sort(key=lambda m: "invalid record at" not in m)
        raise RunError(messages[0])
    return stopped


def can_fork() -> bool:
    """Whether a local cluster's processes can be forked from this one: a fork copies
    only the calling thread, so not while other threads (Python's or native) run."""
    try:
        return hasattr(os, "fork") and len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _import_process_code() -> None:
    """Import what a cluster process runs, so forked processes start with it loaded."""
    for module in (
        "bytewax.recovery",
        "bytewax.run",
        f"{__package__}.flow",
        f"{__package__}.progress",
    ):
        importlib.import_module(module)


class _Forked:
    """A forked cluster process, with the part of ``subprocess.Popen`` we use."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_Process = subprocess.Popen[bytes] | _Forked


def _fork(
    cfg: Config, process_id: int, addresses: list[str], error_file: str, wait_port: int | None
) -> _Forked:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:
        code = _process_main(cfg, process_id, addresses, error_file, wait_port)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
    finally:
        # Never return into the caller's stack (its cleanup belongs to the parent).
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _process_main(
    cfg: Config,
    process_id: int,
    addresses: list[str],
    error_file: str | None,
    wait_port: int | None,
) -> int:
    """One process of a local cluster; a failure's reason goes to ``error_file``."""
    try:
        run_process(cfg, process_id, addresses, wait_port)
    except RunError as exc:
        if error_file:
            with open(error_file, "w") as f:
                f.write(str(exc))
        else:
            print(f"search-sessions: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _wait_all(procs: list[_Process]) -> list[int]:
    """Exit codes of all processes; once one fails, the others (which would wait for
    it forever) are stopped."""
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return [c or 0 for c in codes]
        if any(codes):
            time.sleep(1.0)  # the others may be failing for the same reason: let them say it
            killed = set()
            for i, p in enumerate(procs):
                if p.poll() is None:
                    p.kill()
                    p.wait()
                    killed.add(i)
            # A process we stopped is not the failure to report.
            return [0 if i in killed else (p.returncode or 0) for i, p in enumerate(procs)]
        time.sleep(0.01)


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    """Until something listens on loopback ``port`` (Linux), at most ``timeout`` seconds."""
    want = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/net/tcp") as f:
                if any(want in line and line.split()[3] == "0A" for line in f):
                    return
        except OSError:
            return
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> int:
    """Entry point of one cluster process: CONFIG_JSON PROCESS_ID ADDRESSES."""
    parser = argparse.ArgumentParser(prog="python -m search_sessions.execute")
    parser.add_argument("config")
    parser.add_argument("process_id", type=int)
    parser.add_argument("addresses")
    parser.add_argument("error_file", nargs="?")
    parser.add_argument("--wait-port", type=int)
    args = parser.parse_args(argv)
    with open(args.config) as f:
        cfg = config_from_json(json.load(f))
    return _process_main(
        cfg, args.process_id, args.addresses.split(";"), args.error_file, args.wait_port
    )


if __name__ == "__main__":
    sys.exit(main())
