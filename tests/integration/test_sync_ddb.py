"""DynamoDB replication against a real DynamoDB peer on loopback (dynalite).

pvd mirrors every video's status into a table keyed (user_id, video_id).
After each scenario every item is compared with what the store holds (the
videos API, per user, once no render is running): the same set of videos,
and each item's attributes are the record's, in the text forms
schema/records.json names; error and unset times are absent. Scenarios:
from scratch into a table pvd makes; the peer stopped mid-run and started
again; pvd killed with SIGKILL mid-batch (writes slowed by a proxy so
that requests are in flight); deletes; many updates of one video sent as
one write (coalesced); a full load into a table that held stale items; a
table another appliance writes to is refused; S3 going on while DynamoDB
is away; an item with a later seq never overwritten; throttling and
UnprocessedItems (a proxy in front of dynalite answers as AWS does when
it throttles: dynalite never does). dynalite accepts any signature:
signing is checked against botocore in tests/unit/sigv4_botocore.py.
"""
import http.client
import http.server
import json
import os
import re
import subprocess
import threading
import time

import botocore.session
from botocore.config import Config

from harness import PVD_BIN, Pvd, check, eq, free_port, unique_jpeg
from test_pvctl import ctl, ctl_json

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "..", "peers", "dynalite.sh")
TABLE = "pv_video_status"
CREDS = {"AWS_ACCESS_KEY_ID": "DDBTEST", "AWS_SECRET_ACCESS_KEY": "ddb-test-secret",
         "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}
ID = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class DdbPeer:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "dynalite")
        self.port = free_port()
        self._client = None

    def start(self):
        r = subprocess.run(["sh", PEER, "start", self.dir, str(self.port)],
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise AssertionError("dynalite did not start: %s" % r.stderr[-600:])
        return self

    def stop(self):
        subprocess.run(["sh", PEER, "stop", self.dir], capture_output=True, timeout=30)

    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def client(self):
        if self._client is None:
            s = botocore.session.get_session()
            self._client = s.create_client(
                "dynamodb", region_name="us-east-1", endpoint_url=self.endpoint(),
                aws_access_key_id="x", aws_secret_access_key="y",
                config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10))
        return self._client

    def items(self, table=TABLE):
        """{(user_id, video_id): {attr: python value}} of every item (Scan)."""
        out, start = {}, None
        while True:
            kw = {"TableName": table}
            if start:
                kw["ExclusiveStartKey"] = start
            page = self.client().scan(**kw)
            for it in page["Items"]:
                plain = {k: (v["S"] if "S" in v else float(v["N"]) if "N" in v else v) for k, v in it.items()}
                out[(plain["user_id"], plain["video_id"])] = plain
            start = page.get("LastEvaluatedKey")
            if not start:
                return out

    def make_table(self, table=TABLE):
        self.client().create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"},
                                  {"AttributeName": "video_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"},
                       {"AttributeName": "video_id", "KeyType": "RANGE"}])
        deadline = time.monotonic() + 10
        while self.client().describe_table(TableName=table)["Table"]["TableStatus"] != "ACTIVE":
            check(time.monotonic() < deadline, "the table becomes ACTIVE", "ACTIVE", "not yet")
            time.sleep(0.05)


def _pvd(peer, name, data_dir=None, creds=None, **extra):
    cfg = {"dynamodb_table": TABLE, "dynamodb_endpoint": peer.endpoint(), "dynamodb_create": "true",
           "sync_interval": 1, "changelog_trim_seconds": 1, "aws_imds_endpoint": "off",
           "user_queued_jobs": 50}
    cfg.update(extra)
    saved = {k: os.environ.get(k) for k in CREDS}
    os.environ.update(creds or CREDS)
    try:
        return Pvd(cfg, name=name, data_dir=data_dir).start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _restart(p):
    saved = {k: os.environ.get(k) for k in CREDS}
    os.environ.update(CREDS)
    try:
        return p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _status(p):
    doc = ctl_json(p, "sync", "status")
    t = [x for x in doc["result"]["targets"] if x["target"] == "ddb"]
    eq(len(t), 1, "one target named ddb")
    return t[0]


def _wait_caught_up(p, timeout=60):
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = _status(p)
        if st["head"] > 0 and st["cursor"] == st["head"] and st["state"] == "idle":
            return st
        time.sleep(0.2)
    raise AssertionError("DynamoDB replication did not catch up within %d s: %r" % (timeout, st))


def _videos(u):
    """The user's videos as the store has them: {id: video JSON}."""
    items = u.req("GET", "/api/v1/videos").expect(200, "videos").json()["items"]
    return {v["id"]: v for v in items}


def _settle(users, timeout=90):
    """Waits until no video is queued or running (progress then is the
    stored one, not a live figure)."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [v for u in users for v in _videos(u).values() if v["status"] in ("queued", "running")]
        if not busy:
            return
        check(time.monotonic() < deadline, "renders end", "none running", busy[:2])
        time.sleep(0.2)


def _compare(p, peer, users):
    """Every item equals the store's video; nothing else is in the table."""
    _settle(users)
    st = _wait_caught_up(p)
    want = {}
    for u in users:
        for vid, v in _videos(u).items():
            want[(u.id, vid)] = v
    got = peer.items()
    eq(sorted(got), sorted(want), "the table holds exactly the store's videos")
    for key, v in want.items():
        it = got[key]
        what = "item %s/%s" % key
        check(ID.match(it["user_id"]) and ID.match(it["video_id"]), what + ": ids as 26-char base32",
              "Crockford base32", key)
        eq(it["status"], v["status"], what + ": status")
        check(abs(it["progress"] - v["progress"]) < 1e-9, what + ": progress", v["progress"], it["progress"])
        eq(it.get("error"), v["error"], what + ": error (absent when none)")
        eq(it["title"], v["title"], what + ": title")
        for a in ("created_at", "started_at", "finished_at"):
            eq(it.get(a), v[a], what + ": " + a + " (absent when not set)")
            check(it.get(a) is None or TIME.match(it[a]), what + ": " + a + " RFC 3339 with ms",
                  "YYYY-MM-DDTHH:MM:SS.mmmZ", it.get(a))
        for a in ("duration_s", "width", "height", "bytes"):
            check(abs(it[a] - v[a]) < 1e-9, what + ": " + a, v[a], it[a])
        check(0 < it["seq"] <= st["cursor"], what + ": seq within the log", "1..%d" % st["cursor"], it["seq"])
        extra = set(it) - {"user_id", "video_id", "status", "progress", "error", "title", "created_at",
                           "started_at", "finished_at", "duration_s", "width", "height", "bytes", "seq"}
        eq(extra, set(), what + ": no attribute records.json does not name")
    return st, got


def _video(u, pids, **kw):
    body = {"photo_ids": pids, "seconds_per_photo": 1, "resolution": "480p"}
    body.update(kw)
    return u.req("POST", "/api/v1/videos", json=body).expect(202, "video").json()["video"]["id"]


def _cancelled(u, pids, title=""):
    """A video queued and cancelled at once: two changes, no render."""
    vid = _video(u, pids, title=title)
    r = u.req("POST", "/api/v1/videos/%s/cancel" % vid)
    check(r.status in (200, 202, 204, 409), "cancel", "2xx (or 409 once it ended)", r.status)
    return vid


def _metric(p, name):
    m = p.private("GET", "/metrics").body.decode()
    found = re.search(r"^%s (\d+)$" % re.escape(name), m, re.M)
    check(found, "metric " + name, "present", m[-300:])
    return int(found.group(1))


# ------------------------------------------------------------------ tests

def test_converges_from_scratch(tmp):
    peer = DdbPeer(tmp).start()
    try:
        p = _pvd(peer, "ddb-converge")
        with p:
            a, b = p.new_user("ddba"), p.new_user("ddbb")
            pa = [a.upload_ok(unique_jpeg(320, 240))["id"] for _ in range(2)]
            pb = [b.upload_ok(unique_jpeg(320, 240))["id"]]
            ready = _video(a, pa, title="Beach \u00e9t\u00e9 \"quoted\"")
            gone = _cancelled(a, pa, title="to delete")
            never = _cancelled(a, pa, title="cancelled while queued")  # behind `ready`: never started
            kept = _cancelled(b, pb, title="")
            _settle([a, b])
            a.req("DELETE", "/api/v1/videos/" + gone).expect(204, "delete a video")
            st, items = _compare(p, peer, [a, b])
            eq(len(items), 3, "three videos left")
            check((a.id, gone) not in items, "the deleted video's item is gone", "absent", "present")
            it = items[(a.id, ready)]
            check(it["status"] in ("ready", "failed"), "the render ended", "ready", it["status"])
            check("finished_at" in it and "started_at" in it, "times of a finished render",
                  "present", sorted(it))
            eq(items[(b.id, kept)]["status"], "cancelled", "the cancelled video")
            check("started_at" not in items[(a.id, never)] and "error" not in items[(a.id, never)],
                  "no start time, no error: absent", "absent", items[(a.id, never)])
            eq(st["last_error"], None, "no error")
            check(st["records_written"] >= 3, "records_written counts items", ">= 3", st)
            check("dynamodb" in st["where"] and TABLE in st["where"], "where names the table", TABLE,
                  st["where"])
            out, _ = ctl(p, "sync", "status")
            check("ddb" in out and TABLE in out, "pvctl sync status names the target and table", "ddb",
                  out)
            eq(_metric(p, "pv_sync_ddb_cursor"), st["cursor"], "metrics: the cursor")
            eq(_metric(p, "pv_sync_ddb_lag_entries"), 0, "metrics: no lag")
            check(_metric(p, "pv_sync_ddb_items_total") >= 3, "metrics: items written", ">= 3", "fewer")
            log = p.log_text()
            check("made table " + TABLE in log, "the log says it made the table", "a line", log[-500:])
            check("ddb-test-secret" not in log and "DDBTEST" not in log, "no key in the log",
                  "absent", "present")
    finally:
        peer.stop()


def test_updates_of_one_video_are_coalesced(tmp):
    peer = DdbPeer(tmp).start()
    try:
        p = _pvd(peer, "ddb-coalesce")
        with p:
            a = p.new_user("ddbco")
            pa = [a.upload_ok(unique_jpeg(320, 240))["id"] for _ in range(2)]
            _wait_caught_up(p)
            before = _status(p)["records_written"]
            ctl(p, "sync", "pause", "ddb")
            head0 = _status(p)["head"]
            vids = [_video(a, pa) for _ in range(2)]  # two renders, one after the other
            _settle([a])
            head1 = _status(p)["head"]
            check(head1 - head0 >= 8, "each render wrote several changes (status, progress)",
                  ">= 8 changes", head1 - head0)
            ctl(p, "sync", "resume", "ddb")
            st, items = _compare(p, peer, [a])
            eq(st["records_written"] - before, 2, "one write per video for %d changes" % (head1 - head0))
            for v in vids:
                check(items[(a.id, v)]["seq"] > head0, "the item carries its last change", "> %d" % head0,
                      items[(a.id, v)]["seq"])
    finally:
        peer.stop()


def test_peer_down_then_back(tmp):
    peer = DdbPeer(tmp).start()
    try:
        p = _pvd(peer, "ddb-outage")
        with p:
            a = p.new_user("ddbout")
            pa = [a.upload_ok(unique_jpeg(160, 120))["id"]]
            first = _cancelled(a, pa)
            _compare(p, peer, [a])
            before = _status(p)
            peer.stop()
            t0 = time.monotonic()
            vids = [_cancelled(a, pa, title="during the outage %d" % i) for i in range(4)]
            a.req("DELETE", "/api/v1/videos/" + first).expect(204, "delete during the outage")
            check(time.monotonic() - t0 < 20, "requests go on while DynamoDB is down", "< 20 s",
                  time.monotonic() - t0)
            deadline = time.monotonic() + 20
            st = _status(p)
            while st["failures"] == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
                st = _status(p)
            check(st["failures"] > 0 and st["last_error"], "the failure shows", "an error", st)
            check(st["state"] in ("waiting", "sending"), "waiting to retry", "waiting", st["state"])
            eq(st["cursor"], before["cursor"], "the cursor stays while DynamoDB is down")
            check(st["head"] > st["cursor"], "a lag", "head > cursor", st)
            check(_metric(p, "pv_sync_ddb_failures_total") > 0, "metrics: failures", "> 0", 0)
            check("DynamoDB replication failed" in p.log_text(), "the log says so", "a warning", "none")
            peer.start()  # the same port and data
            ctl(p, "sync", "now", "ddb")
            st, items = _compare(p, peer, [a])
            eq(len(items), len(vids), "the outage's videos, and the delete")
            eq(st["state"], "idle", "idle again")
    finally:
        peer.stop()


def test_kill9_mid_batch_then_converges(tmp):
    peer = DdbPeer(tmp).start()
    slow = Throttler(peer, throttle=False, delay=0.05).start()  # requests in flight at the kill
    try:
        p = _pvd(slow, "ddb-kill", sync_batch=2)
        with p:
            a = p.new_user("ddbkill")
            pa = [a.upload_ok(unique_jpeg(160, 120))["id"]]
            _wait_caught_up(p)
            ctl(p, "sync", "pause", "ddb")
            vids = [_cancelled(a, pa, title="k%d" % i) for i in range(16)]
            for v in vids[:4]:
                a.req("DELETE", "/api/v1/videos/" + v).expect(204, "delete")
            ctl(p, "sync", "resume", "ddb")
            time.sleep(0.4)  # batches of 2 under way, 50 ms a write
            st = _status(p)
            p.kill9()
            check(0 < st["cursor"] < st["head"], "killed part way through the backlog",
                  "0 < cursor < head", st)
            _restart(p)
            st, items = _compare(p, peer, [a])
            eq(len(items), 12, "16 videos made, 4 deleted")
    finally:
        slow.stop()
        peer.stop()


def test_full_load_into_a_table_with_stale_items(tmp):
    peer = DdbPeer(tmp).start()
    try:
        # pvd without the target first: nobody holds the log, it is trimmed
        p = _pvd(peer, "ddb-load", dynamodb_table="")
        try:
            a, b = p.new_user("ddbl1"), p.new_user("ddbl2")
            pa = [a.upload_ok(unique_jpeg(160, 120))["id"]]
            pb = [b.upload_ok(unique_jpeg(160, 120))["id"]]
            va = [_cancelled(a, pa, title="a%d" % i) for i in range(5)]
            [_cancelled(b, pb, title="b%d" % i) for i in range(3)]
            a.req("DELETE", "/api/v1/videos/" + va[0]).expect(204, "delete")
            eq(ctl_json(p, "sync", "status")["result"]["targets"], [], "no target yet")
            deadline = time.monotonic() + 15
            while ctl_json(p, "status")["result"]["changes"]["kept"] != 0:  # the trimmer's ticks
                check(time.monotonic() < deadline, "the log trimmed to the head", 0,
                      ctl_json(p, "status")["result"]["changes"])
                time.sleep(0.2)
            eq(p.stop(), 0, "pvd stops cleanly")
        except BaseException:
            p.cleanup()
            raise
        peer.make_table()
        c = peer.client()
        stale = {"user_id": {"S": a.id}, "video_id": {"S": "0" * 26}, "status": {"S": "ready"},
                 "seq": {"N": "1"}}
        c.put_item(TableName=TABLE, Item=stale)
        c.put_item(TableName=TABLE, Item=dict(stale, video_id={"S": va[0]}))  # deleted in the store
        c.put_item(TableName=TABLE, Item=dict(stale, video_id={"S": va[1]}, status={"S": "queued"}))
        p.config.update({"dynamodb_table": TABLE, "dynamodb_create": "false"})
        _restart(p)
        with p:
            st, items = _compare(p, peer, [a, b])
            eq(len(items), 7, "the store's seven videos, the stale items gone")
            check("loading table %s whole" % TABLE in p.log_text(), "the log says a full load", "a line",
                  p.log_text()[-600:])
            # then the log: a delete reaches the table
            a.req("DELETE", "/api/v1/videos/" + va[2]).expect(204, "delete")
            st, items = _compare(p, peer, [a, b])
            eq(len(items), 6, "the delete applied")
            cursor = st["cursor"]
            # the target off for a while: the log is trimmed past its cursor
            p.config.update({"dynamodb_table": ""})
            eq(p.stop(), 0, "pvd stops cleanly")
            _restart(p)
            a.req("DELETE", "/api/v1/videos/" + va[3]).expect(204, "delete while the target is off")
            _cancelled(b, pb, title="made while the target is off")
            deadline = time.monotonic() + 15
            while ctl_json(p, "status")["result"]["changes"]["kept"] != 0:
                check(time.monotonic() < deadline, "the log trimmed to the head", 0,
                      ctl_json(p, "status")["result"]["changes"])
                time.sleep(0.2)
            p.config.update({"dynamodb_table": TABLE})
            eq(p.stop(), 0, "pvd stops cleanly")
            _restart(p)
            st, items = _compare(p, peer, [a, b])
            eq(len(items), 6, "one deleted, one made while the log went: loaded whole again")
            check(st["cursor"] > cursor, "a new cursor", "> %d" % cursor, st["cursor"])
            eq(p.log_text().count("loading table %s whole" % TABLE), 2, "a second full load")
    finally:
        peer.stop()


def test_missing_table_and_foreign_table_are_refused(tmp):
    peer = DdbPeer(tmp).start()
    try:
        p = _pvd(peer, "ddb-refuse", dynamodb_create="false")
        with p:
            a = p.new_user("ddbref")
            deadline = time.monotonic() + 15
            st = _status(p)
            while not st["last_error"] and time.monotonic() < deadline:
                time.sleep(0.2)
                st = _status(p)
            check("does not exist" in (st["last_error"] or "") and "dynamodb_create" in st["last_error"],
                  "a missing table names the cause and the key", "... does not exist ... dynamodb_create",
                  st["last_error"])
            # another appliance's item, past this store's log: refused
            peer.make_table()
            peer.client().put_item(TableName=TABLE, Item={
                "user_id": {"S": a.id}, "video_id": {"S": "1" * 26}, "status": {"S": "ready"},
                "seq": {"N": "999999"}})
            ctl(p, "sync", "now", "ddb")
            deadline = time.monotonic() + 15
            while _status(p)["state"] != "refused":
                check(time.monotonic() < deadline, "a table another appliance writes is refused",
                      "refused", _status(p))
                time.sleep(0.2)
            check("another appliance" in _status(p)["last_error"], "the refusal says why",
                  "another appliance ...", _status(p)["last_error"])
            eq(len(peer.items()), 1, "nothing written into it")
    finally:
        peer.stop()


def test_s3_goes_on_while_dynamodb_is_down(tmp):
    """Two targets: DynamoDB away holds back neither S3 nor requests, and
    the change log is kept for it meanwhile."""
    from test_sync_s3 import BUCKET, CREDS as S3CREDS, S3Peer, _segments
    peer = DdbPeer(tmp).start()
    s3 = S3Peer(tmp).start()
    try:
        p = _pvd(peer, "ddb-two-targets", creds=S3CREDS, s3_bucket=BUCKET, s3_prefix="two/",
                 s3_endpoint=s3.endpoint(), s3_path_style="true")
        with p:
            a = p.new_user("ddbtwo")
            pa = [a.upload_ok(unique_jpeg(160, 120))["id"]]
            _cancelled(a, pa)
            _compare(p, peer, [a])
            peer.stop()
            vids = [_cancelled(a, pa, title="s3 only %d" % i) for i in range(3)]
            a.upload_ok(unique_jpeg(160, 120))
            deadline = time.monotonic() + 60
            while True:  # S3 catches up: cursor == head
                targets = {t["target"]: t for t in ctl_json(p, "sync", "status")["result"]["targets"]}
                if targets["s3"]["cursor"] == targets["s3"]["head"] and targets["s3"]["state"] == "idle":
                    break
                check(time.monotonic() < deadline, "S3 catches up while DynamoDB is down",
                      "cursor == head", targets)
                time.sleep(0.2)
            segs = _segments(s3.objects("two/"), "two/")
            eq(max(last for _, last, _ in segs), targets["s3"]["cursor"], "S3's segments reach its cursor")
            eq(sorted(targets), ["ddb", "s3"], "both targets in pvctl sync status")
            eq(targets["s3"]["cursor"], targets["s3"]["head"], "S3 caught up")
            check(targets["ddb"]["cursor"] < targets["ddb"]["head"], "DynamoDB behind",
                  "cursor < head", targets["ddb"])
            time.sleep(2.5)  # trimmer ticks: the log above the ddb cursor stays
            check(ctl_json(p, "status")["result"]["changes"]["kept"] >=
                  targets["ddb"]["head"] - targets["ddb"]["cursor"], "the log is kept for DynamoDB",
                  "entries above its cursor", ctl_json(p, "status")["result"]["changes"])
            peer.start()
            ctl(p, "sync", "now", "ddb")
            st, items = _compare(p, peer, [a])
            eq(len(items), 1 + len(vids), "every video once DynamoDB is back")
    finally:
        peer.stop()
        s3.stop()


def test_a_newer_item_is_never_overwritten(tmp):
    """The seq condition: an item carrying a later change than the one being
    sent stays as it is, and the failed condition counts as done."""
    peer = DdbPeer(tmp).start()
    try:
        p = _pvd(peer, "ddb-condition")
        with p:
            a = p.new_user("ddbcond")
            pa = [a.upload_ok(unique_jpeg(160, 120))["id"]]
            vid = _cancelled(a, pa, title="cancelled")
            _compare(p, peer, [a])
            ctl(p, "sync", "pause", "ddb")
            later_seq = _status(p)["head"] + 1000
            peer.client().put_item(TableName=TABLE, Item={
                "user_id": {"S": a.id}, "video_id": {"S": vid}, "status": {"S": "ready"},
                "title": {"S": "written by a later change"}, "seq": {"N": str(later_seq)}})
            a.req("DELETE", "/api/v1/videos/" + vid).expect(204, "delete")  # older than the item
            other = _cancelled(a, pa, title="another")
            failures = _status(p)["failures"]
            ctl(p, "sync", "resume", "ddb")
            st = _wait_caught_up(p)
            eq(st["failures"], failures, "no failed pass: a failed condition counts as done")
            items = peer.items()
            it = items.get((a.id, vid))
            check(it is not None, "the newer item is not deleted by an older delete", "present", "gone")
            eq((it["title"], it["status"], int(it["seq"])), ("written by a later change", "ready", later_seq),
               "the newer item stays as it was")
            check((a.id, other) in items, "the batch went on past it", "the other video", sorted(items))
    finally:
        peer.stop()


class Throttler:
    """A proxy in front of dynalite that does what dynalite never does:
    every second item write is answered 400 ProvisionedThroughputExceeded-
    Exception (AWS's shape), and a BatchWriteItem is passed on with only
    its first item, the others handed back as UnprocessedItems; or (slow)
    every write answered `delay` seconds late. Anything else goes through
    as it is."""

    def __init__(self, peer, throttle=True, delay=0.0):
        self.peer = peer
        self.throttle, self.delay = throttle, delay
        self.count = {"throttled": 0, "unprocessed": 0, "passed": 0}
        self.n = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                op = target.rsplit(".", 1)[-1]
                with proxy.lock:
                    proxy.n += 1
                    write = op in ("PutItem", "DeleteItem", "BatchWriteItem")
                    throttle = proxy.throttle and write and proxy.n % 2 == 0
                if write and proxy.delay:
                    time.sleep(proxy.delay)
                if throttle:
                    proxy.count["throttled"] += 1
                    return self.answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#"
                                             "ProvisionedThroughputExceededException",
                                             "message": "The level of configured provisioned throughput "
                                                        "for the table was exceeded."})
                left = {}
                if op == "BatchWriteItem" and proxy.throttle:
                    doc = json.loads(body)
                    for t, reqs in doc["RequestItems"].items():
                        if len(reqs) > 1:
                            left[t] = reqs[1:]
                            doc["RequestItems"][t] = reqs[:1]
                            proxy.count["unprocessed"] += len(reqs) - 1
                    body = json.dumps(doc).encode()
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                c = http.client.HTTPConnection("127.0.0.1", proxy.peer.port, timeout=30)
                c.request("POST", "/", body, hdrs)
                r = c.getresponse()
                data = r.read()
                c.close()
                proxy.count["passed"] += 1
                if op == "BatchWriteItem" and r.status == 200 and left:
                    doc = json.loads(data)
                    doc.setdefault("UnprocessedItems", {}).update(left)
                    return self.answer(200, doc)
                self.send_response(r.status)
                self.send_header("Content-Type", r.getheader("Content-Type", "application/x-amz-json-1.0"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def answer(self, status, doc):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.port = free_port()
        self.Handler = Handler
        self.server = None

    def start(self):
        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client gone mid-answer (pvd killed): nothing to report

        self.server = Server(("127.0.0.1", self.port), self.Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port


def test_throttling_is_backed_off(tmp):
    peer = DdbPeer(tmp).start()
    proxy = Throttler(peer)  # not listening yet: DynamoDB away
    try:
        p = _pvd(proxy, "ddb-throttle")
        with p:
            a = p.new_user("ddbthr")
            pa = [a.upload_ok(unique_jpeg(160, 120))["id"]]
            [_cancelled(a, pa, title="before %d" % i) for i in range(6)]
            ctl(p, "sync", "pause", "ddb")
            time.sleep(0.5)  # a pass under way (refused connection) ends
            f0 = _status(p)["failures"]
            check(f0 > 0, "failures while DynamoDB is away", "> 0", f0)
            proxy.start()  # the table is made, then loaded whole (BatchWriteItem)
            ctl(p, "sync", "now", "ddb")
            _compare(p, peer, [a])
            check(proxy.count["unprocessed"] > 0, "UnprocessedItems handed back", "> 0", proxy.count)
            [_cancelled(a, pa, title="after %d" % i) for i in range(6)]  # PutItems, half throttled
            st, items = _compare(p, peer, [a])
            eq(len(items), 12, "every video")
            check(proxy.count["throttled"] >= 6, "throttled answers", ">= 6", proxy.count)
            eq(st["failures"], f0, "throttling is backed off within the pass, not a failed pass")
            check(_metric(p, "pv_sync_ddb_throttled_total") >= proxy.count["throttled"],
                  "metrics: every throttled answer counted", proxy.count["throttled"], "fewer")
    finally:
        proxy.stop()
        peer.stop()


def test_bad_dynamodb_keys_are_refused(tmp):
    cases = [("dynamodb_table=ab", "dynamodb_table: 3 to 255"),
             ("dynamodb_table=pv video", "dynamodb_table: 3 to 255"),
             ("dynamodb_endpoint=ftp://127.0.0.1:1", "dynamodb_endpoint: expected http"),
             ("dynamodb_region=eu-west-1/../x", "dynamodb_region: a region name"),
             ("dynamodb_create=maybe", "dynamodb_create")]
    for kv, want in cases:
        r = subprocess.run([PVD_BIN, "--data", os.path.join(tmp, "d"), "--set", "dynamodb_table=pv_video_status",
                            "--set", kv, "--check-config"], capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and want in r.stderr, "pvd --check-config --set %s" % kv,
              "refused: " + want, (r.returncode, r.stderr[-300:]))
    r = subprocess.run([PVD_BIN, "--data", os.path.join(tmp, "d"), "--set", "dynamodb_table=pv_video_status",
                        "--set", "dynamodb_region=eu-west-1", "--set", "dynamodb_create=true",
                        "--set", "dynamodb_endpoint=http://127.0.0.1:8000", "--check-config"],
                       capture_output=True, text=True, timeout=30)
    eq(r.returncode, 0, "good DynamoDB keys pass (stderr %r)" % r.stderr[-300:])
