#!/bin/sh
# Everything in README.md, in one go: data, checks, differentials, measurements.
# Usage: sh run_all.sh [DIR]   (DIR defaults to /tmp/native-proto)
set -eu
cd "$(dirname "$0")"
DIR=${1:-/tmp/native-proto}
PY=/work/main/.venv/bin/python
mkdir -p "$DIR"
cargo build --release
BIN=target/release/decode_bench
[ -f "$DIR/sim.jsonl" ] || /work/main/.venv/bin/search-sessions simulate --events 1000000 \
    --users 10000 --seed 1 --typeahead 0 --conversions 0 --output "$DIR/sim.jsonl"
[ -f "$DIR/independent.jsonl" ] || $PY ../../independent.py --output "$DIR/independent.jsonl"
uptime
for f in sim independent; do $BIN check "$DIR/$f.jsonl"; done
for u in auto s ms us ns; do $PY time_diff.py --unit "$u" --out "$DIR" || true; done
$PY time_diff.py --parser jiff --out "$DIR" | head -1 || true
$PY decode_diff.py --out "$DIR" || true
for f in sim independent; do $PY decode_diff.py "$DIR/$f.jsonl"; done
for f in sim independent; do
    $BIN bench --floors --repeat 3 "$DIR/$f.jsonl"
    $PY bench_python.py --repeat 3 "$DIR/$f.jsonl"
done
uptime
