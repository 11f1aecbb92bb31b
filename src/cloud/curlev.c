/*
 * curlev.c — libcurl's multi interface on a libevent base (contract in
 * curlev.h).
 *
 * The shape is curl's "multi_socket" one:
 *   - curl says which sockets it wants watched, and how
 *     (CURLMOPT_SOCKETFUNCTION): each gets one persistent event on the
 *     base, re-made when the interest changes and freed on
 *     CURL_POLL_REMOVE;
 *   - curl says when it next needs to run (CURLMOPT_TIMERFUNCTION): one
 *     base timer, re-armed each time;
 *   - a socket event or the timer calls curl_multi_socket_action for
 *     that socket (or for the timeout), then the finished transfers are
 *     collected with curl_multi_info_read and their done callbacks run.
 * Requests first wait in a FIFO; a "kick" event moves them into the
 * multi handle while fewer than max_in_flight are there, so submit never
 * runs a callback itself and a done callback may submit again. User
 * callbacks run with `depth` raised; pv_curlev_free inside one only marks
 * the handle, and whoever is outermost frees it when the callback
 * returns.
 */
#include "cloud/curlev.h"

#include "base/pv.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#define CL_DEFAULT_IN_FLIGHT  8
#define CL_DEFAULT_CONNECT_MS 10000
#define CL_DEFAULT_LOW_BYTES  1
#define CL_DEFAULT_LOW_S      30
#define CL_DEFAULT_KEEPIDLE_S 60

typedef struct cl_req {
    TAILQ_ENTRY(cl_req) link;   /* in cl->running or cl->waiting */
    pv_curlev_t *cl;            /* owner */
    CURL *easy;                 /* the caller's transfer */
    const pv_curlev_ops_t *ops; /* start (optional) and done */
    void *arg;                  /* for ops */
    int fail_rc;                /* set by pv_curlev_fail, 0 when none */
    bool running;               /* in the multi handle (else waiting) */
    int64_t start_us;           /* when it went on the wire */
    char errbuf[CURL_ERROR_SIZE]; /* curl's message for this transfer */
} cl_req_t;

typedef struct cl_sock {
    LIST_ENTRY(cl_sock) link; /* in cl->socks */
    pv_curlev_t *cl;          /* owner */
    curl_socket_t fd;         /* the socket curl watches */
    struct event *ev;         /* its event on the base, NULL while none */
} cl_sock_t;

TAILQ_HEAD(cl_req_list, cl_req);
LIST_HEAD(cl_sock_list, cl_sock);

struct pv_curlev {
    struct event_base *base;      /* the loop everything runs on */
    CURLM *multi;                 /* curl's multi handle */
    struct event *timer;          /* curl's one timer */
    struct event *kick;           /* moves waiting requests onto the wire */
    pv_curlev_opts_t opts;        /* defaults filled in */
    struct cl_req_list running;   /* in the multi handle */
    struct cl_req_list waiting;   /* FIFO of requests waiting for a slot */
    struct cl_sock_list socks;    /* sockets curl asked us to watch */
    int depth;                    /* user callbacks running now */
    bool closing;                 /* pv_curlev_free started: submit refuses */
    bool free_pending;            /* pv_curlev_free called inside a callback */
    pv_curlev_stats_t stats;      /* counts for pv_curlev_stats */
};

/* ---- errors ---- */

static const struct {
    CURLcode code;
    int rc;
} cl_errnos[] = {
    {CURLE_COULDNT_CONNECT, -ECONNREFUSED},
    {CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT},
    {CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH},
    {CURLE_COULDNT_RESOLVE_PROXY, -EHOSTUNREACH},
    {CURLE_SEND_ERROR, -ECONNRESET},
    {CURLE_RECV_ERROR, -ECONNRESET},
    {CURLE_GOT_NOTHING, -ECONNRESET},
    {CURLE_PARTIAL_FILE, -ECONNRESET},
    {CURLE_SEND_FAIL_REWIND, -ECONNRESET},
    {CURLE_HTTP2, -ECONNRESET},
    {CURLE_HTTP2_STREAM, -ECONNRESET},
    {CURLE_SSL_CONNECT_ERROR, -EPROTO},
    {CURLE_PEER_FAILED_VERIFICATION, -EPROTO},
    {CURLE_SSL_CACERT_BADFILE, -EPROTO},
    {CURLE_SSL_CERTPROBLEM, -EPROTO},
    {CURLE_WEIRD_SERVER_REPLY, -EPROTO},
    {CURLE_UNSUPPORTED_PROTOCOL, -EPROTO},
    {CURLE_URL_MALFORMAT, -EINVAL},
    {CURLE_BAD_FUNCTION_ARGUMENT, -EINVAL},
    {CURLE_OUT_OF_MEMORY, -ENOMEM},
    {CURLE_ABORTED_BY_CALLBACK, -EIO},
    {CURLE_READ_ERROR, -EIO},
    {CURLE_WRITE_ERROR, -EIO},
};

int pv_curlev_errno(CURLcode code)
{
    if (code == CURLE_OK)
        return 0;
    for (size_t i = 0; i < PV_ARRAY_LEN(cl_errnos); i++)
        if (cl_errnos[i].code == code)
            return cl_errnos[i].rc;
    return -EIO;
}

/* ---- ending a request ---- */

/* Takes r out of wherever it is, then runs its done callback with rc
 * (0: as curl said) and frees r. */
static void cl_finish(pv_curlev_t *cl, cl_req_t *r, CURLcode code, int rc)
{
    CURL *easy = r->easy;
    const pv_curlev_ops_t *ops = r->ops;
    void *arg = r->arg;
    char errbuf[CURL_ERROR_SIZE];
    pv_curlev_result_t res = {.code = code};

    if (r->running) {
        TAILQ_REMOVE(&cl->running, r, link);
        cl->stats.in_flight--;
        curl_multi_remove_handle(cl->multi, easy);
        res.seconds = (double)(pv_mono_us() - r->start_us) / 1e6;
    } else {
        TAILQ_REMOVE(&cl->waiting, r, link);
        cl->stats.queued--;
    }
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res.status);
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &res.connects);
    if (rc == 0 && code != CURLE_OK)
        rc = r->fail_rc ? r->fail_rc : pv_curlev_errno(code);
    res.rc = rc;
    if (rc == -ECANCELED)
        pv_strlcpy(errbuf, "cancelled", sizeof(errbuf));
    else if (r->errbuf[0])
        pv_strlcpy(errbuf, r->errbuf, sizeof(errbuf));
    else
        pv_strlcpy(errbuf, code != CURLE_OK ? curl_easy_strerror(code) : "", sizeof(errbuf));
    res.error = errbuf;
    /* the handle is the caller's again: nothing of ours may stay in it */
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    cl->stats.done++;
    cl->stats.connects += (uint64_t)(res.connects > 0 ? res.connects : 0);
    free(r);

    cl->depth++;
    ops->done(easy, &res, arg);
    cl->depth--;
}

static void cl_destroy(pv_curlev_t *cl);

/* After a callback ran: true when the handle was freed meanwhile (the
 * caller must not touch it again). */
static bool cl_settle(pv_curlev_t *cl)
{
    if (cl->depth > 0 || !cl->free_pending)
        return false;
    cl_destroy(cl);
    return true;
}

static void cl_collect(pv_curlev_t *cl)
{
    CURLMsg *msg;
    int left;
    while (!cl->free_pending && (msg = curl_multi_info_read(cl->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result; /* msg dies with remove_handle */
        cl_req_t *r = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        if (r)
            cl_finish(cl, r, code, 0);
    }
    if (!cl->free_pending && !TAILQ_EMPTY(&cl->waiting))
        event_active(cl->kick, 0, 0);
}

/* ---- curl's sockets and timer on the base ---- */

static void cl_event_cb(evutil_socket_t fd, short what, void *arg)
{
    pv_curlev_t *cl = arg;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(cl->multi, fd, flags, &running);
    cl_collect(cl);
    cl_settle(cl);
}

static void cl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pv_curlev_t *cl = arg;
    int running;
    (void)fd;
    (void)what;
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    cl_collect(cl);
    cl_settle(cl);
}

static void cl_sock_free(cl_sock_t *sk)
{
    if (sk->ev)
        event_free(sk->ev);
    LIST_REMOVE(sk, link);
    free(sk);
}

static int cl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    pv_curlev_t *cl = userp;
    cl_sock_t *sk = socketp;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (sk)
            cl_sock_free(sk);
        return 0;
    }
    if (!sk) {
        sk = calloc(1, sizeof(*sk));
        if (!sk)
            return -1;
        sk->cl = cl;
        sk->fd = fd;
        LIST_INSERT_HEAD(&cl->socks, sk, link);
        curl_multi_assign(cl->multi, fd, sk);
    }
    short kind = (short)(EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    if (sk->ev)
        event_free(sk->ev);
    sk->ev = event_new(cl->base, fd, kind, cl_event_cb, cl);
    if (!sk->ev || event_add(sk->ev, NULL) != 0)
        return -1;
    return 0;
}

static int cl_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    pv_curlev_t *cl = userp;
    (void)multi;
    if (timeout_ms < 0)
        return evtimer_del(cl->timer);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(cl->timer, &tv);
}

/* ---- putting requests on the wire ---- */

/* Sockets are close-on-exec: a connection (and what it carries) must not
 * live on in a process that pvd or a test starts. */
static curl_socket_t cl_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)arg;
    (void)purpose;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static void cl_common_opts(pv_curlev_t *cl, cl_req_t *r)
{
    CURL *e = r->easy;
    const pv_curlev_opts_t *o = &cl->opts;
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, cl_open_socket);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_bytes);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->low_speed_s);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, o->idle_keepalive_s);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, o->idle_keepalive_s);
    if (o->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
}

/* One waiting request onto the wire (or ended, if its start refuses). */
static void cl_start_one(pv_curlev_t *cl, cl_req_t *r)
{
    int rc = 0;
    if (r->ops->start) {
        cl->depth++;
        rc = r->ops->start(r->easy, r->arg);
        cl->depth--;
        if (cl->free_pending)
            return; /* the free cancels r with the rest */
    }
    if (rc == 0 && (pv_fail("curlev_add") || curl_multi_add_handle(cl->multi, r->easy) != CURLM_OK))
        rc = -ENOMEM;
    if (rc) {
        cl_finish(cl, r, CURLE_OK, rc);
        return;
    }
    TAILQ_REMOVE(&cl->waiting, r, link);
    cl->stats.queued--;
    r->running = true;
    r->start_us = pv_mono_us();
    TAILQ_INSERT_TAIL(&cl->running, r, link);
    if (++cl->stats.in_flight > cl->stats.peak_in_flight)
        cl->stats.peak_in_flight = cl->stats.in_flight;
}

static void cl_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    pv_curlev_t *cl = arg;
    cl_req_t *r;
    (void)fd;
    (void)what;
    while (!cl->free_pending && cl->stats.in_flight < cl->opts.max_in_flight &&
           (r = TAILQ_FIRST(&cl->waiting)))
        cl_start_one(cl, r);
    cl_settle(cl);
}

/* ---- the public face ---- */

static void cl_defaults(pv_curlev_opts_t *o)
{
    if (o->max_in_flight <= 0)
        o->max_in_flight = CL_DEFAULT_IN_FLIGHT;
    if (o->connect_timeout_ms <= 0)
        o->connect_timeout_ms = CL_DEFAULT_CONNECT_MS;
    if (o->low_speed_bytes <= 0)
        o->low_speed_bytes = CL_DEFAULT_LOW_BYTES;
    if (o->low_speed_s <= 0)
        o->low_speed_s = CL_DEFAULT_LOW_S;
    if (o->timeout_ms < 0)
        o->timeout_ms = 0;
    if (o->idle_keepalive_s <= 0)
        o->idle_keepalive_s = CL_DEFAULT_KEEPIDLE_S;
}

static pthread_once_t cl_global_once = PTHREAD_ONCE_INIT;
static CURLcode cl_global_rc = CURLE_FAILED_INIT;

static void cl_global_init(void)
{
    cl_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int pv_curlev_new(struct event_base *base, const pv_curlev_opts_t *opts, pv_curlev_t **out)
{
    *out = NULL;
    if (!base)
        return -EINVAL;
    pthread_once(&cl_global_once, cl_global_init);
    if (cl_global_rc != CURLE_OK)
        return -ENOMEM;
    pv_curlev_t *cl = pv_fail("curlev_new") ? NULL : calloc(1, sizeof(*cl));
    if (!cl)
        return -ENOMEM;
    cl->base = base;
    if (opts)
        cl->opts = *opts;
    cl_defaults(&cl->opts);
    TAILQ_INIT(&cl->running);
    TAILQ_INIT(&cl->waiting);
    LIST_INIT(&cl->socks);
    cl->multi = curl_multi_init();
    cl->timer = evtimer_new(base, cl_timer_cb, cl);
    cl->kick = event_new(base, -1, 0, cl_kick_cb, cl);
    if (!cl->multi || !cl->timer || !cl->kick) {
        cl_destroy(cl);
        return -ENOMEM;
    }
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, cl_socket_cb);
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, cl_timer_set);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
    /* as many connections as transfers, kept for reuse, no more */
    curl_multi_setopt(cl->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cl->opts.max_in_flight);
    curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS, (long)cl->opts.max_in_flight);
    *out = cl;
    return 0;
}

struct event_base *pv_curlev_base(pv_curlev_t *cl) { return cl->base; }

int pv_curlev_submit(pv_curlev_t *cl, CURL *easy, const pv_curlev_ops_t *ops, void *arg)
{
    if (!cl || !easy || !ops || !ops->done)
        return -EINVAL;
    if (cl->closing || cl->free_pending)
        return -ESHUTDOWN;
    cl_req_t *r = pv_fail("curlev_submit") ? NULL : calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    *r = (cl_req_t){.cl = cl, .easy = easy, .ops = ops, .arg = arg};
    cl_common_opts(cl, r);
    TAILQ_INSERT_TAIL(&cl->waiting, r, link);
    if (++cl->stats.queued > cl->stats.peak_queued)
        cl->stats.peak_queued = cl->stats.queued;
    event_active(cl->kick, 0, 0);
    return 0;
}

static cl_req_t *cl_find(pv_curlev_t *cl, CURL *easy)
{
    cl_req_t *r;
    TAILQ_FOREACH(r, &cl->running, link)
        if (r->easy == easy)
            return r;
    TAILQ_FOREACH(r, &cl->waiting, link)
        if (r->easy == easy)
            return r;
    return NULL;
}

int pv_curlev_cancel(pv_curlev_t *cl, CURL *easy)
{
    cl_req_t *r = cl && easy ? cl_find(cl, easy) : NULL;
    if (!r)
        return -ENOENT;
    cl->depth++; /* a free inside done waits for us */
    cl_finish(cl, r, CURLE_OK, -ECANCELED);
    cl->depth--;
    if (!cl_settle(cl) && !TAILQ_EMPTY(&cl->waiting))
        event_active(cl->kick, 0, 0);
    return 0;
}

void pv_curlev_fail(CURL *easy, int rc)
{
    cl_req_t *r = NULL;
    if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r) == CURLE_OK && r && !r->fail_rc)
        r->fail_rc = rc;
}

void pv_curlev_stats(const pv_curlev_t *cl, pv_curlev_stats_t *out) { *out = cl->stats; }

/* Cancels everything and frees. Done callbacks run with depth raised, so
 * a free they call only marks free_pending, which is already moot. */
static void cl_destroy(pv_curlev_t *cl)
{
    cl_req_t *r;
    cl->closing = true;
    cl->free_pending = false;
    cl->depth++;
    while ((r = TAILQ_FIRST(&cl->running)))
        cl_finish(cl, r, CURLE_OK, -ECANCELED);
    while ((r = TAILQ_FIRST(&cl->waiting)))
        cl_finish(cl, r, CURLE_OK, -ECANCELED);
    cl->depth--;
    if (cl->multi)
        curl_multi_cleanup(cl->multi); /* closes the cached connections */
    cl_sock_t *sk;
    while ((sk = LIST_FIRST(&cl->socks)))
        cl_sock_free(sk);
    if (cl->timer)
        event_free(cl->timer);
    if (cl->kick)
        event_free(cl->kick);
    free(cl);
}

void pv_curlev_free(pv_curlev_t *cl)
{
    if (!cl || cl->closing)
        return;
    if (cl->depth > 0) {
        cl->free_pending = true; /* the outermost caller frees on return */
        return;
    }
    cl_destroy(cl);
}
