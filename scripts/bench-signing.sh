#!/usr/bin/env bash
# Runs the signing benchmark and prints, per scheme, csm's sign and verify medians as ratios
# to the raw HMAC-SHA256 work over the same bytes, measured in the same run.
# Usage: scripts/bench-signing.sh [seconds of measurement per line, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jq >/dev/null || { echo "bench-signing.sh: needs jq" >&2; exit 2; }
cargo bench --bench signing -- --measurement-time "${1:-2}" >/dev/null
dir=${CARGO_TARGET_DIR:-target}/criterion
printf '%-10s %10s %10s %7s %10s %7s\n' scheme raw_ns sign_ns ratio verify_ns ratio
for g in saas-v2 kit saas-v1 body-sign usage apig; do
  median() { jq .median.point_estimate "$dir/$g/$1/new/estimates.json"; }
  awk -v g="$g" -v r="$(median raw_hmac)" -v s="$(median csm_sign)" -v v="$(median csm_verify)" \
    'BEGIN { printf "%-10s %10.0f %10.0f %6.2fx %10.0f %6.2fx\n", g, r, s, s / r, v, v / r }'
done
