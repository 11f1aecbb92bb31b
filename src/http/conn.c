/*
 * conn.c — a connection's state machine: request heads in, bodies read,
 * the handler called, keep-alive or close, and the request's accessors.
 *
 * Each accepted socket becomes a pv_conn_t around one bufferevent (plain,
 * or OpenSSL in accepting mode), and a connection handles one request at
 * a time: while a request is in the handler or its answer is being
 * written, bytes that follow (pipelined requests) stay in the input
 * buffer, bounded by the read high-water mark, and are parsed once the
 * answer has drained. The request object is embedded in the connection
 * and reused, so the hot path allocates nothing per request; the only
 * per-request work beyond I/O is the parse, the route match and one
 * evbuffer_add for the whole response head.
 *
 * States (c->state; the enum is in http_int.h):
 *   SNIFF   a TLS listener's new socket, until its first byte says whether
 *           it speaks TLS or plain text (then: answered 400 https_required)
 *   HEAD    waiting for / reading a request head
 *   BODY    reading the body into memory, a temp file or nowhere
 *   FSYNC   the upload is being made durable off the loop (sink.c)
 *   HANDLER the route's handler owns the request until it answers
 *   STREAM  a streamed (SSE) answer is open
 *   SEND    the answer is queued; done when the output buffer drains
 *   LINGER  answered with close: discard what the peer still sends for a
 *           moment so that our answer is not lost to a TCP reset
 * A client that goes away while the handler owns the request leaves the
 * connection "detached" (bev == NULL): the request object stays valid until
 * the handler answers, and the answer is dropped. A connection is freed
 * only when it has no bufferevent, no live request, no fsync in flight and
 * no caller on the stack (refs).
 *
 * Request life: head parsed -> path decoded -> route matched (404/405
 * otherwise) -> the server's authorize hook (may answer before any body
 * is read) -> body read by the route's mode (413 over the limit, 400 on
 * framing errors) -> handler called.
 *
 * Time: the read timeout (bufferevent) only bounds the gap between two
 * bytes, so each phase that waits for the client also has a deadline over
 * its whole length (see "Deadlines"): a head, a body and a linger cannot be
 * stretched by a client that sends a byte every few seconds.
 */
#include "http/http_int.h"
#include "base/pv.h"
#include "base/text.h"

#include <ctype.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A copy made by pv_http_header_all, chained on its request. */
struct pv_req_joined {
    struct pv_req_joined *next;
    char text[];
};

static void pv_conn_process(pv_conn_t *c);
static void pv_req_complete(pv_conn_t *c);
static void pv_conn_deadline_arm(pv_conn_t *c);

/* ---------------------------------------------------------------- *
 * Life of a connection
 * ---------------------------------------------------------------- */

/* Releases what the request holds. The temp file goes unless taken. */
static void pv_req_cleanup(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;

    if (r->data_free)
        r->data_free(r->data);
    r->data_free = NULL;
    r->data = NULL;
    pv_sink_release(&r->sink);
    if (r->send_fd >= 0)
        close(r->send_fd);
    r->send_fd = -1;
    if (r->user && r->user != r->user_small)
        free(r->user);
    r->user = NULL;
    while (r->joined) {
        struct pv_req_joined *j = r->joined;
        r->joined = j->next;
        free(j);
    }
    /* Only a small body buffer is kept for the next request: an idle
     * kept-alive connection holds at most PV_HTTP_BODY_KEEP of it. */
    if (c->body_cap > PV_HTTP_BODY_KEEP) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    c->req_live = false;
}

static void pv_conn_maybe_free(pv_conn_t *c)
{
    if (c->refs > 0 || c->bev || c->sniff || c->req_live || pv_sink_busy(&c->req.sink))
        return;
    pv_http_server_t *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    if (c->timer)
        event_free(c->timer);
    pv_admit_release(s, c->ticket);
    free(c->scratch);
    free(c->body);
    free(c->extra);
    free(c);
}

void pv_conn_release(pv_conn_t *c)
{
    c->refs--;
    pv_conn_maybe_free(c);
}

/* The client is gone (or we give up on it): free the bufferevent now; the
 * request, if the handler owns it, lives on until it is answered. */
/* A socket still being sniffed is closed with its event. */
static void pv_conn_unsniff(pv_conn_t *c)
{
    if (!c->sniff)
        return;
    event_free(c->sniff);
    c->sniff = NULL;
    evutil_closesocket(c->ticket->fd);
    c->ticket->fd = -1;
}

void pv_conn_drop(pv_conn_t *c)
{
    pv_conn_unsniff(c);
    if (!c->bev)
        return;
    bufferevent_free(c->bev);
    c->bev = NULL;
    switch (c->state) {
    case C_BODY:
        pv_req_cleanup(c);
        break;
    case C_STREAM:
        if (c->req.on_close && !c->req.on_close_done) {
            c->req.on_close_done = true;
            c->req.on_close(&c->req, c->req.on_close_arg);
        }
        break;
    case C_SEND:
        pv_req_complete(c);
        break;
    default:
        break; /* HEAD, LINGER: nothing live; FSYNC, HANDLER: wait */
    }
}

void pv_conn_destroy(pv_conn_t *c)
{
    pv_conn_unsniff(c);
    pv_sink_abandon(&c->req.sink);
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->req_live)
        pv_req_cleanup(c);
    c->refs = 0;
    pv_conn_maybe_free(c);
}

/* Ends a connection after a complete answer. When the client may still be
 * sending (unread body, pipelined bytes) we linger: stop writing, discard
 * input for a moment, then close, so the answer is not lost to a reset. */
static void pv_conn_close(pv_conn_t *c)
{
    if (!c->bev)
        return;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    bool unread = evbuffer_get_length(in) > 0 || !c->req.body_done;
    if (!unread || c->peer_eof) {
        if (c->tls) /* a close_notify; the output is drained here */
            SSL_shutdown(bufferevent_openssl_get_ssl(c->bev));
        pv_conn_drop(c);
        return;
    }
    c->state = C_LINGER;
    c->linger_t0_us = pv_mono_us();
    c->linger_bytes = evbuffer_get_length(in);
    evbuffer_drain(in, c->linger_bytes);
    if (!c->tls)
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    pv_conn_set_rto(c, PV_HTTP_LINGER_S);
    pv_conn_deadline_arm(c); /* a peer trickling bytes keeps no linger */
    bufferevent_enable(c->bev, EV_READ);
}

static void pv_conn_linger_read(pv_conn_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    evbuffer_drain(in, n);
    c->linger_bytes += n;
    if (c->linger_bytes > PV_HTTP_LINGER_MAX)
        pv_conn_drop(c);
}

/* ---------------------------------------------------------------- *
 * What answers tell the connection (pv_conn_ops_t)
 * ---------------------------------------------------------------- */

/* The answer is queued; it is complete when the output drains. */
static void pv_conn_enter_send(pv_conn_t *c)
{
    c->state = C_SEND;
    pv_conn_set_rto(c, 0);
    /* Nothing left to write (a HEAD stream ending, or TLS already wrote it
     * all): no write will call us back, so ask for the callback. It runs
     * deferred, from the loop, never inside the caller. */
    if (c->bev && evbuffer_get_length(pv_conn_out(c)) == 0)
        bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
}

static void pv_conn_answered(pv_conn_t *c)
{
    if (c->bev)
        pv_conn_enter_send(c);
    else
        pv_req_complete(c); /* the client is gone: nothing to drain */
}

static const pv_conn_ops_t pv_conn_ops = {
    .answered = pv_conn_answered,
    .cut = pv_conn_drop,
    .release = pv_conn_release,
};

/* ---------------------------------------------------------------- *
 * Requests: head, route, handler
 * ---------------------------------------------------------------- */

/* The answer is complete (drained, or dropped with the client): report it,
 * release the request, and go on with the connection. */
static void pv_req_complete(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;

    if (!c->req_live)
        return;
    pv_http_server_t *s = c->srv;
    if (s->cfg.on_done) {
        double ms = (double)(pv_mono_us() - r->t0_us) / 1000.0;
        s->cfg.on_done(r, r->status, r->bytes_out, ms);
    }
    pv_req_cleanup(c);
    if (!c->bev)
        return;
    if (!c->keep || c->close_after || s->shutting_down) {
        pv_conn_close(c);
        return;
    }
    c->state = C_HEAD;
    pv_conn_process(c);
}

static void pv_req_begin(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;
    memset(r, 0, sizeof(*r));
    r->conn = c;
    r->method = r->raw_path = r->query = r->path = "";
    pv_sink_init(&r->sink);
    r->send_fd = -1;
    r->fr.content_length = -1;
    r->body_done = true;
    r->t0_us = pv_mono_us();
    c->extra_len = 0;
    c->keep = false;
    c->req_live = true;
}

/* splitmix64: request ids need to be unique-ish and unguessable enough for
 * log correlation, not secret. Seeded from getrandom at server creation. */
static uint64_t pv_conn_rand(pv_http_server_t *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool pv_req_id_sane(const char *v, size_t len)
{
    if (len == 0 || len > PV_HTTP_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = v[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
        if (!ok)
            return false;
    }
    return true;
}

/* The client's X-Request-Id when it is sane, else a fresh one. */
static void pv_req_make_id(pv_conn_t *c, const char *incoming)
{
    pv_http_req_t *r = &c->req;
    size_t n = incoming ? strlen(incoming) : 0;
    if (incoming && pv_req_id_sane(incoming, n)) {
        memcpy(r->id, incoming, n + 1); /* n <= PV_HTTP_ID_MAX */
        return;
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t v = pv_conn_rand(c->srv);
    for (int i = 0; i < 16; i++)
        r->id[i] = hex[(v >> (i * 4)) & 15];
    r->id[16] = '\0';
}

/* Plain text came to a TLS listener: whatever it was, it gets the one
 * answer that helps, in plain text (as nginx gives it), then the close. */
#define PV_HTTPS_REQUIRED_MSG                                                                      \
    "this port speaks HTTPS: plain HTTP was sent to it; use https:// instead of http://"

/* An answer to a request we could not parse or keep: then close. */
static void pv_conn_fail_head(pv_conn_t *c, int status, const char *code,
                              const char *msg)
{
    if (c->plain_on_tls) {
        status = 400;
        code = "https_required";
        msg = PV_HTTPS_REQUIRED_MSG;
    }
    pv_req_begin(c);
    pv_req_make_id(c, NULL);
    c->close_after = true;
    c->req.body_done = false; /* what follows is unknown: linger */
    if (status == 503)
        pv_resp_header(&c->req, "Retry-After", "1");
    pv_resp_error(&c->req, status, code, msg);
}

/* Percent-decodes the raw path segment by segment into pathbuf (for
 * pv_http_path) and segbuf (NUL-separated, for captures), then cuts it
 * for the router. Refuses escapes that are bad, NUL, '/', and "." or ".."
 * segments. */
static int pv_req_decode_path(pv_conn_t *c, pv_route_path_t *ps)
{
    const char *raw = c->req.raw_path + 1; /* the parser checked the '/' */
    char *dst = c->pathbuf;
    size_t o = 0;

    for (;;) {
        const char *e = strchr(raw, '/');
        size_t len = e ? (size_t)(e - raw) : strlen(raw);
        dst[o++] = '/';
        ssize_t n = pv_pct_decode(raw, len, dst + o, len, 0);
        if (n < 0 || memchr(dst + o, '\0', (size_t)n) ||
            memchr(dst + o, '/', (size_t)n))
            return -EINVAL;
        if ((n == 1 && dst[o] == '.') ||
            (n == 2 && dst[o] == '.' && dst[o + 1] == '.'))
            return -EINVAL;
        o += (size_t)n;
        if (!e)
            break;
        raw = e + 1;
    }
    dst[o] = '\0';
    for (size_t i = 0; i <= o; i++)
        c->segbuf[i] = dst[i] == '/' ? '\0' : dst[i];
    c->req.path = dst;
    pv_route_split(dst, o, ps);
    return 0;
}

/* The host name of a Host header (its port dropped) into out: a DNS name
 * or an IPv4 address (letters, digits, '.', '-'), or an IPv6 literal in
 * brackets. Anything else could put what it likes into a Location. */
static int pv_req_host_name(const char *host, char *out, size_t outlen)
{
    size_t n;
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        if (!end || (end[1] && end[1] != ':'))
            return -EINVAL;
        n = (size_t)(end - host) + 1;
        for (size_t i = 1; i + 1 < n; i++)
            if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.')
                return -EINVAL;
    } else {
        n = strcspn(host, ":");
        for (size_t i = 0; i < n; i++)
            if (!isalnum((unsigned char)host[i]) && host[i] != '.' && host[i] != '-')
                return -EINVAL;
    }
    if (n < 1 || n >= outlen)
        return -EINVAL;
    memcpy(out, host, n);
    out[n] = '\0';
    return 0;
}

/* The plain listener as a way to HTTPS: answers a redirect to the same
 * host, path and query over HTTPS; returns the status answered. */
static int pv_req_redirect(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;
    const char *host = pv_req_header(r, "Host");
    char name[256];
    if (!host || pv_req_host_name(host, name, sizeof(name)) < 0) {
        pv_resp_error(r, 400, "bad_host", "a redirect to HTTPS needs a valid Host header");
        return 400;
    }
    char port[16] = "";
    int p = c->srv->cfg.redirect_https_port;
    if (p != 443)
        snprintf(port, sizeof(port), ":%d", p);
    const char *q = r->query ? r->query : "";
    size_t len = strlen(name) + strlen(port) + strlen(r->raw_path) + strlen(q) + 16;
    char *loc = malloc(len);
    if (!loc) {
        c->close_after = true;
        pv_resp_error(r, 503, "out_of_memory", "try again");
        return 503;
    }
    snprintf(loc, len, "https://%s%s%s%s%s", name, port, r->raw_path, *q ? "?" : "", q);
    /* 308 keeps a POST a POST; 301 is what every client knows for GET */
    int st = strcmp(r->method, "GET") == 0 || r->head ? 301 : 308;
    pv_resp_header(r, "Location", loc);
    pv_resp_error(r, st, "https_required", loc);
    free(loc);
    return st;
}

static bool pv_req_redirect_exempt(const pv_http_server_t *s, const pv_http_route_t *rt)
{
    for (const char *const *e = s->cfg.redirect_exempt; e && *e; e++)
        if (strcmp(*e, rt->name) == 0)
            return true;
    return false;
}

/* Finds the route for the request: 0 with req->route set, or an HTTP
 * status (404, 405, or a redirect to HTTPS) after answering. */
static int pv_req_route(pv_conn_t *c, const pv_route_path_t *ps)
{
    pv_http_req_t *r = &c->req;
    pv_route_match_t m;

    int st = pv_route_find(c->srv->routes, r->method, c->kind, ps, &m);
    if (c->kind == PV_LISTEN_PRIVATE && c->srv->cfg.redirect_https_port &&
        !(st == 0 && pv_req_redirect_exempt(c->srv, m.route)))
        return pv_req_redirect(c);
    if (st == 404) {
        pv_resp_error(r, 404, "not_found", "no such resource");
        return 404;
    }
    if (st == 405) {
        pv_resp_header(r, "Allow", m.allow);
        pv_resp_error(r, 405, "method_not_allowed",
                      "method not allowed for this resource");
        return 405;
    }
    r->route = m.route;
    r->nparams = m.nparams;
    for (int i = 0; i < m.nparams; i++) {
        r->param[i] = m.param[i];
        /* The same offset in segbuf is the value with a NUL after it. */
        r->param[i].val = c->segbuf + (m.param[i].val - c->pathbuf);
    }
    return 0;
}

static uint64_t pv_req_body_limit(const pv_http_server_t *s, const pv_http_route_t *rt)
{
    if (rt->max_body)
        return rt->max_body;
    return rt->body == PV_BODY_FILE ? s->cfg.max_file_body
                                    : s->cfg.max_memory_body;
}

static void pv_req_dispatch(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;
    c->state = C_HANDLER;
    pv_conn_set_rto(c, 0);
    if (!r->route->fn) {
        pv_resp_error(r, 501, "not_implemented", "no handler");
        return;
    }
    r->route->fn(r);
}

/* ---------------------------------------------------------------- *
 * Bodies
 * ---------------------------------------------------------------- */

/* The upload is durable (rc 0) or could not be made so. */
static void pv_conn_synced(void *arg, int rc)
{
    pv_conn_t *c = arg;
    pv_http_req_t *r = &c->req;

    c->refs++;
    pv_sink_close(&r->sink);
    if (!c->bev) {
        pv_req_cleanup(c); /* nobody to answer: drop the upload */
    } else if (rc < 0) {
        pv_log(PV_LOG_ERROR, PV_HTTP_LOG, r->id, NULL, "upload fsync: %s",
               strerror(-rc));
        c->close_after = true;
        pv_resp_error(r, rc == -ENOSPC ? 507 : 500, "io_error",
                      "could not store the upload");
    } else {
        pv_req_dispatch(c);
    }
    pv_conn_release(c);
}

/* Room for need bytes of a PV_BODY_MEMORY body (its NUL included). The
 * buffer grows as bytes arrive, doubling, and never past what the request
 * may still send (its Content-Length, or the route's limit): memory follows
 * what a client sent, not what it declared, so a thousand clients that
 * announce 64 KiB and trickle cost what they trickled. 0 or -ENOMEM. */
static int pv_body_room(pv_conn_t *c, size_t need)
{
    pv_http_req_t *r = &c->req;

    if (need <= c->body_cap)
        return 0;
    uint64_t most = r->body_limit;
    if (r->fr.content_length >= 0 && (uint64_t)r->fr.content_length < most)
        most = (uint64_t)r->fr.content_length;
    size_t cap = c->body_cap ? c->body_cap : PV_HTTP_BODY_MIN;
    while (cap < need)
        cap *= 2;
    if (cap > most + 1 && need <= most + 1)
        cap = (size_t)most + 1;
    char *nb = pv_fail("http.alloc") ? NULL : realloc(c->body, cap);
    if (!nb)
        return -ENOMEM;
    c->body = nb;
    c->body_cap = cap;
    return 0;
}

/* Takes n body bytes. 0 or -errno. */
static int pv_body_take(pv_conn_t *c, const char *p, size_t n)
{
    pv_http_req_t *r = &c->req;

    if (r->body_mode == PV_BODY_MEMORY) {
        if (pv_body_room(c, r->body_len + n + 1) < 0)
            return -ENOMEM;
        memcpy(c->body + r->body_len, p, n);
        r->body_len += n;
    } else if (r->body_mode == PV_BODY_FILE) {
        int rc = pv_sink_write(&r->sink, p, n);
        if (rc < 0)
            return rc;
    }
    r->body_got += n;
    return 0;
}

static void pv_body_fail(pv_conn_t *c, int status, const char *code,
                         const char *msg)
{
    c->close_after = true;
    pv_resp_error(&c->req, status, code, msg);
}

/* A body that cannot be taken in, answered by its cause: running out of
 * memory or descriptors is 503 (try again), a full disk 507, anything
 * else (an I/O error) 500. Then the connection closes. */
static void pv_body_fail_rc(pv_conn_t *c, int rc)
{
    if (rc == -ENOMEM || rc == -EMFILE || rc == -ENFILE || rc == -EAGAIN) {
        pv_resp_header(&c->req, "Retry-After", "1");
        pv_body_fail(c, 503, "overloaded", "out of resources; try again in a moment");
    } else if (rc == -ENOSPC || rc == -EDQUOT) {
        pv_body_fail(c, 507, "insufficient_storage", "the disk is full; the body was not stored");
    } else {
        pv_body_fail(c, 500, "internal", "could not store the request body");
    }
}

static void pv_body_complete(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;

    r->body_done = true;
    if (r->body_mode == PV_BODY_MEMORY) {
        int rc = c->body ? 0 : pv_body_take(c, "", 0);
        if (rc < 0) {
            pv_body_fail_rc(c, rc);
            return;
        }
        c->body[r->body_len] = '\0';
    } else if (r->body_mode == PV_BODY_FILE) {
        pv_sink_finish(&r->sink, r->body_got);
        c->state = C_FSYNC;
        pv_conn_set_rto(c, 0);
        int rc = pv_sink_sync(&r->sink, c->srv->cfg.io, c->srv->actor, pv_conn_synced, c);
        if (rc != 1)
            pv_conn_synced(c, rc); /* it ran here: no pool took it */
        return;
    }
    pv_req_dispatch(c);
}

/* Feeds one run of input bytes through the framing. Returns the bytes
 * used, or -1 after answering an error. */
static ssize_t pv_body_feed(pv_conn_t *c, const char *p, size_t n, bool *done)
{
    pv_http_req_t *r = &c->req;
    size_t used = 0;
    int sink_rc;

    if (!r->fr.chunked) {
        if ((uint64_t)n > (uint64_t)r->body_left)
            n = (size_t)r->body_left;
        sink_rc = pv_body_take(c, p, n);
        if (sink_rc < 0)
            goto sink_fail;
        r->body_left -= (int64_t)n;
        *done = r->body_left == 0;
        return (ssize_t)n;
    }
    while (used < n && !*done) {
        const char *d;
        size_t dl;
        ssize_t k = pv_http_chunked_feed(&r->chunked, p + used, n - used, &d,
                                         &dl);
        if (k < 0) {
            pv_body_fail(c, 400, "bad_request", "malformed chunked body");
            return -1;
        }
        if (dl) {
            if (r->body_got + dl > r->body_limit) {
                pv_body_fail(c, 413, "too_large", "request body too large");
                return -1;
            }
            sink_rc = pv_body_take(c, d, dl);
            if (sink_rc < 0)
                goto sink_fail;
        }
        used += (size_t)k;
        *done = pv_http_chunked_done(&r->chunked);
    }
    return (ssize_t)used;

sink_fail:
    pv_log(PV_LOG_ERROR, PV_HTTP_LOG, r->id, NULL, "storing request body failed: %s",
           strerror(-sink_rc));
    pv_body_fail_rc(c, sink_rc);
    return -1;
}

/* Returns true when the request moved on (handler, answer, close). */
static bool pv_conn_read_body(pv_conn_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    bool done = false;

    while (!done && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v[16];
        int nv = evbuffer_peek(in, -1, NULL, v, 16);
        size_t used = 0;
        if (nv > 16)
            nv = 16;
        for (int i = 0; i < nv && !done; i++) {
            ssize_t k = pv_body_feed(c, v[i].iov_base, v[i].iov_len, &done);
            if (k < 0)
                return true;
            used += (size_t)k;
            if ((size_t)k < v[i].iov_len && !done)
                break;
        }
        evbuffer_drain(in, used);
        if (used == 0)
            break;
    }
    if (done) {
        pv_body_complete(c);
        return true;
    }
    if (c->peer_eof) {
        pv_conn_drop(c);
        return true;
    }
    pv_conn_set_rto(c, c->srv->cfg.read_timeout_s);
    pv_conn_deadline_arm(c);
    return false;
}

/* Sets up reading the body of an accepted request. */
static void pv_body_begin(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;

    if (r->fr.expect_continue && !r->body_done)
        pv_resp_continue(c);
    c->body_t0_us = pv_mono_us();
    r->body_left = r->fr.content_length;
    if (r->fr.chunked)
        pv_http_chunked_init(&r->chunked);
    if (r->body_mode == PV_BODY_FILE) {
        int rc = pv_sink_open(&r->sink, c->srv->cfg.tmp_dir);
        if (rc < 0) {
            pv_log(PV_LOG_ERROR, PV_HTTP_LOG, r->id, NULL,
                   "cannot create upload file: %s", strerror(-rc));
            pv_body_fail_rc(c, rc);
            return;
        }
    }
    /* A PV_BODY_MEMORY buffer is not made here: it grows as bytes come
     * (pv_body_room), once the route and its limit are known. */
    c->state = C_BODY;
    pv_conn_set_rto(c, c->srv->cfg.read_timeout_s);
    pv_conn_deadline_arm(c);
}

/* Framing, path and route of a head in c->head: 0 to go on, or 1 once it
 * was answered. */
static int pv_req_prepare(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;
    pv_route_path_t ps;

    if (pv_http_parse_framing(c->hdrs, c->nhdrs, r->minor, &r->fr) < 0) {
        r->body_done = false;
        c->close_after = true;
        pv_resp_error(r, 400, "bad_request", "malformed request framing");
        return 1;
    }
    r->body_done = !r->fr.chunked && r->fr.content_length <= 0;
    if (r->fr.expect_other) {
        c->close_after = true;
        pv_resp_error(r, 417, "expectation_failed", "unsupported Expect");
        return 1;
    }
    if (pv_req_decode_path(c, &ps) < 0) {
        pv_resp_error(r, 400, "bad_path", "malformed request path");
        return 1;
    }
    return pv_req_route(c, &ps) != 0;
}

/* A complete head is in c->head: route, check, authorize, then body. */
static void pv_req_start(pv_conn_t *c, const pv_http_reqline_t *rl)
{
    pv_http_req_t *r = &c->req;
    pv_http_server_t *s = c->srv;

    pv_req_begin(c);
    ((char *)rl->method)[rl->method_len] = '\0';
    r->method = rl->method;
    r->head = strcmp(r->method, "HEAD") == 0;
    r->minor = rl->minor_version;
    char *t = (char *)rl->target;
    t[rl->target_len] = '\0';
    char *q = memchr(t, '?', rl->target_len);
    if (q) {
        *q = '\0';
        r->query = q + 1;
    }
    r->raw_path = t;
    for (size_t i = 0; i < c->nhdrs; i++)
        ((char *)c->hdrs[i].value)[c->hdrs[i].value_len] = '\0';
    pv_req_make_id(c, pv_req_header(r, "X-Request-Id"));

    if (c->plain_on_tls) {
        c->close_after = true;
        r->body_done = false; /* whatever follows goes unread: linger */
        pv_resp_error(r, 400, "https_required", PV_HTTPS_REQUIRED_MSG);
        return;
    }
    if (pv_req_prepare(c) != 0)
        return;
    r->body_mode = r->route->body;
    r->body_limit = pv_req_body_limit(s, r->route);
    if (r->fr.content_length > 0 &&
        (uint64_t)r->fr.content_length > r->body_limit) {
        c->close_after = true;
        pv_resp_error(r, 413, "too_large", "request body too large");
        return;
    }
    if (r->route->auth != PV_AUTH_NONE && s->cfg.authorize) {
        int st = s->cfg.authorize(r, r->route);
        if (st != 0) {
            if (!r->answered)
                pv_resp_error(r, st, st == 401 ? "unauthorized" : "forbidden",
                              pv_http_reason(st));
            return;
        }
    }
    if (r->body_done) {
        if (r->body_mode == PV_BODY_FILE) {
            /* An empty upload still gets its (empty) file. */
            pv_body_begin(c);
            if (c->state == C_BODY)
                pv_body_complete(c);
            return;
        }
        pv_body_complete(c);
        return;
    }
    pv_body_begin(c);
}

/* Scratch big enough for a head of n bytes (head, path, segments). */
static int pv_conn_scratch(pv_conn_t *c, size_t n)
{
    size_t need = 3 * (n + 1);
    if (need > c->scratch_cap) {
        size_t cap = need < 2048 ? 2048 : need;
        char *p = pv_fail("http.alloc") ? NULL : realloc(c->scratch, cap);
        if (!p)
            return -ENOMEM;
        c->scratch = p;
        c->scratch_cap = cap;
    }
    c->head = c->scratch;
    c->pathbuf = c->scratch + n + 1;
    c->segbuf = c->scratch + 2 * (n + 1);
    return 0;
}

/* Moves the parsed pointers from the input buffer to c->head. */
static void pv_conn_rebase(pv_conn_t *c, const char *from, pv_http_reqline_t *rl)
{
    rl->method = c->head + (rl->method - from);
    rl->target = c->head + (rl->target - from);
    for (size_t i = 0; i < c->nhdrs; i++) {
        c->hdrs[i].name = c->head + (c->hdrs[i].name - from);
        c->hdrs[i].value = c->head + (c->hdrs[i].value - from);
    }
}

/* Waits for more of a head, or drops a client that shut its side. */
static bool pv_conn_head_wait(pv_conn_t *c, int rto)
{
    if (c->peer_eof) {
        pv_conn_drop(c);
        return true;
    }
    pv_conn_set_rto(c, rto);
    pv_conn_deadline_arm(c);
    return false;
}

/* The head took longer than header_timeout: 408, then close. */
static void pv_conn_head_late(pv_conn_t *c)
{
    c->head_t0_us = 0;
    c->fresh = false;
    pv_conn_fail_head(c, 408, "request_timeout", "the request head took too long to arrive");
}

/* Returns true when the connection moved on. */
static bool pv_conn_read_head(pv_conn_t *c)
{
    pv_http_server_t *s = c->srv;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    size_t mhb = s->cfg.max_header_bytes;

    /* Empty lines before a request are to be ignored (RFC 9112 2.2). */
    while (len >= 2) {
        char two[2];
        evbuffer_copyout(in, two, 2);
        if (two[0] != '\r' || two[1] != '\n')
            break;
        evbuffer_drain(in, 2);
        len -= 2;
    }
    if (len == 0) {
        if (!c->fresh) /* a new connection's deadline runs from the accept */
            c->head_t0_us = 0;
        return pv_conn_head_wait(c, c->fresh ? s->cfg.read_timeout_s
                                             : s->cfg.idle_timeout_s);
    }
    int64_t now = pv_mono_us();
    if (!c->head_t0_us)
        c->head_t0_us = now;
    /* Parse in place from the first chain; make the head contiguous only
     * when it spans chains (pipelined input can be 256 KiB). */
    size_t want = len < mhb ? len : mhb;
    struct evbuffer_iovec v;
    evbuffer_peek(in, -1, NULL, &v, 1);
    size_t n = v.iov_len < want ? v.iov_len : want;
    const char *buf = v.iov_base;
    pv_http_reqline_t rl;
    size_t nh = PV_HTTP_MAX_HEADERS;
    int r = pv_http_parse_request(buf, n, &rl, c->hdrs, &nh, mhb);
    if (r == PV_HTTP_PARSE_PARTIAL && n < want) {
        n = want;
        buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        nh = PV_HTTP_MAX_HEADERS;
        r = buf ? pv_http_parse_request(buf, n, &rl, c->hdrs, &nh, mhb)
                : PV_HTTP_PARSE_BAD;
    }
    if (r == PV_HTTP_PARSE_PARTIAL && len < mhb) {
        if (now - c->head_t0_us >= (int64_t)s->cfg.header_timeout_s * 1000000) {
            pv_conn_head_late(c); /* dribbled in too slowly (the timer's race) */
            return true;
        }
        return pv_conn_head_wait(c, s->cfg.read_timeout_s);
    }
    c->head_t0_us = 0;
    c->fresh = false;
    if (r == PV_HTTP_PARSE_PARTIAL || r == PV_HTTP_PARSE_TOO_LARGE) {
        pv_conn_fail_head(c, 431, "headers_too_large",
                          "request head too large");
        return true;
    }
    if (r < 0) {
        pv_conn_fail_head(c, 400, "bad_request", "malformed request");
        return true;
    }
    c->nhdrs = nh;
    if (pv_conn_scratch(c, (size_t)r) < 0) {
        /* No room to keep the head: the request cannot be served, but it
         * can be answered (from static text), then the connection closes. */
        pv_conn_fail_head(c, 503, "overloaded", "out of memory; try again in a moment");
        return true;
    }
    memcpy(c->head, buf, (size_t)r);
    pv_conn_rebase(c, buf, &rl);
    evbuffer_drain(in, (size_t)r);
    pv_req_start(c, &rl);
    return true;
}

static void pv_conn_process(pv_conn_t *c)
{
    while (c->bev) {
        if (c->state == C_HEAD) {
            if (!pv_conn_read_head(c))
                break;
        } else if (c->state == C_BODY) {
            if (!pv_conn_read_body(c))
                break;
        } else if (c->state == C_LINGER) {
            pv_conn_linger_read(c);
            break;
        } else {
            break;
        }
    }
}

/* ---------------------------------------------------------------- *
 * Deadlines
 * ---------------------------------------------------------------- */

/* A client that sends a byte every few seconds never meets the read
 * timeout, which counts from the last byte. So each phase that waits for
 * the client has a deadline over its whole length:
 *   HEAD    the head whole within header_timeout of its first byte; on a
 *           new connection of the accept, so a TLS handshake counts too
 *   BODY    body_timeout, plus 1 s for every body_min_rate bytes received
 *           (the rule of Apache's mod_reqtimeout): an honest upload on a
 *           slow link keeps earning time, a trickle runs out
 *   LINGER  PV_HTTP_LINGER_S in all
 * One timer a connection, set lazily: armed when the connection starts to
 * wait and only ever moved earlier. When it fires it works out the
 * deadline of the phase the connection is in by then, and acts or sets
 * itself again; so a body that keeps coming costs no timer work per read,
 * and a phase that ended leaves nothing to cancel. */

static int64_t pv_conn_deadline(const pv_conn_t *c)
{
    const pv_http_config_t *cfg = &c->srv->cfg;
    switch (c->state) {
    case C_SNIFF:
    case C_HEAD:
        if (!c->head_t0_us)
            return 0; /* idle between requests: the idle timeout's */
        return c->head_t0_us + (int64_t)cfg->header_timeout_s * 1000000;
    case C_BODY: {
        uint64_t got = c->req.body_got, rate = cfg->body_min_rate;
        uint64_t earned = got / rate * 1000000 + got % rate * 1000000 / rate;
        return c->body_t0_us + (int64_t)cfg->body_timeout_s * 1000000 + (int64_t)earned;
    }
    case C_LINGER:
        return c->linger_t0_us + (int64_t)PV_HTTP_LINGER_S * 1000000;
    default:
        return 0; /* the server's turn, or a write timeout's */
    }
}

static void pv_conn_deadline_arm(pv_conn_t *c)
{
    int64_t at = pv_conn_deadline(c);
    if (!at || !c->timer || (c->timer_at_us && c->timer_at_us <= at))
        return;
    int64_t wait = at - pv_mono_us();
    if (wait < 0)
        wait = 0;
    struct timeval tv = {(time_t)(wait / 1000000), (suseconds_t)(wait % 1000000)};
    evtimer_add(c->timer, &tv);
    c->timer_at_us = at;
}

/* Past the deadline: a request that had begun is answered 408 and the
 * connection closes; one that had not (nothing came, or a TLS handshake
 * that never ended) is closed without a word. */
static void pv_conn_expire(pv_conn_t *c)
{
    pv_log(PV_LOG_DEBUG, PV_HTTP_LOG, c->req_live ? c->req.id : NULL, NULL,
           "connection from %s: too slow", c->remote);
    if (c->state == C_BODY) {
        pv_body_fail(c, 408, "request_timeout", "the request body came too slowly");
    } else if (c->state == C_HEAD &&
               evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        pv_conn_head_late(c);
    } else {
        pv_conn_drop(c);
    }
}

static void pv_conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    pv_conn_t *c = arg;
    (void)fd;
    (void)what;
    c->timer_at_us = 0;
    int64_t at = pv_conn_deadline(c);
    if (!at || (!c->bev && !c->sniff))
        return;
    if (pv_mono_us() < at) {
        pv_conn_deadline_arm(c);
        return;
    }
    c->refs++;
    pv_conn_expire(c);
    pv_conn_release(c);
}

/* ---------------------------------------------------------------- *
 * bufferevent callbacks
 * ---------------------------------------------------------------- */

static void pv_conn_read_cb(struct bufferevent *bev, void *arg)
{
    pv_conn_t *c = arg;
    (void)bev;
    c->refs++;
    pv_conn_process(c);
    pv_conn_release(c);
}

static void pv_conn_write_cb(struct bufferevent *bev, void *arg)
{
    pv_conn_t *c = arg;
    (void)bev;
    if (c->state != C_SEND)
        return;
    c->refs++;
    if (c->req.send_left > 0) {
        if (pv_resp_file_refill(c) < 0)
            pv_conn_drop(c);
    } else if (evbuffer_get_length(pv_conn_out(c)) == 0) {
        pv_req_complete(c);
    }
    pv_conn_release(c);
}

static void pv_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    pv_conn_t *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    c->refs++;
    bool eof_only = (what & BEV_EVENT_EOF) &&
                    !(what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT));
    if (eof_only && !c->tls &&
        (c->state == C_HANDLER || c->state == C_SEND || c->state == C_FSYNC)) {
        /* Half-close: the client may still read our answer. Plain TCP
         * only: libevent's OpenSSL bufferevent stops writing as well as
         * reading at any close it sees (clean, dirty or a reset taken for
         * a dirty shutdown), so on TLS the answer would never drain and
         * the connection, its socket and a file answer's descriptor would
         * stay until pvd stops (no write is pending, so no write timeout
         * fires either). On TLS the client is gone: drop it below. */
        c->peer_eof = true;
    } else if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
               (c->state == C_BODY ||
                (c->state == C_HEAD && evbuffer_get_length(bufferevent_get_input(bev)) > 0))) {
        /* A request stalled half-way: say so before closing. libevent
         * stopped reading on the timeout; the linger turns it back on. */
        pv_conn_expire(c);
    } else {
        if (what & BEV_EVENT_TIMEOUT)
            pv_log(PV_LOG_DEBUG, PV_HTTP_LOG, c->req_live ? c->req.id : NULL,
                   NULL, "connection from %s timed out", c->remote);
        pv_conn_drop(c);
    }
    pv_conn_release(c);
}

/* ---------------------------------------------------------------- *
 * A new connection
 * ---------------------------------------------------------------- */

static void pv_conn_peer(pv_conn_t *c, evutil_socket_t fd, const struct sockaddr *sa)
{
    int one = 1;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
                  c->remote, sizeof(c->remote));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                  c->remote, sizeof(c->remote));
}

/* The bufferevent: OpenSSL in accepting mode over the socket, or plain;
 * it closes fd when freed. 0, or -ENOMEM (fd still the caller's). */
static int pv_conn_bev(pv_conn_t *c, SSL_CTX *ctx, evutil_socket_t fd)
{
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    struct event_base *base = c->srv->base;
    if (!ctx) {
        c->bev = bufferevent_socket_new(base, fd, opts);
        return c->bev ? 0 : -ENOMEM;
    }
    SSL *ssl = SSL_new(ctx); /* holds its own reference to ctx */
    if (ssl)
        c->bev = bufferevent_openssl_socket_new(base, fd, ssl,
                                                BUFFEREVENT_SSL_ACCEPTING, opts);
    if (!c->bev) {
        SSL_free(ssl);
        return -ENOMEM;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    c->tls = true;
    return 0;
}

/* The connection's bufferevent exists: its callbacks, its window and its
 * timeouts, and reading begins. */
static void pv_conn_start(pv_conn_t *c)
{
    pv_http_server_t *s = c->srv;
    bufferevent_setcb(c->bev, pv_conn_read_cb, pv_conn_write_cb,
                      pv_conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, s->in_window);
    pv_conn_set_rto(c, s->cfg.read_timeout_s);
    c->state = C_HEAD;
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* Whether a TLS listener's socket speaks TLS, from its first byte, looked
 * at without taking it (MSG_PEEK, as nginx does): a TLS record starts with
 * its type (0x16 for a handshake), an HTTP request with its method's
 * capitals. Plain text gets a plain bufferevent, to be answered 400
 * https_required; anything else is left to OpenSSL, which refuses it. */
static void pv_conn_sniff(pv_conn_t *c)
{
    evutil_socket_t fd = c->ticket->fd;
    unsigned char first;
    ssize_t n = recv(fd, &first, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(c->sniff, NULL); /* the deadline timer bounds the wait */
        return;
    }
    if (n <= 0) {
        pv_conn_drop(c);
        return;
    }
    bool plain = first >= 'A' && first <= 'Z';
    SSL_CTX *ctx = plain ? NULL : c->srv->tls;
    if ((!plain && !ctx) || pv_conn_bev(c, ctx, fd) < 0) {
        pv_conn_drop(c);
        return;
    }
    event_free(c->sniff);
    c->sniff = NULL;
    c->ticket->fd = -1; /* the bufferevent's now */
    c->plain_on_tls = plain;
    pv_conn_start(c);
}

static void pv_conn_sniff_cb(evutil_socket_t fd, short what, void *arg)
{
    pv_conn_t *c = arg;
    (void)fd;
    (void)what;
    c->refs++;
    pv_conn_sniff(c);
    pv_conn_release(c);
}

void pv_conn_new(pv_http_server_t *s, pv_conn_ticket_t *t)
{
    pv_conn_t *c = pv_fail("http.accept") ? NULL : calloc(1, sizeof(*c));

    if (c) {
        c->srv = s;
        if (!t->tls || s->tls) /* no context yet: the socket is closed */
            c->timer = evtimer_new(s->base, pv_conn_deadline_cb, c);
    }
    if (c && c->timer && t->tls)
        c->sniff = event_new(s->base, t->fd, EV_READ, pv_conn_sniff_cb, c);
    if (!c || !c->timer || (t->tls ? !c->sniff : pv_conn_bev(c, NULL, t->fd) < 0)) {
        if (c && c->timer)
            event_free(c->timer);
        free(c);
        pv_admit_release(s, t); /* closes the socket, uncounts it */
        return;
    }
    if (!t->tls)
        t->fd = -1; /* the bufferevent's now; a sniffed socket stays in t */
    c->ticket = t;
    pv_conn_peer(c, c->bev ? bufferevent_getfd(c->bev) : t->fd, (const struct sockaddr *)&t->sa);
    c->ops = &pv_conn_ops;
    c->kind = t->kind;
    c->fresh = true;
    c->rto_cur = -1;
    c->state = C_SNIFF;
    pv_sink_init(&c->req.sink);
    c->req.send_fd = -1;
    c->req.body_done = true;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    c->head_t0_us = pv_mono_us(); /* the first head's deadline, handshake included */
    pv_conn_deadline_arm(c);
    if (!c->sniff) {
        pv_conn_start(c);
        return;
    }
    c->refs++; /* the first byte is often there already */
    pv_conn_sniff(c);
    pv_conn_release(c);
}

/* ---------------------------------------------------------------- *
 * Request accessors
 * ---------------------------------------------------------------- */

const char *pv_http_method(pv_http_req_t *req) { return req->method; }
bool pv_http_is_head(pv_http_req_t *req) { return req->head; }
const char *pv_http_path(pv_http_req_t *req) { return req->path; }
const char *pv_http_raw_path(pv_http_req_t *req) { return req->raw_path; }
const char *pv_http_query(pv_http_req_t *req) { return req->query; }
const char *pv_http_remote_addr(pv_http_req_t *req)
{
    return req->conn->remote;
}
const char *pv_http_request_id(pv_http_req_t *req) { return req->id; }
const pv_http_route_t *pv_http_route(pv_http_req_t *req)
{
    return req->route;
}
int pv_http_listener_kind(pv_http_req_t *req) { return req->conn->kind; }
void *pv_http_app(pv_http_req_t *req) { return req->conn->srv->cfg.app; }
bool pv_http_is_closed(pv_http_req_t *req) { return req->conn->bev == NULL; }

const char *pv_http_header(pv_http_req_t *req, const char *name)
{
    return pv_req_header(req, name);
}

const char *pv_http_header_all(pv_http_req_t *req, const char *name)
{
    pv_conn_t *c = req->conn;
    size_t lines = 0, len = 0;
    const char *one = NULL;

    if (!c->req_live || !req->method[0])
        return NULL;
    for (size_t i = 0; i < c->nhdrs; i++) {
        if (!pv_http_hdr_is(&c->hdrs[i], name))
            continue;
        one = one ? one : c->hdrs[i].value;
        len += (lines++ ? 2 : 0) + c->hdrs[i].value_len;
    }
    if (lines <= 1)
        return one; /* the common case: the line itself, no copy */
    struct pv_req_joined *j = pv_fail("http.alloc") ? NULL : malloc(sizeof(*j) + len + 1);
    if (!j)
        return NULL;
    char *o = j->text;
    for (size_t i = 0, n = 0; i < c->nhdrs; i++) {
        if (!pv_http_hdr_is(&c->hdrs[i], name))
            continue;
        if (n++) {
            memcpy(o, ", ", 2);
            o += 2;
        }
        memcpy(o, c->hdrs[i].value, c->hdrs[i].value_len);
        o += c->hdrs[i].value_len;
    }
    *o = '\0';
    j->next = req->joined;
    req->joined = j;
    return j->text;
}

const char *pv_http_param(pv_http_req_t *req, const char *name)
{
    size_t nl = strlen(name);
    for (int i = 0; i < req->nparams; i++) {
        const pv_route_param_t *p = &req->param[i];
        if (p->name_len == nl && memcmp(p->name, name, nl) == 0)
            return p->val;
    }
    return NULL;
}

const char *pv_http_query_param(pv_http_req_t *req, const char *name,
                                char *buf, size_t buflen)
{
    const char *p = req->query;
    size_t nl = strlen(name);
    char key[128];

    while (*p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        if (klen < sizeof(key) &&
            pv_pct_decode(p, klen, key, klen, PV_PCT_PLUS_SPACE) == (ssize_t)nl &&
            memcmp(key, name, nl) == 0) {
            const char *v = eq ? eq + 1 : p + plen;
            size_t vlen = eq ? plen - klen - 1 : 0;
            ssize_t n;
            if (vlen >= buflen || (n = pv_pct_decode(v, vlen, buf, vlen, PV_PCT_PLUS_SPACE)) < 0)
                return NULL;
            buf[n] = '\0';
            return buf;
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return NULL;
}

void pv_http_set_user(pv_http_req_t *req, const char *user_id)
{
    if (req->user && req->user != req->user_small)
        free(req->user);
    req->user = NULL;
    if (!user_id)
        return;
    size_t n = strlen(user_id);
    if (n < sizeof(req->user_small)) {
        memcpy(req->user_small, user_id, n + 1);
        req->user = req->user_small;
    } else {
        req->user = strdup(user_id);
    }
}

const char *pv_http_user(pv_http_req_t *req) { return req->user; }

void pv_http_set_data(pv_http_req_t *req, void *data, void (*free_fn)(void *))
{
    req->data = data;
    req->data_free = free_fn;
}

void *pv_http_data(pv_http_req_t *req) { return req->data; }

const char *pv_http_body(pv_http_req_t *req, size_t *len)
{
    if (req->body_mode != PV_BODY_MEMORY || !req->body_done ||
        !req->conn->body) {
        if (len)
            *len = 0;
        return req->body_mode == PV_BODY_MEMORY ? "" : NULL;
    }
    if (len)
        *len = req->body_len;
    return req->conn->body;
}

const pv_http_body_file_t *pv_http_body_file(pv_http_req_t *req)
{
    if (req->body_mode != PV_BODY_FILE || !req->sink.made)
        return NULL;
    return &req->sink.file;
}

void pv_http_body_file_taken(pv_http_req_t *req) { req->sink.taken = true; }
