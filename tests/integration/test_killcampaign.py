"""test_killcampaign.py — kill -9 at random points while pvd uploads,
deletes and renders; after every restart, what was acknowledged is there
and nothing else is half there.

pv's rule is "durable before acknowledged": a 201 means the photo survives
kill -9. The campaign runs one pvd on one data directory for all its
points. A point starts a random mix of concurrent work (raw and multipart
uploads of distinct images, uploads of bytes another user has or this user
deleted, exact duplicates, deletes of photos, some used by videos, video
creations that render at once, video deletes, sign-ups, refresh-token
rotations, a login and its logout; often a delete racing an upload of the
same bytes or of the same pixels), kills pvd with SIGKILL after a random
delay (log-uniform from 3 ms to 3 s, so that kills land inside uploads,
decodes, fsyncs, renames, LMDB commits and renders) or, in some points,
once every request has answered (a request that never answers would
otherwise hide behind the kill), sometimes kills it again while it starts
(recovery interrupted), starts it again on the same data and checks:

 1. every acknowledged write (an answer fully received, whenever it was
    read) is there: photos listed with their sha256 and size, their content
    the bytes sent, their thumbnail served; deletes stay deleted; videos
    acknowledged exist and, once the render queue has drained, are ready
    (a render cut by the kill is rendered again from scratch: actors/videos.c)
    with content and poster served; rotated refresh tokens work; signed-up
    users log in; a logged-out session's tokens do not; /me's usage is what
    the acknowledged state adds up to;
 2. writes in flight may be there or not, but never in part: an upload is
    all its parts or none, a photo that is there has its content and
    thumbnail, a video that is there has its job or its blobs;
 3. no orphan record or blob and exact reference counts: `pvctl debug
    check --content` finds no problem, no blob file without a count and no
    temp file right after the start, and, independently of pvd's checker,
    the blob files under DATA/blobs are exactly the blobs that the records
    listed through the API name (originals, thumbnails, MP4s, posters);
 4. pvd's log has no sanitizer report, no 5xx but 503/507, no error line,
    and every line is JSON.

PV_KILL_POINTS (default 25) sets the number of kill points, PV_KILL_SEED
replays a campaign's plan (the seed is printed; timings still differ run
to run), PV_KILL_STOP=1 stops at the first point with a finding. The
summary (kills by what was in flight, acknowledged writes checked,
findings, time) is printed as # lines.
"""

import hashlib
import math
import os
import random
import secrets
import socket
import struct
import threading
import time
import zlib

import harness
from harness import Pvd, check, rand_email, unique_jpeg, unique_png, multipart
from test_pvctl import mp_pack, mp_unpack  # the admin protocol's msgpack

POINTS = int(os.environ.get("PV_KILL_POINTS") or "25")
SEED = int(os.environ.get("PV_KILL_SEED") or random.SystemRandom().randrange(1 << 31))
STOP_AT_FIRST = bool(os.environ.get("PV_KILL_STOP"))
# A point takes 2-4 s on the test build; the run.py budget is per test.
TEST_TIMEOUT = 180 + 15 * POINTS

KILL_MIN, KILL_MAX = 0.003, 3.0   # the kill delay, log-uniform between these (s)
RECOVERY_KILL_P = 0.12            # also kill the next start before it is ready
QUIET_P = 0.12                    # let every request answer, then kill (a hang shows)
ANSWER_TIMEOUT = 30.0             # ... within this
DRAIN_TIMEOUT = 120.0             # renders left after a restart must end within this
FULL_VERIFY_EVERY = 25            # every photo's and video's bytes again, this often
USERS = 3
PHOTOS_SOFT_MAX = 18              # per user: past it, points delete more than they add
VIDEOS_SOFT_MAX = 6

# A small initial map, so that it grows (a resize between commits) during
# the campaign; renders one at a time on this 2-core machine; a short
# change-log trim period (trims are writes too); tokens outlive the run.
CONFIG = {
    "render_workers": "1",
    "workers": "2",
    "loops": "2",
    "map_size": str(128 << 10),
    "changelog_trim_seconds": "1",
    "access_token_ttl": "86400",
    "log_level": "info",
}

VIDEO_OPTS = [
    {"seconds_per_photo": 0.5, "resolution": "480p", "fps": 24, "transition": "none"},
    {"seconds_per_photo": 0.75, "resolution": "480p", "fps": 24, "transition": "fade",
     "transition_seconds": 0.25},
    {"seconds_per_photo": 0.5, "resolution": "480p", "fps": 24, "transition": "none",
     "aspect": "1:1", "ken_burns": True},
]

IMAGE_KINDS = [  # (weight, maker, content type)
    (5, lambda: unique_jpeg(64, 48), "image/jpeg"),
    (3, lambda: unique_jpeg(320, 240), "image/jpeg"),
    (2, lambda: unique_png(64, 48), "image/png"),
    (1, lambda: unique_png(160, 120), "image/png"),
    (1, lambda: unique_jpeg(1920, 1080), "image/jpeg"),  # a longer upload and decode
]


def sha(b):
    return hashlib.sha256(b).hexdigest()


class Finding(AssertionError):
    pass


# ---------------------------------------------------------------- admin

def admin_call(sock_path, cmd, args=None, timeout=60):
    """One admin request on its own connection; the answer's result."""
    req = {"cmd": cmd}
    if args is not None:
        req["args"] = args
    payload = mp_pack(req)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(struct.pack(">I", len(payload)) + payload)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            d = s.recv(1 << 20)
            check(d, "admin %s: an answer" % cmd, "a frame", "EOF")
            buf += d
    n = struct.unpack(">I", buf[:4])[0]
    ans, _ = mp_unpack(buf[4:4 + n])
    check(isinstance(ans, dict) and ans.get("ok") is True, "pvctl %s" % cmd, "ok", ans)
    return ans["result"]


# ---------------------------------------------------------------- the model

class PhotoM:
    def __init__(self, pid, data, ctype, owner):
        self.id = pid
        self.data = data
        self.ctype = ctype
        self.sha = sha(data)
        self.bytes = len(data)
        self.thumb_sha = None   # known once its thumbnail was fetched
        self.owner = owner


class VideoM:
    def __init__(self, vid, title, photo_ids, opts):
        self.id = vid
        self.title = title
        self.photo_ids = list(photo_ids)
        self.opts = dict(opts)
        self.sha = None         # known once ready and fetched
        self.poster_sha = None
        self.bytes = None


class UserM:
    def __init__(self, name, user):
        self.name = name
        self.u = user                 # harness.User (tokens)
        self.photos = {}              # id -> PhotoM, acknowledged (or adopted) and present
        self.deleted = {}             # id -> PhotoM, acknowledged deleted
        self.videos = {}              # id -> VideoM
        self.deleted_videos = set()
        self.relogin = False          # an unanswered refresh may have spent our token
        self.rotated = False          # an acknowledged refresh: check the new token

    def has_sha(self, h):
        return any(p.sha == h for p in self.photos.values())


class Op:
    """One request of a point: planned, then run in a thread."""

    def __init__(self, kind, user, **kw):
        self.kind = kind
        self.user = user
        self.kw = kw
        self.t0 = self.t1 = None
        self.resp = None
        self.error = None
        self.sent = True      # False: the connection was refused (pvd was gone)

    @property
    def in_flight(self):
        return self.t0 is not None and self.t1 is None

    @property
    def answered(self):
        return self.resp is not None


# ---------------------------------------------------------------- the campaign

class Campaign:
    def __init__(self, p, rng):
        self.p = p
        self.rng = rng
        self.users = []
        self.signups = []             # (email, password) acknowledged
        self.point = 0
        self.findings = []
        self.stats = {
            "points": 0, "recovery_kills": 0, "phases": {}, "combos": {},
            "acked": {}, "unanswered": {}, "not_sent": 0, "outcome": {}, "quiet": 0,
            "checks": 0, "renders_resumed": 0, "full_verifies": 0, "map_grows": 0,
            "swept_blobs": 0, "swept_tmp": 0,
        }
        self.log_off = 0
        self.warnings = {}            # warn lines of pvd's log, by message
        self.pending = []             # unanswered ops of the point being checked
        self.sessions = []            # (refresh, access, "live" | "ended") of this point
        self.point_deletes = set()    # photo ids a delete of this point names
        self.t0 = time.monotonic()

    # ---- bookkeeping ----
    def find(self, what):
        msg = "point %d (seed %d): %s" % (self.point, SEED, what)
        self.findings.append(msg)
        print("#   finding: " + msg, flush=True)
        if STOP_AT_FIRST:
            raise Finding(msg)

    def expect(self, cond, what):
        self.stats["checks"] += 1
        if not cond:
            self.find(what)
        return cond

    def count(self, table, key, n=1):
        d = self.stats[table]
        d[key] = d.get(key, 0) + n

    def outcome(self, kind, took):
        """An unanswered write, seen after the restart: done or not."""
        o = self.stats["outcome"].setdefault(kind, [0, 0])
        o[0 if took else 1] += 1

    def admin(self, cmd, args=None):
        return admin_call(os.path.join(self.p.tmp, "admin.sock"), cmd, args)

    # ---- images ----
    def image(self):
        total = sum(w for w, _, _ in IMAGE_KINDS)
        x = self.rng.uniform(0, total)
        for w, make, ctype in IMAGE_KINDS:
            x -= w
            if x <= 0:
                return make(), ctype
        return IMAGE_KINDS[0][1](), IMAGE_KINDS[0][2]

    @staticmethod
    def same_pixels(data, ctype):
        """New bytes with data's pixels (so the same thumbnail blob), or
        None: unique_jpeg/unique_png differ from their base image only in
        a comment, so the base is the image with it taken out."""
        if ctype == "image/jpeg" and data[2:4] == b"\xff\xfe":
            n = struct.unpack(">H", data[4:6])[0]
            note = b"pvit " + secrets.token_hex(16).encode()
            return data[:2] + b"\xff\xfe" + struct.pack(">H", len(note) + 2) + note + data[4 + n:]
        if ctype == "image/png" and data[37:41] == b"tEXt":
            n = struct.unpack(">I", data[33:37])[0]
            text = b"Comment\x00" + secrets.token_hex(16).encode()
            chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(
                ">I", zlib.crc32(b"tEXt" + text))
            return data[:33] + chunk + data[33 + 12 + n:]
        return None

    # ---- setup ----
    def setup(self):
        for i in range(USERS):
            u = self.p.new_user("kc%d" % i)
            um = UserM("user%d" % i, u)
            self.users.append(um)
            for _ in range(4):
                data, ctype = self.image()
                ph = u.upload_ok(data, ctype, "seed.jpg")
                um.photos[ph["id"]] = PhotoM(ph["id"], data, ctype, um)
            ids = list(um.photos)[:2]
            r = u.req("POST", "/api/v1/videos", json=dict(VIDEO_OPTS[0], photo_ids=ids, title="seed"))
            r.expect(202, "seed video")
            v = r.json()["video"]
            um.videos[v["id"]] = VideoM(v["id"], "seed", ids, VIDEO_OPTS[0])
        self.verify(first=False, drain=True, full=True)

    # ---- planning a point ----
    def plan(self):
        """Threads, each a short list of ops run one after the other."""
        rng = self.rng
        threads = []
        busy_photos = set()   # deleted in this point: not deleted twice
        busy_videos = set()
        busy_tokens = set()   # one rotation a user a point (a second one would replay)
        if rng.random() < 0.35:
            threads.extend(self.plan_race(busy_photos))
        for _ in range(rng.randint(2, 5)):
            ops = []
            for _ in range(rng.randint(1, 5)):
                op = self.plan_op(busy_photos, busy_videos, busy_tokens)
                if op:
                    ops.extend(op if isinstance(op, list) else [op])
            if ops:
                threads.append(ops)
        self.point_deletes = busy_photos
        return threads

    def plan_race(self, busy_photos):
        """Two threads: a delete of one of a user's photos, and an upload of
        its exact bytes (a duplicate until the delete commits) or of new
        bytes with its pixels (sharing its thumbnail blob)."""
        rng = self.rng
        um = rng.choice(self.users)
        pool = [p for p in um.photos.values() if p.id not in busy_photos]
        if not pool:
            return []
        pm = rng.choice(pool)
        busy_photos.add(pm.id)
        twin = None if rng.random() < 0.5 else self.same_pixels(pm.data, pm.ctype)
        if twin is None:
            up = Op("upload_dup", um, parts=[(pm.data, pm.ctype)], dup_of=pm.id)
        else:
            up = Op("upload_twin", um, parts=[(twin, pm.ctype)])
        return [[Op("delete_photo", um, id=pm.id)], [up]]

    def plan_op(self, busy_photos, busy_videos, busy_tokens):
        rng = self.rng
        um = rng.choice(self.users)
        n_ph, n_vid = len(um.photos), len(um.videos)
        choices = [
            ("upload_raw", 6 if n_ph < PHOTOS_SOFT_MAX else 2),
            ("upload_multipart", 3 if n_ph < PHOTOS_SOFT_MAX else 1),
            ("upload_shared", 1),
            ("upload_again", 1 if um.deleted else 0),
            ("upload_dup", 1 if um.photos else 0),
            ("delete_photo", (2 if n_ph < PHOTOS_SOFT_MAX else 6) if n_ph > 2 else 0),
            ("create_video", (4 if n_vid < VIDEOS_SOFT_MAX else 1) if n_ph >= 1 else 0),
            ("create_video_same", 1 if um.videos else 0),
            ("delete_video", (1 if n_vid < VIDEOS_SOFT_MAX else 4) if n_vid else 0),
            ("signup", 0.4),
            ("refresh", 0.6),
            ("session", 0.6),
        ]
        total = sum(w for _, w in choices)
        x = rng.uniform(0, total)
        kind = choices[-1][0]
        for k, w in choices:
            x -= w
            if x <= 0 and w > 0:
                kind = k
                break
        if kind == "upload_raw":
            data, ctype = self.image()
            return Op(kind, um, parts=[(data, ctype)])
        if kind == "upload_multipart":
            return Op(kind, um, parts=[self.image() for _ in range(rng.randint(2, 3))])
        if kind == "upload_shared":
            others = [p for o in self.users if o is not um for p in list(o.photos.values()) +
                      list(o.deleted.values()) if not um.has_sha(p.sha)]
            if not others:
                return None
            src = rng.choice(others)
            return Op(kind, um, parts=[(src.data, src.ctype)])
        if kind == "upload_again":
            src = rng.choice(list(um.deleted.values()))
            if um.has_sha(src.sha):
                return None
            return Op(kind, um, parts=[(src.data, src.ctype)])
        if kind == "upload_dup":
            src = rng.choice(list(um.photos.values()))
            return Op(kind, um, parts=[(src.data, src.ctype)], dup_of=src.id)
        if kind == "delete_photo":
            used = {pid for v in um.videos.values() for pid in v.photo_ids}
            pool = [pid for pid in um.photos if pid not in busy_photos]
            in_videos = [pid for pid in pool if pid in used]
            if in_videos and rng.random() < 0.4:
                pool = in_videos
            if not pool:
                return None
            pid = rng.choice(pool)
            busy_photos.add(pid)
            return Op(kind, um, id=pid)
        if kind in ("create_video", "create_video_same"):
            if kind == "create_video_same":
                src = rng.choice(list(um.videos.values()))
                ids, opts = src.photo_ids, src.opts
            else:
                ids = rng.sample(list(um.photos), min(len(um.photos), rng.randint(1, 3)))
                opts = rng.choice(VIDEO_OPTS)
            title = "kc-%d-%s" % (self.point, secrets.token_hex(4))
            return Op(kind, um, ids=ids, opts=opts, title=title)
        if kind == "delete_video":
            pool = [vid for vid in um.videos if vid not in busy_videos]
            if not pool:
                return None
            vid = rng.choice(pool)
            busy_videos.add(vid)
            return Op(kind, um, id=vid)
        if kind == "signup":
            return Op(kind, None, email=rand_email("kcs"), password="pw-" + secrets.token_hex(8))
        if kind == "session":  # a login, then its logout
            login = Op("login", um)
            return [login, Op("logout", um, login=login)]
        if kind == "refresh":
            if um.relogin or um.name in busy_tokens:
                return None
            busy_tokens.add(um.name)
            return Op(kind, um)
        return None

    # ---- running an op (in a thread) ----
    def run_op(self, op):
        p = self.p
        op.t0 = time.monotonic()
        try:
            tok = op.user.u.access if op.user else None
            if op.kind in ("upload_raw", "upload_shared", "upload_again", "upload_dup", "upload_twin"):
                data, ctype = op.kw["parts"][0]
                op.resp = p.upload(tok, data, ctype, "kc.bin", timeout=20)
            elif op.kind == "upload_multipart":
                files = [("kc%d" % i, ct, d) for i, (d, ct) in enumerate(op.kw["parts"])]
                op.resp = p.upload_multipart(tok, files, timeout=20)
            elif op.kind == "delete_photo":
                op.resp = p.req("DELETE", "/api/v1/photos/" + op.kw["id"], token=tok)
            elif op.kind in ("create_video", "create_video_same"):
                body = dict(op.kw["opts"], photo_ids=op.kw["ids"], title=op.kw["title"])
                op.resp = p.req("POST", "/api/v1/videos", json=body, token=tok)
            elif op.kind == "delete_video":
                op.resp = p.req("DELETE", "/api/v1/videos/" + op.kw["id"], token=tok)
            elif op.kind == "signup":
                op.resp = p.req("POST", "/api/v1/auth/signup",
                                json={"email": op.kw["email"], "password": op.kw["password"]})
            elif op.kind == "refresh":
                op.resp = p.req("POST", "/api/v1/auth/refresh",
                                json={"refresh_token": op.user.u.refresh})
            elif op.kind == "login":
                op.resp = p.req("POST", "/api/v1/auth/login",
                                json={"email": op.user.u.email, "password": op.user.u.password})
            elif op.kind == "logout":
                j = op.kw["login"].resp.json()
                op.resp = p.req("POST", "/api/v1/auth/logout", token=j["access_token"],
                                json={"refresh_token": j["refresh_token"]})
        except Exception as e:  # noqa: BLE001 - a cut connection: not answered
            op.error = "%s: %s" % (type(e).__name__, e)
            op.sent = not isinstance(e, ConnectionRefusedError)
            op.resp = None
        op.t1 = time.monotonic()

    def run_thread(self, ops, start_at):
        delay = start_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for op in ops:
            if not self.p.running():
                break
            if op.kind == "logout" and not (op.kw["login"].answered and
                                            op.kw["login"].resp.status == 200):
                continue
            self.run_op(op)

    # ---- one point ----
    def run_point(self):
        rng = self.rng
        self.point += 1
        self.stats["points"] += 1
        plan = self.plan()
        kill_after = math.exp(rng.uniform(math.log(KILL_MIN), math.log(KILL_MAX)))
        quiet = rng.random() < QUIET_P
        t0 = time.monotonic()
        threads = []
        for ops in plan:
            start = t0 + rng.uniform(0, kill_after * 0.6)
            th = threading.Thread(target=self.run_thread, args=(ops, start), daemon=True)
            th.start()
            threads.append(th)
        if quiet:
            # Every request answers (none hangs), then the kill: with only
            # renders, or nothing, in flight.
            self.stats["quiet"] += 1
            for th in threads:
                th.join(max(0.1, t0 + ANSWER_TIMEOUT - time.monotonic()))
            slow = [op.kind for ops in plan for op in ops if op.in_flight]
            self.expect(not slow, "requests not answered within %.0f s: %s" % (ANSWER_TIMEOUT, slow))
        else:
            time.sleep(max(0.0, t0 + kill_after - time.monotonic()))
        rendering = self.jobs_running()
        inflight = sorted({op.kind for ops in plan for op in ops if op.in_flight})
        self.p.kill9()
        if rendering:
            inflight.append("render")
        for k in inflight or ["idle"]:
            self.count("phases", k)
        self.count("combos", "+".join(inflight) or "idle")
        for th in threads:
            th.join(30)
            if th.is_alive():
                self.find("a request thread did not end after the kill")
        # Sometimes the recovery itself is cut short.
        if rng.random() < RECOVERY_KILL_P:
            self.p.spawn()
            time.sleep(rng.uniform(0.0, 0.35))
            self.p.kill9()
            self.stats["recovery_kills"] += 1
        ops = sorted((op for ops in plan for op in ops if op.t0 is not None),
                     key=lambda o: o.t1 or 0)
        self.apply_answers(ops)
        try:
            self.p.start()
        except AssertionError as e:
            self.find("pvd does not start again after the kill: %s" % e)
            raise Finding(str(e))
        self.verify(first=True, drain=True,
                    full=self.point % FULL_VERIFY_EVERY == 0 or self.point == POINTS)
        return kill_after, inflight

    def jobs_running(self):
        """The videos rendering now (the private listener's /metrics)."""
        try:
            r = self.p.private("GET", "/metrics", timeout=1)
            for line in r.body.decode().splitlines():
                if line.startswith("pv_video_jobs_running "):
                    return int(float(line.split()[1]))
        except Exception:  # noqa: BLE001 - a metric missed is a phase not told
            pass
        return 0

    # ---- what the answers say ----
    def apply_answers(self, ops):
        self.pending = []
        for op in ops:
            if not op.sent:
                self.stats["not_sent"] += 1
                continue
            if op.answered:
                self.count("acked", op.kind)
                self.acked(op)
            else:
                self.count("unanswered", op.kind)
                self.pending.append(op)
                if op.kind == "refresh":
                    op.user.relogin = True

    def acked(self, op):
        um, r, k = op.user, op.resp, op.kind
        if k.startswith("upload"):
            if not self.expect(r.status in (200, 201), "%s answered %d: %s" % (k, r.status, r.body[:300])):
                return
            j = r.json()
            got = j["photos"] if k == "upload_multipart" else [dict(j["photo"], duplicate=j.get("duplicate", False))]
            for (data, ctype), ph in zip(op.kw["parts"], got):
                self.expect(ph["sha256"] == sha(data) and ph["bytes"] == len(data),
                            "%s: the answer's sha256/bytes are the upload's" % k)
                if ph.get("duplicate"):
                    self.expect(ph["id"] in um.photos or ph["id"] in um.deleted,
                                "%s: a duplicate of %s, which is not one of the user's photos" % (k, ph["id"]))
                    if k == "upload_dup":
                        self.expect(ph["id"] == op.kw["dup_of"], "upload_dup: the duplicate is the photo")
                else:
                    # a new photo for bytes the user has: only if a delete of this point took them
                    self.expect(k != "upload_dup" or op.kw["dup_of"] in self.point_deletes,
                                "upload_dup of a present photo answered a new photo")
                    um.photos[ph["id"]] = PhotoM(ph["id"], data, ctype, um)
                    um.deleted.pop(ph["id"], None)
        elif k == "delete_photo":
            pid = op.kw["id"]
            if r.status == 204:
                if pid in um.photos:
                    um.deleted[pid] = um.photos.pop(pid)
            elif r.status == 409:
                pass  # used by a queued or running video: kept
            else:
                self.find("delete_photo %s answered %d: %s" % (pid, r.status, r.body[:300]))
        elif k in ("create_video", "create_video_same"):
            if r.status == 202:
                v = r.json()["video"]
                self.expect(v["status"] == "queued" and v["title"] == op.kw["title"],
                            "create_video: 202 with a queued video")
                um.videos[v["id"]] = VideoM(v["id"], op.kw["title"], op.kw["ids"], op.kw["opts"])
            elif r.status == 404:
                # a photo deleted meanwhile, in this point
                self.expect(any(pid not in um.photos or pid in self.point_deletes
                                for pid in op.kw["ids"]),
                            "create_video answered 404 though its photos were there: %s" % r.body[:300])
            elif r.status != 429:
                self.find("create_video answered %d: %s" % (r.status, r.body[:300]))
        elif k == "delete_video":
            if self.expect(r.status == 204, "delete_video answered %d: %s" % (r.status, r.body[:300])):
                um.videos.pop(op.kw["id"], None)
                um.deleted_videos.add(op.kw["id"])
        elif k == "signup":
            if self.expect(r.status == 201, "signup answered %d: %s" % (r.status, r.body[:300])):
                self.signups.append((op.kw["email"], op.kw["password"], True))
        elif k == "refresh":
            if self.expect(r.status == 200, "refresh answered %d: %s" % (r.status, r.body[:300])):
                j = r.json()
                um.u.access, um.u.refresh = j["access_token"], j["refresh_token"]
                um.rotated = True
        elif k == "login":
            if self.expect(r.status == 200, "login answered %d: %s" % (r.status, r.body[:300])):
                j = r.json()
                self.sessions.append([j["refresh_token"], j["access_token"], "live", op])
        elif k == "logout":
            if self.expect(r.status == 204, "logout answered %d: %s" % (r.status, r.body[:300])):
                for sess in self.sessions:
                    if sess[3] is op.kw["login"]:
                        sess[2] = "ended"

    # ---- verification after a restart ----
    def verify(self, first, drain, full):
        c = self.admin("debug.check", {"content": True})
        self.expect(c["problems"] == 0, "debug check right after the start:\n" + c["text"])
        if c["counts"]["jobs"] == 0:
            self.expect(c["stray_files"] == 0 and c["tmp_files"] == 0,
                        "right after the start: %d stray blob files, %d temp files"
                        % (c["stray_files"], c["tmp_files"]))
        else:
            self.stats["renders_resumed"] += 1 if first else 0
        self.scan_log()
        for um in self.users:
            if um.relogin:
                um.u.login()
                um.relogin = False
            if um.rotated:  # the rotated-to token is the live one
                r = self.p.req("POST", "/api/v1/auth/refresh", json={"refresh_token": um.u.refresh})
                if self.expect(r.status == 200, "%s: the refresh token of an acknowledged rotation "
                               "answered %d after the restart" % (um.name, r.status)):
                    j = r.json()
                    um.u.access, um.u.refresh = j["access_token"], j["refresh_token"]
                um.rotated = False
        pending, self.pending = self.pending, []
        for um in self.users:
            self.verify_photos(um, pending, full)
            self.verify_videos(um, pending, ready_now=False)
        self.verify_signups(pending)
        self.verify_sessions(pending)
        if drain:
            self.drain()
            for um in self.users:
                self.verify_videos(um, [], ready_now=True, full=full)
        for um in self.users:
            self.verify_usage(um)
        if drain:
            self.verify_disk()
            c = self.admin("debug.check", {"content": True})
            self.expect(c["problems"] == 0, "debug check after the renders:\n" + c["text"])
            self.expect(c["stray_files"] == 0 and c["tmp_files"] == 0,
                        "after the renders: %d stray blob files, %d temp files"
                        % (c["stray_files"], c["tmp_files"]))
        if full:
            self.stats["full_verifies"] += 1
        self.scan_log()

    def list_all(self, um, what):
        items, cursor = [], None
        for _ in range(1000):
            q = "?limit=50" + ("&cursor=" + cursor if cursor else "")
            r = um.u.req("GET", "/api/v1/%s%s" % (what, q))
            r.expect(200, "list " + what)
            j = r.json()
            items.extend(j["items"])
            cursor = j.get("next_cursor")
            if cursor is None:
                return items
        raise AssertionError("the %s list never ended" % what)

    def verify_photos(self, um, pending, full):
        items = self.list_all(um, "photos")
        listed = {ph["id"]: ph for ph in items}
        self.expect(len(listed) == len(items), "%s: no photo listed twice" % um.name)
        pend_del = {op.kw["id"] for op in pending if op.user is um and op.kind == "delete_photo"}
        uploads = [op for op in pending if op.user is um and op.kind.startswith("upload")]
        # Acknowledged photos are there (unless an unanswered delete took them).
        for pid in list(um.photos):
            pm = um.photos[pid]
            if pid not in listed:
                if pid in pend_del:
                    um.deleted[pid] = um.photos.pop(pid)
                    self.outcome("delete_photo", True)
                    pend_del.discard(pid)
                    continue
                self.find("%s: acknowledged photo %s is gone after the restart" % (um.name, pid))
                um.photos.pop(pid)
                continue
            ph = listed[pid]
            self.expect(ph["sha256"] == pm.sha and ph["bytes"] == pm.bytes,
                        "%s: photo %s lists sha256/bytes %s/%s, uploaded %s/%s"
                        % (um.name, pid, ph["sha256"][:12], ph["bytes"], pm.sha[:12], pm.bytes))
        # Photos listed that we were not told of: an unanswered upload's.
        adopted = {}
        for pid, ph in listed.items():
            if pid in um.photos:
                continue
            if pid in um.deleted:
                self.find("%s: photo %s, deleted with a 204, is back" % (um.name, pid))
                continue
            src = None
            for op in uploads:
                for i, (data, ctype) in enumerate(op.kw["parts"]):
                    if sha(data) == ph["sha256"]:
                        src = (op, i, data, ctype)
            if not src:
                self.find("%s: photo %s (sha256 %s) was never uploaded" % (um.name, pid, ph["sha256"][:12]))
                continue
            op, i, data, ctype = src
            adopted.setdefault(id(op), (op, set()))[1].add(i)
            self.expect(ph["bytes"] == len(data), "%s: an unanswered upload's photo has its size" % um.name)
            um.photos[pid] = PhotoM(pid, data, ctype, um)
        for op in uploads:
            got = adopted.get(id(op), (op, set()))[1]
            # A multipart upload is all or nothing (its parts are all new).
            if op.kind == "upload_multipart" and got and len(got) != len(op.kw["parts"]):
                self.find("%s: a multipart upload is half there: %d of its %d parts"
                          % (um.name, len(got), len(op.kw["parts"])))
            self.outcome(op.kind, bool(got))
        for pid in pend_del:
            self.outcome("delete_photo", False)
        # Deleted photos stay deleted; present ones serve their bytes.
        for pid in list(um.deleted)[-8:]:
            r = um.u.req("GET", "/api/v1/photos/" + pid)
            self.expect(r.status == 404, "%s: deleted photo %s answers %d" % (um.name, pid, r.status))
        for pm in list(um.photos.values()):
            if pm.thumb_sha is None or full:
                self.verify_photo_bytes(um, pm)

    def verify_photo_bytes(self, um, pm):
        r = um.u.req("GET", "/api/v1/photos/%s/content" % pm.id, timeout=20)
        if self.expect(r.status == 200, "%s: content of photo %s answers %d" % (um.name, pm.id, r.status)):
            self.expect(sha(r.body) == pm.sha, "%s: content of photo %s is not what was uploaded"
                        % (um.name, pm.id))
        r = um.u.req("GET", "/api/v1/photos/%s/thumbnail" % pm.id)
        if self.expect(r.status == 200 and r.body[:2] == b"\xff\xd8",
                       "%s: thumbnail of photo %s answers %d" % (um.name, pm.id, r.status)):
            t = sha(r.body)
            self.expect(pm.thumb_sha in (None, t), "%s: thumbnail of photo %s changed" % (um.name, pm.id))
            pm.thumb_sha = t

    def verify_videos(self, um, pending, ready_now, full=False):
        listed = {v["id"]: v for v in self.list_all(um, "videos")}
        pend_del = {op.kw["id"] for op in pending if op.user is um and op.kind == "delete_video"}
        creates = {op.kw["title"]: op for op in pending if op.user is um and op.kind.startswith("create_video")}
        for vid in list(um.videos):
            if vid not in listed:
                if vid in pend_del:
                    um.videos.pop(vid)
                    um.deleted_videos.add(vid)
                    self.outcome("delete_video", True)
                    pend_del.discard(vid)
                    continue
                self.find("%s: acknowledged video %s is gone" % (um.name, vid))
                um.videos.pop(vid)
        for vid, v in listed.items():
            if vid not in um.videos:
                if vid in um.deleted_videos:
                    self.find("%s: video %s, deleted with a 204, is back" % (um.name, vid))
                    continue
                op = creates.pop(v["title"], None)
                if not op:
                    self.find("%s: video %s (%r) was never asked for" % (um.name, vid, v["title"]))
                    continue
                self.expect(v["photo_ids"] == op.kw["ids"], "%s: an unanswered video's photos" % um.name)
                um.videos[vid] = VideoM(vid, op.kw["title"], op.kw["ids"], op.kw["opts"])
                self.outcome(op.kind, True)
            vm = um.videos[vid]
            self.expect(v["photo_ids"] == vm.photo_ids, "%s: video %s lists other photos" % (um.name, vid))
            st = v["status"]
            if st == "failed" or st == "cancelled":
                self.find("%s: video %s is %s: %s" % (um.name, vid, st, v.get("error")))
                continue
            if ready_now:
                if not self.expect(st == "ready", "%s: video %s is %s after the queue drained"
                                   % (um.name, vid, st)):
                    continue
            if st == "ready" and (vm.sha is None or full):
                self.verify_video_bytes(um, vm, v)
            elif st == "ready":
                self.expect(v["bytes"] == vm.bytes, "%s: video %s changed size" % (um.name, vid))
        for op in creates.values():
            self.outcome(op.kind, False)
        for vid in pend_del:
            self.outcome("delete_video", False)

    def verify_video_bytes(self, um, vm, v):
        urls = v.get("urls") or {}
        r = self.p.req("GET", urls.get("content", "/none"), timeout=30)
        if self.expect(r.status == 200 and len(r.body) == v["bytes"],
                       "%s: video %s content answers %d with %d bytes of %s"
                       % (um.name, vm.id, r.status, len(r.body), v["bytes"])):
            h = sha(r.body)
            self.expect(vm.sha in (None, h), "%s: video %s content changed" % (um.name, vm.id))
            vm.sha, vm.bytes = h, v["bytes"]
            self.expect(r.body[4:8] == b"ftyp", "%s: video %s is an MP4" % (um.name, vm.id))
        r = self.p.req("GET", urls.get("poster", "/none"))
        if self.expect(r.status == 200 and r.body[:2] == b"\xff\xd8",
                       "%s: video %s poster answers %d" % (um.name, vm.id, r.status)):
            vm.poster_sha = sha(r.body)

    def verify_signups(self, pending):
        for op in pending:
            if op.kind == "signup":
                r = self.p.login(op.kw["email"], op.kw["password"], expect=None)
                self.expect(r.status in (200, 401), "an unanswered signup's login answers %d" % r.status)
                self.outcome("signup", r.status == 200)
        for i, (email, password, new) in enumerate(self.signups):
            if new:
                r = self.p.login(email, password, expect=None)
                self.expect(r.status == 200, "acknowledged signup %s cannot log in (%d)" % (email, r.status))
                self.signups[i] = (email, password, False)

    def verify_sessions(self, pending):
        """An acknowledged login's refresh token works after the restart
        (unless its logout may have run); an acknowledged logout's refresh
        and access tokens do not."""
        unsure = {id(op.kw["login"]) for op in pending if op.kind == "logout"}
        for refresh, access, state, login in self.sessions:
            if state == "live" and id(login) in unsure:
                continue
            r = self.p.req("POST", "/api/v1/auth/refresh", json={"refresh_token": refresh})
            if state == "live":
                self.expect(r.status == 200, "an acknowledged login's refresh token answers %d "
                            "after the restart" % r.status)
            else:
                self.expect(r.status == 401, "a refresh token logged out with a 204 answers %d "
                            "after the restart" % r.status)
                r = self.p.req("GET", "/api/v1/me", token=access)
                self.expect(r.status == 401, "an access token logged out with a 204 answers %d "
                            "after the restart" % r.status)
        self.sessions = []

    def verify_usage(self, um):
        r = um.u.req("GET", "/api/v1/me")
        r.expect(200, "/me")
        use = r.json()["usage"]
        want = {"photos": len(um.photos), "photo_bytes": sum(p.bytes for p in um.photos.values()),
                "videos": len(um.videos)}
        got = {k: use.get(k) for k in want}
        self.expect(got == want, "%s: /me usage %s, the acknowledged state adds up to %s"
                    % (um.name, got, want))
        known = [v.bytes for v in um.videos.values() if v.bytes is not None]
        if len(known) == len(um.videos):
            self.expect(use.get("video_bytes") == sum(known), "%s: /me video_bytes %s, videos add up to %s"
                        % (um.name, use.get("video_bytes"), sum(known)))

    def drain(self):
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            c = self.admin("debug.check")
            if c["counts"]["jobs"] == 0:
                return
            if time.monotonic() > deadline:
                self.find("%d video jobs still queued or running %.0f s after the start"
                          % (c["counts"]["jobs"], DRAIN_TIMEOUT))
                return
            time.sleep(0.1)

    def verify_disk(self):
        """The blob files are exactly what the records listed name."""
        want = {}
        for um in self.users:
            for pm in um.photos.values():
                want.setdefault(pm.sha, "photo %s" % pm.id)
                if pm.thumb_sha:
                    want.setdefault(pm.thumb_sha, "thumbnail of %s" % pm.id)
            for vm in um.videos.values():
                if vm.sha:
                    want.setdefault(vm.sha, "video %s" % vm.id)
                    want.setdefault(vm.poster_sha, "poster of %s" % vm.id)
        root = os.path.join(self.p.data_dir, "blobs")
        have = set()
        for shard in sorted(os.listdir(root)):
            d = os.path.join(root, shard)
            for name in os.listdir(d) if os.path.isdir(d) else [shard]:
                have.add(name)
        missing = sorted(set(want) - have)
        extra = sorted(have - set(want))
        self.expect(not missing, "blobs the records name, missing on disk: %s"
                    % ", ".join("%s (%s)" % (h[:12], want[h]) for h in missing[:5]))
        self.expect(not extra, "blob files no record listed names (orphans): %d, e.g. %s"
                    % (len(extra), ", ".join(h[:16] for h in extra[:5])))

    def scan_log(self):
        """New log lines since the last look: sanitizer reports, 5xx,
        errors, lines that are not JSON, and map growth (counted)."""
        import json
        try:
            with open(self.p.log_path, "rb") as f:
                f.seek(self.log_off)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1
        self.log_off += end
        for line in chunk[:end].decode("utf-8", "replace").splitlines():
            if not line.strip() or line.startswith("---- start"):
                continue
            if any(m in line for m in harness.SANITIZER_MARKS):
                self.find("sanitizer report in pvd's log: " + line[:300])
                continue
            try:
                j = json.loads(line)
            except ValueError:
                j = None
            if not isinstance(j, dict):
                self.find("a log line that is not JSON: " + line[:300])
                continue
            st = j.get("status")
            if isinstance(st, int) and st >= 500 and st not in (503, 507):
                self.find("pvd answered %d: %s" % (st, line[:300]))
            msg = str(j.get("msg", ""))
            if j.get("level") == "error":
                self.find("pvd logged an error: " + line[:300])
            elif j.get("level") == "warn":
                if "unref of a blob with no references" in msg:
                    self.find("a reference count was already zero: " + line[:300])
                key = "%s: %s" % (j.get("actor"), msg[:80])
                self.warnings[key] = self.warnings.get(key, 0) + 1
            if msg.startswith("map grown to"):
                self.stats["map_grows"] += 1
            for what, stat in (("unreferenced blobs", "swept_blobs"), ("stale temp files", "swept_tmp")):
                if msg.startswith("removed ") and msg.endswith(what):
                    self.stats[stat] += int(msg.split()[1])

    # ---- the end ----
    def shared(self):
        """Blobs that more than one record names, by kind (what makes the
        reference counts worth checking)."""
        names = {}
        for um in self.users:
            for pm in um.photos.values():
                names.setdefault(pm.sha, []).append("original")
                if pm.thumb_sha:
                    names.setdefault(pm.thumb_sha, []).append("thumbnail")
            for vm in um.videos.values():
                if vm.sha:
                    names.setdefault(vm.sha, []).append("video")
                    names.setdefault(vm.poster_sha, []).append("poster")
        kinds = {}
        for h, n in names.items():
            if len(n) > 1:
                kinds[n[0]] = kinds.get(n[0], 0) + 1
        return ", ".join("%d %s" % (v, k) for k, v in sorted(kinds.items())) or "none"

    def summary(self):
        s = self.stats
        secs = time.monotonic() - self.t0
        acked = sum(s["acked"].values())
        lines = [
            "kill campaign: seed %d, %d points (%d with every request answered first, "
            "%d recovery kills too), %.0f s" % (SEED, s["points"], s["quiet"], s["recovery_kills"], secs),
            "kills with in flight: " + ", ".join("%s %d" % kv for kv in sorted(s["phases"].items(),
                                                                               key=lambda kv: -kv[1])),
            "acknowledged writes checked after their restart: %d (%s)" % (
                acked, ", ".join("%s %d" % kv for kv in sorted(s["acked"].items()))),
            "unanswered writes (sent, cut by the kill): %d (%s); refused (pvd already gone): %d" % (
                sum(s["unanswered"].values()),
                ", ".join("%s %d" % kv for kv in sorted(s["unanswered"].items())), s["not_sent"]),
            "unanswered writes done / not done after the restart: " + ", ".join(
                "%s %d/%d" % (k, v[0], v[1]) for k, v in sorted(s["outcome"].items())),
            "checks: %d; restarts with renders to resume: %d; full re-reads: %d; map grew: %d" % (
                s["checks"], s["renders_resumed"], s["full_verifies"], s["map_grows"]),
            "collected at the starts: %d unreferenced blob files, %d temp files" % (
                s["swept_blobs"], s["swept_tmp"]),
            "state at the end: %d photos, %d videos, %d users; blobs named more than once: %s" % (
                sum(len(u.photos) for u in self.users), sum(len(u.videos) for u in self.users),
                USERS + len(self.signups), self.shared()),
            "findings: %d" % len(self.findings),
        ]
        lines += ["warning %dx %s" % (n, w) for w, n in sorted(self.warnings.items())]
        for l in lines:
            print("# " + l, flush=True)


def test_first_start_killed():
    """pvd killed while it makes its data directory, keys and certificate
    for the first time comes up on the next start, and serves."""
    rng = random.Random(SEED ^ 0x5eed)
    p = Pvd(dict(CONFIG), name="kill-first-start")
    try:
        for _ in range(6):
            p.spawn()
            time.sleep(rng.uniform(0.0, 0.5))
            p.kill9()
        p.start()
        u = p.new_user("first")
        data = unique_jpeg()
        u.upload_ok(data, "image/jpeg")
        p.kill9()
        p.start()
        u.login()
        check(len(u.list_all()) == 1, "the photo after the last kill", 1, len(u.list_all()))
        c = admin_call(os.path.join(p.tmp, "admin.sock"), "debug.check", {"content": True})
        check(c["problems"] == 0 and c["stray_files"] == 0 and c["tmp_files"] == 0,
              "the store after kills at the first start", "clean", c)
        p.stop_clean()
    finally:
        p.cleanup()


def keep_log(p):
    """pvd's whole log (every start) where it outlives the run, for a
    failed campaign's post-mortem; returns its path."""
    d = os.path.join(harness.ROOT, "build", "test-logs")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "killcampaign-%d.log" % SEED)
    with open(path, "wb") as f:
        f.write(p.log_text().encode())
    return path


def test_campaign():
    print("# kill campaign: seed %d (PV_KILL_SEED=%d replays it), %d points" % (SEED, SEED, POINTS),
          flush=True)
    rng = random.Random(SEED)
    p = Pvd(dict(CONFIG), name="killcampaign").start()
    camp = Campaign(p, rng)
    ok = False
    try:
        camp.setup()
        for _ in range(POINTS):
            camp.run_point()
        camp.verify(first=False, drain=True, full=True)
        for email, password, _ in camp.signups:
            r = p.login(email, password, expect=None)
            camp.expect(r.status == 200, "acknowledged signup %s cannot log in at the end" % email)
        camp.summary()
        check(not camp.findings, "kill campaign (seed %d)" % SEED, "no findings",
              "%d:\n  %s" % (len(camp.findings), "\n  ".join(camp.findings[:30])))
        rc = p.stop()
        bad = p.sanitizer_lines()
        check(not bad, "no sanitizer report at the last (clean) stop", "none", "\n".join(bad[:10]))
        check(rc == 0, "exit status after the last SIGTERM", 0, rc)
        ok = True
    except Finding:
        camp.summary()
        raise AssertionError("kill campaign (seed %d) stopped at a finding:\n  %s"
                             % (SEED, "\n  ".join(camp.findings[:30])))
    finally:
        if not ok:
            print("# pvd's log: %s" % keep_log(p), flush=True)
        p.cleanup()
