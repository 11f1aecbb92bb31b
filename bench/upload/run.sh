#!/bin/bash
# bench/upload — big uploads at once: throughput and pvd's memory.
#
# 16 different ~20 MB JPEGs (24 MP; see bench_big_jpegs in lib.sh) are
# POSTed to /api/v1/photos at the same time, one curl each, over TLS. pvd
# stores each one (temp file, hash, fsync, rename, record) and decodes and
# thumbnails it, which is its job. The peer is nginx storing the same
# bodies with WebDAV PUT over TLS (temp file on the same disk, rename; no
# decoding, no fsync). Reported: MB/s for each (all bytes / wall time from
# the first curl's start to the last one's end), the ratio, per-upload
# times, pvd's CPU seconds, and pvd's VmRSS sampled every 50 ms:
# baseline (just before), peak, growth (target <= 64 MB) and after.
#
# Environment: BENCH_UPLOAD_N (16).
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"

N=${BENCH_UPLOAD_N:-16}
GROWTH_TARGET_MB=64

bench_need_all
pvd_build
bench_big_jpegs "$N"
files=()
for i in $(seq 1 "$N"); do files+=("$BIG_JPEGS/$(printf 'big%02d.jpg' "$i")"); done
total_bytes=$(stat -c %s "${files[@]}" | awk '{s += $1} END {print s}')

bench_tmp
OUT=$BENCH_TMP/upload
mkdir -p "$OUT"

# cpu_s PID — user+system CPU seconds the process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
now() { date +%s.%N; }

# upload_all KIND URL_PREFIX — N curls at once; each writes
# "status seconds bytes" to $OUT/KIND.N; sets WALL (seconds).
upload_all()
{
    local kind=$1 i t0 t1 pids=()
    t0=$(now)
    for i in $(seq 1 "$N"); do
        local f=${files[$((i - 1))]}
        if [ "$kind" = pvd ]; then
            curl -sk --max-time 300 -o "$OUT/$kind-body.$i" -w '%{http_code} %{time_total} %{size_upload}\n' \
                -X POST -H "Authorization: Bearer $BENCH_TOKEN" -H 'Content-Type: image/jpeg' \
                -H 'Expect:' -T "$f" "$PVD_URL/api/v1/photos" >"$OUT/$kind.$i" 2>&1 &
        else
            curl -sk --max-time 300 -o "$OUT/$kind-body.$i" -w '%{http_code} %{time_total} %{size_upload}\n' \
                -H 'Content-Type: image/jpeg' -H 'Expect:' -T "$f" \
                "https://127.0.0.1:$NGINX_PORT/up/$(basename "$f")" >"$OUT/$kind.$i" 2>&1 &
        fi
        pids+=($!)
    done
    wait "${pids[@]}"
    t1=$(now)
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f\n", b - a}')
}

# summarize KIND WANT_STATUS... — count of good answers, min/max seconds.
summarize()
{
    local kind=$1
    shift
    cat "$OUT/$kind".[0-9]* | awk -v want=" $* " '
        index(want, " " $1 " ") {ok++} {t = $2 + 0; if (min == "" || t < min) min = t; if (t > max) max = t}
        END {printf "%d %.2f %.2f\n", ok, min, max}'
}

# ---- pvd
pvd_start upload --set log_level=warn
bench_user upload@bench.example
rss_sampler_start "$PVD_PID" "$OUT/rss.txt" 600
busy=$(bench_busy)    # also a second of quiet before the baseline
base_kb=$(pvd_rss_kb)
cpu0=$(cpu_s "$PVD_PID")
upload_all pvd
pvd_wall=$WALL
cpu1=$(cpu_s "$PVD_PID")
sleep 2
after_kb=$(pvd_rss_kb)
rss_sampler_stop
peak_kb=$(rss_peak_kb "$OUT/rss.txt")
read -r pvd_ok pvd_min pvd_max <<<"$(summarize pvd 201)"
photos=$(curl -sk --max-time 10 -H "Authorization: Bearer $BENCH_TOKEN" "$PVD_URL/api/v1/me" | json_get usage.photos 2>/dev/null || echo "?")
pvd_err=$(pvd_errors)
pvd_err_show=$(pvd_show_errors)
if [ "$pvd_ok" != "$N" ]; then
    bench_log "bench: pvd answers:"
    for i in $(seq 1 "$N"); do bench_log "  $(cat "$OUT/pvd.$i") $(head -c 200 "$OUT/pvd-body.$i" 2>/dev/null)"; done
fi
pvd_stop

# ---- nginx
bench_port NGINX_PORT
WWW=$OUT/nginx-www
mkdir -p "$WWW/up" "$WWW/tmp"
nginx_start upload "$NGINX_PORT" "$PVD_DATA/tls/cert.pem" "$PVD_DATA/tls/key.pem" "
        location /up/ {
            root $WWW;
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
            client_body_temp_path $WWW/tmp;
        }"
upload_all nginx
nginx_wall=$WALL
read -r ngx_ok ngx_min ngx_max <<<"$(summarize nginx 201 204)"
stored=$(cat "$WWW"/up/*.jpg 2>/dev/null | wc -c)
nginx_stop
[ "$stored" = "$total_bytes" ] || bench_log "bench: nginx stored $stored bytes of $total_bytes"

mbs() { awk -v b="$1" -v s="$2" 'BEGIN {if (s + 0 == 0) print "n/a"; else printf "%.1f\n", b / 1048576 / s}'; }
pvd_mbs=$(mbs "$total_bytes" "$pvd_wall")
ngx_mbs=$(mbs "$total_bytes" "$nginx_wall")
growth_kb=$((peak_kb - base_kb))
cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.1f\n", b - a}')

echo "== upload: $N different JPEGs at once, $(mb $((total_bytes / 1024))) MB in all ($(identify -format '%wx%h' "${files[0]}" 2>/dev/null || echo 6000x4000) each), TLS"
printf '   %-24s %8s %8s %10s %14s\n' server wall_s MB/s "ok/$N" "per-upload_s"
printf '   %-24s %8s %8s %10s %14s\n' "pvd (store+decode+thumb)" "$pvd_wall" "$pvd_mbs" "$pvd_ok" "$pvd_min-$pvd_max"
printf '   %-24s %8s %8s %10s %14s\n' "nginx (WebDAV PUT)" "$nginx_wall" "$ngx_mbs" "$ngx_ok" "$ngx_min-$ngx_max"
echo "   pvd CPU during the uploads: ${cpu} s; photos stored per /me: $photos; warn/error log lines: $pvd_err"
echo "   pvd VmRSS: baseline $(mb "$base_kb") MB, peak $(mb "$peak_kb") MB, growth $(mb "$growth_kb") MB" \
    "(target <= $GROWTH_TARGET_MB MB), 2 s after $(mb "$after_kb") MB"
[ -n "$pvd_err_show" ] && printf '%s\n' "$pvd_err_show"
echo "   machine busy in the second before: $busy of all cores (other work skews the figures)"
verdict=ok
[ "$growth_kb" -le $((GROWTH_TARGET_MB * 1024)) ] || verdict=RSS_OVER_TARGET
[ "$pvd_ok" = "$N" ] || verdict="$verdict,ERRORS"
echo "SUMMARY upload: pvd ${pvd_mbs} MB/s, nginx ${ngx_mbs} MB/s, ratio pvd/nginx $(ratio "$pvd_mbs" "$ngx_mbs")x;" \
    "pvd RSS growth $(mb "$growth_kb") MB (target <=${GROWTH_TARGET_MB}) -> $verdict"
[ "$pvd_ok" -gt 0 ] && [ "$ngx_ok" -gt 0 ] || exit 1
exit 0
