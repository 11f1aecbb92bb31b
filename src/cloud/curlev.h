/*
 * curlev.h — HTTP for the cloud sync: libcurl's multi interface driven by
 * one libevent event_base, so many transfers share one loop thread and no
 * request owns a thread.
 *
 * The caller builds a CURL easy handle (URL, method, headers, body
 * callbacks) and submits it. curlev adds what every request shares (the
 * timeouts, keep-alive, no signals, no redirects, HTTP(S) only) and runs it
 * when a slot is free: at most max_in_flight transfers are on the wire,
 * the others wait in a FIFO in submission order. Connections stay in the
 * multi handle's cache between requests, so a stream of requests to one
 * endpoint reuses a few keep-alive connections.
 *
 * Everything here runs on the base's thread: pv_curlev_new, submit, cancel
 * and free must be called there, and the callbacks run there (from the
 * base's event callbacks, never from inside submit). Nothing blocks: the
 * sockets are polled by the base, curl's timers are one base timer.
 *
 * A request ends exactly once, in its done callback: completed (any HTTP
 * status), failed in transport, or cancelled (-ECANCELED: pv_curlev_cancel
 * or pv_curlev_free). done owns the easy handle from then on (it usually
 * calls curl_easy_cleanup). Nothing here logs: URLs and headers may carry
 * signatures or tokens.
 */
#ifndef PV_CURLEV_H
#define PV_CURLEV_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;

typedef struct pv_curlev pv_curlev_t;

typedef struct pv_curlev_opts {
    int max_in_flight;        /* transfers on the wire at once (default 8) */
    long connect_timeout_ms;  /* TCP+TLS connect (default 10000) */
    long low_speed_bytes;     /* fail a transfer slower than this many bytes/s... */
    long low_speed_s;         /* ...for this many seconds (default 1 B/s for 30 s) */
    long timeout_ms;          /* whole transfer, 0: none (default: none; big
                               * parts are bounded by the low-speed rule) */
    long idle_keepalive_s;    /* TCP keep-alive probes after this idle time (default 60) */
    const char *ca_file;      /* CA bundle, NULL: the system's */
} pv_curlev_opts_t;

/* How a transfer ended. */
typedef struct pv_curlev_result {
    int rc;            /* 0: an HTTP answer came (see status); -errno:
                        * -ECONNREFUSED, -ETIMEDOUT, -ECONNRESET, -EHOSTUNREACH,
                        * -EPROTO (TLS, bad HTTP), -ENOMEM, -ECANCELED, -EIO, or the
                        * error a body callback stored with pv_curlev_fail() */
    long status;       /* HTTP status, 0 when none came */
    CURLcode code;     /* curl's own code, CURLE_OK when none */
    const char *error; /* curl's message ("" when none); no secrets */
    long connects;     /* new connections this transfer opened (0: reused one) */
    double seconds;    /* from going on the wire to the end */
} pv_curlev_result_t;

typedef struct pv_curlev_ops {
    /* Optional: runs when the request leaves the FIFO, just before it goes
     * on the wire (a place for a fresh signature). Non-zero ends the
     * request with that code. */
    int (*start)(CURL *easy, void *arg);
    /* Required: the end; owns easy from here. */
    void (*done)(CURL *easy, const pv_curlev_result_t *res, void *arg);
} pv_curlev_ops_t;

/* 0 or -ENOMEM/-EINVAL. opts may be NULL (defaults). */
int pv_curlev_new(struct event_base *base, const pv_curlev_opts_t *opts, pv_curlev_t **out);
/* Cancels every request (done runs with -ECANCELED: running ones first,
 * then waiting ones in order), closes the connections and frees. Safe from
 * a done callback: the free then happens once that callback returns. */
void pv_curlev_free(pv_curlev_t *cl);
struct event_base *pv_curlev_base(pv_curlev_t *cl);

/* Queues easy. 0: done will run once, later (never inside this call).
 * -ESHUTDOWN while being freed, -EINVAL, -ENOMEM: nothing was taken and
 * done will not run. ops must outlive the request. */
int pv_curlev_submit(pv_curlev_t *cl, CURL *easy, const pv_curlev_ops_t *ops, void *arg);
/* Ends a submitted request now: its done runs with -ECANCELED before this
 * returns. -ENOENT if easy is not (or no longer) one of ours. */
int pv_curlev_cancel(pv_curlev_t *cl, CURL *easy);
/* For a body callback about to return an abort code: the rc its request
 * should end with (e.g. -EMSGSIZE past a size cap, -EIO for a read error)
 * instead of curl's generic one. */
void pv_curlev_fail(CURL *easy, int rc);

typedef struct pv_curlev_stats {
    int in_flight;       /* on the wire now */
    int queued;          /* waiting for a slot */
    int peak_in_flight;  /* most on the wire at once since pv_curlev_new */
    int peak_queued;     /* most waiting at once */
    uint64_t done;       /* requests ended (any way) */
    uint64_t connects;   /* new connections opened */
} pv_curlev_stats_t;
void pv_curlev_stats(const pv_curlev_t *cl, pv_curlev_stats_t *out);

/* CURLcode -> -errno, the table above uses (exposed for tests). */
int pv_curlev_errno(CURLcode code);

#endif
