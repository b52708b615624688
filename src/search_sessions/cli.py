"""The ``search-sessions`` command: a thin layer over the library."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from .config import (
    FORMATS,
    ORDERS,
    TIME_UNITS,
    Config,
    config_to_json,
    parse_duration,
    parse_mapping,
    parse_rollup_window,
    parse_size,
)
from .connectors.registry import prepare_output, resolve_inputs
from .connectors.specs import Scheme, scheme_of
from .demo import run_demo
from .errors import ConfigError, SearchSessionsError
from .report import write_report
from .runtime.run import run as run_job
from .simulate import SimSpec, write

F = TypeVar("F", bound=Callable[..., Any])


class _Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()


def engine_options(f: F) -> F:
    """Session rules and parallelism, shared by ``run`` and ``demo``."""
    options = [
        click.option(
            "--gap",
            type=DURATION,
            default="30m",
            show_default=True,
            help="Inactivity longer than this starts a new session.",
        ),
        click.option(
            "--lateness",
            type=DURATION,
            default="1m",
            show_default=True,
            help="How far behind the newest event time the watermark trails.",
        ),
        click.option(
            "--max-session",
            type=DURATION,
            default="12h",
            show_default=True,
            help="A session never lasts longer than this.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1),
            default=1,
            show_default=True,
            help="Worker threads per process.",
        ),
        click.option(
            "--processes",
            type=click.IntRange(1),
            default=1,
            show_default=True,
            help="Local processes (a Bytewax cluster on loopback).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="search-sessions")
def main() -> None:
    """Search sessions and search-quality metrics from raw search event logs.

    \b
    Example:
      search-sessions simulate --events 100000 --output events.jsonl
      search-sessions run events.jsonl --searches out/searches.jsonl --sessions out/sessions.jsonl
    """


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@engine_options
@click.option(
    "--searches",
    default="-",
    show_default=True,
    help="Per-search records (JSON Lines); '-' is standard output, 'none' for no output.",
)
@click.option("--sessions", default=None, help="Session records (JSON Lines).")
@click.option("--dead-letter", default=None, help="Invalid records, with source and reason.")
@click.option("--late", default=None, help="Events that came after the watermark passed them.")
@click.option(
    "--rollup",
    "rollup",
    multiple=True,
    help="Window length for rollups (1m, 1h, 1d; repeat for several).",
)
@click.option("--rollups", default=None, help="Rollup rows per window and per window and query.")
@click.option("--strict", is_flag=True, help="Stop with an error at the first invalid record.")
@click.option(
    "--order",
    type=click.Choice(ORDERS),
    default="auto",
    show_default=True,
    help="time: stream with a watermark (late events set apart); sort: sort files and "
    "stdin by event time first (any order gives the batch answer); auto: sort a file or "
    "stdin whose first block is out of order by more than --lateness, stream Kafka.",
)
@click.option(
    "--sort-memory",
    default="256MB",
    show_default=True,
    help="Events a process holds while sorting before it spills a sorted run to disk.",
)
@click.option(
    "--temp-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where sorted runs are spilled (default: the system's temporary directory).",
)
@click.option(
    "--format",
    "input_format",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="Input layout; auto: .csv, .tsv, .parquet by name (also gzipped), an AOL "
    "header (AnonID, Query, QueryTime) by the first line, else JSON Lines.",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME=INPUT_NAME",
    help="The input's name for a field: --field user=anon_id --field time=ts (repeat).",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="TYPE=INPUT_NAME",
    help="Another name for an event type: --type search=query_submitted (repeat).",
)
@click.option(
    "--time-unit",
    type=click.Choice(TIME_UNITS),
    default="auto",
    show_default=True,
    help="Unit of epoch-number times; auto: seconds below 1e11, milliseconds below "
    "1e14, microseconds below 1e17, else nanoseconds.",
)
@click.option("--tail", is_flag=True, help="Kafka inputs: only messages from now on.")
@click.option(
    "--idle-timeout",
    type=DURATION,
    default=None,
    help="An input silent this long (wall clock) stops holding the watermark back.",
)
@click.option(
    "--stop-at-end",
    is_flag=True,
    help="Kafka inputs: stop at the end offsets found at start (backfills).",
)
@click.option(
    "--recovery-dir",
    default=None,
    help="Keep snapshots here; rerunning the same command resumes after a crash.",
)
@click.option(
    "--snapshot-interval",
    type=DURATION,
    default="1s",
    show_default=True,
    help="Epoch length: outputs are written and (with --recovery-dir) state is "
    "snapshotted this often.",
)
@click.option(
    "--process-id",
    type=click.IntRange(0),
    default=None,
    help="Run only this process of a cluster (with --addresses).",
)
@click.option(
    "--addresses",
    default=None,
    help="Every cluster process as HOST:PORT;HOST:PORT;... (with --process-id).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics on this port (process i of a cluster: port + i).",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port."
)
@click.option("--quiet", is_flag=True, help="No progress and no summary on standard error.")
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the job as JSON and exit (for python -m bytewax.run "
    "search_sessions.dataflow.flow:flow).",
)
def run(inputs: tuple[str, ...], **opts: Any) -> None:
    """Sessionize INPUT... (JSON Lines, CSV, TSV, AOL or Parquet files, .gz, directories,
    - for stdin, or kafka://HOST:PORT/TOPIC).

    \b
    Example:
      search-sessions run logs/ --sessions out/sessions.jsonl \\
          --searches out/searches.jsonl --dead-letter out/bad.jsonl --processes 2

    \b
    Logs in other layouts and orders:
      search-sessions run user-ct-test-collection-01.txt.gz --sessions out/sessions.jsonl
      search-sessions run export.csv --field user=anon_id --field time=ts --time-unit ms
      search-sessions run events.parquet --order sort --searches out/searches.parquet

    A summary (events, invalid, duplicates, late, sessions, searches, CTR,
    events/s) goes to standard error at the end.

    \b
    Across hosts, run the same command on each, one process id per host:
      search-sessions run /data/host-a/ --process-id 0 \\
          --addresses "10.0.0.1:2101;10.0.0.2:2101" --searches /out/searches.jsonl
    """
    if not os.environ.get("SEARCH_SESSIONS_DEBUG"):
        # A failed step is reported below in one line; Rust's backtrace is noise.
        os.environ["RUST_BACKTRACE"] = "0"
    cfg = _run_config(inputs, opts)
    try:
        cfg = resolve_inputs(cfg)
    except SearchSessionsError as exc:
        raise click.UsageError(str(exc)) from None
    if opts["print_config"]:
        click.echo(json.dumps(config_to_json(cfg), indent=2))
        return
    process_id, members = _cluster_member(opts)
    for spec in (cfg.searches, cfg.sessions, cfg.dead_letter, cfg.late, cfg.rollups):
        if spec is not None:
            prepare_output(spec)
    try:
        summary = run_job(cfg, process_id, members)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except SearchSessionsError as exc:
        raise click.ClickException(str(exc)) from None
    if not opts["quiet"]:
        click.echo(summary.text(), err=True)


def _run_config(inputs: tuple[str, ...], opts: dict[str, Any]) -> Config:
    """The run's :class:`Config` from the command's options (a usage error if invalid)."""
    searches, rollups = opts["searches"], opts["rollups"]
    try:
        return Config(
            inputs=inputs,
            gap=opts["gap"],
            lateness=opts["lateness"],
            max_session=opts["max_session"],
            searches=None if searches == "none" else searches,
            sessions=opts["sessions"],
            dead_letter=opts["dead_letter"],
            late=opts["late"],
            workers=opts["workers"],
            processes=opts["processes"],
            strict=opts["strict"],
            rollups=None if rollups == "none" else rollups,
            rollup_windows=tuple(parse_rollup_window(w) for w in opts["rollup"]),
            recovery_dir=opts["recovery_dir"],
            snapshot_interval=opts["snapshot_interval"],
            tail=opts["tail"],
            idle_timeout=opts["idle_timeout"],
            progress=not opts["quiet"],
            metrics_port=opts["metrics_port"],
            metrics_host=opts["metrics_host"],
            stop_at_end=opts["stop_at_end"],
            order=opts["order"],
            sort_memory=parse_size(opts["sort_memory"]),
            temp_dir=opts["temp_dir"],
            input_format=opts["input_format"],
            fields=parse_mapping(opts["fields"], "--field"),
            types=parse_mapping(opts["types"], "--type"),
            time_unit=opts["time_unit"],
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _cluster_member(opts: dict[str, Any]) -> tuple[int | None, list[str] | None]:
    """``--process-id`` and ``--addresses``, checked against each other."""
    process_id, addresses = opts["process_id"], opts["addresses"]
    if (process_id is None) != (addresses is None):
        raise click.UsageError("--process-id and --addresses go together")
    if process_id is not None and opts["processes"] != 1:
        raise click.UsageError("--processes starts a local cluster; not with --process-id")
    members = addresses.split(";") if addresses else None
    if members is not None and process_id is not None and process_id >= len(members):
        raise click.UsageError(f"--process-id {process_id} is not in --addresses ({len(members)})")
    return process_id, members


@main.command()
@engine_options
def demo(
    gap: timedelta, lateness: timedelta, max_session: timedelta, workers: int, processes: int
) -> None:
    """Run the tutorial's events through the dataflow and print CTR per search.

    \b
    Example:
      search-sessions demo
    prints one line per search (query, CTR, clicks), then one per session.
    """
    cfg = Config(
        inputs=("-",),
        gap=gap,
        lateness=lateness,
        max_session=max_session,
        workers=workers,
        processes=processes,
    )
    searches, sessions = run_demo(cfg)
    for s in searches:
        click.echo(
            f"search  user={s['user']} query={s['query']!r} ctr={s['ctr']} "
            f"clicks={s['clicks']} first_click_rank={s['first_click_rank']}"
        )
    for s in sessions:
        click.echo(
            f"session user={s['user']} {s['start']} .. {s['end']} searches={s['searches']} "
            f"clicks={s['clicks']} ctr={s['ctr']} end_reason={s['end_reason']}"
        )


@main.command()
@click.option(
    "--events",
    type=click.IntRange(0),
    default=100_000,
    show_default=True,
    help="Number of lines to write.",
)
@click.option("--users", type=click.IntRange(1), default=1_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--start",
    default="2024-01-01T00:00:00Z",
    show_default=True,
    help="Start of the simulated traffic (ISO 8601, UTC if no offset).",
)
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="How many days the traffic spans.",
)
@click.option(
    "--output",
    default="-",
    show_default=True,
    help="File, '-' for stdout, or kafka://HOST:PORT/TOPIC (keyed by user).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Events per second (live traffic); default: as fast as possible.",
)
@click.option(
    "--disorder",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Write events up to this many seconds out of time order.",
)
@click.option(
    "--duplicates",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of lines repeated exactly.",
)
@click.option(
    "--bad",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of lines replaced by invalid records.",
)
def simulate(
    events: int,
    users: int,
    seed: int,
    start: str,
    days: float,
    output: str,
    rate: float | None,
    disorder: float,
    duplicates: float,
    bad: float,
) -> None:
    """Write deterministic, realistic search traffic as JSON Lines.

    \b
    Example:
      search-sessions simulate --events 1000000 --users 10000 --seed 7 \\
          --disorder 30 --duplicates 0.01 --bad 0.001 --output events.jsonl
      search-sessions simulate --events 100000 --rate 500 --output kafka://localhost:9092/events
    """
    try:
        begin = datetime.fromisoformat(start)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {start!r}", param_hint="--start") from None
    if begin.tzinfo is None:
        begin = begin.replace(tzinfo=UTC)
    prepare_output(output)
    n = write(
        SimSpec(
            events=events,
            users=users,
            seed=seed,
            start=begin.astimezone(UTC),
            days=days,
            disorder=disorder,
            duplicates=duplicates,
            bad=bad,
        ),
        output,
        rate,
    )
    if scheme_of(output) is not Scheme.STDIO:
        click.echo(f"wrote {n:,} events to {output}", err=True)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--output", default="report.html", show_default=True, help="The HTML file to write.")
@click.option(
    "--min-sample",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Fewest searches for a query to rank among the worst by CTR.",
)
def report(inputs: tuple[str, ...], output: str, min_sample: int) -> None:
    """Write a self-contained HTML report from a run's outputs.

    INPUT is a searches JSONL file (a sessions file may follow) or a SQLite
    database written by `run`.

    \b
    Example:
      search-sessions run events.jsonl --searches out/searches.jsonl --sessions out/sessions.jsonl
      search-sessions report out/searches.jsonl out/sessions.jsonl --output out/report.html
    """
    parent = os.path.dirname(output)
    if parent:
        os.makedirs(parent, exist_ok=True)
    data = write_report(list(inputs), output, min_sample)
    click.echo(f"wrote {output} ({len(data.searches):,} searches)", err=True)
    click.echo(os.path.abspath(output))


if __name__ == "__main__":
    sys.exit(main())
