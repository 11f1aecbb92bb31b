"""PostgreSQL replication against a real PostgreSQL 15 on loopback.

One throwaway cluster for the module (tests/peers/postgres.sh: initdb into
a temp dir, a Unix socket dir there, 127.0.0.1 and a free port; stopped by
the last test, and by its watchdog if the runner dies); each test gets a
database of its own. After each scenario every row of pv_users, pv_photos
and pv_videos is compared with the store: the records are read from the
store's LMDB files (mdb_dump) and turned into the rows schema/records.json
says they map to, here in Python, apart from pvd's C; the database's rows
come from psql (row_to_json). The sets of ids must be equal and every
column of every row too (seq aside: it is the change that wrote the row).
"""
import datetime
import json
import os
import re
import subprocess
import tempfile
import time

from harness import Pvd, check, eq, unique_jpeg, unique_png
from test_pvctl import ctl, ctl_json, mp_unpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
PEER = os.path.join(HERE, "..", "peers", "postgres.sh")
SECRET = "hunter2-never-shown"
TEST_TIMEOUT = 150

with open(os.path.join(ROOT, "schema", "records.json")) as _f:
    SCHEMA = json.load(_f)
TABLES = {k: r["sql"] for k, r in SCHEMA["records"].items() if r.get("sql")}
DBS = {d["logged"]: d["name"] for d in SCHEMA["dbs"] if d.get("logged")}


class Cluster:
    """The module's PostgreSQL: started on first use."""
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pvpg-")
        os.chmod(self.dir, 0o755)  # the server's user reads it
        self.port = 0
        self.n = 0

    def start(self):
        r = subprocess.run(["sh", PEER, "start", self.dir, str(self.port), str(os.getpid())],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("PostgreSQL did not start: %s" % r.stderr[-600:])
        self.port = int(r.stdout.strip().splitlines()[-1])
        return self

    def stop(self):
        subprocess.run(["sh", PEER, "stop", self.dir], capture_output=True, timeout=60)

    def running(self):
        return os.path.exists(os.path.join(self.dir, "data", "postmaster.pid"))

    def psql(self, sql, db="postgres", check_rc=True):
        r = subprocess.run(["sh", PEER, "psql", self.dir, "-d", db, "-At", "-v", "ON_ERROR_STOP=1",
                            "-c", "SET TIME ZONE 'UTC'", "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if check_rc and r.returncode != 0:
            raise AssertionError("psql %r: %s" % (sql[:200], r.stderr[-600:]))
        return r.stdout

    def new_db(self, tag):
        self.n += 1
        name = "pv_%s_%d" % (tag, self.n)
        self.psql("CREATE DATABASE %s" % name)
        return name

    def dsn(self, db, host="127.0.0.1"):
        return "host=%s port=%d dbname=%s user=postgres password=%s connect_timeout=5" % (
            host, self.port, db, SECRET)


_cluster = None


def cluster():
    global _cluster
    if _cluster is None:
        _cluster = Cluster().start()
    elif not _cluster.running():
        _cluster.start()
    return _cluster


def _pvd(c, db, name, host="127.0.0.1", **extra):
    cfg = {"pg_dsn": c.dsn(db, host), "sync_interval": 1, "changelog_trim_seconds": 1}
    cfg.update(extra)
    return Pvd(cfg, name=name).start()


def _status(p):
    t = ctl_json(p, "sync", "status")["result"]["targets"]
    t = [x for x in t if x["target"] == "pg"]
    eq(len(t), 1, "the pg target in sync status")
    return t[0]


def _wait_caught_up(p, timeout=60):
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = _status(p)
        if st["head"] > 0 and st["cursor"] == st["head"] and st["state"] == "idle":
            return st
        time.sleep(0.2)
    raise AssertionError("PostgreSQL replication did not catch up within %d s: %r" % (timeout, st))


# ---------------------------------------------------------------- the store side

def _mdb_dump(data_dir, db):
    """[(key bytes, value bytes)] of one LMDB database of the store."""
    r = subprocess.run(["mdb_dump", "-s", db, os.path.join(data_dir, "store")],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("mdb_dump %s: %s" % (db, r.stderr[-400:]))
    lines = r.stdout.splitlines()
    body = lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]
    return [(bytes.fromhex(body[i].strip()), bytes.fromhex(body[i + 1].strip()))
            for i in range(0, len(body), 2)]


def _uuid(b):
    h = b.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def _mp_json(v):
    if isinstance(v, dict):
        return {k: _mp_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_mp_json(x) for x in v]
    if isinstance(v, bytes):
        return v.hex()
    return v


def _expected(kind, rec):
    """The row schema/records.json maps a record to (seq aside)."""
    row = {}
    for c in TABLES[kind]["columns"]:
        f, t, null = c["field"], c["type"], c["null"]
        if f is None:
            continue
        v = rec.get(f)
        if v is None:
            v = None if null else {"integer": 0, "smallint": 0, "bigint": 0, "text": "",
                                   "boolean": False, "double precision": 0.0, "uuid[]": [],
                                   "jsonb": {}, "bytea": b""}.get(t)
        elif t == "uuid":
            v = _uuid(v)
        elif t == "uuid[]":
            v = [_uuid(x) for x in v]
        elif t == "double precision":
            v = float(v)
        elif t == "jsonb":
            v = _mp_json(v)
        elif t == "text" and v == "" and null:
            v = None
        if t == "bytea" and v is not None:
            v = "\\x" + v.hex()
        row[c["name"]] = v
    return row


def _store_rows(p):
    """{kind: {id: expected row}} from the store's files."""
    out = {}
    for kind in TABLES:
        rows = {}
        for key, val in _mdb_dump(p.data_dir, DBS[kind]):
            rec, end = mp_unpack(val)
            eq(end, len(val), "a %s record is one msgpack value" % kind)
            eq(_uuid(key[-16:]), _uuid(rec["id"]), "the key ends in the record's id")
            rows[_uuid(rec["id"])] = _expected(kind, rec)
        out[kind] = rows
    return out


# ---------------------------------------------------------------- the database side

def _ms(ts):
    return int(round(datetime.datetime.fromisoformat(ts).timestamp() * 1000))


def _pg_rows(c, db):
    """{kind: {id: row}} from the database, values as _expected writes them."""
    out = {}
    for kind, sql in TABLES.items():
        rows = {}
        for line in c.psql("SELECT row_to_json(t) FROM %s t" % sql["table"], db).splitlines():
            r = json.loads(line)
            for col in sql["columns"]:
                v = r.get(col["name"])
                if v is not None and col["type"] == "timestamptz":
                    r[col["name"]] = _ms(v)
                elif v is not None and col["type"] == "double precision":
                    r[col["name"]] = float(v)
            # the schema's columns (a reader may add its own)
            rows[r["id"]] = {col["name"]: r.get(col["name"], "(missing)") for col in sql["columns"]}
        out[kind] = rows
    return out


def _compare(p, c, db):
    """Every row equal to the store's; the counts of each table."""
    st = _wait_caught_up(p)
    store, pg = _store_rows(p), _pg_rows(c, db)
    counts = {}
    for kind in TABLES:
        s, d = store[kind], pg[kind]
        eq(sorted(d), sorted(s), "%s: the database's ids are the store's" % TABLES[kind]["table"])
        for id_, want in s.items():
            got = dict(d[id_])
            seq = got.pop("seq")
            check(0 < seq <= st["head"], "%s %s: seq within the log" % (kind, id_),
                  "1..%d" % st["head"], seq)
            eq(got, want, "%s %s: every column" % (TABLES[kind]["table"], id_))
        counts[kind] = len(s)
    check("pw_hash" not in c.psql("SELECT string_agg(column_name, ',') FROM information_schema.columns "
                                  "WHERE table_name = 'pv_users'", db),
          "no password hashes in pv_users", "no pw_hash column", "one")
    return st, counts


def _no_secret(p):
    check(SECRET not in p.log_text(), "the DSN's password is not in pvd's log", "absent", "present")
    out, _ = ctl(p, "config", "show")
    check(SECRET not in out and "password=***" in out, "config show masks pg_dsn's password",
          "password=***", [ln for ln in out.splitlines() if "pg_dsn" in ln])
    out, _ = ctl(p, "sync", "status")
    check(SECRET not in out, "sync status does not show the password", "absent", out[-400:])


CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _api_uuid(s):
    """An API id (26 chars of Crockford base32) as the database's uuid."""
    n = 0
    for ch in s.lower():
        n = n * 32 + CROCKFORD.index(ch)
    return _uuid(n.to_bytes(17, "big")[-16:])


def _video(u, ids, **opts):
    body = {"photo_ids": ids, "seconds_per_photo": 1, "resolution": "480p"}
    body.update(opts)
    return u.req("POST", "/api/v1/videos", json=body).expect(202, "video").json()["video"]["id"]


def _wait_video(u, vid, states=("ready",), timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        v = u.req("GET", "/api/v1/videos/" + vid).json()["video"]
        if v["status"] in states:
            return v
        check(time.monotonic() < deadline, "video %s ends" % vid, states, v["status"])
        time.sleep(0.2)


# ---------------------------------------------------------------- tests

def test_converges_from_scratch(tmp):
    c = cluster()
    db = c.new_db("scratch")
    p = _pvd(c, db, "pg-scratch")
    with p:
        a, b = p.new_user("pga"), p.new_user("pgb")
        ids = [a.upload_ok(unique_jpeg(160, 120), filename="a%d.jpg" % i)["id"] for i in range(4)]
        b.upload_ok(unique_png(120, 90), content_type="image/png")
        vid = _video(a, ids[:2], title="trip")
        ctl(p, "user", "disable", b.email)
        _wait_video(a, vid)
        a.req("DELETE", "/api/v1/photos/" + ids[3]).expect(204, "delete")
        st, counts = _compare(p, c, db)
        eq(counts, {"user": 2, "photo": 4, "video": 1}, "rows")
        eq(st["where"], "pg://127.0.0.1:%d/%s" % (c.port, db), "where: the host and database")
        eq(st["last_error"], None, "no error")
        check(st["records_written"] >= 7, "rows written, counted", ">= 7", st["records_written"])
        row = c.psql("SELECT status, progress, title FROM pv_videos", db).strip()
        eq(row, "ready|1|trip", "the video's status and progress")
        eq(c.psql("SELECT disabled FROM pv_users WHERE email = '%s'" % b.email, db).strip(), "t",
           "an update (user disable) arrives")
        m = p.private("GET", "/metrics").body.decode()
        eq(re.search(r"^pv_sync_pg_cursor (\d+)$", m, re.M).group(1), str(st["cursor"]),
           "metrics: the cursor")
        eq(re.search(r"^pv_sync_pg_lag_entries (\d+)$", m, re.M).group(1), "0", "metrics: no lag")
        check(int(re.search(r"^pv_sync_pg_rows_total (\d+)$", m, re.M).group(1)) >= 7,
              "metrics: rows", ">= 7", m[-300:])
        eq(c.psql("SELECT version > 0, cursor FROM pv_schema", db).strip(), "t|%d" % st["cursor"],
           "pv_schema: the database's own cursor")
        _no_secret(p)


def test_peer_down_then_back(tmp):
    c = cluster()
    db = c.new_db("outage")
    # a host name: looked up off the loop, every address tried (the server
    # listens on 127.0.0.1 only; localhost may be ::1 first)
    p = _pvd(c, db, "pg-outage", host="localhost")
    with p:
        a = p.new_user("pgout")
        a.upload_ok(unique_jpeg(120, 90))
        before = _wait_caught_up(p)
        c.stop()
        try:
            t0 = time.monotonic()
            ids = [a.upload_ok(unique_jpeg(120, 90))["id"] for _ in range(4)]
            a.req("DELETE", "/api/v1/photos/" + ids[0]).expect(204, "delete while down")
            check(time.monotonic() - t0 < 20, "uploads go on while PostgreSQL is down", "< 20 s",
                  time.monotonic() - t0)
            ctl(p, "sync", "now", "pg")
            deadline = time.monotonic() + 20
            st = _status(p)
            while st["failures"] == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
                st = _status(p)
            check(st["failures"] > 0 and st["last_error"], "the failure shows", "an error", st)
            check(st["state"] in ("waiting", "connecting"), "waiting to retry", "waiting", st["state"])
            eq(st["cursor"], before["cursor"], "the cursor stays while PostgreSQL is down")
            check(st["head"] > st["cursor"], "a lag", "head > cursor", st)
            check("PostgreSQL replication failed" in p.log_text(), "the log says so", "a warning",
                  p.log_tail(5))
        finally:
            c.start()  # the same port and data
        ctl(p, "sync", "now", "pg")
        st, counts = _compare(p, c, db)
        eq(counts["photo"], 4, "photos after the outage")
        check("works again" in p.log_text(), "the log says it works again", "said", p.log_tail(5))
        _no_secret(p)


def test_kill9_mid_batch(tmp):
    c = cluster()
    db = c.new_db("kill")
    p = _pvd(c, db, "pg-kill", sync_batch=1)
    with p:
        a = p.new_user("pgkill")
        a.upload_ok(unique_jpeg(96, 64))
        _wait_caught_up(p)
        ctl(p, "sync", "pause", "pg")
        ids = [a.upload_ok(unique_jpeg(96, 64))["id"] for _ in range(30)]
        for pid in ids[:5]:
            a.req("DELETE", "/api/v1/photos/" + pid).expect(204, "delete")
        ctl(p, "sync", "resume", "pg")
        time.sleep(0.01)  # a batch or so in: one in flight, the rest not begun
        p.kill9()
        mid = int(c.psql("SELECT cursor FROM pv_schema", db).strip() or 0)
        p.start()
        st, counts = _compare(p, c, db)
        eq(counts["photo"], 26, "photos after the restart")
        check(st["cursor"] >= mid, "the cursor never goes back", ">= %d" % mid, st["cursor"])
        check(mid < st["head"], "killed before the catch-up ended", "< %d" % st["head"], mid)


def test_concurrent_updates_of_one_video(tmp):
    """A render writes its progress many times; a cancel and a delete race
    with it: the row follows the newest change and ends as the store's."""
    c = cluster()
    db = c.new_db("video")
    p = _pvd(c, db, "pg-video", sync_interval=1)
    with p:
        a = p.new_user("pgvid")
        ids = [a.upload_ok(unique_jpeg(160, 120))["id"] for _ in range(3)]
        v1 = _video(a, ids, seconds_per_photo=2)
        v2 = _video(a, ids[:2])
        seen = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            out = c.psql("SELECT seq, progress, status FROM pv_videos WHERE id = '%s'" % _api_uuid(v1), db).strip()
            if out:
                seq, prog, status = out.split("|")
                seen.append((int(seq), float(prog), status))
            if a.req("GET", "/api/v1/videos/" + v1).json()["video"]["status"] in ("ready", "failed"):
                break
            time.sleep(0.05)
        eq([s for s in seen], sorted(seen, key=lambda x: x[0]), "the row's seq never goes back")
        check(all(seen[i][1] <= seen[i + 1][1] for i in range(len(seen) - 1)),
              "the progress the database shows never goes back", "non-decreasing", seen[-10:])
        a.req("POST", "/api/v1/videos/%s/cancel" % v2)
        _wait_video(a, v2, ("ready", "failed", "cancelled"))
        a.req("DELETE", "/api/v1/videos/" + v2).expect(204, "delete video")
        st, counts = _compare(p, c, db)
        eq(counts["video"], 1, "videos")


def test_full_load_after_the_log_was_trimmed(tmp):
    """pvd ran without targets (the log trimmed to its head), then pg_dsn
    is set: the tables are loaded from the store, then the log followed."""
    c = cluster()
    db = c.new_db("load")
    p = Pvd({"changelog_trim_seconds": 1}, name="pg-load").start()
    try:
        a = p.new_user("pgload")
        for _ in range(5):
            a.upload_ok(unique_jpeg(64, 48))
        time.sleep(1.5)  # the log trimmed to its head: nobody reads it
        eq(p.stop(), 0, "pvd stops")
        # stale rows a previous owner left: the load removes them
        c.psql("CREATE TABLE pv_photos (id uuid PRIMARY KEY); INSERT INTO pv_photos VALUES "
               "('00000000-0000-0000-0000-000000000001')", db)
        p.config.update({"pg_dsn": c.dsn(db), "sync_interval": "1"})
        p.start()
    except BaseException:
        p.cleanup()
        raise
    with p:
        st, counts = _compare(p, c, db)
        eq(counts, {"user": 1, "photo": 5, "video": 0}, "rows after the full load")
        check("loading every user, photo and video" in p.log_text(), "the log says it loads",
              "said", p.log_tail(5))
        a.login()
        a.upload_ok(unique_jpeg(64, 48))
        ctl(p, "sync", "now", "pg")
        _compare(p, c, db)


def test_schema_migration_from_the_previous_version(tmp):
    c = cluster()
    db = c.new_db("migrate")
    p = _pvd(c, db, "pg-migrate")
    try:
        a = p.new_user("pgmig")
        for _ in range(3):
            a.upload_ok(unique_jpeg(80, 60))
        st, _ = _compare(p, c, db)
        version = int(c.psql("SELECT version FROM pv_schema", db))
        eq(p.stop(), 0, "pvd stops")
        # the previous version's shape: a column and an index fewer;
        # readers' own additions stay
        c.psql("ALTER TABLE pv_photos DROP COLUMN orientation; DROP INDEX pv_photos_user_id_idx; "
               "ALTER TABLE pv_photos ADD COLUMN reader_note text DEFAULT 'kept'; "
               "UPDATE pv_schema SET version = %d, digest = 'previous'" % (version - 1), db)
        before = c.psql("SELECT count(*) FROM pv_photos", db).strip()
        eq(before, "3", "rows before the migration")
        p.start()
        st, counts = _compare(p, c, db)
        eq(counts["photo"], 3, "no row lost")
        check("migrating the tables" in p.log_text() and "from schema version %d" % (version - 1)
              in p.log_text(), "the log names the migration", "said", p.log_tail(5))
        eq(c.psql("SELECT version, digest <> 'previous' FROM pv_schema", db).strip(),
           "%d|t" % version, "pv_schema at this version")
        eq(c.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'pv_photos_user_id_idx'",
                  db).strip(), "1", "the index is back")
        eq(c.psql("SELECT DISTINCT reader_note FROM pv_photos", db).strip(), "kept",
           "a reader's own column is left alone")
        eq(p.stop(), 0, "pvd stops")
        # a database a newer pvd wrote: refused, untouched
        c.psql("UPDATE pv_schema SET version = %d, digest = 'future'" % (version + 1), db)
        p.start()
    except BaseException:
        p.cleanup()
        raise
    with p:
        a.login()
        a.upload_ok(unique_jpeg(80, 60))
        ctl(p, "sync", "now", "pg")
        deadline = time.monotonic() + 20
        st = _status(p)
        while st["state"] != "refused" and time.monotonic() < deadline:
            time.sleep(0.2)
            st = _status(p)
        eq(st["state"], "refused", "a newer schema is refused")
        check("newer than this pvd's" in (st["last_error"] or ""), "it says why", "newer", st)
        eq(c.psql("SELECT count(*) FROM pv_photos", db).strip(), "3", "the tables untouched")


def test_outage_holds_back_no_other_target(tmp):
    """PostgreSQL down: S3 (s3rver on loopback) goes on and catches up, and
    requests are served; the change log is kept for PostgreSQL, which
    catches up when it is back."""
    from test_sync_s3 import S3Peer, _env, _env_back
    c = cluster()
    db = c.new_db("both")
    s3 = S3Peer(tmp).start()
    try:
        saved = _env(True)
        try:
            p = Pvd({"pg_dsn": c.dsn(db), "s3_bucket": "pvsync", "s3_prefix": "both/",
                     "s3_endpoint": s3.endpoint(), "s3_path_style": "true",
                     "aws_imds_endpoint": "off", "sync_interval": 1,
                     "changelog_trim_seconds": 1}, name="pg-both").start()
        finally:
            _env_back(saved)
        with p:
            a = p.new_user("pgboth")
            a.upload_ok(unique_jpeg(96, 64))
            _wait_caught_up(p)
            c.stop()
            try:
                t0 = time.monotonic()
                for _ in range(4):
                    a.upload_ok(unique_jpeg(96, 64))
                check(time.monotonic() - t0 < 20, "uploads go on", "< 20 s", time.monotonic() - t0)
                deadline = time.monotonic() + 60
                while True:
                    ts = {t["target"]: t for t in ctl_json(p, "sync", "status")["result"]["targets"]}
                    if ts["s3"]["cursor"] == ts["s3"]["head"] and ts["pg"]["failures"] > 0:
                        break
                    check(time.monotonic() < deadline, "S3 catches up while PostgreSQL is down",
                          "s3 cursor == head", ts)
                    time.sleep(0.2)
                check(ts["pg"]["cursor"] < ts["pg"]["head"], "PostgreSQL lags", "cursor < head", ts["pg"])
                kept = ctl_json(p, "status")["result"]["changes"]["kept"]
                check(kept >= ts["pg"]["head"] - ts["pg"]["cursor"],
                      "the log is kept for PostgreSQL", ">= its lag", kept)
            finally:
                c.start()
            ctl(p, "sync", "now", "pg")
            _compare(p, c, db)
    finally:
        s3.stop()


def test_bad_dsn_refused_at_start(tmp):
    """A pg_dsn libpq cannot parse stops pvd at start, saying why, without
    the password."""
    for dsn, why in (("host=127.0.0.1 password=%s bogus=1" % SECRET, 'invalid connection option \\"bogus'),
                     ("host='unterminated password=%s" % SECRET, "unterminated quoted string")):
        p = Pvd({"pg_dsn": dsn}, name="pg-bad")
        try:
            p.spawn()
            rc = p.proc.wait(30)
            check(rc != 0, "pvd refuses to start with pg_dsn %r" % dsn.replace(SECRET, "..."),
                  "a non-zero exit", rc)
            log = p.log_text()
            check("pg_dsn: " in log and why in log, "it says why", why, p.log_tail(3))
            check(SECRET not in log, "the password is not in the log", "absent", p.log_tail(3))
        finally:
            p.proc = None
            p.cleanup()


def test_zz_cluster_stops(tmp):
    """The module's cluster goes with it."""
    global _cluster
    if _cluster is None:
        return
    _cluster.stop()
    check(not _cluster.running(), "PostgreSQL stopped", "no postmaster.pid", "still there")
    subprocess.run(["rm", "-rf", _cluster.dir])
    _cluster = None
