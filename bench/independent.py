"""Independent test data, not from the project's simulator: integer users, times with
``+02:00`` offsets and microseconds, and one event in ten timed by an epoch number
(integer seconds, float seconds with microseconds, or integer milliseconds). `make
bench` (``bench/bench.py``) times every row on it as well as on the simulator's data::

    python bench/independent.py [--events 1000000] [--users 20000] [--seed 7]
        [--output /tmp/native-proto/independent.jsonl]

or, from Python, ``generate(events, users, seed, path)``.

Each user has sessions of app_open, searches (each with results and 0-3 clicks with
their rank) and usually an app_close; the file is in event-time order.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

START = datetime(2024, 3, 1, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))
WORDS = [
    f"{a}{b}"
    for a in ("red", "blue", "cheap", "best", "new", "used", "kids", "mens")
    for b in ("shoes", "phone", "bike", "lamp", "desk", "coat", "tent", "watch")
]


def session(rng: random.Random, user: int, t: float) -> list[tuple[float, dict]]:
    out = [(t, {"type": "app_open", "user": user})]
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 5])):
        t += rng.expovariate(1 / 20)
        query = " ".join(rng.sample(WORDS, rng.choice([1, 1, 2])))
        out.append((t, {"type": "search", "user": user, "query": query}))
        t += rng.uniform(0.05, 1.5)
        n = rng.choice([0, 3, 5, 10, 10])
        items = [f"item{rng.randrange(50_000)}" for _ in range(n)]
        out.append((t, {"type": "results", "user": user, "items": items}))
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3]) if n else 0):
            t += rng.expovariate(1 / 30)
            rank = min(n, int(rng.expovariate(0.4)) + 1)
            out.append((t, {"type": "click", "user": user, "item": items[rank - 1], "rank": rank}))
    if rng.random() < 0.85:
        t += rng.expovariate(1 / 15)
        out.append((t, {"type": "app_close", "user": user}))
    return out


def time_value(rng: random.Random, t: float) -> str | int | float:
    """An event time as text with +02:00 and microseconds, or one time in ten as an
    epoch number."""
    when = START + timedelta(seconds=t)
    r = rng.random()
    if r < 0.04:
        return int(when.timestamp())
    if r < 0.07:
        return round(when.timestamp(), 6)
    if r < 0.10:
        return int(when.timestamp() * 1000)
    return when.astimezone(PLUS2).isoformat(timespec="microseconds")


def generate(events: int, users: int, seed: int, path: Path) -> int:
    """Write ``events`` events of ``users`` users to ``path``, in event-time order."""
    rng = random.Random(seed)
    rows: list[tuple[float, int, dict]] = []
    clock = {u: rng.uniform(0, 3600) for u in range(1, users + 1)}
    while len(rows) < events:
        user = rng.randrange(1, users + 1)
        for t, ev in session(rng, user, clock[user]):
            rows.append((t, len(rows), ev))
        clock[user] = rows[-1][0] + rng.expovariate(1 / 7200)
    del rows[events:]
    rows.sort(key=lambda e: (e[0], e[1]))
    with open(path, "w", encoding="utf-8") as f:
        for t, _, ev in rows:
            row = {"type": ev.pop("type"), "user": ev.pop("user"), "time": time_value(rng, t)}
            f.write(json.dumps(row | ev, separators=(",", ":")) + "\n")
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--output", default="/tmp/native-proto/independent.jsonl")
    args = ap.parse_args()
    n = generate(args.events, args.users, args.seed, Path(args.output))
    print(f"wrote {n:,} events to {args.output}")


if __name__ == "__main__":
    main()
