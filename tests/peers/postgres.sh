#!/bin/sh
# tests/peers/postgres.sh — a throwaway PostgreSQL 15 cluster for the tests
# and the bench (Debian's postgresql-15 binaries; no systemd, no cluster of
# the machine's).
#
#   postgres.sh start DIR PORT [WATCH_PID]
#       initdb into DIR/data when it is not there yet (trust auth, user
#       postgres, no fsync), then starts the server on 127.0.0.1:PORT (0:
#       a free port) with its Unix socket in DIR/sock, waits until it
#       answers and prints the port. A second start reuses the data and
#       the port (DIR/port). With WATCH_PID the cluster is stopped by a
#       watchdog once that process is gone. DIR/pg.log is the server's log.
#   postgres.sh stop DIR
#       stops it (fast shutdown); quiet if it is not running.
#   postgres.sh psql DIR ARGS...
#       psql as postgres on the cluster's socket, database postgres.
#
# The server refuses to run as root: as root, every server command runs as
# the user postgres, and DIR (and its parents) must be readable by it.
# Exit 0 on success; on failure a reason on stderr and exit 1.
set -eu
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}

# as_pg CMD: runs the shell command as the server's user
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/sh -c "$1"
    else
        sh -c "$1"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    dir=$1 port=$2 watch=${3:-}
    [ -x "$BIN/initdb" ] || die "no PostgreSQL 15 server in $BIN (sh tools/deps.sh test)"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" = 0 ]; then
        chmod 755 "$dir"
        mkdir -p "$dir/sock"
        chown postgres:postgres "$dir/sock"
        touch "$dir/pg.log"
        chown postgres:postgres "$dir/pg.log"
    else
        mkdir -p "$dir/sock"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        if [ "$(id -u)" = 0 ]; then
            mkdir -p "$dir/data" && chown postgres:postgres "$dir/data"
        fi
        chmod 700 "$dir/data" 2>/dev/null || true
        as_pg "'$BIN/initdb' -D '$dir/data' -U postgres -A trust -E UTF8 --no-locale --no-sync" \
            >"$dir/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
    fi
    if [ "$port" = 0 ]; then
        if [ -s "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
    fi
    echo "$port" >"$dir/port"
    as_pg "'$BIN/pg_ctl' -D '$dir/data' -l '$dir/pg.log' -w -t 30 -o \"-k '$dir/sock' -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off\" start" \
        >"$dir/pg_ctl.log" 2>&1 || die "the server did not start: $(tail -n 5 "$dir/pg.log")"
    if [ -n "$watch" ]; then # the cluster goes when the test that started it does
        nohup sh "$0" watch "$dir" "$watch" >/dev/null 2>&1 </dev/null &
    fi
    echo "$port"
}

stop() {
    dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_pg "'$BIN/pg_ctl' -D '$dir/data' -m fast -w -t 30 stop" >/dev/null 2>&1 || true
}

watch() {
    while kill -0 "$2" 2>/dev/null && [ -f "$1/data/postmaster.pid" ]; do
        sleep 1
    done
    stop "$1"
}

case "${1:-}" in
watch) watch "$2" "$3" ;;
start) [ $# -ge 3 ] || die "usage: postgres.sh start DIR PORT [WATCH_PID]"; start "$2" "$3" "${4:-}" ;;
stop) [ $# -ge 2 ] || die "usage: postgres.sh stop DIR"; stop "$2" ;;
psql)
    [ $# -ge 2 ] || die "usage: postgres.sh psql DIR ARGS..."
    dir=$(cd "$2" && pwd)
    shift 2
    exec psql -X -q -h "$dir/sock" -p "$(cat "$dir/port")" -U postgres -d postgres "$@" ;;
*) die "usage: postgres.sh start DIR PORT [WATCH_PID] | stop DIR | psql DIR ARGS..." ;;
esac
