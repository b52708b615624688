"""One process's share of a run: build the flow and hand it to Bytewax."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main

from ..config import Config
from ..control import FAILURE, GUESSED_WRONG, JOINED, METRICS, STOP
from ..crashpoints import CRASH as crashpoints
from ..dataflow.flow import build_flow
from ..errors import RunError, SearchSessionsError
from .progress import Reporter, serve_metrics
from .signals import stop_on_signals


def free_ports(n: int) -> list[int]:
    import socket  # (a local cluster's; a run alone never needs it)

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_process(
    cfg: Config,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    wait_ports: list[int] | None = None,
    join_timeout: float | None = None,
) -> None:
    """Run this process's share of the dataflow (all of it when alone).

    ``wait_ports``: a local cluster's later processes start with the first one and
    wait, ready to run, until the earlier ones listen on these loopback ports. ``join_timeout``:
    seconds to wait for every process of the cluster to connect, after which this
    one stops with exit status 1 and one line saying so (Bytewax would retry forever).
    """
    crashpoints.configure(process_id, cfg.recovery_dir)
    FAILURE.clear()  # a failure note is this run's, not an earlier one's in this process
    GUESSED_WRONG.clear()
    JOINED.clear()
    if join_timeout is not None and addresses is not None:
        _watch_join(join_timeout, process_id, addresses)
    flow = build_flow(cfg, process_id)
    # The hot path allocates millions of small, mostly long-lived objects; the
    # default thresholds make the cyclic GC rescan them all the time (measured:
    # decoding alone ran 2.5x slower). Nothing here builds reference cycles.
    gc.set_threshold(200_000, 50, 100)
    stop_on_signals()

    server = None
    if cfg.metrics_port is not None:
        server = serve_metrics(METRICS, cfg.metrics_port + (process_id or 0), cfg.metrics_host)
    prefix = f"[process {process_id}] " if process_id is not None else ""
    if wait_ports:
        # Dialling a process before it listens makes Bytewax print "retrying" lines
        # and back off for a second.
        _wait_listening(wait_ports)
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
        raise RunError(FAILURE[0] if FAILURE else _root_message(exc)) from exc
    finally:
        if reporter is not None:
            reporter.stop()
        if server is not None:
            server.shutdown()


def _watch_join(timeout: float, process_id: int | None, addresses: list[str]) -> None:
    """Stop this process when the cluster has not formed within ``timeout`` seconds."""

    def watch() -> None:
        if JOINED.wait(timeout) or STOP.is_set():
            return
        others = [a for i, a in enumerate(addresses) if i != process_id]
        sys.stderr.write(
            f"Error: process {process_id}: the other processes of the cluster "
            f"({', '.join(others)}) did not all connect within {timeout:g}s; start every "
            "process with the same --addresses (and check the network), or raise "
            "--join-timeout\n"
        )
        sys.stderr.flush()
        os._exit(1)  # Bytewax retries in Rust, forever: nothing else stops it

    threading.Thread(target=watch, name="join-watch", daemon=True).start()


def _root_message(exc: BaseException) -> str:
    """One line: where Bytewax says a step failed, and the Python exception that did it
    (the last of the chain Bytewax raises), which is what tells a user why.

    >>> top = RuntimeError("error calling `on_batch` in step s")
    >>> top.__cause__ = KeyError("k")
    >>> print(_root_message(top))
    error calling `on_batch` in step s: KeyError: 'k'
    """
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, SearchSessionsError):  # (StrictError included)
        return str(cause)  # (ours: already one line naming what failed)
    text = str(exc).strip().splitlines()
    where = text[-1] if text else type(exc).__name__
    if cause is exc or type(cause).__name__ == "BytewaxRuntimeError":
        return where
    why = " ".join(str(cause).split())
    return (
        f"{where}: {type(cause).__name__}: {why[:500]}"
        if why
        else f"{where}: {type(cause).__name__}"
    )


def _wait_listening(ports: list[int], timeout: float = 10.0) -> None:
    """Until something listens on each loopback port of ``ports`` (Linux), at most
    ``timeout`` seconds."""
    waiting = {f"{port:04X}" for port in ports}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        try:
            with open("/proc/net/tcp") as f:
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":  # LISTEN
                        waiting.discard(fields[1].rpartition(":")[2])
        except OSError:
            return
        if waiting:
            time.sleep(0.005)
