#!/bin/bash
# bench/replicate/ddb.sh — DynamoDB replication (actors/ddb.c): how fast a
# backlog of video records reaches the table, and what it costs pvd in
# memory (see bench/README.md, "replicate-ddb"). BENCH_ONLY=replicate-ddb.
#
# The peer is dynalite (tests/peers/dynalite.sh) on a loopback port.
#
# 1. load — pvd starts with dynamodb_table set and dynalite down: DDB_N
#    videos are made offline (each created and cancelled at once over
#    HTTPS: a record with two changes, no render). Then dynalite starts,
#    `pvctl sync now ddb`, and the clock runs until target ddb's cursor ==
#    head: the table is made (dynamodb_create) and loaded whole
#    (BatchWriteItem, 25 items a request).
# 2. log — `pvctl sync pause ddb`, DDB_N more videos, then `sync now`:
#    the change log followed, the last change of each video sent as a
#    conditional PutItem, 16 in flight.
# pvd's VmRSS is sampled every 50 ms during both (growth over the value
# at `sync now`: target <= 64 MB). Reported: items/s of each phase, and
# the peer's: botocore (AWS's Python client) writing the same number of
# items of the same shape with the same condition, DDB_PEER_THREADS
# threads, into another table of the same dynalite (ratio pvd/botocore).
# Every item is counted in the table at the end.
#
# Environment: DDB_N (1000), DDB_THREADS (4: clients making videos),
# DDB_PEER_THREADS (16: as many as pvd keeps in flight), DDB_TIMEOUT (600),
# DDB_PVD_ARGS (more pvd arguments), PVCTL.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"

N=${DDB_N:-1000}
THREADS=${DDB_THREADS:-4}
PEER_THREADS=${DDB_PEER_THREADS:-16}
TIMEOUT=${DDB_TIMEOUT:-600}
PVCTL=${PVCTL:-$BENCH_ROOT/build/bin/pvctl}
TABLE=pv_video_status
GROWTH_TARGET_MB=64
HERE=$BENCH_ROOT/bench/replicate
PEER=$BENCH_ROOT/tests/peers/dynalite.sh

bench_need curl procps python3 ffmpeg python3-botocore
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    bench_die "dynalite needs node and npm (sh tools/deps.sh test)"
fi
pvd_build
if [ "${BENCH_NO_BUILD:-0}" != 1 ] || [ ! -x "$PVCTL" ]; then
    make -s -C "$BENCH_ROOT" build/bin/pvctl >/dev/null || bench_die "make build/bin/pvctl failed"
fi

bench_tmp
OUT=$BENCH_TMP/replicate-ddb
DDIR=$BENCH_TMP/dynalite
mkdir -p "$OUT"
# shellcheck disable=SC2317  # called by the trap
ddb_cleanup() { rss_sampler_stop; sh "$PEER" stop "$DDIR" 2>/dev/null; }
trap 'ddb_cleanup; bench_cleanup' EXIT

# dynalite takes any signature; these keep the caller's AWS files out
export AWS_ACCESS_KEY_ID=DDBBENCH AWS_SECRET_ACCESS_KEY=ddb-bench AWS_DEFAULT_REGION=us-east-1 \
    AWS_SHARED_CREDENTIALS_FILE=/nonexistent AWS_CONFIG_FILE=/nonexistent
unset AWS_SESSION_TOKEN AWS_PROFILE

say() { bench_log "bench: [$(date +%T)] $*"; }
per_s() { awk -v n="$1" -v s="$2" 'BEGIN {if (s + 0 == 0) print "n/a"; else printf "%.1f\n", n / s}'; }
jfields() { python3 -c 'import json,sys
def get(v, k):
    for p in k.split("."):
        v = v[int(p)] if isinstance(v, list) else v[p]
    return v
d = json.load(open(sys.argv[1]))
print(*(get(d, k) for k in sys.argv[2:]))' "$@"; }
sock() { printf '%s' "$PVD_DATA/admin.sock"; }

verdict=""
flag() { case ",$verdict," in *",$1,"*) ;; *) verdict=${verdict:+$verdict,}$1 ;; esac; }

bench_port DPORT
ENDPOINT=http://127.0.0.1:$DPORT
busy=$(bench_busy)
say "pvd with dynamodb_table set, dynalite (port $DPORT) not started yet"
# shellcheck disable=SC2086  # DDB_PVD_ARGS is split on purpose
pvd_start replicate-ddb --set log_level=warn --set access_token_ttl=14400 \
    --set dynamodb_table=$TABLE --set "dynamodb_endpoint=$ENDPOINT" --set dynamodb_create=true \
    --set aws_imds_endpoint=off --set user_queued_jobs=100000 ${DDB_PVD_ARGS:-}
bench_user replicate-ddb@bench.example
bench_small_jpegs 1
photo=$(curl -sk --max-time 60 -X POST -H "Authorization: Bearer $BENCH_TOKEN" \
    -H 'Content-Type: image/jpeg' -H 'Expect:' -T "$SMALL_JPEGS/p01.jpg" "$PVD_URL/api/v1/photos" |
    json_get photo.id) || bench_die "could not upload the photo"

# phase PHASE — make N videos (offline), then the target up and the clock
phase()
{
    local name=$1
    say "$name: making $N videos (created and cancelled) with $THREADS clients"
    python3 "$HERE/ddb.py" make "$PVD_URL" "$BENCH_TOKEN" "$photo" "$N" "$THREADS" >"$OUT/$name-make.json" ||
        bench_die "the video maker failed"
    read -r ok errs make_s < <(jfields "$OUT/$name-make.json" ok errors seconds)
    [ "$errs" = 0 ] || { flag ERRORS; bench_log "bench: $(cat "$OUT/$name-make.json")"; }
    sleep 1
    if [ "$name" = load ]; then
        sh "$PEER" start "$DDIR" "$DPORT" >/dev/null || bench_die "dynalite did not start"
    fi
    rss0=$(pvd_rss_kb)
    rss_sampler_start "$PVD_PID" "$OUT/$name-rss.txt" "$TIMEOUT"
    python3 "$HERE/ddb.py" wait "$PVCTL" "$(sock)" "$TIMEOUT" >"$OUT/$name-wait.json" ||
        bench_die "the watcher failed"
    rss_sampler_stop
    read -r secs conv w0 w1 head < <(jfields "$OUT/$name-wait.json" seconds converged \
        before.records_written after.records_written after.head)
    [ "$conv" = True ] || flag TIMEOUT
    items=$((w1 - w0))
    peak=$(rss_peak_kb "$OUT/$name-rss.txt")
    growth=$((peak > rss0 ? peak - rss0 : 0))
    [ "$growth" -le $((GROWTH_TARGET_MB * 1024)) ] || flag RSS_OVER_TARGET
    eval "${name}_items=$items ${name}_s=$secs ${name}_rate=$(per_s "$items" "$secs")"
    eval "${name}_rss0=$rss0 ${name}_peak=$peak ${name}_growth=$growth ${name}_make=$make_s ${name}_ok=$ok ${name}_head=$head"
}

phase load
"$PVCTL" --socket "$(sock)" --timeout 5 sync pause ddb >/dev/null
phase log
in_table=$(python3 "$HERE/ddb.py" count "$ENDPOINT" "$TABLE")
[ "$in_table" = $((load_ok + log_ok)) ] || flag MISSING
say "peer: botocore, $N conditional PutItems with $PEER_THREADS threads"
python3 "$HERE/ddb.py" peer "$ENDPOINT" botocore_peer "$N" "$PEER_THREADS" >"$OUT/peer.json" ||
    bench_die "the botocore peer failed"
read -r peer_items peer_s peer_rate < <(jfields "$OUT/peer.json" items seconds per_s)

echo "== replicate-ddb: $N video records made while DynamoDB was away (dynalite on loopback), then $N more with the target paused"
printf '   %-34s %7s %8s %8s %s\n' "" items seconds items/s "pvd VmRSS at start -> peak (growth)"
printf '   %-34s %7s %8s %8s %s\n' "pvd full load (BatchWriteItem)" "$load_items" "$load_s" "$load_rate" \
    "$(mb "$load_rss0") -> $(mb "$load_peak") MB ($(mb "$load_growth") MB)"
printf '   %-34s %7s %8s %8s %s\n' "pvd log, conditional PutItem" "$log_items" "$log_s" "$log_rate" \
    "$(mb "$log_rss0") -> $(mb "$log_peak") MB ($(mb "$log_growth") MB)"
printf '   %-34s %7s %8s %8s\n' "botocore PutItem, $PEER_THREADS threads" "$peer_items" "$peer_s" "$peer_rate"
echo "   videos made: $load_ok in $load_make s, $log_ok in $log_make s; change-log head $log_head; items in the table: $in_table"
echo "   ratio pvd/botocore items/s: full load $(ratio "$load_rate" "$peer_rate")x, log $(ratio "$log_rate" "$peer_rate")x;" \
    "RSS growth target <= $GROWTH_TARGET_MB MB"
echo "   pvd warn/error log lines: $(pvd_errors) (DynamoDB failures while it was away: expected);" \
    "machine busy in the second before: $busy"
echo "SUMMARY replicate-ddb: full load $load_rate items/s, log $log_rate items/s, botocore $peer_rate items/s" \
    "(ratios $(ratio "$load_rate" "$peer_rate")x, $(ratio "$log_rate" "$peer_rate")x); pvd RSS growth" \
    "$(mb "$load_growth") / $(mb "$log_growth") MB (target <=$GROWTH_TARGET_MB) -> ${verdict:-ok}"
exit 0
