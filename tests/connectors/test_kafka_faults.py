"""Kafka broker loss, with a real broker (Tansu) whose log outlives a restart (S3 store).

Each run is a real `search-sessions run` process; the broker is killed (SIGKILL: no
goodbye to its clients) while the run is frozen (SIGSTOP) mid-way, so the outage
always falls inside the run however fast it reads. Tolerances are shortened through
the environment variables the connector reads.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from search_sessions.config import Config
from search_sessions.connectors.base import PartitionContext
from search_sessions.connectors.kafka import CONNECT_TIMEOUT_ENV, OUTAGE_TIMEOUT_ENV, KafkaPartition
from search_sessions.runtime.run import run as run_job
from search_sessions.simulate import SimSpec, write

from ..kafka_broker import broker, free_port, s3_store
from ..oracle import canon
from .test_kafka import consume_all, create_topic, produce_log

EVENTS = 130_000
"""In one partition: librdkafka fetches ahead up to 100k messages of a partition, the
rest must come from the broker."""


class Broker:
    """A Tansu broker on a fixed port over the shared S3 store: started, killed, restarted."""

    def __init__(self, port: int, store: dict[str, str]) -> None:
        self.port, self.store = port, store
        self.address = f"127.0.0.1:{port}"
        self.stack: ExitStack | None = None

    def start(self) -> Broker:
        assert self.stack is None
        self.stack = ExitStack()
        self.stack.enter_context(broker(self.port, self.store, crash=True))
        return self

    def kill(self) -> None:
        if self.stack is not None:
            self.stack.close()
            self.stack = None


class Run:
    """``search-sessions run ARGS`` in its own process group, standard error in a file,
    its Prometheus endpoint on a free port."""

    def __init__(self, args: list[str], tmp: Path, **env: str) -> None:
        self.err_path = tmp / f"stderr-{time.monotonic_ns()}"
        self.metrics_port = free_port()
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "search_sessions.cli", "run", *args),
                    *("--metrics-port", str(self.metrics_port)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, **env},
                start_new_session=True,
            )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def metric(self, name: str) -> float:
        """A counter of the run (0 until its endpoint answers)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1
            ) as r:
                body = r.read().decode()
        except OSError:
            return 0.0
        for line in body.splitlines():
            if line.startswith(f"search_sessions_{name} "):
                return float(line.split()[1])
        return 0.0

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.proc.wait()


def wait_until(what: str, check: Callable[[], bool], timeout: float, run: Run) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; stderr:\n{run.stderr}")
        time.sleep(0.01)


def records(path: Path) -> list[str]:
    return canon([json.loads(x) for x in path.read_bytes().splitlines()])


def error_lines(stderr: str) -> list[str]:
    """The lines that say why a run failed (click's ``Error: ...``)."""
    return [x for x in stderr.splitlines() if x.startswith("Error:")]


def assert_no_noise(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "rdkafka" not in stderr and "%3|" not in stderr, stderr


@pytest.fixture(scope="module")
def store() -> Iterator[dict[str, str]]:
    with s3_store() as env:
        yield env


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory, store: dict[str, str], port: int) -> Path:
    """The events, also in the topic ``events`` (one partition) of the broker's store."""
    path = tmp_path_factory.mktemp("faults") / "events.jsonl"
    write(SimSpec(events=EVENTS, users=800, seed=8, disorder=10), str(path))
    with broker(port, store) as address:
        create_topic(address, "events", partitions=1)
        produce_log(address, "events", path, partitions=1)
    return path


@pytest.fixture(scope="module")
def want(log: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """What a run from the file gives (a Kafka run without an outage gives the same)."""
    out = tmp_path_factory.mktemp("want")
    run_job(
        Config(
            inputs=(str(log),),
            searches=str(out / "searches.jsonl"),
            sessions=str(out / "sessions.jsonl"),
        )
    )
    return {k: records(out / f"{k}.jsonl") for k in ("searches", "sessions")}


@pytest.fixture
def kafka(port: int, store: dict[str, str], log: Path) -> Iterator[Broker]:
    b = Broker(port, store)
    try:
        yield b
    finally:
        b.kill()


def outputs(out: Path) -> list[str]:
    return ["--searches", str(out / "searches.jsonl"), "--sessions", str(out / "sessions.jsonl")]


def reading(run: Run) -> None:
    """Until the run has read its first events (early, as librdkafka fetches ahead: the
    broker must still hold most of the input, or the run would not need it any more;
    the tests would see that, as the run would neither wait nor fail)."""
    wait_until("the first events", lambda: run.metric("events_in_total") > 0, 60, run)


def writing(run: Run, address: str, topic: str) -> None:
    """Until the run's first record is in ``topic`` (Bytewax opens a sink at its first
    record: a broker killed before would fail the connect check instead)."""
    c = Consumer({"bootstrap.servers": address, "group.id": "t", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        wait_until(f"a record in {topic}", lambda: bool(c.consume(1, timeout=0.05)), 60, run)
    finally:
        c.close()


def pull_the_plug(run: Run, kafka: Broker) -> None:
    """Freeze the run, kill the broker (so it goes while the run is mid-way, however
    fast the run is), let the run go on."""
    run.signal(signal.SIGSTOP)
    assert run.proc.poll() is None, "the run ended before the broker went"
    kafka.kill()
    run.signal(signal.SIGCONT)


NOTICE = "search-sessions: kafka://{}: no broker reachable"


def wait_for_notice(run: Run, kafka: Broker) -> None:
    notice = NOTICE.format(kafka.address)
    wait_until("the outage notice", lambda: notice in run.stderr, 20, run)


@pytest.mark.parametrize("side", ["input", "output"])
def test_no_broker_at_start_fails_in_one_line(tmp_path: Path, log: Path, side: str) -> None:
    """An input's partitions cannot be listed: a usage error (2), like a missing file or
    topic; an output that cannot be reached fails the run (1)."""
    port = free_port()  # nothing listens there
    url = f"kafka://127.0.0.1:{port}/events"
    args = [url, "--stop-at-end"] if side == "input" else [str(log), "--searches", url]
    started = time.monotonic()
    run = Run(
        [*args, "--sessions", str(tmp_path / "s.jsonl")], tmp_path, **{CONNECT_TIMEOUT_ENV: "2s"}
    )
    try:
        code = run.wait(30)
    finally:
        run.kill()
    took = time.monotonic() - started
    assert code == (2 if side == "input" else 1)
    assert error_lines(run.stderr) == [
        f"Error: {url}: no broker reachable at 127.0.0.1:{port} after 2 s "
        f"(Connect to ipv4#127.0.0.1:{port} failed: Connection refused)"
    ]
    assert_no_noise(run.stderr)
    assert 2 <= took < 15


def test_broker_late_at_start_is_waited_for(
    kafka: Broker, tmp_path: Path, want: dict[str, list[str]]
) -> None:
    run = Run(
        [f"kafka://{kafka.address}/events", "--stop-at-end", "--quiet", *outputs(tmp_path)],
        tmp_path,
        **{CONNECT_TIMEOUT_ENV: "30s"},
    )
    try:
        time.sleep(1.0)  # the run is waiting for the broker meanwhile
        assert run.proc.poll() is None, run.stderr
        kafka.start()
        assert run.wait(60) == 0, run.stderr
    finally:
        run.kill()
    assert_no_noise(run.stderr)
    assert records(tmp_path / "searches.jsonl") == want["searches"]


@pytest.mark.parametrize("recovery", [False, True], ids=["plain", "recovery"])
def test_broker_back_within_tolerance_changes_nothing(
    kafka: Broker, tmp_path: Path, want: dict[str, list[str]], recovery: bool
) -> None:
    """The run says the broker is gone, waits, says it is back, and ends as if nothing
    had happened."""
    kafka.start()
    args = [f"kafka://{kafka.address}/events", "--stop-at-end", "--quiet", *outputs(tmp_path)]
    if recovery:
        args += ["--recovery-dir", str(tmp_path / "state"), "--snapshot-interval", "100ms"]
    run = Run(args, tmp_path, **{OUTAGE_TIMEOUT_ENV: "30s"})
    try:
        reading(run)
        pull_the_plug(run, kafka)
        wait_for_notice(run, kafka)
        assert run.proc.poll() is None, "the run waits for the broker"
        kafka.start()
        assert run.wait(60) == 0, run.stderr
    finally:
        run.kill()
    assert f"search-sessions: kafka://{kafka.address}: broker back after " in run.stderr
    assert run.stderr.count(NOTICE.format(kafka.address)) == 1  # not once per partition
    assert_no_noise(run.stderr)
    assert records(tmp_path / "searches.jsonl") == want["searches"]
    assert records(tmp_path / "sessions.jsonl") == want["sessions"]


def test_broker_gone_for_good_fails_then_resumes(
    kafka: Broker, tmp_path: Path, want: dict[str, list[str]]
) -> None:
    """After the tolerance the run fails in one line; the same command resumes it from
    its recovery directory once the broker is back, and the outputs are exact."""
    kafka.start()
    args = [
        f"kafka://{kafka.address}/events",
        "--stop-at-end",
        "--quiet",
        *outputs(tmp_path),
        "--recovery-dir",
        str(tmp_path / "state"),
        "--snapshot-interval",
        "100ms",
    ]
    run = Run(args, tmp_path, **{OUTAGE_TIMEOUT_ENV: "2s"})
    try:
        reading(run)
        pull_the_plug(run, kafka)
        assert run.wait(30) == 1
    finally:
        run.kill()
    reason = (
        f"Error: kafka://{kafka.address}/events: no broker reachable at {kafka.address} for "
        f"2 s (Connect to ipv4#{kafka.address} failed: Connection refused); with "
        "--recovery-dir, rerun the same command to resume"
    )
    assert error_lines(run.stderr) == [reason]
    assert_no_noise(run.stderr)
    kafka.start()
    again = Run(args, tmp_path)
    try:
        assert again.wait(60) == 0, again.stderr
    finally:
        again.kill()
    assert records(tmp_path / "searches.jsonl") == want["searches"]
    assert records(tmp_path / "sessions.jsonl") == want["sessions"]


def kafka_output_run(kafka: Broker, log: Path, tmp_path: Path, topic: str, tolerance: str) -> Run:
    create_topic(kafka.address, topic, partitions=1)
    args = [str(log), "--quiet", "--searches", f"kafka://{kafka.address}/{topic}"]
    return Run(args, tmp_path, **{OUTAGE_TIMEOUT_ENV: tolerance})


def test_kafka_output_broker_back_within_tolerance(
    kafka: Broker, log: Path, tmp_path: Path, want: dict[str, list[str]]
) -> None:
    """Records produced while the broker is away are delivered once it is back: every
    record is in the topic (at least once, as always with Kafka outputs)."""
    kafka.start()
    run = kafka_output_run(kafka, log, tmp_path, "out-back", "30s")
    try:
        writing(run, kafka.address, "out-back")
        pull_the_plug(run, kafka)
        wait_for_notice(run, kafka)
        kafka.start()
        assert run.wait(60) == 0, run.stderr
    finally:
        run.kill()
    assert f"search-sessions: kafka://{kafka.address}: broker back after " in run.stderr
    assert_no_noise(run.stderr)
    got = {h["record_key"]: v for _k, v, h in consume_all(kafka.address, "out-back", 1)}
    assert canon([json.loads(v) for v in got.values()]) == want["searches"]


def test_kafka_output_broker_gone_fails(kafka: Broker, log: Path, tmp_path: Path) -> None:
    """Records that cannot be delivered within the tolerance fail the run in one line
    (neither a full queue nor the flush at a snapshot waits forever)."""
    kafka.start()
    run = kafka_output_run(kafka, log, tmp_path, "out-gone", "2s")
    try:
        writing(run, kafka.address, "out-gone")
        pull_the_plug(run, kafka)
        assert run.wait(30) == 1
    finally:
        run.kill()
    assert_no_noise(run.stderr)
    (reason,) = error_lines(run.stderr)
    assert re.fullmatch(
        f"Error: kafka://{kafka.address}/out-gone: no broker reachable at {kafka.address} "
        r"for 2 s \(.*Connection refused\); [\d,]+ records not delivered; with "
        "--recovery-dir, rerun the same command to resume",
        reason,
    ), reason


def test_an_input_is_not_idle_while_its_broker_is_away(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --idle-timeout, a quiet partition stops holding the watermark back; one
    whose broker is away keeps holding it (its events may be waiting there), until
    the broker is back and the partition is quiet for the idle timeout again."""
    monkeypatch.setenv(OUTAGE_TIMEOUT_ENV, "30s")
    kafka.start()
    create_topic(kafka.address, "quiet", partitions=1)
    name = f"kafka://{kafka.address}/quiet#0"
    cfg = Config(inputs=(name,), partitions=(name,), idle_timeout=timedelta(seconds=1))
    now = [0.0]
    ctx = PartitionContext(cfg, 0, 0, "events:0", ["shard-0"], clock=lambda: now[0])
    part = KafkaPartition(ctx, name, tail=False, stop_at_end=False)

    def idle_after(seconds: float) -> bool:
        now[0] += seconds
        ((_key, batch),) = part.next_batch()
        return batch[5] >= 0

    def poll_until(what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not check():
            assert time.monotonic() < deadline, what
            part.next_batch()

    try:
        assert not idle_after(0.5) and idle_after(1.0)
        kafka.kill()
        poll_until("the outage", lambda: part.outage.since is not None)
        assert not idle_after(5.0)
        kafka.start()
        poll_until("the broker back", lambda: part.outage.since is None)
        assert not idle_after(0.5) and idle_after(1.0)
    finally:
        part.close()
