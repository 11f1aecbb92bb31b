/*
 * server.c — the server: its listeners, the accept, the dealing of
 * connections to the loops of a group, and the server's own life (new,
 * graceful shutdown, free).
 *
 * One pv_http_server_t lives on one event loop and owns the connections
 * on it (conn.c). Servers grouped with pv_http_server_group share one
 * listening socket: the loop that accepts deals each connection
 * round-robin to the group, so a burst of connections does not all land
 * on the loop that woke first, and a connection then stays on the loop it
 * was dealt to. The socket crosses threads the one way threads meet in
 * pvd: a PV_HTTP_SRV_CONN message to the chosen server's actor, which
 * adopts it on its own loop. Sockets are bound without SO_REUSEPORT, so a
 * second daemon on the same port fails to start instead of taking half
 * the connections.
 */
#include "http/http_int.h"
#include "base/pv.h"

#include <event2/listener.h>
#include <event2/util.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Defaults for config fields left at 0. */
#define PV_HTTP_DEF_PER_IP 128
#define PV_HTTP_DEF_PRIVATE 32
#define PV_HTTP_FD_RESERVE 256 /* descriptors kept for all but connections */
#define PV_HTTP_ACCEPT_LOG_US (10 * 1000000LL)
#define PV_HTTP_SPARE_BATCH 64 /* connections refused through the spare's slot at once */
#define PV_HTTP_DEF_HEADER_BYTES (16u * 1024)
#define PV_HTTP_DEF_MEMORY_BODY (1u * 1024 * 1024)
#define PV_HTTP_DEF_FILE_BODY (256ull * 1024 * 1024)
#define PV_HTTP_DEF_IDLE_S 60
#define PV_HTTP_DEF_READ_S 30
#define PV_HTTP_DEF_WRITE_S 60
#define PV_HTTP_DEF_HEADER_S 10
#define PV_HTTP_DEF_BODY_S 20
#define PV_HTTP_DEF_BODY_RATE 1024 /* bytes/s */

/* ---------------------------------------------------------------- *
 * Accepting and dealing
 * ---------------------------------------------------------------- */

/* PV_HTTP_SRV_CONN, on the receiving loop: adopt the connection. */
static void srv_on_conn(pv_actor_t *self, pv_msg_t *m)
{
    pv_http_server_t *s = pv_actor_state(self);
    pv_conn_ticket_t *t = (pv_conn_ticket_t *)m;
    if (s->shutting_down)
        pv_admit_release(s, t); /* closed and uncounted */
    else
        pv_conn_new(s, t); /* the connection's now */
}

/* PV_HTTP_SRV_GONE, on the accepting loop: a connection it counted ended. */
static void srv_on_gone(pv_actor_t *self, pv_msg_t *m)
{
    pv_admit_gone(pv_actor_state(self), (pv_conn_ticket_t *)m);
}

static void srv_tls_msg_free(pv_msg_t *m)
{
    SSL_CTX_free(((pv_http_srv_tls_t *)m)->tls); /* NULL once taken */
    free(m);
}

pv_http_srv_tls_t *pv_http_srv_tls_new(SSL_CTX *ctx)
{
    pv_http_srv_tls_t *tm = pv_msg_new(sizeof(*tm), PV_HTTP_SRV_TLS);
    if (!tm)
        return NULL;
    SSL_CTX_up_ref(ctx);
    tm->tls = ctx;
    tm->msg.free_fn = srv_tls_msg_free;
    return tm;
}

/* Swaps in a context and drops ours; on the server's loop, or before it runs. */
static void srv_swap_tls(pv_http_server_t *s, SSL_CTX *ctx)
{
    SSL_CTX *old = s->tls;
    s->tls = ctx;
    SSL_CTX_free(old); /* connections on it keep it through their SSL */
}

/* PV_HTTP_SRV_TLS: new TLS connections use this context from now on. */
static void srv_on_tls(pv_actor_t *self, pv_msg_t *m)
{
    pv_http_srv_tls_t *tm = (pv_http_srv_tls_t *)m;
    srv_swap_tls(pv_actor_state(self), tm->tls);
    tm->tls = NULL; /* the server's reference now */
    pv_actor_reply(m, 0);
}

void pv_http_server_set_tls(pv_http_server_t *srv, SSL_CTX *ctx)
{
    if (ctx)
        SSL_CTX_up_ref(ctx);
    srv_swap_tls(srv, ctx);
}

void pv_http_server_group(pv_http_server_t **servers, int n)
{
    for (int i = 0; i < n; i++) {
        servers[i]->group = servers;
        servers[i]->ngroup = n;
    }
    pv_admit_group(servers, n);
}

static int srv_spare_open(void);

/* An accepted socket: admitted (counted) or refused, then dealt to the
 * next server of the group, or kept here. */
static void srv_take(pv_http_server_t *s, pv_listener_t *l, evutil_socket_t fd,
                     const struct sockaddr *sa, int salen)
{
    /* The spare descriptor went to a health check (srv_accept_spare) and
     * the slot it freed may have gone to anyone since: it is taken back
     * first, at the cost of this public connection if need be, so that
     * the next health check finds it. */
    if (s->spare_fd < 0) {
        s->spare_fd = srv_spare_open();
        bool full = s->spare_fd < 0 && (errno == EMFILE || errno == ENFILE);
        if (full && l->kind != PV_LISTEN_PRIVATE) {
            pv_admit_refuse(s, fd, l->tls, "out of file descriptors");
            s->spare_fd = srv_spare_open();
            return;
        }
    }
    pv_conn_ticket_t *t = pv_admit_accept(s, l->kind, l->tls, fd, sa, salen);
    if (!t)
        return;
    pv_http_server_t *to = s->ngroup > 1 ? s->group[s->rr++ % (unsigned)s->ngroup] : s;
    if (to == s)
        pv_conn_new(s, t);
    else
        pv_actor_send(to->actor, &t->msg);
}

static void srv_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    pv_listener_t *l = arg;
    (void)lev;
    if (l->srv->shutting_down) {
        evutil_closesocket(fd);
        return;
    }
    srv_take(l->srv, l, fd, sa, salen);
}

/* The spare descriptor: one kept open so that there is one to let go when
 * accept meets EMFILE (the trick libev's documentation describes). An
 * eventfd: it needs no path, so it is there in a chroot too. -1 (errno
 * set) when even that one cannot be had. */
static int srv_spare_open(void)
{
    return eventfd(0, EFD_CLOEXEC);
}

static void srv_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    pv_listener_t *l = arg;
    (void)fd;
    (void)what;
    if (l->srv->spare_fd < 0)
        l->srv->spare_fd = srv_spare_open();
    if (l->lev)
        evconnlistener_enable(l->lev);
}

/* Out of descriptors. The spare one is let go so that waiting connections
 * come off the backlog through its slot: on the private listener one is
 * served (a health check gets through while the public side is full), on
 * the public one they are refused at once, up to a batch, instead of
 * hanging in the backlog. The spare is taken back at once when the slot
 * is free again, or by the retry timer once the served one is done. */
static void srv_accept_spare(pv_http_server_t *s, pv_listener_t *l)
{
    close(s->spare_fd);
    s->spare_fd = -1;
    for (int i = 0; i < PV_HTTP_SPARE_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(evconnlistener_get_fd(l->lev), (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        if (l->kind == PV_LISTEN_PRIVATE) {
            srv_take(s, l, fd, (const struct sockaddr *)&ss, (int)len);
            break; /* it holds the slot now */
        }
        pv_admit_refuse(s, fd, l->tls, "out of file descriptors");
    }
    if (s->spare_fd < 0) /* (srv_take may have had it back already) */
        s->spare_fd = srv_spare_open();
}

/* Accept failed (EMFILE, ENOBUFS...): pause this listener for a moment
 * rather than spin on a socket that stays readable; logged once per 10 s
 * with the refusals (admit.c). */
static void srv_accept_error(struct evconnlistener *lev, void *arg)
{
    pv_listener_t *l = arg;
    pv_http_server_t *s = l->srv;
    struct timeval tv = {0, 100 * 1000};
    int err = EVUTIL_SOCKET_ERROR();
    int64_t now = pv_mono_us();
    if ((err == EMFILE || err == ENFILE) && s->spare_fd >= 0)
        srv_accept_spare(s, l);
    if (!s->accept_log_us || now - s->accept_log_us >= PV_HTTP_ACCEPT_LOG_US) {
        pv_log(PV_LOG_WARN, PV_HTTP_LOG, NULL, NULL,
               "accept: %s; pausing the listener for 100 ms (said once per 10 s)",
               evutil_socket_error_to_string(err));
        s->accept_log_us = now;
    }
    evconnlistener_disable(lev);
    if (l->retry)
        evtimer_add(l->retry, &tv);
}

/* ---------------------------------------------------------------- *
 * Listeners
 * ---------------------------------------------------------------- */

/* "1.2.3.4:80" or "[::1]:80" (port 0: the OS picks) into a sockaddr.
 * evutil_parse_sockaddr_port refuses port 0, which tests need. */
static int srv_parse_addr(const char *s, struct sockaddr_storage *ss, int *sslen)
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
static int srv_bind_listen(const struct sockaddr_storage *ss, int sslen)
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

int pv_http_listen(pv_http_server_t *srv, const char *addr_port, bool tls, int kind)
{
    struct sockaddr_storage ss;
    int sslen = (int)sizeof(ss);
    if (!srv || !addr_port || srv_parse_addr(addr_port, &ss, &sslen) < 0)
        return -EINVAL;
    int fd = pv_fail("http.listen") ? -EADDRINUSE : srv_bind_listen(&ss, sslen);
    if (fd < 0)
        return fd; /* the caller logs it, with its context */
    int rc = pv_http_listen_fd(srv, fd, tls, kind);
    close(fd); /* the listener holds its own duplicate */
    return rc;
}

/* The port a listening socket is bound to (useful with port 0). */
static int srv_bound_port(int fd)
{
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0)
        return 0;
    if (bound.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&bound)->sin_port);
    if (bound.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    return 0;
}

int pv_http_listen_fd(pv_http_server_t *srv, int fd, bool tls, int kind)
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
    l->lev = evconnlistener_new(srv->base, srv_accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, dfd);
    if (!l->lev) {
        close(dfd);
        return -ENOMEM;
    }
    evconnlistener_set_error_cb(l->lev, srv_accept_error);
    l->retry = evtimer_new(srv->base, srv_accept_retry, l);
    l->port = srv_bound_port(dfd);
    srv->nlst++;
    if (srv->spare_fd < 0) /* an accepting server's reserve (srv_accept_spare) */
        srv->spare_fd = srv_spare_open();
    return 0;
}

int pv_http_listener_fd(pv_http_server_t *srv, int kind)
{
    for (int i = 0; srv && i < srv->nlst; i++)
        if (srv->lst[i].lev && srv->lst[i].kind == kind)
            return evconnlistener_get_fd(srv->lst[i].lev);
    return -ENOENT;
}

void pv_http_server_set_redirect(pv_http_server_t *srv, int https_port,
                                 const char *const *exempt)
{
    srv->cfg.redirect_https_port = https_port;
    srv->cfg.redirect_exempt = exempt;
}

int pv_http_server_port(pv_http_server_t *srv, int kind)
{
    for (int i = 0; srv && i < srv->nlst; i++)
        if (srv->lst[i].lev && srv->lst[i].kind == kind)
            return srv->lst[i].port;
    return -ENOENT;
}

static void srv_listeners_close(pv_http_server_t *s)
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

/* ---------------------------------------------------------------- *
 * The server's life
 * ---------------------------------------------------------------- */

/* max_connections left at 0: what the open-file limit leaves once the
 * reserve for everything else (the store, blobs, logs, renders: at most
 * PV_HTTP_FD_RESERVE) and the private listener's connections are set
 * aside, halved because a connection can hold a second descriptor (an
 * upload's temp file, a file being sent). */
static int srv_auto_max_connections(int private_max)
{
    struct rlimit rl;
    long long nofile = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        nofile = rl.rlim_cur < (rlim_t)INT_MAX ? (long long)rl.rlim_cur : INT_MAX;
    long long n = (nofile - PV_HTTP_FD_RESERVE - private_max) / 2;
    return n < 16 ? 16 : (int)n;
}

/* Fills the config fields left at 0 with their defaults. */
static void srv_defaults(pv_http_config_t *cfg)
{
    if (cfg->max_private_connections <= 0)
        cfg->max_private_connections = PV_HTTP_DEF_PRIVATE;
    if (cfg->max_connections <= 0)
        cfg->max_connections = srv_auto_max_connections(cfg->max_private_connections);
    if (cfg->max_connections_per_ip <= 0)
        cfg->max_connections_per_ip = PV_HTTP_DEF_PER_IP;
    if (!cfg->max_header_bytes)
        cfg->max_header_bytes = PV_HTTP_DEF_HEADER_BYTES;
    if (!cfg->max_memory_body)
        cfg->max_memory_body = PV_HTTP_DEF_MEMORY_BODY;
    if (!cfg->max_file_body)
        cfg->max_file_body = PV_HTTP_DEF_FILE_BODY;
    if (cfg->idle_timeout_s <= 0)
        cfg->idle_timeout_s = PV_HTTP_DEF_IDLE_S;
    if (cfg->read_timeout_s <= 0)
        cfg->read_timeout_s = PV_HTTP_DEF_READ_S;
    if (cfg->write_timeout_s <= 0)
        cfg->write_timeout_s = PV_HTTP_DEF_WRITE_S;
    if (cfg->header_timeout_s <= 0)
        cfg->header_timeout_s = PV_HTTP_DEF_HEADER_S;
    if (cfg->body_timeout_s <= 0)
        cfg->body_timeout_s = PV_HTTP_DEF_BODY_S;
    if (!cfg->body_min_rate)
        cfg->body_min_rate = PV_HTTP_DEF_BODY_RATE;
}

static const pv_actor_fn srv_on[PV_HTTP_SRV_MSG_COUNT] = {
    [PV_HTTP_SRV_CONN] = srv_on_conn,
    [PV_HTTP_SRV_TLS] = srv_on_tls,
    [PV_HTTP_SRV_GONE] = srv_on_gone,
};

pv_http_server_t *pv_http_server_new(pv_loop_t *loop, const pv_http_config_t *cfg)
{
    static const pv_actor_def_t def = {"http-server", srv_on, PV_HTTP_SRV_MSG_COUNT};
    pv_http_server_t *s = calloc(1, sizeof(*s));
    size_t bad = 0;

    if (!s)
        return NULL;
    /* A peer that resets a connection must cost us an EPIPE, not the
     * process: libevent writes with writev, which has no MSG_NOSIGNAL. */
    signal(SIGPIPE, SIG_IGN);
    s->spare_fd = -1;
    s->loop = loop;
    s->base = pv_loop_base(loop);
    s->cfg = *cfg;
    srv_defaults(&s->cfg);
    s->wto.tv_sec = s->cfg.write_timeout_s;
    s->in_window = PV_HTTP_IN_WINDOW;
    if (s->cfg.max_header_bytes + 1 > s->in_window)
        s->in_window = s->cfg.max_header_bytes + 1;
    if (getrandom(&s->rng, sizeof(s->rng), 0) != sizeof(s->rng))
        s->rng = (uint64_t)pv_mono_us() ^ (uint64_t)(uintptr_t)s;

    s->actor = pv_actor_new(loop, &def, s);
    if (!s->actor)
        goto fail;
    int rc = pv_route_table_new(cfg->routes, &s->routes, &bad);
    if (rc < 0) {
        if (rc != -ENOMEM)
            pv_log(PV_LOG_ERROR, PV_HTTP_LOG, NULL, NULL, "bad route pattern %s",
                   cfg->routes[bad].pattern ? cfg->routes[bad].pattern : "(null)");
        goto fail;
    }
    const char *bad_addr = NULL;
    if ((rc = pv_admit_init(s, &bad_addr)) < 0) {
        if (rc != -ENOMEM)
            pv_log(PV_LOG_ERROR, PV_HTTP_LOG, NULL, NULL,
                   "ip_cap_exempt: not an IP address at \"%s\"", bad_addr);
        goto fail;
    }
    const char *bad_header = NULL;
    if ((rc = pv_resp_defaults(s, &bad_header)) < 0) {
        if (rc != -ENOMEM)
            pv_log(PV_LOG_ERROR, PV_HTTP_LOG, NULL, NULL,
                   "default header %s would break the answer's head", bad_header);
        goto fail;
    }
    return s;
fail:
    pv_http_server_free(s);
    return NULL;
}

void pv_http_server_shutdown(pv_http_server_t *srv)
{
    if (!srv)
        return;
    srv->shutting_down = true;
    srv_listeners_close(srv);
    for (pv_conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == C_SNIFF) { /* not a byte of a request yet */
            c->refs++;
            pv_conn_drop(c);
            pv_conn_release(c);
            continue;
        }
        if (!c->bev || c->req_live || c->state != C_HEAD)
            continue; /* in flight: closes after its answer */
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            continue; /* a head is arriving: answer it, then close */
        c->refs++;
        pv_conn_drop(c);
        pv_conn_release(c);
    }
}

pv_actor_t *pv_http_server_actor(pv_http_server_t *srv) { return srv->actor; }

int pv_http_server_conns(pv_http_server_t *srv, int kind)
{
    return pv_admit_conns(srv, kind);
}

bool pv_http_server_idle(pv_http_server_t *srv)
{
    return !srv || srv->nconns == 0;
}

void pv_http_server_free(pv_http_server_t *srv)
{
    if (!srv)
        return;
    srv->freeing = true; /* tickets no longer travel back (admit.c) */
    srv_listeners_close(srv);
    pv_actor_free(srv->actor); /* sockets dealt but never adopted: closed */
    while (srv->conns)
        pv_conn_destroy(srv->conns);
    pv_admit_free(srv);
    if (srv->spare_fd >= 0)
        close(srv->spare_fd);
    pv_route_table_free(srv->routes);
    SSL_CTX_free(srv->tls);
    free(srv->hdr_plain);
    free(srv->hdr_tls);
    free(srv);
}
