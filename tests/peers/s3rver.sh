#!/bin/sh
# tests/peers/s3rver.sh — the local S3 peer for the tests (s3rver 3 with
# ListParts and AbortMultipartUpload added: see s3rver-pv.js).
#
#   s3rver.sh start DIR PORT BUCKET [WATCH_PID]
#       installs s3rver (npm ci, pinned) if it is missing, starts it on
#       127.0.0.1:PORT (0: a free port) with its data under DIR/data,
#       waits until it answers and prints the port. DIR/pid, DIR/port and
#       DIR/s3rver.log are kept there. With WATCH_PID the server exits by
#       itself when that process is gone.
#   s3rver.sh stop DIR
#       stops it (TERM, then KILL after 5 s); quiet if it is not running.
#
# Exit 0 on success; on failure a reason on stderr and exit 1.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "s3rver.sh: $*" >&2
    exit 1
}

install() {
    [ -f "$HERE/node_modules/s3rver/package.json" ] && return 0
    command -v npm >/dev/null 2>&1 || die "npm is not installed (sh tools/deps.sh test)"
    (cd "$HERE" && npm ci --no-audit --no-fund >"$1/npm.log" 2>&1) ||
        die "npm could not install s3rver (see $1/npm.log)"
}

start() {
    dir=$1 port=$2 bucket=$3 watch=${4:-}
    command -v node >/dev/null 2>&1 || die "node is not installed (sh tools/deps.sh test)"
    command -v curl >/dev/null 2>&1 || die "curl is not installed (sh tools/deps.sh test)"
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    install "$dir"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        die "already running (pid $(cat "$dir/pid"))"
    fi
    rm -f "$dir/port"
    set -- --dir "$dir/data" --port "$port" --bucket "$bucket" --port-file "$dir/port"
    [ -n "$watch" ] && set -- "$@" --watch-pid "$watch"
    # s3rver makes ListObjectsV2 continuation tokens with DES, which
    # OpenSSL 3 keeps in its legacy provider (without it: 500 on page 2)
    nohup node --openssl-legacy-provider "$HERE/s3rver-pv.js" "$@" >>"$dir/s3rver.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/pid"
    i=0
    while [ $i -lt 150 ]; do
        if [ -s "$dir/port" ]; then
            p=$(cat "$dir/port")
            if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$p/"; then
                echo "$p"
                return 0
            fi
        fi
        kill -0 "$pid" 2>/dev/null || die "s3rver exited: $(tail -n 5 "$dir/s3rver.log")"
        sleep 0.1
        i=$((i + 1))
    done
    kill "$pid" 2>/dev/null || true
    die "s3rver did not answer within 15 s (see $dir/s3rver.log)"
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
start) [ $# -ge 4 ] || die "usage: s3rver.sh start DIR PORT BUCKET [WATCH_PID]"; start "$2" "$3" "$4" "${5:-}" ;;
stop) [ $# -ge 2 ] || die "usage: s3rver.sh stop DIR"; stop "$2" ;;
*) die "usage: s3rver.sh start DIR PORT BUCKET [WATCH_PID] | stop DIR" ;;
esac
