"""test_photos_shrink.py — photos shrunk on load (doc/DESIGN.md, "Photos are
shrunk on load"): a JPEG whose scan runs far past the 256 KB pvd reads up
front (a 3000x2000 Mandelbrot render: fine, photo-like detail) is decoded
at a reduced scale, streamed from the file; its thumbnail
must look like a full decode's (SSIM >= 0.98 against FFmpeg's own full
decode scaled to the same size), and a damaged one must still be refused
with 415, with nothing stored."""

import os
import re
import subprocess

from harness import check, eq, ffmpeg_image, image_size, img_dir

BIG_W, BIG_H = 3000, 2000


def _big():
    data = ffmpeg_image("jpg", BIG_W, BIG_H, "mandelbrot", ("-q:v", "2"))
    check(len(data) > 300 * 1024, "the test JPEG runs past pvd's 256 KB head", "> 300 KB", len(data))
    return data


def _ssim(a_path, b_path):
    p = subprocess.run(["ffmpeg", "-nostdin", "-i", a_path, "-i", b_path, "-lavfi", "ssim", "-f", "null", "-"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    m = re.search(rb"All:([0-9.]+)", p.stderr)
    check(m is not None, "ffmpeg ssim ran", "All:...", p.stderr[-300:])
    return float(m.group(1))


def test_big_jpeg_thumbnail_matches_a_full_decode(pvd):
    u = pvd.new_user("shrink-ok")
    data = _big()
    p = u.upload_ok(data, "image/jpeg", "big.jpg")
    eq((p["width"], p["height"]), (BIG_W, BIG_H), "size of the photo (from its header)")
    r = u.req("GET", "/api/v1/photos/%s/thumbnail" % p["id"]).expect(200, "thumbnail")
    size = image_size(r.body)
    eq(size, (320, 213), "thumbnail size")
    d = img_dir()
    src, thumb, ref = (os.path.join(d, n) for n in ("shrink-src.jpg", "shrink-thumb.jpg", "shrink-ref.png"))
    with open(src, "wb") as f:
        f.write(data)
    with open(thumb, "wb") as f:
        f.write(r.body)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src, "-vf",
                    "scale=320:213:flags=bicubic", ref], check=True, timeout=60)
    s = _ssim(thumb, ref)
    print("# thumbnail SSIM against FFmpeg's full decode: %.5f" % s)
    check(s >= 0.98, "thumbnail looks like a full decode's", ">= 0.98", s)
    # The original is stored as sent.
    r = u.req("GET", "/api/v1/photos/%s/content" % p["id"]).expect(200, "content")
    eq(r.body == data, True, "stored original is the bytes sent")


def test_damaged_big_jpeg_refused(pvd):
    u = pvd.new_user("shrink-bad")
    data = _big()
    mid = len(data) // 2
    cases = [
        (data[:int(len(data) * 0.7)], "cut at 70% (past the head)"),
        (data[:-2], "no EOI"),
        (data[:mid] + b"\xff\xd9" + data[mid + 2:], "an EOI inside the scan"),
        (data[:mid] + bytes(len(data) - mid - 2) + b"\xff\xd9", "the scan zeroed from halfway"),
    ]
    for body, what in cases:
        r = u.upload(body, "image/jpeg", "bad.jpg")
        r.expect_error(415, "unsupported_media_type", "upload of a big JPEG, " + what)
    eq(u.list_all(), [], "list after refused uploads")
    eq(u.req("GET", "/api/v1/me").expect(200, "/me").json()["usage"]["photos"], 0, "usage.photos")
