"""A cluster of local processes on loopback: forked, or started as new interpreters.

The processes are forked once everything is imported (so they start at once),
or, when this process already runs other threads (which a fork would not
copy), started as copies of this module (``python -m
search_sessions.runtime.cluster``).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import sys
import time
import traceback
from typing import TYPE_CHECKING, Final

from ..config import Config, config_from_json, config_to_json
from ..crashpoints import CRASH as crashpoints
from ..errors import RunError
from . import streams
from .process import free_ports, run_process


def run_cluster(cfg: Config, tmp: str) -> bool:
    """Run ``cfg`` as a cluster of ``cfg.processes`` local processes, with files in
    ``tmp``; whether a signal stopped it."""
    errs = [os.path.join(tmp, f"error-{i}") for i in range(cfg.processes)]
    procs = _start(cfg, tmp, errs)
    codes, stopped = _wait_forwarding_signals(procs)
    if any(codes):
        raise RunError(_failure(codes, errs))
    return stopped


def _start(cfg: Config, tmp: str, errs: list[str]) -> list[_Process]:
    """Start the cluster's processes: forked if this process can, else new interpreters."""
    ports = free_ports(cfg.processes)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    # Later processes start with process 0 and wait, ready, until every earlier one
    # listens (Bytewax's process i dials processes 0 to i - 1).
    waits = [ports[:i] for i in range(cfg.processes)]
    if can_fork():
        _import_process_code()
        # What is imported now stays put: the children's collector need not scan (and
        # copy, page by page) the objects they share with this process.
        gc.freeze()
        try:
            return [_fork(cfg, i, addresses, errs[i], waits[i]) for i in range(cfg.processes)]
        finally:
            gc.unfreeze()
    import subprocess  # (here: forked processes, the usual case, need none)

    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "w") as f:
        json.dump(config_to_json(cfg), f)
    # Children share our standard error (progress lines); a failure's one-line
    # reason also goes to its error file, for `_failure`.
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "search_sessions.runtime.cluster",
                config_path,
                str(i),
                ";".join(addresses),
                errs[i],
                *(arg for port in waits[i] for arg in ("--wait-port", str(port))),
                "--parent",
                str(os.getpid()),
            ],
            stdout=streams.records_fd,  # records only, when the command arranged that
        )
        for i in range(cfg.processes)
    ]


def _wait_forwarding_signals(procs: list[_Process]) -> tuple[list[int], bool]:
    """Exit codes of all processes (:func:`_wait_all`), passing SIGINT and SIGTERM on
    to them meanwhile; and whether such a signal came."""
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
    return codes, stopped


def _failure(codes: list[int], errs: list[str]) -> str:
    """The reason to report for a cluster whose processes exited with ``codes``: a
    process killed by a signal or an invalid record is the cause; the others' errors
    ("Send thread panic") only say that a peer went away."""
    messages = []
    for i, code in enumerate(codes):
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            messages.append(
                (
                    0,
                    f"process {i} was killed ({name}); with --recovery-dir, rerun the same "
                    "command to resume from the last snapshot",
                )
            )
        elif code:
            try:
                with open(errs[i], errors="replace") as f:
                    text = f.read().strip()
            except OSError:
                text = f"process {i} exited with {code}"
            messages.append((0 if "invalid record at" in text else 1, text))
    return min(messages)[1]


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
        "search_sessions.dataflow.flow",
        "search_sessions.runtime.progress",
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


if TYPE_CHECKING:
    import subprocess

    _Process = subprocess.Popen[bytes] | _Forked


def _fork(
    cfg: Config, process_id: int, addresses: list[str], error_file: str, wait_ports: list[int]
) -> _Forked:
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:
        die_with(parent)
        code = _process_main(cfg, process_id, addresses, error_file, wait_ports)
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


def die_with(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` (the launcher) dies, however it
    dies: a cluster whose launcher was killed would otherwise run on, orphaned, holding
    the recovery directory's locks (Linux; elsewhere nothing)."""
    crashpoints.launched_by(parent)
    import ctypes  # (here, as argparse in main: a 1-process run imports this module)

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


_PR_SET_PDEATHSIG: Final = 1


def _process_main(
    cfg: Config,
    process_id: int,
    addresses: list[str],
    error_file: str | None,
    wait_ports: list[int],
) -> int:
    """One process of a local cluster; a failure's reason goes to ``error_file``."""
    try:
        run_process(cfg, process_id, addresses, wait_ports)
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of one cluster process: CONFIG_JSON PROCESS_ID ADDRESSES."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m search_sessions.runtime.cluster")
    parser.add_argument("config")
    parser.add_argument("process_id", type=int)
    parser.add_argument("addresses")
    parser.add_argument("error_file", nargs="?")
    parser.add_argument("--wait-port", type=int, action="append", default=[])
    parser.add_argument("--parent", type=int, help="die with this process")
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with(args.parent)
    streams.protect_records()
    with open(args.config) as f:
        cfg = config_from_json(json.load(f))
    return _process_main(
        cfg, args.process_id, args.addresses.split(";"), args.error_file, args.wait_port
    )


if __name__ == "__main__":
    sys.exit(main())
