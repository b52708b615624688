"""Sessions and CTR in a flow of your own: your source, ``sessionize``, your sinks.

The tutorial's events (dicts, as a source of yours might produce them) go
through :func:`search_sessions.sessionize`, and the searches, sessions and
invalid events are printed::

    python -m bytewax.run examples/own_flow.py
    python -m bytewax.run examples/own_flow.py -w 2

or read JSON Lines from a file of yours with Bytewax's ``FileSource``::

    OWN_FLOW_INPUT=events.jsonl python -m bytewax.run examples/own_flow.py

Each worker's events must be in time order give or take ``lateness``. With one
source partition only one worker reads, so on two workers the sessions come out at
the end of input (the answer is the same; see the operator's docstring).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.files import FileSource
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.testing import TestingSource

from search_sessions import Config, sessionize
from search_sessions.demo import TUTORIAL_EVENTS


def tutorial_events() -> list[dict[str, Any]]:
    """The tutorial's events one second apart, with ``datetime`` times, and one
    broken event (a click without its item) to show the ``errors`` stream."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    events: list[dict[str, Any]] = [
        {"type": kind, "user": user, "time": start + timedelta(seconds=i), **fields}
        for i, (kind, user, fields) in enumerate(TUTORIAL_EVENTS)
    ]
    events.insert(4, {"type": "click", "user": 1, "time": start + timedelta(seconds=3)})
    return events


def search_line(s: dict[str, Any]) -> str:
    return f"search\t{s['user']}\t{s['query']}\tctr={s['ctr']}\tclicks={s['clicks']}"


def session_line(s: dict[str, Any]) -> str:
    return f"session\t{s['user']}\t{s['start']}\t{s['searches']} searches\t{s['end_reason']}"


def problem_line(kind: str) -> Any:
    def line(p: dict[str, Any]) -> str:
        return f"{kind}\t{p['source']}\t{p['reason']}"

    return line


def build(source: Source[Any], config: Config) -> Dataflow:
    """Your flow: read events, sessionize them, print what comes out."""
    flow = Dataflow("own_flow")
    events = op.input("events", flow, source)
    out = sessionize("sessionize", events, config)
    lines = op.merge(
        "lines",
        op.map("search_lines", out.searches, search_line),
        op.map("session_lines", out.sessions, session_line),
        op.map("late_lines", out.late, problem_line("late")),
        op.map("error_lines", out.errors, problem_line("error")),
    )
    op.output("print", lines, StdOutSink())
    return flow


_path = os.environ.get("OWN_FLOW_INPUT")
# Only the session rules (gap, lateness, max_session, long_click) are read from it.
_config = Config(inputs=("own_flow",), gap=timedelta(minutes=30), lateness=timedelta(minutes=1))
flow = build(FileSource(_path) if _path else TestingSource(tutorial_events()), _config)
