"""Deterministic, realistic search traffic for demos, tests and benchmarks.

Users come back in sessions separated by gaps of more than 30 minutes. A
session may start with ``app_open`` and end with ``app_close``; in between
come searches for Zipf-distributed queries, result lists of up to 10 items
(tail queries more often get none), clicks biased towards the top positions,
reformulations after searches that got no click, and conversions
(``conversion``, or its aliases ``purchase`` and ``add_to_cart``) after some
clicks and, rarely, straight from a results page. A share of searches
(``typeahead``) is typed as you go: requests for growing prefixes of the query,
100-600 ms apart, come before it. Each user has a ``platform`` (on ``app_open``
and ``search`` events); some clients send a ``search_id`` on every event, some
clicks carry their ``rank``.

**Clicks.** Each user has a click propensity ``p``, drawn once from
``0.2 + 0.5 * Beta(3, 2)`` (mean 0.5, between 0.2 and 0.7). Each search the user
types in full is clicked with probability ``p``, whatever its query and whatever
came before; keystroke (prefix) requests are never clicked. A search that is not
clicked gets zero results with probability ``z / (1 - p)``, where
``z = 0.02 + 0.15 * tail`` (``tail`` is the query's popularity rank as a share of
all queries), so every user's zero-result rate is ``z`` and clicked searches
always have results. The times between a user's events (keystroke requests are
typed in the 10 seconds before their search) depend on no click and no query, so
neither does how many searches a user makes.

**The true CTR** of a group of users is therefore the mean of their propensities:
the expected share of full-query searches (keystroke requests left out, as
``--collapse-typeahead`` leaves them out) that get a click, ``0.5``
(:data:`BASE_CTR`). With ``variants``, each user is in one variant (a hash of
the seed and the user: an even split in expectation), written as ``variant`` on
their ``app_open`` and ``search`` events; the second variant's users have
``p + effect`` instead of ``p``, so its true CTR is higher by exactly ``effect``
(:func:`true_ctr`) and its zero-result rate is the same. ``effect`` may be
between -0.2 and 0.13, which keeps every ``p`` between 0 and ``1 - max(z)``.
(The one session cut short by the ``events`` budget may lose a click.)

Optional noise: events written up to ``disorder`` seconds out of order, exact
duplicates, and invalid records of every kind. The same arguments always
give the same bytes.

**Live traffic** (:func:`generate_live`, ``write(..., rate=R)``): the timeline
starts now and runs in real time, each event sent at its time and stamped with the
wall clock when it is sent (less its disorder), so event time is the send time. The
rate comes from the number of users, not from speeding time up: each user keeps the
31-minute gaps and comes back about hourly or less often, so ``R`` events a second
take :func:`live_users` users. Sessions under way at the start are joined midway.

>>> lines = list(generate(SimSpec(events=50, users=5, seed=1)))
>>> len(lines)
50
>>> true_ctr(SimSpec(variants=("A", "B"), effect=0.02), "B")
0.52
"""

from __future__ import annotations

import heapq
import math
import random
import time
import zlib
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from itertools import accumulate, islice
from typing import TypeVar

import msgspec

from .connectors.specs import Scheme, scheme_of
from .core.time import EPOCH
from .errors import ConfigError

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


BASE_CTR = 0.5
"""The true CTR without an effect: the mean click propensity."""
_PROPENSITY_LOW, _PROPENSITY_SPAN, _PROPENSITY_BETA = 0.2, 0.5, (3.0, 2.0)
_MAX_ZERO = 0.17  # z at the tail; a propensity above 1 - _MAX_ZERO could not keep z
EFFECT_RANGE = (-_PROPENSITY_LOW, round(1 - _MAX_ZERO - _PROPENSITY_LOW - _PROPENSITY_SPAN, 10))
"""The effects that keep every propensity between 0 and ``1 - max(z)``."""

_PLATFORMS = ("web", "ios", "android")
_PLATFORM_WEIGHTS = (0.5, 0.3, 0.2)
_CONVERSION_TYPES = ("conversion", "purchase", "add_to_cart")
_CONVERSION_WEIGHTS = (0.9, 0.05, 0.05)
_NO_CLICK_CONVERSIONS = 1 / 8  # a results page converts this much less often than a click
_MIN_GAP_US = 31 * 60_000_000  # between sessions of a user: more than the default --gap
_SESSION_US = 2 * 60_000_000  # about how long a session lasts
_TYPING_US = 10_000_000  # before each search: room for its keystroke requests


@dataclass(frozen=True)
class SimSpec:
    """What to simulate; ``disorder`` is in seconds, fractions are per line.

    ``conversions``: the chance that a clicked search leads to a conversion (a
    search with results but no click converts 8 times less often); ``typeahead``:
    the share of searches typed as you go; ``variants``: the values users are split
    into (none: no ``variant`` field); ``effect``: how much higher the second
    variant's true CTR is.
    """

    events: int = 100_000
    users: int = 1_000
    seed: int = 0
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    days: float = 1.0
    disorder: float = 0.0
    duplicates: float = 0.0
    bad: float = 0.0
    queries: int = 5_000
    conversions: float = 0.12
    typeahead: float = 0.1
    variants: tuple[str, ...] = ()
    effect: float = 0.0

    def __post_init__(self) -> None:
        for name in ("duplicates", "bad", "conversions", "typeahead"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if len(set(self.variants)) != len(self.variants) or not all(self.variants):
            raise ConfigError(f"variants must be distinct and not empty, got {self.variants}")
        if self.effect and len(self.variants) < 2:
            raise ConfigError("an effect needs at least two variants (--variants A,B)")
        low, high = EFFECT_RANGE
        if not low <= self.effect <= high:
            raise ConfigError(f"effect must be between {low} and {high}, got {self.effect}")


def true_ctr(spec: SimSpec, variant: str | None = None) -> float:
    """The expected share of full-query searches with a click, for the users of
    ``variant`` (all users: ``None``); see the module's docstring."""
    second = spec.variants[1] if len(spec.variants) > 1 else None
    return BASE_CTR + (spec.effect if variant is not None and variant == second else 0.0)


def _query_text(rank: int) -> str:
    words = []
    n = rank + 7
    for _ in range(1 + rank % 3):
        words.append(_WORDS[n % len(_WORDS)])
        n = n * 31 + 17
    return " ".join(words)


def _items(rank: int, n: int) -> list[str]:
    return [f"doc{(rank * 131 + p * 7919) % 100_000}" for p in range(n)]


def _fmt(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat(timespec="milliseconds")[:-6] + "Z"


def _variant_of(seed: int, name: str, variants: tuple[str, ...]) -> str:
    """The user's variant: a hash of seed and user, as experiment platforms do."""
    digest = blake2b(f"{seed}\x1f{name}".encode(), digest_size=8).digest()
    return variants[int.from_bytes(digest) % len(variants)]


class _User:
    __slots__ = ("next_start", "propensity", "sends_ids", "tags", "uid")

    def __init__(
        self,
        uid: object,
        next_start: int,
        sends_ids: bool,
        propensity: float,
        tags: dict[str, object],
    ) -> None:
        self.uid = uid
        self.next_start = next_start
        self.sends_ids = sends_ids
        self.propensity = propensity
        self.tags = tags


class _Traffic:
    """One simulation's random state: its users, and each user's sessions in turn."""

    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.query_cdf = list(accumulate(1 / (r + 1) ** 1.07 for r in range(spec.queries)))
        self.serial = 0
        self.users: list[_User] = []
        # Users share their tags (read-only): live traffic has hundreds of thousands.
        self._tags: dict[tuple[str, str | None], dict[str, object]] = {}

    def add_user(self, next_start: int) -> int:
        """A new user, whose first session starts at ``next_start``; returns its index."""
        rng, spec = self.rng, self.spec
        i = len(self.users)
        name = str(1000 + i) if i % 5 == 0 else f"u{i}"
        platform = rng.choices(_PLATFORMS, _PLATFORM_WEIGHTS)[0]
        p = _PROPENSITY_LOW + _PROPENSITY_SPAN * rng.betavariate(*_PROPENSITY_BETA)
        variant = None
        if spec.variants:
            variant = _variant_of(spec.seed, name, spec.variants)
            p += spec.effect if len(spec.variants) > 1 and variant == spec.variants[1] else 0.0
        tags: dict[str, object] = {"platform": platform}
        if variant is not None:
            tags["variant"] = variant
        tags = self._tags.setdefault((platform, variant), tags)
        uid = int(name) if i % 5 == 0 else name
        self.users.append(_User(uid, next_start, i % 4 == 0, p, tags))
        return i

    def _query(self) -> tuple[int, str]:
        rank = bisect(self.query_cdf, self.rng.random() * self.query_cdf[-1])
        return rank, _query_text(rank)

    def _ids(self, user: _User) -> dict[str, str]:
        self.serial += 1
        return {"search_id": f"s{self.serial}"} if user.sends_ids else {}

    def session(self, user: _User, t: int) -> tuple[list[tuple[int, dict[str, object]]], int]:
        """One session's events as (time_us, record), and when the session is over
        (the last event or later; it depends on no click, see the module's docstring)."""
        rng = self.rng
        out: list[tuple[int, dict[str, object]]] = []
        if rng.random() < 0.7:
            out.append(_event(t, "app_open", user.uid, **user.tags))
            t += _step(rng, 1, 8)
        n_searches = 1
        while rng.random() < 0.45 and n_searches < 8:
            n_searches += 1
        rank, query = self._query()
        typed_from = 0
        for i in range(n_searches):
            t, clicked = self._search(out, user, t, query, rank, typed_from)
            if i + 1 < n_searches:
                if not clicked and rng.random() < 0.7:
                    typed_from = len(query) + 1
                    query = f"{query} {_WORDS[rng.randrange(len(_WORDS))]}"
                else:
                    typed_from = 0
                    rank, query = self._query()
        if rng.random() < 0.6:
            t += _step(rng, 1, 30)
            out.append(_event(t, "app_close", user.uid))
        return out, t

    def _search(
        self,
        out: list[tuple[int, dict[str, object]]],
        user: _User,
        t: int,
        query: str,
        rank: int,
        typed_from: int,
    ) -> tuple[int, bool]:
        """Add one search (after its keystroke requests, if typed as you go), its
        results, clicks and conversion to ``out``. Returns the time of the user's next
        action and whether there was a click."""
        rng, spec = self.rng, self.spec
        # Every time step here is drawn whatever the query, the typing and the clicks,
        # so a user's searches do not depend on their clicks (the true CTR is exact).
        t += _TYPING_US
        if spec.typeahead and rng.random() < spec.typeahead:
            self._keystrokes(out, user, t, query, typed_from)
        ids = self._ids(user)
        out.append(_event(t, "search", user.uid, query=query, **ids, **user.tags))
        t += _step(rng, 0.2, 1.5)
        end = t + _step(rng, 5, 130)
        p = user.propensity
        clicked = rng.random() < p
        if not clicked and rng.random() * (1 - p) < 0.02 + 0.15 * rank / spec.queries:
            items: list[str] = []
        else:
            items = _items(rank, rng.choice((10, 10, 10, 5, 3)))
        out.append(_event(t, "results", user.uid, items=items, **ids))
        if clicked:
            t, item = self._clicks(out, user, items, t, end, ids)
            if rng.random() < spec.conversions:
                self._conversion(out, user, t + int((end - t) * rng.uniform(0.2, 0.9)), item, ids)
        elif items and rng.random() < spec.conversions * _NO_CLICK_CONVERSIONS:
            when = t + int((end - t) * rng.uniform(0.2, 0.9))
            self._conversion(out, user, when, rng.choice(items), ids)
        return end, clicked

    def _clicks(
        self,
        out: list[tuple[int, dict[str, object]]],
        user: _User,
        items: list[str],
        t: int,
        end: int,
        ids: dict[str, str],
    ) -> tuple[int, str]:
        """One or two clicks between ``t`` and ``end``, biased to the top; returns the
        last one's time and item."""
        rng = self.rng
        weights = [1 / (p + 1) ** 1.3 for p in range(len(items))]
        item = items[0]
        for _ in range(1 if rng.random() < 0.8 else 2):
            pos = rng.choices(range(len(items)), weights)[0]
            t += int((end - t) * rng.uniform(0.05, 0.5))
            extra: dict[str, object] = {"rank": pos + 1} if rng.random() < 0.1 else {}
            item = items[pos]
            out.append(_event(t, "click", user.uid, item=item, **extra, **ids))
        return t, item

    def _conversion(
        self,
        out: list[tuple[int, dict[str, object]]],
        user: _User,
        t: int,
        item: str,
        ids: dict[str, str],
    ) -> None:
        rng = self.rng
        kind = rng.choices(_CONVERSION_TYPES, _CONVERSION_WEIGHTS)[0]
        fields: dict[str, object] = {} if rng.random() < 0.05 else {"item": item}
        fields["value"] = round(math.exp(rng.uniform(math.log(5), math.log(200))), 2)
        fields["currency"] = "USD"
        out.append(_event(t, kind, user.uid, **fields, **ids))

    def _keystrokes(
        self,
        out: list[tuple[int, dict[str, object]]],
        user: _User,
        t: int,
        query: str,
        typed_from: int,
    ) -> None:
        """Requests for growing prefixes of ``query`` (from ``typed_from``, where a
        reformulation starts typing), 100-600 ms apart and the last one that long
        before the full query's request at ``t``, all within ``_TYPING_US`` of it
        (earlier prefixes dropped); most are answered."""
        rng = self.rng
        prefixes = []
        n = max(typed_from + 1, 2 + rng.randrange(2))
        while n < len(query):
            prefixes.append((query[:n], _step(rng, 0.1, 0.6)))
            n += 1 + rng.randrange(3)
        typing = sum(gap for _, gap in prefixes)
        while typing > _TYPING_US - 500_000:
            typing -= prefixes.pop(0)[1]
        t -= typing
        for prefix, gap in prefixes:
            ids = self._ids(user)
            out.append(_event(t, "search", user.uid, query=prefix, **ids, **user.tags))
            if rng.random() < 0.85:
                rank = zlib.crc32(prefix.encode()) % self.spec.queries
                items = _items(rank, rng.choice((10, 5, 3)))
                answered = t + int(gap * rng.uniform(0.3, 0.9))
                out.append(_event(answered, "results", user.uid, items=items, **ids))
            t += gap


def _event(t: int, kind: str, uid: object, **fields: object) -> tuple[int, dict[str, object]]:
    return (t, {"type": kind, "user": uid, "time": _fmt(t), **fields})


def _step(rng: random.Random, lo: float, hi: float) -> int:
    """A random duration in microseconds, between ``lo`` and ``hi`` seconds."""
    return int(rng.uniform(lo, hi) * 1_000_000)


def _events_per_session(spec: SimSpec) -> float:
    """About how many events a session has (app open and close, 1.8 searches, each with
    results, 0.6 clicks, its conversions and keystroke requests): spreads the sessions
    over ``spec.days``."""
    per_search = 2.6 + 0.56 * spec.conversions + 6.9 * spec.typeahead
    return 1.3 + 1.8 * per_search


def generate(spec: SimSpec) -> Iterator[bytes]:
    """The simulated log, one JSON line (without newline) at a time, time-ordered
    up to ``spec.disorder``; exactly ``spec.events`` lines."""
    start_us = (spec.start - EPOCH) // timedelta(microseconds=1)
    span_us = int(spec.days * 86_400_000_000)
    sessions_per_user = max(1.0, spec.events / _events_per_session(spec) / max(spec.users, 1))
    # A user's sessions start this far apart on average: a session, the fixed gap and
    # a random one (which keeps a tenth of the spacing when the span is too short).
    spacing = span_us / sessions_per_user
    mean_gap = max(spacing - _MIN_GAP_US - _SESSION_US, spacing / 10)
    traffic = _Traffic(spec)
    for _ in range(spec.users):
        traffic.add_user(start_us + int(traffic.rng.random() * spacing))
    encode = msgspec.json.encode
    for _key, _order, line in _timeline(traffic, mean_gap, lambda _t, rec: encode(rec)):
        yield line


_L = TypeVar("_L")


def _timeline(
    traffic: _Traffic,
    mean_gap: float,
    line_of: Callable[[int, dict[str, object]], _L],
    arrivals: Iterable[int] = (),
    since: int | None = None,
    events: float | None = None,
) -> Iterator[tuple[float, int, _L | bytes]]:
    """``(send_key, order, line)`` in send order, ``events`` of them (default
    ``spec.events``; ``math.inf`` for no end): the users' sessions in turn (each back
    ``_MIN_GAP_US`` plus an exponential ``mean_gap`` after its last), new users first
    coming at ``arrivals`` (times, in order), events before ``since`` left out. The key
    is the event's time plus its disorder; an invalid record is its bytes, any other
    line ``line_of(time, record)`` (a duplicate is the same object again)."""
    spec, rng, users = traffic.spec, traffic.rng, traffic.users
    heap = [(u.next_start, i) for i, u in enumerate(users)]
    heapq.heapify(heap)
    newcomers = iter(arrivals)
    new = next(newcomers, None)
    pending: list[tuple[float, int, _L | bytes]] = []
    made = 0
    order = 0
    jitter = spec.disorder * 1_000_000
    budget = spec.events if events is None else events
    while made < budget:
        if new is not None and (not heap or new < heap[0][0]):
            heapq.heappush(heap, (new, traffic.add_user(new)))
            new = next(newcomers, None)
        t0, i = heapq.heappop(heap)
        # Everything pending that starts before this session can be written.
        while pending and pending[0][0] < t0:
            yield heapq.heappop(pending)
        user = users[i]
        evs, over = traffic.session(user, t0)
        for t, rec in evs:
            if made >= budget:
                break
            if since is not None and t < since:
                continue
            line: _L | bytes = line_of(t, rec)
            if spec.bad and rng.random() < spec.bad:
                line = _BAD_RECORDS[rng.randrange(len(_BAD_RECORDS))]
            order += 1
            heapq.heappush(pending, (t + rng.random() * jitter, order, line))
            made += 1
            if spec.duplicates and made < budget and rng.random() < spec.duplicates:
                order += 1
                heapq.heappush(pending, (t + rng.random() * jitter, order, line))
                made += 1
        gap = _MIN_GAP_US + int(-math.log(1.0 - rng.random()) * mean_gap)
        user.next_start = over + gap
        heapq.heappush(heap, (user.next_start, i))
    while pending:
        yield heapq.heappop(pending)


# Live traffic (``rate``): the simulated timeline starts now and runs in real time.
_LIVE_CYCLE_US = 3_600_000_000  # a live user's sessions start about an hour apart, or more
_MEAN_SESSION_US = 154_000_000  # a session's start to its end, measured (whatever the options)
_WARMUP_US = 300_000_000  # sessions under way at the start: simulated from this far back


def live_users(spec: SimSpec, rate: float) -> int:
    """How many users live traffic of ``rate`` events per second has: ``spec.users``,
    or as many as it takes when that few would have to come back more often than about
    hourly.

    >>> live_users(SimSpec(users=1_000), rate=100)
    49027
    """
    return max(spec.users, math.ceil(rate * _LIVE_CYCLE_US / 1e6 / _events_per_session(spec)))


def generate_live(
    spec: SimSpec,
    rate: float,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bytes]:
    """``spec.events`` lines of live traffic, about ``rate`` a second: each sent at its
    time on a timeline that starts at ``now()`` and stamped with the time it is sent
    (less its disorder). :func:`live_users` users, each back at least 31 minutes after
    their last session, so their mean spacing gives the rate; sessions under way at the
    start are joined where they are. ``spec.start`` and ``spec.days`` do not apply."""
    users = live_users(spec, rate)
    cycle = users * _events_per_session(spec) / rate * 1e6
    mean_gap = cycle - _MEAN_SESSION_US - _MIN_GAP_US
    traffic = _Traffic(spec)
    first = _first_sessions(traffic.rng, users, _MIN_GAP_US + _MEAN_SESSION_US, mean_gap)
    # No end to the timeline: the last sessions are cut where the budget ends, as a
    # live feed is, rather than trickling on after it for their last minutes.
    encode = msgspec.json.encode
    timeline = _timeline(
        traffic, mean_gap, lambda t, rec: _Unsent(t, encode(rec)), first, _WARMUP_US, math.inf
    )

    def now_us() -> int:
        return (now() - EPOCH) // timedelta(microseconds=1)

    start: int | None = None
    for key, _order, line in islice(timeline, spec.events):
        if start is None:
            start = now_us() - _WARMUP_US  # the first line comes once the warm-up is made
        wait = start + key - now_us()
        if wait > 0:
            sleep(wait / 1e6)
        if isinstance(line, _Unsent):
            if not line.stamped:
                line.stamp(now_us() - int(key - line.t))
            yield line.line
        else:
            yield line


class _Unsent:
    """A live event, stamped when it is first sent (a duplicate repeats its bytes)."""

    __slots__ = ("line", "stamped", "t")

    def __init__(self, t: int, line: bytes) -> None:
        self.t = t
        self.line = line
        self.stamped = False

    def stamp(self, us: int) -> None:
        # The time is the third field, after type and user, and always 24 characters.
        at = self.line.index(b'"time":"') + 8
        self.line = self.line[:at] + _fmt(us).encode() + self.line[at + 24 :]
        self.stamped = True


def _first_sessions(rng: random.Random, n: int, fixed: float, mean: float) -> Iterator[int]:
    """When each of ``n`` users' first session starts, in order, as if the traffic had
    always run: a user's sessions start ``fixed`` plus an exponential ``mean`` apart, so
    the wait for the next is uniform below ``fixed`` or ``fixed`` plus an exponential,
    in proportion. Drawn as order statistics, one user at a time, so users come into
    being only when they first show up."""
    cycle = fixed + mean
    rest = 1.0  # the probability left above the last draw
    for k in range(n, 0, -1):
        rest *= (1.0 - rng.random()) ** (1 / k)
        if rest > mean / cycle:
            yield int((1 - rest) * cycle)
        else:
            yield int(fixed - mean * math.log(rest * cycle / mean))


def write(
    spec: SimSpec,
    out: str,
    rate: float | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write the simulated log to ``out``: a file, ``-`` for standard output, or
    ``kafka://HOST:PORT/TOPIC`` (one message per event, keyed by user). With
    ``rate``, live traffic (:func:`generate_live`). Returns lines written."""
    import sys

    lines = generate(spec) if rate is None else generate_live(spec, rate, now, sleep)
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
