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

from .conftest import RunFlow
from .kafka_broker import broker
from .oracle import canon


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
        p.produce(
            topic, value=line, key=user.encode(), partition=zlib.crc32(user.encode()) % partitions
        )
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


def test_kafka_outputs(kafka: str, log: Path, tmp_path: Path, run_flow: RunFlow) -> None:
    from search_sessions.config import Config
    from search_sessions.execute import run

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
