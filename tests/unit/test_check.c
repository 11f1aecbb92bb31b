/*
 * test_check.c — the store checker (src/model/check.h) finds what it
 * promises to find.
 *
 * Each test builds a small consistent store (a user, photos over blob
 * files, videos), checks that it is clean, then breaks exactly one thing
 * behind the model's back (a raw put, an overwritten or extra file) and
 * checks that the checker names it: a record's size against its file,
 * a queued video whose photo is gone, a reference count off by one, a
 * counted file missing or with other content (PV_CHECK_CONTENT), and
 * files under DATA/blobs that no count names and files in DATA/tmp
 * (counted, not problems: a crash leaves them until the next start).
 */
#include "base/crypto.h"
#include "base/pv.h"
#include "base/records.h"
#include "base/text.h"
#include "model/check.h"
#include "model/photos.h"
#include "model/users.h"
#include "model/videos.h"
#include "store/store.h"
#include "t.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_root[] = "/tmp/pv-test-check-XXXXXX";
static int g_seq; /* makes stores and contents unique */

typedef struct world {
    char dir[PATH_MAX];     /* the data directory */
    pv_store_t *s;
    pv_user_t user;
    pv_photo_t photo[2];
    pv_video_t video;       /* queued, over both photos */
    pv_video_t ready;       /* ready, with its MP4 and poster */
    uint8_t photo_ids[2][16];
} world_t;

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = pv_write_all(fd, data, len);
    close(fd);
    return rc;
}

/* A durable blob of `data`, as uploads and renders make them. */
static int make_blob(pv_store_t *s, const char *data, uint8_t sha[32])
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/blob-%d", pv_store_tmp_dir(s), ++g_seq);
    pv_sha256(data, strlen(data), sha);
    int rc = write_file(tmp, data, strlen(data));
    return rc < 0 ? rc : pv_blob_commit_file(s, tmp, sha, NULL);
}

static int apply_user(pv_txn_t *txn, void *arg) { return pv_user_insert(txn, arg); }

static int apply_photo(pv_txn_t *txn, void *arg)
{
    const pv_photo_t *p = arg;
    uint8_t skey[48];
    pv_key2(skey, p->user_id, p->sha256, 32);
    int rc = pv_photo_put(txn, p);
    if (rc == 0)
        rc = pv_txn_put(txn, PV_DB_PHOTO_SHA, skey, sizeof(skey), p->id, 16, true);
    if (rc == 0)
        rc = pv_blob_ref(txn, p->sha256);
    if (rc == 0)
        rc = pv_blob_ref(txn, p->thumb_sha256);
    return rc;
}

static int apply_video(pv_txn_t *txn, void *arg)
{
    const pv_video_t *v = arg;
    int rc = pv_video_save(txn, v);
    if (rc == 0 && (v->status == PV_VIDEO_QUEUED || v->status == PV_VIDEO_RUNNING))
        rc = pv_txn_put(txn, PV_DB_JOBS, v->id, 16, v->user_id, 16, true);
    if (rc == 0 && v->status == PV_VIDEO_READY && (rc = pv_blob_ref(txn, v->sha256)) == 0)
        rc = pv_blob_ref(txn, v->poster_sha256);
    return rc;
}

static void video_fill(world_t *w, pv_video_t *v, int status)
{
    memset(v, 0, sizeof(*v));
    v->v = 1;
    pv_id_new(v->id);
    memcpy(v->user_id, w->user.id, 16);
    v->status = status;
    snprintf(v->title, sizeof(v->title), "check");
    v->n_photos = 2;
    v->photo_ids = w->photo_ids; /* not the record's to free: never cleared */
    v->opts.seconds_per_photo = 1;
    snprintf(v->opts.transition, sizeof(v->opts.transition), "none");
    snprintf(v->opts.resolution, sizeof(v->opts.resolution), "480p");
    snprintf(v->opts.aspect, sizeof(v->opts.aspect), "16:9");
    v->opts.fps = 24;
    v->created_ms = pv_now_ms();
    v->started_ms = v->finished_ms = PV_TIME_NONE;
}

/* A fresh store with a user, two photos, a queued and a ready video. */
static int world_make(world_t *w)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->dir, sizeof(w->dir), "%s/store-%d", g_root, ++g_seq);
    pv_store_opts_t o = {.map_size = 8 << 20, .no_sync = true};
    int rc = pv_store_open(&w->s, w->dir, &o);
    if (rc < 0)
        return rc;
    pv_user_t *u = &w->user;
    u->v = 1;
    pv_id_new(u->id);
    snprintf(u->email, sizeof(u->email), "check%d@example.test", ++g_seq);
    snprintf(u->pw_hash, sizeof(u->pw_hash), "$argon2id$fake");
    u->created_ms = pv_now_ms();
    if ((rc = pv_store_write_sync(w->s, apply_user, u)) < 0)
        return rc;
    for (int i = 0; i < 2; i++) {
        pv_photo_t *p = &w->photo[i];
        char orig[64], thumb[64];
        snprintf(orig, sizeof(orig), "original %d", ++g_seq);
        snprintf(thumb, sizeof(thumb), "the same thumbnail"); /* shared: count 2 */
        p->v = 1;
        pv_id_new(p->id);
        memcpy(p->user_id, u->id, 16);
        snprintf(p->filename, sizeof(p->filename), "p%d.jpg", i);
        snprintf(p->content_type, sizeof(p->content_type), "image/jpeg");
        p->bytes = strlen(orig);
        p->width = p->height = 8;
        p->orientation = 1;
        p->taken_ms = PV_TIME_NONE;
        p->created_ms = pv_now_ms();
        if ((rc = make_blob(w->s, orig, p->sha256)) < 0 ||
            (rc = make_blob(w->s, thumb, p->thumb_sha256)) < 0 ||
            (rc = pv_store_write_sync(w->s, apply_photo, p)) < 0)
            return rc;
        memcpy(w->photo_ids[i], p->id, 16);
    }
    video_fill(w, &w->video, PV_VIDEO_QUEUED);
    if ((rc = pv_store_write_sync(w->s, apply_video, &w->video)) < 0)
        return rc;
    video_fill(w, &w->ready, PV_VIDEO_READY);
    const char *mp4 = "an mp4, of sorts";
    w->ready.bytes = strlen(mp4);
    w->ready.progress = 1;
    if ((rc = make_blob(w->s, mp4, w->ready.sha256)) < 0 ||
        (rc = make_blob(w->s, "a poster", w->ready.poster_sha256)) < 0)
        return rc;
    return pv_store_write_sync(w->s, apply_video, &w->ready);
}

static void world_free(world_t *w)
{
    pv_store_close(w->s);
    w->s = NULL;
}

/* Checks; returns the problems, prints them when `want` differs. */
static pv_check_t check(world_t *w, unsigned flags, int want)
{
    pv_check_t c;
    int rc = pv_check_store_flags(w->s, flags, &c);
    CHECK_EQ_INT(rc, 0);
    if (c.problems != want) {
        printf("#   expected %d problems, got %d:\n%s", want, c.problems, c.text.p ? c.text.p : "");
        t_cur_failed = 1;
    }
    return c;
}

/* The checker's text names `what`. */
static void expect_text(pv_check_t *c, const char *what)
{
    if (!c->text.p || !strstr(c->text.p, what)) {
        printf("#   expected a problem with \"%s\", got:\n%s", what, c->text.p ? c->text.p : "");
        t_cur_failed = 1;
    }
    pv_check_free(c);
}

/* Put a record as it is, past the model: what a bug would write. */
typedef struct raw_put {
    int db;
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
    bool del;
} raw_put_t;

static int apply_raw(pv_txn_t *txn, void *arg)
{
    raw_put_t *r = arg;
    return r->del ? pv_txn_del(txn, r->db, r->key, r->klen)
                  : pv_txn_put(txn, r->db, r->key, r->klen, r->val, r->vlen, false);
}

static int put_photo_raw(world_t *w, const pv_photo_t *p)
{
    char *buf;
    size_t len;
    uint8_t key[32];
    pv_key2(key, p->user_id, p->id, 16);
    int rc = pv_photo_encode(p, &buf, &len);
    if (rc < 0)
        return rc;
    raw_put_t r = {PV_DB_PHOTOS, key, sizeof(key), buf, len, false};
    rc = pv_store_write_sync(w->s, apply_raw, &r);
    free(buf);
    return rc;
}

TEST(clean_store)
{
    world_t w;
    CHECK_EQ_INT(world_make(&w), 0);
    pv_check_t c = check(&w, PV_CHECK_CONTENT, 0);
    CHECK_EQ_INT(c.blobs, 5); /* two originals, one shared thumbnail, an MP4, a poster */
    CHECK_EQ_INT(c.stray_files, 0);
    CHECK_EQ_INT(c.tmp_files, 0);
    pv_check_free(&c);
    world_free(&w);
}

TEST(photo_bytes_against_its_file)
{
    world_t w;
    CHECK_EQ_INT(world_make(&w), 0);
    pv_photo_t p = w.photo[0];
    p.bytes += 1;
    CHECK_EQ_INT(put_photo_raw(&w, &p), 0);
    pv_check_t c = check(&w, 0, 1);
    expect_text(&c, "its file has");
    world_free(&w);
}

static int apply_video_bytes(pv_txn_t *txn, void *arg)
{
    pv_video_t *v = arg;
    return pv_video_save(txn, v);
}

TEST(ready_video_bytes_against_its_file)
{
    world_t w;
    CHECK_EQ_INT(world_make(&w), 0);
    w.ready.bytes = 1 << 20;
    CHECK_EQ_INT(pv_store_write_sync(w.s, apply_video_bytes, &w.ready), 0);
    pv_check_t c = check(&w, 0, 1);
    expect_text(&c, "videos");
    world_free(&w);
}

/* What a delete that forgot pv_video_uses_photo would leave. */
static int apply_delete_photo(pv_txn_t *txn, void *arg)
{
    const pv_photo_t *p = arg;
    uint8_t key[32], skey[48];
    pv_key2(key, p->user_id, p->id, 16);
    pv_key2(skey, p->user_id, p->sha256, 32);
    int rc = pv_txn_del(txn, PV_DB_PHOTOS, key, sizeof(key));
    if (rc == 0)
        rc = pv_txn_del(txn, PV_DB_PHOTO_SHA, skey, sizeof(skey));
    if (rc == 0)
        rc = pv_blob_unref(txn, p->sha256);
    if (rc == 0)
        rc = pv_blob_unref(txn, p->thumb_sha256);
    return rc;
}

TEST(queued_video_whose_photo_is_gone)
{
    world_t w;
    CHECK_EQ_INT(world_make(&w), 0);
    CHECK_EQ_INT(pv_store_write_sync(w.s, apply_delete_photo, &w.photo[1]), 0);
    pv_check_t c = check(&w, 0, 1);
    expect_text(&c, "queued but its photo 2 of 2 does not exist");
    world_free(&w);
}

TEST(ready_video_may_outlive_its_photos)
{
    world_t w;
    CHECK_EQ_INT(world_make(&w), 0);
    /* The queued one goes first (a delete is refused while it waits). */
    uint8_t vkey[32];
    pv_key2(vkey, w.video.user_id, w.video.id, 16);
    raw_put_t dv = {PV_DB_VIDEOS, vkey, 32, NULL, 0, true};
    raw_put_t dj = {PV_DB_JOBS, w.video.id, 16, NULL, 0, true};
    CHECK_EQ_INT(pv_store_write_sync(w.s, apply_raw, &dv), 0);
    CHECK_EQ_INT(pv_store_write_sync(w.s, apply_raw, &dj), 0);
    CHECK_EQ_INT(pv_store_write_sync(w.s, apply_delete_photo, &w.photo[0]), 0);
    pv_check_t c = check(&w, PV_CHECK_CONTENT, 0);
    CHECK_EQ_INT(c.stray_files, 0); /* the original's file went with its count */
    pv_check_free(&c);
    world_free(&w);
}

TEST(reference_count_off_by_one)
{
    world_t w;
    CHECK_EQ_INT(world_make(&w), 0);
    uint8_t n[8];
    pv_be64_put(n, 3); /* the thumbnail: two photos name it */
    raw_put_t r = {PV_DB_BLOBS, w.photo[0].thumb_sha256, 32, n, 8, false};
    CHECK_EQ_INT(pv_store_write_sync(w.s, apply_raw, &r), 0);
    pv_check_t c = check(&w, 0, 1);
    expect_text(&c, "counted 3, referenced 2");
    world_free(&w);
}

TEST(counted_file_missing_or_changed)
{
    world_t w;
    CHECK_EQ_INT(world_make(&w), 0);
    char path[PATH_MAX];
    pv_blob_path(w.s, w.ready.poster_sha256, path, sizeof(path));
    CHECK_EQ_INT(unlink(path), 0);
    pv_check_t c = check(&w, 0, 1);
    expect_text(&c, "counted but its file is missing");
    /* Same size, other bytes: only reading the file tells. */
    pv_blob_path(w.s, w.photo[0].sha256, path, sizeof(path));
    char orig[64];
    struct stat st;
    CHECK_EQ_INT(stat(path, &st), 0);
    memset(orig, 'x', (size_t)st.st_size);
    CHECK_EQ_INT(write_file(path, orig, (size_t)st.st_size), 0);
    c = check(&w, 0, 1); /* still only the missing poster */
    pv_check_free(&c);
    c = check(&w, PV_CHECK_CONTENT, 2);
    expect_text(&c, "its file's content is another");
    world_free(&w);
}

TEST(stray_and_temp_files_are_counted)
{
    world_t w;
    CHECK_EQ_INT(world_make(&w), 0);
    /* A blob left by a crash between its rename and its record's commit. */
    uint8_t sha[32];
    char tmp[PATH_MAX], path[PATH_MAX], hex[65];
    snprintf(tmp, sizeof(tmp), "%s/left", pv_store_tmp_dir(w.s));
    pv_sha256("left behind", 11, sha);
    CHECK_EQ_INT(write_file(tmp, "left behind", 11), 0);
    CHECK_EQ_INT(pv_blob_commit_file(w.s, tmp, sha, NULL), 0);
    /* Names pvd never makes: not a blob's, and a counted blob's name in
     * a shard that is not its own. */
    pv_hex(w.photo[0].sha256, 32, hex);
    const char *shard = hex[0] == 'f' ? "0f" : "ff";
    snprintf(path, sizeof(path), "%s/%s", pv_store_blobs_dir(w.s), shard);
    CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
    snprintf(path, sizeof(path), "%s/%s/not-a-blob", pv_store_blobs_dir(w.s), shard);
    CHECK_EQ_INT(write_file(path, "x", 1), 0);
    snprintf(path, sizeof(path), "%s/%s/%s", pv_store_blobs_dir(w.s), shard, hex);
    CHECK_EQ_INT(write_file(path, "x", 1), 0);
    /* An upload cut short. */
    snprintf(tmp, sizeof(tmp), "%s/part-123456", pv_store_tmp_dir(w.s));
    CHECK_EQ_INT(write_file(tmp, "half", 4), 0);
    pv_check_t c = check(&w, PV_CHECK_CONTENT, 0);
    CHECK_EQ_INT(c.stray_files, 3);
    CHECK_EQ_INT(c.tmp_files, 1);
    pv_check_free(&c);
    /* The next start collects the blob and the temp file; what it did not
     * make it leaves, and the checker still counts. */
    pv_store_close(w.s);
    pv_store_opts_t o = {.map_size = 8 << 20, .no_sync = true};
    CHECK_EQ_INT(pv_store_open(&w.s, w.dir, &o), 0);
    c = check(&w, PV_CHECK_CONTENT, 0);
    CHECK_EQ_INT(c.stray_files, 2);
    CHECK_EQ_INT(c.tmp_files, 0);
    pv_check_free(&c);
    world_free(&w);
}

int main(void)
{
    if (!mkdtemp(g_root))
        return 1;
    pv_log_set_level(PV_LOG_ERROR);
    RUN(clean_store);
    RUN(photo_bytes_against_its_file);
    RUN(ready_video_bytes_against_its_file);
    RUN(queued_video_whose_photo_is_gone);
    RUN(ready_video_may_outlive_its_photos);
    RUN(reference_count_off_by_one);
    RUN(counted_file_missing_or_changed);
    RUN(stray_and_temp_files_are_counted);
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_root);
    if (system(cmd) != 0)
        printf("# cannot remove %s\n", g_root);
    return t_done("check");
}
