#!/bin/sh
# test_pvrender.sh — pvrender as a user runs it: the command line contract
# (API.md "Command lines") and the files it leaves.
#
# Covers: --help / --version (exit 0); bad usage (no arguments, unknown
# option, stray argument, missing --out) -> exit 2 with one line; spec
# problems (missing file, not JSON, not an object, no photos, a bad option
# such as fps 29, naming the field) -> exit 2; a missing or corrupt photo ->
# exit 1 naming the photo; an output folder that does not exist -> exit 1;
# none of these leave OUT, the poster or a temp file; success with photo
# paths relative to the spec's folder (run from another folder): exit 0, a
# playable H.264 yuv420p MP4 of the right size and length plus a JPEG
# poster, progress on stderr; SIGINT during a render -> exit 130 and no
# output.
#
# Binary: $PVRENDER, else build/test/bin/pvrender (sanitizers), else
# build/bin/pvrender. Needs ffmpeg/ffprobe. Last line:
# "# integration pvrender: N passed, M failed".
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN=${PVRENDER:-}
[ -n "$BIN" ] || { [ -x build/test/bin/pvrender ] && BIN=build/test/bin/pvrender; } ||
    BIN=build/bin/pvrender
case $BIN in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
T=$(mktemp -d /tmp/pv_test_pvrender.XXXXXX)
trap 'rm -rf "$T"' EXIT
PASS=0
FAIL=0

ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
nok() { FAIL=$((FAIL + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }

# expect NAME CODE PATTERN -- ARGS...: exit CODE, stderr (or stdout) matching PATTERN
expect() {
    name=$1 code=$2 pat=$3
    shift 4
    "$BIN" "$@" > "$T/out.txt" 2> "$T/err.txt"
    rc=$?
    if [ "$rc" -eq "$code" ] && cat "$T/out.txt" "$T/err.txt" | grep -q -e "$pat"; then
        ok "$name"
    else
        nok "$name" "exit $rc (want $code), want output matching: $pat" \
            "stderr: $(head -c 400 "$T/err.txt")"
    fi
}

# nothing_left NAME: no OUT, poster or temp file in $T/o
nothing_left() {
    left=$(ls -A "$T/o" 2>/dev/null)
    if [ -z "$left" ]; then ok "$1: nothing left behind"; else nok "$1: nothing left behind" "found: $left"; fi
}

if [ ! -x "$BIN" ]; then
    echo "not ok - pvrender binary $BIN missing (make build/test/bin/pvrender)"
    echo "# integration pvrender: 0 passed, 1 failed"
    exit 1
fi

mkdir -p "$T/spec/pics" "$T/o" "$T/elsewhere"
for c in red lime blue; do
    ffmpeg -v error -y -f lavfi -i "color=c=$c:s=320x240" -frames:v 1 "$T/spec/pics/$c.jpg" || exit 1
done
head -c 300 "$T/spec/pics/red.jpg" > "$T/spec/pics/corrupt.jpg"
head -c 2000 /dev/urandom >> "$T/spec/pics/corrupt.jpg"
spec() { echo "$2" > "$T/spec/$1.json"; }
spec good '{"photos":["pics/red.jpg","pics/lime.jpg","pics/blue.jpg"],"seconds_per_photo":1,
            "transition_seconds":0.25,"resolution":"480p","fps":24,"x264_preset":"ultrafast",
            "title":"pvrender test"}'
spec long '{"photos":["pics/red.jpg","pics/lime.jpg"],"seconds_per_photo":60,
            "resolution":"720p","x264_preset":"ultrafast"}'
spec missing '{"photos":["pics/red.jpg","pics/nothere.jpg"],"seconds_per_photo":1,"resolution":"480p"}'
spec corrupt '{"photos":["pics/red.jpg","pics/corrupt.jpg"],"seconds_per_photo":1,"resolution":"480p"}'
spec badfps '{"photos":["pics/red.jpg"],"fps":29}'
spec badtr '{"photos":["pics/red.jpg"],"transition":"spin"}'
spec nophotos '{"photos":[]}'
spec notobj '["pics/red.jpg"]'
echo '{"photos":' > "$T/spec/notjson.json"

# ---- usage ----
expect "--help" 0 "usage: pvrender" -- --help
expect "--version" 0 "pvrender [0-9]" -- --version
expect "no arguments" 2 "missing --spec" --
expect "unknown option" 2 "unknown or incomplete option" -- --frobnicate
expect "stray argument" 2 "unexpected argument" -- --spec x --out y z
expect "missing --out" 2 "missing --out" -- --spec "$T/spec/good.json"
lines=$("$BIN" 2>&1 | wc -l)
if [ "$lines" -eq 1 ]; then ok "bad usage is one line"; else nok "bad usage is one line" "$lines lines"; fi

# ---- spec problems ----
expect "missing spec" 2 "nothere.json" -- --spec "$T/spec/nothere.json" --out "$T/o/x.mp4"
expect "spec not JSON" 2 "notjson.json" -- --spec "$T/spec/notjson.json" --out "$T/o/x.mp4"
expect "spec not an object" 2 "object" -- --spec "$T/spec/notobj.json" --out "$T/o/x.mp4"
expect "spec without photos" 2 "photos" -- --spec "$T/spec/nophotos.json" --out "$T/o/x.mp4"
expect "bad option fps" 2 "fps" -- --spec "$T/spec/badfps.json" --out "$T/o/x.mp4"
expect "bad option transition" 2 "transition" -- --spec "$T/spec/badtr.json" --out "$T/o/x.mp4"
nothing_left "spec problems"

# ---- render failures ----
expect "missing photo" 1 "nothere.jpg" -- --spec "$T/spec/missing.json" --out "$T/o/x.mp4" \
    --poster "$T/o/x.jpg"
expect "corrupt photo" 1 "corrupt.jpg" -- --spec "$T/spec/corrupt.json" --out "$T/o/x.mp4" \
    --poster "$T/o/x.jpg"
expect "output folder missing" 1 "cannot create" -- --spec "$T/spec/good.json" \
    --out "$T/o/no/such/dir/x.mp4"
nothing_left "render failures"

# ---- success, from another folder ----
cd "$T/elsewhere"
"$BIN" --spec ../spec/good.json --out ../o/good.mp4 --poster ../o/good.jpg 2> "$T/err.txt"
rc=$?
cd "$ROOT"
if [ $rc -eq 0 ] && [ -s "$T/o/good.mp4" ] && [ -s "$T/o/good.jpg" ]; then
    ok "render succeeds (relative photo paths)"
else
    nok "render succeeds (relative photo paths)" "exit $rc" "$(tail -n 3 "$T/err.txt")"
fi
if grep -q "100%" "$T/err.txt"; then ok "progress on stderr"; else nok "progress on stderr"; fi
info=$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,pix_fmt,width,height \
    -show_entries format=duration -of default=nw=1 "$T/o/good.mp4" 2>&1 | tr '\n' ' ')
case $info in
*codec_name=h264*width=854*height=480*pix_fmt=yuv420p*duration=2.5*) ok "output is H.264 yuv420p 854x480, 2.5 s" ;;
*) nok "output is H.264 yuv420p 854x480, 2.5 s" "ffprobe: $info" ;;
esac
frames=$(ffmpeg -v error -i "$T/o/good.mp4" -f null - 2>&1 && echo decoded)
if [ "$frames" = "decoded" ]; then ok "output decodes without errors"; else nok "output decodes without errors" "$frames"; fi
if ffprobe -v error -show_entries stream=codec_name -of csv=p=0 "$T/o/good.jpg" | grep -q mjpeg; then
    ok "poster is a JPEG"
else
    nok "poster is a JPEG"
fi
rm -f "$T/o/good.mp4" "$T/o/good.jpg"

# ---- SIGINT cancels: exit 130, nothing written ----
"$BIN" --quiet --spec "$T/spec/long.json" --out "$T/o/long.mp4" --poster "$T/o/long.jpg" \
    2> "$T/err.txt" &
pid=$!
sleep 1.5
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 130 ] && grep -q cancelled "$T/err.txt"; then
    ok "SIGINT cancels with exit 130"
else
    nok "SIGINT cancels with exit 130" "exit $rc" "$(tail -n 3 "$T/err.txt")"
fi
nothing_left "cancel"

echo "# integration pvrender: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
