"""Prototype for issue #12: decode blocks of JSON lines into event tuples through
pyarrow's C++ JSON reader (columns), against the per-line msgspec decoder.

Not used by the package: it handles only valid, uniformly typed lines (a real
decoder would fall back to the per-line path for a block that fails, and for rows
with nulls where a field is required). Prints microseconds per event for both.

    python bench/prototypes/arrow_decode.py bench/data/events-1000000-10000-1d-s1.jsonl
"""

from __future__ import annotations

import gc
import io
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from search_sessions.core.events import EventDecoder, decode_block

KINDS = {"app_open": 0, "search": 1, "results": 2, "click": 3, "app_close": 4}
SCHEMA = pa.schema(
    [
        ("type", pa.string()),
        ("user", pa.string()),
        ("time", pa.string()),
        ("query", pa.string()),
        ("items", pa.list_(pa.string())),
        ("item", pa.string()),
        ("rank", pa.int64()),
        ("search_id", pa.string()),
    ]
)
PARSE = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")


def arrow_block(data: bytes, part: int, first_seq: int) -> list[tuple]:
    read = pj.ReadOptions(block_size=len(data) + 1, use_threads=False)
    table = pj.read_json(io.BytesIO(data), read_options=read, parse_options=PARSE)
    times = pc.strptime(table["time"], format="%Y-%m-%dT%H:%M:%S%z", unit="us", error_is_null=True)
    t_us = pc.cast(times, pa.int64()).to_pylist()
    kinds = [KINDS[k] for k in table["type"].to_pylist()]
    users = table["user"].to_pylist()
    query = table["query"].to_pylist()
    items = table["items"].to_pylist()
    item = table["item"].to_pylist()
    rank = table["rank"].to_pylist()
    sid = table["search_id"].to_pylist()
    out = []
    seq = first_seq
    for t, k, u, q, its, it, r, s in zip(
        t_us, kinds, users, query, items, item, rank, sid, strict=True
    ):
        seq += 1
        payload = q if k == 1 else tuple(its) if k == 2 else it if k == 3 else None
        out.append((t, part, seq, k, u, payload, r, s))
    return out


def main(path: str) -> None:
    gc.set_threshold(200_000, 50, 100)
    import re

    # pyarrow cannot read a column that is a string on one line and a number on
    # another (the simulator writes some users as integers): quote them first.
    quote = re.compile(rb'"user": ?(-?\d+)')
    with open(path, "rb") as f:
        lines = [quote.sub(rb'"user":"\1"', line) for line in f.readlines()[:300_000]]
    blocks = [lines[i : i + 4096] for i in range(0, len(lines), 4096)]
    datas = [b"".join(b) for b in blocks]
    d = EventDecoder(0)
    for name, fn in (
        ("msgspec per line", lambda i: decode_block(d, blocks[i], i * 4096, -(1 << 62), 0, 1)),
        ("pyarrow columns", lambda i: arrow_block(datas[i], 0, i * 4096)),
    ):
        best = 9.0
        for _ in range(3):
            started = time.perf_counter()
            for i in range(len(blocks)):
                fn(i)
            best = min(best, time.perf_counter() - started)
        print(f"{name:18s} {best / len(lines) * 1e6:.3f} us/event")


if __name__ == "__main__":
    main(sys.argv[1])
