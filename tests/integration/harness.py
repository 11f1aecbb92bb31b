"""harness.py — runs a real pvd for the integration tests and talks to it.

Why it is shaped like this: the tests exercise pvd exactly as a user would
(a process, a config file, TLS on a loopback port), so the harness owns the
process life (free ports, a throwaway data dir, start, wait for /readyz,
SIGTERM, kill -9, restart on the same data) and a small HTTP/1.1 client of
its own. The client is hand-rolled on sockets rather than urllib because the
tests need what urllib hides: sending malformed or oversized requests,
reading an answer after the server stopped reading our body (413/431),
keeping one connection for several requests, HEAD and Range.

Python 3 standard library only. Every socket and every wait is bounded.
"""

import atexit
import base64
import datetime
import hashlib
import http.client
import io
import json as jsonlib
import os
import re
import secrets
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import zlib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PVD_BIN = os.environ.get("PVD") or os.path.join(ROOT, "build", "test", "bin", "pvd")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TIMEOUT = 10.0          # every request
READY_TIMEOUT = 20.0    # start -> /readyz 200
STOP_TIMEOUT = 15.0     # SIGTERM -> exit
KEEP = bool(os.environ.get("PV_KEEP"))  # keep temp dirs for a post-mortem

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")

# Generous login limits so that ordinary tests never meet the rate limiter;
# the rate-limit tests start their own pvd with small ones.
BASE_CONFIG = {
    "login_account_burst": "1000",
    "login_account_per_minute": "1000",
    "login_ip_burst": "100000",
    "login_ip_per_minute": "100000",
    "signup_ip_burst": "100000",
    "signup_ip_per_minute": "100000",
    "hash_queue": "1000",
    "log_level": "info",
}


class Skip(Exception):
    """Raised by a test that cannot run here (a missing tool); not a failure."""


def check(cond, what, expected=None, got=None):
    """assert with an 'expected X, got Y' message."""
    if cond:
        return
    msg = what
    if expected is not None or got is not None:
        msg += ": expected %s, got %s" % (_short(expected), _short(got))
    raise AssertionError(msg)


def eq(got, expected, what):
    check(got == expected, what, expected, got)


def _short(v, n=400):
    s = v if isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n] + "...(%d more)" % (len(s) - n)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rand_email(tag="u"):
    return "%s-%s@example.test" % (tag, secrets.token_hex(6))


# ---------------------------------------------------------------- responses

class Response:
    def __init__(self, status, reason, headers, body, version, send_error=None):
        self.status = status
        self.reason = reason
        self.headers = headers          # http.client.HTTPMessage (case-insensitive)
        self.body = body
        self.version = version
        self.send_error = send_error    # set when the server stopped reading us
        self._json = None

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self):
        if self._json is None:
            try:
                self._json = jsonlib.loads(self.body.decode("utf-8"))
            except Exception as e:  # noqa: BLE001 - report any parse failure
                raise AssertionError("expected a JSON body (status %d), got %r (%s)"
                                     % (self.status, self.body[:300], e))
        return self._json

    def __repr__(self):
        return "<%d %s %s>" % (self.status, self.reason, _short(self.body, 300))

    def expect(self, status, what="request"):
        """Checks the status (an int or a tuple of allowed ones); returns self."""
        ok = self.status in status if isinstance(status, tuple) else self.status == status
        if not ok:
            raise AssertionError("%s: expected status %s, got %d; body %s"
                                 % (what, status, self.status, _short(self.body, 400)))
        return self

    def expect_error(self, status, code=None, what="request"):
        """Status, JSON content type and {"error":{"code","message"}} shape."""
        self.expect(status, what)
        ct = self.header("Content-Type", "")
        check(ct.startswith("application/json"), "%s: error Content-Type" % what,
              "application/json...", ct)
        j = self.json()
        check(isinstance(j, dict) and isinstance(j.get("error"), dict),
              "%s: error body shape" % what, '{"error":{...}}', j)
        e = j["error"]
        check(isinstance(e.get("code"), str) and re.fullmatch(r"[a-z][a-z0-9_]*", e["code"]),
              "%s: error.code snake_case string" % what, "snake_case", e.get("code"))
        check(isinstance(e.get("message"), str) and e["message"],
              "%s: error.message non-empty string" % what, "text", e.get("message"))
        if code is not None:
            eq(e["code"], code, "%s: error.code" % what)
        return self


# ---------------------------------------------------------------- connection

class _SockRaw(io.RawIOBase):
    """Raw reader over a Conn: first the bytes already pulled in while we
    were sending, then the socket."""

    def __init__(self, conn):
        self.conn = conn

    def readable(self):
        return True

    def readinto(self, b):
        c = self.conn
        if c.buf:
            n = min(len(b), len(c.buf))
            b[:n] = c.buf[:n]
            c.buf = c.buf[n:]
            return n
        return c.sock.recv_into(b)


class _KeepOpenReader(io.BufferedReader):
    """http.client closes the response's file when a body is done; our
    connection outlives one response, so close() is a no-op here."""

    def close(self):
        pass


class _SockShim:
    def __init__(self, fp):
        self.fp = fp

    def makefile(self, *a, **k):
        return self.fp


class Conn:
    """One HTTP/1.1 connection (plain or TLS).

    Large requests are sent in pieces, and between pieces we look whether the
    server has already answered (413, 431): then we stop sending and read,
    rather than pushing more bytes at a server that closed and losing its
    answer to a reset."""

    PIECE = 16384

    def __init__(self, host, port, tls_ctx=None, timeout=TIMEOUT, server_hostname="localhost"):
        self.host_header = "localhost:%d" % port
        self.timeout = timeout
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.settimeout(timeout)
        try:
            self.sock = tls_ctx.wrap_socket(raw, server_hostname=server_hostname) if tls_ctx else raw
        except Exception:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False
        self.fp = _KeepOpenReader(_SockRaw(self))
        self.closed_by_server = False
        self.responses = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _answered(self):
        """Non-blocking: has the server sent something (or closed)?"""
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return False
        self.sock.settimeout(0)
        try:
            d = self.sock.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False  # e.g. a TLS 1.3 session ticket, no application data
        except (OSError, ssl.SSLError):
            return True
        finally:
            self.sock.settimeout(self.timeout)
        if not d:
            self.eof = True
            return True
        self.buf += d
        return True

    def send_raw(self, data, pause=0.002):
        """Sends data; returns None, or why it stopped early (the server
        answered or stopped reading) — the answer is then read as usual."""
        view = memoryview(data)
        off = 0
        while off < len(view):
            if off > 0:
                if pause:
                    time.sleep(pause)
                if self._answered():
                    return "server answered after %d of %d bytes" % (off, len(view))
            try:
                off += self.sock.send(view[off:off + self.PIECE])
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as e:
                return e
        return None

    def read_response(self, method="GET", send_error=None):
        resp = http.client.HTTPResponse(_SockShim(self.fp), method=method)
        try:
            resp.begin()
            body = resp.read()
        except (http.client.HTTPException, OSError, ssl.SSLError) as e:
            if send_error is not None:
                raise AssertionError("request cut short (%s) and no answer could be read (%r)"
                                     % (send_error, e))
            raise
        if resp.will_close:
            self.closed_by_server = True
        self.responses += 1
        return Response(resp.status, resp.reason, resp.msg, body, resp.version, send_error)

    def request(self, method, path, body=None, headers=None, close=False):
        hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        names = {k.lower() for k, _ in hdrs}
        lines = ["%s %s HTTP/1.1" % (method, path)]
        if "host" not in names:
            lines.append("Host: " + self.host_header)
        for k, v in hdrs:
            lines.append("%s: %s" % (k, v))
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            lines.append("Content-Length: %d" % len(body))
        if close and "connection" not in names:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        err = self.send_raw(head + (body or b""))
        return self.read_response(method, err)

    def read_raw(self, limit=1 << 20):
        """Reads one answer for a raw exchange: up to a complete response
        (framed by Content-Length), EOF or the timeout, whichever is first."""
        out = self.buf  # (raw exchanges never use self.fp)
        self.buf = b""
        try:
            while len(out) < limit and not _complete(out):
                b = self.sock.recv(65536)
                if not b:
                    break
                out += b
        except (socket.timeout, OSError, ssl.SSLError):
            pass
        return out


def _complete(buf):
    """True once buf holds one whole response framed by Content-Length (or
    one that has no body); chunked or unframed answers read to EOF."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].decode("latin-1").lower()
    status = re.match(r"http/\d\.\d (\d{3})", head)
    if status and (status.group(1) in ("204", "304") or status.group(1).startswith("1")):
        return True
    m = re.search(r"^content-length:\s*(\d+)", head, re.M)
    return bool(m) and len(buf) >= end + 4 + int(m.group(1))



# ---------------------------------------------------------------- pvd process

class Pvd:
    """One pvd process with its own ports and data dir (kept across restarts)."""

    live = []  # every started instance, so the runner can clean up and show logs

    def __init__(self, config=None, name="pvd", data_dir=None):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="pvit-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.config_path = os.path.join(self.tmp, "pvd.conf")
        self.log_path = os.path.join(self.tmp, "pvd.log")
        self.https_port = free_port()
        self.http_port = free_port()
        self.config = dict(BASE_CONFIG)
        self.config.update({k: str(v) for k, v in (config or {}).items()})
        self.proc = None
        self.log_file = None
        self.exit_codes = []
        self.tls_verify_error = None
        self._ctx = None
        Pvd.live.append(self)

    # ---- config and process ----
    def write_config(self):
        base = {
            "data_dir": self.data_dir,
            "https_listen": "127.0.0.1:%d" % self.https_port,
            "http_listen": "127.0.0.1:%d" % self.http_port,
            "admin_socket": os.path.join(self.tmp, "admin.sock"),
        }
        base.update(self.config)
        with open(self.config_path, "w") as f:
            f.write("# written by tests/integration/harness.py\n")
            for k, v in base.items():
                f.write("%s = %s\n" % (k, v))

    def start(self, ready_timeout=READY_TIMEOUT):
        check(os.access(PVD_BIN, os.X_OK), "pvd binary", "an executable at " + PVD_BIN, "none")
        for attempt in range(3):
            self.spawn(attempt)
            try:
                self.wait_ready(ready_timeout)
                break
            except AssertionError:
                # A port taken between free_port() and bind: pick new ones.
                if self.proc.poll() is not None and "in use" in self.log_tail(10) and attempt < 2:
                    self.https_port, self.http_port = free_port(), free_port()
                    continue
                raise
        self._ctx = None
        return self

    def spawn(self, attempt=0):
        """Starts the process and returns at once (start() also waits for
        /readyz): for a test that kills pvd while it starts."""
        self.write_config()
        self.log_file = open(self.log_path, "ab")
        self.log_file.write(b"---- start %d (attempt %d) ----\n" % (len(self.exit_codes) + 1, attempt))
        self.log_file.flush()
        env = dict(os.environ)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen([PVD_BIN, "--config", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=self.log_file, env=env, cwd=self.tmp)
        return self

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_codes.append(rc)
                raise AssertionError("pvd exited with %d before it was ready; log tail:\n%s"
                                     % (rc, self.log_tail(15)))
            try:
                r = self.private("GET", "/readyz", timeout=2)
                if r.status == 200:
                    return
                last = r
            except (OSError, http.client.HTTPException, AssertionError) as e:
                last = e
            time.sleep(0.1)
        raise AssertionError("pvd not ready within %.0f s (last /readyz: %r)" % (timeout, last))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._closelog()
                self.exit_codes.append(None)
                self.proc = None
                return None
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        self._closelog()
        self.proc = None
        return rc

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.exit_codes.append(self.proc.returncode)
        self._closelog()
        self.proc = None

    def restart(self):
        if self.running():
            self.stop()
        return self.start()

    def _closelog(self):
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    def cleanup(self):
        if self.running():
            self.kill9()
        if self in Pvd.live:
            Pvd.live.remove(self)
        if not KEEP:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def stop_clean(self):
        """SIGTERM; asserts exit 0, no sanitizer report, every log line a JSON
        object, and no request answered with a 5xx. Always cleans up."""
        try:
            rc = self.stop()
            bad = self.sanitizer_lines()
            check(not bad, "%s: no sanitizer report in the log" % self.name, "none",
                  "\n".join(bad[:10]))
            check(rc == 0, "%s: exit status after SIGTERM" % self.name, 0, rc)
            not_json, five = self.log_problems()
            check(not not_json, "%s: every log line is a JSON object" % self.name, "JSON lines",
                  "\n".join(not_json[:3]))
            check(not five, "%s: no request answered 500 (or another unplanned 5xx)" % self.name,
                  "none", "\n".join(five[:5]))
        finally:
            self.cleanup()

    def log_problems(self):
        """(lines that are not JSON objects, request lines with a 5xx status)."""
        not_json, five = [], []
        for line in self.log_text().splitlines():
            if not line.strip() or line.startswith("---- start"):
                continue
            try:
                j = jsonlib.loads(line)
            except ValueError:
                j = None
            if not isinstance(j, dict):
                not_json.append(line[:300])
                continue
            st = j.get("status")
            # 503 (not ready yet, e.g. /readyz while starting) and 507 (store
            # full) are planned answers; any other 5xx is a bug.
            if isinstance(st, int) and st >= 500 and st not in (503, 507):
                five.append(line[:300])
        return not_json, five

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop_clean()
        else:
            self.cleanup()

    # ---- logs ----
    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=25):
        return "\n".join(self.log_text().splitlines()[-n:])

    def sanitizer_lines(self):
        return [l for l in self.log_text().splitlines() if any(m in l for m in SANITIZER_MARKS)]

    # ---- clients ----
    @property
    def cert_path(self):
        return self.config.get("tls_cert") or os.path.join(self.data_dir, "tls", "cert.pem")

    def tls_context(self):
        """Trusts DATA/tls/cert.pem and checks the 'localhost' name. If that
        fails, the reason is kept in tls_verify_error (a test asserts on it)
        and an unverified context is used so that the other tests still run."""
        if self._ctx is not None:
            return self._ctx
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(self.cert_path)
            with Conn("127.0.0.1", self.https_port, ctx, timeout=5):
                pass
            self.tls_verify_error = None
        except (OSError, ssl.SSLError) as e:
            self.tls_verify_error = "%s: %s" % (type(e).__name__, e)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self._ctx = ctx
        return ctx

    def conn(self, timeout=TIMEOUT):
        """A persistent TLS connection to the public listener."""
        return Conn("127.0.0.1", self.https_port, self.tls_context(), timeout)

    def private_conn(self, timeout=TIMEOUT):
        return Conn("127.0.0.1", self.http_port, None, timeout)

    def req(self, method, path, body=None, headers=None, token=None, json=None,
            timeout=TIMEOUT, conn=None):
        """One request on the public TLS listener (a new connection unless conn)."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        if json is not None:
            body = jsonlib.dumps(json).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if conn is not None:
            return conn.request(method, path, body, hdrs)
        with self.conn(timeout) as c:
            return c.request(method, path, body, hdrs, close=True)

    def private(self, method, path, body=None, headers=None, timeout=TIMEOUT):
        """One request on the private plain-HTTP listener."""
        with self.private_conn(timeout) as c:
            return c.request(method, path, body, headers, close=True)

    def raw(self, data, tls=True, timeout=TIMEOUT, method="GET"):
        """Sends raw bytes; returns (Response or None, raw answer bytes)."""
        c = self.conn(timeout) if tls else self.private_conn(timeout)
        with c:
            err = c.send_raw(data)
            got = c.read_raw()
        resp = parse_response(got, method)
        if resp is not None:
            resp.send_error = err
        return resp, got

    # ---- API shortcuts ----
    def signup(self, email=None, password=None, expect=201):
        email = email or rand_email()
        password = password or "pw-" + secrets.token_hex(8)
        r = self.req("POST", "/api/v1/auth/signup", json={"email": email, "password": password})
        if expect is not None:
            r.expect(expect, "signup " + email)
        return r, email, password

    def login(self, email, password, expect=200):
        r = self.req("POST", "/api/v1/auth/login", json={"email": email, "password": password})
        if expect is not None:
            r.expect(expect, "login " + email)
        return r

    def new_user(self, tag="u"):
        """Signs up a fresh user and logs in: a User with tokens."""
        r, email, password = self.signup(rand_email(tag))
        u = User(self, email, password, r.json()["user"])
        u.login()
        return u

    def upload(self, token, data, content_type="image/jpeg", filename=None, headers=None,
               timeout=30):
        hdrs = dict(headers or {})
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        if filename is not None:
            hdrs["X-Filename"] = filename
        return self.req("POST", "/api/v1/photos", data, hdrs, token=token, timeout=timeout)

    def upload_multipart(self, token, files, field="file", timeout=30):
        body, ctype = multipart(files, field)
        return self.req("POST", "/api/v1/photos", body, {"Content-Type": ctype},
                        token=token, timeout=timeout)


class User:
    def __init__(self, pvd, email, password, user):
        self.pvd = pvd
        self.email = email
        self.password = password
        self.user = user
        self.id = user.get("id")
        self.access = None
        self.refresh = None

    def login(self):
        j = self.pvd.login(self.email, self.password).json()
        self.access, self.refresh = j["access_token"], j["refresh_token"]
        return j

    def req(self, method, path, **kw):
        kw.setdefault("token", self.access)
        return self.pvd.req(method, path, **kw)

    def upload(self, data, content_type="image/jpeg", filename=None, **kw):
        return self.pvd.upload(self.access, data, content_type, filename, **kw)

    def upload_ok(self, data, content_type="image/jpeg", filename=None):
        """Uploads and expects a new photo (201); returns the photo object."""
        r = self.upload(data, content_type, filename).expect(201, "upload")
        return r.json()["photo"]

    def list_all(self, limit=None):
        """Every photo id, following next_cursor."""
        ids, cursor = [], None
        for _ in range(1000):
            q = []
            if limit:
                q.append("limit=%d" % limit)
            if cursor:
                q.append("cursor=" + cursor)
            r = self.req("GET", "/api/v1/photos" + ("?" + "&".join(q) if q else "")).expect(200, "list")
            j = r.json()
            ids.extend(p["id"] for p in j["items"])
            cursor = j.get("next_cursor")
            if cursor is None:
                return ids
        raise AssertionError("list never ended (next_cursor kept coming)")


def parse_response(data, method="GET"):
    """Parses the first HTTP response in data (bytes); None if there is none."""
    if not data.startswith(b"HTTP/"):
        return None

    class _Sock:
        def __init__(self, b):
            self.b = b

        def makefile(self, *a, **k):
            import io
            return io.BytesIO(self.b)

    resp = http.client.HTTPResponse(_Sock(data), method=method)
    try:
        resp.begin()
        body = resp.read()
    except (http.client.HTTPException, ValueError):
        return None
    return Response(resp.status, resp.reason, resp.msg, body, resp.version)


def multipart(files, field="file"):
    """files: [(filename, content_type, bytes)] -> (body, content_type)."""
    boundary = "----pvit" + secrets.token_hex(12)
    out = []
    for fname, ctype, data in files:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                    "Content-Type: %s\r\n\r\n" % (boundary, field, fname, ctype)).encode() + data + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


# ---------------------------------------------------------------- JWT bits

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64url_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token):
    h, p, s = token.split(".")
    return jsonlib.loads(b64url_dec(h)), jsonlib.loads(b64url_dec(p)), s


def jwt_make(header, payload, key=None):
    """An HS256 token signed with key (None: alg 'none', empty signature)."""
    import hmac
    h = b64url(jsonlib.dumps(header, separators=(",", ":")).encode())
    p = b64url(jsonlib.dumps(payload, separators=(",", ":")).encode())
    sig = "" if key is None else b64url(hmac.new(key, (h + "." + p).encode(), hashlib.sha256).digest())
    return h + "." + p + "." + sig


# ---------------------------------------------------------------- images

_IMG_DIR = None


def img_dir():
    global _IMG_DIR
    if _IMG_DIR is None:
        _IMG_DIR = tempfile.mkdtemp(prefix="pvit-img-")
        if not KEEP:
            atexit.register(shutil.rmtree, _IMG_DIR, True)
    return _IMG_DIR


_cache = {}


def _run(cmd, what):
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
    except FileNotFoundError:
        raise Skip("%s needs %s, which is not installed" % (what, cmd[0]))
    if p.returncode != 0:
        raise AssertionError("%s: %s failed: %s" % (what, cmd[0], p.stderr.decode()[-400:]))


def ffmpeg_image(ext, w, h, src="testsrc", extra=()):
    """An image made by ffmpeg from a lavfi source; cached by arguments."""
    key = ("ff", ext, w, h, src, tuple(extra))
    if key not in _cache:
        path = os.path.join(img_dir(), "ff-%d.%s" % (len(_cache), ext))
        lavfi = "%s=s=%dx%d" % (src, w, h) if "=" not in src else "%s:s=%dx%d" % (src, w, h)
        _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", lavfi,
              "-frames:v", "1"] + list(extra) + [path], "making a test image")
        with open(path, "rb") as f:
            _cache[key] = f.read()
    return _cache[key]


def jpeg(w=64, h=48, src="testsrc"):
    return ffmpeg_image("jpg", w, h, src)


def png(w=64, h=48):
    return ffmpeg_image("png", w, h)


def webp(w=64, h=48):
    return ffmpeg_image("webp", w, h)


def unique_jpeg(w=64, h=48):
    """A JPEG with bytes no other call returns: a random COM segment after SOI."""
    base = jpeg(w, h)
    note = b"pvit " + secrets.token_hex(16).encode()
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(note) + 2) + note + base[2:]


def unique_png(w=64, h=48):
    """A PNG with a random tEXt chunk right after IHDR."""
    base = png(w, h)
    data = b"Comment\x00" + secrets.token_hex(16).encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    ihdr_end = 8 + 8 + 13 + 4
    return base[:ihdr_end] + chunk + base[ihdr_end:]


def fixture(*names):
    """The first fixture file under tests/fixtures that exists, or None."""
    for n in names:
        p = os.path.join(FIXTURES, n)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                return f.read(), p
    return None, None


def exif_info(path):
    """{width, height, orientation, taken_at (aware UTC datetime or None)}
    from exiftool, or None when it cannot tell."""
    try:
        p = subprocess.run(["exiftool", "-j", "-n", "-ImageWidth", "-ImageHeight", "-Orientation",
                            "-DateTimeOriginal", "-OffsetTimeOriginal", path], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=30)
        j = jsonlib.loads(p.stdout)[0]
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None
    taken = None
    dto = j.get("DateTimeOriginal")
    if isinstance(dto, str) and len(dto) >= 19:
        # No offset in the EXIF: pvd takes the time as UTC.
        off = j.get("OffsetTimeOriginal") or "+00:00"
        taken = datetime.datetime.strptime(dto[:19] + off.replace(":", ""), "%Y:%m:%d %H:%M:%S%z")
        taken = taken.astimezone(datetime.timezone.utc)
    return {"width": j.get("ImageWidth"), "height": j.get("ImageHeight"),
            "orientation": j.get("Orientation", 1), "taken_at": taken}


def parse_time(s):
    """RFC 3339 text -> aware datetime (None if it is not one)."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})", s or "")
    if not m:
        return None
    zone = "+0000" if m.group(4) == "Z" else m.group(4).replace(":", "")
    t = datetime.datetime.strptime(m.group(1) + "T" + m.group(2) + zone, "%Y-%m-%dT%H:%M:%S%z")
    if m.group(3):
        t += datetime.timedelta(seconds=float(m.group(3)))
    return t


def oriented_jpeg(orientation=6):
    """A JPEG stored landscape with an EXIF orientation (6: display turned
    90 degrees clockwise, 8: counter-clockwise). Returns (bytes, info) with
    info from exif_info(). Uses tests/fixtures (orient6.jpg, big8.jpg: the
    pattern of tests/fixtures/make.sh) when present, else makes one."""
    name = {6: "orient6.jpg", 8: "big8.jpg"}[orientation]
    data, path = fixture(name)
    if data:
        info = exif_info(path)
        if info and info["orientation"] == orientation and info["width"] and info["height"]:
            info["pattern"] = True
            return data, info
    key = "oriented%d" % orientation
    if key not in _cache:
        path = os.path.join(img_dir(), key + ".jpg")
        with open(path, "wb") as f:
            f.write(jpeg(640, 480))
        _run(["exiftool", "-q", "-overwrite_original", "-n", "-Orientation=%d" % orientation,
              "-DateTimeOriginal=2021:06:15 12:34:56", "-OffsetTimeOriginal=+02:00", path], "tagging a JPEG")
        info = exif_info(path) or {}
        info["pattern"] = False
        with open(path, "rb") as f:
            _cache[key] = (f.read(), info)
    return _cache[key]


def heic():
    """(bytes, taken_at or None) of a small HEIC image."""
    data, path = fixture("photo.heic")
    if data:
        info = exif_info(path) or {}
        return data, info.get("taken_at")
    if "heic" not in _cache:
        src = os.path.join(img_dir(), "heic-src.png")
        out = os.path.join(img_dir(), "x.heic")
        with open(src, "wb") as f:
            f.write(png(64, 48))
        _run(["heif-enc", "-q", "50", "-o", out, src], "making a HEIC image")
        with open(out, "rb") as f:
            _cache["heic"] = (f.read(), None)
    return _cache["heic"]


def decode_rgb(data):
    """(width, height, rgb24 bytes) of any image ffmpeg reads (used to look at
    thumbnails); raises Skip without ffmpeg."""
    path = os.path.join(img_dir(), "dec-%s" % secrets.token_hex(4))
    with open(path, "wb") as f:
        f.write(data)
    size = image_size(data)
    try:
        p = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-f", "rawvideo",
                            "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    except FileNotFoundError:
        raise Skip("needs ffmpeg")
    finally:
        os.unlink(path)
    check(p.returncode == 0 and size, "decoding an image with ffmpeg", "decodable", p.stderr[-300:])
    return size[0], size[1], p.stdout


def colour_at(img, fx, fy):
    """'red', 'green', 'blue' or 'other' at the fraction (fx, fy) of img."""
    w, h, px = img
    x, y = min(w - 1, int(w * fx)), min(h - 1, int(h * fy))
    r, g, b = px[3 * (y * w + x):3 * (y * w + x) + 3]
    if r > 150 and g < 100 and b < 100:
        return "red"
    if g > 150 and r < 100 and b < 100:
        return "green"
    if b > 150 and r < 100 and g < 100:
        return "blue"
    return "other(%d,%d,%d)" % (r, g, b)


def image_size(data):
    """(width, height) of a JPEG (from its SOF) or PNG; None otherwise."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        m = data[i + 1]
        if m == 0xFF:
            i += 1
            continue
        if m in (0xD8, 0x01) or 0xD0 <= m <= 0xD7:
            i += 2
            continue
        seglen = struct.unpack(">H", data[i + 2:i + 4])[0]
        if m in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + seglen
    return None


def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()
