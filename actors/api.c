/*
 * api.c — the HTTP API's front: the one route table, the authorize hook
 * (bearer tokens and presigned URLs), calls and the http actor that runs
 * their continuations, error mapping, and the operational endpoints.
 *
 * Every route is declared once, below: method, path, handler, auth, body
 * mode, limits, listeners, name. Dispatch, 404/405, auth, body limits,
 * logs and metrics all come from that table.
 */
#include "api_body.h"
#include "app.h"
#include "videos.h"
#include "pv.h"

#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUB PV_LISTEN_PUBLIC
#define PRIV PV_LISTEN_PRIVATE

static void h_healthz(pv_http_req_t *req);
static void h_readyz(pv_http_req_t *req);

/* max_body 0 means the server default (max_json_bytes / max_upload_bytes). */
const pv_http_route_t pv_api_routes[] = {
    {"GET", "/healthz", h_healthz, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB | PRIV, "healthz"},
    {"GET", "/readyz", h_readyz, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB | PRIV, "readyz"},
    {"GET", "/metrics", pv_h_metrics, PV_AUTH_NONE, PV_BODY_NONE, 0, PRIV, "metrics"},
    {"POST", "/api/v1/auth/signup", pv_h_signup, PV_AUTH_NONE, PV_BODY_MEMORY, 0, PUB, "auth_signup"},
    {"POST", "/api/v1/auth/login", pv_h_login, PV_AUTH_NONE, PV_BODY_MEMORY, 0, PUB, "auth_login"},
    {"POST", "/api/v1/auth/refresh", pv_h_refresh, PV_AUTH_NONE, PV_BODY_MEMORY, 0, PUB, "auth_refresh"},
    {"POST", "/api/v1/auth/logout", pv_h_logout, PV_AUTH_BEARER, PV_BODY_MEMORY, 0, PUB, "auth_logout"},
    {"GET", "/api/v1/me", pv_h_me, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "me"},
    {"POST", "/api/v1/photos", pv_h_photo_upload, PV_AUTH_BEARER, PV_BODY_FILE, 0, PUB, "photo_upload"},
    {"GET", "/api/v1/photos", pv_h_photo_list, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_list"},
    {"GET", "/api/v1/photos/{id}", pv_h_photo_get, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_get"},
    {"DELETE", "/api/v1/photos/{id}", pv_h_photo_delete, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_delete"},
    {"GET", "/api/v1/photos/{id}/content", pv_h_photo_content, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_content"},
    {"GET", "/api/v1/photos/{id}/thumbnail", pv_h_photo_thumbnail, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_thumbnail"},
    {"GET", "/media/photos/{id}/{what}", pv_h_media_photo, PV_AUTH_SIGNED, PV_BODY_NONE, 0, PUB, "media_photo"},
    {"POST", "/api/v1/videos", pv_h_video_create, PV_AUTH_BEARER, PV_BODY_MEMORY, 0, PUB, "video_create"},
    {"GET", "/api/v1/videos", pv_h_video_list, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_list"},
    {"GET", "/api/v1/videos/{id}", pv_h_video_get, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_get"},
    {"DELETE", "/api/v1/videos/{id}", pv_h_video_delete, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_delete"},
    {"POST", "/api/v1/videos/{id}/cancel", pv_h_video_cancel, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_cancel"},
    {"GET", "/api/v1/videos/{id}/events", pv_h_video_events, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_events"},
    {"GET", "/media/videos/{id}/{what}", pv_h_media_video, PV_AUTH_SIGNED, PV_BODY_NONE, 0, PUB, "media_video"},
    /* the web UI (actors/web.c): the page at its client-side routes, and assets */
    {"GET", "/", pv_h_web_index, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_index"},
    {"GET", "/photos", pv_h_web_index, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_index"},
    {"GET", "/videos", pv_h_web_index, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_index"},
    {"GET", "/login", pv_h_web_index, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_index"},
    {"GET", "/assets/{name}", pv_h_web_asset, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_asset"},
    {NULL, NULL, NULL, 0, 0, 0, 0, NULL},
};

/* ---------------- calls ---------------- */

static void call_msg_free(pv_msg_t *m) { free(m); }

void *pv_call_new(pv_http_req_t *req, size_t size, pv_call_fn k)
{
    pv_call_t *c = pv_msg_new(size, PV_MSG_CALL);
    if (!c)
        return NULL;
    pv_http_loop_t *hl = pv_http_app(req);
    c->k = k;
    c->req = req;
    c->hl = hl;
    c->sreq.msg.reply_to = hl->actor;
    c->sreq.msg.free_fn = call_msg_free;
    return c;
}

void pv_call_free(pv_call_t *call) { pv_msg_free(&call->sreq.msg); }

void pv_call_store(pv_call_t *call, pv_store_apply_fn apply)
{
    call->sreq.apply = apply;
    call->sreq.arg = call;
    call->sreq.msg.type = PV_MSG_CALL;
    call->sreq.msg.reply_to = call->hl->actor;
    pv_store_submit(call->hl->app->store, &call->sreq);
}

void pv_call_pool(pv_call_t *call, pv_work_fn work)
{
    pv_call_pool_on(call, call->hl->app->workers, work);
}

void pv_call_pool_on(pv_call_t *call, pv_pool_t *pool, pv_work_fn work)
{
    call->sreq.msg.type = PV_MSG_CALL;
    int rc = pv_pool_submit(pool, work, call->hl->actor, &call->sreq.msg);
    if (rc < 0) {
        pv_api_fail(call->req, rc);
        pv_call_free(call);
    }
}

/* ---------------- the http actor ---------------- */

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    pv_http_loop_t *hl = arg;
    if (!pv_http_server_idle(hl->server))
        return;
    event_del(hl->drain_timer);
    pv_msg_t *m = pv_msg_new(sizeof(pv_msg_t), PV_MSG_DRAINED);
    if (m)
        pv_actor_send(hl->app->main_actor, m);
}

void pv_http_actor_fn(pv_actor_t *self, pv_msg_t *msg)
{
    pv_http_loop_t *hl = pv_actor_state(self);
    switch (msg->type) {
    case PV_MSG_CALL: {
        pv_call_t *c = (pv_call_t *)msg;
        c->k(c); /* the continuation answers and frees the call */
        return;
    }
    case PV_MSG_JOB_CMD:
    case PV_MSG_SSE:
    case PV_MSG_UNSUB_DONE:
        pv_videos_http_msg(self, msg);
        return;
    case PV_MSG_SHUTDOWN: {
        pv_msg_free(msg);
        pv_http_server_shutdown(hl->server);
        struct timeval tv = {0, 20000};
        hl->drain_timer = event_new(pv_loop_base(hl->loop), -1, EV_PERSIST,
                                    drain_check, hl);
        if (hl->drain_timer)
            event_add(hl->drain_timer, &tv);
        return;
    }
    default:
        pv_msg_free(msg);
    }
}

/* ---------------- errors ---------------- */

void pv_api_fail(pv_http_req_t *req, int rc)
{
    switch (rc) {
    case -ENOENT:
        pv_http_respond_error(req, 404, "not_found", "no such object");
        return;
    case -ENOSPC:
        pv_http_respond_error(req, 507, "insufficient_storage",
                              "the store is full; nothing was saved");
        return;
    case -EMSGSIZE:
        pv_http_respond_error(req, 413, "too_large", "the request is too large");
        return;
    case -ESHUTDOWN:
        pv_http_respond_error(req, 503, "shutting_down", "the server is stopping");
        return;
    case -ENOMEM:
    case -EAGAIN:
        pv_http_add_header(req, "Retry-After", "1");
        pv_http_respond_error(req, 503, "overloaded", "try again in a moment");
        return;
    default:
        pv_log(PV_LOG_ERROR, "http", pv_http_request_id(req), NULL,
               "internal error: %s", strerror(-rc));
        pv_http_respond_error(req, 500, "internal", "internal error; see the server log");
    }
}

/* ---------------- auth ---------------- */

pv_app_t *pv_api_app(pv_http_req_t *req)
{
    pv_http_loop_t *hl = pv_http_app(req);
    return hl->app;
}

int pv_api_user_id(pv_http_req_t *req, uint8_t id[16])
{
    const char *u = pv_http_user(req);
    return u ? pv_id_decode(u, id) : -EACCES;
}

/* The user must exist and not be disabled: checked on every request, so a
 * disabled user's tokens stop working at once. */
int pv_api_user_active(pv_app_t *app, const uint8_t id[16])
{
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0)
        return rc;
    pv_val_t v;
    rc = pv_txn_get(&txn, PV_DB_USERS, id, 16, &v);
    if (rc == 0) {
        pv_user_t u;
        rc = pv_user_decode(v.data, v.len, &u);
        if (rc == 0 && u.disabled)
            rc = -EACCES;
    }
    pv_txn_abort(&txn);
    return rc == -ENOENT ? -EACCES : rc;
}

static int authorize_bearer(pv_http_req_t *req, pv_app_t *app)
{
    const char *h = pv_http_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        pv_http_add_header(req, "WWW-Authenticate", "Bearer");
        pv_http_respond_error(req, 401, "unauthorized", "a bearer access token is required");
        return 401;
    }
    char uid[PV_ID_TEXT];
    int rc = pv_jwt_verify(&app->keys, h + 7, uid);
    uint8_t id[16];
    if (rc == 0)
        rc = pv_id_decode(uid, id) < 0 ? -EACCES : pv_api_user_active(app, id);
    if (rc == -ETIMEDOUT) {
        pv_http_add_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        pv_http_respond_error(req, 401, "token_expired", "the access token has expired; refresh it");
        return 401;
    }
    if (rc < 0) {
        pv_http_add_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        pv_http_respond_error(req, 401, "invalid_token", "the access token is not valid");
        return 401;
    }
    pv_http_set_user(req, uid);
    return 0;
}

static int authorize_signed(pv_http_req_t *req, pv_app_t *app)
{
    pv_presign_query_t q;
    int rc = pv_presign_verify(&app->keys, pv_http_raw_path(req),
                               pv_http_query(req), pv_now_ms() / 1000, &q);
    if (rc == -ETIMEDOUT) {
        pv_http_respond_error(req, 403, "expired", "this link has expired");
        return 403;
    }
    if (rc < 0) {
        pv_http_respond_error(req, 403, "forbidden", "this link is not valid");
        return 403;
    }
    pv_http_set_user(req, q.owner);
    return 0;
}

int pv_api_authorize(pv_http_req_t *req, const pv_http_route_t *route)
{
    pv_app_t *app = pv_api_app(req);
    if (route->auth == PV_AUTH_BEARER)
        return authorize_bearer(req, app);
    if (route->auth == PV_AUTH_SIGNED)
        return authorize_signed(req, app);
    return 0;
}

void pv_api_body_error(pv_http_req_t *req, const pv_body_err_t *e)
{
    if (strcmp(e->code, "out_of_memory") == 0) {
        pv_api_fail(req, -ENOMEM); /* 503 with Retry-After */
        return;
    }
    int status = strcmp(e->code, "body_too_large") == 0 ? 413 : 400;
    pv_http_respond_error(req, status, e->code, e->message);
}

json_t *pv_api_json_body(pv_http_req_t *req)
{
    size_t len = 0;
    const char *body = pv_http_body(req, &len);
    json_t *j = NULL;
    pv_body_err_t e;
    if (pv_body_object(body, len, &j, &e) < 0) {
        pv_api_body_error(req, &e);
        return NULL;
    }
    return j;
}

/* ---------------- operations ---------------- */

static void h_healthz(pv_http_req_t *req)
{
    pv_http_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void h_readyz(pv_http_req_t *req)
{
    pv_app_t *app = pv_api_app(req);
    if (atomic_load(&app->ready) && !atomic_load(&app->stopping))
        pv_http_respond(req, 200, "text/plain; charset=utf-8", "ready\n", 6);
    else
        pv_http_respond(req, 503, "text/plain; charset=utf-8", "not ready\n", 10);
}

/* Access log line and metrics, once per answer. */
void pv_api_on_done(pv_http_req_t *req, int status, uint64_t bytes_out,
                    double ms)
{
    pv_app_t *app = pv_api_app(req);
    const pv_http_route_t *r = pv_http_route(req);
    const char *name = r ? r->name : "unmatched";
    pv_metrics_request(app->metrics, name, status, bytes_out, ms);
    if (pv_log_get_level() > PV_LOG_INFO)
        return;
    char extra[512], client[64];
    json_t *p = json_string(pv_http_path(req));
    char *path = p ? json_dumps(p, JSON_ENCODE_ANY) : NULL;
    snprintf(extra, sizeof(extra),
             "\"method\":\"%s\",\"path\":%s,\"route\":\"%s\",\"status\":%d,"
             "\"bytes\":%llu,\"ms\":%.2f,\"remote\":\"%s\"",
             pv_http_method(req), path ? path : "\"\"", name, status,
             (unsigned long long)bytes_out, ms, pv_api_client_addr(req, client, sizeof(client)));
    free(path);
    json_decref(p);
    pv_log(PV_LOG_INFO, "http", pv_http_request_id(req), extra, "request");
}

/* ---------------- TLS reload ---------------- */

int pv_app_tls_reload(pv_app_t *app, char *err, size_t errlen)
{
    SSL_CTX *ctx = pv_tls_ctx_new(app->cfg.tls_cert, app->cfg.tls_key, err, errlen);
    if (!ctx)
        return -EINVAL;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* SIGHUP vs pvctl */
    pthread_mutex_lock(&mu);
    SSL_CTX *old = atomic_exchange(&app->tls, ctx);
    /* An accept on another loop may have just loaded `old` and not yet
     * taken its reference (SSL_new): retire it instead of freeing it now;
     * the oldest retired context goes when the list is full. */
    if (old) {
        int slot = app->n_tls_retired++ % PV_TLS_RETIRED;
        if (app->tls_retired[slot])
            SSL_CTX_free(app->tls_retired[slot]);
        app->tls_retired[slot] = old;
    }
    pthread_mutex_unlock(&mu);
    return 0;
}

/* ---------------- lists ---------------- */

typedef struct list_ctx {
    pv_app_t *app;
    pv_list_item_fn fn;
    pv_sb_t sb;            /* the answer, written as it is read */
    int limit, n;
    bool more;
    uint8_t last_id[16];
} list_ctx_t;

static int list_one(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    list_ctx_t *lc = arg;
    if (lc->n == lc->limit) {
        lc->more = true;
        return 1;
    }
    if (lc->n)
        pv_sb_add(&lc->sb, ",", 1);
    int rc = lc->fn(&lc->sb, lc->app, v);
    if (rc < 0)
        return rc;
    memcpy(lc->last_id, (const uint8_t *)k->data + 16, 16);
    lc->n++;
    return 0;
}

/* ?limit=N&cursor=C: 0, or a 400 answer was sent. */
static int list_params(pv_http_req_t *req, int *limit, uint8_t cursor[16], bool *has_cursor)
{
    pv_body_err_t e;
    pv_list_params_t lp;
    if (pv_body_list_params(pv_http_query(req), &lp, &e) < 0) {
        pv_api_body_error(req, &e);
        return -EINVAL;
    }
    *limit = lp.limit;
    *has_cursor = lp.cursor[0] != '\0';
    if (*has_cursor && pv_id_decode(lp.cursor, cursor) < 0) {
        pv_http_respond_error(req, 400, "invalid_field", "cursor: not a cursor from this list");
        return -EINVAL;
    }
    return 0;
}

void pv_api_list(pv_http_req_t *req, int db, pv_list_item_fn fn)
{
    pv_app_t *app = pv_api_app(req);
    uint8_t uid[16], cursor[16], after[32];
    bool has_cursor;
    list_ctx_t lc = {.app = app, .fn = fn};
    if (list_params(req, &lc.limit, cursor, &has_cursor) < 0)
        return;
    pv_api_user_id(req, uid);
    pv_key2(after, uid, cursor, 16);
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0) {
        pv_api_fail(req, rc);
        return;
    }
    pv_sb_puts(&lc.sb, "{\"items\":[");
    rc = pv_txn_scan(&txn, db, uid, 16, has_cursor ? after : NULL, has_cursor ? sizeof(after) : 0,
                     true, list_one, &lc);
    pv_txn_abort(&txn);
    if (lc.more) {
        char c[PV_ID_TEXT];
        pv_id_encode(lc.last_id, c);
        pv_sb_printf(&lc.sb, "],\"next_cursor\":\"%s\"}", c);
    } else {
        pv_sb_puts(&lc.sb, "],\"next_cursor\":null}");
    }
    if (rc == 0 && lc.sb.failed)
        rc = -ENOMEM;
    if (rc < 0)
        pv_api_fail(req, rc);
    else
        pv_http_respond(req, 200, "application/json; charset=utf-8", lc.sb.p, lc.sb.len);
    pv_sb_free(&lc.sb);
}

/* ---------------- blobs ---------------- */

/* A blob file as the answer: ETag is its hash (content never changes under
 * a name), Range and HEAD through the HTTP layer. */
void pv_api_serve_blob(pv_http_req_t *req, const uint8_t sha[32], const char *ctype)
{
    pv_app_t *app = pv_api_app(req);
    char path[PATH_MAX], hex[65], etag[70];
    pv_blob_path(app->store, sha, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pv_api_fail(req, errno == ENOENT ? -ENOENT : -errno);
        return;
    }
    pv_hex(sha, 32, hex);
    snprintf(etag, sizeof(etag), "\"%s\"", hex);
    pv_http_respond_file(req, fd, ctype, etag, "private, max-age=86400, immutable");
}

/* ---------------- client address ---------------- */

static bool addr_in_list(const char *list, const char *addr, size_t alen)
{
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n && n == alen && strncmp(p, addr, n) == 0)
            return true;
        p += n;
    }
    return false;
}

/* The client's address: the peer's, or, when the peer is a configured
 * trusted proxy, the right-most X-Forwarded-For entry that is not itself a
 * trusted proxy (entries further left are the client's own claims). */
const char *pv_api_client_addr(pv_http_req_t *req, char *buf, size_t buflen)
{
    pv_app_t *app = pv_api_app(req);
    const char *peer = pv_http_remote_addr(req);
    const char *xff = pv_http_header(req, "X-Forwarded-For");
    const char *list = app->cfg.trusted_proxies;
    if (!*list || !xff || !addr_in_list(list, peer, strlen(peer)))
        return peer;
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        size_t n = (size_t)(b - a);
        if (n && n < buflen && !addr_in_list(list, a, n)) {
            memcpy(buf, a, n);
            buf[n] = '\0';
            return buf;
        }
        end = start > xff ? start - 1 : xff;
    }
    return peer;
}
