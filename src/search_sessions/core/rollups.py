"""Rollups (SPEC 5): per-search records summed into event-time tumbling windows.

Plain Python, no Bytewax. :class:`WindowAgg` holds a window's sums (and the
times to first click, for the median); partial aggregates from shards merge
into it, so the result never depends on how searches were split. A window is
keyed by ``(length name, window_start_us)``; :func:`window_records` renders the
window row, one row per query and one per value of each dimension
(:class:`WindowRow`, :class:`QueryRow`, :class:`DimensionRow`).

>>> agg = WindowAgg()
>>> agg.add_search("dogs", clicked=True, clicks=2, rank=1, zero=False, abandoned=False,
...                reformulated=False, long_click=True, rr=1.0, ttfc=2.5)
>>> agg.add_search("dogs", clicked=False, clicks=0, rank=None, zero=False, abandoned=True,
...                reformulated=False, long_click=False, rr=0.0, ttfc=None)
>>> window, (dogs,) = window_records(("1h", 0), agg, 3600)
>>> window.ctr, window.clicks_per_search, dogs.searches
(0.5, 1.0, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .schema import DimensionRow, QueryRow, WindowRow
from .searches import total
from .time import format_time, parse_time

_json = msgspec.json.encode
_from_json = msgspec.json.decode

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion (95% by default); ``None`` for n = 0.
    Its bounds are exactly 0 with no success and 1 with all (where rounding would give
    5.6e-17 or 0.9999999999999999).

    >>> [round(x, 4) for x in wilson(7, 10)]
    [0.3968, 0.8922]
    >>> wilson(0, 3)[0], wilson(3, 3)[1]
    (0.0, 1.0)
    """
    if n == 0:
        return None, None
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def window_start(t_us: int, length_s: int) -> int:
    """Start (epoch microseconds) of the tumbling window of ``length_s`` holding ``t_us``."""
    size = length_s * 1_000_000
    return t_us - t_us % size


@dataclass
class QueryAgg:
    searches: int = 0
    clicked: int = 0
    zero: int = 0
    rank_sum: int = 0
    ranks: int = 0

    def merge(self, other: QueryAgg) -> None:
        self.searches += other.searches
        self.clicked += other.clicked
        self.zero += other.zero
        self.rank_sum += other.rank_sum
        self.ranks += other.ranks


@dataclass
class DimensionAgg:
    """Mergeable sums of one dimension value's searches in a window."""

    searches: int = 0
    clicked: int = 0
    converted: int = 0
    values: list[float] = field(default_factory=list)
    zero: int = 0
    abandoned: int = 0
    rank_sum: int = 0
    ranks: int = 0
    rr_ranks: dict[int, int] = field(default_factory=dict)
    rr_n: int = 0

    def merge(self, other: DimensionAgg) -> None:
        self.searches += other.searches
        self.clicked += other.clicked
        self.converted += other.converted
        self.values += other.values
        self.zero += other.zero
        self.abandoned += other.abandoned
        self.rank_sum += other.rank_sum
        self.ranks += other.ranks
        for rank, n in other.rr_ranks.items():
            self.rr_ranks[rank] = self.rr_ranks.get(rank, 0) + n
        self.rr_n += other.rr_n


DimensionKey = tuple[str, str]
"""``(dimension, value as JSON text)``: ``true``, ``1`` and ``1.0`` stay apart."""


@dataclass
class WindowAgg:
    """Mergeable sums of one window's searches."""

    searches: int = 0
    clicked: int = 0
    clicks: int = 0
    rank_sum: int = 0
    ranks: int = 0
    zero: int = 0
    abandoned: int = 0
    reformulated: int = 0
    long_click: int = 0
    rr_ranks: dict[int, int] = field(default_factory=dict)  # rank -> clicked searches
    rr_n: int = 0
    ttfc: list[float] = field(default_factory=list)
    queries: dict[str, QueryAgg] = field(default_factory=dict)
    conversions: int = 0
    converted: int = 0
    values: list[float] = field(default_factory=list)
    """Conversion values (summed with ``fsum`` at the end: any merge order, same sum)."""
    short_click: int = 0
    dimensions: dict[DimensionKey, DimensionAgg] = field(default_factory=dict)

    def add_search(
        self,
        query: str,
        *,
        clicked: bool,
        clicks: int,
        rank: int | None,
        zero: bool,
        abandoned: bool,
        reformulated: bool,
        long_click: bool,
        rr: float | None,
        ttfc: float | None,
        conversions: int = 0,
        conversion_value: float = 0.0,
        short_click: bool = False,
        dimensions: dict[str, Any] | None = None,
    ) -> None:
        self.searches += 1
        self.conversions += conversions
        self.converted += conversions > 0
        if conversion_value:
            self.values.append(conversion_value)
        self.short_click += short_click
        if dimensions:
            for name, value in dimensions.items():
                dkey = (name, _json(value).decode())
                d = self.dimensions.get(dkey)
                if d is None:
                    d = self.dimensions[dkey] = DimensionAgg()
                d.searches += 1
                d.clicked += clicked
                d.converted += conversions > 0
                if conversion_value:
                    d.values.append(conversion_value)
                d.zero += zero
                d.abandoned += abandoned
                if rank is not None:
                    d.rank_sum += rank
                    d.ranks += 1
                if rr is not None:
                    d.rr_n += 1
                    if clicked and rank is not None:
                        d.rr_ranks[rank] = d.rr_ranks.get(rank, 0) + 1
        self.clicked += clicked
        self.clicks += clicks
        self.zero += zero
        self.abandoned += abandoned
        self.reformulated += reformulated
        self.long_click += long_click
        if rank is not None:
            self.rank_sum += rank
            self.ranks += 1
        if rr is not None:
            # Kept as counts per rank, not a float sum: any merge order, same MRR.
            self.rr_n += 1
            if clicked and rank is not None:
                self.rr_ranks[rank] = self.rr_ranks.get(rank, 0) + 1
        if ttfc is not None:
            self.ttfc.append(ttfc)
        q = self.queries.get(query)
        if q is None:
            q = self.queries[query] = QueryAgg()
        q.searches += 1
        q.clicked += clicked
        q.zero += zero
        if rank is not None:
            q.rank_sum += rank
            q.ranks += 1

    def merge(self, other: WindowAgg) -> None:
        self.searches += other.searches
        self.clicked += other.clicked
        self.clicks += other.clicks
        self.rank_sum += other.rank_sum
        self.ranks += other.ranks
        self.zero += other.zero
        self.abandoned += other.abandoned
        self.reformulated += other.reformulated
        self.long_click += other.long_click
        for rank, n in other.rr_ranks.items():
            self.rr_ranks[rank] = self.rr_ranks.get(rank, 0) + n
        self.rr_n += other.rr_n
        self.ttfc.extend(other.ttfc)
        for query, q in other.queries.items():
            mine = self.queries.get(query)
            if mine is None:
                self.queries[query] = QueryAgg(q.searches, q.clicked, q.zero, q.rank_sum, q.ranks)
            else:
                mine.merge(q)
        self.conversions += other.conversions
        self.converted += other.converted
        self.values += other.values
        self.short_click += other.short_click
        for dkey, d in other.dimensions.items():
            have = self.dimensions.get(dkey)
            if have is None:
                have = self.dimensions[dkey] = DimensionAgg()
            have.merge(d)


def _median(values: list[float]) -> float | None:
    """The median, the list sorted in place: a window's row is made again whenever its
    window changes, and its values, kept sorted, are sorted again in one pass with the
    few merged since (a full sort each time was most of a rollup run's time)."""
    if not values:
        return None
    values.sort()
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


WindowKey = tuple[str, int]
"""``(length name, window_start_us)``."""


def _mrr(rr_ranks: dict[int, int], n: int) -> float | None:
    """Mean reciprocal rank from counts per rank: the same float in any merge order."""
    return math.fsum(k / rank for rank, k in sorted(rr_ranks.items())) / n if n else None


def _per_search(values: list[float], n: int) -> float | None:
    return total(values) / n if n else None


def window_records(
    key: WindowKey,
    agg: WindowAgg,
    length_s: int,
    queries: set[str] | None = None,
    dimensions: set[DimensionKey] | None = None,
) -> tuple[WindowRow, list[QueryRow | DimensionRow]]:
    """The window row, its per-query rows (only ``queries`` when given) and its
    per-dimension-value rows (only ``dimensions`` when given)."""
    name, start = key
    span = (name, format_time(start), format_time(start + length_s * 1_000_000))
    rows: list[QueryRow | DimensionRow] = [
        _query_row(span, query, agg.queries[query])
        for query in sorted(agg.queries if queries is None else queries)
    ]
    rows += [
        _dimension_row(span, dkey, agg.dimensions[dkey])
        for dkey in sorted(agg.dimensions if dimensions is None else dimensions)
    ]
    return _window_row(span, agg), rows


def _window_row(span: tuple[str, str, str], agg: WindowAgg) -> WindowRow:
    name, start_text, end_text = span
    low, high = wilson(agg.clicked, agg.searches)
    conv_low, conv_high = wilson(agg.converted, agg.searches)
    return WindowRow(
        window=name,
        window_start=start_text,
        window_end=end_text,
        searches=agg.searches,
        clicked_searches=agg.clicked,
        ctr=_rate(agg.clicked, agg.searches),
        ctr_low=low,
        ctr_high=high,
        clicks=agg.clicks,
        clicks_per_search=_rate(agg.clicks, agg.searches),
        avg_click_position=agg.rank_sum / agg.ranks if agg.ranks else None,
        zero_result_rate=_rate(agg.zero, agg.searches),
        abandonment_rate=_rate(agg.abandoned, agg.searches),
        reformulation_rate=_rate(agg.reformulated, agg.searches),
        long_click_rate=_rate(agg.long_click, agg.searches),
        mrr=_mrr(agg.rr_ranks, agg.rr_n),
        median_time_to_first_click=_median(agg.ttfc),
        conversions=agg.conversions,
        conversion_rate=_rate(agg.converted, agg.searches),
        conversion_rate_low=conv_low,
        conversion_rate_high=conv_high,
        conversion_value_per_search=_per_search(agg.values, agg.searches),
        short_click_rate=_rate(agg.short_click, agg.searches),
    )


def _query_row(span: tuple[str, str, str], query: str, q: QueryAgg) -> QueryRow:
    name, start_text, end_text = span
    qlow, qhigh = wilson(q.clicked, q.searches)
    return QueryRow(
        window=name,
        window_start=start_text,
        window_end=end_text,
        query=query,
        searches=q.searches,
        ctr=_rate(q.clicked, q.searches),
        ctr_low=qlow,
        ctr_high=qhigh,
        zero_result_rate=_rate(q.zero, q.searches),
        avg_click_position=q.rank_sum / q.ranks if q.ranks else None,
    )


def _dimension_row(span: tuple[str, str, str], dkey: DimensionKey, d: DimensionAgg) -> DimensionRow:
    name, start_text, end_text = span
    dlow, dhigh = wilson(d.clicked, d.searches)
    clow, chigh = wilson(d.converted, d.searches)
    return DimensionRow(
        window=name,
        window_start=start_text,
        window_end=end_text,
        dimension=dkey[0],
        value=_from_json(dkey[1]),
        searches=d.searches,
        ctr=_rate(d.clicked, d.searches),
        ctr_low=dlow,
        ctr_high=dhigh,
        conversion_rate=_rate(d.converted, d.searches),
        conversion_rate_low=clow,
        conversion_rate_high=chigh,
        conversion_value_per_search=_per_search(d.values, d.searches),
        zero_result_rate=_rate(d.zero, d.searches),
        abandonment_rate=_rate(d.abandoned, d.searches),
        avg_click_position=d.rank_sum / d.ranks if d.ranks else None,
        mrr=_mrr(d.rr_ranks, d.rr_n),
    )


def aggregate(
    searches: Sequence[Any], lengths: dict[str, int], times_us: Sequence[int] | None = None
) -> dict[WindowKey, WindowAgg]:
    """Partial aggregates of search records (dicts or records with the SPEC fields)
    for every rollup length. ``times_us`` are the searches' times when the caller
    has them; otherwise each record's ``time`` text is parsed."""
    if times_us is None:
        times_us = [parse_time(s["time"] if isinstance(s, dict) else s.time) for s in searches]
    out: dict[WindowKey, WindowAgg] = {}
    windows = list(lengths.items())
    for s, t in zip(searches, times_us, strict=True):
        get: Any = s.get if isinstance(s, dict) else s.__getattribute__
        clicked = get("clicked")
        fields = dict(
            clicked=clicked,
            clicks=get("clicks"),
            rank=get("first_click_rank") if clicked else None,
            zero=get("zero_results"),
            abandoned=get("abandoned"),
            reformulated=get("reformulated"),
            long_click=get("long_click"),
            rr=get("reciprocal_rank"),
            ttfc=get("time_to_first_click"),
            conversions=get("conversions") or 0,
            conversion_value=get("conversion_value") or 0.0,
            short_click=get("short_click") or False,
            dimensions=get("dimensions"),
        )
        query = get("query")
        for name, length in windows:
            key = (name, window_start(t, length))
            agg = out.get(key)
            if agg is None:
                agg = out[key] = WindowAgg()
            agg.add_search(query, **fields)
    return out
