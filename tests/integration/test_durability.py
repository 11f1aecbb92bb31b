"""test_durability.py — what pvd acknowledged survives kill -9: photos
(records and bytes), signups, deletions and refresh-token rotation; and a
SIGTERM'd pvd restarts clean on the same data (DESIGN.md, "durable before
acknowledged")."""

import threading

from harness import Pvd, check, eq, unique_jpeg, unique_png


def test_uploads_survive_kill9():
    with Pvd(name="durability-photos").start() as p:
        u = p.new_user("dur")
        sent = {}
        for i in range(10):
            data = unique_jpeg() if i % 2 else unique_png()
            ctype = "image/jpeg" if i % 2 else "image/png"
            photo = u.upload_ok(data, ctype, "d%d" % i)
            sent[photo["id"]] = (data, photo)
        # And some concurrently, acknowledged just before the kill.
        results = []

        def go():
            d = unique_jpeg()
            r = u.upload(d, "image/jpeg", "late.jpg")
            results.append((r, d))

        threads = [threading.Thread(target=go) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for r, d in results:
            r.expect(201, "concurrent upload before kill")
            sent[r.json()["photo"]["id"]] = (d, r.json()["photo"])
        p.kill9()
        p.start()
        u.login()
        listed = u.list_all(limit=4)
        eq(sorted(listed), sorted(sent), "photo ids listed after kill -9 and restart")
        eq(len(set(listed)), len(listed), "no duplicate ids in the list after restart")
        for pid, (data, photo) in sent.items():
            g = u.req("GET", "/api/v1/photos/" + pid).expect(200, "GET photo after restart").json()["photo"]
            for k in ("sha256", "bytes", "filename", "content_type", "width", "height", "created_at"):
                eq(g[k], photo[k], "photo %s field %s after restart" % (pid, k))
            body = u.req("GET", "/api/v1/photos/%s/content" % pid).expect(200, "content after restart").body
            check(body == data, "content bytes of %s after restart" % pid, "%d identical bytes" % len(data),
                  "%d bytes, sha differs" % len(body))
            u.req("GET", "/api/v1/photos/%s/thumbnail" % pid).expect(200, "thumbnail after restart")
            p.req("GET", g["urls"]["content"]).expect(200, "presigned URL after restart")
        usage = u.req("GET", "/api/v1/me").expect(200, "/me").json()["usage"]
        eq(usage["photos"], len(sent), "usage.photos after restart")
        eq(usage["photo_bytes"], sum(len(d) for d, _ in sent.values()), "usage.photo_bytes after restart")
        # Duplicate detection still knows the old photos.
        some_id, (d0, _) = next(iter(sent.items()))
        r = u.upload(d0, "image/png" if d0[:4] == b"\x89PNG" else "image/jpeg", "again")
        eq(r.status, 200, "re-upload of a pre-crash photo is a duplicate")


def test_signup_and_tokens_survive_kill9():
    with Pvd(name="durability-auth").start() as p:
        r, email, password = p.signup()
        uid = r.json()["user"]["id"]
        u2 = p.new_user("tok")
        old_refresh = u2.refresh
        j = p.req("POST", "/api/v1/auth/refresh", json={"refresh_token": old_refresh}).expect(200, "refresh").json()
        new_refresh = j["refresh_token"]
        u3 = p.new_user("out")
        u3.req("POST", "/api/v1/auth/logout", json={"refresh_token": u3.refresh}).expect(204, "logout")
        pre_access = u2.access
        p.kill9()
        p.start()
        r = p.login(email, password, expect=None)
        r.expect(200, "login of a user whose signup was acknowledged before kill -9")
        me = p.req("GET", "/api/v1/me", token=r.json()["access_token"]).expect(200, "/me").json()
        eq(me["id"], uid, "user id after restart")
        p.signup(email, "another password", expect=None)[0].expect_error(409, "email_taken", "signup again after restart")
        # Access tokens issued before the crash still verify (keys are durable).
        p.req("GET", "/api/v1/me", token=pre_access).expect(200, "/me with a pre-crash access token")
        # Rotation and logout were durable too.
        p.req("POST", "/api/v1/auth/refresh", json={"refresh_token": u3.refresh}).expect_error(
            401, what="refresh with a token logged out before the crash")
        p.req("POST", "/api/v1/auth/refresh", json={"refresh_token": new_refresh}).expect(
            200, "refresh with the newest token of a chain after restart")


def test_delete_survives_kill9():
    with Pvd(name="durability-delete").start() as p:
        u = p.new_user("del")
        keep = u.upload_ok(unique_jpeg(), "image/jpeg", "keep.jpg")
        gone = u.upload_ok(unique_jpeg(), "image/jpeg", "gone.jpg")
        u.req("DELETE", "/api/v1/photos/" + gone["id"]).expect(204, "delete")
        p.kill9()
        p.start()
        u.login()
        eq(u.list_all(), [keep["id"]], "list after a delete and kill -9")
        u.req("GET", "/api/v1/photos/" + gone["id"]).expect_error(404, what="deleted photo after restart")


def test_sigterm_then_restart():
    with Pvd(name="durability-sigterm").start() as p:
        u = p.new_user("term")
        data = unique_jpeg()
        photo = u.upload_ok(data, "image/jpeg", "t.jpg")
        rc = p.stop()
        eq(rc, 0, "exit status after SIGTERM")
        eq([l for l in p.sanitizer_lines()][:5], [], "sanitizer reports before restart")
        p.start()
        u.login()
        eq(u.list_all(), [photo["id"]], "list after SIGTERM and restart")
        eq(u.req("GET", "/api/v1/photos/%s/content" % photo["id"]).expect(200, "content").body, data,
           "content after SIGTERM and restart")
