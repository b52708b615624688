"""Kafka in and out (``kafka://HOST:PORT[,HOST:PORT...]/TOPIC``), with confluent-kafka.

Input: every topic partition is one input partition, read by assignment (no
consumer group), its next offset kept in the snapshot. It starts at the
earliest offset (``tail``: at its end when it starts) and, with ``stop_at_end``,
ends once its position reaches its end when it starts, like a file. The end is
asked of a fetch (:func:`partition_end`). Each message value is one event;
positions are ``topic:partition:offset``; a message that cannot be read (an
error, no value) is a dead letter like an invalid one.

Output: each record as a JSON value, keyed by user, with its id (``search_id``
or ``session_id``) in the ``record_key`` header. At least once: after a crash
the records since the last snapshot are produced again, with the same keys.

Broker loss: at start the brokers are waited for up to
:data:`CONNECT_TIMEOUT_ENV` (20 s); during a run an outage (no broker reachable)
is said once on standard error, waited out up to :data:`OUTAGE_TIMEOUT_ENV` (60 s)
while librdkafka reconnects, and then ends the run with a one-line error. While
its brokers are away an input is not idle (its events may be waiting there).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec

try:
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        Producer,
        TopicPartition,
    )
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "Kafka support needs confluent-kafka: pip install 'search-sessions[kafka]'"
    ) from exc

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from ..config import parse_duration
from ..control import FAILURE
from ..core.events import EventDecoder, ReasonedDecoder
from ..core.schema import OutputKind
from ..errors import ConfigError, InputError, OutputError
from .base import LinePartition, PartitionContext
from .specs import KafkaPartitionName, KafkaUrl

CONNECT_TIMEOUT_ENV = "SEARCH_SESSIONS_KAFKA_CONNECT_TIMEOUT"
"""How long to wait for a broker when a run starts (a duration: ``20s``, ``500ms``)."""
OUTAGE_TIMEOUT_ENV = "SEARCH_SESSIONS_KAFKA_OUTAGE_TIMEOUT"
"""How long a run waits for its brokers to come back once none is reachable."""
CONNECT_TIMEOUT_S = 20.0
OUTAGE_TIMEOUT_S = 60.0
_PROBE_TIMEOUT_S = 0.5  # while away: ask for metadata this often to see them back
_TRUST_UP_S = 3.0  # once back: how long "all brokers are down" is old news
_REMIND_EVERY_S = 10.0

_T = TypeVar("_T")

# librdkafka logs every failed connection attempt (20 a second while a broker is
# down); our own lines say what matters. SEARCH_SESSIONS_DEBUG lets them through.
_LIBRDKAFKA_LOG = logging.getLogger("search_sessions.kafka")
_LIBRDKAFKA_LOG.addHandler(logging.NullHandler())


class _SayOffsetResets(logging.Handler):
    """Lets through the one line of librdkafka's log that says a partition skipped
    messages: its offset was no longer in the log (retention), so it goes on from the
    oldest offset left (``auto.offset.reset``). confluent-kafka logs ``"%s [%s] %s"``:
    the facility, the client's name and the text."""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if (
            record.levelno >= logging.WARNING
            and isinstance(args, tuple)
            and len(args) == 3
            and args[0] == "OFFSET"
        ):
            _say(f"kafka: {_THREAD.sub('', str(args[2]))}")


_THREAD = re.compile(r"^\[thrd:[^]]*\]: ")
_LIBRDKAFKA_LOG.addHandler(_SayOffsetResets())


def connect_timeout() -> float:
    """Seconds to wait for a broker at start (:data:`CONNECT_TIMEOUT_ENV`)."""
    return _seconds(CONNECT_TIMEOUT_ENV, CONNECT_TIMEOUT_S)


def outage_timeout() -> float:
    """Seconds a run waits out an outage (:data:`OUTAGE_TIMEOUT_ENV`)."""
    return _seconds(OUTAGE_TIMEOUT_ENV, OUTAGE_TIMEOUT_S)


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return max(parse_duration(text).total_seconds(), 0.001)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _client_config(brokers: str, on_error: Callable[[KafkaError], None]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": brokers,
        "error_cb": on_error,
        # Find a broker that is back within a second, not after librdkafka's
        # default backoff of up to 10 s.
        "reconnect.backoff.max.ms": 1000,
    }
    if not os.environ.get("SEARCH_SESSIONS_DEBUG"):
        config["logger"] = _LIBRDKAFKA_LOG
    return config


def _consumer(brokers: str, on_error: Callable[[KafkaError], None], **extra: Any) -> Consumer:
    return Consumer(
        {
            **_client_config(brokers, on_error),
            "group.id": "search-sessions",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # Fetch ahead at most about 20k messages or 16 MB per partition (librdkafka's
            # defaults, 100k and 64 MB, made a live run's memory follow the broker's lead).
            "queued.min.messages": 20_000,
            "queued.max.messages.kbytes": 16_384,
            # An offset that is no longer in the log (deleted by retention) goes on from
            # the oldest one left, not from the end (librdkafka's default): only what is
            # gone is skipped, and the partition says so.
            "auto.offset.reset": "earliest",
            # A corrupt batch is an error (a dead letter), not bytes taken for events.
            "check.crcs": True,
            **extra,
        }
    )


def _producer(brokers: str, outage: _Outage, linger_ms: int) -> Producer:
    return Producer(
        {
            **_client_config(brokers, outage.on_error),
            "linger.ms": linger_ms,
            # A record not delivered within the outage tolerance fails (reported by
            # its delivery callback), so neither a full queue nor a flush waits forever.
            "message.timeout.ms": max(int(outage.tolerance * 1000), 1),
        }
    )


def _reason(err: KafkaError) -> str:
    """librdkafka's error text without its broker name and state.

    >>> _reason(KafkaError(KafkaError._TRANSPORT, "GroupCoordinator: 127.0.0.1:9092/1: "
    ...     "Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state "
    ...     "CONNECT, 1 identical error(s) suppressed)"))
    'Connect to ipv4#127.0.0.1:9092 failed: Connection refused'
    >>> _reason(KafkaError(KafkaError._RESOLVE, "kafka.invalid:9092/bootstrap: Failed to "
    ...     "resolve 'kafka.invalid:9092': Name or service not known (after 5ms in state CONNECT)"))
    "Failed to resolve 'kafka.invalid:9092': Name or service not known"
    """
    text: str = err.str()
    text = re.sub(r" \(after \d+ms in state .*\)$", "", text)
    return re.sub(r"^(?:\w+: )?\S+:\d+(?:/\w+)?: ", "", text)


class _LastError:
    """An ``error_cb`` that keeps the last connection error's text (not the summary
    "1/1 brokers are down", which says less)."""

    def __init__(self) -> None:
        self.text = ""

    def __call__(self, err: KafkaError) -> None:
        if err.code() != KafkaError._ALL_BROKERS_DOWN:
            self.text = _reason(err)

    def __str__(self) -> str:
        return f" ({self.text})" if self.text else ""


def _secs(s: float) -> str:
    return f"{s:g} s"


def _with_broker(url: str, brokers: str, call: Callable[[float], _T], last: _LastError) -> _T:
    """``call(timeout)`` (a request to the brokers), again until it answers, for up to
    :func:`connect_timeout` seconds; then an :class:`InputError` naming the brokers."""
    wait = connect_timeout()
    deadline = time.monotonic() + wait
    step = 0.25
    while True:
        started = time.monotonic()
        left = deadline - started
        try:
            return call(max(min(step, left), 0.05))
        except KafkaException as exc:
            if not last.text:
                last.text = str(exc.args[0].str() if exc.args else exc)
        left = deadline - time.monotonic()
        if left <= 0:
            raise InputError(f"{url}: no broker reachable at {brokers} after {_secs(wait)}{last}")
        # A refused request can come back at once: back off before the next one.
        time.sleep(min(max(step - (time.monotonic() - started), 0.0), left))
        step = min(step * 2, 4.0)


def _topic_metadata(url: str, brokers: str, topic: str) -> Any:
    """The topic's metadata, waiting up to :func:`connect_timeout` for a broker."""
    last = _LastError()
    consumer = _consumer(brokers, last)

    def metadata(timeout: float) -> Any:
        try:
            return consumer.list_topics(topic, timeout=timeout)
        finally:
            consumer.poll(0)  # serves the error callback: why it failed

    try:
        return _with_broker(url, brokers, metadata, last)
    finally:
        consumer.close()


def list_partitions(url: str) -> list[str]:
    """The input partitions of a topic, in partition order."""
    k = KafkaUrl.parse(url)
    topic = _topic_metadata(url, k.brokers, k.topic).topics.get(k.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        raise InputError(f"{url}: no such topic (or it has no partitions)")
    return [str(KafkaPartitionName(k, p)) for p in sorted(topic.partitions)]


_STATS_EVERY_MS = 20
"""How often the probe of :func:`partition_end` reports (its one chance to see the end)."""


def partition_end(where: str, brokers: str, tp: TopicPartition) -> int:
    """Where a partition ends now: the offset after its last committed message (its last
    stable offset: the high watermark, unless a transaction is open), as the response to a
    fetch says, waiting up to :func:`connect_timeout` for a broker.

    Not ListOffsets alone, which ``OFFSET_END`` and ``get_watermark_offsets`` rely on:
    Tansu answers it with the offset after the first message of the partition's last
    batch. Its answer is only where the probe starts fetching: an offset in the log,
    the end itself on Kafka. librdkafka keeps a fetch's last stable offset for its
    statistics only, hence the probe's statistics callback.
    """
    last = _LastError()
    ends: list[int] = []
    decode = msgspec.json.Decoder().decode

    def stats(text: str) -> None:
        topic = decode(text).get("topics", {}).get(tp.topic, {})
        part = topic.get("partitions", {}).get(str(tp.partition))
        if part is not None and part.get("ls_offset", -1) >= 0:
            ends.append(part["ls_offset"])

    probe = _consumer(
        brokers,
        last,
        **{
            "statistics.interval.ms": _STATS_EVERY_MS,
            "stats_cb": stats,
            "fetch.wait.max.ms": 10,
            "max.partition.fetch.bytes": 65_536,
        },
    )
    topic, part = tp.topic, tp.partition

    def list_offsets(timeout: float) -> tuple[int, int]:
        try:
            return probe.get_watermark_offsets(TopicPartition(topic, part), timeout=timeout)
        finally:
            probe.poll(0)  # serves the error callback: why it failed

    try:
        started = time.monotonic()
        _low, guess = _with_broker(where, brokers, list_offsets, last)
        probe.assign([TopicPartition(topic, part, max(guess, 0))])
        wait = connect_timeout()
        while not ends:
            probe.consume(1, timeout=0.01)  # serves the statistics callback
            if time.monotonic() - started > wait:
                raise InputError(
                    f"{where}: no broker reachable at {brokers} after {_secs(wait)}{last}"
                )
        return ends[0]
    finally:
        probe.close()


class _Outage:
    """Whether any broker of one address list answers, as every client of it in this
    process sees it (so an outage is said once, not once per partition).

    Clients report it down (librdkafka's "all brokers are down"); a probe (or a delivery)
    finds it up again; :meth:`check` fails a run once an outage has lasted the tolerance.
    """

    def __init__(self, brokers: str) -> None:
        self.brokers = brokers
        self.tolerance = outage_timeout()
        self.since: float | None = None
        self.last = _LastError()
        self.next_remind = self.trust_up_until = 0.0
        self.lock = threading.Lock()

    def on_error(self, err: KafkaError) -> None:
        """librdkafka's ``error_cb`` (served while a client polls)."""
        self.last(err)
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.down()

    def down(self) -> None:
        now = time.monotonic()
        with self.lock:
            # Errors queued before the brokers came back are served after it.
            if self.since is not None or now < self.trust_up_until:
                return
            self.since = now
            self.next_remind = now + _REMIND_EVERY_S
        _say(
            f"kafka://{self.brokers}: no broker reachable{self.last}; waiting up to "
            f"{_secs(self.tolerance)} for one ({OUTAGE_TIMEOUT_ENV})"
        )
        probe = threading.Thread(
            target=_probe, args=(weakref.ref(self), now), name="kafka-probe", daemon=True
        )
        probe.start()

    def up(self) -> None:
        if self.since is None:
            return
        now = time.monotonic()
        with self.lock:
            since, self.since = self.since, None
            self.trust_up_until = now + _TRUST_UP_S
        if since is not None:
            _say(f"kafka://{self.brokers}: broker back after {now - since:.1f} s")

    @property
    def failed(self) -> bool:
        """Whether it has lasted the tolerance."""
        since = self.since
        return since is not None and time.monotonic() - since >= self.tolerance

    def check(self, what: str) -> None:
        """Fail (an :class:`InputError`) once the outage has lasted the tolerance."""
        since = self.since
        if since is None:
            return
        if self.failed:
            raise _failed(
                InputError,
                f"{what}: no broker reachable at {self.brokers} for {_secs(self.tolerance)}"
                f"{self.last}; with --recovery-dir, rerun the same command to resume",
            )
        now = time.monotonic()
        if now >= self.next_remind:
            self.next_remind = now + _REMIND_EVERY_S
            _say(f"kafka://{self.brokers}: still no broker after {now - since:.0f} s")


def _probe(ref: weakref.ref[_Outage], since: float) -> None:
    """Ask for metadata until a broker answers (a message says nothing: it may have been
    fetched before), while the outage that began at ``since`` lasts and a run waits for
    it; a thread of its own, so that no worker waits."""
    outage = ref()
    if outage is None:
        return
    client = _consumer(outage.brokers, _LastError())
    give_up = since + outage.tolerance + 1
    del outage  # (held only while asking: the outage goes with its clients)
    try:
        while time.monotonic() < give_up:
            asked = time.monotonic()
            try:
                client.list_topics(timeout=_PROBE_TIMEOUT_S)
                answered = True
            except KafkaException:
                answered = False
            outage = ref()
            if outage is None or outage.since != since:
                return
            if answered:
                outage.up()
                return
            del outage
            time.sleep(max(_PROBE_TIMEOUT_S - (time.monotonic() - asked), 0.0))
    finally:
        client.close()


_OUTAGES: weakref.WeakValueDictionary[str, _Outage] = weakref.WeakValueDictionary()
_OUTAGES_LOCK = threading.Lock()


def _outage(brokers: str) -> _Outage:
    """This process's :class:`_Outage` of ``brokers``, shared while its clients live."""
    with _OUTAGES_LOCK:
        outage = _OUTAGES.get(brokers)
        if outage is None or outage.failed:
            # (One that failed an earlier run: a new one says so again if need be.)
            outage = _OUTAGES[brokers] = _Outage(brokers)
        return outage


def _say(text: str) -> None:
    print(f"search-sessions: {text}", file=sys.stderr, flush=True)


def _failed(kind: type[InputError] | type[OutputError], text: str) -> Exception:
    """The error for a failed input or output, noted as the run's one-line reason."""
    FAILURE.append(text)
    return kind(text)


_MESSAGE_ERRORS = frozenset(
    (
        KafkaError._BAD_MSG,  # a batch that fails its CRC check, or cannot be parsed
        KafkaError._BAD_COMPRESSION,
        KafkaError._NOT_IMPLEMENTED,  # a compression codec librdkafka was built without
        KafkaError.UNSUPPORTED_COMPRESSION_TYPE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
        KafkaError.MSG_SIZE_TOO_LARGE,
    )
)
"""Errors about one message (or its batch): it is a dead letter, and reading goes on
after it. Any other error is about the partition."""


def _unreadable(err: KafkaError | None, value: bytes | None) -> str:
    """Why a message is no event before it is even decoded."""
    if err is not None:
        return f"unreadable message ({err.str()})"
    return "message without a value (a tombstone)" if value is None else "empty message"


class KafkaPartition(LinePartition):
    """One topic partition; ``offset`` in the snapshot is the next offset to read (its
    position: past the transaction markers and compacted offsets it has gone by)."""

    bounded = False

    def __init__(
        self, ctx: PartitionContext, name: str, tail: bool, stop_at_end: bool, batch: int = 4096
    ) -> None:
        super().__init__(ctx)
        k = KafkaPartitionName.parse(name)
        self.where = f"kafka://{k.url.brokers}/{k.topic}"
        self.tp = TopicPartition(k.topic, k.partition)
        self.outage = _outage(k.url.brokers)
        self.consumer = _consumer(k.url.brokers, self.outage.on_error)
        self.batch = batch
        self._positions: list[int] = []
        self._said: set[int] = set()
        self._plain: EventDecoder | None = None
        self._reasoned: ReasonedDecoder | None = None
        fresh = ctx.resume is None
        self.stop_at: int | None = None
        """With ``stop_at_end``, the offset to end at: the end when it starts."""
        if self.ended:
            return  # (a resumed run: it had ended before)
        if stop_at_end or (tail and fresh):
            end = self._find_end(name)
            self.stop_at = end if stop_at_end else None
            if tail and fresh:
                # Where a resumed run starts too, whether it has --tail or not.
                self.offset = end
        if (tail and fresh) or self.seq > 0 or self.offset > 0:
            start = self.offset
        else:
            start = OFFSET_BEGINNING
        self.consumer.assign([TopicPartition(k.topic, k.partition, start)])

    def _find_end(self, name: str) -> int:
        """The partition's end now; fails clearly, after the connect timeout, if no
        broker answers."""
        try:
            return partition_end(name, self.outage.brokers, self.tp)
        except InputError as exc:
            raise _failed(InputError, str(exc)) from None

    def make_decoder(self) -> EventDecoder:
        self._plain = super().make_decoder()
        self._reasoned = ReasonedDecoder(self.input_index, self.cfg.layout)
        return self._plain

    def read(self) -> tuple[list[bytes], bool]:
        stop = self.stop_at
        if stop is not None and self.offset >= stop:
            return [], True
        msgs = self.consumer.consume(num_messages=self.batch, timeout=0.05)
        limit = sys.maxsize if stop is None else stop
        values: list[bytes] = []
        offsets: list[int] = []
        reasons: dict[int, str] = {}
        for m in msgs:
            err = m.error()
            if err is not None and err.code() not in _MESSAGE_ERRORS:
                self._partition_error(err)
                continue
            off = m.offset()
            if off is None or err is not None:
                # A batch that fails again names its first offset: the next one is lost too.
                off = max(-1 if off is None else off, self.offset)
            if off >= limit:
                break
            value = m.value()
            if err is not None or not value or value.isspace():
                # (A blank line is skipped, but a message is a record.)
                value, reasons[off] = b"", _unreadable(err, value)
            values.append(value)
            offsets.append(off)
            self.offset = off + 1
            if err is not None:
                # librdkafka would fetch it again and again: go past it (what came after
                # it is fetched again from there).
                self.consumer.seek(TopicPartition(self.tp.topic, self.tp.partition, off + 1))
                break
        self.decoder = self._plain if not reasons else self._reasoned_by(reasons)
        self._move_to_position(limit)
        if self.outage.since is not None:
            self._away(bool(values))
        self._positions = offsets
        return values, stop is not None and self.offset >= stop

    def _reasoned_by(self, reasons: dict[int, str]) -> EventDecoder:
        assert self._reasoned is not None
        self._reasoned.reasons = reasons
        return self._reasoned

    def _move_to_position(self, limit: int) -> None:
        """Past what the consumer has gone by without a message for us: transaction
        markers, aborted transactions, offsets removed by compaction. So a partition
        whose last offsets hold no message still reaches its end."""
        (tp,) = self.consumer.position([self.tp])
        if tp.offset > self.offset:
            self.offset = min(tp.offset, limit)

    def _partition_error(self, err: KafkaError) -> None:
        """An error about the partition, not about a message: said once per kind (an
        offset reset skips what retention deleted); a fatal one fails the run."""
        if err.fatal():
            raise _failed(InputError, f"{self.where}#{self.tp.partition}: {err.str()}")
        if err.code() not in self._said:
            self._said.add(err.code())
            _say(f"{self.where}#{self.tp.partition}: {err.str()}")

    def _away(self, got_data: bool) -> None:
        """No broker answers: fail once that has lasted the tolerance."""
        self.outage.check(self.where)
        if not got_data:
            # Not idle: its events may be waiting on the broker, and an idle input
            # would let the watermark run ahead of them (they would come back late).
            self.last_data = self.clock()

    def positions(self, n: int) -> list[int] | None:
        return self._positions

    def close(self) -> None:
        self.consumer.close()


class _KafkaSinkPartition(StatefulSinkPartition[bytes, None]):
    def __init__(self, url: KafkaUrl, key_field: str) -> None:
        self.url = url
        self.topic = url.topic
        self.key_field = key_field
        self.outage = _outage(url.brokers)
        self.producer = _producer(url.brokers, self.outage, linger_ms=20)
        self.decode = msgspec.json.Decoder(dict[str, Any]).decode
        self.failed: list[KafkaError] = []
        self._reach_broker()

    def _reach_broker(self) -> None:
        """Fail clearly, after the connect timeout, if no broker answers."""
        try:
            _topic_metadata(
                f"kafka://{self.url.brokers}/{self.topic}", self.url.brokers, self.topic
            )
        except InputError as exc:
            raise _failed(OutputError, str(exc)) from None

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
                        self._check()  # (records time out while no broker answers)
            self.producer.poll(0)
        self._check()

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(err)
        elif self.outage.since is not None:
            self.outage.up()

    def _check(self, left: int = 0) -> None:
        if not self.failed and not left:
            return
        where = f"kafka://{self.url.brokers}/{self.topic}"
        lost = len(self.failed) + left
        timed_out = not self.failed or self.failed[0].code() == KafkaError._MSG_TIMED_OUT
        if timed_out and self.outage.since is not None:
            text = (
                f"{where}: no broker reachable at {self.url.brokers} for "
                f"{_secs(self.outage.tolerance)}{self.outage.last}; {lost:,} records not "
                "delivered; with --recovery-dir, rerun the same command to resume"
            )
        elif self.failed:
            text = f"{where}: delivery failed: {self.failed[0].str()}"
        else:
            text = f"{where}: {lost:,} records not delivered"
        raise _failed(OutputError, text)

    def _flush(self) -> None:
        # Records time out after the tolerance (message.timeout.ms), so this returns.
        left = self.producer.flush(self.outage.tolerance + 5.0)
        self._check(left)

    def snapshot(self) -> None:
        # A snapshot must not claim records that are still only in our queue.
        self._flush()
        return None

    def close(self) -> None:
        # Bytewax also closes partitions while unwinding from a failure, where raising
        # would abort the process; a run that ends well has flushed and checked every
        # record at its last snapshot.
        if FAILURE or self.failed:
            return
        left = self.producer.flush(self.outage.tolerance + 5.0)
        if left or self.failed:
            _say(f"kafka://{self.url.brokers}/{self.topic}: records not delivered at close")


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
    outage = _outage(k.brokers)
    producer = _producer(k.brokers, outage, linger_ms=5)
    failed: list[KafkaError] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    decode = msgspec.json.Decoder().decode
    n = 0
    for line in lines:
        try:
            key = str(decode(line).get("user", "")).encode()
        except (msgspec.DecodeError, AttributeError, UnicodeDecodeError):
            key = b""
        while not failed:
            try:
                producer.produce(k.topic, value=line, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        if failed:
            break
        producer.poll(0)
        n += 1
    left = producer.flush(outage.tolerance + 5.0)
    if failed or left:
        why = failed[0].str() if failed else f"{left:,} not delivered"
        raise OutputError(f"{url}: not every event was delivered ({why})")
    return n
