"""An independent, deliberately simple batch implementation of SPEC 1-4.

It shares no code with the package: it decodes with the standard ``json``
module, holds everything in memory, sorts each user's events and walks them
once. Tests compare the streaming dataflow's outputs with it.
"""

from __future__ import annotations

import gzip
import json
import math
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
    "conversion": "conversion",
    "purchase": "conversion",
    "add_to_cart": "conversion",
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
    value: float | None = None
    ckind: str | None = None
    dims: tuple[Any, ...] = ()

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
            self.value,
            self.ckind,
            tuple((type(v), v) for v in self.dims),
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


def decode(
    line: bytes, part: int, seq: int, dimensions: tuple[str, ...] = (), currency: str | None = None
) -> Ev:
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
    elif kind == "conversion":
        ev.item = opt_str("item")
        ev.sid = opt_str("search_id")
        value = obj.get("value")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError("value")
            if not math.isfinite(value):
                raise ValueError("value")
            ev.value = float(value)
        cur = opt_str("currency")
        if currency is not None and cur is not None and cur.upper() != currency.upper():
            raise ValueError("currency")
        ev.ckind = obj["type"] if obj["type"] in ("purchase", "add_to_cart") else opt_str("kind")
    dims = []
    for name in dimensions:
        v = obj.get(name)
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise ValueError(name)
        dims.append(v)
    ev.dims = tuple(dims)
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
    short_click: float = 10,
    typeahead: float | None = None,
    dimensions: tuple[str, ...] = (),
    currency: str | None = None,
) -> Result:
    """The batch answer for input files with disorder within ``lateness`` (seconds)."""
    rules = Rules(
        int(long_click * 1e6),
        int(short_click * 1e6),
        None if typeahead is None else int(typeahead * 1e6),
        dimensions,
    )
    gap_us, late_us, max_us = int(gap * 1e6), int(lateness * 1e6), int(max_session * 1e6)
    res = Result()
    events: list[Ev] = []
    for part, lines in enumerate(read_parts(paths)):
        for seq, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                events.append(decode(line, part, seq, dimensions, currency))
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
            _emit(res, user, sess, why, n, rules)
    return res


@dataclass
class Rules:
    long_us: int
    short_us: int
    typeahead_us: int | None
    dimensions: tuple[str, ...]


def extends(q: str, prev: str) -> bool:
    """q starts with prev, or one insertion, deletion or substitution turns prev into q."""
    if q.startswith(prev):
        return True
    if len(q) == len(prev):
        return sum(a != b for a, b in zip(q, prev, strict=True)) == 1
    longer, shorter = (q, prev) if len(q) > len(prev) else (prev, q)
    if len(longer) != len(shorter) + 1:
        return False
    return any(longer[:k] + longer[k + 1 :] == shorter for k in range(len(longer)))


def _emit(res: Result, user: str, sess: list[Ev], why: str, ordinal: int, rules: Rules) -> None:
    sid = h("s", user, sess[0].t, ordinal)
    search_idx = [i for i, e in enumerate(sess) if e.kind == "search"]
    # Intents: runs of search requests (indices) that keystroke collapse joins.
    intents: list[list[int]] = []
    intent_of: dict[int, int] = {}
    for i in search_idx:
        if intents and rules.typeahead_us is not None:
            p = intents[-1][-1]
            quiet = all(e.kind not in ("click", "conversion") for e in sess[p + 1 : i])
            q, pq = sess[i].query.strip().lower(), sess[p].query.strip().lower()  # type: ignore[union-attr]
            if quiet and sess[i].t - sess[p].t <= rules.typeahead_us and extends(q, pq):
                intents[-1].append(i)
                intent_of[i] = len(intents) - 1
                continue
        intents.append([i])
        intent_of[i] = len(intents) - 1

    def owner(i: int, e: Ev) -> int | None:
        if e.sid is not None:
            same = [j for j in search_idx if sess[j].sid == e.sid]
            before = [j for j in same if j < i]
            j = before[-1] if before else (same[0] if same else None)
        else:
            before = [j for j in search_idx if j < i]
            j = before[-1] if before else None
        return None if j is None else intent_of[j]

    info: list[dict[str, Any]] = [
        {"items": None, "clicks": [], "long": False, "short": False, "convs": []} for _ in intents
    ]
    success: list[int] = []
    for i, e in enumerate(sess):
        nxt = sess[i + 1] if i + 1 < len(sess) else None
        if e.kind == "results":
            o = owner(i, e)
            if o is not None:
                info[o]["items"] = e.items
        elif e.kind == "click":
            long = nxt is None or nxt.t - e.t >= rules.long_us
            if long:
                success.append(e.t)
            o = owner(i, e)
            if o is None:
                continue
            s = info[o]
            rank = e.rank
            if rank is None and s["items"] is not None and e.item in s["items"]:
                rank = s["items"].index(e.item) + 1
            s["clicks"].append((e.t, rank))
            if long:
                s["long"] = True
            elif nxt is not None and nxt.t - e.t < rules.short_us:
                s["short"] = True
        elif e.kind == "conversion":
            success.append(e.t)
            if e.sid is not None:
                o = owner(i, e)
            elif e.item is not None:
                o = None
                for k in reversed(range(len(intents))):
                    items = info[k]["items"]
                    if intents[k][0] < i and items is not None and e.item in items:
                        o = k
                        break
            else:
                before = [j for j in search_idx if j < i]
                o = intent_of[before[-1]] if before else None
            if o is not None:
                info[o]["convs"].append(e.value)

    def dims_at(i: int) -> dict[str, Any]:
        out = {}
        for d, name in enumerate(rules.dimensions):
            vals = [sess[j].dims[d] for j in range(i + 1) if sess[j].dims[d] is not None]
            out[name] = vals[-1] if vals else None
        return out

    clicked_searches = 0
    for pos, reqs in enumerate(intents):
        first, last = sess[reqs[0]], sess[reqs[-1]]
        s = info[pos]
        clicks = s["clicks"]
        clicked = bool(clicks)
        clicked_searches += clicked
        n_results = None if s["items"] is None else len(s["items"])
        rank = clicks[0][1] if clicks else None
        convs = s["convs"]
        res.searches.append(
            {
                "search_id": last.sid if last.sid is not None else f"{sid}-{pos}",
                "session_id": sid,
                "user": user,
                "query": last.query,
                "time": fmt(first.t),
                "results": n_results,
                "zero_results": n_results == 0,
                "clicks": len(clicks),
                "clicked": clicked,
                "ctr": 1.0 if clicked else 0.0,
                "first_click_rank": rank,
                "reciprocal_rank": (0.0 if not clicked else None if rank is None else 1 / rank),
                "time_to_first_click": (clicks[0][0] - last.t) / 1e6 if clicks else None,
                "abandoned": not clicked and n_results != 0,
                "reformulated": not clicked and pos < len(intents) - 1,
                "long_click": s["long"],
                "short_click": s["short"],
                "keystrokes": len(reqs),
                "conversions": len(convs),
                "converted": bool(convs),
                "conversion_value": math.fsum(v for v in convs if v is not None),
                "dimensions": dims_at(reqs[-1]),
            }
        )
    all_values = [e.value for e in sess if e.kind == "conversion" and e.value is not None]
    first_dims = {}
    for d, name in enumerate(rules.dimensions):
        vals = [e.dims[d] for e in sess if e.dims[d] is not None]
        first_dims[name] = vals[0] if vals else None
    res.sessions.append(
        {
            "session_id": sid,
            "user": user,
            "start": fmt(sess[0].t),
            "end": fmt(sess[-1].t),
            "duration": (sess[-1].t - sess[0].t) / 1e6,
            "events": len(sess),
            "searches": len(intents),
            "clicked_searches": clicked_searches,
            "clicks": sum(e.kind == "click" for e in sess),
            "ctr": clicked_searches / len(intents) if intents else None,
            "end_reason": why,
            "conversions": sum(e.kind == "conversion" for e in sess),
            "conversion_value": math.fsum(all_values),
            "success": bool(success),
            "time_to_success": (min(success) - sess[0].t) / 1e6 if success else None,
            "dimensions": first_dims,
        }
    )


def canon(records: list[dict[str, Any]]) -> list[str]:
    """Records as a sorted list of canonical JSON strings (a multiset)."""
    return sorted(json.dumps(r, sort_keys=True) for r in records)
