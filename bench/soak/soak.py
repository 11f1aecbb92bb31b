#!/usr/bin/env python3
"""soak.py — the traffic and the sampler of bench/soak (run.sh starts it).

Drives a running pvd with mixed traffic from a bounded set of client
threads for --seconds, samples pvd's memory and descriptors every
--sample seconds into a CSV, and ends with a report: whether RSS and fds
stayed flat after the warm-up, and every answer counted by kind, by
operation and by status, with the errors listed.

The traffic (each kind its own threads; every loop bounded in time):
  browse  /me, lists with paging, photo and video records (GET and HEAD),
          thumbnails and contents with Range and If-None-Match, presigned
          /media/ URLs, the web UI and its assets, /healthz and /readyz;
  upload  distinct JPEG/PNG/WebP photos (raw and multipart, a few 20 MB
          ones), a re-upload now and then (200 duplicate), deletes that
          keep each user's photos bounded;
  render  videos of 2-4 photos at 480p, followed by polling or by the SSE
          stream, downloaded (whole, Range, HEAD, poster), some cancelled,
          old ones deleted;
  auth    login / me / refresh / me / logout / refresh-after-logout cycles
          (body and cookie sessions), wrong passwords, sign-ups, and bursts
          past the login and sign-up limits (429 expected);
  slow    a head sent a byte every 0.5 s (408 at header_timeout), a body
          trickled (408 at body_timeout), an honest slow upload (201), a
          slow reader, an idle keep-alive connection (closed by pvd);
  abort   connections closed (FIN or RST) before TLS, mid-ClientHello,
          after the handshake, mid-head, mid-upload, mid-download, mid-SSE,
          before reading the answer; plain HTTP to the TLS port (400
          https_required); a JSON body over the limit (413);
  admin   `pvctl status`, `pvctl job list`, private /healthz and /metrics.

Flat means: between the 5 minutes after the warm-up and the last 5
minutes, the floor of pvd's RSS (the 10th percentile of its samples) and
the median of its descriptors grow by at most 5 % (see report()).

Outcomes: an answer that the operation expects is "ok"; 429, 408, 413 and
503 with Retry-After are pvd's deliberate limits ("limit"); anything else
(another status, a reset or a timeout on a valid request, a render that
failed, content that does not match its sha256) is an "error", listed with
examples.

Python 3 standard library only; everything on 127.0.0.1.
"""

import argparse
import collections
import hashlib
import http.client
import json
import os
import random
import re
import secrets
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib

# ---------------------------------------------------------------- settings

ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True)            # https://127.0.0.1:PORT
ap.add_argument("--private", required=True)        # http://127.0.0.1:PORT
ap.add_argument("--pid", type=int, required=True)
ap.add_argument("--pvctl", required=True)
ap.add_argument("--socket", required=True)
ap.add_argument("--images", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--users", required=True)          # file: "email password" lines
ap.add_argument("--password", required=True)       # for sign-ups
ap.add_argument("--seconds", type=float, default=1800)
ap.add_argument("--warmup", type=float, default=300)
ap.add_argument("--sample", type=float, default=2)
ap.add_argument("--browse", type=int, default=4)
ap.add_argument("--upload", type=int, default=2)
ap.add_argument("--render", type=int, default=2)
ap.add_argument("--slow", type=int, default=2)
ap.add_argument("--abort", type=int, default=1)
ap.add_argument("--think", type=float, default=0.05)   # mean pause between browse requests
ap.add_argument("--keep-photos", type=int, default=40)  # per user
ap.add_argument("--keep-videos", type=int, default=3)   # per user
ap.add_argument("--signup-every", type=float, default=20)
ap.add_argument("--login-every", type=float, default=4)
ap.add_argument("--token-refresh", type=float, default=600)  # access tokens live 900 s
ARGS = ap.parse_args()

m = re.match(r"https://([^:/]+):(\d+)", ARGS.url)
HOST, PORT = m.group(1), int(m.group(2))
m = re.match(r"http://([^:/]+):(\d+)", ARGS.private)
PHOST, PPORT = m.group(1), int(m.group(2))

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

T0 = time.monotonic()
END = T0 + ARGS.seconds
STOP = threading.Event()
PVD_GONE = threading.Event()
LIMIT_STATUSES = (408, 413, 429)


def now():
    return time.monotonic() - T0


def running():
    return not STOP.is_set() and time.monotonic() < END


def pause(s):
    """Sleeps s seconds, or less when the soak ends meanwhile."""
    if s > 0:
        STOP.wait(min(s, max(0.0, END - time.monotonic())))


# ---------------------------------------------------------------- accounting

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.kind = collections.Counter()
        self.op = collections.Counter()           # (kind, op)
        self.status = collections.Counter()       # label
        self.op_status = collections.Counter()    # (kind, op, label)
        self.outcome = collections.Counter()      # ok / limit / error
        self.kind_outcome = collections.Counter()  # (kind, outcome)
        self.examples = collections.defaultdict(list)  # (kind, op, label) -> [(t, detail)]
        self.minute = collections.Counter()       # (minute, outcome)
        self.ms = collections.defaultdict(list)   # (kind, op) -> latencies, capped
        self.notes = collections.Counter()        # things worth a count (retries, races)

    def record(self, kind, op, label, outcome, detail="", ms=None):
        with self.lock:
            self.kind[kind] += 1
            self.op[(kind, op)] += 1
            self.status[str(label)] += 1
            self.op_status[(kind, op, str(label))] += 1
            self.outcome[outcome] += 1
            self.kind_outcome[(kind, outcome)] += 1
            self.minute[(int(now() // 60), outcome)] += 1
            if outcome == "error":
                ex = self.examples[(kind, op, str(label))]
                if len(ex) < 3:
                    ex.append((round(now(), 1), str(detail)[:300]))
            if ms is not None:
                lat = self.ms[(kind, op)]
                if len(lat) < 20000:
                    lat.append(ms)

    def note(self, what, n=1):
        with self.lock:
            self.notes[what] += n


STATS = Stats()


def classify(status, headers, expect):
    if status in expect:
        return "ok"
    if status in LIMIT_STATUSES:
        return "limit"
    if status == 503 and headers is not None and headers.get("Retry-After"):
        return "limit"
    return "error"


# ---------------------------------------------------------------- HTTP client

class Resp:
    def __init__(self, status, headers, body, nbytes, sha=None):
        self.status = status
        self.headers = headers
        self.body = body
        self.nbytes = nbytes
        self.sha = sha

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except Exception:  # noqa: BLE001 - any parse failure is the caller's "no JSON"
            return None


STALE_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                ssl.SSLEOFError, http.client.BadStatusLine, ConnectionAbortedError)


class Client:
    """One keep-alive HTTPS connection to pvd, reopened when pvd closes it.

    A request that fails on a reused connection before any answer came (pvd
    closed it while idle: a race every keep-alive client knows) is sent
    once more on a fresh one, and counted; a failure on a fresh connection
    is an error."""

    def __init__(self, kind, timeout=60):
        self.kind = kind
        self.timeout = timeout
        self.conn = None
        self.used = 0

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None

    def request(self, op, method, path, body=None, headers=None, token=None, expect=(200,),
                timeout=None, keep=True, hash_body=False, kind=None, ok_if=None):
        """Sends one request; records its outcome; returns a Resp or None.

        keep: keep the body (else it is read in pieces and counted);
        hash_body: compute its sha256; ok_if(resp) -> True turns an answer
        outside expect into "ok" (a race the caller can explain)."""
        kind = kind or self.kind
        h = {"Host": "localhost"}
        if token:
            h["Authorization"] = "Bearer " + token
        if headers:
            h.update(headers)
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPSConnection(HOST, PORT, context=CTX,
                                                        timeout=timeout or self.timeout)
                self.used = 0
            elif timeout:
                self.conn.timeout = timeout
                if self.conn.sock:
                    self.conn.sock.settimeout(timeout)
            t = time.monotonic()
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                sha = hashlib.sha256() if hash_body else None
                n = 0
                parts = []
                while True:
                    chunk = r.read(65536)
                    if not chunk:
                        break
                    n += len(chunk)
                    if sha:
                        sha.update(chunk)
                    if keep:
                        parts.append(chunk)
                ms = (time.monotonic() - t) * 1000
                resp = Resp(r.status, r.headers, b"".join(parts), n, sha.hexdigest() if sha else None)
                self.used += 1
                if r.will_close:
                    self.close()
                elif timeout and self.conn is not None:
                    self.conn.timeout = self.timeout
                    if self.conn.sock:
                        self.conn.sock.settimeout(self.timeout)
            except STALE_ERRORS as e:
                self.close()
                if not fresh and attempt == 0:
                    STATS.note("keep-alive connection closed by pvd before a request; sent again")
                    continue
                STATS.record(kind, op, "EXC:" + type(e).__name__, "error",
                             "%s %s: %s" % (method, path[:80], e))
                return None
            except (socket.timeout, OSError, http.client.HTTPException) as e:
                self.close()
                STATS.record(kind, op, "EXC:" + type(e).__name__, "error",
                             "%s %s: %s after %.1f s" % (method, path[:80], e, time.monotonic() - t))
                return None
            outcome = classify(resp.status, resp.headers, expect)
            if outcome == "error" and ok_if is not None and ok_if(resp):
                outcome = "ok"
                STATS.note("%s %s: %d explained by a race" % (kind, op, resp.status))
            STATS.record(kind, op, resp.status, outcome,
                         "%s %s -> %d %s" % (method, path[:100], resp.status, resp.body[:200]), ms)
            return resp
        return None


def private_get(op, path, expect=(200,), kind="admin"):
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(PHOST, PPORT, timeout=20)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
    except (OSError, http.client.HTTPException) as e:
        STATS.record(kind, op, "EXC:" + type(e).__name__, "error", "%s: %s" % (path, e))
        return None
    STATS.record(kind, op, r.status, classify(r.status, r.headers, expect),
                 "%s -> %d %s" % (path, r.status, body[:200]), (time.monotonic() - t) * 1000)
    return body


# ---------------------------------------------------------------- raw TLS helpers (slow, abort)

def tcp_connect(timeout=10):
    return socket.create_connection((HOST, PORT), timeout=timeout)


def tls_connect(timeout=10):
    raw = tcp_connect(timeout)
    try:
        return CTX.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def rst_close(s):
    """Closes with a RST (SO_LINGER 0) rather than a FIN."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def client_hello():
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = CTX.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def recv_some(s, timeout):
    """What the socket has within timeout seconds: bytes, b"" at a close,
    or None when nothing came. (Not select(): on TLS the server's session
    tickets make a socket readable with no answer in it.)"""
    s.settimeout(timeout)
    try:
        return s.recv(65536)
    except socket.timeout:
        return None
    except (OSError, ssl.SSLError):
        return b""


def read_answer(s, deadline, buf=b""):
    """Reads one HTTP answer (head and a Content-Length body) from a socket,
    after buf (bytes of it already read). Returns (status, body), or (None,
    why) when the connection closed first or the deadline passed."""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, "no answer by the deadline"
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return None, "no answer by the deadline"
        except (OSError, ssl.SSLError) as e:
            return None, "closed (%s)" % type(e).__name__
        if not d:
            return None, "closed" + (" after %r" % buf[:60] if buf else "")
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, "bad status line %r" % lines[0][:80]
    clen = 0
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v.strip())
    while len(body) < clen and time.monotonic() < deadline:
        try:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            d = s.recv(65536)
        except (OSError, ssl.SSLError):
            break
        if not d:
            break
        body += d
    return status, body


# ---------------------------------------------------------------- images

class Images:
    """The pool made by run.sh; every upload gets distinct bytes (a JPEG
    comment or a PNG tEXt chunk with a nonce), WebP files are taken as
    they are (so they may be duplicates: predicted, see User)."""

    def __init__(self, d):
        self.by_kind = collections.defaultdict(list)
        for sub in ("small", "medium", "png", "webp", "big"):
            p = os.path.join(d, sub)
            if not os.path.isdir(p):
                continue
            for f in sorted(os.listdir(p)):
                if f.endswith((".jpg", ".png", ".webp")):
                    with open(os.path.join(p, f), "rb") as fh:
                        self.by_kind[sub].append((f, fh.read()))
        if not self.by_kind["small"]:
            sys.exit("soak: no images in %s" % d)

    def pick(self, big_ok=True):
        r = random.random()
        if big_ok and self.by_kind["big"] and r < 0.02:
            sub = "big"
        elif self.by_kind["medium"] and r < 0.20:
            sub = "medium"
        elif self.by_kind["png"] and r < 0.30:
            sub = "png"
        elif self.by_kind["webp"] and r < 0.36:
            sub = "webp"
        else:
            sub = "small"
        name, data = random.choice(self.by_kind[sub])
        return sub, name, unique(data)


def unique(data):
    nonce = ("soak %s %s" % (secrets.token_hex(8), time.time())).encode()
    if data[:2] == b"\xff\xd8":
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(nonce) + 2) + nonce + data[2:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        payload = b"Comment\x00" + nonce
        chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload + \
            struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xffffffff)
        return data[:33] + chunk + data[33:]
    return data


def ctype(data):
    if data[:2] == b"\xff\xd8":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    return "image/webp"


IMAGES = Images(ARGS.images)

# ---------------------------------------------------------------- users

class User:
    """A user the traffic acts as, with what the client knows of its
    photos and videos. Photo mutations of one user (uploads, deletes) are
    serialized by `mutate`, so that whether an upload is a duplicate is
    known in advance; `lock` guards the fields."""

    def __init__(self, email, password):
        self.email = email
        self.password = password
        self.lock = threading.Lock()
        self.mutate = threading.Lock()
        self.session_lock = threading.Lock()
        self.access = None
        self.refresh = None
        self.token_at = 0.0
        self.photos = collections.OrderedDict()   # id -> {"sha256", "bytes", "big"}
        self.live_sha = {}                          # sha256 -> id
        self.gone = set()                           # ids deleted (or being deleted)
        self.pinned = collections.Counter()         # photo id -> videos in flight using it
        self.videos = collections.OrderedDict()     # id -> {"status", "bytes"} (final ones)
        self.videos_gone = set()

    def login(self, client, kind="auth", op="login_session"):
        r = client.request(op, "POST", "/api/v1/auth/login", kind=kind,
                           body=json.dumps({"email": self.email, "password": self.password}),
                           headers={"Content-Type": "application/json"})
        if r and r.status == 200:
            j = r.json()
            self.access, self.refresh, self.token_at = j["access_token"], j["refresh_token"], time.monotonic()
            return True
        return False

    def token(self, client):
        """The access token, refreshed (or logged in again) when old."""
        with self.session_lock:
            if self.access and time.monotonic() - self.token_at < ARGS.token_refresh:
                return self.access
            if self.refresh:
                r = client.request("refresh_session", "POST", "/api/v1/auth/refresh", kind="auth",
                                   body=json.dumps({"refresh_token": self.refresh}),
                                   headers={"Content-Type": "application/json"})
                if r and r.status == 200:
                    j = r.json()
                    self.access, self.refresh, self.token_at = j["access_token"], j["refresh_token"], time.monotonic()
                    return self.access
            for _ in range(30):
                if self.login(client) or not running():
                    break
                pause(2)
            return self.access

    def live_photo_ids(self, n, exclude_big=False):
        with self.lock:
            ids = [i for i, p in self.photos.items() if not (exclude_big and p["big"])]
        return random.sample(ids, min(n, len(ids)))

    def photo_alive(self, pid):
        with self.lock:
            return pid in self.photos and pid not in self.gone

    def video_alive(self, vid):
        with self.lock:
            return vid not in self.videos_gone

    def add_photo(self, p, big=False):
        with self.lock:
            self.photos[p["id"]] = {"sha256": p["sha256"], "bytes": p["bytes"], "big": big}
            self.gone.discard(p["id"])
            self.live_sha[p["sha256"]] = p["id"]


USERS = []
with open(ARGS.users) as f:
    for line in f:
        if line.strip():
            e, pw = line.split()
            USERS.append(User(e, pw))
LOGIN_USERS = list(USERS)          # the auth thread's rotation; sign-ups join it
LOGIN_USERS_LOCK = threading.Lock()


def gone_race(user, pid):
    """ok_if for a 404 on a photo: fine when the photo was deleted meanwhile."""
    return lambda r: r.status == 404 and not user.photo_alive(pid)


def vgone_race(user, vid):
    return lambda r: r.status == 404 and not user.video_alive(vid)


# ---------------------------------------------------------------- browse

WEB_ASSETS = []


def browse_worker(idx):
    c = Client("browse")
    rnd = random.Random(idx)

    def think():
        pause(rnd.uniform(0, 2 * ARGS.think))

    while running():
        u = rnd.choice(USERS)
        tok = u.token(c)
        if not tok:
            pause(1)
            continue
        r = c.request("me", "GET", "/api/v1/me", token=tok)
        think()
        # photo list, paged
        cursor, pages, items = None, 0, []
        limit = rnd.choice((5, 10, 20, 50, 100))
        while pages < 3 and running():
            q = "/api/v1/photos?limit=%d" % limit + ("&cursor=" + cursor if cursor else "")
            r = c.request("photo_list", "GET", q, token=tok)
            think()
            j = r.json() if r and r.status == 200 else None
            if not j:
                break
            items += j["items"]
            cursor = j.get("next_cursor")
            pages += 1
            if not cursor:
                break
        if rnd.random() < 0.2:
            c.request("photo_list_head", "HEAD", "/api/v1/photos?limit=10", token=tok)
        for p in rnd.sample(items, min(3, len(items))):
            if not running():
                break
            pid = p["id"]
            c.request("photo_get", "GET", "/api/v1/photos/" + pid, token=tok, ok_if=gone_race(u, pid))
            think()
            r = c.request("thumbnail", "GET", "/api/v1/photos/%s/thumbnail" % pid, token=tok,
                          ok_if=gone_race(u, pid))
            think()
            if r and r.status == 200 and r.headers.get("ETag"):
                c.request("thumbnail_304", "GET", "/api/v1/photos/%s/thumbnail" % pid, token=tok,
                          headers={"If-None-Match": r.headers["ETag"]}, expect=(304,),
                          ok_if=gone_race(u, pid))
                think()
            c.request("content_range", "GET", "/api/v1/photos/%s/content" % pid, token=tok,
                      headers={"Range": "bytes=0-4095"}, expect=(206,), ok_if=gone_race(u, pid))
            think()
            c.request("content_head", "HEAD", "/api/v1/photos/%s/content" % pid, token=tok,
                      ok_if=gone_race(u, pid))
            if p["bytes"] < 4 << 20 or rnd.random() < 0.1:
                r = c.request("content", "GET", "/api/v1/photos/%s/content" % pid, token=tok,
                              keep=False, hash_body=True, ok_if=gone_race(u, pid), timeout=120)
                if r and r.status == 200 and r.sha != p["sha256"]:
                    STATS.record("browse", "content_sha256", "MISMATCH", "error",
                                 "photo %s: sha256 %s, record says %s" % (pid, r.sha, p["sha256"]))
            think()
            # presigned: no token
            urls = p.get("urls") or {}
            if urls.get("thumbnail"):
                c.request("media_thumbnail", "GET", urls["thumbnail"], ok_if=gone_race(u, pid))
            if urls.get("content"):
                c.request("media_content_range", "GET", urls["content"],
                          headers={"Range": "bytes=100-2099"}, expect=(206,), ok_if=gone_race(u, pid))
                if rnd.random() < 0.3:
                    c.request("media_content_head", "HEAD", urls["content"], ok_if=gone_race(u, pid))
            think()
        # videos
        r = c.request("video_list", "GET", "/api/v1/videos?limit=%d" % rnd.choice((5, 20, 50)), token=tok)
        think()
        j = r.json() if r and r.status == 200 else None
        for v in rnd.sample(j["items"], min(2, len(j["items"]))) if j else []:
            vid = v["id"]
            c.request("video_get", "GET", "/api/v1/videos/" + vid, token=tok, ok_if=vgone_race(u, vid))
            if v["status"] == "ready" and v.get("urls"):
                c.request("media_video_range", "GET", v["urls"]["content"],
                          headers={"Range": "bytes=0-65535"}, expect=(206,), ok_if=vgone_race(u, vid))
                c.request("media_poster", "GET", v["urls"]["poster"], keep=False, ok_if=vgone_race(u, vid))
            think()
        # the rest of a visit
        if rnd.random() < 0.3:
            c.request("healthz", "GET", "/healthz")
            c.request("readyz", "GET", "/readyz")
        if rnd.random() < 0.2:
            r = c.request("web_index", "GET", "/", headers={"Accept-Encoding": "gzip"})
            if r and r.status == 200:
                etag = r.headers.get("ETag")
                if etag:
                    c.request("web_index_304", "GET", "/", headers={"If-None-Match": etag}, expect=(304,))
                if not WEB_ASSETS:
                    try:
                        from gzip import decompress
                        html = decompress(r.body) if r.headers.get("Content-Encoding") == "gzip" else r.body
                    except OSError:
                        html = r.body
                    WEB_ASSETS.extend(set(re.findall(r'/assets/[A-Za-z0-9._-]+', html.decode("utf-8", "replace"))))
            if WEB_ASSETS:
                c.request("web_asset", "GET", rnd.choice(WEB_ASSETS), headers={"Accept-Encoding": "gzip"},
                          keep=False)
        if rnd.random() < 0.05:
            c.close()    # a new visitor: a new connection and TLS handshake
        think()
    c.close()


# ---------------------------------------------------------------- upload

def take_victim(u):
    """The user's oldest photo that no video in flight uses, marked gone
    (under the lock, so that no render picks it meanwhile); None when the
    user has few enough photos."""
    with u.lock:
        if len(u.photos) <= ARGS.keep_photos:
            return None
        pid = next((i for i in u.photos if u.pinned[i] == 0), None)
        if pid is not None:
            u.gone.add(pid)
            info = u.photos.pop(pid)
            u.live_sha.pop(info["sha256"], None)
        return pid


def upload_worker(idx):
    c = Client("upload", timeout=120)
    rnd = random.Random(1000 + idx)
    while running():
        u = rnd.choice(USERS)
        tok = u.token(c)
        if not tok:
            pause(1)
            continue
        with u.mutate:
            r = rnd.random()
            if r < 0.12:
                # multipart, 2-3 files
                files = [IMAGES.pick(big_ok=False) for _ in range(rnd.choice((2, 3)))]
                boundary = "soak" + secrets.token_hex(8)
                body = b""
                for sub, name, data in files:
                    body += ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                             "Content-Type: %s\r\n\r\n" % (boundary, name, ctype(data))).encode() + data + b"\r\n"
                body += ("--%s--\r\n" % boundary).encode()
                shas = [hashlib.sha256(d).hexdigest() for _, _, d in files]
                with u.lock:
                    all_dup = all(s in u.live_sha for s in shas)
                resp = c.request("upload_multipart", "POST", "/api/v1/photos", body=body, token=tok,
                                 headers={"Content-Type": "multipart/form-data; boundary=" + boundary},
                                 expect=(200,) if all_dup else (201,))
                j = resp.json() if resp and resp.status in (200, 201) else None
                for p in (j or {}).get("photos", []):
                    u.add_photo(p)
            elif r < 0.18 and u.photos:
                # the same bytes again: 200, duplicate
                with u.lock:
                    pid = next(reversed(u.photos))
                    sha = u.photos[pid]["sha256"]
                # we do not keep the bytes; upload the photo's content as fetched
                g = c.request("content_for_dup", "GET", "/api/v1/photos/%s/content" % pid, token=tok,
                              hash_body=True)
                if g and g.status == 200 and g.sha == sha:
                    resp = c.request("upload_duplicate", "POST", "/api/v1/photos", body=g.body, token=tok,
                                     headers={"Content-Type": ctype(g.body), "X-Filename": "again.jpg"},
                                     expect=(200,))
                    j = resp.json() if resp and resp.status == 200 else None
                    if j and not j.get("duplicate"):
                        STATS.record("upload", "upload_duplicate", "NOT_DUPLICATE", "error",
                                     "photo %s re-uploaded: no duplicate flag: %s" % (pid, resp.body[:200]))
            else:
                sub, name, data = IMAGES.pick()
                sha = hashlib.sha256(data).hexdigest()
                with u.lock:
                    dup = sha in u.live_sha
                op = "upload_big" if sub == "big" else "upload"
                resp = c.request(op, "POST", "/api/v1/photos", body=data, token=tok,
                                 headers={"Content-Type": ctype(data), "X-Filename": name},
                                 expect=(200,) if dup else (201,), timeout=300 if sub == "big" else None)
                j = resp.json() if resp and resp.status in (200, 201) else None
                if j and "photo" in j:
                    if j["photo"]["sha256"] != sha:
                        STATS.record("upload", "upload_sha256", "MISMATCH", "error",
                                     "uploaded %s, answer says %s" % (sha, j["photo"]["sha256"]))
                    u.add_photo(j["photo"], big=(sub == "big"))
            # keep the user's photos bounded: delete the oldest ones that no
            # video in flight uses
            while running():
                victim = take_victim(u)
                if victim is None:
                    break
                c.request("photo_delete", "DELETE", "/api/v1/photos/" + victim, token=tok, expect=(204,))
        pause(rnd.uniform(0.05, 0.4))
    c.close()


# ---------------------------------------------------------------- render

TRANSITIONS = ["none", "fade", "fadeblack", "wipeleft", "wiperight", "slideleft", "slideright", "dissolve"]
FINAL = ("ready", "failed", "cancelled")


def follow_poll(c, tok, vid, deadline):
    while time.monotonic() < deadline and not STOP.is_set():
        r = c.request("video_poll", "GET", "/api/v1/videos/" + vid, token=tok, kind="render")
        j = r.json() if r and r.status == 200 else None
        if j and j["video"]["status"] in FINAL:
            return j["video"]
        pause(0.5)
    return None


def follow_events(tok, vid, deadline):
    """The SSE stream until a final status; returns the video or None."""
    t = time.monotonic()
    conn = http.client.HTTPSConnection(HOST, PORT, context=CTX, timeout=30)
    last = None
    try:
        conn.request("GET", "/api/v1/videos/%s/events" % vid,
                     headers={"Host": "localhost", "Authorization": "Bearer " + tok})
        r = conn.getresponse()
        if r.status != 200:
            body = r.read()
            STATS.record("render", "video_events", r.status, classify(r.status, r.headers, (200,)),
                         "events -> %d %s" % (r.status, body[:200]))
            return None
        event = None
        while time.monotonic() < deadline:
            line = r.fp.readline()
            if not line:
                break
            line = line.strip()
            if line.startswith(b"event:"):
                event = line[6:].strip().decode()
            elif line.startswith(b"data:") and event == "status":
                v = json.loads(line[5:])
                last = v
                if v["status"] in FINAL:
                    break
        STATS.record("render", "video_events", 200 if last else "NO_FINAL_EVENT",
                     "ok" if last and last["status"] in FINAL else "error",
                     "events of %s: last %s" % (vid, last and last["status"]),
                     (time.monotonic() - t) * 1000)
    except (OSError, http.client.HTTPException, ValueError) as e:
        STATS.record("render", "video_events", "EXC:" + type(e).__name__, "error",
                     "events of %s: %s" % (vid, e))
    finally:
        conn.close()
    return last if last and last["status"] in FINAL else None


def render_worker(idx):
    c = Client("render")
    rnd = random.Random(2000 + idx)
    while running():
        u = USERS[(idx + rnd.randrange(len(USERS))) % len(USERS)]
        tok = u.token(c)
        if not tok:
            pause(1)
            continue
        with u.lock:
            cand = [i for i in u.photos if i not in u.gone]
            ids = rnd.sample(cand, min(len(cand), rnd.choice((2, 3, 4))))
            for i in ids:
                u.pinned[i] += 1
        if len(ids) < 2:
            with u.lock:
                for i in ids:
                    u.pinned[i] -= 1
            pause(2)
            continue
        try:
            spp = rnd.choice((1, 1.5, 2))
            tr = rnd.choice(TRANSITIONS)
            spec = {"photo_ids": ids, "seconds_per_photo": spp, "transition": tr,
                    "transition_seconds": 0.25 if tr != "none" else 0, "resolution": "480p",
                    "aspect": rnd.choice(("16:9", "1:1", "9:16", "4:3")), "fps": rnd.choice((24, 25)),
                    "ken_burns": rnd.random() < 0.3}
            if rnd.random() < 0.4:
                spec["title"] = rnd.choice(("Soak", "Été à la mer", "Week-end %d" % rnd.randrange(100)))
            r = c.request("video_create", "POST", "/api/v1/videos", body=json.dumps(spec), token=tok,
                          headers={"Content-Type": "application/json"}, expect=(202,))
            j = r.json() if r and r.status == 202 else None
            if not j:
                pause(2)
                continue
            vid = j["video"]["id"]
            cancel = rnd.random() < 0.12
            if cancel:
                pause(rnd.uniform(0, 1.5))
                c.request("video_cancel", "POST", "/api/v1/videos/%s/cancel" % vid, token=tok,
                          expect=(202, 409))
            deadline = time.monotonic() + 300
            if rnd.random() < 0.5:
                v = follow_events(tok, vid, deadline)
                if v is None:
                    v = follow_poll(c, tok, vid, deadline)
            else:
                v = follow_poll(c, tok, vid, deadline)
        finally:
            with u.lock:
                for i in ids:
                    u.pinned[i] -= 1
        if v is None:
            if running():
                STATS.record("render", "render_done", "TIMEOUT", "error", "video %s not final in 300 s" % vid)
            continue
        if v["status"] == "failed" or (v["status"] == "cancelled" and not cancel):
            STATS.record("render", "render_done", v["status"].upper(), "error",
                         "video %s %s: %s (spec %s)" % (vid, v["status"], v.get("error"), json.dumps(spec)))
        else:
            STATS.record("render", "render_done", v["status"], "ok")
        if v["status"] == "ready":
            urls = v["urls"]
            rr = c.request("media_video", "GET", urls["content"], keep=False, timeout=120)
            if rr and rr.status == 200 and rr.nbytes != v["bytes"]:
                STATS.record("render", "media_video_bytes", "MISMATCH", "error",
                             "video %s: %d bytes read, record says %d" % (vid, rr.nbytes, v["bytes"]))
            c.request("media_video_range", "GET", urls["content"], headers={"Range": "bytes=1000-8999"},
                      expect=(206,))
            c.request("media_video_head", "HEAD", urls["content"])
            c.request("media_poster", "GET", urls["poster"], keep=False)
        with u.lock:
            u.videos[vid] = {"status": v["status"]}
            old = list(u.videos)[:-ARGS.keep_videos] if len(u.videos) > ARGS.keep_videos else []
            for o in old:
                u.videos.pop(o)
                u.videos_gone.add(o)
        for o in old:
            c.request("video_delete", "DELETE", "/api/v1/videos/" + o, token=tok, expect=(204,))
        pause(rnd.uniform(0.2, 1.0))
    c.close()


# ---------------------------------------------------------------- auth

def auth_worker():
    c = Client("auth")
    rnd = random.Random(3000)
    # the bursts past the limits: the first ones early enough for a short
    # run to see them, then every 5 and 7 minutes
    next_signup = now() + 2
    next_login_burst = now() + min(150, ARGS.seconds / 4)
    next_signup_burst = now() + min(240, ARGS.seconds / 2)
    n = 0
    jh = {"Content-Type": "application/json"}
    while running():
        t = now()
        if t >= next_signup:
            next_signup = t + ARGS.signup_every
            email = "soak-%s@bench.example" % secrets.token_hex(5)
            r = c.request("signup", "POST", "/api/v1/auth/signup", kind="signup", expect=(201,),
                          body=json.dumps({"email": email, "password": ARGS.password}), headers=jh)
            if r and r.status == 201:
                nu = User(email, ARGS.password)
                if nu.login(c, kind="signup", op="first_login"):
                    _, name, data = IMAGES.pick(big_ok=False)
                    r = c.request("first_upload", "POST", "/api/v1/photos", kind="signup", body=data,
                                  token=nu.access, headers={"Content-Type": ctype(data), "X-Filename": name},
                                  expect=(201,))
                    with LOGIN_USERS_LOCK:
                        LOGIN_USERS.append(nu)
            continue
        if t >= next_signup_burst:
            # past the sign-up limit on purpose: 429 expected once the bucket is empty
            next_signup_burst = t + 420
            for _ in range(3):
                email = "soak-burst-%s@bench.example" % secrets.token_hex(5)
                r = c.request("signup_burst", "POST", "/api/v1/auth/signup", kind="signup", expect=(201,),
                              body=json.dumps({"email": email, "password": ARGS.password}), headers=jh)
            continue
        if t >= next_login_burst:
            # past the per-account login limit on purpose: 429 expected
            next_login_burst = t + 300
            u = rnd.choice(USERS)
            for _ in range(12):
                c.request("login_burst", "POST", "/api/v1/auth/login", expect=(200,),
                          body=json.dumps({"email": u.email, "password": u.password}), headers=jh)
            continue
        # one login cycle
        with LOGIN_USERS_LOCK:
            u = LOGIN_USERS[n % len(LOGIN_USERS)]
        n += 1
        if n % 7 == 0:
            c.request("login_wrong_password", "POST", "/api/v1/auth/login", expect=(401,),
                      body=json.dumps({"email": u.email, "password": "not-the-password"}), headers=jh)
        cookie = n % 4 == 0
        hdr = dict(jh)
        if cookie:
            hdr["X-PV-Session"] = "cookie"
        r = c.request("login", "POST", "/api/v1/auth/login", expect=(200,),
                      body=json.dumps({"email": u.email, "password": u.password}), headers=hdr)
        j = r.json() if r and r.status == 200 else None
        if j:
            acc = j["access_token"]
            c.request("me", "GET", "/api/v1/me", token=acc)
            if cookie:
                m = re.search(r"pv_refresh=([^;]+)", r.headers.get("Set-Cookie", ""))
                ck = {"X-PV-Session": "cookie", "Cookie": "pv_refresh=" + (m.group(1) if m else "")}
                r2 = c.request("refresh_cookie", "POST", "/api/v1/auth/refresh", headers=ck)
                j2 = r2.json() if r2 and r2.status == 200 else None
                if j2:
                    c.request("me_after_refresh", "GET", "/api/v1/me", token=j2["access_token"])
                    m = re.search(r"pv_refresh=([^;]+)", r2.headers.get("Set-Cookie", ""))
                    ck["Cookie"] = "pv_refresh=" + (m.group(1) if m else "")
                    c.request("logout_cookie", "POST", "/api/v1/auth/logout", headers=ck,
                              token=j2["access_token"], expect=(204,))
            else:
                r2 = c.request("refresh", "POST", "/api/v1/auth/refresh", headers=jh,
                               body=json.dumps({"refresh_token": j["refresh_token"]}))
                j2 = r2.json() if r2 and r2.status == 200 else None
                if j2:
                    c.request("me_after_refresh", "GET", "/api/v1/me", token=j2["access_token"])
                    c.request("logout", "POST", "/api/v1/auth/logout", headers=jh, token=j2["access_token"],
                              body=json.dumps({"refresh_token": j2["refresh_token"]}), expect=(204,))
                    c.request("refresh_after_logout", "POST", "/api/v1/auth/refresh", headers=jh,
                              body=json.dumps({"refresh_token": j2["refresh_token"]}), expect=(401,))
                    # the first refresh token is spent: using it again is 401 too
                    c.request("refresh_spent", "POST", "/api/v1/auth/refresh", headers=jh,
                              body=json.dumps({"refresh_token": j["refresh_token"]}), expect=(401,))
        if rnd.random() < 0.1:
            c.close()
        pause(rnd.uniform(0.5, 1.5) * ARGS.login_every)
    c.close()


# ---------------------------------------------------------------- slow clients

def big_media_url():
    """A presigned URL of some user's largest photo (for slow readers and
    aborted downloads), with its user; None when there is none yet."""
    best = None
    for u in USERS:
        with u.lock:
            for pid, p in u.photos.items():
                if best is None or p["bytes"] > best[2]:
                    best = (u, pid, p["bytes"])
    return best


def trickle(s, data, t0, most):
    """Sends data a byte every 0.5 s until pvd answers or closes (or most
    seconds pass); then reads the answer. Returns read_answer's pair."""
    buf = b""
    for i in range(len(data)):
        if time.monotonic() - t0 > most:
            break
        try:
            s.sendall(data[i:i + 1])
        except (OSError, ssl.SSLError):
            break
        d = recv_some(s, 0.5)
        if d is None:
            continue
        if not d:
            return None, "closed after %.1f s" % (time.monotonic() - t0)
        buf = d
        break
    return read_answer(s, time.monotonic() + 10, buf)


def slow_head():
    s = tls_connect()
    t = time.monotonic()
    head = b"GET /api/v1/me HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"s" * 200 + b"\r\n\r\n"
    try:
        st, body = trickle(s, head, t, 40)
    finally:
        s.close()
    took = time.monotonic() - t
    label = st if st else "closed"
    outcome = "limit" if st == 408 else ("ok" if st is None and body.startswith("closed") else "error")
    STATS.record("slow", "slow_head", label, outcome, "after %.1f s: %s" % (took, body if not st else body[:200]),
                 took * 1000)


def slow_body():
    s = tls_connect()
    t = time.monotonic()
    payload = json.dumps({"email": "slow@bench.example", "password": "x" * 300}).encode()
    head = ("POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % len(payload)).encode()
    try:
        s.sendall(head)
        st, body = trickle(s, payload, t, 60)
    finally:
        s.close()
    took = time.monotonic() - t
    label = st if st else "closed"
    outcome = "limit" if st == 408 else ("ok" if st is None and body.startswith("closed") else "error")
    STATS.record("slow", "slow_body", label, outcome, "after %.1f s: %s" % (took, body if not st else body[:200]),
                 took * 1000)


def slow_upload(c):
    """An honest slow upload (~32 KB/s): must be stored (201). Half of them
    are ~1.2 MB, ~38 s at that pace: longer than body_timeout (20 s), which
    a body at more than body_min_rate (1 KB/s) may outlast. (Its bytes are
    new, so it needs no turn at the user's `mutate`: it cannot be a
    duplicate.)"""
    u = random.choice(USERS)
    tok = u.token(c)
    if not tok:
        return
    kind = "medium" if IMAGES.by_kind["medium"] and random.random() < 0.5 else "small"
    name, data = random.choice(IMAGES.by_kind[kind])
    data = unique(data)
    s = tls_connect()
    t = time.monotonic()
    head = ("POST /api/v1/photos HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: %s\r\nX-Filename: slow-%s\r\nContent-Length: %d\r\n\r\n"
            % (tok, ctype(data), name, len(data))).encode()
    st, body = None, "not sent"
    try:
        s.sendall(head)
        buf = b""
        for i in range(0, len(data), 8192):
            s.sendall(data[i:i + 8192])
            d = recv_some(s, 0.25)
            if d is not None:
                buf = d   # an answer (or a close) before the body was all sent
                break
        st, body = read_answer(s, time.monotonic() + 60, buf)
    except (OSError, ssl.SSLError) as e:
        body = "send failed: %s" % e
    finally:
        s.close()
    took = time.monotonic() - t
    STATS.record("slow", "slow_upload", st if st else "closed",
                 classify(st, None, (201,)) if st else "error",
                 "%d bytes in %.1f s: %s" % (len(data), took, body[:200]), took * 1000)
    if st == 201:
        try:
            u.add_photo(json.loads(body)["photo"])
        except (ValueError, KeyError):
            pass


def slow_reader(c):
    """Reads a big photo at ~160 KB/s for a few seconds, then goes."""
    b = big_media_url()
    if not b:
        return
    u, pid, _ = b
    tok = u.token(c)
    s = tls_connect()
    t = time.monotonic()
    got, st = 0, None
    try:
        s.sendall(("GET /api/v1/photos/%s/content HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n"
                   % (pid, tok)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(16384)
            if not d:
                break
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 "):
            st = int(head[9:12])
        m_ = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        total = int(m_.group(1)) if m_ else 0
        got = len(rest)
        while st == 200 and got < total and time.monotonic() - t < 8:
            d = s.recv(16384)
            if not d:
                break
            got += len(d)
            time.sleep(0.1)
    except (OSError, ssl.SSLError) as e:
        STATS.record("slow", "slow_reader", "EXC:" + type(e).__name__, "error", "after %d bytes: %s" % (got, e))
        s.close()
        return
    s.close()
    outcome = "ok" if st == 200 or (st == 404 and not u.photo_alive(pid)) else classify(st or 0, None, (200,))
    STATS.record("slow", "slow_reader", st or "closed", outcome, "read %d bytes" % got,
                 (time.monotonic() - t) * 1000)


def idle_keepalive():
    """A keep-alive connection left idle: pvd closes it (idle_timeout)."""
    s = tls_connect()
    t = time.monotonic()
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        st, body = read_answer(s, time.monotonic() + 10)
        t = time.monotonic()
        closed, extra = False, b""
        while st == 200 and time.monotonic() - t < 90 and running():
            d = recv_some(s, 1)
            if d is None:
                continue
            closed, extra = not d, d
            break
    finally:
        s.close()
    idle = time.monotonic() - t
    if st != 200:
        STATS.record("slow", "idle_keepalive", st or "closed", "error", "the first answer: %s" % body[:200])
    elif closed or running():
        STATS.record("slow", "idle_keepalive", "closed" if closed else "NOT_CLOSED", "ok" if closed else "error",
                     "idle %.1f s%s" % (idle, ", then %r" % extra[:80] if extra else ""), idle * 1000)


def slow_worker(idx):
    c = Client("slow")
    rnd = random.Random(4000 + idx)
    ops = [slow_head, slow_body, lambda: slow_upload(c), lambda: slow_reader(c)]
    n = 0
    while running():
        n += 1
        try:
            if n % 12 == 0:
                idle_keepalive()
            else:
                ops[(n + idx) % len(ops)]()
        except (OSError, ssl.SSLError) as e:
            STATS.record("slow", "connect", "EXC:" + type(e).__name__, "error", str(e))
        pause(rnd.uniform(0.2, 2))
    c.close()


# ---------------------------------------------------------------- aborted clients

HELLO = client_hello()


def abort_once(kind_n, c, rnd):
    op = ["tcp_close", "tcp_rst", "hello_half", "handshake_close", "head_half", "upload_abort",
          "download_abort", "no_read", "sse_abort", "plain_http", "json_too_big"][kind_n]
    t = time.monotonic()
    detail, label, outcome = "", "aborted", "ok"
    if op == "tcp_close":
        tcp_connect().close()
    elif op == "tcp_rst":
        rst_close(tcp_connect())
    elif op == "hello_half":
        s = tcp_connect()
        s.sendall(HELLO[:rnd.randrange(5, max(6, len(HELLO) - 1))])
        (rst_close if rnd.random() < 0.5 else socket.socket.close)(s)
    elif op == "handshake_close":
        s = tls_connect()
        (rst_close if rnd.random() < 0.5 else ssl.SSLSocket.close)(s)
    elif op == "head_half":
        s = tls_connect()
        s.sendall(b"GET /api/v1/photos?limit=50 HTTP/1.1\r\nHost: localhost\r\nAuthoriz")
        (rst_close if rnd.random() < 0.5 else ssl.SSLSocket.close)(s)
    elif op == "upload_abort":
        u = rnd.choice(USERS)
        tok = u.token(c)
        s = tls_connect()
        s.sendall(("POST /api/v1/photos HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
                   "Content-Type: image/jpeg\r\nContent-Length: 3000000\r\n\r\n" % tok).encode())
        _, data = rnd.choice(IMAGES.by_kind["medium"] or IMAGES.by_kind["small"])
        sent = 0
        try:
            while sent < min(len(data), rnd.randrange(1000, 400000)):
                s.sendall(data[sent:sent + 16384])
                sent += 16384
        except (OSError, ssl.SSLError):
            pass
        detail = "%d of 3000000 bytes" % sent
        (rst_close if rnd.random() < 0.5 else ssl.SSLSocket.close)(s)
    elif op == "download_abort":
        b = big_media_url()
        if not b:
            return
        u, pid, _ = b
        tok = u.token(c)
        s = tls_connect()
        s.sendall(("GET /api/v1/photos/%s/content HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n"
                   % (pid, tok)).encode())
        got = 0
        while got < rnd.randrange(1, 300000):
            d = s.recv(16384)
            if not d:
                break
            got += len(d)
        detail = "read %d bytes" % got
        (rst_close if rnd.random() < 0.5 else ssl.SSLSocket.close)(s)
    elif op == "no_read":
        u = rnd.choice(USERS)
        tok = u.token(c)
        s = tls_connect()
        s.sendall(("GET /api/v1/photos?limit=100 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n"
                   % tok).encode())
        (rst_close if rnd.random() < 0.5 else ssl.SSLSocket.close)(s)
    elif op == "sse_abort":
        u = rnd.choice(USERS)
        with u.lock:
            vids = list(u.videos)
        if not vids:
            return
        tok = u.token(c)
        s = tls_connect()
        s.sendall(("GET /api/v1/videos/%s/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n"
                   % (rnd.choice(vids), tok)).encode())
        s.settimeout(10)
        try:
            s.recv(4096)
        except (OSError, ssl.SSLError):
            pass
        (rst_close if rnd.random() < 0.5 else ssl.SSLSocket.close)(s)
    elif op == "plain_http":
        s = tcp_connect()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        st, body = read_answer(s, time.monotonic() + 10)
        s.close()
        label = st if st else "closed"
        outcome = "ok" if st == 400 and b"https_required" in body else "error"
        detail = body[:200]
    elif op == "json_too_big":
        s = tls_connect()
        s.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{\"email\":")
        st, body = read_answer(s, time.monotonic() + 10)
        s.close()
        label = st if st else "closed"
        outcome = "limit" if st == 413 else "error"
        detail = body[:200]
    STATS.record("abort", op, label, outcome, detail, (time.monotonic() - t) * 1000)


def abort_worker(idx):
    c = Client("abort")
    rnd = random.Random(5000 + idx)
    n = 0
    while running():
        k = n % 11
        n += 1
        try:
            abort_once(k, c, rnd)
        except (OSError, ssl.SSLError) as e:
            # the client's own abrupt end may surface as an error here; an
            # error before the abort point (connect, handshake) is pvd's
            STATS.record("abort", "abort_%d" % k, "EXC:" + type(e).__name__, "error", str(e))
        if n % 11 == 0:
            private_get("healthz_after_aborts", "/healthz", kind="abort")
        pause(rnd.uniform(0.1, 0.6))
    c.close()


# ---------------------------------------------------------------- admin

def admin_worker():
    n = 0
    while running():
        n += 1
        for op, argv in (("pvctl_status", ["status"]), ("pvctl_jobs", ["job", "list", "--limit", "20"])):
            if op == "pvctl_jobs" and n % 3:
                continue
            t = time.monotonic()
            try:
                p = subprocess.run([ARGS.pvctl, "--socket", ARGS.socket, "--json", "--timeout", "20"] + argv,
                                   capture_output=True, timeout=30)
                rc, out = p.returncode, (p.stdout + p.stderr)[:200]
            except subprocess.TimeoutExpired:
                rc, out = "TIMEOUT", b""
            STATS.record("admin", op, "rc=%s" % rc, "ok" if rc == 0 else "error", out,
                         (time.monotonic() - t) * 1000)
        private_get("private_healthz", "/healthz")
        private_get("private_readyz", "/readyz")
        private_get("metrics", "/metrics")
        pause(20)


# ---------------------------------------------------------------- sampler

def proc_sample(pid):
    st = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Threads", "VmSize"):
                st[k] = int(v.split()[0])
    fds = os.listdir("/proc/%d/fd" % pid)
    return st, len(fds)


def fd_kinds(pid):
    c = collections.Counter()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        c[re.sub(r"\[\d+\]", "", re.sub(r"^/.*", "file", t))] += 1
    return dict(c)


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        x = f.read().rsplit(")", 1)[1].split()
    return (int(x[11]) + int(x[12])) / os.sysconf("SC_CLK_TCK")


SAMPLES = []   # (t, rss, anon, file, fds, threads, cpu)


def sampler():
    path = os.path.join(ARGS.out, "samples.csv")
    with open(path, "w") as f, open(os.path.join(ARGS.out, "fd-kinds.jsonl"), "w") as kf:
        next_kinds = 0.0
        f.write("t_s,rss_kb,rss_anon_kb,rss_file_kb,fds,threads,cpu_s,requests,errors\n")
        nxt = time.monotonic()
        while not STOP.is_set():
            try:
                st, fds = proc_sample(ARGS.pid)
                cpu = cpu_s(ARGS.pid)
            except (OSError, ValueError):
                PVD_GONE.set()
                STOP.set()
                break
            t = now()
            with STATS.lock:
                reqs = sum(STATS.kind.values())
                errs = STATS.outcome["error"]
            row = (round(t, 1), st.get("VmRSS", 0), st.get("RssAnon", 0), st.get("RssFile", 0), fds,
                   st.get("Threads", 0), round(cpu, 2), reqs, errs)
            SAMPLES.append(row)
            f.write(",".join(str(x) for x in row) + "\n")
            f.flush()
            if t >= next_kinds:
                # what the descriptors are, now and then (for a leak's diagnosis)
                next_kinds = t + 60
                try:
                    kf.write(json.dumps({"t": round(t), "fds": fd_kinds(ARGS.pid)}, sort_keys=True) + "\n")
                    kf.flush()
                except OSError:
                    pass
            if time.monotonic() >= END:
                break
            nxt += ARGS.sample
            STOP.wait(max(0.0, nxt - time.monotonic()))


# ---------------------------------------------------------------- report

def median_between(col, a, b):
    v = [s[col] for s in SAMPLES if a <= s[0] <= b]
    return (statistics.median(v), len(v)) if v else (None, 0)


def floor_between(col, a, b):
    """The 10th percentile: what pvd holds between the spikes of its
    transient work (argon2id's 64 MiB, decodes, renders)."""
    v = sorted(s[col] for s in SAMPLES if a <= s[0] <= b)
    return v[len(v) // 10] if v else None


def pct(a, b):
    return 100.0 * (b - a) / a if a else 0.0


def main():
    os.makedirs(ARGS.out, exist_ok=True)
    # quiet figures before any traffic
    idle0_st, idle0_fds = proc_sample(ARGS.pid)
    idle0_kinds = fd_kinds(ARGS.pid)
    c = Client("setup")
    for u in USERS:
        if not u.login(c, kind="setup", op="login"):
            sys.exit("soak: could not log in as %s" % u.email)
    # a few photos per user before the traffic starts (renders need them)
    for u in USERS:
        for _ in range(6):
            _, name, data = IMAGES.pick(big_ok=False)
            r = c.request("upload", "POST", "/api/v1/photos", kind="setup", body=data, token=u.access,
                          headers={"Content-Type": ctype(data), "X-Filename": name}, expect=(201,))
            if r and r.status == 201:
                u.add_photo(r.json()["photo"])
    c.close()

    global T0, END
    T0 = time.monotonic()
    END = T0 + ARGS.seconds
    cpu0 = cpu_s(ARGS.pid)
    threads = [threading.Thread(target=sampler, name="sampler", daemon=True)]
    for i in range(ARGS.browse):
        threads.append(threading.Thread(target=browse_worker, args=(i,), name="browse%d" % i, daemon=True))
    for i in range(ARGS.upload):
        threads.append(threading.Thread(target=upload_worker, args=(i,), name="upload%d" % i, daemon=True))
    for i in range(ARGS.render):
        threads.append(threading.Thread(target=render_worker, args=(i,), name="render%d" % i, daemon=True))
    for i in range(ARGS.slow):
        threads.append(threading.Thread(target=slow_worker, args=(i,), name="slow%d" % i, daemon=True))
    for i in range(ARGS.abort):
        threads.append(threading.Thread(target=abort_worker, args=(i,), name="abort%d" % i, daemon=True))
    threads.append(threading.Thread(target=auth_worker, name="auth", daemon=True))
    threads.append(threading.Thread(target=admin_worker, name="admin", daemon=True))
    print("soak: %d client threads for %.0f s (warm-up %.0f s), sampling every %.0f s into %s/samples.csv"
          % (len(threads) - 1, ARGS.seconds, ARGS.warmup, ARGS.sample, ARGS.out), flush=True)
    for t in threads:
        t.start()
    last_print = 0
    while time.monotonic() < END and not STOP.is_set():
        STOP.wait(5)
        if now() - last_print >= 60 and SAMPLES:
            last_print = now()
            s = SAMPLES[-1]
            with STATS.lock:
                o = dict(STATS.outcome)
            print("soak: %5.0f s  RSS %6.1f MB  fds %4d  threads %3d  requests %7d  ok %7d  limit %5d  errors %d"
                  % (s[0], s[1] / 1024, s[4], s[5], s[7], o.get("ok", 0), o.get("limit", 0), o.get("error", 0)),
                  flush=True)
    STOP.set()
    t_stop = time.monotonic()
    for t in threads:
        t.join(timeout=max(1.0, 120 - (time.monotonic() - t_stop)))
    stuck = [t.name for t in threads if t.is_alive()]
    traffic_s = now()
    cpu1 = None
    gone = PVD_GONE.is_set()
    try:
        cpu1 = cpu_s(ARGS.pid)
    except OSError:
        gone = True
    # quiet figures after the traffic (our connections are closed; give
    # pvd a moment to see the closes and finish what was in flight)
    idle1_st, idle1_fds, idle1_kinds = {}, 0, {}
    if not gone:
        for _ in range(15):
            time.sleep(1)
            try:
                idle1_st, idle1_fds = proc_sample(ARGS.pid)
                idle1_kinds = fd_kinds(ARGS.pid)
            except OSError:
                gone = True
                break
            if idle1_fds <= idle0_fds:
                break
    report(traffic_s, cpu0, cpu1, idle0_st, idle0_fds, idle0_kinds, idle1_st, idle1_fds, idle1_kinds, gone, stuck)


def report(traffic_s, cpu0, cpu1, idle0_st, idle0_fds, idle0_kinds, idle1_st, idle1_fds, idle1_kinds, gone, stuck):
    # the windows are on the samples' clock: the traffic ran until the
    # last sample (joining the client threads afterwards takes a while)
    D = SAMPLES[-1][0] if SAMPLES else 0.0
    W = ARGS.warmup
    post = max(0.0, D - W)
    # Two windows of the same length: the first after the warm-up and the
    # last one, 5 minutes each (a quarter of the time after the warm-up
    # when that is shorter). pvd's RSS swings by 50-200 MB with argon2id
    # hashes (64 MiB each), big decodes and renders in flight, so even the
    # median of 5 minutes moved by +-5 % between windows of a flat run
    # (98.6-107.8 MB) with the mix of work caught; the floor (10th
    # percentile: pvd between those spikes) stayed within 70.8-71.1 MB, and
    # it is what a leak lifts. So RSS is judged by its floor, descriptors
    # (which follow the connections open: 48-63) by their median.
    win = max(min(300.0, post / 4), ARGS.sample)
    out = []
    p = out.append
    p("== soak: %.0f s of mixed traffic (warm-up %.0f s), %d samples every %.0f s; client threads joined %.0f s later"
      % (D, W, len(SAMPLES), ARGS.sample, max(0.0, traffic_s - D)))
    res = {"seconds": round(D), "warmup": W, "pvd_exited": gone, "stuck_threads": stuck}
    if len(SAMPLES) >= 4 and post >= 2 * ARGS.sample:
        b0, b1, e0, e1 = W, W + win, D - win, D + 1
        rb, nb = median_between(1, b0, b1)
        re_, ne = median_between(1, e0, e1)
        fb, _ = median_between(4, b0, b1)
        fe, _ = median_between(4, e0, e1)
        ab, _ = median_between(2, b0, b1)
        ae, _ = median_between(2, e0, e1)
        lb, le = floor_between(1, b0, b1), floor_between(1, e0, e1)
        after = [s for s in SAMPLES if s[0] >= W]
        rmax = max(s[1] for s in after)
        fmax = max(s[4] for s in after)
        last = SAMPLES[-1]
        p("   measure: the window of %.0f s after the warm-up (t=%.0f-%.0f s, %d samples) against the last"
          % (win, b0, b1, nb))
        p("            %.0f s (t=%.0f-%.0f s, %d samples): RSS by its floor (10th percentile), fds by their"
          % (win, e0, D, ne))
        p("            median; growth = (end - base) / base, target <= 5 %")
        p("   pvd VmRSS floor: %.1f -> %.1f MB, growth %+.1f %% (median %.1f -> %.1f MB, %+.1f %%;"
          " RssAnon median %.1f -> %.1f MB)"
          % (lb / 1024, le / 1024, pct(lb, le), rb / 1024, re_ / 1024, pct(rb, re_), ab / 1024, ae / 1024))
        p("              max after warm-up %.1f MB, last %.1f MB" % (rmax / 1024, last[1] / 1024))
        p("   pvd fds median:  %.0f -> %.0f, growth %+.1f %%; max after warm-up %d, last %d"
          % (fb, fe, pct(fb, fe), fmax, last[4]))
        first = SAMPLES[0]
        p("   from the start: RSS %.1f MB at t=%.0f s, peak %.1f MB (VmHWM %.1f MB); threads %d -> %d"
          % (first[1] / 1024, first[0], max(s[1] for s in SAMPLES) / 1024,
             idle1_st.get("VmHWM", 0) / 1024, first[5], last[5]))
        res.update(rss_base_kb=lb, rss_end_kb=le, rss_growth_pct=round(pct(lb, le), 2),
                   rss_median_base_kb=rb, rss_median_end_kb=re_, rss_median_growth_pct=round(pct(rb, re_), 2),
                   window_s=win,
                   anon_base_kb=ab, anon_end_kb=ae, fds_base=fb, fds_end=fe,
                   fds_growth_pct=round(pct(fb, fe), 2), rss_max_kb=rmax, fds_max=fmax)
    else:
        p("   too short for the measure (duration %.0f s, warm-up %.0f s)" % (D, W))
    if len(SAMPLES) >= 6:
        # the whole run in six windows: are the medians level?
        step = D / 6
        p("   by sixth of the run (RSS floor / median, fds median):")
        for i in range(6):
            a, b = i * step, (i + 1) * step
            r_, _ = median_between(1, a, b)
            f_, _ = median_between(4, a, b)
            l_ = floor_between(1, a, b)
            if r_ is not None:
                p("     t=%4.0f-%4.0f s: %6.1f / %6.1f MB, %3.0f fds" % (a, b, l_ / 1024, r_ / 1024, f_))
    p("   quiet before the traffic: RSS %.1f MB, fds %d %s" % (idle0_st.get("VmRSS", 0) / 1024, idle0_fds,
                                                          json.dumps(idle0_kinds, sort_keys=True)))
    p("   quiet after the traffic:  RSS %.1f MB, fds %d %s" % (idle1_st.get("VmRSS", 0) / 1024, idle1_fds,
                                                          json.dumps(idle1_kinds, sort_keys=True)))
    res.update(idle_fds_before=idle0_fds, idle_fds_after=idle1_fds,
               idle_rss_before_kb=idle0_st.get("VmRSS", 0), idle_rss_after_kb=idle1_st.get("VmRSS", 0))
    if cpu1 is not None:
        p("   pvd CPU during the soak: %.0f s (%.0f %% of one core)" % (cpu1 - cpu0, 100 * (cpu1 - cpu0) / max(1, D)))
    total = sum(STATS.kind.values())
    p("   requests: %d (%.1f/s) — ok %d, limit %d, errors %d" % (
        total, total / max(1, D), STATS.outcome["ok"], STATS.outcome["limit"], STATS.outcome["error"]))
    p("   by kind:  " + ", ".join("%s %d" % (k, n) for k, n in sorted(STATS.kind.items(), key=lambda x: -x[1])))
    p("   by status: " + ", ".join("%s %d" % (k, n) for k, n in sorted(STATS.status.items(), key=lambda x: -x[1])))
    p("   by kind and operation (status: count; p50/p99 ms):")
    for (k, op), n in sorted(STATS.op.items()):
        sts = sorted(((lab, c) for (kk, oo, lab), c in STATS.op_status.items() if kk == k and oo == op),
                     key=lambda x: -x[1])
        lat = sorted(STATS.ms.get((k, op), []))
        ls = ""
        if lat:
            ls = "; %.0f/%.0f ms" % (lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))])
        p("     %-7s %-22s %6d  %s%s" % (k, op, n, " ".join("%s:%d" % x for x in sts), ls))
    if STATS.notes:
        p("   notes:")
        for k, n in sorted(STATS.notes.items()):
            p("     %d x %s" % (n, k))
    errs = sorted(STATS.examples.items(), key=lambda x: -STATS.op_status[x[0]])
    if errs:
        p("   errors (non-limit failures), with examples (t in s):")
        for (k, op, lab), ex in errs:
            p("     %s %s %s: %d" % (k, op, lab, STATS.op_status[(k, op, lab)]))
            for t, d in ex:
                p("        t=%s %s" % (t, d))
    if stuck:
        p("   client threads still busy 120 s after the end: %s" % ", ".join(stuck))
    per_min = sorted({m_ for (m_, _) in STATS.minute})
    p("   per minute (requests/errors): " + " ".join(
        "%d/%d" % (sum(STATS.minute[(m_, o)] for o in ("ok", "limit", "error")), STATS.minute[(m_, "error")])
        for m_ in per_min))
    res.update(requests=total, ok=STATS.outcome["ok"], limit=STATS.outcome["limit"], errors=STATS.outcome["error"],
               by_kind=dict(STATS.kind), by_status=dict(STATS.status))
    print("\n".join(out), flush=True)
    with open(os.path.join(ARGS.out, "result.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
