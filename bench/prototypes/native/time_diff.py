"""Differential check of the prototype's time rules against the Python core.

Writes time spellings (the raw JSON of a ``time`` field: strings and numbers, valid
and not) one per line, reads each as the Python core does (msgspec for the JSON, then
``search_sessions.core.time.parse_time``), runs ``decode_bench times`` on the same
file and compares line by line::

    /work/main/.venv/bin/python time_diff.py [--count 12000] [--seed 1]
        [--bin target/release/decode_bench] [--parser mirror|jiff] [--out DIR]

Exit status 1 when any line differs; mismatches go to ``DIR/time-mismatches.txt``.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Union

import msgspec

from search_sessions.core.events import time_values
from search_sessions.core.time import BadTime, parse_time

# fmt: off
DATES = [
    "2024-01-01", "2024-02-29", "2023-02-29", "1900-02-29", "2000-02-29", "1970-01-01",
    "0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31", "0000-01-01", "2024-13-01",
    "2024-00-10", "2024-01-00", "2024-01-32", "2024-04-31", "20240101", "20241301",
    "2024-W01", "2024W01", "2024-W01-1", "2024W011", "2024-W53-1", "2020-W53-7",
    "2026-W53-1", "2024-W00-1", "2024-W01-0", "2024-W01-8", "2024-w01-1", "0000-W52-7",
    "0000-W01-1", "0001-W01-1", "9999-W52-5", "9999-W52-6", "2024-001", "2024001",
    "2024-1-01", "24-01-01", "2024/01/01", "2024-01", "202401", "2024-0101", "202401-01",
    "\uff12\uff10\uff12\uff14-01-01", "2024-W01-", "2024-W1-1", "2024W0112",
]
SEPARATORS = [
    "T", "T", "T", "t", " ", "_", "X", "\u00e9", "\u2003", "\U0001f600", "", "1", "-", "\x00", "W",
]
CLOCKS = [
    "", "00", "12", "1200", "12:00", "12:0", "120000", "12:00:00", "12:00:00.5",
    "12:00:00,5", "12:00:00.123", "12:00:00.123456", "12:00:00.1234567",
    "12:00:00.1234565999", "12:00:00.", "12:00:00:123", "120000123", "24:00", "23:59:60",
    "23:60", "12:00:00.12a", "12:00:00.1234567x", "1:00", "12:00:00.000000001",
    "23:59:59.999999", "12:00:00.1234567\x00", "12:00\x00", "12:00\x00x", "12:00.5",
    "12.5", "1200.5", "12:0000", "1200:00",
]
OFFSETS = [
    "", "", "Z", "Z", "z", "+00:00", "-00:00", "+02:00", "+02:00", "-05:30", "+0200", "+02",
    "+2", "+020", "+02:0", "+02:00:30", "+02:00:30.5", "+023015.25", "+00:00:00.5",
    "-00:00:00.000001", "+00:00:01.5", "-00:00:01.5", "+23:59", "+23:59:59.999999",
    "+24:00", "-24:00", "+99:00", "+00:99", "+02:00Z", "Z+02:00", "ZZ", " Z", "+02:00 ",
    "+02:00\x00", "+02:00:30,25", "+02:00.5", "-0530", "+14:00",
]
NUMBER_TEXTS = [
    " 1700000000 ", "1700000000\n", "+1700000000", "-1700000000", "1.7e9", "1.7E+9",
    ".5", "5.", "1_000", "0x10", "1e", "e5", "--1", "\u0661\u0667" + "\u0660" * 8,
    "\u00a01700000000\u00a0", "\u001c5", "5\u001f", "1e309", "1" * 400, "1" * 40, "-0",
    "0.0", "1700000000123", "1700000000123456", "1700000000123456789",
    "\uff11\uff17\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff10", "1.5e-7", "20240101",
    "2024010112", "+", ".", "1e+", "1.5.5", " ", "", "\u20281\u2029", "1 2",
    "99999999999", "100000000000", "253402041600", "253402214400",
]
INTS = [
    0, 1, -1, 1_700_000_000, 10**11 - 1, 10**11, 10**14 - 1, 10**14, 10**17 - 1, 10**17,
    1_700_000_000_123_456_789, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 123_456_789_012_345_678_901,
    253_402_041_600_000_000_000, 253_402_041_600_000_000_999, 253_402_041_600_000_001_000,
    -62_135_510_400_000_000_000, -62_135_510_400_000_001_000, 10**40, -(10**40), 2**127,
    2**128, 253_402_041_600, 253_402_041_601, -62_135_510_400, -62_135_510_401,
]
RAW_NUMBERS = [
    "-0", "-0.0", "1E9", "1e400", "-1e400", "0.1e-400", "1700000000.0000005", "0.5e-6",
    "2.5e-6", "1.0000005", "1700000000.5", "99999999999.9", "1.7e12", "1.7e15", "1.7e18",
    "2.5e20", "2.6e20", "1e11", "1e14", "1e17", "253402041600.0", "253402041600.000001",
    "1" * 4300, "1" * 4301, "-" + "1" * 4300, "true", "null", "[]", "{}", '"x"', "1.5e-6",
    "0.0000015", "-1.5e-6", "2.5", "3.5", "1e-7", "1e305", "-1.7e308",
]
# fmt: on
MUTATION_CHARS = [*"0123456789-:.,TZW+ zwt", "\u00e9", "\x00", "\u2003"]


def _spell(rng: random.Random) -> str:
    date = rng.choice(DATES)
    if rng.random() < 0.15:
        return date
    return date + rng.choice(SEPARATORS) + rng.choice(CLOCKS) + rng.choice(OFFSETS)


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 2)):
        op = rng.random()
        i = rng.randrange(len(chars) + 1)
        if op < 0.35 and chars:
            del chars[min(i, len(chars) - 1)]
        elif op < 0.7:
            chars.insert(i, rng.choice(MUTATION_CHARS))
        elif chars:
            chars[min(i, len(chars) - 1)] = rng.choice(MUTATION_CHARS)
    return "".join(chars)


def spellings(count: int, seed: int) -> list[str]:
    """Raw JSON texts of ``time`` values: fixed edge cases, then random spellings and
    mutations of them, then random epoch numbers around the unit boundaries."""
    rng = random.Random(seed)
    texts: list[str] = [str(i) for i in INTS] + RAW_NUMBERS
    strings = list(NUMBER_TEXTS)
    strings += [d + "T12:00:00" + o for d in DATES[:12] for o in OFFSETS]
    strings += ["2024-01-01" + s + c for s in SEPARATORS for c in CLOCKS]
    while len(strings) + len(texts) < count * 0.75:
        s = _spell(rng)
        strings.append(_mutate(rng, s) if rng.random() < 0.35 else s)
    for s in strings:
        texts.append(json.dumps(s, ensure_ascii=rng.random() < 0.5))
    while len(texts) < count:
        scale = 10 ** rng.choice([9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20])
        if rng.random() < 0.5:
            texts.append(str(rng.randrange(-scale, scale)))
        else:
            texts.append(repr(rng.uniform(-scale, scale) * rng.choice([1, 1e-3, 1e-6])))
    return texts


_DECODE = msgspec.json.Decoder(Union[str, int, float])


def python_reading(raw: str, unit: str) -> str:
    """The Python core's microseconds for a raw ``time`` value, ``invalid``, or
    ``error:<exception>`` when it raises something it does not catch."""
    try:
        value = _DECODE.decode(raw.encode())
    except (msgspec.DecodeError, ValueError):
        return "invalid"
    try:
        us = parse_time(value, unit)
    except BadTime:
        us = None
    except Exception as exc:  # the core does not catch these: report them
        return f"error:{type(exc).__name__}"
    try:
        hot = time_values([value], unit)[0]
    except Exception as exc:
        return f"error:{type(exc).__name__}"
    if hot != us:
        return f"error:hot path {hot} != parse_time {us}"
    return "invalid" if us is None else str(us)


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=str(here / "target/release/decode_bench"))
    ap.add_argument("--parser", default="mirror")
    ap.add_argument("--unit", default="auto")
    ap.add_argument("--out", default="/tmp/native-proto")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts = spellings(args.count, args.seed)
    path = out / "times.jsonl"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    expected = [python_reading(t, args.unit) for t in texts]
    run = subprocess.run(
        [args.bin, "times", "--parser", args.parser, "--unit", args.unit, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    got = run.stdout.splitlines()
    assert len(got) == len(texts), (len(got), len(texts))
    bad = [(t, e, g) for t, e, g in zip(texts, expected, got, strict=True) if e != g]
    valid = sum(e not in ("invalid",) and not e.startswith("error") for e in expected)
    report = out / f"time-mismatches-{args.parser}-{args.unit}.txt"
    report.write_text("".join(f"{t}\tpython={e}\trust={g}\n" for t, e, g in bad), encoding="utf-8")
    print(
        f"{len(texts)} spellings ({valid} valid for Python), unit {args.unit}, "
        f"parser {args.parser}: {len(bad)} differ (listed in {report})"
    )
    for t, e, g in bad[:15]:
        print(f"  {t[:60]!s:<62} python={e:<22} rust={g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
