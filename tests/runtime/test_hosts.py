"""Two hosts: a 2-process cluster across two network namespaces joined by a veth pair.

Each process is the README's command (``--process-id I --addresses "A:P;B:P"``) started
with ``ip netns exec``, so the processes share the filesystem but talk over a real
(virtual) network, each bound to its own host's address. The outputs must equal a
one-process run. Needs root; skipped where network namespaces cannot be made.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path

import pytest

from search_sessions.simulate import SimSpec, write

from ..conftest import read_jsonl
from ..kafka_broker import tansu_binary
from ..oracle import canon

CLI = (sys.executable, "-m", "search_sessions")
# The namespaces are new, so nothing else listens on these ports there.
PORT = 2101  # Bytewax's own traffic, on each host
KAFKA_PORT = 9092  # the broker, on host a
RUN_TIMEOUT = 90.0  # seconds; a cluster that never forms fails the test, not the suite
SURVIVOR_BOUND = 10.0  # seconds for a process to stop once its peer was killed

_counter = itertools.count()


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture(scope="session")
def netns_ok() -> None:
    """Skip (once, with the reason) where network namespaces cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("two-host tests need root (network namespaces)")
    if shutil.which("ip") is None:
        pytest.skip("two-host tests need the `ip` command (iproute2)")
    probe = f"ss-probe-{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        pytest.skip(f"two-host tests: `ip netns add` failed: {made.stderr.strip()}")
    ip("netns", "del", probe, check=False)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(0.01)


def link_up(ns: str, link: str) -> bool:
    return "LOWER_UP" in ip("-n", ns, "link", "show", link).stdout


def listening(pid: int, port: int) -> bool:
    """Whether something listens on TCP ``port`` in the network namespace of ``pid``."""
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        if any(r[1].endswith(f":{port:04X}") and r[3] == "0A" for r in rows):
            return True
    return False


class Hosts:
    """Hosts ``0`` (a) and ``1`` (b): two network namespaces joined by a veth pair, on
    a /24 of their own; every process started here is killed by :meth:`close`."""

    def __init__(self, logs: Path) -> None:
        n, pid = next(_counter), os.getpid()
        self.ns = (f"ss-a-{pid}-{n}", f"ss-b-{pid}-{n}")
        self.links = (f"ssa{pid}x{n}", f"ssb{pid}x{n}")  # at most 15 characters
        net = f"10.{100 + pid % 150}.{n % 256}"
        self.ips = (f"{net}.1", f"{net}.2")
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def open(self) -> None:
        for ns in self.ns:
            ip("netns", "add", ns)
        ip("link", "add", self.links[0], "type", "veth", "peer", "name", self.links[1])
        for ns, link, addr in zip(self.ns, self.links, self.ips, strict=True):
            ip("link", "set", link, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", link)
            ip("-n", ns, "link", "set", link, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        for ns, link in zip(self.ns, self.links, strict=True):
            wait_for(partial(link_up, ns, link), 10, f"{link} up")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for ns in self.ns:
            # Anything still in the namespace was started by this test.
            for pid in ip("netns", "pids", ns, check=False).stdout.split():
                with suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.links[0], check=False)  # when it never left this namespace

    @property
    def addresses(self) -> str:
        return ";".join(f"{addr}:{PORT}" for addr in self.ips)

    def start(
        self, host: int, args: Sequence[str], name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` on ``host`` (with ``env`` added); its output goes to ``name.log``."""
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns[host], *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        self.procs.append(proc)
        return proc

    def cluster(
        self,
        args: Sequence[str],
        name: str,
        stagger: bool = False,
        env: dict[str, str] | None = None,
    ) -> list[subprocess.Popen[bytes]]:
        """``args`` as process 0 on host a and process 1 on host b; with ``stagger``,
        process 1 starts once process 0 listens."""

        def start(i: int) -> subprocess.Popen[bytes]:
            member = [*args, "--process-id", str(i), "--addresses", self.addresses]
            return self.start(i, member, f"{name}-{i}", env)

        first = start(0)
        if stagger:
            wait_for(
                lambda: listening(first.pid, PORT) or first.poll() is not None,
                RUN_TIMEOUT,
                f"{name}-0 listening",
            )
        return [first, start(1)]

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def wait(self, procs: list[subprocess.Popen[bytes]], name: str) -> list[int]:
        """Exit statuses of ``procs`` (started as ``name``), within :data:`RUN_TIMEOUT`."""
        deadline = time.monotonic() + RUN_TIMEOUT
        for i, proc in enumerate(procs):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{name}-{i} still runs:\n{self.log(f'{name}-{i}')}") from None
        return [proc.returncode for proc in procs]

    def run(self, args: Sequence[str], name: str, stagger: bool = False) -> None:
        """Run ``args`` on both hosts to the end; both must succeed."""
        codes = self.wait(self.cluster(args, name, stagger), name)
        for i, code in enumerate(codes):
            assert code == 0, f"{name}-{i} exited {code}:\n{self.log(f'{name}-{i}')}"

    def traffic(self) -> tuple[int, int]:
        """Bytes host a has sent to and received from host b."""
        out = ip("-n", self.ns[0], "-j", "-s", "link", "show", "dev", self.links[0]).stdout
        stats = json.loads(out)[0]["stats64"]
        return stats["tx"]["bytes"], stats["rx"]["bytes"]


@pytest.fixture
def hosts(netns_ok: None, tmp_path: Path) -> Iterator[Hosts]:
    h = Hosts(tmp_path)
    try:
        h.open()
        yield h
    finally:
        h.close()


def run_args(inputs: Sequence[str], out: Path, *extra: str) -> list[str]:
    """The ``run`` command with every output in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        *CLI,
        "run",
        *inputs,
        "--searches",
        str(out / "searches.jsonl"),
        "--sessions",
        str(out / "sessions.jsonl"),
        "--dead-letter",
        str(out / "dead.jsonl"),
        "--late",
        str(out / "late.jsonl"),
        "--rollup",
        "1h",
        "--rollups",
        str(out / "rollups.jsonl"),
        "--quiet",
        *extra,
    ]


OUTPUTS = ("searches", "sessions", "dead", "late")


def outputs(out: Path) -> dict[str, list[str]]:
    """Every output as a multiset of canonical JSON; for rollups (re-emitted as their
    windows fill) the last row per key."""
    for name in ("searches", "sessions", "dead", "late", "rollups"):
        data = (out / f"{name}.jsonl").read_bytes()
        assert not data or data.endswith(b"\n"), f"{name}: a half-written last line"
    got = {name: canon(read_jsonl(out / f"{name}.jsonl")) for name in OUTPUTS}
    last = {}
    for row in read_jsonl(out / "rollups.jsonl"):
        key = [row["level"], row["window"], row["window_start"], row.get("query")]
        last[json.dumps([*key, row.get("dimension"), row.get("value")])] = row
    got["rollups"] = canon(list(last.values()))
    return got


def one_process(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]


def split_by_user(src: Path, dest: Path) -> None:
    """``src`` as two files in ``dest``, every user's lines in one, the second gzipped."""
    parts: list[list[bytes]] = [[], []]
    for i, line in enumerate(src.read_bytes().splitlines(keepends=True)):
        try:
            user = str(json.loads(line).get("user"))
        except (ValueError, AttributeError):
            user = str(i)
        parts[sum(user.encode()) % 2].append(line)
    dest.mkdir()
    (dest / "part-0.jsonl").write_bytes(b"".join(parts[0]))
    (dest / "part-1.jsonl.gz").write_bytes(gzip.compress(b"".join(parts[1])))


def test_files_on_a_shared_disk(hosts: Hosts, tmp_path: Path) -> None:
    """A directory of a plain file (over one 512 KB block: read in lanes by both hosts)
    and a gzip file (read whole by one); outputs on the shared disk equal one process's."""
    log = tmp_path / "log.jsonl"
    write(
        SimSpec(
            events=20_000, users=300, seed=11, days=0.5, disorder=30, duplicates=0.01, bad=0.003
        ),
        str(log),
    )
    logs = tmp_path / "in"
    split_by_user(log, logs)
    one_process(run_args([str(logs)], tmp_path / "one"))
    want = outputs(tmp_path / "one")
    assert want["dead"] and len(want["searches"]) > 3_000

    hosts.run(run_args([str(logs)], tmp_path / "two"), "two")
    assert outputs(tmp_path / "two") == want
    # Users are spread over both hosts' workers: their events crossed the wire.
    sent, received = hosts.traffic()
    assert sent > 100_000 and received > 100_000, (sent, received)


# Run on host a: creates a topic and produces a file to it, every user's lines to one
# partition, in order.
PRODUCE = """
import json, sys, zlib
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
broker, topic, path, parts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
admin = AdminClient({"bootstrap.servers": broker})
for f in admin.create_topics([NewTopic(topic, num_partitions=parts)]).values():
    f.result(20)
p = Producer({"bootstrap.servers": broker, "linger.ms": 5})
for line in open(path, "rb").read().splitlines():
    try:
        user = str(json.loads(line).get("user"))
    except Exception:
        user = "?"
    while True:
        try:
            p.produce(topic, line, user.encode(), partition=zlib.crc32(user.encode()) % parts)
            break
        except BufferError:
            p.poll(0.1)
assert p.flush(30) == 0
"""


def test_kafka_broker_on_one_host(hosts: Hosts, tmp_path: Path) -> None:
    """A Kafka-protocol broker on host a; both hosts read the topic's 3 partitions up to
    their end offsets; the outputs equal one process's over the same topic."""
    broker = f"{hosts.ips[0]}:{KAFKA_PORT}"
    url = f"tcp://{broker}"
    tansu_args = [str(tansu_binary()), "broker", "--storage-engine", "memory://tansu/"]
    tansu = hosts.start(
        0, [*tansu_args, "--listener-url", url, "--advertised-listener-url", url], "tansu"
    )
    wait_for(lambda: listening(tansu.pid, KAFKA_PORT) or tansu.poll() is not None, 20, "tansu")
    assert tansu.poll() is None, hosts.log("tansu")
    log = tmp_path / "log.jsonl"
    write(
        SimSpec(
            events=12_000, users=200, seed=21, days=0.25, disorder=20, duplicates=0.01, bad=0.005
        ),
        str(log),
    )
    produce = hosts.start(
        0, [sys.executable, "-c", PRODUCE, broker, "events", str(log), "3"], "produce"
    )
    assert hosts.wait([produce], "produce") == [0], hosts.log("produce")

    topic = f"kafka://{broker}/events"
    # The one-process run reads from host b, over the network too.
    one = hosts.start(1, run_args([topic], tmp_path / "one", "--stop-at-end"), "one")
    assert hosts.wait([one], "one") == [0], hosts.log("one")
    want = outputs(tmp_path / "one")
    assert want["dead"] and len(want["searches"]) > 2_000

    hosts.run(run_args([topic], tmp_path / "two", "--stop-at-end"), "two")
    assert outputs(tmp_path / "two") == want


@pytest.fixture(scope="module")
def recovery_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """An input that keeps a 2-host cluster busy for a few snapshots, and one
    uninterrupted process's outputs."""
    d = tmp_path_factory.mktemp("hosts-recovery")
    log = d / "log.jsonl"
    write(
        SimSpec(events=100_000, users=1_500, seed=5, disorder=20, duplicates=0.01, bad=0.002),
        str(log),
    )
    one_process(run_args([str(log)], d / "one"))
    return log, outputs(d / "one")


@pytest.mark.parametrize("killed", [0, 1], ids=["host-a-killed", "host-b-killed"])
def test_kill_9_on_one_host_and_resume(
    hosts: Hosts, tmp_path: Path, recovery_log: tuple[Path, dict[str, list[str]]], killed: int
) -> None:
    """One host's process kills itself (kill -9) once epoch 2 is committed, while the job
    is provably unfinished (its inputs hold at their end until then: see
    search_sessions.crashpoints); the other stops by itself, with an error; the same
    commands on both hosts then finish the job as if never stopped."""
    log, want = recovery_log
    out, recovery = tmp_path / "out", tmp_path / "shared" / "state"
    args = run_args([str(log)], out, "--recovery-dir", str(recovery), "--snapshot-interval", "0.2s")
    fired = tmp_path / "crash.log"
    crash = {
        "SEARCH_SESSIONS_CRASH": f"commit:2:self@{killed}",
        "SEARCH_SESSIONS_CRASH_LOG": str(fired),
    }
    # Process 1 starts once process 0 has made the new recovery directory's store.
    procs = hosts.cluster(args, "crash", stagger=True, env=crash)
    try:
        code = procs[killed].wait(RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"crash-{killed} was not killed:\n{hosts.log(f'crash-{killed}')}"
        ) from None
    assert code == -signal.SIGKILL, hosts.log(f"crash-{killed}")
    assert f"process {killed}: commit: epoch" in fired.read_text()
    survivor = procs[1 - killed]
    try:
        code = survivor.wait(SURVIVOR_BOUND)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"process {1 - killed} still runs {SURVIVOR_BOUND:g}s after its peer was killed"
        ) from None
    assert code != 0, hosts.log(f"crash-{1 - killed}")

    hosts.run(args, "resume")
    assert outputs(out) == want
