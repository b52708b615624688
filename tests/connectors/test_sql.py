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

from search_sessions.connectors.sql import connect
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
    return [{k: (bool(v) if k in bools else v) for k, v in r.items()} for r in recs]


SEARCH_BOOLS = ("zero_results", "clicked", "abandoned", "reformulated", "long_click")


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
    assert canon(fetch("sessions")) == canon(files["sessions"])
    assert sorted(r["source"] for r in fetch("dead_letter")) == sorted(
        d["source"] for d in files["dead"]
    )
    hours = fetch("rollup_windows")
    assert sum(int(str(r["searches"])) for r in hours) == len(files["searches"])
    assert fetch("rollup_queries")


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
