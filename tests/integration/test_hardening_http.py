"""test_hardening_http.py — the HTTP edge against the attacks a security
review ran on a live pvd, each replayed here (loopback only, bounded in
time and count) and now refused:

- a POST held open by a byte every few seconds (the read timeout restarts
  on each byte): cut by the whole-body and whole-head deadlines with
  408 request_timeout, while an honest slow upload still goes through;
- X-Forwarded-For sent as several header lines to escape the per-address
  login limit behind a trusted proxy.

Figures (how long a trickle lived) are printed as `#` lines.
"""

import json
import time

from harness import Pvd, check, eq, jpeg, parse_response
from test_openapi import _deref, _doc, _valid

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


def test_trickled_body_cut_at_deadline(pvd):
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


def test_trickled_head_cut_at_deadline(pvd):
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


def test_slow_honest_upload_passes(pvd):
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


def test_xff_lines_joined_for_login_limit(pvd):
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
