/*
 * videos.c — the videos actor: the job queue, the renders (on the render
 * pool), live progress and the event streams.
 *
 * The store is the truth about jobs: a video is to render while its record
 * says queued or running and PV_DB_JOBS lists it. When the actor cannot do
 * its part of a job (a read, a message, a store update fails), it lets go
 * and reads PV_DB_JOBS again a little later, as at start (resync): a job
 * nobody holds is queued again, one left `running` is reset and rendered
 * again. A failure then delays a video; it never leaves one stuck.
 *
 * Durability: a video's record and its PV_DB_JOBS entry are committed
 * before the 202 (actors/api/videos.c). At start the actor reads
 * PV_DB_JOBS: every job is queued again; one that was `running` when the
 * process died is reset to `queued` and rendered again from scratch (its
 * half-written output only ever existed under a temp name).
 *
 * Scheduling is fair across users: the next job is the oldest queued job of
 * the user with the fewest running renders, then the fewest started in this
 * process, so one user's fifty jobs do not starve another's one. A user
 * already at user_running_jobs renders waits while others' jobs start.
 *
 * Renders run on the `render` pool (app->render: FFmpeg work is CPU-bound
 * and must not run on a loop), a photo at a time. Up to render_open_jobs
 * renders are open (running[]: started, their encoders open); they share
 * the pool's threads in slices of one photo's worth of frames, so a long
 * render never holds a thread from another user's job for longer than
 * that. The actor never submits more slices than the pool has threads, so
 * a job waits here, where the fair pick can see it, and the actor always
 * knows which jobs run (fairness, cancel, stop). A slice is pool work: a
 * pool thread renders the next frames (the first slice opens the render,
 * the last one finishes it and makes the MP4 and the poster durable as
 * blobs), and the pool answers the task, whose continuation (rendered)
 * runs on the actor's loop and gives the thread to the open render whose
 * user had a slice least recently. While a slice runs, the actor touches
 * only the task's atomic cancel flag: a cancel or a delete sets it and
 * the render stops at its next frame; a render between slices is ended at
 * once. Progress comes as small messages from the render
 * thread (VIDEOS_PROGRESS, at most one per 1 %); the actor sends it on to
 * every HTTP loop (each keeps its own copy for the videos' JSON:
 * broadcast_live), streams it to subscribers, and writes it to the store
 * coarsely (every 10 %).
 *
 * Stop: once the core loop has stopped, pv_videos_stop cancels the
 * running renders; their answers are never handled, so they stay
 * `running` in the store and the next start renders them again.
 *
 * Event streams: an SSE request on an HTTP loop registers a subscription
 * here. Events go back to the subscriber as answers (its continuation runs
 * on its loop). Unsubscribing is a round trip (UNSUB, then an event marked
 * unsubscribed), and per-sender ordering guarantees that no event can
 * arrive for a subscription after that one, so the subscriber frees it
 * only then.
 */
#include "actors/videos.h"
#include "actors/http.h"
#include "app/metrics.h"
#include "base/pv.h"
#include "media/render.h"
#include "model/videos.h"

#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RESYNC_FIRST_MS 250   /* the job table is read again this soon after a failure */
#define RESYNC_MAX_MS 30000   /* ... doubling up to this */

/* The actor's own messages, after the public ones of videos.h. Only the
 * render pool's threads send them, and nothing outside this file names
 * them. A finished render is not one: it is the pool's answer to the task,
 * whose continuation (rendered) runs here. */
enum {
    VIDEOS_PROGRESS = PV_VIDEOS_PUBLIC_COUNT, /* progress_msg_t: a running render's frames */
    VIDEOS_MSG_COUNT
};

typedef struct videos_state videos_state_t;

typedef struct vjob {
    struct vjob *next;
    uint8_t id[16], user[16];
} vjob_t;

typedef struct user_stat {
    uint8_t user[16];
    int running;                  /* renders of this user running now */
    long served;                  /* renders of this user started by this process */
    uint64_t last_slice;          /* when the user's renders last had a thread (slice count) */
} user_stat_t;

/* One render: made by the actor, run a slice at a time by render pool
 * threads (render_work), each slice answered back (rendered). While a
 * slice runs the thread owns everything but `cancel`; between slices the
 * actor does (the render's state too). */
typedef struct render_task {
    pv_msg_t msg;                 /* pool work; its answer runs rendered() */
    videos_state_t *st;           /* the actor's state, for rendered() */
    pv_actor_t *videos;           /* where progress goes */
    pv_store_t *store;            /* the blobs are committed from the thread */
    uint8_t id[16], user[16];
    int n;
    char **paths;                 /* the photos' blob files */
    uint8_t (*shas)[32];          /* their names */
    pv_render_opts_t opts;
    pv_render_t *render;          /* open between slices; NULL before the first */
    bool done;                    /* out: the render is over; rc says how */
    bool on_pool;                 /* the actor's: a slice of it is on the pool */
    uint64_t last_slice;          /* the actor's: when it last had a thread */
    atomic_bool cancel;           /* set by the actor (cancel, drop) or pv_videos_stop */
    int permille_sent;            /* the thread's: the last progress it sent */
    int permille;                 /* the actor's: the last progress it heard */
    int64_t frames_counted;       /* the actor's: frames already in the metrics */
    int rc;                       /* out: 0, -ECANCELED, -errno */
    char err[256];                /* out: why it failed, for the record */
    char out[PATH_MAX], poster[PATH_MAX]; /* temp files, gone once it is answered */
    uint8_t sha[32], poster_sha[32]; /* out: the committed blobs */
    pv_blob_pin_t pin, poster_pin; /* out: held on them until the record names them */
    uint64_t bytes;               /* out: the MP4's size */
} render_task_t;

typedef struct sub_entry {
    struct sub_entry *next;
    pv_video_sub_t *sub;
} sub_entry_t;

struct videos_state {
    pv_app_t *app;
    vjob_t *head, *tail;          /* queued jobs, oldest first */
    vjob_t *held;                 /* jobs waiting for their photos to be fetched
                                     after a restore (actors/pull.c) */
    int n_queued;
    user_stat_t *users;
    int n_users, cap_users;
    render_task_t **running;      /* [max_running]: open renders; NULL: a free slot */
    int max_running;              /* render_open_jobs */
    int threads, on_pool;         /* the render pool's threads; slices on it now */
    uint64_t slices;              /* slices given out (the fair order's clock) */
    sub_entry_t *subs;
    bool stopping;                /* pvd is stopping: streams end */
    int user_running_max;         /* renders at once per user (0: no limit) */
    struct event *resync_ev;      /* re-reads PV_DB_JOBS after a failure */
    int resync_ms;                /* its next delay (doubles, reset on success) */
};

/* Sent to every open event stream when pvd stops, so that the HTTP loops
 * can finish draining: the browser reconnects to the next pvd. */
#define SSE_SHUTDOWN "event: shutdown\ndata: {}\n\n"

/* VIDEOS_PROGRESS, from the render thread; not answered. */
typedef struct progress_msg {
    pv_msg_t msg;
    render_task_t *task;          /* still running: its answer comes after this */
    int64_t done, total;          /* frames */
} progress_msg_t;

/* ---------------- store updates ---------------- */

typedef struct vupdate {
    pv_store_req_t sreq;          /* answered to the actor: stored() */
    pv_app_t *app;
    videos_state_t *st;
    pv_actor_t *self;
    uint8_t id[16], user[16];
    unsigned from_mask;           /* apply only when status is in it (0: any) */
    int status;                   /* new status, or -1 */
    double progress;              /* < 0: keep */
    bool started, finished;       /* set started_ms / finished_ms to now */
    bool set_error;
    char error[PV_ERRMSG_MAX + 1];
    bool ready;
    uint8_t sha[32], poster_sha[32];
    pv_blob_pin_t pin, poster_pin; /* the render's, until this has committed */
    uint64_t bytes;
    int jobs;                     /* +1 add the job entry, -1 remove it */
    bool notify;                  /* stream the new state to subscribers */
    bool live_end;                /* the render is over: tell the HTTP loops once committed */
    bool requeue;                 /* enqueue once committed (retry) */
    bool applied;                 /* out: the record was changed */
    pv_video_t after;             /* out: the record as committed */
    pv_job_cmd_t *cmd;            /* the command that asked for it, answered
                                     once it committed (cancel, retry) */
} vupdate_t;

static void vupdate_free(pv_msg_t *m)
{
    vupdate_t *u = (vupdate_t *)m;
    pv_blob_unpin(u->app ? u->app->store : NULL, &u->pin);
    pv_blob_unpin(u->app ? u->app->store : NULL, &u->poster_pin);
    pv_video_clear(&u->after);
    pv_msg_free(u->cmd ? &u->cmd->msg : NULL); /* pvd stopped before the commit */
    free(u);
}

static int vupdate_apply(pv_txn_t *txn, void *arg)
{
    vupdate_t *u = arg;
    pv_video_t *v = &u->after;
    /* The writer runs a batch again after the map grew: what a first run
     * loaded (its photo ids are malloc'd) goes before the record is read
     * again. */
    pv_video_clear(v);
    u->applied = false;
    int rc = pv_video_load(txn, u->user, u->id, v);
    if (rc < 0)
        return rc == -ENOENT ? 0 : rc; /* deleted meanwhile: nothing to do */
    if (u->from_mask && !(u->from_mask & (1u << v->status)))
        return 0;
    int64_t now = pv_now_ms();
    if (u->status >= 0)
        v->status = u->status;
    if (u->progress >= 0)
        v->progress = u->progress;
    if (u->started)
        v->started_ms = now;
    if (u->finished)
        v->finished_ms = now;
    if (u->set_error)
        snprintf(v->error, sizeof(v->error), "%s", u->error);
    if (u->ready) {
        memcpy(v->sha256, u->sha, 32);
        memcpy(v->poster_sha256, u->poster_sha, 32);
        v->bytes = u->bytes;
        if ((rc = pv_blob_ref(txn, u->sha)) < 0 || (rc = pv_blob_ref(txn, u->poster_sha)) < 0)
            return rc;
    }
    if ((rc = pv_video_save(txn, v)) < 0)
        return rc;
    if (u->jobs > 0)
        rc = pv_txn_put(txn, PV_DB_JOBS, u->id, 16, u->user, 16, false);
    else if (u->jobs < 0)
        rc = pv_txn_del(txn, PV_DB_JOBS, u->id, 16);
    if (rc == -ENOENT)
        rc = 0;
    u->applied = rc == 0;
    return rc;
}

static void stored(pv_msg_t *msg);

static vupdate_t *vupdate_new(videos_state_t *st, pv_actor_t *self, const uint8_t id[16],
                              const uint8_t user[16])
{
    vupdate_t *u = pv_msg_new(sizeof(*u), 0);
    if (!u)
        return NULL;
    u->sreq.msg.free_fn = vupdate_free;
    pv_msg_expect(&u->sreq.msg, self, stored);
    u->st = st;
    u->self = self;
    u->sreq.apply = vupdate_apply;
    u->sreq.arg = u;
    u->app = st->app;
    memcpy(u->id, id, 16);
    memcpy(u->user, user, 16);
    u->status = -1;
    u->progress = -1;
    u->notify = true;
    return u;
}

/* ---------------- live progress, for the HTTP loops ---------------- */

/* Every HTTP loop keeps its own copy of the running renders' progress
 * (actors/http.c), which its handlers read when they make a running
 * video's JSON. This sends each loop one job's progress, or permille < 0
 * once the job is over. The render threads report at most once per 1 %
 * (render_progress), so each job costs each loop at most ~100 of these. */
static void broadcast_live(videos_state_t *st, const uint8_t id[16], int permille)
{
    pv_app_t *app = st->app;
    for (int i = 0; i < app->n_loops; i++) {
        if (!app->loops[i].actor)
            continue;
        pv_http_live_msg_t *m = pv_msg_new(sizeof(*m), PV_HTTP_LIVE);
        if (!m) /* that loop shows the stored, coarser progress meanwhile */
            continue;
        memcpy(m->id, id, 16);
        m->permille = permille;
        pv_actor_send(app->loops[i].actor, &m->msg);
    }
}

/* ---------------- subscribers ---------------- */

static void sse_event_free(pv_msg_t *m)
{
    free(((pv_video_event_t *)m)->text);
    free(m);
}

/* An event to the subscriber, answered to its home actor. The last one
 * (end, or the answer to UNSUB) goes in the message the subscriber made
 * for it, so that a stream always ends. */
static void send_to(pv_video_sub_t *sub, char *text, bool end, bool unsubscribed)
{
    pv_video_event_t **last = unsubscribed ? &sub->last_unsub : end ? &sub->last : NULL;
    pv_video_event_t *m = last && *last ? *last : pv_msg_new(sizeof(*m), 0);
    if (last && *last == m)
        *last = NULL;
    if (!m) { /* an update in between: the next one, or the end, tells */
        free(text);
        return;
    }
    m->msg.free_fn = sse_event_free;
    m->sub = sub;
    m->text = text;
    m->end = end;
    m->unsubscribed = unsubscribed;
    pv_msg_expect(&m->msg, sub->home, sub->on_event);
    pv_actor_reply(&m->msg, 0);
}

static void send_event(pv_video_sub_t *sub, char *text, bool end)
{
    if (text || end) /* an end without text still ends the stream */
        send_to(sub, text, end, false);
}

static bool is_final(int status)
{
    return status == PV_VIDEO_READY || status == PV_VIDEO_FAILED ||
           status == PV_VIDEO_CANCELLED;
}

/* Tell every subscriber of v; a final state ends their streams. */
static void notify_status(videos_state_t *st, const pv_video_t *v)
{
    bool end = is_final(v->status);
    for (sub_entry_t **pp = &st->subs; *pp;) {
        sub_entry_t *e = *pp;
        if (memcmp(e->sub->id, v->id, 16) != 0) {
            pp = &e->next;
            continue;
        }
        send_event(e->sub, pv_video_event_status(st->app->media, v, -1), end);
        if (end) {
            *pp = e->next;
            free(e);
        } else {
            pp = &e->next;
        }
    }
}

/* End the streams of one video (id) or of all (NULL) with `event`. */
static void end_subs(videos_state_t *st, const uint8_t *id, const char *event)
{
    for (sub_entry_t **pp = &st->subs; *pp;) {
        sub_entry_t *e = *pp;
        if (id && memcmp(e->sub->id, id, 16) != 0) {
            pp = &e->next;
            continue;
        }
        char *text = id ? pv_video_event_gone(id) : strdup(event);
        send_event(e->sub, text, true);
        *pp = e->next;
        free(e);
    }
}

static void notify_progress(videos_state_t *st, const uint8_t id[16], double progress)
{
    for (sub_entry_t *e = st->subs; e; e = e->next)
        if (memcmp(e->sub->id, id, 16) == 0)
            send_event(e->sub, pv_video_event_progress(id, progress), false);
}

static double live_progress(videos_state_t *st, const uint8_t id[16]);

static void subscribe(videos_state_t *st, pv_video_sub_t *sub)
{
    if (st->stopping) { /* pvd is stopping: the stream ends at once */
        send_event(sub, strdup(SSE_SHUTDOWN), true);
        return;
    }
    pv_txn_t txn;
    pv_video_t v = {0};
    int rc = pv_txn_begin(st->app->store, &txn, false);
    if (rc == 0) {
        rc = pv_video_load(&txn, sub->user, sub->id, &v);
        pv_txn_abort(&txn);
    }
    if (rc == -ENOENT) { /* deleted meanwhile: end the stream at once */
        send_event(sub, pv_video_event_gone(sub->id), true);
        return;
    }
    if (rc < 0) { /* not read: end without an event; the client reads again */
        send_event(sub, NULL, true);
        return;
    }
    sub_entry_t *e = is_final(v.status) ? NULL : malloc(sizeof(*e));
    double live = live_progress(st, sub->id);
    /* Without an entry no later event could reach it: end it now too. */
    send_event(sub, pv_video_event_status(st->app->media, &v, live),
               !e);
    if (e) {
        e->sub = sub;
        e->next = st->subs;
        st->subs = e;
    }
    pv_video_clear(&v);
}

static void unsubscribe(videos_state_t *st, pv_video_sub_t *sub)
{
    for (sub_entry_t **pp = &st->subs; *pp; pp = &(*pp)->next) {
        if ((*pp)->sub == sub) {
            sub_entry_t *e = *pp;
            *pp = e->next;
            free(e);
            break;
        }
    }
    /* without it the subscription leaks; it cannot be freed early */
    send_to(sub, NULL, true, true);
}

/* ---------------- the queue ---------------- */

static user_stat_t *user_stat(videos_state_t *st, const uint8_t user[16])
{
    for (int i = 0; i < st->n_users; i++)
        if (memcmp(st->users[i].user, user, 16) == 0)
            return &st->users[i];
    if (st->n_users == st->cap_users) {
        int cap = st->cap_users ? st->cap_users * 2 : 16;
        user_stat_t *u = realloc(st->users, (size_t)cap * sizeof(*u));
        if (!u)
            return NULL;
        st->users = u;
        st->cap_users = cap;
    }
    user_stat_t *u = &st->users[st->n_users++];
    memset(u, 0, sizeof(*u));
    memcpy(u->user, user, 16);
    return u;
}

static bool queued(videos_state_t *st, const uint8_t id[16])
{
    for (vjob_t *j = st->head; j; j = j->next)
        if (memcmp(j->id, id, 16) == 0)
            return true;
    for (vjob_t *j = st->held; j; j = j->next) /* it comes back by itself */
        if (memcmp(j->id, id, 16) == 0)
            return true;
    return false;
}

static render_task_t *running_task(videos_state_t *st, const uint8_t id[16])
{
    for (int i = 0; i < st->max_running; i++)
        if (st->running[i] && memcmp(st->running[i]->id, id, 16) == 0)
            return st->running[i];
    return NULL;
}

static int n_running(videos_state_t *st)
{
    int n = 0;
    for (int i = 0; i < st->max_running; i++)
        n += st->running[i] != NULL;
    return n;
}

/* A running render's progress (0..1) as the actor last heard it, or -1. */
static double live_progress(videos_state_t *st, const uint8_t id[16])
{
    render_task_t *t = running_task(st, id);
    return t ? t->permille / 1000.0 : -1;
}

static void resync_later(videos_state_t *st);

static void enqueue(videos_state_t *st, const uint8_t id[16], const uint8_t user[16])
{
    if (queued(st, id) || running_task(st, id))
        return;
    vjob_t *j = calloc(1, sizeof(*j));
    if (!j) {
        resync_later(st); /* it stays in PV_DB_JOBS */
        return;
    }
    memcpy(j->id, id, 16);
    memcpy(j->user, user, 16);
    if (st->tail)
        st->tail->next = j;
    else
        st->head = j;
    st->tail = j;
    st->n_queued++;
}

static bool dequeue_id(videos_state_t *st, const uint8_t id[16])
{
    vjob_t *prev = NULL;
    for (vjob_t *j = st->head; j; prev = j, j = j->next) {
        if (memcmp(j->id, id, 16) != 0)
            continue;
        if (prev)
            prev->next = j->next;
        else
            st->head = j->next;
        if (st->tail == j)
            st->tail = prev;
        st->n_queued--;
        free(j);
        return true;
    }
    return false;
}

/* The fair pick: fewest running, then fewest served, then oldest. The
 * best user is kept by index: user_stat() may grow (move) the table. */
static vjob_t *pick(videos_state_t *st)
{
    vjob_t *best = NULL;
    int bi = -1;
    for (vjob_t *j = st->head; j; j = j->next) {
        user_stat_t *u = user_stat(st, j->user);
        if (!u || (st->user_running_max && u->running >= st->user_running_max))
            continue; /* at the user's limit of renders at once: others first */
        const user_stat_t *b = bi >= 0 ? &st->users[bi] : NULL;
        if (!b || u->running < b->running || (u->running == b->running && u->served < b->served)) {
            best = j;
            bi = (int)(u - st->users);
        }
    }
    return best;
}

/* ---------------- renders, on the render pool ---------------- */

/* On the render thread, about once a frame: the cancel check, and
 * progress for the actor at most once per 1 % (and at the last frame).
 * This is what bounds the actor's broadcasts and events for one job. */
static int render_progress(void *arg, int64_t done, int64_t total)
{
    render_task_t *t = arg;
    if (atomic_load(&t->cancel))
        return 1;
    int permille = total > 0 ? (int)(done * 1000 / total) : 0;
    if (permille - t->permille_sent < 10 && !(done == total && total > 0))
        return 0;
    t->permille_sent = permille;
    progress_msg_t *m = pv_msg_new(sizeof(*m), VIDEOS_PROGRESS);
    if (m) { /* else that step goes unreported; the next one is sent */
        m->task = t;
        m->done = done;
        m->total = total;
        pv_actor_send(t->videos, &m->msg);
    }
    return 0;
}

/* Pool work, on a render thread: the next photo's worth of frames (the
 * first slice opens the render). After the last frame: make the MP4 and
 * the poster durable as blobs before the answer (the record says ready
 * only after). */
static void render_work(pv_msg_t *msg)
{
    render_task_t *t = (render_task_t *)msg;
    int rc = 0;
    if (!t->render)
        rc = pv_render_begin(&t->render, (const char *const *)t->paths, t->n, &t->opts, t->out,
                             t->poster, render_progress, t, t->err, sizeof(t->err));
    if (rc == 0)
        rc = pv_render_step(t->render, pv_render_photo_frames(t->render));
    if (rc == 1) { /* more to do: the actor says who has the thread next */
        msg->status = 0;
        return;
    }
    pv_render_free(t->render);
    t->render = NULL;
    if (rc == 0)
        rc = pv_sha256_file(t->out, t->sha, &t->bytes);
    if (rc == 0)
        rc = pv_sha256_file(t->poster, t->poster_sha, NULL);
    /* Durable before the record says ready: blob files first. */
    if (rc == 0)
        rc = pv_blob_commit_file(t->store, t->out, t->sha, &t->pin);
    if (rc == 0)
        rc = pv_blob_commit_file(t->store, t->poster, t->poster_sha, &t->poster_pin);
    unlink(t->out);
    unlink(t->poster);
    t->rc = rc;
    t->done = true;
    msg->status = rc;
}

static void rendered(pv_msg_t *msg);

static void task_free(pv_msg_t *m)
{
    render_task_t *t = (render_task_t *)m;
    pv_render_free(t->render); /* an unfinished render's temp files go */
    pv_blob_unpin(t->store, &t->pin); /* held if its end went unrecorded */
    pv_blob_unpin(t->store, &t->poster_pin);
    for (int i = 0; t->paths && i < t->n; i++)
        free(t->paths[i]);
    free(t->paths);
    free(t->shas);
    free(t);
}

/* Build the render task for video v: photo blob paths and options. */
static render_task_t *task_new(videos_state_t *st, pv_actor_t *self, pv_txn_t *txn,
                               const pv_video_t *v, char *err, size_t errlen)
{
    render_task_t *t = pv_msg_new(sizeof(*t), 0);
    if (!t)
        return NULL;
    t->msg.free_fn = task_free;
    pv_msg_expect(&t->msg, self, rendered);
    t->st = st;
    t->videos = self;
    t->store = st->app->store;
    memcpy(t->id, v->id, 16);
    memcpy(t->user, v->user_id, 16);
    t->paths = calloc(v->n_photos ? v->n_photos : 1, sizeof(char *));
    t->shas = calloc(v->n_photos ? v->n_photos : 1, 32);
    if (!t->paths || !t->shas)
        goto fail;
    for (uint32_t i = 0; i < v->n_photos; i++) {
        uint8_t key[32];
        pv_key2(key, v->user_id, v->photo_ids[i], 16);
        pv_val_t val;
        pv_photo_t p;
        if (pv_txn_get(txn, PV_DB_PHOTOS, key, sizeof(key), &val) < 0 ||
            pv_photo_decode(val.data, val.len, &p) < 0) {
            snprintf(err, errlen, "photo %u of %u no longer exists", i + 1, v->n_photos);
            goto fail;
        }
        t->paths[i] = malloc(PATH_MAX);
        if (!t->paths[i])
            goto fail;
        t->n = (int)i + 1;
        memcpy(t->shas[i], p.sha256, 32);
        pv_blob_path(st->app->store, p.sha256, t->paths[i], PATH_MAX);
    }
    if (pv_video_render_opts(v, &t->opts, err, errlen) < 0)
        goto fail;
    char id[PV_ID_TEXT];
    pv_id_encode(v->id, id);
    snprintf(t->out, sizeof(t->out), "%s/render-%s.mp4", pv_store_tmp_dir(st->app->store), id);
    snprintf(t->poster, sizeof(t->poster), "%s/render-%s.jpg", pv_store_tmp_dir(st->app->store), id);
    return t;
fail:
    task_free(&t->msg);
    return NULL;
}

static void fail_video(videos_state_t *st, pv_actor_t *self, const uint8_t id[16],
                       const uint8_t user[16], const char *why)
{
    vupdate_t *u = vupdate_new(st, self, id, user);
    if (!u) {
        resync_later(st); /* still queued in the store: it comes back */
        return;
    }
    u->status = PV_VIDEO_FAILED;
    u->finished = true;
    u->set_error = true;
    snprintf(u->error, sizeof(u->error), "%s", why);
    u->jobs = -1;
    pv_store_submit(st->app->store, &u->sreq);
}

static void publish_gauges(videos_state_t *st)
{
    pv_metrics_set(st->app->metrics, PV_M_JOBS_QUEUED, st->n_queued);
    pv_metrics_set(st->app->metrics, PV_M_JOBS_RUNNING, n_running(st));
}

static void schedule_jobs(videos_state_t *st, pv_actor_t *self);

static void dispatch(videos_state_t *st, pv_actor_t *self);

/* Start queued jobs in free slots, give the threads out; publish the
 * gauges. */
static void schedule(videos_state_t *st, pv_actor_t *self)
{
    schedule_jobs(st, self);
    dispatch(st, self);
    publish_gauges(st);
}

/* The task for job (id, user), read from the store. NULL with *gone when
 * it is no longer queued (deleted or cancelled meanwhile), NULL with err
 * set (or empty: out of memory) when it cannot be rendered. */
static render_task_t *prepare(videos_state_t *st, pv_actor_t *self, const uint8_t id[16],
                              const uint8_t user[16], bool *gone, int *read_rc, char *err,
                              size_t errlen)
{
    pv_txn_t txn;
    pv_video_t v = {0};
    render_task_t *t = NULL;
    int rc = pv_txn_begin(st->app->store, &txn, false);
    if (rc == 0) {
        rc = pv_video_load(&txn, user, id, &v);
        if (rc == 0 && v.status == PV_VIDEO_QUEUED)
            t = task_new(st, self, &txn, &v, err, errlen);
        pv_txn_abort(&txn);
    }
    *read_rc = rc == -ENOENT ? 0 : rc;
    *gone = rc < 0 || v.status != PV_VIDEO_QUEUED;
    pv_video_clear(&v);
    return t;
}

/* ---------------- after a restore: photos not fetched yet ---------------- */

typedef struct hold_req {
    pv_pull_req_t req;            /* first: the puller's message */
    videos_state_t *st;
    pv_actor_t *self;
    uint8_t id[16], user[16];
} hold_req_t;

/* The puller has the photos (or S3 lacks one: the render then fails
 * saying which photo it could not read): the job is queued again. */
static void photos_pulled(pv_msg_t *msg)
{
    hold_req_t *h = (hold_req_t *)msg;
    videos_state_t *st = h->st;
    for (vjob_t **jp = &st->held; *jp; jp = &(*jp)->next)
        if (memcmp((*jp)->id, h->id, 16) == 0) {
            vjob_t *j = *jp;
            *jp = j->next;
            free(j);
            break;
        }
    if (msg->status != -ECANCELED && !st->stopping) { /* cancelled: pvd stops; the store keeps it */
        enqueue(st, h->id, h->user);
        schedule(st, h->self);
    }
    pv_msg_free(msg);
}

/* A restored job whose photos are not all here yet is held (no render
 * slot taken) while the puller fetches them, up to PV_PULL_MAX at a time.
 * True when it was held (t is the caller's to free). */
static bool hold_for_photos(videos_state_t *st, pv_actor_t *self, render_task_t *t)
{
    if (!st->app->puller)
        return false;
    hold_req_t *h = NULL;
    for (int i = 0; i < t->n; i++) {
        if (access(t->paths[i], F_OK) == 0)
            continue;
        if (!h && !(h = pv_msg_new(sizeof(*h), PV_PULL_NOW)))
            return false; /* no memory: the render tries, and fails saying why */
        if (h->req.n < PV_PULL_MAX)
            memcpy(h->req.sha[h->req.n++], t->shas[i], 32);
    }
    vjob_t *j = h ? calloc(1, sizeof(*j)) : NULL;
    if (!j) {
        if (h)
            pv_msg_free(&h->req.msg);
        return false;
    }
    memcpy(j->id, t->id, 16);
    memcpy(j->user, t->user, 16);
    j->next = st->held;
    st->held = j;
    h->req.patient = true;
    h->st = st;
    h->self = self;
    memcpy(h->id, t->id, 16);
    memcpy(h->user, t->user, 16);
    pv_msg_expect(&h->req.msg, self, photos_pulled);
    pv_actor_send(st->app->puller, &h->req.msg);
    return true;
}

/* Submit job (id, user) to the render pool in running slot `slot`. */
static void start_job(videos_state_t *st, pv_actor_t *self, int slot, const uint8_t id[16],
                      const uint8_t user[16])
{
    bool gone;
    int read_rc;
    char err[200] = "";
    render_task_t *t = prepare(st, self, id, user, &gone, &read_rc, err, sizeof(err));
    if (read_rc < 0) { /* not read: the store still lists it */
        pv_log(PV_LOG_ERROR, "videos", NULL, NULL, "cannot read a queued video: %s",
               strerror(-read_rc));
        resync_later(st);
        return;
    }
    if (gone) /* deleted or cancelled meanwhile */
        return;
    if (!t && *err) { /* the video itself cannot render */
        fail_video(st, self, id, user, err);
        return;
    }
    if (t && hold_for_photos(st, self, t)) {
        pv_msg_free(&t->msg);
        return;
    }
    /* Its start in the store, asked before the render: a render the store
     * does not know of could not be resumed or ended. */
    vupdate_t *u = t ? vupdate_new(st, self, id, user) : NULL;
    if (!u) { /* out of memory: the store still lists it */
        if (t)
            pv_msg_free(&t->msg);
        resync_later(st);
        return;
    }
    /* Open: dispatch() gives it its first slice. */
    st->running[slot] = t;
    user_stat_t *us = user_stat(st, user);
    if (us) {
        us->running++;
        us->served++;
    }
    broadcast_live(st, id, 0);
    u->from_mask = 1u << PV_VIDEO_QUEUED;
    u->status = PV_VIDEO_RUNNING;
    u->progress = 0;
    u->started = true;
    pv_store_submit(st->app->store, &u->sreq);
}

static int free_slot(videos_state_t *st)
{
    for (int i = 0; i < st->max_running; i++)
        if (!st->running[i])
            return i;
    return -1;
}

static void schedule_jobs(videos_state_t *st, pv_actor_t *self)
{
    int slot;
    while (st->head && (slot = free_slot(st)) >= 0) {
        vjob_t *j = pick(st);
        if (!j)
            return; /* every waiting user is at its running limit (or no memory for
                     * the user table): the next finished render retries */
        uint8_t id[16], user[16];
        memcpy(id, j->id, 16);
        memcpy(user, j->user, 16);
        dequeue_id(st, id);
        start_job(st, self, slot, id, user);
    }
}

/* The render is over (t->rc says how): its slot is free, and its end
 * goes to the store. The caller schedules. */
static void end_task(videos_state_t *st, pv_actor_t *self, render_task_t *t)
{
    for (int i = 0; i < st->max_running; i++)
        if (st->running[i] == t)
            st->running[i] = NULL;
    user_stat_t *us = user_stat(st, t->user);
    if (us && us->running > 0)
        us->running--;
    vupdate_t *u = vupdate_new(st, self, t->id, t->user);
    if (!u) { /* its end is lost: rendered again after the job table is read again */
        broadcast_live(st, t->id, -1);
        resync_later(st);
    } else {
        /* QUEUED too: the store may have missed the start (its update
         * failed); the end still applies. */
        u->from_mask = 1u << PV_VIDEO_RUNNING | 1u << PV_VIDEO_QUEUED;
        u->finished = true;
        u->jobs = -1;
        u->live_end = true; /* the loops show live progress until the record changes */
        int outcome = t->rc == 0 ? PV_M_JOBS_READY
                      : t->rc == -ECANCELED ? PV_M_JOBS_CANCELLED : PV_M_JOBS_FAILED;
        pv_metrics_add(st->app->metrics, outcome, 1);
        if (t->rc == 0) {
            u->status = PV_VIDEO_READY;
            u->progress = 1.0;
            u->ready = true;
            memcpy(u->sha, t->sha, 32);
            memcpy(u->poster_sha, t->poster_sha, 32);
            /* the blobs stay pinned until the record names them */
            pv_blob_pin_move(st->app->store, &u->pin, &t->pin);
            pv_blob_pin_move(st->app->store, &u->poster_pin, &t->poster_pin);
            u->bytes = t->bytes;
        } else if (t->rc == -ECANCELED) {
            u->status = PV_VIDEO_CANCELLED;
        } else {
            u->status = PV_VIDEO_FAILED;
            u->set_error = true;
            if (t->rc == -ENOSPC)
                snprintf(u->error, sizeof(u->error), "the disk is full; free space and retry");
            else
                snprintf(u->error, sizeof(u->error), "%s", *t->err ? t->err : strerror(-t->rc));
        }
        pv_store_submit(st->app->store, &u->sreq);
    }
    pv_msg_free(&t->msg);
}

/* End an open render that is between slices, at once (cancelled, or its
 * next slice could not be submitted): its temp files go. */
static void end_idle(videos_state_t *st, pv_actor_t *self, render_task_t *t, int rc)
{
    pv_render_free(t->render);
    t->render = NULL;
    unlink(t->out);
    unlink(t->poster);
    t->rc = rc;
    t->done = true;
    end_task(st, self, t);
}

/* The open render due a thread: the one whose user had a slice least
 * recently, then the one that had one least recently itself (round robin
 * across users, then across one user's renders). */
static render_task_t *pick_slice(videos_state_t *st)
{
    render_task_t *best = NULL;
    uint64_t best_u = 0;
    for (int i = 0; i < st->max_running; i++) {
        render_task_t *t = st->running[i];
        if (!t || t->on_pool)
            continue;
        user_stat_t *u = user_stat(st, t->user);
        uint64_t lu = u ? u->last_slice : 0;
        if (!best || lu < best_u || (lu == best_u && t->last_slice < best->last_slice)) {
            best = t;
            best_u = lu;
        }
    }
    return best;
}

/* Give the free render threads to the open renders due them. */
static void dispatch(videos_state_t *st, pv_actor_t *self)
{
    render_task_t *t;
    while (st->on_pool < st->threads && (t = pick_slice(st)) != NULL) {
        if (atomic_load(&t->cancel)) {
            end_idle(st, self, t, -ECANCELED);
            continue;
        }
        t->last_slice = ++st->slices;
        user_stat_t *u = user_stat(st, t->user);
        if (u)
            u->last_slice = t->last_slice;
        int rc = pv_pool_submit(st->app->render, render_work, &t->msg);
        if (rc < 0) { /* out of memory (or stopping): the user can retry it */
            snprintf(t->err, sizeof(t->err), "cannot go on with the render: %s", strerror(-rc));
            end_idle(st, self, t, rc);
            continue;
        }
        /* Its answer cannot run before this returns: we are on the actor's loop. */
        t->on_pool = true;
        st->on_pool++;
    }
}

/* The continuation of a slice: the pool answered it. */
static void rendered(pv_msg_t *msg)
{
    render_task_t *t = (render_task_t *)msg;
    videos_state_t *st = t->st;
    pv_actor_t *self = t->videos;
    t->on_pool = false;
    st->on_pool--;
    if (t->done)
        end_task(st, self, t); /* frees t */
    else if (atomic_load(&t->cancel))
        end_idle(st, self, t, -ECANCELED);
    schedule(st, self);
}

static void on_progress(videos_state_t *st, pv_actor_t *self, progress_msg_t *m)
{
    render_task_t *t = m->task;
    /* The task's answer follows its progress (one sender, one order), so
     * it is still running; a pointer compare checks that all the same. */
    bool running = false;
    for (int i = 0; i < st->max_running; i++)
        running |= st->running[i] == t;
    if (!running)
        return;
    pv_metrics_add(st->app->metrics, PV_M_RENDER_FRAMES, m->done - t->frames_counted);
    t->frames_counted = m->done;
    double p = m->total > 0 ? (double)m->done / (double)m->total : 0;
    notify_progress(st, t->id, p);
    t->permille = m->total > 0 ? (int)(m->done * 1000 / m->total) : 0;
    broadcast_live(st, t->id, t->permille);
    int permille = (int)(p * 1000);
    if (permille / 100 != (permille - 10) / 100 && permille < 1000) {
        vupdate_t *u = vupdate_new(st, self, t->id, t->user);
        if (u) { /* coarse: every 10 % */
            u->from_mask = 1u << PV_VIDEO_RUNNING;
            u->progress = p;
            u->notify = false;
            pv_store_submit(st->app->store, &u->sreq);
        }
    }
}

/* ---------------- commands: cancel, retry ---------------- */

static void job_cmd(videos_state_t *st, pv_actor_t *self, pv_job_cmd_t *c)
{
    if (c->op == PV_JOB_DROP) {
        render_task_t *t = running_task(st, c->video_id);
        if (t)
            atomic_store(&t->cancel, true);
        dequeue_id(st, c->video_id);
        end_subs(st, c->video_id, NULL); /* "gone", then the streams end */
        if (t && !t->on_pool) { /* between slices: it ends now */
            end_idle(st, self, t, -ECANCELED);
            schedule(st, self);
        }
        publish_gauges(st);
        pv_actor_reply(&c->msg, 0);
        return;
    }
    pv_txn_t txn;
    pv_video_t v = {0};
    int rc = pv_txn_begin(st->app->store, &txn, false);
    if (rc == 0) {
        /* The command names a video, not its owner: find the owner. */
        pv_val_t val;
        if (c->has_user)
            rc = pv_video_load(&txn, c->user_id, c->video_id, &v);
        else if ((rc = pv_txn_get(&txn, PV_DB_JOBS, c->video_id, 16, &val)) == 0 && val.len == 16) {
            memcpy(c->user_id, val.data, 16);
            rc = pv_video_load(&txn, c->user_id, c->video_id, &v);
        } else if (rc == 0) {
            rc = -EIO;
        } else {
            rc = pv_video_find(&txn, c->video_id, &v);
            if (rc == 0)
                memcpy(c->user_id, v.user_id, 16);
        }
        pv_txn_abort(&txn);
    }
    if (rc < 0) {
        snprintf(c->err, sizeof(c->err), "no such video");
        pv_actor_reply(&c->msg, rc == -ENOENT ? -ENOENT : rc);
        return;
    }
    vupdate_t *u = NULL;
    if (c->op == PV_JOB_CANCEL) {
        if (v.status != PV_VIDEO_QUEUED && v.status != PV_VIDEO_RUNNING) {
            snprintf(c->err, sizeof(c->err), "the video is %s; only queued or running videos can be cancelled",
                     pv_video_status_name(v.status));
            rc = -EINVAL;
        } else {
            render_task_t *t = running_task(st, c->video_id);
            if (t) {
                atomic_store(&t->cancel, true); /* end_task writes it */
                if (!t->on_pool) { /* between slices: it ends now */
                    end_idle(st, self, t, -ECANCELED);
                    schedule(st, self);
                }
            } else if (queued(st, c->video_id) || v.status == PV_VIDEO_QUEUED) {
                u = vupdate_new(st, self, c->video_id, c->user_id);
                if (u) { /* no update, no cancel: it stays queued */
                    dequeue_id(st, c->video_id);
                    pv_metrics_add(st->app->metrics, PV_M_JOBS_CANCELLED, 1);
                    u->from_mask = 1u << PV_VIDEO_QUEUED;
                    u->status = PV_VIDEO_CANCELLED;
                    u->finished = true;
                    u->jobs = -1;
                } else {
                    rc = -ENOMEM;
                }
            }
        }
    } else if (c->op == PV_JOB_RETRY) {
        if (v.status != PV_VIDEO_FAILED && v.status != PV_VIDEO_CANCELLED) {
            snprintf(c->err, sizeof(c->err), "the video is %s; only failed or cancelled videos can be retried",
                     pv_video_status_name(v.status));
            rc = -EINVAL;
        } else if ((u = vupdate_new(st, self, c->video_id, c->user_id)) != NULL) {
            u->from_mask = (1u << PV_VIDEO_FAILED) | (1u << PV_VIDEO_CANCELLED);
            u->status = PV_VIDEO_QUEUED;
            u->progress = 0;
            u->set_error = true;
            u->error[0] = '\0';
            u->jobs = +1;
            u->requeue = true;
        } else {
            rc = -ENOMEM;
        }
    }
    pv_video_clear(&v);
    publish_gauges(st);
    if (u) { /* answered when it has committed (on_stored): not before */
        u->cmd = c;
        pv_store_submit(st->app->store, &u->sreq);
        return;
    }
    pv_actor_reply(&c->msg, rc);
}

/* ---------------- resync: the job table read again ---------------- */


static void resync_later(videos_state_t *st)
{
    if (st->stopping || !st->resync_ev || evtimer_pending(st->resync_ev, NULL))
        return;
    struct timeval tv = {st->resync_ms / 1000, (st->resync_ms % 1000) * 1000};
    evtimer_add(st->resync_ev, &tv);
    pv_warn("videos", "a job could not be handled; reading the job table again in %d ms",
            st->resync_ms);
    st->resync_ms = st->resync_ms * 2 > RESYNC_MAX_MS ? RESYNC_MAX_MS : st->resync_ms * 2;
}

typedef struct resync_ctx {
    videos_state_t *st;
    pv_actor_t *self;
    pv_txn_t *txn;
    bool failed;
} resync_ctx_t;

/* A job of the store that no one here holds: queue it again; if it was
 * left running (its end was lost), reset it to queued first. */
static int resync_one(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    resync_ctx_t *rc = arg;
    videos_state_t *st = rc->st;
    if (k->len != 16 || v->len != 16 || queued(st, k->data) || running_task(st, k->data))
        return 0;
    pv_video_t vid;
    int err = pv_video_load(rc->txn, v->data, k->data, &vid);
    if (err < 0) {
        rc->failed |= err != -ENOENT;
        return 0;
    }
    if (vid.status == PV_VIDEO_QUEUED) {
        enqueue(st, k->data, v->data);
    } else if (vid.status == PV_VIDEO_RUNNING) {
        vupdate_t *u = vupdate_new(st, rc->self, k->data, v->data);
        if (u) {
            u->from_mask = 1u << PV_VIDEO_RUNNING;
            u->status = PV_VIDEO_QUEUED;
            u->progress = 0;
            u->requeue = true;
            pv_store_submit(st->app->store, &u->sreq);
        }
        rc->failed |= !u;
    }
    pv_video_clear(&vid);
    return 0;
}

static void resync(evutil_socket_t fd, short what, void *arg)
{
    pv_actor_t *self = arg;
    videos_state_t *st = pv_actor_state(self);
    pv_txn_t txn;
    resync_ctx_t rc = {.st = st, .self = self, .txn = &txn};
    int err = pv_txn_begin(st->app->store, &txn, false);
    if (err == 0) {
        err = pv_txn_scan(&txn, PV_DB_JOBS, NULL, 0, NULL, 0, false, resync_one, &rc);
        pv_txn_abort(&txn);
    }
    if (err < 0 || rc.failed)
        resync_later(st);
    else
        st->resync_ms = RESYNC_FIRST_MS;
    schedule(st, self);
}

/* ---------------- the actor ---------------- */

static void on_stored(videos_state_t *st, pv_actor_t *self, vupdate_t *u)
{
    if (u->cmd) { /* a cancel or retry: now its answer is known */
        pv_job_cmd_t *c = u->cmd;
        int rc = u->sreq.msg.status;
        u->cmd = NULL;
        if (rc == 0 && !u->applied) { /* its state changed meanwhile */
            snprintf(c->err, sizeof(c->err), "the video changed meanwhile; look again");
            rc = -EINVAL;
        }
        pv_actor_reply(&c->msg, rc);
    }
    if (u->sreq.msg.status < 0) {
        pv_log(PV_LOG_ERROR, "videos", NULL, NULL, "store update failed: %s",
               strerror(-u->sreq.msg.status));
        resync_later(st);
    } else if (u->applied && u->notify)
        notify_status(st, &u->after);
    if (u->live_end) /* committed (or not: the render is over either way) */
        broadcast_live(st, u->id, -1);
    if (u->applied && u->requeue) {
        enqueue(st, u->id, u->user);
        schedule(st, self);
    }
    pv_msg_free(&u->sreq.msg);
}

/* The continuation of every store update. */
static void stored(pv_msg_t *msg)
{
    vupdate_t *u = (vupdate_t *)msg;
    on_stored(u->st, u->self, u);
}

static void on_enqueue(pv_actor_t *self, pv_msg_t *msg)
{
    videos_state_t *st = pv_actor_state(self);
    pv_video_enqueue_t *e = (pv_video_enqueue_t *)msg;
    enqueue(st, e->id, e->user);
    pv_msg_free(msg);
    schedule(st, self);
}

static void on_progress_msg(pv_actor_t *self, pv_msg_t *msg)
{
    on_progress(pv_actor_state(self), self, (progress_msg_t *)msg);
    pv_msg_free(msg);
}

static void on_job_cmd(pv_actor_t *self, pv_msg_t *msg)
{
    job_cmd(pv_actor_state(self), self, (pv_job_cmd_t *)msg);
}

static void on_sub(pv_actor_t *self, pv_msg_t *msg)
{
    subscribe(pv_actor_state(self), ((pv_video_sub_msg_t *)msg)->sub);
    pv_msg_free(msg);
}

static void on_unsub(pv_actor_t *self, pv_msg_t *msg)
{
    unsubscribe(pv_actor_state(self), ((pv_video_sub_msg_t *)msg)->sub);
    pv_msg_free(msg);
}

static void on_shutdown(pv_actor_t *self, pv_msg_t *msg)
{
    videos_state_t *st = pv_actor_state(self);
    st->stopping = true;
    end_subs(st, NULL, SSE_SHUTDOWN);
    pv_msg_free(msg);
}

static const pv_actor_fn videos_on[VIDEOS_MSG_COUNT] = {
    [PV_VIDEOS_ENQUEUE] = on_enqueue,
    [PV_VIDEOS_JOB_CMD] = on_job_cmd,
    [PV_VIDEOS_SUB] = on_sub,
    [PV_VIDEOS_UNSUB] = on_unsub,
    [PV_VIDEOS_SHUTDOWN] = on_shutdown,
    [VIDEOS_PROGRESS] = on_progress_msg,
};
static const pv_actor_def_t videos_def = {"videos", videos_on, VIDEOS_MSG_COUNT};

/* ---------------- start-up recovery ---------------- */

typedef struct recover_ctx {
    videos_state_t *st;
    pv_txn_t *txn;
    int n, reset;
} recover_ctx_t;

/* In the writer's transaction: a job that was running when pvd stopped is
 * queued again (it renders again from scratch). */
static int reset_one(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    recover_ctx_t *rc = arg;
    pv_video_t vid;
    if (k->len != 16 || v->len != 16 || pv_video_load(rc->txn, v->data, k->data, &vid) < 0)
        return 0;
    int err = 0;
    if (vid.status == PV_VIDEO_RUNNING) {
        vid.status = PV_VIDEO_QUEUED;
        vid.progress = 0;
        err = pv_video_save(rc->txn, &vid);
        rc->reset++;
    }
    pv_video_clear(&vid);
    return err;
}

static int reset_running(pv_txn_t *txn, void *arg)
{
    recover_ctx_t *rc = arg;
    rc->txn = txn;
    return pv_txn_scan(txn, PV_DB_JOBS, NULL, 0, NULL, 0, false, reset_one, rc);
}

static int recover_one(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    recover_ctx_t *rc = arg;
    if (k->len == 16 && v->len == 16) {
        enqueue(rc->st, k->data, v->data);
        rc->n++;
    }
    return 0;
}

static int recover(videos_state_t *st)
{
    recover_ctx_t rc = {.st = st};
    int err = pv_store_write_sync(st->app->store, reset_running, &rc);
    if (err < 0)
        return err;
    pv_txn_t txn;
    if ((err = pv_txn_begin(st->app->store, &txn, false)) < 0)
        return err;
    err = pv_txn_scan(&txn, PV_DB_JOBS, NULL, 0, NULL, 0, false, recover_one, &rc);
    pv_txn_abort(&txn);
    if (rc.n)
        pv_info("videos", "%d unfinished video job(s) queued again (%d were running)", rc.n, rc.reset);
    return err;
}

int pv_videos_start(pv_app_t *app)
{
    videos_state_t *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->app = app;
    st->user_running_max = app->cfg.user_running_jobs;
    st->resync_ms = RESYNC_FIRST_MS;
    st->threads = pv_pool_threads(app->render);
    st->max_running = app->cfg.render_open_jobs > 0 ? app->cfg.render_open_jobs : 1;
    st->running = calloc((size_t)st->max_running + 1, sizeof(*st->running));
    app->videos = st->running ? pv_actor_new(app->core, &videos_def, st) : NULL;
    if (!app->videos) { /* nothing else holds st yet */
        free(st->running);
        free(st);
        return -ENOMEM;
    }
    st->resync_ev = evtimer_new(pv_loop_base(app->core), resync, app->videos);
    if (!st->resync_ev)
        return -ENOMEM; /* pv_videos_free frees the rest */
    /* Recover before the core loop starts: nothing else runs yet. */
    int rc = recover(st);
    if (rc < 0)
        return rc; /* pv_videos_free frees what was queued */
    if (st->head) { /* schedule once the loop runs: a known id is a no-op */
        pv_video_enqueue_t *e = pv_msg_new(sizeof(*e), PV_VIDEOS_ENQUEUE);
        if (e) {
            memcpy(e->id, st->head->id, 16);
            memcpy(e->user, st->head->user, 16);
            pv_actor_send(app->videos, &e->msg);
        }
    }
    return 0;
}

/* The core loop has stopped, so the actor's state is ours to touch here.
 * Each slice on the pool sees its cancel flag at its next frame and its
 * thread becomes free, so the render pool can then be stopped (joined).
 * The answers wait in the stopped actor's mailbox, never handled: those
 * jobs stay `running` in the store, and recover() queues them again at the
 * next start. pv_videos_free frees them with the mailbox, and the open
 * renders between slices from running[]. */
void pv_videos_stop(pv_app_t *app)
{
    if (!app->videos)
        return;
    videos_state_t *st = pv_actor_state(app->videos);
    for (int i = 0; i < st->max_running; i++)
        if (st->running[i])
            atomic_store(&st->running[i]->cancel, true);
}

void pv_videos_free(pv_app_t *app)
{
    if (!app->videos)
        return;
    videos_state_t *st = pv_actor_state(app->videos);
    for (int i = 0; i < st->max_running; i++) /* open, between slices: in no mailbox */
        if (st->running[i] && !st->running[i]->on_pool)
            pv_msg_free(&st->running[i]->msg);
    pv_actor_free(app->videos); /* frees pending messages (slices, updates) */
    app->videos = NULL;
    if (st->resync_ev)
        event_free(st->resync_ev);
    while (st->held) {
        vjob_t *j = st->held;
        st->held = j->next;
        free(j);
    }
    while (st->head) {
        vjob_t *j = st->head;
        st->head = j->next;
        free(j);
    }
    while (st->subs) {
        sub_entry_t *e = st->subs;
        st->subs = e->next;
        free(e);
    }
    free(st->running);
    free(st->users);
    free(st);
}

