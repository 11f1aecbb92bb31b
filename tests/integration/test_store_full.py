"""test_store_full.py — a full store is an answer, not a crash: with a tiny
LMDB map that may not grow, uploads and sign-ups end in 507, what was
acknowledged before stays readable, the daemon keeps serving, restarts on
the same data, and works again once something is deleted."""

import time

from harness import Pvd, check, eq, unique_jpeg


def test_full_map_gives_507_and_keeps_data():
    cfg = {"map_size": "256K", "map_max": "0", "changelog_trim_seconds": "1"}
    with Pvd(name="store-full", config=cfg).start() as p:
        u = p.new_user("full")
        kept = {}
        full = None
        for i in range(400):
            data = unique_jpeg()
            r = u.upload(data, "image/jpeg", "f%d.jpg" % i)
            if r.status == 507:
                full = r
                break
            r.expect(201, "upload %d before the store fills" % i)
            kept[r.json()["photo"]["id"]] = data
        check(full is not None, "the store filled up", "507", "%d uploads accepted" % len(kept))
        eq(full.json()["error"]["code"], "insufficient_storage", "507 error code")
        check(len(kept) > 0, "some uploads fit", ">0", len(kept))
        # Other writes fail the same way; reads and health go on.
        r, _, _ = p.signup(expect=None)
        check(r.status in (201, 507), "signup on a full store", "201 or 507", r.status)
        p.private("GET", "/healthz").expect(200, "healthz while full")
        eq(sorted(u.list_all()), sorted(kept), "everything acknowledged is listed")
        for pid, data in kept.items():
            eq(u.req("GET", "/api/v1/photos/%s/content" % pid).expect(200, "content").body, data,
               "bytes of %s on a full store" % pid)
        # A restart on the full store works, and a delete makes room.
        p.stop()
        p.start()
        u.login()
        eq(sorted(u.list_all()), sorted(kept), "listed after restart")
        victims = list(kept)[:3]
        for pid in victims:
            u.req("DELETE", "/api/v1/photos/" + pid).expect(204, "delete on a full store")
        # The deletes' change entries go too once the log is trimmed (no
        # replication target reads them): within a couple of seconds.
        data = unique_jpeg()
        for _ in range(50):
            r = u.upload(data, "image/jpeg", "after.jpg")
            if r.status != 507:
                break
            time.sleep(0.2)
        r.expect(201, "upload after deleting")


def test_change_log_is_trimmed_without_targets():
    """No replication target: nobody reads the log, so it is trimmed to
    nothing while the head sequence keeps counting."""
    import re
    with Pvd(name="trim", config={"changelog_trim_seconds": "1"}).start() as p:
        u = p.new_user("trim")
        for _ in range(3):
            u.upload_ok(unique_jpeg())
        vals = {}
        for _ in range(50):
            text = p.private("GET", "/metrics").expect(200, "metrics").body.decode()
            vals = dict(re.findall(r"^(pv_changelog_[a-z]+) (\d+)$", text, re.M))
            if vals.get("pv_changelog_entries") == "0":
                break
            time.sleep(0.1)
        eq(vals.get("pv_changelog_entries"), "0", "change-log entries after trimming")
        check(int(vals.get("pv_changelog_head", 0)) >= 4, "head keeps counting (user + 3 photos)", ">=4", vals)
