#!/usr/bin/env bash
# Usage upload benchmark: 100,000 and 1,000,000 records pushed by `csm usage upload` (release
# build) through a fresh journal to a local `csm serve marketplace`, on loopback.
# Reports wall time, records per second and peak RSS of the uploader (and of the stand-in),
# and the 1M/100k ratios measured in the same run. Not part of `cargo test`.
#
#   scripts/bench-usage.sh            # 100k and 1M
#   SIZES="100000" scripts/bench-usage.sh
#   ORDER=instance scripts/bench-usage.sh   # input sorted by instance instead of by hour
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"100000 1000000"}
cargo build --release --quiet
BIN=$PWD/target/release/csm
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# A fixed clock: every window below lies inside the 21-day limit.
export CSM_NOW=2026-01-31T00:00:00Z
export CSM_CONFIG_DIR=$WORK
unset CSM_ACCESS_KEY CSM_JOURNAL CSM_MARKETPLACE_ENDPOINT CSM_PROFILE
printf 'bench-usage-key-0b2fb39a' > "$WORK/key"

# ORDER=time (default): hour after hour, every instance in each hour, as hourly reports come.
# ORDER=instance: instance after instance, every hour of each (a bulk backfill).
ORDER=${ORDER:-time}
gen() { # N FILE: 400 hourly windows, N/400 instances, no metering_sn (csm derives it)
  awk -v n="$1" -v order="$ORDER" 'BEGIN {
    print "instance_id,begin_time,end_time,usage_value";
    ninst = n / 400;
    for (i = 0; i < n; i++) {
      if (order == "instance") { w = i % 400; inst = int(i / 400) }
      else { w = int(i / ninst); inst = i % ninst }
      d = 10 + int(w / 24); h = w % 24;
      printf "inst-%06d,202601%02dT%02d0000Z,202601%02dT%02d5959Z,%d.%04d\n",
        inst, d, h, d, h, (i % 97) + 1, (i * 37) % 10000;
    }
  }' > "$2"
}

peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

declare -A SECS RSS SRSS
echo "input order: $ORDER"
for n in $SIZES; do
  gen "$n" "$WORK/in-$n.csv"
  rm -f "$WORK"/market-"$n".sqlite* "$WORK"/journal-"$n".sqlite*
  "$BIN" serve marketplace --listen 127.0.0.1:0 --key-file "$WORK/key" \
    --state "$WORK/market-$n.sqlite" > "$WORK/server-$n.out" &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q listening "$WORK/server-$n.out" 2>/dev/null && break; sleep 0.05; done
  base=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/server-$n.out")
  /usr/bin/time -f '%e %M' -o "$WORK/time-$n" \
    "$BIN" usage upload "$WORK/in-$n.csv" --journal "$WORK/journal-$n.sqlite" \
    --key-file "$WORK/key" --endpoint "$base" -q
  SRSS[$n]=$(peak_kb "$SERVER_PID")
  held=$(sqlite3 "$WORK/market-$n.sqlite" 'SELECT count(*) FROM usage_records' 2>/dev/null || echo "?")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  read -r secs kb < "$WORK/time-$n"
  SECS[$n]=$secs; RSS[$n]=$kb
  awk -v n="$n" -v s="$secs" -v kb="$kb" -v skb="${SRSS[$n]}" -v held="$held" 'BEGIN {
    printf "%8d records: %6.2f s, %9.0f records/s, uploader peak RSS %6.1f MB, stand-in %6.1f MB, held %s\n",
      n, s, n / s, kb / 1024, skb / 1024, held }'
done

set -- $SIZES
if [ $# -ge 2 ]; then
  a=$1; b=${!#}
  awk -v a="$a" -v b="$b" -v sa="${SECS[$a]}" -v sb="${SECS[$b]}" -v ra="${RSS[$a]}" -v rb="${RSS[$b]}" 'BEGIN {
    printf "ratio %d/%d records: time x%.2f (linear would be x%.1f), records/s x%.2f, uploader peak RSS x%.2f\n",
      b, a, sb / sa, b / a, (b / sb) / (a / sa), rb / ra }'
fi
