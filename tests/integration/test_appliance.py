"""test_appliance.py — what the appliance image (appliance/) asks of pvd:
the plain listener as a public port 80 (`http_redirect`: health checks
answered, everything else redirected to HTTPS) and the readiness protocol
of a Type=notify systemd unit (READY=1 once serving, STOPPING=1 on
SIGTERM); and the first boot's handling of EC2 user data
(appliance/firstboot). The default plain listener (404 for what is not a health or
metrics route) is test_http.py's."""

import os
import socket
import subprocess
import sys
import tempfile

from harness import PVD_BIN, ROOT, Pvd, check, eq


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


# ---- the appliance's first boot (appliance/firstboot user-data), on this
# machine against the IMDSv2 peer: what it does with user data it likes,
# with user data it does not, and without a metadata service.

FIRSTBOOT = os.path.join(ROOT, "appliance", "firstboot")


def _firstboot(d, imds_port, user_data=None):
    """Runs `firstboot user-data` on a copy of the appliance's pvd.conf in d;
    returns (exit status, its output, the pvd.conf after)."""
    conf = os.path.join(d, "pvd.conf")
    if not os.path.exists(conf):
        with open(os.path.join(ROOT, "appliance", "pvd.conf")) as src, open(conf, "w") as dst:
            dst.write(src.read())
    env = dict(os.environ, PV_IMDS="http://127.0.0.1:%d" % imds_port, PV_CONF=conf,
               PV_FIRSTBOOT_STATE=os.path.join(d, "state"), PV_PVD=PVD_BIN)
    r = subprocess.run(["sh", FIRSTBOOT, "user-data"], env=env, capture_output=True, text=True,
                       timeout=60)
    with open(conf) as f:
        return r.returncode, r.stdout + r.stderr, f.read()


class _Imds:
    def __init__(self, user_data):
        self.dir = tempfile.TemporaryDirectory()
        args = [sys.executable, os.path.join(ROOT, "tests", "peers", "imds.py"),
                "--watch-pid", str(os.getpid())]
        if user_data is not None:
            path = os.path.join(self.dir.name, "user-data")
            with open(path, "w") as f:
                f.write(user_data)
            args += ["--user-data", path]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE)
        self.port = int(self.proc.stdout.readline())

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.dir.cleanup()


def test_firstboot_user_data():
    imds = _Imds("# pvd.conf keys\r\nmax_video_seconds = 300\n  signup=invite  \n"
                 "admin_email = boss@example.com\n")
    try:
        with tempfile.TemporaryDirectory() as d:
            rc, out, conf = _firstboot(d, imds.port)
            eq(rc, 0, "firstboot exit status")
            check("max_video_seconds = 300\n" in conf and "signup = invite\n" in conf,
                  "the user data's keys in pvd.conf", "both keys", conf + out)
            check("https_listen = 0.0.0.0:443" in conf, "the appliance's keys kept", "kept", conf)
            with open(os.path.join(d, "state", "admin-email")) as f:
                eq(f.read().strip(), "boss@example.com", "the admin e-mail, for pv-admin-account")
            check(not os.path.exists(os.path.join(d, "state", "user-data")),
                  "the user data is not left on disk", "removed", os.listdir(os.path.join(d, "state")))
            # once only: a second boot does not read it again
            rc, out2, conf2 = _firstboot(d, imds.port)
            eq(conf2, conf, "pvd.conf after a second boot")
            eq(out2.strip(), "", "a second boot says nothing")
    finally:
        imds.close()


def test_firstboot_bad_user_data():
    for ud, why in (("signup = sometimes\n", "rejected by pvd"),
                    ("#cloud-config\npackages: [nginx]\n", "not key = value"),
                    ("no_such_key = 1\n", "rejected by pvd"),
                    ("bad key! = 1\n", "bad key")):
        imds = _Imds(ud)
        try:
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(ROOT, "appliance", "pvd.conf")) as f:
                    before = f.read()
                rc, out, conf = _firstboot(d, imds.port)
                eq(rc, 0, "firstboot exit status, user data %r" % ud)
                eq(conf, before, "pvd.conf unchanged by user data %r" % ud)
                check(why in out and "defaults stand" in out, "the log says why (%r)" % ud, why, out)
        finally:
            imds.close()


def test_firstboot_no_metadata_service():
    with tempfile.TemporaryDirectory() as d:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nobody listens there
        with open(os.path.join(ROOT, "appliance", "pvd.conf")) as f:
            before = f.read()
        rc, out, conf = _firstboot(d, port)
        eq(rc, 0, "firstboot exit status without IMDS")
        eq(conf, before, "pvd.conf without IMDS")
        check("no metadata service" in out, "the log says so", "no metadata service", out)
        check(os.path.exists(os.path.join(d, "state", "user-data.done")),
              "not asked again at the next boot", "user-data.done", os.listdir(os.path.join(d, "state")))
    # an instance started without user data: IMDS answers 404, defaults stand
    imds = _Imds(None)
    try:
        with tempfile.TemporaryDirectory() as d:
            rc, out, conf = _firstboot(d, imds.port)
            eq((rc, conf), (0, before), "no user data: pvd.conf unchanged")
    finally:
        imds.close()
