"""S3 replication against a real S3 peer on loopback (s3rver, started here).

pvd copies the change log (as segments) and every blob it names to
s3://BUCKET/PREFIX; these tests read what arrived from the peer's own data
directory (s3rver keeps each object as a file) and check it against what
pvd serves: every blob byte for byte, the segments without a hole from 1
to the cursor, a blob before any segment naming it. S3 going away and
coming back, pvd killed mid-batch, pause/resume and missing credentials
are each a test. s3rver accepts any signature: the signatures themselves
are checked against botocore's signer in tests/unit (sigv4).
"""
import hashlib
import os
import re
import subprocess
import time

from harness import Pvd, Skip, check, eq, unique_jpeg, unique_png
from test_pvctl import ctl, ctl_json, mp_unpack

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "..", "peers", "s3rver.sh")
BUCKET = "pvsync"
CREDS = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER",
         "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}


class S3Peer:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "s3rver")
        self.port = 0

    def start(self):
        r = subprocess.run(["sh", PEER, "start", self.dir, str(self.port), BUCKET, str(os.getpid())],
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise AssertionError("s3rver did not start: %s" % r.stderr[-600:])
        self.port = int(r.stdout.strip().splitlines()[-1])
        return self

    def stop(self):
        subprocess.run(["sh", PEER, "stop", self.dir], capture_output=True, timeout=30)

    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def objects(self, prefix):
        """{key: bytes} of every object under prefix, read from s3rver's files."""
        root = os.path.join(self.dir, "data", BUCKET)
        out = {}
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.endswith("._S3rver_object"):
                    key = os.path.relpath(os.path.join(dirpath, f[:-len("._S3rver_object")]), root)
                    if key.startswith(prefix):
                        with open(os.path.join(dirpath, f), "rb") as fh:
                            out[key] = fh.read()
        return out


def _env(creds=True):
    saved = {k: os.environ.get(k) for k in CREDS}
    for k, v in CREDS.items():
        if creds or not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET"):
            os.environ[k] = v
        else:
            os.environ.pop(k, None)
    return saved


def _env_back(saved):
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _pvd(peer, prefix, name, creds=True, data_dir=None, env=None, **extra):
    cfg = {"s3_bucket": BUCKET, "s3_prefix": prefix, "s3_endpoint": peer.endpoint(),
           "s3_path_style": "true", "sync_interval": 1, "changelog_trim_seconds": 1,
           "aws_imds_endpoint": "off"}  # tests never ask a real instance's metadata
    cfg.update(extra)
    saved = _env(creds)
    saved.update({k: os.environ.get(k) for k in (env or {})})
    os.environ.update(env or {})
    try:
        return Pvd(cfg, name=name, data_dir=data_dir).start()
    finally:
        _env_back(saved)


def _restart(p, creds=True):
    saved = _env(creds)
    try:
        return p.start()
    finally:
        _env_back(saved)


def _status(p):
    doc = ctl_json(p, "sync", "status")
    t = doc["result"]["targets"]
    eq(len(t), 1, "one replication target")
    return t[0]


def _wait_caught_up(p, timeout=60):
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = _status(p)
        if st["head"] > 0 and st["cursor"] == st["head"] and st["state"] == "idle":
            return st
        time.sleep(0.2)
    raise AssertionError("replication did not catch up within %d s: %r" % (timeout, st))


def _segments(objs, prefix):
    """[(first, last, entries)] sorted by first."""
    segs = []
    for k, v in objs.items():
        m = re.match(re.escape(prefix) + r"log/(\d{20})-(\d{20})\.msgpack$", k)
        if not m:
            continue
        doc, end = mp_unpack(v)
        eq(end, len(v), "segment %s is one msgpack value" % k)
        check(isinstance(doc, list) and len(doc) == 5 and doc[0] == "pv-segment" and doc[1] == 1,
              "segment %s header" % k, '["pv-segment", 1, first, last, entries]', doc[:4])
        first, last = int(m.group(1)), int(m.group(2))
        eq((doc[2], doc[3]), (first, last), "segment %s: header matches its name" % k)
        seqs = [e[0] for e in doc[4]]
        eq(seqs, sorted(set(seqs)), "segment %s: entries in order" % k)
        eq((seqs[0], seqs[-1]), (first, last), "segment %s: first and last entries" % k)
        segs.append((first, last, doc[4]))
    segs.sort()
    return segs


def _check_replica(p, peer, prefix, users):
    """Everything the users have is in S3: blobs byte for byte, and the log
    from 1 to the cursor without a hole."""
    st = _wait_caught_up(p)
    objs = peer.objects(prefix)
    segs = _segments(objs, prefix)
    check(segs, "segments in S3", "some", sorted(objs)[:10])
    covered = 0
    for first, last, _ in segs:
        check(first <= covered + 1, "no hole in the segments", "first <= %d" % (covered + 1), first)
        covered = max(covered, last)
    eq(covered, st["cursor"], "the segments reach the cursor")
    blobs = {k.rsplit("/", 1)[1]: v for k, v in objs.items() if k.startswith(prefix + "blobs/")}
    for k in blobs:
        check(re.match(re.escape(prefix) + "blobs/" + k[:2] + "/" + k, prefix + "blobs/" + k[:2] + "/" + k),
              "blob key layout", "blobs/xx/<sha256>", k)
    n = 0
    for u in users:
        for pid in u.list_all():
            ph = u.req("GET", "/api/v1/photos/" + pid).expect(200, "photo").json()["photo"]
            body = u.req("GET", "/api/v1/photos/%s/content" % pid).expect(200, "content").body
            check(ph["sha256"] in blobs, "photo %s's original is in S3" % pid, ph["sha256"], "absent")
            eq(hashlib.sha256(blobs[ph["sha256"]]).hexdigest(), ph["sha256"], "the S3 copy's bytes")
            eq(blobs[ph["sha256"]], body, "the S3 copy is what pvd serves")
            thumb = p.req("GET", ph["urls"]["thumbnail"]).expect(200, "thumbnail").body
            check(hashlib.sha256(thumb).hexdigest() in blobs, "photo %s's thumbnail is in S3" % pid,
                  "present", "absent")
            n += 1
    return st, segs, blobs, n


# ------------------------------------------------------------------ tests

def test_converges_from_scratch(tmp):
    peer = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "box1/", "s3-converge")
        with p:
            a, b = p.new_user("s3a"), p.new_user("s3b")
            ids = [a.upload_ok(unique_jpeg(320, 240))["id"] for _ in range(4)]
            b.upload_ok(unique_png(200, 150), content_type="image/png")
            # a video, rendered and ready: its MP4 and poster go too
            v = a.req("POST", "/api/v1/videos", json={"photo_ids": ids[:2], "seconds_per_photo": 1,
                                                      "resolution": "480p"}).expect(202, "video")
            vid = v.json()["video"]["id"]
            deadline = time.monotonic() + 90
            while a.req("GET", "/api/v1/videos/" + vid).json()["video"]["status"] != "ready":
                check(time.monotonic() < deadline, "the video renders", "ready", "not yet")
                time.sleep(0.2)
            a.req("DELETE", "/api/v1/photos/" + ids[3]).expect(204, "delete")
            st, segs, blobs, n = _check_replica(p, peer, "box1/", [a, b])
            eq(n, 4, "photos checked")
            video = a.req("GET", "/api/v1/videos/" + vid).json()["video"]
            mp4 = p.req("GET", video["urls"]["content"]).expect(200, "mp4").body
            check(hashlib.sha256(mp4).hexdigest() in blobs, "the video's MP4 is in S3", "present", video)
            poster = p.req("GET", video["urls"]["poster"]).expect(200, "poster").body
            check(hashlib.sha256(poster).hexdigest() in blobs, "the video's poster is in S3", "present",
                  video)
            kinds = [e[2] for _, _, es in segs for e in es]
            check({"user", "photo", "video"} <= set(kinds), "user, photo and video entries", "all three", set(kinds))
            check(any(e[3] for _, _, es in segs for e in es if e[2] == "photo"),
                  "the photo delete is in the log", "a deleted photo entry", "none")
            eq(st["last_error"], None, "no error")
            # the change log is kept only down to the cursor: trimmed once in S3
            time.sleep(2.5)
            m = p.private("GET", "/metrics").body.decode()
            eq(re.search(r"^pv_sync_s3_lag_entries (\d+)$", m, re.M).group(1), "0", "metrics: no lag")
            check(int(re.search(r"^pv_sync_s3_cursor (\d+)$", m, re.M).group(1)) == st["cursor"],
                  "metrics: the cursor", st["cursor"], m[-300:])
    finally:
        peer.stop()


def test_s3_down_then_back(tmp):
    peer = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "box2/", "s3-outage", changelog_alarm_bytes=1)
        with p:
            a = p.new_user("s3out")
            a.upload_ok(unique_jpeg(160, 120))
            before = _wait_caught_up(p)
            peer.stop()
            t0 = time.monotonic()
            for _ in range(5):
                a.upload_ok(unique_jpeg(160, 120))
            check(time.monotonic() - t0 < 20, "uploads go on while S3 is down", "< 20 s",
                  time.monotonic() - t0)
            deadline = time.monotonic() + 20
            st = _status(p)
            while st["failures"] == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
                st = _status(p)
            check(st["failures"] > 0 and st["last_error"], "the failure shows", "an error", st)
            check(st["state"] in ("waiting", "sending"), "waiting to retry", "waiting", st["state"])
            eq(st["cursor"], before["cursor"], "the cursor stays while S3 is down")
            check(st["head"] > st["cursor"], "a lag", "head > cursor", st)
            check(st["lag_seconds"] > 0, "lag in seconds", "> 0", st["lag_seconds"])
            # the disk alarm: the log kept for S3 passes changelog_alarm_bytes
            deadline = time.monotonic() + 10
            while not ctl_json(p, "status")["result"]["changes"]["alarm"]:
                check(time.monotonic() < deadline, "pvctl status: the change-log alarm", "on", "off")
                time.sleep(0.2)
            m = p.private("GET", "/metrics").body.decode()
            check(re.search(r"^pv_changelog_alarm 1$", m, re.M), "metrics: the alarm", "1", m[-400:])
            check("past changelog_alarm_bytes" in p.log_text(), "the log says so", "a warning", "none")
            peer.start()  # the same port
            ctl(p, "sync", "now")
            _check_replica(p, peer, "box2/", [a])
            eq(_status(p)["state"], "idle", "idle again")
            deadline = time.monotonic() + 10  # trimmed once S3 has it: the alarm ends
            while ctl_json(p, "status")["result"]["changes"]["alarm"]:
                check(time.monotonic() < deadline, "the alarm ends once S3 has the log", "off", "on")
                time.sleep(0.2)
    finally:
        peer.stop()


def test_kill9_mid_batch_then_converges(tmp):
    peer = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "box3/", "s3-kill", sync_batch=5)
        with p:
            a = p.new_user("s3kill")
            ctl(p, "sync", "pause")
            for _ in range(24):
                a.upload_ok(unique_jpeg(320, 240))
            ctl(p, "sync", "resume")
            time.sleep(0.1)  # a batch or two of 5 under way
            p.kill9()
            _restart(p)
            st, segs, blobs, n = _check_replica(p, peer, "box3/", [a])
            eq(n, 24, "every photo")
            check(len(segs) >= 5, "batches of at most 5 entries", ">= 5 segments", len(segs))
    finally:
        peer.stop()


def test_pause_resume_and_no_target_named(tmp):
    peer = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "box4/", "s3-pause")
        with p:
            a = p.new_user("s3pause")
            _wait_caught_up(p)
            doc = ctl_json(p, "sync", "pause")
            eq(doc["result"]["targets"][0]["state"], "paused", "paused")
            a.upload_ok(unique_jpeg(160, 120))
            time.sleep(2.5)  # two sync intervals
            st = _status(p)
            eq(st["state"], "paused", "still paused")
            check(st["head"] > st["cursor"], "nothing sent while paused", "head > cursor", st)
            doc = ctl_json(p, "sync", "pause", "dynamodb", expect=4)
            eq(doc["error"]["code"], "not_configured", "an unknown target")
            ctl(p, "sync", "resume", "s3")
            _check_replica(p, peer, "box4/", [a])
    finally:
        peer.stop()


def test_no_credentials_says_so_and_serves(tmp):
    peer = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "box5/", "s3-nocreds", creds=False)
        with p:
            a = p.new_user("s3nocred")
            a.upload_ok(unique_jpeg(160, 120))
            deadline = time.monotonic() + 10
            st = _status(p)
            while not st["last_error"] and time.monotonic() < deadline:
                time.sleep(0.2)
                st = _status(p)
            check("no AWS credentials" in (st["last_error"] or ""), "the error names the cause",
                  "no AWS credentials ...", st["last_error"])
            eq(peer.objects("box5/"), {}, "nothing was written")
            log = p.log_text()
            check("S3RVER" not in log, "no key in the log", "absent", "present")
    finally:
        peer.stop()


def test_without_s3_nothing_changes(pvd):
    doc = ctl_json(pvd, "sync", "status")
    eq(doc["result"]["targets"], [], "no targets without s3_bucket")
    doc = ctl_json(pvd, "sync", "now", expect=4)
    eq(doc["error"]["code"], "not_configured", "sync now without a target")


# ------------------------------------------------------------------ restore

from harness import PVD_BIN, User  # noqa: E402


def _login(q, u):
    """u (a User of the lost appliance) logged in on q, the restored one."""
    r = q.login(u.email, u.password).json()
    v = User(q, u.email, u.password, {"id": u.id})
    v.access, v.refresh = r["access_token"], r["refresh_token"]
    return v

INDEXED = ("users", "emails", "photos", "photo_sha", "videos", "jobs", "blobs")


def _restore(peer, prefix, data_dir, at=None, expect=0, pull=False):
    cmd = [PVD_BIN, "--data", data_dir, "--set", "s3_endpoint=" + peer.endpoint(),
           "--set", "s3_path_style=true", "--set", "aws_imds_endpoint=off",
           "--restore-from", "s3://%s/%s" % (BUCKET, prefix)]
    if at is not None:
        cmd += ["--at", str(at)]
    if pull:
        cmd += ["--pull-blobs"]
    env = dict(os.environ)
    env.update(CREDS)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    check(r.returncode == expect, "pvd --restore-from exit status (stdout %r, stderr %r)"
          % (r.stdout[-600:], r.stderr[-600:]), expect, r.returncode)
    return r


def _state(u):
    """What a user sees: photos (metadata and bytes) and videos."""
    photos = {}
    for pid in u.list_all():
        ph = u.req("GET", "/api/v1/photos/" + pid).expect(200, "photo").json()["photo"]
        ph.pop("urls", None)
        ph["content"] = hashlib.sha256(
            u.req("GET", "/api/v1/photos/%s/content" % pid).expect(200, "content").body).hexdigest()
        photos[pid] = ph
    vids = u.req("GET", "/api/v1/videos").expect(200, "videos").json()["items"]
    videos = {}
    for v in vids:
        v = dict(v)
        v.pop("urls", None)
        videos[v["id"]] = v
    return photos, videos


def _metric(p, name):
    text = p.private("GET", "/metrics").expect(200, "/metrics").body.decode()
    m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def _wait_pulled(p, timeout=60):
    """The restore's blobs, fetched in the background, are all here."""
    deadline = time.monotonic() + timeout
    while _metric(p, "pv_restore_pull_active") != 0:
        check(time.monotonic() < deadline, "the background pull ends", "pv_restore_pull_active 0",
              _metric(p, "pv_restore_pull_active"))
        time.sleep(0.2)


def _check_doc(p):
    doc = ctl_json(p, "debug", "check")["result"]
    eq(doc["problems"], 0, "the store's invariants (%s)" % doc.get("text", "")[:300])
    return doc


def _wait_snapshots(p, n, timeout=60):
    deadline = time.monotonic() + timeout
    while _status(p)["snapshots_sent"] < n:
        check(time.monotonic() < deadline, "snapshot %d sent" % n, "sent", _status(p))
        time.sleep(0.3)


def test_restore_rebuilds_the_appliance(tmp):
    peer = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "box6/", "s3-restore-src", snapshot_interval=10)
        with p:
            a, b = p.new_user("rsa"), p.new_user("rsb")
            ids = [a.upload_ok(unique_jpeg(320, 240))["id"] for _ in range(3)]
            b.upload_ok(unique_png(200, 150), content_type="image/png")
            _wait_snapshots(p, 2)  # one at the start (empty), one with these photos
            # after the snapshot: a video, a delete, a new photo, a new user
            vid = a.req("POST", "/api/v1/videos", json={"photo_ids": ids[:2], "seconds_per_photo": 1,
                                                        "resolution": "480p"}).expect(202, "video")
            vid = vid.json()["video"]["id"]
            deadline = time.monotonic() + 90
            while a.req("GET", "/api/v1/videos/" + vid).json()["video"]["status"] != "ready":
                check(time.monotonic() < deadline, "the video renders", "ready", "not yet")
                time.sleep(0.2)
            a.req("DELETE", "/api/v1/photos/" + ids[2]).expect(204, "delete")
            b.upload_ok(unique_jpeg(256, 256))
            c = p.new_user("rsc")
            c.upload_ok(unique_jpeg(200, 200))
            st = _wait_caught_up(p)
            check(st["last_snapshot_seq"] is not None and st["last_snapshot_seq"] < st["head"],
                  "changes after the last snapshot", "snapshot seq < head", st)
            before = {u.email: _state(u) for u in (a, b, c)}
            doc_a = _check_doc(p)
            token = a.access
        dest = os.path.join(tmp, "restored")
        r = _restore(peer, "box6/", dest, pull=True)
        check("applied after it" in r.stdout, "the restore says what it applied", "a summary", r.stdout)
        # The rebuilt appliance replicates on, to the same prefix: it has the
        # lost one's id, so the lease is its own, and its log goes on from
        # where S3's ends.
        with _pvd(peer, "box6/", "s3-restored", data_dir=dest, media_from_s3="true") as q:
            eq(_metric(q, "pv_restore_pull_active"), 0, "--pull-blobs: nothing left to fetch")
            doc_b = _check_doc(q)
            for db in INDEXED:
                eq(doc_b["db_digests"][db], doc_a["db_digests"][db],
                   "the %s database, byte for byte" % db)
            eq(doc_b["seq"], doc_a["seq"], "the change log's head")
            for u in (a, b, c):
                u2 = _login(q, u)
                eq(_state(u2), before[u.email], "%s sees what they saw" % u.email)
            # the keys came back: a token of the lost appliance works here
            q.req("GET", "/api/v1/me", token=token).expect(200, "an access token of the lost box")
            r2 = q.req("GET", "/api/v1/videos/" + vid, token=token).expect(200, "video").json()
            link = r2["video"]["urls"]["content"]  # S3's once the replicator has its keys
            mp4 = (q.req("GET", link).expect(200, "restored MP4").body if link.startswith("/")
                   else _s3_get(link)[2])
            eq((len(mp4), mp4[4:8]), (r2["video"]["bytes"], b"ftyp"), "the whole MP4")
            c2 = _login(q, c)
            c2.upload_ok(unique_jpeg(64, 64))
            st2 = _wait_caught_up(q)
            check(st2["cursor"] > doc_a["seq"], "the restored box replicates on", "> %d" % doc_a["seq"],
                  st2)
            eq(st2["state"], "idle", "not refused")
            # every restored file came from S3: links may point there at once
            u2 = _login(q, b)
            first = u2.req("GET", "/api/v1/photos").expect(200, "list").json()["items"][-1]
            check(first["urls"]["content"].startswith("%s/%s/box6/blobs/" % (peer.endpoint(), BUCKET)),
                  "a restored photo's link points at S3", "an S3 link", first["urls"]["content"])
        _restore(peer, "box6/", dest, expect=1)  # not over a store
    finally:
        peer.stop()


def test_restore_point_in_time_and_holes(tmp):
    peer = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "box7/", "s3-pitr", sync_batch=2)
        with p:
            a = p.new_user("pitr")
            p1 = a.upload_ok(unique_jpeg(160, 120))["id"]
            p2 = a.upload_ok(unique_jpeg(160, 120))["id"]
            h1 = _wait_caught_up(p)["head"]
            time.sleep(1.2)
            t1 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 0.6))
            time.sleep(1.2)
            a.req("DELETE", "/api/v1/photos/" + p1).expect(204, "delete")
            p3 = a.upload_ok(unique_jpeg(160, 120))["id"]
            _wait_caught_up(p)
        for at, what in ((h1, "change %d" % h1), (t1, "time " + t1)):
            dest = os.path.join(tmp, "pitr-%s" % re.sub(r"\W", "", str(at)))
            _restore(peer, "box7/", dest, at=at)
            with _pvd(peer, "box7/", "s3-pitr-restored", data_dir=dest) as q:
                _wait_pulled(q)
                _check_doc(q)
                u = _login(q, a)
                eq(sorted(u.list_all()), sorted([p1, p2]), "the photos at %s" % what)
                # its log is behind S3's: replicating there would fork it
                deadline = time.monotonic() + 20
                st = _status(q)
                while st["state"] != "refused" and time.monotonic() < deadline:
                    time.sleep(0.2)
                    st = _status(q)
                eq(st["state"], "refused", "an appliance restored to an earlier point")
                check("earlier point" in (st["last_error"] or ""), "the refusal says why",
                      "restored to an earlier point", st["last_error"])
        check(p3, "a later photo existed", "an id", p3)
        # a hole in the log: a segment gone from S3 stops the restore
        segs = sorted(k for k in peer.objects("box7/") if k.startswith("box7/log/"))
        check(len(segs) >= 3, "several segments", ">= 3", segs)
        gone = segs[1]
        root = os.path.join(peer.dir, "data", BUCKET)
        for f in os.listdir(os.path.join(root, "box7", "log")):
            if f.startswith(os.path.basename(gone)):
                os.unlink(os.path.join(root, "box7", "log", f))
        r = _restore(peer, "box7/", os.path.join(tmp, "holed"), expect=1)
        check("hole" in r.stderr, "the error names the hole", "hole", r.stderr)
    finally:
        peer.stop()


def test_restore_serves_first_and_fetches_blobs_after(tmp):
    """Without --pull-blobs the restore brings the records only; pvd on it
    fetches the blobs in the background, a download waits for its blob
    (503 "restoring" while S3 is out of reach), and a restored render holds
    its job until its photos are here."""
    peer = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "box8/", "s3-lazy-src")
        with p:
            a = p.new_user("lazy")
            ids = [a.upload_ok(unique_jpeg(320, 240))["id"] for _ in range(4)]
            v = a.req("POST", "/api/v1/videos", json={
                "photo_ids": ids[2:], "seconds_per_photo": 1, "resolution": "480p"}).expect(202, "v")
            short_id = v.json()["video"]["id"]
            at = _status(p)["head"]  # the video is queued or just started there
            _wait_caught_up(p)
            photos, _ = _state(a)
        dest = os.path.join(tmp, "lazy")
        r = _restore(peer, "box8/", dest, at=at)
        check("once pvd starts" in r.stdout, "the restore says the blobs come later", "a note",
              r.stdout)
        blobs = os.path.join(dest, "blobs")
        check(not os.path.isdir(blobs) or not any(f for _, _, f in os.walk(blobs)),
              "no blob fetched by the restore itself", "none", blobs)
        peer.stop()
        q = _pvd(peer, "box8/", "s3-lazy", data_dir=dest, user_running_jobs=2)
        with q:
            u = _login(q, a)
            eq(_metric(q, "pv_restore_pull_active"), 1, "fetching in the background")
            r = u.req("GET", "/api/v1/photos/%s/content" % ids[0])
            r.expect(503, "a photo not fetched while S3 is down")
            eq(r.json()["error"]["code"], "restoring", "the answer says why")
            check(r.header("Retry-After"), "Retry-After", "set", None)
            time.sleep(1.5)
            v = u.req("GET", "/api/v1/videos/" + short_id).expect(200, "v2").json()["video"]
            check(v["status"] in ("queued", "running"), "the render waits for its photos",
                  "queued", v["status"])
            peer.start()
            t0 = time.monotonic()
            body = u.req("GET", "/api/v1/photos/%s/content" % ids[0]).expect(200, "fetched").body
            eq(hashlib.sha256(body).hexdigest(), photos[ids[0]]["content"], "its bytes")
            check(time.monotonic() - t0 < 10, "fetched on first use, not after the backoff",
                  "< 10 s", time.monotonic() - t0)
            deadline = time.monotonic() + 120
            while True:
                v = u.req("GET", "/api/v1/videos/" + short_id).expect(200, "v2").json()["video"]
                if v["status"] == "ready":
                    break
                check(v["status"] in ("queued", "running") and time.monotonic() < deadline,
                      "the held render goes on once its photos are here", "ready", v)
                time.sleep(0.3)
            mp4 = q.req("GET", v["urls"]["content"]).expect(200, "the MP4").body
            check(mp4[4:8] == b"ftyp", "an MP4", "ftyp", mp4[:8])
            _wait_pulled(q)
            check(_metric(q, "pv_restore_blobs_fetched_total") >= len(ids),
                  "the originals fetched after start", ">= %d" % len(ids),
                  _metric(q, "pv_restore_blobs_fetched_total"))
            _check_doc(q)
            photos2, _ = _state(u)
            eq(photos2, photos, "every photo as it was, bytes too")
            q.stop()
            n_lines = len(q.log_text().splitlines())
            _restart(q)
            eq(_metric(q, "pv_restore_pull_active"), 0, "nothing left to fetch after a restart")
            second = "\n".join(q.log_text().splitlines()[n_lines:])
            check("fetching the restore's blobs" not in second, "the second start has no pull",
                  "no pull", second[-600:])
    finally:
        peer.stop()


def _s3_get(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def test_media_links_point_at_s3_once_it_has_the_file(tmp):
    peer = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "box9/", "s3-media", media_from_s3="true")
        with p:
            csp = p.req("GET", "/").header("Content-Security-Policy")
            check(("img-src 'self' blob: data: %s;" % peer.endpoint()) in csp and
                  ("media-src 'self' blob: %s;" % peer.endpoint()) in csp,
                  "the web UI may show pictures from S3", peer.endpoint(), csp)
            a = p.new_user("media")
            ctl(p, "sync", "pause")
            jpeg = unique_jpeg(320, 240)
            pid = a.upload_ok(jpeg)["id"]
            urls = a.req("GET", "/api/v1/photos/" + pid).expect(200, "photo").json()["photo"]["urls"]
            check(urls["content"].startswith("/media/photos/"),
                  "not in S3 yet: the link points at the appliance", "/media/...", urls["content"])
            ctl(p, "sync", "resume")
            vid = a.req("POST", "/api/v1/videos", json={"photo_ids": [pid], "seconds_per_photo": 1,
                                                        "resolution": "480p"}).expect(202, "video")
            vid = vid.json()["video"]["id"]
            deadline = time.monotonic() + 90
            while a.req("GET", "/api/v1/videos/" + vid).json()["video"]["status"] != "ready":
                check(time.monotonic() < deadline, "the video renders", "ready", "not yet")
                time.sleep(0.2)
            _wait_caught_up(p)
            ph = a.req("GET", "/api/v1/photos/" + pid).expect(200, "photo").json()["photo"]
            base = "%s/%s/box9/blobs/" % (peer.endpoint(), BUCKET)
            for what, want, ctype in (("content", jpeg, "image/jpeg"), ("thumbnail", None, "image/jpeg")):
                url = ph["urls"][what]
                check(url.startswith(base) and "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url,
                      "the %s link is a presigned S3 GET" % what, base + "xx/<sha256>?X-Amz-...", url)
                status, got_type, body = _s3_get(url)
                eq(status, 200, "S3 serves the %s" % what)
                eq(got_type, ctype, "with the right Content-Type")
                if want is not None:
                    eq(body, want, "the photo's bytes, from S3")
                else:
                    eq(body, p.req("GET", "/api/v1/photos/%s/thumbnail" % pid, token=a.access)
                       .expect(200, "thumbnail").body, "the thumbnail's bytes, from S3")
            lst = a.req("GET", "/api/v1/photos").expect(200, "list").json()["items"]
            check(lst[0]["urls"]["content"].startswith(base), "lists link to S3 too", base,
                  lst[0]["urls"]["content"])
            v = a.req("GET", "/api/v1/videos/" + vid).expect(200, "video").json()["video"]
            status, got_type, mp4 = _s3_get(v["urls"]["content"])
            eq((status, got_type), (200, "video/mp4"), "the MP4 from S3")
            eq((len(mp4), mp4[4:8]), (v["bytes"], b"ftyp"), "the whole MP4")
        # media_from_s3 without a bucket says so
        r = subprocess.run([PVD_BIN, "--check-config", "--set", "media_from_s3=true"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "media_from_s3 needs s3_bucket" in r.stderr,
              "--check-config refuses media_from_s3 alone", "an error", r.stderr)
    finally:
        peer.stop()


def test_lease_refuses_a_second_appliance(tmp):
    peer = S3Peer(tmp).start()
    try:
        with _pvd(peer, "box8/", "s3-lease-a") as p:
            p.new_user("leasea").upload_ok(unique_jpeg(100, 100))
            _wait_caught_up(p)
            lease = peer.objects("box8/")["box8/lease.json"]
            before = {k: v for k, v in peer.objects("box8/").items() if k != "box8/lease.json"}
            # a second appliance whose log is longer than what S3 holds (so
            # it is not refused for being behind): the lease stops it
            bdir = os.path.join(tmp, "b-data")
            with Pvd({}, name="s3-lease-b0", data_dir=bdir).start() as q0:
                ub = q0.new_user("leaseb")
                for _ in range(3):
                    ub.upload_ok(unique_jpeg(100, 100))
            with _pvd(peer, "box8/", "s3-lease-b", data_dir=bdir) as q:
                deadline = time.monotonic() + 20
                st = _status(q)
                while st["state"] != "refused" and time.monotonic() < deadline:
                    time.sleep(0.2)
                    st = _status(q)
                eq(st["state"], "refused", "a second appliance on the prefix")
                check("lease.json is held by appliance" in (st["last_error"] or ""),
                      "the refusal names the lease", "held by appliance ...", st["last_error"])
                eq(st["cursor"], 0, "it sent nothing")
                after = {k: v for k, v in peer.objects("box8/").items() if k != "box8/lease.json"}
                eq(sorted(after), sorted(before), "nothing of the second one in S3")
                for k in before:
                    eq(after[k], before[k], "%s unchanged" % k)
                eq(_status(p)["state"], "idle", "the first goes on")
            check(b'"appliance"' in lease, "the lease names its appliance", "appliance", lease)
    finally:
        peer.stop()


def _noise_png(w, h):
    """A PNG of random pixels: as many bytes as pixels x 3, whatever zlib does."""
    import struct
    import zlib
    raw = b"".join(b"\x00" + os.urandom(w * 3) for _ in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))


def test_big_blob_in_parts_resumes(tmp):
    """A photo past the multipart threshold goes up in parts; a part that
    fails (the test build's failure seam, repl_part) leaves the upload in
    S3, and the next pass resumes it: ListParts, then the parts missing."""
    peer = S3Peer(tmp).start()
    try:
        cfg = {"s3_multipart_threshold": "5M", "s3_part_size": "5M"}
        with _pvd(peer, "box9/", "s3-parts", env={"PV_FAILPOINTS": "repl_part:2"}, **cfg) as p:
            a = p.new_user("parts")
            data = _noise_png(1600, 1200)  # 5.8 MB: a part of 5 MB and one of 0.8
            check(len(data) > 5 << 20, "a photo past the threshold", "> 5 MiB", len(data))
            ph = a.upload_ok(data, content_type="image/png")
            st = _wait_caught_up(p)
            check(st["failures"] >= 1, "the part that failed failed the pass", ">= 1", st)
            check(st["parts_resumed"] >= 1, "the next pass resumed the upload", ">= 1 part kept", st)
            blobs = peer.objects("box9/blobs/")
            key = "box9/blobs/%s/%s" % (ph["sha256"][:2], ph["sha256"])
            check(key in blobs, "the photo is in S3", key, sorted(blobs))
            eq(hashlib.sha256(blobs[key]).hexdigest(), ph["sha256"], "its bytes, whole")
            eq(blobs[key], data, "byte for byte")
    finally:
        peer.stop()


def test_credentials_from_instance_metadata(tmp):
    """No keys in the environment or files: pvd asks the instance's role
    (IMDSv2, a loopback peer here) and fetches again before they expire."""
    peer = S3Peer(tmp).start()
    imds = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "..", "peers", "imds.py"),
                             "--watch-pid", str(os.getpid()), "--expires-in", "303",
                             "--key-id", "S3RVER", "--secret", "S3RVER"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(imds.stdout.readline().strip())
        endpoint = "http://127.0.0.1:%d" % port
        with _pvd(peer, "box10/", "s3-imds", creds=False, aws_imds_endpoint=endpoint) as p:
            a = p.new_user("imds")
            a.upload_ok(unique_jpeg(100, 100))
            st = _wait_caught_up(p)
            eq(st["last_error"], None, "replicating with the role's keys")
            # 303 s keys are inside the 300 s refresh margin after 3 s: fetched again
            import json as jsonlib
            import urllib.request
            deadline = time.monotonic() + 30
            while True:
                stats = jsonlib.loads(urllib.request.urlopen(endpoint + "/_stats", timeout=5).read())
                if stats.get("documents", 0) >= 2:
                    break
                check(time.monotonic() < deadline, "the keys fetched again before they expire",
                      ">= 2 fetches", stats)
                a.upload_ok(unique_jpeg(100, 100))
                time.sleep(1)
            _wait_caught_up(p)
            check("S3RVER" not in p.log_text(), "no key in the log", "absent", "present")
    finally:
        imds.kill()
        imds.wait()
        peer.stop()


def test_credentials_from_a_shared_file_profile(tmp):
    peer = S3Peer(tmp).start()
    try:
        cred = os.path.join(tmp, "credentials")
        with open(cred, "w") as f:
            f.write("[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n"
                    "[pvtest]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n")
        with _pvd(peer, "box11/", "s3-profile", creds=False, aws_profile="pvtest",
                  env={"AWS_SHARED_CREDENTIALS_FILE": cred}) as p:
            p.new_user("profile").upload_ok(unique_jpeg(100, 100))
            st = _wait_caught_up(p)
            eq(st["last_error"], None, "replicating with the profile's keys")
            check(any(k.startswith("box11/blobs/") for k in peer.objects("box11/")),
                  "blobs in S3", "some", "none")
    finally:
        peer.stop()


def test_a_cut_short_blob_in_s3_is_sent_again(tmp):
    """Some S3-compatible stores keep what a PUT cut short sent (s3rver
    does; AWS never does). A blob found in S3 with another size than the
    local file is sent again, not taken for done."""
    import urllib.request
    peer = S3Peer(tmp).start()
    try:
        with _pvd(peer, "box12/", "s3-repair") as p:
            a = p.new_user("repair")
            _wait_caught_up(p)
            ctl(p, "sync", "pause")
            data = unique_jpeg(320, 240)
            ph = a.upload_ok(data)
            key = "box12/blobs/%s/%s" % (ph["sha256"][:2], ph["sha256"])
            req = urllib.request.Request("%s/%s/%s" % (peer.endpoint(), BUCKET, key),
                                         data=data[:100], method="PUT")
            urllib.request.urlopen(req, timeout=10).read()
            eq(len(peer.objects(key)[key]), 100, "a cut-short copy is in S3")
            ctl(p, "sync", "resume")
            st = _wait_caught_up(p)
            eq(peer.objects(key)[key], data, "the blob in S3, whole again")
            check(st["blobs_repaired"] >= 1, "counted as repaired", ">= 1", st)
    finally:
        peer.stop()
