#!/usr/bin/env python3
"""bench/replicate/pgload.py — the video records of bench/replicate/pg.sh
(python3 stdlib only).

  pgload.py videos URL TOKEN N
      Lists the user's photos, then makes N videos of two photos each
      (POST /api/v1/videos) and cancels each at once (POST .../cancel), so
      that N video records exist (status cancelled) without N renders
      taking the machine. Prints one JSON object: made, cancelled, errors,
      seconds.
"""
import http.client
import json
import ssl
import sys
import time
from urllib.parse import urlsplit


class Api:
    def __init__(self, url, token):
        u = urlsplit(url)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.args = (u.hostname, u.port or 443)
        self.ctx = ctx
        self.token = token
        self.conn = None

    def req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection(*self.args, timeout=60, context=self.ctx)
                h = {"Authorization": "Bearer " + self.token}
                if data is not None:
                    h["Content-Type"] = "application/json"
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                out = r.read()
                return r.status, json.loads(out) if out else None
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt:
                    raise
        return 0, None


def videos(url, token, n):
    api = Api(url, token)
    ids, cursor = [], None
    while len(ids) < 2:
        st, doc = api.req("GET", "/api/v1/photos?limit=100" + ("&cursor=" + cursor if cursor else ""))
        if st != 200:
            sys.exit("listing photos: HTTP %d" % st)
        ids += [p["id"] for p in doc["items"]]
        cursor = doc.get("next_cursor")
        if not cursor:
            break
    if len(ids) < 2:
        sys.exit("need two photos at least")
    t0 = time.monotonic()
    made = cancelled = errors = 0
    for i in range(n):
        st, doc = api.req("POST", "/api/v1/videos", {"photo_ids": [ids[i % len(ids)], ids[(i + 1) % len(ids)]],
                                                     "title": "bench %d" % i, "resolution": "480p"})
        if st != 202:
            errors += 1
            continue
        made += 1
        st, _ = api.req("POST", "/api/v1/videos/%s/cancel" % doc["video"]["id"])
        if st in (200, 202, 204):
            cancelled += 1
    print(json.dumps({"made": made, "cancelled": cancelled, "errors": errors,
                      "seconds": round(time.monotonic() - t0, 2)}))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "videos":
        videos(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)
