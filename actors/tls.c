/*
 * tls.c — the TLS actor: the one owner of the server certificate's
 * context, on the core loop.
 *
 * A reload (PV_TLS_RELOAD, asked by pvctl through the admin actor and by
 * pvd on SIGHUP) reads the files on the work pool, since reading and
 * parsing them is file I/O, and comes back here. A bad certificate or key
 * is answered with the reason and nothing changes. A good one becomes the
 * current context, and each HTTP loop's server is sent it in a
 * PV_HTTP_SRV_TLS message that holds a reference of its own; each server
 * swaps it in and drops its old reference on its own thread. The reload
 * is answered once every server has swapped (a "round"), so when pvctl
 * says "reloaded" the next connection gets the new certificate.
 *
 * Lifetimes are exact, with no lock and no shared pointer: the context is
 * freed when its last holder lets go, whether that is this actor, a
 * server, a message still on its way, or the SSL of a connection that was
 * accepted before the reload (it keeps its own reference and its
 * certificate until it closes).
 */
#include "actors/tls.h"
#include "base/pv.h"

#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

/* A reload being rolled out: answered when the last server has swapped. */
typedef struct tls_state tls_state_t;

typedef struct tls_round {
    struct tls_round *next;
    tls_state_t *st;
    pv_tls_reload_t *req; /* the asker's */
    int waiting;          /* servers that have not swapped yet */
} tls_round_t;

struct tls_state {
    pv_app_t *app;
    pv_actor_t *self;
    SSL_CTX *ctx;        /* the current context: our own reference */
    tls_round_t *rounds; /* reloads not answered yet */
};

/* A reload's file reads, on the work pool. */
typedef struct tls_load {
    pv_msg_t msg; /* answered back to this actor */
    tls_state_t *st;
    pv_tls_reload_t *req; /* the asker's, until answered */
    SSL_CTX *ctx;         /* what was loaded, or NULL (req->err says why) */
} tls_load_t;

/* A load that never came back (the actor freed first) drops what it holds. */
static void tls_load_free(pv_msg_t *m)
{
    tls_load_t *ld = (tls_load_t *)m;
    SSL_CTX_free(ld->ctx);
    if (ld->req)
        pv_msg_free(&ld->req->msg);
    free(ld);
}

/* On a worker. The config is read-only once pvd runs. */
static void tls_load_work(pv_msg_t *m)
{
    tls_load_t *ld = (tls_load_t *)m;
    const pv_config_t *c = &ld->st->app->cfg;
    ld->ctx = pv_tls_ctx_new(c->tls_cert, c->tls_key, ld->req->err, sizeof(ld->req->err));
}

/* One server has swapped in the new context (its message came back). */
static void tls_swapped(pv_msg_t *m)
{
    tls_round_t *rd = m->ctx;
    tls_state_t *st = rd->st;
    pv_msg_free(m);
    if (--rd->waiting > 0)
        return;
    for (tls_round_t **p = &st->rounds; *p; p = &(*p)->next) {
        if (*p == rd) {
            *p = rd->next;
            break;
        }
    }
    pv_actor_reply(&rd->req->msg, 0);
    free(rd);
}

/* Makes ctx the current context and sends it to every server; the round
 * answers req when they all have it. Nothing changes when the messages
 * cannot all be made. */
static int tls_roll_out(tls_state_t *st, SSL_CTX *ctx, pv_tls_reload_t *req)
{
    pv_app_t *app = st->app;
    int n = app->n_loops;
    tls_round_t *rd = calloc(1, sizeof(*rd));
    pv_http_srv_tls_t **msgs = calloc((size_t)(n > 0 ? n : 1), sizeof(*msgs));
    int made = 0;

    while (rd && msgs && made < n && (msgs[made] = pv_http_srv_tls_new(ctx)) != NULL)
        made++;
    if (!rd || !msgs || made < n) {
        for (int i = 0; i < made; i++)
            pv_msg_free(&msgs[i]->msg);
        free(msgs);
        free(rd);
        return -ENOMEM;
    }
    SSL_CTX_free(st->ctx);
    st->ctx = ctx;
    rd->st = st;
    rd->req = req;
    rd->waiting = n;
    rd->next = st->rounds;
    st->rounds = rd;
    for (int i = 0; i < n; i++) {
        msgs[i]->msg.ctx = rd;
        pv_msg_expect(&msgs[i]->msg, st->self, tls_swapped);
        pv_actor_send(pv_http_server_actor(app->loops[i].server), &msgs[i]->msg);
    }
    free(msgs);
    if (n == 0) { /* no server to wait for */
        st->rounds = rd->next;
        pv_actor_reply(&req->msg, 0);
        free(rd);
    }
    return 0;
}

/* Back from the work pool with the files read. */
static void tls_loaded(pv_msg_t *m)
{
    tls_load_t *ld = (tls_load_t *)m;
    tls_state_t *st = ld->st;
    pv_tls_reload_t *req = ld->req;
    SSL_CTX *ctx = ld->ctx;

    ld->req = NULL;
    ld->ctx = NULL;
    pv_msg_free(m);
    if (!ctx) {
        pv_actor_reply(&req->msg, -EINVAL);
        return;
    }
    if (tls_roll_out(st, ctx, req) < 0) {
        SSL_CTX_free(ctx);
        snprintf(req->err, sizeof(req->err), "out of memory");
        pv_actor_reply(&req->msg, -ENOMEM);
    }
}

static void on_reload(pv_actor_t *self, pv_msg_t *msg)
{
    tls_state_t *st = pv_actor_state(self);
    pv_tls_reload_t *req = (pv_tls_reload_t *)msg;
    tls_load_t *ld = pv_msg_new(sizeof(*ld), 0);

    req->err[0] = '\0';
    if (!ld) {
        snprintf(req->err, sizeof(req->err), "out of memory");
        pv_actor_reply(msg, -ENOMEM);
        return;
    }
    ld->st = st;
    ld->req = req;
    ld->msg.free_fn = tls_load_free;
    pv_msg_expect(&ld->msg, self, tls_loaded);
    if (pv_pool_submit(st->app->work, tls_load_work, &ld->msg) < 0) {
        tls_load_work(&ld->msg); /* the pool refused: read them here */
        tls_loaded(&ld->msg);
    }
}

static const pv_actor_fn tls_on[PV_TLS_MSG_COUNT] = {
    [PV_TLS_RELOAD] = on_reload,
};

int pv_tls_start(pv_app_t *app, char *err, size_t errlen)
{
    static const pv_actor_def_t def = {"tls", tls_on, PV_TLS_MSG_COUNT};
    tls_state_t *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    st->app = app;
    st->ctx = pv_tls_ctx_new(app->cfg.tls_cert, app->cfg.tls_key, err, errlen);
    if (!st->ctx) {
        free(st);
        return -EINVAL;
    }
    st->self = app->tls = pv_actor_new(app->core, &def, st);
    if (!app->tls) {
        SSL_CTX_free(st->ctx);
        free(st);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* No loop runs yet: the servers take their references directly. */
    for (int i = 0; i < app->n_loops; i++)
        pv_http_server_set_tls(app->loops[i].server, st->ctx);
    return 0;
}

void pv_tls_free(pv_app_t *app)
{
    if (!app->tls)
        return;
    tls_state_t *st = pv_actor_state(app->tls);
    pv_actor_free(app->tls); /* loads and answers still queued drop theirs */
    app->tls = NULL;
    while (st->rounds) { /* reloads whose servers stopped first */
        tls_round_t *rd = st->rounds;
        st->rounds = rd->next;
        pv_msg_free(&rd->req->msg);
        free(rd);
    }
    SSL_CTX_free(st->ctx);
    free(st);
}
