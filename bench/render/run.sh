#!/bin/sh
# bench/render/run.sh — pvrender against the ffmpeg command line on the
# reference job (10 photos 1920x1080, 3 s each, 0.5 s fades, 1080p30, x264
# veryfast crf 23), in one run on this machine:
#   - wall time (median of $RUNS), CPU time and peak RSS (/usr/bin/time -v)
#     of the peer command and of pvrender, and their ratios;
#   - SSIM of pvrender's output against the peer's (ffmpeg -lavfi ssim);
#   - the encode-only floor: ffmpeg encoding pvrender's own frames from raw
#     YUV held in RAM (/dev/shm), same x264 settings;
#   - memory bound: 200 photos vs 10 photos (480p, 0.5 s each) peak RSS;
#   - frames per second at 720p and at 2160p.
# Takes about 3-5 minutes. Not part of `make test`.
#
#   sh bench/render/run.sh            # uses build/bin/pvrender (make first)
#   PVRENDER=/path RUNS=5 sh bench/render/run.sh
#   PVRENDER_B=/path/old/pvrender sh bench/render/run.sh
#                                     # before/after: the reference job with a
#                                     # second pvrender too, in the same rounds
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN=${PVRENDER:-$ROOT/build/bin/pvrender}
BIN_B=${PVRENDER_B:-}
RUNS=${RUNS:-3}
W=${BENCH_DIR:-$ROOT/build/bench-render}
SHM=${BENCH_SHM:-/dev/shm}
[ -x "$BIN" ] || { echo "bench: $BIN missing: run make first" >&2; exit 1; }
[ -z "$BIN_B" ] || [ -x "$BIN_B" ] || { echo "bench: $BIN_B missing" >&2; exit 1; }
mkdir -p "$W"
cd "$W"

# ---- the photos: deterministic, 1920x1080 JPEGs of varied content ----
photos() {
    i=0
    for src in testsrc2=r=1 mandelbrot=r=1 smptehdbars=r=1 gradients=seed=7:n=4; do
        [ -f p$i.jpg ] || ffmpeg -v error -y -f lavfi -i "$src:s=1920x1080" -frames:v 1 \
            -q:v 2 p$i.jpg
        i=$((i + 1))
    done
    for seed in 1 2 3 4 5 6; do # photo-like: fractal plasma (ImageMagick)
        [ -f p$i.jpg ] || convert -seed $seed -size 1920x1080 plasma:fractal -blur 0x1 \
            -quality 92 p$i.jpg
        i=$((i + 1))
    done
}
photos

# spec FILE N RES SPP TS [PRESET]: a pvrender spec over N photos cycling p0..p9
spec() {
    f=$1 n=$2 res=$3 spp=$4 ts=$5
    list=$(i=0; while [ $i -lt "$n" ]; do
               [ $i -eq 0 ] || printf ','; printf '"p%d.jpg"' $((i % 10)); i=$((i + 1)); done)
    printf '{"photos":[%s],"resolution":"%s","seconds_per_photo":%s,"transition":"fade",' \
        "$list" "$res" "$spp" > "$f"
    printf '"transition_seconds":%s,"fps":30,"x264_preset":"veryfast","crf":23}\n' "$ts" >> "$f"
}

# timed NAME CMD...: one run; appends "NAME wall user sys rss_kb" to times.txt
timed() {
    name=$1; shift
    /usr/bin/time -v -o time.txt "$@" > /dev/null 2> run.err || {
        echo "bench: $name failed:" >&2; tail -n 5 run.err >&2; exit 1; }
    awk -v n="$name" '
        /Elapsed \(wall clock\)/ { k = split($NF, t, ":"); w = t[k] + 60 * t[k - 1];
                                   if (k == 3) w += 3600 * t[1] }
        /User time/ { u = $NF } /System time/ { s = $NF }
        /Maximum resident set size/ { r = $NF }
        END { printf "%s %.2f %.2f %.2f %d\n", n, w, u, s, r }' time.txt >> times.txt
}

# median NAME FIELD: median of a field (2 wall, 3 user, 4 sys, 5 rss) over runs
median() {
    awk -v n="$1" -v f="$2" '$1 == n { print $f }' times.txt | sort -n |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# peer.sh: the ffmpeg command the issue gives (decode once, loop, xfade)
write_peer() {
    inputs="" chain="" prev=v0
    i=0
    while [ $i -lt 10 ]; do
        inputs="$inputs -i p$i.jpg"
        chain="$chain[$i:v]scale=1920:1080,setsar=1,format=yuv420p,loop=loop=89:size=1:start=0,setpts=N/(30*TB),fps=30[v$i];"
        i=$((i + 1))
    done
    i=1
    while [ $i -lt 10 ]; do
        off=$(awk -v k=$i 'BEGIN { printf "%g", k * 2.5 }')
        chain="$chain[$prev][v$i]xfade=transition=fade:duration=0.5:offset=$off[x$i];"
        prev=x$i
        i=$((i + 1))
    done
    echo "exec ffmpeg -v error -y $inputs -filter_complex '${chain%;}' -map '[$prev]'" \
        "-c:v libx264 -preset veryfast -crf 23 peer.mp4" > peer.sh
}

: > times.txt
spec ref.json 10 1080p 3 0.5
write_peer
echo "bench: reference job, $RUNS runs each (interleaved)..." >&2
r=0
ref_b() { [ -z "$BIN_B" ] || timed pvrender_b "$BIN_B" --quiet --spec ref.json --out pvb.mp4 --poster pvb.jpg; }
while [ $r -lt "$RUNS" ]; do
    timed peer sh peer.sh
    [ $((r % 2)) -eq 0 ] || ref_b # B before and after A in turn: neither always runs warm
    timed pvrender "$BIN" --quiet --spec ref.json --out pv.mp4 --poster pv.jpg
    [ $((r % 2)) -eq 1 ] || ref_b
    r=$((r + 1))
done

echo "bench: SSIM and encode-only floor..." >&2
ssim=$(ffmpeg -i pv.mp4 -i peer.mp4 -lavfi ssim -f null - 2>&1 | sed -n 's/.*All:\([0-9.]*\).*/\1/p')
frames=$(ffprobe -v error -count_frames -show_entries stream=nb_read_frames -of csv=p=0 pv.mp4)
ffmpeg -v error -y -i pv.mp4 -f rawvideo -pix_fmt yuv420p "$SHM/pv_bench_frames.yuv"
timed floor ffmpeg -v error -y -f rawvideo -pix_fmt yuv420p -s 1920x1080 -r 30 \
    -i "$SHM/pv_bench_frames.yuv" -c:v libx264 -preset veryfast -crf 23 floor.mp4
rm -f "$SHM/pv_bench_frames.yuv"

echo "bench: memory with 200 photos, fps at 720p and 2160p..." >&2
spec m10.json 10 480p 0.5 0.25
spec m200.json 200 480p 0.5 0.25
timed mem10 "$BIN" --quiet --spec m10.json --out m10.mp4
timed mem200 "$BIN" --quiet --spec m200.json --out m200.mp4
spec r720.json 10 720p 3 0.5
timed fps720 "$BIN" --quiet --spec r720.json --out r720.mp4
spec r2160.json 3 2160p 2 0.5
timed fps2160 "$BIN" --quiet --spec r2160.json --out r2160.mp4

pw=$(median peer 2) vw=$(median pvrender 2) fw=$(median floor 2)
pc=$(awk -v u="$(median peer 3)" -v s="$(median peer 4)" 'BEGIN { print u + s }')
vc=$(awk -v u="$(median pvrender 3)" -v s="$(median pvrender 4)" 'BEGIN { print u + s }')
pr=$(median peer 5) vr=$(median pvrender 5)
f720=$(awk -v w="$(median fps720 2)" 'BEGIN { printf "%.1f", 765 / w }')
f2160=$(awk -v w="$(median fps2160 2)" 'BEGIN { printf "%.1f", 150 / w }')
{
    echo "pv render benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "reference job: 10 photos 1920x1080, 3 s each, 0.5 s fades, 1080p30, x264 veryfast crf 23 ($frames frames)"
    echo
    printf "%-24s %10s %10s %12s\n" "" "wall s" "cpu s" "peak RSS MB"
    printf "%-24s %10.2f %10.2f %12.0f\n" "ffmpeg CLI (peer)" "$pw" "$pc" "$(echo "$pr" | awk '{ print $1 / 1024 }')"
    printf "%-24s %10.2f %10.2f %12.0f\n" "pvrender" "$vw" "$vc" "$(echo "$vr" | awk '{ print $1 / 1024 }')"
    if [ -n "$BIN_B" ]; then
        bw=$(median pvrender_b 2)
        bc=$(awk -v u="$(median pvrender_b 3)" -v s="$(median pvrender_b 4)" 'BEGIN { print u + s }')
        printf "%-24s %10.2f %10.2f %12.0f\n" "pvrender B" "$bw" "$bc" \
            "$(median pvrender_b 5 | awk '{ print $1 / 1024 }')"
    fi
    printf "%-24s %10.2f %10s %12s\n" "encode-only floor" "$fw" "" ""
    echo
    awk -v a="$vw" -v b="$pw" -v c="$vr" -v d="$pr" -v f="$fw" 'BEGIN {
        printf "pvrender / peer: wall %.2fx, peak RSS %.2fx; pvrender / floor: wall %.2fx\n",
               a / b, c / d, a / f }'
    [ -z "$BIN_B" ] || awk -v a="$vw" -v b="$bw" -v p="$pw" -v B="$BIN_B" 'BEGIN {
        printf "pvrender / pvrender B (%s): wall %.3fx; B / peer: wall %.2fx\n", B, a / b, b / p }'
    echo "SSIM pvrender vs peer: $ssim (target >= 0.95)"
    echo "memory bound (480p, 0.5 s a photo): 10 photos $(median mem10 5 | awk '{ printf "%.0f", $1 / 1024 }') MB," \
         "200 photos $(median mem200 5 | awk '{ printf "%.0f", $1 / 1024 }') MB"
    echo "speed: 720p30 $f720 fps, $(median fps720 5 | awk '{ printf "%.0f", $1 / 1024 }') MB (10 photos);" \
         "2160p30 $f2160 fps, $(median fps2160 5 | awk '{ printf "%.0f", $1 / 1024 }') MB (3 photos, 2 s each)"
    echo "(runs: $RUNS; every timing is in $W/times.txt)"
} | tee results.txt
# one line for bench/run.sh's summary
awk -v a="$vw" -v b="$pw" -v c="$vr" -v d="$pr" -v s="$ssim" 'BEGIN {
    w = a / b; r = c / d; m = c / 1024
    v = (w <= 1.0 && s >= 0.95 && m <= 300) ? "met" : "MISSED"
    printf "SUMMARY render: pvrender %.2f s vs ffmpeg %.2f s (%.2fx), RSS %.0f vs %.0f MB (%.2fx), SSIM %s; targets <=1.0x, SSIM>=0.95, <=300 MB -> %s\n",
           a, b, w, m, d / 1024, r, s, v }'
