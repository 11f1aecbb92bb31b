# bench/lib.sh — shared by the benches (bash; sourced, not run).
#
# Owns what every bench needs around the thing it measures: the tools
# (installed from Debian when missing), loopback ports, a pvd with a
# throw-away data directory, an nginx peer with a throw-away config, a
# user with a token, wrk output parsing, an RSS sampler, and cleanup on
# any exit. Everything listens on 127.0.0.1 only, and every load that a
# bench starts is bounded in time (wrk -d, curl --max-time, sampler cap).
#
# Environment a caller may set:
#   PVD          the pvd binary (default build/bin/pvd, built with make)
#   BENCH_KEEP=1 keep the temp directories (pvd and nginx logs) afterwards
#   BENCH_CACHE  where generated test images are kept between runs
#                (default build/bench)
#   BENCH_PVD_ARGS  more pvd arguments for every start, split on spaces
#                (e.g. "--set workers=1"), to try a setting

# shellcheck disable=SC2034  # variables set here are read by the benches
set -u
set -o pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PVD=${PVD:-$BENCH_ROOT/build/bin/pvd}
BENCH_CACHE=${BENCH_CACHE:-$BENCH_ROOT/build/bench}
BENCH_PASSWORD='bench-password-1'

# ---------------------------------------------------------------- messages

bench_log() { printf '%s\n' "$*" >&2; }
bench_die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools

# bench_need PKG... — installs the Debian packages that are missing (a
# dpkg-query check first, so a second run costs nothing).
bench_need()
{
    local p s missing=""
    for p in "$@"; do
        s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$s" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
    done
    [ -z "$missing" ] && return 0
    # nginx: any flavour that gives the binary and the DAV module will do.
    if [ "$missing" = " nginx-light" ] && command -v nginx >/dev/null; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || bench_die "missing packages:$missing (run as root, or apt-get install$missing)"
    bench_log "bench: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || bench_die "apt-get update failed"
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
        bench_die "apt-get install$missing failed"
}

bench_need_all() { bench_need nginx-light wrk curl procps python3 ffmpeg openssl; }

# ---------------------------------------------------------------- temp dirs, cleanup

BENCH_TMP=""
BENCH_PIDS=()         # background jobs of ours to end on exit (by pid)
BENCH_NGINX_PIDS=()

# bench_tmp — makes the run's temp directory once; it is then $BENCH_TMP
# (call it directly, not in $(...), so the name sticks).
bench_tmp()
{
    if [ -z "$BENCH_TMP" ]; then
        BENCH_TMP=$(mktemp -d /tmp/pvbench.XXXXXX) || bench_die "mktemp failed"
    fi
}

# bench_forget PID — a job of ours has been waited for: never signal its
# pid again (it may belong to some other process by then).
bench_forget()
{
    local i
    for i in "${!BENCH_PIDS[@]}"; do
        [ "${BENCH_PIDS[$i]}" = "$1" ] && unset "BENCH_PIDS[$i]"
    done
    for i in "${!BENCH_NGINX_PIDS[@]}"; do
        [ "${BENCH_NGINX_PIDS[$i]}" = "$1" ] && unset "BENCH_NGINX_PIDS[$i]"
    done
    return 0
}

bench_cleanup()
{
    local p
    for p in "${BENCH_PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    for p in "${BENCH_NGINX_PIDS[@]:-}"; do
        [ -n "$p" ] && kill -QUIT "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    [ -n "${PVD_PID:-}" ] && pvd_stop
    if [ -n "$BENCH_TMP" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
        rm -rf "$BENCH_TMP"
    elif [ -n "$BENCH_TMP" ]; then
        bench_log "bench: kept $BENCH_TMP"
    fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
bench_tmp

# ---------------------------------------------------------------- ports

# bench_port VAR — puts into VAR a TCP port free on 127.0.0.1 right now
# (the kernel's pick), never one handed out earlier in this run. (Sets a
# variable rather than printing, so the record of used ports sticks.)
BENCH_PORTS_USED=" "
bench_port()
{
    local p i
    for i in 1 2 3 4 5 6 7 8; do
        p=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])') || bench_die "cannot pick a port"
        case "$BENCH_PORTS_USED" in *" $p "*) continue ;; esac
        BENCH_PORTS_USED="$BENCH_PORTS_USED$p "
        printf -v "$1" '%s' "$p"
        return 0
    done
    bench_die "cannot pick a fresh port"
}

# ---------------------------------------------------------------- pvd

# pvd_build — the release binary (make decides whether anything changed;
# BENCH_NO_BUILD=1 takes the binary as it is).
pvd_build()
{
    if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
        make -s -C "$BENCH_ROOT" build/bin/pvd >/dev/null || bench_die "make build/bin/pvd failed"
    fi
    [ -x "$PVD" ] || bench_die "no pvd binary at $PVD"
}

# pvd_start NAME [--set k=v ...] — starts pvd on the data directory NAME
# under the temp dir (fresh the first time, reused by a later start with
# the same NAME, so users and tokens survive a restart) and waits until
# /readyz answers 200 (at most 30 s).
# Sets PVD_PID, PVD_DATA, PVD_LOG, PVD_HTTPS_PORT, PVD_HTTP_PORT, PVD_URL.
pvd_start()
{
    local name=$1 i code
    shift
    bench_tmp
    PVD_DATA=$BENCH_TMP/$name-data
    PVD_STARTS=$((${PVD_STARTS:-0} + 1))
    PVD_LOG=$BENCH_TMP/$name-pvd.$PVD_STARTS.log
    bench_port PVD_HTTPS_PORT
    bench_port PVD_HTTP_PORT
    PVD_URL=https://127.0.0.1:$PVD_HTTPS_PORT
    mkdir -p "$PVD_DATA"
    # shellcheck disable=SC2086  # BENCH_PVD_ARGS is split on purpose
    "$PVD" --data "$PVD_DATA" --https "127.0.0.1:$PVD_HTTPS_PORT" \
        --http "127.0.0.1:$PVD_HTTP_PORT" --admin-socket "$PVD_DATA/admin.sock" \
        "$@" ${BENCH_PVD_ARGS:-} >"$PVD_LOG" 2>&1 &
    PVD_PID=$!
    for i in $(seq 1 300); do
        if ! kill -0 "$PVD_PID" 2>/dev/null; then
            tail -20 "$PVD_LOG" >&2
            PVD_PID=""
            bench_die "pvd exited at start (log above)"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            "http://127.0.0.1:$PVD_HTTP_PORT/readyz" 2>/dev/null || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    tail -20 "$PVD_LOG" >&2
    bench_die "pvd not ready after 30 s (log above)"
}

# pvd_stop — SIGTERM, then SIGKILL after 20 s (pvd's grace period is
# 15 s). A stop that takes over 2 s (no client is left by then) is
# reported, with the log lines that say why.
pvd_stop()
{
    local i rc
    [ -n "${PVD_PID:-}" ] || return 0
    kill -TERM "$PVD_PID" 2>/dev/null
    for i in $(seq 1 200); do
        kill -0 "$PVD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PVD_PID" 2>/dev/null; then
        bench_log "bench: pvd did not stop in 20 s after SIGTERM; killing it"
        kill -KILL "$PVD_PID" 2>/dev/null
    elif [ "$i" -gt 20 ]; then
        bench_log "bench: pvd took $((i / 10)) s to stop after SIGTERM:"
        grep -v '"msg":"request"' "$PVD_LOG" | tail -3 >&2
    fi
    wait "$PVD_PID" 2>/dev/null
    rc=$?
    [ "$rc" = 0 ] || bench_log "bench: pvd exited with status $rc (log: $PVD_LOG)"
    PVD_PID=""
}

# pvd_rss_kb — the current VmRSS of pvd in kB.
pvd_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PVD_PID/status" 2>/dev/null; }

# pvd_errors — warn/error lines pvd logged, counted (a sign of trouble);
# pvd_show_errors — the first few of them, indented, for a bench's output.
pvd_errors() { grep -c '"level":"\(warn\|error\)"' "$PVD_LOG" 2>/dev/null || true; }
pvd_show_errors()
{
    grep '"level":"\(warn\|error\)"' "$PVD_LOG" 2>/dev/null | head -5 | cut -c1-300 | sed 's/^/     /'
}

# pvd_thread_ticks OUT — CPU ticks (user+system, 1/100 s) of each pvd
# thread, "tid ticks" a line; pvd_busy_threads A B SECONDS — the threads
# that used more than 10 % of a core between two such snapshots, as
# "tid:percent" words, busiest first (shows how the work spread).
pvd_thread_ticks()
{
    local t
    for t in /proc/"$PVD_PID"/task/*; do
        printf '%s %s\n' "${t##*/}" "$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)"
    done | sort >"$1"
}
pvd_busy_threads()
{
    join "$1" "$2" | awk -v s="$3" -v hz="$(getconf CLK_TCK)" '{p = 100 * ($3 - $2) / hz / s}
        p > 10 {printf "%d %s:%.0f%%\n", p, $1, p}' | sort -rn | cut -d' ' -f2 | tr '\n' ' '
}

# bench_busy — how busy the machine was over one second (percent of all
# cores), before a bench adds its own load: other work skews the figures.
bench_busy()
{
    local a b
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; p = 0; if (t > 0) p = 100 * (y[1] - x[1]) / t; printf "%.0f%%\n", p}'
}

# ---------------------------------------------------------------- API helpers

# api METHOD PATH [curl args...] — prints the body, then the status on its
# own last line.
api()
{
    local m=$1 p=$2
    shift 2
    curl -sk --max-time 120 -X "$m" -w '\n%{http_code}' "$@" "$PVD_URL$p"
}

json_get() { python3 -c 'import json,sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$1"; }

# bench_user EMAIL — signs up and logs in; sets BENCH_TOKEN.
bench_user()
{
    local email=$1 out code
    out=$(api POST /api/v1/auth/signup -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"$BENCH_PASSWORD\"}")
    code=${out##*$'\n'}
    [ "$code" = 201 ] || bench_die "signup $email: HTTP $code: ${out%$'\n'*}"
    out=$(api POST /api/v1/auth/login -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"$BENCH_PASSWORD\"}")
    code=${out##*$'\n'}
    [ "$code" = 200 ] || bench_die "login $email: HTTP $code: ${out%$'\n'*}"
    BENCH_TOKEN=$(printf '%s' "${out%$'\n'*}" | json_get access_token) ||
        bench_die "login $email: no access_token in the answer"
}

# bench_upload FILE — POSTs one JPEG as the bench user; prints the status.
bench_upload()
{
    curl -sk --max-time 300 -o /dev/null -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $BENCH_TOKEN" -H 'Content-Type: image/jpeg' \
        -H 'Expect:' -T "$1" "$PVD_URL/api/v1/photos"
}

# ---------------------------------------------------------------- nginx

# nginx_start NAME PORT CERT KEY SERVER_BODY — nginx with 2 workers on
# 127.0.0.1:PORT over TLS (the same protocol versions, suites and groups as
# pvd's src/tls.c), no access log, keep-alive unbounded in requests; the
# server block's own directives come in SERVER_BODY (may use $NGINX_DIR).
# Sets NGINX_DIR and NGINX_PID. Waits until the port answers (10 s).
nginx_start()
{
    local name=$1 port=$2 cert=$3 key=$4 body=$5 i
    bench_tmp
    NGINX_DIR=$BENCH_TMP/$name-nginx
    mkdir -p "$NGINX_DIR/logs" "$NGINX_DIR/tmp/body" "$NGINX_DIR/tmp/proxy" \
        "$NGINX_DIR/tmp/fastcgi" "$NGINX_DIR/tmp/uwsgi" "$NGINX_DIR/tmp/scgi"
    body=${body//\$NGINX_DIR/$NGINX_DIR}
    # Workers run as whoever runs the bench (the temp dir is private).
    local user=""
    [ "$(id -u)" = 0 ] && user="user root;"
    cat >"$NGINX_DIR/nginx.conf" <<EOF
$user
worker_processes 2;
daemon off;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 60s;
    keepalive_requests 10000000;
    client_body_temp_path $NGINX_DIR/tmp/body;
    proxy_temp_path $NGINX_DIR/tmp/proxy;
    fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
    uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
    scgi_temp_path $NGINX_DIR/tmp/scgi;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        ssl_ecdh_curve X25519:P-256:P-384;
        ssl_prefer_server_ciphers on;
        ssl_session_cache shared:pvbench:1m;
$body
    }
}
EOF
    nginx -t -q -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/logs/error.log" 2>&1 ||
        bench_die "nginx config test failed ($NGINX_DIR/nginx.conf)"
    nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/logs/error.log" \
        >"$NGINX_DIR/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    BENCH_NGINX_PIDS+=("$NGINX_PID")
    for i in $(seq 1 100); do
        kill -0 "$NGINX_PID" 2>/dev/null || bench_die "nginx exited at start: $(tail -3 "$NGINX_DIR/logs/error.log")"
        curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$port/" 2>/dev/null && return 0
        sleep 0.1
    done
    bench_die "nginx did not answer on port $port in 10 s"
}

nginx_stop()
{
    local i
    [ -n "${NGINX_PID:-}" ] || return 0
    kill -QUIT "$NGINX_PID" 2>/dev/null
    for i in $(seq 1 100); do
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$NGINX_PID" 2>/dev/null
    wait "$NGINX_PID" 2>/dev/null
    bench_forget "$NGINX_PID"
    NGINX_PID=""
}

# tls_cipher PORT — the protocol and suite that a default OpenSSL client
# (like wrk's) gets, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384 ecdsa".
tls_cipher()
{
    local out
    out=$(timeout 5 openssl s_client -connect "127.0.0.1:$1" -brief </dev/null 2>&1)
    printf '%s %s\n' \
        "$(printf '%s\n' "$out" | sed -n 's/^Protocol version: *//p')" \
        "$(printf '%s\n' "$out" | sed -n 's/^Ciphersuite: *//p')"
}

# ---------------------------------------------------------------- wrk

# wrk_run OUT ARGS... — runs wrk (its own -d bounds it; timeout as a
# backstop) and keeps its output in OUT.
wrk_run()
{
    local out=$1
    shift
    timeout 120 wrk "$@" >"$out" 2>&1 || bench_log "bench: wrk exited $? ($out)"
}

# wrk_rps OUT — requests per second; wrk_p99 OUT — p99 latency in ms;
# wrk_bad OUT — non-2xx answers plus socket errors; wrk_reqs OUT — total.
wrk_rps() { awk '/^Requests\/sec:/ {printf "%.0f\n", $2}' "$1"; }
wrk_p99() { wrk_pct "$1" 99%; }
wrk_p50() { wrk_pct "$1" 50%; }
wrk_pct()
{
    awk -v want="$2" '$1 == want && NF == 2 {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
        printf "%.2f\n", v; exit }' "$1"
}
wrk_reqs() { awk '/requests in/ {print $1; exit}' "$1"; }
wrk_bad()
{
    awk '/Non-2xx or 3xx responses:/ {n += $NF}
         /Socket errors:/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10}
         END {print n + 0}' "$1"
}

# ratio A B — A/B with two decimals ("n/a" when B is 0 or empty).
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'; }

# ---------------------------------------------------------------- RSS sampler

# rss_sampler_start PID OUT MAX_SECONDS — samples VmRSS (kB) every 50 ms
# into OUT until stopped, the process ends, or MAX_SECONDS pass.
rss_sampler_start()
{
    python3 - "$1" "$2" "$3" <<'EOF' &
import sys, time
pid, out, cap = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + cap
with open(out, "w") as f:
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/status") as st:
                for line in st:
                    if line.startswith("VmRSS:"):
                        f.write(f"{time.monotonic():.3f} {line.split()[1]}\n")
                        f.flush()
                        break
        except OSError:
            break
        time.sleep(0.05)
EOF
    RSS_SAMPLER_PID=$!
    BENCH_PIDS+=("$RSS_SAMPLER_PID")
}

rss_sampler_stop()
{
    [ -n "${RSS_SAMPLER_PID:-}" ] || return 0
    kill "$RSS_SAMPLER_PID" 2>/dev/null
    wait "$RSS_SAMPLER_PID" 2>/dev/null
    bench_forget "$RSS_SAMPLER_PID"
    RSS_SAMPLER_PID=""
}

# rss_peak_kb OUT — the highest sample.
rss_peak_kb() { awk '$2 > m {m = $2} END {print m + 0}' "$1"; }

mb() { awk -v k="${1:-0}" 'BEGIN {printf "%.1f\n", k / 1024}'; }

# ---------------------------------------------------------------- test images

# bench_small_jpegs N — N different small JPEGs (640x480 frames of
# testsrc2, whose clock and moving parts make every frame different) in
# $BENCH_CACHE/small/; made once and kept. Sets SMALL_JPEGS (a directory).
bench_small_jpegs()
{
    local n=$1 d=$BENCH_CACHE/small
    SMALL_JPEGS=$d
    [ -f "$d/done.$n" ] && return 0
    rm -rf "$d" && mkdir -p "$d"
    ffmpeg -v error -y -f lavfi -i "testsrc2=s=640x480:r=1" -frames:v "$n" -q:v 3 \
        "$d/p%02d.jpg" || bench_die "ffmpeg could not make the small test images"
    touch "$d/done.$n"
}

# bench_big_jpegs N — N different ~20 MB JPEGs, 6000x4000 (24 MP, a common
# camera size), testsrc2 under heavy noise with a different seed each, at
# ffmpeg's best JPEG quality: different bytes and pixels, so that no upload
# is a duplicate and pvd decodes every one. Each is made once (about 2 s,
# two at a time) and kept in $BENCH_CACHE/big/. Sets BIG_JPEGS (a directory).
bench_big_jpegs()
{
    local n=$1 d=$BENCH_CACHE/big i f pids=() made=0
    BIG_JPEGS=$d
    mkdir -p "$d"
    for i in $(seq 1 "$n"); do
        f=$d/$(printf 'big%02d.jpg' "$i")
        [ -s "$f" ] && continue
        [ $made = 0 ] && bench_log "bench: making ~20 MB test JPEGs in $d (once)"
        made=1
        # to a temp name first: an interrupted run leaves no half image
        ffmpeg -v error -y -f lavfi \
            -i "testsrc2=s=6000x4000:d=1,noise=alls=50:allf=u:all_seed=$((i * 7919))" \
            -frames:v 1 -q:v 1 -qmin 1 -f mjpeg "$f.part" && mv "$f.part" "$f" &
        pids+=($!)
        if [ ${#pids[@]} = 2 ]; then wait "${pids[@]}"; pids=(); fi
    done
    [ ${#pids[@]} = 0 ] || wait "${pids[@]}"
    for i in $(seq 1 "$n"); do
        [ -s "$d/$(printf 'big%02d.jpg' "$i")" ] || bench_die "ffmpeg could not make the big test images"
    done
}
