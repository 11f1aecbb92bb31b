#!/bin/bash
# bench/api — JSON API throughput against nginx on the same bytes.
#
# A user with 20 photos; GET /api/v1/photos (20 items, each with presigned
# URLs, bearer token checked on every request) under wrk: TLS keep-alive,
# 2 threads, 64 connections, 10 s. The peer is nginx serving pvd's own
# answer, saved to a file, as a static file over TLS with the same
# certificate (pvd's self-signed ECDSA P-256 one), the same protocol
# versions, suites and groups, and 2 workers (pvd runs 2 HTTP loops).
# The ratio pvd/nginx is the figure of merit (target >= 0.3, aim 0.5).
#
# Environment: BENCH_API_SECONDS (10), BENCH_API_CONNS (64),
# BENCH_API_INFO=0 to skip the extra run with log_level=info.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"

SECS=${BENCH_API_SECONDS:-10}
CONNS=${BENCH_API_CONNS:-64}
NPHOTOS=20

bench_need_all
pvd_build
bench_small_jpegs "$NPHOTOS"

pvd_start api --set log_level=warn
bench_user api@bench.example
for f in "$SMALL_JPEGS"/p*.jpg; do
    code=$(bench_upload "$f")
    [ "$code" = 201 ] || bench_die "upload $f: HTTP $code"
done

# pvd's answer, as the peer will serve it.
WWW=$BENCH_TMP/api-www
mkdir -p "$WWW/api/v1"
code=$(curl -sk --max-time 10 -o "$WWW/api/v1/photos" -w '%{http_code}' \
    -H "Authorization: Bearer $BENCH_TOKEN" "$PVD_URL/api/v1/photos")
[ "$code" = 200 ] || bench_die "GET /api/v1/photos: HTTP $code"
items=$(python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))' <"$WWW/api/v1/photos")
[ "$items" = "$NPHOTOS" ] || bench_die "GET /api/v1/photos: $items items, want $NPHOTOS"
body_bytes=$(stat -c %s "$WWW/api/v1/photos")

bench_port NGINX_PORT
nginx_start api "$NGINX_PORT" "$PVD_DATA/tls/cert.pem" "$PVD_DATA/tls/key.pem" "
        root $WWW;
        default_type application/json;
        location / { }"
curl -sk --max-time 5 "https://127.0.0.1:$NGINX_PORT/api/v1/photos" | cmp -s - "$WWW/api/v1/photos" ||
    bench_die "nginx does not serve the saved answer byte for byte"

PVD_TLS=$(tls_cipher "$PVD_HTTPS_PORT")
NGINX_TLS=$(tls_cipher "$NGINX_PORT")

OUT=$BENCH_TMP/api-wrk
mkdir -p "$OUT"
# A second of warm-up for each server (handshakes, caches), not counted.
warm() { wrk_run "$OUT/warm.txt" -t2 -c"$CONNS" -d1s "$@"; }

busy=$(bench_busy)
rss0=$(pvd_rss_kb)
warm -H "Authorization: Bearer $BENCH_TOKEN" "$PVD_URL/api/v1/photos"
pvd_thread_ticks "$OUT/ticks0"
wrk_run "$OUT/pvd.txt" -t2 -c"$CONNS" -d"${SECS}s" --latency \
    -H "Authorization: Bearer $BENCH_TOKEN" "$PVD_URL/api/v1/photos"
pvd_thread_ticks "$OUT/ticks1"
threads=$(pvd_busy_threads "$OUT/ticks0" "$OUT/ticks1" "$SECS")
rss1=$(pvd_rss_kb)
# Context for the figure: the same stack (TLS, HTTP, token check, one
# LMDB read) with a ~200-byte answer, so the list's own cost shows.
wrk_run "$OUT/pvd-me.txt" -t2 -c"$CONNS" -d"$(( (SECS + 1) / 2 ))s" --latency \
    -H "Authorization: Bearer $BENCH_TOKEN" "$PVD_URL/api/v1/me"
errs_warn=$(pvd_errors)
errs_show=$(pvd_show_errors)
warm "https://127.0.0.1:$NGINX_PORT/api/v1/photos"
wrk_run "$OUT/nginx.txt" -t2 -c"$CONNS" -d"${SECS}s" --latency \
    "https://127.0.0.1:$NGINX_PORT/api/v1/photos"
nginx_stop

info_rps="" info_p50="" info_p99="" info_bad="" info_threads=""
if [ "${BENCH_API_INFO:-1}" != 0 ]; then
    # The same data directory (same user, token and photos), pvd restarted
    # with its default access log on.
    pvd_stop
    pvd_start api --set log_level=info
    warm -H "Authorization: Bearer $BENCH_TOKEN" "$PVD_URL/api/v1/photos"
    pvd_thread_ticks "$OUT/ticks0"
    wrk_run "$OUT/pvd-info.txt" -t2 -c"$CONNS" -d"${SECS}s" --latency \
        -H "Authorization: Bearer $BENCH_TOKEN" "$PVD_URL/api/v1/photos"
    pvd_thread_ticks "$OUT/ticks1"
    info_threads=$(pvd_busy_threads "$OUT/ticks0" "$OUT/ticks1" "$SECS")
    info_rps=$(wrk_rps "$OUT/pvd-info.txt")
    info_p50=$(wrk_p50 "$OUT/pvd-info.txt")
    info_p99=$(wrk_p99 "$OUT/pvd-info.txt")
    info_bad=$(wrk_bad "$OUT/pvd-info.txt")
fi
pvd_stop

p_rps=$(wrk_rps "$OUT/pvd.txt") p_p50=$(wrk_p50 "$OUT/pvd.txt") p_p99=$(wrk_p99 "$OUT/pvd.txt")
n_rps=$(wrk_rps "$OUT/nginx.txt") n_p50=$(wrk_p50 "$OUT/nginx.txt") n_p99=$(wrk_p99 "$OUT/nginx.txt")
p_bad=$(wrk_bad "$OUT/pvd.txt") n_bad=$(wrk_bad "$OUT/nginx.txt")
r=$(ratio "$p_rps" "$n_rps")

echo "== api: GET /api/v1/photos ($items items, $body_bytes bytes), wrk -t2 -c$CONNS -d${SECS}s, TLS keep-alive"
echo "   pvd TLS: $PVD_TLS; nginx TLS: $NGINX_TLS"
printf '   %-22s %10s %10s %10s %8s\n' server req/s p50_ms p99_ms errors
printf '   %-22s %10s %10s %10s %8s\n' "pvd (log_level=warn)" "$p_rps" "$p_p50" "$p_p99" "$p_bad"
printf '   %-22s %10s %10s %10s %8s\n' "nginx (static file)" "$n_rps" "$n_p50" "$n_p99" "$n_bad"
printf '   %-22s %10s %10s %10s %8s\n' "pvd GET /api/v1/me" "$(wrk_rps "$OUT/pvd-me.txt")" \
    "$(wrk_p50 "$OUT/pvd-me.txt")" "$(wrk_p99 "$OUT/pvd-me.txt")" "$(wrk_bad "$OUT/pvd-me.txt")"
[ -n "$info_rps" ] &&
    printf '   %-22s %10s %10s %10s %8s\n' "pvd (log_level=info)" "$info_rps" "$info_p50" "$info_p99" "$info_bad"
echo "   pvd threads busy (tid:CPU; 2 = both HTTP loops served): warn run ${threads:-none}${info_rps:+; info run ${info_threads:-none}}"
echo "   pvd RSS before/after the warn run: $(mb "$rss0") / $(mb "$rss1") MB; warn/error log lines: $errs_warn"
[ -n "$errs_show" ] && printf '%s\n' "$errs_show"
echo "   machine busy in the second before: $busy of all cores (other work skews the figures)"
verdict=ok
awk -v r="$r" 'BEGIN {exit !(r != "n/a" && r >= 0.3)}' || verdict=BELOW_TARGET
[ "${p_bad:-0}" = 0 ] || verdict="$verdict,ERRORS"
echo "SUMMARY api: pvd ${p_rps} req/s p99 ${p_p99} ms, nginx ${n_rps} req/s p99 ${n_p99} ms," \
    "ratio pvd/nginx ${r}x (target >=0.3x, aim 0.5x) ${info_rps:+[info log: ${info_rps} req/s, $(ratio "$info_rps" "$n_rps")x] }-> $verdict"
[ -n "$p_rps" ] && [ -n "$n_rps" ] || exit 1
exit 0
