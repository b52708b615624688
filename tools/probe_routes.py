"""Regenerate ``src/search_sessions/dataflow/routes_table.py`` by probing Bytewax.

For each worker count W up to ``--max-workers`` this runs Bytewax with W worker
threads (see ``search_sessions.dataflow.probe``) and writes the shard keys it
routes one to each worker, with the installed Bytewax version. Run it again
after upgrading Bytewax (``tests/dataflow/test_routing.py`` fails until then)::

    python tools/probe_routes.py --max-workers 64 \\
        --output src/search_sessions/dataflow/routes_table.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
TABLE = SRC / "search_sessions" / "dataflow" / "routes_table.py"
COMMAND = "python tools/probe_routes.py --max-workers {n} --output {table}"

HEADER = '''\
"""Shard keys that Bytewax routes one to each worker. Generated: do not edit.

For W workers, ``ROUTED_SHARDS[W]`` holds the W integers i such that Bytewax
routes key ``shard-{{i}}`` to workers 0, 1, ..., W-1 in that order, each the
smallest such i for its worker. Beyond the table, :func:`~.routing.shard_keys`
probes Bytewax the same way at start-up. Made with Bytewax {version} by
``make routes``, that is::

    {command}
"""

# One line per worker count reads better than wrapped tuples.
# ruff: noqa: E501

BYTEWAX_VERSION = "{version}"
"""The Bytewax version the table was probed with; another version is probed afresh."""

# fmt: off
ROUTED_SHARDS: dict[int, tuple[int, ...]] = {{
'''


def render(table: dict[int, tuple[int, ...]], version: str) -> str:
    """The text of ``routes_table.py`` for ``table`` (worker count -> shard numbers)."""
    command = COMMAND.format(n=max(table), table=TABLE.relative_to(SRC.parent))
    lines = [HEADER.format(command=command, version=version)]
    for n_workers, picks in sorted(table.items()):
        # repr of a 1-tuple is "(0,)", as Python and ruff write it.
        lines.append(f"    {n_workers}: {picks!r},\n")
    lines.append("}\n# fmt: on\n")
    return "".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Probe Bytewax for shard keys routed one per worker and print "
        "routes_table.py (or write it with --output).",
    )
    parser.add_argument(
        "--max-workers",
        type=int,
        default=64,
        help="probe 1..N workers (default 64; 64 takes a few seconds)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="write the table to this file (atomically) instead of standard output",
    )
    args = parser.parse_args(argv)
    if args.max_workers < 1:
        parser.error("--max-workers must be at least 1")
    return args


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` only once ``text`` is complete, so a failed run keeps the old table."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Probe 1..--max-workers workers and print or write the table."""
    args = parse_args(argv)
    # Works from a checkout whether or not the package is installed.
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from search_sessions.dataflow.probe import ProbeError, bytewax_version, routed_shards

    started = time.perf_counter()
    table: dict[int, tuple[int, ...]] = {}
    try:
        for n_workers in range(1, args.max_workers + 1):
            table[n_workers] = routed_shards(n_workers)
    except ProbeError as exc:
        print(f"probe_routes: {exc}", file=sys.stderr)
        return 1
    text = render(table, bytewax_version())
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomically(args.output, text)
    elapsed = time.perf_counter() - started
    print(f"probe_routes: 1..{args.max_workers} workers in {elapsed:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
