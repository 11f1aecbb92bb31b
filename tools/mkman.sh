#!/bin/sh
# mkman.sh — writes doc/pvd.8 and doc/pvctl.8 from the sources of truth (the
# config key table and the admin command table, through `pvctl --man`).
#   sh tools/mkman.sh [PVCTL]          regenerate (PVCTL: default build/bin/pvctl)
#   sh tools/mkman.sh --check [PVCTL]  exit 1 if doc/ is out of date
set -eu
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
pvctl=${1:-build/bin/pvctl}
[ -x "$pvctl" ] || { echo "mkman.sh: no $pvctl (make $pvctl first)" >&2; exit 2; }
mkdir -p doc
status=0
for page in pvd pvctl; do
    tmp=$(mktemp)
    "$pvctl" --man "$page" > "$tmp"
    if [ $check = 1 ]; then
        if ! cmp -s "$tmp" "doc/$page.8"; then
            echo "mkman.sh: doc/$page.8 is out of date (run sh tools/mkman.sh)" >&2
            status=1
        fi
        rm -f "$tmp"
    else
        mv "$tmp" "doc/$page.8"
        chmod 644 "doc/$page.8"
        echo "wrote doc/$page.8"
    fi
done
exit $status
