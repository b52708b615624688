"""The paths besides JSON Lines in and files out, for ``make bench`` (issue #21: "measure
the paths that stay slower").

The simulator's events of the bench are written again as CSV, TSV, Parquet and the AOL
query log's layout (made once, beside the JSON Lines file), and ``run`` reads each with
the native core and with the Python core, searches and sessions written to files; then,
reading the JSON Lines file, ``run`` writes rollups (1h and 1d) besides, the searches
and sessions as Parquet, and as SQLite. Each run once: these rows show where time goes
per path, not a target. PostgreSQL and Kafka need a server and are not timed here (the
tests run them against real ones).

The CSV, TSV and Parquet files hold the same events as the JSON Lines file, so their runs
must give its searches and CTR (checked). The AOL layout keeps only searches and clicks
(no app opens or closes, no result lists), at whole seconds, sorted by user as the
published log is: its runs take the sort path of ``--order auto``, and its rate is in
rows of the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

FIELDS = ("type", "user", "time", "query", "items", "item", "rank", "search_id", "platform")


def _events(src: Path) -> Iterator[dict[str, Any]]:
    with open(src, "rb") as f:
        for line in f:
            yield json.loads(line)


def _made(dst: Path, write: Callable[[Path], None]) -> Path:
    """``dst``, written by ``write`` through a temporary file if it is not there yet."""
    if not dst.exists():
        tmp = dst.with_name(dst.name + ".tmp")
        write(tmp)
        tmp.rename(dst)
    return dst


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "items":
        return json.dumps(value) if any("|" in item for item in value) else "|".join(value)
    return str(value)


def delimited(src: Path, delimiter: str) -> Path:
    """The events as CSV (``,``) or TSV (``\\t``) under a header row of :data:`FIELDS`."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as out:
            w = csv.writer(out, delimiter=delimiter, lineterminator="\n")
            w.writerow(FIELDS)
            for ev in _events(src):
                w.writerow([_cell(name, ev.get(name)) for name in FIELDS])

    return _made(src.with_suffix(".csv" if delimiter == "," else ".tsv"), write)


def parquet(src: Path) -> Path:
    """The events as Parquet: ``time`` a UTC timestamp column, ``items`` a list of
    strings, ``rank`` an integer, the rest strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(tmp: Path) -> None:
        columns: dict[str, list[Any]] = {name: [] for name in FIELDS}
        for ev in _events(src):
            for name in FIELDS:
                value = ev.get(name)
                if name == "time":
                    value = datetime.fromisoformat(value)
                elif value is not None and name not in ("items", "rank"):
                    value = str(value)  # (a search id may be a number)
                columns[name].append(value)
        types = {
            "time": pa.timestamp("us", tz="UTC"),
            "items": pa.list_(pa.string()),
            "rank": pa.int64(),
        }
        table = pa.table(
            {name: pa.array(columns[name], type=types.get(name, pa.string())) for name in FIELDS}
        )
        pq.write_table(table, tmp)

    return _made(src.with_suffix(".parquet"), write)


def aol(src: Path) -> tuple[Path, int]:
    """The searches and clicks in the AOL log's layout (``AnonID, Query, QueryTime,
    ItemRank, ClickURL``), sorted by user as the published log is; a click row carries
    its search's query and time. Returns the file and its rows."""

    def write(tmp: Path) -> None:
        rows: list[tuple[str, str, str, str, str]] = []
        last: dict[str, tuple[str, str]] = {}
        shown: dict[str, list[str]] = {}
        for ev in _events(src):
            user, kind = str(ev["user"]), ev["type"]
            when = datetime.fromisoformat(ev["time"]).strftime("%Y-%m-%d %H:%M:%S")
            if kind == "search":
                query = (ev.get("query") or "").replace("\t", " ")
                last[user] = (query, when)
                rows.append((user, query, when, "", ""))
            elif kind == "results":
                shown[user] = ev.get("items") or []
            elif kind == "click" and user in last:
                item = ev.get("item") or ""
                items = shown.get(user, [])
                rank = ev.get("rank") or (items.index(item) + 1 if item in items else None)
                if rank is not None:
                    query, when = last[user]
                    rows.append((user, query, when, str(rank), item))
        rows.sort(key=lambda row: row[0])  # (stable: each user's rows stay in time order)
        with open(tmp, "w", encoding="utf-8") as out:
            out.write("AnonID\tQuery\tQueryTime\tItemRank\tClickURL\n")
            out.writelines("\t".join(row) + "\n" for row in rows)

    path = _made(src.with_suffix(".aol.txt"), write)
    with open(path, "rb") as f:
        return path, sum(1 for _ in f) - 1
