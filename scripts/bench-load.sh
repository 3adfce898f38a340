#!/usr/bin/env bash
# `csm load` against wrk, both measured in the same run on loopback against one release-built
# `csm serve merchant`:
#   1. ceiling: `csm load --rate max` (every request a freshly generated, signed newInstance,
#      every reply judged) vs `wrk` at the same connection count POSTing one fixed unsigned
#      newInstance (refused at the signature check with resultCode 000001, as in
#      bench-server.sh). Rounds alternate wrk and csm so that machine noise hits both; the
#      table gives the medians and the csm/wrk ratio (goal: >= 0.8).
#      A third column: csm load signing with a key the merchant does not hold, so its
#      requests are refused at the signature check like wrk's, but only after the merchant
#      tried the signature over the raw body and its two re-serialisations (spec decision 2).
#      Under each round, how busy the merchant's core and the client's were in each run:
#      the one near 100% sets that column's rate. Then the merchant's CPU per request in each
#      run: with its core full in wrk's run, wrk's rate is the merchant's capacity for requests
#      it refuses at once, and no client can take csm load's past its capacity for valid
#      callbacks, so the ratio cannot pass wrk's figure over csm's (printed beside them).
#      The last line divides each round's ratio by that bound: near 1, csm load keeps the
#      merchant as busy as wrk does, and only a cheaper merchant would raise the ratio.
#   2. fixed rate: `csm load --rate R` at half csm's median ceiling; achieved/target (goal:
#      within 1%), with the corrected p99 beside it.
# Pinning: with 2 or more cores (and taskset), the merchant runs on core 0 and the load
# generator (wrk or csm) on core 1, so the two do not fight for one core and the ratio
# compares the clients, not the scheduler. PIN=0 turns it off.
# Needs wrk (apt-get install wrk), python3, a release build. Not part of `cargo test`.
#
# Usage: scripts/bench-load.sh
#   SECS=5       seconds per run
#   ROUNDS=3     wrk,csm pairs
#   CONNS=10     connections (csm load's default)
#   PIN=1        pin server and client to separate cores
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-10}
PIN=${PIN:-1}

for tool in wrk python3; do
  if ! command -v "$tool" > /dev/null; then
    echo "bench-load: $tool not found (wrk: apt-get install wrk)" >&2
    exit 2
  fi
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Keep csm away from any profile or key in the environment.
export CSM_CONFIG_DIR=$WORK/config
mkdir -p "$CSM_CONFIG_DIR"
unset CSM_ACCESS_KEY CSM_KIT_KEY CSM_LICENSE_KEY CSM_PROFILE
python3 -c 'import uuid; print(uuid.uuid4())' > "$WORK/key"
python3 -c 'import uuid; print(uuid.uuid4())' > "$WORK/other.key"

SERVER_CPU=()
CLIENT_CPU=()
pinning="none"
if [ "$PIN" = 1 ] && command -v taskset > /dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=(taskset -c 0)
  CLIENT_CPU=(taskset -c 1)
  pinning="merchant on core 0, client on core 1"
fi

echo "building csm (release)..."
(cd "$ROOT" && cargo build --release --locked --quiet)
CSM=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/csm

"${SERVER_CPU[@]}" "$CSM" serve merchant --listen 127.0.0.1:0 --key-file "$WORK/key" -q \
  > "$WORK/server.out" 2> "$WORK/server.err" &
PIDS+=($!)
ADDR=
for _ in $(seq 200); do
  ADDR=$(sed -n '1s|^csm merchant listening on http://||p' "$WORK/server.out" 2> /dev/null)
  [ -n "$ADDR" ] && break
  sleep 0.05
done
if [ -z "$ADDR" ]; then
  echo "bench-load: the merchant did not start:" >&2
  cat "$WORK/server.err" >&2
  exit 1
fi
URL="http://$ADDR/produce"
MERCHANT=${PIDS[0]}
TICKS=$(getconf CLK_TCK)
# The merchant's CPU time so far, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$MERCHANT/stat"; }
# How busy the merchant's core was over SECS since tick count $1 (near 100: the merchant,
# not the client, sets the rate).
busy() { python3 -c "print(round(100 * ($(ticks) - $1) / $TICKS / $SECS))"; }

BODY='{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}'
cat > "$WORK/post.lua" << EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF

# csm load with ARGS, --json into FILE; prints one field of the report. KEY=other.key signs
# with a key the merchant does not hold.
# One field of a csm load report: field FILE a.b
field() {
  python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    r = r[k]
print(r)' "$1" "$2"
}

load() { # FILE FIELD ARGS...
  local file=$1 name=$2
  shift 2
  # stderr is shown only when there is no report: the refused column's "every request
  # failed" note is expected.
  client "${CLIENT_CPU[@]}" "$CSM" --json -q load --endpoint "$URL" --key-file "$WORK/${KEY:-key}" \
    --activity newInstance --connections "$CONNS" "$@" > "$file" 2> "$WORK/load.err" || true
  if ! field "$file" "$name" 2> /dev/null; then
    cat "$WORK/load.err" >&2
    exit 1
  fi
}

# Runs a client, its CPU seconds (user + system) into $CPU_FILE.
CPU_FILE=$WORK/client.cpu
client() {
  python3 -c 'import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(str(r.ru_utime + r.ru_stime))
sys.exit(code)' "$CPU_FILE" "$@"
}
# How busy the client's core was over SECS.
client_busy() { python3 -c "print(round(100 * $(cat "$CPU_FILE") / $SECS))"; }

# The merchant's CPU per request since tick count $1, over $2 requests, in µs.
per_request() { python3 -c "print(round(1e6 * ($(ticks) - $1) / $TICKS / $2, 1))"; }

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "loopback, $CONNS connections, ${SECS}s runs, $ROUNDS rounds; pinning: $pinning"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
WRK=()
CSMR=()
REFUSED=()
CEILING=()
PAIRED=()
REACH=()
for round in $(seq "$ROUNDS"); do
  t=$(ticks)
  client "${CLIENT_CPU[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$WORK/post.lua" "$URL" > "$WORK/wrk-$round"
  bw=$(busy "$t")
  uw=$(per_request "$t" "$(awk '/ requests in / {print $1}' "$WORK/wrk-$round")")
  cw=$(client_busy)
  w=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk-$round")
  t=$(ticks)
  c=$(load "$WORK/csm-$round.json" rate_achieved --rate max --duration "${SECS}s")
  bc=$(busy "$t")
  uc=$(per_request "$t" "$(field "$WORK/csm-$round.json" requests)")
  cc=$(client_busy)
  failed=$(field "$WORK/csm-$round.json" failed)
  t=$(ticks)
  x=$(KEY=other.key load "$WORK/refused-$round.json" rate_achieved --rate max --duration "${SECS}s")
  bx=$(busy "$t")
  ux=$(per_request "$t" "$(field "$WORK/refused-$round.json" requests)")
  cx=$(client_busy)
  printf 'round %s: wrk %8.0f req/s   csm load %8.0f req/s (failed %s)   csm load, refused %8.0f req/s\n' \
    "$round" "$w" "$c" "$failed" "$x"
  printf '         merchant busy: %s%%, %s%%, %s%%   client busy: %s%%, %s%%, %s%%\n' \
    "$bw" "$bc" "$bx" "$cw" "$cc" "$cx"
  # With the merchant's core full in wrk's run, wrk's rate is 1 / uw and csm's at most
  # 1 / uc: however cheap the client, the ratio cannot pass uw / uc.
  ceiling=$(python3 -c "print(round($uw / $uc, 3))")
  printf '         merchant CPU per request: %s, %s, %s us (the ratio it allows: %s)\n' \
    "$uw" "$uc" "$ux" "$ceiling"
  CEILING+=("$ceiling")
  # Each round's own ratio: wrk and csm ran seconds apart, so a host that speeds up or slows
  # down between rounds moves both.
  PAIRED+=("$(python3 -c "print(round($c / $w, 3))")")
  # How close csm load came to the merchant's bound in this round (1.0: the merchant, not
  # the client, held it back).
  REACH+=("$(python3 -c "print(round($c / $w / $ceiling, 3))")")
  WRK+=("$w")
  CSMR+=("$c")
  REFUSED+=("$x")
done
mw=$(median "${WRK[@]}")
mc=$(median "${CSMR[@]}")
mx=$(median "${REFUSED[@]}")
printf 'ceiling (median): wrk %.0f req/s unsigned, csm load %.0f req/s signed: ratio %.3f (goal >= 0.8)\n' \
  "$mw" "$mc" "$(python3 -c "print($mc / $mw)")"
printf '  the rounds'"'"' own ratios: %s (median %s)\n' "${PAIRED[*]}" "$(median "${PAIRED[@]}")"
printf '  csm signed with a key the merchant does not hold (refused): %.0f req/s: ratio %.3f\n' \
  "$mx" "$(python3 -c "print($mx / $mw)")"
printf '  the ratio the merchant allows (its CPU per refused request over per valid one): %.3f\n' \
  "$(median "${CEILING[@]}")"
printf '  csm load'"'"'s share of that bound, by round: %s (median %s)\n' \
  "${REACH[*]}" "$(median "${REACH[@]}")"

target=$(python3 -c "print(max(1, int($mc / 2)))")
achieved=$(load "$WORK/fixed.json" rate_achieved --rate "$target" --duration "$((SECS * 2))s")
p99=$(field "$WORK/fixed.json" latency_ms.p99)
printf 'fixed rate: target %s/s, achieved %s/s: ratio %.4f (goal within 1%%), corrected p99 %s ms\n' \
  "$target" "$achieved" "$(python3 -c "print($achieved / $target)")" "$p99"
