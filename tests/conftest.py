from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st

from search_sessions import Summary, run
from search_sessions.config import Config
from search_sessions.core.cores import NATIVE, block_events

# Test modules import pyarrow; its jemalloc background thread would keep this process
# from forking local clusters (as search_sessions.connectors.parquet sets it too).
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")

# Property tests draw the same examples on every run (so `make test` passes or fails the
# same way each time); HYPOTHESIS_PROFILE=explore draws new ones on each run.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

Records = dict[str, list[dict[str, Any]]]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_events(path: Path, events: list[dict[str, Any] | str | bytes]) -> Path:
    with open(path, "wb") as f:
        for e in events:
            if isinstance(e, dict):
                f.write(json.dumps(e).encode() + b"\n")
            elif isinstance(e, str):
                f.write(e.encode() + b"\n")
            else:
                f.write(e + b"\n")
    return path


@pytest.fixture(params=["native", "python"])
def each_core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test once with each core (the runs it starts, local clusters too, inherit it)."""
    if request.param == "native" and NATIVE is None:
        pytest.skip("the native core is not installed (no cargo at make setup)")
    monkeypatch.setenv("SEARCH_SESSIONS_CORE", request.param)
    return str(request.param)


def native_late(data: bytes) -> list[Any]:
    """The maybe-late ``(event, newest)`` pairs of a native block."""
    return [] if not data else list(NATIVE.unpack_late(data))


RunFlow = Callable[..., tuple[Records, Summary]]


def drain(part: Any, out: dict[str, Any], batches: int | None = None) -> None:
    """Read ``batches`` batches (all when None) of a source partition into ``out``:
    ``events`` (maybe-late ones included), ``dead`` (dead-letter records as dicts) and
    ``stats`` (counters summed)."""
    n = 0
    while batches is None or n < batches:
        try:
            items = part.next_batch()
        except StopIteration:
            return
        n += 1
        for key, value in items:
            if key == "dead_letter":
                out["dead"] += [json.loads(x) for x in value.splitlines()]
            elif key == "stats":
                stats = out.setdefault("stats", {})
                for k, v in value.items():
                    stats[k] = stats.get(k, 0) + v
            else:
                late = value[4]
                if isinstance(late, bytes):  # the native core's packed (event, newest) pairs
                    late = native_late(late)
                out["events"] += block_events(value[3]) + [ev for ev, _ in late]


def read_resumed(
    src: Any,
    name: str,
    out: dict[str, Any],
    resume_after: int | None = None,
    before_snapshot: Callable[[Any], None] | None = None,
) -> None:
    """Drain partition ``name`` of ``src`` into ``out`` (see :func:`drain`); with
    ``resume_after``, read that many batches, snapshot (after ``before_snapshot(part)``),
    close, and go on in a partition built from the snapshot, as a resumed run does."""
    part = src.build_part("read", name, None)
    if resume_after is not None:
        drain(part, out, resume_after)
        if before_snapshot is not None:
            before_snapshot(part)
        state = part.snapshot()
        part.close()
        part = src.build_part("read", name, state)
    drain(part, out)
    part.close()


def mutated(data: st.DataObject, line: bytes, inserts: Sequence[bytes]) -> bytes:
    """``line`` broken one to three times as real files break: one of ``inserts`` put
    in, a bit flipped, cut short, or a few bytes taken out."""
    out = bytearray(line)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(out)))
        op = data.draw(st.integers(0, 3))
        if op == 0:
            out[at:at] = data.draw(st.sampled_from(inserts))
        elif op == 1 and at < len(out):
            out[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == 2:
            del out[at:]
        else:
            del out[at : at + data.draw(st.integers(1, 4))]
    return bytes(out)


def write_parts(lines: list[bytes], n_files: int, directory: Path) -> list[Path]:
    """``lines`` cut into ``n_files`` consecutive JSON Lines files in ``directory``."""
    size = -(-len(lines) // n_files)
    paths = []
    for i in range(n_files):
        p = directory / f"p{i}.jsonl"
        p.write_bytes(b"".join(x + b"\n" for x in lines[i * size : (i + 1) * size]))
        paths.append(p)
    return paths


@pytest.fixture
def run_flow(tmp_path: Path) -> RunFlow:
    """Run the real dataflow on input files; return every output's records and the summary."""
    counter = [0]

    def _run(inputs: list[Path | str], **kw: Any) -> tuple[Records, Summary]:
        counter[0] += 1
        out = tmp_path / f"out{counter[0]}"
        out.mkdir()
        for name in ("gap", "lateness", "max_session"):
            if name in kw and not isinstance(kw[name], timedelta):
                kw[name] = timedelta(seconds=kw[name])
        cfg = Config(
            inputs=tuple(str(p) for p in inputs),
            searches=str(out / "searches.jsonl"),
            sessions=str(out / "sessions.jsonl"),
            dead_letter=str(out / "dead.jsonl"),
            late=str(out / "late.jsonl"),
            **kw,
        )
        summary = run(cfg)
        records = {
            name: read_jsonl(out / f"{name}.jsonl")
            for name in ("searches", "sessions", "dead", "late")
            if os.path.exists(out / f"{name}.jsonl")
        }
        return records, summary

    return _run
