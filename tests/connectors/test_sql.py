"""SQLite outputs: tables per kind, upserts (idempotent replays), reading while writing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from search_sessions.connectors.sql import KIND_TABLES, connect
from search_sessions.core.schema import OutputKind, field_names, field_types
from search_sessions.errors import ConfigError
from search_sessions.simulate import SimSpec, write

from ..conftest import Records, RunFlow
from ..oracle import canon


def rows(db: Path, table: str) -> list[dict[str, object]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f'SELECT * FROM "{table}"')]
    finally:
        conn.close()


def as_json_bools(recs: list[dict[str, object]], bools: tuple[str, ...]) -> list[dict[str, object]]:
    """Rows as records: 0/1 columns as booleans, the JSON text column ``dimensions`` decoded."""
    return [
        {
            k: (bool(v) if k in bools else json.loads(v) if k == "dimensions" else v)  # type: ignore[arg-type]
            for k, v in r.items()
        }
        for r in recs
    ]


SEARCH_BOOLS = (
    "zero_results",
    "clicked",
    "abandoned",
    "reformulated",
    "long_click",
    "short_click",
    "converted",
)


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "search_sessions.cli", "run", *args],
        capture_output=True,
        timeout=300,
    )


def sql_run(log: Path, url: str, *extra: str) -> None:
    """Every record kind into one database."""
    kinds = ["--searches", url, "--sessions", url, "--dead-letter", url]
    proc = cli(str(log), *kinds, "--rollup", "1h", "--rollups", url, "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr


def check_tables(fetch: Callable[[str], list[dict[str, object]]], files: Records) -> None:
    """The tables hold exactly what the file outputs hold."""
    assert canon(as_json_bools(fetch("searches"), SEARCH_BOOLS)) == canon(files["searches"])
    assert canon(as_json_bools(fetch("sessions"), ("success",))) == canon(files["sessions"])
    assert sorted(r["source"] for r in fetch("dead_letter")) == sorted(
        d["source"] for d in files["dead"]
    )
    hours = fetch("rollup_windows")
    assert sum(int(str(r["searches"])) for r in hours) == len(files["searches"])
    assert fetch("rollup_queries")


SQL_TYPES = {str: "TEXT", int: "INTEGER", bool: "INTEGER", float: "REAL", object: "TEXT"}


@pytest.mark.parametrize("kind", list(OutputKind))
def test_each_table_has_its_record_fields_as_columns(tmp_path: Path, kind: OutputKind) -> None:
    conn = connect(str(tmp_path / "schema.db"))
    try:
        for table, record_type in zip(KIND_TABLES[kind], kind.record_types, strict=True):
            # (cid, name, type, notnull, default, position in the primary key)
            info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            assert [r[1] for r in info] == field_names(record_type), table
            assert [(r[1], r[2], not r[3]) for r in info] == [
                (name, SQL_TYPES[scalar], nullable)
                for name, scalar, nullable in field_types(record_type)
            ], table
            key = [name for _, name in sorted((r[5], r[1]) for r in info if r[5])]
            assert tuple(key) == record_type.KEY, table
    finally:
        conn.close()


def test_every_table_belongs_to_a_kind(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "schema.db"))
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert tables == {t for kind in OutputKind for t in KIND_TABLES[kind]}
    assert tables == {
        "searches",
        "sessions",
        "rollup_windows",
        "rollup_queries",
        "rollup_dimensions",
        "dead_letter",
        "late",
    }


def test_sqlite_outputs_match_files_and_replays_are_idempotent(
    tmp_path: Path, run_flow: RunFlow
) -> None:
    log = tmp_path / "events.jsonl"
    write(SimSpec(events=10_000, users=150, seed=9, days=0.2, bad=0.01), str(log))
    files, _ = run_flow([log])
    db = tmp_path / "out" / "results.db"
    for _ in range(2):  # the second run is a replay: upserts leave the tables exact
        sql_run(log, f"sqlite:///{db}")
        check_tables(lambda table: rows(db, table), files)


def test_sqlite_can_be_read_while_the_flow_writes(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write(SimSpec(events=200_000, users=2_000, seed=2), str(log))
    db = tmp_path / "live.db"
    connect(str(db)).close()
    seen: list[int] = []
    errors: list[Exception] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                conn = sqlite3.connect(db, timeout=1)
                seen.append(conn.execute("SELECT count(*) FROM searches").fetchone()[0])
                conn.close()
            except Exception as exc:  # pragma: no cover - the failure we look for
                errors.append(exc)
            time.sleep(0.02)

    t = threading.Thread(target=reader)
    t.start()
    proc = cli(str(log), "--searches", f"sqlite:///{db}", "--snapshot-interval", "100ms", "--quiet")
    done.set()
    t.join()
    assert proc.returncode == 0, proc.stderr
    assert errors == []
    final = seen[-1]
    assert final > 0 and any(0 < n < final for n in seen), "readers saw the table grow"
    assert json.loads(json.dumps(seen)) == sorted(seen)


def test_postgresql_outputs_match_files_and_replays_are_idempotent(
    tmp_path: Path, run_flow: RunFlow
) -> None:
    import psycopg
    from psycopg.rows import dict_row

    from ..pg_server import postgres_server

    log = tmp_path / "events.jsonl"
    write(SimSpec(events=8_000, users=120, seed=19, days=0.2, bad=0.01), str(log))
    files, _ = run_flow([log])
    with postgres_server() as url:

        def fetch(table: str) -> list[dict[str, object]]:
            with psycopg.connect(url, row_factory=dict_row) as conn:
                return conn.execute(f'SELECT * FROM "{table}"').fetchall()

        for _ in range(2):  # the second run is a replay: upserts leave the tables exact
            sql_run(log, url, "--workers", "2")
            check_tables(fetch, files)


def test_a_database_of_an_older_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE "searches" ("search_id" TEXT, "session_id" TEXT)')
    conn.close()
    with pytest.raises(ConfigError, match=r"table searches .* older search-sessions .*query"):
        connect(str(path))
