/*
 * videos.h — the videos actor (actors/videos.c): the job queue, the
 * renders, live progress and event streams. These are its messages; it
 * answers the ones that are asked (pv_call_ask, or a continuation set with
 * pv_msg_expect) and knows nothing of who asks.
 */
#ifndef PV_ACTORS_VIDEOS_H
#define PV_ACTORS_VIDEOS_H

#include "app/app.h"

enum pv_videos_msg {
    PV_VIDEOS_ENQUEUE,   /* pv_video_enqueue_t: a committed new job */
    PV_VIDEOS_JOB_CMD,   /* pv_job_cmd_t: cancel, retry, drop; answered */
    PV_VIDEOS_SUB,       /* pv_video_sub_msg_t: open an event stream */
    PV_VIDEOS_UNSUB,     /* pv_video_sub_msg_t: close it (see pv_video_event_t) */
    PV_VIDEOS_SHUTDOWN,  /* pvd stops: end every event stream */
    PV_VIDEOS_PUBLIC_COUNT
};

typedef struct pv_video_enqueue {
    pv_msg_t msg;
    uint8_t id[16], user[16];
} pv_video_enqueue_t;

/* The answer's status is 0, -ENOENT (no such video), or -EINVAL (not
 * cancellable / not retryable: err says why). */
enum pv_job_op {
    PV_JOB_CANCEL, /* queued or running -> cancelled */
    PV_JOB_RETRY,  /* failed or cancelled -> queued */
    PV_JOB_DROP,   /* the record is gone: stop rendering it, no store update */
};
typedef struct pv_job_cmd {
    pv_msg_t msg;                /* type PV_VIDEOS_JOB_CMD */
    int op;                      /* enum pv_job_op */
    uint8_t video_id[16];
    bool has_user;               /* user_id given (HTTP); else looked up (pvctl) */
    uint8_t user_id[16];
    char err[160];
} pv_job_cmd_t;

/* An event stream, owned by its subscriber. The actor holds it from SUB
 * until it sends the stream's last event (end, or unsubscribed). Each
 * event is a pv_video_event_t answered to `home`, where on_event runs and
 * owns it. Events of one stream arrive in order; after an event with end
 * or unsubscribed set, none follows.
 *
 * A stream must end whatever runs out: the subscriber makes, with the
 * subscription, the messages that end it (the actor's last event, its
 * answer to UNSUB, and the UNSUB itself), and frees the ones not used
 * with the subscription. Only events in between are made on the way, and
 * losing one of those loses an update, not the stream's end. An end event
 * may have no text (it could not be made): the client then reads the
 * video again. */
typedef struct pv_video_event pv_video_event_t;
typedef struct pv_video_sub_msg pv_video_sub_msg_t;
typedef struct pv_video_sub {
    uint8_t id[16], user[16];
    pv_actor_t *home;           /* the subscriber's actor */
    pv_reply_fn on_event;       /* runs on home's loop, once per event */
    void *ctx;                  /* the subscriber's own */
    bool closed;                /* the subscriber's: its client went away */
    pv_video_event_t *last;     /* the actor's: its last event (taken when sent) */
    pv_video_event_t *last_unsub; /* the actor's: its answer to UNSUB */
    pv_video_sub_msg_t *unsub;  /* the subscriber's: its UNSUB */
} pv_video_sub_t;

struct pv_video_sub_msg {
    pv_msg_t msg;               /* PV_VIDEOS_SUB or PV_VIDEOS_UNSUB */
    pv_video_sub_t *sub;
};

struct pv_video_event {
    pv_msg_t msg;
    pv_video_sub_t *sub;
    char *text;                 /* one SSE event (malloc'd), or NULL */
    bool end;                   /* the stream's last event */
    bool unsubscribed;          /* the answer to UNSUB: no text, the last */
};

/* The actor on app->core (before the loop starts). Renders run on
 * app->render, at most as many at once as it has threads. */
int pv_videos_start(pv_app_t *app);
/* Cancel the running renders: they end within a frame and stay resumable
 * (rendered again at the next start). Once the core loop has stopped, and
 * before app->render is stopped. */
void pv_videos_stop(pv_app_t *app);
void pv_videos_free(pv_app_t *app);

#endif
