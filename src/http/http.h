/*
 * http.h — pv's HTTP/1.1 server over libevent bufferevents (plain or TLS).
 *
 * Why our own layer: evhttp in libevent 2.1 holds a whole request body in
 * memory before it calls back, and uploads must stream to disk. Parsing is
 * kept apart from I/O: src/http/http_parse.c is a pure parser (no I/O, no
 * allocation) with a libFuzzer target; this layer feeds it bytes.
 *
 * One pv_http_server_t lives on one loop (src/runtime/actor.h), and a
 * connection and all its requests and replies stay on that loop. Each
 * server has an actor on its loop, with its own messages (enum
 * pv_http_srv_msg): that is how other threads reach it. Servers grouped
 * with pv_http_server_group share one listening socket: the loop that
 * accepts deals each connection round-robin to the group, as a message to
 * the chosen server's actor. No SO_REUSEPORT, so a second daemon cannot
 * take the port.
 *
 * Slow and greedy clients: connections are capped (admit.c), in all and
 * per client address on public listeners and apart on private ones, and
 * one past a cap is refused at once; a request's head and body each have
 * a deadline over their whole length (conn.c), which a client sending a
 * byte now and then cannot stretch; when file descriptors run out anyway,
 * a spare one lets health checks in and accepting pauses (server.c).
 *
 * TLS: each server holds its own reference to the SSL_CTX that its new
 * connections use, and only its loop touches it. A reload is a
 * PV_HTTP_SRV_TLS message carrying the next context with a reference of
 * its own; the server swaps it in and drops its old reference on its own
 * thread. A connection already accepted keeps its SSL, which holds its
 * own reference to the context it began with.
 *
 * Request life: headers parsed -> route matched (404/405 otherwise) ->
 * the server's authorize hook (may answer 401/403 before any body is read)
 * -> body read according to the route's body mode (413 when over the
 * limit, 400 on framing errors) -> handler called. The handler (or anything
 * later on the same loop) answers exactly once with pv_http_respond*() or
 * the stream calls; the request object stays valid until then, even when
 * the client went away (then the answer is dropped; pv_http_is_closed()).
 */
#ifndef PV_HTTP_H
#define PV_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "runtime/actor.h"

typedef struct ssl_ctx_st SSL_CTX;

typedef struct pv_http_server pv_http_server_t;
typedef struct pv_http_req pv_http_req_t;

enum pv_http_body_mode {
    PV_BODY_NONE,   /* a body is drained and ignored (limit still applies) */
    PV_BODY_MEMORY, /* held in memory up to max_body; pv_http_body() */
    PV_BODY_FILE,   /* streamed to a temp file while SHA-256 is computed;
                       pv_http_body_file() */
};

enum pv_http_auth {
    PV_AUTH_NONE,   /* no credentials needed */
    PV_AUTH_BEARER, /* Authorization: Bearer <access token> */
    PV_AUTH_SIGNED, /* presigned URL query (expires, sig, ...) */
};

enum pv_http_listener_kind {
    PV_LISTEN_PUBLIC = 1,  /* the TLS listener */
    PV_LISTEN_PRIVATE = 2, /* plain HTTP: health checks, /metrics */
};

typedef void (*pv_http_handler_fn)(pv_http_req_t *req);

/* One row of the route table. Patterns are literal segments and {name}
 * captures, e.g. "/api/v1/photos/{id}/content"; a capture matches one
 * non-empty segment. The table ends with a row whose method is NULL. */
typedef struct pv_http_route {
    const char *method;      /* "GET", "POST", "DELETE"; GET also serves HEAD */
    const char *pattern;     /* path pattern, see above */
    pv_http_handler_fn fn;   /* called once the body is complete */
    int auth;                /* enum pv_http_auth */
    int body;                /* enum pv_http_body_mode */
    uint64_t max_body;       /* bytes; 0: the server default for the mode */
    int listeners;           /* mask of enum pv_http_listener_kind */
    const char *name;        /* label for logs and metrics */
} pv_http_route_t;

/* A header sent with every answer: the application's site-wide policy
 * (Content-Security-Policy, Strict-Transport-Security, ...). The HTTP
 * layer has no policy of its own; it sends what its config lists. */
typedef struct pv_http_default_header {
    const char *name;
    const char *value;
    bool tls_only;           /* on TLS connections only (HSTS, RFC 6797 7.2) */
} pv_http_default_header_t;

typedef struct pv_http_config {
    const pv_http_route_t *routes;
    /* Added to every answer after the server's own headers, in this
     * order; ends with a row whose name is NULL (NULL: none). A name or
     * value that could break the head makes pv_http_server_new fail. */
    const pv_http_default_header_t *headers;
    /* Decides a request with auth != PV_AUTH_NONE before its body is read:
     * returns 0 to go on, or an HTTP status (401, 403) after it answered
     * the request itself with pv_http_respond_error(). It may call
     * pv_http_set_user(). */
    int (*authorize)(pv_http_req_t *req, const pv_http_route_t *route);
    void *app;                 /* handed back by pv_http_app() */
    const char *tmp_dir;       /* where PV_BODY_FILE bodies go */
    pv_pool_t *io;             /* runs the fsync of each finished upload
                                  (pvd: app->io); NULL: on the loop */
    size_t max_header_bytes;   /* request line + headers; 431 past it */
    uint64_t max_memory_body;  /* default limit for PV_BODY_MEMORY */
    uint64_t max_file_body;    /* default limit for PV_BODY_FILE */
    int idle_timeout_s;        /* keep-alive idle before close */
    int read_timeout_s;        /* no byte for this long while a request
                                  arrives: 408 (or a close between them) */
    int write_timeout_s;       /* a slow client reading the answer */
    /* Deadlines over a whole phase, which a client sending a byte now and
     * then cannot stretch (conn.c, "Deadlines"): 408 request_timeout. */
    int header_timeout_s;      /* the head whole within this of its first
                                  byte (of the accept on a new connection) */
    int body_timeout_s;        /* a body gets this long, plus 1 s ... */
    uint64_t body_min_rate;    /* ... for every this many bytes received */
    /* Caps on connections (admit.c). Past one a connection is refused at
     * once: closed, or on plain HTTP sent a fixed 503 too_many_connections
     * with Retry-After: 1. */
    int max_connections;       /* on PV_LISTEN_PUBLIC listeners, all servers
                                  of a group together; 0: from RLIMIT_NOFILE,
                                  (soft limit - 256 - max_private_connections)
                                  / 2, at least 16 */
    int max_connections_per_ip;  /* of those, from one address (an IPv6
                                    address by its /64); 0: 128 */
    int max_private_connections; /* on PV_LISTEN_PRIVATE listeners, apart, so
                                    that a public flood never takes health
                                    checks' place; 0: 32 */
    const char *ip_cap_exempt; /* addresses not held to max_connections_per_ip,
                                  comma- or space-separated (pvd: its trusted
                                  proxies, which carry many clients), or NULL */
    /* Called after each answer is complete (access log, metrics). */
    void (*on_done)(pv_http_req_t *req, int status, uint64_t bytes_out,
                    double ms);
    /* Plain HTTP as a way to HTTPS (pv_http_server_set_redirect): when
     * non-zero, a request on a PV_LISTEN_PRIVATE listener for anything but
     * the routes named in redirect_exempt is answered 301 (GET, HEAD) or
     * 308 (others, which keep their method and body) to
     * https://HOST[:redirect_https_port]/PATH?QUERY, HOST from the request's
     * Host header (400 bad_host without a valid one). */
    int redirect_https_port;
    const char *const *redirect_exempt; /* route names, NULL-terminated */
} pv_http_config_t;

/* The server's own messages, handled by its actor on its loop. */
enum pv_http_srv_msg {
    PV_HTTP_SRV_CONN, /* an accepted socket, dealt to this loop by the group's
                         accepting loop (server.c makes and sends these) */
    PV_HTTP_SRV_TLS,  /* pv_http_srv_tls_t: the context for new TLS
                         connections from now on; answered (status 0) once
                         swapped in, when the sender set a continuation */
    PV_HTTP_SRV_GONE, /* a connection this server counted (per address) has
                         ended on another loop (admit.c makes and sends these) */
    PV_HTTP_SRV_MSG_COUNT
};

typedef struct pv_http_srv_tls {
    pv_msg_t msg;   /* type PV_HTTP_SRV_TLS */
    SSL_CTX *tls;   /* a reference of the message's own; the server takes it */
} pv_http_srv_tls_t;

/* A PV_HTTP_SRV_TLS message for ctx, holding its own reference
 * (SSL_CTX_up_ref), released with the message if never delivered. NULL
 * when out of memory. */
pv_http_srv_tls_t *pv_http_srv_tls_new(SSL_CTX *ctx);

/* A server on loop, with its actor there: call before the loop runs (or
 * on it). */
pv_http_server_t *pv_http_server_new(pv_loop_t *loop, const pv_http_config_t *cfg);
/* The server's actor: messages of enum pv_http_srv_msg go here. */
pv_actor_t *pv_http_server_actor(pv_http_server_t *srv);
/* The context for new TLS connections, before the server's loop runs
 * (later, send PV_HTTP_SRV_TLS): the server takes its own reference. */
void pv_http_server_set_tls(pv_http_server_t *srv, SSL_CTX *ctx);
/* Bind and listen on "ADDR:PORT" ("127.0.0.1:8443", "[::1]:8443"; port 0:
 * the OS picks), without SO_REUSEPORT. With tls, connections speak TLS
 * with the context of the server they are dealt to (and are closed while
 * it has none). Returns 0 or -errno. */
int pv_http_listen(pv_http_server_t *srv, const char *addr_port, bool tls, int kind);
/* The port a listener of that kind is bound to (useful with port 0), or
 * -ENOENT. */
int pv_http_server_port(pv_http_server_t *srv, int kind);
/* Turn on the redirect to HTTPS (pv_http_config_t.redirect_https_port)
 * once the HTTPS port is known (pv_http_server_port), before the server's
 * loop runs: exempt (a static array) names the routes still answered. */
void pv_http_server_set_redirect(pv_http_server_t *srv, int https_port,
                                 const char *const *exempt);
/* Make the servers (one per loop, none running yet) share accepts: each
 * accepted connection is dealt round-robin to the group, so a burst of
 * connections does not all land on the loop that woke first. Listen on
 * one of them only; the array must outlive the servers. */
void pv_http_server_group(pv_http_server_t **servers, int n);
/* Listen on an already listening socket (another loop's): the socket is
 * duplicated, so loops share one bound port without SO_REUSEPORT. */
int pv_http_listen_fd(pv_http_server_t *srv, int fd, bool tls, int kind);
/* The listening socket of the first listener of `kind`, or -ENOENT. */
int pv_http_listener_fd(pv_http_server_t *srv, int kind);
/* Connections open on listeners of that kind, all servers of the group
 * together (a relaxed read: a figure for status and tests). */
int pv_http_server_conns(pv_http_server_t *srv, int kind);
/* Stop accepting; connections finish their in-flight request then close. */
void pv_http_server_shutdown(pv_http_server_t *srv);
/* True when no connection is left (used to finish a graceful stop). */
bool pv_http_server_idle(pv_http_server_t *srv);
/* With its loop stopped (in a group: every loop of the group stopped), and
 * cfg.io stopped (pv_pool_stop) so that no upload's fsync is still to
 * answer it: connections dealt but never adopted are closed, uploads in
 * flight are dropped. */
void pv_http_server_free(pv_http_server_t *srv);

/* ---- request accessors (valid until the answer is complete) ---- */
const char *pv_http_method(pv_http_req_t *req); /* "GET", "HEAD", ... */
bool pv_http_is_head(pv_http_req_t *req);
const char *pv_http_path(pv_http_req_t *req);  /* percent-decoded, no query */
const char *pv_http_raw_path(pv_http_req_t *req); /* as sent, no query */
const char *pv_http_query(pv_http_req_t *req); /* after '?', or "" */
/* Value of a query parameter, percent-decoded into buf; NULL if absent. */
const char *pv_http_query_param(pv_http_req_t *req, const char *name,
                                char *buf, size_t buflen);
const char *pv_http_header(pv_http_req_t *req, const char *name); /* or NULL */
/* Every field line of that name joined in order with ", " (RFC 9110 5.3):
 * what a list-valued header (X-Forwarded-For) says in all, where
 * pv_http_header gives its first line only. NULL when absent, or when the
 * copy that joins several lines cannot be made (out of memory). Valid
 * until the answer is complete. */
const char *pv_http_header_all(pv_http_req_t *req, const char *name);
const char *pv_http_param(pv_http_req_t *req, const char *name); /* {name} */
const char *pv_http_remote_addr(pv_http_req_t *req); /* "127.0.0.1" */
const char *pv_http_request_id(pv_http_req_t *req);
const pv_http_route_t *pv_http_route(pv_http_req_t *req);
int pv_http_listener_kind(pv_http_req_t *req);
void *pv_http_app(pv_http_req_t *req);
bool pv_http_is_closed(pv_http_req_t *req);

/* The authenticated user's id, set by the authorize hook. */
void pv_http_set_user(pv_http_req_t *req, const char *user_id);
const char *pv_http_user(pv_http_req_t *req); /* or NULL */
/* A per-request slot for the handler's own state. */
void pv_http_set_data(pv_http_req_t *req, void *data, void (*free_fn)(void *));
void *pv_http_data(pv_http_req_t *req);

/* PV_BODY_MEMORY: the body (NUL-terminated, len excludes the NUL). */
const char *pv_http_body(pv_http_req_t *req, size_t *len);
/* PV_BODY_FILE: the temp file holding the body, already fsync'd. The
 * server unlinks it after the answer unless the handler took it (renamed it
 * away and called pv_http_body_file_taken). */
typedef struct pv_http_body_file {
    const char *path;    /* absolute path of the temp file */
    uint64_t bytes;      /* body length */
    uint8_t sha256[32];  /* SHA-256 of the body */
} pv_http_body_file_t;
const pv_http_body_file_t *pv_http_body_file(pv_http_req_t *req);
void pv_http_body_file_taken(pv_http_req_t *req);

/* ---- answers (on the request's loop, exactly once) ---- */
/* Extra response header for the coming answer. */
void pv_http_add_header(pv_http_req_t *req, const char *name,
                        const char *value);
/* Make room now for n more bytes of such headers ("Name: value\r\n"), so
 * that adding them later cannot fail for memory: for a header that must
 * go with an answer written after a commit. 0 or -ENOMEM. */
int pv_http_header_room(pv_http_req_t *req, size_t n);
/* Make room now for n more bytes of such headers ("Name: value\r\n"), so
 * that adding them later cannot fail for memory: for a header that must
 * go with an answer written after a commit. 0 or -ENOMEM. */
int pv_http_header_room(pv_http_req_t *req, size_t n);
void pv_http_respond(pv_http_req_t *req, int status, const char *content_type,
                     const void *body, size_t len);
/* Serialises and decrefs obj; application/json; charset=utf-8. */
void pv_http_respond_json(pv_http_req_t *req, int status, json_t *obj);
/* {"error":{"code","message"}} with the status. */
void pv_http_respond_error(pv_http_req_t *req, int status, const char *code,
                           const char *message);
/* A file (fd is taken and closed), with ETag / If-None-Match (304),
 * single Range (206, 416), HEAD, Content-Length; cache_control may be NULL. */
void pv_http_respond_file(pv_http_req_t *req, int fd, const char *content_type,
                          const char *etag, const char *cache_control);
/* Streaming (SSE): headers now, chunks later, then end. on_close, if set,
 * is called once when the client goes away before stream_end (never from
 * inside stream_begin/write); the request stays valid after it, and the
 * handler still ends it with pv_http_stream_end (writes are then dropped). */
void pv_http_stream_begin(pv_http_req_t *req, int status,
                          const char *content_type,
                          void (*on_close)(pv_http_req_t *req, void *arg),
                          void *arg);
void pv_http_stream_write(pv_http_req_t *req, const void *data, size_t len);
void pv_http_stream_end(pv_http_req_t *req);

/* Reason phrase for a status ("Not Found"). */
const char *pv_http_reason(int status);

/* ---- TLS (src/http/tls.c) ---- */
/* Server context: TLS 1.2+, modern AEAD ciphers, cert+key from PEM files. */
SSL_CTX *pv_tls_ctx_new(const char *cert_file, const char *key_file,
                        char *err, size_t errlen);
/* Makes a self-signed ECDSA P-256 certificate (CN and SAN localhost,
 * 127.0.0.1, ::1; one year) unless both files exist; key written 0600. */
int pv_tls_ensure_self_signed(const char *cert_file, const char *key_file);

#endif
