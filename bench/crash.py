"""Crash campaign: `make crash` (not part of `make test`).

Draws scenarios from consecutive seeds (``tests/crash/harness.py``: a layout, 1 or 2
processes and workers, outputs, one or two kills at crash points of the job's own state,
of the whole group, one cluster process or the launcher), runs each (kill, resume,
compare with an uninterrupted run) and writes the figures as the "Crash" section of
``bench/RESULTS.md``. Every failure is printed with its scenario; replay one with
``--scenario '<as printed>'`` or ``--seed N``.

    python bench/crash.py --scenarios 150
    python bench/crash.py --seed 1234
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The script's own directory would make `bench` this directory's bench.py, not the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")

from bench.soak import write_section  # noqa: E402
from tests.crash.harness import LAYOUTS, Harness, Result, Scenario, draw  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=150, help="how many to draw (default 150)")
    ap.add_argument("--first-seed", type=int, default=1, help="seed of the first (default 1)")
    ap.add_argument("--seed", type=int, help="replay the scenario of this seed alone")
    ap.add_argument("--scenario", help="replay this scenario, as a result line prints it")
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help="draw from these layouts")
    ap.add_argument("--events", type=int, default=30_000, help="events per input (default 30k)")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"), help="'none': do not write")
    args = ap.parse_args()
    layouts = tuple(args.layouts.split(","))
    if args.scenario:
        scenarios = [Scenario.parse(args.scenario)]
    elif args.seed is not None:
        scenarios = [draw(args.seed, layouts)]
    else:
        seeds = range(args.first_seed, args.first_seed + args.scenarios)
        scenarios = [draw(s, layouts) for s in seeds]
    # SIGTERM unwinds like Ctrl-C: the running job, broker and database are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="crash-") as work,
        Harness(Path(work), events=args.events) as h,
    ):
        for sc in scenarios:
            r = h.run(sc)
            results.append(r)
            print(r, flush=True)
    elapsed = time.monotonic() - started
    section = crash_section(results, elapsed, args)
    print(section)
    if args.results != "none" and len(scenarios) > 1:
        write_section(Path(args.results), section, "## Crash")
        print(f"wrote the Crash section of {args.results}")
    return 0 if all(r.ok for r in results) else 1


def crash_section(results: list[Result], elapsed: float, args: argparse.Namespace) -> str:
    by_layout: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_layout[r.scenario.layout].append(r)
    points: dict[str, int] = defaultdict(int)
    targets: dict[str, int] = defaultdict(int)
    for r in results:
        for k in r.scenario.kills[: len(r.kills_landed)]:
            points[k.split(":")[0]] += 1
            targets[k.split(":")[2].split("@")[0]] += 1
    lines = [
        "## Crash",
        "",
        f"`make crash` (`bench/crash.py`): {len(results)} scenarios drawn from seeds "
        f"{results[0].scenario.seed}-{results[-1].scenario.seed}, {args.events:,} events per "
        f"input, {elapsed / 60:.1f} minutes on this machine. Each: an uninterrupted run, then "
        "kills at crash points of the job's own state, the same command again after each, "
        "and every output compared line for line with the uninterrupted run's.",
        "",
        "| layout | scenarios | kills | resumes | later kill not reached | mismatches | failed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    total = [0, 0, 0, 0, 0, 0]
    for layout in sorted(by_layout):
        rs = by_layout[layout]
        row = [
            len(rs),
            sum(len(r.kills_landed) for r in rs),
            sum(r.resumes for r in rs),
            sum(len(r.unreached) for r in rs),
            sum(len(r.mismatches) for r in rs),
            sum(not r.ok for r in rs),
        ]
        total = [a + b for a, b in zip(total, row, strict=True)]
        lines.append(f"| {layout} | " + " | ".join(map(str, row)) + " |")
    lines.append("| **all** | " + " | ".join(f"**{v}**" for v in total) + " |")
    lines += [
        "",
        "A later kill is not reached when the resumed job finishes first (an input end "
        "after every input had ended): the same command then reruns the finished job, and "
        "the outputs are compared all the same.",
        "",
        "Kills by point: " + ", ".join(f"{p} {n}" for p, n in sorted(points.items())) + ".",
        "Kills by target: " + ", ".join(f"{t} {n}" for t, n in sorted(targets.items())) + ".",
        "Parallelism: "
        + ", ".join(
            f"{p} process(es) x {w} worker(s): "
            f"{sum(r.scenario.processes == p and r.scenario.workers == w for r in results)}"
            for p in (1, 2)
            for w in (1, 2)
        )
        + ".",
        "Outputs: "
        + ", ".join(
            f"{o} {sum(r.scenario.output == o for r in results)}"
            for o in ("jsonl", "sqlite", "postgres", "parquet")
        )
        + ".",
    ]
    failed = [r for r in results if not r.ok]
    if failed:
        lines += ["", "Failures (replay with `python bench/crash.py --scenario '...'`):", ""]
        lines += [f"- `{r}`" for r in failed]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
