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
    /* pv_http_live_msg_t, from the videos actor to every loop: a running
     * render's progress, so that the loop's handlers can show it without
     * asking anyone (see pv_http_live_progress). */
    PV_HTTP_LIVE,
    PV_HTTP_MSG_COUNT
};

/* One job's progress: sent when its render starts (0), at most once per
 * 1 % while it runs, and once with permille < 0 when it is over (after
 * the record says how it ended). Not answered. */
typedef struct pv_http_live_msg {
    pv_msg_t msg;                /* type PV_HTTP_LIVE */
    uint8_t id[16];              /* the video */
    int permille;                /* 0..1000, or < 0: forget it */
} pv_http_live_msg_t;

/* The actor of hl, on hl->loop (before the loop starts). */
pv_actor_t *pv_http_actor_new(pv_http_loop_t *hl);
/* Frees the actor (with its pending messages) and the loop's live table;
 * once hl->loop has stopped. */
void pv_http_actor_free(pv_http_loop_t *hl);
/* Progress (0..1) of the running render of video id as hl last heard it,
 * or -1 when it heard of none. On hl's loop only (its handlers). */
double pv_http_live_progress(pv_http_loop_t *hl, const uint8_t id[16]);

#endif
