"""SQL outputs: SQLite (``sqlite:///PATH.db``) and PostgreSQL (``postgresql://...``).

One table per record kind, upserts on the key, the same schema in both.

Every output flag can name the same database; each kind gets its table
(``searches``, ``sessions``, ``rollup_windows`` and ``rollup_queries``,
``dead_letter``, ``late``). Rows are upserted on the record's key, so the
replays after a recovery, and rollup rows re-emitted as windows fill, leave the
table exact. SQLite runs in WAL mode so readers work while the flow writes;
PostgreSQL readers see each committed batch.

Schema (``schema_sql()`` prints it): each table's columns, types and key follow
its record type in :mod:`search_sessions.core.schema`; booleans are 0/1
integers, times RFC 3339 text, ``record`` columns JSON text.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

import msgspec
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from ..core.schema import OutputKind, Record, field_types
from ..crashpoints import CRASH as crashpoints
from ..errors import ConfigError
from .specs import sqlite_path

KIND_TABLES: dict[OutputKind, list[str]] = {
    OutputKind.SEARCHES: ["searches"],
    OutputKind.SESSIONS: ["sessions"],
    OutputKind.ROLLUPS: ["rollup_windows", "rollup_queries", "rollup_dimensions"],
    OutputKind.DEAD_LETTER: ["dead_letter"],
    OutputKind.LATE: ["late"],
}
"""Each kind's tables, one per record type of :attr:`OutputKind.record_types`."""

# ``object`` is an ``Any`` field, stored as JSON text.
_SQL_TYPES: dict[type, str] = {
    str: "TEXT",
    int: "INTEGER",
    bool: "INTEGER",
    float: "REAL",
    object: "TEXT",
}


@dataclass(frozen=True)
class Table:
    """A table as its record type defines it: columns in field order, the record's key,
    and the columns holding JSON text (``Any`` fields)."""

    record_type: type[Record]
    columns: list[tuple[str, str]]
    key: tuple[str, ...]
    json_columns: frozenset[str]


def table_of(record_type: type[Record]) -> Table:
    """The table of a record type (``X | None`` fields are the nullable columns).

    >>> TABLES["late"].columns[2]
    ('record', 'TEXT NOT NULL')
    """
    columns = []
    json_columns = set()
    for name, scalar, nullable in field_types(record_type):
        if scalar is object:
            json_columns.add(name)
        sql = _SQL_TYPES[scalar]
        columns.append((name, sql if nullable else f"{sql} NOT NULL"))
    return Table(record_type, columns, record_type.KEY, frozenset(json_columns))


TABLES: dict[str, Table] = {
    table: table_of(record_type)
    for kind, tables in KIND_TABLES.items()
    for table, record_type in zip(tables, kind.record_types, strict=True)
}
"""Every table, in the schema's order."""


def schema_sql(postgres: bool = False) -> str:
    """CREATE TABLE statements for every table (``REAL`` is ``DOUBLE PRECISION`` in PostgreSQL)."""
    out = []
    for table, spec in TABLES.items():
        cols = ",\n    ".join(
            f'"{name}" {kind.replace("REAL", "DOUBLE PRECISION") if postgres else kind}'
            for name, kind in spec.columns
        )
        keys = ", ".join(f'"{k}"' for k in spec.key)
        out.append(
            f'CREATE TABLE IF NOT EXISTS "{table}" (\n    {cols},\n    PRIMARY KEY ({keys})\n);'
        )
    return "\n".join(out)


def _upsert_sql(table: str, mark: str = "?") -> str:
    key = TABLES[table].key
    names = [n for n, _ in TABLES[table].columns]
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
    for table, spec in TABLES.items():
        have = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        missing = [name for name, _ in spec.columns if name not in have]
        if missing:
            conn.close()
            raise ConfigError(
                f"{path}: table {table} was made by an older search-sessions (no column "
                f"{', '.join(missing)}); write to a new database, or drop its tables"
            )
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
    spec = TABLES[table]
    out = []
    for name, _kind in spec.columns:
        value = rec.get(name)
        if name in spec.json_columns and not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            value = int(value)
        out.append(value)
    return tuple(out)


def read_rows(conn: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    """A table's rows as the JSON Lines output has them: booleans as booleans and the
    JSON text columns decoded.

    >>> conn = connect(":memory:")
    >>> read_rows(conn, "searches")
    []
    """
    spec = TABLES[table]
    kinds = {name: scalar for name, scalar, _ in field_types(spec.record_type)}
    cur = conn.execute(f'SELECT * FROM "{table}"')
    names = [d[0] for d in cur.description]
    out = []
    for row in cur:
        rec = dict(zip(names, row, strict=True))
        for name, value in rec.items():
            kind = kinds.get(name)
            if value is None:
                continue
            if kind is bool:
                rec[name] = bool(value)
            elif kind is object and isinstance(value, str):
                rec[name] = json.loads(value)
        out.append(rec)
    return out


class _SqlPartition(StatefulSinkPartition[bytes, None]):
    def __init__(self, url: str, kind: OutputKind) -> None:
        self.db = Database(url)
        self.kind = kind
        self.decode = msgspec.json.Decoder(dict[str, Any]).decode
        # A kind with several record types (rollups) tags them: the tag picks the table.
        self.tables = KIND_TABLES[kind]
        configs = [TABLES[t].record_type.__struct_config__ for t in self.tables]
        self.tag_field = configs[0].tag_field
        self.by_tag = {c.tag: t for c, t in zip(configs, self.tables, strict=True)}

    def write_batch(self, values: list[bytes]) -> None:
        rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in KIND_TABLES[self.kind]}
        for blob in values:
            for line in blob.splitlines():
                rec = self.decode(line)
                table = self.by_tag[rec[self.tag_field]] if self.tag_field else self.tables[0]
                rows[table].append(_row(table, rec))
        self.db.upsert(rows)
        crashpoints.wrote()

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
