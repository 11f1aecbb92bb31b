"""test_auth.py — signup, login, refresh rotation, logout, /me and bearer
checks against a running pvd (API.md, "Auth")."""

import re
import threading
import time

from harness import (Pvd, check, eq, jwt_make, jwt_parts, rand_email, unique_jpeg)

PVD_CONFIG = {"max_json_bytes": 16384}

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
SIGNUP = "/api/v1/auth/signup"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"


def _shared(pvd):
    """One user reused by tests that only need some valid account."""
    if not hasattr(pvd, "_auth_user"):
        pvd._auth_user = pvd.new_user("shared")
    return pvd._auth_user


def test_signup_shape(pvd):
    email = rand_email("Shape")
    r, _, _ = pvd.signup(email, "correct horse")
    eq(r.status, 201, "signup status")
    check(r.header("Content-Type", "").startswith("application/json"), "signup Content-Type",
          "application/json", r.header("Content-Type"))
    j = r.json()
    check(isinstance(j.get("user"), dict), "signup body has a user object", '{"user":{...}}', j)
    u = j["user"]
    check(isinstance(u.get("id"), str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", u["id"]),
          "user.id is an opaque URL-safe string <= 64 chars", "id", u.get("id"))
    eq(u.get("email"), email.lower(), "user.email (normalised to lower case)")
    check(isinstance(u.get("created_at"), str) and RFC3339.match(u["created_at"]),
          "user.created_at RFC 3339", "RFC 3339 time", u.get("created_at"))
    check("password" not in u and "pw_hash" not in u and "password_hash" not in u,
          "user object does not leak the password or its hash", "no password fields", sorted(u))


def test_signup_duplicate_email(pvd):
    email = rand_email("dup")
    pvd.signup(email, "password-one")
    r, _, _ = pvd.signup(email, "password-two", expect=None)
    r.expect_error(409, "email_taken", "signup with the same email")
    variant = "  " + email.upper() + " "
    r, _, _ = pvd.signup(variant, "password-three", expect=None)
    r.expect_error(409, "email_taken", "signup with the same email in upper case and padded with spaces")


def test_signup_bad_input(pvd):
    cases = [
        ({"email": rand_email(), "password": "short"}, "password of 5 chars"),
        ({"email": rand_email(), "password": "1234567"}, "password of 7 chars"),
        ({"email": "not-an-email", "password": "long enough pw"}, "email without @"),
        ({"email": "a@b", "password": "long enough pw"}, "email without a dot in the domain"),
        ({"email": "@example.test", "password": "long enough pw"}, "email with empty local part"),
        ({"email": "a b@example.test", "password": "long enough pw"}, "email with a space"),
        ({"email": "", "password": "long enough pw"}, "empty email"),
        ({"password": "long enough pw"}, "missing email"),
        ({"email": rand_email()}, "missing password"),
        ({}, "empty object"),
        ({"email": 42, "password": "long enough pw"}, "email as a number"),
        ({"email": rand_email(), "password": 12345678}, "password as a number"),
        ({"email": [rand_email()], "password": "long enough pw"}, "email as an array"),
        ({"email": None, "password": "long enough pw"}, "email null"),
        ({"email": "a" * 250 + "@example.test", "password": "long enough pw"}, "email over 254 chars"),
        ({"email": "a@b@example.test", "password": "long enough pw"}, "email with two @"),
        ({"email": "x\u0000y@example.test", "password": "long enough pw"}, "email with a NUL"),
        ({"email": "x\ny@example.test", "password": "long enough pw"}, "email with a newline inside"),
        ({"email": rand_email(), "password": "long enough pw", "extra": {"nested": [1, 2]}}, None),
    ]
    for body, what in cases:
        r = pvd.req("POST", SIGNUP, json=body)
        if what is None:
            # Unknown extra members are ignored (the API may grow).
            r.expect(201, "signup with an unknown extra member")
            continue
        r.expect_error(400, what="signup with " + what)


def test_json_body_malformed(pvd):
    raw_cases = [
        (b"", "empty body"),
        (b"{", "truncated JSON"),
        (b"{\"email\": \"x@example.test\", \"password\": }", "invalid JSON"),
        (b"[1,2,3]", "an array, not an object"),
        (b"\"just a string\"", "a JSON string"),
        (b"null", "null"),
        (b"\xff\xfe\x00garbage", "binary junk"),
        (b"{\"email\":\"a\xff@example.test\",\"password\":\"long enough pw\"}", "invalid UTF-8"),
    ]
    for path in (SIGNUP, LOGIN, REFRESH):
        for body, what in raw_cases:
            r = pvd.req("POST", path, body, {"Content-Type": "application/json"})
            r.expect_error(400, what="%s with %s" % (path, what))


def test_json_body_too_large(pvd):
    # max_json_bytes is 16384 in this module's config.
    big = b'{"email":"x@example.test","password":"' + b"a" * 100000 + b'"}'
    for path in (SIGNUP, LOGIN):
        r = pvd.req("POST", path, big, {"Content-Type": "application/json"})
        r.expect_error(413, what="%s with a 100 KB body (limit 16 KB)" % path)
    # The server is still fine afterwards.
    pvd.private("GET", "/healthz").expect(200, "healthz after 413s")


def test_login_shape(pvd):
    _, email, password = pvd.signup()
    r = pvd.login(email, password)
    check(r.header("Content-Type", "").startswith("application/json"), "login Content-Type",
          "application/json", r.header("Content-Type"))
    j = r.json()
    for k in ("access_token", "token_type", "expires_in", "refresh_token"):
        check(k in j, "login answer has " + k, k, sorted(j))
    eq(j["token_type"], "Bearer", "token_type")
    check(isinstance(j["expires_in"], int) and 0 < j["expires_in"] <= 900,
          "expires_in (default ttl 900 s)", "an int in 1..900", j["expires_in"])
    check(isinstance(j["access_token"], str) and j["access_token"].count(".") == 2,
          "access_token is a JWT (three dot-separated parts)", "a.b.c", j["access_token"])
    check(isinstance(j["refresh_token"], str) and len(j["refresh_token"]) >= 20,
          "refresh_token is a long opaque string", ">= 20 chars", j["refresh_token"])
    h, p, _ = jwt_parts(j["access_token"])
    eq(h.get("alg"), "HS256", "JWT alg")
    check(isinstance(p.get("exp"), int) and abs(p["exp"] - (time.time() + j["expires_in"])) < 60,
          "JWT exp is now + expires_in", int(time.time()) + j["expires_in"], p.get("exp"))
    # The email is matched case-insensitively and trimmed.
    pvd.login("  " + email.upper() + " ", password).expect(200, "login with the email upper-cased and padded")


def test_login_wrong_password_and_unknown_email_look_the_same(pvd):
    u = _shared(pvd)
    wrong = pvd.login(u.email, "wrong password!", expect=None)
    wrong.expect_error(401, "invalid_credentials", "login with a wrong password")
    unknown = pvd.login(rand_email("nobody"), "whatever password", expect=None)
    unknown.expect_error(401, "invalid_credentials", "login with an unknown email")
    eq(unknown.json(), wrong.json(), "unknown-email body equals wrong-password body")
    eq(unknown.body, wrong.body, "unknown-email bytes equal wrong-password bytes")


def test_login_bad_input(pvd):
    for body, what in (({"email": rand_email()}, "missing password"),
                       ({"password": "long enough pw"}, "missing email"),
                       ({"email": 1, "password": "long enough pw"}, "email as a number")):
        r = pvd.req("POST", LOGIN, json=body)
        check(r.status in (400, 401), "login with %s: status" % what, "400 (or 401)", r.status)
        r.expect_error(r.status, what="login with " + what)


def test_me_and_usage(pvd):
    u = pvd.new_user("me")
    r = u.req("GET", "/api/v1/me").expect(200, "GET /me")
    j = r.json()
    eq(j.get("id"), u.id, "me.id equals the signup user id")
    eq(j.get("email"), u.email.lower(), "me.email")
    check(isinstance(j.get("created_at"), str) and RFC3339.match(j["created_at"]),
          "me.created_at RFC 3339", "RFC 3339", j.get("created_at"))
    eq(j.get("usage"), {"photos": 0, "photo_bytes": 0, "videos": 0, "video_bytes": 0, "jobs": 0}, "usage of a new user")
    data = unique_jpeg()
    u.upload_ok(data, filename="a.jpg")
    j = u.req("GET", "/api/v1/me").expect(200, "GET /me after upload").json()
    eq(j["usage"].get("photos"), 1, "usage.photos after one upload")
    eq(j["usage"].get("photo_bytes"), len(data), "usage.photo_bytes after one upload")


def test_refresh_rotates(pvd):
    u = pvd.new_user("rot")
    r1 = u.refresh
    r = pvd.req("POST", REFRESH, json={"refresh_token": r1}).expect(200, "refresh")
    j = r.json()
    for k in ("access_token", "token_type", "expires_in", "refresh_token"):
        check(k in j, "refresh answer has " + k, k, sorted(j))
    eq(j["token_type"], "Bearer", "token_type after refresh")
    r2, a2 = j["refresh_token"], j["access_token"]
    check(r2 != r1, "refresh gives a new refresh token", "a different token", r2)
    pvd.req("GET", "/api/v1/me", token=a2).expect(200, "/me with the refreshed access token")
    # The spent one is refused, and doing so revokes the chain (r2 too).
    pvd.req("POST", REFRESH, json={"refresh_token": r1}).expect_error(401, what="refresh with the spent token")
    pvd.req("POST", REFRESH, json={"refresh_token": r2}).expect_error(
        401, what="refresh with the newest token of a chain whose spent token was replayed")
    # A fresh login starts a new, working chain.
    u.login()
    pvd.req("POST", REFRESH, json={"refresh_token": u.refresh}).expect(200, "refresh after a new login")


def test_refresh_chain_three_deep(pvd):
    u = pvd.new_user("chain")
    tokens = [u.refresh]
    for i in range(3):
        j = pvd.req("POST", REFRESH, json={"refresh_token": tokens[-1]}).expect(200, "refresh #%d" % (i + 1)).json()
        tokens.append(j["refresh_token"])
    eq(len(set(tokens)), 4, "distinct refresh tokens along the chain")
    # Replaying the first one kills the last one.
    pvd.req("POST", REFRESH, json={"refresh_token": tokens[0]}).expect_error(401, what="replay of the first token")
    pvd.req("POST", REFRESH, json={"refresh_token": tokens[-1]}).expect_error(401, what="last token after replay")


def test_refresh_garbage(pvd):
    for tok, what in (("", "empty"), ("x", "one char"), ("A" * 43, "well-formed but unknown"),
                      ("!!!!" * 11, "not base64url"), ("A" * 5000, "5000 chars")):
        r = pvd.req("POST", REFRESH, json={"refresh_token": tok})
        check(r.status in (400, 401), "refresh with a %s token: status" % what, "401 (or 400)", r.status)
        r.expect_error(r.status, what="refresh with a %s token" % what)
    r = pvd.req("POST", REFRESH, json={"refresh_token": 12})
    check(r.status in (400, 401), "refresh with a number: status", "400 (or 401)", r.status)
    r.expect_error(r.status, what="refresh with a number")


def test_logout(pvd):
    u = pvd.new_user("logout")
    r = u.req("POST", LOGOUT, json={"refresh_token": u.refresh})
    eq(r.status, 204, "logout status (body %r)" % r.body[:200])
    eq(r.body, b"", "logout 204 has no body")
    pvd.req("POST", REFRESH, json={"refresh_token": u.refresh}).expect_error(401, what="refresh after logout")


def test_bearer_missing_and_malformed(pvd):
    u = _shared(pvd)
    good = u.access
    cases = [
        ({}, "no Authorization header"),
        ({"Authorization": ""}, "empty Authorization"),
        ({"Authorization": "Bearer"}, "'Bearer' alone"),
        ({"Authorization": "Bearer "}, "'Bearer ' and nothing"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Basic scheme"),
        ({"Authorization": good}, "token without the Bearer scheme"),
        ({"Authorization": "Bearer not-a-jwt"}, "not a JWT"),
        ({"Authorization": "Bearer a.b.c"}, "three junk parts"),
        ({"Authorization": "Bearer " + good + "x"}, "token with an extra char"),
        ({"Authorization": "Bearer " + good[:-4]}, "token with a cut signature"),
        ({"Authorization": "Bearer " + "A" * 6000}, "6000-char token"),
    ]
    for hdrs, what in cases:
        for path in ("/api/v1/me", "/api/v1/photos"):
            r = pvd.req("GET", path, headers=hdrs)
            r.expect_error(401, what="GET %s with %s" % (path, what))


def test_bearer_forged(pvd):
    u = _shared(pvd)
    h, p, s = jwt_parts(u.access)
    other = pvd.new_user("victim")
    _, op, _ = jwt_parts(other.access)
    forged = [
        (jwt_make({"alg": "none", "typ": "JWT"}, p), "alg none"),
        (jwt_make({"alg": "none", "typ": "JWT"}, dict(p, sub=op["sub"])), "alg none for another user"),
        (jwt_make({"alg": "HS256", "typ": "JWT"}, p, b"not the server key"), "HS256 with a wrong key"),
        (jwt_make({"alg": "HS256", "typ": "JWT"}, dict(p, exp=p["exp"] + 3600), b"k" * 32),
         "longer expiry with a wrong key"),
        (jwt_make({"alg": "HS512", "typ": "JWT"}, p, b"k" * 64), "HS512 with a wrong key"),
    ]
    # Payload swapped to another user's, original signature kept.
    hp = u.access.split(".")
    op_b64 = other.access.split(".")[1]
    forged.append((hp[0] + "." + op_b64 + "." + hp[2], "another user's payload with this signature"))
    # One signature character flipped.
    flipped = s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]
    forged.append((hp[0] + "." + hp[1] + "." + flipped, "a flipped signature char"))
    for tok, what in forged:
        r = pvd.req("GET", "/api/v1/me", token=tok)
        r.expect_error(401, what="/me with a forged token (%s)" % what)
    # The real token still works.
    eq(pvd.req("GET", "/api/v1/me", token=u.access).expect(200, "/me with the real token").json()["id"],
       u.id, "/me id with the real token")


def test_bearer_expired(pvd):
    with Pvd({"access_token_ttl": 1, "refresh_token_ttl": 5}, name="ttl1").start() as p:
        t0 = time.monotonic()
        old = p.new_user("old")       # its refresh token dies 5 s after this
        u = p.new_user("exp")
        eq(p.login(u.email, u.password).json().get("expires_in"), 1, "expires_in with access_token_ttl=1")
        time.sleep(2.5)
        p.req("GET", "/api/v1/me", token=u.access).expect_error(401, what="/me with an access token 2.5 s past its 1 s ttl")
        # Refresh still works and gives a usable (fresh) token.
        j = p.req("POST", REFRESH, json={"refresh_token": u.refresh}).expect(200, "refresh after expiry").json()
        p.req("GET", "/api/v1/me", token=j["access_token"]).expect(200, "/me with the refreshed token")
        # A refresh token past refresh_token_ttl is refused.
        time.sleep(max(0.0, 6.5 - (time.monotonic() - t0)))
        p.req("POST", REFRESH, json={"refresh_token": old.refresh}).expect_error(
            401, what="refresh with a token past its 5 s refresh_token_ttl")


def test_auth_routes_need_bearer(pvd):
    for method, path, body in (("GET", "/api/v1/me", None), ("GET", "/api/v1/photos", None),
                               ("POST", "/api/v1/photos", b"\xff\xd8\xff"),
                               ("GET", "/api/v1/photos/00000000000000000000000000", None),
                               ("DELETE", "/api/v1/photos/00000000000000000000000000", None),
                               ("POST", LOGOUT, b'{"refresh_token":"x"}')):
        r = pvd.req(method, path, body, {"Content-Type": "image/jpeg" if "photos" in path else "application/json"})
        r.expect_error(401, what="%s %s without a token" % (method, path))


def test_login_rate_limit_account(pvd):
    cfg = {"login_account_burst": 3, "login_account_per_minute": 1,
           "login_ip_burst": 1000, "login_ip_per_minute": 1000}
    with Pvd(cfg, name="ratelimit-account").start() as p:
        _, email, password = p.signup()
        seen = []
        for i in range(8):
            r = p.login(email, "wrong password %d" % i, expect=None)
            seen.append(r.status)
            if r.status == 429:
                break
        check(429 in seen, "429 within 8 failed logins to one account (burst 3)", "a 429", seen)
        eq(seen[:3], [401, 401, 401], "the first 3 attempts (the burst) are answered, not limited")
        r.expect_error(429, what="rate-limited login")
        ra = r.header("Retry-After")
        check(ra is not None and ra.strip().isdigit() and 1 <= int(ra) <= 120,
              "Retry-After on 429 is a delay in seconds", "1..120", ra)
        # The right password is also held back while limited (no brute-force oracle).
        r = p.login(email, password, expect=None)
        eq(r.status, 429, "login with the right password while the account is limited")
        # Another account from the same address is not affected by this one's limit.
        _, e2, pw2 = p.signup()
        p.login(e2, pw2).expect(200, "login to another account")


def test_login_rate_limit_ip(pvd):
    cfg = {"login_account_burst": 1000, "login_account_per_minute": 1000,
           "login_ip_burst": 4, "login_ip_per_minute": 1}
    with Pvd(cfg, name="ratelimit-ip").start() as p:
        seen = []
        for i in range(10):
            r = p.login(rand_email("ip%d" % i), "some password", expect=None)
            seen.append(r.status)
            if r.status == 429:
                break
        check(429 in seen, "429 within 10 logins from one address (ip burst 4)", "a 429", seen)
        r.expect_error(429, what="ip-limited login")
        ra = r.header("Retry-After")
        check(ra is not None and ra.strip().isdigit() and int(ra) >= 1,
              "Retry-After on 429", "seconds >= 1", ra)


def _parallel(n, fn):
    """Runs fn(i) in n threads at once; returns results (or exceptions)."""
    out = [None] * n
    gate = threading.Barrier(n)

    def go(i):
        try:
            gate.wait(10)
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - returned to the caller
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_concurrent_signup_same_email(pvd):
    email = rand_email("race")
    res = _parallel(6, lambda i: pvd.req("POST", SIGNUP, json={"email": email if i % 2 else email.upper(),
                                                                "password": "password %d" % i}))
    statuses = sorted(getattr(r, "status", repr(r)) for r in res)
    eq(statuses, [201] + [409] * 5, "statuses of 6 simultaneous signups with one email")
    winner = [i for i, r in enumerate(res) if r.status == 201][0]
    pvd.login(email, "password %d" % winner).expect(200, "login with the winning signup's password")


def test_concurrent_refresh_same_token(pvd):
    u = pvd.new_user("rrace")
    res = _parallel(4, lambda i: pvd.req("POST", REFRESH, json={"refresh_token": u.refresh}))
    statuses = [getattr(r, "status", repr(r)) for r in res]
    check(all(s in (200, 401) for s in statuses), "statuses of 4 simultaneous refreshes of one token",
          "200/401", statuses)
    check(statuses.count(200) <= 1, "one refresh token is spent once, even in a race", "at most one 200", statuses)


def test_login_rate_limit_per_address_behind_trusted_proxy():
    """X-Forwarded-For counts only from a trusted proxy: clients behind the
    proxy are limited one by one, and a client that is not the proxy cannot
    dodge its own limit by sending the header."""
    from harness import Pvd as _Pvd
    cfg = {"login_ip_burst": "2", "login_ip_per_minute": "0.001",
           "login_account_burst": "1000", "trusted_proxies": "127.0.0.1"}
    with _Pvd(name="auth-proxy", config=cfg).start() as p:
        def attempt(xff):
            return p.req("POST", "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "x" * 8},
                         headers={"X-Forwarded-For": xff}).status
        eq([attempt("203.0.113.5") for _ in range(3)], [401, 401, 429], "client A behind the proxy")
        eq(attempt("203.0.113.6"), 401, "client B behind the proxy has its own budget")
        # A spoofed left-most entry does not help: the proxy appended the real one.
        eq(attempt("198.51.100.1, 203.0.113.5"), 429, "spoofed entry ignored")
    cfg["trusted_proxies"] = "10.9.9.9"  # the peer (127.0.0.1) is not trusted
    with _Pvd(name="auth-noproxy", config=cfg).start() as p:
        def attempt2(xff):
            return p.req("POST", "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "x" * 8},
                         headers={"X-Forwarded-For": xff}).status
        eq([attempt2("203.0.113.%d" % i) for i in range(3)], [401, 401, 429],
           "an untrusted peer's X-Forwarded-For is ignored")
