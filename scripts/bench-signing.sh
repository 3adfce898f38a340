#!/usr/bin/env bash
# csm's sign and verify overhead over the raw HMAC-SHA256 work of each scheme, as ratios
# measured in the same run (interleaved rounds, median of several processes; see
# benches/signing_overhead.rs). Absolute times with criterion: cargo bench --bench signing.
# Usage: scripts/bench-signing.sh [seconds per scheme, default 2] [processes, default 5] [scheme]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --quiet --bench signing_overhead -- "${1:-2}" "${2:-5}" ${3:+"$3"}
