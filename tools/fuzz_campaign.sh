#!/bin/sh
# A fuzz campaign: every libFuzzer target for SECONDS (default 1200) of wall
# time, JOBS (default 2, one a core) at once, at SCHED_IDLE (they take
# only the CPU nothing else wants), each on its own copy of the
# kept corpus.  Afterwards each target's corpus is merged (-merge=1, only inputs that add coverage) back
# into tests/fuzz/corpus/NAME, and a table of executions, coverage and
# crashes goes to build/fuzz/campaign/summary.txt.  Crash inputs stay in
# build/fuzz/campaign/NAME/ for a regression case.
#
#   make $(ls tests/fuzz/fuzz_*.c | sed 's#tests/fuzz/\(.*\)\.c#build/fuzz/bin/\1#')
#   sh tools/fuzz_campaign.sh [SECONDS] [JOBS] [TARGET...]
set -u
cd "$(dirname "$0")/.."
secs=${1:-1200}; jobs=${2:-2}
shift 2 2>/dev/null || shift $#
targets=${*:-$(ls build/fuzz/bin | grep -v '\.d$')}
out=build/fuzz/campaign
mkdir -p "$out"

# Each target runs in a child shell, JOBS at once.
for n in $targets; do echo "$n"; done |
    xargs -P "$jobs" -I{} sh -c '
        n={}; d='"$out"'/$n; rm -rf "$d"; mkdir -p "$d/corpus"
        cp tests/fuzz/corpus/"$n"/* "$d/corpus/" 2>/dev/null
        (cd "$d" && exec chrt --idle 0 ../../bin/"$n" -max_total_time='"$secs"' \
            -timeout=25 -print_final_stats=1 corpus) >"$d/log" 2>&1
        echo $? >"$d/rc"; echo "done $n rc=$(cat "$d/rc")"'

printf '%-18s %12s %8s %8s %6s %s\n' target execs cov ft corpus crashes >"$out/summary.txt"
for n in $targets; do
    d=$out/$n
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$d/log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$d/log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$d/log" | tail -1 | cut -d' ' -f2)
    crashes=$(ls "$d" | grep -c -E '^(crash|leak|timeout|oom)-')
    # Minimise: the named seeds stay; of the campaign's inputs only those
    # that add coverage over them are kept.
    before=$(ls tests/fuzz/corpus/"$n" | wc -l)
    build/fuzz/bin/"$n" -merge=1 tests/fuzz/corpus/"$n" "$d/corpus" >"$d/merge.log" 2>&1
    kept=$(ls tests/fuzz/corpus/"$n" | wc -l)
    kept="$before+$((kept - before))"
    printf '%-18s %12s %8s %8s %6s %s\n' "$n" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$kept" "$crashes" >>"$out/summary.txt"
done
cat "$out/summary.txt"
