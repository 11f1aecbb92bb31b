#!/bin/sh
# bench/run.sh — runs every bench (`make bench` calls it) and ends with
# their summary lines. Each bench starts its own pvd and its peer on
# loopback ports and stops them; see bench/README.md for what each one
# measures. The core benches take about 2 minutes.
#
#   BENCH_ONLY="api upload login"  run only these (default: api upload
#                                  login render)
#   BENCH_ONLY=replicate           bench/replicate (S3 catch-up and lag,
#                                  ~6 minutes): not in the default set
#   BENCH_ONLY=replicate-pg        bench/replicate/pg.sh (PostgreSQL
#                                  catch-up against psql \copy, ~3 minutes):
#                                  not in the default set
#   BENCH_ONLY=replicate-ddb       bench/replicate/ddb.sh (DynamoDB: a
#                                  backlog of video records, ~1 minute)
#   BENCH_SKIP_RENDER=1            skip bench/render (the slow one)
#   BENCH_KEEP=1                   keep the temp dirs (logs, wrk output)
#
# Exit status: 0 unless a bench broke (could not run, or nothing worked);
# missed targets are reported in the summaries, not as failures.
#
# Not run here: the 30-minute soak (memory and descriptors flat under
# mixed traffic). Run it on its own: bash bench/soak/run.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.." || exit 1

only=${BENCH_ONLY:-api upload login render}
no_build=${BENCH_NO_BUILD:-0}
logdir=$(mktemp -d /tmp/pvbench-run.XXXXXX) || exit 1
trap 'rm -rf "$logdir"' EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "== pv benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "   machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
echo "   tree: $(git log -1 --format='%h %cd' --date=short 2>/dev/null || echo 'no git')$(git status --porcelain 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"
echo "   load average before: $(load) (other work on the machine skews the figures)"

# One binary for the whole run: built once here, then copied, so that a
# rebuild in the tree meanwhile cannot change it between two benches.
case " $only " in *" api "* | *" upload "* | *" login "* | *" replicate "* | *" replicate-pg "* | *" replicate-ddb "*)
    if [ "$no_build" != 1 ]; then
        make -s build/bin/pvd >/dev/null || { echo "bench: make build/bin/pvd failed" >&2; exit 1; }
        case " $only " in *" replicate "* | *" replicate-pg "* | *" replicate-ddb "*)
            make -s build/bin/pvctl >/dev/null || { echo "bench: make build/bin/pvctl failed" >&2; exit 1; } ;;
        esac
    fi
    cp "${PVD:-build/bin/pvd}" "$logdir/pvd" || exit 1
    PVD=$logdir/pvd BENCH_NO_BUILD=1
    export PVD BENCH_NO_BUILD
    echo "   pvd: $("$PVD" --version 2>&1 | head -1), $(sha256sum "$PVD" | cut -c1-12)" ;;
esac

failed=""
for b in api upload login replicate replicate-pg replicate-ddb; do
    case " $only " in *" $b "*) ;; *) continue ;; esac
    script=bench/$b/run.sh
    [ "$b" = replicate-pg ] && script=bench/replicate/pg.sh
    [ "$b" = replicate-ddb ] && script=bench/replicate/ddb.sh
    echo
    { bash "$script"; echo $? >"$logdir/$b.rc"; } 2>&1 | tee "$logdir/$b.log"
    [ "$(cat "$logdir/$b.rc")" = 0 ] || failed="$failed $b"
done

case " $only " in *" render "*)
    if [ "${BENCH_SKIP_RENDER:-0}" = 1 ]; then
        echo; echo "== render: skipped (BENCH_SKIP_RENDER=1)"
    elif [ -f bench/render/run.sh ]; then
        echo
        if [ "$no_build" != 1 ] || [ ! -x build/bin/pvrender ]; then
            make -s build/bin/pvrender >/dev/null || echo "bench: make build/bin/pvrender failed" >&2
        fi
        { if [ -x bench/render/run.sh ]; then bench/render/run.sh; else sh bench/render/run.sh; fi
          echo $? >"$logdir/render.rc"; } 2>&1 | tee "$logdir/render.log"
        [ "$(cat "$logdir/render.rc")" = 0 ] || failed="$failed render"
    else
        echo; echo "== render: no bench/render/run.sh yet"
    fi ;;
esac

echo
echo "== summaries (load average after: $(load))"
cat "$logdir"/*.log 2>/dev/null | grep '^SUMMARY' || true
if [ -n "$failed" ]; then
    echo "bench: FAILED:$failed" >&2
    exit 1
fi
exit 0
