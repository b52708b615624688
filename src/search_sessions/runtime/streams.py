"""Clean output streams for the command line: records alone on standard output, and
Bytewax's own messages as one clear line each on standard error.

Bytewax's Rust core prints to the process's file descriptors, not through Python:
connection retries while a cluster forms go to descriptor 1 (mixed with records when
searches go to standard output), and a panic (Rust's report of a failed step) takes
three lines on descriptor 2, before the one-line error the command prints itself.

:func:`clean_streams` rearranges the descriptors for the length of a run:

- descriptor 1 becomes a pipe to a small filter process; the records go to a
  duplicate of the real standard output (``sys.stdout`` is rebound to it, and so is
  what the stdout sink writes to);
- descriptor 2 goes to the same filter, while Python's ``sys.stderr`` (progress,
  summary, errors) writes straight to the real standard error, so a terminal stays a
  terminal;
- the filter passes every line on to standard error, rewriting Bytewax's retry lines
  (``search-sessions: worker 1 is waiting for worker 0 (Connection refused);
  retrying``) and folding a panic into one line, or into none when it only carries a
  Python exception (``Box<dyn Any>``) that the command reports itself.

A cluster's processes inherit the arrangement: forked ones as it is, new interpreters
through :func:`protect_records` with the records' descriptor as their standard output.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Final

RECORDS_ENV: Final = "SEARCH_SESSIONS_RECORDS"
"""Set in a run whose standard output holds records only (new cluster processes see it)."""

_RETRY = re.compile(
    r"^worker (\d+):\s*error connecting to worker (\d+): (.*?)(?: \(os error \d+\))?; retrying$"
)
_PANIC = re.compile(r"^thread '.*' panicked at (.*?):?$")
_NOTE = "note: run with `RUST_BACKTRACE=1`"

records_fd: int | None = None
"""Where records go when the streams are arranged (``None``: descriptor 1)."""


def rewrite(lines: Iterator[str]) -> Iterator[str]:
    """The lines to show on standard error for the lines Bytewax printed.

    >>> list(rewrite(iter([
    ...     "worker 1:\terror connecting to worker 0: Connection refused (os error 111); retrying",
    ...     "thread '<unnamed>' panicked at src/inputs.rs:397:29:", "Box<dyn Any>",
    ...     "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
    ...     "thread 'main' panicked at src/timely.rs:782:37:", "Key is not in the map",
    ...     "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
    ...     "anything else"])))  # doctest: +NORMALIZE_WHITESPACE
    ['search-sessions: worker 1 is waiting for worker 0 (Connection refused); retrying',
     'search-sessions: Bytewax failed (at src/timely.rs:782:37): Key is not in the map',
     'anything else']
    """
    panic_at: str | None = None
    message: list[str] = []
    for line in lines:
        if panic_at is not None:
            if line.startswith(_NOTE):
                text = " ".join(message).strip()
                if text and text != "Box<dyn Any>":
                    yield f"search-sessions: Bytewax failed (at {panic_at}): {text}"
                panic_at, message = None, []
            else:
                message.append(line.strip())
            continue
        retry = _RETRY.match(line)
        if retry:
            worker, peer, why = retry.groups()
            yield f"search-sessions: worker {worker} is waiting for worker {peer} ({why}); retrying"
            continue
        panic = _PANIC.match(line)
        if panic:
            panic_at = panic.group(1)
            continue
        yield line
    if panic_at is not None:  # the stream ended inside a panic report
        text = " ".join(message).strip()
        if text and text != "Box<dyn Any>":
            yield f"search-sessions: Bytewax failed (at {panic_at}): {text}"


def _filter(read_fd: int, write_fd: int) -> None:
    """The filter process: lines from ``read_fd``, rewritten, to ``write_fd``, until EOF."""
    with open(read_fd, encoding="utf-8", errors="replace", newline="\n") as src:
        lines = (line.rstrip("\n") for line in src)
        for out in rewrite(lines):
            data = (out + "\n").encode("utf-8", "replace")
            while data:
                data = data[os.write(write_fd, data) :]


def _arrangeable() -> bool:
    """Whether this process's ``sys.stdout`` and ``sys.stderr`` are its descriptors 1 and
    2 (not a test runner's capture) and it runs one thread (a fork copies only one)."""
    try:
        if sys.stdout.fileno() != 1 or sys.stderr.fileno() != 2:
            return False
        return hasattr(os, "fork") and len(os.listdir("/proc/self/task")) == 1
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


@contextmanager
def clean_streams() -> Iterator[None]:
    """Arrange the descriptors as the module describes, for the body of the ``with``
    (nothing changes where the streams are not the process's own, as under a test
    runner's capture, or where other threads run).

    Only for the command line: it forks the filter process and rebinds ``sys.stdout``
    and ``sys.stderr``."""
    global records_fd
    if not _arrangeable():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    real_out, real_err = os.dup(1), os.dup(2)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the filter
        try:
            os.close(write_fd)
            for fd in (0, 1, 2):
                os.close(fd)
            _filter(read_fd, real_err)
        finally:
            os._exit(0)
    os.close(read_fd)
    old_out, old_err = sys.stdout, sys.stderr
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    records_fd = real_out
    os.environ[RECORDS_ENV] = "1"
    sys.stdout = io.TextIOWrapper(io.FileIO(real_out, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(real_err, "w", closefd=False), line_buffering=True, errors="backslashreplace"
    )
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = old_out, old_err
        os.environ.pop(RECORDS_ENV, None)
        records_fd = None
        os.dup2(real_out, 1)
        os.dup2(real_err, 2)  # the last writer of the pipe here: the filter sees its end
        os.close(real_out)
        os.close(real_err)
        with suppress(ChildProcessError):  # reaped elsewhere
            os.waitpid(pid, 0)


def protect_records() -> None:
    """In a new cluster process started with the records as its standard output (see
    :func:`clean_streams`): keep them for records only, and send what Bytewax prints on
    descriptor 1 to standard error (the parent's filter)."""
    global records_fd
    if not os.environ.get(RECORDS_ENV):
        return
    records_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(io.FileIO(records_fd, "w", closefd=False), line_buffering=True)
