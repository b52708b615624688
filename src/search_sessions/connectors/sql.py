"""SQL outputs: SQLite (``sqlite:///PATH.db``) and PostgreSQL (``postgresql://...``).

One table per record kind, upserts on the key, the same schema in both.

Every output flag can name the same database; each kind gets its table
(``searches``, ``sessions``, ``rollup_windows`` and ``rollup_queries``,
``dead_letter``, ``late``). Rows are upserted on the record's key, so the
replays after a recovery, and rollup rows re-emitted as windows fill, leave the
table exact. SQLite runs in WAL mode so readers work while the flow writes;
PostgreSQL readers see each committed batch.

Schema (``schema_sql()`` prints it): booleans are 0/1 integers, times RFC 3339
text, ``record`` columns JSON text.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import msgspec
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from ..core.schema import OutputKind
from .specs import sqlite_path

# table -> (columns with types, key columns)
TABLES: dict[str, tuple[list[tuple[str, str]], list[str]]] = {
    "searches": (
        [
            ("search_id", "TEXT NOT NULL"),
            ("session_id", "TEXT NOT NULL"),
            ("user", "TEXT NOT NULL"),
            ("query", "TEXT NOT NULL"),
            ("time", "TEXT NOT NULL"),
            ("results", "INTEGER"),
            ("zero_results", "INTEGER NOT NULL"),
            ("clicks", "INTEGER NOT NULL"),
            ("clicked", "INTEGER NOT NULL"),
            ("ctr", "REAL NOT NULL"),
            ("first_click_rank", "INTEGER"),
            ("reciprocal_rank", "REAL"),
            ("time_to_first_click", "REAL"),
            ("abandoned", "INTEGER NOT NULL"),
            ("reformulated", "INTEGER NOT NULL"),
            ("long_click", "INTEGER NOT NULL"),
        ],
        ["session_id", "search_id"],
    ),
    "sessions": (
        [
            ("session_id", "TEXT NOT NULL"),
            ("user", "TEXT NOT NULL"),
            ("start", "TEXT NOT NULL"),
            ("end", "TEXT NOT NULL"),
            ("duration", "REAL NOT NULL"),
            ("events", "INTEGER NOT NULL"),
            ("searches", "INTEGER NOT NULL"),
            ("clicked_searches", "INTEGER NOT NULL"),
            ("clicks", "INTEGER NOT NULL"),
            ("ctr", "REAL"),
            ("end_reason", "TEXT NOT NULL"),
        ],
        ["session_id"],
    ),
    "rollup_windows": (
        [
            ("window", "TEXT NOT NULL"),
            ("window_start", "TEXT NOT NULL"),
            ("window_end", "TEXT NOT NULL"),
            ("searches", "INTEGER NOT NULL"),
            ("clicked_searches", "INTEGER NOT NULL"),
            ("ctr", "REAL"),
            ("ctr_low", "REAL"),
            ("ctr_high", "REAL"),
            ("clicks", "INTEGER NOT NULL"),
            ("clicks_per_search", "REAL"),
            ("avg_click_position", "REAL"),
            ("zero_result_rate", "REAL"),
            ("abandonment_rate", "REAL"),
            ("reformulation_rate", "REAL"),
            ("long_click_rate", "REAL"),
            ("mrr", "REAL"),
            ("median_time_to_first_click", "REAL"),
        ],
        ["window", "window_start"],
    ),
    "rollup_queries": (
        [
            ("window", "TEXT NOT NULL"),
            ("window_start", "TEXT NOT NULL"),
            ("window_end", "TEXT NOT NULL"),
            ("query", "TEXT NOT NULL"),
            ("searches", "INTEGER NOT NULL"),
            ("ctr", "REAL"),
            ("ctr_low", "REAL"),
            ("ctr_high", "REAL"),
            ("zero_result_rate", "REAL"),
            ("avg_click_position", "REAL"),
        ],
        ["window", "window_start", "query"],
    ),
    "dead_letter": (
        [("source", "TEXT NOT NULL"), ("reason", "TEXT NOT NULL"), ("record", "TEXT NOT NULL")],
        ["source"],
    ),
    "late": (
        [("source", "TEXT NOT NULL"), ("reason", "TEXT NOT NULL"), ("record", "TEXT NOT NULL")],
        ["source"],
    ),
}

KIND_TABLES: dict[OutputKind, list[str]] = {
    OutputKind.SEARCHES: ["searches"],
    OutputKind.SESSIONS: ["sessions"],
    OutputKind.ROLLUPS: ["rollup_windows", "rollup_queries"],
    OutputKind.DEAD_LETTER: ["dead_letter"],
    OutputKind.LATE: ["late"],
}


def schema_sql(postgres: bool = False) -> str:
    """CREATE TABLE statements for every table (``REAL`` is ``DOUBLE PRECISION`` in PostgreSQL)."""
    out = []
    for table, (columns, key) in TABLES.items():
        cols = ",\n    ".join(
            f'"{name}" {kind.replace("REAL", "DOUBLE PRECISION") if postgres else kind}'
            for name, kind in columns
        )
        keys = ", ".join(f'"{k}"' for k in key)
        out.append(
            f'CREATE TABLE IF NOT EXISTS "{table}" (\n    {cols},\n    PRIMARY KEY ({keys})\n);'
        )
    return "\n".join(out)


def _upsert_sql(table: str, mark: str = "?") -> str:
    columns, key = TABLES[table]
    names = [n for n, _ in columns]
    cols = ", ".join(f'"{n}"' for n in names)
    marks = ", ".join(mark for _ in names)
    updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names if n not in key)
    keys = ", ".join(f'"{k}"' for k in key)
    return (
        f'INSERT INTO "{table}" ({cols}) VALUES ({marks}) '
        f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    )


def connect(path: str) -> sqlite3.Connection:
    """Open (and create) a results database in WAL mode with the schema."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(schema_sql())
    return conn


class Database:
    """A connection to either database, with the schema created."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = not url.startswith("sqlite:///")
        if self.postgres:
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError(
                    "PostgreSQL output needs psycopg: pip install 'search-sessions[postgres]'"
                ) from exc
            self.conn: Any = psycopg.connect(url, autocommit=True)
            with self.conn.transaction():
                for statement in schema_sql(postgres=True).split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
            self.mark = "%s"
        else:
            self.conn = connect(sqlite_path(url))
            self.mark = "?"

    def upsert(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        """Write every table's rows in one transaction."""
        if self.postgres:
            with self.conn.transaction(), self.conn.cursor() as cur:
                for table, batch in rows.items():
                    if batch:
                        cur.executemany(_upsert_sql(table, self.mark), batch)
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for table, batch in rows.items():
                if batch:
                    self.conn.executemany(_upsert_sql(table), batch)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()


def _row(table: str, rec: dict[str, Any]) -> tuple[Any, ...]:
    columns, _ = TABLES[table]
    out = []
    for name, _kind in columns:
        value = rec.get(name)
        if name == "record" and not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            value = int(value)
        out.append(value)
    return tuple(out)


class _SqlPartition(StatefulSinkPartition[bytes, None]):
    def __init__(self, url: str, kind: OutputKind) -> None:
        self.db = Database(url)
        self.kind = kind
        self.decode = msgspec.json.Decoder(dict[str, Any]).decode

    def write_batch(self, values: list[bytes]) -> None:
        rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in KIND_TABLES[self.kind]}
        for blob in values:
            for line in blob.splitlines():
                rec = self.decode(line)
                if self.kind is OutputKind.ROLLUPS:
                    table = "rollup_queries" if rec.get("level") == "query" else "rollup_windows"
                else:
                    table = KIND_TABLES[self.kind][0]
                rows[table].append(_row(table, rec))
        self.db.upsert(rows)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.db.close()


class SqlSink(FixedPartitionedSink[bytes, None]):
    """Upserts one record kind into its table(s) of a SQLite or PostgreSQL database."""

    def __init__(self, url: str, kind: OutputKind) -> None:
        self.url = url
        self.kind = kind

    def list_parts(self) -> list[str]:
        return [f"{self.url}#{self.kind}"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _SqlPartition:
        return _SqlPartition(self.url, self.kind)
