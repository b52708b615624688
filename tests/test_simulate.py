"""The simulator: conversions, keystroke requests, platforms, variants and the click
model behind ``--effect`` (its true CTR), read back from the events it writes; and
live traffic (``--rate``) under a fake wall clock."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from search_sessions.cli import main
from search_sessions.compare import compare
from search_sessions.errors import ConfigError
from search_sessions.simulate import (
    BASE_CTR,
    EFFECT_RANGE,
    SimSpec,
    generate,
    generate_live,
    live_users,
    true_ctr,
    write,
)

CONVERSION_TYPES = {"conversion", "purchase", "add_to_cart"}
CORE_TYPES = {"app_open", "search", "results", "click", "app_close"}


def events_of(spec: SimSpec) -> list[dict[str, Any]]:
    return msgspec.json.decode(b"[" + b",".join(generate(spec)) + b"]")


def search_records(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-search records of simulated events (time-ordered, no noise), without
    sessions: per user, a search owns the events after it up to the user's next
    search; a search that the next one extends within a second, with no click or
    conversion between, is a keystroke request of it and is left out (its requests are
    kept in the full search's ``requests``)."""
    latest: dict[object, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for e in events:
        kind, user = e["type"], e["user"]
        if kind == "search":
            t = datetime.fromisoformat(e["time"])
            rec = {
                "user": str(user),
                "query": e["query"],
                "time": t,
                "clicked": False,
                "zero_results": False,
                "converted": False,
                "items": None,
                "clicked_items": [],
                "requests": [e],
                "keystroke": False,
                "dimensions": {"variant": e.get("variant")},
            }
            prev = latest.get(user)
            if (
                prev is not None
                and not prev["clicked"]
                and not prev["converted"]
                and t - prev["time"] < timedelta(seconds=1)
                and e["query"].startswith(prev["query"])
            ):
                prev["keystroke"] = True
                rec["requests"] = [*prev["requests"], e]
            latest[user] = rec
            records.append(rec)
        elif user not in latest:
            continue
        elif kind == "click":
            latest[user]["clicked"] = True
            latest[user]["clicked_items"].append(e["item"])
        elif kind == "results":
            latest[user]["items"] = e["items"]
            latest[user]["zero_results"] = not e["items"]
        elif kind in CONVERSION_TYPES:
            latest[user]["converted"] = True
    return [r for r in records if not r["keystroke"]]


@pytest.fixture(scope="module")
def ab_events() -> list[dict[str, Any]]:
    return events_of(
        SimSpec(events=80_000, users=800, seed=5, variants=("A", "B"), effect=0.1, typeahead=0.2)
    )


def test_deterministic_and_variants_only_label_the_traffic() -> None:
    spec = SimSpec(events=5_000, users=60, seed=3, variants=("A", "B"))
    assert list(generate(spec)) == list(generate(spec))
    assert list(generate(spec)) != list(generate(SimSpec(events=5_000, users=60, seed=4)))
    # Without an effect, the variant is a label on the same traffic.
    labelled = events_of(spec)
    for e in labelled:
        e.pop("variant", None)
    assert labelled == events_of(SimSpec(events=5_000, users=60, seed=3))


def test_platform_and_variant_fixed_per_user(ab_events: list[dict[str, Any]]) -> None:
    tags: dict[object, set[tuple[str, str]]] = defaultdict(set)
    for e in ab_events:
        if e["type"] in ("app_open", "search"):
            tags[e["user"]].add((e["platform"], e["variant"]))
        else:
            assert "platform" not in e and "variant" not in e, e
    assert all(len(t) == 1 for t in tags.values())
    platforms = Counter(p for ((p, _),) in tags.values())
    variants = Counter(v for ((_, v),) in tags.values())
    assert set(platforms) == {"web", "ios", "android"}
    assert platforms["web"] > platforms["ios"] > platforms["android"] > 0.1 * len(tags)
    assert set(variants) == {"A", "B"} and abs(variants["A"] - variants["B"]) < 0.1 * len(tags)
    plain = events_of(SimSpec(events=2_000, users=30, seed=1))
    assert not any("variant" in e for e in plain)


def test_conversions(ab_events: list[dict[str, Any]]) -> None:
    conversions = [e for e in ab_events if e["type"] in CONVERSION_TYPES]
    kinds = Counter(e["type"] for e in conversions)
    assert set(kinds) == CONVERSION_TYPES and kinds["conversion"] > 0.8 * len(conversions)
    sends_ids = {e["user"]: "search_id" in e for e in ab_events if e["type"] == "search"}
    for e in conversions:
        assert e["currency"] == "USD" and "kind" not in e
        assert 5 <= e["value"] <= 200 and round(e["value"], 2) == e["value"]
        assert ("search_id" in e) == sends_ids[e["user"]]
    without_item = sum("item" not in e for e in conversions)
    assert 0 < without_item < 0.1 * len(conversions)
    # Each conversion is of an item its search showed: clicked, or (rarely) only listed.
    searches = search_records(ab_events)
    converted = [s for s in searches if s["converted"]]
    rate = len(converted) / len(searches)
    assert 0.05 <= rate <= 0.10, rate
    after_click = sum(s["clicked"] for s in converted)
    assert 0.7 * len(converted) < after_click < len(converted)


def test_conversion_items_come_from_their_search() -> None:
    events = events_of(SimSpec(events=20_000, users=200, seed=2, typeahead=0))
    latest: dict[object, dict[str, Any]] = {}
    for e in events:
        if e["type"] == "search":
            latest[e["user"]] = {"items": [], "clicked": []}
        elif e["type"] == "results":
            latest[e["user"]]["items"] = e["items"]
        elif e["type"] == "click":
            latest[e["user"]]["clicked"].append(e["item"])
        elif e["type"] in CONVERSION_TYPES and "item" in e:
            search = latest[e["user"]]
            assert e["item"] in (search["clicked"] or search["items"]), e


def test_keystroke_requests(ab_events: list[dict[str, Any]]) -> None:
    searches = search_records(ab_events)
    typed = [s for s in searches if len(s["requests"]) > 1]
    assert 0.15 < len(typed) / len(searches) < 0.25  # typeahead=0.2
    ids_seen: set[str] = set()
    for s in typed:
        *prefixes, full = s["requests"]
        assert full["query"] == s["query"]
        queries = [r["query"] for r in s["requests"]]
        assert all(len(a) < len(b) and b.startswith(a) for a, b in pairwise(queries))
        assert len(queries[0]) >= 2
        times = [datetime.fromisoformat(r["time"]) for r in s["requests"]]
        gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
        assert all(0.1 <= g <= 0.6 for g in gaps), gaps
        assert all(r["platform"] == full["platform"] for r in prefixes)
        if "search_id" in full:
            ids = [r["search_id"] for r in s["requests"]]
            assert len(set(ids)) == len(ids) and not ids_seen & set(ids)
            ids_seen.update(ids)
    # No click between a search and the next request of its user within a second:
    # clicks come after the full query only.
    last: dict[object, dict[str, Any]] = {}
    for e in ab_events:
        if e["type"] == "search":
            prev = last.get(e["user"])
            if prev is not None and prev["type"] == "click":
                gap = datetime.fromisoformat(e["time"]) - datetime.fromisoformat(prev["time"])
                assert gap > timedelta(seconds=1)
        last[e["user"]] = e


def test_off_switches_give_the_five_core_types() -> None:
    spec = SimSpec(events=20_000, users=200, seed=8, typeahead=0, conversions=0)
    events = events_of(spec)
    assert {e["type"] for e in events} == CORE_TYPES
    assert all(len(s["requests"]) == 1 for s in search_records(events))
    kinds = Counter(e["type"] for e in events)
    # One results per search (the last search may be cut off by the events budget).
    assert kinds["search"] - 1 <= kinds["results"] <= kinds["search"]


@pytest.mark.parametrize("options", [{}, {"typeahead": 0, "conversions": 0}])
def test_traffic_spans_about_the_days_asked(options: dict[str, float]) -> None:
    events = events_of(SimSpec(events=60_000, users=600, seed=1, **options))
    span = datetime.fromisoformat(events[-1]["time"]) - datetime.fromisoformat(events[0]["time"])
    assert timedelta(hours=20) < span < timedelta(hours=26), span


def test_click_model_true_ctr(ab_events: list[dict[str, Any]]) -> None:
    """Each variant's CTR (over full-query searches) is its true CTR within 4 user-level
    standard errors, the zero-result rates are the same, and users differ in
    propensity (the per-user clicks are overdispersed against one binomial)."""
    spec = SimSpec(variants=("A", "B"), effect=0.1)
    assert true_ctr(spec, "A") == true_ctr(spec) == BASE_CTR
    assert true_ctr(spec, "B") == pytest.approx(BASE_CTR + 0.1)
    searches = search_records(ab_events)
    # Zero results come only from the unclicked share: a click is decided before them.
    assert not any(s["clicked"] and s["zero_results"] for s in searches)
    result = compare(searches, "variant")
    for row in result["variants"]:
        se = (row["ctr_high"] - row["ctr_low"]) / (2 * 1.959964)
        assert abs(row["ctr"] - true_ctr(spec, row["value"])) < 4 * se, row
    b = result["variants"][1]
    assert b["zero_result_rate_diff_low"] < 0 < b["zero_result_rate_diff_high"]
    assert b["ctr_diff_low"] > 0.05
    by_user: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in searches:
        if s["dimensions"]["variant"] == "A":
            by_user[s["user"]][0] += 1
            by_user[s["user"]][1] += s["clicked"]
    busy = [(n, k) for n, k in by_user.values() if n >= 10]
    p = sum(k for _, k in busy) / sum(n for n, _ in busy)
    dispersion = sum((k - n * p) ** 2 / (n * p * (1 - p)) for n, k in busy) / (len(busy) - 1)
    assert dispersion > 1.3, dispersion


def test_keystroke_requests_are_never_clicked() -> None:
    events = events_of(SimSpec(events=20_000, users=200, seed=4, typeahead=0.5))
    owner: dict[object, dict[str, Any]] = {}
    requests = clicked_requests = 0
    for e in events:
        if e["type"] == "search":
            prev = owner.get(e["user"])
            t = datetime.fromisoformat(e["time"])
            if prev and t - prev["t"] < timedelta(seconds=1):
                requests += 1
                clicked_requests += prev["clicked"]
            owner[e["user"]] = {"t": t, "clicked": False}
        elif e["type"] == "click":
            owner[e["user"]]["clicked"] = True
    assert requests > 1_000 and clicked_requests == 0


@pytest.mark.parametrize(
    "options",
    [
        {"effect": 0.02},
        {"variants": ("A",), "effect": 0.02},
        {"variants": ("A", "A")},
        {"variants": ("A", "")},
        {"variants": ("A", "B"), "effect": EFFECT_RANGE[1] + 0.01},
        {"variants": ("A", "B"), "effect": EFFECT_RANGE[0] - 0.01},
        {"typeahead": 1.5},
        {"conversions": -0.1},
    ],
)
def test_bad_specs_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SimSpec(**options)


def test_cli_options(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ab.jsonl"
    args = ["simulate", "--events", "3000", "--users", "40", "--output", str(out)]
    r = runner.invoke(main, [*args, "--variants", "control,treatment", "--effect", "0.05"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert {e.get("variant") for e in recs if e["type"] == "search"} == {"control", "treatment"}
    assert (
        out.read_bytes()
        == b"\n".join(
            generate(SimSpec(events=3000, users=40, variants=("control", "treatment"), effect=0.05))
        )
        + b"\n"
    )
    r = runner.invoke(main, [*args, "--typeahead", "0", "--conversions", "0"])
    assert r.exit_code == 0, r.output
    kinds = {json.loads(line)["type"] for line in out.read_bytes().splitlines()}
    assert kinds == CORE_TYPES
    for bad in (["--effect", "0.02"], ["--variants", "A,B", "--effect", "0.5"]):
        r = runner.invoke(main, [*args, *bad])
        assert r.exit_code == 2 and "effect" in r.output, r.output
    examples = runner.invoke(main, ["simulate", "--help"]).output.split("Options:")[0]
    for option in ("--conversions", "--typeahead", "--variants", "--effect"):
        assert option in examples, option


def test_batch_bytes_are_pinned() -> None:
    """Without a rate the log is what it always was (live traffic shares the model)."""
    spec = SimSpec(events=20_000, users=200, seed=3, disorder=20, duplicates=0.01, bad=0.005)
    digest = hashlib.sha256(b"\n".join(generate(spec))).hexdigest()
    assert digest == "0e436fb9be96f9c0778611b7523cd81785ef7f2eb16fdae2a2a27cbedd9c9a0e"


class FakeClock:
    """The wall clock of live traffic: sleeping moves it on, nothing really waits."""

    def __init__(self) -> None:
        self.at = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
        self.slept = 0.0

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.at += timedelta(seconds=seconds)
        self.slept += seconds


def live(
    spec: SimSpec, rate: float, clock: FakeClock, stall_every: int = 0
) -> list[tuple[datetime, bytes]]:
    """Each line with the clock when it came; every ``stall_every`` lines the reader
    stalls for 30 seconds (the sender falls behind)."""
    got = []
    for line in generate_live(spec, rate, clock.now, clock.sleep):
        got.append((clock.at, line))
        if stall_every and len(got) % stall_every == 0:
            clock.at += timedelta(seconds=30)
    return got


def stamp(line: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(line)["time"])


def test_live_stamps_are_the_send_time_at_the_rate() -> None:
    clock = FakeClock()
    began = clock.at
    got = live(SimSpec(events=50 * 600, seed=2), 50, clock)
    assert len(got) == 30_000
    for sent, line in got:
        assert timedelta(0) <= sent - stamp(line) < timedelta(milliseconds=1), line
    elapsed = (got[-1][0] - began).total_seconds()
    assert 570 < elapsed < 630, elapsed  # 30,000 events at 50/s
    assert clock.slept == pytest.approx(elapsed)
    # From the first minute (sessions under way are joined, not started) on.
    per_minute = Counter(int((sent - began).total_seconds() // 60) for sent, _ in got)
    assert all(2_550 < per_minute[m] < 3_450 for m in range(9)), per_minute
    kinds = Counter(json.loads(line)["type"] for _, line in got[:200])
    assert kinds["app_open"] < 0.3 * kinds["search"]  # mostly sessions already open


def test_live_traffic_is_the_same_but_for_its_times() -> None:
    """The seed fixes the users, queries, clicks and their order; the clock the times."""
    spec = SimSpec(events=2_000, seed=5, duplicates=0.01, bad=0.01)
    early, late = FakeClock(), FakeClock()
    late.at += timedelta(days=3, seconds=0.123)
    a, b = live(spec, 20, early), live(spec, 20, late)
    assert a != b
    blank = re.compile(rb'"time":"2031-[^"]*"')
    assert [blank.sub(b"", x) for _, x in a] == [blank.sub(b"", x) for _, x in b]


def test_live_stamps_follow_the_clock_when_the_sender_falls_behind() -> None:
    clock = FakeClock()
    got = live(SimSpec(events=3_000, seed=4), 20, clock, stall_every=500)
    for sent, line in got:
        assert timedelta(0) <= sent - stamp(line) < timedelta(milliseconds=1), line
    # After a stall the backlog goes out at once, then the pace is kept again.
    backlog = [b - a for (a, _), (b, _) in pairwise(got)][500:520]
    assert sum(backlog, timedelta(0)) < timedelta(seconds=1)


def test_live_disorder_is_bounded_and_noise_kept() -> None:
    clock = FakeClock()
    spec = SimSpec(events=15_000, seed=6, disorder=5, duplicates=0.01, bad=0.01)
    got = live(spec, 50, clock)
    valid = [(sent, line) for sent, line in got if b'"time":"2031-' in line]
    assert 0.97 * len(got) < len(valid) < 0.995 * len(got)  # the rest are invalid records
    newest = datetime.min.replace(tzinfo=UTC)
    behind = []
    for sent, line in valid:
        t = stamp(line)
        assert timedelta(0) <= sent - t <= timedelta(seconds=5, milliseconds=1), line
        behind.append(newest - t)
        newest = max(newest, t)
    assert max(behind) <= timedelta(seconds=5, milliseconds=1)
    assert sum(b > timedelta(seconds=1) for b in behind) > 0.1 * len(valid)  # out of order
    # Duplicates repeat their original's bytes, stamp included.
    copies = sum(n - 1 for n in Counter(line for _, line in valid).values())
    assert 0.005 * len(got) < copies < 0.02 * len(got)


def test_live_users_keep_their_gaps_between_sessions() -> None:
    """Over three hours users come back, more than 31 minutes after their last
    session; within a session events are minutes apart at most."""
    clock = FakeClock()
    spec = SimSpec(events=2 * 3 * 3600, seed=1)
    times: dict[object, list[datetime]] = defaultdict(list)
    for _, line in live(spec, 2, clock):
        e = json.loads(line)
        times[e["user"]].append(datetime.fromisoformat(e["time"]))
    gaps = [b - a for ts in times.values() for a, b in pairwise(ts)]
    returns = [g for g in gaps if g > timedelta(minutes=20)]
    assert len(returns) > 300
    assert min(returns) > timedelta(minutes=31)
    assert max(g for g in gaps if g <= timedelta(minutes=20)) < timedelta(minutes=17)
    assert len(times) <= live_users(spec, 2)


def test_live_users_come_from_the_rate() -> None:
    assert live_users(SimSpec(users=1_000), 2_000) > 900_000  # back about hourly
    assert live_users(SimSpec(users=10**7), 10) == 10**7
    # Users come into being when they first show up: ten million cost nothing.
    clock = FakeClock()
    assert len(live(SimSpec(events=200, users=10**7), 10, clock)) == 200


def test_cli_rate_stamps_with_the_wall_clock(tmp_path: Path) -> None:
    out = tmp_path / "live.jsonl"
    runner = CliRunner()
    args = ["simulate", "--events", "20", "--rate", "100", "--output", str(out)]
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    r = runner.invoke(main, args)
    after = datetime.now(UTC)
    assert r.exit_code == 0, r.output
    assert "users; simulating that many" in r.stderr
    stamps = [stamp(line) for line in out.read_bytes().splitlines()]
    assert len(stamps) == 20 and stamps == sorted(stamps)
    assert before <= stamps[0] and stamps[-1] <= after
    for option in (["--start", "2024-05-01"], ["--days", "2"]):
        r = runner.invoke(main, [*args, *option])
        assert r.exit_code == 2 and f"{option[0]} does not go with --rate" in r.output


def test_write_at_a_rate_to_a_file(tmp_path: Path) -> None:
    clock = FakeClock()
    out = tmp_path / "live.jsonl"
    n = write(SimSpec(events=500, seed=9), str(out), 25, clock.now, clock.sleep)
    lines = out.read_bytes().splitlines()
    assert n == len(lines) == 500
    assert stamp(lines[-1]) <= clock.at < stamp(lines[-1]) + timedelta(milliseconds=1)
