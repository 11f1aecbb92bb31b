#!/bin/sh
# webbuild.sh [SRC] [OUT] — builds the web UI: copies SRC (web/) to OUT
# (build/web/) with content-hashed asset names, so that pvd can serve them
# as immutable, and writes a gzip sibling next to each text file where that
# makes it smaller. Needs only POSIX sh, sed, grep, sha256sum and gzip: no
# npm, no bundler.
#
# How references are found: an asset (a file in SRC/assets) is referred to
# as "./NAME.EXT" from another asset (JS imports, CSS url(), new URL(...,
# import.meta.url)) and as "/assets/NAME.EXT" from index.html. A file's hash
# covers its text after its own references were rewritten, so files are
# done in dependency order (leaves first); a cycle is an error.
set -eu

SRC=${1:-web}
OUT=${2:-build/web}
[ -f "$SRC/index.html" ] || { echo "webbuild: no $SRC/index.html" >&2; exit 1; }

parent=$(dirname "$OUT")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.webbuild.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/out/assets" "$work/src"
cp "$SRC"/assets/* "$work/src/"
map="$work/map"   # lines: NAME HASHED-NAME, for the files done so far
: > "$map"

# The pattern of a reference to NAME (dots escaped), then a non-name char.
ref_re() {
    n=$(printf '%s' "$1" | sed 's/\./\\./g')
    printf '(\\./|/assets/)%s([^A-Za-z0-9_.-]|$)' "$n"
}

# Rewrites, in file $1, every reference to a name already in the map.
rewrite() {
    while read -r name hashed; do
        re=$(ref_re "$name")
        if grep -Eq "$re" "$1"; then
            sed -E -i "s#$re#\\1$hashed\\2#g" "$1"
        fi
    done < "$map"
}

# Names of the other assets that file $1 refers to and that are not done.
pending_refs() {
    for other in $names; do
        [ "$other" = "$(basename "$1")" ] && continue
        awk -v n="$other" '$1 == n { f = 1 } END { exit !f }' "$map" && continue
        if grep -Eq "$(ref_re "$other")" "$1"; then echo "$other"; fi
    done
}

names=$(cd "$work/src" && ls)
left=$names
while [ -n "$left" ]; do
    next=""
    progress=0
    for f in $left; do
        if [ -n "$(pending_refs "$work/src/$f")" ]; then
            next="$next $f"
            continue
        fi
        rewrite "$work/src/$f"
        h=$(sha256sum "$work/src/$f" | cut -c1-10)
        case "$f" in
            *.*) hashed="${f%.*}.$h.${f##*.}" ;;
            *) hashed="$f.$h" ;;
        esac
        cp "$work/src/$f" "$work/out/assets/$hashed"
        echo "$f $hashed" >> "$map"
        progress=1
    done
    if [ $progress = 0 ]; then
        echo "webbuild: reference cycle among:$next" >&2
        exit 1
    fi
    left=$next
done

cp "$SRC/index.html" "$work/out/index.html"
rewrite "$work/out/index.html"
if grep -Eq '(src|href)="/assets/[^"]*"' "$work/out/index.html"; then
    missing=$(grep -Eo '/assets/[A-Za-z0-9_.-]+' "$work/out/index.html" | while read -r a; do
        [ -f "$work/out$a" ] || echo "$a"; done)
    [ -z "$missing" ] || { echo "webbuild: index.html refers to missing $missing" >&2; exit 1; }
fi

# gzip where it helps: text types only, and only when clearly smaller. Not
# the HTML pages: a compressed page next to anything secret or reflected is
# what BREACH reads, and the pages are small; the assets are static.
find "$work/out/assets" -type f \( -name '*.js' -o -name '*.css' \
    -o -name '*.svg' -o -name '*.json' -o -name '*.txt' \) | while read -r f; do
    gzip -9 -k -n "$f"
    a=$(wc -c < "$f"); b=$(wc -c < "$f.gz")
    [ $((b * 10)) -lt $((a * 9)) ] || rm -f "$f.gz"
done

rm -rf "$OUT.old"
[ -d "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$work/out" "$OUT"
rm -rf "$OUT.old"
echo "webbuild: $(ls "$OUT/assets" | grep -vc '\.gz$') assets -> $OUT"
