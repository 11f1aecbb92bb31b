#!/bin/bash
# bench/replicate — S3 replication: catching up after an outage, and the
# lag in steady state (see bench/README.md, "replicate").
#
# The S3 peer is s3rver (tests/peers/s3rver.sh) on a loopback port, one
# bucket; pvd replicates to PREFIX "pv" of it (actors/replicate.c).
#
# 1. converge — pvd starts with S3 up (its first pass: the prefix check,
#    the lease, the first snapshot), then s3rver stops ("S3 down") and
#    REPL_N different 64x64 JPEGs are uploaded over HTTPS by REPL_CLIENTS
#    keep-alive clients (every one must get its 201 while S3 is down).
#    Once every photo's original and thumbnail is on disk, s3rver starts
#    again on the same port and data directory, `pvctl sync now`, and the
#    clock runs until `pvctl sync status` shows cursor == head; pvd's VmRSS
#    is sampled every 100 ms meanwhile (growth: target <= 64 MB). pvd's
#    objects = blobs PUT + segments + snapshots (from sync status, before
#    and after). The peer, in the same run against the same s3rver: `aws s3
#    sync` (Debian's awscli) of pvd's own DATA/blobs tree (the same files:
#    2 objects a photo) to another prefix of the same bucket. Reported:
#    objects/s for each and the ratio pvd/aws (target >= 1), plus the CPU
#    that pvd, aws and s3rver used (who is the bottleneck).
# 2. steady — with S3 up and sync_interval=REPL_SYNC_INTERVAL, REPL_RATE
#    uploads a second for REPL_STEADY_SECONDS of more (different) photos;
#    for each, the time from its 201 to when its original is in S3
#    (s3rver's metadata file for PREFIX/blobs/xx/<sha256>, looked for every
#    50 ms). Reported: lag p50 (target <= sync_interval + 1 s) and p99
#    (target <= 2 x sync_interval).
#
# Environment: REPL_N (10000), REPL_CLIENTS (4), REPL_RATE (20),
# REPL_STEADY_SECONDS (90), REPL_SYNC_INTERVAL (10), REPL_PHASES
# ("converge steady"), REPL_TIMEOUT (1200: the most any one step may
# take), REPL_PVD_ARGS (more pvd arguments, e.g. "--set sync_batch=5000"),
# REPL_AWS (the aws binary, default /usr/bin/aws: Debian's), PVCTL.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"

N=${REPL_N:-10000}
CLIENTS=${REPL_CLIENTS:-4}
RATE=${REPL_RATE:-20}
STEADY_S=${REPL_STEADY_SECONDS:-90}
SI=${REPL_SYNC_INTERVAL:-10}
PHASES=" ${REPL_PHASES:-converge steady} "
TIMEOUT=${REPL_TIMEOUT:-1200}
AWS=${REPL_AWS:-/usr/bin/aws}
PVCTL=${PVCTL:-$BENCH_ROOT/build/bin/pvctl}
BUCKET=pvbench
PREFIX=pv
GROWTH_TARGET_MB=64
HERE=$BENCH_ROOT/bench/replicate
PEER=$BENCH_ROOT/tests/peers/s3rver.sh

bench_need curl procps python3 ffmpeg awscli
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    bench_die "s3rver needs node and npm (sh tools/deps.sh test)"
fi
[ -x "$AWS" ] || bench_die "no aws CLI at $AWS (apt-get install awscli)"
pvd_build
if [ "${BENCH_NO_BUILD:-0}" != 1 ] || [ ! -x "$PVCTL" ]; then
    make -s -C "$BENCH_ROOT" build/bin/pvctl >/dev/null || bench_die "make build/bin/pvctl failed"
fi

bench_tmp
OUT=$BENCH_TMP/replicate
S3DIR=$BENCH_TMP/s3rver
mkdir -p "$OUT"
# shellcheck disable=SC2317  # called by the trap
repl_cleanup() { sh "$PEER" stop "$S3DIR" 2>/dev/null; }
trap 'repl_cleanup; bench_cleanup' EXIT

# Only these credentials, whatever the caller's AWS files say (s3rver
# takes any signature).
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 \
    AWS_SHARED_CREDENTIALS_FILE=/nonexistent AWS_CONFIG_FILE=/nonexistent \
    AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
unset AWS_SESSION_TOKEN AWS_PROFILE

now() { date +%s.%N; }
say() { bench_log "bench: [$(date +%T)] $*"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f\n", b - a}'; }
per_s() { awk -v n="$1" -v s="$2" 'BEGIN {if (s + 0 == 0) print "n/a"; else printf "%.1f\n", n / s}'; }
# jfields FILE KEY... — the values of (dotted) keys of a JSON file, on one
# line (one python start for all of them).
jfields() { python3 -c 'import json,sys
def get(v, k):
    for p in k.split("."):
        v = v[int(p)] if isinstance(v, list) else v[p]
    return v
d = json.load(open(sys.argv[1]))
print(*(get(d, k) for k in sys.argv[2:]))' "$@"; }
status_json() { "$PVCTL" --socket "$PVD_DATA/admin.sock" --json --timeout 5 sync status; }
status_get() { status_json | json_get "result.targets.0.$1"; }

# repl_photos NAME N SEED — N different 64x64 JPEGs (testsrc2 under
# noise that changes every frame, ~2.3 KB each) in $BENCH_CACHE/NAME, made
# once (a few seconds for 10 000) and kept; a set of at least N is reused.
# Prints the directory.
repl_photos()
{
    local name=$1 n=$2 seed=$3 d=$BENCH_CACHE/$1 have
    have=$(cat "$d/done" 2>/dev/null || echo 0)
    if [ "$have" -lt "$n" ]; then
        bench_log "bench: making $n small test JPEGs in $d (once)"
        rm -rf "$d" && mkdir -p "$d"
        ffmpeg -v error -y -f lavfi -i "testsrc2=s=64x64:r=25,noise=alls=40:allf=t+u:all_seed=$seed" \
            -frames:v "$n" -q:v 5 "$d/p%06d.jpg" || bench_die "ffmpeg could not make the test images"
        [ "$(find "$d" -name '*.jpg' | wc -l)" = "$n" ] || bench_die "ffmpeg made too few images in $d"
        (cd "$d" && sha256sum -- *.jpg | cut -d' ' -f1 | sort >shas)
        [ "$(uniq -d "$d/shas" | wc -l)" = 0 ] || bench_die "duplicate test images in $d"
        echo "$n" >"$d/done"
    fi
    printf '%s\n' "$d"
}

# a list of the first N files of a set
repl_list() { find "$1" -name '*.jpg' | sort | head -n "$2" >"$3"; }

s3_start()
{
    S3PORT=$(sh "$PEER" start "$S3DIR" "${1:-0}" "$BUCKET" $$) || bench_die "s3rver did not start"
    S3PID=$(cat "$S3DIR/pid")
}
s3_objects() { find "$S3DIR/data/$BUCKET/$1" -name '*._S3rver_metadata.json' 2>/dev/null | wc -l; }

busy=$(bench_busy)
say "starting s3rver and pvd"
s3_start 0
say "s3rver on port $S3PORT"
# shellcheck disable=SC2086  # REPL_PVD_ARGS is split on purpose
pvd_start replicate --set log_level=warn --set access_token_ttl=14400 \
    --set s3_bucket=$BUCKET --set s3_prefix=$PREFIX --set "s3_endpoint=http://127.0.0.1:$S3PORT" \
    --set s3_path_style=true --set "sync_interval=$SI" ${REPL_PVD_ARGS:-}
say "pvd up"
for i in $(seq 1 300); do  # the first pass: prefix check, lease, first snapshot
    [ "$(status_get snapshots_sent 2>/dev/null)" -ge 1 ] 2>/dev/null &&
        [ "$(status_get state)" = idle ] && break
    sleep 0.1
done
[ "$(status_get snapshots_sent)" -ge 1 ] || bench_die "pvd's first replication pass did not end in 30 s: $(status_json)"
say "first pass done"
bench_user replicate@bench.example
conf() { "$PVCTL" --socket "$PVD_DATA/admin.sock" --json --timeout 5 config show | json_get "result.config.$1"; }
batch=$(conf sync_batch) SI=$(conf sync_interval)  # what pvd runs with, whatever set it

verdict=""
flag() { case ",$verdict," in *",$1,"*) ;; *) verdict=${verdict:+$verdict,}$1 ;; esac; }
summary=""

# ================================================================ converge
if [ "${PHASES#* converge }" != "$PHASES" ]; then
    dir=$(repl_photos repl64 "$N" 1) || exit 1
    repl_list "$dir" "$N" "$OUT/converge.list"
    sh "$PEER" stop "$S3DIR"
    say "S3 down; uploading $N photos with $CLIENTS clients"
    python3 "$HERE/repl.py" upload "$PVD_URL" "$BENCH_TOKEN" "$OUT/converge.list" "$CLIENTS" "$TIMEOUT" \
        >"$OUT/upload.json" || bench_die "the uploader failed"
    read -r up_ok up_s up_rate < <(jfields "$OUT/upload.json" ok seconds per_s)
    [ "$up_ok" = "$N" ] || { flag ERRORS; bench_log "bench: uploads: $(cat "$OUT/upload.json")"; }
    # every thumbnail made: 2 blobs a photo, and the head still
    want=$((2 * up_ok)) i=0 h0=-1
    while :; do
        blobs=$(find "$PVD_DATA/blobs" -type f | wc -l)
        h=$(status_get head)
        [ "$blobs" -ge "$want" ] && [ "$h" = "$h0" ] && break
        h0=$h i=$((i + 1))
        [ $i -lt 300 ] || { bench_log "bench: only $blobs of $want blobs after 300 s"; flag ERRORS; break; }
        sleep 1
    done
    head_before=$h
    down_err=$(pvd_errors)
    rss_down_kb=$(pvd_rss_kb)
    # Paused while S3 comes back, so that a retry of pvd's own (its backoff)
    # does not start the catch-up before the clock: `sync now` resumes.
    "$PVCTL" --socket "$PVD_DATA/admin.sock" --timeout 5 sync pause >/dev/null
    for i in $(seq 1 100); do [ "$(status_get state)" = paused ] && break; sleep 0.1; done
    say "$blobs blobs, change-log head $h, cursor $(status_get cursor), sync $(status_get state); S3 up again, pvctl sync now"
    s3_start "$S3PORT"
    s3cpu0=$(cpu_s "$S3PID") pvcpu0=$(cpu_s "$PVD_PID")
    python3 "$HERE/repl.py" converge "$PVD_PID" "$PVCTL" "$PVD_DATA/admin.sock" "$TIMEOUT" "$OUT/rss.txt" \
        >"$OUT/converge.json" || bench_die "the converge watcher failed"
    s3cpu1=$(cpu_s "$S3PID") pvcpu1=$(cpu_s "$PVD_PID")
    sleep 2
    rss_after_kb=$(pvd_rss_kb)
    read -r pv_s converged rss_base_kb rss_peak_kb b_cursor b_blobs b_present b_segs b_snaps b_fail \
        a_blobs a_present a_segs a_snaps a_fail < <(jfields "$OUT/converge.json" seconds converged \
        rss_base_kb rss_peak_kb before.cursor before.{blobs_sent,blobs_present,segments,snapshots_sent,failures} \
        after.{blobs_sent,blobs_present,segments,snapshots_sent,failures})
    [ "$converged" = True ] || flag TIMEOUT
    [ "$b_cursor" -lt "$head_before" ] || flag NOT_MEASURED  # caught up before the clock
    d_blobs=$((a_blobs - b_blobs)) d_present=$((a_present - b_present)) d_segs=$((a_segs - b_segs))
    d_snaps=$((a_snaps - b_snaps)) d_fail=$((a_fail - b_fail))
    pv_objs=$((d_blobs + d_segs + d_snaps))
    pv_ops=$(per_s "$pv_objs" "$pv_s")
    growth_kb=$((rss_peak_kb - rss_base_kb))
    in_s3=$(s3_objects "$PREFIX/blobs")
    [ "$in_s3" -ge "$want" ] || flag MISSING

    # ---- the peer: aws s3 sync of the same files to another prefix
    local_files=$(find "$PVD_DATA/blobs" -type f | wc -l)
    say "aws s3 sync of $local_files files"
    s3cpu2=$(cpu_s "$S3PID")
    t0=$(now)
    timeout "$TIMEOUT" /usr/bin/time -f '%e %U %S %M' -o "$OUT/aws.time" \
        "$AWS" s3 sync "$PVD_DATA/blobs" "s3://$BUCKET/awspeer/blobs" \
        --endpoint-url "http://127.0.0.1:$S3PORT" --region us-east-1 --only-show-errors \
        >"$OUT/aws.log" 2>&1
    aws_rc=$?
    t1=$(now)
    s3cpu3=$(cpu_s "$S3PID")
    aws_s=$(sub "$t0" "$t1")
    aws_in_s3=$(s3_objects awspeer/blobs)
    [ "$aws_rc" = 0 ] || bench_log "bench: aws exited $aws_rc: $(tail -3 "$OUT/aws.log")"
    aws_ops=$(per_s "$aws_in_s3" "$aws_s")
    read -r _ aws_u aws_sys aws_maxrss <"$OUT/aws.time" 2>/dev/null || true
    aws_cpu=$(awk -v a="${aws_u:-0}" -v b="${aws_sys:-0}" 'BEGIN {printf "%.1f\n", a + b}')
    ratio_c=$(ratio "$pv_ops" "$aws_ops")
    awk -v r="$ratio_c" 'BEGIN {exit !(r != "n/a" && r + 0 >= 1)}' || flag BELOW_TARGET
    [ "$growth_kb" -le $((GROWTH_TARGET_MB * 1024)) ] || flag RSS_OVER_TARGET

    echo "== replicate/converge: $N photos (64x64 JPEG, ~$(($(stat -c %s "$(head -1 "$OUT/converge.list")") / 1024)) KB) made while S3 was down, then S3 up"
    echo "   uploads while S3 down: $up_ok/$N 201 in $up_s s ($up_rate/s, $CLIENTS clients);" \
        "pvd warn/error lines meanwhile: $down_err (S3 failures: expected)"
    echo "   change-log head $head_before, blobs on disk $blobs; sync_batch $batch"
    # requests: pvd a HEAD for every blob, a PUT for each absent one, a
    # PUT a segment; aws one LIST of the (empty) destination, a PUT a file
    pv_reqs=$((2 * d_blobs + d_present + d_segs + d_snaps)) aws_reqs=$((aws_in_s3 + 1))
    printf '   %-14s %8s %8s %9s %9s %8s %s\n' "" objects seconds objects/s requests/s "CPU s" "(s3rver CPU s)"
    printf '   %-14s %8s %8s %9s %9s %8s %s\n' "pvd catch-up" "$pv_objs" "$pv_s" "$pv_ops" "$(per_s "$pv_reqs" "$pv_s")" \
        "$(sub "$pvcpu0" "$pvcpu1")" "($(sub "$s3cpu0" "$s3cpu1"))"
    printf '   %-14s %8s %8s %9s %9s %8s %s\n' "aws s3 sync" "$aws_in_s3" "$aws_s" "$aws_ops" "$(per_s "$aws_reqs" "$aws_s")" \
        "$aws_cpu" "($(sub "$s3cpu2" "$s3cpu3"))"
    echo "   pvd: $d_blobs blobs PUT, $d_present already there (HEAD), $d_segs segments, $d_snaps snapshots," \
        "$d_fail failed passes; $in_s3 blob objects in S3; converged: $converged"
    echo "   ratio pvd/aws objects/s: ${ratio_c}x (target >= 1)"
    echo "   pvd VmRSS: $(mb "$rss_down_kb") MB with the backlog, $(mb "$rss_base_kb") MB at sync now, peak $(mb "$rss_peak_kb") MB," \
        "growth $(mb "$growth_kb") MB (target <= $GROWTH_TARGET_MB MB), 2 s after $(mb "$rss_after_kb") MB; aws max RSS $(mb "${aws_maxrss:-0}") MB"
    summary="converge $N photos: pvd $pv_ops obj/s ($pv_objs in $pv_s s), aws s3 sync $aws_ops obj/s ($aws_in_s3 in $aws_s s), ratio pvd/aws ${ratio_c}x (target >=1); pvd RSS growth $(mb "$growth_kb") MB (target <=$GROWTH_TARGET_MB)"
fi

# ================================================================ steady
if [ "${PHASES#* steady }" != "$PHASES" ]; then
    ns=$(awk -v r="$RATE" -v s="$STEADY_S" 'BEGIN {printf "%d\n", r * s}')
    dir=$(repl_photos repl64-steady "$ns" 2) || exit 1
    repl_list "$dir" "$ns" "$OUT/steady.list"
    if [ "${PHASES#* converge }" = "$PHASES" ]; then :; else sleep 2; fi
    [ "$(status_get state)" = idle ] || bench_log "bench: note: sync state $(status_get state) at the start"
    tail=$((2 * SI + 30))
    say "steady: $RATE uploads/s for $STEADY_S s, sync_interval $SI s"
    s3cpu0=$(cpu_s "$S3PID") pvcpu0=$(cpu_s "$PVD_PID") segs0=$(status_get segments)
    python3 "$HERE/repl.py" steady "$PVD_URL" "$BENCH_TOKEN" "$OUT/steady.list" "$RATE" "$STEADY_S" \
        "$S3DIR/data/$BUCKET/$PREFIX/blobs" "$tail" >"$OUT/steady.json" || bench_die "the steady uploader failed"
    s3cpu1=$(cpu_s "$S3PID") pvcpu1=$(cpu_s "$PVD_PID") segs1=$(status_get segments)
    read -r st_ok st_sent st_seen st_missing st_rate st_p50 st_p90 st_p99 st_max st_min < <(jfields \
        "$OUT/steady.json" ok sent seen missing rate p50 p90 p99 max min)
    [ "$st_ok" = "$st_sent" ] || flag ERRORS
    [ "$st_missing" = 0 ] || flag MISSING
    p50_t=$((SI + 1)) p99_t=$((2 * SI))
    awk -v p="$st_p50" -v t="$p50_t" 'BEGIN {exit !(p != "None" && p + 0 <= t)}' || flag LAG_P50_OVER
    awk -v p="$st_p99" -v t="$p99_t" 'BEGIN {exit !(p != "None" && p + 0 <= t)}' || flag LAG_P99_OVER
    # the lags over time, in 5 s windows: shows the passes
    python3 - "$OUT/steady.json" >"$OUT/steady-windows.txt" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
w = {}
for g, l in zip(d["got_at"], d["lags"]):
    if g is not None and l is not None:
        w.setdefault(int(g // 5), []).append(l)
print(" ".join("%d-%ds:%.1f-%.1f" % (k * 5, k * 5 + 5, min(v), max(v)) for k, v in sorted(w.items())))
EOF
    echo "== replicate/steady: $RATE uploads/s for $STEADY_S s (achieved $st_rate/s), sync_interval $SI s, TLS, 64x64 JPEGs"
    echo "   $st_ok/$st_sent 201; originals seen in S3: $st_seen, missing after a ${tail} s tail: $st_missing;" \
        "segments meanwhile: $((segs1 - segs0)); CPU s: pvd $(sub "$pvcpu0" "$pvcpu1"), s3rver $(sub "$s3cpu0" "$s3cpu1")"
    echo "   lag 201 -> original in S3: min $st_min s, p50 $st_p50 s (target <= $p50_t), p90 $st_p90 s," \
        "p99 $st_p99 s (target <= $p99_t), max $st_max s"
    echo "   lag min-max by upload time: $(cat "$OUT/steady-windows.txt")"
    summary="${summary:+$summary; }steady $RATE/s sync_interval=$SI: lag p50 $st_p50 s (target <=$p50_t), p99 $st_p99 s (target <=$p99_t)"
fi

echo "   pvd warn/error log lines in all: $(pvd_errors); machine busy in the second before: $busy" \
    "(other work skews the figures)"
pvd_show_errors | grep -v 'S3 replication failed\|lease.json' | head -3
echo "SUMMARY replicate: $summary -> ${verdict:-ok}"
exit 0
