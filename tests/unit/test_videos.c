/*
 * test_videos.c — the videos actor (actors/videos.c) below HTTP: the fair
 * pick of the next job, recovery at start (jobs left running are queued
 * again, queued ones stay queued in order), and the actor on a real core
 * loop and render pool: a job left running by a crash renders again, and
 * a stop mid-render ends the render at once and leaves it resumable.
 *
 * The file is #included (h2o's way) so that its static functions can be
 * tested. Stores live in temp directories opened with no_sync. The HTTP
 * side (cancel, delete, streams, kill -9) is tests/integration/test_videos.py.
 */
#include "../../actors/videos.c"

#include "model/photos.h"
#include "t.h"

#include <ftw.h>
#include <libavutil/log.h>
#include <sys/stat.h>
#include <time.h>

/* ---------------- helpers ---------------- */

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* An id whose bytes sort as n does (ids sort by creation, as pv_id_new's). */
static void mkid(uint8_t id[16], int n)
{
    memset(id, 0, 16);
    id[14] = (uint8_t)(n >> 8);
    id[15] = (uint8_t)n;
}

static int id_n(const uint8_t id[16]) { return id[14] << 8 | id[15]; }

static void user_id(uint8_t id[16], char who)
{
    memset(id, (unsigned char)who, 16);
}

/* The queue as numbers, oldest first, e.g. "1,2,3". */
static const char *queue_str(videos_state_t *st, char *buf, size_t len)
{
    buf[0] = '\0';
    size_t off = 0;
    for (vjob_t *j = st->head; j && off < len; j = j->next)
        off += (size_t)snprintf(buf + off, len - off, "%s%d", off ? "," : "", id_n(j->id));
    return buf;
}

static void state_clear(videos_state_t *st)
{
    while (st->head) {
        vjob_t *j = st->head;
        st->head = j->next;
        free(j);
    }
    st->tail = NULL;
    st->n_queued = 0;
    free(st->users);
    st->users = NULL;
    st->n_users = st->cap_users = 0;
}

static void add_job(videos_state_t *st, int n, char who)
{
    uint8_t id[16], user[16];
    mkid(id, n);
    user_id(user, who);
    enqueue(st, id, user);
}

static user_stat_t *stat_of(videos_state_t *st, char who)
{
    uint8_t user[16];
    user_id(user, who);
    return user_stat(st, user);
}

/* What the scheduler does with one render slot that is free again at
 * once: pick, dequeue, count the start. Returns the job's number, or -1. */
static int take(videos_state_t *st)
{
    vjob_t *j = pick(st);
    if (!j)
        return -1;
    int n = id_n(j->id);
    uint8_t user[16];
    memcpy(user, j->user, 16);
    dequeue_id(st, j->id);
    user_stat(st, user)->served++;
    return n;
}

/* ---------------- the fair pick ---------------- */

TEST(pick_empty_queue)
{
    videos_state_t st = {0};
    CHECK(pick(&st) == NULL);
}

TEST(pick_oldest_when_even)
{
    videos_state_t st = {0};
    add_job(&st, 1, 'a');
    add_job(&st, 2, 'b');
    add_job(&st, 3, 'a');
    CHECK_EQ_INT(id_n(pick(&st)->id), 1);
    add_job(&st, 1, 'a'); /* a known id is not queued twice */
    CHECK_EQ_INT(st.n_queued, 3);
    state_clear(&st);
}

TEST(pick_fewest_running_first)
{
    videos_state_t st = {0};
    add_job(&st, 1, 'a');
    add_job(&st, 2, 'a');
    add_job(&st, 3, 'b');
    stat_of(&st, 'a')->running = 1;
    CHECK_EQ_INT(id_n(pick(&st)->id), 3);
    /* fewer running beats fewer served */
    stat_of(&st, 'a')->running = 0;
    stat_of(&st, 'a')->served = 10;
    stat_of(&st, 'b')->running = 1;
    CHECK_EQ_INT(id_n(pick(&st)->id), 1);
    state_clear(&st);
}

TEST(pick_fewest_served_then_oldest)
{
    videos_state_t st = {0};
    add_job(&st, 1, 'a');
    add_job(&st, 2, 'b');
    add_job(&st, 3, 'c');
    stat_of(&st, 'a')->served = 2;
    stat_of(&st, 'b')->served = 1;
    stat_of(&st, 'c')->served = 1;
    CHECK_EQ_INT(id_n(pick(&st)->id), 2); /* b and c tie: b's job is older */
    state_clear(&st);
}

TEST(pick_skips_a_user_at_the_running_limit)
{
    videos_state_t st = {0};
    st.user_running_max = 1;
    add_job(&st, 1, 'a');
    add_job(&st, 2, 'a');
    stat_of(&st, 'a')->running = 1;
    CHECK(pick(&st) == NULL); /* a renders one already: its next one waits */
    add_job(&st, 3, 'b');
    CHECK_EQ_INT(id_n(pick(&st)->id), 3);
    stat_of(&st, 'a')->running = 0;
    CHECK_EQ_INT(id_n(pick(&st)->id), 1);
    state_clear(&st);
}

TEST(pick_one_users_many_jobs_do_not_starve_others)
{
    videos_state_t st = {0};
    for (int i = 1; i <= 4; i++)
        add_job(&st, i, 'a');
    add_job(&st, 5, 'b');
    add_job(&st, 6, 'c');
    add_job(&st, 7, 'b');
    int want[] = {1, 5, 6, 2, 7, 3, 4};
    for (size_t i = 0; i < PV_ARRAY_LEN(want); i++)
        CHECK_EQ_INT(take(&st), want[i]);
    CHECK_EQ_INT(take(&st), -1);
    CHECK_EQ_INT(st.n_queued, 0);
    state_clear(&st);
}

/* ---------------- recovery ---------------- */

typedef struct put_ctx {
    const pv_video_t *v;
    const pv_photo_t *photo;      /* or NULL */
    bool job;                     /* has a PV_DB_JOBS entry */
} put_ctx_t;

static int put_apply(pv_txn_t *txn, void *arg)
{
    put_ctx_t *c = arg;
    int rc = c->photo ? pv_photo_put(txn, c->photo) : 0;
    if (rc == 0)
        rc = pv_video_save(txn, c->v);
    if (rc == 0 && c->job)
        rc = pv_txn_put(txn, PV_DB_JOBS, c->v->id, 16, c->v->user_id, 16, false);
    return rc;
}

/* A video record of n photos (ids 1000+), 480p with no transition. */
static void video_init(pv_video_t *v, uint8_t photo_ids[][16], int id, char who, int status,
                       double seconds)
{
    memset(v, 0, sizeof(*v));
    v->v = 1;
    mkid(v->id, id);
    user_id(v->user_id, who);
    v->status = status;
    v->progress = status == PV_VIDEO_RUNNING ? 0.4 : 0;
    v->n_photos = 1;
    v->photo_ids = photo_ids;
    v->opts.seconds_per_photo = seconds;
    snprintf(v->opts.transition, sizeof(v->opts.transition), "none");
    snprintf(v->opts.resolution, sizeof(v->opts.resolution), "480p");
    snprintf(v->opts.aspect, sizeof(v->opts.aspect), "16:9");
    v->opts.fps = 30;
    v->created_ms = pv_now_ms();
    v->started_ms = v->finished_ms = PV_TIME_NONE;
    v->duration_s = seconds;
    v->width = 854;
    v->height = 480;
}

static void put_video(pv_store_t *s, const pv_video_t *v, const pv_photo_t *photo, bool job)
{
    put_ctx_t c = {.v = v, .photo = photo, .job = job};
    CHECK_EQ_INT(pv_store_write_sync(s, put_apply, &c), 0);
}

/* The stored video id of user who: its status, progress and bytes. */
static int video_status(pv_store_t *s, int id, char who, double *progress, uint64_t *bytes)
{
    uint8_t vid[16], user[16];
    mkid(vid, id);
    user_id(user, who);
    pv_txn_t txn;
    pv_video_t v;
    int rc = pv_txn_begin(s, &txn, false);
    if (rc == 0) {
        rc = pv_video_load(&txn, user, vid, &v);
        pv_txn_abort(&txn);
    }
    if (rc < 0)
        return rc;
    if (progress)
        *progress = v.progress;
    if (bytes)
        *bytes = v.bytes;
    rc = v.status;
    pv_video_clear(&v);
    return rc;
}

static bool has_job(pv_store_t *s, int id)
{
    uint8_t vid[16];
    mkid(vid, id);
    pv_txn_t txn;
    pv_val_t val;
    if (pv_txn_begin(s, &txn, false) < 0)
        return false;
    bool found = pv_txn_get(&txn, PV_DB_JOBS, vid, 16, &val) == 0;
    pv_txn_abort(&txn);
    return found;
}

static pv_store_t *open_store(char *dir)
{
    strcpy(dir, "/tmp/pv_test_videos_XXXXXX");
    if (!mkdtemp(dir))
        return NULL;
    pv_store_opts_t o = {.no_sync = true};
    pv_store_t *s = NULL;
    CHECK_EQ_INT(pv_store_open(&s, dir, &o), 0);
    return s;
}

TEST(recovery_requeues_running_and_keeps_queued_in_order)
{
    char dir[64];
    pv_store_t *s = open_store(dir);
    if (!s)
        return;
    uint8_t photos[1][16];
    mkid(photos[0], 1000);
    pv_video_t v;
    /* put out of id order: the queue follows the ids (creation order) */
    video_init(&v, photos, 3, 'a', PV_VIDEO_QUEUED, 1);
    put_video(s, &v, NULL, true);
    video_init(&v, photos, 1, 'a', PV_VIDEO_QUEUED, 1);
    put_video(s, &v, NULL, true);
    video_init(&v, photos, 2, 'b', PV_VIDEO_RUNNING, 1);
    put_video(s, &v, NULL, true);
    video_init(&v, photos, 4, 'b', PV_VIDEO_READY, 1); /* done: no job entry */
    put_video(s, &v, NULL, false);

    pv_app_t app = {.store = s};
    videos_state_t st = {.app = &app};
    CHECK_EQ_INT(recover(&st), 0);
    char q[64];
    CHECK_EQ_STR(queue_str(&st, q, sizeof(q)), "1,2,3");
    CHECK_EQ_INT(st.n_queued, 3);
    double p = -1;
    CHECK_EQ_INT(video_status(s, 2, 'b', &p, NULL), PV_VIDEO_QUEUED);
    CHECK(p == 0);
    CHECK_EQ_INT(video_status(s, 1, 'a', NULL, NULL), PV_VIDEO_QUEUED);
    CHECK_EQ_INT(video_status(s, 3, 'a', NULL, NULL), PV_VIDEO_QUEUED);
    CHECK_EQ_INT(video_status(s, 4, 'b', NULL, NULL), PV_VIDEO_READY);
    CHECK(has_job(s, 1) && has_job(s, 2) && has_job(s, 3) && !has_job(s, 4));
    /* the fair pick then serves a, b, a */
    CHECK_EQ_INT(take(&st), 1);
    CHECK_EQ_INT(take(&st), 2);
    CHECK_EQ_INT(take(&st), 3);
    state_clear(&st);

    /* A second start finds the same jobs, all queued now. */
    st = (videos_state_t){.app = &app};
    CHECK_EQ_INT(recover(&st), 0);
    CHECK_EQ_STR(queue_str(&st, q, sizeof(q)), "1,2,3");
    state_clear(&st);
    pv_store_close(s);
    rm_rf(dir);
}

/* ---------------- the actor on its loop and the render pool ---------------- */

typedef struct rig {
    char dir[64];
    pv_app_t app;
    pv_photo_t photo;
    uint8_t photo_ids[1][16];
} rig_t;

/* A store with one user's photo (a real JPEG blob), a core loop and a
 * render pool of one thread, as pvd makes them. */
static bool rig_open(rig_t *r)
{
    memset(r, 0, sizeof(*r));
    r->app.store = open_store(r->dir);
    if (!r->app.store)
        return false;
    char jpg[PATH_MAX], cmd[PATH_MAX + 128];
    snprintf(jpg, sizeof(jpg), "%s/photo.jpg", pv_store_tmp_dir(r->app.store));
    snprintf(cmd, sizeof(cmd),
             "ffmpeg -v error -y -f lavfi -i color=c=red:s=320x240 -frames:v 1 %s", jpg);
    pv_photo_t *p = &r->photo;
    p->v = 1;
    mkid(p->id, 1000);
    user_id(p->user_id, 'a');
    snprintf(p->filename, sizeof(p->filename), "red.jpg");
    snprintf(p->content_type, sizeof(p->content_type), "image/jpeg");
    p->width = 320;
    p->height = 240;
    p->orientation = 1;
    p->taken_ms = PV_TIME_NONE;
    p->created_ms = pv_now_ms();
    memcpy(r->photo_ids[0], p->id, 16);
    if (system(cmd) != 0 || pv_sha256_file(jpg, p->sha256, &p->bytes) < 0 ||
        pv_blob_commit_file(r->app.store, jpg, p->sha256, NULL) < 0) {
        CHECK(!"cannot make the test photo (ffmpeg)");
        return false;
    }
    r->app.core = pv_loop_new("core");
    r->app.render = pv_pool_new("render", 1, 0);
    return r->app.core && r->app.render;
}

static void rig_start(rig_t *r)
{
    CHECK_EQ_INT(pv_videos_start(&r->app), 0);
    CHECK_EQ_INT(pv_loop_start(r->app.core), 0);
}

/* pvd's stop order: the core loop, then the renders, then the pool. */
static void rig_stop(rig_t *r)
{
    pv_loop_stop(r->app.core);
    pv_loop_join(r->app.core);
    pv_videos_stop(&r->app);
    pv_pool_stop(r->app.render);
}

static void rig_close(rig_t *r)
{
    if (r->app.store)
        pv_store_close(r->app.store);
    pv_videos_free(&r->app);
    pv_loop_free(r->app.core);
    pv_pool_free(r->app.render);
    rm_rf(r->dir);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until video id has status `want` (and progress >= min_progress);
 * false at once when it ended otherwise. */
static bool wait_for(rig_t *r, int id, int want, double min_progress, double timeout)
{
    double end = now_s() + timeout, p = 0;
    while (now_s() < end) {
        int status = video_status(r->app.store, id, 'a', &p, NULL);
        if (status == want && p >= min_progress)
            return true;
        if (status != want && is_final(status)) {
            printf("#   video %d ended %s, not %s\n", id, pv_video_status_name(status),
                   pv_video_status_name(want));
            return false;
        }
        usleep(20000);
    }
    return false;
}

TEST(job_left_running_renders_again)
{
    rig_t r;
    if (!rig_open(&r)) {
        rig_close(&r);
        return;
    }
    pv_video_t v;
    video_init(&v, r.photo_ids, 1, 'a', PV_VIDEO_RUNNING, 1); /* a crash left it running */
    put_video(r.app.store, &v, &r.photo, true);
    video_init(&v, r.photo_ids, 2, 'a', PV_VIDEO_QUEUED, 1);
    put_video(r.app.store, &v, NULL, true);
    rig_start(&r);
    CHECK(wait_for(&r, 1, PV_VIDEO_READY, 1.0, 60));
    CHECK(wait_for(&r, 2, PV_VIDEO_READY, 1.0, 60));
    rig_stop(&r);
    uint64_t bytes = 0;
    CHECK_EQ_INT(video_status(r.app.store, 1, 'a', NULL, &bytes), PV_VIDEO_READY);
    CHECK(bytes > 0);
    CHECK(!has_job(r.app.store, 1) && !has_job(r.app.store, 2));
    rig_close(&r);
}

TEST(stop_mid_render_is_quick_and_resumable)
{
    rig_t r;
    if (!rig_open(&r)) {
        rig_close(&r);
        return;
    }
    pv_video_t v;
    video_init(&v, r.photo_ids, 1, 'a', PV_VIDEO_QUEUED, 60);
    v.opts.fps = 60; /* 3600 frames: minutes under ASan */
    put_video(r.app.store, &v, &r.photo, true);
    rig_start(&r);
    CHECK(wait_for(&r, 1, PV_VIDEO_RUNNING, 0, 60));
    usleep(300000); /* into the render */
    double t0 = now_s();
    rig_stop(&r);
    double took = now_s() - t0;
    if (took >= 1.0)
        printf("#   stop took %.2f s\n", took);
    CHECK(took < 1.0);
    /* Left running with its job entry: the next start renders it again. */
    CHECK_EQ_INT(video_status(r.app.store, 1, 'a', NULL, NULL), PV_VIDEO_RUNNING);
    CHECK(has_job(r.app.store, 1));
    pv_app_t app = {.store = r.app.store};
    videos_state_t st = {.app = &app};
    CHECK_EQ_INT(recover(&st), 0);
    char q[32];
    CHECK_EQ_STR(queue_str(&st, q, sizeof(q)), "1");
    state_clear(&st);
    rig_close(&r);
}

/* The writer runs a batch again once the map has grown ("apply may run
 * more than once", store.h): a store update of a video run twice loaded
 * the record twice into the same place, and the first load's photo ids
 * leaked (found by the kill -9 campaign, whose store starts at 128 KiB and
 * grows while renders end; LeakSanitizer told at pvd's stop). Here a
 * ballast value makes the map grow under a vupdate; the applies run
 * again, and the update ends with the record right and nothing leaked
 * (this suite runs under LeakSanitizer). */
typedef struct grow_ctx {
    vupdate_t *u;
    int runs;
} grow_ctx_t;

static int grow_apply(pv_txn_t *txn, void *arg)
{
    grow_ctx_t *g = arg;
    g->runs++;
    int rc = vupdate_apply(txn, g->u);
    if (rc < 0)
        return rc;
    static char ballast[256 << 10];
    return pv_txn_put(txn, PV_DB_META, "test-ballast", 12, ballast, sizeof(ballast), false);
}

TEST(store_update_applied_again_after_the_map_grew)
{
    char dir[64];
    strcpy(dir, "/tmp/pv_test_videos_XXXXXX");
    if (!mkdtemp(dir))
        return;
    pv_store_opts_t o = {.map_size = 64 << 10, .map_max = 16 << 20, .no_sync = true};
    pv_store_t *s = NULL;
    CHECK_EQ_INT(pv_store_open(&s, dir, &o), 0);
    if (!s)
        return;
    uint8_t photos[1][16];
    mkid(photos[0], 1000);
    pv_video_t v;
    video_init(&v, photos, 1, 'a', PV_VIDEO_QUEUED, 1);
    put_video(s, &v, NULL, true);
    pv_app_t app = {.store = s};
    videos_state_t st = {.app = &app};
    vupdate_t *u = calloc(1, sizeof(*u));
    if (!u)
        return;
    u->sreq.msg.free_fn = vupdate_free;
    u->st = &st;
    memcpy(u->id, v.id, 16);
    memcpy(u->user, v.user_id, 16);
    u->status = PV_VIDEO_RUNNING;
    u->progress = 0.5;
    u->from_mask = 1u << PV_VIDEO_QUEUED;
    grow_ctx_t g = {u, 0};
    CHECK_EQ_INT(pv_store_write_sync(s, grow_apply, &g), 0);
    CHECK(g.runs >= 2); /* the map grew at least once under it */
    CHECK(u->applied);
    CHECK_EQ_INT(u->after.status, PV_VIDEO_RUNNING);
    CHECK_EQ_INT(u->after.n_photos, 1);
    CHECK(u->after.photo_ids && id_n(u->after.photo_ids[0]) == 1000);
    CHECK_EQ_INT(video_status(s, 1, 'a', NULL, NULL), PV_VIDEO_RUNNING);
    vupdate_free(&u->sreq.msg);
    pv_store_close(s);
    rm_rf(dir);
}

int main(void)
{
    av_log_set_level(AV_LOG_ERROR);
    pv_log_set_level(PV_LOG_WARN);
    RUN(pick_empty_queue);
    RUN(pick_oldest_when_even);
    RUN(pick_fewest_running_first);
    RUN(pick_fewest_served_then_oldest);
    RUN(pick_skips_a_user_at_the_running_limit);
    RUN(pick_one_users_many_jobs_do_not_starve_others);
    RUN(recovery_requeues_running_and_keeps_queued_in_order);
    RUN(job_left_running_renders_again);
    RUN(stop_mid_render_is_quick_and_resumable);
    RUN(store_update_applied_again_after_the_map_grew);
    return t_done("videos");
}
