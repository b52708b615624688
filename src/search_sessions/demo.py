"""The tutorial's example (SPEC 6): its events, and a run of them through the dataflow.

>>> searches, sessions = run_demo()
>>> [(s["query"], s["ctr"], s["clicks"]) for s in searches]
[('dogs', 1.0, 1), ('cats', 1.0, 2), ('fruit', 0.0, 0)]
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from .config import Config
from .runtime.run import run

TUTORIAL_EVENTS: list[tuple[str, int, dict[str, Any]]] = [
    ("app_open", 1, {}),
    ("search", 1, {"query": "dogs"}),
    ("results", 1, {"items": ["fido", "rover", "buddy"]}),
    ("click", 1, {"item": "rover"}),
    ("search", 1, {"query": "cats"}),
    ("results", 1, {"items": ["fluffy", "burrito", "kathy"]}),
    ("click", 1, {"item": "fluffy"}),
    ("app_open", 2, {}),
    ("click", 1, {"item": "kathy"}),
    ("search", 2, {"query": "fruit"}),
    ("app_close", 1, {}),
    ("app_close", 2, {}),
]
"""The tutorial's events (SPEC 6), one second apart from 2024-01-01T00:00:00Z."""


def tutorial_lines() -> list[bytes]:
    """The tutorial's events as JSON lines."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        msgspec.json.encode(
            {
                "type": kind,
                "user": user,
                "time": (start + timedelta(seconds=i)).isoformat()[:-6] + "Z",
                **fields,
            }
        )
        for i, (kind, user, fields) in enumerate(TUTORIAL_EVENTS)
    ]


def run_demo(cfg: Config | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the tutorial's events with ``cfg``'s session rules and parallelism (inputs and
    outputs are set here); returns the search and session records in time order."""
    with tempfile.TemporaryDirectory(prefix="search-sessions-demo-") as tmp:
        events = os.path.join(tmp, "events.jsonl")
        with open(events, "wb") as f:
            f.write(b"\n".join(tutorial_lines()) + b"\n")
        out_searches = os.path.join(tmp, "searches.jsonl")
        out_sessions = os.path.join(tmp, "sessions.jsonl")
        base = cfg if cfg is not None else Config(inputs=(events,))
        run(
            replace(
                base,
                inputs=(events,),
                partitions=(),
                searches=out_searches,
                sessions=out_sessions,
                progress=False,
            )
        )
        with open(out_searches, "rb") as f:
            searches = sorted((msgspec.json.decode(line) for line in f), key=lambda r: r["time"])
        with open(out_sessions, "rb") as f:
            sessions = sorted((msgspec.json.decode(line) for line in f), key=lambda r: r["start"])
    return searches, sessions
