"""The tutorial "Building Sessions from Search Logs", as written, on Bytewax 0.21.

Its data model (AppOpen, Search, Results, ClickResult, AppClose), a
per-user ``SessionWindower`` on an ``EventClock``, ``collect_window`` to
gather each session's events, then a split into searches and a CTR of 1.0
or 0.0 per search. It is the baseline the benchmarks compare against, kept
as close to the tutorial as the 0.21 API allows; it reads the same JSON Lines
as ``search-sessions run`` so the two can run on equal data.

Run it on the tutorial's own events::

    python -m bytewax.run examples/tutorial_dataflow.py:flow

or on a file (one line per search, ``user<TAB>query<TAB>ctr``)::

    TUTORIAL_INPUT=events.jsonl TUTORIAL_OUTPUT=ctr.tsv \\
        python -m bytewax.run examples/tutorial_dataflow.py:flow
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.files import FileSource
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, SessionWindower, collect_window
from bytewax.testing import TestingSource


@dataclass
class AppOpen:
    user: str
    time: datetime


@dataclass
class Search:
    user: str
    time: datetime
    query: str


@dataclass
class Results:
    user: str
    time: datetime
    items: list[str]


@dataclass
class ClickResult:
    user: str
    time: datetime
    item: str


@dataclass
class AppClose:
    user: str
    time: datetime


Event = AppOpen | Search | Results | ClickResult | AppClose
_TYPES = {
    "app_open": AppOpen,
    "AppOpen": AppOpen,
    "search": Search,
    "Search": Search,
    "results": Results,
    "Results": Results,
    "click": ClickResult,
    "ClickResult": ClickResult,
    "app_close": AppClose,
    "AppClose": AppClose,
}


def _time(v: Any) -> datetime:
    if isinstance(v, (int, float)):
        return datetime.fromtimestamp(v, UTC)
    t = datetime.fromisoformat(v)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse(line: str) -> Event | None:
    """One JSON line into the tutorial's classes; None for what does not parse."""
    try:
        d = json.loads(line)
        cls = _TYPES[d["type"]]
        user, time = str(d["user"]), _time(d["time"])
        if cls is Search:
            return Search(user, time, d["query"])
        if cls is Results:
            return Results(user, time, list(d["items"]))
        if cls is ClickResult:
            return ClickResult(user, time, d["item"])
        return cls(user, time)
    except Exception:
        return None


T0 = datetime(2024, 1, 1, tzinfo=UTC)
TUTORIAL_EVENTS: list[Event] = [
    AppOpen("1", T0),
    Search("1", T0 + timedelta(seconds=1), "dogs"),
    Results("1", T0 + timedelta(seconds=2), ["fido", "rover", "buddy"]),
    ClickResult("1", T0 + timedelta(seconds=3), "rover"),
    Search("1", T0 + timedelta(seconds=4), "cats"),
    Results("1", T0 + timedelta(seconds=5), ["fluffy", "burrito", "kathy"]),
    ClickResult("1", T0 + timedelta(seconds=6), "fluffy"),
    AppOpen("2", T0 + timedelta(seconds=7)),
    ClickResult("1", T0 + timedelta(seconds=8), "kathy"),
    Search("2", T0 + timedelta(seconds=9), "fruit"),
    AppClose("1", T0 + timedelta(seconds=10)),
    AppClose("2", T0 + timedelta(seconds=11)),
]


def split_into_searches(session: list[Event]) -> list[list[Event]]:
    """Each search with the events after it, up to the next search."""
    searches: list[list[Event]] = []
    for event in sorted(session, key=lambda e: e.time):
        if isinstance(event, Search):
            searches.append([event])
        elif searches:
            searches[-1].append(event)
    return searches


def calc_ctr(user_search: tuple[str, list[Event]]) -> str:
    user, search = user_search
    query = search[0].query  # type: ignore[union-attr]
    clicked = any(isinstance(e, ClickResult) for e in search)
    return f"{user}\t{query}\t{1.0 if clicked else 0.0}\n"


def _build() -> Dataflow:
    flow = Dataflow("search_ctr")
    path = os.environ.get("TUTORIAL_INPUT")
    if path:
        lines = op.input("inp", flow, FileSource(path))
        events = op.filter_map("parse", lines, parse)
    else:
        events = op.input("inp", flow, TestingSource(TUTORIAL_EVENTS))
    keyed = op.key_on("user_event", events, lambda e: e.user)
    clock = EventClock(lambda e: e.time, wait_for_system_duration=timedelta(seconds=0))
    windower = SessionWindower(gap=timedelta(minutes=30))
    sessions = collect_window("sessionize", keyed, clock, windower)
    searches = op.flat_map(
        "split_into_searches",
        sessions.down,
        lambda kv: [(kv[0], s) for s in split_into_searches(kv[1][1])],
    )
    ctr = op.map("calc_ctr", searches, calc_ctr)
    out = os.environ.get("TUTORIAL_OUTPUT")
    if out:
        from bytewax.connectors.files import FileSink

        keyed_out = op.key_on("one_file", ctr, lambda _line: "all")
        op.output(
            "out", op.map("strip", keyed_out, lambda kv: (kv[0], kv[1].rstrip("\n"))), FileSink(out)
        )
    else:
        op.output("out", op.map("strip", ctr, lambda s: s.rstrip("\n")), StdOutSink())
    return flow


flow = _build()
