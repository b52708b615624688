"""Deterministic, realistic search traffic for demos, tests and benchmarks.

Users come back in sessions separated by gaps of more than 30 minutes. A
session may start with ``app_open`` and end with ``app_close``; in between
come searches for Zipf-distributed queries, result lists of up to 10 items
(tail queries more often get none), clicks biased towards the top positions,
and reformulations after searches that got no click. Some clients send a
``search_id`` on every event, some clicks carry their ``rank``.

Optional noise: events written up to ``disorder`` seconds out of order, exact
duplicates, and invalid records of every kind. The same arguments always
give the same bytes.

>>> lines = list(generate(SimSpec(events=50, users=5, seed=1)))
>>> len(lines)
50
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate

import msgspec

from .connectors.specs import Scheme, scheme_of
from .core.time import EPOCH

_WORDS = [
    "cheap",
    "red",
    "blue",
    "running",
    "shoes",
    "best",
    "pizza",
    "near",
    "me",
    "weather",
    "tomorrow",
    "how",
    "to",
    "cook",
    "rice",
    "python",
    "list",
    "sort",
    "news",
    "today",
    "football",
    "score",
    "jobs",
    "remote",
    "apartment",
    "rent",
    "cat",
    "dog",
    "food",
    "laptop",
    "deals",
    "phone",
    "case",
    "flights",
    "paris",
    "hotel",
    "london",
    "recipe",
    "chicken",
    "pasta",
    "movie",
    "times",
    "bank",
    "login",
    "music",
    "lyrics",
    "song",
    "train",
    "schedule",
    "map",
    "coffee",
    "gym",
    "yoga",
    "book",
    "review",
    "kids",
    "toys",
    "garden",
    "tools",
    "winter",
    "jacket",
    "summer",
    "dress",
    "car",
    "insurance",
    "used",
    "cars",
    "repair",
    "tv",
    "series",
]

_BAD_RECORDS = (
    b"{not json",
    b"[1, 2, 3]",
    b'"just a string"',
    b'{"type": "teleport", "user": "u1", "time": "2024-01-01T00:00:00Z"}',
    b'{"type": "search", "time": "2024-01-01T00:00:00Z", "query": "x"}',
    b'{"type": "search", "user": "u1", "time": "yesterday", "query": "x"}',
    b'{"type": "search", "user": "u1", "time": "2024-01-01T00:00:00Z", "query": 42}',
    b'{"type": "results", "user": "u1", "time": "2024-01-01T00:00:00Z", "items": "a"}',
    b'{"type": "click", "user": "u1", "time": "2024-01-01T00:00:00Z"}',
    b'{"type": "click", "user": "u1", "time": "2024-01-01T00:00:00Z", "item": "a", "rank": 0}',
    b'{"type": "app_open", "user": null, "time": "2024-01-01T00:00:00Z"}',
    b'{"type": "search", "user": "u1", "time": "2024-01-01T00:00:00Z", "query": "\xff\xfe"}',
)


@dataclass(frozen=True)
class SimSpec:
    """What to simulate; ``disorder`` is in seconds, fractions are per line."""

    events: int = 100_000
    users: int = 1_000
    seed: int = 0
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    days: float = 1.0
    disorder: float = 0.0
    duplicates: float = 0.0
    bad: float = 0.0
    queries: int = 5_000


def _query_text(rank: int) -> str:
    words = []
    n = rank + 7
    for _ in range(1 + rank % 3):
        words.append(_WORDS[n % len(_WORDS)])
        n = n * 31 + 17
    return " ".join(words)


def _fmt(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat(timespec="milliseconds")[:-6] + "Z"


class _User:
    __slots__ = ("name", "next_start", "numeric", "sends_ids")

    def __init__(self, name: str, next_start: int, sends_ids: bool, numeric: bool) -> None:
        self.name = name
        self.next_start = next_start
        self.sends_ids = sends_ids
        self.numeric = numeric


def _session(
    rng: random.Random,
    user: _User,
    t: int,
    query_cdf: list[float],
    n_queries: int,
    serial: list[int],
) -> list[tuple[int, dict[str, object]]]:
    """One session's events as (time_us, record)."""
    out: list[tuple[int, dict[str, object]]] = []
    uid: object = int(user.name) if user.numeric else user.name
    if rng.random() < 0.7:
        out.append(_event(t, "app_open", uid))
        t += _step(rng, 1, 8)
    n_searches = 1
    while rng.random() < 0.45 and n_searches < 8:
        n_searches += 1
    rank = bisect(query_cdf, rng.random() * query_cdf[-1])
    query = _query_text(rank)
    for i in range(n_searches):
        serial[0] += 1
        ids = {"search_id": f"s{serial[0]}"} if user.sends_ids else {}
        t, clicked = _search(rng, out, uid, t, query, rank, rank / n_queries, ids)
        if i + 1 < n_searches:
            if not clicked and rng.random() < 0.7:
                query = f"{query} {_WORDS[rng.randrange(len(_WORDS))]}"
            else:
                rank = bisect(query_cdf, rng.random() * query_cdf[-1])
                query = _query_text(rank)
    if rng.random() < 0.6:
        t += _step(rng, 1, 30)
        out.append(_event(t, "app_close", uid))
    return out


def _search(
    rng: random.Random,
    out: list[tuple[int, dict[str, object]]],
    uid: object,
    t: int,
    query: str,
    rank: int,
    tail: float,
    ids: dict[str, str],
) -> tuple[int, bool]:
    """Add one search, its results and any clicks to ``out``; ``tail`` is the query's
    rank as a fraction of all queries. Returns the time after them and whether there
    was a click."""
    out.append(_event(t, "search", uid, query=query, **ids))
    t += _step(rng, 0.2, 1.5)
    if rng.random() < 0.02 + 0.15 * tail:
        items: list[str] = []
    else:
        items = [
            f"doc{(rank * 131 + p * 7919) % 100_000}" for p in range(rng.choice((10, 10, 10, 5, 3)))
        ]
    out.append(_event(t, "results", uid, items=items, **ids))
    clicked = False
    if items and rng.random() < 0.75 - 0.35 * tail:
        for _ in range(1 if rng.random() < 0.8 else 2):
            weights = [1 / (p + 1) ** 1.3 for p in range(len(items))]
            pos = rng.choices(range(len(items)), weights)[0]
            t += _step(rng, 1, 25)
            extra: dict[str, object] = {"rank": pos + 1} if rng.random() < 0.1 else {}
            out.append(_event(t, "click", uid, item=items[pos], **extra, **ids))
            clicked = True
            t += _step(rng, 3, 120)
    else:
        t += _step(rng, 2, 15)
    return t, clicked


def _event(t: int, kind: str, uid: object, **fields: object) -> tuple[int, dict[str, object]]:
    return (t, {"type": kind, "user": uid, "time": _fmt(t), **fields})


def _step(rng: random.Random, lo: float, hi: float) -> int:
    """A random duration in microseconds, between ``lo`` and ``hi`` seconds."""
    return int(rng.uniform(lo, hi) * 1_000_000)


def generate(spec: SimSpec) -> Iterator[bytes]:
    """The simulated log, one JSON line (without newline) at a time, time-ordered
    up to ``spec.disorder``; exactly ``spec.events`` lines."""
    rng = random.Random(spec.seed)
    start_us = (spec.start - EPOCH) // timedelta(microseconds=1)
    span_us = int(spec.days * 86_400_000_000)
    query_cdf = list(accumulate(1 / (r + 1) ** 1.07 for r in range(spec.queries)))
    # Sessions average about 8 events; spread each user's over the span.
    sessions_per_user = max(1.0, spec.events / 8 / max(spec.users, 1))
    mean_gap = span_us / sessions_per_user
    users = [
        _User(
            str(1000 + i) if i % 5 == 0 else f"u{i}",
            start_us + int(rng.random() * mean_gap),
            sends_ids=i % 4 == 0,
            numeric=i % 5 == 0,
        )
        for i in range(spec.users)
    ]
    heap = [(u.next_start, i) for i, u in enumerate(users)]
    heapq.heapify(heap)
    encode = msgspec.json.encode
    serial = [0]
    pending: list[tuple[float, int, bytes]] = []
    made = 0
    order = 0
    jitter = spec.disorder * 1_000_000
    while made < spec.events:
        t0, i = heapq.heappop(heap)
        # Everything pending that starts before this session can be written.
        while pending and pending[0][0] < t0:
            yield heapq.heappop(pending)[2]
        user = users[i]
        evs = _session(rng, user, t0, query_cdf, spec.queries, serial)
        for t, rec in evs:
            if made >= spec.events:
                break
            line = encode(rec)
            if spec.bad and rng.random() < spec.bad:
                line = _BAD_RECORDS[rng.randrange(len(_BAD_RECORDS))]
            key = t + rng.random() * jitter
            order += 1
            heapq.heappush(pending, (key, order, line))
            made += 1
            if spec.duplicates and made < spec.events and rng.random() < spec.duplicates:
                order += 1
                heapq.heappush(pending, (t + rng.random() * jitter, order, line))
                made += 1
        last = evs[-1][0]
        gap = 31 * 60_000_000 + int(-math.log(1.0 - rng.random()) * mean_gap)
        user.next_start = last + gap
        heapq.heappush(heap, (user.next_start, i))
    while pending:
        yield heapq.heappop(pending)[2]


def write(spec: SimSpec, out: str, rate: float | None = None) -> int:
    """Write the simulated log to ``out``: a file, ``-`` for standard output, or
    ``kafka://HOST:PORT/TOPIC`` (one message per event, keyed by user). With
    ``rate``, at most that many events per second (live traffic). Returns lines written."""
    import sys
    import time

    lines = generate(spec)
    if rate is not None:
        lines = _paced(lines, rate, time.monotonic, time.sleep)
    if scheme_of(out) is Scheme.KAFKA:
        from .connectors.kafka import produce_lines

        return produce_lines(lines, out)
    n = 0
    to_stdout = scheme_of(out) is Scheme.STDIO
    f = sys.stdout.buffer if to_stdout else open(out, "wb")  # noqa: SIM115
    flush_every = 10_000 if rate is None else max(1, int(rate // 10))
    try:
        buf: list[bytes] = []
        for line in lines:
            buf.append(line)
            n += 1
            if len(buf) >= flush_every:
                f.write(b"\n".join(buf) + b"\n")
                f.flush()
                buf.clear()
        if buf:
            f.write(b"\n".join(buf) + b"\n")
    finally:
        if not to_stdout:
            f.close()
        else:
            f.flush()
    return n


def _paced(
    lines: Iterator[bytes], rate: float, clock: Callable[[], float], sleep: Callable[[float], None]
) -> Iterator[bytes]:
    """At most ``rate`` lines per second of ``clock``."""
    start = clock()
    for i, line in enumerate(lines):
        ahead = i / rate - (clock() - start)
        if ahead > 0:
            sleep(ahead)
        yield line
