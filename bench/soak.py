"""Soak test: `make soak` (not part of `make test`).

Live traffic (``search-sessions simulate --rate``) flows for ``--minutes`` into a
topic of several partitions on a real Kafka-protocol broker (Tansu, as the tests
start it), read live by a 2-process ``search-sessions run`` with a recovery
directory. Every ``--kill-every`` seconds one process of the run, chosen at random
(the parent or one of its cluster processes), gets ``kill -9``; once the whole run
has stopped, the same command starts again. When the producer is done the run is
stopped with SIGTERM and restarted once more with ``--stop-at-end``, so it reads to
the end of the topic and finishes as a file does. The outputs must then equal, as
multisets of records, those of a batch run on a dump of the topic.

Printed and written as the "Soak" section of ``bench/RESULTS.md``: events produced,
kills, time to resume after each kill (restart to events read again, and to the
watermark lag back to normal), peak RSS of the run's processes, whether the outputs
matched.

    python bench/soak.py --minutes 10 --rate 1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLI = [sys.executable, "-m", "search_sessions.cli"]
TOPIC = "search-events"
LATENESS_S = 60.0  # run's default --lateness: a caught-up run's lag is about this
NORMAL_LAG_S = LATENESS_S + 10.0  # lag back under this: caught up after a restart


@dataclass
class Incarnation:
    """One start of the run command, and what became of it."""

    proc: subprocess.Popen[bytes]
    started: float
    log: Path
    base_events: float | None = None  # events read, at the first scrape
    resumed: float | None = None  # when more events had been read
    caught_up: float | None = None  # when the lag was back to normal
    peak_mb: float = 0.0  # the largest process's peak RSS


@dataclass
class Kill:
    at: float  # seconds since the soak started
    who: str
    stopped_s: float  # kill to the whole run gone
    how: str  # what the run did about it
    peak_mb: float  # the killed run's largest process, at its peak
    restart: Incarnation | None = None

    def resume_s(self) -> float | None:
        """Restart to events read again."""
        r = self.restart
        return None if r is None or r.resumed is None else r.resumed - r.started

    def catch_up_s(self) -> float | None:
        """Restart to the watermark lag back to normal."""
        r = self.restart
        return None if r is None or r.caught_up is None else r.caught_up - r.started


@dataclass
class Figures:
    kills: list[Kill] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)  # while caught up
    notes: list[str] = field(default_factory=list)  # what went wrong
    load: list[float] = field(default_factory=list)  # the machine's, 1-minute average


def run_processes(pgid: int) -> dict[int, int]:
    """Live processes of a process group, and their parents (zombies left out)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, ppid, pgrp = fields[0], int(fields[1]), int(fields[2])
        if pgrp == pgid and state not in "ZX":
            found[int(entry)] = ppid
    return found


def scrape(ports: list[int]) -> list[dict[str, float]] | None:
    """Each process's metrics, or None while one does not answer."""
    out = []
    for port in ports:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read()
        except OSError:
            return None
        values = {}
        for line in body.decode().splitlines():
            if line.startswith("search_sessions_"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        out.append(values)
    return out


class Soak:
    def __init__(self, args: argparse.Namespace, broker: str, work: Path) -> None:
        self.args = args
        self.broker = broker
        self.work = work
        self.rng = random.Random(args.seed)
        from tests.kafka_broker import free_port

        port = free_port()
        while not all(_port_free(p) for p in (port, port + 1)):
            port = free_port()
        self.ports = [port, port + 1]
        self.figures = Figures()
        self.t0 = time.monotonic()
        self.runs = 0

    def command(self, *extra: str) -> list[str]:
        live = self.work / "live"
        return [
            *CLI,
            "run",
            f"kafka://{self.broker}/{TOPIC}",
            "--processes",
            "2",
            "--recovery-dir",
            str(self.work / "recovery"),
            "--searches",
            str(live / "searches.jsonl"),
            "--sessions",
            str(live / "sessions.jsonl"),
            "--dead-letter",
            str(live / "dead.jsonl"),
            "--late",
            str(live / "late.jsonl"),
            "--idle-timeout",
            "30s",
            "--metrics-port",
            str(self.ports[0]),
            *extra,
        ]

    def start_run(self, *extra: str) -> Incarnation:
        self.runs += 1
        log = self.work / f"run-{self.runs}.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                self.command(*extra),
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                cwd=ROOT,
            )
        return Incarnation(proc, time.monotonic(), log)

    def sample(self, run: Incarnation) -> float | None:
        """Peak RSS of the run's processes; resume and catch-up of this start. Returns
        the events read so far, when every process answers."""
        rss = []
        for pid in run_processes(run.proc.pid):
            role = _role(pid, run.proc.pid)
            hwm = _status_kb(pid, "VmHWM") / 1024
            self.figures.peak_rss_mb[role] = max(self.figures.peak_rss_mb.get(role, 0), hwm)
            run.peak_mb = max(run.peak_mb, hwm)
            rss.append(f"{role}={_status_kb(pid, 'VmRSS') / 1024:.0f}")
        metrics = scrape(self.ports)
        now = time.monotonic()
        self.figures.load.append(os.getloadavg()[0])
        with open(self.work / "samples.log", "a") as log:
            print(f"{now - self.t0:.1f} run-{self.runs} {' '.join(rss)} {metrics}", file=log)
        if metrics is None:
            return None
        events = sum(m.get("search_sessions_events_in_total", 0) for m in metrics)
        lags = [m.get("search_sessions_watermark_lag_seconds", math.nan) for m in metrics]
        lag = max(lags) if not any(math.isnan(x) for x in lags) else math.nan
        if run.base_events is None:
            run.base_events = events
        elif run.resumed is None and events > run.base_events:
            run.resumed = now
        if run.resumed is not None and run.caught_up is None and lag <= NORMAL_LAG_S:
            run.caught_up = now
        if run.caught_up is not None and not math.isnan(lag):
            self.figures.lags.append(lag)
        return events

    def kill_one(self, run: Incarnation) -> Kill:
        """``kill -9`` one process of the run at random and see what the rest do."""
        victim = self.rng.choice(sorted(run_processes(run.proc.pid)))
        who = _role(victim, run.proc.pid)
        searches = self.work / "live" / "searches.jsonl"
        size = searches.stat().st_size if searches.exists() else 0
        at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while run_processes(run.proc.pid) and time.monotonic() < at + 30:
            run.proc.poll()
            time.sleep(0.05)
        kill = Kill(at - self.t0, who, time.monotonic() - at, "", run.peak_mb)
        left = run_processes(run.proc.pid)
        if not left:
            code = _exit_text(run.proc.wait())
            kill.how = f"the run exited ({code}) {kill.stopped_s:.1f} s later"
        elif run.proc.poll() is None:
            kill.how = "the run carried on (no restart)"
        else:
            roles = Counter(_role(pid, run.proc.pid) for pid in left)
            grew = searches.stat().st_size - size
            kill.how = (
                f"the parent gone, {', '.join(f'{n} {r}' for r, n in roles.items())} still "
                f"running 30 s later (searches output {grew:+,} bytes meanwhile); "
                f"{self.restart_beside_orphans()}; then killed them (-9)"
            )
            os.killpg(run.proc.pid, signal.SIGKILL)
            while run_processes(run.proc.pid):
                time.sleep(0.05)
        return kill

    def restart_beside_orphans(self) -> str:
        """What the same command does while the killed run's processes still run."""
        trial = self.start_run()
        try:
            code = trial.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(trial.proc.pid, signal.SIGKILL)
            trial.proc.wait()
            return "a restart meanwhile was NOT refused (it ran beside them; killed)"
        said = [ln for ln in trial.log.read_text().splitlines() if "error" in ln.lower()]
        why = said[-1][:160] if said else "-"
        return f"a restart meanwhile was refused ({_exit_text(code)}: {why})"

    def live_phase(self, producer: subprocess.Popen[bytes]) -> Incarnation:
        """Kills and restarts while the producer runs; returns the run then going."""
        run = self.start_run()
        every = self.args.kill_every
        next_kill = self.t0 + every
        while producer.poll() is None:
            self.sample(run)
            if time.monotonic() >= next_kill:
                kill = self.kill_one(run)
                if run.proc.poll() is not None:
                    run = kill.restart = self.start_run()
                self.figures.kills.append(kill)
                print(f"{kill.at:6.0f} s  kill -9 {kill.who}: {kill.how}", flush=True)
                # Each start gets at least half a period before the next kill.
                next_kill = max(next_kill + every, time.monotonic() + every / 2)
            time.sleep(0.2)
        return run

    def finish(self, run: Incarnation) -> tuple[float, float]:
        """Let the run catch up, stop it (SIGTERM), then read to the end of the topic
        (``--stop-at-end``); returns how long the two took."""
        deadline = time.monotonic() + 120
        before = None
        while time.monotonic() < deadline:
            events = self.sample(run)
            if events is not None and events == before and run.caught_up is not None:
                break
            before = events
            time.sleep(1.0)
        t = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        code = run.proc.wait(120)
        stopped = time.monotonic() - t
        if code != 0:
            self.figures.notes.append(f"SIGTERM: the run ended with {_exit_text(code)}")
        t = time.monotonic()
        last = self.start_run("--stop-at-end")
        while last.proc.poll() is None:
            self.sample(last)
            time.sleep(0.2)
        if last.proc.returncode != 0:
            tail = last.log.read_text().splitlines()[-1:]
            self.figures.notes.append(f"the --stop-at-end run failed: {tail}")
        return stopped, time.monotonic() - t


def _role(pid: int, parent: int) -> str:
    """The command itself, the filter behind its standard streams (which closes its
    own descriptors 0-2), or a process of the cluster."""
    if pid == parent:
        return "parent"
    return "cluster process" if os.path.exists(f"/proc/{pid}/fd/1") else "stream filter"


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _status_kb(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def create_topic(broker: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker})
    for f in admin.create_topics([NewTopic(TOPIC, num_partitions=partitions)]).values():
        f.result(10)


def dump_topic(broker: str, partitions: int, path: Path) -> int:
    """Every message of the topic, one line each, into ``path``; returns how many."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": "soak-dump",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(partitions)])
    n, eof = 0, set[int]()
    with open(path, "wb") as out:
        while len(eof) < partitions:
            for m in c.consume(1000, timeout=2):
                err = m.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition() or 0)
                elif err is not None:
                    raise SystemExit(f"reading the topic back: {err}")
                else:
                    out.write((m.value() or b"") + b"\n")
                    n += 1
    c.close()
    return n


def batch_run(dump: Path, out: Path) -> str:
    """The batch answer: the dump sorted by event time, one process; its summary."""
    out.mkdir(parents=True, exist_ok=True)
    args = ["--searches", str(out / "searches.jsonl"), "--sessions", str(out / "sessions.jsonl")]
    args += ["--dead-letter", str(out / "dead.jsonl"), "--late", str(out / "late.jsonl")]
    done = subprocess.run(
        [*CLI, "run", str(dump), "--order", "sort", *args], capture_output=True, check=True
    )
    return [ln for ln in done.stderr.decode().splitlines() if ln.startswith("events read")][-1]


def records(path: Path) -> Counter[str]:
    """The records of a JSON Lines output, as a multiset (keys sorted; a dead letter's
    source left out)."""
    lines = path.read_bytes().splitlines() if path.exists() else []
    out: Counter[str] = Counter()
    for line in lines:
        rec = json.loads(line)
        if "reason" in rec:
            rec.pop("source", None)
        out[json.dumps(rec, sort_keys=True)] += 1
    return out


def compare(live: Path, batch: Path) -> dict[str, dict[str, int]]:
    """Per output: records in each, those only live has (one twice counts once) or
    only the batch has, and live's repeats. Dead letters are compared by their reason
    and record (their source names a topic offset live, a file line in the batch)."""
    result = {}
    for name in ("searches", "sessions", "late", "dead"):
        a, b = records(live / f"{name}.jsonl"), records(batch / f"{name}.jsonl")
        result[name] = {
            "live": sum(a.values()),
            "batch": sum(b.values()),
            "only_live": sum((a - b).values()),
            "only_batch": sum((b - a).values()),
            "repeated_live": sum(n - 1 for n in a.values() if n > 1),
        }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=10.0, help="how long traffic flows")
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--kill-every", type=float, default=60.0, help="seconds between kills")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep everything here (default: a temporary directory)")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"), help="'none' to not write")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.kafka_broker import broker

    with ExitStack() as stack:
        work = Path(args.workdir or stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        address = stack.enter_context(broker())
        create_topic(address, args.partitions)
        soak = Soak(args, address, work)
        report = soak_run(soak, address, work)
    print(report)
    if args.results != "none":
        write_section(Path(args.results), report)
        print(f"wrote the Soak section of {args.results}")


def soak_run(soak: Soak, address: str, work: Path) -> str:
    args = soak.args
    events = int(args.rate * args.minutes * 60)
    simulate = [*CLI, "simulate", "--events", str(events), "--rate", f"{args.rate:g}"]
    simulate += ["--seed", str(args.seed), "--disorder", "5", "--duplicates", "0.005"]
    simulate += ["--bad", "0.001", "--output", f"kafka://{address}/{TOPIC}"]
    with open(work / "simulate.log", "wb") as err:
        producer = subprocess.Popen(simulate, stderr=err, stdout=subprocess.DEVNULL, cwd=ROOT)
        run = soak.live_phase(producer)
    said = (work / "simulate.log").read_text()
    wrote = re.search(r"wrote ([\d,]+) events", said)
    produced = int(wrote.group(1).replace(",", "")) if wrote else -1
    if producer.returncode != 0:
        soak.figures.notes.append(f"simulate failed: {said.strip().splitlines()[-1]}")
    print(f"producer done: {said.strip().splitlines()[-1]}; catching up", flush=True)
    ending = soak.finish(run)
    dumped = dump_topic(address, args.partitions, work / "dump.jsonl")
    batch = batch_run(work / "dump.jsonl", work / "batch")
    final_log = (work / f"run-{soak.runs}.log").read_text().splitlines()
    final = [ln for ln in final_log if ln.startswith("events read")] or ["-"]
    result = compare(work / "live", work / "batch")
    return render(soak, (produced, dumped), ending, result, (final[-1], batch))


def render(
    soak: Soak,
    produced: tuple[int, int],
    ending: tuple[float, float],
    result: dict[str, dict[str, int]],
    summaries: tuple[str, str],
) -> str:
    """The "Soak" section: what ran, the figures, each kill."""
    args, fig = soak.args, soak.figures
    kills = fig.kills
    resumed = [x for k in kills if (x := k.resume_s()) is not None]
    caught = [x for k in kills if (x := k.catch_up_s()) is not None]
    equal = all(r["only_live"] == r["only_batch"] == 0 for r in result.values())
    who = Counter(k.who for k in kills)
    lines = [
        "## Soak",
        "",
        f"Written by `make soak` (`bench/soak.py`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"({platform.machine()}, {os.cpu_count()} cores). For {args.minutes:g} minutes, "
        f"`search-sessions simulate --rate {args.rate:g} --disorder 5 --duplicates 0.005 "
        f"--bad 0.001` produced live into a {args.partitions}-partition topic on a "
        "Tansu broker, read live by `search-sessions run kafka://... --processes 2 "
        "--recovery-dir DIR "
        "--idle-timeout 30s` (searches, sessions, dead letters and late events to files). "
        f"Every {args.kill_every:g} s one process of the run, chosen at random, got "
        "`kill -9`, and once the whole run had stopped (what still ran 30 s later was "
        "killed too) the same command started again. At "
        "the end the run was stopped with SIGTERM and started once more with "
        "`--stop-at-end` (read to the end offsets, then finish as a file does), and its "
        "outputs were compared, as multisets of records, with those of a batch run "
        "(`run --order sort`) on a dump of the topic.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| events produced (dumped from the topic) | {produced[0]:,} ({produced[1]:,}) |",
        f"| the machine's load (1-minute average) | {_spread(fig.load, '')} |",
        f"| kills | {len(kills)} ({', '.join(f'{n} {w}' for w, n in sorted(who.items()))}) |",
        f"| resume: restart to events read again | {_spread(resumed)} |",
        f"| catch-up: restart to watermark lag under {NORMAL_LAG_S:.0f} s | {_spread(caught)} |",
        f"| watermark lag once caught up (lateness {LATENESS_S:.0f} s) | {_spread(fig.lags)} |",
        f"| SIGTERM to stopped; last run (`--stop-at-end`) | {ending[0]:.1f} s; "
        f"{ending[1]:.1f} s |",
        "| peak RSS | "
        + ", ".join(f"{role} {mb:.0f} MB" for role, mb in sorted(fig.peak_rss_mb.items()))
        + " |",
    ]
    for name, r in result.items():
        what = "dead letters (without their source)" if name == "dead" else name
        # The invalid records are a dozen kinds, so dead letters repeat in both.
        repeats = "" if name == "dead" else f", repeated live {r['repeated_live']:,}"
        lines.append(
            f"| {what}: live / batch | {r['live']:,} / {r['batch']:,} (only live "
            f"{r['only_live']:,}, only batch {r['only_batch']:,}{repeats}) |"
        )
    lines += [
        f"| **outputs equal** | **{'yes' if equal else 'NO'}** |",
        "",
        f"Last run's summary: `{summaries[0]}`  ",
        f"Batch run's summary: `{summaries[1]}`",
        "",
        *(f"**{note}**  " for note in fig.notes),
        *([""] if fig.notes else []),
        "| kill at | process | peak RSS before | what the run did | resumed after | "
        "caught up after |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for k in kills:
        lines.append(
            f"| {k.at:.0f} s | {k.who} | {k.peak_mb:.0f} MB | {k.how} | "
            f"{_seconds(k.resume_s())} | {_seconds(k.catch_up_s())} |"
        )
    return "\n".join(lines) + "\n"


def _seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} s"


def _spread(xs: list[float], unit: str = " s") -> str:
    if not xs:
        return "-"
    return f"median {statistics.median(xs):.1f}{unit}, max {max(xs):.1f}{unit} (n={len(xs)})"


def write_section(path: Path, section: str, heading: str = "## Soak") -> None:
    """Replace the ``heading`` section of ``path`` (up to the next "## "), or append it."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find(f"\n{heading}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + section + ("" if end < 0 else text[end:])
    path.write_text(text)


if __name__ == "__main__":
    main()
