#!/bin/sh
# Runs every test and ends with one line "N passed, M failed".
# Each suite prints "# <kind> <name>: P passed, F failed"; this adds them up.
# Suites: unit tests (ASan+UBSan build; test_s3 starts its own S3 peer,
# s3rver from tests/peers/, on 127.0.0.1 and stops it), fuzz smoke runs
# over the seed corpora, pvrender tests, and the integration tests against
# a real pvd (test_sync_pg starts its own PostgreSQL 15 cluster,
# tests/peers/postgres.sh, in a temp dir on 127.0.0.1 and stops it).
set -u
cd "$(dirname "$0")/.."
LOG=build/test-logs
mkdir -p "$LOG"
: > "$LOG/summary"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0"
# Every failure the seam injects, in any suite, is logged here (site,
# file:line, suite); the failsites suite at the end checks that every
# pv_fail site of the source was fired by some test.
: > "$LOG/failpoints.log"
export PV_FAILPOINTS_LOG="$(pwd)/$LOG/failpoints.log"

# run NAME CMD...: output to the log and the console; a suite that crashes
# or exits non-zero without a summary line counts as one failure.
run() {
    name=$1; shift
    out="$LOG/$name.log"
    PV_FAILPOINTS_TAG="$name" "$@" > "$out" 2>&1
    rc=$?
    cat "$out"
    line=$(grep -E '^# [a-z]+( [^:]*)?: [0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "# suite $name: 0 passed, 1 failed (exit $rc, no summary)" | tee -a "$LOG/summary"
    else
        echo "$line" >> "$LOG/summary"
        if [ $rc -ne 0 ] && echo "$line" | grep -q ' 0 failed'; then
            echo "# suite $name: 0 passed, 1 failed (exit $rc)" | tee -a "$LOG/summary"
        fi
    fi
}

for t in build/test/unit/test_*; do
    [ -x "$t" ] || continue
    run "unit-$(basename "$t")" "$t"
done

# Our AWS SigV4 signer against botocore's, on random S3 requests (the S3
# and DynamoDB peers used in tests accept any signature, so this is where
# signing is checked).
if [ -x build/test/unit/sigv4_cli ]; then
    run sigv4-botocore /usr/bin/python3 tests/unit/sigv4_botocore.py build/test/unit/sigv4_cli
fi

# Fuzz smoke: every target over its seed corpus plus a short random run.
fuzz_smoke() {
    f=$1; n=$(basename "$f"); pass=0; fail=0
    mkdir -p "build/fuzz/corpus/$n"
    if "$f" -max_total_time="${FUZZ_SMOKE_SECONDS:-10}" -timeout=10 -rss_limit_mb=2048 \
        "build/fuzz/corpus/$n" "tests/fuzz/corpus/$n" >/dev/null 2>"$LOG/fuzz-$n.err"; then
        pass=1; echo "ok - fuzz $n"
    else
        fail=1; echo "not ok - fuzz $n"; tail -n 30 "$LOG/fuzz-$n.err"
    fi
    echo "# fuzz $n: $pass passed, $fail failed"
}
for f in build/fuzz/bin/fuzz_*; do
    [ -x "$f" ] || continue
    run "fuzz-$(basename "$f")" fuzz_smoke "$f"
done

for t in tests/integration/test_*.sh; do
    [ -f "$t" ] || continue
    run "sh-$(basename "$t" .sh)" sh "$t"
done

if [ -f tests/integration/run.py ]; then
    run integration /usr/bin/python3 tests/integration/run.py
fi

if [ -f tests/ui/run.sh ]; then
    run ui sh tests/ui/run.sh
fi

# The failure seam: every site fired by some suite above (the table of
# which suite fired what is in $LOG/failsites.log), and none of it left in
# the release binaries.
run failsites python3 tools/failsites.py check "$LOG/failpoints.log"
run failsites-release python3 tools/failsites.py release build/bin/pvd build/bin/pvctl \
    build/bin/pvrender --control build/test/bin/pvd

awk '{ for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed,?$/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f; exit (f > 0) }' "$LOG/summary"
