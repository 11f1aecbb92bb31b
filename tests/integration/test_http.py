"""test_http.py — the HTTP edge: TLS, security headers, keep-alive,
malformed and oversized requests, routing errors, health, readiness and
metrics listeners (API.md, "Conventions" and "Operations")."""

import os
import re
import socket
import ssl
import threading
import time
import warnings

from harness import Conn, Pvd, Skip, check, eq, parse_response


def _user(pvd):
    if not hasattr(pvd, "_http_user"):
        pvd._http_user = pvd.new_user("http")
    return pvd._http_user


def test_tls_certificate_verifies(pvd):
    pvd.tls_context()
    eq(pvd.tls_verify_error, None,
       "TLS handshake verifying DATA/tls/cert.pem as trust anchor and the name 'localhost'")
    with pvd.conn() as c:
        v = c.sock.version()
        check(v in ("TLSv1.2", "TLSv1.3"), "negotiated TLS version", "TLSv1.2 or TLSv1.3", v)
    # The self-signed certificate also names 127.0.0.1.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pvd.cert_path)
    try:
        with Conn("127.0.0.1", pvd.https_port, ctx, timeout=5, server_hostname="127.0.0.1"):
            pass
        err = None
    except (OSError, ssl.SSLError) as e:
        err = str(e)
    eq(err, None, "TLS handshake verifying the name 127.0.0.1")


def test_old_tls_refused(pvd):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        raise Skip("this OpenSSL cannot offer TLS 1.1")
    ok = False
    try:
        with Conn("127.0.0.1", pvd.https_port, ctx, timeout=5):
            ok = True
    except (OSError, ssl.SSLError):
        pass
    eq(ok, False, "a TLS 1.0/1.1-only handshake succeeded")


def test_plain_http_on_tls_port(pvd):
    s = socket.create_connection(("127.0.0.1", pvd.https_port), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        check(time.monotonic() - t0 < 5, "plain HTTP on the TLS port is dropped promptly",
              "closed within 5 s", "still open after %.1f s" % (time.monotonic() - t0))
    finally:
        s.close()
    pvd.private("GET", "/healthz").expect(200, "healthz after plain HTTP on the TLS port")


def _check_security_headers(r, what, tls=True):
    eq((r.header("X-Content-Type-Options") or "").lower(), "nosniff", what + ": X-Content-Type-Options")
    check(r.header("Content-Security-Policy"), what + ": Content-Security-Policy present", "a policy",
          r.header("Content-Security-Policy"))
    if tls:
        hsts = r.header("Strict-Transport-Security") or ""
        m = re.search(r"max-age=(\d+)", hsts)
        check(m and int(m.group(1)) > 0, what + ": Strict-Transport-Security with max-age > 0",
              "max-age=N", hsts or None)
    server = r.header("Server")
    check(server is None or not re.search(r"[/\d]", server), what + ": Server header has no version",
          "absent or a bare name", server)


def test_security_headers(pvd):
    u = _user(pvd)
    _check_security_headers(u.req("GET", "/api/v1/me").expect(200, "/me"), "GET /me")
    _check_security_headers(pvd.req("GET", "/api/v1/nope"), "404")
    _check_security_headers(pvd.req("GET", "/api/v1/me"), "401")
    _check_security_headers(pvd.req("POST", "/api/v1/auth/login", b"{", {"Content-Type": "application/json"}),
                            "400")


def test_keep_alive(pvd):
    u = _user(pvd)
    with pvd.conn() as c:
        sock = c.sock
        r1 = pvd.req("GET", "/api/v1/me", token=u.access, conn=c)
        r1.expect(200, "first request on the connection")
        check(not c.closed_by_server, "server keeps the connection open after the first answer",
              "keep-alive", "Connection: %s" % r1.header("Connection"))
        r2 = pvd.req("GET", "/api/v1/photos", token=u.access, conn=c)
        r2.expect(200, "second request on the same connection")
        r3 = pvd.req("GET", "/api/v1/nope", conn=c)
        r3.expect_error(404, what="third request (a 404) on the same connection")
        r4 = pvd.req("POST", "/api/v1/auth/login", conn=c,
                     json={"email": u.email, "password": u.password})
        r4.expect(200, "a POST with a body on the same connection")
        check(c.sock is sock and c.responses == 4, "four answers on one connection", 4, c.responses)


def test_pipelined_requests(pvd):
    u = _user(pvd)
    req = ("GET /api/v1/me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n" % u.access).encode()
    last = b"GET /api/v1/nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    with pvd.conn() as c:
        c.send_raw(req + req + last)
        a = c.read_response()
        b = c.read_response()
        d = c.read_response()
    eq((a.status, b.status, d.status), (200, 200, 404), "statuses of three pipelined requests, in order")
    eq(a.json()["id"], u.id, "first pipelined answer")


def test_http10(pvd):
    resp, raw = pvd.raw(b"GET /healthz HTTP/1.0\r\n\r\n", tls=False)
    check(resp is not None, "HTTP/1.0 request answered", "a response", raw[:200])
    eq(resp.status, 200, "HTTP/1.0 /healthz status")


def test_malformed_request_line(pvd):
    cases = [
        (b"GARBAGE\r\n\r\n", "a single word"),
        (b"GET\r\n\r\n", "method only"),
        (b"GET /api/v1/me HTTP/1.1 extra\r\nHost: x\r\n\r\n", "four parts"),
        (b"GET api/v1/me HTTP/1.1\r\nHost: x\r\n\r\n", "path without a leading slash"),
        (b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", "NUL in the method"),
        (b"GET / HTTX/1.1\r\nHost: x\r\n\r\n", "bad protocol name"),
        (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", "control char in the path"),
        (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "header line without a colon"),
        (b"GET / HTTP/1.1\r\n : empty name\r\n\r\n", "header with an empty name"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", "TLS bytes inside TLS"),
    ]
    for tls in (True, False):
        for data, what in cases:
            what2 = "%s (%s)" % (what, "TLS" if tls else "private HTTP")
            resp, raw = pvd.raw(data, tls=tls)
            check(resp is not None, "an HTTP answer to " + what2, "HTTP/1.x 400", raw[:200])
            eq(resp.status, 400, "status for " + what2)
    resp, raw = pvd.raw(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    check(resp is not None and resp.status in (400, 505), "answer to HTTP/2.0 on an HTTP/1.1 server",
          "400 or 505", raw[:200])
    pvd.private("GET", "/healthz").expect(200, "healthz after malformed requests")


def test_request_framing(pvd):
    u = _user(pvd)
    login = ('{"email":"%s","password":"%s"}' % (u.email, u.password)).encode()
    # Content-Length together with Transfer-Encoding (smuggling) is refused.
    data = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (len(login), len(login), login))
    resp, raw = pvd.raw(data)
    check(resp is not None and resp.status == 400, "Content-Length with Transfer-Encoding", "400", raw[:200])
    # Two different Content-Lengths.
    data = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n%s" % (len(login), len(login) + 1, login))
    resp, raw = pvd.raw(data)
    check(resp is not None and resp.status == 400, "two different Content-Length headers", "400", raw[:200])
    for cl in (b"-1", b"abc", b"99999999999999999999999", b"1 2"):
        data = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + cl + b"\r\n\r\n" + login)
        resp, raw = pvd.raw(data)
        check(resp is not None and resp.status in (400, 413), "Content-Length: %s" % cl.decode(), "400",
              raw[:200])
    # A chunked body is either understood (HTTP/1.1) or refused with 411, never mangled.
    data = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(login), login))
    resp, raw = pvd.raw(data)
    check(resp is not None and resp.status in (200, 411), "chunked login body", "200 (or 411)", raw[:300])
    # Bad chunk framing.
    data = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n")
    resp, raw = pvd.raw(data)
    check(resp is not None and resp.status in (400, 411), "bad chunk size", "400 (or 411)", raw[:300])


def test_huge_headers(pvd):
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"
    for tls in (True, False):
        resp, raw = pvd.raw(big, tls=tls)
        check(resp is not None, "an answer to a 100 KB header (%s)" % ("TLS" if tls else "HTTP"), "431",
              raw[:200] or "connection closed without an answer")
        eq(resp.status, 431, "status for a 100 KB header")
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n"
    resp, raw = pvd.raw(many)
    check(resp is not None, "an answer to 5000 headers", "431", raw[:200] or "closed without an answer")
    eq(resp.status, 431, "status for 5000 headers")
    long_path = b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    resp, raw = pvd.raw(long_path)
    check(resp is not None and resp.status in (414, 431, 400), "answer to a 100 KB request line",
          "414/431", raw[:200])
    pvd.private("GET", "/healthz").expect(200, "healthz after huge headers")


def test_unknown_route_404_json(pvd):
    u = _user(pvd)
    for path in ("/api/v1/nope", "/api/v2/photos", "/nope", "/api/v1/photos/x/y/z", "/api/v1/", "/.env",
                 "/api/v1/photos/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"):
        r = pvd.req("GET", path, token=u.access)
        check(r.status in (400, 404), "GET %s: status" % path, "404", r.status)
        r.expect_error(r.status, what="GET " + path)
    pvd.private("GET", "/nope").expect_error(404, what="GET /nope on the private listener")


def test_wrong_method_405(pvd):
    u = _user(pvd)
    for method, path in (("PUT", "/api/v1/photos"), ("PATCH", "/api/v1/me"), ("DELETE", "/api/v1/me"),
                         ("GET", "/api/v1/auth/login"), ("DELETE", "/api/v1/auth/signup"),
                         ("POST", "/api/v1/photos/%s" % ("0" * 26)), ("PUT", "/api/v1/photos/x/content")):
        r = pvd.req(method, path, b"" if method in ("PUT", "PATCH", "POST") else None, token=u.access)
        r.expect_error(405, what="%s %s" % (method, path))
        allow = r.header("Allow")
        check(allow and re.search(r"[A-Z]", allow), "%s %s: Allow header" % (method, path), "e.g. GET, POST", allow)
    resp, raw = pvd.raw(b"BREW /api/v1/me HTTP/1.1\r\nHost: x\r\n\r\n")
    check(resp is not None and resp.status in (400, 405, 501), "unknown method BREW", "405/501/400", raw[:200])


def test_health_ready_metrics(pvd):
    r = pvd.private("GET", "/healthz").expect(200, "private /healthz")
    eq(r.body.strip().lower(), b"ok", "/healthz body")
    pvd.private("GET", "/readyz").expect(200, "private /readyz")
    r = pvd.private("HEAD", "/healthz")
    eq(r.status, 200, "HEAD /healthz")
    # Some traffic first, so counters exist.
    pvd.req("GET", "/api/v1/nope")
    r = pvd.private("GET", "/metrics").expect(200, "private /metrics")
    ct = r.header("Content-Type", "")
    check(ct.startswith("text/plain"), "/metrics Content-Type", "text/plain...", ct)
    text = r.body.decode("utf-8", "replace")
    check("# TYPE " in text, "/metrics is Prometheus text (has # TYPE lines)", "# TYPE ...", text[:300])
    bad = [l for l in text.splitlines()
           if l and not l.startswith("#")
           and not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? ([-+]?[0-9][0-9.eE+-]*|[-+]?Inf|NaN)( -?\d+)?$", l)]
    eq(bad[:5], [], "/metrics sample lines that are not 'name{labels} value'")
    r = pvd.req("GET", "/metrics")
    r.expect_error(404, what="/metrics on the public listener")
    check(b"# TYPE" not in r.body, "public /metrics body has no metrics", "no metrics", r.body[:200])


def test_many_connections(pvd):
    errors = []

    def go():
        try:
            for _ in range(5):
                pvd.req("GET", "/api/v1/me").expect_error(401, what="unauthenticated /me")
        except Exception as e:  # noqa: BLE001 - collected below
            errors.append(repr(e))

    threads = [threading.Thread(target=go) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    eq(errors[:3], [], "errors from 20 clients x 5 requests")


def _upload_files(pvd):
    """Uploads being streamed to disk: their temp files in DATA/tmp."""
    tmp = os.path.join(pvd.data_dir, "tmp")
    return [f for f in os.listdir(tmp) if f.startswith(".pv-upload-")]


def _wait_upload_files(pvd, want_any, secs=10):
    """Waits until temp files exist (want_any) or none is left; the files."""
    deadline = time.monotonic() + secs
    while bool(_upload_files(pvd)) != want_any and time.monotonic() < deadline:
        time.sleep(0.01)
    return _upload_files(pvd)


def _photos_404s(pvd):
    return sum(1 for l in pvd.log_text().splitlines()
               if '"path":"/api/v1/photos","route":"unmatched","status":404' in l)


def test_client_vanishes_mid_request(pvd):
    u = _user(pvd)
    for tls in (True, False):
        what = " (%s)" % ("TLS" if tls else "private HTTP")
        refused = _photos_404s(pvd)
        c = pvd.conn() if tls else pvd.private_conn()
        c.send_raw(b"POST /api/v1/photos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + u.access.encode()
                   + b"\r\nContent-Type: image/jpeg\r\nContent-Length: 500000\r\n\r\n" + b"\xff\xd8" + b"\x00" * 1000)
        if tls:
            check(_wait_upload_files(pvd, True), "the upload is being streamed to disk" + what,
                  "a temp file", [])
        else:  # not a route of the private listener: answered 404 at once
            deadline = time.monotonic() + 10
            while _photos_404s(pvd) == refused and time.monotonic() < deadline:
                time.sleep(0.01)
            check(_photos_404s(pvd) > refused, "the upload refused" + what, "a 404 in the log", "none")
        c.close()
        eq(_wait_upload_files(pvd, False), [], "the half upload's temp file, once its client left" + what)
        c = pvd.conn() if tls else pvd.private_conn()
        c.send_raw(b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuth")
        c.close()
    pvd.private("GET", "/healthz").expect(200, "healthz after clients vanished mid-request")
    u.req("GET", "/api/v1/me").expect(200, "/me after clients vanished mid-request")
    eq(u.list_all(), [], "a half-sent upload stores nothing")


def test_response_framing(pvd):
    u = _user(pvd)
    r = u.req("GET", "/api/v1/me")
    check(r.header("Content-Length") is not None or (r.header("Transfer-Encoding") or "").lower() == "chunked",
          "JSON answer is framed", "Content-Length or chunked", dict(r.headers))
    j = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    eq(j.status, 200, "harness self-check")


def test_head_on_api_routes(pvd):
    u = _user(pvd)
    g = u.req("GET", "/api/v1/me").expect(200, "GET /me")
    h = u.req("HEAD", "/api/v1/me").expect(200, "HEAD /me")
    eq(h.body, b"", "HEAD /me body")
    eq(h.header("Content-Length"), g.header("Content-Length"), "HEAD /me Content-Length equals GET's")


def test_slow_and_idle_clients_are_dropped(pvd):
    with Pvd({"idle_timeout": 1, "read_timeout": 1}, name="timeouts").start() as p:
        # An idle keep-alive connection is closed by the server.
        with p.conn(timeout=8) as c:
            p.req("GET", "/api/v1/nope", conn=c).expect(404, "first request")
            t0 = time.monotonic()
            got = c.read_raw()
            took = time.monotonic() - t0
            check(took < 6, "idle keep-alive connection closed after idle_timeout=1", "closed within 6 s",
                  "open after %.1f s" % took)
            eq(got, b"", "nothing but a close on an idle connection")
        # A client that stops halfway through its headers (slowloris) is cut off.
        for tls in (True, False):
            c = p.conn(timeout=8) if tls else p.private_conn(timeout=8)
            with c:
                c.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                t0 = time.monotonic()
                got = c.read_raw()
                took = time.monotonic() - t0
            check(took < 6, "half-sent headers dropped after read_timeout=1 (%s)" % ("TLS" if tls else "HTTP"),
                  "closed within 6 s", "open after %.1f s" % took)
            if got:
                resp = parse_response(got)
                check(resp is not None and resp.status in (400, 408), "answer to a stalled request", "408",
                      got[:200])
        p.private("GET", "/healthz").expect(200, "healthz after timeouts")
