#!/usr/bin/env bash
# Soak run of `speck run` (BENCHMARKS.md): a looped file source, two MJPEG clients attached,
# RSS sampled every 10 s. Stops at FRAMES frames, or at SECONDS (SIGINT, clean summary).
# Usage: scripts/soak.sh [FRAMES] [SECONDS]   (needs a release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
frames="${1:-10000}"
limit="${2:-0}"
bin="${CARGO_TARGET_DIR:-target}/release/speck"
out="${SOAK_OUT:-/tmp/speck-soak}"
mkdir -p "$out"
port=18089
"$bin" run --source examples/data/clip.mp4 --loop --max-frames "$frames" \
    --serve "127.0.0.1:$port" --json --stats-every 30 >"$out/summary.json" 2>"$out/stderr.log" &
pid=$!
sleep 3
curl -s "http://127.0.0.1:$port/stream.mjpg" >/dev/null &
c1=$!
curl -s "http://127.0.0.1:$port/stream.mjpg" >/dev/null &
c2=$!
start=$(date +%s)
: >"$out/rss.log"
while kill -0 "$pid" 2>/dev/null; do
    echo "$(( $(date +%s) - start )) $(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null)" >>"$out/rss.log"
    if [ "$limit" -gt 0 ] && [ $(( $(date +%s) - start )) -ge "$limit" ]; then
        kill -INT "$pid"
        break
    fi
    sleep 10
done
wait "$pid" || true
kill "$c1" "$c2" 2>/dev/null || true
echo "RSS (kB) first/last samples:"; head -2 "$out/rss.log"; tail -2 "$out/rss.log"
cat "$out/summary.json"
