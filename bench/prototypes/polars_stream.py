"""Prototype for issue #12: a streaming columnar shard core in Polars.

Not used by the package. One partition, one shard, read in epochs of
``--block`` lines. Pending events are a Polars frame. At each epoch the watermark
(the newest time minus the lateness) decides which sessions are final; those are
rendered to per-search and session records with expressions and written as JSON
lines, and the rest stays pending. It follows the package's rules for sessions
(gap, app_open, app_close, max_session by repeated cuts) and for searches
without ``search_id``: results are the search's last list, the first click's rank
is given or found in the latest list shown before it, time to first click,
abandoned, reformulated and long click. It does not do: ``search_id`` attachment,
duplicates, late events, dead letters (the input must be valid and uniformly typed:
integer users are quoted first), ordinals of sessions starting at the same instant.

    python bench/prototypes/polars_stream.py bench/data/events-1000000-10000-1d-s1.jsonl
    # compare: search-sessions run FILE --searches a.jsonl; the script checks it
"""

from __future__ import annotations

import argparse
import io
import json
import re
import time

import polars as pl

GAP = 30 * 60 * 1_000_000
MAX_SESSION = 12 * 3600 * 1_000_000
LATENESS = 60 * 1_000_000
LONG_CLICK = 30 * 1_000_000

SCHEMA = {
    "type": pl.String,
    "user": pl.String,
    "time": pl.String,
    "query": pl.String,
    "items": pl.List(pl.String),
    "item": pl.String,
    "rank": pl.Int64,
}


def decode(block: bytes, first_seq: int) -> pl.DataFrame:
    df = pl.read_ndjson(io.BytesIO(block), schema=SCHEMA)
    t = pl.col("time").str.to_datetime(time_zone="UTC", time_unit="us").dt.epoch("us")
    return df.with_columns(
        t.alias("t"), (pl.int_range(pl.len(), dtype=pl.Int64) + first_seq + 1).alias("seq")
    ).drop("time")


def cut(df: pl.DataFrame) -> pl.DataFrame:
    """Sessions of pending events sorted by (user, t, seq): ``session`` numbers them."""
    same_user = pl.col("user") == pl.col("user").shift(1)
    base = (
        ~same_user.fill_null(False)
        | ((pl.col("t") - pl.col("t").shift(1)) > GAP).fill_null(True)
        | (pl.col("type") == "app_open")
        | (pl.col("type").shift(1) == "app_close").fill_null(False)
    )
    df = df.with_columns(base.alias("cut"))
    while True:
        # max_session: a new session when an event is more than MAX after its session's
        # start; repeated, since each new cut moves later starts.
        df = df.with_columns(pl.col("cut").cum_sum().alias("session"))
        start = pl.col("t").first().over("session")
        over = (pl.col("t") - start > MAX_SESSION) & ~pl.col("cut")
        first_over = over & ~over.shift(1).over("session").fill_null(False)
        extra = df.select(first_over.alias("x"))["x"]
        if not extra.any():
            return df
        df = df.with_columns((pl.col("cut") | extra).alias("cut"))


def finals(df: pl.DataFrame, watermark: int, end: bool) -> pl.Series:
    """Which sessions the watermark has made final (all of them at the end)."""
    per = df.group_by("session").agg(
        pl.col("t").first().alias("start"),
        pl.col("t").last().alias("last"),
        pl.col("type").last().alias("last_type"),
        pl.col("user").first(),
    )
    nxt = per.sort("session").with_columns(
        pl.col("start").shift(-1).alias("next_start"),
        (pl.col("user").shift(-1) == pl.col("user")).fill_null(False).alias("has_next"),
    )
    due = (
        pl.when(pl.col("last_type") == "app_close")
        .then(pl.col("last"))
        .when(pl.col("has_next"))
        .then(pl.col("next_start"))
        .otherwise(pl.min_horizontal(pl.col("last") + GAP, pl.col("start") + MAX_SESSION))
    )
    done = nxt.filter(pl.lit(end) | (due < watermark))
    return done["session"]


def render(done: pl.DataFrame) -> pl.DataFrame:
    df = done.with_columns(
        (pl.col("type") == "search").cum_sum().over("session").alias("search_no"),
        pl.col("t").shift(-1).over("session").alias("next_t"),
    )
    df = df.filter(pl.col("search_no") > 0).with_columns(
        pl.when(pl.col("type") == "results")
        .then(pl.col("items"))
        .forward_fill()
        .over(["session", "search_no"])
        .alias("shown")
    )
    click = pl.col("type") == "click"
    # The clicked item's place in the latest list shown: explode the lists of the clicks
    # that need it, keep the first equal item.
    df = df.with_row_index("row")
    need = df.filter(click & pl.col("rank").is_null() & pl.col("shown").is_not_null())
    found = (
        need.select("row", "item", "shown")
        .explode("shown")
        .with_columns((pl.int_range(pl.len()).over("row") + 1).alias("pos"))
        .filter(pl.col("shown") == pl.col("item"))
        .group_by("row")
        .agg(pl.col("pos").min().alias("found"))
    )
    df = df.join(found, on="row", how="left").with_columns(
        pl.when(click).then(pl.coalesce("rank", "found")).alias("click_rank")
    )
    searches = df.group_by(["session", "search_no"], maintain_order=True).agg(
        pl.col("user").first(),
        pl.col("query").first(),
        pl.col("t").first().alias("time_us"),
        pl.col("items").filter(pl.col("type") == "results").last().list.len().alias("results"),
        click.sum().alias("clicks"),
        pl.col("click_rank").filter(click).first().alias("first_click_rank"),
        pl.col("t").filter(click).first().alias("first_click_t"),
        ((pl.col("next_t") - pl.col("t")).fill_null(LONG_CLICK).ge(LONG_CLICK).filter(click))
        .any()
        .alias("long_click"),
    )
    clicked = pl.col("clicks") > 0
    return searches.with_columns(
        (pl.col("results") == 0).fill_null(False).alias("zero_results"),
        clicked.alias("clicked"),
        clicked.cast(pl.Float64).alias("ctr"),
        pl.when(clicked)
        .then(1.0 / pl.col("first_click_rank"))
        .otherwise(0.0)
        .alias("reciprocal_rank"),
        pl.when(clicked)
        .then((pl.col("first_click_t") - pl.col("time_us")) / 1e6)
        .alias("time_to_first_click"),
        (~clicked & ~(pl.col("results") == 0).fill_null(False)).alias("abandoned"),
        (~clicked & (pl.col("search_no") < pl.col("search_no").max().over("session"))).alias(
            "reformulated"
        ),
        pl.col("long_click").fill_null(False),
    )


def run(path: str, block_lines: int) -> tuple[int, float, float]:
    quote = re.compile(rb'"user": ?(-?\d+)')
    pending = pl.DataFrame()
    newest = -(1 << 62)
    out = io.BytesIO()
    n_searches = clicked = 0
    seq = 0
    with open(path, "rb") as f:
        lines = [quote.sub(rb'"user":"\1"', line) for line in f]
    started = time.perf_counter()
    blocks = [lines[i : i + block_lines] for i in range(0, len(lines), block_lines)] + [[]]
    for block in blocks:
        end = not block
        if block:
            new = decode(b"".join(block), seq)
            seq += len(block)
            newest = max(newest, new["t"].max())
            pending = pl.concat([pending, new]) if len(pending) else new
        df = cut(pending.sort(["user", "t", "seq"]))
        done_ids = finals(df, newest - LATENESS, end)
        is_done = pl.col("session").is_in(done_ids.implode())
        done, pending = df.filter(is_done), df.filter(~is_done).drop("cut", "session")
        if len(done):
            recs = render(done)
            n_searches += len(recs)
            clicked += int(recs["clicked"].sum())
            recs.drop("session", "search_no", "first_click_t").write_ndjson(out)
    wall = time.perf_counter() - started
    return n_searches, clicked / n_searches, wall


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--block", type=int, default=65536)
    ap.add_argument("--check", help="searches JSONL written by search-sessions run")
    args = ap.parse_args()
    searches, ctr, wall = run(args.path, args.block)
    print(f"{searches:,} searches, CTR {ctr:.6f}, {wall:.2f} s (decode to records)")
    if args.check:
        with open(args.check) as f:
            want = [json.loads(line) for line in f]
        ctr_want = sum(r["ctr"] for r in want) / len(want)
        print(f"search-sessions: {len(want):,} searches, CTR {ctr_want:.6f}")
