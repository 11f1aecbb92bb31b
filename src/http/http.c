/*
 * http.c — pv's HTTP/1.1 server: connections, routing, bodies, answers.
 *
 * One pv_http_server_t per event loop. Each accepted socket becomes a
 * pv_conn_t around one bufferevent (plain, or OpenSSL in accepting mode),
 * and a connection handles one request at a time: while a request is in
 * the handler or its answer is being written, bytes that follow (pipelined
 * requests) stay in the input buffer, bounded by the read high-water mark,
 * and are parsed once the answer has drained. The request object is
 * embedded in the connection and reused, so the hot path allocates nothing
 * per request; the only per-request work beyond I/O is the parse, a route
 * scan and one evbuffer_add for the whole response head.
 *
 * States of a connection (c->state):
 *   HEAD    waiting for / reading a request head
 *   BODY    reading the body into memory, a temp file or nowhere
 *   FSYNC   a worker thread is fsync'ing the upload (see pv_fsync_*)
 *   HANDLER the route's handler owns the request until it answers
 *   STREAM  a streamed (SSE) answer is open
 *   SEND    the answer is queued; done when the output buffer drains
 *   LINGER  answered with close: discard what the peer still sends for a
 *           moment so that our answer is not lost to a TCP reset
 * A client that goes away while the handler owns the request leaves the
 * connection "detached" (bev == NULL): the request object stays valid until
 * the handler answers, and the answer is dropped. A connection is freed
 * only when it has no bufferevent, no live request, no fsync job and no
 * caller on the stack (refs).
 *
 * Uploads (PV_BODY_FILE) are written to a mkstemp file as they arrive, with
 * SHA-256 computed on the way; at most PV_HTTP_IN_WINDOW bytes are buffered
 * per connection (the bufferevent stops reading at that high-water mark).
 * The final fsync blocks for as long as the disk needs, so it runs on a
 * short detached thread that signals an eventfd watched by the loop; the
 * request resumes from there. Plain writes to the temp file stay on the
 * loop (they land in the page cache).
 */
#include "http/http.h"
#include "http/http_parse.h"
#include "base/pv.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PV_HTTP_MAX_LISTENERS 8
#define PV_HTTP_MAX_SEGS 32        /* path segments routing looks at */
#define PV_HTTP_MAX_PARAMS 8       /* {name} captures in one pattern */
#define PV_HTTP_IN_WINDOW (256u * 1024)  /* input buffered per connection */
#define PV_HTTP_OUT_WINDOW (256u * 1024) /* file bytes queued ahead (TLS) */
#define PV_HTTP_FILE_CHUNK (64u * 1024)
#define PV_HTTP_LINGER_S 2
#define PV_HTTP_LINGER_MAX (1024u * 1024)
#define PV_HTTP_ID_MAX 64
#define PV_HTTP_TLS_COALESCE (64u * 1024) /* body copied next to the head */
#define PV_HTTP_HEAD_EST 1024u            /* a head without extra headers */

/* Defaults for config fields left at 0. */
#define PV_HTTP_DEF_HEADER_BYTES (16u * 1024)
#define PV_HTTP_DEF_MEMORY_BODY (1u * 1024 * 1024)
#define PV_HTTP_DEF_FILE_BODY (256ull * 1024 * 1024)
#define PV_HTTP_DEF_IDLE_S 60
#define PV_HTTP_DEF_READ_S 30
#define PV_HTTP_DEF_WRITE_S 60

#define LOG_ACTOR "http"

enum pv_conn_state {
    C_HEAD,
    C_BODY,
    C_FSYNC,
    C_HANDLER,
    C_STREAM,
    C_SEND,
    C_LINGER,
};

typedef struct pv_conn pv_conn_t;

/* One compiled segment of a route pattern. */
typedef struct pv_route_seg {
    const char *s; /* literal text, or the capture's name */
    size_t len;
    bool capture;
} pv_route_seg_t;

typedef struct pv_route_c {
    const pv_http_route_t *r;
    int nsegs;
    pv_route_seg_t seg[PV_HTTP_MAX_SEGS];
} pv_route_c_t;

typedef struct pv_listener {
    pv_http_server_t *srv;
    struct evconnlistener *lev;
    struct event *retry;   /* re-enables accepting after an accept error */
    int kind;              /* enum pv_http_listener_kind */
    SSL_CTX *_Atomic *tls; /* NULL: plain HTTP */
    int port;              /* as bound (the OS's choice for port 0) */
} pv_listener_t;

/* An fsync handed to a thread; the loop hears back through efd. */
typedef struct pv_fsync_job {
    int fd;
    int efd;
    _Atomic int result; /* 0 or -errno, written by the thread */
    struct event *ev;
    pv_conn_t *conn;
} pv_fsync_job_t;

struct pv_http_req {
    pv_conn_t *conn;
    const char *method;   /* NUL-terminated inside conn->head */
    const char *raw_path;
    const char *query;
    const char *path;     /* decoded, in the scratch buffer */
    bool head;            /* HEAD request: answer without a body */
    int minor;            /* HTTP/1.minor */
    pv_http_framing_t fr;
    const pv_http_route_t *route;
    int nparams;
    const pv_route_seg_t *param_name[PV_HTTP_MAX_PARAMS];
    const char *param_val[PV_HTTP_MAX_PARAMS];
    char id[PV_HTTP_ID_MAX + 1];
    char user_small[72];
    char *user;           /* user_small, a heap copy, or NULL */
    void *data;
    void (*data_free)(void *);
    /* body */
    int body_mode;
    uint64_t body_limit;
    uint64_t body_got;
    int64_t body_left;    /* Content-Length bytes still to come */
    pv_http_chunked_t chunked;
    bool body_done;       /* the whole body was read (or there is none) */
    size_t body_len;
    pv_http_body_file_t file;
    char *tmp_path;       /* malloc'd for uploads only: keeps the
                             per-request reset small */
    int tmp_fd;
    bool tmp_made, tmp_taken;
    EVP_MD_CTX *md;
    /* answer */
    bool answered;
    int status;
    uint64_t bytes_out;
    int64_t t0_us;
    bool on_close_done;
    void (*on_close)(pv_http_req_t *, void *);
    void *on_close_arg;
    int send_fd;          /* file being sent in chunks (TLS) */
    uint64_t send_off, send_left;
};

struct pv_conn {
    pv_http_server_t *srv;
    pv_conn_t *prev, *next;
    struct bufferevent *bev; /* NULL once the client is gone */
    int kind;
    bool tls;
    int state;
    int refs;         /* callers on the stack; freeing waits for 0 */
    bool req_live;    /* c->req is in use */
    bool keep;        /* the answer said keep-alive */
    bool close_after; /* close once the current answer is done */
    bool peer_eof;    /* the client shut its sending side */
    bool fresh;       /* no request seen yet */
    int rto_cur;      /* read timeout in force (s), 0 none, -1 unset */
    int64_t head_t0_us; /* first byte of the head being read */
    size_t linger_bytes;
    pv_fsync_job_t *job;
    /* Scratch: the head, the decoded path and its segments. Grown only
     * between requests. */
    char *scratch;
    size_t scratch_cap;
    char *head, *pathbuf, *segbuf;
    pv_http_hdr_t hdrs[PV_HTTP_MAX_HEADERS];
    size_t nhdrs;
    char *body;       /* PV_BODY_MEMORY buffer, reused across requests */
    size_t body_cap;
    char *extra;      /* extra response header lines */
    size_t extra_len, extra_cap;
    char remote[INET6_ADDRSTRLEN];
    pv_http_req_t req;
};

struct pv_http_server {
    struct event_base *base;
    pv_http_config_t cfg;
    pv_route_c_t *routes;
    size_t nroutes;
    pv_listener_t lst[PV_HTTP_MAX_LISTENERS];
    int nlst;
    pv_conn_t *conns;
    size_t nconns;
    bool shutting_down;
    uint64_t rng;
    size_t in_window;
    struct timeval wto;
    time_t date_sec;
    char date[40];
    /* Accepted connections handed over by the group's accepting loop
     * (memcached's dispatch: a queue and an eventfd per loop). */
    pv_http_server_t **group;  /* all servers, when accepts are shared */
    int ngroup;
    unsigned rr;               /* next server to hand a connection to */
    pthread_mutex_t inbox_mu;
    struct pv_handoff *inbox;  /* pushed by the accepting loop */
    int inbox_fd;              /* eventfd, -1 when not in a group */
    struct event *inbox_ev;
};

typedef struct pv_handoff {
    struct pv_handoff *next;
    evutil_socket_t fd;
    int kind;
    SSL_CTX *_Atomic *tls;
    struct sockaddr_storage sa;
} pv_handoff_t;

static const char pv_sec_headers[] =
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "X-Frame-Options: DENY\r\n"
    "Content-Security-Policy: default-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'\r\n";
static const char pv_hsts[] = "Strict-Transport-Security: max-age=31536000\r\n";

static void pv_conn_process(pv_conn_t *c);
static void pv_conn_drop(pv_conn_t *c);
static void pv_conn_maybe_free(pv_conn_t *c);
static void pv_req_complete(pv_conn_t *c);
static void pv_answer_error(pv_http_req_t *r, int status, const char *code,
                            const char *message);
static void pv_extra_add(pv_http_req_t *req, const char *name,
                         const char *value);

/* ---------------------------------------------------------------- *
 * Small pieces
 * ---------------------------------------------------------------- */

static const struct {
    int status;
    const char *text;
} pv_reasons[] = {
    {100, "Continue"},          {101, "Switching Protocols"},
    {200, "OK"},                {201, "Created"},
    {202, "Accepted"},          {204, "No Content"},
    {206, "Partial Content"},   {301, "Moved Permanently"},
    {302, "Found"},             {303, "See Other"},
    {304, "Not Modified"},      {307, "Temporary Redirect"},
    {308, "Permanent Redirect"}, {400, "Bad Request"},
    {401, "Unauthorized"},      {403, "Forbidden"},
    {404, "Not Found"},         {405, "Method Not Allowed"},
    {406, "Not Acceptable"},    {408, "Request Timeout"},
    {409, "Conflict"},          {410, "Gone"},
    {411, "Length Required"},   {412, "Precondition Failed"},
    {413, "Content Too Large"}, {414, "URI Too Long"},
    {415, "Unsupported Media Type"}, {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"}, {422, "Unprocessable Content"},
    {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"}, {501, "Not Implemented"},
    {502, "Bad Gateway"},       {503, "Service Unavailable"},
    {504, "Gateway Timeout"},   {505, "HTTP Version Not Supported"},
    {507, "Insufficient Storage"},
};

const char *pv_http_reason(int status)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(pv_reasons); i++)
        if (pv_reasons[i].status == status)
            return pv_reasons[i].text;
    return "Unknown";
}

/* The Date header value, formatted once a second. Names are spelled out
 * here because strftime's %a/%b follow the locale. */
static const char *pv_srv_date(pv_http_server_t *s)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat"};
    static const char mons[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                     "May", "Jun", "Jul", "Aug",
                                     "Sep", "Oct", "Nov", "Dec"};
    struct timeval tv;
    struct tm tm;

    if (event_base_gettimeofday_cached(s->base, &tv) < 0)
        gettimeofday(&tv, NULL);
    if (tv.tv_sec == s->date_sec && s->date[0])
        return s->date;
    time_t t = tv.tv_sec;
    gmtime_r(&t, &tm);
    snprintf(s->date, sizeof(s->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday % 7], tm.tm_mday, mons[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    s->date_sec = tv.tv_sec;
    return s->date;
}

/* splitmix64: request ids need to be unique-ish and unguessable enough for
 * log correlation, not secret. Seeded from getrandom at server creation. */
static uint64_t pv_srv_rand(pv_http_server_t *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool pv_id_sane(const char *v, size_t len)
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

/* Text that goes into a header line must not carry CR, LF or NUL. */
static bool pv_header_safe(const char *v)
{
    for (; *v; v++)
        if (*v == '\r' || *v == '\n')
            return false;
    return true;
}

static size_t pv_u64_str(uint64_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* A bounded string builder for response heads. */
typedef struct pv_hb {
    char *p;
    size_t len, cap;
} pv_hb_t;

static void hb_put(pv_hb_t *b, const char *s, size_t n)
{
    if (n && b->len + n <= b->cap)
        memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void hb_str(pv_hb_t *b, const char *s) { hb_put(b, s, strlen(s)); }

static void hb_u64(pv_hb_t *b, uint64_t v)
{
    char tmp[24];
    hb_put(b, tmp, pv_u64_str(v, tmp));
}

static void pv_free_ref(const void *data, size_t len, void *extra)
{
    (void)len;
    (void)extra;
    free((void *)data);
}

/* ---------------------------------------------------------------- *
 * Routes
 * ---------------------------------------------------------------- */

/* Splits a pattern into segments: "/a/{id}/b" -> "a", {id}, "b". */
static int pv_route_compile(const pv_http_route_t *r, pv_route_c_t *out)
{
    const char *p = r->pattern;

    if (!p || p[0] != '/' || !r->method)
        return -EINVAL;
    out->r = r;
    out->nsegs = 0;
    p++;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (out->nsegs == PV_HTTP_MAX_SEGS)
            return -E2BIG;
        pv_route_seg_t *sg = &out->seg[out->nsegs++];
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            sg->capture = true;
            sg->s = p + 1;
            sg->len = len - 2;
        } else {
            sg->capture = false;
            sg->s = p;
            sg->len = len;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

typedef struct pv_path_segs {
    int n;          /* -1: too many to route */
    const char *s[PV_HTTP_MAX_SEGS];
    size_t len[PV_HTTP_MAX_SEGS];
} pv_path_segs_t;

static bool pv_route_match(const pv_route_c_t *rc, const pv_path_segs_t *ps,
                           pv_http_req_t *req)
{
    int np = 0;
    if (rc->nsegs != ps->n)
        return false;
    for (int i = 0; i < rc->nsegs; i++) {
        const pv_route_seg_t *sg = &rc->seg[i];
        if (sg->capture) {
            if (ps->len[i] == 0)
                return false;
            if (req && np < PV_HTTP_MAX_PARAMS) {
                req->param_name[np] = sg;
                req->param_val[np] = ps->s[i];
                np++;
            }
        } else if (sg->len != ps->len[i] || memcmp(sg->s, ps->s[i], sg->len)) {
            return false;
        }
    }
    if (req)
        req->nparams = np;
    return true;
}

static bool pv_method_fits(const char *route_method, const pv_http_req_t *r)
{
    if (strcmp(route_method, r->method) == 0)
        return true;
    return r->head && strcmp(route_method, "GET") == 0;
}

/* Appends a method to a comma list unless it is there already. */
static void pv_allow_add(char *buf, size_t cap, const char *m)
{
    size_t ml = strlen(m), bl = strlen(buf);
    for (const char *p = buf; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == ml && memcmp(p, m, ml) == 0)
            return;
        p = e ? e + 2 : p + l;
    }
    if (bl + ml + 3 > cap)
        return;
    if (bl)
        memcpy(buf + bl, ", ", 2), bl += 2;
    memcpy(buf + bl, m, ml + 1);
}

/* Finds the route for the request: 0 with req->route set, or an HTTP
 * status (404, 405) after answering. */
static int pv_route_find(pv_conn_t *c, const pv_path_segs_t *ps)
{
    pv_http_server_t *s = c->srv;
    pv_http_req_t *r = &c->req;
    bool path_hit = false;

    for (size_t i = 0; i < s->nroutes; i++) {
        const pv_route_c_t *rc = &s->routes[i];
        if (!(rc->r->listeners & c->kind) || !pv_route_match(rc, ps, NULL))
            continue;
        path_hit = true;
        if (pv_method_fits(rc->r->method, r)) {
            pv_route_match(rc, ps, r);
            r->route = rc->r;
            return 0;
        }
    }
    if (!path_hit) {
        pv_answer_error(r, 404, "not_found", "no such resource");
        return 404;
    }
    char allow[128] = "";
    for (size_t i = 0; i < s->nroutes; i++) {
        const pv_route_c_t *rc = &s->routes[i];
        if (!(rc->r->listeners & c->kind) || !pv_route_match(rc, ps, NULL))
            continue;
        pv_allow_add(allow, sizeof(allow), rc->r->method);
        if (strcmp(rc->r->method, "GET") == 0)
            pv_allow_add(allow, sizeof(allow), "HEAD");
    }
    pv_extra_add(r, "Allow", allow);
    pv_answer_error(r, 405, "method_not_allowed",
                    "method not allowed for this resource");
    return 405;
}

/* ---------------------------------------------------------------- *
 * Connection plumbing
 * ---------------------------------------------------------------- */

static void pv_conn_set_rto(pv_conn_t *c, int secs)
{
    if (!c->bev || c->rto_cur == secs)
        return;
    c->rto_cur = secs;
    struct timeval rt = {secs, 0};
    bufferevent_set_timeouts(c->bev, secs > 0 ? &rt : NULL, &c->srv->wto);
}

static struct evbuffer *pv_out(pv_conn_t *c)
{
    return bufferevent_get_output(c->bev);
}

static void pv_job_free(pv_fsync_job_t *job)
{
    if (job->ev)
        event_free(job->ev);
    if (job->efd >= 0)
        close(job->efd);
    free(job);
}

/* Releases what the request holds. The temp file goes unless taken. */
static void pv_req_cleanup(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;

    if (r->data_free)
        r->data_free(r->data);
    r->data_free = NULL;
    r->data = NULL;
    if (r->tmp_fd >= 0)
        close(r->tmp_fd);
    r->tmp_fd = -1;
    if (r->tmp_made && !r->tmp_taken)
        unlink(r->tmp_path);
    r->tmp_made = false;
    free(r->tmp_path);
    r->tmp_path = NULL;
    if (r->md)
        EVP_MD_CTX_free(r->md);
    r->md = NULL;
    if (r->send_fd >= 0)
        close(r->send_fd);
    r->send_fd = -1;
    if (r->user && r->user != r->user_small)
        free(r->user);
    r->user = NULL;
    /* A big upload buffer is not kept for the next request. */
    if (c->body_cap > PV_HTTP_IN_WINDOW) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    c->req_live = false;
}

static void pv_conn_maybe_free(pv_conn_t *c)
{
    if (c->refs > 0 || c->bev || c->req_live || c->job)
        return;
    pv_http_server_t *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c->scratch);
    free(c->body);
    free(c->extra);
    free(c);
}

/* The client is gone (or we give up on it): free the bufferevent now; the
 * request, if the handler owns it, lives on until it is answered. */
static void pv_conn_drop(pv_conn_t *c)
{
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
    c->linger_bytes = evbuffer_get_length(in);
    evbuffer_drain(in, c->linger_bytes);
    if (!c->tls)
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    pv_conn_set_rto(c, PV_HTTP_LINGER_S);
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
 * Answers
 * ---------------------------------------------------------------- */

static bool pv_conn_keepalive(pv_conn_t *c)
{
    const pv_http_req_t *r = &c->req;
    return !c->close_after && r->fr.keep_alive && r->body_done &&
           !c->peer_eof && !c->srv->shutting_down;
}

/* Writes the response head with one evbuffer_add. clen: the body length,
 * -1 for none, -2 for a chunked stream (or close-delimited on 1.0). */
static void pv_send_head(pv_conn_t *c, int status, const char *ctype,
                         int64_t clen)
{
    pv_http_req_t *r = &c->req;
    char stackbuf[2048];
    pv_hb_t b = {stackbuf, 0, sizeof(stackbuf)};

    if (status < 100 || status > 599)
        status = 500;
    if (ctype && !pv_header_safe(ctype))
        ctype = NULL;
    c->keep = pv_conn_keepalive(c);
    if (clen == -2 && r->minor == 0)
        c->keep = false; /* 1.0 has no chunked: the close ends the body */
    for (int pass = 0; pass < 2; pass++) {
        b.len = 0;
        char st[4] = {(char)('0' + status / 100),
                      (char)('0' + status / 10 % 10),
                      (char)('0' + status % 10), ' '};
        hb_put(&b, "HTTP/1.1 ", 9);
        hb_put(&b, st, 4);
        hb_str(&b, pv_http_reason(status));
        hb_put(&b, "\r\nDate: ", 8);
        hb_str(&b, pv_srv_date(c->srv));
        hb_put(&b, "\r\n", 2);
        if (ctype) {
            hb_put(&b, "Content-Type: ", 14);
            hb_str(&b, ctype);
            hb_put(&b, "\r\n", 2);
        }
        if (clen >= 0) {
            hb_put(&b, "Content-Length: ", 16);
            hb_u64(&b, (uint64_t)clen);
            hb_put(&b, "\r\n", 2);
        } else if (clen == -2 && r->minor >= 1) {
            hb_str(&b, "Transfer-Encoding: chunked\r\n");
        }
        hb_str(&b, c->keep ? "Connection: keep-alive\r\n"
                           : "Connection: close\r\n");
        hb_put(&b, "X-Request-Id: ", 14);
        hb_str(&b, r->id);
        hb_put(&b, "\r\n", 2);
        hb_put(&b, pv_sec_headers, sizeof(pv_sec_headers) - 1);
        if (c->tls)
            hb_put(&b, pv_hsts, sizeof(pv_hsts) - 1);
        hb_put(&b, c->extra, c->extra_len);
        hb_put(&b, "\r\n", 2);
        if (b.len <= b.cap)
            break;
        /* Rare: many extra headers. Size it exactly and go again. */
        char *big = malloc(b.len);
        if (!big) {
            b.len = 0;
            break;
        }
        b.p = big;
        b.cap = b.len;
    }
    if (!c->keep)
        c->close_after = true;
    if (b.len)
        evbuffer_add(pv_out(c), b.p, b.len);
    r->bytes_out += b.len;
    if (b.p != stackbuf)
        free(b.p);
}

/* The answer is queued; it is complete when the output drains. */
static void pv_conn_enter_send(pv_conn_t *c)
{
    c->state = C_SEND;
    pv_conn_set_rto(c, 0);
    /* Nothing left to write (a HEAD stream ending, or TLS already wrote it
     * all): no write will call us back, so ask for the callback. It runs
     * deferred, from the loop, never inside the caller. */
    if (c->bev && evbuffer_get_length(pv_out(c)) == 0)
        bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
}

/* Claims the one answer a request gets. */
static bool pv_req_take(pv_http_req_t *r, const char *what)
{
    if (!r || !r->conn || !r->conn->req_live || r->answered) {
        pv_log(PV_LOG_WARN, LOG_ACTOR, r ? r->id : NULL, NULL,
               "%s on a request already answered", what);
        return false;
    }
    r->answered = true;
    return true;
}

/* Queues a full answer. owned, when set, is a malloc'd body handed over. */
static void pv_answer_body(pv_http_req_t *r, int status, const char *ctype,
                           const void *body, size_t len, char *owned)
{
    pv_conn_t *c = r->conn;

    r->status = status;
    c->refs++;
    if (!c->bev) {
        free(owned);
        pv_req_complete(c);
        goto out;
    }
    bool nobody = status < 200 || status == 204 || status == 304;
    bool with_body = !nobody && !r->head && len > 0;
    struct evbuffer *out = pv_out(c);
    /* bufferevent_openssl makes one SSL_write (one record, one syscall)
     * per buffer chain: give head and body one chain. */
    bool one_chain = c->tls && len <= PV_HTTP_TLS_COALESCE;
    if (one_chain)
        evbuffer_expand(out, PV_HTTP_HEAD_EST + c->extra_len +
                                 (with_body ? len : 0));
    pv_send_head(c, status, ctype, nobody ? -1 : (int64_t)len);
    if (with_body) {
        if (owned && !one_chain &&
            evbuffer_add_reference(out, owned, len, pv_free_ref, NULL) == 0)
            owned = NULL;
        else
            evbuffer_add(out, body, len);
        r->bytes_out += len;
    }
    free(owned);
    pv_conn_enter_send(c);
out:
    c->refs--;
    pv_conn_maybe_free(c);
}

static void pv_answer_json(pv_http_req_t *r, int status, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(obj);
    if (!s) { /* the answer could not be built: memory ran out */
        static const char oom[] =
            "{\"error\":{\"code\":\"overloaded\",\"message\":\"out of memory; try again in a moment\"}}";
        pv_extra_add(r, "Retry-After", "1");
        pv_answer_body(r, 503, "application/json; charset=utf-8", oom,
                       sizeof(oom) - 1, NULL);
        return;
    }
    pv_answer_body(r, status, "application/json; charset=utf-8", s, strlen(s),
                   s);
}

static void pv_answer_error(pv_http_req_t *r, int status, const char *code,
                            const char *message)
{
    r->answered = true;
    pv_answer_json(r, status,
                   json_pack("{s:{s:s,s:s}}", "error", "code",
                             code ? code : "error", "message",
                             message ? message : pv_http_reason(status)));
}

void pv_http_respond(pv_http_req_t *req, int status, const char *content_type,
                     const void *body, size_t len)
{
    if (!pv_req_take(req, "respond"))
        return;
    pv_answer_body(req, status, content_type, body, len, NULL);
}

void pv_http_respond_json(pv_http_req_t *req, int status, json_t *obj)
{
    if (!pv_req_take(req, "respond_json")) {
        json_decref(obj);
        return;
    }
    pv_answer_json(req, status, obj);
}

void pv_http_respond_error(pv_http_req_t *req, int status, const char *code,
                           const char *message)
{
    if (!pv_req_take(req, "respond_error"))
        return;
    pv_answer_error(req, status, code, message);
}

/* Room for `need` bytes of extra header lines. */
static int pv_extra_reserve(pv_conn_t *c, size_t need)
{
    if (need <= c->extra_cap)
        return 0;
    size_t cap = c->extra_cap ? c->extra_cap * 2 : 256;
    while (cap < need)
        cap *= 2;
    char *p = pv_fail("http.alloc") ? NULL : realloc(c->extra, cap);
    if (!p)
        return -ENOMEM;
    c->extra = p;
    c->extra_cap = cap;
    return 0;
}

/* Appends "name: value" to the coming answer's head. */
static void pv_extra_add(pv_http_req_t *req, const char *name,
                         const char *value)
{
    pv_conn_t *c = req->conn;
    size_t nl = strlen(name), vl = strlen(value);
    if (nl == 0 || !pv_header_safe(name) || !pv_header_safe(value) ||
        memchr(name, ':', nl)) {
        pv_log(PV_LOG_WARN, LOG_ACTOR, req->id, NULL,
               "refused an unsafe response header");
        return;
    }
    size_t need = c->extra_len + nl + vl + 4;
    if (pv_extra_reserve(c, need) < 0)
        return;
    char *o = c->extra + c->extra_len;
    memcpy(o, name, nl);
    o[nl] = ':';
    o[nl + 1] = ' ';
    memcpy(o + nl + 2, value, vl);
    o[nl + 2 + vl] = '\r';
    o[nl + 3 + vl] = '\n';
    c->extra_len = need;
}

int pv_http_header_room(pv_http_req_t *req, size_t n)
{
    if (!req || !req->conn || req->answered)
        return -EINVAL;
    return pv_extra_reserve(req->conn, req->conn->extra_len + n);
}

void pv_http_add_header(pv_http_req_t *req, const char *name,
                        const char *value)
{
    if (!req || !req->conn || req->answered || !name || !value)
        return;
    pv_extra_add(req, name, value);
}

/* ---- files ---- */

/* Tops the output up from the file being sent (TLS connections, where
 * bufferevent_openssl cannot sendfile): at most PV_HTTP_OUT_WINDOW queued. */
static int pv_file_refill(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;
    struct evbuffer *out = pv_out(c);

    while (r->send_left > 0 && evbuffer_get_length(out) < PV_HTTP_OUT_WINDOW) {
        size_t want = r->send_left < PV_HTTP_FILE_CHUNK ? (size_t)r->send_left
                                                        : PV_HTTP_FILE_CHUNK;
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(out, (ev_ssize_t)want, &v, 1) < 1)
            return -ENOMEM;
        ssize_t n;
        do {
            n = pread(r->send_fd, v.iov_base, want, (off_t)r->send_off);
        } while (n < 0 && errno == EINTR);
        if (n <= 0 || pv_fail("http.file_read")) {
            pv_log(PV_LOG_WARN, LOG_ACTOR, r->id, NULL,
                   "file read failed while sending");
            return -EIO;
        }
        v.iov_len = (size_t)n;
        evbuffer_commit_space(out, &v, 1);
        r->send_off += (uint64_t)n;
        r->send_left -= (uint64_t)n;
        r->bytes_out += (uint64_t)n;
    }
    if (r->send_left == 0) {
        close(r->send_fd);
        r->send_fd = -1;
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    }
    return 0;
}

/* Queues len bytes of fd from start. Takes fd. */
static int pv_file_queue(pv_conn_t *c, int fd, uint64_t start, uint64_t len)
{
    pv_http_req_t *r = &c->req;

    if (len == 0) {
        close(fd);
        return 0;
    }
    if (!c->tls) {
        struct evbuffer_file_segment *seg = evbuffer_file_segment_new(
            fd, (ev_off_t)start, (ev_off_t)len, EVBUF_FS_CLOSE_ON_FREE);
        if (!seg) {
            close(fd);
            return -ENOMEM;
        }
        int rc = evbuffer_add_file_segment(pv_out(c), seg, 0, (ev_off_t)len);
        evbuffer_file_segment_free(seg);
        if (rc < 0)
            return -ENOMEM;
        r->bytes_out += len;
        return 0;
    }
    r->send_fd = fd;
    r->send_off = start;
    r->send_left = len;
    bufferevent_setwatermark(c->bev, EV_WRITE, PV_HTTP_FILE_CHUNK, 0);
    return pv_file_refill(c);
}

/* The etag as a quoted entity tag ("abc" -> "\"abc\""). */
static void pv_etag_quote(const char *etag, char *out, size_t cap)
{
    bool quoted = etag[0] == '"' || (etag[0] == 'W' && etag[1] == '/');
    snprintf(out, cap, quoted ? "%s" : "\"%s\"", etag);
}

void pv_http_respond_file(pv_http_req_t *req, int fd, const char *content_type,
                          const char *etag, const char *cache_control)
{
    struct stat st;
    char tag[160] = "", cr[80];
    uint64_t start = 0, len;
    int status = 200;

    if (!pv_req_take(req, "respond_file")) {
        close(fd);
        return;
    }
    pv_conn_t *c = req->conn;
    if (!c->bev) {
        close(fd);
        pv_answer_body(req, 200, NULL, NULL, 0, NULL);
        return;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        pv_answer_error(req, 500, "internal", "cannot read the file");
        return;
    }
    len = (uint64_t)st.st_size;
    if (etag && etag[0] && strlen(etag) < sizeof(tag) - 3 &&
        pv_header_safe(etag)) {
        pv_etag_quote(etag, tag, sizeof(tag));
        pv_extra_add(req, "ETag", tag);
    }
    if (cache_control)
        pv_extra_add(req, "Cache-Control", cache_control);
    const char *inm = pv_http_header(req, "If-None-Match");
    if (tag[0] && inm && pv_http_etag_match(inm, strlen(inm), tag, strlen(tag))) {
        close(fd);
        pv_answer_body(req, 304, NULL, NULL, 0, NULL);
        return;
    }
    pv_extra_add(req, "Accept-Ranges", "bytes");
    const char *range = pv_http_header(req, "Range");
    const char *if_range = pv_http_header(req, "If-Range");
    if (range && if_range && (!tag[0] || strcmp(if_range, tag) != 0))
        range = NULL; /* the client's copy is stale: send it whole */
    if (range) {
        uint64_t rs, rl;
        int rr = pv_http_parse_range(range, strlen(range), len, &rs, &rl);
        if (rr < 0) {
            close(fd);
            snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)len);
            pv_extra_add(req, "Content-Range", cr);
            pv_answer_error(req, 416, "range_not_satisfiable",
                            "the range is outside the content");
            return;
        }
        if (rr == 1) {
            status = 206;
            snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu",
                     (unsigned long long)rs,
                     (unsigned long long)(rs + rl - 1),
                     (unsigned long long)len);
            pv_extra_add(req, "Content-Range", cr);
            start = rs;
            len = rl;
        }
    }
    req->status = status;
    c->refs++;
    pv_send_head(c, status, content_type, (int64_t)len);
    pv_conn_enter_send(c);
    if (req->head)
        close(fd);
    else if (pv_file_queue(c, fd, start, len) < 0)
        pv_conn_drop(c); /* the head promised bytes we cannot send */
    c->refs--;
    pv_conn_maybe_free(c);
}

/* ---- streams ---- */

/* on_close for a client that was gone before the stream began: called
 * from the loop, not from inside pv_http_stream_begin. */
static void pv_stream_closed_later(evutil_socket_t fd, short what, void *arg)
{
    pv_conn_t *c = arg;
    pv_http_req_t *r = &c->req;
    (void)fd;
    (void)what;
    if (c->req_live && c->state == C_STREAM && r->on_close &&
        !r->on_close_done) {
        r->on_close_done = true;
        r->on_close(r, r->on_close_arg);
    }
    c->refs--;
    pv_conn_maybe_free(c);
}

void pv_http_stream_begin(pv_http_req_t *req, int status,
                          const char *content_type,
                          void (*on_close)(pv_http_req_t *req, void *arg),
                          void *arg)
{
    if (!pv_req_take(req, "stream_begin"))
        return;
    pv_conn_t *c = req->conn;
    req->status = status;
    req->on_close = on_close;
    req->on_close_arg = arg;
    c->state = C_STREAM;
    if (c->bev && c->peer_eof) { /* an SSE client that shut its side left */
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (!c->bev) {
        struct timeval now = {0, 0};
        c->refs++;
        if (event_base_once(c->srv->base, -1, EV_TIMEOUT,
                            pv_stream_closed_later, c, &now) < 0)
            c->refs--;
        return; /* pv_http_stream_end releases the request */
    }
    pv_send_head(c, status, content_type, -2);
    pv_conn_set_rto(c, 0);
}

void pv_http_stream_write(pv_http_req_t *req, const void *data, size_t len)
{
    if (!req || !req->conn || req->conn->state != C_STREAM)
        return;
    pv_conn_t *c = req->conn;
    if (!c->bev || req->head || len == 0)
        return;
    struct evbuffer *out = pv_out(c);
    if (req->minor >= 1) {
        char pre[24];
        int n = snprintf(pre, sizeof(pre), "%zx\r\n", len);
        /* One chain per chunk: one TLS record, not three. */
        evbuffer_expand(out, (size_t)n + len + 2);
        evbuffer_add(out, pre, (size_t)n);
        evbuffer_add(out, data, len);
        evbuffer_add(out, "\r\n", 2);
        req->bytes_out += (uint64_t)n + len + 2;
    } else {
        evbuffer_add(out, data, len);
        req->bytes_out += len;
    }
}

void pv_http_stream_end(pv_http_req_t *req)
{
    if (!req || !req->conn || !req->conn->req_live ||
        req->conn->state != C_STREAM)
        return;
    pv_conn_t *c = req->conn;
    c->refs++;
    if (!c->bev) {
        pv_req_complete(c);
    } else {
        if (!req->head && req->minor >= 1) {
            evbuffer_add(pv_out(c), "0\r\n\r\n", 5);
            req->bytes_out += 5;
        }
        pv_conn_enter_send(c);
    }
    c->refs--;
    pv_conn_maybe_free(c);
}

/* ---------------------------------------------------------------- *
 * Requests: head, body, handler
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
    r->tmp_fd = -1;
    r->send_fd = -1;
    r->fr.content_length = -1;
    r->body_done = true;
    r->t0_us = pv_mono_us();
    c->extra_len = 0;
    c->keep = false;
    c->req_live = true;
}

static void pv_req_make_id(pv_conn_t *c, const char *incoming)
{
    pv_http_req_t *r = &c->req;
    size_t n = incoming ? strlen(incoming) : 0;
    if (incoming && pv_id_sane(incoming, n)) {
        memcpy(r->id, incoming, n + 1); /* n <= PV_HTTP_ID_MAX */
        return;
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t v = pv_srv_rand(c->srv);
    for (int i = 0; i < 16; i++)
        r->id[i] = hex[(v >> (i * 4)) & 15];
    r->id[16] = '\0';
}

/* An answer to a request we could not parse or keep: then close. */
static void pv_conn_fail_head(pv_conn_t *c, int status, const char *code,
                              const char *msg)
{
    pv_req_begin(c);
    pv_req_make_id(c, NULL);
    c->close_after = true;
    c->req.body_done = false; /* what follows is unknown: linger */
    if (status == 503)
        pv_extra_add(&c->req, "Retry-After", "1");
    pv_answer_error(&c->req, status, code, msg);
}

/* Percent-decodes the raw path segment by segment into pathbuf (for
 * pv_http_path) and segbuf (NUL-separated, for captures). Refuses escapes
 * that are bad, NUL, '/', and "." or ".." segments. */
static int pv_req_decode_path(pv_conn_t *c, pv_path_segs_t *ps)
{
    const char *raw = c->req.raw_path + 1; /* the parser checked the '/' */
    char *dst = c->pathbuf;
    size_t o = 0;

    ps->n = 0;
    for (;;) {
        const char *e = strchr(raw, '/');
        size_t len = e ? (size_t)(e - raw) : strlen(raw);
        dst[o++] = '/';
        ssize_t n = pv_http_pct_decode(raw, len, dst + o, false);
        if (n < 0 || memchr(dst + o, '\0', (size_t)n) ||
            memchr(dst + o, '/', (size_t)n))
            return -EINVAL;
        if ((n == 1 && dst[o] == '.') ||
            (n == 2 && dst[o] == '.' && dst[o + 1] == '.'))
            return -EINVAL;
        if (ps->n >= 0 && ps->n < PV_HTTP_MAX_SEGS) {
            ps->s[ps->n] = c->segbuf + o;
            ps->len[ps->n] = (size_t)n;
            ps->n++;
        } else {
            ps->n = -1;
        }
        o += (size_t)n;
        if (!e)
            break;
        raw = e + 1;
    }
    dst[o] = '\0';
    for (size_t i = 0; i <= o; i++)
        c->segbuf[i] = dst[i] == '/' ? '\0' : dst[i];
    c->req.path = dst;
    return 0;
}

static uint64_t pv_route_limit(const pv_http_server_t *s,
                               const pv_http_route_t *rt)
{
    if (rt->max_body)
        return rt->max_body;
    return rt->body == PV_BODY_FILE ? s->cfg.max_file_body
                                    : s->cfg.max_memory_body;
}

static void pv_call_handler(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;
    c->state = C_HANDLER;
    pv_conn_set_rto(c, 0);
    if (!r->route->fn) {
        pv_answer_error(r, 501, "not_implemented", "no handler");
        return;
    }
    r->route->fn(r);
}

/* ---- PV_BODY_FILE: temp file, SHA-256, fsync off the loop ---- */

static int pv_body_file_open(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;
    const char *dir = c->srv->cfg.tmp_dir ? c->srv->cfg.tmp_dir : "/tmp";

    size_t cap = strlen(dir) + sizeof("/.pv-upload-XXXXXX");
    r->tmp_path = pv_fail("http.alloc") ? NULL : malloc(cap);
    if (!r->tmp_path)
        return -ENOMEM;
    snprintf(r->tmp_path, cap, "%s/.pv-upload-XXXXXX", dir);
    if (pv_fail("http.tmpfile"))
        return -EIO;
    r->tmp_fd = mkostemp(r->tmp_path, O_CLOEXEC);
    if (r->tmp_fd < 0)
        return -errno;
    r->tmp_made = true;
    r->file.path = r->tmp_path;
    r->md = pv_fail("http.alloc") ? NULL : EVP_MD_CTX_new();
    if (!r->md || EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1)
        return -ENOMEM;
    return 0;
}

static void *pv_fsync_thread(void *arg)
{
    pv_fsync_job_t *job = arg;
    uint64_t one = 1;
    int rc = fsync(job->fd) == 0 ? 0 : -errno;
    atomic_store_explicit(&job->result, rc, memory_order_release);
    /* The eventfd write is what hands the job back to the loop. */
    while (write(job->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    return NULL;
}

static void pv_fsync_done(evutil_socket_t fd, short what, void *arg)
{
    pv_fsync_job_t *job = arg;
    pv_conn_t *c = job->conn;
    pv_http_req_t *r = &c->req;
    uint64_t v;

    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno == EAGAIN)
        return; /* spurious */
    int rc = atomic_load_explicit(&job->result, memory_order_acquire);
    c->job = NULL;
    pv_job_free(job);
    c->refs++;
    close(r->tmp_fd);
    r->tmp_fd = -1;
    if (!c->bev) {
        pv_req_cleanup(c); /* nobody to answer: drop the upload */
    } else if (rc < 0) {
        pv_log(PV_LOG_ERROR, LOG_ACTOR, r->id, NULL, "upload fsync: %s",
               strerror(-rc));
        c->close_after = true;
        pv_answer_error(r, rc == -ENOSPC ? 507 : 500, "io_error",
                        "could not store the upload");
    } else {
        pv_call_handler(c);
    }
    c->refs--;
    pv_conn_maybe_free(c);
}

/* Starts the fsync of a finished upload on a detached thread; falls back
 * to an fsync on the loop if no thread can be had. */
static void pv_fsync_start(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;
    pv_fsync_job_t *job = calloc(1, sizeof(*job));
    pthread_attr_t attr;
    pthread_t th;

    c->state = C_FSYNC;
    pv_conn_set_rto(c, 0);
    if (!job)
        goto inline_sync;
    job->fd = r->tmp_fd;
    job->conn = c;
    job->efd = eventfd(0, EFD_CLOEXEC);
    if (job->efd < 0)
        goto inline_sync;
    job->ev = event_new(c->srv->base, job->efd, EV_READ, pv_fsync_done, job);
    if (!job->ev || event_add(job->ev, NULL) < 0)
        goto inline_sync;
    if (pv_fail("http.fsync")) {
        atomic_store(&job->result, -EIO);
        uint64_t one = 1;
        if (write(job->efd, &one, sizeof(one)) < 0)
            goto inline_sync;
        c->job = job;
        return;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, pv_fsync_thread, job);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        goto inline_sync;
    c->job = job;
    return;

inline_sync:
    if (job)
        pv_job_free(job);
    if (fsync(r->tmp_fd) < 0) {
        c->close_after = true;
        pv_answer_error(r, errno == ENOSPC ? 507 : 500, "io_error",
                        "could not store the upload");
        return;
    }
    close(r->tmp_fd);
    r->tmp_fd = -1;
    pv_call_handler(c);
}

/* ---- body reading ---- */

/* Takes n body bytes. 0 or -errno. */
static int pv_body_sink(pv_conn_t *c, const char *p, size_t n)
{
    pv_http_req_t *r = &c->req;

    if (r->body_mode == PV_BODY_MEMORY) {
        size_t need = r->body_len + n + 1;
        if (need > c->body_cap) {
            size_t cap = c->body_cap ? c->body_cap : 4096;
            while (cap < need)
                cap *= 2;
            if (cap > r->body_limit + 1 && need <= r->body_limit + 1)
                cap = (size_t)r->body_limit + 1;
            char *nb = pv_fail("http.alloc") ? NULL : realloc(c->body, cap);
            if (!nb)
                return -ENOMEM;
            c->body = nb;
            c->body_cap = cap;
        }
        memcpy(c->body + r->body_len, p, n);
        r->body_len += n;
    } else if (r->body_mode == PV_BODY_FILE) {
        int rc = pv_fail("http.write") ? -EIO : pv_write_all(r->tmp_fd, p, n);
        if (rc < 0)
            return rc;
        EVP_DigestUpdate(r->md, p, n);
    }
    r->body_got += n;
    return 0;
}

static void pv_body_fail(pv_conn_t *c, int status, const char *code,
                         const char *msg)
{
    c->close_after = true;
    pv_answer_error(&c->req, status, code, msg);
}

/* A body that cannot be taken in, answered by its cause: running out of
 * memory or descriptors is 503 (try again), a full disk 507, anything
 * else (an I/O error) 500. Then the connection closes. */
static void pv_body_fail_rc(pv_conn_t *c, int rc)
{
    if (rc == -ENOMEM || rc == -EMFILE || rc == -ENFILE || rc == -EAGAIN) {
        pv_extra_add(&c->req, "Retry-After", "1");
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
        int rc = c->body ? 0 : pv_body_sink(c, "", 0);
        if (rc < 0) {
            pv_body_fail_rc(c, rc);
            return;
        }
        c->body[r->body_len] = '\0';
    } else if (r->body_mode == PV_BODY_FILE) {
        EVP_DigestFinal_ex(r->md, r->file.sha256, NULL);
        EVP_MD_CTX_free(r->md);
        r->md = NULL;
        r->file.bytes = r->body_got;
        pv_fsync_start(c);
        return;
    }
    pv_call_handler(c);
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
        sink_rc = pv_body_sink(c, p, n);
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
            sink_rc = pv_body_sink(c, d, dl);
            if (sink_rc < 0)
                goto sink_fail;
        }
        used += (size_t)k;
        *done = pv_http_chunked_done(&r->chunked);
    }
    return (ssize_t)used;

sink_fail:
    pv_log(PV_LOG_ERROR, LOG_ACTOR, r->id, NULL, "storing request body failed: %s",
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
    return false;
}

/* Sets up reading the body of an accepted request. */
static void pv_body_begin(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;

    if (r->fr.expect_continue && !r->body_done) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        evbuffer_add(pv_out(c), cont, sizeof(cont) - 1);
    }
    r->body_left = r->fr.content_length;
    if (r->fr.chunked)
        pv_http_chunked_init(&r->chunked);
    if (r->body_mode == PV_BODY_FILE) {
        int rc = pv_body_file_open(c);
        if (rc < 0) {
            pv_log(PV_LOG_ERROR, LOG_ACTOR, r->id, NULL,
                   "cannot create upload file: %s", strerror(-rc));
            pv_body_fail_rc(c, rc);
            return;
        }
    } else if (r->body_mode == PV_BODY_MEMORY && r->fr.content_length > 0 &&
               (size_t)r->fr.content_length + 1 > c->body_cap) {
        size_t cap = (size_t)r->fr.content_length + 1;
        char *nb = pv_fail("http.alloc") ? NULL : realloc(c->body, cap);
        if (!nb) {
            pv_body_fail_rc(c, -ENOMEM);
            return;
        }
        c->body = nb;
        c->body_cap = cap;
    }
    c->state = C_BODY;
    pv_conn_set_rto(c, c->srv->cfg.read_timeout_s);
}

/* A complete head is in c->head: route, check, authorize, then body. */
static void pv_req_start(pv_conn_t *c, const pv_http_reqline_t *rl)
{
    pv_http_req_t *r = &c->req;
    pv_http_server_t *s = c->srv;
    pv_path_segs_t ps;

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
    pv_req_make_id(c, pv_http_header(r, "X-Request-Id"));

    if (pv_http_parse_framing(c->hdrs, c->nhdrs, r->minor, &r->fr) < 0) {
        r->body_done = false;
        c->close_after = true;
        pv_answer_error(r, 400, "bad_request", "malformed request framing");
        return;
    }
    r->body_done = !r->fr.chunked && r->fr.content_length <= 0;
    if (r->fr.expect_other) {
        c->close_after = true;
        pv_answer_error(r, 417, "expectation_failed", "unsupported Expect");
        return;
    }
    if (pv_req_decode_path(c, &ps) < 0) {
        pv_answer_error(r, 400, "bad_path", "malformed request path");
        return;
    }
    if (pv_route_find(c, &ps) != 0)
        return;
    r->body_mode = r->route->body;
    r->body_limit = pv_route_limit(s, r->route);
    if (r->fr.content_length > 0 &&
        (uint64_t)r->fr.content_length > r->body_limit) {
        c->close_after = true;
        pv_answer_error(r, 413, "too_large", "request body too large");
        return;
    }
    if (r->route->auth != PV_AUTH_NONE && s->cfg.authorize) {
        int st = s->cfg.authorize(r, r->route);
        if (st != 0) {
            if (!r->answered)
                pv_answer_error(r, st, st == 401 ? "unauthorized" : "forbidden",
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
static void pv_rebase(pv_conn_t *c, const char *from, pv_http_reqline_t *rl)
{
    rl->method = c->head + (rl->method - from);
    rl->target = c->head + (rl->target - from);
    for (size_t i = 0; i < c->nhdrs; i++) {
        c->hdrs[i].name = c->head + (c->hdrs[i].name - from);
        c->hdrs[i].value = c->head + (c->hdrs[i].value - from);
    }
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
        c->head_t0_us = 0;
        if (c->peer_eof) {
            pv_conn_drop(c);
            return true;
        }
        pv_conn_set_rto(c, c->fresh ? s->cfg.read_timeout_s
                                    : s->cfg.idle_timeout_s);
        return false;
    }
    int64_t now = pv_mono_us();
    if (!c->head_t0_us) {
        c->head_t0_us = now;
    } else if (now - c->head_t0_us > (int64_t)s->cfg.read_timeout_s * 1000000) {
        pv_conn_drop(c); /* a head dribbled in too slowly */
        return true;
    }
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
        if (c->peer_eof) {
            pv_conn_drop(c);
            return true;
        }
        pv_conn_set_rto(c, s->cfg.read_timeout_s);
        return false;
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
    pv_rebase(c, buf, &rl);
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
 * bufferevent callbacks
 * ---------------------------------------------------------------- */

static void pv_conn_read_cb(struct bufferevent *bev, void *arg)
{
    pv_conn_t *c = arg;
    (void)bev;
    c->refs++;
    pv_conn_process(c);
    c->refs--;
    pv_conn_maybe_free(c);
}

static void pv_conn_write_cb(struct bufferevent *bev, void *arg)
{
    pv_conn_t *c = arg;
    (void)bev;
    if (c->state != C_SEND)
        return;
    c->refs++;
    if (c->req.send_left > 0) {
        if (pv_file_refill(c) < 0)
            pv_conn_drop(c);
    } else if (evbuffer_get_length(pv_out(c)) == 0) {
        pv_req_complete(c);
    }
    c->refs--;
    pv_conn_maybe_free(c);
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
    if (eof_only &&
        (c->state == C_HANDLER || c->state == C_SEND || c->state == C_FSYNC)) {
        /* Half-close: the client may still read our answer. */
        c->peer_eof = true;
    } else {
        if (what & BEV_EVENT_TIMEOUT)
            pv_log(PV_LOG_DEBUG, LOG_ACTOR, c->req_live ? c->req.id : NULL,
                   NULL, "connection from %s timed out", c->remote);
        pv_conn_drop(c);
    }
    c->refs--;
    pv_conn_maybe_free(c);
}

/* ---------------------------------------------------------------- *
 * Listeners
 * ---------------------------------------------------------------- */

static void pv_conn_new(pv_http_server_t *s, int kind, SSL_CTX *_Atomic *tls,
                        evutil_socket_t fd, const struct sockaddr *sa)
{
    SSL_CTX *ctx = tls ? atomic_load(tls) : NULL;
    pv_conn_t *c = pv_fail("http.accept") ? NULL : calloc(1, sizeof(*c));
    int one = 1;

    if (!c || (tls && !ctx)) {
        free(c);
        evutil_closesocket(fd);
        return;
    }
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
                  c->remote, sizeof(c->remote));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                  c->remote, sizeof(c->remote));
    c->srv = s;
    c->kind = kind;
    c->fresh = true;
    c->rto_cur = -1;
    c->state = C_HEAD;
    c->req.tmp_fd = c->req.send_fd = -1;
    c->req.body_done = true;
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (ctx) {
        SSL *ssl = SSL_new(ctx);
        if (ssl)
            c->bev = bufferevent_openssl_socket_new(
                s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, opts);
        if (!c->bev) {
            SSL_free(ssl);
            evutil_closesocket(fd);
            free(c);
            return;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        c->tls = true;
    } else {
        c->bev = bufferevent_socket_new(s->base, fd, opts);
        if (!c->bev) {
            evutil_closesocket(fd);
            free(c);
            return;
        }
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    bufferevent_setcb(c->bev, pv_conn_read_cb, pv_conn_write_cb,
                      pv_conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, s->in_window);
    pv_conn_set_rto(c, s->cfg.read_timeout_s);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* Hand an accepted socket to another loop's server: any thread. */
static int pv_handoff(pv_http_server_t *to, pv_listener_t *l, evutil_socket_t fd,
                      const struct sockaddr *sa, int salen)
{
    pv_handoff_t *h = malloc(sizeof(*h));
    if (!h || salen < 0 || (size_t)salen > sizeof(h->sa)) {
        free(h);
        return -ENOMEM;
    }
    h->fd = fd;
    h->kind = l->kind;
    h->tls = l->tls;
    memset(&h->sa, 0, sizeof(h->sa));
    memcpy(&h->sa, sa, (size_t)salen);
    pthread_mutex_lock(&to->inbox_mu);
    bool was_empty = to->inbox == NULL;
    h->next = to->inbox;
    to->inbox = h;
    pthread_mutex_unlock(&to->inbox_mu);
    if (was_empty) { /* wake the loop only on empty -> non-empty */
        uint64_t one = 1;
        ssize_t n = write(to->inbox_fd, &one, sizeof(one));
        (void)n; /* an eventfd write fails only on counter overflow */
    }
    return 0;
}

/* On the receiving loop: adopt every handed-over connection. */
static void pv_inbox_cb(evutil_socket_t fd, short what, void *arg)
{
    pv_http_server_t *s = arg;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
    (void)what;
    pthread_mutex_lock(&s->inbox_mu);
    pv_handoff_t *h = s->inbox;
    s->inbox = NULL;
    pthread_mutex_unlock(&s->inbox_mu);
    while (h) {
        pv_handoff_t *next = h->next;
        if (s->shutting_down)
            evutil_closesocket(h->fd);
        else
            pv_conn_new(s, h->kind, h->tls, h->fd, (const struct sockaddr *)&h->sa);
        free(h);
        h = next;
    }
}

int pv_http_server_group(pv_http_server_t **servers, int n)
{
    for (int i = 0; i < n; i++) {
        pv_http_server_t *s = servers[i];
        s->group = servers;
        s->ngroup = n;
        s->inbox_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->inbox_fd < 0)
            return -errno;
        s->inbox_ev = event_new(s->base, s->inbox_fd, EV_READ | EV_PERSIST, pv_inbox_cb, s);
        if (!s->inbox_ev || event_add(s->inbox_ev, NULL) < 0)
            return -ENOMEM;
    }
    return 0;
}

static void pv_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
                         struct sockaddr *sa, int salen, void *arg)
{
    pv_listener_t *l = arg;
    pv_http_server_t *s = l->srv;
    (void)lev;
    if (s->shutting_down) {
        evutil_closesocket(fd);
        return;
    }
    pv_http_server_t *to = s->ngroup > 1 ? s->group[s->rr++ % (unsigned)s->ngroup] : s;
    if (to == s || pv_handoff(to, l, fd, sa, salen) < 0)
        pv_conn_new(s, l->kind, l->tls, fd, sa);
}

static void pv_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    pv_listener_t *l = arg;
    (void)fd;
    (void)what;
    if (l->lev)
        evconnlistener_enable(l->lev);
}

/* Accept failed (EMFILE, ENOBUFS...): pause this listener briefly rather
 * than spin on a socket that stays readable. */
static void pv_accept_error(struct evconnlistener *lev, void *arg)
{
    pv_listener_t *l = arg;
    struct timeval tv = {0, 100 * 1000};
    int err = EVUTIL_SOCKET_ERROR();
    pv_log(PV_LOG_WARN, LOG_ACTOR, NULL, NULL, "accept: %s",
           evutil_socket_error_to_string(err));
    evconnlistener_disable(lev);
    if (l->retry)
        evtimer_add(l->retry, &tv);
}

/* "1.2.3.4:80" or "[::1]:80" (port 0: the OS picks) into a sockaddr.
 * evutil_parse_sockaddr_port refuses port 0, which tests need. */
static int pv_parse_addr(const char *s, struct sockaddr_storage *ss,
                         int *sslen)
{
    char host[INET6_ADDRSTRLEN];
    const char *colon, *hs = s;
    size_t hl;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        hs = s + 1;
        hl = (size_t)(close - hs);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port > 65535)
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *sslen = (int)sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *sslen = (int)sizeof(*v6);
    } else {
        return -EINVAL;
    }
    return 0;
}

/* A listening socket, bound without SO_REUSEPORT: a second daemon on the
 * same port must fail to start rather than silently take half the
 * connections. Loops share the socket (pv_http_listen_fd). */
static int pv_bind_listen(const struct sockaddr_storage *ss, int sslen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)ss, (socklen_t)sslen) < 0 || listen(fd, 511) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int pv_http_listen(pv_http_server_t *srv, const char *addr_port,
                   SSL_CTX *_Atomic *tls, int kind)
{
    struct sockaddr_storage ss;
    int sslen = (int)sizeof(ss);
    if (!srv || !addr_port || pv_parse_addr(addr_port, &ss, &sslen) < 0)
        return -EINVAL;
    int fd = pv_fail("http.listen") ? -EADDRINUSE : pv_bind_listen(&ss, sslen);
    if (fd < 0)
        return fd; /* the caller logs it, with its context */
    int rc = pv_http_listen_fd(srv, fd, tls, kind);
    close(fd); /* the listener holds its own duplicate */
    return rc;
}

int pv_http_listen_fd(pv_http_server_t *srv, int fd, SSL_CTX *_Atomic *tls, int kind)
{
    if (!srv || fd < 0 || srv->shutting_down)
        return -EINVAL;
    if (srv->nlst == PV_HTTP_MAX_LISTENERS)
        return -ENOSPC;
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -errno;
    pv_listener_t *l = &srv->lst[srv->nlst];
    memset(l, 0, sizeof(*l));
    l->srv = srv;
    l->kind = kind;
    l->tls = tls;
    l->lev = evconnlistener_new(srv->base, pv_accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, dfd);
    if (!l->lev) {
        close(dfd);
        return -ENOMEM;
    }
    evconnlistener_set_error_cb(l->lev, pv_accept_error);
    l->retry = evtimer_new(srv->base, pv_accept_retry, l);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (getsockname(dfd, (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET)
            l->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else if (bound.ss_family == AF_INET6)
            l->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    srv->nlst++;
    return 0;
}

int pv_http_listener_fd(pv_http_server_t *srv, int kind)
{
    for (int i = 0; srv && i < srv->nlst; i++)
        if (srv->lst[i].lev && srv->lst[i].kind == kind)
            return evconnlistener_get_fd(srv->lst[i].lev);
    return -ENOENT;
}

int pv_http_server_port(pv_http_server_t *srv, int kind)
{
    for (int i = 0; srv && i < srv->nlst; i++)
        if (srv->lst[i].lev && srv->lst[i].kind == kind)
            return srv->lst[i].port;
    return -ENOENT;
}

/* ---------------------------------------------------------------- *
 * Server
 * ---------------------------------------------------------------- */

pv_http_server_t *pv_http_server_new(struct event_base *base,
                                     const pv_http_config_t *cfg)
{
    pv_http_server_t *s = calloc(1, sizeof(*s));
    size_t n = 0;

    if (!s)
        return NULL;
    /* A peer that resets a connection must cost us an EPIPE, not the
     * process: libevent writes with writev, which has no MSG_NOSIGNAL. */
    signal(SIGPIPE, SIG_IGN);
    s->base = base;
    s->cfg = *cfg;
    s->inbox_fd = -1;
    pthread_mutex_init(&s->inbox_mu, NULL);
    if (!s->cfg.max_header_bytes)
        s->cfg.max_header_bytes = PV_HTTP_DEF_HEADER_BYTES;
    if (!s->cfg.max_memory_body)
        s->cfg.max_memory_body = PV_HTTP_DEF_MEMORY_BODY;
    if (!s->cfg.max_file_body)
        s->cfg.max_file_body = PV_HTTP_DEF_FILE_BODY;
    if (s->cfg.idle_timeout_s <= 0)
        s->cfg.idle_timeout_s = PV_HTTP_DEF_IDLE_S;
    if (s->cfg.read_timeout_s <= 0)
        s->cfg.read_timeout_s = PV_HTTP_DEF_READ_S;
    if (s->cfg.write_timeout_s <= 0)
        s->cfg.write_timeout_s = PV_HTTP_DEF_WRITE_S;
    s->wto.tv_sec = s->cfg.write_timeout_s;
    s->in_window = PV_HTTP_IN_WINDOW;
    if (s->cfg.max_header_bytes + 1 > s->in_window)
        s->in_window = s->cfg.max_header_bytes + 1;
    if (getrandom(&s->rng, sizeof(s->rng), 0) != sizeof(s->rng))
        s->rng = (uint64_t)pv_mono_us() ^ (uint64_t)(uintptr_t)s;

    while (cfg->routes && cfg->routes[n].method)
        n++;
    s->routes = calloc(n ? n : 1, sizeof(*s->routes));
    if (!s->routes)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (pv_route_compile(&cfg->routes[i], &s->routes[i]) < 0) {
            pv_log(PV_LOG_ERROR, LOG_ACTOR, NULL, NULL, "bad route pattern %s",
                   cfg->routes[i].pattern ? cfg->routes[i].pattern : "(null)");
            goto fail;
        }
    }
    s->nroutes = n;
    return s;
fail:
    free(s->routes);
    free(s);
    return NULL;
}

static void pv_listeners_close(pv_http_server_t *s)
{
    for (int i = 0; i < s->nlst; i++) {
        if (s->lst[i].lev)
            evconnlistener_free(s->lst[i].lev);
        if (s->lst[i].retry)
            event_free(s->lst[i].retry);
        s->lst[i].lev = NULL;
        s->lst[i].retry = NULL;
    }
}

void pv_http_server_shutdown(pv_http_server_t *srv)
{
    if (!srv)
        return;
    srv->shutting_down = true;
    pv_listeners_close(srv);
    for (pv_conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (!c->bev || c->req_live || c->state != C_HEAD)
            continue; /* in flight: closes after its answer */
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            continue; /* a head is arriving: answer it, then close */
        c->refs++;
        pv_conn_drop(c);
        c->refs--;
        pv_conn_maybe_free(c);
    }
}

bool pv_http_server_idle(pv_http_server_t *srv)
{
    return !srv || srv->nconns == 0;
}

void pv_http_server_free(pv_http_server_t *srv)
{
    if (!srv)
        return;
    pv_listeners_close(srv);
    while (srv->inbox) { /* handed over but never adopted */
        pv_handoff_t *h = srv->inbox;
        srv->inbox = h->next;
        evutil_closesocket(h->fd);
        free(h);
    }
    if (srv->inbox_ev)
        event_free(srv->inbox_ev);
    if (srv->inbox_fd >= 0)
        close(srv->inbox_fd);
    pthread_mutex_destroy(&srv->inbox_mu);
    while (srv->conns) {
        pv_conn_t *c = srv->conns;
        if (c->job) { /* wait for its thread: it holds the fd */
            uint64_t v;
            while (read(c->job->efd, &v, sizeof(v)) < 0 && errno == EINTR)
                ;
            pv_job_free(c->job);
            c->job = NULL;
        }
        if (c->bev)
            bufferevent_free(c->bev);
        c->bev = NULL;
        if (c->req_live)
            pv_req_cleanup(c);
        c->refs = 0;
        pv_conn_maybe_free(c);
    }
    free(srv->routes);
    free(srv);
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
    pv_conn_t *c = req->conn;
    if (!c->req_live || !req->method[0])
        return NULL;
    for (size_t i = 0; i < c->nhdrs; i++)
        if (pv_http_hdr_is(&c->hdrs[i], name))
            return c->hdrs[i].value;
    return NULL;
}

const char *pv_http_param(pv_http_req_t *req, const char *name)
{
    size_t nl = strlen(name);
    for (int i = 0; i < req->nparams; i++) {
        const pv_route_seg_t *sg = req->param_name[i];
        if (sg->len == nl && memcmp(sg->s, name, nl) == 0)
            return req->param_val[i];
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
            pv_http_pct_decode(p, klen, key, true) == (ssize_t)nl &&
            memcmp(key, name, nl) == 0) {
            const char *v = eq ? eq + 1 : p + plen;
            size_t vlen = eq ? plen - klen - 1 : 0;
            if (vlen >= buflen || pv_http_pct_decode(v, vlen, buf, true) < 0)
                return NULL;
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
    if (req->body_mode != PV_BODY_FILE || !req->tmp_made)
        return NULL;
    return &req->file;
}

void pv_http_body_file_taken(pv_http_req_t *req) { req->tmp_taken = true; }
