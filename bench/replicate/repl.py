#!/usr/bin/env python3
"""bench/replicate/repl.py — the load and the clocks of bench/replicate
(python3 stdlib only; run.sh calls it, see its header).

  repl.py upload URL TOKEN LIST CLIENTS DEADLINE_S
      POSTs every file named in LIST (one path a line) to URL/api/v1/photos,
      CLIENTS keep-alive HTTPS connections at once (one thread each), and
      stops starting new ones at DEADLINE_S. Prints one JSON object: ok
      (201s), errors, first few error texts, seconds, photos/s.

  repl.py converge PID PVCTL SOCKET TIMEOUT_S RSS_OUT
      Runs `pvctl sync now`, then polls `pvctl --json sync status` every
      200 ms until cursor == head (and head > 0), sampling the VmRSS of PID
      every 100 ms into RSS_OUT ("seconds kB" lines). Prints one JSON
      object: seconds (from just before `sync now` to the first poll that
      saw cursor == head), converged, the status before and after, RSS
      base/peak kB, polls. Each poll also goes to RSS_OUT.progress as
      "seconds cursor head blobs_sent state" (the passes over time).

  repl.py steady URL TOKEN LIST RATE SECONDS OBJDIR TAIL_S
      Uploads files from LIST at RATE a second (on a fixed schedule, 8
      client threads so that one slow answer does not shift the others)
      for SECONDS, and for each 201 watches for the original in S3:
      OBJDIR/xx/<sha256>._S3rver_metadata.json (s3rver writes an object's
      metadata after its bytes; a HEAD answers from it). Lag = when it was
      seen - when the 201 arrived; the watcher looks every 50 ms. After the
      last upload it waits up to TAIL_S for the rest. Prints one JSON
      object: sent, ok, errors, seen, missing, lag p50/p90/p99/max (s),
      the achieved rate, and the lags in upload order (for a plot).
"""
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit


def _ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


class Client:
    """One keep-alive HTTPS connection, opened again after an error."""

    def __init__(self, url, token):
        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port or 443
        self.token = token
        self.ctx = _ctx()
        self.conn = None

    def post_photo(self, path, timeout=60):
        with open(path, "rb") as f:
            body = f.read()
        for attempt in (0, 1):  # a keep-alive connection the server closed: once more
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                                            context=self.ctx)
                self.conn.request("POST", "/api/v1/photos", body=body, headers={
                    "Authorization": "Bearer " + self.token,
                    "Content-Type": "image/jpeg",
                    "Content-Length": str(len(body))})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.conn = None
                if attempt == 1:
                    return 0, str(e).encode()
            except (OSError, http.client.HTTPException) as e:
                self.conn = None
                return 0, str(e).encode()
        return 0, b"unreachable"


def read_list(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def upload(url, token, listfile, clients, deadline_s):
    files = read_list(listfile)
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "errors": 0, "texts": []}
    stop_at = time.monotonic() + deadline_s

    def work():
        c = Client(url, token)
        while True:
            with lock:
                i = state["next"]
                if i >= len(files) or time.monotonic() > stop_at:
                    return
                state["next"] = i + 1
            status, data = c.post_photo(files[i])
            with lock:
                if status == 201:
                    state["ok"] += 1
                else:
                    state["errors"] += 1
                    if len(state["texts"]) < 5:
                        state["texts"].append("%d %s" % (status, data[:200].decode("utf-8", "replace")))

    t0 = time.monotonic()
    ts = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(deadline_s + 120)
    secs = time.monotonic() - t0
    print(json.dumps({"files": len(files), "ok": state["ok"], "errors": state["errors"],
                      "error_texts": state["texts"], "seconds": round(secs, 2),
                      "per_s": round(state["ok"] / secs, 1) if secs > 0 else 0}))


def vmrss_kb(pid):
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def sync_status(pvctl, sock):
    r = subprocess.run([pvctl, "--socket", sock, "--json", "--timeout", "5", "sync", "status"],
                       capture_output=True, text=True, timeout=10)
    doc = json.loads(r.stdout)
    return doc["result"]["targets"][0]


def converge(pid, pvctl, sock, timeout_s, rss_out):
    before = sync_status(pvctl, sock)
    base = vmrss_kb(pid)
    peak = base or 0
    polls = 0
    st = before
    converged = False
    with open(rss_out, "w") as rf, open(rss_out + ".progress", "w") as pf:
        t0 = time.monotonic()
        subprocess.run([pvctl, "--socket", sock, "--timeout", "5", "sync", "now"],
                       capture_output=True, timeout=10)
        next_poll = t0
        while True:
            now = time.monotonic()
            kb = vmrss_kb(pid)
            if kb is None:
                break  # pvd is gone
            rf.write("%.3f %d\n" % (now - t0, kb))
            peak = max(peak, kb)
            if now >= next_poll:
                next_poll = now + 0.2
                polls += 1
                try:
                    st = sync_status(pvctl, sock)
                except (ValueError, KeyError, OSError, subprocess.SubprocessError):
                    st = st
                pf.write("%.3f %s %s %s %s\n" % (now - t0, st["cursor"], st["head"],
                                                 st.get("blobs_sent", st.get("records_written")),
                                                 st["state"]))
                if st["head"] > 0 and st["cursor"] >= st["head"]:
                    converged = True
                    break
            if now - t0 > timeout_s:
                break
            time.sleep(0.1)
        secs = time.monotonic() - t0
    print(json.dumps({"seconds": round(secs, 2), "converged": converged, "polls": polls,
                      "rss_base_kb": base, "rss_peak_kb": peak, "before": before, "after": st}))


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def steady(url, token, listfile, rate, seconds, objdir, tail_s):
    from concurrent.futures import ThreadPoolExecutor
    files = read_list(listfile)
    n = min(len(files), int(rate * seconds))
    local = threading.local()
    lock = threading.Lock()
    pending = {}          # sha -> index
    got_at = [None] * n   # monotonic time of the 201
    seen_at = [None] * n
    status = [None] * n
    texts = []
    done_uploading = threading.Event()

    def one(i):
        if not hasattr(local, "c"):
            local.c = Client(url, token)
        st, data = local.c.post_photo(files[i])
        t = time.monotonic()
        sha = None
        if st == 201:
            try:
                sha = json.loads(data)["photo"]["sha256"]
            except (ValueError, KeyError):
                st = -1
        with lock:
            status[i] = st
            if sha:
                got_at[i] = t
                pending[sha] = i
            elif len(texts) < 5:
                texts.append("%d %s" % (st, data[:200].decode("utf-8", "replace")))

    def watch():
        while True:
            with lock:
                items = list(pending.items())
            now = time.monotonic()
            for sha, i in items:
                if os.path.exists(os.path.join(objdir, sha[:2], sha + "._S3rver_metadata.json")):
                    with lock:
                        seen_at[i] = now
                        pending.pop(sha, None)
            if done_uploading.is_set():
                with lock:
                    if not pending:
                        return
                if now > done_uploading.deadline:
                    return
            time.sleep(0.05)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as ex:
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ex.submit(one, i)
    t_end = time.monotonic()
    done_uploading.deadline = time.monotonic() + tail_s
    done_uploading.set()
    w.join(tail_s + 30)
    lags = [seen_at[i] - got_at[i] for i in range(n) if seen_at[i] is not None and got_at[i] is not None]
    s = sorted(lags)
    ok = sum(1 for x in status if x == 201)
    r3 = lambda v: None if v is None else round(v, 3)
    print(json.dumps({"sent": n, "ok": ok, "errors": n - ok, "error_texts": texts,
                      "upload_seconds": round(t_end - t0, 2),
                      "rate": round(n / (t_end - t0), 2) if t_end > t0 else None,
                      "seen": len(lags), "missing": ok - len(lags),
                      "p50": r3(pct(s, 50)), "p90": r3(pct(s, 90)), "p99": r3(pct(s, 99)),
                      "max": r3(s[-1] if s else None), "min": r3(s[0] if s else None),
                      "lags": [None if seen_at[i] is None or got_at[i] is None
                               else round(seen_at[i] - got_at[i], 3) for i in range(n)],
                      "got_at": [None if g is None else round(g - t0, 3) for g in got_at]}))


def main(a):
    if len(a) == 6 and a[0] == "upload":
        upload(a[1], a[2], a[3], int(a[4]), float(a[5]))
    elif len(a) == 6 and a[0] == "converge":
        converge(a[1], a[2], a[3], float(a[4]), a[5])
    elif len(a) == 8 and a[0] == "steady":
        steady(a[1], a[2], a[3], float(a[4]), float(a[5]), a[6], float(a[7]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
