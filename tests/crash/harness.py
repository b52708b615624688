"""The crash harness: run a job, kill it at a point chosen from its own state, resume it,
and compare every output with an uninterrupted run.

In the spirit of FoundationDB's simulation tests and Jepsen. A :class:`Scenario` names an
input layout, the parallelism, the outputs, and one or more kills, each a crash point of
:mod:`search_sessions.crashpoints` (``commit:3:group``: once epoch 3 is committed, kill
the whole run; ``input-end:1:self@1``: when cluster process 1 has read its first input,
kill that process alone). The job kills itself there with SIGKILL, so where the kill
lands does not depend on the machine's load. Each kill must land (the crash log says
where), the resumed run must finish within :data:`RESUME_TIMEOUT`, and its outputs must
equal line for line (as multisets: workers interleave) those of an uninterrupted run of
one process and one worker.

Scenarios come from a seed (:func:`draw`), printed with every result, so that any run
is replayed by its seed: ``python bench/crash.py --seed 1234``.

The events are made here, not by the simulator: users as integers and strings, times
with offsets, microseconds and epoch numbers, duplicates, invalid lines and disorder
within the lateness.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RESUME_TIMEOUT = 120.0
"""Seconds a resumed run may take (the issue's bound)."""
RUN_TIMEOUT = 300.0
"""Seconds any run may take before the harness calls it hung."""

LAYOUTS = ("dir", "lanes", "csv", "tsv", "aol", "parquet", "sort", "kafka", "trec")
OUTPUTS = ("jsonl", "sqlite", "postgres", "parquet")
SORTING = ("aol", "sort", "trec")
ONE_READER = ("parquet", "trec")
"""Layouts whose input one worker reads whole (a Parquet file)."""
"""Layouts whose inputs are sorted before streaming (sort-run and merge points apply)."""

_T0 = datetime(2024, 3, 1, tzinfo=UTC)


# Events ------------------------------------------------------------------------------


def make_events(seed: int, users: int, per_user: int) -> list[dict[str, Any]]:
    """Each user's sessions (opens, searches, results, clicks, closes) over six hours,
    in time order across users, as plain dicts with a ``_t`` (seconds from ``_T0``)."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for u in range(users):
        user: int | str = u if u % 3 == 0 else f"user-{u}"
        t = rng.uniform(0, 6 * 3600)
        for _ in range(per_user // 6 + 1):
            events += _session(rng, user, t)
            t = events[-1]["_t"] + rng.choice([5, 40, 1900, 4000])
    events.sort(key=lambda e: e["_t"])
    return events


def _session(rng: random.Random, user: int | str, t: float) -> list[dict[str, Any]]:
    out = [{"type": "app_open", "user": user, "_t": t}]
    for _ in range(rng.randint(1, 3)):
        t += rng.uniform(0.5, 20)
        query = rng.choice(["dogs", "cats", "fruit", "café", "red shoes", "日本", "x y"])
        out.append({"type": "search", "user": user, "_t": t, "query": query})
        t += rng.uniform(0.01, 2)
        items = [f"doc{rng.randint(1, 500)}" for _ in range(rng.choice([0, 3, 10]))]
        out.append({"type": "results", "user": user, "_t": t, "items": items})
        for _ in range(rng.choice([0, 0, 1, 2])):
            t += rng.uniform(0.2, 45)
            click: dict[str, Any] = {"type": "click", "user": user, "_t": t}
            click["item"] = rng.choice(items) if items else "elsewhere"
            if rng.random() < 0.3:
                click["rank"] = rng.randint(1, 10)
            out.append(click)
    if rng.random() < 0.6:
        out.append({"type": "app_close", "user": user, "_t": t + rng.uniform(1, 30)})
    return out


def time_text(rng: random.Random, t: float) -> str | float:
    """One of the spellings a log may use for the time ``t``."""
    when = _T0 + timedelta(seconds=round(t, 6))
    pick = rng.random()
    if pick < 0.4:
        return when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if pick < 0.7:
        return when.astimezone(timezone_plus2()).isoformat(timespec="milliseconds")
    if pick < 0.85:
        return round(when.timestamp(), 3)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when.microsecond == 0 else when.isoformat()


def timezone_plus2() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=2))


def json_lines(events: list[dict[str, Any]], seed: int, disorder: float = 15.0) -> list[bytes]:
    """The events as JSON lines: times in mixed spellings, up to ``disorder`` seconds
    out of order, 1% duplicated, 0.3% invalid."""
    rng = random.Random(seed)
    keyed = [(e["_t"] + rng.uniform(0, disorder), i, e) for i, e in enumerate(events)]
    keyed.sort(key=lambda k: k[:2])
    lines = []
    for _, _, e in keyed:
        rec = {k: v for k, v in e.items() if k != "_t"}
        rec["time"] = time_text(rng, e["_t"])
        line = json.dumps(rec, ensure_ascii=False).encode()
        lines.append(line)
        if rng.random() < 0.01:
            lines.append(line)
        if rng.random() < 0.003:
            lines.append(rng.choice([b"{not json", b'{"type": "teleport", "user": 1}', b"[1, 2]"]))
    return lines


# Layouts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """What a layout wrote: the run's input arguments and options."""

    args: list[str]
    options: list[str] = field(default_factory=list)


def write_layout(layout: str, events: list[dict[str, Any]], seed: int, where: Path) -> Inputs:
    where.mkdir(parents=True, exist_ok=True)
    lines = json_lines(events, seed)
    if layout == "dir":
        return _directory(lines, where / "in")
    if layout in ("lanes", "sort"):
        path = where / "events.jsonl"
        if layout == "sort":
            random.Random(seed).shuffle(lines)
        path.write_bytes(b"".join(x + b"\n" for x in lines))
        return Inputs([str(path)], ["--order", "sort", "--sort-memory", "1MB"] * (layout == "sort"))
    if layout in ("csv", "tsv"):
        return _table(lines, where / f"events.{layout}", "," if layout == "csv" else "\t")
    if layout == "aol":
        return _aol(events, where / "user-ct-test-collection-01.txt", seed)
    if layout == "trec":
        return _trec(events, where / "sessiontrack2013.xml")
    if layout == "parquet":
        return _parquet(lines, where / "events.parquet")
    raise ValueError(layout)


def _directory(lines: list[bytes], d: Path) -> Inputs:
    """Four files split by time, two of them gzipped (files that end at different
    moments: the case that hung)."""
    d.mkdir(exist_ok=True)
    size = -(-len(lines) // 4)
    for i in range(4):
        data = b"".join(x + b"\n" for x in lines[i * size : (i + 1) * size])
        if i % 2:
            (d / f"part-{i}.jsonl.gz").write_bytes(gzip.compress(data, 1))
        else:
            (d / f"part-{i}.jsonl").write_bytes(data)
    return Inputs([str(d)])


_COLUMNS = ("type", "user", "time", "query", "items", "item", "rank")


def _table(lines: list[bytes], path: Path, delimiter: str) -> Inputs:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(_COLUMNS)
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            buf.write(line.decode() + "\n")  # invalid as it is
            continue
        if not isinstance(rec, dict):
            buf.write("oops\n")
            continue
        items = rec.get("items")
        row = [rec.get(c) for c in _COLUMNS]
        row[4] = "|".join(items) if items is not None else None
        w.writerow(["" if v is None else v for v in row])
    path.write_text(buf.getvalue())
    return Inputs([str(path)])


def _aol(events: list[dict[str, Any]], path: Path, seed: int) -> Inputs:
    """Searches and clicks in the AOL layout, sorted by user as the real log is."""
    rng = random.Random(seed)
    rows = []
    last: dict[Any, tuple[str, str]] = {}
    for e in events:
        when = (_T0 + timedelta(seconds=int(e["_t"]))).strftime("%Y-%m-%d %H:%M:%S")
        uid = e["user"] if isinstance(e["user"], int) else 100000 + int(e["user"].split("-")[1])
        if e["type"] == "search":
            last[uid] = (e["query"], when)
            if rng.random() < 0.5:
                rows.append((uid, e["query"], when, "", ""))
        elif e["type"] == "click" and uid in last:
            q, w = last[uid]
            rows.append((uid, q, w, str(rng.randint(1, 10)), f"http://{e['item']}.com"))
    rows.sort(key=lambda r: r[0])  # stable: each user's rows keep their order
    body = "".join("\t".join(map(str, r)).rstrip("\t") + "\n" for r in rows)
    path.write_text("AnonID\tQuery\tQueryTime\tItemRank\tClickURL\n" + body)
    return Inputs([str(path)])


def _trec(events: list[dict[str, Any]], path: Path) -> Inputs:
    """The searches, their results and clicks as TREC Session Track XML: a session per
    user, in user order as the TREC files are (so the run sorts it), an interaction per
    search, times relative to the session's start."""
    from xml.sax.saxutils import escape, quoteattr

    by_user: dict[Any, list[dict[str, Any]]] = {}
    for e in events:
        by_user.setdefault(e["user"], []).append(e)
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<sessiontrack2013>"]
    for num, (user, evs) in enumerate(by_user.items(), 1):
        t0 = _T0.timestamp() + evs[0]["_t"]
        out.append(f'<session num="{num}" starttime="{t0:.3f}" userid={quoteattr(str(user))}>')
        clicks: list[str] = []
        k = 0
        for e in evs:
            at = f"{_T0.timestamp() + e['_t'] - t0:.3f}"
            if e["type"] == "search":
                if k:
                    out.append(f"<clicked>{''.join(clicks)}</clicked></interaction>")
                k, clicks = k + 1, []
                query = escape(e["query"])
                out.append(f'<interaction num="{k}" starttime="{at}"><query>{query}</query>')
            elif e["type"] == "results" and k:
                results = (
                    f'<result rank="{i}"><url>{escape(x)}</url></result>'
                    for i, x in enumerate(e["items"], 1)
                )
                out.append(f"<results>{''.join(results)}</results>")
            elif e["type"] == "click" and k:
                item = escape(e["item"])
                rank = e.get("rank", 1)
                clicks.append(
                    f'<click starttime="{at}"><rank>{rank}</rank><url>{item}</url></click>'
                )
        if k:
            out.append(f"<clicked>{''.join(clicks)}</clicked></interaction>")
        out.append("</session>")
    path.write_text("\n".join([*out, "</sessiontrack2013>"]) + "\n")
    return Inputs([str(path)])


def _parquet(lines: list[bytes], path: Path) -> Inputs:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        for c in _COLUMNS:
            v = rec.get(c)
            cols[c].append(str(v) if c in ("user", "time") and v is not None else v)
    table = pa.table(
        {
            **{c: pa.array(cols[c], pa.string()) for c in ("type", "user", "time", "query")},
            "items": pa.array(cols["items"], pa.list_(pa.string())),
            "item": pa.array(cols["item"], pa.string()),
            "rank": pa.array(cols["rank"], pa.int64()),
        }
    )
    pq.write_table(table, path, row_group_size=2000)
    return Inputs([str(path)])


# Outputs -----------------------------------------------------------------------------


def output_args(kind: str, out: Path, rollups: bool, pg_url: str | None) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        names = {n: str(out / f"{n}.jsonl") for n in ("searches", "sessions", "dead", "late")}
        names["rollups"] = str(out / "rollups.jsonl")
    elif kind == "sqlite":
        names = dict.fromkeys(("searches", "sessions", "dead", "late", "rollups"), "")
        names = {n: f"sqlite:///{out / 'out.db'}" for n in names}
    elif kind == "postgres":
        assert pg_url is not None
        names = {n: pg_url for n in ("searches", "sessions", "dead", "late", "rollups")}
    else:
        names = {n: str(out / f"{n}.parquet") for n in ("searches", "sessions", "dead", "late")}
        names["rollups"] = str(out / "rollups.jsonl")
    args = ["--searches", names["searches"], "--sessions", names["sessions"]]
    args += ["--dead-letter", names["dead"], "--late", names["late"]]
    if rollups:
        args += ["--rollup", "1h", "--rollup", "1d", "--rollups", names["rollups"]]
    return args


def read_outputs(kind: str, out: Path, pg_url: str | None) -> dict[str, list[str]]:
    """Every output as sorted lines (rollup rows: the last one per key)."""
    if kind in ("jsonl", "parquet"):
        got = {}
        for name in ("searches", "sessions", "dead", "late"):
            got[name] = _read_file(out, name, kind)
        got["rollups"] = _last_rollups(out / "rollups.jsonl")
        return got
    if kind == "sqlite":
        return _read_db(sqlite3.connect(out / "out.db"))
    import psycopg

    return _read_db(psycopg.connect(pg_url))


def _read_file(out: Path, name: str, kind: str) -> list[str]:
    path = out / f"{name}.{'jsonl' if kind == 'jsonl' else 'parquet'}"
    if kind == "jsonl":
        data = path.read_bytes() if path.exists() else b""
        assert not data or data.endswith(b"\n"), f"{path}: a half-written last line"
        return sorted(data.decode().splitlines())
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist() if path.exists() else []
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def _last_rollups(path: Path) -> list[str]:
    last: dict[tuple[Any, ...], str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            key = (r["level"], r.get("window"), r["window_start"], r.get("query"))
            last[(*key, json.dumps(r.get("dimension")), json.dumps(r.get("value")))] = line
    return sorted(last.values())


_TABLES = ("searches", "sessions", "dead_letter", "late", "rollup_windows", "rollup_queries")


def _read_db(db: Any) -> dict[str, list[str]]:
    got = {}
    with db:
        for table in _TABLES:
            try:
                rows = db.execute(f"SELECT * FROM {table}").fetchall()
            except Exception:
                rows = []
                if hasattr(db, "rollback"):
                    db.rollback()
            got[table] = sorted(json.dumps(list(r), default=str) for r in rows)
    db.close()
    return got


# Scenarios ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One crash test: a layout, its parallelism and outputs, and the kills in order."""

    layout: str
    kills: tuple[str, ...]
    processes: int = 1
    workers: int = 1
    output: str = "jsonl"
    rollups: bool = True
    seed: int = 0
    read_ahead: str = "auto"

    def __str__(self) -> str:
        return (
            f"seed={self.seed} layout={self.layout} processes={self.processes} "
            f"workers={self.workers} output={self.output} rollups={self.rollups} "
            f"read_ahead={self.read_ahead} kills={','.join(self.kills)}"
        )

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """The scenario :meth:`__str__` printed (``seed=.. layout=.. ... kills=a,b``)."""
        f = dict(part.split("=", 1) for part in text.strip("[] ").split())
        return cls(
            f["layout"],
            tuple(f["kills"].split(",")),
            int(f.get("processes", 1)),
            int(f.get("workers", 1)),
            f.get("output", "jsonl"),
            f.get("rollups", "True") == "True",
            int(f.get("seed", 0)),
            f.get("read_ahead", "auto"),
        )

    @property
    def reference_key(self) -> tuple[Any, ...]:
        """What the uninterrupted run shares: any split of the work gives the same
        outputs, so the reference runs one process with one worker."""
        return (self.layout, self.output, self.rollups)


def points_for(layout: str, processes: int) -> list[str]:
    """The crash points that apply to a layout."""
    points = ["commit", "snapshot", "input-end", "flush"]
    if layout in SORTING:
        points += ["sort-run", "merge"]
    return points


def draw(
    seed: int, layouts: tuple[str, ...] = LAYOUTS, outputs: tuple[str, ...] = OUTPUTS
) -> Scenario:
    """A scenario from ``seed`` alone (the same seed, the same scenario)."""
    rng = random.Random(seed)
    layout = rng.choice(layouts)
    processes = rng.choice([1, 2])
    workers = rng.choice([1, 2])
    output = rng.choice(outputs)
    kills = []
    for _ in range(rng.choice([1, 1, 2])):
        point = rng.choice(points_for(layout, processes))
        at = {
            "commit": rng.randint(1, 8),
            "snapshot": rng.randint(1, 12),
            "input-end": rng.randint(1, 2) if layout == "dir" else 1,
            "sort-run": rng.randint(1, 2) if layout == "sort" else 1,
            "merge": rng.randint(1, 3),
            "flush": rng.randint(1, 2),
        }[point]
        target = rng.choice(["self", "group", "launcher"]) if processes > 1 else "group"
        member = rng.randrange(processes)
        proc = f"@{member}" if processes > 1 else ""
        if member > 0 and point == "flush":
            at = 1  # outputs are written by process 0: process 1 flushes once per shard
        if layout in ONE_READER and point in ("input-end", "sort-run", "merge"):
            member = 0  # one worker (of process 0) reads it: process 1 has no input
            proc = f"@{member}" if processes > 1 else ""
        kills.append(f"{point}:{at}:{target}{proc}")
    rollups = rng.random() < 0.7
    read_ahead = rng.choice(["auto", "on", "off"])
    return Scenario(layout, tuple(kills), processes, workers, output, rollups, seed, read_ahead)


# Running -----------------------------------------------------------------------------


@dataclass
class Result:
    scenario: Scenario
    kills_landed: list[str] = field(default_factory=list)
    unreached: list[str] = field(default_factory=list)
    """Later kills whose point the resumed job finished without reaching."""
    resumes: int = 0
    mismatches: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and not self.mismatches

    def __str__(self) -> str:
        verdict = "ok" if self.ok else f"FAILED: {self.error or '; '.join(self.mismatches)}"
        landed = " | ".join(self.kills_landed + [f"{k} not reached" for k in self.unreached])
        return f"[{self.scenario}] {verdict} ({self.seconds:.1f}s; kills at: {landed})"


class Harness:
    """Runs scenarios in ``work`` (events, inputs and reference outputs made once per
    layout and reference key)."""

    def __init__(self, work: Path, events: int = 30_000, seed: int = 7) -> None:
        self.work = work
        self.events = make_events(seed, users=max(50, events // 40), per_user=40)[:events]
        self.seed = seed
        self.inputs: dict[str, Inputs] = {}
        self.references: dict[tuple[Any, ...], dict[str, list[str]]] = {}
        self.stack = ExitStack()
        self.kafka: str | None = None
        self.pg: str | None = None
        self.runs = 0

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def layout(self, name: str) -> Inputs:
        if name not in self.inputs:
            if name == "kafka":
                self.inputs[name] = self._kafka_topic()
            else:
                self.inputs[name] = write_layout(name, self.events, self.seed, self.work / name)
        return self.inputs[name]

    def _kafka_topic(self) -> Inputs:
        from ..kafka_broker import broker

        if self.kafka is None:
            self.kafka = self.stack.enter_context(broker())
        from ..connectors.test_kafka import create_topic, produce_log

        lines = self.work / "kafka.jsonl"
        lines.write_bytes(b"".join(x + b"\n" for x in json_lines(self.events, self.seed)))
        create_topic(self.kafka, "crash", 3)
        produce_log(self.kafka, "crash", lines, 3)
        return Inputs([f"kafka://{self.kafka}/crash"], ["--stop-at-end"])

    def postgres(self) -> str:
        if self.pg is None:
            from ..pg_server import postgres_server

            self.pg = self.stack.enter_context(postgres_server())
        return self.pg

    def command(self, sc: Scenario, out: Path, recovery: Path | None, db: str | None) -> list[str]:
        inputs = self.layout(sc.layout)
        cmd = [sys.executable, "-m", "search_sessions.cli", "run", *inputs.args, *inputs.options]
        cmd += output_args(sc.output, out, sc.rollups, db)
        cmd += ["--processes", str(sc.processes), "--workers", str(sc.workers), "--quiet"]
        cmd += ["--read-ahead", sc.read_ahead]
        if recovery is not None:
            cmd += ["--recovery-dir", str(recovery), "--snapshot-interval", "100ms"]
        return cmd

    def reference(self, sc: Scenario) -> dict[str, list[str]]:
        key = sc.reference_key
        if key not in self.references:
            out = self.work / "ref" / "-".join(map(str, key))
            db = self._fresh_db(sc, "ref") if sc.output == "postgres" else None
            shutil.rmtree(out, ignore_errors=True)
            alone = replace(sc, processes=1, workers=1)
            proc = self._run(self.command(alone, out, None, db), RUN_TIMEOUT, {})
            if proc.returncode != 0:
                raise RuntimeError(f"uninterrupted run failed: {proc.stderr[-2000:]!r}")
            self.references[key] = read_outputs(sc.output, out, db)
        return self.references[key]

    def _fresh_db(self, sc: Scenario, name: str) -> str:
        import psycopg

        base = self.postgres()
        db = f"{name}_{self.runs}_{sc.seed}".replace("-", "_")
        with psycopg.connect(base, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}"')
            c.execute(f'CREATE DATABASE "{db}"')
        return base.rsplit("/", 1)[0] + f"/{db}"

    def _run(
        self, cmd: list[str], timeout: float, env: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        with subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
            start_new_session=True,  # a group of its own: a "group" kill takes only it
        ) as proc:
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                _, err = proc.communicate()
                return subprocess.CompletedProcess(cmd, -999, "", err)
            except BaseException:  # the harness itself stopped: leave no job behind
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                raise
            _reap_group(proc.pid)
            return subprocess.CompletedProcess(cmd, proc.returncode, "", err)

    def run(self, sc: Scenario) -> Result:
        """Kill the job at each of ``sc.kills`` in turn, resume it, compare."""
        started = time.monotonic()
        result = Result(sc)
        try:
            want = self.reference(sc)
            self._crash_and_resume(sc, result, want)
        except Exception as exc:  # a harness-level failure is a failed scenario
            result.error = f"{type(exc).__name__}: {exc}"
        result.seconds = time.monotonic() - started
        return result

    def _reader_kill(self, sc: Scenario, kill: str) -> str:
        """``kill``, aimed at process 0 where it is at an input's point in a process that
        reads no input (a file under a block is read whole, by process 0's worker: the
        AOL layout's file is 470-580 KB, about one block)."""
        point, at, rest = kill.split(":", 2)
        target, _, member = rest.partition("@")
        if point not in _INPUT_POINTS or not member or int(member) == 0 or sc.layout == "kafka":
            return kill
        inputs = self.layout(sc.layout)
        if _has_input(inputs, int(member), sc.workers, sc.processes):
            return kill
        return f"{point}:{at}:{target}@0"

    def _crash_and_resume(self, sc: Scenario, result: Result, want: dict[str, list[str]]) -> None:
        tag = f"s{sc.seed}-{self.runs}"
        out, rec = self.work / "runs" / tag / "out", self.work / "runs" / tag / "rec"
        shutil.rmtree(out.parent, ignore_errors=True)
        db = self._fresh_db(sc, "crash") if sc.output == "postgres" else None
        cmd = self.command(sc, out, rec, db)
        log = out.parent / "crash.log"
        for i, kill in enumerate(sc.kills):
            kill = self._reader_kill(sc, kill)
            env = {"SEARCH_SESSIONS_CRASH": kill, "SEARCH_SESSIONS_CRASH_LOG": str(log)}
            proc = self._run(cmd, RUN_TIMEOUT if i == 0 else RESUME_TIMEOUT, env)
            fired = log.read_text().splitlines() if log.exists() else []
            if len(fired) <= i and i > 0 and proc.returncode == 0:
                # The resumed job finished before it came to this point (say, an input
                # end when every input had ended): what follows reruns a finished job.
                result.unreached.append(kill)
                break
            if len(fired) <= i:
                code = proc.returncode
                raise AssertionError(
                    f"kill {kill} did not land (exit {code}): {proc.stderr.strip()[-600:]}"
                )
            result.kills_landed.append(fired[i].split(": ", 1)[1])
            if proc.returncode == 0:
                raise AssertionError(f"the run survived its kill {kill}")
        proc = self._run(cmd, RESUME_TIMEOUT, {})
        result.resumes = len(result.kills_landed)
        if proc.returncode == -999:
            raise AssertionError(f"the resumed run did not finish in {RESUME_TIMEOUT:g}s")
        if proc.returncode != 0:
            raise AssertionError(f"the resumed run failed: {proc.stderr.strip()[-800:]}")
        got = read_outputs(sc.output, out, db)
        for name in want:
            if got.get(name) != want[name]:
                result.mismatches.append(_difference(name, want[name], got.get(name, [])))


_INPUT_POINTS = ("input-end", "sort-run", "merge")


def _has_input(inputs: Inputs, process: int, workers: int, processes: int) -> bool:
    """Whether cluster process ``process`` reads any of the file ``inputs``: Bytewax deals
    the read partitions (a file, or its lanes when it is over a block) to the workers in
    turn, ``workers`` to a process."""
    from search_sessions.config import Config
    from search_sessions.connectors.files import read_partitions

    cfg = Config(inputs=tuple(inputs.args), partitions=tuple(inputs.args))
    parts = read_partitions(cfg, workers * processes, cfg.block_bytes)
    return len(parts) > process * workers


def _reap_group(pgid: int) -> None:
    """Whatever of a run's group is left (a cluster process whose launcher was killed
    dies with it; wait until it has)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    os.killpg(pgid, signal.SIGKILL)


def _difference(name: str, want: list[str], got: list[str]) -> str:
    from collections import Counter

    w, g = Counter(want), Counter(got)
    missing, extra = w - g, g - w
    sample = next(iter(missing or extra), "")[:200]
    return (
        f"{name}: {sum(missing.values())} missing, {sum(extra.values())} extra of "
        f"{len(want)} (e.g. {sample})"
    )
