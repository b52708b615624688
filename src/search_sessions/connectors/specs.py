"""Input and output specs: the one place that reads URL schemes.

A spec is what the user types: a path, ``-``, ``kafka://HOST:PORT[,...]/TOPIC``,
``sqlite:///PATH.db`` or ``postgresql://...``. Nothing here does I/O.

>>> scheme_of("-"), scheme_of("kafka://h:9092/t"), scheme_of("sqlite:///x.db"), scheme_of("a.jsonl")
(<Scheme.STDIO: 'stdio'>, <Scheme.KAFKA: 'kafka'>, <Scheme.SQL: 'sql'>, <Scheme.FILE: 'file'>)
>>> source_label("kafka://h:9092/events#2"), source_label("-"), source_label("logs/a.jsonl")
('events:2', '<stdin>', 'logs/a.jsonl')
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..errors import ConfigError

SQL_PREFIXES = ("sqlite:///", "postgresql://", "postgres://")


class Scheme(StrEnum):
    """Where records come from or go to."""

    STDIO = "stdio"
    """``-``: standard input, or standard output."""
    FILE = "file"
    KAFKA = "kafka"
    SQL = "sql"


def scheme_of(spec: str) -> Scheme:
    """The scheme of an input or output spec (a plain path is a file)."""
    if spec == "-":
        return Scheme.STDIO
    if spec.startswith("kafka://"):
        return Scheme.KAFKA
    if spec.startswith(SQL_PREFIXES):
        return Scheme.SQL
    return Scheme.FILE


@dataclass(frozen=True)
class KafkaUrl:
    brokers: str
    topic: str

    @classmethod
    def parse(cls, url: str) -> KafkaUrl:
        """``kafka://h1:9092,h2:9092/topic``.

        >>> KafkaUrl.parse("kafka://127.0.0.1:9092/events")
        KafkaUrl(brokers='127.0.0.1:9092', topic='events')
        """
        rest = url.removeprefix("kafka://")
        brokers, _, topic = rest.partition("/")
        if not brokers or not topic or "/" in topic or "#" in topic:
            raise ConfigError(f"not a Kafka address: {url!r} (use kafka://HOST:PORT/TOPIC)")
        return cls(brokers, topic)


@dataclass(frozen=True)
class KafkaPartitionName:
    """One input partition: ``kafka://BROKERS/TOPIC#PARTITION``."""

    url: KafkaUrl
    partition: int

    @property
    def topic(self) -> str:
        return self.url.topic

    @classmethod
    def parse(cls, name: str) -> KafkaPartitionName:
        url, _, part = name.rpartition("#")
        return cls(KafkaUrl.parse(url), int(part))

    def __str__(self) -> str:
        return f"kafka://{self.url.brokers}/{self.url.topic}#{self.partition}"


def source_label(partition: str) -> str:
    """How records of an input partition are named in dead letters and late events
    (``LABEL:LINE``, or ``TOPIC:PARTITION:OFFSET``)."""
    scheme = scheme_of(partition)
    if scheme is Scheme.STDIO:
        return "<stdin>"
    if scheme is Scheme.KAFKA:
        k = KafkaPartitionName.parse(partition)
        return f"{k.topic}:{k.partition}"
    return partition


def sqlite_path(url: str) -> str:
    """``sqlite:///out/x.db`` is ``out/x.db``; ``sqlite:////abs/x.db`` is ``/abs/x.db``.

    >>> sqlite_path("sqlite:////tmp/x.db")
    '/tmp/x.db'
    """
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a SQLite address: {url!r} (use sqlite:///PATH.db)")
    return url[len("sqlite:///") :]
