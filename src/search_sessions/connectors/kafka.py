"""Kafka in and out (``kafka://HOST:PORT[,HOST:PORT...]/TOPIC``), with confluent-kafka.

Input: every topic partition is one input partition, read by assignment (no
consumer group), its next offset kept in the snapshot. It starts at the
earliest offset (``tail``: at the end) and, with ``stop_at_end``, ends at the
end offsets found when it starts, like a file. Each message value is one event;
positions are ``topic:partition:offset``.

Output: each record as a JSON value, keyed by user, with its id (``search_id``
or ``session_id``) in the ``record_key`` header. At least once: after a crash
the records since the last snapshot are produced again, with the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

try:
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Producer, TopicPartition
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "Kafka support needs confluent-kafka: pip install 'search-sessions[kafka]'"
    ) from exc

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from ..core.schema import OutputKind
from ..errors import InputError, OutputError
from .base import LinePartition, PartitionContext
from .specs import KafkaPartitionName, KafkaUrl

TIMEOUT_S = 10.0


def _consumer(brokers: str, **extra: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "search-sessions",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **extra,
        }
    )


def list_partitions(url: str) -> list[str]:
    """The input partitions of a topic, in partition order."""
    k = KafkaUrl.parse(url)
    consumer = _consumer(k.brokers)
    try:
        meta = consumer.list_topics(k.topic, timeout=TIMEOUT_S)
        topic = meta.topics.get(k.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise InputError(f"{url}: no such topic (or it has no partitions)")
        return [str(KafkaPartitionName(k, p)) for p in sorted(topic.partitions)]
    finally:
        consumer.close()


class KafkaPartition(LinePartition):
    """One topic partition; ``offset`` in the snapshot is the next offset to read."""

    bounded = False

    def __init__(
        self, ctx: PartitionContext, name: str, tail: bool, stop_at_end: bool, batch: int = 4096
    ) -> None:
        super().__init__(ctx)
        k = KafkaPartitionName.parse(name)
        self.tp = TopicPartition(k.topic, k.partition)
        self.consumer = _consumer(k.url.brokers)
        self.batch = batch
        resumed = self.seq > 0 or self.offset > 0
        start = self.offset if resumed else (OFFSET_END if tail else OFFSET_BEGINNING)
        self.stop_at: int | None = None
        if stop_at_end:
            _low, high = self.consumer.get_watermark_offsets(self.tp, timeout=TIMEOUT_S)
            self.stop_at = high
            self.checked_high = False
        self.consumer.assign([TopicPartition(k.topic, k.partition, start)])

    def read(self) -> tuple[list[bytes], bool]:
        if self.stop_at is not None and self.checked_high and self.offset >= self.stop_at:
            return [], True
        msgs = self.consumer.consume(num_messages=self.batch, timeout=0.05)
        values: list[bytes] = []
        offsets: list[int] = []
        for m in msgs:
            if m.error() is not None:
                continue
            off: int = m.offset() or 0
            if self.stop_at is not None and self.checked_high and off >= self.stop_at:
                break
            values.append(m.value() or b"")
            offsets.append(off)
            self.offset = off + 1
        if self.stop_at is not None and not self.checked_high and msgs:
            # Some brokers (Tansu) under-report the end offset in ListOffsets;
            # the high watermark of the first fetch response is the reliable one.
            _low, cached = self.consumer.get_watermark_offsets(self.tp, cached=True)
            if cached is not None and cached > self.stop_at:
                self.stop_at = cached
            self.checked_high = True
        if self.stop_at is not None and not msgs and self.offset >= self.stop_at:
            self.checked_high = True
        self._positions = offsets
        done = self.stop_at is not None and self.checked_high and self.offset >= self.stop_at
        return values, done

    def positions(self, n: int) -> list[int] | None:
        return self._positions

    def close(self) -> None:
        self.consumer.close()


class _KafkaSinkPartition(StatefulSinkPartition[bytes, None]):
    def __init__(self, url: KafkaUrl, key_field: str) -> None:
        self.topic = url.topic
        self.key_field = key_field
        self.producer = Producer({"bootstrap.servers": url.brokers, "linger.ms": 20})
        self.decode = msgspec.json.Decoder(dict[str, Any]).decode
        self.failed: list[str] = []

    def write_batch(self, values: list[bytes]) -> None:
        produce = self.producer.produce
        for blob in values:
            for line in blob.splitlines():
                rec = self.decode(line)
                key = rec.get(self.key_field)
                while True:
                    try:
                        produce(
                            self.topic,
                            value=line,
                            key=str(rec.get("user", "")).encode(),
                            headers=[("record_key", str(key).encode())]
                            if key is not None
                            else None,
                            on_delivery=self._delivered,
                        )
                        break
                    except BufferError:  # the local queue is full: let it drain
                        self.producer.poll(0.1)
            self.producer.poll(0)
        self._check()

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))

    def _check(self) -> None:
        if self.failed:
            raise OutputError(f"Kafka output {self.topic}: delivery failed: {self.failed[0]}")

    def _flush(self) -> None:
        left = self.producer.flush(TIMEOUT_S)
        self._check()
        if left:
            raise OutputError(f"Kafka output {self.topic}: {left} records not delivered")

    def snapshot(self) -> None:
        # A snapshot must not claim records that are still only in our queue.
        self._flush()
        return None

    def close(self) -> None:
        self._flush()


RECORD_KEYS = {OutputKind.SEARCHES: "search_id", OutputKind.SESSIONS: "session_id"}


class KafkaSink(FixedPartitionedSink[bytes, None]):
    """Produces blocks of JSON lines to a topic, one message per record."""

    def __init__(self, url: str, kind: OutputKind) -> None:
        self.url = KafkaUrl.parse(url)
        self.kind = kind

    def list_parts(self) -> list[str]:
        return [f"{self.url.topic}"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _KafkaSinkPartition:
        return _KafkaSinkPartition(self.url, RECORD_KEYS.get(self.kind, "source"))


def produce_lines(lines: Iterable[bytes], url: str) -> int:
    """Produce JSON lines to a topic, one message each, keyed by their ``user`` field
    (for ``simulate``); returns how many."""

    k = KafkaUrl.parse(url)
    producer = Producer({"bootstrap.servers": k.brokers, "linger.ms": 5})
    decode = msgspec.json.Decoder().decode
    n = 0
    for line in lines:
        try:
            key = str(decode(line).get("user", "")).encode()
        except (msgspec.DecodeError, AttributeError):
            key = b""
        while True:
            try:
                producer.produce(k.topic, value=line, key=key)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        n += 1
    if producer.flush(30) != 0:
        raise OutputError(f"{url}: not every event was delivered")
    return n
