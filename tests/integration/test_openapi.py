"""test_openapi.py — schema/openapi.json, the API reference, against pvd.

Why: a reference that drifts from the server is worse than none. So this
module fails when the two part ways, from both sides:
  - statically: every row of the route table that pvd prints (`pvd --routes`, from
    the C source) is an operation of the document with the same method,
    path, route name, auth, body mode and listeners, and the other way
    round; HEAD exists exactly for the GET routes; the document is
    self-consistent (every $ref resolves, path parameters are declared,
    extensions beyond API.md are marked x-pv-extension);
  - against a running pvd: for a sample of requests on every route, the
    status must be one the document lists for that operation (not merely
    covered by `default`), and the body must validate against its schema:
    JSON through a small validator for the JSON Schema subset the document
    uses (it refuses any keyword it does not know, so the document cannot
    quietly outgrow it), error codes against the listed codes, documented
    headers against their schemas, SSE event data against x-pv-events.
"""

import json
import os
import re
import subprocess

from harness import PVD_BIN, ROOT, check, eq, rand_email, unique_jpeg, unique_png, multipart

DOC_PATH = os.path.join(ROOT, "schema", "openapi.json")
METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")
SAMPLE_ID = "01m8hm3rd2c0v5heqvq62efmqp"  # well-formed, never issued

_DOC = None


def _doc():
    global _DOC
    if _DOC is None:
        with open(DOC_PATH, encoding="utf-8") as f:
            _DOC = json.load(f)
    return _DOC


# ---------------------------------------------------------------- the validator

# The JSON Schema subset the document may use; anything else is an error,
# so that the document cannot use a keyword this test would ignore.
ASSERT_KEYS = {"$ref", "type", "enum", "required", "properties", "additionalProperties", "items",
               "minItems", "maxItems", "minimum", "maximum", "minLength", "maxLength", "pattern", "oneOf"}
ANNOTATION_KEYS = {"description", "default", "format", "example", "contentMediaType", "title", "$comment"}


def _resolve(ref):
    check(ref.startswith("#/"), "only local $refs", "#/...", ref)
    node = _doc()
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        check(isinstance(node, dict) and part in node, "$ref %s resolves" % ref, "found", "missing " + part)
        node = node[part]
    return node


def _deref(node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        node = _resolve(node["$ref"])
        seen += 1
        check(seen < 20, "$ref chain ends", "< 20 hops", "a loop?")
    return node


def _is_type(v, t):
    if t == "null":
        return v is None
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "string":
        return isinstance(v, str)
    if t == "array":
        return isinstance(v, list)
    if t == "object":
        return isinstance(v, dict)
    raise AssertionError("schema type %r is not one this validator knows" % t)


def _same(a, b):
    """JSON equality: true is not 1, 30 is 30.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return type(a) == type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b)


def _schema_keys_ok(schema, where):
    for k in schema:
        if k not in ASSERT_KEYS and k not in ANNOTATION_KEYS and not k.startswith("x-"):
            raise AssertionError("%s: schema keyword %r is outside the subset this test validates" % (where, k))


def _validate(schema, v, where, errs):
    """Appends to errs what is wrong with v against schema."""
    if not isinstance(schema, dict):
        errs.append("%s: schema is not an object" % where)
        return
    _schema_keys_ok(schema, where)
    if "$ref" in schema:
        _validate(_resolve(schema["$ref"]), v, where, errs)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(v, t) for t in types):
            errs.append("%s: expected type %s, got %s" % (where, "|".join(types), json.dumps(v)[:120]))
            return
    if "enum" in schema and not any(_same(v, e) for e in schema["enum"]):
        errs.append("%s: %s is not one of %s" % (where, json.dumps(v)[:120], schema["enum"]))
    if isinstance(v, str):
        if "minLength" in schema and len(v) < schema["minLength"]:
            errs.append("%s: shorter than %d" % (where, schema["minLength"]))
        if "maxLength" in schema and len(v) > schema["maxLength"]:
            errs.append("%s: longer than %d" % (where, schema["maxLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], v):
            errs.append("%s: %r does not match %s" % (where, v[:160], schema["pattern"]))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "minimum" in schema and v < schema["minimum"]:
            errs.append("%s: %s < minimum %s" % (where, v, schema["minimum"]))
        if "maximum" in schema and v > schema["maximum"]:
            errs.append("%s: %s > maximum %s" % (where, v, schema["maximum"]))
    if isinstance(v, dict):
        for k in schema.get("required", []):
            if k not in v:
                errs.append("%s: required member %r missing" % (where, k))
        props = schema.get("properties", {})
        for k, x in v.items():
            if k in props:
                _validate(props[k], x, "%s.%s" % (where, k), errs)
            elif schema.get("additionalProperties") is False:
                errs.append("%s: member %r is not documented" % (where, k))
            elif isinstance(schema.get("additionalProperties"), dict):
                _validate(schema["additionalProperties"], x, "%s.%s" % (where, k), errs)
    if isinstance(v, list):
        if "minItems" in schema and len(v) < schema["minItems"]:
            errs.append("%s: fewer than %d items" % (where, schema["minItems"]))
        if "maxItems" in schema and len(v) > schema["maxItems"]:
            errs.append("%s: more than %d items" % (where, schema["maxItems"]))
        if "items" in schema:
            for i, x in enumerate(v):
                _validate(schema["items"], x, "%s[%d]" % (where, i), errs)
    if "oneOf" in schema:
        fits = []
        for i, alt in enumerate(schema["oneOf"]):
            e = []
            _validate(alt, v, where, e)
            fits.append((i, e))
        ok = [i for i, e in fits if not e]
        if len(ok) != 1:
            errs.append("%s: matches %d of the oneOf alternatives, not exactly one (%s)"
                        % (where, len(ok), "; ".join(e[0] for _, e in fits if e)[:600]))


def _valid(schema, v, what):
    errs = []
    _validate(schema, v, "$", errs)
    check(not errs, "%s: body matches the documented schema" % what, "no errors",
          "\n".join(errs[:12]) + "\nbody: " + json.dumps(v)[:600])


def _schema(name):
    return {"$ref": "#/components/schemas/" + name}


# ---------------------------------------------------------------- answers vs the doc

def _op(method, path):
    item = _doc()["paths"].get(path)
    check(item is not None, "path %s is documented" % path, "a path item", None)
    op = item.get(method.lower())
    check(op is not None, "%s %s is documented" % (method, path), "an operation", None)
    return op


def _media_key(content, ctype):
    if ctype in content:
        return ctype
    base = (ctype or "").split(";")[0].strip().lower()
    for k in content:
        if k.split(";")[0].strip().lower() == base:
            return k
    return None


def _header_value(schema, raw):
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "integer" in types and re.fullmatch(r"[0-9]+", raw):
        return int(raw)
    return raw


def _check(method, path, r, what=None, status=None, code=None):
    """r is one of the documented answers of `method path` (a template);
    returns the JSON body (or the text of a non-JSON one)."""
    what = what or "%s %s" % (method, path)
    if status is not None:
        check(r.status in (status if isinstance(status, tuple) else (status,)),
              "%s: status" % what, status, "%d %s" % (r.status, r.body[:300]))
    op = _op(method, path)
    resps = op["responses"]
    st = str(r.status)
    check(st in resps, "%s: status %s is listed for the operation" % (what, st),
          sorted(k for k in resps if k != "default"), "%s, body %s" % (st, r.body[:300]))
    resp = _deref(resps[st])
    for name, h in resp.get("headers", {}).items():
        raw = r.header(name)
        if raw is None:
            continue
        h = _deref(h)
        errs = []
        _validate(h.get("schema", {}), _header_value(h.get("schema", {}), raw), "header " + name, errs)
        check(not errs, "%s: documented header %s" % (what, name), "valid", "; ".join(errs))
    content = resp.get("content")
    if method.upper() == "HEAD" or not content:
        eq(r.body, b"", "%s: no body (%s)" % (what, "HEAD" if content else "none documented for " + st))
        return None
    ctype = r.header("Content-Type")
    key = _media_key(content, ctype)
    check(key is not None, "%s: Content-Type is documented for %s" % (what, st), sorted(content), ctype)
    schema = content[key].get("schema", {})
    if key.startswith("application/json"):
        body = r.json()
        _valid(schema, body, what)
        if code is not None:
            eq(body["error"]["code"], code, "%s: error code" % what)
        return body
    text = r.body.decode("utf-8", "replace")
    if "enum" in schema:
        check(text in schema["enum"], "%s: text body" % what, schema["enum"], text[:200])
    return text


def _url_fits(path, url, what):
    """url (e.g. a presigned link pvd made) is an instance of the path
    template, each path parameter valid against its documented schema."""
    op = _op("GET", path)
    params = {p["name"]: p for p in map(_deref, op.get("parameters", [])) if p.get("in") == "path"}
    rx = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"
    m = re.match(rx, url.split("?", 1)[0])
    check(m, "%s: %s fits the documented path %s" % (what, url, path), path, url)
    for name, value in m.groupdict().items():
        errs = []
        _validate(params[name]["schema"], value, "path parameter " + name, errs)
        check(not errs, "%s: path parameter %s" % (what, name), "valid", "; ".join(errs))


# ---------------------------------------------------------------- the route table

AUTH = {"PV_AUTH_NONE": "none", "PV_AUTH_BEARER": "bearer", "PV_AUTH_SIGNED": "presigned"}
BODY = {"PV_BODY_NONE": "none", "PV_BODY_MEMORY": "memory", "PV_BODY_FILE": "file"}


def _route_table():
    """[(method, path, auth, body, listeners, name)] as pvd itself prints them."""
    out = subprocess.run([PVD_BIN, "--routes"], capture_output=True, text=True, timeout=30)
    eq(out.returncode, 0, "pvd --routes exit code")
    doc = json.loads(out.stdout)
    rows = [(r["method"], r["path"], r["auth"], r["body"], sorted(r["listeners"]), r["name"])
            for r in doc["routes"]]
    for r in rows:
        check(r[2] in AUTH.values() and r[3] in BODY.values(), "route %s %s: known auth/body" % r[:2],
              "one of %s / %s" % (list(AUTH.values()), list(BODY.values())), r[2:4])
    check(len(rows) >= 20, "route table size", ">= 20 rows", len(rows))
    return rows


def _doc_ops(head=False):
    """[(METHOD, path, op)] of the document (without HEAD unless asked)."""
    out = []
    for path, item in _doc()["paths"].items():
        for m in METHODS:
            if m in item and (head or m != "head"):
                out.append((m.upper(), path, item[m]))
    return out


# ---------------------------------------------------------------- static tests

def test_doc_is_openapi_3_1_and_self_consistent():
    d = _doc()
    eq(d.get("openapi"), "3.1.0", "openapi version")
    check(d.get("info", {}).get("title") and d["info"].get("version"), "info.title and info.version", "set", d.get("info"))
    schemes = d["components"]["securitySchemes"]
    for k in ("bearerAuth", "presignOwner", "presignExpires", "presignKid", "presignSig"):
        check(k in schemes, "security scheme %s" % k, "defined", sorted(schemes))
    eq(schemes["bearerAuth"].get("bearerFormat"), "JWT", "bearerAuth format")
    eq(sorted(schemes[k]["name"] for k in ("presignOwner", "presignExpires", "presignKid", "presignSig")),
       ["expires", "kid", "owner", "sig"], "presigned query parameters")
    for k in ("Photo", "Video", "User", "TokenPair", "Error", "PhotoList", "VideoList"):
        check(k in d["components"]["schemas"], "shared schema %s" % k, "defined", None)

    # Every $ref resolves, and every schema uses only the validated subset.
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                _resolve(node["$ref"])
            for v in node.values():
                refs(v)
        elif isinstance(node, list):
            for v in node:
                refs(v)
    refs(d)

    def schema_keys(s, where):
        if not isinstance(s, dict):
            raise AssertionError("%s: a schema that is not an object" % where)
        _schema_keys_ok(s, where)
        for k, v in s.get("properties", {}).items():
            schema_keys(v, where + ".properties." + k)
        for k in ("items", "additionalProperties"):
            if isinstance(s.get(k), dict):
                schema_keys(s[k], where + "." + k)
        for i, alt in enumerate(s.get("oneOf", [])):
            schema_keys(alt, "%s.oneOf[%d]" % (where, i))

    def schemas_in(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "schema":
                    schema_keys(v, where + ".schema")
                else:
                    schemas_in(v, where + "." + k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                schemas_in(v, "%s[%d]" % (where, i))
    for name, s in d["components"]["schemas"].items():
        schema_keys(s, "components.schemas." + name)
    schemas_in(d["paths"], "paths")
    schemas_in({k: v for k, v in d["components"].items() if k != "schemas"}, "components")

    ids = set()
    for method, path, op in _doc_ops(head=True):
        what = "%s %s" % (method, path)
        oid = op.get("operationId")
        check(oid and oid not in ids, "%s: unique operationId" % what, "unique", oid)
        ids.add(oid)
        resps = op.get("responses", {})
        check("default" in resps, "%s: has a default response" % what, "default", sorted(resps))
        for st in resps:
            check(st == "default" or re.fullmatch(r"[1-5][0-9][0-9]", st), "%s: response key" % what, "NNN", st)
            r = _deref(resps[st])
            check(r.get("description"), "%s %s: description" % (what, st), "text", r)
        declared = set()
        for p in op.get("parameters", []):
            p = _deref(p)
            if p.get("in") == "path":
                check(p.get("required") is True, "%s: path parameter %s required" % (what, p["name"]), True, p)
                declared.add(p["name"])
        eq(declared, set(re.findall(r"\{(\w+)\}", path)), "%s: declared path parameters" % what)
        for req in op.get("security", []):
            for name in req:
                check(name in schemes, "%s: security scheme %s defined" % (what, name), "defined", sorted(schemes))
        if method == "HEAD":
            check(op.get("x-pv-extension") is True, "%s: HEAD marked x-pv-extension" % what, True, None)

    # What goes beyond API.md is marked, with a description.
    def marked(node, what):
        node = _deref(node)
        check(node.get("x-pv-extension") is True, "%s: x-pv-extension: true" % what, True, node.get("x-pv-extension"))
        check(node.get("description"), "%s: has a description" % what, "text", None)
    marked(_op("POST", "/api/v1/videos/{id}/cancel"), "POST /api/v1/videos/{id}/cancel")
    for method, path, op in _doc_ops(head=True):
        if path.startswith("/media/") or path in ("/", "/assets/{name}", "/photos", "/videos", "/login"):
            marked(op, "%s %s" % (method, path))
    marked(d["components"]["parameters"]["Session"], "X-PV-Session parameter")
    marked(d["components"]["parameters"]["RefreshCookie"], "pv_refresh cookie parameter")
    marked(schemes["refreshCookie"], "refreshCookie scheme")
    marked(d["components"]["schemas"]["TokenPairCookie"], "TokenPairCookie")
    for path in ("/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"):
        names = [_deref(p).get("name") for p in _op("POST", path).get("parameters", [])]
        check("X-PV-Session" in names, "%s documents X-PV-Session" % path, "present", names)


def test_doc_matches_route_table():
    rows = _route_table()
    table = {(m, p): (a, b, l, n) for m, p, a, b, l, n in rows}
    eq(len(table), len(rows), "route table: no duplicate method+path")
    ops = {(m, p): op for m, p, op in _doc_ops()}
    eq(sorted(set(ops) - set(table)), [], "documented operations that pvd --routes does not list")
    eq(sorted(set(table) - set(ops)), [], "routes of pvd --routes missing from schema/openapi.json")
    want_security = {"bearer": [{"bearerAuth": []}],
                     "presigned": [{"presignOwner": [], "presignExpires": [], "presignKid": [], "presignSig": []}]}
    for key, (auth, body, listeners, name) in table.items():
        op = ops[key]
        what = "%s %s" % key
        xr = dict(op.get("x-pv-route", {}))
        xr["listeners"] = sorted(xr.get("listeners", []))
        eq(xr, {"name": name, "auth": auth, "body": body, "listeners": listeners}, "%s: x-pv-route vs the table" % what)
        sec = op.get("security")
        if auth == "none":
            check(sec is not None and (sec == [] or {} in sec), "%s: security allows no credentials" % what,
                  "[] or [{}...]", sec)
        else:
            eq(sec, want_security[auth], "%s: security" % what)
        if body == "none":
            check("requestBody" not in op, "%s: no requestBody (the route reads none)" % what, "absent", "present")
        else:
            check("requestBody" in op, "%s: requestBody documented" % what, "present", "absent")
    # HEAD exactly where GET is (the HTTP layer serves HEAD on every GET route).
    item_paths = _doc()["paths"]
    for path, item in item_paths.items():
        eq("head" in item, "get" in item, "%s: HEAD documented iff GET is" % path)
        if "head" in item:
            eq(item["head"].get("x-pv-route"), item["get"].get("x-pv-route"), "%s: HEAD's route row" % path)
            eq(item["head"].get("security"), item["get"].get("security"), "%s: HEAD's security" % path)


# ---------------------------------------------------------------- live tests

def _user(pvd):
    if not hasattr(pvd, "_oa_user"):
        pvd._oa_user = pvd.new_user("oa")
    return pvd._oa_user


def _fill(path):
    """A concrete URL for a path template: a well-formed unknown id, an
    unknown asset name, the first value of an enum parameter."""
    item = _doc()["paths"][path]
    op = next(item[m] for m in METHODS if m in item)
    enums = {p["name"]: p["schema"]["enum"][0] for p in map(_deref, op.get("parameters", []))
             if p.get("in") == "path" and "enum" in p.get("schema", {})}
    values = dict({"id": SAMPLE_ID, "name": "nope.js", "share_id": SAMPLE_ID, "token": "A" * 43}, **enums)
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def _send(pvd, op, method, url, **kw):
    if "public" in op.get("x-pv-route", {}).get("listeners", ["public"]):
        return pvd.req(method, url, **kw)
    return pvd.private(method, url, body=kw.get("body"), headers=kw.get("headers"))


def test_methods_and_paths_route_as_documented(pvd):
    for path, item in _doc()["paths"].items():
        op = next(item[m] for m in METHODS if m in item)
        url = _fill(path)
        r = _send(pvd, op, "PATCH", url)
        eq(r.status, 405, "PATCH %s (a method the document does not list for the path)" % url)
        _valid(_deref(_doc()["components"]["responses"]["Default"])["content"]["application/json"]["schema"],
               r.json(), "405 on PATCH %s" % url)
        allow = sorted(x.strip() for x in (r.header("Allow") or "").split(","))
        eq(allow, sorted(m.upper() for m in METHODS if m in item), "Allow of %s vs the documented methods" % path)
    r = pvd.req("GET", "/api/v1/no-such-route")
    eq(r.status, 404, "an undocumented path")
    eq(r.json()["error"]["code"], "not_found", "an undocumented path: code")
    # Private-only paths are not on the public listener, and vice versa.
    for method, path, op in _doc_ops():
        lst = op["x-pv-route"]["listeners"]
        if method == "GET" and "public" not in lst:
            eq(pvd.req("GET", _fill(path)).status, 404, "GET %s on the public listener (documented private only)" % path)
        if method == "GET" and "private" not in lst and "{" not in path:
            eq(pvd.private("GET", _fill(path)).status, 404, "GET %s on the private listener" % path)


def test_credentials_checked_as_documented(pvd):
    for method, path, op in _doc_ops(head=True):
        auth = op["x-pv-route"]["auth"]
        if auth == "none":
            continue
        url = _fill(path)
        if auth == "bearer":
            r = pvd.req(method, url)
            _check(method, path, r, "%s %s without a token" % (method, url), 401, None if method == "HEAD" else "unauthorized")
            eq(r.header("WWW-Authenticate"), "Bearer", "%s %s: WWW-Authenticate" % (method, url))
            r = pvd.req(method, url, token="not.a.jwt")
            _check(method, path, r, "%s %s with a bad token" % (method, url), 401, None if method == "HEAD" else "invalid_token")
        else:
            r = pvd.req(method, url)
            _check(method, path, r, "%s %s without a signature" % (method, url), 403, None if method == "HEAD" else "forbidden")
            r = pvd.req(method, url + "?owner=%s&expires=9999999999&kid=1&sig=%s" % (SAMPLE_ID, "A" * 43))
            _check(method, path, r, "%s %s with a forged signature" % (method, url), 403, None if method == "HEAD" else "forbidden")


def test_auth_answers_match_doc(pvd):
    S, L, R, O = "/api/v1/auth/signup", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"
    email, pw = rand_email("oa"), "pw-openapi-123"
    r = pvd.req("POST", S, json={"email": email, "password": pw})
    _valid(_schema("SignupResponse"), _check("POST", S, r, "signup", 201), "signup")
    _check("POST", S, pvd.req("POST", S, json={"email": email, "password": pw}), "signup again", 409, "email_taken")
    _check("POST", S, pvd.req("POST", S, json={"email": rand_email(), "password": "short"}),
           "signup short password", 400, "password_too_short")
    _check("POST", S, pvd.req("POST", S, json={"email": "no-at-sign", "password": pw}), "signup bad email", 400, "invalid_email")
    _check("POST", S, pvd.req("POST", S, json={"email": 1, "password": pw}), "signup email a number", 400, "wrong_type")
    _check("POST", S, pvd.req("POST", S, body=b"{nope", headers={"Content-Type": "application/json"}),
           "signup not JSON", 400, "invalid_json")
    _check("POST", S, pvd.req("POST", S), "signup without a body", 400, "invalid_json")
    # One limit for a JSON body (max_json_bytes, 64 KiB at most): the HTTP
    # layer answers it before the parser could.
    big = b'{"email":"a@b.c","password":"' + b"x" * 70000 + b'"}'
    _check("POST", S, pvd.req("POST", S, body=big, headers={"Content-Type": "application/json"}),
           "signup 70 kB body", 413, "too_large")

    r = pvd.req("POST", L, json={"email": email, "password": pw})
    pair = _check("POST", L, r, "login", 200)
    _valid(_schema("TokenPair"), pair, "login (body mode): a TokenPair with refresh_token")
    check(r.header("Set-Cookie") is None, "login (body mode): no Set-Cookie", None, r.header("Set-Cookie"))
    _check("POST", L, pvd.req("POST", L, json={"email": email, "password": pw + "x"}), "login wrong password",
           401, "invalid_credentials")
    _check("POST", L, pvd.req("POST", L, json={"email": email}), "login no password", 400, "missing_field")
    _check("POST", L, pvd.req("POST", L, json={"email": email, "password": ""}), "login empty password", 400, "invalid_value")

    tok = pair["access_token"]
    me = _check("GET", "/api/v1/me", pvd.req("GET", "/api/v1/me", token=tok), "me", 200)
    eq(me["email"], email, "me: email")
    _check("HEAD", "/api/v1/me", pvd.req("HEAD", "/api/v1/me", token=tok), "HEAD me", 200)

    r = pvd.req("POST", R, json={"refresh_token": pair["refresh_token"]})
    pair2 = _check("POST", R, r, "refresh", 200)
    _valid(_schema("TokenPair"), pair2, "refresh (body mode)")
    _check("POST", R, pvd.req("POST", R, json={"refresh_token": pair["refresh_token"]}),
           "refresh with a spent token", 401, "invalid_refresh_token")
    _check("POST", R, pvd.req("POST", R, json={"refresh_token": pair2["refresh_token"]}),
           "refresh with the family revoked by the replay", 401, "invalid_refresh_token")
    _check("POST", R, pvd.req("POST", R, json={}), "refresh without a token", 400, "missing_field")
    _check("POST", R, pvd.req("POST", R, json={"refresh_token": ""}), "refresh empty token", 400, "invalid_value")

    # Browser-session mode (X-PV-Session: cookie), an extension.
    cs = {"X-PV-Session": "cookie"}
    r = pvd.req("POST", L, json={"email": email, "password": pw}, headers=cs)
    _valid(_schema("TokenPairCookie"), _check("POST", L, r, "cookie login", 200), "cookie login: no refresh_token in the body")
    sc = r.header("Set-Cookie") or ""
    check(sc.startswith("pv_refresh="), "cookie login: Set-Cookie pv_refresh", "pv_refresh=...", sc)
    cookie = sc.split(";")[0]
    r = pvd.req("POST", R, headers=dict(cs, Cookie="other=1; " + cookie))
    body = _check("POST", R, r, "cookie refresh (token from the cookie, no body)", 200)
    _valid(_schema("TokenPairCookie"), body, "cookie refresh")
    cookie2 = (r.header("Set-Cookie") or "").split(";")[0]
    check(cookie2.startswith("pv_refresh=") and cookie2 != cookie, "cookie refresh: a new cookie", "new pv_refresh", cookie2)
    r = pvd.req("POST", O, token=body["access_token"], headers=dict(cs, Cookie=cookie2))
    _check("POST", O, r, "cookie logout", 204)
    check(r.header("Set-Cookie"), "cookie logout clears the cookie", "Set-Cookie", None)
    _check("POST", R, pvd.req("POST", R, headers=dict(cs, Cookie=cookie2)), "cookie refresh after logout", 401,
           "invalid_refresh_token")

    u = _user(pvd)
    _check("POST", O, u.req("POST", O, json={"refresh_token": "x"}), "logout malformed token", 400, "invalid_field")
    _check("POST", O, u.req("POST", O, json={"refresh_token": u.refresh}), "logout", 204)
    u.login()


def test_photo_answers_match_doc(pvd):
    u = _user(pvd)
    P, ONE = "/api/v1/photos", "/api/v1/photos/{id}"
    data = unique_jpeg()
    r = u.upload(data, filename="dir/a.jpg")
    body = _check("POST", P, r, "raw upload", 201)
    _valid(_schema("UploadResponse"), body, "raw upload")
    photo = body["photo"]
    eq(photo["filename"], "a.jpg", "upload: filename's last segment")
    body = _check("POST", P, u.upload(data), "raw upload of the same bytes", 200)
    eq(body.get("duplicate"), True, "duplicate upload: top-level duplicate")
    eq(body["photo"]["id"], photo["id"], "duplicate upload: the existing photo")
    mp, ctype = multipart([("b.png", "image/png", unique_png()), ("a.jpg", "image/jpeg", data)])
    body = _check("POST", P, u.req("POST", P, body=mp, headers={"Content-Type": ctype}), "multipart upload", 201)
    _valid(_schema("MultipartUploadResponse"), body, "multipart upload")
    eq([p.get("duplicate", False) for p in body["photos"]], [False, True], "multipart: duplicate flags")
    _check("POST", P, u.upload(b"hello", content_type="text/plain"), "upload text/plain", 415, "unsupported_media_type")
    _check("POST", P, u.upload(b"not an image at all"), "upload garbage as image/jpeg", 415, "unsupported_media_type")
    _check("POST", P, u.upload(b""), "empty upload", 415, "unsupported_media_type")
    _check("POST", P, u.upload(b"x", content_type="multipart/form-data"), "multipart without a boundary", 400, "bad_multipart")

    page = _check("GET", P, u.req("GET", P + "?limit=1"), "list limit=1", 200)
    eq(len(page["items"]), 1, "list limit=1: items")
    check(isinstance(page["next_cursor"], str), "list limit=1: next_cursor", "a string", page["next_cursor"])
    _check("GET", P, u.req("GET", P + "?limit=1&cursor=" + page["next_cursor"]), "list next page", 200)
    _check("HEAD", P, u.req("HEAD", P), "HEAD list", 200)
    _check("GET", P, u.req("GET", P + "?limit=0"), "list limit=0", 400, "invalid_value")
    _check("GET", P, u.req("GET", P + "?limit=101"), "list limit=101", 400, "invalid_value")
    _check("GET", P, u.req("GET", P + "?cursor=zz"), "list foreign cursor", 400, "invalid_field")

    pid = photo["id"]
    _valid(_schema("PhotoResponse"), _check("GET", ONE, u.req("GET", "%s/%s" % (P, pid)), "get photo", 200), "get photo")
    _check("GET", ONE, u.req("GET", "%s/%s" % (P, SAMPLE_ID)), "get unknown photo", 404, "not_found")
    _check("GET", ONE, u.req("GET", "%s/not-an-id" % P), "get a non-id", 404, "not_found")

    C, T = ONE + "/content", ONE + "/thumbnail"
    r = u.req("GET", "%s/%s/content" % (P, pid))
    _check("GET", C, r, "content", 200)
    eq(r.body, data, "content: the original bytes")
    etag = r.header("ETag")
    check(etag and r.header("Accept-Ranges") == "bytes", "content: ETag and Accept-Ranges", "both", (etag, r.header("Accept-Ranges")))
    _check("GET", C, u.req("GET", "%s/%s/content" % (P, pid), headers={"If-None-Match": etag}), "content If-None-Match", 304)
    r = u.req("GET", "%s/%s/content" % (P, pid), headers={"Range": "bytes=0-9"})
    _check("GET", C, r, "content Range", 206)
    eq((r.header("Content-Range"), r.body), ("bytes 0-9/%d" % len(data), data[:10]), "content Range: Content-Range and bytes")
    r = u.req("GET", "%s/%s/content" % (P, pid), headers={"Range": "bytes=%d-" % (len(data) + 10)})
    _check("GET", C, r, "content Range past the end", 416, "range_not_satisfiable")
    _check("HEAD", C, u.req("HEAD", "%s/%s/content" % (P, pid)), "HEAD content", 200)
    _check("GET", C, u.req("GET", "%s/%s/content" % (P, SAMPLE_ID)), "content of an unknown photo", 404, "not_found")
    _check("GET", T, u.req("GET", "%s/%s/thumbnail" % (P, pid)), "thumbnail", 200)

    M = "/media/photos/{id}/{what}"
    for k, url in photo["urls"].items():
        _url_fits(M, url, "photo urls." + k)
    r = pvd.req("GET", photo["urls"]["content"])
    _check("GET", M, r, "presigned content", 200)
    eq(r.body, data, "presigned content: bytes")
    _check("HEAD", M, pvd.req("HEAD", photo["urls"]["thumbnail"]), "presigned HEAD thumbnail", 200)
    _check("GET", M, pvd.req("GET", photo["urls"]["thumbnail"], headers={"Range": "bytes=0-3"}), "presigned Range", 206)
    bad = photo["urls"]["content"][:-2] + ("AA" if not photo["urls"]["content"].endswith("AA") else "BB")
    _check("GET", M, pvd.req("GET", bad), "presigned with a changed sig", 403, "forbidden")

    other = _check("POST", P, u.upload(unique_jpeg()), "upload another", 201)["photo"]
    _check("DELETE", ONE, u.req("DELETE", "%s/%s" % (P, other["id"])), "delete photo", 204)
    _check("DELETE", ONE, u.req("DELETE", "%s/%s" % (P, other["id"])), "delete it again", 404, "not_found")
    _check("GET", M, pvd.req("GET", other["urls"]["content"]), "presigned link of a deleted photo", 404, "not_found")


def _sse_events(text):
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        ev, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        out.append((ev, "\n".join(data)))
    return out


def test_video_answers_match_doc(pvd):
    import time
    u = _user(pvd)
    V, ONE = "/api/v1/videos", "/api/v1/videos/{id}"
    pid = _check("POST", "/api/v1/photos", u.upload(unique_jpeg(96, 64)), "upload for a video", 201)["photo"]["id"]
    small = {"photo_ids": [pid], "resolution": "480p", "fps": 24, "seconds_per_photo": 1, "transition": "none",
             "title": "openapi"}
    for bad, code, what in (({"photo_ids": []}, "invalid_field", "no photos"),
                            ({"photo_ids": [pid], "colour": "red"}, "invalid_field", "an unknown member"),
                            ({"photo_ids": [pid], "audio_id": "x"}, "invalid_field", "an audio_id"),
                            ({"photo_ids": [pid], "fps": 29}, "invalid_field", "fps 29"),
                            ({"photo_ids": [pid], "seconds_per_photo": 1, "transition_seconds": 0.6}, "invalid_field",
                             "transition over half a photo"),
                            ({"photo_ids": [SAMPLE_ID]}, "photo_not_found", "a photo that is not the caller's")):
        r = u.req("POST", V, json=bad)
        _check("POST", V, r, "create with " + what, 404 if code == "photo_not_found" else 400, code)
    _check("POST", V, u.req("POST", V, body=b"[1]", headers={"Content-Type": "application/json"}),
           "create with an array body", 400, "invalid_json")

    body = _check("POST", V, u.req("POST", V, json=small), "create video", 202)
    _valid(_schema("VideoResponse"), body, "create video")
    v = body["video"]
    eq((v["status"], v["urls"], v["options"]["fps"], v["title"]), ("queued", None, 24, "openapi"), "new video")
    vid = v["id"]
    _valid(_schema("VideoList"), _check("GET", V, u.req("GET", V + "?limit=5"), "list videos", 200), "list videos")
    _check("GET", V, u.req("GET", V + "?limit=x"), "list videos limit=x", 400, "invalid_value")
    deadline = time.monotonic() + 20
    while True:
        v = _check("GET", ONE, u.req("GET", "%s/%s" % (V, vid)), "get video", 200)["video"]
        if v["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    eq(v["status"], "ready", "the small video rendered within 20 s (error: %s)" % v.get("error"))
    check(v["urls"] and v["bytes"] > 0 and v["finished_at"], "ready video: urls, bytes, finished_at", "set", v)
    _check("HEAD", ONE, u.req("HEAD", "%s/%s" % (V, vid)), "HEAD video", 200)

    E = ONE + "/events"
    r = u.req("GET", "%s/%s/events" % (V, vid))
    text = _check("GET", E, r, "events of a ready video", 200)
    schemas = _op("GET", E)["responses"]["200"]["content"]["text/event-stream; charset=utf-8"]["x-pv-events"]
    events = _sse_events(text)
    check(events, "events of a ready video: at least one event", ">= 1", text[:300])
    for name, data in events:
        check(name in schemas, "SSE event name is documented", sorted(schemas), name)
        _valid(schemas[name], json.loads(data), "SSE event %s" % name)
    eq(events[-1][0], "status", "events of a ready video: it ends with its status")

    M = "/media/videos/{id}/{what}"
    for k, url in v["urls"].items():
        _url_fits(M, url, "video urls." + k)
    r = pvd.req("GET", v["urls"]["content"], headers={"Range": "bytes=0-99"})
    _check("GET", M, r, "presigned video Range", 206)
    eq(r.header("Content-Type"), "video/mp4", "video content type")
    _check("GET", M, pvd.req("GET", v["urls"]["poster"]), "presigned poster", 200)
    _check("HEAD", M, pvd.req("HEAD", v["urls"]["content"]), "presigned HEAD video", 200)

    C = ONE + "/cancel"
    _check("POST", C, u.req("POST", "%s/%s/cancel" % (V, vid)), "cancel a ready video", 409, "not_cancellable")
    _check("POST", C, u.req("POST", "%s/%s/cancel" % (V, SAMPLE_ID)), "cancel an unknown video", 404, "not_found")
    v2 = _check("POST", V, u.req("POST", V, json=small), "create a second video", 202)["video"]
    r = u.req("POST", "%s/%s/cancel" % (V, v2["id"]))
    body = _check("POST", C, r, "cancel at once", (202, 409))  # it may have finished already
    if r.status == 202:
        eq(body["video"]["status"], "cancelled", "cancel: status in the answer")

    _check("DELETE", ONE, u.req("DELETE", "%s/%s" % (V, vid)), "delete video", 204)
    _check("DELETE", ONE, u.req("DELETE", "%s/%s" % (V, v2["id"])), "delete the second video", 204)
    _check("GET", ONE, u.req("GET", "%s/%s" % (V, vid)), "get a deleted video", 404, "not_found")
    _check("GET", E, u.req("GET", "%s/%s/events" % (V, vid)), "events of a deleted video", 404, "not_found")
    _check("GET", M, pvd.req("GET", v["urls"]["content"]), "presigned link of a deleted video", 404, "not_found")


def test_operations_and_web_match_doc(pvd):
    _check("GET", "/healthz", pvd.private("GET", "/healthz"), "healthz (private)", 200)
    _check("GET", "/healthz", pvd.req("GET", "/healthz"), "healthz (public)", 200)
    _check("GET", "/readyz", pvd.private("GET", "/readyz"), "readyz", 200)
    _check("HEAD", "/readyz", pvd.private("HEAD", "/readyz"), "HEAD readyz", 200)
    text = _check("GET", "/metrics", pvd.private("GET", "/metrics"), "metrics", 200)
    check("pv_http_requests_total" in text, "metrics: request counters", "pv_http_requests_total", text[:200])

    for path in ("/", "/photos", "/videos", "/login"):
        r = pvd.req("GET", path)
        _check("GET", path, r, "web page " + path, (200, 404))
    r = pvd.req("GET", "/")
    if r.status == 200:
        _check("GET", "/", pvd.req("GET", "/", headers={"If-None-Match": r.header("ETag")}), "web page revalidated", 304)
        names = re.findall(r'/assets/([A-Za-z0-9._-]+)', r.body.decode("utf-8", "replace"))
        check(names, "the page links assets", "/assets/...", r.body[:300])
        for n in sorted(set(names))[:4]:
            _url_fits("/assets/{name}", "/assets/" + n, "asset link of the page")
            _check("GET", "/assets/{name}", pvd.req("GET", "/assets/" + n, headers={"Accept-Encoding": "gzip"}),
                   "asset " + n, 200)
            _check("HEAD", "/assets/{name}", pvd.req("HEAD", "/assets/" + n), "HEAD asset " + n, 200)
    _check("GET", "/assets/{name}", pvd.req("GET", "/assets/nope.js"), "missing asset", 404, "not_found")
    _check("GET", "/assets/{name}", pvd.req("GET", "/assets/.hidden.js"), "hidden asset name", 404, "not_found")
