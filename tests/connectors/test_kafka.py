"""Kafka in and out through a real Kafka-protocol broker (Tansu), 3 partitions."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from search_sessions.core.cores import block_events
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
        produce_line(p, topic, line, partitions)
    assert p.flush(30) == 0


def produce_line(p: Producer, topic: str, line: bytes, partitions: int) -> int:
    """One line as a message in its user's partition (returned)."""
    try:
        user = str(json.loads(line).get("user"))
    except Exception:
        user = "?"
    partition = zlib.crc32(user.encode()) % partitions
    while True:
        try:
            p.produce(topic, value=line, key=user.encode(), partition=partition)
            return partition
        except BufferError:
            p.poll(0.1)


def produce_in_transactions(
    address: str, topic: str, path: Path, partitions: int = 3, per_txn: int = 500
) -> list[int]:
    """The log as :func:`produce_log` does, in committed transactions of ``per_txn`` lines,
    each followed by an aborted one of events by ``ghost`` users (never to be read). Every
    partition's log ends with transaction markers, not a message: its end is past its
    last message. Returns how many messages each partition holds."""
    p = Producer({"bootstrap.servers": address, "transactional.id": f"tx-{topic}"})
    p.init_transactions(30)
    lines = path.read_bytes().splitlines()
    counts = [0] * partitions
    for start in range(0, len(lines), per_txn):
        p.begin_transaction()
        for line in lines[start : start + per_txn]:
            counts[produce_line(p, topic, line, partitions)] += 1
        p.commit_transaction(30)
        p.begin_transaction()
        for i in range(2 * partitions):
            ghost = {"type": "search", "user": f"ghost{i}", "time": 0, "query": "aborted"}
            produce_line(p, topic, json.dumps(ghost).encode(), partitions)
        p.abort_transaction(30)
    return counts


def last_offsets(address: str, topic: str, counts: list[int]) -> list[tuple[int, int]]:
    """The offset of each partition's last message (``counts[p]`` messages in partition p)
    and its end (the high watermark that fetches report)."""
    c = Consumer({"bootstrap.servers": address, "group.id": "t", "enable.auto.commit": False})
    parts = range(len(counts))
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    seen, last = [0] * len(counts), [-1] * len(counts)
    deadline = time.monotonic() + 60
    while seen != counts:
        assert time.monotonic() < deadline, f"read {seen} of {counts} messages"
        for m in c.consume(1000, timeout=0.5):
            if m.error() is None:
                seen[m.partition()] += 1
                last[m.partition()] = m.offset()
    ends = [c.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1] for p in parts]
    c.close()
    return list(zip(last, ends, strict=True))


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


@pytest.mark.parametrize("transactions", [False, True], ids=["plain", "transactions"])
def test_kill_9_with_kafka_input_resumes_exactly(
    kafka: str, tmp_path: Path, transactions: bool
) -> None:
    """With transactions, the snapshots hold positions past transaction markers too."""
    log = tmp_path / "big.jsonl"
    write(SimSpec(events=120_000, users=1_000, seed=8, disorder=10), str(log))
    topic = "rec-tx" if transactions else "rec"
    create_topic(kafka, topic)
    if transactions:
        produce_in_transactions(kafka, topic, log, per_txn=5_000)
    else:
        produce_log(kafka, topic, log)

    def cmd(name: str) -> list[str]:
        (tmp_path / name).mkdir(exist_ok=True)
        return [
            sys.executable,
            "-m",
            "search_sessions.cli",
            "run",
            f"kafka://{kafka}/{topic}",
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

    assert subprocess.run(cmd("clean"), capture_output=True, timeout=120).returncode == 0
    want = lines("clean")
    size = (tmp_path / "clean" / "searches.jsonl").stat().st_size
    assert size > 0
    # Killed once epoch 3 is committed (search_sessions.crashpoints), its partitions held
    # at their end until then: never after the job finished, however loaded the machine.
    crash = {**os.environ, "SEARCH_SESSIONS_CRASH": "commit:3:group"}
    proc = subprocess.run(
        cmd("crash"), capture_output=True, env=crash, start_new_session=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    final = subprocess.run(cmd("crash"), capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert lines("crash") == want


def test_simulate_to_kafka_at_a_rate(kafka: str) -> None:
    """Live traffic: 300 events at 1000/s, each stamped with the wall clock as sent,
    keyed by user."""
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


def cli_run(*args: str) -> list[str]:
    return [sys.executable, "-m", "search_sessions.cli", "run", *args]


def test_stop_at_end_ends_on_a_topic_of_transactions(
    kafka: str, log: Path, tmp_path: Path, run_flow: RunFlow
) -> None:
    """Each partition's end is past its last message (transaction markers): the run
    still ends, and reads every committed message and no aborted one."""
    create_topic(kafka, "txn")
    counts = produce_in_transactions(kafka, "txn", log)
    ends = last_offsets(kafka, "txn", counts)
    assert all(end > last + 1 for last, end in ends), ends
    want, _ = run_flow([log])
    out = tmp_path / "out"
    out.mkdir()
    outputs = {k: out / f"{k}.jsonl" for k in ("searches", "sessions", "dead-letter")}
    done = subprocess.run(
        cli_run(
            f"kafka://{kafka}/txn",
            "--stop-at-end",
            *(arg for k, path in outputs.items() for arg in (f"--{k}", str(path))),
        ),
        capture_output=True,
        timeout=120,  # (it used to wait for a message at the end forever)
    )
    assert done.returncode == 0, done.stderr
    got = {
        k: [json.loads(x) for x in path.read_bytes().splitlines()] for k, path in outputs.items()
    }
    assert canon(got["searches"]) == canon(want["searches"])
    assert canon(got["sessions"]) == canon(want["sessions"])
    assert len(got["dead-letter"]) == len(want["dead"])
    assert f"events read {sum(counts):,}" in done.stderr.decode()


def test_tail_starts_at_the_end(kafka: str) -> None:
    """On Tansu too, whose ListOffsets answers the first offset of the last batch + 1:
    of N messages before and M after it starts, a --tail partition reads exactly the M."""
    from search_sessions.config import Config
    from search_sessions.connectors.base import PartitionContext
    from search_sessions.connectors.kafka import KafkaPartition

    create_topic(kafka, "tail", partitions=1)
    p = Producer({"bootstrap.servers": kafka, "linger.ms": 20})

    def produce(first: int, n: int) -> None:
        for i in range(first, first + n):
            ev = {"type": "app_open", "user": f"u{i}", "time": 1_700_000_000 + i}
            p.produce("tail", value=json.dumps(ev).encode(), partition=0)
        assert p.flush(30) == 0

    produce(0, 1000)
    name = f"kafka://{kafka}/tail#0"
    cfg = Config(inputs=(name,), partitions=(name,))
    part = KafkaPartition(
        PartitionContext(cfg, 0, 0, "tail:0", ["shard-0"]), name, tail=True, stop_at_end=False
    )
    try:
        assert part.offset == 1000
        produce(1000, 300)
        users: list[str] = []
        deadline = time.monotonic() + 30
        while len(users) < 300:
            assert time.monotonic() < deadline, f"read {len(users)} of 300"
            for _key, batch in part.next_batch():
                users += [ev[4] for ev in block_events(batch[3])]
        assert users == [f"u{i}" for i in range(1000, 1300)]
    finally:
        part.close()


def test_a_transaction_open_at_start(kafka: str) -> None:
    """The end at start is the last stable offset: --stop-at-end ends before a transaction
    still open (without waiting for it), and --tail reads it once it is committed."""
    from search_sessions.config import Config
    from search_sessions.connectors.base import PartitionContext
    from search_sessions.connectors.kafka import KafkaPartition

    def event(user: str) -> bytes:
        return json.dumps({"type": "app_open", "user": user, "time": 1_700_000_000}).encode()

    create_topic(kafka, "open", partitions=1)
    p = Producer({"bootstrap.servers": kafka})
    for i in range(5):
        p.produce("open", value=event(f"u{i}"), partition=0)
    assert p.flush(30) == 0
    txn = Producer({"bootstrap.servers": kafka, "transactional.id": "open"})
    txn.init_transactions(30)
    txn.begin_transaction()
    for i in range(3):
        txn.produce("open", value=event(f"t{i}"), partition=0)
    assert txn.flush(30) == 0
    name = f"kafka://{kafka}/open#0"
    cfg = Config(inputs=(name,), partitions=(name,))
    ctx = PartitionContext(cfg, 0, 0, "open:0", ["shard-0"])
    stops = KafkaPartition(ctx, name, tail=False, stop_at_end=True)
    tail = KafkaPartition(ctx, name, tail=True, stop_at_end=False)

    def users(part: KafkaPartition, until: int | None = None) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + 30
        while until is None or len(got) < until:
            assert time.monotonic() < deadline, f"read {got}"
            try:
                items = part.next_batch()
            except StopIteration:
                break
            got += [
                ev[4] for key, batch in items if key == "shard-0" for ev in block_events(batch[3])
            ]
        return got

    try:
        assert stops.stop_at == tail.offset == 5
        assert users(stops) == [f"u{i}" for i in range(5)]
        txn.commit_transaction(30)
        p.produce("open", value=event("u5"), partition=0)
        assert p.flush(30) == 0
        assert users(tail, until=4) == ["t0", "t1", "t2", "u5"]
    finally:
        stops.close()
        tail.close()


def test_tail_run_reads_what_comes_after_it_and_stop_at_end_finishes_it(
    kafka: str, tmp_path: Path
) -> None:
    """A --tail run reads, in each partition, every message from its end when it started;
    SIGTERM stops it; resumed with --stop-at-end alone, it reads on up to the end and
    ends. Each message is an invalid record, so the dead letters name the offsets read:
    none before the start, no gap, none twice. Messages go in batches of 10 or more
    (sent by flush, never by linger): an end is between batches, while Tansu's
    ListOffsets answer, the first offset of the last batch + 1, is inside one."""
    create_topic(kafka, "follow", partitions=2)
    p = Producer({"bootstrap.servers": kafka, "linger.ms": 5_000})
    produced = [0, 0]

    def produce(n: int) -> None:
        for _ in range(n):
            for part in (0, 1):
                value = json.dumps({"type": "nope", "n": produced[part]}).encode()
                p.produce("follow", value=value, partition=part)
                produced[part] += 1
        assert p.flush(30) == 0

    dead = tmp_path / "dead.jsonl"

    def offsets_read() -> list[list[int]]:
        read: list[list[int]] = [[], []]
        if dead.exists():
            for line in dead.read_bytes().splitlines(keepends=True):
                if line.endswith(b"\n"):  # (a line being written is not whole yet)
                    _topic, part, offset = json.loads(line)["source"].split(":")
                    read[int(part)].append(int(offset))
        return read

    def read_up_to(wanted: list[int]) -> bool:
        return all(r and r[-1] >= w - 1 for r, w in zip(offsets_read(), wanted, strict=True))

    produce(400)
    args = [f"kafka://{kafka}/follow", "--searches", "none", "--dead-letter", str(dead)]
    args += ["--recovery-dir", str(tmp_path / "rec"), "--snapshot-interval", "100ms"]
    proc = subprocess.Popen(cli_run(*args, "--tail"), stderr=subprocess.PIPE)
    try:
        # A batch at a time until it has read one in each partition: it has started.
        deadline = time.monotonic() + 60
        while not all(offsets_read()):
            assert time.monotonic() < deadline, "the --tail run read nothing"
            produce(10)
            patience = time.monotonic() + 0.5
            while not all(offsets_read()) and time.monotonic() < patience:
                time.sleep(0.05)
        produce(200)
        deadline = time.monotonic() + 60
        while not read_up_to(produced):
            assert time.monotonic() < deadline, f"read {offsets_read()}, produced {produced}"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    produce(100)
    done = subprocess.run(cli_run(*args, "--stop-at-end"), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for part, read in enumerate(offsets_read()):
        assert read[0] >= 400, "read a message from before the --tail run started"
        assert (read[0] - 400) % 10 == 0, "started inside a batch"
        assert read == list(range(read[0], produced[part]))


def test_unreadable_messages_are_dead_letters(tmp_path: Path, run_flow: RunFlow) -> None:
    """A tombstone (no value), an empty or blank message and the messages of a corrupt
    batch (its CRC fails: the log is kept in S3, and one byte of a batch is changed
    there) each go to the dead letter with topic:partition:offset and a reason, are
    counted as invalid, and reading goes on after them."""
    import boto3

    from ..kafka_broker import s3_store

    log = tmp_path / "events.jsonl"
    write(SimSpec(events=2_000, users=50, seed=4, bad=0.01), str(log))
    lines = log.read_bytes().splitlines()
    half = len(lines) // 2
    want, s_file = run_flow([log])
    with s3_store() as env, broker(s3_env=env) as address:
        create_topic(address, "unreadable", partitions=1)
        p = Producer({"bootstrap.servers": address, "linger.ms": 20})
        for value in [*lines[:half], None, b"", b"  \n"]:
            p.produce("unreadable", value=value, partition=0)
        assert p.flush(30) == 0
        ghosts = [
            json.dumps({"type": "app_open", "user": f"ghost{i}", "time": i}).encode()
            for i in range(5)
        ]
        for value in ghosts:  # one batch (linger), corrupted below
            p.produce("unreadable", value=value, partition=0)
        assert p.flush(30) == 0
        for value in lines[half:]:
            p.produce("unreadable", value=value, partition=0)
        assert p.flush(30) == 0
        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT"],
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        first = half + 3
        records = "clusters/tansu_cluster/topics/unreadable/partitions/0000000000/records"
        key = f"{records}/{first:020d}.batch"
        batch = s3.get_object(Bucket="tansu", Key=key)["Body"].read()
        assert batch.count(b"ghost") == 5, "Tansu keeps a batch per object, by first offset"
        s3.put_object(Bucket="tansu", Key=key, Body=batch.replace(b"ghost", b"GHOST"))
        got, s_kafka = run_flow([f"kafka://{address}/unreadable"], stop_at_end=True)
    assert canon(got["searches"]) == canon(want["searches"])
    assert canon(got["sessions"]) == canon(want["sessions"])
    unreadable = {d["source"]: d["reason"] for d in got["dead"] if d["record"] == ""}
    assert unreadable.pop(f"unreadable:0:{half}") == "message without a value (a tombstone)"
    assert unreadable.pop(f"unreadable:0:{half + 1}") == "empty message"
    assert unreadable.pop(f"unreadable:0:{half + 2}") == "empty message"
    assert sorted(unreadable) == [f"unreadable:0:{first + i}" for i in range(5)]
    for reason in unreadable.values():
        assert reason.startswith(f"unreadable message (MessageSet at offset {first} ")
        assert "failed CRC32C check" in reason
    assert len(got["dead"]) == len(want["dead"]) + 8
    assert s_kafka.counts["invalid"] == s_file.counts["invalid"] + 8
    assert s_kafka.counts["lines"] == len(lines) + 8


def test_tail_with_stop_at_end_is_refused() -> None:
    from click.testing import CliRunner

    from search_sessions.cli import main

    r = CliRunner().invoke(main, ["run", "kafka://127.0.0.1:9/t", "--tail", "--stop-at-end"])
    assert r.exit_code == 2
    assert "--tail with --stop-at-end would read nothing" in r.output


def test_an_offset_reset_is_said(capsys: pytest.CaptureFixture[str]) -> None:
    """librdkafka's log is hidden but for the line of an offset reset (messages skipped:
    Tansu never deletes any, so the line is given here as confluent-kafka logs it)."""
    import search_sessions.connectors.kafka  # noqa: F401 - sets up its librdkafka logger

    librdkafka_log = logging.getLogger("search_sessions.kafka")

    reset = (
        "events [0]: offset reset (at offset 5 (leader epoch 0), broker 1) to offset "
        "BEGINNING (leader epoch -1): fetch failed due to requested offset not available "
        "on the broker: Broker: Offset out of range"
    )
    for fac, text in (("FAIL", "Connect to ipv4#127.0.0.1:9 failed"), ("OFFSET", reset)):
        librdkafka_log.warning("%s [%s] %s", fac, "rdkafka#consumer-1", f"[thrd:main]: {text}")
    assert capsys.readouterr().err == f"search-sessions: kafka: {reset}\n"
