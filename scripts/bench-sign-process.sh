#!/usr/bin/env bash
# Whole-process time of `csm sign` against `openssl dgst -sha256 -hmac` on the same input,
# measured in the same run. Usage: scripts/bench-sign-process.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-300}
cargo build --release --quiet
csm=target/release/csm
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
key=a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d
printf '%s\n' "$key" > "$tmp/key"
printf '%s' '{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}' > "$tmp/body.json"

time_runs() { # command...
  local start end
  start=$(date +%s%N)
  for ((i = 0; i < runs; i++)); do "$@" > /dev/null; done
  end=$(date +%s%N)
  echo $(( (end - start) / runs / 1000 ))
}

openssl_us=$(time_runs openssl dgst -sha256 -hmac "$key" "$tmp/body.json")
body_sign_us=$(time_runs "$csm" sign body-sign --key-file "$tmp/key" --body-file "$tmp/body.json")
v2_us=$(time_runs "$csm" sign saas-v2 --key-file "$tmp/key" --body-file "$tmp/body.json" --timestamp 1680508066618 --nonce N)
echo "runs: $runs"
echo "openssl dgst -sha256 -hmac : ${openssl_us} us/process (baseline 1.00x)"
awk -v a="$body_sign_us" -v b="$openssl_us" 'BEGIN { printf "csm sign body-sign         : %d us/process (%.2fx)\n", a, a / b }'
awk -v a="$v2_us" -v b="$openssl_us" 'BEGIN { printf "csm sign saas-v2           : %d us/process (%.2fx)\n", a, a / b }'
