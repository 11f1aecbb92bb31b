"""test_pvctl.py — pvctl and the admin socket against a real pvd.

What the owner relies on: every pvctl command answers (human text by default,
one JSON document with --json) with exit codes scripts can trust (0 ok,
1 failed, 2 usage, 3 cannot reach pvd, 4 not configured); disabling a user
stops its tokens at once; a backup taken while pvd serves restores to the same
users and photos; a TLS reload swaps the certificate without dropping
connections and refuses a bad one; the socket is 0600 (0660 with
admin_group) and pvd refuses other uids by their credentials; junk, truncated
and oversized frames get an error or a closed connection, never a crash or a
stall. The raw-socket tests speak msgpack with the small codec below (the
standard library has none).
"""

import json as jsonlib
import os
import random
import shutil
import signal
import socket
import ssl
import stat
import struct
import subprocess
import tarfile
import threading
import time

import harness
from harness import Pvd, Skip, check, eq, rand_email, sha256_hex

ROOT = harness.ROOT
PVCTL_BIN = os.environ.get("PVCTL") or os.path.join(ROOT, "build", "test", "bin", "pvctl")
RUN_TIMEOUT = 60

PVD_CONFIG = {}


# ---------------------------------------------------------------- helpers

def pvctl(*args, sock=None, input=None, uid=None, gid=None, groups=None, cwd=None,
          timeout=RUN_TIMEOUT):
    """Runs pvctl; returns (exit code, stdout, stderr). uid/gid: via setpriv."""
    check(os.access(PVCTL_BIN, os.X_OK), "pvctl binary", "an executable at " + PVCTL_BIN, "none")
    cmd = [PVCTL_BIN] + (["--socket", sock] if sock else []) + list(args)
    if uid is not None:
        if not shutil.which("setpriv") or os.geteuid() != 0:
            raise Skip("needs root and setpriv to run pvctl as another uid")
        pre = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
        pre += ["--groups=" + ",".join(str(g) for g in groups)] if groups else ["--clear-groups"]
        cmd = pre + cmd
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    try:
        p = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        raise AssertionError("pvctl %s did not exit within %d s" % (" ".join(args), timeout))
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    for mark in harness.SANITIZER_MARKS:
        check(mark not in err, "pvctl %s: no sanitizer report" % " ".join(args), "none", err[-1500:])
    return p.returncode, out, err


def ctl(pvd, *args, expect=0, **kw):
    """pvctl against pvd's socket, checking the exit code."""
    rc, out, err = pvctl(*args, sock=sock_of(pvd), **kw)
    check(rc == expect, "pvctl %s exit code (stderr %r, stdout %r)" % (" ".join(args), err[-400:],
                                                                       out[-400:]), expect, rc)
    return out, err


def ctl_json(pvd, *args, expect=0, **kw):
    """pvctl --json ...: the one JSON document, its shape checked."""
    out, err = ctl(pvd, "--json", *args, expect=expect, **kw)
    try:
        doc = jsonlib.loads(out)
    except ValueError as e:
        raise AssertionError("pvctl --json %s: not one JSON document (%s): %r" % (" ".join(args), e, out[:400]))
    check(isinstance(doc, dict) and isinstance(doc.get("ok"), bool),
          "pvctl --json %s: {\"ok\": bool, ...}" % " ".join(args), "that shape", doc)
    if doc["ok"]:
        check(isinstance(doc.get("result"), dict), "--json result object", "object", doc)
    else:
        e = doc.get("error") or {}
        check(isinstance(e.get("code"), str) and isinstance(e.get("message"), str) and e["message"],
              "--json error {code, message}", "strings", doc)
    return doc


def sock_of(pvd):
    """Where the harness's config puts the admin socket."""
    return os.path.join(pvd.tmp, "admin.sock")


def stop_checked(p):
    """SIGTERM: exit 0 and no sanitizer report; the data dir stays (unlike
    the harness's stop_clean, which also removes it)."""
    rc = p.stop()
    bad = p.sanitizer_lines()
    check(not bad, "%s: no sanitizer report" % p.name, "none", "\n".join(bad[:10]))
    eq(rc, 0, "%s: exit status after SIGTERM" % p.name)


def start_pvd(name, config=None, env=None):
    """A pvd of this test's own; env entries are set only for its start."""
    p = Pvd(config, name=name)
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return p


# ---- a minimal msgpack codec (what the admin protocol uses) ----

def mp_pack(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack(">b", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xa0 | len(b)]) + b
        return b"\xdb" + struct.pack(">I", len(b)) + b
    if isinstance(v, (bytes, bytearray)):
        return b"\xc6" + struct.pack(">I", len(v)) + bytes(v)
    if isinstance(v, list):
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(mp_pack(x) for x in v)
    if isinstance(v, dict):
        return b"\xdf" + struct.pack(">I", len(v)) + b"".join(mp_pack(k) + mp_pack(x) for k, x in v.items())
    raise TypeError(v)


def mp_unpack(b, i=0):
    """(value, next index)."""
    t = b[i]
    i += 1
    if t <= 0x7f:
        return t, i
    if t >= 0xe0:
        return t - 256, i
    if 0x80 <= t <= 0x8f or t in (0xde, 0xdf):
        n, i = (t & 0x0f, i) if t <= 0x8f else (struct.unpack(">H" if t == 0xde else ">I",
                                                               b[i:i + (2 if t == 0xde else 4)])[0],
                                                 i + (2 if t == 0xde else 4))
        d = {}
        for _ in range(n):
            k, i = mp_unpack(b, i)
            d[k], i = mp_unpack(b, i)
        return d, i
    if 0x90 <= t <= 0x9f or t in (0xdc, 0xdd):
        n, i = (t & 0x0f, i) if t <= 0x9f else (struct.unpack(">H" if t == 0xdc else ">I",
                                                               b[i:i + (2 if t == 0xdc else 4)])[0],
                                                 i + (2 if t == 0xdc else 4))
        a = []
        for _ in range(n):
            x, i = mp_unpack(b, i)
            a.append(x)
        return a, i
    if 0xa0 <= t <= 0xbf or t in (0xd9, 0xda, 0xdb):
        w = {0xd9: 1, 0xda: 2, 0xdb: 4}.get(t, 0)
        n = t & 0x1f if not w else int.from_bytes(b[i:i + w], "big")
        i += w
        return b[i:i + n].decode(), i + n
    if t in (0xc4, 0xc5, 0xc6):  # bin 8/16/32
        w = {0xc4: 1, 0xc5: 2, 0xc6: 4}[t]
        n = int.from_bytes(b[i:i + w], "big")
        i += w
        return bytes(b[i:i + n]), i + n
    fixed = {0xc0: None, 0xc2: False, 0xc3: True}
    if t in fixed:
        return fixed[t], i
    sizes = {0xcc: (1, False), 0xcd: (2, False), 0xce: (4, False), 0xcf: (8, False),
             0xd0: (1, True), 0xd1: (2, True), 0xd2: (4, True), 0xd3: (8, True)}
    if t in sizes:
        n, signed = sizes[t]
        return int.from_bytes(b[i:i + n], "big", signed=signed), i + n
    if t == 0xcb:
        return struct.unpack(">d", b[i:i + 8])[0], i + 8
    if t == 0xca:
        return struct.unpack(">f", b[i:i + 4])[0], i + 4
    raise ValueError("unexpected msgpack byte 0x%02x" % t)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def request(cmd, args=None):
    d = {"cmd": cmd}
    if args is not None:
        d["args"] = args
    return frame(mp_pack(d))


class Raw:
    """One raw connection to the admin socket."""

    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                return False
            self.buf += d
        return True

    def answer(self):
        """The next answer frame, decoded; None at EOF."""
        if not self._fill(4):
            return None
        n = struct.unpack(">I", self.buf[:4])[0]
        check(n < 16 << 20, "answer frame size", "< 16 MiB", n)
        check(self._fill(4 + n), "a whole answer frame", "%d bytes" % n, len(self.buf) - 4)
        payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        v, end = mp_unpack(payload)
        eq(end, len(payload), "one msgpack value fills the answer frame")
        return v

    def eof(self):
        """True if the server closed (after any answers already read)."""
        try:
            return not self.buf and self.s.recv(1) == b""
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        self.s.close()


def expect_error(ans, code, what):
    check(isinstance(ans, dict) and ans.get("ok") is False, what + ": an error answer", "ok=false", ans)
    eq(ans["error"]["code"], code, what + ": error code")
    check(ans["error"].get("message"), what + ": a message", "text", ans)


def still_serving(pvd, what):
    """pvd is alive and its admin socket answers promptly."""
    check(pvd.running(), "pvd still running after " + what, "running", "exited")
    t0 = time.monotonic()
    doc = ctl_json(pvd, "status")
    check(time.monotonic() - t0 < 10, "status answers promptly after " + what, "< 10 s",
          time.monotonic() - t0)
    return doc


def make_cert(d, name, cn="localhost"):
    """A self-signed ECDSA certificate and key for localhost in d."""
    if not shutil.which("openssl"):
        raise Skip("needs the openssl command")
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=" + cn, "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return cert, key


def peer_cert(pvd):
    """DER of the certificate a new TLS connection is given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", pvd.https_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def unverified_conn(pvd):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return harness.Conn("127.0.0.1", pvd.https_port, ctx)


# ---------------------------------------------------------------- command line

def test_version_agrees():
    rc, out, _ = pvctl("--version")
    eq(rc, 0, "pvctl --version exit code")
    p = subprocess.run([harness.PVD_BIN, "--version"], stdout=subprocess.PIPE, timeout=30)
    eq(p.returncode, 0, "pvd --version exit code")
    mine, theirs = out.split()[-1], p.stdout.decode().split()[-1]
    eq(mine, theirs, "pvctl --version and pvd --version agree")


def test_help_and_usage_errors():
    rc, out, _ = pvctl("help")
    eq(rc, 0, "pvctl help")
    for words in ("status", "user add", "user disable", "user reset-password", "job retry",
                  "sync status", "backup", "config show", "tls reload", "log-level"):
        check(words in out, "pvctl help lists " + words, words, out[:2000])
    rc, out, _ = pvctl("help", "user", "add")
    eq(rc, 0, "pvctl help user add")
    check("--prompt" in out and "EMAIL" in out, "help user add explains it", "--prompt, EMAIL", out)
    rc, out, _ = pvctl("help", "user")
    check(rc == 0 and "user disable" in out and "user enable" in out, "help for a group",
          "its commands", out)
    rc, out, _ = pvctl("--help")
    check(rc == 0 and "Exit status" in out, "--help", "usage with exit statuses", out[:300])
    # Usage errors: exit 2 with a one-line reason, and nothing sent.
    for args in ([], ["frobnicate"], ["user"], ["user", "add"], ["job", "list", "--limit", "x"],
                 ["job", "list", "--state", "sleeping"], ["log-level", "loud"],
                 ["--timeout", "0", "status"], ["--bogus", "status"], ["help", "nothing"],
                 ["user", "add", "a@b.example", "--password", "x"]):
        rc, out, err = pvctl(*args, sock="/nonexistent/admin.sock")
        eq(rc, 2, "pvctl %s: usage error exit code" % " ".join(args))
        check(err.strip() and "pvctl" in err, "pvctl %s: says why on stderr" % " ".join(args),
              "a reason", err)


def test_cannot_connect(tmp):
    rc, out, err = pvctl("status", sock=os.path.join(tmp, "none.sock"))
    eq(rc, 3, "no socket: exit 3")
    check("no admin socket" in err, "no socket: the reason", "no admin socket ...", err)
    rc, out, err = pvctl("--json", "status", sock=os.path.join(tmp, "none.sock"))
    eq(rc, 3, "no socket (--json): exit 3")
    doc = jsonlib.loads(out)
    check(doc["ok"] is False and doc["error"]["code"] == "cannot_connect", "--json error document",
          "cannot_connect", doc)
    # A stale socket file (nobody listening) is "cannot connect" too.
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(tmp, "stale.sock"))
    s.close()
    rc, _, err = pvctl("status", sock=os.path.join(tmp, "stale.sock"))
    eq(rc, 3, "stale socket: exit 3")
    # The config file names the socket when --socket is absent.
    conf = os.path.join(tmp, "pvd.conf")
    with open(conf, "w") as f:
        f.write("data_dir = %s\n" % os.path.join(tmp, "d"))
    rc, _, err = pvctl("--config", conf, "status")
    check(rc == 3 and os.path.join(tmp, "d", "admin.sock") in err,
          "socket path from the config (data_dir/admin.sock)", "exit 3 naming it", (rc, err))


def test_bash_completion(tmp):
    if not shutil.which("bash"):
        raise Skip("needs bash")
    os.symlink(PVCTL_BIN, os.path.join(tmp, "pvctl"))
    script = r'''
source "%s"
for line in "pvctl " "pvctl us" "pvctl user " "pvctl job list --state f" "pvctl log-level d"; do
    read -ra COMP_WORDS <<< "$line"
    [[ $line == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]}-1))
    _pvctl
    echo "$line|${COMPREPLY[*]}"
done
''' % os.path.join(ROOT, "tools", "pvctl.bash-completion")
    p = subprocess.run(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30, env=dict(os.environ, PATH=tmp + ":" + os.environ["PATH"]), cwd=tmp)
    got = dict(l.split("|", 1) for l in p.stdout.decode().splitlines() if "|" in l)
    check("status" in got.get("pvctl ", "").split() and "user" in got.get("pvctl ", "").split(),
          "completes commands", "status, user, ...", got)
    eq(got.get("pvctl us"), "user", "completes a prefix")
    eq(sorted(got.get("pvctl user ", "").split()),
       sorted(["list", "add", "disable", "enable", "reset-password", "invite"]), "completes a group")
    eq(got.get("pvctl job list --state f"), "failed", "completes an option's choices")
    eq(got.get("pvctl log-level d"), "debug", "completes a positional's choices")


def test_man_pages_current():
    rc = subprocess.run(["sh", os.path.join(ROOT, "tools", "mkman.sh"), "--check", PVCTL_BIN],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    eq(rc.returncode, 0, "doc/*.8 match the tables (sh tools/mkman.sh): %s" % rc.stderr.decode())
    with open(os.path.join(ROOT, "doc", "pvctl.8")) as f:
        page = f.read()
    for words in ("user reset\\-password", "log\\-level", "EXIT STATUS", "admin_group"):
        check(words in page, "pvctl.8 mentions " + words, words, page[:300])
    with open(os.path.join(ROOT, "doc", "pvd.8")) as f:
        page = f.read()
    for key in ("admin_socket", "map_size", "SIGHUP", "restore"):
        check(key in page, "pvd.8 mentions " + key, key, page[:300])


# ---------------------------------------------------------------- the shared pvd

def test_socket_mode(pvd):
    st = os.stat(sock_of(pvd))
    check(stat.S_ISSOCK(st.st_mode), "admin socket is a socket", "socket", oct(st.st_mode))
    eq(stat.S_IMODE(st.st_mode), 0o600, "admin socket mode")


def test_status(pvd):
    u = pvd.new_user("st")
    u.upload_ok(harness.unique_jpeg())
    doc = ctl_json(pvd, "status")
    r = doc["result"]
    rc, out, _ = pvctl("--version")
    eq(r["version"], out.split()[-1], "status version is pvctl's version")
    check(isinstance(r["uptime_s"], int) and r["uptime_s"] >= 0, "uptime_s", ">= 0", r)
    check(str(pvd.https_port) in r["listeners"] and str(pvd.http_port) in r["listeners"],
          "listeners name both ports", (pvd.https_port, pvd.http_port), r["listeners"])
    s = r["store"]
    check(s["map_size"] > 0 and 0 < s["map_used"] <= s["map_size"] and s["file_bytes"] > 0,
          "store size and map use", "sane numbers", s)
    c = r["counts"]
    check(c["users"] >= 1 and c["photos"] >= 1, "counts of users and photos", ">= 1 each", c)
    eq(sorted(r["jobs"]), sorted(["queued", "running", "ready", "failed", "cancelled"]), "jobs by state")
    check(isinstance(r["changes"]["head"], int) and r["changes"]["head"] >= 2,
          "change-log head sequence", ">= 2 (a user and a photo)", r["changes"])
    out, _ = ctl(pvd, "status")
    for word in ("version", "uptime_s", "listeners", "map_used", "users", "photos", "queued", "head"):
        check(word in out, "human status shows " + word, word, out)


def test_user_lifecycle(pvd):
    email = rand_email("adm")
    doc = ctl_json(pvd, "user", "add", email)
    res = doc["result"]
    eq(res["user"]["email"], email, "user add: email")
    pw = res.get("password")
    check(isinstance(pw, str) and len(pw) >= 16, "user add: a generated password, shown once", "text", res)
    access = pvd.login(email, pw).json()["access_token"]
    pvd.req("GET", "/api/v1/me", token=access).expect(200, "me with a pvctl-made user")
    d = ctl_json(pvd, "user", "add", email.upper(), expect=1)
    eq(d["error"]["code"], "exists", "user add of a taken email (any case)")
    ctl(pvd, "user", "add", "not-an-email", expect=1)
    # --prompt reads one line from stdin when it is not a terminal
    email2 = rand_email("adm2")
    out, _ = ctl(pvd, "user", "add", email2, "--prompt", input=b"typed-password-1\n")
    check("password" not in out.split("state")[-1], "a typed password is not echoed", "no password", out)
    pvd.login(email2, "typed-password-1")
    ctl(pvd, "user", "add", rand_email("short"), "--prompt", input=b"short\n", expect=2)
    # list (email order, paging)
    users = ctl_json(pvd, "user", "list")["result"]["users"]
    mine = [x for x in users if x["email"] in (email, email2)]
    eq(len(mine), 2, "user list shows both")
    eq([x["email"] for x in users], sorted(x["email"] for x in users), "user list in email order")
    page = ctl_json(pvd, "user", "list", "--limit", "1")["result"]
    eq(len(page["users"]), 1, "--limit 1")
    if len(users) > 1:
        eq(page["next"], users[0]["email"], "next names the last email shown")
        nxt = ctl_json(pvd, "user", "list", "--after", page["next"], "--limit", "1")["result"]
        eq(nxt["users"][0]["email"], users[1]["email"], "--after pages on")
    # disable: effective at once, even for tokens already issued
    j = pvd.login(email, pw).json()
    access, refresh = j["access_token"], j["refresh_token"]
    d = ctl_json(pvd, "user", "disable", email)["result"]
    check(d["user"]["state"] == "disabled" and d["changed"] is True, "disable", "disabled, changed", d)
    pvd.req("GET", "/api/v1/me", token=access).expect(401, "an issued access token after disable")
    pvd.req("POST", "/api/v1/auth/refresh", json={"refresh_token": refresh}).expect(
        401, "an issued refresh token after disable")
    pvd.login(email, pw, expect=None).expect((401, 403), "login of a disabled user")
    eq(ctl_json(pvd, "user", "disable", email)["result"]["changed"], False, "disable again: no change")
    ctl_json(pvd, "user", "enable", email)
    j = pvd.login(email, pw).json()
    pvd.req("GET", "/api/v1/me", token=j["access_token"]).expect(200, "me after enable")
    # reset-password: the old password and refresh tokens stop working
    d = ctl_json(pvd, "user", "reset-password", email, "--prompt", input=b"brand-new-pass\n")["result"]
    check(d["revoked_sessions"] >= 1, "reset-password revokes sessions", ">= 1", d)
    pvd.login(email, pw, expect=401)
    pvd.login(email, "brand-new-pass")
    pvd.req("POST", "/api/v1/auth/refresh", json={"refresh_token": j["refresh_token"]}).expect(
        401, "a refresh token from before the reset")
    d = ctl_json(pvd, "user", "reset-password", res["user"]["id"])["result"]  # by id, generated
    check(len(d["password"]) >= 16, "reset-password generates one", "password", d)
    pvd.login(email, d["password"])
    d = ctl_json(pvd, "user", "disable", rand_email("ghost"), expect=1)
    eq(d["error"]["code"], "not_found", "disable of an unknown user")


def test_jobs(pvd):
    doc = ctl_json(pvd, "job", "list")["result"]
    check(isinstance(doc["jobs"], list), "job list: a list", "list", doc)
    d = ctl_json(pvd, "job", "cancel", "not-an-id", expect=1)
    eq(d["error"]["code"], "bad_args", "job cancel of a malformed id")
    ghost = "01" + "0" * 24
    rc, out, _ = pvctl("--json", "job", "retry", ghost, sock=sock_of(pvd))
    code = jsonlib.loads(out)["error"]["code"]
    check((rc, code) in ((1, "not_found"), (4, "unavailable")), "job retry of an unknown id",
          "1 not_found (or 4 without video jobs)", (rc, code))
    if rc == 4:
        return
    # A real job: queued or running, then cancelled, then queued again.
    u = pvd.new_user("job")
    photos = [u.upload_ok(harness.unique_jpeg(640, 480))["id"] for _ in range(3)]
    r = u.req("POST", "/api/v1/videos", json={"photo_ids": photos, "seconds_per_photo": 20,
                                              "resolution": "1080p"})
    if r.status in (404, 405):
        raise Skip("no video API in this pvd")
    vid = r.expect(202, "create a video").json()["video"]["id"]
    jobs = ctl_json(pvd, "job", "list")["result"]["jobs"]
    row = [j for j in jobs if j["id"] == vid]
    check(row and row[0]["status"] in ("queued", "running") and row[0]["user"] == u.email,
          "job list shows the new job with its user", vid, jobs)
    rc, out, _ = pvctl("--json", "job", "cancel", vid, sock=sock_of(pvd))
    doc = jsonlib.loads(out)
    if rc == 1 and doc["error"]["code"] == "conflict":
        raise Skip("the render finished before it could be cancelled")
    eq(rc, 0, "job cancel exit code (%r)" % doc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = u.req("GET", "/api/v1/videos/" + vid).json()["video"]["status"]
        if st == "cancelled":
            break
        time.sleep(0.2)
    eq(st, "cancelled", "the video after job cancel")
    cancelled = ctl_json(pvd, "job", "list", "--state", "cancelled")["result"]["jobs"]
    check(any(j["id"] == vid for j in cancelled), "job list --state cancelled", vid, cancelled)
    d = ctl_json(pvd, "job", "cancel", vid, expect=1)
    eq(d["error"]["code"], "conflict", "cancel of a cancelled job")
    ctl_json(pvd, "job", "retry", vid)
    st = u.req("GET", "/api/v1/videos/" + vid).json()["video"]["status"]
    check(st in ("queued", "running"), "retried job is queued again", "queued/running", st)
    pvctl("job", "cancel", vid, sock=sock_of(pvd))  # no render left running behind us


def test_sync(pvd):
    r = ctl_json(pvd, "sync", "status")["result"]
    eq(r["targets"], [], "sync status: no targets")
    check(isinstance(r["head"], int), "sync status: the change log's head", "int", r)
    out, _ = ctl(pvd, "sync", "status")
    check("no replication targets" in out, "human sync status says so", "no replication targets", out)
    for verb in ("pause", "resume", "now"):
        d = ctl_json(pvd, "sync", verb, expect=4)
        eq(d["error"]["code"], "not_configured", "sync %s without targets" % verb)


def test_config_show(pvd):
    cfg = ctl_json(pvd, "config", "show")["result"]["config"]
    eq(cfg.get("https_listen"), "127.0.0.1:%d" % pvd.https_port, "config show: https_listen")
    eq(cfg.get("admin_socket"), sock_of(pvd), "config show: admin_socket")
    eq(cfg.get("data_dir"), pvd.data_dir, "config show: data_dir")
    out, _ = ctl(pvd, "config", "show")
    check("login_ip_burst" in out, "human config show", "every key", out[:500])


def test_log_level(pvd):
    eq(ctl_json(pvd, "log-level")["result"]["level"], "info", "the configured level")

    def request_lines():
        return sum(1 for l in pvd.log_text().splitlines() if '"msg":"request"' in l)

    d = ctl_json(pvd, "log-level", "warn")["result"]
    check(d["level"] == "warn" and d["previous"] == "info", "log-level warn", "warn (was info)", d)
    before = request_lines()
    pvd.req("GET", "/healthz").expect(200)
    time.sleep(0.3)
    eq(request_lines(), before, "no access log line at warn")
    ctl_json(pvd, "log-level", "info")
    pvd.req("GET", "/healthz").expect(200)
    deadline = time.monotonic() + 5
    while request_lines() == before and time.monotonic() < deadline:
        time.sleep(0.1)
    check(request_lines() > before, "access log lines again at info", "more lines", request_lines())


def test_tls_reload_same_files(pvd):
    ctl_json(pvd, "tls", "reload")
    pvd.req("GET", "/healthz").expect(200, "serving after a reload")


# ---------------------------------------------------------------- bad input

def test_bad_frames(pvd):
    path = sock_of(pvd)
    c = Raw(path)
    # junk in a well-formed frame: an error, and the connection stays usable
    c.send(frame(b"\xc1\xff junk"))
    expect_error(c.answer(), "bad_request", "junk payload")
    c.send(frame(b""))
    expect_error(c.answer(), "bad_request", "empty payload")
    c.send(request("no.such.command"))
    expect_error(c.answer(), "unknown_command", "unknown command")
    c.send(request("job.list", {"limit": "ten"}))
    expect_error(c.answer(), "bad_args", "a string for an integer")
    c.send(request("user.disable", {"user": 5}))
    expect_error(c.answer(), "bad_args", "an integer for a string")
    c.send(request("user.disable", {}))
    expect_error(c.answer(), "bad_args", "a missing argument")
    c.send(request("status", {"extra": True}))
    expect_error(c.answer(), "bad_args", "an unknown argument")
    c.send(frame(mp_pack(["status"])))
    expect_error(c.answer(), "bad_request", "not a map")
    c.send(frame(mp_pack({"cmd": "status", "args": {"x": b"\x00bin"}})))
    expect_error(c.answer(), "bad_request", "bin data")
    c.send(frame(b"\xdd\xff\xff\xff\xff"))  # an array declaring 4G items in 5 bytes
    expect_error(c.answer(), "bad_request", "a huge declared array")
    # pipelined requests: answers in order
    c.send(request("log.level") + request("sync.status"))
    a1, a2 = c.answer(), c.answer()
    check(a1["ok"] and "level" in a1["result"], "first pipelined answer", "log level", a1)
    check(a2["ok"] and "head" in a2["result"], "second pipelined answer", "sync status", a2)
    c.close()

    # a frame over 1 MiB: refused from its header, then closed
    c = Raw(path)
    c.send(struct.pack(">I", (1 << 20) + 1) + b"\x80" * 100)
    expect_error(c.answer(), "too_large", "oversized frame")
    check(c.eof(), "closed after an oversized frame", "EOF", "still open")
    c.close()
    c = Raw(path)
    c.send(b"\xff\xff\xff\xff")
    expect_error(c.answer(), "too_large", "a 4 GiB frame header")
    c.close()

    # truncated frames: the client leaves mid-frame
    for cut in (1, 3, 4, 10):
        c = Raw(path)
        c.send(request("user.list", {"limit": 5})[:cut])
        c.close()
    # a stalled client does not stall anyone else
    stalled = Raw(path)
    stalled.send(struct.pack(">I", 1000) + b"\x81")
    still_serving(pvd, "a stalled half frame")
    stalled.close()

    # random junk, each on its own connection
    rnd = random.Random(4242)
    for i in range(150):
        c = Raw(path, timeout=5)
        n = rnd.choice((1, 3, 4, 5, 9, 40, 300))
        junk = bytes(rnd.randrange(256) for _ in range(n))
        if i % 2:  # half of them well framed, so the payload reaches the parser
            junk = frame(junk)
        try:
            c.send(junk)
            c.s.shutdown(socket.SHUT_WR)
            while c.answer() is not None:
                pass
        except (OSError, ValueError, AssertionError, IndexError):
            pass
        c.close()
    still_serving(pvd, "random junk")


def test_connection_limit(pvd):
    conns = [Raw(sock_of(pvd)) for _ in range(20)]
    try:
        refused = 0
        for c in conns:
            try:
                c.send(request("log.level"))
            except OSError:
                pass  # refused at accept: its answer is waiting all the same
        for c in conns:
            a = c.answer()
            if a and a.get("ok") is False:
                eq(a["error"]["code"], "too_many_connections", "over the connection limit")
                refused += 1
            else:
                check(a and a.get("ok"), "an answer within the limit", "ok", a)
        check(1 <= refused <= 20 - 8, "some connections over the limit are refused", "a few", refused)
    finally:
        for c in conns:
            c.close()
    time.sleep(0.2)
    still_serving(pvd, "hitting the connection limit")


def test_other_uid_refused(pvd):
    """A uid other than root and pvd's: refused by the file mode, and (with the
    mode opened up by mistake) by the peer-credentials check."""
    if os.geteuid() != 0:
        raise Skip("needs root to act as another uid")
    os.chmod(pvd.tmp, 0o711)  # the socket's directory must be traversable
    rc, out, err = pvctl("status", sock=sock_of(pvd), uid=65534, gid=65534)
    eq(rc, 3, "uid 65534 against a 0600 socket: exit 3 (%s)" % err)
    check("permission denied" in err, "says permission denied", "permission denied", err)
    os.chmod(sock_of(pvd), 0o666)
    try:
        rc, out, err = pvctl("--json", "status", sock=sock_of(pvd), uid=65534, gid=65534)
        eq(rc, 3, "uid 65534 through a 0666 socket: refused by SO_PEERCRED, exit 3")
        eq(jsonlib.loads(out)["error"]["code"], "forbidden", "the refusal's code")
        check("refused a connection from uid 65534" in pvd.log_text(), "pvd logs the refusal",
              "a warning", pvd.log_tail(5))
    finally:
        os.chmod(sock_of(pvd), 0o600)
    still_serving(pvd, "refusing another uid")


# ---------------------------------------------------------------- own pvds

def test_admin_group(tmp):
    if os.geteuid() != 0:
        raise Skip("needs root to act as other uids")
    p = start_pvd("pvctl-group", {"admin_group": "nogroup"})
    try:
        os.chmod(p.tmp, 0o711)
        st = os.stat(sock_of(p))
        eq(stat.S_IMODE(st.st_mode), 0o660, "socket mode with admin_group")
        eq(st.st_gid, 65534, "socket group with admin_group")
        rc, out, err = pvctl("status", sock=sock_of(p), uid=65533, gid=65534)
        eq(rc, 0, "primary group member allowed (%s)" % err)
        rc, out, err = pvctl("status", sock=sock_of(p), uid=65533, gid=65533, groups=[65534])
        eq(rc, 0, "supplementary group member allowed (%s)" % err)
        rc, out, err = pvctl("status", sock=sock_of(p), uid=65533, gid=65533)
        eq(rc, 3, "non-member refused by the file mode")
        os.chmod(sock_of(p), 0o666)
        rc, out, err = pvctl("--json", "status", sock=sock_of(p), uid=65533, gid=65533)
        eq(rc, 3, "non-member refused by its credentials")
        eq(jsonlib.loads(out)["error"]["code"], "forbidden", "refusal code")
        # Stopping with admin connections open: idle, mid-frame, and one whose
        # request (argon2id hashing on a worker) is still in flight.
        idle, half, busy = Raw(sock_of(p)), Raw(sock_of(p)), Raw(sock_of(p))
        half.send(request("status")[:6])
        busy.send(request("user.add", {"email": rand_email("late"), "password": "in-flight-pw"}))
        stop_checked(p)
        for c in (idle, half, busy):
            c.close()
        check(not os.path.exists(sock_of(p)), "the socket is removed at stop", "gone", "still there")
    finally:
        p.cleanup()


def test_stale_socket_and_second_pvd(tmp):
    p = start_pvd("pvctl-stale")
    try:
        sock = sock_of(p)
        # A second pvd on the same socket path must not steal it.
        q = Pvd({"admin_socket": sock}, name="pvctl-second")
        try:
            q.write_config()
            r = subprocess.run([harness.PVD_BIN, "--config", q.config_path], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            check(r.returncode != 0 and b"another pvd" in r.stderr, "a second pvd refuses a live socket",
                  "non-zero, 'another pvd'", (r.returncode, r.stderr[-300:]))
        finally:
            q.cleanup()
        ctl_json(p, "status")
        p.kill9()  # leaves a stale socket behind
        check(os.path.exists(sock), "kill -9 leaves the socket file", "present", "gone")
        p.start()
        ctl_json(p, "status")
    finally:
        p.stop_clean()


def test_tls_reload(tmp):
    c1, k1 = make_cert(tmp, "one")
    c2, k2 = make_cert(tmp, "two")
    c3, k3 = make_cert(tmp, "three")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    shutil.copy(c1, cert)
    shutil.copy(k1, key)
    p = start_pvd("pvctl-tls", {"tls_cert": cert, "tls_key": key})
    try:
        eq(peer_cert(p), pem_der(c1), "the first certificate")
        kept = unverified_conn(p)
        kept.request("GET", "/healthz").expect(200, "a kept-alive connection")
        shutil.copy(c2, cert)
        shutil.copy(k2, key)
        ctl_json(p, "tls", "reload")
        eq(peer_cert(p), pem_der(c2), "new connections get the new certificate")
        kept.request("GET", "/healthz").expect(200, "the open connection survives the reload")
        # a bad certificate is refused and the old one stays
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        d = ctl_json(p, "tls", "reload", expect=1)
        eq(d["error"]["code"], "tls_invalid", "reload of a bad certificate")
        eq(peer_cert(p), pem_der(c2), "the old certificate stays after a bad one")
        shutil.copy(c3, cert)  # a key that does not match the certificate
        ctl_json(p, "tls", "reload", expect=1)
        eq(peer_cert(p), pem_der(c2), "a mismatched key is refused too")
        # SIGHUP does the same
        shutil.copy(k3, key)
        p.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while peer_cert(p) != pem_der(c3) and time.monotonic() < deadline:
            time.sleep(0.1)
        eq(peer_cert(p), pem_der(c3), "SIGHUP reloads the certificate")
        kept.request("GET", "/healthz").expect(200, "the open connection survives SIGHUP")
        kept.close()
    finally:
        p.stop_clean()


def _snapshot(p, users):
    """What must survive a restore: each user's photos (id -> sha256 of content)."""
    snap = {}
    for u in users:
        u.login()
        photos = {}
        for pid in u.list_all():
            body = u.req("GET", "/api/v1/photos/%s/content" % pid).expect(200, "photo content").body
            photos[pid] = sha256_hex(body)
        snap[u.email] = photos
    return snap


def test_backup_restore(tmp):
    env = {"PV_FAILPOINTS": "admin_req:1,store_backup:1"}
    p = start_pvd("pvctl-backup", config={"backup_dir": tmp}, env=env)
    try:
        # The failure seams: a clean error each, then it works.
        d = ctl_json(p, "status", expect=1)
        eq(d["error"]["code"], "overloaded", "status with admin_req failing once")
        users = [p.new_user("bk%d" % i) for i in range(3)]
        for i, u in enumerate(users):
            for _ in range(i + 1):
                u.upload_ok(harness.unique_jpeg())
        added = rand_email("ctl")
        ctl_json(p, "user", "add", added, "--prompt", input=b"restored-pass\n")
        ctl_json(p, "user", "disable", users[2].email)
        ctl_json(p, "user", "enable", users[2].email)
        before = _snapshot(p, users)
        status_before = ctl_json(p, "status")["result"]["counts"]
        archive = os.path.join(tmp, "b1.tar")
        d = ctl_json(p, "backup", archive, expect=1)
        check(d["error"]["code"] in ("store_full", "backup_failed"), "backup with a failing copy",
              "a clean error", d)
        check(not os.path.exists(archive) and not os.path.exists(archive + ".tmp"),
              "a failed backup leaves nothing", "no file", os.listdir(tmp))

        # Backup while serving: sign-ups keep going during it.
        stop = threading.Event()
        served = []

        def busy():
            while not stop.is_set():
                r, _, _ = p.signup(expect=None)
                served.append(r.status)

        t = threading.Thread(target=busy)
        t.start()
        try:
            res = ctl_json(p, "backup", "b1.tar", cwd=tmp)["result"]  # relative to pvctl's cwd
        finally:
            stop.set()
            t.join(30)
        check(served and all(s == 201 for s in served), "sign-ups served during the backup",
              "201s", served[:20])
        eq(res["path"], archive, "a relative path is pvctl's directory")
        eq(stat.S_IMODE(os.stat(archive).st_mode), 0o600, "the backup's mode")
        eq(res["blobs"], status_before["blobs"], "every blob (originals, thumbnails) is in the backup")
        eq(res["blobs_missing"], 0, "no blob went missing")
        with tarfile.open(archive) as tf:
            names = tf.getnames()
        eq(names[0], "pv-backup.json", "the manifest comes first")
        for n in ("store/data.mdb", "keys.json"):
            check(n in names, "the archive holds " + n, n, names)
        small = ctl_json(p, "backup", os.path.join(tmp, "small.tar"), "--no-blobs")["result"]
        eq(small["blobs"], 0, "--no-blobs")
        check(small["bytes"] < res["bytes"], "--no-blobs is smaller", "<", (small["bytes"], res["bytes"]))
        eq(ctl_json(p, "backup", os.path.join(tmp, "no-such-dir", "x.tar"), expect=1)["error"]["code"],
           "backup_failed", "backup to a missing directory")
        stop_checked(p)

        # Wipe, restore, compare.
        restore_ways = []
        help_out = subprocess.run([harness.PVD_BIN, "--help"], stdout=subprocess.PIPE,
                                  timeout=30).stdout.decode()
        if "--restore" in help_out:
            restore_ways.append("pvd")
        restore_ways.append("tar")
        for way in restore_ways:
            shutil.rmtree(p.data_dir)
            if way == "pvd":
                r = subprocess.run([harness.PVD_BIN, "--config", p.config_path, "--restore", archive],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
                eq(r.returncode, 0, "pvd --restore (%s)" % r.stderr.decode()[-300:])
                r = subprocess.run([harness.PVD_BIN, "--config", p.config_path, "--restore", archive],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
                check(r.returncode != 0 and b"already holds a store" in r.stderr,
                      "restore over an existing store is refused", "refused", r.stderr[-300:])
            else:
                os.makedirs(p.data_dir, mode=0o700)
                subprocess.run(["tar", "-xf", archive, "-C", p.data_dir], check=True, timeout=60)
            p.start()
            after = _snapshot(p, users)
            eq(after, before, "same users and photos after a restore (%s)" % way)
            p.login(added, "restored-pass")
            counts = ctl_json(p, "status")["result"]["counts"]
            for k in ("photos", "blobs"):
                eq(counts[k], status_before[k], "status %s after a restore (%s)" % (k, way))
            check(counts["users"] >= status_before["users"], "users after restore", ">=", counts)
            stop_checked(p)
    finally:
        p.cleanup()
