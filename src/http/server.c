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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

/* Defaults for config fields left at 0. */
#define PV_HTTP_DEF_HEADER_BYTES (16u * 1024)
#define PV_HTTP_DEF_MEMORY_BODY (1u * 1024 * 1024)
#define PV_HTTP_DEF_FILE_BODY (256ull * 1024 * 1024)
#define PV_HTTP_DEF_IDLE_S 60
#define PV_HTTP_DEF_READ_S 30
#define PV_HTTP_DEF_WRITE_S 60
#define PV_HTTP_DEF_HEADER_S 10
#define PV_HTTP_DEF_BODY_S 20
#define PV_HTTP_DEF_BODY_RATE 1024 /* bytes/s */

/* PV_HTTP_SRV_CONN: an accepted socket on its way to another loop. */
typedef struct srv_conn_msg {
    pv_msg_t msg;
    evutil_socket_t fd;          /* owned until adopted: closed if never */
    int kind;                    /* enum pv_http_listener_kind */
    bool tls;                    /* with the receiving server's context */
    struct sockaddr_storage sa;  /* the peer */
} srv_conn_msg_t;

/* ---------------------------------------------------------------- *
 * Accepting and dealing
 * ---------------------------------------------------------------- */

static void srv_conn_msg_free(pv_msg_t *m)
{
    srv_conn_msg_t *cm = (srv_conn_msg_t *)m;
    if (cm->fd >= 0)
        evutil_closesocket(cm->fd);
    free(cm);
}

/* Deals an accepted socket to another loop's server. 0, or -errno when
 * no message could be made (the socket is still the caller's). */
static int srv_deal(pv_http_server_t *to, pv_listener_t *l, evutil_socket_t fd,
                    const struct sockaddr *sa, int salen)
{
    if (salen < 0 || (size_t)salen > sizeof(struct sockaddr_storage))
        return -EINVAL;
    srv_conn_msg_t *cm = pv_msg_new(sizeof(*cm), PV_HTTP_SRV_CONN);
    if (!cm)
        return -ENOMEM;
    cm->msg.free_fn = srv_conn_msg_free;
    cm->fd = fd;
    cm->kind = l->kind;
    cm->tls = l->tls;
    memcpy(&cm->sa, sa, (size_t)salen);
    pv_actor_send(to->actor, &cm->msg);
    return 0;
}

/* PV_HTTP_SRV_CONN, on the receiving loop: adopt the connection. */
static void srv_on_conn(pv_actor_t *self, pv_msg_t *m)
{
    pv_http_server_t *s = pv_actor_state(self);
    srv_conn_msg_t *cm = (srv_conn_msg_t *)m;
    if (!s->shutting_down) {
        pv_conn_new(s, cm->kind, cm->tls, cm->fd, (const struct sockaddr *)&cm->sa);
        cm->fd = -1; /* the connection's now, or closed */
    }
    pv_msg_free(m);
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
}

static void srv_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    pv_listener_t *l = arg;
    pv_http_server_t *s = l->srv;
    (void)lev;
    if (s->shutting_down) {
        evutil_closesocket(fd);
        return;
    }
    pv_http_server_t *to = s->ngroup > 1 ? s->group[s->rr++ % (unsigned)s->ngroup] : s;
    if (to == s || srv_deal(to, l, fd, sa, salen) < 0)
        pv_conn_new(s, l->kind, l->tls, fd, sa); /* here, rather than not at all */
}

static void srv_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    pv_listener_t *l = arg;
    (void)fd;
    (void)what;
    if (l->lev)
        evconnlistener_enable(l->lev);
}

/* Accept failed (EMFILE, ENOBUFS...): pause this listener briefly rather
 * than spin on a socket that stays readable. */
static void srv_accept_error(struct evconnlistener *lev, void *arg)
{
    pv_listener_t *l = arg;
    struct timeval tv = {0, 100 * 1000};
    int err = EVUTIL_SOCKET_ERROR();
    pv_log(PV_LOG_WARN, PV_HTTP_LOG, NULL, NULL, "accept: %s",
           evutil_socket_error_to_string(err));
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

/* Fills the config fields left at 0 with their defaults. */
static void srv_defaults(pv_http_config_t *cfg)
{
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

bool pv_http_server_idle(pv_http_server_t *srv)
{
    return !srv || srv->nconns == 0;
}

void pv_http_server_free(pv_http_server_t *srv)
{
    if (!srv)
        return;
    srv_listeners_close(srv);
    pv_actor_free(srv->actor); /* sockets dealt but never adopted: closed */
    while (srv->conns)
        pv_conn_destroy(srv->conns);
    pv_route_table_free(srv->routes);
    SSL_CTX_free(srv->tls);
    free(srv->hdr_plain);
    free(srv->hdr_tls);
    free(srv);
}
