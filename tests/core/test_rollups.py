"""Rollups (SPEC 5): Wilson intervals, merging, and the flow's rows against the searches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search_sessions.core.rollups import WindowAgg, aggregate, wilson, window_records, window_start
from search_sessions.core.time import format_time, parse_time
from search_sessions.simulate import SimSpec, write

from ..conftest import RunFlow, read_jsonl


def test_wilson_interval() -> None:
    low, high = wilson(7, 10)
    assert low is not None and high is not None
    assert round(low, 4) == 0.3968 and round(high, 4) == 0.8922
    assert wilson(0, 0) == (None, None)
    low, high = wilson(0, 5)
    assert low == 0.0 and high is not None and 0.4 < high < 0.5
    low, high = wilson(5, 5)
    assert high == 1.0


def test_window_start_is_tumbling() -> None:
    t = parse_time("2024-01-01T10:59:59.999Z")
    assert window_start(t, 3600) == parse_time("2024-01-01T10:00:00Z")
    assert window_start(t + 1000, 3600) == parse_time("2024-01-01T11:00:00Z")


ONE_SEARCH: dict[str, Any] = {
    "time": "1970-01-01T00:30:00Z",
    "query": "q",
    "clicked": True,
    "clicks": 1,
    "first_click_rank": 1,
    "zero_results": False,
    "abandoned": False,
    "reformulated": False,
    "long_click": False,
    "reciprocal_rank": 1.0,
    "time_to_first_click": 1.0,
}


@st.composite
def searches(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(0, 40))):
        clicked = draw(st.booleans())
        rank = draw(st.one_of(st.none(), st.integers(1, 10))) if clicked else None
        zero = not clicked and draw(st.booleans())
        out.append(
            {
                "time": f"2024-01-01T0{draw(st.integers(0, 2))}:{draw(st.integers(0, 59)):02d}:00Z",
                "query": draw(st.sampled_from(["a", "b", "c"])),
                "clicked": clicked,
                "clicks": draw(st.integers(1, 3)) if clicked else 0,
                "first_click_rank": rank,
                "zero_results": zero,
                "abandoned": not clicked and not zero,
                "reformulated": not clicked and draw(st.booleans()),
                "long_click": clicked and draw(st.booleans()),
                "reciprocal_rank": (None if rank is None else 1 / rank) if clicked else 0.0,
                "time_to_first_click": draw(st.floats(0, 100)) if clicked else None,
            }
        )
    return out


@settings(max_examples=100, deadline=None)
@given(searches(), st.lists(st.integers(0, 3), max_size=40))
def test_merging_partials_equals_aggregating_everything(
    rows: list[dict[str, Any]], split: list[int]
) -> None:
    lengths = {"1m": 60, "1h": 3600}
    whole = aggregate(rows, lengths)
    parts: list[list[dict[str, Any]]] = [[], [], [], []]
    for i, r in enumerate(rows):
        parts[split[i] if i < len(split) else 0].append(r)
    merged: dict[tuple[str, int], WindowAgg] = {}
    for part in parts:
        for key, agg in aggregate(part, lengths).items():
            merged.setdefault(key, WindowAgg()).merge(agg)
    assert set(merged) == set(whole)
    for key in whole:
        length = lengths[key[0]]
        assert window_records(key, merged[key], length) == window_records(key, whole[key], length)


@settings(max_examples=50, deadline=None)
@given(searches())
def test_given_times_are_used_instead_of_the_time_text(rows: list[dict[str, Any]]) -> None:
    lengths = {"1m": 60, "1h": 3600}
    hour = 3600 * 1_000_000
    times = [parse_time(r["time"]) + hour for r in rows]
    moved = [{**r, "time": format_time(t)} for r, t in zip(rows, times, strict=True)]
    given_times = aggregate(rows, lengths, times)
    parsed = aggregate(moved, lengths)
    assert given_times.keys() == parsed.keys()
    for key in parsed:
        assert given_times[key] == parsed[key]
        name, start = key
        assert start == window_start(start, lengths[name])
    if rows:
        with pytest.raises(ValueError):
            aggregate(rows, lengths, times[1:])


def test_rows_encode_with_their_level_first() -> None:
    agg = aggregate([{**ONE_SEARCH, "time": "1970-01-01T01:30:00Z"}], {"1h": 3600}, [5_400_000_000])
    window, (row,) = window_records(("1h", 3_600_000_000), agg[("1h", 3_600_000_000)], 3600)
    assert msgspec.json.encode(window).startswith(
        b'{"level":"window","window":"1h","window_start":"1970-01-01T01:00:00Z",'
        b'"window_end":"1970-01-01T02:00:00Z","searches":1,'
    )
    assert msgspec.json.encode(row).startswith(
        b'{"level":"query","window":"1h","window_start":"1970-01-01T01:00:00Z",'
        b'"window_end":"1970-01-01T02:00:00Z","query":"q","searches":1,'
    )


def last_per_key(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {}
    for r in rows:
        out[(r["level"], r["window"], r["window_start"], r.get("query"))] = r
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_rollups_equal_aggregating_the_searches(
    tmp_path: Path, run_flow: RunFlow, workers: int
) -> None:
    log = tmp_path / "events.jsonl"
    write(
        SimSpec(
            events=15_000, users=200, seed=4, days=0.3, disorder=20, duplicates=0.01, bad=0.002
        ),
        str(log),
    )
    out_path = tmp_path / f"rollups-{workers}.jsonl"
    out, _ = run_flow(
        [log], workers=workers, rollups=str(out_path), rollup_windows=(("1m", 60), ("1h", 3600))
    )
    got = last_per_key(read_jsonl(out_path))
    lengths = {"1m": 60, "1h": 3600}
    want: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, agg in aggregate(out["searches"], lengths).items():
        window, rows = window_records(key, agg, lengths[key[0]])
        want[("window", window.window, window.window_start, None)] = {
            "level": "window",
            **msgspec.structs.asdict(window),
        }
        for row in rows:
            want[("query", row.window, row.window_start, row.query)] = {
                "level": "query",
                **msgspec.structs.asdict(row),
            }
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert got[key] == json.loads(json.dumps(row)), key
    hours = [r for k, r in got.items() if k[0] == "window" and k[1] == "1h"]
    assert sum(r["searches"] for r in hours) == len(out["searches"])


def test_windows_are_forgotten_once_every_shard_is_past_them() -> None:
    from search_sessions.dataflow.rollup import RollupLogic

    hour = 3600 * 1_000_000
    agg = aggregate([ONE_SEARCH], {"1h": 3600})[("1h", 0)]
    logic = RollupLogic({"1h": 3600}, n_shards=2, resume=None, keep=False)
    out, _ = logic.on_batch([("1h", 0, 0, {0: agg})])
    assert len(list(out)) == 1 and set(logic.windows) == {0}
    logic.on_batch([("1h", 0, 2 * hour, {})])
    assert set(logic.windows) == {0}, "shard 1 has not reported: the window may still change"
    logic.on_batch([("1h", 1, hour - 1, {})])
    assert set(logic.windows) == {0}, "shard 1 is not past the window's end yet"
    out, _ = logic.on_batch([("1h", 1, hour, {})])
    assert logic.windows == {} and list(out) == []
