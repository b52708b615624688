"""Property tests: the dataflow against the batch oracle on random event streams."""

from __future__ import annotations

import itertools
import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from search_sessions.core.cores import NATIVE

from ..conftest import RunFlow, write_parts
from ..oracle import canon, oracle

GAP, LATENESS, MAX = 100, 30, 400
T0 = 1_704_067_200

kinds = st.sampled_from(
    [
        "app_open",
        "search",
        "search",
        "results",
        "click",
        "click",
        "app_close",
        "Search",
        "ClickResult",
        "conversion",
        "purchase",
    ]
)


@st.composite
def event(draw: st.DrawFn) -> tuple[float, dict[str, Any]]:
    kind = draw(kinds)
    t = draw(st.integers(0, 2_000)) + draw(st.sampled_from([0, 0, 0.5]))
    user = draw(st.sampled_from(["a", "b", "c", 7]))
    rec: dict[str, Any] = {"type": kind, "user": user}
    rec["time"] = draw(st.sampled_from([T0 + t, _iso(T0 + t)]))
    sid = draw(st.sampled_from([None, None, "s1", "s2"]))
    if kind in ("search", "Search"):
        rec["query"] = draw(st.sampled_from(["dogs", "dog", "cats", "ünï", ""]))
    elif kind == "results":
        rec["items"] = draw(st.lists(st.sampled_from(["x", "y", "z"]), max_size=4))
    elif kind in ("click", "ClickResult"):
        rec["item"] = draw(st.sampled_from(["x", "y", "z", "w"]))
        if draw(st.booleans()):
            rec["rank"] = draw(st.integers(1, 5))
    elif kind in ("conversion", "purchase"):
        item = draw(st.sampled_from([None, "x", "y"]))
        if item is not None:
            rec["item"] = item
        rec["value"] = draw(st.sampled_from([1, 2.5, 0.1]))
    platform = draw(st.sampled_from([None, None, "ios", "web", 3, True]))
    if platform is not None:
        rec["platform"] = platform
    if sid is not None and kind not in ("app_open", "app_close"):
        rec["search_id"] = sid
    return float(t), rec


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


@st.composite
def stream(draw: st.DrawFn) -> list[bytes]:
    """Events written out of order by at most LATENESS seconds, some duplicated."""
    evs = draw(st.lists(event(), min_size=1, max_size=60))
    keyed = []
    for i, (t, rec) in enumerate(evs):
        jitter = draw(st.integers(0, LATENESS))
        line = json.dumps(rec).encode()
        keyed.append((t + jitter, i, line))
        if draw(st.integers(0, 9)) == 0:
            keyed.append((t + draw(st.integers(0, LATENESS)), i, line))
    return [line for _k, _i, line in sorted(keyed)]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=stream(),
    n_files=st.integers(1, 3),
    workers=st.integers(1, 2),
    typeahead=st.sampled_from([None, 0, 5]),
    core=st.sampled_from(["native", "python"]),
)
@example(  # sessions starting in the same second, one at a fraction of it
    lines=[
        b'{"type": "app_open", "user": "b", "time": 1704067200}',
        b'{"type": "app_open", "user": "b", "time": 1704067200.5}',
        b'{"type": "search", "user": "b", "time": 1704067201, "query": "dogs"}',
    ],
    n_files=1,
    workers=1,
    typeahead=None,
    core="python",
)
def test_flow_equals_batch_oracle(
    lines: list[bytes],
    n_files: int,
    workers: int,
    typeahead: int | None,
    core: str,
    tmp_path: Path,
    run_flow: RunFlow,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each example with one core (both are drawn): both against the oracle."""
    if core == "native" and NATIVE is None:
        core = "python"
    monkeypatch.setenv("SEARCH_SESSIONS_CORE", core)
    paths = write_parts(lines, n_files, Path(tempfile.mkdtemp(dir=tmp_path)))
    out, summary = run_flow(
        paths,
        gap=GAP,
        lateness=LATENESS,
        max_session=MAX,
        workers=workers,
        dimensions=("platform",),
        collapse_typeahead=None if typeahead is None else timedelta(seconds=typeahead),
    )
    want = oracle(
        [str(p) for p in paths],
        gap=GAP,
        lateness=LATENESS,
        max_session=MAX,
        typeahead=typeahead,
        dimensions=("platform",),
    )
    assert out["late"] == []
    assert canon(out["sessions"]) == canon(want.sessions)
    assert canon(out["searches"]) == canon(want.searches)
    assert summary.counts["duplicates"] == want.duplicates
    # every valid event is counted once: in a session, or as a duplicate
    assert sum(s["events"] for s in out["sessions"]) + want.duplicates == summary.counts["events"]
    # a user's sessions never overlap (compared as times: as text, "00:00.5Z" < "00:00Z")
    by_user: dict[str, list[tuple[datetime, datetime]]] = {}
    for s in out["sessions"]:
        span = (datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"]))
        by_user.setdefault(s["user"], []).append(span)
    for spans in by_user.values():
        spans.sort()
        for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
            assert e1 <= s2
