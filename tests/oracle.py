"""An independent, deliberately simple batch implementation of SPEC 1-4.

It shares no code with the package: it decodes with the standard ``json``
module, holds everything in memory, sorts each user's events and walks them
once. Tests compare the streaming dataflow's outputs with it.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from typing import Any

KINDS = {
    "app_open": "app_open",
    "AppOpen": "app_open",
    "search": "search",
    "Search": "search",
    "results": "results",
    "Results": "results",
    "click": "click",
    "ClickResult": "click",
    "app_close": "app_close",
    "AppClose": "app_close",
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Ev:
    t: int
    part: int
    seq: int
    kind: str
    user: str
    query: str | None = None
    items: tuple[str, ...] | None = None
    item: str | None = None
    rank: int | None = None
    sid: str | None = None

    def key(self) -> tuple[Any, ...]:
        return (
            self.user,
            self.kind,
            self.t,
            self.query,
            self.items,
            self.item,
            self.rank,
            self.sid,
        )


def parse_time(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("bool time")
    if isinstance(v, int):
        return v * 1_000_000
    if isinstance(v, float):
        return round(v * 1_000_000)
    if isinstance(v, str):
        try:
            d = datetime.fromisoformat(v)
        except ValueError:
            d = datetime.fromisoformat(v.upper())
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        return (d - EPOCH) // timedelta(microseconds=1)
    raise ValueError("bad time")


def decode(line: bytes, part: int, seq: int) -> Ev:
    obj = json.loads(line.decode("utf-8"))
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    kind = KINDS[obj["type"]]
    user = obj["user"]
    if isinstance(user, bool) or not isinstance(user, (str, int)):
        raise ValueError("bad user")
    ev = Ev(parse_time(obj["time"]), part, seq, kind, str(user))

    def opt_str(name: str) -> str | None:
        v = obj.get(name)
        if v is not None and not isinstance(v, str):
            raise ValueError(name)
        return v

    if kind == "search":
        if not isinstance(obj["query"], str):
            raise ValueError("query")
        ev.query = obj["query"]
        ev.sid = opt_str("search_id")
    elif kind == "results":
        items = obj["items"]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("items")
        ev.items = tuple(items)
        ev.sid = opt_str("search_id")
    elif kind == "click":
        if not isinstance(obj["item"], str):
            raise ValueError("item")
        ev.item = obj["item"]
        rank = obj.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError("rank")
        ev.rank = rank
        ev.sid = opt_str("search_id")
    return ev


@dataclass
class Result:
    searches: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # "FILE:LINE"
    duplicates: int = 0


def fmt(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat()[:-6] + "Z"


def h(*parts: object) -> str:
    return blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def read_parts(paths: list[str]) -> list[list[bytes]]:
    out = []
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        out.append(data.splitlines())
    return out


def oracle(
    paths: list[str],
    gap: float = 1800,
    lateness: float = 60,
    max_session: float = 43200,
    long_click: float = 30,
) -> Result:
    """The batch answer for input files with disorder within ``lateness`` (seconds)."""
    gap_us, late_us, max_us = int(gap * 1e6), int(lateness * 1e6), int(max_session * 1e6)
    res = Result()
    events: list[Ev] = []
    for part, lines in enumerate(read_parts(paths)):
        for seq, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                events.append(decode(line, part, seq))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError):
                res.invalid.append(f"{paths[part]}:{seq}")
    t_max = max((e.t for e in events), default=0)
    by_user: dict[str, list[Ev]] = {}
    for e in sorted(events, key=lambda e: (e.t, e.part, e.seq)):
        by_user.setdefault(e.user, []).append(e)
    for user, evs in by_user.items():
        seen = set()
        uniq = []
        for e in evs:
            if e.key() in seen:
                res.duplicates += 1
                continue
            seen.add(e.key())
            uniq.append(e)
        sessions: list[list[Ev]] = [[uniq[0]]]
        reasons: list[str] = []
        for e in uniq[1:]:
            cur = sessions[-1]
            prev, start = cur[-1], cur[0]
            over_gap = e.t - prev.t > gap_us
            over_max = e.t - start.t > max_us
            if prev.kind == "app_close":
                why = "app_close"
            elif over_gap and over_max:
                why = "max_session" if start.t + max_us < prev.t + gap_us else "gap"
            elif over_gap:
                why = "gap"
            elif over_max:
                why = "max_session"
            elif e.kind == "app_open":
                why = "app_open"
            else:
                cur.append(e)
                continue
            reasons.append(why)
            sessions.append([e])
        last = sessions[-1]
        if last[-1].kind == "app_close":
            reasons.append("app_close")
        else:
            by_gap, by_max = last[-1].t + gap_us, last[0].t + max_us
            end = min(by_gap, by_max)
            if end >= t_max - late_us:
                reasons.append("end_of_input")
            else:
                reasons.append("max_session" if by_max < by_gap else "gap")
        starts: dict[int, int] = {}
        for sess, why in zip(sessions, reasons, strict=True):
            n = starts.get(sess[0].t, 0)
            starts[sess[0].t] = n + 1
            _emit(res, user, sess, why, n, int(long_click * 1e6))
    return res


def _emit(res: Result, user: str, sess: list[Ev], why: str, ordinal: int, long_us: int) -> None:
    sid = h("s", user, sess[0].t, ordinal)
    searches = [i for i, e in enumerate(sess) if e.kind == "search"]
    info = {i: {"items": None, "clicks": [], "long": False} for i in searches}
    for i, e in enumerate(sess):
        if e.kind not in ("results", "click"):
            continue
        if e.sid is not None:
            same = [j for j in searches if sess[j].sid == e.sid]
            before = [j for j in same if j < i]
            owner = before[-1] if before else (same[0] if same else None)
        else:
            before = [j for j in searches if j < i]
            owner = before[-1] if before else None
        if owner is None:
            continue
        s = info[owner]
        if e.kind == "results":
            s["items"] = e.items
        else:
            rank = e.rank
            if rank is None and s["items"] is not None and e.item in s["items"]:
                rank = s["items"].index(e.item) + 1
            s["clicks"].append((e.t, rank))
            if i == len(sess) - 1 or sess[i + 1].t - e.t >= long_us:
                s["long"] = True
    clicked_searches = 0
    for pos, i in enumerate(searches):
        e, s = sess[i], info[i]
        clicks = s["clicks"]
        clicked = bool(clicks)
        clicked_searches += clicked
        n_results = None if s["items"] is None else len(s["items"])
        rank = clicks[0][1] if clicks else None
        res.searches.append(
            {
                "search_id": e.sid if e.sid is not None else f"{sid}-{pos}",
                "session_id": sid,
                "user": user,
                "query": e.query,
                "time": fmt(e.t),
                "results": n_results,
                "zero_results": n_results == 0,
                "clicks": len(clicks),
                "clicked": clicked,
                "ctr": 1.0 if clicked else 0.0,
                "first_click_rank": rank,
                "reciprocal_rank": (0.0 if not clicked else None if rank is None else 1 / rank),
                "time_to_first_click": (clicks[0][0] - e.t) / 1e6 if clicks else None,
                "abandoned": not clicked and n_results != 0,
                "reformulated": not clicked and pos < len(searches) - 1,
                "long_click": s["long"],
            }
        )
    res.sessions.append(
        {
            "session_id": sid,
            "user": user,
            "start": fmt(sess[0].t),
            "end": fmt(sess[-1].t),
            "duration": (sess[-1].t - sess[0].t) / 1e6,
            "events": len(sess),
            "searches": len(searches),
            "clicked_searches": clicked_searches,
            "clicks": sum(e.kind == "click" for e in sess),
            "ctr": clicked_searches / len(searches) if searches else None,
            "end_reason": why,
        }
    )


def canon(records: list[dict[str, Any]]) -> list[str]:
    """Records as a sorted list of canonical JSON strings (a multiset)."""
    return sorted(json.dumps(r, sort_keys=True) for r in records)
