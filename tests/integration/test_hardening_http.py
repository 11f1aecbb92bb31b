"""test_hardening_http.py — the HTTP edge against the attacks a security
review ran on a live pvd, each replayed here (loopback only, bounded in
time and count) and now refused:

- a POST held open by a byte every few seconds (the read timeout restarts
  on each byte): cut by the whole-body and whole-head deadlines with
  408 request_timeout, while an honest slow upload still goes through;
- X-Forwarded-For sent as several header lines to escape the per-address
  login limit behind a trusted proxy;
- a flood of idle connections (220 of them starved /healthz once the file
  descriptors ran out): capped in all and per address, the private
  listener counted apart, and when descriptors run out anyway a spare one
  lets health checks through and accepting pauses instead of spinning;
- 200 slow login bodies: memory follows the bytes that came, not the
  Content-Length announced;
- plain HTTP sent to the HTTPS port, which got an empty reply: now a 400
  in plain text saying to use https://.

Figures (how long a trickle lived) are printed as `#` lines.
"""

import json
import os
import resource
import select
import socket
import ssl
import struct
import time

from harness import Pvd, check, eq, ffmpeg_image, jpeg, parse_response
from test_openapi import _check, _deref, _doc, _valid

# Small deadlines so that the attacks end in seconds; read_timeout stays
# at its default (30 s), which a byte every half second never meets.
DEADLINES = {"header_timeout": 2, "body_timeout": 2, "body_min_rate": 1024}


def _default_error(body, what):
    """body is an error the document lists under its Default response."""
    schema = _deref(_doc()["components"]["responses"]["Default"])["content"]["application/json"]["schema"]
    _valid(schema, json.loads(body.decode()), what)


def _trickle(c, data, gap=0.5, most=60.0):
    """Sends data a byte every `gap` s until the server answers or closes;
    returns the seconds that took (at most `most`)."""
    t0 = time.monotonic()
    for i in range(len(data)):
        if time.monotonic() - t0 > most:
            break
        wait_end = time.monotonic() + gap
        while time.monotonic() < wait_end:
            if c._answered():
                return time.monotonic() - t0
            time.sleep(0.02)
        try:
            c.sock.send(data[i:i + 1])
        except OSError:
            return time.monotonic() - t0
    return time.monotonic() - t0


def _closed_within(c, secs):
    """Reads until EOF; the seconds it took, or None if still open."""
    t0 = time.monotonic()
    c.sock.settimeout(0.2)
    while time.monotonic() - t0 < secs:
        try:
            if not c.sock.recv(4096):
                return time.monotonic() - t0
        except (TimeoutError, OSError) as e:
            if not isinstance(e, TimeoutError) and "timed out" not in str(e):
                return time.monotonic() - t0
    return None


def _408(c, what):
    got = c.read_raw()
    r = parse_response(got)
    check(r is not None, "%s: an answer" % what, "408", got[:200])
    eq(r.status, 408, "%s: status" % what)
    eq(r.json()["error"]["code"], "request_timeout", "%s: error code" % what)
    eq((r.header("Connection") or "").lower(), "close", "%s: Connection" % what)
    _default_error(r.body, what)
    return r


def test_trickled_body_cut_at_deadline():
    """The attack: a login body declared at 200 bytes, sent a byte every
    0.5 s (it ran 71 s against the review's pvd, a byte every 5 s). Cut at
    body_timeout (2 s) plus 1 s per 1024 bytes received."""
    with Pvd(DEADLINES, name="trickle-body").start() as p:
        with p.conn(timeout=10) as c:
            c.send_raw(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 200\r\n\r\n")
            took = _trickle(c, b'{"email":"a@b.c","password":"' + b"x" * 160 + b'"}')
            _408(c, "a trickled body")
            closed = _closed_within(c, 6)
        print("# trickled login body: 408 after %.2f s (body_timeout 2 s), closed %.2f s later" % (
            took, closed if closed is not None else -1))
        check(1.8 <= took <= 3.5, "the trickle is cut at the deadline", "2-3.5 s", "%.2f s" % took)
        check(closed is not None, "the connection closes after the 408", "closed within 6 s", "still open")
        p.private("GET", "/healthz").expect(200, "healthz after the trickle")


def test_trickled_head_cut_at_deadline():
    """A head sent a byte every 0.5 s (slowloris): 408 at header_timeout
    (2 s) counted from the connection's start, on TLS and on plain HTTP."""
    with Pvd(DEADLINES, name="trickle-head").start() as p:
        for tls in (True, False):
            what = "a trickled head (%s)" % ("TLS" if tls else "private HTTP")
            with (p.conn(timeout=10) if tls else p.private_conn(timeout=10)) as c:
                took = _trickle(c, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"p" * 60 + b"\r\n\r\n")
                _408(c, what)
            print("# %s: 408 after %.2f s (header_timeout 2 s)" % (what, took))
            check(1.5 <= took <= 3.5, "%s is cut at the deadline" % what, "2-3.5 s", "%.2f s" % took)


def test_slow_honest_upload_passes():
    """The deadline grows with what arrives: a photo sent at ~32 KB/s,
    well past body_timeout (2 s) in all, is stored."""
    with Pvd(DEADLINES, name="slow-upload").start() as p:
        u = p.new_user("slow")
        data = jpeg(1600, 1200, src="mandelbrot")
        check(len(data) > 150000, "a photo big enough to take several seconds", "> 150 kB", len(data))
        head = ("POST /api/v1/photos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (u.access, len(data))).encode()
        with p.conn(timeout=30) as c:
            c.send_raw(head)
            t0 = time.monotonic()
            for off in range(0, len(data), 3200):
                c.sock.sendall(data[off:off + 3200])
                time.sleep(0.1)  # the sender's pace (32 KB/s), not a wait for pvd
            r = c.read_response("POST")
            took = time.monotonic() - t0
        print("# %d bytes at ~32 KB/s: %d after %.2f s" % (len(data), r.status, took))
        r.expect(201, "an upload at 32 KB/s that takes longer than body_timeout")
        check(took > 2.5, "the upload outlived body_timeout", "> 2.5 s", "%.2f s" % took)


def test_xff_lines_joined_for_login_limit():
    """Behind a trusted proxy, the client's address is the right-most
    untrusted entry of all X-Forwarded-For lines taken together. The
    attack: a forged line of the client's own, new each try, ahead of the
    line the proxy adds; only the first line was read, so every try came
    from a new address and the per-address login limit never bit."""
    cfg = {"login_ip_burst": "3", "login_ip_per_minute": "0.001", "login_account_burst": "1000",
           "trusted_proxies": "127.0.0.1"}
    with Pvd(cfg, name="xff-lines").start() as p:
        def attempt(lines):
            body = json.dumps({"email": "nobody@example.com", "password": "x" * 8}).encode()
            hdrs = [("Content-Type", "application/json")] + [("X-Forwarded-For", v) for v in lines]
            with p.conn() as c:  # as the proxy (127.0.0.1) would send it
                return c.request("POST", "/api/v1/auth/login", body, hdrs, close=True).status
        seen = [attempt(["198.51.100.%d" % i, "203.0.113.7"]) for i in range(1, 6)]
        eq(seen, [401, 401, 401, 429, 429], "a forged first line (new each try), the proxy's line after it")
        eq(attempt(["198.51.100.99, 203.0.113.7"]), 429, "the same entries as one line")
        eq(attempt(["203.0.113.7", "127.0.0.1"]), 429, "a trusted proxy right-most is skipped")
        eq(attempt(["203.0.113.7", "192.0.2.44"]), 401, "another client right-most: its own budget")
        # Something that is not an address where the client's should be:
        # the request counts as the proxy's (127.0.0.1), not as a new key.
        for i in range(3):
            attempt(["203.0.113.7", "unknown-%d" % i])
        eq(attempt(["203.0.113.7", "unknown-x"]), 429, "garbage right-most: all of it on the proxy's budget")


# ---------------------------------------------------------------- connection floods

def _connect_from(port, src, timeout=5):
    """A TCP connection to 127.0.0.1:port from the loopback address src:
    all of 127.0.0.0/8 is this host's, so these are distinct peers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def _get_from(p, src, path="/healthz", tls=True):
    """One GET from src (a new connection); the Response, or None when the
    connection was refused."""
    try:
        raw = _connect_from(p.https_port if tls else p.http_port, src)
        s = p.tls_context().wrap_socket(raw, server_hostname="localhost") if tls else raw
        with s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode())
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
    except (OSError, ssl.SSLError):
        return None
    return parse_response(data)


def _closed(s):
    """Whether the server closed s (EOF or reset), without waiting."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _wait_closed(socks, want, secs=10):
    """Waits until `want` of socks are closed by the server (at most secs);
    returns (closed, still open)."""
    deadline = time.monotonic() + secs
    while True:
        shut = [s for s in socks if _closed(s)]
        if len(shut) >= want or time.monotonic() > deadline:
            return shut, [s for s in socks if s not in shut]
        time.sleep(0.02)


def test_connection_flood_capped():
    """The attack: 220 idle connections to the TLS port. With the caps low
    (50 in all, 10 per address), one address keeps 10 and the rest are
    closed at once; others are still served, and /healthz on the private
    listener answers, also once the public side is full."""
    cfg = {"max_connections": 50, "max_connections_per_ip": 10, "max_private_connections": 3,
           "header_timeout": 60}
    with Pvd(cfg, name="flood").start() as p:
        flood = [_connect_from(p.https_port, "127.0.0.2") for _ in range(220)]
        shut, held = _wait_closed(flood, 210)
        print("# 220 idle connections from one address: %d held, %d closed at once" % (len(held), len(shut)))
        eq(len(held), 10, "connections held from the flooding address (max_connections_per_ip 10)")
        r = _get_from(p, "127.0.0.3")
        check(r is not None and r.status == 200, "another address is served during the flood", 200, r)
        p.private("GET", "/healthz").expect(200, "/healthz on the private listener during the flood")
        # Fill the rest: 4 more addresses x 10 make 50 in all.
        more = [_connect_from(p.https_port, "127.0.0.%d" % a) for a in range(3, 7) for _ in range(10)]
        _, late = _wait_closed(more, 1, secs=0.5)  # none should close; a short look
        eq(len(late), 40, "40 more from four other addresses are held (50 in all)")
        r = _get_from(p, "127.0.0.8")
        eq(r, None, "a new address once 50 are open (max_connections): refused")
        for i in range(3):
            p.private("GET", "/healthz").expect(200, "/healthz on the private listener, public side full (%d)" % i)
        # The flood ends: its places come back.
        for s in held + more:
            s.close()
        deadline = time.monotonic() + 10
        while (r is None or r.status != 200) and time.monotonic() < deadline:
            r = _get_from(p, "127.0.0.8")
        check(r is not None and r.status == 200, "served again once the flood closed", 200, r)
        for s in shut:
            s.close()
        # The private listener's own cap: a plain-HTTP refusal is a fixed 503.
        idle = [_connect_from(p.http_port, "127.0.0.9") for _ in range(3)]
        r = _get_from(p, "127.0.0.9", tls=False)
        check(r is not None, "an answer past max_private_connections", "503", r)
        r.expect_error(503, "too_many_connections", "past max_private_connections")
        eq(r.header("Retry-After"), "1", "Retry-After of the 503")
        _default_error(r.body, "the 503 too_many_connections")
        _check("GET", "/readyz", _get_from(p, "127.0.0.9", "/readyz", tls=False),
               "/readyz past max_private_connections", 503, "too_many_connections")
        for s in idle:
            s.close()
        deadline = time.monotonic() + 10
        while (r is None or r.status != 200) and time.monotonic() < deadline:
            r = _get_from(p, "127.0.0.9", tls=False)
        check(r is not None and r.status == 200, "/healthz once the private connections closed", 200, r)
        ok = "refused" in p.log_text() and "max_connections_per_ip" in p.log_text()
        check(ok, "the refusals are in the log (once per 10 s)", "a warn line", p.log_tail(5))


def _fds(p):
    return len(os.listdir("/proc/%d/fd" % p.proc.pid))


def _cpu_s(p):
    with open("/proc/%d/stat" % p.proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors():
    """When the descriptors run out anyway (the cap set above what the
    limit allows), accepting pauses instead of spinning on EMFILE, waiting
    public connections are closed instead of left hanging, and the spare
    descriptor lets /healthz through on the private listener."""
    cfg = {"max_connections": 1000, "max_connections_per_ip": 1000, "header_timeout": 60}
    with Pvd(cfg, name="emfile").start() as p:
        p.private("GET", "/healthz").expect(200, "/healthz before")
        before = resource.prlimit(p.proc.pid, resource.RLIMIT_NOFILE)
        limit = _fds(p) + 12
        resource.prlimit(p.proc.pid, resource.RLIMIT_NOFILE, (limit, before[1]))
        try:
            flood = [_connect_from(p.https_port, "127.0.0.2") for _ in range(80)]
            t0 = time.monotonic()
            shut, held = _wait_closed(flood, 60)
            print("# descriptors limited to %d: %d of 80 connections held, %d closed within %.2f s" % (
                limit, len(held), len(shut), time.monotonic() - t0))
            # Without the spare descriptor every one of them would wait in
            # the backlog (held open by the kernel, never answered).
            check(len(held) < 30 and len(shut) >= 50, "past the limit, connections are closed, not left waiting",
                  ">= 50 of 80 closed", "%d held, %d closed" % (len(held), len(shut)))
            cpu0, t0 = _cpu_s(p), time.monotonic()
            for i in range(5):
                p.private("GET", "/healthz", timeout=5).expect(200, "/healthz out of descriptors (%d)" % i)
            more = [_connect_from(p.https_port, "127.0.0.3") for _ in range(20)]
            _, waiting = _wait_closed(more, 20)
            eq(len(waiting), 0, "20 more connections, after the health checks took the spare: closed")
            wall = time.monotonic() - t0
            time.sleep(max(0.0, 1.0 - wall))  # measure over a second at least: pvd must be idle, not spinning
            cpu = _cpu_s(p) - cpu0
            wall = time.monotonic() - t0
            print("# out of descriptors: pvd used %.2f s of CPU in %.2f s" % (cpu, wall))
            check(cpu < 0.5 * wall, "no busy loop on EMFILE", "< half a core", "%.2f s in %.2f s" % (cpu, wall))
            for s in flood + more:
                s.close()
        finally:
            resource.prlimit(p.proc.pid, resource.RLIMIT_NOFILE, before)
        deadline = time.monotonic() + 10
        r = None
        while (r is None or r.status != 200) and time.monotonic() < deadline:
            r = _get_from(p, "127.0.0.4")
        check(r is not None and r.status == 200, "served again once descriptors are back", 200, r)


def _rss_kb(p):
    with open("/proc/%d/status" % p.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_slow_login_bodies_cost_little():
    """The attack: 200 login bodies announced at 64 KiB (max_json_bytes)
    and sent slowly. pvd's memory follows what came (100 bytes each), not
    what was announced (12.5 MiB in all); measured as pvd's VmRSS once each
    body is being read (its 100 Continue came)."""
    # ASan keeps freed memory in quarantine (256 MB) and never reuses it, so
    # the RSS of the test build would count every TLS handshake's garbage.
    # Without the quarantine its RSS follows what is live, as a release
    # build's does.
    asan = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=0"
    try:
        p = Pvd({"max_connections_per_ip": 100}, name="slow-bodies").start()
    finally:
        if asan is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = asan
    with p:
        ctx = p.tls_context()

        def open_one(i):
            raw = _connect_from(p.https_port, "127.0.0.%d" % (10 + i % 4))
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 65536\r\nExpect: 100-continue\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got:
                d = s.recv(256)
                check(d, "a 100 Continue", "HTTP/1.1 100", got)
                got += d
            check(got.startswith(b"HTTP/1.1 100"), "pvd reads the body", "HTTP/1.1 100 Continue", got[:40])
            s.sendall(b'{"email":"' + b"a" * 88 + b'"')
            return s

        warm = [open_one(i) for i in range(8)]  # TLS and allocator warmed up
        for s in warm:
            s.close()
        before = _rss_kb(p)
        socks = [open_one(i) for i in range(200)]
        after = _rss_kb(p)
        grew = after - before
        print("# 200 slow login bodies (64 KiB announced, 100 bytes sent): VmRSS %d -> %d KiB, +%.1f MiB "
              "(+%.1f KiB each)" % (before, after, grew / 1024, grew / 200))
        check(grew < 10 * 1024, "pvd's RSS growth for 200 slow login bodies (the bodies announced: 12.5 MiB)",
              "< 10 MiB", "%.1f MiB" % (grew / 1024))
        for s in socks:
            s.close()


# ---------------------------------------------------------------- TLS clients gone mid-answer

def test_tls_client_gone_mid_answer():
    """A TLS client that closes (FIN or RST) while its answer is on the
    way - a download it stops reading, a request it does not wait for -
    leaves nothing behind in pvd. libevent's OpenSSL bufferevent stops
    writing as well as reading at any close, so an answer waiting to drain
    used to keep the connection, its socket and the file's descriptor until
    pvd stopped (bench/soak found it: two descriptors per aborted download,
    and a shutdown held for the whole grace period)."""
    with Pvd({}, name="gone-mid-answer").start() as p:
        u = p.new_user("gone")
        # noise makes it big (~6 MB): more than the socket buffers take in
        big = ffmpeg_image("jpg", 3000, 2000, "testsrc2", extra=("-vf", "noise=alls=60:allf=u", "-q:v", "1"))
        photo = u.upload_ok(big)
        ctx = p.tls_context()
        base = _fds(p)
        for i in range(12):
            raw = socket.create_connection(("127.0.0.1", p.https_port), timeout=10)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            if i % 2:
                s.sendall(("GET /api/v1/photos/%s/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                           % (photo["id"], u.access)).encode())
                got = 0
                while got < 32768:
                    d = s.recv(16384)
                    check(d, "the start of the download", "bytes", "a close after %d" % got)
                    got += len(d)
            else:
                s.sendall(("GET /api/v1/photos?limit=100 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                           % u.access).encode())
            if i % 4 >= 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        deadline = time.monotonic() + 10
        while _fds(p) > base and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _fds(p) - base
        print("# 12 TLS clients gone mid-answer: pvd's descriptors %d before, %d after" % (base, base + left))
        check(left <= 0, "pvd's descriptors held for TLS clients that left mid-answer", "none", left)
        u.req("GET", "/api/v1/me").expect(200, "/me afterwards")


# ---------------------------------------------------------------- plain HTTP to the TLS port

def test_plain_http_to_tls_port(pvd):
    """http://host:HTTPS_PORT/ got an empty reply; now a 400 in plain text
    that says to use https://, then the close, whatever was sent."""
    for raw in (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2\r\n\r\n{}",
                b"GET / HTTP/1.0\r\n\r\n",
                b"NONSENSE\r\n\r\n"):
        what = "plain %r to the TLS port" % raw[:24]
        with socket.create_connection(("127.0.0.1", pvd.https_port), timeout=5) as s:
            s.sendall(raw)
            got = b""
            t0 = time.monotonic()
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
            except OSError:
                pass
            took = time.monotonic() - t0
        r = parse_response(got)
        check(r is not None, "%s: an answer in plain text" % what, "HTTP/1.1 400", got[:100])
        r.expect_error(400, "https_required", what)
        check("https://" in r.json()["error"]["message"], "%s: the message says https://" % what, "https://",
              r.json()["error"]["message"])
        eq((r.header("Connection") or "").lower(), "close", "%s: Connection" % what)
        eq(r.header("Strict-Transport-Security"), None, "%s: no HSTS over plain text" % what)
        _default_error(r.body, what)
        check(took < 4, "%s: then the connection closes" % what, "< 4 s", "%.2f s" % took)
    # TLS on the same port is as before.
    pvd.req("GET", "/healthz").expect(200, "healthz over TLS after plain text on the port")
