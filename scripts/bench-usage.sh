#!/usr/bin/env bash
# Usage upload benchmark: records pushed by `csm usage upload` (release build) through a
# fresh journal to a local `csm serve marketplace`, on loopback, in both input orders and
# with both journals (SQLite file; PostgreSQL on a throwaway local server started by
# scripts/pg-test-cluster.sh). PostgreSQL runs twice: `postgres` on a server set up as
# PostgreSQL's documentation advises for a dedicated host (shared_buffers a quarter of the
# memory, here 2GB of 24, and max_wal_size raised with it: PG_TUNED), `postgres-stock` on
# one with the packaged defaults (128MB, 1GB). Reports wall time, records per second and peak RSS of the
# uploader (and of the stand-in), what the stand-in holds, and every run's time as a ratio
# of the first run's (the baseline, measured in the same run). Not part of `cargo test`.
#
#   scripts/bench-usage.sh                        # 1M records, both orders, both journals
#   SIZES="100000 1000000" scripts/bench-usage.sh
#   ORDERS=instance JOURNALS=sqlite scripts/bench-usage.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1000000"}
# time: hour after hour, every instance in each hour, as hourly reports come.
# instance: instance after instance, every hour of each (a bulk backfill).
ORDERS=${ORDERS:-"time instance"}
JOURNALS=${JOURNALS:-"sqlite postgres postgres-stock"}
PG_TUNED=${PG_TUNED:-"-c shared_buffers=2GB -c max_wal_size=8GB"}
# NO_BUILD=1: measure the release binary already built.
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet
BIN=$PWD/target/release/csm
WORK=$(mktemp -d)
SERVER_PID=
PG_DIRS=()
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  for d in "${PG_DIRS[@]}"; do scripts/pg-test-cluster.sh stop "$d" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A fixed clock: every window below lies inside the 21-day limit.
export CSM_NOW=2026-01-31T00:00:00Z
export CSM_CONFIG_DIR=$WORK
unset CSM_ACCESS_KEY CSM_JOURNAL CSM_MARKETPLACE_ENDPOINT CSM_PROFILE
printf 'bench-usage-key-0b2fb39a' > "$WORK/key"

# A PostgreSQL server for journal kind $1 (postgres: PG_TUNED settings; postgres-stock: none).
declare -A PG_URL
for jk in $JOURNALS; do
  case $jk in
  postgres) settings=$PG_TUNED ;;
  postgres-stock) settings= ;;
  *) continue ;;
  esac
  PG_DIRS+=("$WORK/$jk")
  PG_URL[$jk]=$(PG_SETTINGS=$settings scripts/pg-test-cluster.sh start "$WORK/$jk")
  echo "$jk: ${PG_URL[$jk]} (fsync on; settings: ${settings:-the packaged defaults})"
done

gen() { # N ORDER FILE: 400 hourly windows, N/400 instances, no metering_sn (csm derives it)
  awk -v n="$1" -v order="$2" 'BEGIN {
    print "instance_id,begin_time,end_time,usage_value";
    ninst = n / 400;
    for (i = 0; i < n; i++) {
      if (order == "instance") { w = i % 400; inst = int(i / 400) }
      else { w = int(i / ninst); inst = i % ninst }
      d = 10 + int(w / 24); h = w % 24;
      printf "inst-%06d,202601%02dT%02d0000Z,202601%02dT%02d5959Z,%d.%04d\n",
        inst, d, h, d, h, (i % 97) + 1, (i * 37) % 10000;
    }
  }' > "$3"
}

peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
BASE=
run=0
for n in $SIZES; do
  for order in $ORDERS; do
    gen "$n" "$order" "$WORK/in.csv"
    for jk in $JOURNALS; do
      run=$((run + 1))
      rm -f "$WORK"/market.sqlite* "$WORK"/journal.sqlite*
      if [ -n "${PG_URL[$jk]:-}" ]; then
        url=${PG_URL[$jk]}
        db="bench_$run"
        psql -q "$url" -c "CREATE DATABASE $db"
        journal=${url%/*}/$db
      else
        journal=$WORK/journal.sqlite
      fi
      "$BIN" serve marketplace --listen 127.0.0.1:0 --key-file "$WORK/key" \
        --state "$WORK/market.sqlite" > "$WORK/server.out" 2> "$WORK/server.err" &
      SERVER_PID=$!
      for _ in $(seq 100); do grep -q listening "$WORK/server.out" 2>/dev/null && break; sleep 0.05; done
      base=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/server.out")
      /usr/bin/time -f '%e %M' -o "$WORK/time" \
        "$BIN" usage upload "$WORK/in.csv" --journal "$journal" \
        --key-file "$WORK/key" --endpoint "$base" -q
      srss=$(peak_kb "$SERVER_PID")
      held=$(sqlite3 "$WORK/market.sqlite" 'SELECT count(*) FROM usage_records' 2>/dev/null || echo "?")
      kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
      # Gone before the next run: its autovacuum would otherwise run during that one.
      if [ -n "${PG_URL[$jk]:-}" ]; then psql -q "$url" -c "DROP DATABASE $db"; fi
      read -r secs kb < "$WORK/time"
      BASE=${BASE:-$secs}
      awk -v n="$n" -v o="$order" -v j="$jk" -v s="$secs" -v kb="$kb" -v skb="$srss" \
          -v held="$held" -v base="$BASE" 'BEGIN {
        printf "%8d records, %-8s order, %-14s journal: %6.2f s (x%.2f of the first run), %8.0f records/s, uploader peak RSS %6.1f MB, stand-in %6.1f MB, held %s\n",
          n, o, j, s, s / base, n / s, kb / 1024, skb / 1024, held }'
    done
  done
done
