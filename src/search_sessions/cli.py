"""The ``search-sessions`` command: a thin layer over the library."""

from __future__ import annotations

import atexit
import dataclasses
import gc
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
from .connectors.inputs import (
    begin_emptying,
    check_outputs,
    output_specs,
    resolve_inputs,
    start_scans,
)
from .connectors.specs import Scheme, scheme_of
from .core.cores import CoreError, core_name
from .errors import ConfigError, SearchSessionsError
from .runtime.streams import clean_streams

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


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the package's version and the core that does the per-event work."""
    if not value or ctx.resilient_parsing:
        return
    try:
        core = core_name()
    except CoreError as exc:
        raise _Refused(str(exc)) from None
    from importlib.metadata import version  # here: importing it costs every command 30 ms

    click.echo(f"search-sessions, version {version('search-sessions')} (core: {core})")
    ctx.exit()


# At exit, Python's collector would walk every object left (about 30 ms for the imported
# modules alone, more after a run): none holds anything to finish, the files are closed.
atexit.register(gc.freeze)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Show the version and the core in use (native or python), and exit.",
)
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
    help="Per-search records (JSON Lines); '-' is standard output, 'none' for no output "
    "(for every output; an output may also be /dev/stderr or a named pipe).",
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
    "--long-click",
    type=DURATION,
    default="30s",
    show_default=True,
    help="A click followed by nothing, or by the next event this late or later, is long.",
)
@click.option(
    "--short-click",
    type=DURATION,
    default="10s",
    show_default=True,
    help="A click followed by another event sooner than this is short (a pogo-stick).",
)
@click.option(
    "--collapse-typeahead",
    type=DURATION,
    default=None,
    help="Join search-as-you-type requests at most this far apart into one search "
    "(e.g. 2s; off by default).",
)
@click.option(
    "--dimension",
    "dimensions",
    multiple=True,
    metavar="NAME",
    help="Copy this event field (variant, platform, ...) into the records and roll it up; "
    "repeat for several.",
)
@click.option(
    "--currency",
    default=None,
    metavar="CODE",
    help="Conversions in any other currency go to the dead letter (not checked by default).",
)
@click.option(
    "--order",
    type=click.Choice(ORDERS),
    default="auto",
    show_default=True,
    help="time: stream with a watermark (late events set apart); sort: sort files and "
    "stdin by event time first (any order gives the batch answer); auto: sort a file "
    "whose event times (pre-scanned) are out of order by more than --lateness, hold stdin "
    "to its end and stream it in time order, stream Kafka. A run writing files (no "
    "--recovery-dir) streams JSON Lines, CSV and TSV on the guess that they are in order, and "
    "starts again with one sorted if not.",
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
    help="Input layout; auto: .csv, .tsv, .parquet, .xml (TREC Session Track) by name "
    "(also gzipped), an AOL-layout header or row (the AOL log, Webis-SMC-12) or <?xml by "
    "the first line, else JSON Lines.",
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
    "--read-ahead",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Native core, files: decode the next block on a second thread meanwhile "
    "(auto: where the host has a core to spare for it).",
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
    "--join-timeout",
    type=DURATION,
    default="60s",
    show_default=True,
    help="With --process-id: give up (exit 1) when the other processes have not all "
    "connected within this long.",
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
    """Sessionize INPUT... (JSON Lines, CSV, TSV, AOL, Parquet or TREC Session Track XML
    files, .gz, directories, - for stdin, or kafka://HOST:PORT/TOPIC).

    \b
    Example:
      search-sessions run logs/ --sessions out/sessions.jsonl \\
          --searches out/searches.jsonl --dead-letter out/bad.jsonl --processes 2

    \b
    Logs in other layouts and orders:
      search-sessions run user-ct-test-collection-01.txt.gz --sessions out/sessions.jsonl
      search-sessions run export.csv --field user=anon_id --field time=ts --time-unit ms
      search-sessions run events.parquet --order sort --searches out/searches.parquet

    \b
    Experiments, segments and search-as-you-type front ends:
      search-sessions run logs/ --dimension variant --dimension platform \\
          --collapse-typeahead 2s --currency USD --rollup 1h --rollups out/rollups.jsonl

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
    try:
        core_name()
    except CoreError as exc:
        raise _Refused(str(exc)) from None
    cfg = _run_config(inputs, opts)
    try:
        cfg = resolve_inputs(cfg)
        check_outputs(cfg)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except SearchSessionsError as exc:  # an input that is not there (a file, a broker)
        raise _Refused(str(exc)) from None
    if opts["print_config"]:
        click.echo(json.dumps(config_to_json(cfg), indent=2))
        return
    process_id, members = _cluster_member(opts)
    if process_id is None:
        # Begun first, the pre-scans of --order auto and the emptying of the outputs run
        # while Bytewax is imported.
        try:
            prescans = start_scans(cfg)
        except SearchSessionsError as exc:  # (a broken input, as the run would find it)
            raise click.ClickException(str(exc)) from None
        cfg = dataclasses.replace(cfg, prescans=prescans, emptying=begin_emptying(cfg))
    from .connectors.registry import prepare_output
    from .runtime.run import run as run_job

    for spec in output_specs(cfg):
        try:
            prepare_output(spec)
        except OSError as exc:
            raise _Refused(f"{spec}: cannot make its directory ({exc.strerror})") from None
    try:
        with clean_streams():
            summary = run_job(cfg, process_id, members)
    except ConfigError as exc:
        # Not a usage error (the options are fine on their own): one message, status 2.
        raise _Refused(str(exc)) from None
    except SearchSessionsError as exc:
        raise click.ClickException(str(exc)) from None
    if not opts["quiet"]:
        click.echo(summary.text(), err=True)


class _Refused(click.ClickException):
    """A run refused before it starts: an input that is not there, a recovery directory
    in use or of another job."""

    exit_code = 2


def _output(spec: str | None) -> str | None:
    """An output flag's value: ``none`` is no output (as for ``--searches``)."""
    return None if spec == "none" else spec


def _run_config(inputs: tuple[str, ...], opts: dict[str, Any]) -> Config:
    """The run's :class:`Config` from the command's options (a usage error if invalid)."""
    searches, rollups = opts["searches"], opts["rollups"]
    try:
        return Config(
            inputs=inputs,
            gap=opts["gap"],
            lateness=opts["lateness"],
            max_session=opts["max_session"],
            searches=_output(searches),
            sessions=_output(opts["sessions"]),
            dead_letter=_output(opts["dead_letter"]),
            late=_output(opts["late"]),
            workers=opts["workers"],
            processes=opts["processes"],
            strict=opts["strict"],
            rollups=_output(rollups),
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
            long_click=opts["long_click"],
            short_click=opts["short_click"],
            collapse_typeahead=opts["collapse_typeahead"],
            dimensions=tuple(opts["dimensions"]),
            currency=opts["currency"],
            join_timeout=opts["join_timeout"],
            read_ahead={"auto": None, "on": True, "off": False}[opts["read_ahead"]],
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
    from .demo import run_demo

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
    help="Start of the simulated traffic (ISO 8601, UTC if no offset); not with --rate.",
)
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="How many days the traffic spans; not with --rate.",
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
    help="Live traffic at about this many events per second, each stamped with the "
    "wall-clock time it is sent (users come back about hourly: more users for a higher "
    "rate); default: as fast as possible, from --start.",
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
@click.option(
    "--conversions",
    type=click.FloatRange(0, 1),
    default=0.12,
    show_default=True,
    help="Chance that a clicked search leads to a conversion (a results page without a "
    "click converts 8 times less often); 0 for none. Example: --conversions 0.2",
)
@click.option(
    "--typeahead",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Share of searches typed as you go: keystroke requests for growing prefixes of "
    "the query, 100-600 ms apart, come first; 0 for none. Example: --typeahead 0.3",
)
@click.option(
    "--variants",
    default=None,
    metavar="A,B[,...]",
    help="Split users (by a hash of seed and user) into these variants, written as "
    "`variant` on their app_open and search events. Example: --variants A,B",
)
@click.option(
    "--effect",
    type=float,
    default=0.0,
    show_default=True,
    help="How much higher the second variant's true CTR is (the true CTR is 0.5 without "
    "one). Example: --variants control,treatment --effect 0.02",
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
    conversions: float,
    typeahead: float,
    variants: str | None,
    effect: float,
) -> None:
    """Write deterministic, realistic search traffic as JSON Lines.

    \b
    Example:
      search-sessions simulate --events 1000000 --users 10000 --seed 7 \\
          --disorder 30 --duplicates 0.01 --bad 0.001 --output events.jsonl
      search-sessions simulate --events 100000 --rate 500 --output kafka://localhost:9092/events
      search-sessions simulate --typeahead 0.3 --conversions 0.2 --output events.jsonl
      search-sessions simulate --typeahead 0 --conversions 0 --output plain.jsonl
      search-sessions simulate --events 400000 --users 4000 --variants A,B --effect 0.02 \\
          --output ab.jsonl

    Each user clicks a search (typed in full; keystroke requests never) with their own
    propensity, mean 0.5; with --variants the second variant's is higher by --effect,
    so its true CTR (the expected share of full-query searches with a click) is
    0.5 + effect, and its zero-result rate is unchanged. --effect is between -0.2 and 0.13.
    """
    try:
        begin = datetime.fromisoformat(start)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {start!r}", param_hint="--start") from None
    if begin.tzinfo is None:
        begin = begin.replace(tzinfo=UTC)
    from .simulate import SimSpec, live_users, write

    try:
        spec = SimSpec(
            events=events,
            users=users,
            seed=seed,
            start=begin.astimezone(UTC),
            days=days,
            disorder=disorder,
            duplicates=duplicates,
            bad=bad,
            conversions=conversions,
            typeahead=typeahead,
            variants=tuple(v.strip() for v in variants.split(",")) if variants else (),
            effect=effect,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if rate is not None:
        from click.core import ParameterSource

        ctx = click.get_current_context()
        for name in ("start", "days"):
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
                raise click.UsageError(
                    f"--{name} does not go with --rate: live traffic starts now and "
                    "lasts about --events / --rate seconds"
                )
        if (needed := live_users(spec, rate)) > users:
            click.echo(
                f"simulate: {rate:,g} events/s with each user back about hourly takes "
                f"{needed:,} users; simulating that many",
                err=True,
            )
    from .connectors.registry import prepare_output

    prepare_output(output)
    n = write(spec, output, rate)
    if scheme_of(output) is not Scheme.STDIO:
        click.echo(f"wrote {n:,} events to {output}", err=True)


@main.command()
@click.argument("searches", nargs=-1, required=True)
@click.option(
    "--by",
    required=True,
    metavar="NAME",
    help="The dimension whose values are compared (a --dimension of the run, or a field).",
)
@click.option("--control", default=None, help="The control value (default: the first, sorted).")
@click.option(
    "--expected-split",
    default=None,
    metavar="A=0.5,B=0.5",
    help="Expected shares of users per value for the sample-ratio check (default: even).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def compare(
    searches: tuple[str, ...],
    by: str,
    control: str | None,
    expected_split: str | None,
    as_json: bool,
) -> None:
    """Compare CTR, conversion rate, MRR and zero-result rate between the values of a
    dimension (an A/B test's variants), with user-level 95% intervals, differences to
    the control with p-values, a sample-ratio-mismatch check and the minimum detectable
    CTR difference.

    SEARCHES are a run's search records: JSON Lines (.gz too), Parquet, or the SQLite
    database of `run --searches sqlite:///PATH.db`.

    \b
    Example:
      search-sessions simulate --users 4000 --events 400000 --variants A,B --effect 0.02 \\
          --output ab.jsonl
      search-sessions run ab.jsonl --dimension variant --collapse-typeahead 2s \\
          --searches out/searches.jsonl
      search-sessions compare out/searches.jsonl --by variant
      search-sessions compare out/db.sqlite --by variant --control B --expected-split A=0.5,B=0.5
      search-sessions compare out/searches.parquet --by platform --json
    """
    from .compare import compare_files, parse_split, render_table

    try:
        split = parse_split(expected_split) if expected_split else None
        result, read = compare_files(searches, by, control, split)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except SearchSessionsError as exc:
        raise click.ClickException(str(exc)) from None
    skipped = read - sum(v["searches"] for v in result["variants"])
    if skipped:
        click.echo(f"left out {skipped:,} of {read:,} searches without a {by}", err=True)
    click.echo(json.dumps(result) if as_json else render_table(result))


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
@click.option(
    "--compare-by",
    default="variant",
    show_default=True,
    metavar="NAME",
    help="Add an A/B section comparing this dimension's values, when the searches carry it.",
)
def report(inputs: tuple[str, ...], output: str, min_sample: int, compare_by: str) -> None:
    """Write a self-contained HTML report from a run's outputs.

    INPUT is a searches JSONL file (a sessions file may follow) or a SQLite
    database written by `run`.

    \b
    Example:
      search-sessions run events.jsonl --searches out/searches.jsonl --sessions out/sessions.jsonl
      search-sessions report out/searches.jsonl out/sessions.jsonl --output out/report.html

    With `run --dimension NAME`, the report has a breakdown table per dimension, and an
    A/B section for `--compare-by` (default `variant`).
    """
    parent = os.path.dirname(output)
    if parent:
        os.makedirs(parent, exist_ok=True)
    from .report import write_report

    data = write_report(list(inputs), output, min_sample, compare_by)
    click.echo(f"wrote {output} ({len(data.searches):,} searches)", err=True)
    click.echo(os.path.abspath(output))


if __name__ == "__main__":
    sys.exit(main())
