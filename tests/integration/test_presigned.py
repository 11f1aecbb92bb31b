"""test_presigned.py — presigned /media/ URLs: fetched without a token,
HEAD and Range, and refused (403) when any signed part is changed or the
URL has expired (API.md, "Presigned URLs")."""

import time
from urllib.parse import parse_qsl, quote, urlsplit

from harness import Pvd, check, eq, image_size, unique_jpeg


def _setup(pvd):
    if not hasattr(pvd, "_presign"):
        u = pvd.new_user("presign")
        data = unique_jpeg(160, 120)
        p = u.upload_ok(data, "image/jpeg", "signed.jpg")
        other = pvd.new_user("presign-other")
        q = other.upload_ok(unique_jpeg(), "image/jpeg", "other.jpg")
        pvd._presign = (u, data, p, other, q)
    return pvd._presign


def _split(url):
    s = urlsplit(url)
    return s.path, parse_qsl(s.query, keep_blank_values=True)


def _join(path, params):
    return path + "?" + "&".join("%s=%s" % (quote(k, safe=""), quote(v, safe="")) for k, v in params)


def _seg(path, fn):
    """path with its longest segment (the id or hash) replaced by fn(old): the
    path still routes, so only the signature check can refuse it."""
    segs = path.split("/")
    i = max(range(len(segs)), key=lambda j: len(segs[j]))
    segs[i] = fn(segs[i])
    return "/".join(segs)


def _with(params, key, fn):
    """params with the value of key replaced by fn(old); None if key absent."""
    if not any(k == key for k, _ in params):
        return None
    return [(k, fn(v) if k == key else v) for k, v in params]


def test_presigned_get_without_token(pvd):
    u, data, p, _, _ = _setup(pvd)
    url = p["urls"]["content"]
    r = pvd.req("GET", url).expect(200, "GET presigned content without a token")
    eq(r.body, data, "presigned content bytes")
    eq(r.header("Content-Type", "").split(";")[0], "image/jpeg", "presigned content Content-Type")
    t = pvd.req("GET", p["urls"]["thumbnail"]).expect(200, "GET presigned thumbnail")
    size = image_size(t.body)
    check(size is not None and max(size) <= 320, "presigned thumbnail is a JPEG <= 320", "JPEG", size)
    # A token alongside is harmless.
    pvd.req("GET", url, token=u.access).expect(200, "presigned GET with a bearer token too")


def test_presigned_head_and_range(pvd):
    _, data, p, _, _ = _setup(pvd)
    url = p["urls"]["content"]
    r = pvd.req("HEAD", url).expect(200, "HEAD presigned")
    eq(r.body, b"", "HEAD body")
    eq(r.header("Content-Length"), str(len(data)), "HEAD Content-Length")
    r = pvd.req("GET", url, headers={"Range": "bytes=0-9"}).expect(206, "presigned Range 0-9")
    eq(r.body, data[:10], "presigned Range bytes")
    eq(r.header("Content-Range"), "bytes 0-9/%d" % len(data), "presigned Content-Range")
    r = pvd.req("GET", url, headers={"Range": "bytes=100-"}).expect(206, "presigned Range 100-")
    eq(r.body, data[100:], "presigned open Range bytes")
    etag = pvd.req("GET", url).header("ETag")
    if etag:
        eq(pvd.req("GET", url, headers={"If-None-Match": etag}).status, 304, "presigned If-None-Match")


def test_presigned_fresh_urls_from_get_and_list(pvd):
    u, data, p, _, _ = _setup(pvd)
    g = u.req("GET", "/api/v1/photos/" + p["id"]).expect(200, "GET photo").json()["photo"]
    eq(pvd.req("GET", g["urls"]["content"]).expect(200, "presigned from GET photo").body, data,
       "bytes via GET photo's url")
    items = u.req("GET", "/api/v1/photos").expect(200, "list").json()["items"]
    mine = [i for i in items if i["id"] == p["id"]]
    eq(len(mine), 1, "photo in list")
    eq(pvd.req("GET", mine[0]["urls"]["content"]).expect(200, "presigned from list").body, data,
       "bytes via list url")


def test_presigned_tampering_is_403(pvd):
    u, data, p, other, q = _setup(pvd)
    path, params = _split(p["urls"]["content"])
    opath, oparams = _split(q["urls"]["content"])
    names = [k for k, _ in params]
    check("sig" in names and "expires" in names, "presigned query has expires and sig", "expires, sig", names)

    def flip(v):
        return ("A" if v[0] != "A" else "B") + v[1:]

    cases = [
        (_join(path, _with(params, "sig", flip)), "first sig char changed"),
        (_join(path, _with(params, "sig", lambda v: v[:-1])), "sig cut short"),
        (_join(path, _with(params, "sig", lambda v: "")), "empty sig"),
        (_join(path, [(k, v) for k, v in params if k != "sig"]), "no sig"),
        (_join(path, _with(params, "expires", lambda v: str(int(v) + 1))), "expires + 1"),
        (_join(path, _with(params, "expires", lambda v: str(int(v) + 86400 * 365))), "expires + 1 year"),
        (_join(path, _with(params, "expires", lambda v: "abc")), "expires not a number"),
        (_join(path, [(k, v) for k, v in params if k != "expires"]), "no expires"),
        (_join(opath, params), "another photo's path with this query"),
        (_join(_seg(path, lambda v: v[:-1] + ("a" if v[-1] != "a" else "b")), params),
         "last char of the path's longest segment changed"),
        (_join(_seg(path, lambda v: v + "x"), params), "a char added to the path's longest segment"),
        (_join(p["urls"]["thumbnail"].split("?")[0], params), "thumbnail path with the content query"),
        (path, "no query at all"),
    ]
    if "owner" in names:
        cases.append((_join(path, _with(params, "owner", lambda v: other.id)), "owner set to another user"))
        cases.append((_join(path, _with(params, "owner", flip)), "owner changed"))
        # The other user's signature on this user's path (mixing two valid URLs).
        mixed = [(k, dict(oparams).get(k, v) if k in ("owner", "sig", "expires") else v) for k, v in params]
        cases.append((_join(path, mixed), "another URL's owner, expiry and sig on this path"))
    else:
        check(other.id not in path and u.id in path, "owner is signed (in the query or the path)",
              "owner= in query or user id in path", p["urls"]["content"])
        cases.append((path.replace(u.id, other.id) + "?" + p["urls"]["content"].split("?", 1)[1],
                      "owner in path changed"))
    if "kid" in names:
        cases.append((_join(path, _with(params, "kid", lambda v: str(int(v) + 1000) if v.isdigit() else v + "x")),
                      "unknown kid"))
    for url, what in cases:
        check(url is not None, "tampered URL could be built (%s)" % what, "a URL", url)
        r = pvd.req("GET", url)
        r.expect_error(403, what="presigned GET with %s" % what)
        check(data not in r.body, "403 body does not contain the photo (%s)" % what, "no bytes", "photo bytes")
    # HEAD is checked just like GET.
    r = pvd.req("HEAD", _join(path, _with(params, "sig", flip)))
    eq(r.status, 403, "HEAD with a changed sig")
    # Other methods on a valid URL are not allowed.
    r = pvd.req("DELETE", p["urls"]["content"])
    check(r.status in (403, 404, 405), "DELETE on a presigned URL: status", "405 (or 403/404)", r.status)
    u.req("GET", "/api/v1/photos/" + p["id"]).expect(200, "photo still there after DELETE on its media URL")


def test_presigned_deleted_photo(pvd):
    u = pvd.new_user("presign-del")
    p = u.upload_ok(unique_jpeg(), "image/jpeg", "bye.jpg")
    url = p["urls"]["content"]
    pvd.req("GET", url).expect(200, "presigned before delete")
    u.req("DELETE", "/api/v1/photos/" + p["id"]).expect(204, "delete")
    r = pvd.req("GET", url)
    check(r.status in (403, 404, 410), "presigned URL of a deleted photo: status", "404 (or 403/410)", r.status)
    r.expect_error(r.status, what="presigned URL of a deleted photo")


def test_presigned_expired(pvd):
    with Pvd({"presign_ttl": 1}, name="presign-ttl1").start() as p:
        u = p.new_user("exp")
        data = unique_jpeg()
        photo = u.upload_ok(data, "image/jpeg", "soon.jpg")
        url = photo["urls"]["content"]
        _, params = _split(url)
        exp = int(dict(params).get("expires", "0"))
        check(abs(exp - (time.time() + 1)) < 30, "expires is about now + presign_ttl (1 s)", int(time.time()) + 1, exp)
        # Wait until it is clearly past expires.
        time.sleep(max(0.0, exp - time.time()) + 1.5)
        r = p.req("GET", url)
        r.expect_error(403, "expired", "presigned GET after expiry")
        eq(p.req("HEAD", url).status, 403, "presigned HEAD after expiry")
        # A fresh GET of the photo gives a new working URL.
        # (Its ttl is 1 s, so allow a retry if a second boundary falls in between.)
        for attempt in range(3):
            fresh = u.req("GET", "/api/v1/photos/" + photo["id"]).expect(200, "GET photo").json()["photo"]
            r = p.req("GET", fresh["urls"]["content"])
            if r.status == 200 or attempt == 2:
                break
        r.expect(200, "fresh presigned URL right after GET photo (presign_ttl 1 s)")
        eq(r.body, data, "fresh URL bytes")
