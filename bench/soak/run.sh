#!/bin/bash
# bench/soak — 30 minutes of mixed traffic; are pvd's memory and
# descriptors flat, and does it answer only what it should?
#
# A release pvd on a throw-away data directory (defaults, except the
# request log at info so that its own tally can be checked) gets traffic
# from a bounded set of client threads (soak.py: browse, upload, render,
# log in, sign up, slow clients, aborted clients, pvctl). Its VmRSS and
# open descriptors are sampled every SOAK_SAMPLE seconds. The measure:
# the 5 minutes after the warm-up against the last 5 minutes (each a
# quarter of the post-warm-up time when that is shorter), RSS by its floor
# in each (the 10th percentile: pvd between the spikes of argon2id,
# decodes and renders; see soak.py), descriptors by their median; growth
# must be <= 5 % for both. Every answer is
# counted; anything but what a request expects or one of pvd's limits
# (429, 408, 413, 503 with Retry-After) is an error. Also checked: pvd's
# descriptors when it is quiet again after the traffic (as many as before
# it), its own request log (no 5xx) and a prompt stop on SIGTERM.
#
# Not part of `bench/run.sh` (too long). Run it on its own:
#   bash bench/soak/run.sh                       # 30 minutes
#   SOAK_SECONDS=120 bash bench/soak/run.sh      # a quick check
#
# Environment: SOAK_SECONDS (1800), SOAK_WARMUP (300, or a sixth of a
# shorter run), SOAK_SAMPLE (2), SOAK_USERS (4), SOAK_ARGS (more soak.py
# flags, e.g. "--browse 8 --think 0.02"), SOAK_RESULTS (where the samples
# and the report are copied: build/bench/soak-results), and lib.sh's
# (BENCH_KEEP, BENCH_PVD_ARGS, BENCH_NO_BUILD, PVD).
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"

SECS=${SOAK_SECONDS:-1800}
WARM=${SOAK_WARMUP:-$((SECS / 6 < 300 ? SECS / 6 : 300))}
SAMPLE=${SOAK_SAMPLE:-2}
NUSERS=${SOAK_USERS:-4}
RESULTS=${SOAK_RESULTS:-$BENCH_CACHE/soak-results}
PVCTL=${PVCTL:-$(dirname "$PVD")/pvctl}
SOAK_PASSWORD='soak-password-1'

bench_need curl procps python3 ffmpeg
pvd_build
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    make -s -C "$BENCH_ROOT" build/bin/pvctl build/web/index.html >/dev/null ||
        bench_die "make build/bin/pvctl build/web/index.html failed"
fi
[ -x "$PVCTL" ] || bench_die "no pvctl at $PVCTL"

# soak_images — the photo pool, made once in $BENCH_CACHE/soak: 24 small
# JPEGs (640x480), 6 medium noisy ones (2048x1536, ~1 MB), 4 PNGs, 8 WebPs,
# and 2 of the 20 MB JPEGs of the upload bench. soak.py makes every upload
# distinct (a JPEG comment, a PNG text chunk) but takes WebPs as they are.
soak_images()
{
    local d=$BENCH_CACHE/soak i
    SOAK_IMAGES=$d
    if [ ! -f "$d/done.1" ]; then
        bench_log "bench: making the soak's test images in $d (once)"
        rm -rf "$d" && mkdir -p "$d/small" "$d/medium" "$d/png" "$d/webp" "$d/big"
        ffmpeg -v error -y -f lavfi -i "testsrc2=s=640x480:r=1" -frames:v 24 -q:v 3 \
            "$d/small/s%02d.jpg" || bench_die "ffmpeg: small images"
        for i in 1 2 3 4 5 6; do
            ffmpeg -v error -y -f lavfi \
                -i "testsrc2=s=2048x1536:d=1,noise=alls=20:allf=u:all_seed=$((i * 31))" \
                -frames:v 1 -q:v 2 "$d/medium/m$i.jpg" || bench_die "ffmpeg: medium images"
        done
        ffmpeg -v error -y -f lavfi -i "mandelbrot=s=800x600:r=1" -frames:v 4 \
            "$d/png/p%02d.png" || bench_die "ffmpeg: PNG images"
        ffmpeg -v error -y -f lavfi -i "testsrc2=s=640x480:r=1" -ss 30 -frames:v 8 \
            -c:v libwebp -quality 80 "$d/webp/w%02d.webp" ||
            bench_log "bench: no WebP encoder in ffmpeg; the soak goes without WebP"
        touch "$d/done.1"
    fi
    bench_big_jpegs 2
    ln -sf "$BIG_JPEGS/big01.jpg" "$d/big/big01.jpg"
    ln -sf "$BIG_JPEGS/big02.jpg" "$d/big/big02.jpg"
}
soak_images

bench_tmp
OUT=$BENCH_TMP/soak
mkdir -p "$OUT"

pvd_start soak --set log_level=info
pvd_pid=$PVD_PID
: >"$OUT/users"
for i in $(seq 1 "$NUSERS"); do
    printf '%s\n' "$SOAK_PASSWORD" | "$PVCTL" --socket "$PVD_DATA/admin.sock" \
        user add "soak-user-$i@bench.example" --prompt >/dev/null ||
        bench_die "pvctl user add failed"
    echo "soak-user-$i@bench.example $SOAK_PASSWORD" >>"$OUT/users"
done

busy=$(bench_busy)
echo "== soak: $(date -u '+%Y-%m-%d %H:%M UTC'), $SECS s, warm-up $WARM s;" \
    "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), busy before: $busy"
echo "   pvd: $("$PVD" --version 2>&1 | head -1), pid $pvd_pid, data $PVD_DATA"
# shellcheck disable=SC2086  # SOAK_ARGS is split on purpose
python3 "$BENCH_ROOT/bench/soak/soak.py" --url "$PVD_URL" --private "http://127.0.0.1:$PVD_HTTP_PORT" \
    --pid "$pvd_pid" --pvctl "$PVCTL" --socket "$PVD_DATA/admin.sock" --images "$SOAK_IMAGES" \
    --out "$OUT" --users "$OUT/users" --password "$SOAK_PASSWORD" \
    --seconds "$SECS" --warmup "$WARM" --sample "$SAMPLE" ${SOAK_ARGS:-} | tee "$OUT/report.txt"
soak_rc=${PIPESTATUS[0]}

alive=1
kill -0 "$pvd_pid" 2>/dev/null || alive=0
# what the store holds after the soak (bounded: the traffic deletes as it goes)
"$PVCTL" --socket "$PVD_DATA/admin.sock" --json status 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)["result"]
c, s, ch = r["counts"], r["store"], r["changes"]
print("   store after the soak: %d users, %d photos, %d videos, %d blobs; LMDB %.1f MB used of a %.1f MB file;"
      " change log head %d, %d entries kept" % (c["users"], c["photos"], c["videos"], c["blobs"],
      s["map_used"] / 1048576, s["file_bytes"] / 1048576, ch["head"], ch["kept"]))' | tee -a "$OUT/report.txt"
stop_t0=$(date +%s.%N)
pvd_stop 2>"$OUT/stop.txt"
stop_s=$(awk -v a="$stop_t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
cat "$OUT/stop.txt" >&2

# pvd's own view: statuses from its request log, warn/error lines.
python3 - "$PVD_LOG" "$OUT/server.json" <<'EOF' | tee -a "$OUT/report.txt"
import collections, json, sys
status, warn, crit, five_ex = collections.Counter(), collections.Counter(), 0, collections.defaultdict(list)
for line in open(sys.argv[1], errors="replace"):
    try:
        j = json.loads(line)
    except ValueError:
        crit += 1
        continue
    st = j.get("status")
    if j.get("msg") == "request":
        status[st] += 1
        if isinstance(st, int) and st >= 500 and len(five_ex[st]) < 3:
            five_ex[st].append(line.strip()[:400])
    if j.get("level") in ("warn", "error"):
        warn["%s: %s" % (j["level"], j.get("msg"))] += 1
# 503 is pvd's "overloaded, try again" (a limit); other 5xx are errors.
# These include answers no client read (it had gone), which the client
# side cannot count.
five = sum(n for s, n in status.items() if isinstance(s, int) and s >= 500 and s != 503)
print("   pvd's request log: %d requests; by status: %s" % (sum(status.values()),
      ", ".join("%s %d" % kv for kv in sorted(status.items(), key=lambda kv: -kv[1]))))
for st in sorted(five_ex):
    for ex in five_ex[st]:
        print("     %d: %s" % (st, ex))
print("   pvd's warn/error lines: %d%s" % (sum(warn.values()),
      "".join("\n     %d x %s" % (n, k) for k, n in warn.most_common(8))))
if crit:
    print("   lines that are not JSON in pvd's log: %d" % crit)
json.dump({"server_5xx": five, "warn_lines": sum(warn.values()), "non_json": crit}, open(sys.argv[2], "w"))
EOF
echo "   data directory after the soak: $(du -sm "$PVD_DATA" | cut -f1) MB" | tee -a "$OUT/report.txt"
echo "   pvd stopped in $stop_s s after SIGTERM$(grep -q 'exited with status' "$OUT/stop.txt" &&
    echo ", $(grep -o 'exited with status [0-9]*' "$OUT/stop.txt")")" | tee -a "$OUT/report.txt"

mkdir -p "$RESULTS"
[ -f "$OUT/result.json" ] || {
    cp "$OUT"/*.csv "$OUT/report.txt" "$RESULTS/" 2>/dev/null
    bench_die "soak.py did not finish (status $soak_rc)"
}
python3 - "$OUT/result.json" "$OUT/server.json" "$alive" "$OUT/stop.txt" "$stop_s" <<'EOF' | tee -a "$OUT/report.txt"
import json, sys
r = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2]))
alive = sys.argv[3] == "1"
stop_bad = "exited with status" in open(sys.argv[4]).read()
flags = []
if "rss_growth_pct" in r:
    if r["rss_growth_pct"] > 5 or r["fds_growth_pct"] > 5:
        flags.append("GROWTH_OVER_5PCT")
else:
    flags.append("TOO_SHORT")
if r["errors"] or s["server_5xx"]:
    flags.append("ERRORS")
if r["idle_fds_after"] > r["idle_fds_before"]:
    flags.append("FDS_LEFT")
if not alive or r["pvd_exited"]:
    flags.append("PVD_EXITED")
elif stop_bad:
    flags.append("BAD_EXIT")
elif float(sys.argv[5]) > 5:
    flags.append("SLOW_STOP")   # a connection pvd still held (no client is left by then)
g = lambda k, d=0: r.get(k, d)
print("SUMMARY soak: %d s, %d requests (%.0f/s), RSS floor %.1f -> %.1f MB (%+.1f%%, median %+.1f%%),"
      " fds %.0f -> %.0f (%+.1f%%), quiet fds %d -> %d, limit answers %d, errors %d, pvd 5xx but 503 %d;"
      " target growth <=5%% -> %s"
      % (r["seconds"], r["requests"], r["requests"] / max(1, r["seconds"]), g("rss_base_kb") / 1024,
         g("rss_end_kb") / 1024, g("rss_growth_pct"), g("rss_median_growth_pct"),
         g("fds_base"), g("fds_end"), g("fds_growth_pct"),
         r["idle_fds_before"], r["idle_fds_after"], r["limit"], r["errors"], s["server_5xx"],
         ",".join(flags) or "ok"))
sys.exit(1 if "PVD_EXITED" in flags else 0)
EOF
rc=${PIPESTATUS[0]}
cp "$OUT/samples.csv" "$OUT/fd-kinds.jsonl" "$OUT/report.txt" "$OUT/result.json" "$RESULTS/" 2>/dev/null
echo "   samples, descriptor kinds and the report kept in $RESULTS"
[ "$soak_rc" = 0 ] || exit 1
exit "$rc"
