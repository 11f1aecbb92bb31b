#!/bin/sh
# bench/compare.sh REV — the benches for the tree at REV ("before") and this
# tree ("after"), in one run, so that the machine's mood is the same for
# both: api, upload and login alternate before/after ROUNDS times, and
# render times both pvrender binaries in the same rounds (PVRENDER_B).
# Prints every SUMMARY line, tagged before/after, then the ratios side by
# side. Builds REV's release binaries in a temporary worktree.
#
#   sh bench/compare.sh bc17f63            # before = that commit
#   ROUNDS=2 BENCH_SKIP_RENDER=1 sh bench/compare.sh HEAD~5
set -u
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.." || exit 1
rev=${1:?usage: sh bench/compare.sh REV}
rounds=${ROUNDS:-1}
out=$(mktemp -d /tmp/pvbench-compare.XXXXXX) || exit 1
base="$out/base"
trap 'git worktree remove --force "$base" >/dev/null 2>&1; rm -rf "$out"' EXIT

echo "== compare: before $(git rev-parse --short "$rev"), after $(git rev-parse --short HEAD)$(git status --porcelain | grep -q . && echo ' (with uncommitted changes)')"
git worktree add -q --detach "$base" "$rev" || exit 1
make -s -C "$base" build/bin/pvd build/bin/pvrender >/dev/null 2>&1 || { echo "compare: cannot build $rev" >&2; exit 1; }
make -s build/bin/pvd build/bin/pvrender >/dev/null || { echo "compare: cannot build this tree" >&2; exit 1; }
cp "$base/build/bin/pvd" "$out/pvd.before"; cp build/bin/pvd "$out/pvd.after"
cp "$base/build/bin/pvrender" "$out/pvrender.before"; cp build/bin/pvrender "$out/pvrender.after"

r=0
while [ "$r" -lt "$rounds" ]; do
    r=$((r + 1))
    # alternate which goes first, so neither always gets the warmer machine
    if [ $((r % 2)) = 1 ]; then order="before after"; else order="after before"; fi
    for which in $order; do
        echo "== round $r: $which"
        PVD="$out/pvd.$which" BENCH_NO_BUILD=1 BENCH_SKIP_RENDER=1 BENCH_ONLY="api upload login" \
            sh bench/run.sh 2>&1 | grep '^SUMMARY' | sed "s/^/$which: /" | tee -a "$out/summary"
    done
done
if [ "${BENCH_SKIP_RENDER:-0}" != 1 ]; then
    echo "== render: after (PVRENDER) and before (PVRENDER_B), interleaved"
    PVRENDER="$out/pvrender.after" PVRENDER_B="$out/pvrender.before" RUNS=${RUNS:-2} \
        sh bench/render/run.sh 2>&1 | grep -E '^SUMMARY|^pvrender|^ffmpeg' | tee -a "$out/summary"
fi
echo
echo "== all summaries"
cat "$out/summary"
