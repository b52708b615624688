"""Sessionizer rules (SPEC 2-3) with explicit timestamps."""

from __future__ import annotations

from search_sessions.core.events import Event
from search_sessions.core.schema import APP_CLOSE, APP_OPEN, CLICK, RESULTS, SEARCH
from search_sessions.core.sessions import Sessionizer, cut_sessions, dedup_sorted
from search_sessions.core.time import FOREVER

S = 1_000_000  # one second in microseconds
GAP = 1800 * S
LATE = 60 * S
MAX = 12 * 3600 * S

_seq = [0]


def ev(
    t: float, kind: int = SEARCH, user: str = "u", payload: object = None, part: int = 0
) -> Event:
    _seq[0] += 1
    if kind == SEARCH and payload is None:
        payload = f"q{_seq[0]}"
    return (int(t * S), part, _seq[0], kind, user, payload, None, None)


def replay(
    events: list[Event],
    gap: int = GAP,
    lateness: int = LATE,
    max_session: int = MAX,
    batch: int = 1,
) -> tuple[list[tuple[str, list[float], str]], list[Event], Sessionizer]:
    """Feed events one partition in batches, then end the input; collect everything."""
    s = Sessionizer(1, gap, lateness, max_session)
    out = []
    late: list[Event] = []
    newest = -(1 << 62)
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        normal, maybe = [], []
        for e in chunk:
            if e[0] < newest - lateness:
                maybe.append((e, newest))
            else:
                normal.append(e)
                newest = max(newest, e[0])
        late += [e for e, _wm in s.ingest(0, newest, False, normal, maybe)]
        out += s.advance()
    s.ingest(0, newest, True, [], [])
    out += s.advance()
    return [(u, [e[0] / S for e in evs], why) for u, evs, why in out], late, s


def times(result: list[tuple[str, list[float], str]]) -> list[list[float]]:
    return [t for _u, t, _w in result]


def test_gap_exactly_equal_stays_in_session() -> None:
    out, _, _ = replay([ev(0), ev(1800)])
    assert times(out) == [[0, 1800]]


def test_gap_just_over_starts_new_session() -> None:
    out, _, _ = replay([ev(0), ev(1800.000001)])
    assert times(out) == [[0], [1800.000001]]
    assert out[0][2] == "gap"


def test_app_open_starts_a_new_session_and_belongs_to_it() -> None:
    out, _, _ = replay([ev(0), ev(10, APP_OPEN), ev(20)])
    assert times(out) == [[0], [10, 20]]
    assert out[0][2] == "app_open"


def test_app_open_first_does_not_cut_an_empty_session() -> None:
    out, _, _ = replay([ev(0, APP_OPEN), ev(5)])
    assert times(out) == [[0, 5]]


def test_app_close_then_activity() -> None:
    out, _, _ = replay([ev(0), ev(10, APP_CLOSE), ev(11), ev(12)])
    assert times(out) == [[0, 10], [11, 12]]
    assert out[0][2] == "app_close"


def test_app_close_then_activity_at_the_same_instant() -> None:
    out, _, _ = replay([ev(0), ev(10, APP_CLOSE), ev(10)])
    assert times(out) == [[0, 10], [10]]


def test_sessions_starting_at_one_instant_are_emitted_together() -> None:
    """An app_close alone at 10 s ends a session the watermark passes at 11 s; the click
    at 10 s after it starts one that ends by the gap: the first waits for it, so that
    one batch gives them their ordinals (their session ids), whatever the batches."""
    s = Sessionizer(1, GAP, 0, MAX)
    s.ingest(0, 10 * S, False, [ev(10, APP_CLOSE), ev(10, CLICK, payload="x")], [])
    s.ingest(0, 60 * S, False, [], [])
    assert s.advance() == []
    s.ingest(0, 10 * S + GAP + 1, False, [], [])
    assert [(len(evs), why) for _u, evs, why in s.advance()] == [(1, "app_close"), (1, "gap")]


def test_max_session_cuts_long_sessions() -> None:
    events = [ev(t) for t in range(0, 200, 20)]
    out, _, _ = replay(events, max_session=100 * S)
    assert times(out) == [[0, 20, 40, 60, 80, 100], [120, 140, 160, 180]]
    assert out[0][2] == "max_session"


def test_max_session_exactly_equal_is_allowed() -> None:
    out, _, _ = replay([ev(0), ev(100)], max_session=100 * S)
    assert times(out) == [[0, 100]]


def test_gap_and_max_session_together_name_the_earlier() -> None:
    # session 0..80; next at 200: max (100) passed at 100, before the gap (50) at 130
    cuts = cut_sessions([ev(0), ev(40), ev(80), ev(200)], gap_us=50 * S, max_session_us=100 * S)
    assert cuts[0][2] == "max_session"
    # session 0..40: the gap passed at 90, before max at 100
    cuts = cut_sessions([ev(0), ev(20), ev(40), ev(200)], gap_us=50 * S, max_session_us=100 * S)
    assert cuts[0][2] == "gap"


def test_gap_takes_precedence_over_app_open() -> None:
    cuts = cut_sessions([ev(0), ev(5000, APP_OPEN)], gap_us=GAP, max_session_us=MAX)
    assert cuts[0][2] == "gap"


def test_disorder_within_lateness_equals_sorted_input() -> None:
    ordered = [ev(t) for t in (0, 10, 20, 2000, 2010)]
    shuffled = [ordered[1], ordered[0], ordered[2], ordered[4], ordered[3]]
    a, late_a, _ = replay(ordered)
    b, late_b, _ = replay(shuffled)
    assert late_a == late_b == []
    assert times(a) == times(b) == [[0, 10, 20], [2000, 2010]]


def test_event_older_than_watermark_is_late_and_not_merged() -> None:
    events = [ev(0), ev(100), ev(100 + 60 + 1), ev(50)]  # watermark at arrival: 161-60 = 101
    out, late, s = replay(events)
    assert [e[0] / S for e in late] == [50]
    assert s.late == 1
    assert times(out) == [[0, 100, 161]]


def test_event_exactly_at_watermark_is_not_late() -> None:
    events = [ev(0), ev(100), ev(40)]  # watermark 100-60 = 40
    out, late, _ = replay(events)
    assert late == []
    assert times(out) == [[0, 40, 100]]


def test_sessions_emitted_once_watermark_passes_gap() -> None:
    s = Sessionizer(1, GAP, LATE, MAX)
    s.ingest(0, 0, False, [ev(0)], [])
    assert s.advance() == []
    s.ingest(0, (1800 + 60) * S, False, [], [])  # watermark == last + gap: not passed yet
    assert s.advance() == []
    s.ingest(0, (1800 + 60) * S + 1, False, [], [])
    emitted = s.advance()
    assert [(u, why) for u, _e, why in emitted] == [("u", "gap")]
    assert s.pending == {}, "an emitted session's state is freed"


def test_app_close_session_emitted_when_watermark_passes_close() -> None:
    s = Sessionizer(1, GAP, LATE, MAX)
    s.ingest(0, 10 * S, False, [ev(0), ev(10, APP_CLOSE)], [])
    s.ingest(0, 70 * S + 1, False, [], [])
    assert [why for _u, _e, why in s.advance()] == ["app_close"]


def test_watermark_is_minimum_over_open_partitions() -> None:
    s = Sessionizer(2, GAP, LATE, MAX)
    s.ingest(0, 10_000 * S, False, [ev(0, part=0)], [])
    assert s.watermark < 0, "partition 1 has said nothing yet"
    s.ingest(1, 5_000 * S, False, [], [])
    assert s.watermark == (5_000 - 60) * S
    s.ingest(1, 5_000 * S, True, [], [])
    assert s.watermark == (10_000 - 60) * S, "a closed partition no longer holds it back"
    s.ingest(0, 10_000 * S, True, [], [])
    assert s.watermark == FOREVER


def test_end_of_input_reason() -> None:
    # the last event is within gap + lateness of the input's end: still open at the end
    out, _, _ = replay([ev(0, user="a"), ev(100, user="b")])
    assert {u: why for u, _t, why in out} == {"a": "end_of_input", "b": "end_of_input"}
    # the input went on long after user a: a's session ended by its gap
    out, _, _ = replay([ev(0, user="a"), ev(5000, user="b")])
    assert {u: why for u, _t, why in out} == {"a": "gap", "b": "end_of_input"}


def test_exact_duplicates_count_once() -> None:
    a = ev(5, CLICK, payload="x")
    dup = (a[0], a[1], a[2] + 1000, *a[3:])
    other = ev(5, CLICK, payload="y")
    out, _, s = replay([ev(0), a, dup, other])
    assert times(out) == [[0, 5, 5]]
    assert s.duplicates == 1


def test_dedup_sorted_keeps_first_copy() -> None:
    a = ev(1, RESULTS, payload=("a", "b"))
    b = (a[0], a[1], a[2] + 1, *a[3:])
    c = ev(1, RESULTS, payload=("a",))
    out, n = dedup_sorted(sorted([a, b, c]))
    assert n == 1 and out[0] == a and c in out


def test_users_are_independent_and_state_is_freed() -> None:
    events = [ev(t, user=f"u{t % 3}") for t in range(0, 30)]
    out, _, s = replay(events, batch=7)
    assert sorted(u for u, _t, _w in out) == ["u0", "u1", "u2"]
    assert s.pending == {} and s.deadline == {}


def test_batching_does_not_change_the_answer() -> None:
    events = [ev(t, user=f"u{t % 5}") for t in range(0, 20_000, 97)]
    a, _, _ = replay(events, batch=1)
    b, _, _ = replay(events, batch=50)
    assert sorted(a) == sorted(b)


def test_idle_partition_stops_holding_the_watermark() -> None:
    s = Sessionizer(2, GAP, LATE, MAX)
    s.ingest(0, 10_000 * S, False, [ev(0, part=0)], [])
    assert s.watermark < 0, "partition 1 holds it back"
    s.ingest(1, -(1 << 62), False, [], [], idle_us=5 * S)
    assert s.watermark == (10_000 - 60) * S
    s.ingest(1, 9_000 * S, False, [], [], idle_us=-1)
    assert s.watermark == (10_000 - 60) * S, "the watermark never goes back"


def test_all_idle_moves_the_watermark_with_the_wall_clock() -> None:
    s = Sessionizer(1, GAP, LATE, MAX)
    s.ingest(0, 100 * S, False, [ev(100)], [])
    assert s.advance() == []
    s.ingest(0, 100 * S, False, [], [], idle_us=1_800 * S)  # silent gap - lateness... not yet
    assert s.advance() == []
    s.ingest(0, 100 * S, False, [], [], idle_us=(1_800 + 60) * S + 1)
    assert [why for _u, _e, why in s.advance()] == ["gap"]
