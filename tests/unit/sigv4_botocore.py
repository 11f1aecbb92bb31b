#!/usr/bin/python3
"""
sigv4_botocore.py - pv's SigV4 signer (through tests/unit/sigv4_cli)
against botocore's own S3 signers, on random S3-style requests.

    /usr/bin/python3 tests/unit/sigv4_botocore.py DRIVER \
        [--count N] [--seed S] [--verbose]

Each random request (PUT/GET/HEAD/DELETE; path-style or virtual-host
bucket; keys with unicode, spaces, reserved characters, "//" and dot
segments; query parameters; x-amz-* and other headers with messy
whitespace; with or without a session token; a random time) is signed
twice:
  - with headers, by botocore.auth.S3SigV4Auth: our canonical request,
    Authorization and added headers (X-Amz-Date, token, content hash) must
    be botocore's;
  - as a presigned URL, by botocore.auth.S3SigV4QueryAuth: our canonical
    request and signature must be botocore's and the URL must carry the
    same parameters (order aside: we append in AWS's C signer's order).
The driver gets the raw key and encodes it itself (pv_sigv4_uri_encode);
its query is the same parameters spelt differently at random (lower-case
hex, raw UTF-8, needless escapes), which must sign the same.

Then random DynamoDB requests as src/cloud/ddb.c sends them (POST / with
Host, Content-Type application/x-amz-json-1.0 and X-Amz-Target signed, a
JSON body hashed into the signature; AWS's endpoints and loopback ones
with a port) are signed by botocore.auth.SigV4Auth, service "dynamodb":
our canonical request, Authorization and added headers must be its own.
The DynamoDB peer of the tests (dynalite) checks no signature, so this is
where DynamoDB signing is checked.

botocore needs a fixed clock: its signers read datetime.datetime.utcnow(),
which is patched for each request. Needs Debian's python3-botocore.
Prints one line per failure, then "N passed, M failed"; exits 1 on failure.
"""
import argparse
import datetime
import hashlib
import json
import random
import re
import subprocess
import sys
import types
from unittest import mock
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import botocore.auth
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGIONS = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2", "sa-east-1"]
METHODS = ["PUT", "GET", "HEAD", "DELETE"]
UNICODE = ["é", "ü", "ß", "Ω", "ñ", "日本", "語", "😀", "\u00a0", "ø", "Ж"]
RESERVED = list("!*'();:@&=+$,?#[]%") + [" ", "  ", "~", ".", "-", "_", '"', "<", ">", "^", "`", "{", "}", "|", "\\"]
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Some names are prefixes of others ("list", "list-type"): sorting by name
# then value differs there from sorting "name=value" strings.
SUBRESOURCES = ["versionId", "uploadId", "partNumber", "prefix", "delimiter", "list-type",
                "list", "key", "key-marker", "part", "part.1", "continuation-token",
                "response-content-disposition", "acl", "tagging", "max-keys", "encoding-type"]
EPOCH = datetime.datetime(1970, 1, 1)
NEEDLESS = "aeiouAEIOU0123456789~.-_"  # escaped by the "over" spelling


# ---- random requests ----

def rand_text(rng, lo, hi, unicode=True, reserved=True):
    pool = list(ALNUM) * 3
    if unicode:
        pool += UNICODE
    if reserved:
        pool += RESERVED
    return "".join(rng.choice(pool) for _ in range(rng.randint(lo, hi)))


def rand_key(rng):
    """An object key: segments of wild text, sometimes "", "." or ".."."""
    segs = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if r < 0.08:
            segs.append("")
        elif r < 0.14:
            segs.append(rng.choice([".", ".."]))
        else:
            segs.append(rand_text(rng, 1, 12).replace("/", ""))
    return "/".join(segs)


def rand_bucket(rng, dns_safe):
    chars = "abcdefghijklmnopqrstuvwxyz0123456789-"
    name = rng.choice("abcdefghij") + "".join(rng.choice(chars) for _ in range(rng.randint(2, 20)))
    if not dns_safe and rng.random() < 0.4:  # path style: the server's problem, not the signer's
        name += rng.choice([" ", "é", "+", "%", "!"]) + "x"
    return name


def rand_query(rng, unique):
    params = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 4])):
        name = rng.choice(SUBRESOURCES) if rng.random() < 0.5 else rand_text(rng, 1, 8)
        if name.lower().startswith("x-amz-"):
            continue
        r = rng.random()
        value = None if r < 0.15 else "" if r < 0.25 else rand_text(rng, 1, 16)
        params.append((name, value))
    if not unique and params and rng.random() < 0.3:
        params.append((params[0][0], rand_text(rng, 0, 6)))  # repeated name
    if unique:
        seen, out = set(), []
        for n, v in params:
            if n not in seen:
                seen.add(n)
                out.append((n, v))
        params = out
    return params


def spell(s, style):
    """s percent-encoded: canonically, or another way meaning the same."""
    canon = quote(s, safe="-_.~")
    if style == "lower":
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), canon)
    if style == "raw":  # non-ASCII characters as UTF-8, '+' as is (a plus, not a space)
        return "".join(ch if ord(ch) > 127 or ch == "+" else quote(ch, safe="-_.~") for ch in s)
    if style == "over":  # some unreserved characters needlessly escaped
        return "".join("%%%02X" % b if chr(b) in NEEDLESS else quote(bytes([b]), safe="-_.~")
                       for b in s.encode())
    return canon


def query_pairs(q):
    """Decoded (name, value) pairs; '+' stays a plus, as SigV4 reads it."""
    out = []
    for piece in filter(None, q.split("&")):
        name, _, value = piece.partition("=")
        out.append((unquote(name), unquote(value)))
    return sorted(out)


def query_text(params, style):
    parts = []
    for n, v in params:
        parts.append(spell(n, style) if v is None else spell(n, style) + "=" + spell(v, style))
    return "&".join(parts)


def rand_headers(rng, host):
    headers = [("Host", host)]
    for _ in range(rng.randint(0, 5)):
        r = rng.random()
        if r < 0.5:
            name = "x-amz-meta-" + "".join(rng.choice("abcdefghijklmnop0123456789-")
                                           for _ in range(rng.randint(1, 10)))
        elif r < 0.7:
            name = rng.choice(["x-amz-acl", "x-amz-storage-class", "x-amz-tagging",
                               "x-amz-server-side-encryption", "x-amz-request-payer"])
        else:
            name = rng.choice(["Content-Type", "Cache-Control", "Content-Disposition",
                               "Content-Language", "Range", "If-None-Match"])
        name = "".join(c.upper() if rng.random() < 0.3 else c for c in name)
        headers.append((name, rand_value(rng)))
    if len(headers) > 1 and rng.random() < 0.25:
        headers.append((headers[-1][0].lower(), rand_value(rng)))  # repeated header
    return headers


def rand_value(rng):
    pool = list(ALNUM) + list("!#$%&'*+-.^_`|~/:;=?@[](){}<>,\"") + [" ", "  ", "\t", " \t "]
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, 24)))


def rand_token(rng):
    chars = ALNUM + "+/"
    return "".join(rng.choice(chars) for _ in range(rng.randint(80, 900))) + rng.choice(["", "=", "=="])


def rand_request(rng, i):
    virtual = rng.random() < 0.5
    region = rng.choice(REGIONS)
    bucket = rand_bucket(rng, virtual)
    key = rand_key(rng)
    if virtual:
        host, raw_path = f"{bucket}.s3.{region}.amazonaws.com", "/" + key
    else:
        host = rng.choice([f"s3.{region}.amazonaws.com", "localhost:9000"])
        raw_path = f"/{bucket}/{key}"
    method = rng.choice(METHODS)
    return {
        "n": i,
        "method": method,
        "host": host,
        "raw_path": raw_path,
        "headers": rand_headers(rng, host),
        "body": bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))) if method == "PUT" else b"",
        "sign_payload": rng.random() < 0.6,
        "key_id": "AKIA" + "".join(rng.choice(ALNUM.upper()[26:] + ALNUM[26:52]) for _ in range(16)),
        "secret": "".join(rng.choice(ALNUM + "+/") for _ in range(40)),
        "token": rand_token(rng) if rng.random() < 0.5 else None,
        "region": region,
        "time": rng.randint(1262304000, 2051222400),  # 2010 .. 2035
        "expires": rng.choice([1, 60, 3600, 86400, 604800, rng.randint(1, 604800)]),
        "header_query": rand_query(rng, unique=False),
        "presign_query": rand_query(rng, unique=True),  # botocore keeps one value per name
        "style": rng.choice(["canon", "lower", "raw", "over"]),
    }


# ---- botocore ----

class _Capture:
    """Keeps the canonical request botocore signed."""
    last_canonical = None

    def canonical_request(self, request):
        self.last_canonical = super().canonical_request(request)
        return self.last_canonical


class HeaderSigner(_Capture, S3SigV4Auth):
    pass


class QuerySigner(_Capture, S3SigV4QueryAuth):
    pass


class DdbSigner(_Capture, SigV4Auth):
    pass


DDB_OPS = ["PutItem", "DeleteItem", "DescribeTable", "CreateTable", "Scan", "BatchWriteItem"]


def rand_ddb_request(rng, i):
    """A DynamoDB JSON request the way src/cloud/ddb.c makes one."""
    region = rng.choice(REGIONS)
    host = rng.choice([f"dynamodb.{region}.amazonaws.com", "127.0.0.1:8000", "localhost:4567"])
    doc = {"TableName": rand_text(rng, 3, 30, unicode=False, reserved=False),
           "Item": {"title": {"S": rand_text(rng, 0, 60)}, "seq": {"N": str(rng.randint(1, 1 << 40))}},
           "ConditionExpression": "attribute_not_exists(#q) OR #q < :q"}
    body = json.dumps(doc, ensure_ascii=rng.random() < 0.5, separators=(",", ":")).encode()
    return {
        "n": i, "method": "POST", "host": host, "raw_path": "/",
        "headers": [("Host", host), ("Content-Type", "application/x-amz-json-1.0"),
                    ("X-Amz-Target", "DynamoDB_20120810." + rng.choice(DDB_OPS))],
        "body": body,
        "key_id": "AKIA" + "".join(rng.choice(ALNUM.upper()[26:] + ALNUM[26:52]) for _ in range(16)),
        "secret": "".join(rng.choice(ALNUM + "+/") for _ in range(40)),
        "token": rand_token(rng) if rng.random() < 0.5 else None,
        "region": region,
        "time": rng.randint(1262304000, 2051222400),
    }


def ddb_sign(r):
    req = AWSRequest(method="POST", url=f"https://{r['host']}/", data=r["body"])
    for n, v in r["headers"]:
        req.headers[n] = v
    signer = DdbSigner(Credentials(r["key_id"], r["secret"], r["token"]), "dynamodb", r["region"])
    with fixed_clock(r["time"]):
        signer.add_auth(req)
    return req, signer.last_canonical


def ddb_input(r):
    return {
        "mode": "header", "method": "POST", "path": "/", "query": "",
        "headers": [[n, v] for n, v in r["headers"]],
        "payload_hash": hashlib.sha256(r["body"]).hexdigest(),
        "key_id": r["key_id"], "secret": r["secret"], "token": r["token"],
        "region": r["region"], "service": "dynamodb", "time": r["time"],
    }


def ddb_compare(r, ours):
    if ours.get("rc") != 0:
        return [f"driver refused it: {ours}"]
    req, canonical = ddb_sign(r)
    diffs = []
    if ours["canonical_request"] != canonical:
        diffs.append("canonical request " + first_difference(canonical, ours["canonical_request"])
                     + "\n--- botocore\n" + canonical + "\n--- pv\n" + ours["canonical_request"])
    if ours["authorization"] != req.headers["Authorization"]:
        diffs.append(f"Authorization {ours['authorization']!r} != {req.headers['Authorization']!r}")
    want = {"x-amz-date", "authorization"} | ({"x-amz-security-token"} if r["token"] else set())
    got = {n.lower() for n, _ in ours["headers"]}
    if got != want:
        diffs.append(f"added headers {sorted(got)} != {sorted(want)}")
    for n, v in ours["headers"]:
        if req.headers.get(n) != v:
            diffs.append(f"header {n}: {v!r} != {req.headers.get(n)!r}")
    return diffs


def fixed_clock(ts):
    class Clock(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return EPOCH + datetime.timedelta(seconds=ts)
    return mock.patch.object(botocore.auth, "datetime", types.SimpleNamespace(datetime=Clock))


def wire_path(r):
    return quote(r["raw_path"], safe="/~")  # what botocore's S3 serializer sends


def boto_sign(r, mode):
    params = r["header_query"] if mode == "header" else r["presign_query"]
    url = f"https://{r['host']}{wire_path(r)}"
    if params:
        url += "?" + query_text(params, "canon")
    body = r["body"] if mode == "header" else None  # presigned: no body yet
    req = AWSRequest(method=r["method"], url=url, data=body)
    for n, v in r["headers"]:
        req.headers[n] = v  # appends: repeated names stay repeated
    req.context["client_config"] = types.SimpleNamespace(
        s3={"payload_signing_enabled": r["sign_payload"]})
    creds = Credentials(r["key_id"], r["secret"], r["token"])
    if mode == "header":
        signer = HeaderSigner(creds, "s3", r["region"])
    else:
        signer = QuerySigner(creds, "s3", r["region"], expires=r["expires"])
    with fixed_clock(r["time"]):
        signer.add_auth(req)
    return req, signer.last_canonical


def driver_input(r, mode):
    params = r["header_query"] if mode == "header" else r["presign_query"]
    if mode == "header":
        payload = hashlib.sha256(r["body"]).hexdigest() if r["sign_payload"] else "UNSIGNED-PAYLOAD"
    else:
        payload = "UNSIGNED-PAYLOAD"
    return {
        "mode": mode, "method": r["method"], "raw_path": r["raw_path"],
        "query": query_text(params, r["style"]),
        "headers": [[n, v] for n, v in r["headers"]], "payload_hash": payload,
        "key_id": r["key_id"], "secret": r["secret"], "token": r["token"],
        "region": r["region"], "service": "s3", "time": r["time"], "expires": r["expires"],
        "s3": True, "content_sha256": mode == "header",
    }


# ---- comparing ----

def first_difference(want, got):
    """Where two texts part, for a one-line report."""
    w, g = want.split("\n"), got.split("\n")
    for i in range(max(len(w), len(g))):
        a = w[i] if i < len(w) else "<none>"
        b = g[i] if i < len(g) else "<none>"
        if a != b:
            return f"line {i + 1}: botocore {a!r}, pv {b!r}"
    return "differs"


def compare(r, mode, ours):
    """A list of differences (empty: the same)."""
    if ours.get("rc") != 0:
        return [f"driver refused it: {ours}"]
    req, canonical = boto_sign(r, mode)
    diffs = []
    if ours["path"] != wire_path(r):
        diffs.append(f"path {ours['path']!r} != {wire_path(r)!r}")
    if ours["canonical_request"] != canonical:
        where = first_difference(canonical, ours["canonical_request"])
        diffs.append("canonical request " + where + "\n--- botocore\n" + canonical
                     + "\n--- pv\n" + ours["canonical_request"])
    if mode == "header":
        if ours["authorization"] != req.headers["Authorization"]:
            diffs.append(f"Authorization {ours['authorization']!r} != {req.headers['Authorization']!r}")
        want = {"x-amz-date", "x-amz-content-sha256", "authorization"}
        if r["token"]:
            want.add("x-amz-security-token")
        got = {n.lower() for n, _ in ours["headers"]}
        if got != want:
            diffs.append(f"added headers {sorted(got)} != {sorted(want)}")
        for n, v in ours["headers"]:
            if req.headers.get(n) != v:
                diffs.append(f"header {n}: {v!r} != {req.headers.get(n)!r}")
    else:
        boto_query = urlsplit(req.url).query
        sig = dict(parse_qsl(boto_query)).get("X-Amz-Signature")
        if ours["signature"] != sig:
            diffs.append(f"signature {ours['signature']} != {sig}")
        mine, theirs = query_pairs(ours["query"]), query_pairs(boto_query)
        if mine != theirs:
            diffs.append(f"query parameters differ: {mine} != {theirs}")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("driver", help="path to the sigv4_cli binary")
    ap.add_argument("--count", type=int, default=250, help="random requests (each signed twice)")
    ap.add_argument("--ddb-count", type=int, default=100, help="random DynamoDB requests")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--verbose", action="store_true", help="print whole differences")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    reqs = [rand_request(rng, i) for i in range(args.count)]
    jobs = [(r, mode) for r in reqs for mode in ("header", "query")]
    jobs += [(rand_ddb_request(rng, args.count + i), "ddb") for i in range(args.ddb_count)]
    feed = "\n".join(json.dumps(ddb_input(r) if m == "ddb" else driver_input(r, m), ensure_ascii=False)
                     for r, m in jobs)
    print(f"# seed {args.seed}: {len(reqs)} requests, {len(jobs)} signatures")
    proc = subprocess.run([args.driver], input=feed.encode(), capture_output=True)
    lines = proc.stdout.decode().splitlines()
    if proc.returncode != 0 or len(lines) != len(jobs):
        print(f"driver failed: exit {proc.returncode}, {len(lines)} of {len(jobs)} answers")
        print(proc.stderr.decode()[-3000:])
        print(f"0 passed, {len(jobs)} failed")
        return 1

    passed = failed = 0
    for (r, mode), line in zip(jobs, lines):
        ours = json.loads(line)
        diffs = ddb_compare(r, ours) if mode == "ddb" else compare(r, mode, ours)
        if not diffs:
            passed += 1
            continue
        failed += 1
        first = diffs[0] if args.verbose else diffs[0].split("\n")[0]
        print(f"FAIL request {r['n']} {mode} {r['method']} {r['host']}{wire_path(r)}: {first}"
              + (f" (+{len(diffs) - 1} more)" if len(diffs) > 1 else ""))
        if args.verbose:
            for d in diffs[1:]:
                print("    " + d)
    print(f"# unit sigv4-botocore: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
