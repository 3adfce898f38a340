#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests and benches of the PostgreSQL usage journal.
#
#   scripts/pg-test-cluster.sh start DIR   # prints the URL to export as CSM_TEST_POSTGRES
#   scripts/pg-test-cluster.sh stop DIR
#
# Installs the Debian package when no initdb is found (as root), creates a cluster in DIR
# (as an unprivileged user when run as root: PostgreSQL refuses to run as root), and starts
# it on a free port of 127.0.0.1 with trust authentication for user csm. Exits non-zero
# when it cannot start one. PG_SETTINGS adds server settings ("-c shared_buffers=1GB ...").
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi

find_bin() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}

# Runs a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u csmpg -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
start)
  bin=$(find_bin)
  if [ -z "$bin" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "pg-test-cluster: no initdb found and not root: install the postgresql package" >&2
      exit 1
    fi
    echo "pg-test-cluster: installing postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    bin=$(find_bin)
    [ -n "$bin" ] || { echo "pg-test-cluster: initdb still not found after install" >&2; exit 1; }
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -eq 0 ]; then
    id csmpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin csmpg
    chown csmpg "$dir"
    # The owner must reach DIR through its parents (mktemp makes them 0700 at times).
    p=$dir
    while [ "$p" != "/" ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  fi
  # A free port: ask the kernel for one, else probe upwards from a random start.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || true)
  if [ -z "$port" ]; then
    port=$((20000 + RANDOM % 20000))
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  fi
  as_owner "$bin/initdb" -D "$dir/data" -U csm -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 ${PG_SETTINGS:-}" start >&2 \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "$port" > "$dir/port"
  echo "postgres://csm@127.0.0.1:$port/postgres"
  ;;
stop)
  bin=$(find_bin)
  if [ -n "$bin" ] && [ -d "$dir/data" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
