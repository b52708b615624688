"""The reader threads' tasks (``connectors/readahead.py``): what ``concurrent.futures``
gave the partitions, which they now get without importing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from search_sessions.connectors.readahead import Task, submit


def _busy_readers() -> tuple[threading.Event, list[Task[None]]]:
    """Both reader threads held until the returned event is set."""
    release = threading.Event()
    started = [threading.Event(), threading.Event()]

    def hold(i: int) -> None:
        started[i].set()
        release.wait(10)

    tasks = [submit(hold, i) for i in range(2)]
    for s in started:
        assert s.wait(10)
    return release, tasks


def test_a_task_gives_its_value_and_raises_its_error() -> None:
    assert submit(lambda a, b: a + b, 2, 3).result() == 5
    boom = submit(int, "not a number")
    with pytest.raises(ValueError, match="not a number"):
        boom.result()
    assert isinstance(boom.exception(), ValueError)
    assert boom.done()


def test_a_task_not_started_is_cancelled_and_never_runs() -> None:
    release, running = _busy_readers()
    ran: list[int] = []
    waiting = submit(ran.append, 1)
    try:
        assert not running[0].cancel()  # already running
        assert waiting.cancel()
        assert waiting.cancel()  # still cancelled
        assert waiting.done()
        assert waiting.exception() is None  # (does not wait: nothing will run)
    finally:
        release.set()
    for t in running:
        t.result()
    assert submit(ran.append, 2).result() is None  # the readers went on
    assert ran == [2]


def test_a_forked_child_starts_readers_of_its_own() -> None:
    assert submit(lambda: 1).result() == 1  # this process's readers exist
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(20)  # (dies, rather than hangs, if no reader takes its task)
        try:
            ok = submit(lambda: os.getpid()).result() == os.getpid()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_exit_waits_for_a_running_task(tmp_path: Path) -> None:
    """The interpreter does not finalize under a task still running (a native call
    taking the GIL back then would end its thread mid-call): exit waits for it."""
    done = tmp_path / "done"
    script = textwrap.dedent(
        f"""
        import threading, time
        from search_sessions.connectors.readahead import submit
        started = threading.Event()
        def slow():
            started.set()
            time.sleep(0.3)
            open({str(done)!r}, "w").write("finished")
        submit(slow)
        started.wait(10)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert done.read_text() == "finished"
