/*
 * app.h — what pvd's actors share: the application context and the "call",
 * the unit of asynchronous work behind one HTTP request.
 *
 * Who owns what:
 *  - each HTTP loop owns its connections and requests; its "http" actor
 *    receives the answers that other owners send back for those requests;
 *  - the store writer (src/store.c) owns every write to the store;
 *  - the auth actor (core loop) owns the login rate-limit tables;
 *  - worker threads (pool) do blocking work: argon2id, image decoding,
 *    fsync of blobs. Reads of the store happen where they are needed, in
 *    LMDB read transactions (MVCC, microseconds).
 *
 * A call is a message that travels: http loop -> (auth actor | pool |
 * store writer) -> back to the http actor of the request's loop, which runs
 * the call's continuation `k` there. Because pv_call_t starts with a
 * pv_store_req_t (which starts with a pv_msg_t), one allocation serves as a
 * message, a pool job and a store write request.
 */
#ifndef PV_APP_H
#define PV_APP_H

#include <stdatomic.h>

#include "runtime/actor.h"
#include "base/config.h"
#include "base/crypto.h"
#include "http/http.h"
#include "base/pv.h"
#include "base/records.h"
#include "store/store.h"

typedef struct pv_app pv_app_t;
typedef struct pv_call pv_call_t;
typedef void (*pv_call_fn)(pv_call_t *call);

/* One HTTP loop: its thread, its server and the actor that gets replies. */
typedef struct pv_http_loop {
    pv_app_t *app;
    int index;
    pv_loop_t *loop;
    pv_actor_t *actor;          /* runs continuations of this loop's calls */
    pv_http_server_t *server;
    struct event *drain_timer;  /* graceful stop: polls for idle */
} pv_http_loop_t;

typedef struct pv_metrics pv_metrics_t;
typedef struct pv_admin pv_admin_t;

struct pv_app {
    pv_config_t cfg;
    pv_keys_t keys;
    pv_store_t *store;
    pv_pool_t *workers;          /* blocking work */
    pv_pool_t *hashers;          /* argon2id only: at most half the cores, so a
                                    login flood cannot take every core */
    SSL_CTX *_Atomic tls;        /* current server context (swapped on reload) */
#define PV_TLS_RETIRED 8
    SSL_CTX *tls_retired[PV_TLS_RETIRED]; /* replaced contexts, freed later */
    int n_tls_retired;
    int n_loops;
    pv_http_loop_t *loops;
    pv_http_server_t **servers;  /* loops[i].server, as a group */
    pv_loop_t *core;             /* auth, admin, videos ... */
    pv_actor_t *auth;            /* login admission (rate limits) */
    pv_actor_t *main_actor;      /* pvd's main thread: stop, reload */
    pv_loop_t *main_loop;
    atomic_bool ready;           /* /readyz */
    atomic_bool stopping;
    int64_t started_ms;
    pv_metrics_t *metrics;
    pv_actor_t *videos;          /* video records, job queue, renders */
    pv_admin_t *admin;           /* the pvctl socket (actors/admin.c) */
    pv_actor_t *sync;            /* change-log trimming (actors/sync.c) */
    char listeners[256];         /* "https://..., http://..." for status */
};

/* ---- admin (actors/admin.c): the pvctl Unix socket on the core loop ---- */
int pv_admin_start(pv_app_t *app);  /* after the store and core loop exist */
void pv_admin_stop(pv_app_t *app);  /* on the core loop's thread or after it stopped */

/* ---- sync (actors/sync.c): trims the change log on the core loop ---- */
int pv_sync_start(pv_app_t *app);   /* before the core loop starts */
void pv_sync_free(pv_app_t *app);   /* after it stopped */

/* Reload the TLS certificate and key from the configured files; the old
 * context stays when the new one is bad. 0 or -errno (err says why). */
int pv_app_tls_reload(pv_app_t *app, char *err, size_t errlen);

/* ---- videos actor commands (actors/videos.c) ----
 * Send a pv_job_cmd_t to app->videos; the reply's status is 0, -ENOENT (no
 * such video), or -EINVAL (not cancellable / not retryable, err says why). */
enum pv_job_op {
    PV_JOB_CANCEL, /* queued or running -> cancelled */
    PV_JOB_RETRY,  /* failed or cancelled -> queued */
    PV_JOB_DROP,   /* the record is gone: stop rendering it, no store update */
};
typedef struct pv_job_cmd {
    pv_msg_t msg;                /* type PV_MSG_JOB_CMD */
    int op;                      /* enum pv_job_op */
    uint8_t video_id[16];
    bool has_user;               /* user_id given (HTTP); else looked up (pvctl) */
    uint8_t user_id[16];
    char err[160];
} pv_job_cmd_t;

/* Message types understood by the http actor and the auth actor. */
enum pv_msg_type {
    PV_MSG_CALL = 1,     /* run call->k on the receiving loop */
    PV_MSG_LOGIN_ADMIT,  /* auth actor: may this login attempt go on? */
    PV_MSG_SHUTDOWN,     /* http actor: stop accepting, drain, then tell main */
    PV_MSG_DRAINED,      /* main: one http loop finished draining */
    PV_MSG_JOB_CMD,      /* videos actor: pv_job_cmd_t (cancel, retry) */
};

struct pv_call {
    pv_store_req_t sreq;  /* first: a message and a store write request */
    pv_call_fn k;         /* continuation, run on the request's loop */
    pv_http_req_t *req;   /* the request being answered */
    pv_http_loop_t *hl;   /* the request's loop */
    int result;           /* the operation's own outcome */
};

/* Allocate a zeroed call of `size` bytes bound to req's loop. */
void *pv_call_new(pv_http_req_t *req, size_t size, pv_call_fn k);
void pv_call_free(pv_call_t *call);
/* Send the call to the store writer; k runs with call->sreq.msg.status. */
void pv_call_store(pv_call_t *call, pv_store_apply_fn apply);
/* Run work on a worker thread, then k on the request's loop. */
void pv_call_pool(pv_call_t *call, pv_work_fn work);
void pv_call_pool_on(pv_call_t *call, pv_pool_t *pool, pv_work_fn work);

/* The http actor's handler (actors/api.c). */
void pv_http_actor_fn(pv_actor_t *self, pv_msg_t *msg);

/* ---- shared by the API actors ---- */
/* The route table (actors/api.c) and the authorize hook. */
extern const pv_http_route_t pv_api_routes[];
int pv_api_authorize(pv_http_req_t *req, const pv_http_route_t *route);
void pv_api_on_done(pv_http_req_t *req, int status, uint64_t bytes_out,
                    double ms);
pv_app_t *pv_api_app(pv_http_req_t *req);
/* Map a store/pipeline result to an error answer (507 for -ENOSPC ...). */
void pv_api_fail(pv_http_req_t *req, int rc);
/* 0 when the user exists and is not disabled; -EACCES otherwise. */
int pv_api_user_active(pv_app_t *app, const uint8_t id[16]);
/* The caller's user id (binary), from the authorize hook. */
int pv_api_user_id(pv_http_req_t *req, uint8_t id[16]);
/* Answer a body parser's error (400, or 413 for body_too_large). */
struct pv_body_err;
void pv_api_body_error(pv_http_req_t *req, const struct pv_body_err *e);
/* The client's address, honouring X-Forwarded-For from trusted proxies. */
const char *pv_api_client_addr(pv_http_req_t *req, char *buf, size_t buflen);
/* Answer with a blob file (ETag, Range, HEAD). */
void pv_api_serve_blob(pv_http_req_t *req, const uint8_t sha[32], const char *ctype);
/* Parse a JSON body; answers 400 itself and returns NULL on failure. */
json_t *pv_api_json_body(pv_http_req_t *req);

/* handlers: actors/auth.c */
void pv_h_signup(pv_http_req_t *req);
void pv_h_login(pv_http_req_t *req);
void pv_h_refresh(pv_http_req_t *req);
void pv_h_logout(pv_http_req_t *req);
void pv_h_me(pv_http_req_t *req);
void pv_auth_actor_fn(pv_actor_t *self, pv_msg_t *msg);
/* Users in a write txn: insert (with its email index; -EEXIST if taken)
 * and save (is_new: refuse to overwrite). */
int pv_user_insert(pv_txn_t *txn, const pv_user_t *u);
int pv_user_save(pv_txn_t *txn, const pv_user_t *u, bool is_new);
void *pv_auth_state_new(const pv_config_t *cfg);
void pv_auth_state_free(void *state);

/* handlers: actors/photos.c */
void pv_h_photo_upload(pv_http_req_t *req);
void pv_h_photo_list(pv_http_req_t *req);
void pv_h_photo_get(pv_http_req_t *req);
void pv_h_photo_content(pv_http_req_t *req);
void pv_h_photo_thumbnail(pv_http_req_t *req);
void pv_h_photo_delete(pv_http_req_t *req);
void pv_h_media_photo(pv_http_req_t *req);
/* A list answer (?limit, ?cursor, newest first) of the caller's records in
 * db (keys user(16)|id(16)); fn writes a record's JSON object into sb. */
typedef int (*pv_list_item_fn)(pv_sb_t *sb, pv_app_t *app, const pv_val_t *record);
void pv_api_list(pv_http_req_t *req, int db, pv_list_item_fn fn);
/* 1 when a queued or running video of the user uses the photo (actors/videos.c). */
int pv_videos_photo_in_use(pv_txn_t *txn, const uint8_t user[16], const uint8_t photo[16]);
/* JSON of a photo with fresh presigned URLs: as text (the one definition
 * of its shape) and parsed. */
void pv_photo_json_write(pv_sb_t *sb, pv_app_t *app, const pv_photo_t *p);
json_t *pv_photo_json(pv_app_t *app, const pv_photo_t *p);

/* the web UI's static files: actors/web.c */
void pv_h_web_index(pv_http_req_t *req);
void pv_h_web_asset(pv_http_req_t *req);

/* handlers: actors/videos_api.c */
void pv_h_video_create(pv_http_req_t *req);
void pv_h_video_list(pv_http_req_t *req);
void pv_h_video_get(pv_http_req_t *req);
void pv_h_video_delete(pv_http_req_t *req);
void pv_h_video_cancel(pv_http_req_t *req);
void pv_h_video_events(pv_http_req_t *req);
void pv_h_media_video(pv_http_req_t *req);

/* metrics: actors/metrics.c */
pv_metrics_t *pv_metrics_new(void);
void pv_metrics_free(pv_metrics_t *m);
void pv_metrics_request(pv_metrics_t *m, const char *route, int status,
                        uint64_t bytes_out, double ms);
void pv_h_metrics(pv_http_req_t *req);
enum pv_metric {
    PV_M_UPLOADS, PV_M_UPLOAD_BYTES, PV_M_JOBS_QUEUED, PV_M_JOBS_RUNNING, PV_M_JOBS_READY,
    PV_M_JOBS_FAILED, PV_M_JOBS_CANCELLED, PV_M_RENDER_FRAMES, PV_M_COUNT
};
void pv_metrics_add(pv_metrics_t *m, int which, long long delta);
void pv_metrics_set(pv_metrics_t *m, int which, long long value);

#endif
