"""test_cli.py — pvd's command line: --version, --help, --check-config,
bad usage (non-zero with a one-line reason), flags over the config file,
and a clean stop on SIGINT (API.md, "Command lines")."""

import os
import signal
import subprocess
import time
import urllib.request

from harness import PVD_BIN, Pvd, check, eq, free_port

RUN_TIMEOUT = 30


def run(*args, env=None):
    check(os.access(PVD_BIN, os.X_OK), "pvd binary", "an executable at " + PVD_BIN, "none")
    try:
        p = subprocess.run([PVD_BIN] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=RUN_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise AssertionError("pvd %s did not exit within %d s" % (" ".join(args), RUN_TIMEOUT))
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def one_line_reason(args, rc, err):
    lines = [l for l in err.splitlines() if l.strip()]
    check(rc != 0, "pvd %s exits non-zero" % " ".join(args), "non-zero", rc)
    check(len(lines) == 1, "pvd %s prints a one-line reason on stderr" % " ".join(args), "1 line",
          "%d lines: %r" % (len(lines), err[:500]))
    check(len(lines[0]) >= 8, "the reason says something", "a sentence", lines[0])
    return lines[0]


def test_version():
    rc, out, err = run("--version")
    eq(rc, 0, "pvd --version exit status (stderr %r)" % err[:300])
    check("0.1.0" in out or "0.1.0" in err, "--version prints the version", "0.1.0", out[:200] or err[:200])


def test_help():
    rc, out, err = run("--help")
    eq(rc, 0, "pvd --help exit status (stderr %r)" % err[:300])
    text = out + err
    for flag in ("--config", "--data", "--https", "--http", "--check-config"):
        check(flag in text, "--help mentions " + flag, flag, text[:600])


def test_check_config_ok(tmp):
    p = Pvd(name="cli-conf")
    try:
        p.data_dir = os.path.join(tmp, "data")
        p.write_config()
        t0 = time.monotonic()
        rc, out, err = run("--config", p.config_path, "--check-config")
        eq(rc, 0, "--check-config of a good file (stderr %r)" % err[:400])
        check(time.monotonic() - t0 < 10, "--check-config returns promptly", "< 10 s", time.monotonic() - t0)
        # It checks, it does not serve: nothing listens on the configured port.
        import socket
        s = socket.socket()
        try:
            refused = s.connect_ex(("127.0.0.1", p.http_port)) != 0
        finally:
            s.close()
        check(refused, "--check-config left nothing listening", "port closed", "port open")
        # A minimal file (defaults for the rest) is fine too.
        minimal = os.path.join(tmp, "minimal.conf")
        with open(minimal, "w") as f:
            f.write("# just a comment\n\ndata_dir = %s\n" % os.path.join(tmp, "d2"))
        rc, out, err = run("--config", minimal, "--check-config")
        eq(rc, 0, "--check-config of a minimal file (stderr %r)" % err[:400])
    finally:
        p.cleanup()


def test_check_config_bad(tmp):
    base = ("data_dir = %s\nhttps_listen = 127.0.0.1:%d\nhttp_listen = 127.0.0.1:%d\n"
            % (os.path.join(tmp, "data"), free_port(), free_port()))
    cases = [
        ("https_listen = not-an-address\n", "https_listen without a port"),
        ("http_listen = 127.0.0.1:99999\n", "port out of range"),
        ("access_token_ttl = abc\n", "a non-numeric ttl"),
        ("access_token_ttl = -5\n", "a negative ttl"),
        ("max_upload_bytes = 12q\n", "a number with junk"),
        ("log_level = loud\n", "an unknown log level"),
        ("this line has no equals sign\n", "a line without '='"),
        ("no_such_key = 1\n", "an unknown key (a typo must not pass silently)"),
    ]
    for i, (extra, what) in enumerate(cases):
        path = os.path.join(tmp, "bad%d.conf" % i)
        with open(path, "w") as f:
            f.write(base + extra)
        rc, out, err = run("--config", path, "--check-config")
        one_line_reason(["--check-config with " + what], rc, err)
    rc, out, err = run("--config", os.path.join(tmp, "does-not-exist.conf"), "--check-config")
    one_line_reason(["--config of a missing file"], rc, err)


def test_bad_usage():
    for args in (["--bogus"], ["--config"], ["--https"], ["extra-positional"], ["-x"],
                 ["--http", "nonsense", "--check-config"]):
        rc, out, err = run(*args)
        one_line_reason(args, rc, err)


def test_flags_override_file_and_sigint(tmp):
    p = Pvd(name="cli-flags")
    proc = None
    log = open(os.path.join(tmp, "pvd.log"), "wb")
    try:
        p.write_config()  # says data under p.tmp and http on p.http_port
        port = free_port()
        data = os.path.join(tmp, "flag-data")
        proc = subprocess.Popen([PVD_BIN, "--config", p.config_path, "--http", "127.0.0.1:%d" % port,
                                 "--data", data, "--admin-socket", os.path.join(tmp, "a.sock")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port, timeout=2) as r:
                    ready = r.status == 200
            except OSError:
                pass
            if ready:
                break
            time.sleep(0.1)
        check(ready, "pvd ready on the --http port given on the command line", "200 on :%d" % port,
              "exit %s" % proc.poll())
        check(os.path.isdir(data), "--data overrides data_dir from the file", "dir %s created" % data, "missing")
        check(not os.path.exists(p.data_dir), "the file's data_dir is not used", "not created", p.data_dir)
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            rc = "still running 15 s after SIGINT"
        eq(rc, 0, "exit status after SIGINT")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()
        p.cleanup()
    with open(os.path.join(tmp, "pvd.log"), "rb") as f:
        text = f.read().decode("utf-8", "replace")
    bad = [l for l in text.splitlines() if "Sanitizer" in l or "runtime error:" in l]
    eq(bad[:5], [], "sanitizer reports from the flags-override pvd")
