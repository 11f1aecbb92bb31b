"""test_failwalk.py — SQLite's failure walk against a running pvd.

Each operation (sign-up, login, refresh, uploads, deletes, a video from
creation to its end, pvctl commands, the web UI, pvd's own start) runs with
the failure seam armed as "*:N" — the Nth pv_fail call in pvd fails,
whatever its site — for N = 1, 2, ... until a run fires nothing. The seam
is armed and read through the test build's `pvctl debug failpoints` over
one admin connection held open for the whole module (its own handling is
neither counted nor failed), and the store is checked with `pvctl debug
check` (src/model/check.h) before and after every step.

What each step must show:
  - an answer: a complete HTTP response (or admin frame), never a hang, and
    never a connection dropped without an answer unless the failure struck
    where no answer can be written (the connection's own allocation:
    NO_ANSWER_SITES);
  - an error answer is a 4xx/5xx with the JSON error body, and its status
    says what failed (STATUS_FOR): 503 with Retry-After for an allocation
    (overloaded: retry), 507 for a full store or disk, 500 for an I/O
    failure inside pvd (nothing better describes it), 415 only where the
    seam simulates undecodable image data;
  - after an error the store is unchanged (same digest) and consistent;
    after a success the effect is there and the store is consistent;
  - pvd stays up, and stops cleanly at the end (exit 0, no sanitizer
    report, every log line JSON).
Walks are bounded in steps (MAX_STEPS) and time (each step's requests time
out; each walk has a time budget).
"""

import json as jsonlib
import os
import socket
import subprocess
import time

import harness
from harness import Pvd, check, eq
from test_pvctl import mp_pack, mp_unpack  # the admin protocol's msgpack

ROOT = harness.ROOT
MAX_STEPS = 300
WEB_ROOT = os.path.join(ROOT, "build", "web")

# One loop, few threads: a small, quiet pvd. The change log is not trimmed
# during the walk (a trim between two checks would look like a change).
CONFIG = {
    "loops": "1",
    "workers": "2",
    "render_workers": "1",
    "changelog_trim_seconds": "86400",
    "log_level": "warn",
    "web_root": WEB_ROOT,
    "map_max": str(256 << 20),
}

# Sites whose failure leaves nothing to answer with, so pvd closes the
# connection (the client sees EOF or a reset): http.accept fails before a
# connection exists; http.file_read fails while a file is being sent, after
# the head promised its length (a short body would be a lie).
NO_ANSWER_SITES = {"http.accept", "http.file_read"}

# What each site's failure stands for (the value its call site returns):
# running out of memory (or a thread, a queue slot) ...
ALLOC_SITES = {"msg_new", "pool_submit", "actor_new", "loop_new", "store_pending", "store_unref",
               "store_change", "records_encode", "records_decode", "records_ids", "sb_alloc",
               "admin_req", "admin_pack", "admin_conn", "body.json", "backup_alloc", "crypto.jwt",
               "crypto.pwhash", "ratelimit.new", "image_alloc", "render_alloc", "http.alloc"}
# ... a full map or disk ...
FULL_SITES = {"store_put", "store_commit", "store_grow", "render_write", "backup_write",
              "restore_write", "store_backup"}
# ... and otherwise an I/O error (fsync, rename, open, read, write).


def status_ok(site, status):
    """The statuses an error answer may have when `site` failed (see the
    module comment): the class of failure decides."""
    if site in ALLOC_SITES:
        return status == 503
    if site in FULL_SITES:
        return status == 507
    if site == "image_decode":
        return status in (415, 500)
    return status == 500


def frame(v):
    p = mp_pack(v)
    return len(p).to_bytes(4, "big") + p


class Admin:
    """One admin connection for the whole walk: accepted before any seam is
    armed, so that arming and reading never pass the accept path."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)
        self.buf = b""

    def _fill(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            check(d, "the admin connection stays open", "an answer", "EOF")
            self.buf += d

    def call(self, cmd, args=None):
        """Send one request, return the answer (a dict)."""
        req = {"cmd": cmd}
        if args is not None:
            req["args"] = args
        try:
            self.s.sendall(frame(req))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused at accept: its one frame is still there to read
        self._fill(4)
        n = int.from_bytes(self.buf[:4], "big")
        self._fill(4 + n)
        payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        v, _ = mp_unpack(payload)
        return v

    def ok(self, cmd, args=None):
        a = self.call(cmd, args)
        check(isinstance(a, dict) and a.get("ok") is True, "pvctl %s" % cmd, "ok", a)
        return a["result"]

    def close(self):
        self.s.close()


def walk_points(w, run, ctx=None, request_only=False):
    """The calls to fail, from a run of the operation with nothing armed:
    every call up to the mark the run sets (w.mark(): the answer of a
    request whose effect goes on, such as a render), then the first and the
    last call of each call site. For operations that make most of their
    calls in a loop (a render per frame and per packet, a backup per block
    and per blob, a list per record), failing every call takes the same
    path over and over; failing the first and the last of each site still
    fails every site, at the start and at the end of its run (test_render.c
    does the same), while the request itself is walked call by call."""
    w.arm("")
    w.marked = 0
    run(ctx)
    sites = w.adm.ok("debug.failpoints", {"sites": True})["sites"]
    pts = set() if request_only else {p for s in sites for p in (s["first"], s["last"]) if p > 0}
    return sorted(pts | set(range(1, w.marked + 3)))


class Step:
    def __init__(self, n):
        self.n = n
        self.calls = 0
        self.fired = 0
        self.site = ""       # name of the site that failed
        self.where = ""      # "name file:line"
        self.before = None   # debug check before
        self.after = None    # debug check after


class World:
    """The walk's pvd (the module's: run.py stops it and checks its exit,
    sanitizer report and log), its admin connection and a user."""

    def __init__(self, pvd):
        check(os.path.exists(os.path.join(WEB_ROOT, "index.html")),
              "the built web UI (make all)", WEB_ROOT, "missing")
        self.p = pvd
        self.adm = Admin(os.path.join(self.p.tmp, "admin.sock"))
        self.user = self.p.new_user("walk")
        self.report = []       # (walk, steps, seconds, sites fired)
        self.marked = 0        # calls made when the run called mark()

    # ---- the seam ----
    def arm(self, spec):
        return self.adm.ok("debug.failpoints", {"spec": spec})

    def mark(self):
        """Note how many calls the run made so far (see walk_points)."""
        self.marked = self.adm.ok("debug.failpoints")["calls"]

    def check_store(self, what):
        r = self.adm.ok("debug.check")
        check(r["problems"] == 0, "%s: the store is consistent" % what, "no problems", r["text"])
        return r

    def walk(self, name, run, verify, prepare=None, budget=60.0, sample=False):
        """Walk "*:N" over run(ctx) for N = 1, 2, ... until a step fires
        nothing. prepare() makes ctx with the seam off; verify(ctx, step,
        outcome) checks the step (seam off). With sample, a first run with
        nothing armed finds each call site's first and last call, and only
        those are failed (see walk_points); sample="request" fails only the
        calls up to the run's mark."""
        t0 = time.monotonic()
        points = walk_points(self, run, prepare() if prepare else None,
                             sample == "request") if sample else None
        fired_sites = []
        problems = []
        n = 0
        seq = points if points is not None else range(1, MAX_STEPS + 1)
        for n in seq:
            check(time.monotonic() - t0 < budget, "%s: within its time budget" % name,
                  "< %.0f s" % budget, "step %d at %.1f s" % (n, time.monotonic() - t0))
            ctx = prepare() if prepare else None
            st = Step(n)
            st.before = self.check_store("%s, before step %d" % (name, n))
            self.arm("*:%d" % n)
            stuck = None
            try:
                outcome = run(ctx)
            except AssertionError as e:  # e.g. a video that never ends
                outcome, stuck = None, e
            finally:
                c = self.arm("")
            st.calls, st.fired = c["calls"], c["fired"]
            st.where = c["last"]
            st.site = c["last"].split(" ")[0] if c["last"] else ""
            check(self.p.running(), "%s, step %d (%s): pvd is still running" % (name, n, st.where),
                  "running", "exited:\n" + self.p.log_tail(15))
            if stuck is not None:
                problems.append("%s, step %d (%s): %s" % (name, n, st.where or "nothing failed", stuck))
                print("#   finding: %s" % problems[-1], flush=True)
                break
            try:
                st.after = self.check_store("%s, after step %d (%s)" % (name, n, st.where or "nothing"))
                verify(ctx, st, outcome)
            except AssertionError as e:  # note it, walk on: one run shows every finding
                problems.append(str(e))
                print("#   finding: %s" % e, flush=True)
                if len(problems) >= 20 or not st.fired:
                    break
            if st.fired:
                fired_sites.append(st.where)
            elif points is None:
                break
        steps = len(fired_sites) + (0 if points is not None else 1)
        self.report.append((name, steps, time.monotonic() - t0, fired_sites))
        check(not problems, "%s: every step clean" % name, "no findings",
              "%d:\n  %s" % (len(problems), "\n  ".join(problems)))
        if points is None:
            check(n < MAX_STEPS, "%s: the walk ended" % name, "< %d steps" % MAX_STEPS, n)
        return fired_sites

    # ---- HTTP ----
    def http(self, method, path, **kw):
        """One request on a fresh connection; None when the connection was
        dropped without an answer."""
        kw.setdefault("timeout", 15)
        try:
            return self.p.req(method, path, **kw)
        except (OSError, ConnectionError) as e:
            if isinstance(e, socket.timeout):
                raise AssertionError("%s %s: no answer within %s s (a hang)" % (method, path,
                                                                                kw["timeout"]))
            return None
        except Exception as e:  # http.client's errors for a cut answer
            if type(e).__module__ == "http.client":
                return None
            raise


def expect_clean(what, st, resp, ok_statuses):
    """The HTTP answer of a step: success (when nothing fired, or the
    failure was absorbed) or a clean error whose status fits the failure.
    Returns True for success."""
    label = "%s, step %d (%s)" % (what, st.n, st.where or "nothing failed")
    if resp is None:
        check(st.fired and st.site in NO_ANSWER_SITES,
              label + ": an answer (the connection was dropped)", "an HTTP answer", "none")
        return False
    if resp.status in ok_statuses:
        return True
    check(st.fired > 0, label + ": nothing failed, so it must succeed", ok_statuses, resp)
    resp.expect_error(resp.status, None, label)
    check(status_ok(st.site, resp.status), label + ": the status fits the failure",
          "see status_ok()", resp.status)
    if resp.status == 503:
        check(resp.header("Retry-After"), label + ": 503 says when to retry", "Retry-After", None)
    return False


def expect_unchanged(what, st):
    eq(st.after["digest"], st.before["digest"],
       "%s, step %d (%s): failed, so the store is unchanged" % (what, st.n, st.where))


# ---------------------------------------------------------------- the world

# The module's shared state: the config for its pvd, and the walk's world.
PVD_CONFIG = CONFIG
_world = None


def world(pvd):
    global _world
    if _world is None or _world.p is not pvd:
        _world = World(pvd)
    return _world


# ---------------------------------------------------------------- auth

def test_signup(pvd):
    w = world(pvd)
    what = "sign-up"

    def prepare():
        return harness.rand_email("wsu")

    def run(email):
        return w.http("POST", "/api/v1/auth/signup", json={"email": email, "password": "walk-password-1"})

    def verify(email, st, resp):
        if expect_clean(what, st, resp, (201,)):
            eq(st.after["counts"]["users"], st.before["counts"]["users"] + 1,
               "%s, step %d: one more user" % (what, st.n))
        else:
            expect_unchanged(what, st)

    w.walk(what, run, verify, prepare)


def test_login_refresh_logout(pvd):
    w = world(pvd)
    u = w.user

    def login(_):
        return w.http("POST", "/api/v1/auth/login", json={"email": u.email, "password": u.password})

    def verify_login(_, st, resp):
        if expect_clean("login", st, resp, (200,)):
            j = resp.json()
            check(j.get("access_token") and j.get("refresh_token"), "login answers tokens", "tokens", j)
            eq(st.after["counts"]["tokens"], st.before["counts"]["tokens"] + 1, "login: one more token")
        else:
            expect_unchanged("login", st)

    w.walk("login", login, verify_login)

    state = {"refresh": u.login()["refresh_token"]}

    def refresh(_):
        return w.http("POST", "/api/v1/auth/refresh", json={"refresh_token": state["refresh"]})

    def verify_refresh(_, st, resp):
        if expect_clean("refresh", st, resp, (200,)):
            state["refresh"] = resp.json()["refresh_token"]
        else:
            expect_unchanged("refresh", st)

    w.walk("refresh", refresh, verify_refresh)

    def logout_prepare():
        # A session of its own: a logout ends the access token it presents,
        # and the walks after this one go on with u's.
        return pvd.login(u.email, u.password).json()

    def logout(session):
        return w.http("POST", "/api/v1/auth/logout", json={"refresh_token": session["refresh_token"]},
                      token=session["access_token"])

    def verify_logout(tok, st, resp):
        if not expect_clean("logout", st, resp, (204,)):
            expect_unchanged("logout", st)

    w.walk("logout", logout, verify_logout, logout_prepare)

    # A browser session: the refresh token goes in an HttpOnly cookie. A
    # success without the cookie would leave the page logged in for
    # minutes and then out.
    def cookie_login(_):
        return w.http("POST", "/api/v1/auth/login", json={"email": u.email, "password": u.password},
                      headers={"X-PV-Session": "cookie"})

    def verify_cookie_login(_, st, resp):
        if expect_clean("login (cookie)", st, resp, (200,)):
            cookie = resp.header("Set-Cookie") or ""
            check(cookie.startswith("pv_refresh=") and "HttpOnly" in cookie,
                  "login (cookie), step %d (%s): the refresh cookie" % (st.n, st.where),
                  "Set-Cookie: pv_refresh=...", cookie)
            check("refresh_token" not in resp.json(), "login (cookie): no token in the body",
                  "none", resp.json())
        else:
            expect_unchanged("login (cookie)", st)

    w.walk("login (cookie)", cookie_login, verify_cookie_login)


# ---------------------------------------------------------------- photos

def test_upload_raw(pvd):
    w = world(pvd)
    u = w.user
    what = "upload (raw)"

    def prepare():
        return harness.unique_jpeg()

    def run(data):
        return w.http("POST", "/api/v1/photos", body=data, token=u.access,
                      headers={"Content-Type": "image/jpeg", "X-Filename": "walk.jpg"})

    def verify(data, st, resp):
        if expect_clean(what, st, resp, (201,)):
            eq(st.after["counts"]["photos"], st.before["counts"]["photos"] + 1,
               "%s, step %d: one more photo" % (what, st.n))
        else:
            expect_unchanged(what, st)

    w.walk(what, run, verify, prepare)


def test_upload_multipart(pvd):
    w = world(pvd)
    u = w.user
    what = "upload (multipart)"
    dup = harness.unique_jpeg()
    u.upload_ok(dup)

    def prepare():
        return [("a.jpg", "image/jpeg", harness.unique_jpeg()), ("b.png", "image/png", harness.unique_png()),
                ("dup.jpg", "image/jpeg", dup)]

    def run(files):
        body, ctype = harness.multipart(files)
        return w.http("POST", "/api/v1/photos", body=body, token=u.access,
                      headers={"Content-Type": ctype})

    def verify(files, st, resp):
        if expect_clean(what, st, resp, (201,)):
            eq(len(resp.json()["photos"]), 3, "%s: three photos answered" % what)
            eq(st.after["counts"]["photos"], st.before["counts"]["photos"] + 2,
               "%s, step %d: two more photos (one was a duplicate)" % (what, st.n))
        else:
            expect_unchanged(what, st)

    w.walk(what, run, verify, prepare)


def test_delete_photo(pvd):
    w = world(pvd)
    u = w.user
    what = "delete a photo"

    kept = {}

    def prepare():
        """A photo of its own; the one of a failed step is still there."""
        if "id" not in kept:
            kept["id"] = u.upload_ok(harness.unique_jpeg())["id"]
        return kept["id"]

    def run(pid):
        return w.http("DELETE", "/api/v1/photos/" + pid, token=u.access)

    def verify(pid, st, resp):
        if expect_clean(what, st, resp, (204,)):
            eq(st.after["counts"]["photos"], st.before["counts"]["photos"] - 1,
               "%s, step %d: one photo fewer" % (what, st.n))
            kept.pop("id")
        else:
            expect_unchanged(what, st)
            u.req("GET", "/api/v1/photos/" + pid).expect(200, "%s: the photo is still there" % what)

    w.walk(what, run, verify, prepare)


def test_reads(pvd):
    """Reads change nothing; a failure is a clean error all the same."""
    w = world(pvd)
    u = w.user
    pid = u.upload_ok(harness.unique_jpeg())["id"]
    photo = u.req("GET", "/api/v1/photos/" + pid).expect(200, "photo").json()["photo"]
    media = photo["urls"]["thumbnail"]
    media = media[media.index("/media/"):] if "/media/" in media else media
    reads = [("GET", "/api/v1/me", 200), ("GET", "/api/v1/photos", 200),
             ("GET", "/api/v1/photos/" + pid, 200), ("GET", "/api/v1/photos/%s/content" % pid, 200),
             ("GET", media, 200), ("GET", "/api/v1/videos", 200), ("GET", "/", 200),
             ("GET", "private:/metrics", 200)]
    for method, path, ok in reads:
        what = "%s %s" % (method, path.split("?")[0])

        def run(_, method=method, path=path):
            if path.startswith("private:"):
                try:
                    return w.p.private(method, path[len("private:"):], timeout=15)
                except (OSError, ConnectionError):
                    return None
            tok = None if path.startswith("/media/") or path == "/" else u.access
            return w.http(method, path, token=tok)

        def verify(_, st, resp, ok=ok, what=what):
            expect_clean(what, st, resp, (ok,))
            eq(st.after["digest"], st.before["digest"], "%s: a read changes nothing" % what)

        w.walk(what, run, verify, budget=30)


# ---------------------------------------------------------------- videos

VIDEO = {"seconds_per_photo": 0.5, "resolution": "480p", "fps": 24, "transition": "none"}


def wait_jobs_done(w, what, timeout=30.0):
    """Until no video job is queued or running (debug check: held, so
    polling neither counts nor fails). A job left running means a render's
    end was lost: the video would never finish."""
    deadline = time.monotonic() + timeout
    while True:
        r = w.adm.ok("debug.check")
        if r["counts"]["jobs"] == 0:
            return
        check(time.monotonic() < deadline, what + ": the video reaches an end", "no job left",
              "%d job(s) still queued or running after %.0f s" % (r["counts"]["jobs"], timeout))
        time.sleep(0.05)




def test_video_create_and_render(pvd):
    """POST /api/v1/videos and the render it starts, as one operation: the
    answer, then the video's end (ready, or failed with a reason)."""
    w = world(pvd)
    u = w.user
    what = "video: create and render"
    pid = u.upload_ok(harness.unique_jpeg(320, 240))["id"]
    body = dict(VIDEO, photo_ids=[pid], title="walk")

    def run(_):
        r = w.http("POST", "/api/v1/videos", json=body, token=u.access)
        if r is not None and r.status == 202:
            w.mark()  # the request, its commit and the hand-over: every call
            wait_jobs_done(w, what)
        return r

    def verify(_, st, resp):
        if not expect_clean(what, st, resp, (202,)):
            expect_unchanged(what, st)
            return
        vid = resp.json()["video"]["id"]
        v = u.req("GET", "/api/v1/videos/" + vid).expect(200, what + ": the video").json()["video"]
        if v["status"] == "ready":
            u.req("GET", "/api/v1/videos/%s" % vid).expect(200, "ready video")
            return
        check(st.fired and v["status"] == "failed" and v.get("error"),
              "%s, step %d (%s): the render ends ready, or failed with a reason" % (what, st.n, st.where),
              "ready / failed+error", v)

    w.walk(what, run, verify, budget=90, sample=True)


def test_delete_video(pvd):
    w = world(pvd)
    u = w.user
    what = "delete a video"
    pid = u.upload_ok(harness.unique_jpeg(320, 240))["id"]
    body = dict(VIDEO, photo_ids=[pid])

    kept = {}

    def prepare():
        """A ready video; the one of a failed step is still there, whole."""
        if "id" not in kept:
            r = u.req("POST", "/api/v1/videos", json=body).expect(202, "a video to delete")
            kept["id"] = r.json()["video"]["id"]
            wait_jobs_done(w, "a video to delete")
        return kept["id"]

    def run(vid):
        return w.http("DELETE", "/api/v1/videos/" + vid, token=u.access)

    def verify(vid, st, resp):
        if expect_clean(what, st, resp, (204,)):
            eq(st.after["counts"]["videos"], st.before["counts"]["videos"] - 1, what + ": one video fewer")
            kept.pop("id")
        else:
            expect_unchanged(what, st)
            u.req("GET", "/api/v1/videos/" + vid).expect(200, what + ": still there")

    w.walk(what, run, verify, prepare, budget=60)


def test_video_events(pvd):
    """The event stream of a finished video: one status event, then the
    stream ends. A stream that never ends is a hang, not a clean error."""
    w = world(pvd)
    u = w.user
    what = "GET video events"
    pid = u.upload_ok(harness.unique_jpeg(320, 240))["id"]
    vid = u.req("POST", "/api/v1/videos", json=dict(VIDEO, photo_ids=[pid])).expect(
        202, "a video").json()["video"]["id"]
    wait_jobs_done(w, what)

    def run(_):
        return w.http("GET", "/api/v1/videos/%s/events" % vid, token=u.access, timeout=10)

    def verify(_, st, resp):
        if expect_clean(what, st, resp, (200,)):
            # the status event; or, when it could not be made, an end
            # without one (the client then reads the video again) -- never
            # "gone" for a video that is there
            body = resp.body.decode("utf-8", "replace")
            check("ready" in body or (st.fired and body.strip() == ""),
                  "%s, step %d (%s): the status event" % (what, st.n, st.where),
                  "an event saying ready", body[:300])
        eq(st.after["digest"], st.before["digest"], what + ": a read changes nothing")

    w.walk(what, run, verify)


# ---------------------------------------------------------------- pvctl

def admin_clean(what, st, ans, codes=None):
    """An admin answer: ok, or a clean error frame whose code fits (codes:
    the command's own error codes, when it has them)."""
    label = "%s, step %d (%s)" % (what, st.n, st.where or "nothing failed")
    check(isinstance(ans, dict) and isinstance(ans.get("ok"), bool), label + ": an answer frame",
          "{ok: ...}", ans)
    if ans["ok"]:
        return True
    check(st.fired > 0, label + ": nothing failed, so it must succeed", "ok", ans)
    e = ans.get("error") or {}
    check(e.get("code") and e.get("message"), label + ": {code, message}", "strings", ans)
    want = codes or (("overloaded",) if st.site in ALLOC_SITES else
                     ("store_full",) if st.site in FULL_SITES else ("internal",))
    if st.site in ("admin_req", "admin_conn"):  # before the command is known
        want = ("overloaded",)
    check(e["code"] in want, label + ": the code fits the failure", want, e)
    return False


def test_pvctl(pvd):
    w = world(pvd)
    u = w.user

    def admin(cmd, args=None):
        return lambda ctx: w.adm.call(cmd, args() if callable(args) else args)

    def simple(what):
        def verify(_, st, ans):
            if not admin_clean(what, st, ans):
                expect_unchanged(what, st)
        return verify

    # user add: the password hashed on the hash pool, then both records
    def add_args():
        return {"email": harness.rand_email("ctl"), "password": "walk-password-2"}

    def verify_add(_, st, ans):
        if admin_clean("pvctl user add", st, ans):
            eq(st.after["counts"]["users"], st.before["counts"]["users"] + 1, "user add: one more user")
        else:
            expect_unchanged("pvctl user add", st)

    w.walk("pvctl user add", admin("user.add", add_args), verify_add)
    state = {"disabled": False}

    def flip(_):
        state["disabled"] = not state["disabled"]
        return w.adm.call("user.disable" if state["disabled"] else "user.enable", {"user": u.email})

    def verify_flip(_, st, ans):
        if not admin_clean("pvctl user disable/enable", st, ans):
            expect_unchanged("pvctl user disable/enable", st)
            state["disabled"] = not state["disabled"]

    w.walk("pvctl user disable/enable", flip, verify_flip)
    if state["disabled"]:
        w.adm.ok("user.enable", {"user": u.email})

    # reset-password: a new hash (hash pool), the user's sessions revoked
    other = w.p.new_user("reset")

    def reset(_):
        return w.adm.call("user.reset-password", {"user": other.email, "password": "walk-password-3"})

    def verify_reset(_, st, ans):
        if not admin_clean("pvctl user reset-password", st, ans):
            expect_unchanged("pvctl user reset-password", st)

    w.walk("pvctl user reset-password", reset, verify_reset)

    # job retry of a failed video (made to fail with the seam itself)
    pid = u.upload_ok(harness.unique_jpeg(320, 240))["id"]
    kept = {}

    def failed_video():
        """A failed video; a step that could not retry it leaves it so."""
        if "id" in kept:
            v = u.req("GET", "/api/v1/videos/" + kept["id"]).expect(200, "the video").json()["video"]
            if v["status"] != "failed":
                kept.pop("id")
        if "id" not in kept:
            w.arm("render_encoder:1+")
            r = u.req("POST", "/api/v1/videos", json=dict(VIDEO, photo_ids=[pid]))
            kept["id"] = r.expect(202, "a video to fail").json()["video"]["id"]
            wait_jobs_done(w, "a video to fail")
            w.arm("")
            v = u.req("GET", "/api/v1/videos/" + kept["id"]).json()["video"]
            eq(v["status"], "failed", "the video to retry failed")
        v = u.req("GET", "/api/v1/videos/" + kept["id"]).json()["video"]
        time.sleep(0.002)  # a new render ends at another millisecond
        return kept["id"], v["finished_at"]

    def retry(ctx):
        ans = w.adm.call("job.retry", {"id": ctx[0]})
        w.mark()
        wait_jobs_done(w, "pvctl job retry")  # answered once queued: wait for its end
        return ans

    def verify_retry(ctx, st, ans):
        vid, before = ctx
        v = u.req("GET", "/api/v1/videos/" + vid).expect(200, "the video").json()["video"]
        if admin_clean("pvctl job retry", st, ans, ("overloaded", "internal", "store_full", "not_found")):
            # accepted, so it was queued: rendered again, to an end (ready,
            # or failed anew with a reason)
            check(v["status"] == "ready" or (st.fired and v["status"] == "failed" and v.get("error")
                                             and v["finished_at"] != before),
                  "pvctl job retry, step %d (%s): the retried video rendered again" % (st.n, st.where),
                  "ready, or failed again", v)
        else:
            eq(v["status"], "failed", "pvctl job retry, step %d: refused, still failed" % st.n)

    # the render it starts is walked with POST /videos: here the command
    w.walk("pvctl job retry", retry, verify_retry, failed_video, sample="request")

    def tls_reload(_):
        return w.adm.call("tls.reload")

    def verify_tls(_, st, ans):
        # tls_invalid is the command's answer to any certificate it could not
        # load, whatever the cause (the message says it)
        admin_clean("pvctl tls reload", st, ans, ("tls_invalid", "overloaded", "internal"))
        w.p.req("GET", "/healthz").expect(200, "TLS still served after step %d" % st.n)

    w.walk("pvctl tls reload", tls_reload, verify_tls)
    for cmd, args in (("status", None), ("user.list", None), ("job.list", {"state": "all"}),
                      ("config.show", None)):
        w.walk("pvctl " + cmd, admin(cmd, args), simple("pvctl " + cmd), sample=True)
    tmpdir = os.path.join(w.p.tmp, "backups")
    os.makedirs(tmpdir, exist_ok=True)
    target = os.path.join(tmpdir, "walk.tar")

    def backup(_):
        if os.path.exists(target):
            os.unlink(target)
        return w.adm.call("backup", {"path": target})

    def verify_backup(_, st, ans):
        # backup's own codes: store_full for a full disk, else backup_failed
        # with the cause in the message; overloaded when memory runs out
        # before the backup itself runs (the request, its pool job)
        codes = ("store_full",) if st.site in FULL_SITES else \
            ("backup_failed", "overloaded") if st.site in ALLOC_SITES else ("backup_failed",)
        if admin_clean("pvctl backup", st, ans, codes):
            check(os.path.exists(target), "backup: the archive", target, "missing")
        else:
            expect_unchanged("pvctl backup", st)
            check(not os.path.exists(target) and not os.path.exists(target + ".tmp"),
                  "backup, step %d (%s): a failed backup leaves nothing" % (st.n, st.where),
                  "no file", os.listdir(tmpdir))

    w.walk("pvctl backup", backup, verify_backup, sample=True)

    # a new admin connection: accepting it may fail too
    def connect(_):
        a = Admin(os.path.join(w.p.tmp, "admin.sock"))
        try:
            return a.call("status")
        except AssertionError:
            return None
        finally:
            a.close()

    def verify_connect(_, st, ans):
        if ans is None:
            check(False, "pvctl connect, step %d (%s): an answer before the close" % (st.n, st.where),
                  "a frame", "EOF")
        admin_clean("pvctl connect", st, ans)

    w.walk("pvctl connect + status", connect, verify_connect, sample=True)


# ---------------------------------------------------------------- pvd's start

def test_pvd_start(tmp):
    """pvd's first start on an empty data directory (store, keys, TLS
    certificate, loops, pools, actors, listeners) under "*:N": each start
    either serves or exits 1 with an error in its log, in bounded time,
    without a sanitizer report, leaving no temp files behind."""
    w = _world
    ports = [harness.free_port(), harness.free_port()]
    conf = os.path.join(tmp, "pvd.conf")
    data = os.path.join(tmp, "data")
    sock = os.path.join(tmp, "admin.sock")
    log_path = os.path.join(tmp, "pvd.log")
    with open(conf, "w") as f:
        f.write("data_dir = %s\nhttps_listen = 127.0.0.1:%d\nhttp_listen = 127.0.0.1:%d\n"
                "admin_socket = %s\nloops = 1\nworkers = 1\nrender_workers = 1\n"
                "changelog_trim_seconds = 86400\nlog_level = info\nweb_root = %s\n"
                % (data, ports[0], ports[1], sock, WEB_ROOT))
    t0 = time.monotonic()
    fired, problems, n = [], [], 0
    for n in range(1, MAX_STEPS):
        check(time.monotonic() - t0 < 90, "pvd start: within its time budget", "< 90 s", n)
        subprocess.run(["rm", "-rf", data], check=True)
        env = dict(os.environ, PV_FAILPOINTS="*:%d" % n)
        with open(log_path, "wb") as lf:
            proc = subprocess.Popen([harness.PVD_BIN, "--config", conf], stdin=subprocess.DEVNULL,
                                    stdout=lf, stderr=lf, env=env, cwd=tmp)
        text, served = "", False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(log_path, "rb") as lf:
                text = lf.read().decode("utf-8", "replace")
            served = " serving https://" in text
            if served or proc.poll() is not None:
                break
            time.sleep(0.02)
        label = "pvd start, step %d" % n
        try:
            check(served or proc.poll() is not None, label + ": serves or exits", "either",
                  "neither after 20 s:\n" + text[-800:])
            if served:
                c = None
                for _ in range(2):  # accepting the readout may be the Nth call
                    a = Admin(sock)
                    ans = a.call("debug.failpoints", {"spec": ""})
                    a.close()
                    if ans.get("ok"):
                        c = ans["result"]
                        break
                    eq(ans["error"]["code"], "overloaded", label + ": a refused readout")
                check(c is not None, label + ": the seam can be read", "an answer", None)
                proc.send_signal(15)
                rc = proc.wait(20)
                with open(log_path, "rb") as lf:
                    text = lf.read().decode("utf-8", "replace")
                eq(rc, 0, label + ": a started pvd stops cleanly")
            else:
                c = {"fired": 1, "last": "(before the admin socket)"}
                eq(proc.returncode, 1, label + ": a failed start exits 1 (log:\n%s)" % text[-600:])
                check('"level":"error"' in text, label + ": says why", "an error line", text[-600:])
            bad = [l for l in text.splitlines() if any(m in l for m in harness.SANITIZER_MARKS)]
            check(not bad, label + ": no sanitizer report", "none", "\n".join(bad[:8]))
            for line in text.splitlines():
                check(line.startswith("{"), label + ": every log line is JSON", "JSON", line[:200])
            left = [f for dp, _, fs in os.walk(data) for f in fs if ".tmp" in f]
            check(not left, label + ": no temp file left", "none", left)
        except AssertionError as e:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            problems.append(str(e))
            print("#   finding: %s" % e, flush=True)
            if len(problems) >= 10:
                break
            continue
        if served and not c["fired"]:
            break
        fired.append(c["last"] or "?")
    if w is not None:
        w.report.append(("pvd start (fresh)", n, time.monotonic() - t0, fired))
    check(not problems, "pvd start: every step clean", "no findings",
          "%d:\n  %s" % (len(problems), "\n  ".join(problems)))


# ---------------------------------------------------------------- the end

def test_zz_report(pvd):
    """What each walk fired (run.py then stops pvd and checks it)."""
    w = world(pvd)
    for name, steps, secs, sites in w.report:
        names = sorted({s.split(" ")[0] for s in sites})
        print("# walk %-24s %3d steps %5.1f s: %s" % (name, steps, secs, " ".join(names)))
    w.adm.close()
