#!/usr/bin/env python3
"""imds.py — a loopback EC2 instance-metadata service (IMDSv2) for the tests.

  python3 tests/peers/imds.py [--port N] [--watch-pid PID] [--expires-in S]
                              [--role NAME | --no-role] [--bad-document] [--huge]
                              [--key-id ID --secret SECRET] [--user-data FILE]

Listens on 127.0.0.1:N (0, the default: a free port), prints the port on
one line of stdout, then serves until SIGTERM/SIGINT, or until the process
PID is gone (checked every 0.3 s), so a test that dies leaves nothing
behind. What it serves, as EC2 does with tokens required (HttpTokens =
required):

  PUT /latest/api/token
      needs X-aws-ec2-metadata-token-ttl-seconds: 1..21600 (else 400);
      answers a new token (text/plain) with that header echoed
  GET /latest/meta-data/...
      needs X-aws-ec2-metadata-token: a token it gave, not expired (else
      401: the IMDSv1 request, without a token, is refused)
  GET /latest/meta-data/iam/security-credentials/
      the role name (404 with --no-role; with --huge, the name and then
      100 KiB of other lines, past what a client should take)
  GET /latest/meta-data/iam/security-credentials/ROLE
      the credential document: Code Success, Type AWS-HMAC, an
      AccessKeyId that changes on every fetch (ASIAIMDSPEER00000001, ...02)
      so that a refresh is seen, SecretAccessKey and Token derived from it,
      Expiration --expires-in seconds ahead (default 21600); with
      --bad-document, a document without SecretAccessKey. --key-id and
      --secret fix the keys instead (s3rver takes only S3RVER/S3RVER);
      the Token still changes on every fetch
  GET /latest/meta-data/placement/region
      us-test-1
  GET /latest/user-data
      the contents of --user-data FILE (404 without it, as for an
      instance started with none); a token is needed as for meta-data
      (the appliance's first boot reads it: appliance/image_test.py)
  GET /_stats (no token needed)
      JSON counts: tokens given, credential documents served, requests
      refused with 401

Anything else is 404. Bodies of PUTs are ignored; the PUT must not carry
X-Forwarded-For (403, as EC2 does).
"""
import argparse
import datetime
import http.server
import json
import os
import secrets
import signal
import sys
import threading
import time

TOKEN_HDR = "X-aws-ec2-metadata-token"
TTL_HDR = "X-aws-ec2-metadata-token-ttl-seconds"
CREDS = "/latest/meta-data/iam/security-credentials/"


class State:
    def __init__(self, args):
        self.args = args
        self.tokens = {}  # token -> expiry (monotonic)
        self.n_tokens = 0
        self.n_docs = 0
        self.n_refused = 0
        self.lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet: the tests print what matters
        pass

    def send(self, status, body, ctype="text/plain", extra=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def drain(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 0:
            self.rfile.read(n)

    def do_PUT(self):
        st = self.server.state
        self.drain()
        if self.path != "/latest/api/token":
            return self.send(404, "Not Found")
        if self.headers.get("X-Forwarded-For"):
            return self.send(403, "Forbidden")
        ttl = self.headers.get(TTL_HDR, "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.send(400, "Bad Request")
        token = secrets.token_urlsafe(42)
        with st.lock:
            st.tokens[token] = time.monotonic() + int(ttl)
            st.n_tokens += 1
        self.send(200, token, extra={TTL_HDR: ttl})

    def token_ok(self):
        st = self.server.state
        t = self.headers.get(TOKEN_HDR)
        with st.lock:
            ok = t is not None and st.tokens.get(t, 0) > time.monotonic()
            if not ok:
                st.n_refused += 1
        return ok

    def do_GET(self):
        st = self.server.state
        a = st.args
        if self.path == "/_stats":
            with st.lock:
                body = {"tokens": st.n_tokens, "documents": st.n_docs, "refused": st.n_refused}
            return self.send(200, json.dumps(body), "application/json")
        if self.path == "/latest/user-data":
            if not self.token_ok():
                return self.send(401, "Unauthorized")
            if not a.user_data:
                return self.send(404, "Not Found")
            with open(a.user_data, "rb") as f:
                return self.send(200, f.read(), "application/octet-stream")
        if not self.path.startswith("/latest/meta-data/"):
            return self.send(404, "Not Found")
        if not self.token_ok():
            return self.send(401, "Unauthorized")
        if self.path == CREDS:
            if a.no_role:
                return self.send(404, "Not Found")
            return self.send(200, a.role + ("\nx" * 51200 if a.huge else ""))
        if self.path == CREDS + a.role and not a.no_role:
            with st.lock:
                st.n_docs += 1
                n = st.n_docs
            now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            key = "ASIAIMDSPEER%08d" % n
            doc = {
                "Code": "Success",
                "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Type": "AWS-HMAC",
                "AccessKeyId": a.key_id or key,
                "SecretAccessKey": a.secret or "imds-peer-secret-" + key,
                "Token": "imds-peer-session-token-" + key,
                "Expiration": (now + datetime.timedelta(seconds=a.expires_in))
                .strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            if a.bad_document:
                del doc["SecretAccessKey"]
            return self.send(200, json.dumps(doc, indent=2))
        if self.path == "/latest/meta-data/placement/region":
            return self.send(200, "us-test-1")
        return self.send(404, "Not Found")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """Clients that hang up (a capped answer, a closed keep-alive) are
        no news; anything else is printed as usual."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


def watch(pid, server):
    """Stops the server once pid is gone."""
    while True:
        time.sleep(0.3)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            server.shutdown()
            return
        except PermissionError:
            pass  # there, just not ours


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--watch-pid", type=int)
    p.add_argument("--expires-in", type=int, default=21600)
    p.add_argument("--role", default="pv-test-role")
    p.add_argument("--no-role", action="store_true")
    p.add_argument("--bad-document", action="store_true")
    p.add_argument("--huge", action="store_true")
    p.add_argument("--key-id")
    p.add_argument("--secret")
    p.add_argument("--user-data")
    args = p.parse_args()

    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    if args.watch_pid:
        threading.Thread(target=watch, args=(args.watch_pid, server), daemon=True).start()
    try:
        sys.stdout.write("%d\n" % server.server_address[1])
        sys.stdout.flush()
    except BrokenPipeError:
        return  # whoever started us is gone already
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    server.server_close()


if __name__ == "__main__":
    main()
