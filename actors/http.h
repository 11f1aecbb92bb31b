/*
 * http.h — the actor of each HTTP loop (actors/http.c). Its loop owns the
 * loop's connections and requests; the actor runs the continuations of the
 * loop's calls (that is the runtime's doing) and handles its own messages.
 */
#ifndef PV_ACTORS_HTTP_H
#define PV_ACTORS_HTTP_H

#include "app/app.h"

enum pv_http_msg {
    /* Stop accepting, let in-flight requests finish, then answer (the
     * asker's continuation runs once the loop has no connection left). */
    PV_HTTP_SHUTDOWN,
    PV_HTTP_MSG_COUNT
};

/* The actor of hl, on hl->loop (before the loop starts). */
pv_actor_t *pv_http_actor_new(pv_http_loop_t *hl);

#endif
