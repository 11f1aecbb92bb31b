/*
 * test_failwalk.c — SQLite's malloc/I-O walk over pv's operations.
 *
 * Each operation runs under PV_FAILPOINTS="*:N" for N = 1, 2, ...: the
 * Nth pv_fail call of the process fails, whatever its site. Every step
 * must end in success or a clean error (never a crash, a leak under ASan,
 * a hang), and then the world must be as the operation promises:
 *  - after an error, the store is unchanged (same digest over every
 *    database) and consistent (src/model/check.h: records, indexes, blob
 *    reference counts and files, change log) — no change-log entry for the
 *    failed write, no count for a blob whose record did not commit;
 *  - after a success, the effect is there, and the store is consistent.
 * The walk ends at the first N whose run fires nothing: past the last
 * site call the operation makes, so each site on its path failed once.
 *
 * Operations here are the ones the lower layers offer directly (store,
 * blobs, change log, backups, the runtime, keys, TLS, listening); the
 * HTTP and pvctl operations of a running pvd are walked by
 * tests/integration/test_failwalk.py, image decoding and rendering by
 * test_image and test_render.
 */
#include "base/crypto.h"
#include "base/pv.h"
#include "base/ratelimit.h"
#include "base/records.h"
#include "http/http.h"
#include "model/check.h"
#include "model/photos.h"
#include "model/users.h"
#include "model/videos.h"
#include "runtime/actor.h"
#include "store/backup.h"
#include "store/store.h"
#include "t.h"

#include <dirent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WALK_MAX 400 /* steps: far above any operation's site calls */

static char g_root[] = "/tmp/pv-test-failwalk-XXXXXX";

/* ---------------------------------------------------------------- *
 * The walker
 * ---------------------------------------------------------------- */

typedef struct walk_step {
    int n;             /* the call that failed */
    int rc;            /* the operation's result */
    long fired;        /* failures injected (0: the walk is over) */
    const char *site;  /* the failed site and its place, for messages */
} walk_step_t;

typedef struct walk_op {
    const char *name;
    int (*prepare)(void *ctx);                      /* seam off: set up a step */
    int (*run)(void *ctx);                          /* seam on: 0 or -errno */
    void (*verify)(void *ctx, const walk_step_t *s); /* seam off: check the world */
    void (*cleanup)(void *ctx);                     /* seam off */
} walk_op_t;

static void step_fail(const walk_step_t *s, const char *name, const char *what)
{
    printf("#   %s, step %d (%s): %s (rc %d)\n", name, s->n, s->site, what, s->rc);
    t_cur_failed = 1;
}

/* Walk N from 1 until a step fires nothing; returns the number of steps. */
static int walk(const walk_op_t *op, void *ctx)
{
    pv_sb_t fired = {0}; /* the sites failed, in order, for the log */
    int n;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (n = 1; n <= WALK_MAX; n++) {
        if (op->prepare && op->prepare(ctx) < 0) {
            printf("#   %s, step %d: cannot prepare\n", op->name, n);
            t_cur_failed = 1;
            break;
        }
        char spec[32];
        snprintf(spec, sizeof(spec), "*:%d", n);
        pv_fail_reset(spec);
        int rc = op->run(ctx);
        pv_fail_count_t c = pv_fail_count();
        pv_fail_reset("");
        walk_step_t s = {.n = n, .rc = rc, .fired = c.fired, .site = c.last[0] ? c.last : "none"};
        if (rc > 0)
            step_fail(&s, op->name, "a positive result");
        if (!c.fired && rc != 0)
            step_fail(&s, op->name, "nothing failed, yet the operation did");
        op->verify(ctx, &s);
        if (c.fired)
            pv_sb_printf(&fired, " %s", c.last);
        if (op->cleanup)
            op->cleanup(ctx);
        if (!c.fired)
            break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("# walk %s: %d steps, %.0f ms\n#  fired:%s\n", op->name, n, ms, fired.p ? fired.p : "");
    pv_sb_free(&fired);
    if (n > WALK_MAX) {
        printf("#   %s: still failing after %d steps\n", op->name, WALK_MAX);
        t_cur_failed = 1;
    }
    CHECK(n > 1); /* the operation reached at least one site */
    return n;
}

/* ---------------------------------------------------------------- *
 * Helpers: files, stores, records
 * ---------------------------------------------------------------- */

static void path_in(char *out, size_t len, const char *rel)
{
    snprintf(out, len, "%s/%s", g_root, rel);
}

static int sh(const char *fmt, const char *arg)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), fmt, arg, arg, arg);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = pv_write_all(fd, data, len);
    close(fd);
    return rc;
}

/* Files in dir whose names start with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static pv_store_t *open_store(const char *dir, uint64_t map_size, uint64_t map_max)
{
    pv_store_opts_t o = {.map_size = map_size, .map_max = map_max, .no_sync = true};
    pv_store_t *s = NULL;
    return pv_store_open(&s, dir, &o) == 0 ? s : NULL;
}

/* The store's digest, checking its invariants on the way. */
static void digest_of(pv_store_t *s, char out[65], const char *what)
{
    pv_check_t c;
    int rc = pv_check_store(s, &c);
    if (rc < 0 || c.problems) {
        printf("#   %s: the store is not consistent (rc %d):\n%s", what, rc,
               c.text.p ? c.text.p : "");
        t_cur_failed = 1;
    }
    memcpy(out, c.digest, 65);
    pv_check_free(&c);
}

/* After a step: consistent, and (unless it succeeded) the same as before. */
static void expect_store(pv_store_t *s, const walk_step_t *st, const char *name,
                         const char before[65])
{
    char now[65], what[160];
    snprintf(what, sizeof(what), "%s, step %d (%s)", name, st->n, st->site);
    digest_of(s, now, what);
    if (st->rc < 0 && strcmp(now, before) != 0) {
        printf("#   %s: failed (rc %d) but the store changed\n", what, st->rc);
        t_cur_failed = 1;
    }
}

static int g_seq; /* makes contents and emails unique */

/* A blob made durable from `data`; its hash in sha. */
static int make_blob(pv_store_t *s, const char *data, uint8_t sha[32])
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s/blob-%d", pv_store_tmp_dir(s), ++g_seq);
    pv_sha256(data, strlen(data), sha);
    int rc = write_file(tmp, data, strlen(data));
    return rc < 0 ? rc : pv_blob_commit_file(s, tmp, sha, NULL);
}

static void new_user(pv_user_t *u)
{
    memset(u, 0, sizeof(*u));
    u->v = 1;
    pv_id_new(u->id);
    snprintf(u->email, sizeof(u->email), "walk%d@example.test", ++g_seq);
    snprintf(u->pw_hash, sizeof(u->pw_hash), "$argon2id$fake");
    u->created_ms = pv_now_ms();
}

static int apply_user(pv_txn_t *txn, void *arg) { return pv_user_insert(txn, arg); }

/* A photo record of u over two blobs (made durable first, as uploads do). */
typedef struct photo_arg {
    pv_photo_t p;
} photo_arg_t;

static int apply_photo(pv_txn_t *txn, void *arg)
{
    pv_photo_t *p = &((photo_arg_t *)arg)->p;
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

static void photo_fill(pv_photo_t *p, const pv_user_t *u)
{
    memset(p, 0, sizeof(*p));
    p->v = 1;
    pv_id_new(p->id);
    memcpy(p->user_id, u->id, 16);
    snprintf(p->filename, sizeof(p->filename), "walk.jpg");
    snprintf(p->content_type, sizeof(p->content_type), "image/jpeg");
    p->bytes = 10;
    p->width = p->height = 8;
    p->orientation = 1;
    p->taken_ms = PV_TIME_NONE;
    p->created_ms = pv_now_ms();
}

/* A committed photo of u with blobs of its own (count 1 each). */
static int add_photo(pv_store_t *s, const pv_user_t *u, photo_arg_t *pa)
{
    char a[64], b[64];
    photo_fill(&pa->p, u);
    snprintf(a, sizeof(a), "original %d", ++g_seq);
    snprintf(b, sizeof(b), "thumbnail %d", g_seq);
    pa->p.bytes = strlen(a); /* the checker holds it to the file's size */
    int rc = make_blob(s, a, pa->p.sha256);
    if (rc == 0)
        rc = make_blob(s, b, pa->p.thumb_sha256);
    return rc < 0 ? rc : pv_store_write_sync(s, apply_photo, pa);
}

static int del_photo_records(pv_txn_t *txn, const pv_photo_t *p)
{
    uint8_t key[32], skey[48];
    pv_key2(key, p->user_id, p->id, 16);
    pv_key2(skey, p->user_id, p->sha256, 32);
    pv_photo_t cur;
    int rc = pv_photo_get(txn, p->user_id, p->id, &cur);
    if (rc == 0)
        rc = pv_txn_del(txn, PV_DB_PHOTOS, key, sizeof(key));
    if (rc == 0)
        rc = pv_txn_del(txn, PV_DB_PHOTO_SHA, skey, sizeof(skey));
    if (rc == 0)
        rc = pv_blob_unref(txn, cur.sha256);
    if (rc == 0)
        rc = pv_blob_unref(txn, cur.thumb_sha256);
    return rc;
}

static int apply_del_photo(pv_txn_t *txn, void *arg)
{
    return del_photo_records(txn, &((photo_arg_t *)arg)->p);
}

static bool photo_present(pv_store_t *s, const pv_photo_t *p)
{
    pv_txn_t txn;
    pv_photo_t got;
    if (pv_txn_begin(s, &txn, false) < 0)
        return false;
    bool ok = pv_photo_get(&txn, p->user_id, p->id, &got) == 0;
    pv_txn_abort(&txn);
    return ok;
}

static bool blob_file(pv_store_t *s, const uint8_t sha[32])
{
    char path[4096];
    pv_blob_path(s, sha, path, sizeof(path));
    return exists(path);
}

/* ---------------------------------------------------------------- *
 * The shared store: a user with photos, a ready video, tokens
 * ---------------------------------------------------------------- */

static pv_store_t *g_s;
static char g_dir[600];
static pv_user_t g_user;

typedef struct store_walk {
    pv_store_t *s;
    char before[65];
    pv_user_t user;
    photo_arg_t photo;
    pv_video_t video;
    uint8_t sha[32], poster[32];
    uint64_t bytes; /* the video's MP4 */
    char tmp[2][600];
} store_walk_t;

static int seed_store(void)
{
    path_in(g_dir, sizeof(g_dir), "store");
    g_s = open_store(g_dir, 8 << 20, 0);
    if (!g_s)
        return -EIO;
    new_user(&g_user);
    int rc = pv_store_write_sync(g_s, apply_user, &g_user);
    photo_arg_t pa;
    for (int i = 0; rc == 0 && i < 3; i++)
        rc = add_photo(g_s, &g_user, &pa);
    return rc;
}

/* ---- put a user: a logged write (record, index, change entry) ---- */

static int put_user_prepare(void *ctx)
{
    store_walk_t *w = ctx;
    new_user(&w->user);
    digest_of(w->s, w->before, "before a user put");
    return 0;
}

static int put_user_run(void *ctx)
{
    store_walk_t *w = ctx;
    return pv_store_write_sync(w->s, apply_user, &w->user);
}

static void put_user_verify(void *ctx, const walk_step_t *st)
{
    store_walk_t *w = ctx;
    expect_store(w->s, st, "put a user", w->before);
    pv_txn_t txn;
    pv_val_t v;
    CHECK_EQ_INT(pv_txn_begin(w->s, &txn, false), 0);
    bool there = pv_txn_get(&txn, PV_DB_EMAILS, w->user.email, strlen(w->user.email), &v) == 0;
    pv_txn_abort(&txn);
    if (there != (st->rc == 0))
        step_fail(st, "put a user", there ? "failed, yet the user is there" : "no user after success");
}

TEST(walk_store_put_user)
{
    store_walk_t w = {.s = g_s};
    walk_op_t op = {"store: put a user", put_user_prepare, put_user_run, put_user_verify, NULL};
    walk(&op, &w);
}

/* ---- ingest a photo: blob files made durable, then the records ---- */

static int ingest_prepare(void *ctx)
{
    store_walk_t *w = ctx;
    photo_fill(&w->photo.p, &g_user);
    for (int i = 0; i < 2; i++) {
        char data[64];
        snprintf(data, sizeof(data), "%s %d", i ? "thumbnail" : "original", ++g_seq);
        snprintf(w->tmp[i], sizeof(w->tmp[i]), "%s/ingest-%d", pv_store_tmp_dir(w->s), i);
        pv_sha256(data, strlen(data), i ? w->photo.p.thumb_sha256 : w->photo.p.sha256);
        if (!i) /* the checker holds it to the file's size */
            w->photo.p.bytes = strlen(data);
        if (write_file(w->tmp[i], data, strlen(data)) < 0)
            return -EIO;
    }
    digest_of(w->s, w->before, "before an ingest");
    return 0;
}

static int ingest_run(void *ctx)
{
    store_walk_t *w = ctx;
    int rc = pv_blob_commit_file(w->s, w->tmp[1], w->photo.p.thumb_sha256, NULL);
    if (rc == 0)
        rc = pv_blob_commit_file(w->s, w->tmp[0], w->photo.p.sha256, NULL);
    return rc < 0 ? rc : pv_store_write_sync(w->s, apply_photo, &w->photo);
}

static void ingest_verify(void *ctx, const walk_step_t *st)
{
    store_walk_t *w = ctx;
    expect_store(w->s, st, "ingest a photo", w->before);
    bool there = photo_present(w->s, &w->photo.p);
    if (there != (st->rc == 0))
        step_fail(st, "ingest a photo", there ? "failed, yet the photo is there" : "no photo after success");
    if (st->rc == 0 && (!blob_file(w->s, w->photo.p.sha256) || !blob_file(w->s, w->photo.p.thumb_sha256)))
        step_fail(st, "ingest a photo", "a blob file is missing");
}

static void ingest_cleanup(void *ctx)
{
    store_walk_t *w = ctx;
    unlink(w->tmp[0]); /* the caller's temp files, as photos.c removes them */
    unlink(w->tmp[1]);
}

TEST(walk_store_ingest_photo)
{
    store_walk_t w = {.s = g_s};
    walk_op_t op = {"store: ingest a photo", ingest_prepare, ingest_run, ingest_verify,
                    ingest_cleanup};
    walk(&op, &w);
}

/* ---- delete a photo: logged deletes, blob counts to zero, unlinks ---- */

static int del_prepare(void *ctx)
{
    store_walk_t *w = ctx;
    int rc = add_photo(w->s, &g_user, &w->photo);
    digest_of(w->s, w->before, "before a delete");
    return rc;
}

static int del_run(void *ctx)
{
    store_walk_t *w = ctx;
    return pv_store_write_sync(w->s, apply_del_photo, &w->photo);
}

static void del_verify_as(store_walk_t *w, const walk_step_t *st, const char *name)
{
    expect_store(w->s, st, name, w->before);
    bool there = photo_present(w->s, &w->photo.p);
    bool files = blob_file(w->s, w->photo.p.sha256) && blob_file(w->s, w->photo.p.thumb_sha256);
    bool none = !blob_file(w->s, w->photo.p.sha256) && !blob_file(w->s, w->photo.p.thumb_sha256);
    if (st->rc < 0 && (!there || !files))
        step_fail(st, name, "failed, yet the photo or a blob file is gone");
    if (st->rc == 0 && (there || !none))
        step_fail(st, name, "succeeded, yet the photo or a blob file is left");
}

static void del_verify(void *ctx, const walk_step_t *st)
{
    del_verify_as(ctx, st, "delete a photo");
}

static void del_cleanup(void *ctx)
{
    store_walk_t *w = ctx;
    if (photo_present(w->s, &w->photo.p))
        CHECK_EQ_INT(pv_store_write_sync(w->s, apply_del_photo, &w->photo), 0);
}

TEST(walk_store_delete_photo)
{
    store_walk_t w = {.s = g_s};
    walk_op_t op = {"store: delete a photo", del_prepare, del_run, del_verify, del_cleanup};
    walk(&op, &w);
}

/* ---- the same in a write transaction of its own (not the writer's):
 * its post-commit list is allocated on the first unref ---- */

static int direct_run(void *ctx)
{
    store_walk_t *w = ctx;
    pv_txn_t txn;
    int rc = pv_txn_begin(w->s, &txn, true);
    if (rc < 0)
        return rc;
    rc = del_photo_records(&txn, &w->photo.p);
    if (rc < 0) {
        pv_txn_abort(&txn);
        return rc;
    }
    return pv_txn_commit(&txn);
}

static void direct_verify(void *ctx, const walk_step_t *st)
{
    del_verify_as(ctx, st, "delete a photo in its own transaction");
}

TEST(walk_store_delete_direct)
{
    store_walk_t w = {.s = g_s};
    walk_op_t op = {"store: delete in a direct transaction", del_prepare, direct_run,
                    direct_verify, del_cleanup};
    walk(&op, &w);
}

/* ---- a render's end: blobs referenced, the video ready, its job gone ---- */

static int apply_video_new(pv_txn_t *txn, void *arg)
{
    pv_video_t *v = arg;
    int rc = pv_video_save(txn, v);
    return rc < 0 ? rc : pv_txn_put(txn, PV_DB_JOBS, v->id, 16, v->user_id, 16, true);
}

static int apply_video_ready(pv_txn_t *txn, void *arg)
{
    store_walk_t *w = arg;
    pv_video_t v;
    int rc = pv_video_load(txn, w->video.user_id, w->video.id, &v);
    if (rc < 0)
        return rc;
    v.status = PV_VIDEO_READY;
    v.progress = 1;
    memcpy(v.sha256, w->sha, 32);
    memcpy(v.poster_sha256, w->poster, 32);
    v.bytes = w->bytes;
    if ((rc = pv_blob_ref(txn, w->sha)) == 0 && (rc = pv_blob_ref(txn, w->poster)) == 0 &&
        (rc = pv_video_save(txn, &v)) == 0)
        rc = pv_txn_del(txn, PV_DB_JOBS, v.id, 16);
    pv_video_clear(&v);
    return rc;
}

static int ready_prepare(void *ctx)
{
    store_walk_t *w = ctx;
    pv_video_t *v = &w->video;
    memset(v, 0, sizeof(*v));
    v->v = 1;
    pv_id_new(v->id);
    memcpy(v->user_id, g_user.id, 16);
    v->status = PV_VIDEO_RUNNING;
    snprintf(v->title, sizeof(v->title), "walk");
    v->n_photos = 2;
    static uint8_t ids[2][16];
    for (int i = 0; i < 2; i++) { /* a running video's photos exist */
        photo_arg_t pa;
        if (add_photo(w->s, &g_user, &pa) < 0)
            return -EIO;
        memcpy(ids[i], pa.p.id, 16);
    }
    v->photo_ids = ids;
    v->opts.seconds_per_photo = 1;
    snprintf(v->opts.transition, sizeof(v->opts.transition), "fade");
    snprintf(v->opts.resolution, sizeof(v->opts.resolution), "480p");
    snprintf(v->opts.aspect, sizeof(v->opts.aspect), "16:9");
    v->opts.fps = 24;
    v->created_ms = v->started_ms = pv_now_ms();
    v->finished_ms = PV_TIME_NONE;
    char mp4[64], jpg[64];
    snprintf(mp4, sizeof(mp4), "video %d", ++g_seq);
    snprintf(jpg, sizeof(jpg), "poster %d", g_seq);
    w->bytes = strlen(mp4);
    int rc = pv_store_write_sync(w->s, apply_video_new, v);
    if (rc == 0)
        rc = make_blob(w->s, mp4, w->sha);
    if (rc == 0)
        rc = make_blob(w->s, jpg, w->poster);
    v->photo_ids = NULL; /* static: not the record's to free */
    digest_of(w->s, w->before, "before a video's end");
    return rc;
}

static int ready_run(void *ctx)
{
    store_walk_t *w = ctx;
    return pv_store_write_sync(w->s, apply_video_ready, w);
}

static void ready_verify(void *ctx, const walk_step_t *st)
{
    store_walk_t *w = ctx;
    expect_store(w->s, st, "a video's end", w->before);
    pv_txn_t txn;
    pv_video_t v;
    CHECK_EQ_INT(pv_txn_begin(w->s, &txn, false), 0);
    int rc = pv_video_load(&txn, w->video.user_id, w->video.id, &v);
    pv_txn_abort(&txn);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0 && (v.status == PV_VIDEO_READY) != (st->rc == 0))
        step_fail(st, "a video's end", "the video's state does not match the answer");
    if (rc == 0)
        pv_video_clear(&v);
}

TEST(walk_store_video_ready)
{
    store_walk_t w = {.s = g_s};
    walk_op_t op = {"store: a video's end", ready_prepare, ready_run, ready_verify, NULL};
    walk(&op, &w);
}

/* ---- trimming the change log ---- */

static int apply_trim(pv_txn_t *txn, void *arg) { return pv_changes_trim(txn, *(uint64_t *)arg); }

static uint64_t g_trim_upto;

static int trim_prepare(void *ctx)
{
    store_walk_t *w = ctx;
    pv_store_stat_t st;
    int rc = pv_store_stat(w->s, &st);
    g_trim_upto = st.last_seq / 4;
    digest_of(w->s, w->before, "before a trim");
    return rc;
}

static int trim_run(void *ctx)
{
    store_walk_t *w = ctx;
    return pv_store_write_sync(w->s, apply_trim, &g_trim_upto);
}

static void trim_verify(void *ctx, const walk_step_t *st)
{
    store_walk_t *w = ctx;
    expect_store(w->s, st, "trim the change log", w->before);
}

TEST(walk_store_trim)
{
    store_walk_t w = {.s = g_s};
    walk_op_t op = {"store: trim the change log", trim_prepare, trim_run, trim_verify, NULL};
    walk(&op, &w);
}

/* ---- growing the map: a write too big for it, in a fresh small store ---- */

typedef struct grow_walk {
    char dir[600];
    pv_store_t *s;
    char before[65];
} grow_walk_t;

static int apply_big(pv_txn_t *txn, void *arg)
{
    static char big[400 * 1024];
    memset(big, 'x', sizeof(big));
    return pv_txn_put(txn, PV_DB_META, "big", 3, big, sizeof(big), false);
}

static int grow_prepare(void *ctx)
{
    grow_walk_t *g = ctx;
    sh("rm -rf %s", g->dir);
    g->s = open_store(g->dir, 128 << 10, 8 << 20);
    if (!g->s)
        return -EIO;
    digest_of(g->s, g->before, "before growing");
    return 0;
}

static int grow_run(void *ctx)
{
    grow_walk_t *g = ctx;
    return pv_store_write_sync(g->s, apply_big, NULL);
}

static void grow_verify(void *ctx, const walk_step_t *st)
{
    grow_walk_t *g = ctx;
    expect_store(g->s, st, "grow the map", g->before);
    if (st->rc < 0 && st->rc != -ENOSPC && st->rc != -EIO && st->rc != -ENOMEM)
        step_fail(st, "grow the map", "an unexpected error");
}

static void grow_cleanup(void *ctx)
{
    grow_walk_t *g = ctx;
    pv_store_close(g->s);
    g->s = NULL;
}

TEST(walk_store_grow)
{
    grow_walk_t g;
    path_in(g.dir, sizeof(g.dir), "grow");
    walk_op_t op = {"store: grow the map", grow_prepare, grow_run, grow_verify, grow_cleanup};
    walk(&op, &g);
}

/* ---- opening a store: a copy of the shared one, with an orphan blob
 * and a stale temp file for the start-up sweeps ---- */

typedef struct open_walk {
    char tmpl[600], dir[600];
    char digest[65];
    pv_store_t *s;
    char orphan[4096], stale[700];
} open_walk_t;

static int open_prepare(void *ctx)
{
    open_walk_t *o = ctx;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -a %s %s", o->dir, o->tmpl, o->dir);
    return system(cmd) == 0 ? 0 : -EIO;
}

static int open_run(void *ctx)
{
    open_walk_t *o = ctx;
    pv_store_opts_t opts = {.map_size = 8 << 20, .no_sync = true};
    return pv_store_open(&o->s, o->dir, &opts);
}

static void open_verify(void *ctx, const walk_step_t *st)
{
    open_walk_t *o = ctx;
    if ((o->s != NULL) != (st->rc == 0))
        step_fail(st, "open a store", "the result and the handle disagree");
    if (!o->s)
        o->s = open_store(o->dir, 8 << 20, 0); /* what a failed open left */
    if (!o->s) {
        step_fail(st, "open a store", "it cannot be opened again after the failure");
        return;
    }
    char now[65];
    digest_of(o->s, now, "open a store");
    if (strcmp(now, o->digest) != 0)
        step_fail(st, "open a store", "opening changed the records");
    char path[4096];
    uint8_t sha[32];
    pv_sha256("orphan", 6, sha);
    pv_blob_path(o->s, sha, path, sizeof(path));
    if (st->rc == 0 && exists(path))
        step_fail(st, "open a store", "the orphan blob was not collected");
}

static void open_cleanup(void *ctx)
{
    open_walk_t *o = ctx;
    pv_store_close(o->s);
    o->s = NULL;
}

TEST(walk_store_open)
{
    open_walk_t o = {0};
    path_in(o.tmpl, sizeof(o.tmpl), "open-template");
    path_in(o.dir, sizeof(o.dir), "open");
    /* the template: the shared store's records, copied while quiet */
    pv_store_t *s = open_store(o.tmpl, 8 << 20, 0);
    CHECK(s != NULL);
    if (!s)
        return;
    pv_user_t u;
    photo_arg_t pa;
    new_user(&u);
    CHECK_EQ_INT(pv_store_write_sync(s, apply_user, &u), 0);
    CHECK_EQ_INT(add_photo(s, &u, &pa), 0);
    uint8_t sha[32];
    CHECK_EQ_INT(make_blob(s, "orphan", sha), 0); /* never referenced */
    char stale[700];
    snprintf(stale, sizeof(stale), "%s/upload-stale", pv_store_tmp_dir(s));
    CHECK_EQ_INT(write_file(stale, "x", 1), 0);
    digest_of(s, o.digest, "the template");
    pv_store_close(s);
    walk_op_t op = {"store: open", open_prepare, open_run, open_verify, open_cleanup};
    walk(&op, &o);
}

/* ---- backup and restore ---- */

typedef struct backup_walk {
    pv_store_t *s;
    char dir[600], archive[600], target[600], err[512];
    char before[65];
    pv_backup_info_t info;
} backup_walk_t;

static int backup_prepare(void *ctx)
{
    backup_walk_t *b = ctx;
    unlink(b->archive);
    digest_of(b->s, b->before, "before a backup");
    return 0;
}

static int backup_run(void *ctx)
{
    backup_walk_t *b = ctx;
    b->err[0] = '\0';
    return pv_backup_write(b->s, b->dir, NULL, NULL, b->archive, true, &b->info, b->err,
                           sizeof(b->err));
}

static void backup_verify(void *ctx, const walk_step_t *st)
{
    backup_walk_t *b = ctx;
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", b->archive);
    expect_store(b->s, st, "backup", b->before);
    if (st->rc < 0 && (!b->err[0] || exists(b->archive)))
        step_fail(st, "backup", "failed without a reason, or left an archive");
    if (st->rc == 0 && !exists(b->archive))
        step_fail(st, "backup", "no archive");
    if (exists(tmp) || count_prefixed(pv_store_tmp_dir(b->s), "backup-"))
        step_fail(st, "backup", "left its temp file or staged links");
}

static int restore_prepare(void *ctx)
{
    backup_walk_t *b = ctx;
    return sh("rm -rf %s", b->target) == 0 ? 0 : -EIO;
}

static int restore_run(void *ctx)
{
    backup_walk_t *b = ctx;
    b->err[0] = '\0';
    return pv_restore(b->archive, b->target, &b->info, b->err, sizeof(b->err));
}

static void restore_verify(void *ctx, const walk_step_t *st)
{
    backup_walk_t *b = ctx;
    char mdb[700];
    snprintf(mdb, sizeof(mdb), "%s/store/data.mdb", b->target);
    if (st->rc < 0 && (!b->err[0] || exists(mdb)))
        step_fail(st, "restore", "failed without a reason, or left a store");
    if (st->rc < 0) { /* nothing left in the way of a second try */
        int rc = restore_run(b);
        if (rc < 0)
            step_fail(st, "restore", b->err);
    }
    pv_store_t *s = open_store(b->target, 8 << 20, 0);
    if (!s) {
        step_fail(st, "restore", "the restored store does not open");
        return;
    }
    char now[65];
    digest_of(s, now, "restored");
    if (strcmp(now, b->before) != 0)
        step_fail(st, "restore", "the restored records differ from the backup's");
    pv_store_close(s);
}

/* A small store of its own: a user, a photo (two blobs), keys. */
TEST(walk_backup_restore)
{
    backup_walk_t b;
    path_in(b.dir, sizeof(b.dir), "backup");
    b.s = open_store(b.dir, 8 << 20, 0);
    CHECK(b.s != NULL);
    if (!b.s)
        return;
    pv_user_t u;
    photo_arg_t pa;
    new_user(&u);
    CHECK_EQ_INT(pv_store_write_sync(b.s, apply_user, &u), 0);
    CHECK_EQ_INT(add_photo(b.s, &u, &pa), 0);
    char keys[700];
    snprintf(keys, sizeof(keys), "%s/keys.json", b.dir);
    CHECK_EQ_INT(write_file(keys, "{\"k\":1}", 7), 0);
    path_in(b.archive, sizeof(b.archive), "walk.tar");
    path_in(b.target, sizeof(b.target), "restored");
    walk_op_t op = {"store: backup", backup_prepare, backup_run, backup_verify, NULL};
    walk(&op, &b);
    CHECK_EQ_INT(backup_run(&b), 0); /* the archive the restores read */
    walk_op_t rop = {"store: restore", restore_prepare, restore_run, restore_verify, NULL};
    walk(&rop, &b);
    pv_store_close(b.s);
}

/* ---------------------------------------------------------------- *
 * The runtime: a loop, an actor, a message through a pool and back
 * ---------------------------------------------------------------- */

typedef struct rt_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int answered;
    int status;
} rt_state_t;

static void rt_work(pv_msg_t *m) { m->status = 42; }

static void rt_answered(pv_msg_t *m)
{
    rt_state_t *st = m->ctx;
    pthread_mutex_lock(&st->mu);
    st->answered = 1;
    st->status = m->status;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pv_msg_free(m);
}

static int rt_run(void *ctx)
{
    static const pv_actor_def_t def = {"walk", NULL, 0};
    rt_state_t *st = ctx;
    st->answered = 0;
    pv_loop_t *loop = pv_loop_new("walk");
    if (!loop)
        return -ENOMEM;
    pv_actor_t *a = pv_actor_new(loop, &def, st);
    pv_pool_t *pool = pv_pool_new("walk", 1, 0);
    int rc = a && pool ? pv_loop_start(loop) : -ENOMEM;
    pv_msg_t *m = rc == 0 ? pv_msg_new(sizeof(*m), 0) : NULL;
    if (rc == 0 && !m)
        rc = -ENOMEM;
    if (rc == 0) {
        m->ctx = st;
        pv_msg_expect(m, a, rt_answered);
        rc = pv_pool_submit(pool, rt_work, m);
        if (rc < 0)
            pv_msg_free(m);
    }
    if (rc == 0) {
        pthread_mutex_lock(&st->mu);
        while (!st->answered)
            pthread_cond_wait(&st->cv, &st->mu);
        pthread_mutex_unlock(&st->mu);
        rc = st->status == 42 ? 0 : -EIO;
    }
    if (pool)
        pv_pool_free(pool);
    pv_loop_stop(loop);
    pv_loop_join(loop);
    pv_actor_free(a);
    pv_loop_free(loop);
    return rc;
}

static void rt_verify(void *ctx, const walk_step_t *st)
{
    if (st->rc < 0 && st->rc != -ENOMEM && st->rc != -EAGAIN)
        step_fail(st, "runtime", "an unexpected error");
}

TEST(walk_runtime)
{
    rt_state_t st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    walk_op_t op = {"runtime: loop, actor, pool, answer", NULL, rt_run, rt_verify, NULL};
    walk(&op, &st);
}

/* ---------------------------------------------------------------- *
 * Base: text answers, tokens, rate limits, keys
 * ---------------------------------------------------------------- */

static int sb_run(void *ctx)
{
    pv_sb_t sb = {0};
    for (int i = 0; i < 500; i++)
        pv_sb_printf(&sb, "%04d,", i);
    pv_sb_json_str(&sb, "end");
    int rc = sb.failed ? -ENOMEM : sb.len == 2505 && strcmp(sb.p + 2500, "\"end\"") == 0 ? 0 : -EIO;
    pv_sb_free(&sb);
    return rc;
}

static void base_verify(void *ctx, const walk_step_t *st)
{
    if (st->rc < 0 && st->rc != -ENOMEM && st->rc != -EIO && st->rc != -EACCES)
        step_fail(st, ctx, "an unexpected error");
}

static int jwt_run(void *ctx)
{
    pv_keys_t keys;
    memset(&keys, 7, sizeof(keys));
    keys.n_presign = 1;
    char *tok = NULL, uid[PV_ID_TEXT], sub[PV_ID_TEXT];
    uint8_t id[16];
    pv_id_new(id);
    pv_id_encode(id, sub);
    int rc = pv_jwt_issue(&keys, sub, 60, &tok);
    if (rc == 0)
        rc = pv_jwt_verify(&keys, tok, uid);
    free(tok);
    return rc;
}

static int ratelimit_run(void *ctx)
{
    pv_ratelimit_t *rl = pv_ratelimit_new(2, 60, 64);
    if (!rl)
        return -ENOMEM;
    int rc = pv_ratelimit_take(rl, "a", 0) == 0 ? 0 : -EIO;
    pv_ratelimit_free(rl);
    return rc;
}

TEST(walk_base)
{
    walk_op_t ops[] = {
        {"base: string builder", NULL, sb_run, base_verify, NULL},
        {"base: access token", NULL, jwt_run, base_verify, NULL},
        {"base: rate limit table", NULL, ratelimit_run, base_verify, NULL},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(ops); i++)
        walk(&ops[i], (void *)ops[i].name);
}

/* ---- keys: made on first start, read on later ones ---- */

typedef struct keys_walk {
    char dir[600];
    bool fresh;     /* make them (else read them) */
    pv_keys_t made; /* the keys of the last success */
    pv_keys_t got;
} keys_walk_t;

static int keys_prepare(void *ctx)
{
    keys_walk_t *k = ctx;
    return k->fresh ? (sh("rm -rf %s", k->dir) == 0 ? 0 : -EIO) : 0;
}

static int keys_run(void *ctx)
{
    keys_walk_t *k = ctx;
    return pv_keys_load_or_create(k->dir, &k->got);
}

static void keys_verify(void *ctx, const walk_step_t *st)
{
    keys_walk_t *k = ctx;
    char path[700];
    snprintf(path, sizeof(path), "%s/keys.json", k->dir);
    if (k->fresh && st->rc < 0 && exists(path))
        step_fail(st, "keys", "failed, yet keys.json was left");
    if (count_prefixed(k->dir, "keys.json.") || count_prefixed(k->dir, ".keys"))
        step_fail(st, "keys", "a temp file was left");
    if (st->rc == 0) {
        pv_keys_t again;
        CHECK_EQ_INT(pv_keys_load_or_create(k->dir, &again), 0);
        if (memcmp(&again, &k->got, sizeof(again)) != 0)
            step_fail(st, "keys", "the keys read back differ");
    }
}

TEST(walk_keys)
{
    keys_walk_t k = {.fresh = true};
    path_in(k.dir, sizeof(k.dir), "keys");
    walk_op_t make = {"base: make the keys", keys_prepare, keys_run, keys_verify, NULL};
    walk(&make, &k);
    k.fresh = false;
    walk_op_t read = {"base: read the keys", keys_prepare, keys_run, keys_verify, NULL};
    walk(&read, &k);
}

/* ---------------------------------------------------------------- *
 * HTTP: the self-signed certificate, the TLS context, listening
 * ---------------------------------------------------------------- */

typedef struct tls_walk {
    char dir[600], cert[700], key[700];
} tls_walk_t;

static int tls_prepare(void *ctx)
{
    tls_walk_t *t = ctx;
    sh("rm -rf %s", t->dir);
    return mkdir(t->dir, 0700) == 0 ? 0 : -errno;
}

static int tls_run(void *ctx)
{
    tls_walk_t *t = ctx;
    int rc = pv_tls_ensure_self_signed(t->cert, t->key);
    if (rc < 0)
        return rc;
    char err[256];
    SSL_CTX *c = pv_tls_ctx_new(t->cert, t->key, err, sizeof(err));
    if (!c)
        return -EIO;
    SSL_CTX_free(c);
    return 0;
}

static void tls_verify(void *ctx, const walk_step_t *st)
{
    tls_walk_t *t = ctx;
    if (st->rc < 0 && st->rc != -EIO && st->rc != -ENOMEM)
        step_fail(st, "tls", "an error that is not the one injected (a stale errno?)");
    if (st->rc < 0 && exists(t->cert) && !exists(t->key))
        step_fail(st, "tls", "a certificate without its key");
    if (count_prefixed(t->dir, "cert.pem.tmp") || count_prefixed(t->dir, "key.pem.tmp"))
        step_fail(st, "tls", "a temp file was left");
    if (st->rc < 0) { /* what is left does not stand in the way */
        CHECK_EQ_INT(tls_run(t), 0);
    }
}

TEST(walk_tls)
{
    tls_walk_t t;
    path_in(t.dir, sizeof(t.dir), "tls");
    snprintf(t.cert, sizeof(t.cert), "%s/cert.pem", t.dir);
    snprintf(t.key, sizeof(t.key), "%s/key.pem", t.dir);
    walk_op_t op = {"http: certificate and TLS context", tls_prepare, tls_run, tls_verify, NULL};
    walk(&op, &t);
}

static const pv_http_route_t g_no_routes[] = {{0}};

static int listen_run(void *ctx)
{
    pv_loop_t *loop = pv_loop_new("listen");
    if (!loop)
        return -ENOMEM;
    pv_http_config_t cfg = {.routes = g_no_routes, .tmp_dir = g_root};
    pv_http_server_t *srv = pv_http_server_new(loop, &cfg);
    int rc = srv ? pv_http_listen(srv, "127.0.0.1:0", false, PV_LISTEN_PRIVATE) : -ENOMEM;
    if (rc == 0 && pv_http_server_port(srv, PV_LISTEN_PRIVATE) <= 0)
        rc = -EIO;
    pv_http_server_free(srv);
    pv_loop_free(loop);
    return rc;
}

static void listen_verify(void *ctx, const walk_step_t *st)
{
    if (st->rc < 0 && st->rc != -EADDRINUSE && st->rc != -ENOMEM)
        step_fail(st, "listen", "an unexpected error");
}

TEST(walk_listen)
{
    walk_op_t op = {"http: listen", NULL, listen_run, listen_verify, NULL};
    walk(&op, NULL);
}

int main(void)
{
    if (!mkdtemp(g_root))
        return 1;
    pv_log_set_level(PV_LOG_ERROR);
    pv_fail_reset("");
    if (seed_store() < 0) {
        printf("# cannot seed the store\n");
        return 1;
    }
    RUN(walk_store_put_user);
    RUN(walk_store_ingest_photo);
    RUN(walk_store_delete_photo);
    RUN(walk_store_delete_direct);
    RUN(walk_store_video_ready);
    RUN(walk_store_trim);
    RUN(walk_store_grow);
    RUN(walk_store_open);
    RUN(walk_backup_restore);
    RUN(walk_runtime);
    RUN(walk_base);
    RUN(walk_keys);
    RUN(walk_tls);
    RUN(walk_listen);
    pv_store_close(g_s);
    sh("rm -rf %s", g_root);
    return t_done("failwalk");
}
