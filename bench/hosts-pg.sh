#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the hosts load test (issue 16, item 4), on 127.0.0.1 only.
#
#   bash bench/hosts-pg.sh start    # prints the URL to pass as `hosts --pg-url`
#   bash bench/hosts-pg.sh stop     # stops it and deletes its files
#
# Why: the full test is 50 agent processes and 4 approver processes, each with a LISTEN connection and a query
# connection (approvers a decide connection too): 112 connections, more than PostgreSQL's default `max_connections`
# of 100, which the machine's own server keeps. This cluster is the same PostgreSQL with the same durability
# (`fsync` on, `synchronous_commit` on, `wal_sync_method` fdatasync, 128 MB of shared buffers: the defaults, as on
# the machine's server) and one change, `max_connections` 300. It lives under $HOST_PG_DIR
# (/tmp/agentguard-hosts-pg) and listens on $HOST_PG_PORT (5433); it touches nothing of the machine's server.
# $HOST_PG_OPTIONS adds server options for a diagnosis, e.g. "-c shared_preload_libraries=pg_stat_statements".
set -euo pipefail

DIR="${HOST_PG_DIR:-/tmp/agentguard-hosts-pg}"
PORT="${HOST_PG_PORT:-5433}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$BIN/initdb" ] || { echo "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (Debian's postgresql package)" >&2; exit 1; }

# initdb refuses to run as root: as root, run the server as the postgres user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
  start)
    if [ -f "$DIR/data/postmaster.pid" ]; then
      as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
      -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300 ${HOST_PG_OPTIONS:-}" start >/dev/null
    psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtc "CREATE DATABASE test" >/dev/null
    psql -h 127.0.0.1 -p "$PORT" -U postgres -d test -qAtc \
      "SELECT 'started: ' || version() || ', max_connections ' || current_setting('max_connections')" >&2
    echo "postgres://postgres@127.0.0.1:$PORT/test"
    ;;
  stop)
    if [ -f "$DIR/data/postmaster.pid" ]; then
      as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null
    fi
    rm -rf "$DIR"
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
