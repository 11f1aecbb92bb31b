/*
 * kit.c — the handlers' kit (kit.h): calls bound to a request, error
 * mapping, the security headers, the authorize hook (bearer tokens and
 * presigned URLs), the access log, lists, blob answers and the client's
 * address.
 */
#include "app/kit.h"
#include "app/metrics.h"
#include "base/pv.h"
#include "base/text.h"
#include "model/revoked.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------- calls ---------------- */

void *pv_call_new(pv_http_req_t *req, size_t size)
{
    pv_call_t *c = size < sizeof(pv_call_t) ? NULL : pv_msg_new(size, 0);
    if (!c)
        return NULL;
    pv_http_loop_t *hl = pv_http_app(req);
    pv_call_init(c, hl->app, hl->actor);
    c->req = req;
    c->hl = hl;
    return c;
}

void pv_call_work_at(pv_call_t *call, pv_pool_t *pool, pv_work_fn work, pv_call_fn k, int prio)
{
    int rc = pv_call_pool_at(call, pool, work, k, prio);
    if (rc < 0) {
        pv_api_fail(call->req, rc); /* -EAGAIN: 503 with Retry-After */
        pv_call_free(call);
    }
}

void pv_call_work(pv_call_t *call, pv_pool_t *pool, pv_work_fn work, pv_call_fn k)
{
    pv_call_work_at(call, pool, work, k, PV_PRIO_HIGH);
}

/* ---------------- errors ---------------- */

/* The one mapping from a result (pv.h's convention) to an error answer.
 * A result not listed is a bug or an I/O failure: 500, and logged, since
 * only the log can say which. */
static const struct api_error {
    int rc;
    int status;
    const char *code;
    const char *message;
    bool retry;         /* the condition passes: Retry-After: 1 */
} g_api_errors[] = {
    {-ENOENT, 404, "not_found", "no such object", false},
    {-ENOSPC, 507, "insufficient_storage", "the store is full; nothing was saved", false},
    {-EMSGSIZE, 413, "too_large", "the request is too large", false},
    {-ESHUTDOWN, 503, "shutting_down", "the server is stopping", false},
    {-ENOMEM, 503, "overloaded", "try again in a moment", true},
    {-EAGAIN, 503, "overloaded", "try again in a moment", true},
    {-EINPROGRESS, 503, "restoring", "this file is still being restored from the cloud; try "
                                     "again in a moment", true},
};

int pv_api_fail(pv_http_req_t *req, int rc)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_api_errors); i++) {
        const struct api_error *e = &g_api_errors[i];
        if (e->rc != rc)
            continue;
        if (e->retry)
            pv_http_add_header(req, "Retry-After", "1");
        pv_http_respond_error(req, e->status, e->code, e->message);
        return e->status;
    }
    pv_log(PV_LOG_ERROR, "http", pv_http_request_id(req), NULL,
           "internal error: %s", strerror(-rc));
    pv_http_respond_error(req, 500, "internal", "internal error; see the server log");
    return 500;
}

/* A body parser's error: the client's (4xx) with the parser's own code
 * and message, at the status its table gives; the server's (out of
 * memory) like any other result, so every overload answer looks alike. */
void pv_api_body_error(pv_http_req_t *req, const pv_body_err_t *e)
{
    if (e->status >= 500)
        pv_api_fail(req, e->rc);
    else
        pv_http_respond_error(req, e->status, e->code, e->message);
}

/* ---------------- security headers ---------------- */

/* The policy every answer carries; the HTTP layer sends it as given. The
 * web UI (actors/api/web.c) is all same-origin files with no inline script
 * or style, which is what lets the CSP be this strict; photos and videos
 * are shown from blob: URLs made by the page. HSTS goes over TLS only: a
 * browser ignores it on plain HTTP (RFC 6797 8.1), and the plain listener
 * is the private one (health checks, metrics). */
#define CSP_FMT                                                                                    \
    "default-src 'self'; img-src 'self' blob: data:%s%s; media-src 'self' blob:%s%s; "             \
    "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "            \
    "base-uri 'none'; form-action 'self'"
static char g_csp[1024] =
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'";

void pv_api_csp_media_origin(const char *origin)
{
    const char *sp = origin && *origin ? " " : "", *o = origin ? origin : "";
    snprintf(g_csp, sizeof(g_csp), CSP_FMT, sp, o, sp, o);
}

const pv_http_default_header_t pv_api_headers[] = {
    {"X-Content-Type-Options", "nosniff", false},
    {"Referrer-Policy", "no-referrer", false},
    {"X-Frame-Options", "DENY", false},
    {"Content-Security-Policy", g_csp, false},
    {"Strict-Transport-Security", "max-age=31536000", true},
    {NULL, NULL, false},
};

void pv_api_quota_exceeded(pv_http_req_t *req, uint64_t used, uint64_t quota)
{
    char m[200];
    snprintf(m, sizeof(m), "your photos and videos take %.1f MB of the %.1f MB you may store "
             "here (user_storage_bytes); delete some to make room", (double)used / 1e6,
             (double)quota / 1e6);
    pv_http_respond_error(req, 507, "quota_exceeded", m);
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

/* The user exists and is not disabled, in txn; -EACCES otherwise. */
static int user_enabled(pv_txn_t *txn, const uint8_t id[16])
{
    pv_val_t v;
    int rc = pv_txn_get(txn, PV_DB_USERS, id, 16, &v);
    if (rc == 0) {
        pv_user_t u;
        rc = pv_user_decode(v.data, v.len, &u);
        if (rc == 0 && u.disabled)
            rc = -EACCES;
    }
    return rc == -ENOENT ? -EACCES : rc;
}

/* The user must exist and not be disabled: checked on every request, so a
 * disabled user's tokens and links stop working at once. */
int pv_api_user_active(pv_app_t *app, const uint8_t id[16])
{
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0)
        return rc;
    rc = user_enabled(&txn, id);
    pv_txn_abort(&txn);
    return rc;
}

/* The same for a bearer token, which also must not have been ended early
 * (logout, a password reset): one read transaction. */
static int bearer_active(pv_app_t *app, const uint8_t id[16], const pv_jwt_claims_t *c)
{
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0)
        return rc;
    rc = user_enabled(&txn, id);
    if (rc == 0)
        rc = pv_revoked_check(&txn, id, c);
    pv_txn_abort(&txn);
    return rc;
}

static int authorize_bearer(pv_http_req_t *req, pv_app_t *app)
{
    const char *h = pv_http_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        pv_http_add_header(req, "WWW-Authenticate", "Bearer");
        pv_http_respond_error(req, 401, "unauthorized", "a bearer access token is required");
        return 401;
    }
    pv_jwt_claims_t claims;
    int rc = pv_jwt_verify_claims(&app->keys, h + 7, &claims);
    uint8_t id[16];
    if (rc == 0)
        rc = pv_id_decode(claims.user_id, id) < 0 ? -EACCES : bearer_active(app, id, &claims);
    if (rc == -ETIMEDOUT) {
        pv_http_add_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        pv_http_respond_error(req, 401, "token_expired", "the access token has expired; refresh it");
        return 401;
    }
    if (rc == -EACCES) {
        pv_http_add_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        pv_http_respond_error(req, 401, "invalid_token", "the access token is not valid");
        return 401;
    }
    /* The token may be good: pvd could not look its user up. A 401 here
     * would make the client drop a valid session. */
    if (rc < 0)
        return pv_api_fail(req, rc);
    pv_http_set_user(req, claims.user_id);
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
    uint8_t owner[16];
    if (rc == 0) /* a disabled owner's links stop at once, like its tokens */
        rc = pv_id_decode(q.owner, owner) < 0 ? -EACCES : pv_api_user_active(app, owner);
    if (rc == -EACCES || rc == -EINVAL || rc == -ENOENT) {
        pv_http_respond_error(req, 403, "forbidden", "this link is not valid");
        return 403;
    }
    if (rc < 0) /* the link may be good: pvd could not look its owner up */
        return pv_api_fail(req, rc);
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

/* ---------------- lists ---------------- */

typedef struct list_ctx {
    pv_http_req_t *req;
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
    int rc = lc->fn(&lc->sb, lc->req, v);
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
    list_ctx_t lc = {.req = req, .fn = fn};
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

typedef struct blob_call {
    pv_call_t call;
    uint8_t sha[32];
    char ctype[128];
} blob_call_t;

static int serve_blob_file(pv_http_req_t *req, const uint8_t sha[32], const char *ctype)
{
    pv_app_t *app = pv_api_app(req);
    char path[PATH_MAX], hex[65], etag[70];
    pv_blob_path(app->store, sha, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : -errno;
    pv_hex(sha, 32, hex);
    snprintf(etag, sizeof(etag), "\"%s\"", hex);
    pv_http_respond_file(req, fd, ctype, etag, "private, max-age=86400, immutable");
    return 0;
}

/* The puller answered: the blob is here now, or why not. */
static void blob_pulled(pv_call_t *call)
{
    blob_call_t *b = (blob_call_t *)call;
    pv_msg_free(call->answer);
    call->answer = NULL;
    int rc = call->result;
    if (rc == 0)
        rc = serve_blob_file(call->req, b->sha, b->ctype);
    if (rc < 0) /* S3 out of reach now: 503 with Retry-After; lacking it: 404 */
        pv_api_fail(call->req, rc == -EAGAIN || rc == -ECANCELED ? -EINPROGRESS : rc);
    pv_call_free(call);
}

/* A blob file as the answer: ETag is its hash (content never changes under
 * a name), Range and HEAD through the HTTP layer. After a restore from S3
 * a blob may not be here yet: the puller (actors/pull.c) fetches it first,
 * and the request waits for it. */
void pv_api_serve_blob(pv_http_req_t *req, const uint8_t sha[32], const char *ctype)
{
    pv_app_t *app = pv_api_app(req);
    int rc = serve_blob_file(req, sha, ctype);
    if (rc == -ENOENT && app->puller) {
        blob_call_t *b = pv_call_new(req, sizeof(*b));
        pv_pull_req_t *m = b ? pv_msg_new(sizeof(*m), PV_PULL_NOW) : NULL;
        if (!m) {
            if (b)
                pv_call_free(&b->call);
            pv_api_fail(req, -ENOMEM);
            return;
        }
        memcpy(b->sha, sha, 32);
        snprintf(b->ctype, sizeof(b->ctype), "%s", ctype);
        m->n = 1;
        memcpy(m->sha[0], sha, 32);
        pv_call_ask(&b->call, app->puller, &m->msg, blob_pulled);
        return;
    }
    if (rc < 0)
        pv_api_fail(req, rc);
}

/* ---------------- client address ---------------- */

/* An address as text (IPv4 or IPv6) into 16 bytes, IPv4 as ::ffff:a.b.c.d
 * so that both spellings of one address compare equal. */
static bool addr_parse(const char *s, size_t n, uint8_t out[16])
{
    char tmp[INET6_ADDRSTRLEN];
    struct in_addr a4;
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (inet_pton(AF_INET, tmp, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return true;
    }
    return inet_pton(AF_INET6, tmp, out) == 1;
}

/* Whether a is one of the trusted proxies (comma- or space-separated). */
static bool addr_trusted(const char *list, const uint8_t a[16])
{
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        uint8_t t[16];
        if (n && addr_parse(p, n, t) && memcmp(t, a, 16) == 0)
            return true;
        p += n;
    }
    return false;
}

/* The client's address: the peer's, or, when the peer is a configured
 * trusted proxy, the right-most X-Forwarded-For entry that is not itself a
 * trusted proxy (what nginx's real_ip_recursive takes). Entries further
 * left are the client's own claims. The header's lines count together, as
 * one comma-separated list in their order (RFC 9110 5.3): a client that
 * sends its own line ahead of its proxy's must not be taken at its word.
 * Where the client's address should be there is something else, the
 * request counts as the proxy's: no entry a client can shape picks the
 * key its limits count under. */
const char *pv_api_client_addr(pv_http_req_t *req, char *buf, size_t buflen)
{
    pv_app_t *app = pv_api_app(req);
    const char *peer = pv_http_remote_addr(req);
    const char *list = app->cfg.trusted_proxies;
    uint8_t a[16];
    if (!*list || !addr_parse(peer, strlen(peer), a) || !addr_trusted(list, a))
        return peer;
    const char *xff = pv_http_header_all(req, "X-Forwarded-For");
    if (!xff)
        return peer;
    for (const char *end = xff + strlen(xff); end > xff;) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *p = start, *e = end;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        end = start > xff ? start - 1 : xff;
        if (p == e)
            continue; /* an empty list element (RFC 9110 5.6.1) */
        if (!addr_parse(p, (size_t)(e - p), a))
            return peer;
        if (addr_trusted(list, a))
            continue;
        bool v4 = memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
        if (!inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? a + 12 : a, buf, (socklen_t)buflen))
            return peer;
        return buf;
    }
    return peer;
}

/* ---------------- per-address limits ---------------- */

/* What per-address limits count under: an IPv4 address as it is, an IPv6
 * one by its /64 (a subscriber, or a host with privacy addresses, holds a
 * whole /64: counting each address would let it pick a fresh one per try). */
const char *pv_api_limit_key(const char *addr, char *buf, size_t buflen)
{
    struct in6_addr a6;
    if (!strchr(addr, ':') || inet_pton(AF_INET6, addr, &a6) != 1) {
        snprintf(buf, buflen, "%s", addr);
        return buf;
    }
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
        inet_ntop(AF_INET, &a6.s6_addr[12], buf, (socklen_t)buflen);
        return buf;
    }
    memset(&a6.s6_addr[8], 0, 8);
    char net[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a6, net, sizeof(net));
    snprintf(buf, buflen, "%s/64", net);
    return buf;
}
