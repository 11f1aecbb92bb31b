"""test_hardening.py — the defences a box on a public address needs, each
tried the way an attacker found it missing.

Sign-ups: limited per address (429 with Retry-After); argon2id work waits
in a bounded queue (503 with Retry-After, never an unbounded backlog) where
logins go before sign-ups; the `signup` key closes sign-up or asks for an
invite code from `pvctl user invite`.
"""

import os
import threading
import time

from harness import Pvd, Skip, check, eq, rand_email, unique_jpeg
from test_pvctl import ctl_json


def _signup(p, email, password="long enough pw", invite=None):
    body = {"email": email, "password": password}
    if invite is not None:
        body["invite"] = invite
    return p.req("POST", "/api/v1/auth/signup", json=body)


def test_signup_limited_per_address(pvd):
    with Pvd({"signup_ip_burst": 3, "signup_ip_per_minute": 0.01}, name="signup-limit").start() as p:
        seen = [_signup(p, rand_email("lim")).status for _ in range(5)]
        eq(seen[:3], [201, 201, 201], "the burst of 3 sign-ups from one address")
        eq(seen[3:], [429, 429], "sign-ups past the burst")
        r = _signup(p, rand_email("lim"))
        r.expect_error(429, "rate_limited", what="limited sign-up")
        ra = r.header("Retry-After")
        check(ra is not None and ra.isdigit() and int(ra) >= 1, "Retry-After on a limited sign-up",
              "seconds", ra)
        # Nothing was created for the refused ones.
        users = ctl_json(p, "user", "list")["result"]["users"]
        eq(len(users), 3, "accounts made: only the admitted sign-ups")


def test_hash_queue_bounded_and_logins_first(pvd):
    cfg = {"hash_queue": 4, "workers": 2}
    with Pvd(cfg, name="hash-queue").start() as p:
        _, email, pw = p.signup()
        results, lock = [], threading.Lock()
        login_done = []

        def one_signup(i):
            r = _signup(p, rand_email("flood%d" % i))
            with lock:
                results.append((time.monotonic(), r.status, r.header("Retry-After"), r.json()))

        threads = [threading.Thread(target=one_signup, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        time.sleep(0.05)  # let the flood reach the queue; the check below does not rely on it
        r = p.login(email, pw, expect=None)
        login_done.append(time.monotonic())
        for t in threads:
            t.join(60)
        eq(r.status, 200, "a login during a sign-up flood")
        statuses = sorted(s for _, s, _, _ in results)
        check(all(s in (201, 503) for s in statuses), "sign-ups in a flood: created or 503",
              "201 or 503 only", statuses)
        refused = [(ra, j) for _, s, ra, j in results if s == 503]
        check(refused, "a bounded queue refuses part of a 24-wide flood (hash_queue 4)", ">= 1 503",
              statuses)
        for ra, j in refused:
            check(ra and ra.isdigit(), "503 carries Retry-After", "seconds", ra)
            eq(j["error"]["code"], "overloaded", "the 503's error code")
        created = sorted(t for t, s, _, _ in results if s == 201)
        # Logins go first: the login does not wait behind every queued sign-up.
        check(len(created) < 2 or login_done[0] < created[-1],
              "the login finished before the last queued sign-up", "earlier", (login_done, created[-3:]))


def test_signup_closed(pvd):
    with Pvd({"signup": "closed"}, name="signup-closed").start() as p:
        _signup(p, rand_email("closed")).expect_error(403, "signup_closed", what="sign-up when closed")
        doc = ctl_json(p, "user", "add", "owner@example.com", input=b"")
        check(doc["ok"], "pvctl user add works when sign-up is closed", True, doc)


def test_signup_by_invite(pvd):
    with Pvd({"signup": "invite"}, name="signup-invite").start() as p:
        _signup(p, rand_email("inv")).expect_error(403, "invite_required", what="sign-up without a code")
        _signup(p, rand_email("inv"), invite="not-a-code").expect_error(
            403, "invalid_invite", what="sign-up with a made-up code")
        code = ctl_json(p, "user", "invite")["result"]["code"]
        check(len(code) >= 22, "an invite code carries >= 128 bits", ">= 22 chars", code)
        email = rand_email("inv")
        _signup(p, email, invite=code).expect(201, "sign-up with a fresh code")
        p.login(email, "long enough pw").expect(200, "the invited user logs in")
        _signup(p, rand_email("inv"), invite=code).expect_error(
            403, "invalid_invite", what="a spent code, used again")
        # A code made for one email works for that email only.
        bound = ctl_json(p, "user", "invite", "Friend@Example.com", "--days", "2")["result"]
        eq(bound["email"], "friend@example.com", "the invite's email, normalised")
        _signup(p, rand_email("inv"), invite=bound["code"]).expect_error(
            403, "invalid_invite", what="another email with a bound code")
        _signup(p, "friend@example.com", invite=bound["code"]).expect(201, "the bound email signs up")
        # Two sign-ups racing for one code: exactly one account.
        code = ctl_json(p, "user", "invite")["result"]["code"]
        out = []
        ts = [threading.Thread(target=lambda i=i: out.append(_signup(p, rand_email("race%d" % i),
                                                                     invite=code).status))
              for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        eq(sorted(out), [201, 403, 403, 403], "4 sign-ups racing for one code")


def test_presigned_link_stops_when_owner_disabled(pvd):
    u = pvd.new_user("presign-dis")
    p = u.upload_ok(unique_jpeg())
    url = p["urls"]["content"]
    pvd.req("GET", url).expect(200, "a presigned link of an active user")
    ctl_json(pvd, "user", "disable", u.email)
    pvd.req("GET", url).expect_error(403, "forbidden", what="the same link once its owner is disabled")
    pvd.req("GET", p["urls"]["thumbnail"]).expect_error(403, "forbidden", what="the thumbnail link too")
    ctl_json(pvd, "user", "enable", u.email)
    pvd.req("GET", url).expect(200, "the link again once its owner is enabled")


# ---------------------------------------------------------------- photo decoding

def _png(w, h, depth=8, ctype=2, fill=0):
    """A valid PNG of w x h (colour type ctype, bit depth) with every byte
    `fill`: a huge declared picture in a small file (zlib of a constant)."""
    import struct
    import zlib

    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))

    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    row = b"\0" + bytes([fill]) * (w * ch * depth // 8)
    z = zlib.compressobj(9)
    out = [z.compress(row) for _ in range(h)]
    out.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(out)) + chunk(b"IEND", b"")


def _rss_kb(p):
    with open("/proc/%d/status" % p.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_decode_bomb_refused_before_decoding(pvd):
    bomb = _png(9000, 9000, depth=16, ctype=6)  # ~650 MB of pixels in ~630 KB
    check(len(bomb) < 2 << 20, "the bomb is small on the wire", "< 2 MB", len(bomb))
    u = pvd.new_user("bomb")
    before = _rss_kb(pvd)
    results = []
    ts = [threading.Thread(target=lambda: results.append(u.upload(bomb, "image/png", "bomb.png")))
          for _ in range(2)]
    for t in ts:
        t.start()
    small = u.upload(unique_jpeg(), "image/jpeg", "small.jpg")  # another upload meanwhile
    for t in ts:
        t.join(60)
    small.expect(201, "a normal upload next to two decode bombs")
    for r in results:
        r.expect_error(413, "photo_too_large", what="a PNG declaring 9000x9000 RGBA16")
        msg = r.json()["error"]["message"]
        check("bomb.png" in msg and "decode_memory" in msg, "the 413 names the file and the limit",
              "bomb.png ... decode_memory", msg)
    grew = (_rss_kb(pvd) - before) // 1024
    check(grew < 100, "pvd's RSS after two decode bombs (refused from the header)", "< 100 MB growth",
          "%d MB" % grew)
    eq(u.list_all(), [u.list_all()[0]], "only the normal photo was stored")


def test_photo_pixel_limit_and_decode_big_pool(pvd):
    cfg = {"max_photo_pixels": 3000000, "decode_memory": "16M"}
    with Pvd(cfg, name="decode-limits").start() as p:
        u = p.new_user("limits")
        # 16 MB budget: the work pool takes <= 4 MB a decode (2 threads), decode_big <= 8 MB.
        small = _png(300, 300, fill=1)          # 0.3 MB: on the work pool
        big = _png(1400, 1400, fill=2)          # ~5.9 MB: one at a time on decode_big
        too_big = _png(1700, 1700, fill=3)      # ~8.7 MB: over half the budget
        too_many = _png(2000, 2000, depth=8, ctype=0, fill=4)  # 4 MP > max_photo_pixels
        out = {}
        ts = [threading.Thread(target=lambda k=k, d=d: out.__setitem__(k, u.upload(d, "image/png", k)))
              for k, d in (("small.png", small), ("big1.png", big), ("big2.png", _png(1400, 1400, fill=5)))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        for k in ("small.png", "big1.png", "big2.png"):
            out[k].expect(201, "%s within the decode budget" % k)
        r = u.upload(too_big, "image/png", "too_big.png")
        r.expect_error(413, "photo_too_large", what="a photo whose decode needs more than half the budget")
        r = u.upload(too_many, "image/png", "too_many.png")
        r.expect_error(413, "photo_too_large", what="a photo over max_photo_pixels")
        check("megapixels" in r.json()["error"]["message"], "the message says the limit in megapixels",
              "megapixels", r.json()["error"]["message"])
        eq(len(u.list_all()), 3, "photos stored: the three within limits")


# ---------------------------------------------------------------- sessions that end at once

def test_logout_ends_the_access_token_at_once(pvd):
    u = pvd.new_user("logout-now")
    u.req("GET", "/api/v1/me").expect(200, "/me before logout")
    other = pvd.login(u.email, u.password).json()["access_token"]  # a second session
    u.req("POST", "/api/v1/auth/logout", json={"refresh_token": u.refresh}).expect(204, "logout")
    r = u.req("GET", "/api/v1/me")
    r.expect_error(401, "invalid_token", what="the logged-out access token, before its expiry")
    pvd.req("GET", "/api/v1/me", token=other).expect(200, "another session of the same user goes on")


def test_password_reset_ends_every_session_at_once(pvd):
    u = pvd.new_user("reset-now")
    old = u.access
    pvd.req("GET", "/api/v1/me", token=old).expect(200, "/me before the reset")
    time.sleep(1.1)  # tokens are stamped in whole seconds: the reset's second is later than this one's
    doc = ctl_json(pvd, "user", "reset-password", u.email)
    check(doc["ok"], "pvctl user reset-password", True, doc)
    pvd.req("GET", "/api/v1/me", token=old).expect_error(401, "invalid_token",
                                                          what="an access token issued before the reset")
    pw = doc["result"]["password"]
    new = pvd.login(u.email, pw).json()["access_token"]
    pvd.req("GET", "/api/v1/me", token=new).expect(200, "a token issued after the reset")


def test_ipv6_clients_limited_by_their_64(pvd):
    """Per-address limits count an IPv6 client by its /64: a host with
    privacy addresses (or a whole subscriber prefix) cannot pick a fresh
    address for each try."""
    cfg = {"login_ip_burst": "2", "login_ip_per_minute": "0.001", "login_account_burst": "1000",
           "trusted_proxies": "127.0.0.1"}
    with Pvd(cfg, name="limit-v6").start() as p:
        def attempt(xff):
            return p.req("POST", "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "x" * 8},
                         headers={"X-Forwarded-For": xff}).status
        seen = [attempt("2001:db8:1:2::%x" % i) for i in (1, 2, 0xbeef)]
        eq(seen, [401, 401, 429], "three addresses of one /64")
        eq(attempt("2001:db8:1:3::1"), 401, "another /64 has its own budget")
        eq(attempt("::ffff:203.0.113.9"), 401, "an IPv4-mapped address counts as its IPv4 address")
        eq(attempt("203.0.113.9"), 401, "... and shares that address's budget")
        eq(attempt("203.0.113.9"), 429, "... which is now spent")


def test_refused_admin_peers_do_not_flood_the_log(pvd):
    """A local user hammering the admin socket is refused each time, but
    logged once a minute, not once a try."""
    import stat as st
    from test_pvctl import pvctl, sock_of
    if os.geteuid() != 0:
        raise Skip("needs root to act as another uid")
    with Pvd(name="admin-refused").start() as p:
        os.chmod(p.tmp, 0o711)
        os.chmod(sock_of(p), 0o666)  # opened up by mistake: SO_PEERCRED still refuses
        check(os.stat(sock_of(p)).st_mode & st.S_IWOTH, "socket opened to others", True, False)
        for _ in range(12):
            rc, out, err = pvctl("--json", "status", sock=sock_of(p), uid=65534, gid=65534)
            eq(rc, 3, "another uid is refused each time")
        n = p.log_text().count("refused a connection from uid 65534")
        eq(n, 1, "log lines for 12 refused connections within a minute")


def test_backup_writes_only_in_backup_dir(pvd):
    """pvd writes a backup with its own rights: only inside backup_dir."""
    import tempfile
    from test_pvctl import ctl_json as ctl
    bdir = tempfile.mkdtemp(prefix="pvbk-")
    outside = tempfile.mkdtemp(prefix="pvout-")
    with Pvd({"backup_dir": bdir}, name="backup-dir").start() as p:
        ok = ctl(p, "backup", os.path.join(bdir, "ok.tar"), "--no-blobs")
        check(ok["ok"] and os.path.exists(os.path.join(bdir, "ok.tar")), "a backup inside backup_dir",
              "written", ok)
        for target in (os.path.join(outside, "x.tar"), os.path.join(p.data_dir, "keys.json"),
                       os.path.join(bdir, "..", os.path.basename(outside), "y.tar"), "/etc/cron.d/pv"):
            d = ctl(p, "backup", target, "--no-blobs", expect=1)
            eq(d["error"]["code"], "bad_args", "backup to %s" % target)
            check(bdir in d["error"]["message"], "the refusal names backup_dir", bdir, d["error"]["message"])
        os.symlink(outside, os.path.join(bdir, "link"))
        eq(ctl(p, "backup", os.path.join(bdir, "link", "z.tar"), expect=1)["error"]["code"], "bad_args",
           "a symbolic link out of backup_dir")
        eq(sorted(os.listdir(outside)), [], "nothing was written outside backup_dir")


# ---------------------------------------------------------------- per-user limits

def _video(u, photos, **opts):
    body = {"photo_ids": photos}
    body.update(opts)
    return u.req("POST", "/api/v1/videos", json=body)


def _wait_status(u, vid, want, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = u.req("GET", "/api/v1/videos/" + vid).expect(200, "video").json()["video"]["status"]
        if st in want:
            return st
        time.sleep(0.1)
    raise AssertionError("video %s never reached %s" % (vid, want))


def test_video_length_and_queue_limits(pvd):
    cfg = {"max_video_seconds": 60, "user_queued_jobs": 2, "render_workers": 1}
    with Pvd(cfg, name="video-limits").start() as p:
        u = p.new_user("vlim")
        ids = [u.upload_ok(unique_jpeg())["id"] for _ in range(3)]
        r = _video(u, ids * 10, seconds_per_photo=10)  # 300 s
        r.expect_error(413, "video_too_long", what="a 300 s video where 60 s is the limit")
        check("60 s" in r.json()["error"]["message"], "the 413 says the limit", "60 s", r.json())
        me = u.req("GET", "/api/v1/me").expect(200, "/me").json()
        eq(me["limits"]["video_seconds"], 60, "/me shows the video length limit")
        eq(me["limits"]["queued_jobs"], 2, "/me shows the queued jobs limit")
        eq(me["limits"]["storage_bytes"], None, "/me: no storage limit by default")
        a = _video(u, ids, seconds_per_photo=20).expect(202, "first video").json()["video"]["id"]
        b = _video(u, ids, seconds_per_photo=20).expect(202, "second video").json()["video"]["id"]
        r = _video(u, ids)
        r.expect_error(429, "too_many_videos", what="a third video while two wait or render")
        eq(u.req("GET", "/api/v1/me").json()["usage"]["jobs"], 2, "/me counts the jobs")
        for v in (a, b):
            u.req("POST", "/api/v1/videos/%s/cancel" % v).expect(202, "cancel")
            _wait_status(u, v, ("cancelled",))
        _video(u, ids).expect(202, "a video again once the queue has room")


def test_one_users_renders_wait_while_anothers_start(pvd):
    cfg = {"user_running_jobs": 1, "render_workers": 2}
    with Pvd(cfg, name="running-limit").start() as p:
        a, b = p.new_user("runa"), p.new_user("runb")
        pa = [a.upload_ok(unique_jpeg(640, 480))["id"] for _ in range(2)]
        pb = [b.upload_ok(unique_jpeg(640, 480))["id"] for _ in range(2)]
        slow = {"seconds_per_photo": 30, "resolution": "1080p"}
        a1 = _video(a, pa, **slow).expect(202, "a1").json()["video"]["id"]
        _wait_status(a, a1, ("running",))
        a2 = _video(a, pa, **slow).expect(202, "a2").json()["video"]["id"]
        b1 = _video(b, pb, **slow).expect(202, "b1").json()["video"]["id"]
        _wait_status(b, b1, ("running",))
        eq(a.req("GET", "/api/v1/videos/" + a2).json()["video"]["status"], "queued",
           "a's second video waits (a renders one already) while b's starts on the free thread")
        for u, v in ((a, a1), (a, a2), (b, b1)):
            u.req("POST", "/api/v1/videos/%s/cancel" % v).expect(202, "cancel")
        for u, v in ((a, a1), (a, a2), (b, b1)):
            _wait_status(u, v, ("cancelled",))


def test_a_long_render_shares_the_thread_a_photo_at_a_time(pvd):
    """One render thread: a long video of one user does not hold it while
    another user's short video waits; they take turns a photo at a time,
    so the short one is ready while the long one still renders."""
    cfg = {"render_workers": 1, "render_open_jobs": 4}
    with Pvd(cfg, name="render-slices").start() as p:
        a, b, c = p.new_user("slicea"), p.new_user("sliceb"), p.new_user("slicec")
        pa = [a.upload_ok(unique_jpeg(640, 480))["id"] for _ in range(4)]
        pb = b.upload_ok(unique_jpeg(640, 480))["id"]
        pc = [c.upload_ok(unique_jpeg(640, 480))["id"] for _ in range(2)]
        long = {"seconds_per_photo": 4, "resolution": "480p", "fps": 30}
        a1 = _video(a, pa * 5, **long).expect(202, "a's long video").json()["video"]["id"]  # 20 photos
        _wait_status(a, a1, ("running",))
        c1 = _video(c, pc * 10, **long).expect(202, "c's long video").json()["video"]["id"]
        time.sleep(0.5)
        b1 = _video(b, [pb], seconds_per_photo=1, resolution="480p").expect(202, "b's short video")
        b1 = b1.json()["video"]["id"]
        eq(_wait_status(b, b1, ("ready", "failed"), timeout=90), "ready", "b's short video")
        va = a.req("GET", "/api/v1/videos/" + a1).expect(200, "a's video").json()["video"]
        vc = c.req("GET", "/api/v1/videos/" + c1).expect(200, "c's video").json()["video"]
        eq(va["status"], "running", "a's long video still renders when b's short one is ready")
        eq(vc["status"], "running", "c's long video too: both share the one thread")
        check(0 < va.get("progress", 0) < 1, "a's video has made progress", "0 < p < 1", va)
        check(0 < vc.get("progress", 0) < 1, "c's video too (it was not left waiting)",
              "0 < p < 1", vc)
        # Cancel both: one is on the thread, the other between its slices.
        for u, v in ((a, a1), (c, c1)):
            u.req("POST", "/api/v1/videos/%s/cancel" % v).expect(202, "cancel")
        for u, v in ((a, a1), (c, c1)):
            _wait_status(u, v, ("cancelled",))
        tmp = os.path.join(p.data_dir, "tmp")
        left = [f for f in os.listdir(tmp) if f.startswith("render-")] if os.path.isdir(tmp) else []
        eq(left, [], "no render temp file is left behind by the cancelled renders")
        # The thread is free again: a short video renders at once.
        b2 = _video(b, [pb], seconds_per_photo=1, resolution="480p").expect(202, "b again")
        eq(_wait_status(b, b2.json()["video"]["id"], ("ready", "failed"), timeout=60), "ready",
           "a video after the cancels")


def test_storage_quota(pvd):
    with Pvd({"user_storage_bytes": 40000}, name="quota").start() as p:
        u = p.new_user("quota")
        seen = []
        for _ in range(40):
            r = u.upload(unique_jpeg(160, 120))
            seen.append(r.status)
            if r.status != 201:
                break
        check(seen[:2] == [201, 201], "the first photos fit", "201s", seen)
        r.expect_error(507, "quota_exceeded", what="an upload past user_storage_bytes")
        check("user_storage_bytes" in r.json()["error"]["message"], "the 507 says which limit",
              "user_storage_bytes", r.json()["error"]["message"])
        me = u.req("GET", "/api/v1/me").json()
        check(me["usage"]["photo_bytes"] <= 40000, "stored bytes stay within the quota", "<= 40000",
              me["usage"])
        eq(me["limits"]["storage_bytes"], 40000, "/me shows the quota")
        other = p.new_user("quota2")
        other.upload_ok(unique_jpeg(160, 120))  # the quota is per user
