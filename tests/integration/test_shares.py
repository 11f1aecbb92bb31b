"""test_shares.py — public share links of videos against a real pvd: make,
list and revoke them (the owner only), the share page without a login (its
card tags, the title escaped, nothing of the owner), the media with Range,
view counts, one 404 page for unknown, revoked, expired and deleted-video
links, and the password: the form, a wrong one, the cookie, the limit.

Every answer of the share routes is also checked against
schema/openapi.json (test_openapi._check)."""

import os
import re
import struct
import subprocess
import time

from harness import check, eq, ffmpeg_image
from test_openapi import _check

# Small limits for the password tests: per share 4 attempts, per address 6,
# then 1 a minute. (The same numbers limit logins per account and address;
# this module logs in twice from 127.0.0.1.) 127.0.0.1 is a trusted proxy,
# so X-Forwarded-For gives each phase an address of its own.
PVD_CONFIG = {"render_workers": "1", "login_account_burst": "4", "login_account_per_minute": "1",
              "login_ip_burst": "6", "login_ip_per_minute": "1", "trusted_proxies": "127.0.0.1",
              "share_max_days": "10"}

TITLE = "<script>alert(\"x\")</script> & 'Summer'"
SHARES = "/api/v1/videos/{id}/shares"
ONE = "/api/v1/videos/{id}/shares/{share_id}"


def _video(u, title=TITLE, seconds=1, wait=True):
    # The same pixels again are the same photo (200, "duplicate"): fine here.
    ids = [u.upload(ffmpeg_image("jpg", 320, 240, src="color=c=%s" % c), "image/jpeg", c + ".jpg").json()["photo"]["id"]
           for c in ("red", "blue")]
    r = u.req("POST", "/api/v1/videos", json={"photo_ids": ids, "title": title, "resolution": "480p",
                                               "seconds_per_photo": seconds, "transition_seconds": 0.25})
    v = r.expect(202, "create video").json()["video"]
    deadline = time.time() + 120
    while wait and time.time() < deadline:
        v = u.req("GET", "/api/v1/videos/" + v["id"]).expect(200, "get video").json()["video"]
        if v["status"] in ("ready", "failed"):
            eq(v["status"], "ready", "the video renders (error: %s)" % v["error"])
            return v
        time.sleep(0.2)
    check(not wait, "the video became ready in time", "ready", v["status"])
    return v


def _setup(pvd):
    if not hasattr(pvd, "_shares"):
        a = pvd.new_user("share-a")
        b = pvd.new_user("share-b")
        pvd._shares = (a, b, _video(a), _video(b, title="b's"))
    return pvd._shares


def _share(u, vid, what="create share", status=201, **body):
    r = u.req("POST", "/api/v1/videos/%s/shares" % vid, json=body if body else None)
    j = _check("POST", SHARES, r, what, status)
    return j["share"] if status == 201 else j


def _page(pvd, token, method="GET", headers=None):
    return pvd.req(method, "/s/" + token, headers=headers)


def _list(u, vid):
    r = u.req("GET", "/api/v1/videos/%s/shares" % vid)
    return _check("GET", SHARES, r, "list shares", 200)["items"]


def _gone_body(pvd):
    r = _page(pvd, "A" * 43)
    _check("GET", "/s/{token}", r, "an unknown token", 404)
    return r.body


def test_create_page_media_views_and_revoke(pvd):
    a, _, v, _ = _setup(pvd)
    t0 = time.time()
    s = _share(a, v["id"])
    check(re.fullmatch(r"[A-Za-z0-9_-]{43}", s["token"]), "a token of 256 bits, base64url", "43 chars", s["token"])
    eq(s["url"], "/s/" + s["token"], "the page's path")
    eq((s["video_id"], s["has_password"], s["views"], s["expired"]), (v["id"], False, 0, False), "a new share")
    exp = time.mktime(time.strptime(s["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    check(abs(exp - (t0 + 7 * 86400)) < 120, "expires in 7 days by default", t0 + 7 * 86400, s["expires_at"])
    listed = _list(a, v["id"])
    eq([x["id"] for x in listed], [s["id"]] + [x["id"] for x in listed[1:]], "the list, newest first")
    check("token" not in listed[0], "the list does not show tokens (they are not stored)", "no token", listed[0])

    # The page: no login, the title escaped everywhere, the card tags.
    r = _page(pvd, s["token"])
    html = _check("GET", "/s/{token}", r, "the share page", 200)
    eq(r.header("Cache-Control"), "no-store", "the page is not cached")
    check("<script" not in html, "no script in the page (the title is escaped)", "none", html[:600])
    esc = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;Summer&#39;"
    eq(html.count(esc), 5, "the escaped title in <title>, og:title, twitter:title, <h1> and download=")
    for tag in ('property="og:title"', 'property="og:image" content="https://', 'property="og:video" content="https://',
                'property="og:video:type" content="video/mp4"', 'name="twitter:card"', 'name="twitter:image"'):
        check(tag in html, "card tag " + tag, "present", html[:1500])
    check('/s/%s/poster"' % s["token"] in html and 'src="/s/%s/video"' % s["token"] in html,
          "the player's poster and video under /s/{token}", "present", html)
    check(a.email not in html and a.id not in html and v["id"] not in html and "style=" not in html,
          "nothing of the owner, no inline style", "absent", html)
    csp = r.header("Content-Security-Policy") or ""
    check("script-src 'self'" in csp and "style-src 'self'" in csp, "the strict CSP", "self only", csp)
    m = re.search(r'href="/assets/([^"]+\.css)"', html)
    check(m, "the page links its stylesheet", "/assets/share.*.css", html[:800])
    pvd.req("GET", "/assets/" + m.group(1)).expect(200, "the share page's stylesheet")

    # The media: the same bytes as the owner's, Range, HEAD; no views counted.
    full = pvd.req("GET", v["urls"]["content"]).expect(200, "the owner's MP4").body
    r = pvd.req("GET", "/s/%s/video" % s["token"])
    _check("GET", "/s/{token}/{what}", r, "the shared MP4", 200)
    eq((r.body, r.header("Content-Type")), (full, "video/mp4"), "the shared MP4")
    r = pvd.req("GET", "/s/%s/video" % s["token"], headers={"Range": "bytes=100-199"})
    _check("GET", "/s/{token}/{what}", r, "a range of the shared MP4", 206)
    eq((r.body, r.header("Content-Range")), (full[100:200], "bytes 100-199/%d" % len(full)), "the range")
    r = pvd.req("GET", "/s/%s/poster" % s["token"])
    _check("GET", "/s/{token}/{what}", r, "the poster", 200)
    check(r.body[:2] == b"\xff\xd8", "the poster is a JPEG", "FFD8", r.body[:2])
    _check("HEAD", "/s/{token}", _page(pvd, s["token"], "HEAD"), "HEAD of the page", 200)
    _check("GET", "/s/{token}/{what}", pvd.req("GET", "/s/%s/nope" % s["token"]), "neither video nor poster", 404)
    _page(pvd, s["token"]).expect(200, "a second load")
    eq(_list(a, v["id"])[0]["views"], 2, "two page loads, not the media, HEAD or Range requests")

    # Revoked: the same 404 page as a token that never was.
    r = a.req("DELETE", "/api/v1/videos/%s/shares/%s" % (v["id"], s["id"]))
    _check("DELETE", ONE, r, "revoke", 204)
    gone = _gone_body(pvd)
    for path in ("", "/video", "/poster"):
        r = pvd.req("GET", "/s/%s%s" % (s["token"], path))
        eq((r.status, r.body), (404, gone), "after revoke, /s/{token}%s is the one 404 page" % path)
    for bad in ("x", "A" * 44, s["token"][:-1] + "!"):
        eq(pvd.req("GET", "/s/" + bad).body, gone, "a malformed token %r: the same page" % bad)
    _check("DELETE", ONE, a.req("DELETE", "/api/v1/videos/%s/shares/%s" % (v["id"], s["id"])), "revoke again", 404,
           "not_found")
    check(s["id"] not in [x["id"] for x in _list(a, v["id"])], "a revoked share leaves the list", "absent", None)


def test_expiry_choice_and_validation(pvd):
    a, _, v, _ = _setup(pvd)
    s = _share(a, v["id"], expires_in_days=10)
    exp = time.mktime(time.strptime(s["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    check(abs(exp - (time.time() + 10 * 86400)) < 120, "expires_in_days=10", "10 days", s["expires_at"])
    for body, what in (({"expires_in_days": 11}, "past share_max_days"), ({"expires_in_days": 0}, "0 days"),
                       ({"expires_in_days": "3"}, "a string"), ({"expires_in_days": 1.5}, "a fraction"),
                       ({"password": ""}, "an empty password"), ({"password": "x" * 1025}, "a long password"),
                       ({"password": 5}, "a number as password"), ({"nope": 1}, "an unknown field")):
        r = a.req("POST", "/api/v1/videos/%s/shares" % v["id"], json=body)
        _check("POST", SHARES, r, what, 400, "invalid_field")
    r = a.req("POST", "/api/v1/videos/%s/shares" % v["id"], body=b"{nope", headers={"Content-Type": "application/json"})
    _check("POST", SHARES, r, "malformed JSON", 400, "invalid_json")
    # A video that is not ready cannot be shared.
    q = _video(a, title="long", seconds=30, wait=False)
    a.req("POST", "/api/v1/videos/%s/cancel" % q["id"]).expect(202, "cancel")
    _check("POST", SHARES, a.req("POST", "/api/v1/videos/%s/shares" % q["id"]), "a cancelled video", 409,
           "video_not_ready")


def test_only_the_owner(pvd):
    a, b, v, vb = _setup(pvd)
    s = _share(a, v["id"])
    for method, path, tmpl in (("POST", "/api/v1/videos/%s/shares" % v["id"], SHARES),
                               ("GET", "/api/v1/videos/%s/shares" % v["id"], SHARES),
                               ("DELETE", "/api/v1/videos/%s/shares/%s" % (v["id"], s["id"]), ONE),
                               ("DELETE", "/api/v1/videos/%s/shares/%s" % (vb["id"], s["id"]), ONE)):
        r = b.req(method, path)
        _check(method, tmpl, r, "%s %s by another user" % (method, path), 404, "not_found")
    bad = "/api/v1/videos/01m8hm3rd2c0v5heqvq62efmqp/shares"
    eq(b.req("GET", bad).body, b.req("GET", "/api/v1/videos/%s/shares" % v["id"]).body,
       "another user's video answers like one that does not exist")
    _check("GET", SHARES, pvd.req("GET", "/api/v1/videos/%s/shares" % v["id"]), "no token", 401, "unauthorized")
    _page(pvd, s["token"]).expect(200, "a's share still works")
    check(s["id"] not in [x["id"] for x in _list(b, vb["id"])], "b does not see a's shares", "absent", None)


def _form(pvd, token, password, headers=None, client="10.0.1.1"):
    h = {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": client}
    h.update(headers or {})
    return pvd.req("POST", "/s/" + token, body=("password=" + password).encode(), headers=h)


def test_password_form_cookie_and_limit(pvd):
    a, _, v, _ = _setup(pvd)
    s = _share(a, v["id"], password="open sesame")
    eq(s["has_password"], True, "has_password")
    r = _page(pvd, s["token"])
    html = _check("GET", "/s/{token}", r, "a protected share's page", 200)
    check('name="password"' in html and "Summer" not in html and "og:" not in html,
          "only the form: no title, no card tags", "the form", html)
    for what in ("video", "poster"):
        _check("GET", "/s/{token}/{what}", pvd.req("GET", "/s/%s/%s" % (s["token"], what)),
               "%s without the password" % what, 404)
    r = _form(pvd, s["token"], "wrong")
    html = _check("POST", "/s/{token}", r, "a wrong password", 401)
    check("Wrong password" in html, "the form says it was wrong", "Wrong password", html)
    _check("POST", "/s/{token}", pvd.req("POST", "/s/" + s["token"], body=b"pw=x",
           headers={"Content-Type": "application/x-www-form-urlencoded"}), "no password field", 400)
    r = _form(pvd, s["token"], "open+sesame")
    _check("POST", "/s/{token}", r, "the right password (form)", 303)
    eq(r.header("Location"), "/s/" + s["token"], "back to the page")
    cookie = r.header("Set-Cookie")
    for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/s/" + s["token"]):
        check(attr in cookie, "the cookie has " + attr, attr, cookie)
    jar = {"Cookie": cookie.split(";")[0]}
    html = _check("GET", "/s/{token}", _page(pvd, s["token"], headers=jar), "the page with the cookie", 200)
    check("og:title" in html and "&#39;Summer&#39;" in html, "the page shows once unlocked", "the page", html[:400])
    r = pvd.req("GET", "/s/%s/video" % s["token"], headers=dict(jar, Range="bytes=0-9"))
    _check("GET", "/s/{token}/{what}", r, "the MP4 with the cookie", 206)
    # JSON works too; a forged or another share's cookie does not.
    r = pvd.req("POST", "/s/" + s["token"], json={"password": "open sesame"}, headers={"X-Forwarded-For": "10.0.1.1"})
    _check("POST", "/s/{token}", r, "the right password (JSON)", 303)
    forged = jar["Cookie"][:-3] + ("AAA" if not jar["Cookie"].endswith("AAA") else "BBB")
    html = _check("GET", "/s/{token}", _page(pvd, s["token"], headers={"Cookie": forged}), "a forged cookie", 200)
    check("og:title" not in html, "a forged cookie shows the form", "the form", html[:300])
    s2 = _share(a, v["id"], password="open sesame")
    html = _page(pvd, s2["token"], headers=jar).body.decode()
    check("og:title" not in html, "another share's cookie shows the form", "the form", html[:300])
    eq(_list(a, v["id"])[[x["id"] for x in _list(a, v["id"])].index(s["id"])]["views"], 1,
       "only the unlocked page load counted")
    # The limit: per share, before any hashing; the right password too.
    codes = [_form(pvd, s2["token"], "nope%d" % i, client="10.0.1.2").status for i in range(4)]
    eq(codes, [401] * 4, "four wrong attempts")
    r = _form(pvd, s2["token"], "open+sesame", client="10.0.1.3")
    _check("POST", "/s/{token}", r, "past the limit", 429, "rate_limited")
    check(int(r.header("Retry-After", "0")) >= 1, "Retry-After", ">= 1", r.header("Retry-After"))
    _check("POST", "/s/{token}", _form(pvd, s["token"], "open+sesame", client="10.0.1.4"),
           "another share is not limited", 303)


def test_password_limit_per_address(pvd):
    a, _, v, _ = _setup(pvd)
    shares = [_share(a, v["id"], password="pw%d" % i) for i in range(7)]
    codes = [_form(pvd, s["token"], "wrong", client="10.0.2.1").status for s in shares]
    eq(codes, [401] * 6 + [429], "seven shares, one wrong attempt each, from one address")
    r = _form(pvd, shares[0]["token"], "pw0", client="10.0.2.1")
    _check("POST", "/s/{token}", r, "the right password from that address, past its limit", 429, "rate_limited")
    _check("POST", "/s/{token}", _form(pvd, shares[6]["token"], "pw6", client="10.0.2.2"),
           "the same share from another address", 303)
    _check("POST", "/s/{token}", _form(pvd, "A" * 43, "x"), "a password for an unknown token", 404)


def test_video_delete_revokes_its_shares(pvd):
    a, _, _, _ = _setup(pvd)
    v = _video(a, title="to delete")
    s1, s2 = _share(a, v["id"]), _share(a, v["id"], password="pw")
    a.req("DELETE", "/api/v1/videos/" + v["id"]).expect(204, "delete the video")
    gone = _gone_body(pvd)
    for s in (s1, s2):
        eq((_page(pvd, s["token"]).status, _page(pvd, s["token"]).body), (404, gone), "the share of a deleted video")
    _check("GET", SHARES, a.req("GET", "/api/v1/videos/%s/shares" % v["id"]), "shares of a deleted video", 404)
    r = subprocess.run(["mdb_dump", "-s", "shares", os.path.join(pvd.data_dir, "store")], capture_output=True)
    eq(r.returncode, 0, "mdb_dump shares (%s)" % r.stderr[-200:])
    text = r.stdout.decode()
    vid = _id_bytes(v["id"]).hex()
    check(vid not in text, "no share record names the deleted video", "none", text[-400:])


CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _id_bytes(text):
    n = 0
    for ch in text:
        n = n * 32 + CROCKFORD.index(ch)
    return (n & ((1 << 128) - 1)).to_bytes(16, "big") if len(text) == 26 else b""


def test_expired_is_the_same_404(pvd):
    a, _, v, _ = _setup(pvd)
    s = _share(a, v["id"], expires_in_days=1)
    keep = _share(a, v["id"], expires_in_days=1)
    _page(pvd, s["token"]).expect(200, "a live share")
    # Move its expiry into the past in the store itself (pvd stopped): the
    # record's expires_ms is a msgpack uint64 after the key "expires_ms".
    pvd.stop()
    store = os.path.join(pvd.data_dir, "store")
    dump = subprocess.run(["mdb_dump", "-s", "shares", store], capture_output=True, check=True).stdout.decode()
    lines = dump.split("\n")
    key = b"\xaaexpires_ms\xcf".hex()
    sid = _id_bytes(s["id"]).hex()
    patched = 0
    for i, line in enumerate(lines):
        if line.startswith(" ") and sid in line and key in line:
            j = line.index(key) + len(key)
            past = struct.pack(">Q", int((time.time() - 60) * 1000)).hex()
            lines[i] = line[:j] + past + line[j + 16:]
            patched += 1
    eq(patched, 1, "one record patched")
    subprocess.run(["mdb_load", "-s", "shares", store], input="\n".join(lines).encode(), check=True)
    pvd.start()
    gone = _gone_body(pvd)
    for path in ("", "/video", "/poster"):
        r = pvd.req("GET", "/s/%s%s" % (s["token"], path))
        eq((r.status, r.body), (404, gone), "expired: /s/{token}%s is the one 404 page" % path)
    _page(pvd, keep["token"]).expect(200, "the other share still works")
    listed = {x["id"]: x for x in _list(a, v["id"])}
    eq((listed[s["id"]]["expired"], listed[keep["id"]]["expired"]), (True, False), "the list says which expired")


def test_pvctl_share_list_and_revoke(pvd):
    from test_pvctl import ctl, ctl_json
    a, b, v, vb = _setup(pvd)
    s1, s2 = _share(a, v["id"], password="pw"), _share(b, vb["id"])
    _page(pvd, s2["token"]).expect(200, "a view of b's share")
    rows = ctl_json(pvd, "share", "list")["result"]["shares"]
    ids = [x["id"] for x in rows]
    check(s1["id"] in ids and s2["id"] in ids, "share list: everyone's shares", "both", ids)
    row = next(x for x in rows if x["id"] == s2["id"])
    eq((row["user"], row["video"], row["title"], row["password"], row["views"], row["expired"]),
       (b.email, vb["id"], "b's", False, 1, False), "share list: b's row")
    check(s2["token"] not in jsonlib_dumps(rows), "share list shows no tokens", "absent", None)
    mine = ctl_json(pvd, "share", "list", b.email)["result"]["shares"]
    eq({x["user"] for x in mine}, {b.email}, "share list USER: only b's")
    check(s2["id"] in [x["id"] for x in ctl_json(pvd, "share", "list", b.id)["result"]["shares"]],
          "share list by user id", "b's share", None)
    eq(ctl_json(pvd, "share", "list", "nobody@example.com", expect=1)["error"]["code"], "not_found",
       "share list of an unknown user")
    out, _ = ctl(pvd, "share", "list", b.email)
    check("views" in out and s2["id"] in out, "share list: a human table", "a table", out)
    # A disabled owner's links stop working, and work again once enabled.
    ctl_json(pvd, "user", "disable", b.email)
    eq(_page(pvd, s2["token"]).body, _gone_body(pvd), "a disabled owner's share: the 404 page")
    ctl_json(pvd, "user", "enable", b.email)
    _page(pvd, s2["token"]).expect(200, "the owner enabled again")
    # Revoke by id, by token and by link; then they are gone.
    eq(ctl_json(pvd, "share", "revoke", s1["id"])["result"]["share"], s1["id"], "revoke by id")
    s3 = _share(b, vb["id"])
    ctl_json(pvd, "share", "revoke", s2["token"])
    ctl_json(pvd, "share", "revoke", "https://example.com/s/" + s3["token"])
    gone = _gone_body(pvd)
    for s in (s1, s2, s3):
        eq(_page(pvd, s["token"]).body, gone, "revoked by pvctl: the 404 page")
    for bad in (s1["id"], s2["token"], "nonsense"):
        eq(ctl_json(pvd, "share", "revoke", bad, expect=1)["error"]["code"], "not_found",
           "revoke %r again / unknown" % bad)


def jsonlib_dumps(v):
    import json
    return json.dumps(v)
