#!/usr/bin/env python3
"""bench/replicate/ddb.py — the load, the clock and the peer of
bench/replicate/ddb.sh (python3 stdlib, and Debian's python3-botocore for
the peer; see ddb.sh's header).

  ddb.py make URL TOKEN PHOTO_ID N THREADS
      Makes N videos of PHOTO_ID over HTTPS and cancels each at once (a
      video record with two changes, no render to wait for), THREADS
      keep-alive clients. Prints one JSON object: ok, errors, seconds.

  ddb.py wait PVCTL SOCKET TIMEOUT_S
      Runs `pvctl sync now ddb`, then polls `pvctl --json sync status`
      every 100 ms until target ddb's cursor == head and it is idle.
      Prints one JSON object: seconds (from just before `sync now`),
      converged, the ddb status before and after.

  ddb.py count ENDPOINT TABLE
      Items in TABLE (Scan with Select COUNT). Prints the number.

  ddb.py peer ENDPOINT TABLE N THREADS
      The peer: botocore (AWS's own Python client) writing N items of the
      same shape, each a PutItem with the same seq condition as pvd's,
      THREADS threads, each with its own client, into a table it makes.
      Prints one JSON object: items, seconds, items/s.
"""
import http.client
import json
import ssl
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit


def _conn(url):
    u = urlsplit(url)
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(u.hostname, u.port or 443, context=c, timeout=60)


def make(url, token, photo, n, threads):
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "errors": 0, "first": []}
    hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    body = json.dumps({"photo_ids": [photo], "seconds_per_photo": 1, "resolution": "480p"})

    def one(conn):
        conn.request("POST", "/api/v1/videos", body, hdr)
        r = conn.getresponse()
        data = r.read()
        if r.status != 202:
            return "create: %d %s" % (r.status, data[:200])
        vid = json.loads(data)["video"]["id"]
        conn.request("POST", "/api/v1/videos/%s/cancel" % vid, None, hdr)
        r = conn.getresponse()
        data = r.read()
        if r.status >= 300 and r.status != 409:
            return "cancel: %d %s" % (r.status, data[:200])
        return None

    def worker():
        conn = _conn(url)
        while True:
            with lock:
                if state["next"] >= n:
                    return
                state["next"] += 1
            try:
                err = one(conn)
            except (OSError, http.client.HTTPException) as e:
                err = repr(e)
                conn.close()
                conn = _conn(url)
            with lock:
                if err:
                    state["errors"] += 1
                    if len(state["first"]) < 3:
                        state["first"].append(err)
                else:
                    state["ok"] += 1

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    s = time.monotonic() - t0
    print(json.dumps({"ok": state["ok"], "errors": state["errors"], "first_errors": state["first"],
                      "seconds": round(s, 2)}))


def _ddb_status(pvctl, sock):
    out = subprocess.run([pvctl, "--socket", sock, "--json", "--timeout", "5", "sync", "status"],
                         capture_output=True, text=True, timeout=30).stdout
    for t in json.loads(out)["result"]["targets"]:
        if t["target"] == "ddb":
            return t
    raise SystemExit("no ddb target in pvctl sync status")


def wait(pvctl, sock, timeout):
    before = _ddb_status(pvctl, sock)
    t0 = time.monotonic()
    subprocess.run([pvctl, "--socket", sock, "--timeout", "5", "sync", "now", "ddb"],
                   capture_output=True, timeout=30)
    st, converged = None, False
    while time.monotonic() - t0 < timeout:
        st = _ddb_status(pvctl, sock)
        if st["head"] > 0 and st["cursor"] == st["head"] and st["state"] == "idle":
            converged = True
            break
        time.sleep(0.1)
    s = time.monotonic() - t0
    print(json.dumps({"seconds": round(s, 2), "converged": converged, "before": before, "after": st}))


def _client(endpoint):
    import botocore.session
    from botocore.config import Config
    return botocore.session.get_session().create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="x",
        aws_secret_access_key="y", config=Config(retries={"max_attempts": 3}))


def count(endpoint, table):
    c, n, start = _client(endpoint), 0, None
    while True:
        kw = {"TableName": table, "Select": "COUNT"}
        if start:
            kw["ExclusiveStartKey"] = start
        page = c.scan(**kw)
        n += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            print(n)
            return


def peer(endpoint, table, n, threads):
    c = _client(endpoint)
    c.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"},
                                         {"AttributeName": "video_id", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"},
                              {"AttributeName": "video_id", "KeyType": "RANGE"}])
    while c.describe_table(TableName=table)["Table"]["TableStatus"] != "ACTIVE":
        time.sleep(0.05)
    lock = threading.Lock()
    state = {"next": 0, "done": 0}

    def worker():
        cl = _client(endpoint)
        while True:
            with lock:
                if state["next"] >= n:
                    return
                i = state["next"]
                state["next"] += 1
            item = {"user_id": {"S": "01m9" + "0" * 22}, "video_id": {"S": "%026d" % i},
                    "status": {"S": "cancelled"}, "progress": {"N": "0"}, "title": {"S": ""},
                    "created_at": {"S": "2026-12-08T00:00:00.000Z"},
                    "finished_at": {"S": "2026-12-08T00:00:00.100Z"}, "duration_s": {"N": "1"},
                    "width": {"N": "854"}, "height": {"N": "480"}, "bytes": {"N": "0"},
                    "seq": {"N": str(i + 1)}}
            cl.put_item(TableName=table, Item=item,
                        ConditionExpression="attribute_not_exists(#q) OR #q < :q",
                        ExpressionAttributeNames={"#q": "seq"},
                        ExpressionAttributeValues={":q": {"N": str(i + 1)}})
            with lock:
                state["done"] += 1

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    s = time.monotonic() - t0
    print(json.dumps({"items": state["done"], "seconds": round(s, 2),
                      "per_s": round(state["done"] / s, 1) if s > 0 else None}))


def main():
    a = sys.argv[1:]
    if a[:1] == ["make"] and len(a) == 6:
        make(a[1], a[2], a[3], int(a[4]), int(a[5]))
    elif a[:1] == ["wait"] and len(a) == 4:
        wait(a[1], a[2], float(a[3]))
    elif a[:1] == ["count"] and len(a) == 3:
        count(a[1], a[2])
    elif a[:1] == ["peer"] and len(a) == 5:
        peer(a[1], a[2], int(a[3]), int(a[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
