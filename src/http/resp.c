/*
 * resp.c — the response writer: every byte pvd sends back, from the status
 * line to the last chunk of an event stream.
 *
 * An answer is queued whole before the handler returns: the head goes out
 * in one evbuffer_add (built on the stack, sized exactly in the rare case
 * of many extra headers), and on TLS a small body is copied into the same
 * buffer chain so that head and body leave in one record. Files go out by
 * sendfile on plain connections and in refilled chunks on TLS (OpenSSL
 * cannot sendfile), at most PV_HTTP_OUT_WINDOW ahead of the client.
 * Conditional and partial answers (ETag, If-None-Match -> 304, single
 * Range -> 206, 416) are decided here because they depend only on the
 * file and the request's headers, parsed by the pure parser.
 *
 * What happens after an answer is queued is the connection's business:
 * it learns through c->ops (http_int.h), so this file never calls conn.c.
 * A request is answered exactly once (resp_take); a late second answer
 * is logged and dropped rather than corrupting the stream.
 */
#include "http/http_int.h"
#include "base/pv.h"

#include <event2/bufferevent_ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PV_HTTP_TLS_COALESCE (64u * 1024) /* body copied next to the head */
#define PV_HTTP_HEAD_EST 1024u            /* a head without extra headers */

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

/* ---------------------------------------------------------------- *
 * Heads
 * ---------------------------------------------------------------- */

/* The Date header value, formatted once a second. Names are spelled out
 * here because strftime's %a/%b follow the locale. */
static const char *resp_date(pv_http_server_t *s)
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

/* Text that goes into a header line must not carry CR, LF or NUL. */
static bool resp_header_safe(const char *v)
{
    for (; *v; v++)
        if (*v == '\r' || *v == '\n')
            return false;
    return true;
}

static size_t resp_u64_str(uint64_t v, char *out)
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

/* A bounded string builder for response heads: it counts what does not
 * fit, so one pass tells the size of a second. */
typedef struct resp_hb {
    char *p;
    size_t len, cap;
} resp_hb_t;

static void hb_put(resp_hb_t *b, const char *s, size_t n)
{
    if (n && b->len + n <= b->cap)
        memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void hb_str(resp_hb_t *b, const char *s) { hb_put(b, s, strlen(s)); }

static void hb_u64(resp_hb_t *b, uint64_t v)
{
    char tmp[24];
    hb_put(b, tmp, resp_u64_str(v, tmp));
}

static bool resp_keepalive(pv_conn_t *c)
{
    const pv_http_req_t *r = &c->req;
    return !c->close_after && r->fr.keep_alive && r->body_done &&
           !c->peer_eof && !c->srv->shutting_down;
}

/* Lays out the head into b; the caller checks whether it fit. */
static void resp_head_build(pv_conn_t *c, resp_hb_t *b, int status, const char *ctype,
                            int64_t clen)
{
    pv_http_req_t *r = &c->req;
    char st[4] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                  (char)('0' + status % 10), ' '};

    b->len = 0;
    hb_put(b, "HTTP/1.1 ", 9);
    hb_put(b, st, 4);
    hb_str(b, pv_http_reason(status));
    hb_put(b, "\r\nDate: ", 8);
    hb_str(b, resp_date(c->srv));
    hb_put(b, "\r\n", 2);
    if (ctype) {
        hb_put(b, "Content-Type: ", 14);
        hb_str(b, ctype);
        hb_put(b, "\r\n", 2);
    }
    if (clen >= 0) {
        hb_put(b, "Content-Length: ", 16);
        hb_u64(b, (uint64_t)clen);
        hb_put(b, "\r\n", 2);
    } else if (clen == -2 && r->minor >= 1) {
        hb_str(b, "Transfer-Encoding: chunked\r\n");
    }
    hb_str(b, c->keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    hb_put(b, "X-Request-Id: ", 14);
    hb_str(b, r->id);
    hb_put(b, "\r\n", 2);
    if (c->tls)
        hb_put(b, c->srv->hdr_tls, c->srv->hdr_tls_len);
    else
        hb_put(b, c->srv->hdr_plain, c->srv->hdr_plain_len);
    hb_put(b, c->extra, c->extra_len);
    hb_put(b, "\r\n", 2);
}

/* Writes the response head with one evbuffer_add. clen: the body length,
 * -1 for none, -2 for a chunked stream (or close-delimited on 1.0). */
static void resp_head(pv_conn_t *c, int status, const char *ctype, int64_t clen)
{
    pv_http_req_t *r = &c->req;
    char stackbuf[2048];
    resp_hb_t b = {stackbuf, 0, sizeof(stackbuf)};

    if (status < 100 || status > 599)
        status = 500;
    if (ctype && !resp_header_safe(ctype))
        ctype = NULL;
    c->keep = resp_keepalive(c);
    if (clen == -2 && r->minor == 0)
        c->keep = false; /* 1.0 has no chunked: the close ends the body */
    resp_head_build(c, &b, status, ctype, clen);
    if (b.len > b.cap) {
        /* Rare: many extra headers. Size it exactly and go again. */
        b.cap = b.len;
        b.p = malloc(b.cap);
        if (b.p)
            resp_head_build(c, &b, status, ctype, clen);
        else
            b.len = 0;
    }
    if (!c->keep)
        c->close_after = true;
    if (b.len)
        evbuffer_add(pv_conn_out(c), b.p, b.len);
    r->bytes_out += b.len;
    if (b.p != stackbuf)
        free(b.p);
}

/* A header line we may send: a name without ':', no CR or LF anywhere. */
static bool resp_line_safe(const char *name, const char *value)
{
    return name[0] && !strchr(name, ':') && resp_header_safe(name) && resp_header_safe(value);
}

/* The default header lines of one kind of connection, in table order. */
static char *resp_defaults_text(const pv_http_default_header_t *h, bool tls, size_t *len)
{
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *out = pass ? malloc(n + 1) : NULL;
        if (pass && !out)
            return NULL;
        resp_hb_t b = {out, 0, pass ? n + 1 : 0};
        for (const pv_http_default_header_t *d = h; d && d->name; d++) {
            if (d->tls_only && !tls)
                continue;
            hb_str(&b, d->name);
            hb_put(&b, ": ", 2);
            hb_str(&b, d->value);
            hb_put(&b, "\r\n", 2);
        }
        n = b.len;
        if (pass) {
            out[n] = '\0';
            *len = n;
            return out;
        }
    }
    return NULL;
}

int pv_resp_defaults(pv_http_server_t *s, const char **bad)
{
    for (const pv_http_default_header_t *d = s->cfg.headers; d && d->name; d++) {
        if (!d->value || !resp_line_safe(d->name, d->value)) {
            *bad = d->name;
            return -EINVAL;
        }
    }
    s->hdr_plain = resp_defaults_text(s->cfg.headers, false, &s->hdr_plain_len);
    s->hdr_tls = resp_defaults_text(s->cfg.headers, true, &s->hdr_tls_len);
    return s->hdr_plain && s->hdr_tls ? 0 : -ENOMEM;
}

/* Room for `need` bytes of extra header lines. */
static int resp_extra_reserve(pv_conn_t *c, size_t need)
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

int pv_http_header_room(pv_http_req_t *req, size_t n)
{
    if (!req || !req->conn || req->answered)
        return -EINVAL;
    return resp_extra_reserve(req->conn, req->conn->extra_len + n);
}

void pv_resp_header(pv_http_req_t *req, const char *name, const char *value)
{
    pv_conn_t *c = req->conn;
    size_t nl = strlen(name), vl = strlen(value);
    if (!resp_line_safe(name, value)) {
        pv_log(PV_LOG_WARN, PV_HTTP_LOG, req->id, NULL,
               "refused an unsafe response header");
        return;
    }
    size_t need = c->extra_len + nl + vl + 4;
    if (resp_extra_reserve(c, need) < 0)
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

void pv_http_add_header(pv_http_req_t *req, const char *name,
                        const char *value)
{
    if (!req || !req->conn || req->answered || !name || !value)
        return;
    pv_resp_header(req, name, value);
}

void pv_resp_continue(pv_conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    evbuffer_add(pv_conn_out(c), cont, sizeof(cont) - 1);
}

/* ---------------------------------------------------------------- *
 * Whole answers
 * ---------------------------------------------------------------- */

/* Claims the one answer a request gets. */
static bool resp_take(pv_http_req_t *r, const char *what)
{
    if (!r || !r->conn || !r->conn->req_live || r->answered) {
        pv_log(PV_LOG_WARN, PV_HTTP_LOG, r ? r->id : NULL, NULL,
               "%s on a request already answered", what);
        return false;
    }
    r->answered = true;
    return true;
}

static void resp_free_ref(const void *data, size_t len, void *extra)
{
    (void)len;
    (void)extra;
    free((void *)data);
}

/* Queues a full answer. owned, when set, is a malloc'd body handed over. */
static void resp_body(pv_http_req_t *r, int status, const char *ctype,
                      const void *body, size_t len, char *owned)
{
    pv_conn_t *c = r->conn;

    r->status = status;
    c->refs++;
    if (!c->bev) { /* the client is gone: the answer is dropped */
        free(owned);
        c->ops->answered(c);
        c->ops->release(c);
        return;
    }
    bool nobody = status < 200 || status == 204 || status == 304;
    bool with_body = !nobody && !r->head && len > 0;
    struct evbuffer *out = pv_conn_out(c);
    /* bufferevent_openssl makes one SSL_write (one record, one syscall)
     * per buffer chain: give head and body one chain. */
    bool one_chain = c->tls && len <= PV_HTTP_TLS_COALESCE;
    if (one_chain)
        evbuffer_expand(out, PV_HTTP_HEAD_EST + c->extra_len +
                                 (with_body ? len : 0));
    resp_head(c, status, ctype, nobody ? -1 : (int64_t)len);
    if (with_body) {
        if (owned && !one_chain &&
            evbuffer_add_reference(out, owned, len, resp_free_ref, NULL) == 0)
            owned = NULL;
        else
            evbuffer_add(out, body, len);
        r->bytes_out += len;
    }
    free(owned);
    c->ops->answered(c);
    c->ops->release(c);
}

static void resp_json(pv_http_req_t *r, int status, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(obj);
    if (!s) { /* the answer could not be built: memory ran out */
        static const char oom[] =
            "{\"error\":{\"code\":\"overloaded\",\"message\":\"out of memory; try again in a moment\"}}";
        pv_resp_header(r, "Retry-After", "1");
        resp_body(r, 503, "application/json; charset=utf-8", oom,
                  sizeof(oom) - 1, NULL);
        return;
    }
    resp_body(r, status, "application/json; charset=utf-8", s, strlen(s), s);
}

void pv_resp_error(pv_http_req_t *r, int status, const char *code,
                   const char *message)
{
    r->answered = true;
    resp_json(r, status,
              json_pack("{s:{s:s,s:s}}", "error", "code",
                        code ? code : "error", "message",
                        message ? message : pv_http_reason(status)));
}

void pv_http_respond(pv_http_req_t *req, int status, const char *content_type,
                     const void *body, size_t len)
{
    if (!resp_take(req, "respond"))
        return;
    resp_body(req, status, content_type, body, len, NULL);
}

void pv_http_respond_json(pv_http_req_t *req, int status, json_t *obj)
{
    if (!resp_take(req, "respond_json")) {
        json_decref(obj);
        return;
    }
    resp_json(req, status, obj);
}

void pv_http_respond_error(pv_http_req_t *req, int status, const char *code,
                           const char *message)
{
    if (!resp_take(req, "respond_error"))
        return;
    pv_resp_error(req, status, code, message);
}

/* ---------------------------------------------------------------- *
 * Files
 * ---------------------------------------------------------------- */

int pv_resp_file_refill(pv_conn_t *c)
{
    pv_http_req_t *r = &c->req;
    struct evbuffer *out = pv_conn_out(c);

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
            pv_log(PV_LOG_WARN, PV_HTTP_LOG, r->id, NULL,
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
static int resp_file_queue(pv_conn_t *c, int fd, uint64_t start, uint64_t len)
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
        int rc = evbuffer_add_file_segment(pv_conn_out(c), seg, 0, (ev_off_t)len);
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
    return pv_resp_file_refill(c);
}

/* The etag as a quoted entity tag ("abc" -> "\"abc\""). */
static void resp_etag_quote(const char *etag, char *out, size_t cap)
{
    bool quoted = etag[0] == '"' || (etag[0] == 'W' && etag[1] == '/');
    snprintf(out, cap, quoted ? "%s" : "\"%s\"", etag);
}

/* The Range to send of a file of len bytes: 200 (whole), 206 with
 * start and len narrowed and Content-Range set, or 416 (answered here). */
static int resp_file_range(pv_http_req_t *req, const char *tag, uint64_t *start, uint64_t *len)
{
    char cr[80];
    const char *range = pv_req_header(req, "Range");
    const char *if_range = pv_req_header(req, "If-Range");

    if (range && if_range && (!tag[0] || strcmp(if_range, tag) != 0))
        range = NULL; /* the client's copy is stale: send it whole */
    if (!range)
        return 200;
    uint64_t rs, rl;
    int rr = pv_http_parse_range(range, strlen(range), *len, &rs, &rl);
    if (rr < 0) {
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)*len);
        pv_resp_header(req, "Content-Range", cr);
        pv_resp_error(req, 416, "range_not_satisfiable",
                      "the range is outside the content");
        return 416;
    }
    if (rr != 1)
        return 200; /* several ranges, or none we take: the whole file */
    snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)rs,
             (unsigned long long)(rs + rl - 1), (unsigned long long)*len);
    pv_resp_header(req, "Content-Range", cr);
    *start = rs;
    *len = rl;
    return 206;
}

void pv_http_respond_file(pv_http_req_t *req, int fd, const char *content_type,
                          const char *etag, const char *cache_control)
{
    struct stat st;
    char tag[160] = "";
    uint64_t start = 0, len;

    if (!resp_take(req, "respond_file")) {
        close(fd);
        return;
    }
    pv_conn_t *c = req->conn;
    if (!c->bev) {
        close(fd);
        resp_body(req, 200, NULL, NULL, 0, NULL);
        return;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        pv_resp_error(req, 500, "internal", "cannot read the file");
        return;
    }
    len = (uint64_t)st.st_size;
    if (etag && etag[0] && strlen(etag) < sizeof(tag) - 3 &&
        resp_header_safe(etag)) {
        resp_etag_quote(etag, tag, sizeof(tag));
        pv_resp_header(req, "ETag", tag);
    }
    if (cache_control)
        pv_resp_header(req, "Cache-Control", cache_control);
    const char *inm = pv_req_header(req, "If-None-Match");
    if (tag[0] && inm && pv_http_etag_match(inm, strlen(inm), tag, strlen(tag))) {
        close(fd);
        resp_body(req, 304, NULL, NULL, 0, NULL);
        return;
    }
    pv_resp_header(req, "Accept-Ranges", "bytes");
    int status = resp_file_range(req, tag, &start, &len);
    if (status == 416) {
        close(fd);
        return;
    }
    req->status = status;
    c->refs++;
    resp_head(c, status, content_type, (int64_t)len);
    c->ops->answered(c);
    if (req->head)
        close(fd);
    else if (resp_file_queue(c, fd, start, len) < 0)
        c->ops->cut(c); /* the head promised bytes we cannot send */
    c->ops->release(c);
}

/* ---------------------------------------------------------------- *
 * Streams
 * ---------------------------------------------------------------- */

/* on_close for a client that was gone before the stream began: called
 * from the loop, not from inside pv_http_stream_begin. */
static void resp_stream_closed_later(evutil_socket_t fd, short what, void *arg)
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
    c->ops->release(c);
}

void pv_http_stream_begin(pv_http_req_t *req, int status,
                          const char *content_type,
                          void (*on_close)(pv_http_req_t *req, void *arg),
                          void *arg)
{
    if (!resp_take(req, "stream_begin"))
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
                            resp_stream_closed_later, c, &now) < 0)
            c->refs--;
        return; /* pv_http_stream_end releases the request */
    }
    resp_head(c, status, content_type, -2);
    pv_conn_set_rto(c, 0);
}

void pv_http_stream_write(pv_http_req_t *req, const void *data, size_t len)
{
    if (!req || !req->conn || req->conn->state != C_STREAM)
        return;
    pv_conn_t *c = req->conn;
    if (!c->bev || req->head || len == 0)
        return;
    struct evbuffer *out = pv_conn_out(c);
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
    if (c->bev && !req->head && req->minor >= 1) {
        evbuffer_add(pv_conn_out(c), "0\r\n\r\n", 5);
        req->bytes_out += 5;
    }
    c->ops->answered(c);
    c->ops->release(c);
}
