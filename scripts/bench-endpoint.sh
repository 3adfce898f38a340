#!/usr/bin/env bash
# Whole-process time of `csm test-endpoint --demo` (release build), then the in-process
# benchmark with its ratio summary (csm callback vs raw HTTP round trip, full demo run).
# Usage: scripts/bench-endpoint.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
cargo build --release --quiet
start=$(date +%s%N)
for ((i = 0; i < runs; i++)); do target/release/csm -q test-endpoint --demo > /dev/null; done
end=$(date +%s%N)
echo "csm test-endpoint --demo (process, release): $(( (end - start) / runs / 1000000 )) ms per run over $runs runs"
cargo bench --bench endpoint -- --noplot 2>/dev/null | grep -v '^$'
