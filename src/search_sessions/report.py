"""A self-contained HTML report of a run: headline numbers, charts over time, tables.

Reads per-search records (a searches JSONL file, or the ``searches`` table of a
SQLite database written by ``run``) and, when given, sessions. Everything is
computed from the per-search records with the rollup arithmetic of
:mod:`search_sessions.core.rollups`, so the report agrees with ``--rollups``. The page
has no scripts and loads nothing: charts are inline SVG, and every query is
escaped (a query is untrusted text).
"""

from __future__ import annotations

import html
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .connectors.sql import read_rows
from .core.rollups import WindowAgg, aggregate, wilson, window_records
from .core.schema import DimensionRow, QueryRow, WindowRow, field_names
from .core.time import format_time, parse_time

NICE_WINDOWS = [
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("6h", 21600),
    ("1d", 86400),
]


# SQLite stores booleans as 0/1.

# The query tables show every QueryRow field but the window's bounds, in schema
# order: field -> (label, shown as a percentage).
_QUERY_LABELS = {
    "query": ("Query", False),
    "searches": ("Searches", False),
    "ctr": ("CTR", True),
    "ctr_low": ("CTR low", True),
    "ctr_high": ("CTR high", True),
    "zero_result_rate": ("Zero results", True),
    "avg_click_position": ("Avg position", False),
}
_QUERY_COLUMNS = [
    (name, *_QUERY_LABELS[name])
    for name in field_names(QueryRow)
    if name not in ("window", "window_start", "window_end")
]


@dataclass
class ReportData:
    searches: list[dict[str, Any]]
    sessions: list[dict[str, Any]]


@dataclass
class ReportSummary:
    """Every number the report shows; ``headline`` sums all searches."""

    window: str
    headline: WindowRow
    sessions: int
    queries: list[QueryRow]
    series: list[WindowRow]
    positions: Counter[int]
    segments: list[DimensionRow]
    """One row per dimension and value over all searches."""


def load(inputs: list[str]) -> ReportData:
    """Per-search (and session) records from JSONL files or SQLite databases."""
    searches: list[dict[str, Any]] = []
    sessions: list[dict[str, Any]] = []
    for path in inputs:
        with open(path, "rb") as f:
            head = f.read(16)
        if head.startswith(b"SQLite format 3"):
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                searches += read_rows(conn, "searches")
                sessions += read_rows(conn, "sessions")
            finally:
                conn.close()
            continue
        with open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                if "search_id" in rec and "query" in rec:
                    searches.append(rec)
                elif "session_id" in rec and "end_reason" in rec:
                    sessions.append(rec)
    return ReportData(searches, sessions)


def pick_window(searches: list[dict[str, Any]]) -> tuple[str, int]:
    """A window length giving at most about 200 points over the data's span."""
    if not searches:
        return NICE_WINDOWS[3]
    times = [parse_time(s["time"]) for s in searches]
    span = (max(times) - min(times)) / 1e6
    for name, length in NICE_WINDOWS:
        if span / length <= 200:
            return name, length
    return NICE_WINDOWS[-1]


def summarize(data: ReportData, window: tuple[str, int]) -> ReportSummary:
    """Every number the report shows."""
    name, length = window
    per_window = aggregate(data.searches, {name: length})
    total = WindowAgg()
    for agg in per_window.values():
        total.merge(agg)
    headline, rows = window_records(("all", 0), total, 1)
    queries = [r for r in rows if isinstance(r, QueryRow)]
    segments = [r for r in rows if isinstance(r, DimensionRow)]
    sessions = (
        len(data.sessions) if data.sessions else len({s["session_id"] for s in data.searches})
    )
    series = [
        window_records(key, per_window[key], length, set(), set())[0]
        for key in sorted(per_window, key=lambda k: k[1])
    ]
    positions = Counter(
        s["first_click_rank"]
        for s in data.searches
        if s["clicked"] and s["first_click_rank"] is not None
    )
    return ReportSummary(name, headline, sessions, queries, series, positions, segments)


def _mean_value(sessions: list[dict[str, Any]], n: int) -> float | None:
    """Conversion value per session; ``None`` where a session's value is ``null`` (a sum
    beyond the floats)."""
    values = [s["conversion_value"] for s in sessions]
    return None if None in values else sum(values) / n


def _fmt(v: Any, pct: bool = False, digits: int = 3) -> str:
    if v is None:
        return "&ndash;"
    if pct:
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _line_chart(
    title: str,
    series: list[WindowRow],
    field: str,
    color: str,
    low: str | None = None,
    high: str | None = None,
) -> str:
    w, h, pad = 640, 200, 40
    pts = _points(series, field)
    if not pts:
        return f"<figure><figcaption>{html.escape(title)}</figcaption><p>No data.</p></figure>"
    n = max(len(series) - 1, 1)
    upper = _points(series, high) if high else []
    top = max(1e-9, max(v for _, v in pts), *(v for _, v in upper))

    def x(i: float) -> float:
        return pad + (w - 2 * pad) * i / n

    def y(v: float) -> float:
        return h - pad + -(h - 2 * pad) * v / top

    path = " ".join(
        f"{'M' if k == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for k, (i, v) in enumerate(pts)
    )
    band = ""
    if low and high:
        lower = _points(series, low)
        if upper:
            poly = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in upper + lower[::-1])
            band = f'<polygon points="{poly}" fill="{color}" fill-opacity="0.15"/>'
    first, last = series[0].window_start, series[-1].window_start
    ticks = "".join(
        f'<line x1="{pad}" x2="{w - pad}" y1="{y(top * f):.1f}" y2="{y(top * f):.1f}" '
        f'stroke="#ddd"/><text x="{pad - 4}" y="{y(top * f) + 4:.1f}" text-anchor="end">'
        f"{100 * top * f:.0f}%</text>"
        for f in (0, 0.5, 1)
    )
    return (
        f'<figure class="chart" data-chart="{field}"><figcaption>{html.escape(title)}</figcaption>'
        f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}">{ticks}{band}'
        f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
        f'<text x="{pad}" y="{h - 8}">{html.escape(first)}</text>'
        f'<text x="{w - pad}" y="{h - 8}" text-anchor="end">{html.escape(last)}</text>'
        "</svg></figure>"
    )


def _points(series: list[WindowRow], field: str) -> list[tuple[int, float]]:
    """``(index, value)`` of the windows where ``field`` has a value."""
    values = [(i, getattr(r, field)) for i, r in enumerate(series)]
    return [(i, v) for i, v in values if v is not None]


def _bar_chart(title: str, counts: Counter[int]) -> str:
    w, h, pad = 640, 200, 40
    buckets = [(str(r), counts.get(r, 0)) for r in range(1, 11)]
    buckets.append(("11+", sum(v for r, v in counts.items() if r > 10)))
    top = max([v for _, v in buckets] + [1])
    bw = (w - 2 * pad) / len(buckets)
    bars = "".join(
        f'<rect x="{pad + k * bw + 2:.1f}" y="{h - pad - (h - 2 * pad) * v / top:.1f}" '
        f'width="{bw - 4:.1f}" height="{(h - 2 * pad) * v / top:.1f}" fill="#4c78a8">'
        f"<title>position {label}: {v}</title></rect>"
        f'<text x="{pad + k * bw + bw / 2:.1f}" y="{h - pad + 14}" '
        f'text-anchor="middle">{label}</text>'
        for k, (label, v) in enumerate(buckets)
    )
    return (
        f'<figure class="chart" data-chart="click_position"><figcaption>{html.escape(title)}'
        f'</figcaption><svg viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}">'
        f"{bars}</svg></figure>"
    )


def _table(
    title: str, rows: list[dict[str, Any]], cols: list[tuple[str, str, bool]], kind: str
) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in cols)
    body = (
        "".join(
            "<tr>"
            + "".join(
                f'<td data-field="{field}">{_fmt(r.get(field), pct)}</td>' for field, _, pct in cols
            )
            + "</tr>"
            for r in rows
        )
        or f'<tr><td colspan="{len(cols)}">None.</td></tr>'
    )
    return (
        f'<section><h2>{html.escape(title)}</h2><table data-table="{kind}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
    )


CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px}
.card .label{color:#666;font-size:12px}.card .value{font-size:20px;font-weight:600}
.card .sub{color:#666;font-size:11px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:16px}
figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}
svg{width:100%;height:auto;font-size:11px;fill:#555}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #eee;padding:4px 6px;
text-align:right}th:first-child,td:first-child{text-align:left;word-break:break-all}
"""


def _cards(h: WindowRow, sessions: int) -> str:
    cards = [
        ("Searches", _fmt(h.searches), "", "searches"),
        ("Sessions", _fmt(sessions), "", "sessions"),
        (
            "CTR",
            _fmt(h.ctr, True),
            f"95% CI {_fmt(h.ctr_low, True)} &ndash; {_fmt(h.ctr_high, True)}",
            "ctr",
        ),
        ("Zero-result rate", _fmt(h.zero_result_rate, True), "", "zero_result_rate"),
        ("Abandonment", _fmt(h.abandonment_rate, True), "", "abandonment_rate"),
        ("Reformulation", _fmt(h.reformulation_rate, True), "", "reformulation_rate"),
        ("MRR", _fmt(h.mrr), "", "mrr"),
        (
            "Avg click position",
            _fmt(h.avg_click_position, digits=2),
            "first clicks",
            "avg_click_position",
        ),
        (
            "Median time to first click",
            f"{_fmt(h.median_time_to_first_click, digits=1)} s",
            "",
            "median_time_to_first_click",
        ),
        ("Long-click rate", _fmt(h.long_click_rate, True), "", "long_click_rate"),
        ("Short-click rate", _fmt(h.short_click_rate, True), "pogo-sticks", "short_click_rate"),
        (
            "Conversion rate",
            _fmt(h.conversion_rate, True),
            f"95% CI {_fmt(h.conversion_rate_low, True)} &ndash; "
            f"{_fmt(h.conversion_rate_high, True)}",
            "conversion_rate",
        ),
        (
            "Conversion value per search",
            _fmt(h.conversion_value_per_search, digits=2),
            "",
            "conversion_value_per_search",
        ),
        ("Clicks per search", _fmt(h.clicks_per_search, digits=2), "", "clicks_per_search"),
    ]
    return "".join(
        f'<div class="card" data-metric="{key}"><div class="label">{label}</div>'
        f'<div class="value">{value}</div><div class="sub">{sub}</div></div>'
        for label, value, sub, key in cards
    )


def _charts(s: ReportSummary) -> str:
    series = s.series
    return (
        _line_chart(
            f"CTR per {s.window} (95% interval shaded)",
            series,
            "ctr",
            "#4c78a8",
            "ctr_low",
            "ctr_high",
        )
        + _line_chart(
            f"Conversion rate per {s.window} (95% interval shaded)",
            series,
            "conversion_rate",
            "#54a24b",
            "conversion_rate_low",
            "conversion_rate_high",
        )
        + _line_chart(f"Zero-result rate per {s.window}", series, "zero_result_rate", "#e45756")
        + _line_chart(f"Abandonment per {s.window}", series, "abandonment_rate", "#f58518")
        + _bar_chart("Position of the first click", s.positions)
    )


def _query_tables(queries: list[QueryRow], min_sample: int) -> str:
    top = sorted(queries, key=lambda q: (-q.searches, q.query))[:20]
    worst = sorted(
        (q for q in queries if q.searches >= min_sample),
        key=lambda q: (q.ctr, q.ctr_high, q.query),
    )[:20]
    zero = sorted(
        (q for q in queries if q.zero_result_rate),
        key=lambda q: (-(q.zero_result_rate or 0.0) * q.searches, q.query),
    )[:20]
    zero_rows = [
        {
            **msgspec.structs.asdict(q),
            "zero_searches": round((q.zero_result_rate or 0.0) * q.searches),
        }
        for q in zero
    ]
    return (
        _table("Top queries by volume", _dicts(top), _QUERY_COLUMNS, "top")
        + _table(
            f"Worst queries by CTR (at least {min_sample} searches)",
            _dicts(worst),
            _QUERY_COLUMNS,
            "worst",
        )
        + _table(
            "Zero-result queries",
            zero_rows,
            [
                ("query", "Query", False),
                ("searches", "Searches", False),
                ("zero_searches", "Zero-result searches", False),
                ("zero_result_rate", "Zero-result rate", True),
            ],
            "zero",
        )
    )


_SEGMENT_COLUMNS = [
    ("value", "Value", False),
    ("searches", "Searches", False),
    ("ctr", "CTR", True),
    ("ctr_low", "CTR low", True),
    ("ctr_high", "CTR high", True),
    ("conversion_rate", "Conversion rate", True),
    ("conversion_value_per_search", "Value per search", False),
    ("zero_result_rate", "Zero results", True),
    ("abandonment_rate", "Abandonment", True),
    ("mrr", "MRR", False),
]


def _segment_tables(segments: list[DimensionRow]) -> str:
    """A breakdown table per dimension (``--dimension``), values by volume."""
    out = []
    for name in sorted({r.dimension for r in segments}):
        rows = sorted(
            (r for r in segments if r.dimension == name),
            key=lambda r: (r.value is None, -r.searches, json.dumps(r.value)),
        )
        dicts = [{**msgspec.structs.asdict(r), "value": _value_text(r.value)} for r in rows]
        out.append(_table(f"By {name}", dicts, _SEGMENT_COLUMNS, f"dimension-{name}"))
    return "".join(out)


def _value_text(value: Any) -> str:
    """A dimension value as shown: text as is, other JSON values as JSON, none as such."""
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value)


def _sessions_section(sessions: list[dict[str, Any]]) -> str:
    """Session-level satisfaction: success rate, time to success, conversions."""
    if not sessions or "success" not in sessions[0]:
        return ""
    n = len(sessions)
    successes = sum(1 for s in sessions if s["success"])
    low, high = wilson(successes, n)
    times = sorted(s["time_to_success"] for s in sessions if s["time_to_success"] is not None)
    median = (
        None
        if not times
        else times[len(times) // 2]
        if len(times) % 2
        else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
    )
    converting = sum(1 for s in sessions if s["conversions"])
    durations = sorted(s["duration"] for s in sessions)
    cards = [
        ("Sessions", _fmt(n), "", "sessions"),
        (
            "Success rate",
            _fmt(successes / n, True),
            f"95% CI {_fmt(low, True)} &ndash; {_fmt(high, True)}; a long click or a conversion",
            "success_rate",
        ),
        ("Median time to success", f"{_fmt(median, digits=1)} s", "", "time_to_success"),
        ("Sessions converting", _fmt(converting / n, True), "", "converting_sessions"),
        (
            "Conversion value per session",
            _fmt(_mean_value(sessions, n), digits=2),
            "",
            "conversion_value_per_session",
        ),
        ("Median duration", f"{_fmt(durations[n // 2], digits=0)} s", "", "duration"),
    ]
    body = "".join(
        f'<div class="card" data-metric="{key}"><div class="label">{label}</div>'
        f'<div class="value">{value}</div><div class="sub">{sub}</div></div>'
        for label, value, sub, key in cards
    )
    return (
        f'<section data-section="sessions"><h2>Sessions</h2><div class="cards">{body}</div>'
        "</section>"
    )


def _ab_section(searches: list[dict[str, Any]], by: str) -> str:
    """The A/B comparison of ``by``'s values (``compare``'s numbers), when searches carry it."""
    from .compare import compare, dimension_value

    if not any(dimension_value(s, by) is not None for s in searches):
        return ""
    result = compare(searches, by)
    rows = []
    for v in result["variants"]:
        row = dict(v)
        for metric in ("ctr", "conversion_rate", "mrr", "zero_result_rate"):
            row[f"{metric}_ci"] = _span(v[f"{metric}_low"], v[f"{metric}_high"])
            row[f"{metric}_diff_ci"] = _span(v[f"{metric}_diff_low"], v[f"{metric}_diff_high"])
            row[f"{metric}_p_value"] = _p_text(v[f"{metric}_p_value"])
        rows.append(row)
    cols = [
        ("value", "Value", False),
        ("users", "Users", False),
        ("searches", "Searches", False),
        ("ctr", "CTR", True),
        ("ctr_ci", "95% CI", False),
        ("ctr_diff", "CTR diff", True),
        ("ctr_diff_ci", "diff 95% CI", False),
        ("ctr_p_value", "p", False),
        ("conversion_rate", "Conversion rate", True),
        ("conversion_rate_diff", "diff", True),
        ("conversion_rate_p_value", "p", False),
        ("mrr", "MRR", False),
        ("zero_result_rate", "Zero results", True),
        ("mde_ctr", "MDE (CTR)", True),
    ]
    srm = result["srm_p_value"]
    warn = (
        " <strong>Sample ratio mismatch: users are not split as expected; "
        "do not trust the differences.</strong>"
        if srm is not None and srm < 0.001
        else ""
    )
    note = (
        f"<p>Control: {html.escape(str(result['control']))}. Intervals and p-values are "
        "computed at the user level (delta method on per-user sums); MDE is the CTR "
        "difference detectable with 80% power at this sample. Sample-ratio-mismatch "
        f"p-value: {_fmt(srm, digits=4)}.{warn}</p>"
    )
    table = _table(f"A/B comparison by {by}", rows, cols, f"ab-{by}")
    return table.replace("</h2>", "</h2>" + note, 1)


def _span(low: float | None, high: float | None) -> str | None:
    """An interval of rates as text (escaped by the table), ``None`` when unknown."""
    if low is None or high is None:
        return None
    return f"{100 * low:.1f}% \u2013 {100 * high:.1f}%"


def _p_text(p: float | None) -> str | None:
    return None if p is None else "<0.0001" if p < 0.0001 else f"{p:.4f}"


def _dicts(rows: list[QueryRow]) -> list[dict[str, Any]]:
    return [msgspec.structs.asdict(r) for r in rows]


def render_html(
    data: ReportData,
    title: str = "Search quality report",
    min_sample: int = 20,
    compare_by: str = "variant",
) -> str:
    """The report page; an A/B section compares the values of dimension ``compare_by``
    when the searches carry it."""
    s = summarize(data, pick_window(data.searches))
    span = ""
    if data.searches:
        times = [parse_time(x["time"]) for x in data.searches]
        span = f"{format_time(min(times))} &ndash; {format_time(max(times))}"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{span}</p>"
        f'<div class="cards">{_cards(s.headline, s.sessions)}</div><h2>Over time</h2>'
        f'<div class="charts">{_charts(s)}</div>{_sessions_section(data.sessions)}'
        f"{_ab_section(data.searches, compare_by)}"
        f"{_query_tables(s.queries, min_sample)}{_segment_tables(s.segments)}"
        "</body></html>"
    )


def write_report(
    inputs: list[str], output: str, min_sample: int = 20, compare_by: str = "variant"
) -> ReportData:
    data = load(inputs)
    page = render_html(data, min_sample=min_sample, compare_by=compare_by)
    Path(output).write_text(page, encoding="utf-8")
    return data
