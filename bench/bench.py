"""Benchmark harness: `make bench` (not part of `make test`); issue #21's targets.

Times, in one run, on two data sets: the simulator's (``search-sessions simulate
--typeahead 0 --conversions 0``, one day) and an independent one
(``bench/independent.py``: integer users, ``+02:00`` times with microseconds, one time
in ten an epoch number):

- ``search-sessions run`` with one process, with the core in use (the native core
  where it is installed, as ``search-sessions --version`` says) and with the Python
  core (``SEARCH_SESSIONS_CORE=python``);
- two processes, on the events split by user into two files and on the one file;
- DuckDB computing the same per-search CTR in SQL (``bench/duckdb_ctr.sql``, default
  threads), whose searches and CTR must agree with ours;
- the tutorial's flow (``examples/tutorial_dataflow.py``), on the simulator's data only;
- a process sweep: ``run --processes N`` for N = 1, 2, 4, ... up to the machine's
  cores (``--sweep-max``) on the simulator's data split by user into N files;

and, with ``--memory``, the peak RSS of ``run`` with each core at 1M and 5M events of
500k users over 7 days; with ``--sort``, ``run`` on 5M events in time order
(``--order time``), shuffled (``--order sort``) and sorted by user (the default
``auto``); with ``--formats``, ``run`` on the simulator's events as CSV, TSV, Parquet
and the AOL layout, and writing rollups, Parquet and SQLite, with each core
(``bench/formats.py``). Every command runs in its own process; wall time, events/s and peak RSS
(the largest process of the run) are written to ``bench/RESULTS.md``, keeping the
sections ``make soak`` and ``make crash`` wrote there. A quick check:

    python bench/bench.py --events 20000 --users 300 --repeat 1 --no-tutorial \\
        --memory --memory-events 20000,50000 --memory-users 2000 \\
        --sort --sort-events 20000 --formats --results /tmp/r.md
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
OUT = DATA / "out"
CLI = [sys.executable, "-m", "search_sessions.cli"]
PYTHON_CORE = {"SEARCH_SESSIONS_CORE": "python"}
KEPT_HEADINGS = ("\n## Soak", "\n## Crash")  # sections soak.py and crash.py write

# How bench/duckdb_ctr.sql reads "time": ISO text as is; where the file also has epoch
# numbers, those by size as the core does (seconds < 1e11, ms < 1e14, us < 1e17, else ns).
ISO_TIME = 'CAST("time" AS TIMESTAMPTZ)'
EPOCH_TIME = """COALESCE(TRY_CAST("time" AS TIMESTAMPTZ), to_timestamp(
        CASE WHEN abs(TRY_CAST("time" AS DOUBLE)) < 1e11 THEN TRY_CAST("time" AS DOUBLE)
             WHEN abs(TRY_CAST("time" AS DOUBLE)) < 1e14 THEN TRY_CAST("time" AS DOUBLE) / 1e3
             WHEN abs(TRY_CAST("time" AS DOUBLE)) < 1e17 THEN TRY_CAST("time" AS DOUBLE) / 1e6
             ELSE TRY_CAST("time" AS DOUBLE) / 1e9 END))"""
DUCK_SCRIPT = (
    "import duckdb, sys\n"
    "sql = open(sys.argv[1]).read().format(path=sys.argv[2], time=sys.argv[3])\n"
    "con = duckdb.connect()\n"
    "con.execute('SET enable_progress_bar = false')\n"
    "print(con.sql(sql).fetchall())\n"
)

# Issue #21's targets, as (ratio, target) for the ratio lines.
TARGETS = {"duckdb": 1.0, "tutorial": 300.0, "split": 1.8, "file": 1.8}


@dataclass
class Measure:
    name: str
    events: int
    wall: float
    peak_rss_mb: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.wall


@dataclass
class Timed:
    """One row of a table: a command, its events, and a role ("one", "python", ...)."""

    role: str
    name: str
    cmd: list[str]
    events: int
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        """Rows with the same key are the same run, timed once per round."""
        return (*self.cmd, *sorted(f"{k}={v}" for k, v in self.env.items()))


@dataclass
class Dataset:
    key: str
    title: str
    path: Path
    events: int
    made_by: str
    epochs: bool = False
    rows: list[Timed] = field(default_factory=list)
    measured: dict[str, Measure] = field(default_factory=dict)
    answer: str = ""


def measure(
    name: str, cmd: list[str], events: int, env: dict[str, str] | None = None, note: str = ""
) -> Measure:
    """Run ``cmd`` in a fresh helper process; its peak RSS is that of its largest descendant."""
    probe = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL)\n"
        "w = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([p.returncode, w, rss]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(cmd)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    code, wall, rss_kb = json.loads(out.stdout.strip().splitlines()[-1])
    if code != 0:
        raise SystemExit(f"{name}: exit {code}: {out.stderr[-2000:]}")
    m = Measure(name, events, wall, rss_kb / 1024, note)
    print(f"{name:58s} {wall:8.2f} s {m.rate:12,.0f} ev/s {m.peak_rss_mb:8.0f} MB", flush=True)
    return m


def simulate(events: int, users: int, days: float, seed: int) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"events-{events}-{users}-{days:g}d-s{seed}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        subprocess.run(
            [
                *CLI,
                "simulate",
                "--events",
                str(events),
                "--users",
                str(users),
                "--days",
                str(days),
                "--seed",
                str(seed),
                # The five event types only: DuckDB's SQL and the tutorial's flow know
                # no conversions or keystroke requests.
                "--typeahead",
                "0",
                "--conversions",
                "0",
                "--output",
                str(tmp),
            ],
            check=True,
        )
        tmp.rename(path)
    return path


def independent(events: int, users: int, seed: int) -> Path:
    """``bench/independent.py``'s data, made once."""
    sys.path.insert(0, str(HERE))
    from independent import generate

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"independent-{events}-{users}-s{seed}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        generate(events, users, seed, tmp)
        tmp.rename(path)
    return path


def split_by_user(path: Path, n: int) -> Path:
    """The same lines in n files, each user's lines in one file, in order."""
    d = path.with_suffix(f".split{n}")
    if not d.exists():
        tmp = path.with_suffix(f".split{n}.tmp")
        tmp.mkdir(exist_ok=True)
        files = [open(tmp / f"part-{i}.jsonl", "wb") for i in range(n)]  # noqa: SIM115
        with open(path, "rb") as f:
            for line in f:
                user = line.split(b'"user":', 1)[-1].split(b",", 1)[0]
                files[zlib.crc32(user) % n].write(line)
        for fh in files:
            fh.close()
        tmp.rename(d)
    return d


def reorder(path: Path, how: str, seed: int) -> Path:
    """The same lines shuffled, or sorted by user (then by line, so time order)."""
    import random

    out = path.with_suffix(f".{how}.jsonl")
    if not out.exists():
        with open(path, "rb") as f:
            lines = f.readlines()
        if how == "shuffled":
            random.Random(seed).shuffle(lines)
        else:
            users = [line.split(b'"user":', 1)[-1].split(b",", 1)[0] for line in lines]
            order = sorted(range(len(lines)), key=users.__getitem__)
            lines = [lines[i] for i in order]
        tmp = out.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.writelines(lines)
        tmp.rename(out)
    return out


def run_cmd(inputs: Path, out: Path, processes: int = 1) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        *CLI,
        "run",
        str(inputs),
        "--searches",
        str(out / "searches.jsonl"),
        "--sessions",
        str(out / "sessions.jsonl"),
        "--processes",
        str(processes),
        "--quiet",
    ]


def duck_cmd(path: Path, epochs: bool) -> list[str]:
    sql = str(HERE / "duckdb_ctr.sql")
    return [sys.executable, "-c", DUCK_SCRIPT, sql, str(path), EPOCH_TIME if epochs else ISO_TIME]


def core_version() -> str:
    """``search-sessions --version``, which names the core in use."""
    out = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def dataset_rows(ds: Dataset, core: str) -> list[Timed]:
    """The timed rows of one data set, each writing to its own directory."""
    out, n = OUT / ds.key, ds.events
    split = split_by_user(ds.path, 2)
    return [
        Timed("one", f"run, 1 process, {core} core", run_cmd(ds.path, out / "p1"), n),
        Timed(
            "no-read-ahead",
            f"run, 1 process, {core} core, --read-ahead off",
            [*run_cmd(ds.path, out / "p1-serial"), "--read-ahead", "off"],
            n,
            note="one core's work: what each of 2 processes on 2 cores does",
        ),
        Timed(
            "python",
            "run, 1 process, python core",
            run_cmd(ds.path, out / "p1-python"),
            n,
            env=PYTHON_CORE,
            note="SEARCH_SESSIONS_CORE=python",
        ),
        Timed(
            "split",
            "run, 2 processes, split by user",
            run_cmd(split, out / "p2", 2),
            n,
            note="input split by user into 2 files",
        ),
        Timed(
            "file",
            "run, 2 processes, one file",
            run_cmd(ds.path, out / "p2-file", 2),
            n,
            note="the 1-process input file",
        ),
        Timed(
            "duckdb",
            "DuckDB per-search CTR (SQL, default threads)",
            duck_cmd(ds.path, ds.epochs),
            n,
        ),
    ]


def sweep_rows(path: Path, events: int, max_processes: int) -> list[Timed]:
    """``run --processes N``, N = 1, 2, 4, ... and ``max_processes``, on N files split by
    user (N = 1, 2: the same commands as the data set's rows, so timed once)."""
    counts = [1]
    while counts[-1] * 2 <= max_processes:
        counts.append(counts[-1] * 2)
    if counts[-1] != max_processes:
        counts.append(max_processes)
    rows = []
    for n in counts:
        inputs = path if n == 1 else split_by_user(path, n)
        note = "the one file" if n == 1 else f"input split by user into {n} files"
        rows.append(
            Timed(
                str(n),
                f"run --processes {n}",
                run_cmd(inputs, OUT / "sim" / f"p{n}", n),
                events,
                note=note,
            )
        )
    return rows


def time_rounds(rows: list[Timed], repeat: int) -> dict[tuple[str, ...], Measure]:
    """Interleaved rounds of the distinct commands, the fastest run of each kept (peak
    RSS: the largest): a shared machine's speed drifts by 10-20% over minutes, which
    would otherwise show up in the ratios."""
    unique: dict[tuple[str, ...], Timed] = {}
    for row in rows:
        unique.setdefault(row.key, row)
    best: dict[tuple[str, ...], Measure] = {}
    for _ in range(repeat):
        for key, row in unique.items():
            run = measure(row.name, row.cmd, row.events, row.env, row.note)
            if key in best:
                old = best[key]
                rss = max(old.peak_rss_mb, run.peak_rss_mb)
                run = replace(run if run.wall < old.wall else old, peak_rss_mb=rss)
            best[key] = run
    return best


def answer(searches: Path) -> tuple[int, float]:
    """Searches and mean per-search CTR of a run's searches file."""
    with open(searches, "rb") as f:
        ctrs = [json.loads(line)["ctr"] for line in f]
    return len(ctrs), sum(ctrs) / len(ctrs)


def check_answers(ds: Dataset, core: str) -> str:
    """DuckDB's searches and CTR, and the Python core's, must be ours; the line saying so."""
    ours = answer(OUT / ds.key / "p1" / "searches.jsonl")
    python = answer(OUT / ds.key / "p1-python" / "searches.jsonl")
    duck = subprocess.run(
        duck_cmd(ds.path, ds.epochs), capture_output=True, text=True, check=True
    ).stdout.strip()
    ((duck_searches, duck_ctr),) = ast.literal_eval(duck)
    for who, (searches, ctr) in (("DuckDB", (duck_searches, duck_ctr)), ("python core", python)):
        if searches != ours[0] or abs(ctr - ours[1]) > 1e-9:
            sys.exit(
                f"{ds.title}: {who} disagrees: {searches} searches, CTR {ctr}, against "
                f"{ours[0]} searches, CTR {ours[1]} ({core} core)"
            )
    return (
        f"Same answer: {ours[0]:,} searches, CTR {ours[1]:.6f} ({core} core, python core); "
        f"DuckDB (searches, CTR) {duck}."
    )


def tutorial(ds: Dataset) -> Measure:
    out = OUT / ds.key
    return measure(
        "tutorial flow (SessionWindower)",
        [
            sys.executable,
            "-m",
            "bytewax.run",
            str(ROOT / "examples" / "tutorial_dataflow.py") + ":flow",
        ],
        ds.events,
        env={"TUTORIAL_INPUT": str(ds.path), "TUTORIAL_OUTPUT": str(out / "tutorial.tsv")},
    )


def memory_rows(
    sizes: list[int], users: int, seed: int, core: str
) -> list[tuple[Measure, Measure]]:
    """``run`` with the core in use and with the Python core, once each per size."""
    rows = []
    for m in sizes:
        path = simulate(m, users, 7.0, seed)
        name = f"run, {m:,} events, {users:,} users, 7 days"
        ours = measure(f"{name} ({core} core)", run_cmd(path, OUT / f"mem{m}"), m)
        python = measure(
            f"{name} (python core)", run_cmd(path, OUT / f"mem{m}-python"), m, env=PYTHON_CORE
        )
        rows.append((ours, python))
    return rows


def sort_rows(events: int, users: int, seed: int) -> list[Measure]:
    """``--order sort`` against a time-ordered run of the same events."""
    data = simulate(events, users, 1.0, seed)
    shuffled, by_user = reorder(data, "shuffled", seed), reorder(data, "by_user", seed)
    return [
        measure(
            f"run --order time, {events:,} events in time order",
            [*run_cmd(data, OUT / "ordered"), "--order", "time"],
            events,
        ),
        measure(
            f"run --order sort, {events:,} events shuffled",
            [*run_cmd(shuffled, OUT / "shuffled"), "--order", "sort"],
            events,
        ),
        measure(
            f"run (auto), {events:,} events sorted by user",
            run_cmd(by_user, OUT / "by_user"),
            events,
        ),
    ]


def ratios(ds: Dataset, core: str) -> list[tuple[str, float, float | None]]:
    """(what, throughput ratio, issue #21's target or None) for one data set."""
    m = ds.measured
    one = m["one"].rate
    out = [("1 process / DuckDB", one / m["duckdb"].rate, TARGETS["duckdb"])]
    if "tutorial" in m:
        out.append(("1 process / tutorial flow", one / m["tutorial"].rate, TARGETS["tutorial"]))
    out += [
        ("2 processes / 1 process, split by user", m["split"].rate / one, TARGETS["split"]),
        ("2 processes / 1 process, one file", m["file"].rate / one, TARGETS["file"]),
        (f"{core} core / python core, 1 process", one / m["python"].rate, None),
    ]
    if "no-read-ahead" in m:
        serial = m["no-read-ahead"].rate
        out += [
            ("1 process reading ahead / not", one / serial, None),
            ("2 processes / 1 not reading ahead, split by user", m["split"].rate / serial, None),
            ("2 processes / 1 not reading ahead, one file", m["file"].rate / serial, None),
        ]
    return out


def ratio_text(value: float, target: float | None, short: bool = False) -> str:
    """``1.23x``, and against a target ``(target >= 1.8x: met)``, or ``, met`` if short."""
    text = f"{value:.0f}x" if value >= 100 else f"{value:.2f}x"
    if target is None:
        return text
    met = "met" if value >= target else "**not met**"
    return f"{text}, {met}" if short else f"{text} (target >= {goal_text(target)}: {met})"


def goal_text(target: float) -> str:
    return f"{target:.1f}x" if target < 100 else f"{target:.0f}x"


def cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line]
    return names[0] if names else platform.processor() or "unknown CPU"


def header_lines(args: argparse.Namespace, version: str, datasets: list[Dataset]) -> list[str]:
    from importlib.metadata import version as package_version

    cpu = cpu_model()
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`bench/bench.py`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- core: `{version}` (`search-sessions --version`)",
        f"- machine: {platform.machine()}, {cpu}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"{platform.platform()}, load average {os.getloadavg()[0]:.1f} at the end",
        f"- Python {platform.python_version()}, bytewax {package_version('bytewax')}, "
        f"msgspec {package_version('msgspec')}, duckdb {package_version('duckdb')}",
    ]
    lines += [f"- {ds.title.lower()}: {ds.made_by}" for ds in datasets]
    lines += [
        f"- method: {args.repeat} interleaved round{'s' if args.repeat > 1 else ''} of "
        "every timed row of both data sets and the process sweep, the fastest run of each "
        "kept (peak RSS: the largest); the tutorial flow, the memory and the input-order runs once",
        "",
    ]
    return lines


def targets_lines(datasets: list[Dataset], core: str) -> list[str]:
    """Issue #21's ratios, one column per data set."""
    table = [ratios(ds, core) for ds in datasets]
    lines = [
        "## Targets (issue #21)",
        "",
        "| ratio (throughput) | " + " | ".join(ds.title for ds in datasets) + " |",
        "|---|" + "---:|" * len(datasets),
    ]
    for what, _, target in table[0]:
        cells = []
        for col in table:
            found = [(v, t) for w, v, t in col if w == what]
            cells.append(ratio_text(*found[0], short=True) if found else "-")
        goal = "" if target is None else f" (>= {goal_text(target)})"
        lines.append(f"| {what}{goal} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def dataset_lines(ds: Dataset, core: str) -> list[str]:
    one = ds.measured["one"]
    lines = [
        f"## {ds.title}",
        "",
        ds.made_by[0].upper() + ds.made_by[1:] + ".",
        "",
        "| what | events | wall (s) | events/s | peak RSS (MB) | vs 1 process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in ds.measured.values():
        lines.append(
            f"| {r.name}{' (' + r.note + ')' if r.note else ''} | {r.events:,} | "
            f"{r.wall:.2f} | {r.rate:,.0f} | {r.peak_rss_mb:.0f} | {one.wall / r.wall:.2f}x |"
        )
    lines += ["", "Ratios (throughput):", ""]
    lines += [f"- {what}: {ratio_text(v, t)}" for what, v, t in ratios(ds, core)]
    return [*lines, "", ds.answer, ""]


def sweep_lines(sweep: list[Measure], core: str) -> list[str]:
    base = sweep[0]
    lines = [
        "## Process sweep",
        "",
        f"`run --processes N` ({core} core) on the simulator's data split by user into N "
        f"files, N up to the machine's {os.cpu_count()} cores (`--sweep-max N` for more).",
        "",
        "| processes | wall (s) | events/s | peak RSS (MB) | speed-up vs 1 | per process |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for m in sweep:
        n = int(m.name.rsplit(" ", 1)[1])
        speedup = m.rate / base.rate
        lines.append(
            f"| {n} | {m.wall:.2f} | {m.rate:,.0f} | {m.peak_rss_mb:.0f} | "
            f"{speedup:.2f}x | {speedup / n:.2f} |"
        )
    return [*lines, ""]


def memory_lines(memory: list[tuple[Measure, Measure]], users: int, core: str) -> list[str]:
    lines = [
        "## Memory scaling",
        "",
        f"Same traffic mix, {users:,} users over 7 days, one process, searches and sessions "
        f"written; the {core} core and the python core on the same file.",
        "",
        f"| events | {core}: wall (s) | {core}: events/s | {core}: peak RSS (MB) "
        "| python: wall (s) | python: events/s | python: peak RSS (MB) "
        f"| peak RSS {core} / python |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ours, py in memory:
        lines.append(
            f"| {ours.events:,} | {ours.wall:.2f} | {ours.rate:,.0f} | {ours.peak_rss_mb:.0f} | "
            f"{py.wall:.2f} | {py.rate:,.0f} | {py.peak_rss_mb:.0f} | "
            f"{ours.peak_rss_mb / py.peak_rss_mb:.2f}x |"
        )
    lines += ["", memory_target(memory, core)]
    if len(memory) > 1:
        first, last = memory[0], memory[-1]
        lines.append("")
        lines.append(
            f"Peak RSS at {last[0].events:,} / at {first[0].events:,}: "
            f"{last[0].peak_rss_mb / first[0].peak_rss_mb:.2f}x ({core}), "
            f"{last[1].peak_rss_mb / first[1].peak_rss_mb:.2f}x (python)."
        )
    return [*lines, ""]


def memory_target(memory: list[tuple[Measure, Measure]], core: str) -> str:
    """The target at the largest size: the core in use's peak RSS <= the Python core's
    (in whole MB, as the tables show them)."""
    ours, py = memory[-1]
    met = "met" if round(ours.peak_rss_mb) <= round(py.peak_rss_mb) else "**not met**"
    return (
        f"Target at {ours.events:,} events: {core} core's peak RSS <= python core's: "
        f"{ours.peak_rss_mb:.0f} MB against {py.peak_rss_mb:.0f} MB, {met}."
    )


def sort_lines(sorting: list[Measure], core: str) -> list[str]:
    ordered = sorting[0]
    lines = [
        "## Input order",
        "",
        f"The same events (one day, one process, {core} core, searches and sessions written) "
        "in time order, shuffled and sorted by user; the default `--sort-memory` (256MB).",
        "",
        "| run | wall (s) | events/s | peak RSS (MB) | vs time order |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in sorting:
        lines.append(
            f"| {m.name} | {m.wall:.2f} | {m.rate:,.0f} | {m.peak_rss_mb:.0f} | "
            f"{m.rate / ordered.rate:.2f}x |"
        )
    return [*lines, ""]


def format_rows(path: Path, events: int, core: str) -> list[tuple[str, Measure, Measure]]:
    """``run`` on other layouts of the simulator's events and with other outputs, with
    the core in use and with the Python core, once each (``bench/formats.py``)."""
    sys.path.insert(0, str(HERE))
    import formats

    out = OUT / "formats"
    out.mkdir(parents=True, exist_ok=True)
    aol, aol_rows = formats.aol(path)
    files = ["--searches", str(out / "s.jsonl"), "--sessions", str(out / "x.jsonl")]
    db = out / "db.sqlite"
    runs = [
        ("JSON Lines in, files out", [str(path), *files], events),
        ("CSV in", [str(formats.delimited(path, ",")), *files], events),
        ("TSV in", [str(formats.delimited(path, "\t")), *files], events),
        ("Parquet in", [str(formats.parquet(path)), *files], events),
        ("AOL layout in (rows; sorted by user: the sort path)", [str(aol), *files], aol_rows),
        (
            "JSON Lines in, files and rollups (1h, 1d) out",
            [
                str(path),
                *files,
                "--rollup",
                "1h",
                "--rollup",
                "1d",
                "--rollups",
                str(out / "r.jsonl"),
            ],
            events,
        ),
        (
            "JSON Lines in, Parquet out",
            [str(path), "--searches", str(out / "s.parquet"), "--sessions", str(out / "x.parquet")],
            events,
        ),
        (
            "JSON Lines in, SQLite out",
            [str(path), "--searches", f"sqlite:///{db}", "--sessions", f"sqlite:///{db}"],
            events,
        ),
    ]
    rows = []
    for name, args, n in runs:
        measured = []
        for env in ({}, PYTHON_CORE):
            db.unlink(missing_ok=True)
            label = f"{name} ({core if not env else 'python'} core)"
            measured.append(measure(label, [*CLI, "run", *args, "--quiet"], n, env=env))
        rows.append((name, measured[0], measured[1]))
    db.unlink(missing_ok=True)
    return rows


def format_lines(rows: list[tuple[str, Measure, Measure]], core: str) -> list[str]:
    first = rows[0][1]
    lines = [
        "## Formats and outputs",
        "",
        "The simulator's events (the first data set) as CSV, TSV, Parquet and the AOL "
        "layout (searches and clicks only), and the JSON Lines file with other outputs; one "
        f"process, once each, the {core} core and the python core (`bench/formats.py`).",
        "",
        f"| run | events | {core}: wall (s) | {core}: events/s | vs JSON Lines, files | "
        f"python: wall (s) | python: events/s | {core} / python |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, ours, py in rows:
        lines.append(
            f"| {name} | {ours.events:,} | {ours.wall:.2f} | {ours.rate:,.0f} | "
            f"{ours.rate / first.rate:.2f}x | {py.wall:.2f} | {py.rate:,.0f} | "
            f"{py.wall / ours.wall:.2f}x |"
        )
    return [*lines, ""]


def kept_sections(path: Path) -> str:
    """What other tools wrote (``make soak``'s and ``make crash``'s sections, with
    ``soak.write_section``): everything from the first of their headings on."""
    if not path.exists():
        return ""
    old = path.read_text()
    found = [at for at in (old.find(h + "\n") for h in KEPT_HEADINGS) if at >= 0]
    return old[min(found) :] if found else ""


def write_results(
    path: Path,
    args: argparse.Namespace,
    version: str,
    datasets: list[Dataset],
    sweep: list[Measure],
    memory: list[tuple[Measure, Measure]],
    sorting: list[Measure],
    formats: list[tuple[str, Measure, Measure]],
) -> None:
    core = version.rsplit("core: ", 1)[-1].rstrip(")")
    lines = header_lines(args, version, datasets) + targets_lines(datasets, core)
    if memory:
        lines += [memory_target(memory, core), ""]
    for ds in datasets:
        lines += dataset_lines(ds, core)
    lines += sweep_lines(sweep, core)
    if memory:
        lines += memory_lines(memory, args.memory_users, core)
    if sorting:
        lines += sort_lines(sorting, core)
    if formats:
        lines += format_lines(formats, core)
    kept = kept_sections(path)
    path.write_text("\n".join(lines).rstrip("\n") + "\n" + (kept or ""))
    print(f"wrote {path}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=1_000_000, help="events of each data set")
    ap.add_argument("--users", type=int, default=10_000, help="the simulator's users")
    ap.add_argument("--seed", type=int, default=1, help="the simulator's seed")
    ap.add_argument("--independent-users", type=int, default=20_000)
    ap.add_argument("--independent-seed", type=int, default=7)
    ap.add_argument("--no-tutorial", action="store_true", help="skip the (slow) tutorial flow")
    ap.add_argument(
        "--sweep-max", type=int, default=os.cpu_count() or 1, help="most processes in the sweep"
    )
    ap.add_argument("--memory", action="store_true", help="also the peak RSS of both cores")
    ap.add_argument(
        "--memory-events",
        default="1000000,5000000",
        help="sizes of the memory runs (comma-separated)",
    )
    ap.add_argument("--memory-users", type=int, default=500_000)
    ap.add_argument(
        "--sort", action="store_true", help="also time --order sort on 5M shuffled events"
    )
    ap.add_argument("--sort-events", type=int, default=5_000_000)
    ap.add_argument("--sort-only", action="store_true", help="only the --sort rows")
    ap.add_argument(
        "--formats",
        action="store_true",
        help="also CSV, TSV, Parquet, AOL in; rollups, Parquet, SQLite out",
    )
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"))
    ap.add_argument(
        "--repeat", type=int, default=5, help="interleaved rounds; the fastest run of each counts"
    )
    return ap.parse_args()


def datasets_for(args: argparse.Namespace, core: str) -> list[Dataset]:
    n, users = args.events, args.independent_users
    sim = Dataset(
        "sim",
        "Simulator data",
        simulate(n, args.users, 1.0, args.seed),
        n,
        f"`search-sessions simulate --events {n} --users {args.users} --seed {args.seed} "
        "--typeahead 0 --conversions 0` (one day)",
    )
    ind = Dataset(
        "independent",
        "Independent data",
        independent(n, users, args.independent_seed),
        n,
        f"`python bench/independent.py --events {n} --users {users} "
        f"--seed {args.independent_seed}` (integer users, `+02:00` times with microseconds, "
        "one time in ten an epoch number: int s, float s, int ms)",
        epochs=True,
    )
    for ds in (sim, ind):
        ds.rows = dataset_rows(ds, core)
    return [sim, ind]


def main() -> None:
    args = parse_args()
    if args.sort_only:
        for row in sort_rows(args.sort_events, args.users, args.seed):
            print(row)
        return
    version = core_version()
    core = version.rsplit("core: ", 1)[-1].rstrip(")")
    print(version, flush=True)
    datasets = datasets_for(args, core)
    sweep = sweep_rows(datasets[0].path, args.events, args.sweep_max)
    best = time_rounds([r for ds in datasets for r in ds.rows] + sweep, args.repeat)
    for ds in datasets:
        ds.measured = {r.role: replace(best[r.key], name=r.name, note=r.note) for r in ds.rows}
        ds.answer = check_answers(ds, core)
    if not args.no_tutorial:
        datasets[0].measured["tutorial"] = tutorial(datasets[0])
    sweep_measured = [replace(best[r.key], name=r.name, note=r.note) for r in sweep]
    memory = []
    if args.memory:
        sizes = [int(s) for s in args.memory_events.split(",")]
        memory = memory_rows(sizes, args.memory_users, args.seed, core)
    sorting = sort_rows(args.sort_events, args.users, args.seed) if args.sort else []
    formats = format_rows(datasets[0].path, args.events, core) if args.formats else []
    write_results(
        Path(args.results), args, version, datasets, sweep_measured, memory, sorting, formats
    )
    for ds in datasets:
        for what, value, target in ratios(ds, core):
            print(f"{ds.title}: {what}: {ratio_text(value, target)}")


if __name__ == "__main__":
    main()
