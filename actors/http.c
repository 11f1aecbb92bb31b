/*
 * http.c — the HTTP loop's actor. Everything a loop does for its requests
 * comes back to it as continuations, which the runtime runs; what is left
 * here is the loop's own business: the graceful stop.
 */
#include "actors/http.h"
#include "base/pv.h"

#include <event2/event.h>
#include <stdlib.h>

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

static const pv_actor_fn http_on[PV_HTTP_MSG_COUNT] = {
    [PV_HTTP_SHUTDOWN] = on_shutdown,
};

pv_actor_t *pv_http_actor_new(pv_http_loop_t *hl)
{
    static const pv_actor_def_t def = {"http", http_on, PV_HTTP_MSG_COUNT};
    return pv_actor_new(hl->loop, &def, hl);
}
