/*
 * http_int.h — what the files of the HTTP server share; http.h stays the
 * public API. Not for use outside src/http/.
 *
 * The server is six files, each owning one thing, called only downwards:
 *
 *   server.c  listeners, accepting and dealing connections to the loops
 *             (its actor's messages), the server's life
 *                                          -> conn.c, resp.c, route.c, admit.c
 *   conn.c    a connection's state machine: heads, bodies, handlers,
 *             keep-alive, linger, deadlines; the request's accessors
 *                                          -> resp.c, sink.c, route.c, admit.c,
 *                                             parser
 *   admit.c   the caps on connections: counts, refusals, tickets
 *   resp.c    answers: status line and headers, Range/ETag/304/416, files,
 *             SSE streams                  -> parser
 *   sink.c    an upload's temp file, its SHA-256 and its fsync on the io pool
 *   route.c   the route table (pure, route.h)
 *
 * The one call that goes up, from an answer back to the connection that
 * must move on once it is queued, goes through pv_conn_ops_t: conn.c gives
 * each connection its table, and resp.c calls through it (h2o's
 * h2o_conn_callbacks_t does the same for its protocol-neutral code). So
 * no two files call each other by name (`make layers` checks that).
 */
#ifndef PV_HTTP_INT_H
#define PV_HTTP_INT_H

#include "http/http.h"
#include "http/http_parse.h"
#include "http/route.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct evp_md_ctx_st EVP_MD_CTX;
struct evconnlistener;

#define PV_HTTP_MAX_LISTENERS 8
#define PV_HTTP_IN_WINDOW (256u * 1024)  /* input buffered per connection */
#define PV_HTTP_OUT_WINDOW (256u * 1024) /* file bytes queued ahead (TLS) */
#define PV_HTTP_FILE_CHUNK (64u * 1024)
#define PV_HTTP_LINGER_S 2
#define PV_HTTP_LINGER_MAX (1024u * 1024)
#define PV_HTTP_ID_MAX 64
#define PV_HTTP_BODY_MIN 1024u           /* a memory body's first buffer */
#define PV_HTTP_BODY_KEEP (16u * 1024)   /* kept for the next request */

#define PV_HTTP_LOG "http" /* the actor name in log lines */

/* States of a connection (pv_conn_t.state); conn.c's opening comment
 * tells the story. */
enum pv_conn_state {
    C_SNIFF,   /* a TLS listener's new socket: TLS or plain text? (conn.c) */
    C_HEAD,    /* waiting for / reading a request head */
    C_BODY,    /* reading the body into memory, a temp file or nowhere */
    C_FSYNC,   /* the upload is being made durable off the loop (sink.c) */
    C_HANDLER, /* the route's handler owns the request until it answers */
    C_STREAM,  /* a streamed (SSE) answer is open */
    C_SEND,    /* the answer is queued; done when the output drains */
    C_LINGER,  /* answered with close: discarding what the peer still sends */
};

typedef struct pv_conn pv_conn_t;

/* What an answer tells its connection (conn.c fills it in; resp.c calls). */
typedef struct pv_conn_ops {
    /* The whole answer is queued: the connection completes the request
     * once the output has drained, or at once when the client is gone. */
    void (*answered)(pv_conn_t *c);
    /* The answer cannot be finished (a file read failed after its head
     * promised the bytes): give up on the client. */
    void (*cut)(pv_conn_t *c);
    /* Drop a reference taken with c->refs++; frees c when nothing holds it. */
    void (*release)(pv_conn_t *c);
} pv_conn_ops_t;

/* ---- sink.c: a PV_BODY_FILE body on its way to disk ---- */

typedef struct pv_sink_job pv_sink_job_t;

typedef struct pv_sink {
    char *path;               /* malloc'd temp file name, or NULL */
    int fd;                   /* -1 once closed */
    bool made;                /* the file exists: unlinked unless taken */
    bool taken;               /* the handler renamed it away */
    EVP_MD_CTX *md;           /* SHA-256 while the body arrives */
    pv_http_body_file_t file; /* what the handler sees */
    pv_sink_job_t *job;       /* an fsync in flight, or NULL */
} pv_sink_t;

/* Called on the loop once the fsync is done: rc is 0 or -errno. */
typedef void (*pv_sink_done_fn)(void *arg, int rc);

void pv_sink_init(pv_sink_t *s);
/* A new temp file in dir ("/tmp" when NULL). 0 or -errno. */
int pv_sink_open(pv_sink_t *s, const char *dir);
/* Appends body bytes and hashes them. 0 or -errno. */
int pv_sink_write(pv_sink_t *s, const void *p, size_t n);
/* The body is complete: fixes the digest and the length. */
void pv_sink_finish(pv_sink_t *s, uint64_t bytes);
/* Makes the file durable without blocking the loop: the fsync runs on io
 * and done(arg, rc) then runs on home's loop. Returns 1 when it was handed
 * off, or else the outcome of an fsync made here (no pool, or it refused),
 * 0 or -errno, and done is not called. */
int pv_sink_sync(pv_sink_t *s, pv_pool_t *io, pv_actor_t *home, pv_sink_done_fn done,
                 void *arg);
bool pv_sink_busy(const pv_sink_t *s);
/* The server is being freed (its pool stopped, its actor's mailbox with
 * the fsync's answer freed): forget the fsync in flight. */
void pv_sink_abandon(pv_sink_t *s);
void pv_sink_close(pv_sink_t *s);
/* Closes, unlinks unless taken, frees; the sink is empty again. */
void pv_sink_release(pv_sink_t *s);

/* ---- admit.c: which connections come in ---- */

typedef struct pv_admit_share pv_admit_share_t; /* a group's totals */
typedef struct pv_admit_table pv_admit_table_t; /* per-address counts */

/* An accepted socket's admission. The accepting server makes it (counted),
 * sends it to the loop the connection is dealt to as PV_HTTP_SRV_CONN; the
 * connection keeps it, and at its close it goes back to the accepting
 * server as PV_HTTP_SRV_GONE when that one counted its address. */
typedef struct pv_conn_ticket {
    pv_msg_t msg;
    evutil_socket_t fd;          /* until a connection takes it (then -1) */
    int kind;                    /* enum pv_http_listener_kind */
    bool tls;                    /* with the receiving server's context */
    struct sockaddr_storage sa;  /* the peer */
    pv_admit_share_t *share;     /* counted in its total while set */
    pv_http_server_t *acceptor;  /* counts key per address, or NULL */
    uint8_t key[16];             /* the address as counted (IPv6: its /64) */
} pv_conn_ticket_t;

/* The server's share of its group's totals, its exempt addresses. 0,
 * -EINVAL (*bad: the ip_cap_exempt entry that is no address), -ENOMEM. */
int pv_admit_init(pv_http_server_t *s, const char **bad);
/* The servers share the first one's totals. */
void pv_admit_group(pv_http_server_t **servers, int n);
void pv_admit_free(pv_http_server_t *s);
/* A counted ticket for an accepted socket, or NULL once it was refused
 * (closed, 503 on plain HTTP) or could not be counted (out of memory). */
pv_conn_ticket_t *pv_admit_accept(pv_http_server_t *s, int kind, bool tls, evutil_socket_t fd,
                                  const struct sockaddr *sa, int salen);
/* The connection of t ended on here's loop: closes its socket if still
 * open, uncounts it (sending it back to its acceptor when that is another
 * server), frees it. */
void pv_admit_release(pv_http_server_t *here, pv_conn_ticket_t *t);
/* PV_HTTP_SRV_GONE on the acceptor's loop. */
void pv_admit_gone(pv_http_server_t *s, pv_conn_ticket_t *t);
/* Refuses a socket now (why: for the log, which says it once per 10 s). */
void pv_admit_refuse(pv_http_server_t *s, evutil_socket_t fd, bool tls, const char *why);
int pv_admit_conns(const pv_http_server_t *s, int kind);

/* ---- the request, the connection, the server ---- */

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
    pv_route_param_t param[PV_ROUTE_MAX_PARAMS]; /* values NUL-terminated in segbuf */
    char id[PV_HTTP_ID_MAX + 1];
    char user_small[72];
    char *user;           /* user_small, a heap copy, or NULL */
    void *data;
    void (*data_free)(void *);
    struct pv_req_joined *joined; /* pv_http_header_all's copies, freed with
                                     the request */
    /* body */
    int body_mode;
    uint64_t body_limit;
    uint64_t body_got;
    int64_t body_left;    /* Content-Length bytes still to come */
    pv_http_chunked_t chunked;
    bool body_done;       /* the whole body was read (or there is none) */
    size_t body_len;
    pv_sink_t sink;       /* PV_BODY_FILE */
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
    const pv_conn_ops_t *ops; /* conn.c's, for resp.c */
    pv_conn_ticket_t *ticket; /* its count (admit.c), released when freed */
    pv_conn_t *prev, *next;
    struct bufferevent *bev; /* NULL once the client is gone */
    struct event *sniff;     /* C_SNIFF: waits for the first byte, the socket
                                still in ticket->fd; NULL otherwise */
    int kind;
    bool tls;
    int state;
    int refs;         /* callers on the stack; freeing waits for 0 */
    bool req_live;    /* c->req is in use */
    bool keep;        /* the answer said keep-alive */
    bool close_after; /* close once the current answer is done */
    bool peer_eof;    /* the client shut its sending side */
    bool fresh;       /* no request seen yet */
    bool plain_on_tls;/* plain text came to a TLS listener: every request
                         is answered 400 https_required */
    int rto_cur;      /* read timeout in force (s), 0 none, -1 unset */
    struct event *timer;  /* the deadline of the phase (conn.c "Deadlines") */
    int64_t timer_at_us;  /* when it fires, 0 when not pending */
    int64_t head_t0_us; /* first byte of the head being read (the accept,
                           on a new connection), 0 while idle */
    int64_t body_t0_us; /* the body began to be read */
    int64_t linger_t0_us;
    size_t linger_bytes;
    /* Scratch: the head, the decoded path and its segments. Grown only
     * between requests. */
    char *scratch;
    size_t scratch_cap;
    char *head, *pathbuf, *segbuf;
    pv_http_hdr_t hdrs[PV_HTTP_MAX_HEADERS];
    size_t nhdrs;
    char *body;       /* PV_BODY_MEMORY buffer: grown as bytes arrive, kept
                         for the next request up to PV_HTTP_BODY_KEEP */
    size_t body_cap;
    char *extra;      /* extra response header lines */
    size_t extra_len, extra_cap;
    char remote[INET6_ADDRSTRLEN];
    pv_http_req_t req;
};

typedef struct pv_listener {
    pv_http_server_t *srv;
    struct evconnlistener *lev;
    struct event *retry;   /* re-enables accepting after an accept error */
    int kind;              /* enum pv_http_listener_kind */
    bool tls;              /* with the server's context (srv->tls) */
    int port;              /* as bound (the OS's choice for port 0) */
} pv_listener_t;

struct pv_http_server {
    pv_loop_t *loop;
    struct event_base *base; /* the loop's */
    pv_actor_t *actor;       /* its messages (enum pv_http_srv_msg) */
    SSL_CTX *tls;            /* new TLS connections' context: our own
                                reference, swapped on PV_HTTP_SRV_TLS */
    pv_http_config_t cfg;
    pv_route_table_t *routes;
    pv_listener_t lst[PV_HTTP_MAX_LISTENERS];
    int nlst;
    pv_conn_t *conns;
    size_t nconns;
    bool shutting_down;
    uint64_t rng;       /* request ids (conn.c) */
    size_t in_window;
    struct timeval wto;
    time_t date_sec;    /* the Date header, once a second (resp.c) */
    char date[40];
    /* cfg.headers as header lines, for plain and for TLS connections */
    char *hdr_plain, *hdr_tls;
    size_t hdr_plain_len, hdr_tls_len;
    pv_http_server_t **group;  /* all servers, when accepts are shared */
    int ngroup;
    unsigned rr;               /* next server to deal a connection to */
    bool freeing;              /* pv_http_server_free is under way */
    /* admit.c */
    pv_admit_share_t *share;   /* the group's totals (shared, refcounted) */
    pv_admit_table_t *addrs;   /* per-address counts, on the accepting server */
    uint8_t (*exempt)[16];     /* cfg.ip_cap_exempt, parsed */
    size_t nexempt;
    uint64_t refused;          /* refusals since the last log line */
    int64_t refused_log_us;    /* when that line was written */
    int spare_fd;              /* kept open for when descriptors run out
                                  (server.c), -1 when spent */
    int64_t accept_log_us;     /* the last "accept: ..." warning */
};

/* ---- conn.c, for server.c ---- */
/* A connection around an admitted socket; it takes the ticket (released at
 * once on failure). */
void pv_conn_new(pv_http_server_t *s, pv_conn_ticket_t *t);
/* The client is gone, or we give up on it (see conn.c). */
void pv_conn_drop(pv_conn_t *c);
void pv_conn_release(pv_conn_t *c);
/* The server is being freed: everything of c goes now. */
void pv_conn_destroy(pv_conn_t *c);

/* ---- resp.c, for conn.c ---- */
/* Answers an error the connection found itself ({"error":{...}} JSON). */
void pv_resp_error(pv_http_req_t *r, int status, const char *code, const char *message);
/* Adds "name: value" to the coming answer's head (refused when unsafe). */
void pv_resp_header(pv_http_req_t *r, const char *name, const char *value);
/* "100 Continue", before a body is read. */
void pv_resp_continue(pv_conn_t *c);
/* Tops up the output from a file being sent on TLS. 0 or -errno. */
int pv_resp_file_refill(pv_conn_t *c);

/* ---- resp.c, for server.c ---- */
/* Lays out s->cfg.headers once, as the lines every answer carries.
 * 0, -EINVAL (an unsafe header: *bad names it), -ENOMEM. */
int pv_resp_defaults(pv_http_server_t *s, const char **bad);

/* ---- small shared helpers ---- */

static inline struct evbuffer *pv_conn_out(pv_conn_t *c)
{
    return bufferevent_get_output(c->bev);
}

/* The read timeout in force: secs, or none (0). Writes always have one. */
static inline void pv_conn_set_rto(pv_conn_t *c, int secs)
{
    if (!c->bev || c->rto_cur == secs)
        return;
    c->rto_cur = secs;
    struct timeval rt = {secs, 0};
    bufferevent_set_timeouts(c->bev, secs > 0 ? &rt : NULL, &c->srv->wto);
}

/* The request header's value (case-insensitive name), or NULL. */
static inline const char *pv_req_header(pv_http_req_t *req, const char *name)
{
    pv_conn_t *c = req->conn;
    if (!c->req_live || !req->method[0])
        return NULL;
    for (size_t i = 0; i < c->nhdrs; i++)
        if (pv_http_hdr_is(&c->hdrs[i], name))
            return c->hdrs[i].value;
    return NULL;
}

#endif
