"""Kafka in and out through a real Kafka-protocol broker (Tansu), 3 partitions."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from search_sessions.simulate import SimSpec, write

from ..conftest import RunFlow
from ..kafka_broker import broker, free_port
from ..oracle import canon


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    with broker() as address:
        yield address


def create_topic(address: str, topic: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": address})
    for f in admin.create_topics([NewTopic(topic, num_partitions=partitions)]).values():
        f.result(10)


def produce_log(address: str, topic: str, path: Path, partitions: int = 3) -> None:
    """Every line of the log as one message, a user's lines in one partition, in order."""
    p = Producer({"bootstrap.servers": address, "linger.ms": 5})
    for line in path.read_bytes().splitlines():
        try:
            user = str(json.loads(line).get("user"))
        except Exception:
            user = "?"
        while True:
            try:
                p.produce(
                    topic,
                    value=line,
                    key=user.encode(),
                    partition=zlib.crc32(user.encode()) % partitions,
                )
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(30) == 0


def consume_all(
    address: str, topic: str, partitions: int = 3
) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    c = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": "t",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, eof = [], set()
    while len(eof) < partitions:
        for m in c.consume(500, timeout=2):
            if m.error():
                eof.add(m.partition())
            else:
                out.append((m.key(), m.value(), dict(m.headers() or [])))
    c.close()
    return out


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kafka") / "events.jsonl"
    write(
        SimSpec(
            events=8_000, users=150, seed=21, days=0.25, disorder=20, duplicates=0.01, bad=0.005
        ),
        str(path),
    )
    return path


def test_kafka_round_trip_equals_file_run(kafka: str, log: Path, run_flow: RunFlow) -> None:
    create_topic(kafka, "events")
    produce_log(kafka, "events", log)
    from_file, s_file = run_flow([log])
    from_kafka, s_kafka = run_flow([f"kafka://{kafka}/events"], stop_at_end=True, workers=2)
    assert canon(from_kafka["searches"]) == canon(from_file["searches"])
    assert canon(from_kafka["sessions"]) == canon(from_file["sessions"])
    assert from_kafka["late"] == from_file["late"] == []
    assert len(from_kafka["dead"]) == len(from_file["dead"]) > 0
    topic, part, offset = from_kafka["dead"][0]["source"].split(":")
    assert topic == "events" and part in {"0", "1", "2"} and offset.isdigit()
    for k in ("lines", "events", "invalid", "duplicates", "sessions", "searches"):
        assert s_kafka.counts[k] == s_file.counts[k], k
    two, _ = run_flow([f"kafka://{kafka}/events"], stop_at_end=True, processes=2)
    assert canon(two["searches"]) == canon(from_file["searches"])
    assert canon(two["sessions"]) == canon(from_file["sessions"])


def test_kafka_with_other_field_names_and_epoch_ms(
    kafka: str, log: Path, tmp_path: Path, run_flow: RunFlow
) -> None:
    """--field, --type and --time-unit apply to Kafka messages as to files."""
    from search_sessions.core.time import parse_time

    renamed = tmp_path / "renamed.jsonl"
    with open(renamed, "wb") as out:
        for line in log.read_bytes().splitlines():
            try:
                ev = json.loads(line)
                ev["anon_id"], ev["ts"] = ev.pop("user"), parse_time(ev.pop("time")) // 1000
                ev["event"] = {"search": "query_submitted"}.get(ev["type"], ev.pop("type"))
                ev.pop("type", None)
                line = json.dumps(ev).encode()
            except Exception:
                pass  # invalid lines stay as they are
            out.write(line + b"\n")
    create_topic(kafka, "renamed")
    produce_log(kafka, "renamed", renamed)
    want, _ = run_flow([log])
    got, _ = run_flow(
        [f"kafka://{kafka}/renamed"],
        stop_at_end=True,
        fields=(("user", "anon_id"), ("time", "ts"), ("type", "event")),
        types=(("search", "query_submitted"),),
        time_unit="ms",
    )
    assert canon(got["searches"]) == canon(want["searches"])
    assert canon(got["sessions"]) == canon(want["sessions"])


def test_kafka_outputs(kafka: str, log: Path, tmp_path: Path, run_flow: RunFlow) -> None:
    from search_sessions.config import Config
    from search_sessions.runtime.run import run

    for topic in ("out-searches", "out-sessions"):
        create_topic(kafka, topic)
    from_file, _ = run_flow([log])
    run(
        Config(
            inputs=(str(log),),
            searches=f"kafka://{kafka}/out-searches",
            sessions=f"kafka://{kafka}/out-sessions",
        )
    )
    searches = consume_all(kafka, "out-searches")
    assert canon([json.loads(v) for _k, v, _h in searches]) == canon(from_file["searches"])
    for key, value, headers in searches:
        rec = json.loads(value)
        assert key == rec["user"].encode() and headers["record_key"] == rec["search_id"].encode()
    sessions = consume_all(kafka, "out-sessions")
    assert canon([json.loads(v) for _k, v, _h in sessions]) == canon(from_file["sessions"])


def test_live_idle_partition_and_wall_clock_close(
    kafka: str, tmp_path: Path, run_flow: RunFlow
) -> None:
    """A live run (no --stop-at-end) with one partition that never gets data: with
    --idle-timeout it does not hold the watermark back, and once every input is
    quiet the open sessions close by the wall clock. SIGTERM then stops it cleanly."""
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "live.jsonl"
    write(SimSpec(events=1_500, users=40, seed=3, days=0.05), str(log))
    create_topic(kafka, "live")
    produce_log(kafka, "live", log, partitions=2)  # partition 2 stays empty
    want, _ = run_flow([log], gap=5, lateness=0)
    out = tmp_path / "out"
    out.mkdir()
    metrics_port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search_sessions.cli",
            "run",
            f"kafka://{kafka}/live",
            "--gap",
            "5s",
            "--lateness",
            "0s",
            "--idle-timeout",
            "1s",
            "--searches",
            str(out / "searches.jsonl"),
            "--sessions",
            str(out / "sessions.jsonl"),
            "--metrics-port",
            str(metrics_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        got: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            time.sleep(0.5)
            path = out / "sessions.jsonl"
            if path.exists():
                got = [json.loads(x) for x in path.read_bytes().splitlines()]
                if len(got) >= len(want["sessions"]):
                    break
        assert proc.poll() is None, "a live run keeps running"
        assert len(got) == len(want["sessions"])
        searches = [json.loads(x) for x in (out / "searches.jsonl").read_bytes().splitlines()]
        assert canon(searches) == canon(want["searches"])
        import urllib.request

        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        assert "search_sessions_events_in_total 1500.0" in body
        assert f"search_sessions_searches_out_total {float(len(searches))}" in body
        assert "search_sessions_open_sessions 0.0" in body
        assert "search_sessions_watermark_lag_seconds" in body and "search_sessions_ctr" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_kill_9_with_kafka_input_resumes_exactly(kafka: str, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "big.jsonl"
    write(SimSpec(events=120_000, users=1_000, seed=8, disorder=10), str(log))
    create_topic(kafka, "rec")
    produce_log(kafka, "rec", log)

    def cmd(name: str) -> list[str]:
        (tmp_path / name).mkdir(exist_ok=True)
        return [
            sys.executable,
            "-m",
            "search_sessions.cli",
            "run",
            f"kafka://{kafka}/rec",
            "--stop-at-end",
            "--searches",
            str(tmp_path / name / "searches.jsonl"),
            "--sessions",
            str(tmp_path / name / "sessions.jsonl"),
            "--recovery-dir",
            str(tmp_path / f"rec-{name}"),
            "--snapshot-interval",
            "100ms",
        ]

    def lines(name: str) -> dict[str, list[bytes]]:
        return {
            k: sorted((tmp_path / name / f"{k}.jsonl").read_bytes().splitlines())
            for k in ("searches", "sessions")
        }

    assert subprocess.run(cmd("clean"), capture_output=True).returncode == 0
    want = lines("clean")
    size = (tmp_path / "clean" / "searches.jsonl").stat().st_size
    proc = subprocess.Popen(
        cmd("crash"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    target = tmp_path / "crash" / "searches.jsonl"
    while proc.poll() is None:
        if target.exists() and target.stat().st_size > 0.4 * size:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL
    final = subprocess.run(cmd("crash"), capture_output=True)
    assert final.returncode == 0, final.stderr
    assert lines("crash") == want


def test_simulate_to_kafka_at_a_rate(kafka: str) -> None:
    """Live traffic: 300 events at 1000/s, each stamped with the wall clock as sent,
    keyed by user."""
    import time
    from datetime import UTC, datetime, timedelta

    from click.testing import CliRunner

    from search_sessions.cli import main

    create_topic(kafka, "sim")
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    started = time.monotonic()
    r = CliRunner().invoke(
        main, ["simulate", "--events", "300", "--rate", "1000", "--output", f"kafka://{kafka}/sim"]
    )
    after = datetime.now(UTC)
    assert r.exit_code == 0, r.output
    assert time.monotonic() - started >= 0.29, "300 events at 1000/s take 0.3 s"
    got = consume_all(kafka, "sim")
    assert len(got) == 300
    stamps = sorted(datetime.fromisoformat(json.loads(v)["time"]) for _k, v, _h in got)
    assert before <= stamps[0] and stamps[-1] <= after
    assert stamps[-1] - stamps[0] >= timedelta(seconds=0.2)
    for key, value, _h in got:
        assert key == str(json.loads(value)["user"]).encode()


def test_broker_restart_mid_stream(tmp_path: Path, run_flow: RunFlow) -> None:
    """The broker goes down while a backfill reads and comes back (same storage):
    the run carries on and its outputs equal the file run's."""
    import subprocess
    import sys
    import time

    from ..kafka_broker import s3_store

    log = tmp_path / "events.jsonl"
    write(SimSpec(events=400_000, users=2_000, seed=13, disorder=10), str(log))
    want, _ = run_flow([log])
    port = free_port()
    with s3_store() as env:
        with broker(port, env) as address:
            create_topic(address, "backfill")
            produce_log(address, "backfill", log)
        out = tmp_path / "out"
        out.mkdir()
        with broker(port, env, crash=True) as address:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "search_sessions.cli",
                    "run",
                    f"kafka://{address}/backfill",
                    "--stop-at-end",
                    "--searches",
                    str(out / "searches.jsonl"),
                    "--quiet",
                    "--snapshot-interval",
                    "50ms",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            target = out / "searches.jsonl"
            while proc.poll() is None and not (target.exists() and target.stat().st_size > 0):
                time.sleep(0.002)
        assert proc.poll() is None, "the run ended before the broker went down"
        time.sleep(1.0)  # the broker is down
        with broker(port, env):
            _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    got = [json.loads(x) for x in (out / "searches.jsonl").read_bytes().splitlines()]
    assert canon(got) == canon(want["searches"])
