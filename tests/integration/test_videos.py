"""test_videos.py — the video API end to end against a real pvd: a render
checked with ffprobe and by looking at frames, live progress over SSE,
validation, isolation between users, cancel and delete, photos in use,
fair scheduling, a photo that stopped decoding, and kill -9 mid-render.

Videos are small (480p, short) so that the suite stays fast under ASan."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from harness import Pvd, Skip, check, eq, ffmpeg_image, unique_jpeg

PVD_CONFIG = {"render_workers": "1"}

COLORS = {"red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255)}


def solid(color, w=320, h=240):
    return ffmpeg_image("jpg", w, h, src="color=c=%s" % color)


def upload_colors(u, colors=("red", "green", "blue")):
    return [u.upload_ok(solid(c), "image/jpeg", c + ".jpg")["id"] for c in colors]


def create(u, ids, **opts):
    body = {"photo_ids": ids, "resolution": "480p", "seconds_per_photo": 1,
            "transition_seconds": 0.25}
    body.update(opts)
    return u.req("POST", "/api/v1/videos", json=body)


def wait_status(u, vid, want, timeout=90):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = u.req("GET", "/api/v1/videos/" + vid).expect(200, "GET video").json()["video"]
        if last["status"] in want:
            return last
        time.sleep(0.2)
    raise AssertionError("video %s never reached %s; last: %s" % (vid, want, last))


class SseStream:
    """An open event stream of one video, read one event at a time.

    The first event comes once the videos actor has registered the
    subscription (it is the video's current status), so a test that waits
    for it before acting knows the stream is subscribed."""

    def __init__(self, p, token, vid, timeout=90):
        self.deadline = time.time() + timeout
        raw = socket.create_connection(("127.0.0.1", p.https_port), timeout=timeout)
        self.sock = p.tls_context().wrap_socket(raw, server_hostname="localhost")
        self.sock.sendall(("GET /api/v1/videos/%s/events HTTP/1.1\r\nHost: localhost\r\n"
                           "Authorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n"
                           % (vid, token)).encode())
        self.raw = b""       # received, not yet de-chunked
        self.text = ""       # de-chunked, not yet parsed into events
        self.ended = False   # the last chunk came, or the connection closed
        while b"\r\n\r\n" not in self.raw and self._recv():
            pass
        head, _, self.raw = self.raw.partition(b"\r\n\r\n")
        check(b" 200 " in head.split(b"\r\n")[0], "events answer status", "200", head[:80])
        check(b"text/event-stream" in head, "events content type", "text/event-stream", head)

    def _recv(self):
        if time.time() >= self.deadline:
            return False
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, ConnectionError):
            chunk = b""
        self.raw += chunk
        return bool(chunk)

    def _dechunk(self):
        while not self.ended:
            line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return
            size = int(line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            self.text += rest[:size].decode(errors="replace")
            self.raw = rest[size + 2:]
            self.ended = size == 0

    def next(self):
        """The next (event, data), or None once the stream has ended."""
        while True:
            self._dechunk()
            block, sep, rest = self.text.partition("\n\n")
            if sep:
                self.text = rest
                ev = re.search(r"^event: (\w+)$", block, re.M)
                data = re.search(r"^data: (.*)$", block, re.M)
                if ev and data:
                    return ev.group(1), json.loads(data.group(1))
                continue
            if self.ended or not self._recv():
                self.ended = True
                self.sock.close()
                return None

    def rest(self):
        """Every event until the stream ends."""
        events = []
        while (e := self.next()) is not None:
            events.append(e)
        return events


def sse_events(p, token, vid, timeout=90):
    """Reads the event stream until it ends; returns [(event, data)]."""
    return SseStream(p, token, vid, timeout).rest()


def stream_in_thread(p, token, vid, timeout=30):
    """Reads a stream on a thread: returns (thread, got, first). got["ev"]
    gets the events; first is set once the first one came, i.e. once the
    stream is subscribed."""
    import threading
    got, first = {"ev": []}, threading.Event()

    def run():
        s = SseStream(p, token, vid, timeout)
        e = s.next()
        if e is not None:
            got["ev"].append(e)
        first.set()
        got["ev"] += s.rest()

    t = threading.Thread(target=run)
    t.start()
    return t, got, first


def ffprobe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", path],
                         capture_output=True, timeout=30, check=True).stdout
    return json.loads(out)


def atoms(path):
    """Top-level MP4 atom names in order."""
    names = []
    with open(path, "rb") as f:
        while True:
            hdr = f.read(8)
            if len(hdr) < 8:
                return names
            size = int.from_bytes(hdr[:4], "big")
            names.append(hdr[4:8].decode(errors="replace"))
            if size == 1:
                size = int.from_bytes(f.read(8), "big") - 8
            if size < 8:
                return names
            f.seek(size - 8, 1)


def pixel(path, t, x, y):
    out = subprocess.run(["ffmpeg", "-v", "error", "-ss", "%.3f" % t, "-i", path, "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, timeout=30, check=True).stdout
    info = ffprobe(path)["streams"][0]
    w = info["width"]
    i = (y * w + x) * 3
    return tuple(out[i:i + 3])


def near(c1, c2, tol=40):
    return all(abs(a - b) <= tol for a, b in zip(c1, c2))


def test_render_shape_frames_and_playback(pvd, tmp):
    u = pvd.new_user("vid")
    ids = upload_colors(u)
    r = create(u, ids, title="")
    r.expect(202, "create video")
    v = r.json()["video"]
    eq(v["status"], "queued", "new video status")
    eq(v["photo_ids"], ids, "photo ids in order")
    for k in ("id", "progress", "error", "title", "options", "created_at", "started_at", "finished_at",
              "duration_s", "width", "height", "bytes", "urls"):
        check(k in v, "video has " + k, k, sorted(v))
    eq(v["duration_s"], 2.5, "duration = 3 x 1 - 2 x 0.25")
    eq((v["width"], v["height"]), (854, 480), "480p 16:9 size")
    eq(v["urls"], None, "no urls before ready")
    v = wait_status(u, v["id"], ("ready", "failed"))
    eq(v["status"], "ready", "status after render (error: %s)" % v["error"])
    eq(v["progress"], 1.0, "progress when ready")
    check(v["bytes"] > 0 and v["finished_at"], "bytes and finished_at when ready", ">0", v)
    path = os.path.join(tmp, "v.mp4")
    body = pvd.req("GET", v["urls"]["content"]).expect(200, "presigned video").body
    with open(path, "wb") as f:
        f.write(body)
    eq(len(body), v["bytes"], "downloaded bytes = video.bytes")
    info = ffprobe(path)
    st = info["streams"][0]
    eq(st["codec_name"], "h264", "codec")
    eq(st["pix_fmt"], "yuv420p", "pixel format")
    eq((st["width"], st["height"]), (854, 480), "frame size")
    dur = float(info["format"]["duration"])
    check(abs(dur - 2.5) <= 1 / 30 + 1e-6, "duration within a frame", 2.5, dur)
    a = atoms(path)
    check("moov" in a and "mdat" in a and a.index("moov") < a.index("mdat"), "moov before mdat", "moov first", a)
    for t, color in ((0.4, "red"), (1.25, "green"), (2.2, "blue")):
        got = pixel(path, t, 427, 240)
        check(near(got, COLORS[color]), "frame at %.2fs shows %s" % (t, color), COLORS[color], got)
    # Seekable: Range gives 206 with the right bytes; HEAD works; poster is a JPEG.
    rr = pvd.req("GET", v["urls"]["content"], headers={"Range": "bytes=100-199"}).expect(206, "range")
    eq(rr.body, body[100:200], "range bytes")
    pvd.req("HEAD", v["urls"]["content"]).expect(200, "HEAD video")
    poster = pvd.req("GET", v["urls"]["poster"]).expect(200, "poster").body
    eq(poster[:3], b"\xff\xd8\xff", "poster is a JPEG")
    # It is listed, newest first, and counted in /me.
    items = u.req("GET", "/api/v1/videos").expect(200, "list").json()["items"]
    eq(items[0]["id"], v["id"], "listed video")
    usage = u.req("GET", "/api/v1/me").expect(200, "me").json()["usage"]
    eq((usage["videos"], usage["video_bytes"]), (1, v["bytes"]), "usage counts the video")


def test_events_stream_progress_until_ready(pvd):
    u = pvd.new_user("sse")
    ids = upload_colors(u)
    v = create(u, ids, seconds_per_photo=2).expect(202, "create").json()["video"]
    events = sse_events(pvd, u.access, v["id"])
    check(events, "some events", ">0", events)
    eq(events[0][0], "status", "first event is the current status")
    eq(events[-1][0], "status", "last event is a status")
    eq(events[-1][1]["status"], "ready", "the stream ends when ready")
    progress = [d["progress"] for e, d in events if e == "progress"]
    check(len(progress) >= 20, "progress events (>= every 5 %)", ">=20", len(progress))
    check(progress == sorted(progress), "progress never goes back", "sorted", progress)
    # After it is ready, a new stream says so at once and ends.
    again = sse_events(pvd, u.access, v["id"], timeout=10)
    eq([e for e, _ in again], ["status"], "a finished video's stream")


def test_validation_names_the_field(pvd):
    u = pvd.new_user("val")
    ids = upload_colors(u, ("red",))
    cases = [
        ({"photo_ids": []}, 400, "photo_ids"),
        ({"photo_ids": ids * 201}, 400, "photo_ids"),
        ({"photo_ids": "x"}, 400, "photo_ids"),
        ({}, 400, "photo_ids"),
        ({"photo_ids": ids, "transition": "spin"}, 400, "transition"),
        ({"photo_ids": ids, "fps": 29}, 400, "fps"),
        ({"photo_ids": ids, "seconds_per_photo": "3"}, 400, "seconds_per_photo"),
        ({"photo_ids": ids, "seconds_per_photo": -1}, 400, "seconds_per_photo"),
        ({"photo_ids": ids, "resolution": "4k"}, 400, "resolution"),
        ({"photo_ids": ids, "aspect": "2:1"}, 400, "aspect"),
        ({"photo_ids": ids, "ken_burns": "yes"}, 400, "ken_burns"),
        ({"photo_ids": ids, "title": "x" * 201}, 400, "title"),
        ({"photo_ids": ids, "colour": "red"}, 400, "colour"),
        ({"photo_ids": ["01m8hm00p12mnbxx3286swf03q"]}, 404, "photo_ids[0]"),
        ({"photo_ids": ["not-an-id"]}, 404, "photo_ids[0]"),
    ]
    for body, status, field in cases:
        r = u.req("POST", "/api/v1/videos", json=body)
        r.expect_error(status, None, "create %s" % json.dumps(body)[:80])
        check(field in r.json()["error"]["message"], "error names %s" % field, field, r.json())
    r = u.req("POST", "/api/v1/videos", body=b"{not json", headers={"Content-Type": "application/json"})
    r.expect_error(400, None, "bad JSON")
    eq(u.req("GET", "/api/v1/videos").expect(200, "list").json()["items"], [], "nothing was queued")


def test_users_are_isolated(pvd):
    a, b = pvd.new_user("va"), pvd.new_user("vb")
    ids = upload_colors(a, ("red",))
    v = create(a, ids).expect(202, "create").json()["video"]
    # b cannot use a's photos, nor see or touch a's video.
    create(b, ids).expect_error(404, "photo_not_found", "b uses a's photo")
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("GET", "/events")):
        b.req(method, "/api/v1/videos/%s%s" % (v["id"], path)).expect_error(404, None, "b %s %s" % (method, path))
    eq(b.req("GET", "/api/v1/videos").json()["items"], [], "b's list")
    wait_status(a, v["id"], ("ready",))


def long_video(u, ids):
    """A job that runs for a while even on a fast machine."""
    return create(u, ids, resolution="720p", seconds_per_photo=20, fps=60,
                  transition_seconds=0.5).expect(202, "create long video").json()["video"]


def test_photo_in_use_cancel_and_delete(pvd):
    u = pvd.new_user("cancel")
    ids = upload_colors(u, ("red", "green"))
    v = long_video(u, ids)
    u.req("DELETE", "/api/v1/photos/" + ids[0]).expect_error(409, "photo_in_use", "delete a photo in use")
    wait_status(u, v["id"], ("running",), timeout=60)
    t0 = time.time()
    r = u.req("POST", "/api/v1/videos/%s/cancel" % v["id"]).expect(202, "cancel")
    eq(r.json()["video"]["status"], "cancelled", "cancel answer")
    v2 = wait_status(u, v["id"], ("cancelled", "ready", "failed"), timeout=10)
    eq(v2["status"], "cancelled", "status after cancel")
    check(time.time() - t0 < 3, "cancel took effect quickly", "< 3 s", time.time() - t0)
    u.req("POST", "/api/v1/videos/%s/cancel" % v["id"]).expect_error(409, "not_cancellable", "cancel again")
    # No longer in use: the photo can go now.
    u.req("DELETE", "/api/v1/photos/" + ids[0]).expect(204, "delete photo after cancel")
    # Deleting a running video stops it and it is gone.
    ids2 = upload_colors(u, ("blue",))
    v3 = long_video(u, ids2)
    wait_status(u, v3["id"], ("running",), timeout=60)
    u.req("DELETE", "/api/v1/videos/" + v3["id"]).expect(204, "delete running video")
    u.req("GET", "/api/v1/videos/" + v3["id"]).expect_error(404, None, "deleted video")
    # The render thread is free again: a short video gets done.
    ids3 = upload_colors(u, ("red",))
    v4 = create(u, ids3).expect(202, "create after delete").json()["video"]
    eq(wait_status(u, v4["id"], ("ready", "failed"))["status"], "ready", "next job runs")


def test_get_and_list_show_live_progress(pvd):
    """While a video renders, GET and the list show its live progress (sent
    to every HTTP loop each 1 %), not only the store's (written each 10 %,
    so nothing between 0 and 0.1 comes from there)."""
    u = pvd.new_user("live")
    ids = upload_colors(u, ("red", "green"))
    v = long_video(u, ids)
    seen = {"GET": [], "list": []}

    def live(ps):
        return any(0 < p < 0.1 for p in ps)

    deadline = time.time() + 90
    while time.time() < deadline and not (live(seen["GET"]) and live(seen["list"])):
        cur = u.req("GET", "/api/v1/videos/" + v["id"]).expect(200, "GET video").json()["video"]
        seen["GET"].append(cur["progress"])
        items = u.req("GET", "/api/v1/videos").expect(200, "list").json()["items"]
        seen["list"] += [x["progress"] for x in items if x["id"] == v["id"]]
        if cur["status"] not in ("queued", "running"):
            break
        time.sleep(0.02)
    for what, ps in seen.items():
        check(live(ps), "%s shows progress between the stored 10 %% steps" % what, "0 < p < 0.1", ps[-30:])
        running = [p for p in ps if p > 0]
        check(running == sorted(running), "%s progress never goes back" % what, "sorted", ps[-30:])
    u.req("POST", "/api/v1/videos/%s/cancel" % v["id"]).expect(202, "cancel")
    eq(wait_status(u, v["id"], ("cancelled", "ready", "failed"), timeout=10)["status"], "cancelled",
       "after cancel")


def test_fair_between_users(pvd):
    """One render thread: B's single job starts before A's later ones."""
    a, b = pvd.new_user("fa"), pvd.new_user("fb")
    ida, idb = upload_colors(a, ("red",)), upload_colors(b, ("green",))
    va = [create(a, ida, seconds_per_photo=3).expect(202, "a job").json()["video"]["id"] for _ in range(4)]
    vb = create(b, idb, seconds_per_photo=3).expect(202, "b job").json()["video"]["id"]
    done_b = wait_status(b, vb, ("ready",), timeout=120)
    later = [wait_status(a, x, ("ready",), timeout=120) for x in va[2:]]
    for x in later:
        check(x["started_at"] >= done_b["started_at"], "B's one job started before A's third and fourth",
              "<= " + x["started_at"], done_b["started_at"])


def test_photo_that_stops_decoding_fails_cleanly(pvd):
    u = pvd.new_user("corrupt")
    # Bytes no other test uploads: blobs are shared by content.
    photo = u.upload_ok(unique_jpeg(), "image/jpeg", "r.jpg")
    sha = photo["sha256"]
    blob = os.path.join(pvd.data_dir, "blobs", sha[:2], sha)
    check(os.path.exists(blob), "blob file exists", blob, None)
    with open(blob, "r+b") as f:  # the disk went bad under it
        f.seek(0)
        f.write(b"\0" * 64)
    v = create(u, [photo["id"]]).expect(202, "create").json()["video"]
    v = wait_status(u, v["id"], ("failed", "ready"))
    eq(v["status"], "failed", "status with an undecodable photo")
    check(v["error"] and len(v["error"]) > 5, "a readable error", "message", v["error"])
    eq(v["urls"], None, "no urls when failed")


def test_kill9_mid_render_then_ready(tmp):
    with Pvd(name="videos-kill9", config={"render_workers": "1"}).start() as p:
        u = p.new_user("k9")
        ids = upload_colors(u, ("red", "blue"))
        v = create(u, ids, seconds_per_photo=6, resolution="720p").expect(202, "create").json()["video"]
        queued = create(u, ids).expect(202, "second job, queued behind").json()["video"]
        deadline = time.time() + 60
        while time.time() < deadline:
            cur = u.req("GET", "/api/v1/videos/" + v["id"]).json()["video"]
            if cur["status"] == "running" and cur["progress"] > 0.05:
                break
            time.sleep(0.1)
        p.kill9()
        tmpdir = os.path.join(p.data_dir, "tmp")
        p.start()
        u.login()
        for vid in (v["id"], queued["id"]):
            done = wait_status(u, vid, ("ready", "failed"), timeout=120)
            eq(done["status"], "ready", "video %s after kill -9 and restart" % vid)
            path = os.path.join(tmp, vid + ".mp4")
            with open(path, "wb") as f:
                f.write(p.req("GET", done["urls"]["content"]).expect(200, "video").body)
            check(abs(float(ffprobe(path)["format"]["duration"]) - done["duration_s"]) < 0.05,
                  "full duration after re-render", done["duration_s"], ffprobe(path)["format"]["duration"])
        left = [n for n in os.listdir(tmpdir)] if os.path.isdir(tmpdir) else []
        eq([n for n in left if n.startswith("render-")], [], "no half-written render left in tmp")


def test_stream_ends_when_video_deleted(pvd):
    u = pvd.new_user("gone")
    ids = upload_colors(u, ("red", "green"))
    v = long_video(u, ids)
    t, got, first = stream_in_thread(pvd, u.access, v["id"])
    check(first.wait(30) and got["ev"], "the stream's first event before the delete", "an event", got["ev"])
    eq(got["ev"][0][0], "status", "the stream's first event")
    u.req("DELETE", "/api/v1/videos/" + v["id"]).expect(204, "delete while streaming")
    t.join(30)
    check(not t.is_alive(), "the stream ended after the delete", "ended", "still open")
    eq(got["ev"][-1][0], "gone", "last event after a delete")


def test_sigterm_with_open_stream_stops_cleanly():
    with Pvd(name="videos-sigterm", config={"render_workers": "1"}).start() as p:
        u = p.new_user("term")
        ids = upload_colors(u, ("red", "green"))
        v = long_video(u, ids)
        t, got, first = stream_in_thread(p, u.access, v["id"])
        check(first.wait(30) and got["ev"], "the stream's first event before SIGTERM", "an event", got["ev"])
        eq(got["ev"][0][0], "status", "the stream's first event")
        # The render is under way, so that SIGTERM stops it mid-render.
        wait_status(u, v["id"], ("running",), timeout=60)
        t0 = time.time()
        rc = p.stop()  # SIGTERM
        eq(rc, 0, "exit status after SIGTERM with a stream open")
        eq(p.sanitizer_lines(), [], "no sanitizer report")
        check(time.time() - t0 < 10, "stopped promptly with a stream open", "< 10 s", time.time() - t0)
        t.join(10)
        eq(got["ev"][-1][0], "shutdown", "the stream's last event")
        # The running render was left resumable: after a restart it completes.
        p.start()
        u.login()
        eq(wait_status(u, v["id"], ("ready", "failed"), timeout=180)["status"], "ready", "resumed after restart")


def test_metrics_count_jobs_and_frames(pvd):
    u = pvd.new_user("metrics")
    ids = upload_colors(u, ("red",))
    v = create(u, ids).expect(202, "create").json()["video"]
    wait_status(u, v["id"], ("ready",))
    text = pvd.private("GET", "/metrics").expect(200, "metrics").body.decode()
    vals = dict(re.findall(r"^(pv_[a-z_]+) (\d+)$", text, re.M))
    check(int(vals.get("pv_video_jobs_ready_total", 0)) >= 1, "jobs ready counted", ">=1", vals)
    check(int(vals.get("pv_render_frames_total", 0)) >= 30, "frames counted", ">=30", vals)
    check(int(vals.get("pv_photo_uploads_total", 0)) >= 1, "uploads counted", ">=1", vals)
    check("pv_video_jobs_queued" in vals and "pv_video_jobs_running" in vals, "job gauges", "present", vals)
    check('pv_http_requests_total{route="video_create",status="202"}' in text, "requests by route", "present", text[:300])
