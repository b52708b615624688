"""The yardsticks for ``decode_bench`` on the same file, in this process:

- the Python decode floor: a loop decoding each line with ``msgspec.json.decode``
  into a dict (nothing else);
- the Python core's own decode: ``EventDecoder.decode`` per line (typed, times read);
- DuckDB's ``read_json``: searches per query, and the project's per-search CTR
  (``bench/duckdb_ctr.sql``; epoch-number times read by size as the core does, where
  the file has them), with one thread and with the default threads.

Lines are read before timing. Wall and process CPU time (all threads), best of ``--repeat``::

    /work/main/.venv/bin/python bench_python.py FILE [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import duckdb
import msgspec

from search_sessions.core.events import EventDecoder

HERE = Path(__file__).resolve().parent
CTR_SQL = HERE.parent.parent / "duckdb_ctr.sql"
PER_QUERY_SQL = """
SELECT query, count(*) AS searches
FROM read_json('{path}', format = 'newline_delimited', ignore_errors = true,
               columns = {{"type": 'VARCHAR', "query": 'VARCHAR'}})
WHERE "type" = 'search'
GROUP BY query
"""
# Epoch numbers as the core reads them (by size: s, ms, us, ns); ISO text cast as is.
EPOCH_TIME = """COALESCE(TRY_CAST("time" AS TIMESTAMPTZ), to_timestamp(
        CASE WHEN abs(TRY_CAST("time" AS DOUBLE)) < 1e11 THEN TRY_CAST("time" AS DOUBLE)
             WHEN abs(TRY_CAST("time" AS DOUBLE)) < 1e14 THEN TRY_CAST("time" AS DOUBLE) / 1e3
             WHEN abs(TRY_CAST("time" AS DOUBLE)) < 1e17 THEN TRY_CAST("time" AS DOUBLE) / 1e6
             ELSE TRY_CAST("time" AS DOUBLE) / 1e9 END))"""


def best(fn, repeat: int) -> tuple[float, float, object]:
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - w)
    return min(walls), min(cpus), result


def msgspec_floor(lines: list[bytes]) -> int:
    decode = msgspec.json.decode
    n = 0
    for line in lines:
        decode(line)
        n += 1
    return n


def core_decode(lines: list[bytes]) -> int:
    decode = EventDecoder(part=0).decode
    return sum(isinstance(decode(line, seq), tuple) for seq, line in enumerate(lines, 1))


def duck(sql: str, threads: int | None) -> list:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {threads}")
    return con.sql(sql).fetchall()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = str(Path(args.file).resolve())
    size_mb = os.path.getsize(path) / 1e6
    with open(path, "rb") as f:
        lines = f.readlines()
    has_epochs = any(
        b'"time":' in line and line.split(b'"time":', 1)[1][:1].isdigit()
        for line in lines[:200_000]
    )
    time_sql = EPOCH_TIME if has_epochs else 'CAST("time" AS TIMESTAMPTZ)'
    ctr = CTR_SQL.read_text().replace("{time}", time_sql)
    rows = [
        ("msgspec.json.decode floor", lambda: msgspec_floor(lines)),
        ("EventDecoder.decode (core)", lambda: core_decode(lines)),
    ]
    for threads in (1, None):
        label = f"{threads} thread" if threads else f"{os.cpu_count()} threads"
        rows.append(
            (
                f"DuckDB searches/query, {label}",
                lambda t=threads: len(duck(PER_QUERY_SQL.format(path=path), t)),
            )
        )
        rows.append(
            (f"DuckDB per-search CTR, {label}", lambda t=threads: duck(ctr.format(path=path), t))
        )
    print(f"{path} ({size_mb:.1f} MB, {len(lines):,} lines), best of {args.repeat}")
    print(f"{'what':<36} {'wall s':>7} {'cpu s':>7} {'events/s':>10} {'MB/s':>7}  result")
    for name, fn in rows:
        wall, cpu, result = best(fn, args.repeat)
        print(
            f"{name:<36} {wall:>7.3f} {cpu:>7.3f} {len(lines) / wall:>10.0f} "
            f"{size_mb / wall:>7.1f}  {str(result)[:40]}"
        )


if __name__ == "__main__":
    main()
