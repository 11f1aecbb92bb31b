#!/usr/bin/env python3
"""image_test.py RAW [--modes bios,uefi] [--keep] — boots the appliance's
disk (`make image-test`) in qemu and uses it as a person and an admin would.

For each firmware (BIOS: SeaBIOS; UEFI: Debian's OVMF), on a fresh
copy-on-write overlay of RAW (RAW itself is never written), one disk a
gigabyte larger than RAW so that the first boot has a partition to grow:

  1. qemu (software emulation, no KVM) with user networking on
     169.254.0.0/16, so that 169.254.169.254 is inside it: a guestfwd puts a
     loopback IMDSv2 peer (tests/peers/imds.py) there, serving user data
     with pvd.conf keys, an admin e-mail and a throwaway SSH key. Host
     ports (loopback only) forward to the guest's 443, 80 and 22.
  2. Waits for HTTPS /readyz (the boot-to-healthy time), checks port 80
     (health answered, the rest redirected to HTTPS).
  3. Through the forwarded port: signs up, logs in, uploads two photos,
     renders a short video and downloads it (an MP4).
  4. Over SSH as `admin` (its key from the user data): `pvctl status`,
     the user-data key in `pvctl config show`, the admin account, a
     backup to /var/backups/pv, the grown root filesystem, host keys made
     on the box, idle memory, pvd's RSS, `systemd-analyze security`.
  5. Reboots; checks that the photos and the video survived, that the SSH
     host keys stayed, and that the user data was not applied twice.
  6. Powers off and checks that qemu ends on its own (a clean shutdown).

Prints `ok - ...`/`not ok - ...` lines, the figures (`# figure ...`), and
`# image: N passed, M failed`; exit 1 when anything failed. The guest's
serial console is in build/image-test/MODE/console.log.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVMF = "/usr/share/ovmf/OVMF.fd"
BOOT_TIMEOUT = float(os.environ.get("PV_IMAGE_BOOT_TIMEOUT", "300"))
USER_DATA_KEY = ("max_video_seconds", "300")  # a pvd.conf key the user data sets

passed = failed = 0


def ok(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok - " + what, flush=True)
    else:
        failed += 1
        print("not ok - " + what, flush=True)
        for line in str(detail).splitlines()[-25:]:
            print("#   " + line, flush=True)
    return cond


def figure(name, value):
    print("# figure %s: %s" % (name, value), flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Box:
    """One booted appliance: qemu, its forwarded ports, its IMDS peer."""

    def __init__(self, raw, mode, work):
        self.raw, self.mode, self.work = raw, mode, work
        self.https, self.http, self.ssh_port = free_port(), free_port(), free_port()
        self.qemu = self.imds = None
        self.console = os.path.join(work, "console.log")
        self.key = os.path.join(work, "id_ed25519")
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE

    # ---- set-up ----
    def prepare(self):
        os.makedirs(self.work, exist_ok=True)
        self.disk = os.path.join(self.work, "disk.qcow2")
        for f in (self.disk, self.key, self.key + ".pub"):
            if os.path.exists(f):
                os.unlink(f)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        os.path.abspath(self.raw), self.disk], check=True)
        size = os.path.getsize(self.raw) + (1 << 30)
        subprocess.run(["qemu-img", "resize", "-q", self.disk, str(size)], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "image-test",
                        "-f", self.key], check=True)
        with open(self.key + ".pub") as f:
            pub = f.read().strip()
        self.user_data = os.path.join(self.work, "user-data")
        with open(self.user_data, "w") as f:
            f.write("# pvd.conf keys, then the appliance's own\n")
            f.write("%s = %s\n" % USER_DATA_KEY)
            f.write("ssh_key = %s\n" % pub)
            f.write("admin_email = admin@example.com\n")
        if self.mode == "uefi":
            self.vars = os.path.join(self.work, "OVMF_VARS.fd")

    def start_imds(self):
        self.imds = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "peers", "imds.py"),
             "--user-data", self.user_data, "--watch-pid", str(os.getpid())],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.imds_port = int(self.imds.stdout.readline())

    def boot(self):
        fwd = "%s %s %d" % (sys.executable, os.path.join(ROOT, "appliance", "stdio_tcp.py"),
                            self.imds_port)
        net = ("user,id=n0,net=169.254.0.0/16,host=169.254.0.1,dhcpstart=169.254.0.15,"
               "hostfwd=tcp:127.0.0.1:%d-:443,hostfwd=tcp:127.0.0.1:%d-:80,"
               "hostfwd=tcp:127.0.0.1:%d-:22,guestfwd=tcp:169.254.169.254:80-cmd:%s"
               % (self.https, self.http, self.ssh_port, fwd))
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
               "-display", "none", "-monitor", "none", "-serial", "file:" + self.console + ".part",
               "-drive", "file=%s,if=virtio,format=qcow2,discard=unmap" % self.disk,
               "-netdev", net, "-device", "virtio-net-pci,netdev=n0",
               "-device", "virtio-rng-pci"]
        if self.mode == "uefi":
            cmd += ["-bios", OVMF]
        self.t0 = time.monotonic()
        self.qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def save_console(self, suffix=""):
        part = self.console + ".part"
        if os.path.exists(part):
            with open(part, "rb") as src, open(self.console, "ab") as dst:
                dst.write(src.read())
            os.unlink(part)

    def console_tail(self, n=30):
        for p in (self.console + ".part", self.console):
            if os.path.exists(p):
                with open(p, "rb") as f:
                    return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        return ""

    # ---- HTTP ----
    def request(self, method, path, body=None, headers=None, tls=True, timeout=30):
        if tls:
            c = http.client.HTTPSConnection("127.0.0.1", self.https, context=self.tls,
                                            timeout=timeout)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def api(self, method, path, doc=None, token=None, raw=None, ctype=None):
        h = {}
        if token:
            h["Authorization"] = "Bearer " + token
        body = raw
        if doc is not None:
            body = json.dumps(doc).encode()
            h["Content-Type"] = "application/json"
        if ctype:
            h["Content-Type"] = ctype
        st, hdrs, data = self.request(method, "/api/v1" + path, body, h)
        try:
            return st, json.loads(data or b"{}")
        except ValueError:
            return st, {"raw": data[:200]}

    def wait_healthy(self, timeout=BOOT_TIMEOUT):
        """Seconds from qemu's start to HTTPS /readyz 200, or None."""
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            if self.qemu.poll() is not None:
                return None
            try:
                st, _, _ = self.request("GET", "/readyz", timeout=5)
                if st == 200:
                    return time.monotonic() - self.t0
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(1)
        return None

    # ---- SSH ----
    def ssh(self, command, timeout=120):
        cmd = ["ssh", "-i", self.key, "-p", str(self.ssh_port), "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "ConnectTimeout=10", "-o", "BatchMode=yes", "admin@127.0.0.1", command]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            return r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired:
            return 255, "", "ssh timed out"

    def wait_ssh(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc, out, err = self.ssh("true", timeout=30)
            if rc == 0:
                return True
            time.sleep(2)
        return False

    def host_keys(self):
        r = subprocess.run(["ssh-keyscan", "-p", str(self.ssh_port), "-t", "ed25519", "127.0.0.1"],
                           capture_output=True, text=True, timeout=30)
        return " ".join(r.stdout.split()[1:]) if r.returncode == 0 else ""

    def stop(self):
        if self.qemu and self.qemu.poll() is None:
            self.qemu.send_signal(signal.SIGTERM)
            try:
                self.qemu.wait(10)
            except subprocess.TimeoutExpired:
                self.qemu.kill()
                self.qemu.wait()
        if self.imds and self.imds.poll() is None:
            self.imds.terminate()
            self.imds.wait(10)
        self.save_console()


def use_the_app(box, m):
    """Sign up, two photos, a video rendered and downloaded."""
    email, pw = "user@example.com", "correct horse battery"
    st, doc = box.api("POST", "/auth/signup", {"email": email, "password": pw})
    ok(st == 201, "%s: sign up over HTTPS" % m, (st, doc))
    st, doc = box.api("POST", "/auth/login", {"email": email, "password": pw})
    ok(st == 200 and "access_token" in doc, "%s: log in" % m, (st, doc))
    token = doc.get("access_token")
    ids = []
    for name in ("plain.jpg", "orient6.jpg"):
        with open(os.path.join(ROOT, "tests", "fixtures", name), "rb") as f:
            data = f.read()
        st, doc = box.api("POST", "/photos", raw=data, token=token, ctype="image/jpeg")
        ok(st == 201, "%s: upload %s" % (m, name), (st, doc))
        ids.append(doc.get("photo", {}).get("id"))
    t0 = time.monotonic()
    st, doc = box.api("POST", "/videos", {"photo_ids": ids, "title": "image test",
                                          "seconds_per_photo": 0.5, "transition": "none",
                                          "resolution": "480p", "fps": 24}, token=token)
    ok(st == 202, "%s: ask for a video" % m, (st, doc))
    vid = doc.get("video", {}).get("id")
    video = {}
    deadline = time.monotonic() + 300
    while vid and time.monotonic() < deadline:
        st, doc = box.api("GET", "/videos/%s" % vid, token=token)
        video = doc.get("video", {})
        if video.get("status") in ("ready", "failed", "cancelled"):
            break
        time.sleep(1)
    ok(video.get("status") == "ready", "%s: the video renders (MemoryDenyWriteExecute on)" % m,
       video)
    figure("%s render seconds (2 photos, 480p, 24 frames)" % m, "%.1f" % (time.monotonic() - t0))
    url = video.get("urls", {}).get("content", "")
    st, _, data = box.request("GET", url) if url else (0, {}, b"")
    ok(st == 200 and data[4:8] == b"ftyp", "%s: download the MP4 (%d bytes)" % (m, len(data)),
       (st, data[:16]))
    return token, ids, vid, len(data)


def admin_checks(box, m):
    rc, out, err = box.ssh("pvctl status")
    ok(rc == 0 and "uptime" in out.lower(), "%s: pvctl status over SSH as admin (pv-admin)" % m,
       out + err)
    rc, out, err = box.ssh("pvctl config show")
    ok(rc == 0 and re.search(r"^\s*%s:\s+%s$" % USER_DATA_KEY, out, re.M),
       "%s: the user data's pvd.conf key is in effect" % m, out[-600:] + err)
    rc, out, err = box.ssh("pvctl user list")
    ok(rc == 0 and "admin@example.com" in out, "%s: the user data's admin e-mail has an account" % m,
       out + err)
    rc, out, err = box.ssh("sudo test -s /root/pv-admin-password && echo yes")
    ok(out.strip() == "yes", "%s: its password is in /root/pv-admin-password" % m, out + err)
    rc, out, err = box.ssh("pvctl backup /var/backups/pv/test.tar && sudo ls -l /var/backups/pv")
    ok(rc == 0 and "test.tar" in out, "%s: pvctl backup to /var/backups/pv" % m, out + err)
    rc, out, err = box.ssh("sudo pvctl --json status")
    ok(rc == 0 and out.strip().startswith("{"), "%s: pvctl as root" % m, out + err)
    rc, out, err = box.ssh("df -B1M --output=size,used / | tail -n 1")
    size = used = 0
    if rc == 0 and out.split():
        size, used = (int(x) for x in out.split()[:2])
    raw_mib = os.path.getsize(box.raw) >> 20
    ok(size > raw_mib - 64, "%s: the root filesystem grew to the disk (%d MiB, image %d MiB)"
       % (m, size, raw_mib), out + err)
    figure("%s root used after the test (MiB)" % m, used)
    rc, out, err = box.ssh("ls /etc/ssh/ssh_host_*_key.pub && systemctl is-system-running")
    ok("ssh_host_ed25519_key.pub" in out, "%s: SSH host keys made on the box" % m, out + err)
    ok(out.strip().endswith("running"), "%s: systemd: no failed unit" % m,
       box.ssh("systemctl --failed --no-legend")[1] + out)
    rc, out, err = box.ssh("ps -o user=,rss= -C pvd; stat -c '%U %G %a' /run/pv/admin.sock")
    ok(out.startswith("pv "), "%s: pvd runs as pv; the socket is pv pv-admin 660" % m, out + err)
    ok("pv pv-admin 660" in out, "%s: admin socket pv:pv-admin 0660" % m, out)
    if out.split():
        figure("%s pvd RSS after a render (MiB)" % m, "%.1f" % (int(out.split()[1]) / 1024))
    rc, out, err = box.ssh("sudo journalctl -u pv -o cat --no-pager | tail -n 3")
    ok(rc == 0 and '"msg"' in out or "pvd" in out, "%s: pvd's log is in the journal" % m, out + err)
    rc, out, err = box.ssh("sudo systemd-analyze security pv.service --no-pager | tail -n 1")
    figure("%s systemd-analyze security pv.service" % m, out.strip().replace("→ ", ""))
    ok(rc == 0 and re.search(r"\b(OK|SAFE)\b", out), "%s: pv.service exposure OK or better" % m,
       out + err)


def idle_figures(box, m):
    rc, out, err = box.ssh("systemd-analyze | head -n 1; "
                           "systemd-analyze critical-chain pv.service | sed -n 4,7p")
    for line in out.strip().splitlines():
        figure("%s boot (systemd-analyze)" % m, line.strip())
    # what the machine takes at rest, after the boot settled
    rc, out, err = box.ssh("sleep 5; free -m | sed -n 2p; ps -o rss= -C pvd")
    parts = out.split()
    if rc == 0 and len(parts) >= 8:
        used, pvd_kib = int(parts[2]), int(parts[-1])
        figure("%s idle memory used (free -m, MiB)" % m, used)
        figure("%s idle pvd RSS (MiB)" % m, "%.1f" % (pvd_kib / 1024))
        ok(used <= 256, "%s: idle memory of the machine <= 256 MB (%d)" % (m, used), out)
        ok(pvd_kib <= 40 * 1024, "%s: idle pvd RSS <= 40 MB (%.1f)" % (m, pvd_kib / 1024), out)
    else:
        ok(False, "%s: idle figures" % m, out + err)


def run_mode(raw, mode, keep):
    m = mode.upper()
    box = Box(raw, mode, os.path.join(ROOT, "build", "image-test", mode))
    try:
        box.prepare()
        box.start_imds()
        box.boot()
        t = box.wait_healthy()
        if not ok(t is not None, "%s: boots to healthy HTTPS" % m, box.console_tail()):
            return
        figure("%s boot to healthy HTTPS (s)" % m, "%.1f" % t)
        ok(t <= 90, "%s: healthy within 90 s (%.1f s)" % (m, t))
        st, hdrs, _ = box.request("GET", "/healthz", tls=False)
        ok(st == 200, "%s: port 80 answers health checks" % m, st)
        st, hdrs, _ = box.request("GET", "/photos?x=1", tls=False,
                                  headers={"Host": "pv.example.com"})
        ok(st == 301 and hdrs.get("Location") == "https://pv.example.com/photos?x=1",
           "%s: port 80 redirects the rest to HTTPS" % m, (st, hdrs))
        st, _, body = box.request("GET", "/")
        ok(st == 200 and b"<html" in body.lower(), "%s: the web UI on /" % m, (st, body[:200]))
        ok(box.wait_ssh(), "%s: SSH with the user data's key" % m, box.console_tail())
        idle_figures(box, m)
        token, ids, vid, nbytes = use_the_app(box, m)
        admin_checks(box, m)
        keys = box.host_keys()

        # reboot: everything acknowledged survives, nothing is made twice
        box.ssh("sudo systemctl reboot", timeout=30)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until it is down
            try:
                box.request("GET", "/readyz", timeout=3)
                time.sleep(1)
            except (OSError, http.client.HTTPException):
                break
        box.t0 = time.monotonic()
        t = box.wait_healthy()
        if not ok(t is not None, "%s: healthy again after a reboot" % m, box.console_tail()):
            return
        figure("%s reboot: down to healthy HTTPS (s)" % m, "%.1f" % t)
        st, doc = box.api("GET", "/photos", token=token)
        got = sorted(p.get("id") for p in doc.get("items", []))
        ok(st == 200 and got == sorted(ids), "%s: both photos survived the reboot" % m, (st, doc))
        st, doc = box.api("GET", "/videos/%s" % vid, token=token)
        url = doc.get("video", {}).get("urls", {}).get("content", "")
        st2, _, data = box.request("GET", url) if url else (0, {}, b"")
        ok(st == 200 and st2 == 200 and len(data) == nbytes, "%s: the video survived" % m,
           (st, st2, len(data), nbytes))
        ok(box.wait_ssh(), "%s: SSH after the reboot" % m)
        ok(keys and box.host_keys() == keys, "%s: the SSH host key stayed the same" % m)
        rc, out, err = box.ssh("pvctl user list | grep -c admin@example.com; "
                               "sudo journalctl -b -u pv-firstboot -o cat --no-pager")
        ok(out.startswith("1\n") and "pvd.conf: set" not in out,
           "%s: the user data is applied once, not again at the reboot" % m, out + err)

        # power off: qemu ends by itself
        t0 = time.monotonic()
        box.ssh("sudo systemctl poweroff", timeout=30)
        try:
            rc = box.qemu.wait(120)
        except subprocess.TimeoutExpired:
            rc = None
        ok(rc == 0, "%s: clean power-off (qemu exit %s)" % (m, rc), box.console_tail())
        if rc == 0:
            figure("%s power-off (s)" % m, "%.1f" % (time.monotonic() - t0))
        box.save_console()
        with open(box.console, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        ok("reboot: Power down" in log or rc == 0, "%s: the kernel powered down" % m)
    finally:
        box.stop()
        if not keep and os.path.exists(box.disk):
            os.unlink(box.disk)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("raw")
    ap.add_argument("--modes", default=os.environ.get("PV_IMAGE_MODES", "bios,uefi"))
    ap.add_argument("--keep", action="store_true", help="keep the overlay disks")
    a = ap.parse_args()
    for tool in ("qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            print("image_test.py: no %s: sh tools/deps.sh image" % tool, file=sys.stderr)
            return 2
    t0 = time.monotonic()
    for mode in a.modes.split(","):
        if mode == "uefi" and not os.path.exists(OVMF):
            ok(False, "UEFI: no %s (apt-get install ovmf)" % OVMF)
            continue
        t = time.monotonic()
        run_mode(a.raw, mode, a.keep)
        figure("%s test (s)" % mode.upper(), "%.0f" % (time.monotonic() - t))
    figure("image-test in all (s)", "%.0f" % (time.monotonic() - t0))
    print("# image: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
