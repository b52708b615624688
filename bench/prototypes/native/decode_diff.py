"""Differential check of the prototype's event decoding against the Python core.

Decodes a JSON Lines file with the Python core's ``EventDecoder`` and with
``decode_bench dump`` (each exact parser), and compares every line: valid or not,
and the decoded tuple ``(kind, user, time_us, payload, rank, search_id)``. Without a
file it first writes ``DIR/decode-cases.jsonl``: seeded random events with every kind
of trouble (aliases, tags anywhere, repeated keys, ill-typed fields the type does not
use, integer and big-integer users, every time spelling, escapes, bad UTF-8, junk)::

    /work/main/.venv/bin/python decode_diff.py [FILE] [--count 20000] [--seed 1]

Reasons are compared too, but only counted: wording is not yet a goal (README).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from time_diff import spellings

from search_sessions.core.events import EventDecoder

TAGS = [
    "app_open",
    "search",
    "search",
    "results",
    "results",
    "click",
    "click",
    "app_close",
    "conversion",
    "purchase",
    "add_to_cart",
    "AppOpen",
    "Search",
    "Results",
    "ClickResult",
    "AppClose",
    "bogus",
    "search ",
]
WRONG = ["5", "1.5", "true", "null", "[]", "{}", '["a"]', '"s"', "-0", "[[1]]"]
# fmt: off
COMMON_TIMES = ['"2024-01-01T12:00:00Z"', '"2024-01-01T14:00:00.123456+02:00"', "1704110400",
                "1704110400.5", "1704110400123", '"2024-01-01 12:00:00"', '"1704110400"']
STRINGS = ["dogs", "caf\u00e9", "\U0001f600", "a\"b", "tab\there", "", "\\u0041", " ", "\u0000x"]
# fmt: on


def _string(rng: random.Random) -> str:
    return json.dumps(
        rng.choice(STRINGS) + str(rng.randrange(100)), ensure_ascii=rng.random() < 0.5
    )


def _user(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice([_string(rng), str(rng.randrange(10**6))])
    return rng.choice(
        [
            _string(rng),
            str(rng.randrange(10**6)),
            str(-rng.randrange(10**6)),
            "-0",
            str(rng.randrange(10**30)),
            "1" * 60,
            "1.0",
            "true",
            "null",
            "[1]",
            '"7"',
        ]
    )


def _fields(rng: random.Random, times: list[str]) -> list[tuple[str, str]]:
    tag = rng.choice(TAGS)
    time = rng.choice(times) if rng.random() < 0.3 else rng.choice(COMMON_TIMES)
    fields = [("type", json.dumps(tag)), ("user", _user(rng)), ("time", time)]
    good = {
        "query": _string(rng),
        "items": "[" + ",".join(_string(rng) for _ in range(rng.randrange(4))) + "]",
        "item": _string(rng),
        "rank": str(rng.randrange(-1, 12)),
        "search_id": rng.choice([_string(rng), "null"]),
        "value": rng.choice(["24.5", "3", "null", "1e308"]),
        "currency": rng.choice(['"USD"', '"eur"', "null"]),
        "kind": rng.choice(['"purchase"', "null"]),
    }
    for name, value in good.items():
        if rng.random() < 0.7:
            fields.append((name, rng.choice(WRONG) if rng.random() < 0.04 else value))
    if rng.random() < 0.3:
        fields.append((rng.choice(["platform", "x", "type2", "Type"]), rng.choice(WRONG)))
    if rng.random() < 0.08:  # a repeated key: the last one counts
        fields.append(rng.choice(fields))
    if rng.random() < 0.05:
        fields.remove(rng.choice(fields))
    rng.shuffle(fields) if rng.random() < 0.3 else None
    return fields


def _line(rng: random.Random, times: list[str]) -> bytes:
    fields = _fields(rng, times)
    sep = rng.choice([",", ", ", " ,\t"])
    keys = {"type": '"\\u0074ype"'} if rng.random() < 0.03 else {}
    text = "{" + sep.join(f"{keys.get(k, json.dumps(k))}:{v}" for k, v in fields) + "}"
    raw = text.encode()
    trouble = rng.random()
    if trouble < 0.02:
        raw = raw[: rng.randrange(len(raw))]
    elif trouble < 0.03:
        raw = raw.replace(b"}", b"\xff}", 1)
    elif trouble < 0.04:
        raw += rng.choice([b" x", b"\r", b" ", b"}", b"\x0c"])
    elif trouble < 0.045:
        raw = rng.choice([b"", b"   ", b"[1,2]", b'"text"', b"null", b"{}", b"\x00"])
    return raw


def write_cases(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    times = spellings(3000, seed)
    lines = [_line(rng, times) for _ in range(count)]
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def python_rows(path: Path) -> dict[int, list]:
    """Each line as the Python core decodes it (the file reader keeps newlines)."""
    decoder = EventDecoder(part=0)
    rows: dict[int, list] = {}
    with path.open("rb") as f:
        for seq, line in enumerate(f, 1):
            try:
                ev = decoder.decode(line, seq)
            except Exception as exc:  # a Python core bug (README): the run would abort
                rows[seq] = [seq, None, f"python raised {type(exc).__name__}"]
                continue
            if isinstance(ev, tuple):
                t, _part, _seq, kind, user, payload, rank, sid = ev[:8]
                if isinstance(payload, tuple):
                    payload = list(payload)
                rows[seq] = [seq, kind, user, t, payload, rank, sid]
            elif not line.isspace():
                rows[seq] = [seq, None, ev]
    return rows


def rust_rows(binary: str, parser: str, path: Path) -> dict[int, list]:
    out = subprocess.run(
        [binary, "dump", "--parser", parser, str(path)], check=True, capture_output=True
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return {row[0]: row for row in rows}


WORDING: dict[tuple[str, str], tuple[str, str]] = {}


def compare(py: dict[int, list], rs: dict[int, list]) -> tuple[list, Counter]:
    differ, reasons = [], Counter()
    for seq in sorted(py.keys() | rs.keys()):
        a, b = py.get(seq), rs.get(seq)
        if a is None or b is None or (a[1] is None) != (b[1] is None):
            differ.append((seq, a, b))
        elif a[1] is None and a[2].startswith("python raised"):
            reasons[a[2]] += 1
        elif a[1] is None:
            reasons["same reason" if a[2] == b[2] else "other wording"] += 1
            if a[2] != b[2]:
                WORDING.setdefault((a[2].split(" ")[0], b[2].split(" ")[0]), (a[2], b[2]))
        elif a != b:
            differ.append((seq, a, b))
    return differ, reasons


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=str(here / "target/release/decode_bench"))
    ap.add_argument("--out", default="/tmp/native-proto")
    ap.add_argument("--wording", action="store_true", help="show reasons worded differently")
    args = ap.parse_args()
    if args.file:
        path = Path(args.file)
    else:
        path = Path(args.out) / "decode-cases.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_cases(path, args.count, args.seed)
    py = python_rows(path)
    invalid = sum(row[1] is None for row in py.values())
    print(f"{path}: {len(py)} lines, {invalid} invalid for Python")
    failed = False
    for parser in ["serde_json", "simd_json", "sonic_rs"]:
        differ, reasons = compare(py, rust_rows(args.bin, parser, path))
        failed |= bool(differ)
        print(f"  {parser:<11} {len(differ)} lines differ; invalid lines: {dict(reasons)}")
        for seq, a, b in differ[:6]:
            print(
                f"    line {seq}: python={json.dumps(a)[:110]}\n{'':13}rust  ={json.dumps(b)[:110]}"
            )
    if "--wording" in sys.argv:
        for a, b in WORDING.values():
            print(f"  python: {a[:100]}\n  rust:   {b[:100]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
