/*
 * http.c — the HTTP loop's actor. Everything a loop does for its requests
 * comes back to it as continuations, which the runtime runs; what is left
 * here is the loop's own business: the graceful stop, and the loop's copy
 * of the running renders' progress.
 *
 * Live progress: the videos actor owns the renders and sends every loop
 * each job's progress (PV_HTTP_LIVE). Each loop keeps its own small table,
 * touched only on its thread, so a handler making a running video's JSON
 * reads it without a lock and without a round trip. The table holds the
 * renders running now (a handful: render_workers), so it is a plain array
 * searched linearly.
 */
#include "actors/http.h"
#include "base/pv.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

typedef struct live_entry {
    uint8_t id[16];              /* a video being rendered */
    int permille;                /* its progress as last heard, 0..1000 */
} live_entry_t;

struct pv_http_live {
    live_entry_t *e;             /* the running renders, in no order */
    int n, cap;
};

/* A stop in progress: the asker's message, answered once idle. */
static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    pv_http_loop_t *hl = arg;
    if (!pv_http_server_idle(hl->server))
        return;
    event_del(hl->drain_timer);
    pv_actor_reply(hl->drain_msg, 0);
    hl->drain_msg = NULL;
}

static void on_shutdown(pv_actor_t *self, pv_msg_t *msg)
{
    pv_http_loop_t *hl = pv_actor_state(self);
    pv_http_server_shutdown(hl->server);
    hl->drain_msg = msg;
    struct timeval tv = {0, 20000};
    hl->drain_timer = event_new(pv_loop_base(hl->loop), -1, EV_PERSIST, drain_check, hl);
    if (hl->drain_timer)
        event_add(hl->drain_timer, &tv);
}

/* ---------------- live progress ---------------- */

static live_entry_t *live_find(struct pv_http_live *t, const uint8_t id[16])
{
    for (int i = 0; i < t->n; i++)
        if (memcmp(t->e[i].id, id, 16) == 0)
            return &t->e[i];
    return NULL;
}

/* Record permille for id (< 0: forget it). Out of memory, the update is
 * dropped: the handlers then show the stored (coarser) progress. */
static void live_set(struct pv_http_live *t, const uint8_t id[16], int permille)
{
    live_entry_t *e = live_find(t, id);
    if (permille < 0) {
        if (e)
            *e = t->e[--t->n];
        return;
    }
    if (!e) {
        if (t->n == t->cap) {
            int cap = t->cap ? t->cap * 2 : 8;
            live_entry_t *g = realloc(t->e, (size_t)cap * sizeof(*g));
            if (!g)
                return;
            t->e = g;
            t->cap = cap;
        }
        e = &t->e[t->n++];
        memcpy(e->id, id, 16);
    }
    e->permille = permille;
}

static void on_live(pv_actor_t *self, pv_msg_t *msg)
{
    pv_http_loop_t *hl = pv_actor_state(self);
    pv_http_live_msg_t *m = (pv_http_live_msg_t *)msg;
    live_set(hl->live, m->id, m->permille);
    pv_msg_free(msg);
}

double pv_http_live_progress(pv_http_loop_t *hl, const uint8_t id[16])
{
    live_entry_t *e = live_find(hl->live, id);
    return e ? e->permille / 1000.0 : -1;
}

/* ---------------- the actor ---------------- */

static const pv_actor_fn http_on[PV_HTTP_MSG_COUNT] = {
    [PV_HTTP_SHUTDOWN] = on_shutdown,
    [PV_HTTP_LIVE] = on_live,
};

pv_actor_t *pv_http_actor_new(pv_http_loop_t *hl)
{
    static const pv_actor_def_t def = {"http", http_on, PV_HTTP_MSG_COUNT};
    hl->live = calloc(1, sizeof(*hl->live));
    if (!hl->live)
        return NULL;
    return pv_actor_new(hl->loop, &def, hl);
}

void pv_http_actor_free(pv_http_loop_t *hl)
{
    pv_actor_free(hl->actor);
    hl->actor = NULL;
    if (hl->live)
        free(hl->live->e);
    free(hl->live);
    hl->live = NULL;
}
