/*
 * videos.h — what the videos actor (actors/videos.c) and the video HTTP
 * handlers (actors/videos_api.c) share.
 */
#ifndef PV_VIDEOS_H
#define PV_VIDEOS_H

#include "app.h"
#include "render.h"

enum pv_video_msg {
    PV_MSG_VIDEO_ENQUEUE = 100, /* pv_video_enqueue_t: a committed new job */
    PV_MSG_VIDEO_PROGRESS,      /* render thread -> actor */
    PV_MSG_VIDEO_DONE,          /* render thread -> actor: the task back */
    PV_MSG_VIDEO_STORED,        /* store writer -> actor: an update done */
    PV_MSG_SUB,                 /* http loop -> actor: pv_sse_msg_t */
    PV_MSG_UNSUB,               /* http loop -> actor: pv_sse_msg_t */
    PV_MSG_SSE,                 /* actor -> http loop: an event to write */
    PV_MSG_UNSUB_DONE,          /* actor -> http loop: free the subscription */
    PV_MSG_VIDEO_SHUTDOWN,      /* main -> actor: end every event stream */
};

typedef struct pv_video_enqueue {
    pv_msg_t msg;
    uint8_t id[16], user[16];
} pv_video_enqueue_t;

/* An event stream: owned by its HTTP loop; the actor only holds a
 * reference while subscribed (see videos.c on unsubscribing). */
typedef struct pv_video_sub {
    uint8_t id[16], user[16];
    pv_http_loop_t *hl;
    pv_http_req_t *req;
    bool closed;                /* the client went away */
} pv_video_sub_t;

typedef struct pv_sse_msg {
    pv_msg_t msg;
    pv_video_sub_t *sub;
    char *text;                 /* one SSE event (malloc'd), or NULL */
    bool end;                   /* the last event of the stream */
} pv_sse_msg_t;

/* Records. */
int pv_video_load(pv_txn_t *txn, const uint8_t user[16], const uint8_t id[16], pv_video_t *v);
int pv_video_save(pv_txn_t *txn, const pv_video_t *v);
int pv_video_find(pv_txn_t *txn, const uint8_t id[16], pv_video_t *v);
/* A video's render options (size, seed from its id). */
int pv_video_render_opts(const pv_video_t *v, pv_render_opts_t *o, char *err, size_t errlen);
/* {"video"...} JSON; live progress when it is running. */
json_t *pv_video_json(pv_app_t *app, const pv_video_t *v);

/* SSE event texts (malloc'd). */
char *pv_video_event_status(pv_app_t *app, const pv_video_t *v);
char *pv_video_event_progress(const uint8_t id[16], double progress);
char *pv_video_event_gone(const uint8_t id[16]);

/* The actor. */
int pv_videos_start(pv_app_t *app, int render_threads);
void pv_videos_stop(pv_app_t *app);
void pv_videos_free(pv_app_t *app);
/* Progress of a running render (0..1), or -1. Any thread. */
double pv_videos_live_progress(pv_app_t *app, const uint8_t id[16]);
/* The http actor's handling of video messages (SSE, replies). */
void pv_videos_http_msg(pv_actor_t *self, pv_msg_t *msg);

#endif
