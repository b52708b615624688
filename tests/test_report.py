"""The HTML report: its numbers against the inputs, escaping, and a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from search_sessions.cli import main
from search_sessions.core.schema import QueryRow, field_names
from search_sessions.report import load, render_html
from search_sessions.simulate import SimSpec, write

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report")
    log = d / "events.jsonl"
    write(SimSpec(events=20_000, users=300, seed=6, days=0.5), str(log))
    hostile = []
    for i, kind in enumerate(["search", "results", "search", "results"]):
        rec = {"type": kind, "user": "attacker", "time": f"2024-01-01T00:00:0{i}Z"}
        rec.update({"query": XSS} if kind == "search" else {"items": []})
        hostile.append(json.dumps(rec).encode() + b"\n")
    log.write_bytes(b"".join(hostile) + log.read_bytes())
    db = d / "results.db"
    r = CliRunner().invoke(
        main,
        [
            "run",
            str(log),
            "--searches",
            str(d / "searches.jsonl"),
            "--sessions",
            str(d / "sessions.jsonl"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        main,
        [
            "run",
            str(log),
            "--searches",
            f"sqlite:///{db}",
            "--sessions",
            f"sqlite:///{db}",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    return d


def card(page: str, metric: str) -> str:
    m = re.search(
        rf'data-metric="{metric}"><div class="label">[^<]*</div>'
        r'<div class="value">([^<]*)</div>',
        page,
    )
    assert m, metric
    return m.group(1)


def test_headline_numbers_match_the_inputs(outputs: Path) -> None:
    searches = [json.loads(x) for x in (outputs / "searches.jsonl").read_bytes().splitlines()]
    sessions = (outputs / "sessions.jsonl").read_bytes().count(b"\n")
    page = render_html(load([str(outputs / "searches.jsonl"), str(outputs / "sessions.jsonl")]))
    n = len(searches)
    clicked = sum(s["clicked"] for s in searches)
    assert card(page, "searches") == f"{n:,}"
    assert card(page, "sessions") == f"{sessions:,}"
    assert card(page, "ctr") == f"{100 * clicked / n:.1f}%"
    zero = sum(s["zero_results"] for s in searches)
    assert card(page, "zero_result_rate") == f"{100 * zero / n:.1f}%"
    abandoned = sum(s["abandoned"] for s in searches)
    assert card(page, "abandonment_rate") == f"{100 * abandoned / n:.1f}%"
    clicks = sum(s["clicks"] for s in searches)
    assert card(page, "clicks_per_search") == f"{clicks / n:.2f}"
    ranks = [s["first_click_rank"] for s in searches if s["first_click_rank"] is not None]
    assert card(page, "avg_click_position") == f"{sum(ranks) / len(ranks):.2f}"
    assert page.count('class="chart"') == 5


def test_top_query_table(outputs: Path) -> None:
    searches = [json.loads(x) for x in (outputs / "searches.jsonl").read_bytes().splitlines()]
    page = render_html(load([str(outputs / "searches.jsonl")]))
    top = max({s["query"] for s in searches}, key=lambda q: sum(s["query"] == q for s in searches))
    count = sum(s["query"] == top for s in searches)
    table = page.split('data-table="top"')[1]
    assert f'<td data-field="query">{top}</td><td data-field="searches">{count:,}</td>' in table


def test_query_tables_show_the_query_row_fields(outputs: Path) -> None:
    page = render_html(load([str(outputs / "searches.jsonl")]), min_sample=1)
    for table in ("top", "worst"):
        first_row = page.split(f'data-table="{table}"')[1].split("</tr>")[1]
        shown = re.findall(r'data-field="([^"]+)"', first_row)
        assert shown == [
            f for f in field_names(QueryRow) if f not in ("window", "window_start", "window_end")
        ]


def test_sqlite_input_gives_the_same_report(outputs: Path) -> None:
    a = render_html(load([str(outputs / "searches.jsonl"), str(outputs / "sessions.jsonl")]))
    b = render_html(load([str(outputs / "results.db")]))
    assert a == b


def test_queries_are_escaped(outputs: Path) -> None:
    page = render_html(load([str(outputs / "searches.jsonl")]), min_sample=1)
    assert XSS not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")


def test_report_command(outputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "r" / "report.html"
    r = CliRunner().invoke(main, ["report", str(outputs / "searches.jsonl"), "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("<!doctype html>")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
)
def test_renders_in_headless_chromium(outputs: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(
        render_html(
            load([str(outputs / "searches.jsonl"), str(outputs / "sessions.jsonl")]), min_sample=1
        )
    )
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert dom.count("<svg") == 5 and "<path" in dom and "<rect" in dom
    assert 'data-metric="ctr"' in dom and "Worst queries by CTR" in dom
    assert "<img" not in dom, "the hostile query stayed text"
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            *profile,
            "--window-size=1280,1600",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000


@pytest.fixture(scope="module")
def ab_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An A/B test with platforms, run with both as dimensions."""
    d = tmp_path_factory.mktemp("ab")
    log = d / "events.jsonl"
    write(SimSpec(events=20_000, users=400, seed=3, days=0.5, variants=("A", "B")), str(log))
    args = ["run", str(log), "--dimension", "variant", "--dimension", "platform"]
    args += ["--collapse-typeahead", "2s", "--quiet"]
    args += ["--searches", str(d / "searches.jsonl"), "--sessions", str(d / "sessions.jsonl")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return d


def test_segments_sessions_and_ab_sections(ab_outputs: Path) -> None:
    from search_sessions.compare import compare

    searches = [json.loads(x) for x in (ab_outputs / "searches.jsonl").read_bytes().splitlines()]
    sessions = [json.loads(x) for x in (ab_outputs / "sessions.jsonl").read_bytes().splitlines()]
    page = render_html(
        load([str(ab_outputs / "searches.jsonl"), str(ab_outputs / "sessions.jsonl")])
    )
    # A breakdown per dimension: each value's searches, as the records count them.
    for name in ("variant", "platform"):
        table = re.search(rf'data-table="dimension-{name}">(.*?)</table>', page, re.S)
        assert table is not None, name
        shown = re.findall(
            r'<td data-field="value">([^<]*)</td><td data-field="searches">([\d,]+)</td>',
            table.group(1),
        )
        counts: dict[str, int] = {}
        for s in searches:
            value = s["dimensions"][name]
            counts[value] = counts.get(value, 0) + 1
        assert {v: int(n.replace(",", "")) for v, n in shown} == counts
    # Sessions: the success rate over the session records.
    rate = sum(s["success"] for s in sessions) / len(sessions)
    assert card(page, "success_rate") == f"{100 * rate:.1f}%"
    # The A/B section shows compare()'s numbers for the variants.
    result = compare(searches, "variant")
    ab = re.search(r'data-table="ab-variant">(.*?)</table>', page, re.S)
    assert ab is not None and "Sample-ratio-mismatch" in page
    ctrs = re.findall(r'<td data-field="ctr">([^<]*)</td>', ab.group(1))
    assert ctrs == [f"{100 * v['ctr']:.1f}%" for v in result["variants"]]
    assert [v["value"] for v in result["variants"]] == ["A", "B"]
    # Without the dimension, no A/B section.
    assert 'data-table="ab-' not in render_html(
        load([str(ab_outputs / "searches.jsonl")]), compare_by="nope"
    )
