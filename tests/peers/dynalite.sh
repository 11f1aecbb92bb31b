#!/bin/sh
# tests/peers/dynalite.sh — the local DynamoDB peer for the tests (dynalite 4,
# pinned in package.json; it checks no signature).
#
#   dynalite.sh start DIR PORT
#       installs the peers (npm ci, pinned) if dynalite is missing, starts it
#       on 127.0.0.1:PORT with its tables under DIR/data (kept across a stop
#       and a start), waits until it answers and prints the port. DIR/pid
#       and DIR/dynalite.log are kept there.
#   dynalite.sh stop DIR
#       stops it (TERM, then KILL after 5 s); quiet if it is not running.
#
# Exit 0 on success; on failure a reason on stderr and exit 1.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "dynalite.sh: $*" >&2
    exit 1
}

install() {
    [ -f "$HERE/node_modules/dynalite/package.json" ] && return 0
    command -v npm >/dev/null 2>&1 || die "npm is not installed (sh tools/deps.sh test)"
    (cd "$HERE" && npm ci --no-audit --no-fund >"$1/npm.log" 2>&1) ||
        die "npm could not install dynalite (see $1/npm.log)"
}

start() {
    dir=$1 port=$2
    command -v node >/dev/null 2>&1 || die "node is not installed (sh tools/deps.sh test)"
    command -v curl >/dev/null 2>&1 || die "curl is not installed (sh tools/deps.sh test)"
    case "$port" in '' | 0 | *[!0-9]*) die "PORT: a port number above 0" ;; esac
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    install "$dir"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        die "already running (pid $(cat "$dir/pid"))"
    fi
    nohup node "$HERE/node_modules/dynalite/cli.js" --host 127.0.0.1 --port "$port" \
        --createTableMs 50 --deleteTableMs 50 --path "$dir/data" >>"$dir/dynalite.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/pid"
    i=0
    while [ $i -lt 150 ]; do
        # any answer will do (400 without a target): it listens
        if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
            echo "$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "dynalite exited: $(tail -n 5 "$dir/dynalite.log")"
        sleep 0.1
        i=$((i + 1))
    done
    kill "$pid" 2>/dev/null || true
    die "dynalite did not answer within 15 s (see $dir/dynalite.log)"
}

stop() {
    dir=$1
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    rm -f "$dir/pid"
    kill "$pid" 2>/dev/null || return 0
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ $i -ge 50 ]; then
            kill -9 "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
}

case "${1:-}" in
start) [ $# -ge 3 ] || die "usage: dynalite.sh start DIR PORT"; start "$2" "$3" ;;
stop) [ $# -ge 2 ] || die "usage: dynalite.sh stop DIR"; stop "$2" ;;
*) die "usage: dynalite.sh start DIR PORT | stop DIR" ;;
esac
