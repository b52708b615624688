"""A short deterministic crash matrix (``make crash`` runs hundreds of drawn ones).

Each scenario kills a real run at a point taken from its own state (see
:mod:`search_sessions.crashpoints`), resumes it with the same command and compares every
output with an uninterrupted run's. A failure prints the scenario, which
``python bench/crash.py --scenario '...'`` replays.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Harness, Scenario

MATRIX = [
    # The hang of issue #20: files that end at different moments, killed once an
    # epoch is committed, between two files, while snapshots are taken.
    Scenario("dir", ("commit:3:group",), read_ahead="on"),
    Scenario("dir", ("input-end:2:group",), workers=2, read_ahead="on"),
    Scenario("dir", ("input-end:1:self@1",), processes=2),
    Scenario("dir", ("snapshot:4:launcher@0", "commit:6:self@1"), processes=2),
    Scenario("lanes", ("commit:2:self@1",), processes=2, workers=2),
    Scenario("lanes", ("snapshot:2:group",), read_ahead="on"),
    Scenario("csv", ("snapshot:3:group",), output="sqlite", read_ahead="on"),
    Scenario("tsv", ("input-end:1:self@0",), processes=2),
    Scenario("aol", ("sort-run:1:group",)),
    Scenario("parquet", ("commit:2:group",), output="parquet"),
    # A Parquet file is read by one worker: process 1 has no input to watch the store.
    Scenario("parquet", ("commit:4:self@1",), processes=2),
    Scenario("sort", ("sort-run:2:group", "merge:2:group")),
    Scenario("sort", ("merge:1:self@1",), processes=2),
    Scenario("sort", ("flush:1:group",)),
    Scenario("dir", ("flush:2:self@0",), processes=2, output="postgres"),
    Scenario("kafka", ("commit:3:self@1",), processes=2),
    # TREC XML, sorted by user as the TREC files are: killed mid-merge, resumed (the file
    # parsed again, the events read skipped), on two processes.
    Scenario("trec", ("merge:2:group",), processes=2),
]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with Harness(tmp_path_factory.mktemp("crash"), events=20_000) as h:
        yield h


@pytest.mark.parametrize("scenario", MATRIX, ids=lambda s: f"{s.layout}-{'+'.join(s.kills)}")
def test_kill_resume_equals_uninterrupted(harness: Harness, scenario: Scenario) -> None:
    result = harness.run(scenario)
    print(result)
    assert result.ok, str(result)
    assert len(result.kills_landed) == len(scenario.kills)


def test_a_kill_that_cannot_land_is_reported(harness: Harness) -> None:
    """The harness fails a scenario whose kill never came (here: no fourth input end in
    a run of one file), rather than passing a run that was never interrupted."""
    result = harness.run(Scenario("lanes", ("input-end:4:group",)))
    assert not result.ok and "did not land" in result.error


def test_draw_is_a_function_of_the_seed() -> None:
    from .harness import draw

    assert draw(1234) == draw(1234)
    assert len({str(draw(s)) for s in range(20)}) > 10


def test_results_compare_line_for_line(tmp_path: Path) -> None:
    from .harness import _difference

    assert _difference("x", ["a", "b", "b"], ["a", "b"]).startswith("x: 1 missing, 0 extra")
