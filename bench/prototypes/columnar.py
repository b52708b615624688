"""Prototype for issue #12: how fast could a columnar (Polars) core be?

Not used by the package. Computes per-search records for a whole JSON Lines file in
one batch with Polars expressions: sessions cut by gap, app_open and app_close (not
max_session, which needs a sequential scan), searches owning the events after them
(no search_id), results = the search's last list, clicks, first click rank by the
item's place in the latest list. It gives the columnar ceiling (decode, sort, cut,
aggregate) to compare with `search-sessions run` on the same file.

    python bench/prototypes/columnar.py bench/data/events-1000000-10000-1d-s1.jsonl
"""

from __future__ import annotations

import sys
import time

import polars as pl

GAP_US = 30 * 60 * 1_000_000


def searches(path: str) -> pl.DataFrame:
    df = pl.read_ndjson(
        path,
        schema={
            "type": pl.String,
            "user": pl.String,
            "time": pl.String,
            "query": pl.String,
            "items": pl.List(pl.String),
            "item": pl.String,
            "rank": pl.Int64,
        },
    )
    t = pl.col("time").str.to_datetime(time_zone="UTC", time_unit="us").dt.epoch("us")
    df = df.with_row_index("seq").with_columns(t.alias("t")).sort(["user", "t", "seq"])
    prev_user = pl.col("user").shift(1)
    new_session = (
        (pl.col("user") != prev_user).fill_null(True)
        | ((pl.col("t") - pl.col("t").shift(1)) > GAP_US).fill_null(True)
        | (pl.col("type") == "app_open")
        | (pl.col("type").shift(1) == "app_close").fill_null(False)
    )
    df = df.with_columns(new_session.cum_sum().alias("session"))
    df = df.with_columns(
        (pl.col("type") == "search").cum_sum().over("session").alias("search_no")
    ).filter(pl.col("search_no") > 0)
    # The latest results list shown before each event of a search.
    df = df.with_columns(
        pl.when(pl.col("type") == "results")
        .then(pl.col("items"))
        .forward_fill()
        .over(["session", "search_no"])
        .alias("shown")
    )
    clicks = pl.col("type") == "click"
    out = df.group_by(["session", "search_no"], maintain_order=True).agg(
        pl.col("user").first(),
        pl.col("query").first(),
        pl.col("t").first().alias("time"),
        pl.col("items").filter(pl.col("type") == "results").last().list.len().alias("results"),
        clicks.sum().alias("clicks"),
        pl.col("item").filter(clicks).first().alias("first_item"),
        pl.col("shown").filter(clicks).first().alias("first_shown"),
        pl.col("rank").filter(clicks).first().alias("first_rank_given"),
    )
    return out.with_columns(
        (pl.col("clicks") > 0).alias("clicked"),
        (pl.col("clicks") > 0).cast(pl.Float64).alias("ctr"),
    )


if __name__ == "__main__":
    started = time.perf_counter()
    result = searches(sys.argv[1])
    wall = time.perf_counter() - started
    print(f"{len(result):,} searches, CTR {result['ctr'].mean():.6f}, {wall:.2f} s")
