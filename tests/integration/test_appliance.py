"""test_appliance.py — what the appliance image (appliance/) asks of pvd:
the plain listener as a public port 80 (`http_redirect`: health checks
answered, everything else redirected to HTTPS) and the readiness protocol
of a Type=notify systemd unit (READY=1 once serving, STOPPING=1 on
SIGTERM). The default plain listener (404 for what is not a health or
metrics route) is test_http.py's."""

import os
import socket
import subprocess
import tempfile

from harness import PVD_BIN, Pvd, check, eq


def _redirect_pvd():
    return Pvd({"http_redirect": "true"}, name="redirect")


def test_http_redirect():
    with _redirect_pvd().start() as p:
        # health checks are answered on plain HTTP as before
        p.private("GET", "/healthz").expect(200, "plain /healthz with http_redirect")
        p.private("GET", "/readyz").expect(200, "plain /readyz with http_redirect")
        p.private("HEAD", "/healthz").expect(200, "plain HEAD /healthz with http_redirect")
        base = "https://localhost:%d" % p.https_port
        # everything else goes to the same host, path and query over HTTPS
        for method, path, status in (("GET", "/", 301), ("GET", "/metrics", 301),
                                     ("HEAD", "/api/v1/me", 301),
                                     ("GET", "/api/v1/photos?limit=5&x=%2F", 301),
                                     ("GET", "/no/such/thing", 301),
                                     ("DELETE", "/api/v1/photos/abc", 308)):
            r = p.private(method, path).expect(status, "%s %s on plain HTTP" % (method, path))
            eq(r.header("Location"), base + path, "Location of %s %s" % (method, path))
        # a POST keeps its method and body through a 308 (its body unread here)
        r = p.private("POST", "/api/v1/auth/login", body=b'{"email":"a@b.c"}',
                      headers={"Content-Type": "application/json"})
        r.expect(308, "POST on plain HTTP")
        eq(r.header("Location"), base + "/api/v1/auth/login", "Location of the POST")
        # the Host header names the host; its port is replaced by HTTPS's
        r = p.private("GET", "/x", headers={"Host": "pv.example.com:80"}).expect(301, "named host")
        eq(r.header("Location"), "https://pv.example.com:%d/x" % p.https_port, "Location, named host")
        r = p.private("GET", "/x", headers={"Host": "[::1]:8080"}).expect(301, "IPv6 host")
        eq(r.header("Location"), "https://[::1]:%d/x" % p.https_port, "Location, IPv6 host")
        # a Host that is not a host name is never copied into a Location
        for bad in ("evil.com/path", "a b", "[::1", "x@y", ""):
            r = p.private("GET", "/x", headers={"Host": bad})
            r.expect_error(400, "bad_host", "Host %r" % bad)
            eq(r.header("Location"), None, "no Location for Host %r" % bad)
        # HTTPS itself is unchanged
        p.req("GET", "/healthz").expect(200, "HTTPS /healthz")
        p.req("GET", "/api/v1/nope").expect(404, "HTTPS 404")
        p.private("GET", "/healthz").expect(200, "healthz at the end")


def test_http_redirect_config():
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "pvd.conf")
        with open(conf, "w") as f:
            f.write("http_redirect = maybe\n")
        r = subprocess.run([PVD_BIN, "--config", conf, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        eq(r.returncode, 1, "--check-config with http_redirect = maybe")
        check("http_redirect" in r.stderr, "the error names the key", "http_redirect", r.stderr)


def test_sd_notify():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(30)
        old = os.environ.get("NOTIFY_SOCKET")
        os.environ["NOTIFY_SOCKET"] = path
        try:
            p = Pvd(name="notify").start()
        finally:
            if old is None:
                del os.environ["NOTIFY_SOCKET"]
            else:
                os.environ["NOTIFY_SOCKET"] = old
        try:
            eq(s.recv(256), b"READY=1", "the datagram once pvd serves")
            p.private("GET", "/readyz").expect(200, "ready when READY=1 was sent")
        finally:
            p.stop_clean()
        eq(s.recv(256), b"STOPPING=1", "the datagram on SIGTERM")
        s.close()
