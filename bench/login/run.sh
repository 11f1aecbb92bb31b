#!/bin/bash
# bench/login — does a login storm slow the rest of the API down?
#
# Logins are argon2id (64 MiB, ~80 ms of CPU each) and must run on worker
# threads, never on an HTTP loop. Here wrk posts /api/v1/auth/login flat
# out on 4 keep-alive connections (rate limits raised out of the way) while
# a second wrk measures GET /api/v1/me; the p99 of /me with the storm is
# compared with its p99 without it (target: at most 2x). Two probes:
#   flat    — /me flat out, 1 thread, 16 connections (the headline ratio);
#   paced   — /me at a light, steady load (8 connections, each waiting
#             10 ms between requests, ~800 req/s), i.e. a user clicking
#             around while the storm runs.
# Both servers and clients share the machine's 2 cores, so the storm takes
# CPU from everything; the question is whether the HTTP loops keep theirs.
#
# Environment: BENCH_LOGIN_SECONDS (10), BENCH_LOGIN_CONNS (4),
# BENCH_LOGIN_PACED=0 to skip the paced probe.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"

SECS=${BENCH_LOGIN_SECONDS:-10}
LCONNS=${BENCH_LOGIN_CONNS:-4}

bench_need_all
pvd_build

pvd_start login --set log_level=warn \
    --set login_account_burst=1000000 --set login_account_per_minute=1000000 \
    --set login_ip_burst=1000000 --set login_ip_per_minute=1000000
bench_user storm@bench.example
bench_user me@bench.example

OUT=$BENCH_TMP/login
mkdir -p "$OUT"
cat >"$OUT/login.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"storm@bench.example","password":"$BENCH_PASSWORD"}'
EOF
cat >"$OUT/paced.lua" <<'EOF'
function delay() return 10 end
EOF

ME_URL=$PVD_URL/api/v1/me
AUTH="Authorization: Bearer $BENCH_TOKEN"

# probe NAME — /me for SECS seconds, the way NAME says.
probe()
{
    case "$1" in
    flat*) wrk_run "$OUT/$1.txt" -t1 -c16 -d"${SECS}s" --latency -H "$AUTH" "$ME_URL" ;;
    paced*) wrk_run "$OUT/$1.txt" -t1 -c8 -d"${SECS}s" --latency -s "$OUT/paced.lua" -H "$AUTH" "$ME_URL" ;;
    esac
}

# with_storm NAME — the probe while logins run flat out (the storm starts
# a second early and outlasts the probe).
peak_storm_kb=0
with_storm()
{
    local st
    wrk -t1 -c"$LCONNS" -d"$((SECS + 2))s" --timeout 10s -s "$OUT/login.lua" \
        "$PVD_URL/api/v1/auth/login" >"$OUT/storm-$1.txt" 2>&1 &
    st=$!
    BENCH_PIDS+=("$st")
    rss_sampler_start "$PVD_PID" "$OUT/rss-$1.txt" $((SECS + 5))
    sleep 1
    probe "$1"
    wait "$st"
    bench_forget "$st"
    rss_sampler_stop
    local k
    k=$(rss_peak_kb "$OUT/rss-$1.txt")
    [ "$k" -gt "$peak_storm_kb" ] && peak_storm_kb=$k
}

probes=(flat)
[ "${BENCH_LOGIN_PACED:-1}" != 0 ] && probes+=(paced)

busy=$(bench_busy)
rss0=$(pvd_rss_kb)
for p in "${probes[@]}"; do
    probe "$p-quiet"
    with_storm "$p-storm"
done
errs=$(pvd_errors)
errs_show=$(pvd_show_errors)
pvd_stop

echo "== login: GET /api/v1/me p99 without and with a login storm (wrk, $LCONNS connections posting /api/v1/auth/login), ${SECS}s each"
printf '   %-8s %12s %12s %12s %12s %8s %10s %10s %8s\n' probe quiet_req/s quiet_p50 quiet_p99 storm_req/s storm_p50 storm_p99 logins/s p99_x
summary=""
verdict=ok
for p in "${probes[@]}"; do
    q=$OUT/$p-quiet.txt s=$OUT/$p-storm.txt l=$OUT/storm-$p-storm.txt
    x=$(ratio "$(wrk_p99 "$s")" "$(wrk_p99 "$q")")
    lbad=$(wrk_bad "$l")
    printf '   %-8s %12s %12s %12s %12s %12s %10s %10s %8s\n' "$p" \
        "$(wrk_rps "$q")" "$(wrk_p50 "$q")ms" "$(wrk_p99 "$q")ms" \
        "$(wrk_rps "$s")" "$(wrk_p50 "$s")ms" "$(wrk_p99 "$s")ms" \
        "$(wrk_rps "$l")" "${x}x"
    [ "$(wrk_bad "$q")$(wrk_bad "$s")" = 00 ] || verdict="$verdict,ME_ERRORS"
    [ "$lbad" = 0 ] || bench_log "bench: $lbad login answers were not 2xx (or socket errors) in the $p storm"
    [ -n "$(wrk_rps "$l")" ] && [ "$(wrk_rps "$l")" != 0 ] || verdict="$verdict,NO_LOGINS"
    awk -v r="$x" 'BEGIN {exit !(r != "n/a" && r <= 2)}' || verdict="$verdict,${p}_OVER_2X"
    summary="$summary $p /me p99 $(wrk_p99 "$q") -> $(wrk_p99 "$s") ms (${x}x, $(wrk_rps "$l") logins/s);"
done
echo "   pvd VmRSS: $(mb "$rss0") MB before, peak $(mb "$peak_storm_kb") MB during the storms; warn/error log lines: $errs"
[ -n "$errs_show" ] && printf '%s\n' "$errs_show"
echo "   machine busy in the second before: $busy of all cores (other work skews the figures)"
verdict=${verdict#ok,}
echo "SUMMARY login:${summary} target <=2x -> $verdict"
exit 0
