/*
 * app.h — the application context: what pvd is made of, in one struct.
 *
 * Layers (README, "How a request flows"): base -> runtime, store, http,
 * media -> model -> app (this folder: the context, calls, the handlers'
 * kit, metrics) -> actors -> actors/api (handlers, the route table) ->
 * src/pvd.c. `make layers` checks that includes only point down.
 *
 * Who owns what:
 *  - each HTTP loop owns its connections and requests (src/http/); its
 *    actor (actors/http.c) runs the continuations of its calls;
 *  - the store writer (src/store/) owns every write to the store;
 *  - the auth actor owns the login rate-limit tables; the videos actor owns
 *    the job queue and the renders; the admin actor the pvctl socket; the
 *    sync actor the change-log trimming; the tls actor the certificate;
 *  - pools run blocking work, one pool per kind, named below (the videos
 *    actor's renders too: it decides what runs on `render`). Reads of the
 *    store happen where they are needed, in LMDB read transactions (MVCC,
 *    microseconds).
 * Threads meet in one way only: a message on an actor's mailbox (a pool's
 * work comes back as an answer on the asker's mailbox).
 */
#ifndef PV_APP_H
#define PV_APP_H

#include <stdatomic.h>

#include "base/config.h"
#include "base/crypto.h"
#include "base/pv.h"
#include "http/http.h"
#include "model/media.h"
#include "runtime/actor.h"
#include "store/store.h"

typedef struct pv_app pv_app_t;
typedef struct pv_metrics pv_metrics_t;

/* One HTTP loop: its thread, its server and the actor that gets answers. */
typedef struct pv_http_loop {
    pv_app_t *app;
    int index;
    pv_loop_t *loop;
    pv_actor_t *actor;          /* runs continuations of this loop's calls */
    pv_http_server_t *server;
    struct event *drain_timer;  /* graceful stop: polls for idle */
    pv_msg_t *drain_msg;        /* graceful stop: answered once idle */
    struct pv_http_live *live;  /* running renders' progress: this loop's
                                   copy, kept by its actor (actors/http.c) */
} pv_http_loop_t;

#define PV_TARGETS_MAX 4

/* The blob puller's one public message (app->puller, actors/pull.c): the
 * blobs named, fetched now, ahead of the background pull. Answered with 0
 * once every one is here, -ENOENT when S3 lacks one (or holds other
 * bytes), -EAGAIN when S3 cannot be reached now (patient: kept and tried
 * again with backoff until it can). Any thread may ask. */
enum { PV_PULL_NOW };
#define PV_PULL_MAX 8
typedef struct pv_pull_req {
    pv_msg_t msg;                /* type PV_PULL_NOW */
    int n;                       /* 1..PV_PULL_MAX */
    bool patient;                /* renders wait; a request answers 503 */
    uint8_t sha[PV_PULL_MAX][32];
} pv_pull_req_t;

struct pv_app {
    pv_config_t cfg;
    pv_keys_t keys;
    pv_store_t *store;
    /* pools, one per kind of blocking work */
    pv_pool_t *work;             /* decoding photos, reads for pvctl, backups */
    pv_pool_t *decode_big;       /* one thread: decodes too big to run side by side */
    pv_pool_t *hash;             /* argon2id: half the cores, SCHED_IDLE, so a
                                    login flood cannot take every core */
    pv_pool_t *io;               /* fsync of uploaded bodies */
    pv_pool_t *render;           /* renders (render_workers threads); only the
                                   videos actor submits, a slice a thread */
    int n_loops;
    pv_http_loop_t *loops;
    pv_http_server_t **servers;  /* loops[i].server, as a group */
    pv_loop_t *core;             /* auth, admin, videos, sync, tls */
    pv_actor_t *auth;            /* login admission (rate limits) */
    pv_actor_t *main_actor;      /* pvd's main thread: stop */
    pv_loop_t *main_loop;
    atomic_bool ready;           /* /readyz */
    atomic_bool stopping;
    int64_t started_ms;
    pv_metrics_t *metrics;
    pv_actor_t *videos;          /* video records, job queue, renders */
    struct pv_admin *admin;      /* the pvctl socket (actors/admin.c) */
    pv_actor_t *sync;            /* change-log trimming (actors/sync.c) */
    pv_actor_t *repl;            /* the S3 replicator, on its own loop
                                    (actors/replicate.c); NULL without s3_bucket */
    /* Every enabled replication target (S3, PostgreSQL, DynamoDB), set up
     * before the core loop starts and fixed after: each answers
     * PV_REPL_CTL (actors/replicate.h) and keeps its durable cursor under
     * cursor_key in META; the change log is trimmed only below the lowest
     * (actors/sync.c). */
    struct pv_target {
        char name[8];            /* "s3", "pg", "ddb": pvctl sync ... TARGET */
        char cursor_key[32];     /* META key of its cursor (u64 big-endian) */
        pv_actor_t *actor;
    } targets[PV_TARGETS_MAX];
    int n_targets;
    pv_media_t *media;           /* the links photos and videos carry (to the
                                    appliance, or to S3 with media_from_s3) */
    pv_actor_t *puller;          /* after a restore from S3: fetches the blobs
                                    not here yet (actors/pull.c); NULL once
                                    every blob was here at start */
    pv_actor_t *tls;             /* the certificate's owner (actors/tls.c); each
                                    HTTP server holds its own reference */
    char listeners[256];         /* "https://..., http://..." for status */
};

#endif
