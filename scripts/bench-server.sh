#!/usr/bin/env bash
# `csm serve merchant` against a baseline revision, both measured in the same run: requests
# per second (wrk POSTing a newInstance callback to /produce; its signature is refused with
# resultCode 000001, which is the point: the server is what is measured), then the server's
# threads and RSS while 5,000 idle connections are held open. Both binaries are release
# builds; the baseline is built in a temporary git worktree with a target dir of its own.
# Rounds alternate baseline and current so that machine noise hits both; the table gives
# medians (threads: the most seen) and the range of the per-round requests/s ratios.
# Needs wrk (apt-get install wrk) and python3. Not part of `cargo test`.
#
# Usage: scripts/bench-server.sh [BASELINE_REV]      (default 7c3bb64, the last tiny_http revision)
#   SECS=10     seconds per wrk run
#   ROUNDS=2    baseline,current pairs
#   CONNS=5000  idle connections held open (the open-files limit must allow it)
#   PIN=1       server on CPU 0 and wrk on CPU 1 (taskset), so the two do not take turns on
#               the same cores and each round measures the server, not the scheduler; PIN=0
#               lets them share every core. Needs 2 CPUs and taskset; else PIN=0.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE_REV=${1:-7c3bb64}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-5000}
PIN=${PIN:-1}
SERVER_PIN=()
CLIENT_PIN=()
WRK_THREADS=2
if [ "$PIN" = 1 ] && command -v taskset > /dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0)
  CLIENT_PIN=(taskset -c 1)
  WRK_THREADS=1
fi

if ! command -v wrk > /dev/null; then
  echo "bench-server: wrk not found; install it first: apt-get install wrk" >&2
  exit 2
fi
if ! command -v python3 > /dev/null; then
  echo "bench-server: python3 not found" >&2
  exit 2
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 200)) ]; then
  ulimit -n $((CONNS + 200)) 2> /dev/null || {
    echo "bench-server: open-files limit $(ulimit -n) is below CONNS=$CONNS (+200); raise it with ulimit -n" >&2
    exit 2
  }
fi

WORK=$(mktemp -d)
WORKTREE=
# Every process started here gets a process group of its own (setsid): stopping it stops what
# it started too (cargo's compilers), and a signal to this script is acted on at once, not
# after a build or a wrk run.
PIDS=()
spawn() { # CMD...: starts CMD in the background; its pid in LAST_PID
  setsid "$@" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
forget() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
stop() { # PID: ends a process started by spawn, and its group
  kill -- "-$1" 2> /dev/null || kill "$1" 2> /dev/null || true
  wait "$1" 2> /dev/null || true
  forget "$1"
}
run() { # CMD...: runs CMD as spawn does and waits for it; its exit status
  spawn "$@"
  local p=$LAST_PID rc=0
  wait "$p" || rc=$?
  forget "$p"
  return "$rc"
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -- "-$p" 2> /dev/null || kill "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  if [ -n "$WORKTREE" ]; then
    git -C "$ROOT" worktree remove --force "$WORKTREE" 2> /dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Keep the servers away from any profile or key in the environment.
export CSM_CONFIG_DIR=$WORK/config
mkdir -p "$CSM_CONFIG_DIR"
unset CSM_ACCESS_KEY CSM_KIT_KEY CSM_LICENSE_KEY CSM_PROFILE
head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$WORK/key"

# --- builds -------------------------------------------------------------------------------
target_dir() { # DIR: where cargo puts that tree's build output (honours CARGO_TARGET_DIR)
  (cd "$1" && cargo metadata --format-version 1 --no-deps) |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

base_sha=$(git -C "$ROOT" rev-parse --verify "$BASE_REV^{commit}")
cur_desc=$(git -C "$ROOT" describe --always --dirty)
echo "current:  $ROOT ($cur_desc)"
echo "baseline: $BASE_REV ($(git -C "$ROOT" log -1 --format='%h %s' "$base_sha" | cut -c1-80))"

echo "building current (release)..."
run env -C "$ROOT" cargo build --release --locked --quiet
cp "$(target_dir "$ROOT")/release/csm" "$WORK/csm-current"

echo "building baseline (release, in a temporary worktree)..."
WORKTREE=$WORK/baseline-src
git -C "$ROOT" worktree add --quiet --detach "$WORKTREE" "$base_sha"
run env -C "$WORKTREE" CARGO_TARGET_DIR="$WORK/baseline-target" cargo build --release --locked --quiet
cp "$WORK/baseline-target/release/csm" "$WORK/csm-baseline"

# --- helpers ------------------------------------------------------------------------------
BODY='{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}'
cat > "$WORK/post.lua" << EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF

# Sends BODY once to URL and prints the reply (status first when it is not 2xx).
cat > "$WORK/once.py" << 'EOF'
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=10).read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
EOF

# Opens N connections to HOST:PORT, sends nothing, prints "connected N" and holds them until
# killed.
cat > "$WORK/hold.py" << 'EOF'
import resource, signal, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft != resource.RLIM_INFINITY and soft < n + 100:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(n + 100, hard), hard))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect((host, port))
    socks.append(s)
print("connected", len(socks), flush=True)
while True:
    time.sleep(3600)
EOF

start_server() { # BIN OUT: starts the merchant, sets SERVER_PID and ADDR
  spawn "${SERVER_PIN[@]}" "$1" serve merchant --listen 127.0.0.1:0 --key-file "$WORK/key" -q > "$2" 2> "$2.err"
  SERVER_PID=$LAST_PID
  SERVER_ERR=$2.err
  ADDR=
  local _
  for _ in $(seq 200); do
    ADDR=$(sed -n '1s|^csm merchant listening on http://||p' "$2" 2> /dev/null)
    [ -n "$ADDR" ] && return 0
    kill -0 "$SERVER_PID" 2> /dev/null || break
    sleep 0.05
  done
  echo "bench-server: $1 did not announce its address:" >&2
  cat "$2.err" >&2
  exit 1
}

server_alive() { # fails, with what the server said, when it is gone
  kill -0 "$SERVER_PID" 2> /dev/null && return 0
  local rc=0
  wait "$SERVER_PID" 2> /dev/null || rc=$?
  echo "bench-server: the server exited (status $rc):" >&2
  cat "$SERVER_ERR" >&2
  exit 1
}

proc_field() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SERVER_PID/status"; }

# One measurement of one binary: sets REQS, THREADS, RSS (KiB) and IDLE (threads before).
measure() { # NAME
  local name=$1 out=$WORK/$1-$round
  start_server "$WORK/csm-$name" "$out.server"
  server_alive
  IDLE=$(proc_field Threads)

  # a. requests per second; check first that the callback is answered as expected.
  local reply
  reply=$(python3 "$WORK/once.py" "http://$ADDR/produce" "$BODY" 2>&1 || true)
  case $reply in
    *'"resultCode":"000001"'*) ;;
    *) echo "bench-server: $name answered $reply (expected resultCode 000001)" >&2 ;;
  esac
  run "${CLIENT_PIN[@]}" wrk -t"$WRK_THREADS" -c32 -d"${SECS}s" -s "$WORK/post.lua" "http://$ADDR/produce" > "$out.wrk"
  REQS=$(awk '/^Requests\/sec:/ {print $2}' "$out.wrk")
  if grep -q 'Non-2xx\|Socket errors' "$out.wrk"; then
    echo "bench-server: $name round $round: $(grep 'Non-2xx\|Socket errors' "$out.wrk" | tr -s ' ')" >&2
  fi

  # b. threads and RSS with CONNS idle connections open.
  spawn python3 "$WORK/hold.py" "${ADDR%:*}" "${ADDR##*:}" "$CONNS" > "$out.hold" 2>&1
  local hold=$LAST_PID
  local _
  for _ in $(seq 600); do
    grep -q '^connected' "$out.hold" && break
    kill -0 "$hold" 2> /dev/null || { echo "bench-server: holder failed:" >&2; cat "$out.hold" >&2; exit 1; }
    sleep 0.05
  done
  grep -q '^connected' "$out.hold" || { echo "bench-server: $CONNS connections not made in 30 s" >&2; exit 1; }
  # Connected on the client side may still sit in the accept queue: wait (up to 10 s) until
  # the server holds a descriptor for each, then let thread spawning settle.
  local fds
  for _ in $(seq 100); do
    server_alive
    fds=$(ls "/proc/$SERVER_PID/fd" | wc -l)
    [ "$fds" -ge "$CONNS" ] && break
    sleep 0.1
  done
  sleep 1
  server_alive
  fds=$(ls "/proc/$SERVER_PID/fd" | wc -l)
  [ "$fds" -ge "$CONNS" ] || echo "bench-server: $name holds only $fds descriptors for $CONNS connections" >&2
  THREADS=$(proc_field Threads)
  RSS=$(proc_field VmRSS)
  stop "$hold"
  stop "$SERVER_PID"
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# --- rounds -------------------------------------------------------------------------------
echo "load before: $(uptime | sed 's/.*load average/load average/')"
for ((round = 1; round <= ROUNDS; round++)); do
  for name in baseline current; do
    measure "$name"
    echo "$REQS" >> "$WORK/$name.reqs"
    echo "$THREADS" >> "$WORK/$name.threads"
    echo "$RSS" >> "$WORK/$name.rss"
    printf 'round %d %-8s %9.0f req/s  %5d threads (%d before)  RSS %6.1f MiB at %d idle connections\n' \
      "$round" "$name" "$REQS" "$THREADS" "$IDLE" "$(awk -v k="$RSS" 'BEGIN {print k / 1024}')" "$CONNS"
  done
done
echo "load after:  $(uptime | sed 's/.*load average/load average/')"

# --- table --------------------------------------------------------------------------------
# Requests/s and RSS: medians. Threads: the most seen in any round (the handler pool's
# threads live on for a while after the wrk run, so a round may or may not still hold them).
maxof() { sort -g | tail -n 1; }
b_reqs=$(median < "$WORK/baseline.reqs")
c_reqs=$(median < "$WORK/current.reqs")
b_thr=$(maxof < "$WORK/baseline.threads")
c_thr=$(maxof < "$WORK/current.threads")
b_rss=$(median < "$WORK/baseline.rss")
c_rss=$(median < "$WORK/current.rss")
# current/baseline within each round: how far the noise goes.
ratios=$(paste "$WORK/current.reqs" "$WORK/baseline.reqs" | awk '{print $1 / $2}' | sort -g)
r_lo=$(head -n 1 <<< "$ratios")
r_hi=$(tail -n 1 <<< "$ratios")
echo
echo "$ROUNDS rounds, wrk -t$WRK_THREADS -c32 -d${SECS}s, $CONNS idle connections (baseline = $BASE_REV; ${SERVER_PIN[*]:-unpinned}${CLIENT_PIN[*]:+, wrk on ${CLIENT_PIN[*]}}):"
awk -v br="$b_reqs" -v cr="$c_reqs" -v bt="$b_thr" -v ct="$c_thr" -v bm="$b_rss" -v cm="$c_rss" \
  -v lo="$r_lo" -v hi="$r_hi" -v conns="$CONNS" 'BEGIN {
  printf "%-26s %10s %10s %9s\n", "", "baseline", "current", "ratio"
  printf "%-26s %10.0f %10.0f %8.2fx   (rounds: %.2fx to %.2fx)\n", "requests/s, median", br, cr, cr / br, lo, hi
  printf "%-26s %10d %10d\n", "threads at " conns ", max", bt, ct
  printf "%-26s %10.1f %10.1f %8.2fx\n", "RSS MiB at " conns ", median", bm / 1024, cm / 1024, cm / bm
  printf "\ngoal requests/s >= 1.0x baseline: %s (%.2fx)\n", (cr >= br ? "PASS" : "MISS"), cr / br
  printf "goal <= 32 threads at %d conns: %s (%d)\n", conns, (ct <= 32 ? "PASS" : "MISS"), ct
}'
