/*
 * pull.c — after `pvd --restore-from` (without --pull-blobs), the blobs
 * the restored records name are fetched from S3 while pvd serves: a
 * restored appliance is up in the time its records take, not its photos.
 *
 * The restore leaves the S3 location in META (PV_PULL_META). While it is
 * there, this actor, on its own loop ("pull"):
 *   - walks the blob table in key order, a page at a time, and fetches
 *     each blob whose file is not here (four at once), checking its bytes
 *     against its name before it is committed like an upload's;
 *   - takes PV_PULL_NOW from anyone who needs a blob now: a download of a
 *     photo or video not fetched yet (src/app/kit.c) waits for it rather
 *     than answering 404, and a render holds its job until its photos are
 *     here (actors/videos.c). These go ahead of the walk, with no limit
 *     but FETCH_MAX;
 *   - once the walk is over and nothing is in flight, deletes the META key
 *     and says so: a restart after that finds nothing to do.
 *
 * S3 unreachable: the walk waits with capped exponential backoff and
 * jitter (1 s to 5 min) and goes on where it was; an impatient asker (an
 * HTTP request) is answered -EAGAIN at once (503 with Retry-After), a
 * patient one (a render) waits with the walk. A blob S3 lacks, or holds
 * with other bytes, is counted and logged; its asker gets -ENOENT.
 *
 * Commits are fsyncs: they block this loop, never a request's.
 */
#include "actors/pull.h"
#include "app/metrics.h"
#include "base/crypto.h"
#include "base/pv.h"
#include "base/text.h"
#include "cloud/credchain.h"
#include "cloud/s3.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BG_AT_ONCE 4          /* background fetches in flight */
#define FETCH_MAX 32          /* all fetches in flight */
#define PAGE 256              /* blob names read from the table at once */
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 300000
#define CREDS_EVERY_MS 60000  /* credentials asked again at most this often */

enum { PULL_INIT = PV_PULL_NOW + 1, PULL_STOP, PULL_MSG_COUNT };

typedef struct puller puller_t;

typedef struct fetch {
    struct fetch *next;
    puller_t *p;
    uint8_t sha[32];
    char hex[65];
    char tmp[PATH_MAX];
    bool bg;                  /* the walk's (counts against BG_AT_ONCE) */
} fetch_t;

typedef struct waiter {
    struct waiter *next;
    pv_pull_req_t *m;
    bool done[PV_PULL_MAX];
    int left;
    int rc;
} waiter_t;

/* A list of names to fetch, in order. */
typedef struct shas {
    uint8_t (*v)[32];
    size_t n, cap, i;
} shas_t;

struct puller {
    pv_app_t *app;
    pv_loop_t *loop;
    pv_actor_t *self;
    struct event *timer;
    pv_curlev_t *http;
    pv_s3_t *s3;
    pv_credchain_t *cc;
    int64_t creds_ms;         /* when the chain was last asked */
    bool creds_asking;
    char bucket[64], prefix[300], region[32], where[400];
    shas_t page;              /* the walk's current page */
    shas_t urgent;            /* askers' names not yet in flight */
    shas_t retry;             /* the walk's names whose fetch failed */
    uint8_t after[32];        /* the walk: the last name read */
    bool started, walked;     /* a page was read; the table is read to its end */
    fetch_t *fetches;
    int n_bg, n_all;
    waiter_t *waiters;
    int failures_in_row;
    int64_t resume_ms;        /* backoff: the walk waits until then */
    uint64_t fetched, present, missing;
    bool finished, finishing, stopping;
    bool broken;              /* could not start: askers are told -EAGAIN */
};

static void pump(puller_t *p);

/* ---------------- lists ---------------- */

static int shas_push(shas_t *s, const uint8_t sha[32])
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        void *v = realloc(s->v, cap * 32);
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    memcpy(s->v[s->n++], sha, 32);
    return 0;
}

static const uint8_t *shas_next(shas_t *s)
{
    if (s->i < s->n)
        return s->v[s->i++];
    s->n = s->i = 0;
    return NULL;
}

static bool shas_empty(const shas_t *s)
{
    return s->i >= s->n;
}

static bool here(puller_t *p, const uint8_t sha[32])
{
    char path[PATH_MAX];
    pv_blob_path(p->app->store, sha, path, sizeof(path));
    struct stat sb;
    return stat(path, &sb) == 0;
}

static fetch_t *in_flight(puller_t *p, const uint8_t sha[32])
{
    for (fetch_t *f = p->fetches; f; f = f->next)
        if (memcmp(f->sha, sha, 32) == 0)
            return f;
    return NULL;
}

/* ---------------- askers ---------------- */

/* The fetch of sha ended with rc (0: here now). Askers waiting for it
 * count it; an impatient one is told -EAGAIN, a patient one keeps waiting
 * (*requeue: the name goes back to the walk's retries). */
static void settle(puller_t *p, const uint8_t sha[32], int rc, bool *requeue)
{
    for (waiter_t **wp = &p->waiters; *wp;) {
        waiter_t *w = *wp;
        for (int i = 0; i < w->m->n; i++) {
            if (w->done[i] || memcmp(w->m->sha[i], sha, 32) != 0)
                continue;
            if (rc == -EAGAIN && w->m->patient) {
                *requeue = true;
                continue;
            }
            w->done[i] = true;
            w->left--;
            if (rc < 0 && (w->rc == 0 || rc == -ENOENT))
                w->rc = rc;
        }
        if (w->left == 0) {
            *wp = w->next;
            pv_actor_reply(&w->m->msg, w->rc);
            free(w);
        } else {
            wp = &w->next;
        }
    }
}

static void on_now(pv_actor_t *self, pv_msg_t *msg)
{
    puller_t *p = pv_actor_state(self);
    pv_pull_req_t *m = (pv_pull_req_t *)msg;
    waiter_t *w = calloc(1, sizeof(*w));
    if (!w || m->n < 1 || m->n > PV_PULL_MAX || p->stopping || p->broken) {
        free(w);
        pv_actor_reply(msg, m->n < 1 || m->n > PV_PULL_MAX ? -EINVAL
                            : p->broken                   ? -EAGAIN
                                                          : -ENOMEM);
        return;
    }
    w->m = m;
    for (int i = 0; i < m->n; i++) {
        if (here(p, m->sha[i])) {
            w->done[i] = true;
            continue;
        }
        if (p->finished) { /* the walk fetched all S3 had: it lacks this one */
            w->done[i] = true;
            w->rc = -ENOENT;
            continue;
        }
        w->left++;
        if (!in_flight(p, m->sha[i]) && shas_push(&p->urgent, m->sha[i]) < 0) {
            w->done[i] = true;
            w->left--;
            w->rc = -ENOMEM;
        }
    }
    if (w->left == 0) {
        pv_actor_reply(msg, w->rc);
        free(w);
        return;
    }
    w->next = p->waiters;
    p->waiters = w;
    pump(p);
}

/* ---------------- fetches ---------------- */

static void fetch_unlink(puller_t *p, fetch_t *f)
{
    for (fetch_t **fp = &p->fetches; *fp; fp = &(*fp)->next)
        if (*fp == f) {
            *fp = f->next;
            break;
        }
    p->n_all--;
    if (f->bg)
        p->n_bg--;
}

static void fetched(const pv_s3_result_t *res, void *arg)
{
    fetch_t *f = arg;
    puller_t *p = f->p;
    fetch_unlink(p, f);
    if (p->stopping) {
        unlink(f->tmp);
        free(f);
        return;
    }
    int rc = res->rc;
    if (rc == 0 && strcmp(res->sha256, f->hex) != 0) {
        pv_warn("pull", "blob %s in S3 has other bytes (sha256 %s); not restored", f->hex,
                res->sha256);
        rc = -ENOENT;
    } else if (rc == 0) {
        rc = pv_blob_commit_file(p->app->store, f->tmp, f->sha, NULL);
        if (rc < 0)
            pv_warn("pull", "cannot store blob %s: %s", f->hex, strerror(-rc));
        else
            p->fetched++, pv_metrics_add(p->app->metrics, PV_M_PULL_FETCHED, 1);
    } else if (rc == -ENOENT) {
        pv_warn("pull", "blob %s is not in S3; what names it cannot be restored", f->hex);
    }
    unlink(f->tmp);
    if (rc == -ENOENT) {
        p->missing++;
        pv_metrics_add(p->app->metrics, PV_M_PULL_MISSING, 1);
    } else if (rc == 0) { /* S3 answers: the walk goes on at once */
        p->failures_in_row = 0;
        p->resume_ms = 0;
    } else if (pv_now_ms() >= p->resume_ms) {
        /* S3 down, a 5xx, the disk: try it again later. The fetches that
         * were in flight beside this one fail with it: one failure. */
        p->failures_in_row++;
        int64_t delay = pv_backoff_ms(p->failures_in_row, BACKOFF_FIRST_MS, BACKOFF_MAX_MS);
        p->resume_ms = pv_now_ms() + delay;
        if (p->failures_in_row == 1 || p->failures_in_row % 10 == 0)
            pv_warn("pull", "fetching blobs from %s failed (%d in a row): %s %s; trying again "
                    "in %.1f s", p->where, p->failures_in_row, strerror(-rc), res->message,
                    (double)delay / 1000.0);
    }
    bool requeue = false;
    settle(p, f->sha, rc == 0 || rc == -ENOENT ? rc : -EAGAIN, &requeue);
    if ((rc < 0 && rc != -ENOENT && f->bg) || requeue)
        shas_push(&p->retry, f->sha); /* out of memory: the next start finds it */
    free(f);
    pump(p);
}

static int fetch_start(puller_t *p, const uint8_t sha[32], bool bg)
{
    fetch_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->p = p;
    f->bg = bg;
    memcpy(f->sha, sha, 32);
    pv_hex(sha, 32, f->hex);
    snprintf(f->tmp, sizeof(f->tmp), "%s/pull-%s", pv_store_tmp_dir(p->app->store), f->hex);
    char key[sizeof(p->prefix) + 80];
    snprintf(key, sizeof(key), "%sblobs/%.2s/%s", p->prefix, f->hex, f->hex);
    pv_s3_sink_t sink = {.kind = PV_S3_TO_PATH, .path = f->tmp};
    int rc = pv_s3_get(p->s3, key, &sink, fetched, f);
    if (rc < 0) {
        free(f);
        return rc;
    }
    f->next = p->fetches;
    p->fetches = f;
    p->n_all++;
    p->n_bg += bg;
    return 0;
}

/* ---------------- the walk ---------------- */

typedef struct page_ctx {
    puller_t *p;
    size_t n;
} page_ctx_t;

static int page_one(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    (void)v;
    page_ctx_t *c = arg;
    if (k->len != 32)
        return 0;
    memcpy(c->p->after, k->data, 32);
    if (shas_push(&c->p->page, k->data) < 0)
        return -ENOMEM;
    return ++c->n >= PAGE;
}

static int read_page(puller_t *p)
{
    pv_txn_t txn;
    page_ctx_t c = {p, 0};
    int rc = pv_txn_begin(p->app->store, &txn, false);
    if (rc < 0)
        return rc;
    rc = pv_txn_scan(&txn, PV_DB_BLOBS, NULL, 0, p->started ? p->after : NULL,
                     p->started ? 32 : 0, false, page_one, &c);
    pv_txn_abort(&txn);
    if (rc < 0)
        return rc;
    p->started = true;
    if (c.n < PAGE)
        p->walked = true;
    return 0;
}

/* The walk's next name not here and not in flight; NULL: none now. */
static const uint8_t *walk_next(puller_t *p)
{
    for (;;) {
        const uint8_t *sha = shas_next(&p->retry);
        if (!sha) {
            sha = shas_next(&p->page);
            if (!sha) {
                if (p->walked || read_page(p) < 0 || shas_empty(&p->page))
                    return NULL;
                continue;
            }
        }
        if (in_flight(p, sha))
            continue;
        if (here(p, sha)) {
            p->present++;
            continue;
        }
        return sha;
    }
}

static int finish_apply(pv_txn_t *txn, void *arg)
{
    (void)arg;
    int rc = pv_txn_del(txn, PV_DB_META, PV_PULL_META, strlen(PV_PULL_META));
    return rc == -ENOENT ? 0 : rc;
}

typedef struct finish_req {
    pv_store_req_t sreq;
    puller_t *p;
} finish_req_t;

static void finished(pv_msg_t *msg)
{
    puller_t *p = ((finish_req_t *)msg)->p;
    int rc = msg->status;
    pv_msg_free(msg);
    p->finishing = false;
    if (rc < 0) { /* the key stays: the next start walks again, finding all here */
        pv_warn("pull", "cannot note that the restore's blobs are all here: %s", strerror(-rc));
    }
    p->finished = true;
    pv_metrics_set(p->app->metrics, PV_M_PULL_ACTIVE, 0);
    if (p->missing)
        pv_error("pull", "the restore's blobs are fetched: %" PRIu64 " now, %" PRIu64
                 " were here; %" PRIu64 " could not be (see above): what names them answers 404",
                 p->fetched, p->present, p->missing);
    else
        pv_info("pull", "the restore's blobs are all here (%" PRIu64 " fetched, %" PRIu64
                " were here)", p->fetched, p->present);
    /* Askers that came meanwhile for a blob S3 lacks: it will not come. */
    while (p->waiters) {
        waiter_t *w = p->waiters;
        p->waiters = w->next;
        for (int i = 0; i < w->m->n; i++)
            if (!w->done[i] && !here(p, w->m->sha[i]))
                w->rc = -ENOENT;
        pv_actor_reply(&w->m->msg, w->rc);
        free(w);
    }
}

static void finish(puller_t *p)
{
    finish_req_t *r = pv_msg_new(sizeof(*r), 0);
    if (!r)
        return; /* the next pump tries again */
    r->p = p;
    r->sreq.apply = finish_apply;
    pv_msg_expect(&r->sreq.msg, p->self, finished);
    p->finishing = true;
    pv_store_submit(p->app->store, &r->sreq);
}

/* ---------------- the pump ---------------- */

static void on_creds(int rc, const pv_aws_creds_t *c, const char *why, void *arg)
{
    puller_t *p = arg;
    p->creds_asking = false;
    if (p->stopping)
        return;
    if (rc == 0) {
        if (p->s3) {
            rc = pv_s3_set_creds(p->s3, c);
        } else {
            pv_s3_config_t sc = {.endpoint = p->app->cfg.s3_endpoint[0] ? p->app->cfg.s3_endpoint
                                                                        : NULL,
                                 .region = p->region, .bucket = p->bucket,
                                 .path_style = p->app->cfg.s3_path_style};
            rc = pv_s3_new(p->http, &sc, c, &p->s3);
        }
        if (rc < 0)
            why = "cannot make the S3 client (endpoint, bucket, region or credentials)";
    }
    if (rc < 0) {
        p->failures_in_row++;
        int64_t delay = pv_backoff_ms(p->failures_in_row, BACKOFF_FIRST_MS, BACKOFF_MAX_MS);
        p->resume_ms = pv_now_ms() + delay;
        pv_warn("pull", "cannot fetch the restore's blobs from %s: %s; trying again in %.1f s",
                p->where, why, (double)delay / 1000.0);
        /* Impatient askers are told now; patient ones wait with the walk. */
        for (bool again = true; again;) {
            again = false;
            for (waiter_t *w = p->waiters; w && !again; w = w->next)
                for (int i = 0; i < w->m->n && !again; i++)
                    if (!w->done[i] && !w->m->patient) {
                        bool requeue = false;
                        settle(p, w->m->sha[i], -EAGAIN, &requeue); /* may free w */
                        again = true;
                    }
        }
        const uint8_t *sha;
        while ((sha = shas_next(&p->urgent)))
            shas_push(&p->retry, sha); /* out of memory: the next start finds it */
    }
    p->creds_ms = pv_now_ms();
    pump(p);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

static void pump(puller_t *p)
{
    if (p->stopping || p->finished || p->creds_asking)
        return;
    int64_t now = pv_now_ms();
    if (!p->s3 || now - p->creds_ms >= CREDS_EVERY_MS) {
        if (p->s3 || now >= p->resume_ms || !shas_empty(&p->urgent)) {
            p->creds_asking = true;
            p->creds_ms = now;
            pv_credchain_get(p->cc, on_creds, p); /* may answer inside: on_creds pumps */
            return;
        }
    }
    if (!p->s3)
        goto wait;
    const uint8_t *sha;
    while (p->n_all < FETCH_MAX && (sha = shas_next(&p->urgent))) {
        if (in_flight(p, sha))
            continue;
        if (here(p, sha)) {
            bool requeue = false;
            settle(p, sha, 0, &requeue);
            continue;
        }
        if (fetch_start(p, sha, false) < 0) {
            bool requeue = false;
            settle(p, sha, -EAGAIN, &requeue);
        }
    }
    if (now < p->resume_ms)
        goto wait;
    while (p->n_bg < BG_AT_ONCE && p->n_all < FETCH_MAX && (sha = walk_next(p))) {
        uint8_t copy[32];
        memcpy(copy, sha, 32); /* the list may move */
        if (fetch_start(p, copy, true) < 0) {
            shas_push(&p->retry, copy);
            p->resume_ms = now + BACKOFF_FIRST_MS;
            break;
        }
    }
    if (p->walked && shas_empty(&p->page) && shas_empty(&p->retry) && shas_empty(&p->urgent) &&
        p->n_all == 0 && !p->finishing) {
        finish(p);
        return;
    }
wait:
    if (p->n_all == 0 && !p->finishing) { /* nothing will wake us but the timer */
        int64_t ms = p->resume_ms > now ? p->resume_ms - now : BACKOFF_FIRST_MS;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        evtimer_add(p->timer, &tv);
    }
}

/* ---------------- start, stop ---------------- */

static void on_init(pv_actor_t *self, pv_msg_t *msg)
{
    puller_t *p = pv_actor_state(self);
    pv_msg_free(msg);
    p->timer = evtimer_new(pv_loop_base(p->loop), on_timer, p);
    int rc = p->timer ? pv_curlev_new(pv_loop_base(p->loop), NULL, &p->http) : -ENOMEM;
    if (rc == 0)
        rc = pv_credchain_new(p->http, p->app->cfg.aws_profile, p->app->cfg.aws_imds_endpoint,
                              &p->cc);
    if (rc < 0) {
        pv_error("pull", "cannot fetch the restore's blobs: %s", strerror(-rc));
        p->broken = true;
        return;
    }
    pv_metrics_set(p->app->metrics, PV_M_PULL_ACTIVE, 1);
    pv_info("pull", "fetching the restore's blobs from %s in the background", p->where);
    pump(p);
}

static void on_stop(pv_actor_t *self, pv_msg_t *msg)
{
    puller_t *p = pv_actor_state(self);
    pv_msg_free(msg);
    p->stopping = true;
    if (p->timer)
        evtimer_del(p->timer);
    pv_s3_free(p->s3); /* each fetch's done runs (cancelled) and drops its file */
    p->s3 = NULL;
    pv_curlev_free(p->http);
    p->http = NULL;
    pv_credchain_free(p->cc);
    p->cc = NULL;
    while (p->waiters) {
        waiter_t *w = p->waiters;
        p->waiters = w->next;
        pv_actor_reply(&w->m->msg, -ECANCELED);
        free(w);
    }
    pv_loop_stop(p->loop);
}

static const pv_actor_fn pull_on[PULL_MSG_COUNT] = {
    [PV_PULL_NOW] = on_now,
    [PULL_INIT] = on_init,
    [PULL_STOP] = on_stop,
};
static const pv_actor_def_t pull_def = {"pull", pull_on, PULL_MSG_COUNT};

/* "s3://BUCKET/PREFIX/" as the restore wrote it. */
static int parse_where(puller_t *p, const char *s, size_t len)
{
    if (len >= sizeof(p->where) || len < 6 || memcmp(s, "s3://", 5) != 0)
        return -EINVAL;
    memcpy(p->where, s, len);
    p->where[len] = '\0';
    const char *b = p->where + 5, *slash = strchr(b, '/');
    size_t bl = slash ? (size_t)(slash - b) : strlen(b);
    if (bl == 0 || bl >= sizeof(p->bucket))
        return -EINVAL;
    memcpy(p->bucket, b, bl);
    p->bucket[bl] = '\0';
    snprintf(p->prefix, sizeof(p->prefix), "%s", slash ? slash + 1 : "");
    return 0;
}

int pv_pull_start(pv_app_t *app, char *err, size_t errlen)
{
    pv_txn_t txn;
    pv_val_t v;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read the store: %s", strerror(-rc));
        return rc;
    }
    puller_t *p = NULL;
    rc = pv_txn_get(&txn, PV_DB_META, PV_PULL_META, strlen(PV_PULL_META), &v);
    if (rc == 0) {
        p = calloc(1, sizeof(*p));
        rc = !p ? -ENOMEM : parse_where(p, v.data, v.len);
    }
    pv_txn_abort(&txn);
    if (rc == -ENOENT)
        return 0; /* nothing to fetch */
    if (rc < 0) {
        snprintf(err, errlen, rc == -EINVAL ? "the store's %s key is not an s3:// location"
                                            : "out of memory", PV_PULL_META);
        free(p);
        return rc;
    }
    p->app = app;
    const pv_config_t *cfg = &app->cfg;
    if (cfg->s3_region[0])
        snprintf(p->region, sizeof(p->region), "%s", cfg->s3_region);
    else if (pv_awscreds_load_region(cfg->aws_profile[0] ? cfg->aws_profile : NULL, p->region,
                                     sizeof(p->region)) < 0 || !p->region[0])
        snprintf(p->region, sizeof(p->region), "us-east-1");
    p->loop = pv_loop_new("pull");
    p->self = p->loop ? pv_actor_new(p->loop, &pull_def, p) : NULL;
    pv_msg_t *init = p->self ? pv_msg_new(sizeof(*init), PULL_INIT) : NULL;
    if (!init) {
        if (p->self)
            pv_actor_free(p->self);
        pv_loop_free(p->loop);
        free(p);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    app->puller = p->self;
    pv_actor_send(p->self, init);
    rc = pv_loop_start(p->loop);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start the pull loop: %s", strerror(-rc));
        return rc; /* pv_pull_free frees the rest */
    }
    return 0;
}

void pv_pull_stop(pv_app_t *app)
{
    if (!app->puller)
        return;
    puller_t *p = pv_actor_state(app->puller);
    pv_msg_t *stop = pv_msg_new(sizeof(*stop), PULL_STOP);
    if (stop) {
        pv_actor_send(app->puller, stop);
    } else {
        p->stopping = true;
        pv_loop_stop(p->loop);
    }
    pv_loop_join(p->loop);
}

void pv_pull_free(pv_app_t *app)
{
    if (!app->puller)
        return;
    puller_t *p = pv_actor_state(app->puller);
    pv_actor_free(app->puller);
    app->puller = NULL;
    if (p->timer)
        event_free(p->timer);
    pv_s3_free(p->s3);
    pv_curlev_free(p->http);
    pv_credchain_free(p->cc);
    free(p->page.v);
    free(p->urgent.v);
    free(p->retry.v);
    pv_loop_free(p->loop);
    free(p);
}
