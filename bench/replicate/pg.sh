#!/bin/bash
# bench/replicate/pg.sh — PostgreSQL replication (actors/pg.c): rows/s of
# a catch-up against `psql \copy` of the same rows into the same server,
# and pvd's memory meanwhile (bench/README.md, "replicate-pg").
#
# The peer is a throwaway PostgreSQL 15 cluster (tests/peers/postgres.sh)
# on a loopback port. While it is down ("targets down"), PG_N photos
# (64x64 JPEGs over HTTPS, PG_CLIENTS clients) and PG_VIDEOS videos
# (made and cancelled at once: records, not renders) are made; pvd has
# pg_dsn set all along, so the change log keeps everything. Then the
# cluster starts, `pvctl sync now`, and the clock runs until cursor ==
# head (repl.py converge, VmRSS sampled every 100 ms: growth target
# <= 64 MB). The rows then in pv_users, pv_photos and pv_videos are
# checked against the counts made. The peer, on the same server: each
# table's rows exported with `\copy ... TO` and timed back with
# `\copy ... FROM` into an empty copy of the table (CREATE TABLE ... LIKE
# ... INCLUDING ALL: the same keys and indexes). Reported: rows/s of each
# and the ratio pvd/\copy (target >= 0.3).
#
# Environment: PG_N (10000), PG_VIDEOS (1000), PG_CLIENTS (4),
# PG_TIMEOUT (600: the most a step may take), PVCTL.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"

N=${PG_N:-10000}
NV=${PG_VIDEOS:-1000}
CLIENTS=${PG_CLIENTS:-4}
TIMEOUT=${PG_TIMEOUT:-600}
PVCTL=${PVCTL:-$BENCH_ROOT/build/bin/pvctl}
GROWTH_TARGET_MB=64
HERE=$BENCH_ROOT/bench/replicate
PEER=$BENCH_ROOT/tests/peers/postgres.sh

bench_need curl procps python3 ffmpeg postgresql-15
pvd_build
if [ "${BENCH_NO_BUILD:-0}" != 1 ] || [ ! -x "$PVCTL" ]; then
    make -s -C "$BENCH_ROOT" build/bin/pvctl >/dev/null || bench_die "make build/bin/pvctl failed"
fi

bench_tmp
OUT=$BENCH_TMP/replicate-pg
PGDIR=$BENCH_TMP/postgres
mkdir -p "$OUT"
chmod 755 "$BENCH_TMP"  # the server's user reads its directory under it
# shellcheck disable=SC2317  # called by the trap
pg_cleanup() { sh "$PEER" stop "$PGDIR" 2>/dev/null; }
trap 'pg_cleanup; bench_cleanup' EXIT

now() { date +%s.%N; }
say() { bench_log "bench: [$(date +%T)] $*"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f\n", b - a}'; }
per_s() { awk -v n="$1" -v s="$2" 'BEGIN {if (s + 0 == 0) print "n/a"; else printf "%.0f\n", n / s}'; }
jfields() { python3 -c 'import json,sys
def get(v, k):
    for p in k.split("."):
        v = v[int(p)] if isinstance(v, list) else v[p]
    return v
d = json.load(open(sys.argv[1]))
print(*(get(d, k) for k in sys.argv[2:]))' "$@"; }
status_get() { "$PVCTL" --socket "$PVD_DATA/admin.sock" --json --timeout 5 sync status | json_get "result.targets.0.$1"; }
export PGOPTIONS="-c client_min_messages=warning"
psql_() { sh "$PEER" psql "$PGDIR" -d pvbench -At -v ON_ERROR_STOP=1 "$@"; }

# the photos: the same cached set bench/replicate makes
photos=$BENCH_CACHE/repl64
if [ "$(cat "$photos/done" 2>/dev/null || echo 0)" -lt "$N" ]; then
    bench_log "bench: making $N small test JPEGs in $photos (once)"
    rm -rf "$photos" && mkdir -p "$photos"
    ffmpeg -v error -y -f lavfi -i "testsrc2=s=64x64:r=25,noise=alls=40:allf=t+u:all_seed=1" \
        -frames:v "$N" -q:v 5 "$photos/p%06d.jpg" || bench_die "ffmpeg could not make the test images"
    echo "$N" >"$photos/done"
fi
find "$photos" -name '*.jpg' | sort | head -n "$N" >"$OUT/photos.list"

say "starting PostgreSQL"
PGPORT=$(sh "$PEER" start "$PGDIR" 0 $$) || bench_die "PostgreSQL did not start"
sh "$PEER" psql "$PGDIR" -c "CREATE DATABASE pvbench" >/dev/null || bench_die "CREATE DATABASE failed"
sh "$PEER" stop "$PGDIR"
say "PostgreSQL (port $PGPORT) down; starting pvd with pg_dsn"
pvd_start replicate-pg --set log_level=info --set access_token_ttl=14400 \
    --set "pg_dsn=host=127.0.0.1 port=$PGPORT dbname=pvbench user=postgres connect_timeout=5" \
    --set sync_interval=10 --set user_queued_jobs=100000 --set render_open_jobs=1
# paused: the clock starts at `sync now`, not at pvd's own retry
"$PVCTL" --socket "$PVD_DATA/admin.sock" --timeout 5 sync pause pg >/dev/null
bench_user replicate-pg@bench.example
say "uploading $N photos with $CLIENTS clients"
python3 "$HERE/repl.py" upload "$PVD_URL" "$BENCH_TOKEN" "$OUT/photos.list" "$CLIENTS" "$TIMEOUT" \
    >"$OUT/upload.json" || bench_die "the uploader failed"
read -r up_ok up_s up_rate < <(jfields "$OUT/upload.json" ok seconds per_s)
say "$up_ok photos in $up_s s; making $NV videos (made and cancelled)"
python3 "$HERE/pgload.py" videos "$PVD_URL" "$BENCH_TOKEN" "$NV" >"$OUT/videos.json" ||
    bench_die "the video maker failed"
read -r v_made v_cancelled v_s < <(jfields "$OUT/videos.json" made cancelled seconds)
# settled: the head no longer moves (thumbnails, cancels)
h0=-1
for i in $(seq 1 120); do
    h=$(status_get head)
    [ "$h" = "$h0" ] && break
    h0=$h
    sleep 1
done
head_before=$h
say "change-log head $head_before; PostgreSQL up, pvctl sync now"
sh "$PEER" start "$PGDIR" "$PGPORT" $$ >/dev/null || bench_die "PostgreSQL did not start again"
pvcpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu0=$(pvcpu "$PVD_PID")
python3 "$HERE/repl.py" converge "$PVD_PID" "$PVCTL" "$PVD_DATA/admin.sock" "$TIMEOUT" "$OUT/rss.txt" \
    >"$OUT/converge.json" || bench_die "the converge watcher failed"
cpu1=$(pvcpu "$PVD_PID")
read -r pv_s converged rss_base_kb rss_peak_kb < <(jfields "$OUT/converge.json" seconds converged \
    rss_base_kb rss_peak_kb)
rows_u=$(psql_ -c "SELECT count(*) FROM pv_users") rows_p=$(psql_ -c "SELECT count(*) FROM pv_photos")
rows_v=$(psql_ -c "SELECT count(*) FROM pv_videos")
rows=$((rows_u + rows_p + rows_v))
verdict=""
flag() { case ",$verdict," in *",$1,"*) ;; *) verdict=${verdict:+$verdict,}$1 ;; esac; }
[ "$converged" = True ] || flag TIMEOUT
[ "$rows_p" = "$up_ok" ] && [ "$rows_v" = "$v_made" ] && [ "$rows_u" = 1 ] || flag MISSING
pv_rps=$(per_s "$rows" "$pv_s")
growth_kb=$((rss_peak_kb - rss_base_kb))
[ "$growth_kb" -le $((GROWTH_TARGET_MB * 1024)) ] || flag RSS_OVER_TARGET

# ---- the peer: psql \copy of the same rows into copies of the tables
say "psql \\copy of the same $rows rows"
for t in pv_users pv_photos pv_videos; do
    psql_ -c "\\copy $t TO '$OUT/$t.copy'" || bench_die "\\copy $t TO failed"
    psql_ -c "DROP TABLE IF EXISTS copy_$t; CREATE TABLE copy_$t (LIKE $t INCLUDING ALL)" >/dev/null
done
t0=$(now)  # one psql for the three: one connection, as pvd has
psql_ -c "\\copy copy_pv_users FROM '$OUT/pv_users.copy'" \
    -c "\\copy copy_pv_photos FROM '$OUT/pv_photos.copy'" \
    -c "\\copy copy_pv_videos FROM '$OUT/pv_videos.copy'" >/dev/null || bench_die "\\copy FROM failed"
t1=$(now)
copy_s=$(sub "$t0" "$t1")
copy_rows=$(psql_ -c "SELECT (SELECT count(*) FROM copy_pv_users) + (SELECT count(*) FROM copy_pv_photos) + (SELECT count(*) FROM copy_pv_videos)")
copy_rps=$(per_s "$copy_rows" "$copy_s")
# the load alone, as pvd logs it (connect and CREATE TABLE aside)
load_s=$(sed -n 's/.*"msg":"loaded [0-9]* rows into [^ ]* in \([0-9.]*\) s.*/\1/p' "$PVD_LOG" | tail -1)
load_rps=$(per_s "$rows" "${load_s:-0}")
r=$(ratio "$pv_rps" "$copy_rps")
awk -v r="$r" 'BEGIN {exit !(r != "n/a" && r + 0 >= 0.3)}' || flag BELOW_TARGET

echo "== replicate-pg: $up_ok photos and $v_made videos made while PostgreSQL was down, then up"
echo "   uploads $up_ok/$N in $up_s s ($up_rate/s); videos made $v_made, cancelled $v_cancelled in $v_s s;" \
    "change-log head $head_before"
printf '   %-16s %8s %8s %9s %s\n' "" rows seconds rows/s "pvd CPU s"
printf '   %-16s %8s %8s %9s %s\n' "pvd catch-up" "$rows" "$pv_s" "$pv_rps" "$(sub "$cpu0" "$cpu1")"
printf '   %-16s %8s %8s %9s\n' "  its load alone" "$rows" "${load_s:-?}" "$load_rps"
printf '   %-16s %8s %8s %9s\n' "psql \\copy" "$copy_rows" "$copy_s" "$copy_rps"
echo "   rows in PostgreSQL: users $rows_u, photos $rows_p, videos $rows_v; converged: $converged"
echo "   ratio pvd/\\copy rows/s: ${r}x (target >= 0.3): from sync now (connect, CREATE TABLE, load," \
    "COMMIT, cursor; polled every 0.2 s); the load alone $(ratio "$load_rps" "$copy_rps")x"
echo "   pvd VmRSS: $(mb "$rss_base_kb") MB at sync now, peak $(mb "$rss_peak_kb") MB, growth $(mb "$growth_kb") MB" \
    "(target <= $GROWTH_TARGET_MB MB)"
echo "SUMMARY replicate-pg: $rows rows, pvd $pv_rps rows/s, psql \\copy $copy_rps rows/s, ratio ${r}x (target >=0.3);" \
    "RSS growth $(mb "$growth_kb") MB (target <=$GROWTH_TARGET_MB) -> ${verdict:-ok}"
