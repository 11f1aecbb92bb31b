"""test_hardening.py — the defences a box on a public address needs, each
tried the way an attacker found it missing.

Sign-ups: limited per address (429 with Retry-After); argon2id work waits
in a bounded queue (503 with Retry-After, never an unbounded backlog) where
logins go before sign-ups; the `signup` key closes sign-up or asks for an
invite code from `pvctl user invite`.
"""

import threading
import time

from harness import Pvd, check, eq, rand_email, unique_jpeg
from test_pvctl import ctl_json


def _signup(p, email, password="long enough pw", invite=None):
    body = {"email": email, "password": password}
    if invite is not None:
        body["invite"] = invite
    return p.req("POST", "/api/v1/auth/signup", json=body)


def test_signup_limited_per_address(pvd):
    with Pvd({"signup_ip_burst": 3, "signup_ip_per_minute": 0.01}, name="signup-limit").start() as p:
        seen = [_signup(p, rand_email("lim")).status for _ in range(5)]
        eq(seen[:3], [201, 201, 201], "the burst of 3 sign-ups from one address")
        eq(seen[3:], [429, 429], "sign-ups past the burst")
        r = _signup(p, rand_email("lim"))
        r.expect_error(429, "rate_limited", what="limited sign-up")
        ra = r.header("Retry-After")
        check(ra is not None and ra.isdigit() and int(ra) >= 1, "Retry-After on a limited sign-up",
              "seconds", ra)
        # Nothing was created for the refused ones.
        users = ctl_json(p, "user", "list")["result"]["users"]
        eq(len(users), 3, "accounts made: only the admitted sign-ups")


def test_hash_queue_bounded_and_logins_first(pvd):
    cfg = {"hash_queue": 4, "workers": 2}
    with Pvd(cfg, name="hash-queue").start() as p:
        _, email, pw = p.signup()
        results, lock = [], threading.Lock()
        login_done = []

        def one_signup(i):
            r = _signup(p, rand_email("flood%d" % i))
            with lock:
                results.append((time.monotonic(), r.status, r.header("Retry-After"), r.json()))

        threads = [threading.Thread(target=one_signup, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        time.sleep(0.05)  # let the flood reach the queue; the check below does not rely on it
        r = p.login(email, pw, expect=None)
        login_done.append(time.monotonic())
        for t in threads:
            t.join(60)
        eq(r.status, 200, "a login during a sign-up flood")
        statuses = sorted(s for _, s, _, _ in results)
        check(all(s in (201, 503) for s in statuses), "sign-ups in a flood: created or 503",
              "201 or 503 only", statuses)
        refused = [(ra, j) for _, s, ra, j in results if s == 503]
        check(refused, "a bounded queue refuses part of a 24-wide flood (hash_queue 4)", ">= 1 503",
              statuses)
        for ra, j in refused:
            check(ra and ra.isdigit(), "503 carries Retry-After", "seconds", ra)
            eq(j["error"]["code"], "overloaded", "the 503's error code")
        created = sorted(t for t, s, _, _ in results if s == 201)
        # Logins go first: the login does not wait behind every queued sign-up.
        check(len(created) < 2 or login_done[0] < created[-1],
              "the login finished before the last queued sign-up", "earlier", (login_done, created[-3:]))


def test_signup_closed(pvd):
    with Pvd({"signup": "closed"}, name="signup-closed").start() as p:
        _signup(p, rand_email("closed")).expect_error(403, "signup_closed", what="sign-up when closed")
        doc = ctl_json(p, "user", "add", "owner@example.com", input=b"")
        check(doc["ok"], "pvctl user add works when sign-up is closed", True, doc)


def test_signup_by_invite(pvd):
    with Pvd({"signup": "invite"}, name="signup-invite").start() as p:
        _signup(p, rand_email("inv")).expect_error(403, "invite_required", what="sign-up without a code")
        _signup(p, rand_email("inv"), invite="not-a-code").expect_error(
            403, "invalid_invite", what="sign-up with a made-up code")
        code = ctl_json(p, "user", "invite")["result"]["code"]
        check(len(code) >= 22, "an invite code carries >= 128 bits", ">= 22 chars", code)
        email = rand_email("inv")
        _signup(p, email, invite=code).expect(201, "sign-up with a fresh code")
        p.login(email, "long enough pw").expect(200, "the invited user logs in")
        _signup(p, rand_email("inv"), invite=code).expect_error(
            403, "invalid_invite", what="a spent code, used again")
        # A code made for one email works for that email only.
        bound = ctl_json(p, "user", "invite", "Friend@Example.com", "--days", "2")["result"]
        eq(bound["email"], "friend@example.com", "the invite's email, normalised")
        _signup(p, rand_email("inv"), invite=bound["code"]).expect_error(
            403, "invalid_invite", what="another email with a bound code")
        _signup(p, "friend@example.com", invite=bound["code"]).expect(201, "the bound email signs up")
        # Two sign-ups racing for one code: exactly one account.
        code = ctl_json(p, "user", "invite")["result"]["code"]
        out = []
        ts = [threading.Thread(target=lambda i=i: out.append(_signup(p, rand_email("race%d" % i),
                                                                     invite=code).status))
              for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        eq(sorted(out), [201, 403, 403, 403], "4 sign-ups racing for one code")


def test_presigned_link_stops_when_owner_disabled(pvd):
    u = pvd.new_user("presign-dis")
    p = u.upload_ok(unique_jpeg())
    url = p["urls"]["content"]
    pvd.req("GET", url).expect(200, "a presigned link of an active user")
    ctl_json(pvd, "user", "disable", u.email)
    pvd.req("GET", url).expect_error(403, "forbidden", what="the same link once its owner is disabled")
    pvd.req("GET", p["urls"]["thumbnail"]).expect_error(403, "forbidden", what="the thumbnail link too")
    ctl_json(pvd, "user", "enable", u.email)
    pvd.req("GET", url).expect(200, "the link again once its owner is enabled")
