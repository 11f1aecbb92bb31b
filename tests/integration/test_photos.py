"""test_photos.py — photo upload (raw and multipart), validation, listing
with cursors, content/thumbnail serving, deletion and isolation between
users (API.md, "Photos")."""

import re
import secrets
import threading
import time

from harness import (check, colour_at, decode_rgb, eq, fixture, heic, image_size, jpeg, oriented_jpeg,
                     parse_time, sha256_hex, unique_jpeg, unique_png, webp)

PVD_CONFIG = {"max_upload_bytes": 1000000}

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
PHOTO_KEYS = {"id", "filename", "content_type", "bytes", "sha256", "width", "height",
              "taken_at", "created_at", "urls"}


def check_photo(p, data, content_type, filename=None, size=None, what="photo"):
    check(isinstance(p, dict), what + " is an object", "{...}", p)
    missing = PHOTO_KEYS - set(p)
    check(not missing, what + " has every field", sorted(PHOTO_KEYS), sorted(p))
    check(isinstance(p["id"], str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", p["id"]),
          what + ".id URL-safe <= 64 chars", "id", p["id"])
    if filename is not None:
        eq(p["filename"], filename, what + ".filename")
    eq(p["content_type"], content_type, what + ".content_type")
    eq(p["bytes"], len(data), what + ".bytes")
    eq(p["sha256"], sha256_hex(data), what + ".sha256")
    if size is not None:
        eq((p["width"], p["height"]), size, what + " (width, height)")
    check(p["taken_at"] is None or (isinstance(p["taken_at"], str) and RFC3339.match(p["taken_at"])),
          what + ".taken_at is null or RFC 3339", "null or time", p["taken_at"])
    check(isinstance(p["created_at"], str) and RFC3339.match(p["created_at"]),
          what + ".created_at RFC 3339", "time", p["created_at"])
    urls = p["urls"]
    check(isinstance(urls, dict), what + ".urls object", "{content, thumbnail}", urls)
    for k in ("content", "thumbnail"):
        v = urls.get(k)
        check(isinstance(v, str) and v.startswith("/media/") and "expires=" in v and "sig=" in v,
              "%s.urls.%s presigned /media/...?...expires=...&sig=..." % (what, k), "presigned path", v)


def _user(pvd):
    if not hasattr(pvd, "_photos_user"):
        pvd._photos_user = pvd.new_user("photos")
    return pvd._photos_user


def _fresh(pvd, tag):
    return pvd.new_user(tag)


def test_upload_jpeg(pvd):
    u = _user(pvd)
    data = unique_jpeg(64, 48)
    r = u.upload(data, "image/jpeg", "red square.jpg").expect(201, "upload JPEG")
    check(r.header("Content-Type", "").startswith("application/json"), "upload Content-Type",
          "application/json", r.header("Content-Type"))
    p = r.json().get("photo")
    check_photo(p, data, "image/jpeg", "red square.jpg", (64, 48))
    eq(p["taken_at"], None, "taken_at of an image without EXIF")
    check(not r.json().get("duplicate"), "a new upload is not a duplicate", "false/absent", r.json().get("duplicate"))


def test_upload_png_webp_heic(pvd):
    u = _fresh(pvd, "types")
    alpha, _ = fixture("alpha.png")
    webp_fix, _ = fixture("photo.webp")
    heic_data, heic_taken = heic()
    cases = [(unique_png(80, 60), "image/png", "a.png", (80, 60)),
             (webp_fix or webp(72, 40), "image/webp", "b.webp", (80, 60) if webp_fix else (72, 40)),
             (heic_data, "image/heic", "c.heic", None)]
    if alpha:
        cases.append((alpha, "image/png", "alpha.png", (80, 60)))
    for data, ctype, name, size in cases:
        r = u.upload(data, ctype, name).expect(201, "upload " + name)
        p = r.json()["photo"]
        check_photo(p, data, ctype, name, size, what=name + " photo")
        check(p["width"] > 0 and p["height"] > 0, name + " has a size", "> 0", (p["width"], p["height"]))
        t = u.req("GET", "/api/v1/photos/%s/thumbnail" % p["id"]).expect(200, "thumbnail of " + name)
        check(image_size(t.body) is not None, "thumbnail of %s is a JPEG" % name, "JPEG", t.body[:8])
        if ctype == "image/heic":
            want = heic_taken
            got = parse_time(p["taken_at"]) if p["taken_at"] else None
            eq(got, want, "HEIC taken_at from its EXIF DateTimeOriginal")


def _check_turned(u, p, info, what):
    """The thumbnail is displayed the right way round: portrait, <= 320, and
    (for the fixtures' red/green/blue pattern) the quarters where they belong."""
    r = u.req("GET", "/api/v1/photos/%s/thumbnail" % p["id"]).expect(200, "thumbnail of " + what)
    size = image_size(r.body)
    check(size is not None, "thumbnail of %s is a JPEG" % what, "JPEG", r.body[:16])
    check(size[1] > size[0], "thumbnail of %s (landscape stored, turned) is portrait" % what, "h > w", size)
    check(max(size) <= 320, "thumbnail long side <= 320 (%s)" % what, "<= 320", size)
    if not info.get("pattern"):
        return
    img = decode_rgb(r.body)
    # make.sh pattern: left half red, top-right green, bottom-right blue.
    if info["orientation"] == 6:      # turned clockwise: red on top, blue bottom-left, green bottom-right
        want = {"top": "red", "bottom-left": "blue", "bottom-right": "green"}
    else:                             # 8, counter-clockwise: red at the bottom, green top-left, blue top-right
        want = {"top-left": "green", "top-right": "blue", "bottom": "red"}
    spots = {"top": (0.5, 0.2), "bottom": (0.5, 0.8), "top-left": (0.25, 0.25), "top-right": (0.75, 0.25),
             "bottom-left": (0.25, 0.75), "bottom-right": (0.75, 0.75)}
    got = {k: colour_at(img, *spots[k]) for k in want}
    eq(got, want, "colours of the %s thumbnail (orientation %d applied)" % (what, info["orientation"]))


def test_upload_exif_orientation_and_taken_at(pvd):
    u = _fresh(pvd, "exif")
    for orientation in (6, 8):
        data, info = oriented_jpeg(orientation)
        name = "turned%d.jpg" % orientation
        p = u.upload_ok(data, "image/jpeg", name)
        check_photo(p, data, "image/jpeg", name, (info["height"], info["width"]),
                    what="orientation-%d photo" % orientation)
        if info.get("taken_at"):
            eq(parse_time(p["taken_at"]), info["taken_at"],
               "taken_at from DateTimeOriginal (+ OffsetTimeOriginal) of the orientation-%d photo" % orientation)
        _check_turned(u, p, info, "orientation-%d photo" % orientation)


def test_duplicate_upload(pvd):
    u = _user(pvd)
    data = unique_jpeg()
    first = u.upload_ok(data, "image/jpeg", "one.jpg")
    r = u.upload(data, "image/jpeg", "again.jpg")
    r.expect(200, "second upload of the same bytes")
    j = r.json()
    dup = j.get("duplicate", (j.get("photo") or {}).get("duplicate"))
    eq(dup, True, "duplicate flag")
    eq(j["photo"]["id"], first["id"], "duplicate answers the existing photo's id")
    eq(j["photo"]["sha256"], first["sha256"], "duplicate sha256")
    before = u.req("GET", "/api/v1/me").expect(200, "/me").json()["usage"]
    u.upload(data, "image/jpeg", "third.jpg").expect(200, "third upload of the same bytes")
    after = u.req("GET", "/api/v1/me").expect(200, "/me").json()["usage"]
    eq(after, before, "usage after a duplicate upload (not counted twice)")
    # Another user uploading the same bytes gets their own photo.
    v = _fresh(pvd, "dup2")
    p2 = v.upload_ok(data, "image/jpeg", "mine.jpg")
    check(p2["id"] != first["id"], "another user's identical upload is a new photo", "different id", p2["id"])


def test_multipart_three_files(pvd):
    u = _fresh(pvd, "multi")
    files = [("m1.jpg", "image/jpeg", unique_jpeg()), ("m2.png", "image/png", unique_png()),
             ("m3.jpg", "image/jpeg", unique_jpeg(96, 64))]
    r = pvd.upload_multipart(u.access, files).expect(201, "multipart upload of 3 files")
    photos = r.json().get("photos")
    check(isinstance(photos, list) and len(photos) == 3, "multipart answer photos[3]", 3, photos)
    for (name, ctype, data), p in zip(files, photos):
        check_photo(p, data, ctype, name, what="multipart photo " + name)
    listed = u.list_all()
    eq(sorted(listed), sorted(p["id"] for p in photos), "listed ids after multipart")


def test_multipart_bad(pvd):
    u = _fresh(pvd, "multibad")
    good = unique_jpeg()
    # Missing boundary parameter.
    r = pvd.req("POST", "/api/v1/photos", b"--x\r\n\r\n--x--\r\n", {"Content-Type": "multipart/form-data"},
                token=u.access)
    check(r.status in (400, 415), "multipart without boundary: status", "400/415", r.status)
    r.expect_error(r.status, what="multipart without boundary")
    # Body not terminated.
    body = b"--BB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n" \
           b"Content-Type: image/jpeg\r\n\r\n" + good
    r = pvd.req("POST", "/api/v1/photos", body, {"Content-Type": "multipart/form-data; boundary=BB"},
                token=u.access)
    r.expect_error(400, what="multipart without a closing boundary")
    # No file part at all.
    body = b"--BB\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nhello\r\n--BB--\r\n"
    r = pvd.req("POST", "/api/v1/photos", body, {"Content-Type": "multipart/form-data; boundary=BB"},
                token=u.access)
    r.expect_error(400, what="multipart with no file part")
    # One good and one text file: all or nothing would be 415; in any case the
    # text file must not be stored.
    r = pvd.upload_multipart(u.access, [("ok.jpg", "image/jpeg", good),
                                        ("bad.jpg", "image/jpeg", b"hello, not an image\n" * 10)])
    check(r.status in (201, 207, 415), "multipart with one non-image: status", "415 (or 201 with only the image)",
          r.status)
    if r.status == 415:
        r.expect_error(415, "unsupported_media_type", "multipart with one non-image")
    ids = u.list_all()
    check(len(ids) <= 1, "the non-image part is not stored", "<= 1 photo", ids)


def test_non_image_rejected_nothing_stored(pvd):
    u = _fresh(pvd, "reject")
    text, _ = fixture("text.jpg")
    text = text or b"This is a text file, named .jpg, not an image.\n" * 20
    cases = [
        (text, "image/jpeg", "text file sent as image/jpeg", 415),
        (text, "image/png", "text file sent as image/png", 415),
        (jpeg(), "image/png", "a JPEG labelled image/png", None),
        (unique_jpeg(), "text/plain", "Content-Type text/plain", 415),
        (unique_jpeg(), "image/gif", "Content-Type image/gif", 415),
        (unique_jpeg(), "application/octet-stream", "Content-Type application/octet-stream", 415),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "image/jpeg", "JPEG magic then zeros", 415),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "image/png", "PNG magic then zeros", 415),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp", "WebP header only", 415),
        (bytes(range(256)) * 8, "image/heic", "binary junk as image/heic", 415),
    ]
    trunc, _ = fixture("truncated.jpg")
    full = jpeg(320, 240)
    cases.append((trunc or full[:len(full) // 2], "image/jpeg", "truncated JPEG (half its scan)", 415))
    cases.append((full[:300], "image/jpeg", "JPEG cut inside its headers", 415))
    for data, ctype, what, want in cases:
        r = u.upload(data, ctype, "x.jpg")
        if want is None:
            # Mislabelled but decodable: either refused, or stored with its real type.
            check(r.status in (201, 415), "upload of %s: status" % what, "201 or 415", r.status)
            if r.status == 201:
                eq(r.json()["photo"]["content_type"], "image/jpeg", "content_type of " + what)
                u.req("DELETE", "/api/v1/photos/" + r.json()["photo"]["id"]).expect(204, "cleanup delete")
            continue
        r.expect_error(want, "unsupported_media_type", "upload of " + what)
    # No Content-Type at all.
    r = u.upload(unique_jpeg(), None, "x.jpg")
    check(r.status in (400, 415), "upload without Content-Type: status", "415 (or 400)", r.status)
    r.expect_error(r.status, what="upload without Content-Type")
    eq(u.list_all(), [], "list after rejected uploads")
    eq(u.req("GET", "/api/v1/me").expect(200, "/me").json()["usage"]["photos"], 0, "usage.photos after rejected uploads")


def test_empty_and_oversized(pvd):
    u = _fresh(pvd, "size")
    r = u.upload(b"", "image/jpeg", "empty.jpg")
    r.expect_error(415, "unsupported_media_type", what="empty upload (not a decodable image)")
    r = pvd.upload_multipart(u.access, [("empty.jpg", "image/jpeg", b"")])
    r.expect_error(415, "unsupported_media_type", what="a multipart upload whose file part is empty")
    check("empty.jpg" in r.json()["error"]["message"], "the message names the empty part",
          "empty.jpg", r.json()["error"]["message"])
    big = jpeg()[:-2] + secrets.token_bytes(1500000) + b"\xff\xd9"
    r = u.upload(big, "image/jpeg", "big.jpg")
    r.expect_error(413, what="1.5 MB upload with max_upload_bytes 1 MB")
    files = [("b%d.jpg" % i, "image/jpeg", unique_jpeg() + secrets.token_bytes(400000)) for i in range(3)]
    r = pvd.upload_multipart(u.access, files)
    r.expect_error(413, what="1.2 MB multipart with max_upload_bytes 1 MB")
    eq(u.list_all(), [], "list after oversized uploads")
    # Still serving afterwards.
    u.upload_ok(unique_jpeg(), "image/jpeg", "after.jpg")


def test_list_order_and_paging(pvd):
    u = _fresh(pvd, "list")
    j = u.req("GET", "/api/v1/photos").expect(200, "empty list").json()
    eq((j.get("items"), j.get("next_cursor", "absent")), ([], None), "(items, next_cursor) of a new user's list")
    uploaded = [u.upload_ok(unique_jpeg(), "image/jpeg", "p%d.jpg" % i)["id"] for i in range(7)]
    j = u.req("GET", "/api/v1/photos").expect(200, "list").json()
    got = [p["id"] for p in j["items"]]
    eq(got, uploaded[::-1], "list is newest first")
    eq(j["next_cursor"], None, "next_cursor when everything fits")
    for p in j["items"]:
        check(set(p) >= {"id", "filename", "sha256", "urls"}, "list items are photo objects", "photo fields", sorted(p))
    for limit in (1, 2, 3, 7, 50):
        pages = []
        cursor = None
        for _ in range(20):
            q = "?limit=%d" % limit + ("&cursor=" + cursor if cursor else "")
            jj = u.req("GET", "/api/v1/photos" + q).expect(200, "list " + q).json()
            check(len(jj["items"]) <= limit, "page size <= limit %d" % limit, limit, len(jj["items"]))
            pages.append([p["id"] for p in jj["items"]])
            cursor = jj["next_cursor"]
            if cursor is None:
                break
            check(isinstance(cursor, str) and cursor, "next_cursor is a string", "string", cursor)
        flat = [i for pg in pages for i in pg]
        eq(flat, uploaded[::-1], "all pages with limit=%d, in order, no duplicates" % limit)
        check(all(pages), "no empty page before the end (limit=%d)" % limit, "non-empty pages", pages)


def test_list_bad_params(pvd):
    u = _user(pvd)
    for q in ("limit=abc", "limit=-1", "limit=0", "limit=1.5", "limit=5x"):
        r = u.req("GET", "/api/v1/photos?" + q)
        r.expect_error(400, what="list with " + q)
    for q in ("cursor=!!!", "cursor=" + "z" * 300, "cursor=%00"):
        r = u.req("GET", "/api/v1/photos?" + q)
        r.expect_error(400, what="list with " + q)


def test_get_one_content_range_etag(pvd):
    u = _user(pvd)
    data = unique_jpeg(200, 150)
    p = u.upload_ok(data, "image/jpeg", "one.jpg")
    pid = p["id"]
    g = u.req("GET", "/api/v1/photos/" + pid).expect(200, "GET photo").json().get("photo")
    check_photo(g, data, "image/jpeg", "one.jpg", (200, 150), what="GET photo")
    for k in PHOTO_KEYS - {"urls"}:
        eq(g[k], p[k], "GET photo field %s equals the upload answer" % k)

    r = u.req("GET", "/api/v1/photos/%s/content" % pid).expect(200, "GET content")
    eq(r.body, data, "content bytes")
    eq(r.header("Content-Type", "").split(";")[0], "image/jpeg", "content Content-Type")
    eq(r.header("Content-Length"), str(len(data)), "content Content-Length")
    etag = r.header("ETag")
    check(etag, "content has an ETag", "ETag header", etag)
    check(r.header("Accept-Ranges", "bytes") == "bytes", "Accept-Ranges", "bytes", r.header("Accept-Ranges"))

    r = u.req("GET", "/api/v1/photos/%s/content" % pid, headers={"Range": "bytes=10-99"})
    r.expect(206, "Range bytes=10-99")
    eq(r.body, data[10:100], "bytes of Range 10-99")
    eq(r.header("Content-Range"), "bytes 10-99/%d" % len(data), "Content-Range")
    r = u.req("GET", "/api/v1/photos/%s/content" % pid, headers={"Range": "bytes=-16"}).expect(206, "suffix Range")
    eq(r.body, data[-16:], "bytes of Range -16")
    r = u.req("GET", "/api/v1/photos/%s/content" % pid, headers={"Range": "bytes=%d-" % (len(data) - 5)})
    r.expect(206, "open Range")
    eq(r.body, data[-5:], "bytes of an open-ended Range")
    r = u.req("GET", "/api/v1/photos/%s/content" % pid, headers={"Range": "bytes=%d-" % (len(data) + 10)})
    eq(r.status, 416, "Range past the end")
    check(r.header("Content-Range") == "bytes */%d" % len(data), "416 Content-Range",
          "bytes */%d" % len(data), r.header("Content-Range"))
    r = u.req("GET", "/api/v1/photos/%s/content" % pid, headers={"Range": "chars=1-2"})
    check(r.status in (200, 416), "unknown Range unit: status", "200 (ignored) or 416", r.status)
    if r.status == 200:
        eq(r.body, data, "unknown Range unit ignored: whole body")

    r = u.req("GET", "/api/v1/photos/%s/content" % pid, headers={"Range": "bytes=0-1,5-6"})
    check(r.status in (200, 206, 416), "multi-range request: status", "200 (whole), 206 or 416", r.status)
    if r.status == 200:
        eq(r.body, data, "multi-range answered whole")
    r = u.req("GET", "/api/v1/photos/%s/content" % pid, headers={"Range": "bytes=99-10"})
    check(r.status in (200, 416), "inverted Range: status", "200 (ignored) or 416", r.status)
    r = u.req("GET", "/api/v1/photos/%s/content" % pid, headers={"If-None-Match": etag})
    eq(r.status, 304, "If-None-Match with the ETag")
    eq(r.body, b"", "304 has no body")
    r = u.req("GET", "/api/v1/photos/%s/content" % pid, headers={"If-None-Match": '"something-else"'})
    eq(r.status, 200, "If-None-Match with another ETag")

    r = u.req("HEAD", "/api/v1/photos/%s/content" % pid).expect(200, "HEAD content")
    eq(r.body, b"", "HEAD has no body")
    eq(r.header("Content-Length"), str(len(data)), "HEAD Content-Length")


def test_thumbnail(pvd):
    u = _user(pvd)
    data = jpeg(1000, 500, "testsrc2")
    p = u.upload(data, "image/jpeg", "wide.jpg").expect((200, 201), "upload wide").json()["photo"]
    r = u.req("GET", "/api/v1/photos/%s/thumbnail" % p["id"]).expect(200, "thumbnail")
    eq(r.header("Content-Type", "").split(";")[0], "image/jpeg", "thumbnail Content-Type")
    size = image_size(r.body)
    check(size is not None, "thumbnail is a JPEG", "FFD8...", r.body[:8])
    check(0 < max(size) <= 320, "thumbnail long side of a 1000x500 photo", "<= 320", size)
    check(abs(size[0] / size[1] - 2.0) < 0.05, "thumbnail keeps the aspect ratio", "about 2:1", size)
    # A small image is not blown up past its size (and never past 320).
    q = u.upload_ok(unique_png(80, 60), "image/png", "small.png")
    r = u.req("GET", "/api/v1/photos/%s/thumbnail" % q["id"]).expect(200, "thumbnail of a PNG")
    size = image_size(r.body)
    check(size is not None and size[0] > 0 and max(size) <= 320, "PNG thumbnail is a JPEG <= 320",
          "JPEG <= 320", size)
    w = u.upload(webp(400, 300), "image/webp", "w.webp").expect((200, 201), "upload webp").json()["photo"]
    r = u.req("GET", "/api/v1/photos/%s/thumbnail" % w["id"]).expect(200, "thumbnail of a WebP")
    size = image_size(r.body)
    check(size is not None and max(size) <= 320, "WebP thumbnail is a JPEG <= 320", "JPEG <= 320", size)


def test_delete(pvd):
    u = _fresh(pvd, "del")
    keep = u.upload_ok(unique_jpeg(), "image/jpeg", "keep.jpg")
    data = unique_jpeg()
    p = u.upload_ok(data, "image/jpeg", "gone.jpg")
    r = u.req("DELETE", "/api/v1/photos/" + p["id"])
    eq(r.status, 204, "DELETE status (body %r)" % r.body[:200])
    eq(r.body, b"", "DELETE 204 body")
    for sub in ("", "/content", "/thumbnail"):
        u.req("GET", "/api/v1/photos/%s%s" % (p["id"], sub)).expect_error(404, what="GET%s after delete" % sub)
    u.req("DELETE", "/api/v1/photos/" + p["id"]).expect_error(404, what="second DELETE")
    eq(u.list_all(), [keep["id"]], "list after delete")
    j = u.req("GET", "/api/v1/me").expect(200, "/me").json()
    eq(j["usage"]["photos"], 1, "usage.photos after delete")
    eq(j["usage"]["photo_bytes"], keep["bytes"], "usage.photo_bytes after delete")
    # The same bytes can be uploaded again as a new photo.
    again = u.upload(data, "image/jpeg", "gone.jpg").expect(201, "re-upload after delete").json()["photo"]
    u.req("GET", "/api/v1/photos/%s/content" % again["id"]).expect(200, "content of the re-upload")


def test_other_users_photo_is_404(pvd):
    owner = _user(pvd)
    thief = _fresh(pvd, "thief")
    p = owner.upload_ok(unique_jpeg(), "image/jpeg", "private.jpg")
    for method, sub in (("GET", ""), ("GET", "/content"), ("GET", "/thumbnail"), ("HEAD", "/content"),
                        ("DELETE", "")):
        r = thief.req(method, "/api/v1/photos/%s%s" % (p["id"], sub))
        if method == "HEAD":
            eq(r.status, 404, "HEAD%s of another user's photo" % sub)
        else:
            r.expect_error(404, what="%s%s of another user's photo" % (method, sub))
    eq(thief.list_all(), [], "another user's list")
    owner.req("GET", "/api/v1/photos/" + p["id"]).expect(200, "owner still has the photo after the other's DELETE")
    # The 404 for someone else's photo is the same as for one that never existed.
    a = thief.req("GET", "/api/v1/photos/" + p["id"])
    b = thief.req("GET", "/api/v1/photos/" + "0" * 26)
    eq(a.json()["error"]["code"], b.json()["error"]["code"], "error code: another's photo vs no photo")


def test_unknown_and_malformed_ids(pvd):
    u = _user(pvd)
    # Well-formed or not, an id that is not one of the caller's photos is 404.
    for pid in ("0" * 26, "zzzzzzzzzzzzzzzzzzzzzzzzzz", "x", "A" * 64, "a" * 300, "not-an-id", "1;DROP",
                "7zzzzzzzzzzzzzzzzzzzzzzzzz"):
        for sub in ("", "/content", "/thumbnail"):
            r = u.req("GET", "/api/v1/photos/%s%s" % (pid, sub))
            r.expect_error(404, what="GET /photos/%s%s" % (pid, sub))
        r = u.req("DELETE", "/api/v1/photos/" + pid)
        r.expect_error(404, what="DELETE /photos/" + pid)
    # Odd encodings may be refused by the HTTP layer (400) instead; never a 5xx.
    for pid in ("%00", "%ff%fe", "..", "%2e%2e", "a%2fb", "%20"):
        for method, sub in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
            r = u.req(method, "/api/v1/photos/%s%s" % (pid, sub))
            check(r.status in (400, 404), "%s /photos/%s%s: status" % (method, pid, sub), "404 or 400", r.status)
            r.expect_error(r.status, what="%s /photos/%s%s" % (method, pid, sub))


def test_concurrent_uploads(pvd):
    u = _fresh(pvd, "conc")
    datas = [unique_jpeg() for _ in range(12)]
    results = [None] * len(datas)

    def go(i):
        try:
            results[i] = u.upload(datas[i], "image/jpeg", "c%d.jpg" % i)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(datas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = [getattr(r, "status", r) for r in results]
    eq(statuses, [201] * len(datas), "statuses of 12 concurrent uploads")
    ids = {r.json()["photo"]["id"] for r in results}
    eq(len(ids), len(datas), "distinct ids of concurrent uploads")
    eq(sorted(u.list_all(limit=5)), sorted(ids), "listed ids after concurrent uploads")
    for r, d in zip(results, datas):
        got = u.req("GET", "/api/v1/photos/%s/content" % r.json()["photo"]["id"]).expect(200, "content").body
        check(got == d, "content of a concurrent upload", "same bytes", "different bytes (%d)" % len(got))


def test_upload_content_type_params_and_filename(pvd):
    u = _user(pvd)
    # A charset-like parameter on an image type is tolerated; odd filenames are kept or sanitised, never 500.
    r = u.upload(unique_jpeg(), "image/jpeg; foo=bar", "x.jpg")
    r.expect(201, "upload with Content-Type parameters")
    for name in ("../../etc/passwd", "a\"b.jpg", "日本.jpg", "x" * 300 + ".jpg", ""):
        r = u.upload(unique_jpeg(), "image/jpeg", name.encode("utf-8").decode("latin-1"))
        check(r.status in (201, 400), "upload with filename %r: status" % name[:40], "201 or 400", r.status)
        if r.status == 201:
            fn = r.json()["photo"]["filename"]
            check(isinstance(fn, str), "stored filename is a string", "string", fn)
    # Without X-Filename the photo still gets some filename string.
    p = u.upload_ok(unique_jpeg(), "image/jpeg", None)
    check(isinstance(p["filename"], str), "filename without X-Filename is a string", "string", p["filename"])


def test_concurrent_identical_uploads(pvd):
    u = _fresh(pvd, "samerace")
    data = unique_jpeg()
    results = [None] * 5
    gate = threading.Barrier(5)

    def go(i):
        try:
            gate.wait(10)
            results[i] = u.upload(data, "image/jpeg", "same%d.jpg" % i)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(getattr(r, "status", repr(r)) for r in results)
    eq(statuses, [200, 200, 200, 200, 201], "5 simultaneous uploads of the same bytes: one new, four duplicates")
    ids = {r.json()["photo"]["id"] for r in results}
    eq(len(ids), 1, "one photo id for identical simultaneous uploads")
    eq(u.list_all(), list(ids), "list after identical simultaneous uploads")


def test_filename_not_utf8_is_cleaned(pvd):
    """An X-Filename that is not UTF-8 is stored cleaned (U+FFFD), and the
    user's list keeps working (a raw name used to break every answer)."""
    u = pvd.new_user("fname")
    data = unique_jpeg()
    r = pvd.req("POST", "/api/v1/photos", data,
                {"Content-Type": "image/jpeg", "X-Filename": b"bad\xff\xfename.jpg".decode("utf-8", "surrogateescape")},
                token=u.access)
    r.expect(201, "upload with a non-UTF-8 filename")
    eq(r.json()["photo"]["filename"], "bad\ufffd\ufffdname.jpg", "cleaned filename")
    eq(len(u.list_all()), 1, "the list still answers")


def _race(first, second, delay):
    """Runs first and, delay seconds later, second, each in a thread;
    returns (first's result, second's result): a Response or the error."""
    out = [None, None]

    def go(i, fn):
        try:
            out[i] = fn()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out[i] = e

    ts = [threading.Thread(target=go, args=(0, first)), threading.Thread(target=go, args=(1, second))]
    ts[0].start()
    time.sleep(delay)
    ts[1].start()
    for t in ts:
        t.join(60)
    return out


def test_upload_while_a_photo_with_the_same_thumbnail_is_deleted(pvd):
    """Photos with the same pixels share their thumbnail blob. Deleting the
    last one while another upload of those pixels is between its blobs and
    its commit used to unlink the thumbnail from under it: the upload
    answered 404 half the time. Found while building the kill -9 campaign;
    the store now pins the blobs an upload made durable until it commits."""
    u = _fresh(pvd, "thumbrace")
    statuses = {}
    for i in range(30):
        a = u.upload_ok(unique_png(83, 59), "image/png")
        b = unique_png(83, 59)  # other bytes, the same pixels: the same thumbnail
        up, rm = _race(lambda: u.upload(b, "image/png"),
                       lambda: u.req("DELETE", "/api/v1/photos/" + a["id"]), 0.002 * (i % 10))
        eq(getattr(rm, "status", rm), 204, "round %d: the delete" % i)
        eq(getattr(up, "status", up), 201, "round %d: an upload racing a delete of its thumbnail's "
           "other photo" % i)
        statuses[up.status] = statuses.get(up.status, 0) + 1
        new = up.json()["photo"]
        eq(u.req("GET", "/api/v1/photos/%s/thumbnail" % new["id"]).status, 200,
           "round %d: the new photo's thumbnail" % i)
        u.req("DELETE", "/api/v1/photos/" + new["id"]).expect(204, "cleanup")


def test_duplicate_upload_while_its_photo_is_deleted(pvd):
    """An exact duplicate's bytes used to be dropped as soon as a worker saw
    the user had them; when that photo was deleted before the commit, the
    commit was tried again and again with nothing to commit: the request
    never answered and the store writer spun. Found while building the kill
    -9 campaign; the bytes now wait for the commit and go through the
    ingest they skipped."""
    u = _fresh(pvd, "duprace")
    for i in range(30):
        data = unique_jpeg(320, 240)
        a = u.upload_ok(data, "image/jpeg")
        up, rm = _race(lambda: u.upload(data, "image/jpeg", timeout=15),
                       lambda: u.req("DELETE", "/api/v1/photos/" + a["id"]), 0.002 * (i % 10))
        eq(getattr(rm, "status", rm), 204, "round %d: the delete" % i)
        check(getattr(up, "status", None) in (200, 201),
              "round %d: a duplicate upload racing the delete of its photo answers" % i,
              "200 or 201", up)
        ids = u.list_all()
        if up.status == 201:  # after the delete: a new photo
            eq(ids, [up.json()["photo"]["id"]], "round %d: the new photo is there" % i)
            body = u.req("GET", "/api/v1/photos/%s/content" % ids[0]).expect(200, "content").body
            check(body == data, "round %d: its content" % i, "the bytes sent", "other bytes")
            u.req("DELETE", "/api/v1/photos/" + ids[0]).expect(204, "cleanup")
        else:  # before it: the duplicate, deleted since
            eq(ids, [], "round %d: nothing left" % i)
