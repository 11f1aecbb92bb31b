/*
 * videos.c — the /api/v1/videos routes, the event stream and the
 * presigned /media/videos links.
 *
 * A new video is validated on the request's loop (options through the
 * renderer's own validator, so the API and pvrender accept the same
 * things), then its record and job entry are committed by the store
 * writer — photo ownership is checked again inside that transaction —
 * and only then is it 202 and handed to the videos actor.
 */
#include "actors/api/api.h"
#include "actors/http.h"
#include "actors/videos.h"
#include "app/kit.h"
#include "base/pv.h"
#include "model/shares.h"
#include "model/usage.h"
#include "model/videos.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------- create ---------------- */

typedef struct create_call {
    pv_call_t base;
    pv_app_t *app;
    pv_usage_t usage;          /* as the commit saw it, for the answers */
    pv_video_t v;
    int missing;               /* index of a photo not found, or -1 */
    pv_video_enqueue_t *enq;   /* the job for the videos actor, made before
                                  the commit so that handing it over cannot fail */
} create_call_t;

static const char *const g_fields[] = {
    "photo_ids", "title", "seconds_per_photo", "transition", "transition_seconds",
    "resolution", "aspect", "fps", "ken_burns", "audio_id",
};

static int photo_exists(pv_txn_t *txn, const uint8_t user[16], const uint8_t id[16])
{
    uint8_t key[32];
    pv_key2(key, user, id, 16);
    pv_val_t v;
    return pv_txn_get(txn, PV_DB_PHOTOS, key, sizeof(key), &v);
}

static int create_apply(pv_txn_t *txn, void *arg)
{
    create_call_t *c = arg;
    for (uint32_t i = 0; i < c->v.n_photos; i++) {
        int rc = photo_exists(txn, c->v.user_id, c->v.photo_ids[i]);
        if (rc < 0) {
            c->missing = (int)i;
            return rc;
        }
    }
    /* The per-user limits, in the writer's transaction: exact even when
     * one user sends many at once. */
    pv_usage_t use;
    int rc = pv_user_usage(txn, c->v.user_id, &use);
    if (rc < 0)
        return rc;
    c->usage = use;
    if (use.jobs >= (uint64_t)c->app->cfg.user_queued_jobs)
        return -EDQUOT;
    uint64_t quota = c->app->cfg.user_storage_bytes;
    if (quota && use.photo_bytes + use.video_bytes >= quota)
        return -ENOSPC;
    rc = pv_video_save(txn, &c->v);
    if (rc == 0)
        rc = pv_txn_put(txn, PV_DB_JOBS, c->v.id, 16, c->v.user_id, 16, true);
    return rc;
}

/* A video's JSON, with the live progress of a running render: the copy
 * that req's loop keeps (the videos actor sends it to every loop). */
static json_t *video_json(pv_http_req_t *req, const pv_video_t *v)
{
    pv_http_loop_t *hl = pv_http_app(req);
    double live = v->status == PV_VIDEO_RUNNING ? pv_http_live_progress(hl, v->id) : -1;
    return pv_video_json(hl->app->media, v, live);
}

static void create_free(pv_call_t *call)
{
    create_call_t *c = (create_call_t *)call;
    pv_video_clear(&c->v);
    pv_msg_free(c->enq ? &c->enq->msg : NULL);
    pv_call_free(call);
}

static void photo_not_found(pv_http_req_t *req, int i)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "photo_ids[%d]: no such photo", i);
    pv_http_respond_error(req, 404, "photo_not_found", msg);
}

static void create_committed(pv_call_t *call)
{
    create_call_t *c = (create_call_t *)call;
    int rc = call->sreq.msg.status;
    const pv_config_t *cfg = &c->app->cfg;
    if (rc == -ENOENT && c->missing >= 0) {
        photo_not_found(call->req, c->missing);
    } else if (rc == -EDQUOT) {
        char m[160];
        snprintf(m, sizeof(m), "you have %llu videos waiting or rendering, the most this "
                 "appliance takes at once (user_queued_jobs); try again when one is done",
                 (unsigned long long)c->usage.jobs);
        pv_http_add_header(call->req, "Retry-After", "30");
        pv_http_respond_error(call->req, 429, "too_many_videos", m);
    } else if (rc == -ENOSPC && cfg->user_storage_bytes &&
               c->usage.photo_bytes + c->usage.video_bytes >= cfg->user_storage_bytes) {
        pv_api_quota_exceeded(call->req, c->usage.photo_bytes + c->usage.video_bytes,
                              cfg->user_storage_bytes);
    } else if (rc < 0) {
        pv_api_fail(call->req, rc);
    } else {
        pv_video_enqueue_t *e = c->enq;
        c->enq = NULL;
        memcpy(e->id, c->v.id, 16);
        memcpy(e->user, c->v.user_id, 16);
        pv_actor_send(c->app->videos, &e->msg);
        pv_http_respond_json(call->req, 202, json_pack("{s:o}", "video", video_json(call->req, &c->v)));
    }
    create_free(call);
}

static int bad_field(pv_http_req_t *req, const char *field, const char *msg)
{
    char m[300];
    snprintf(m, sizeof(m), "%s: %s", field, msg);
    pv_http_respond_error(req, 400, "invalid_field", m);
    return -EINVAL;
}

/* photo_ids: 1..200 of the caller's photo ids (checked for existence in
 * a read now, and again when committing). */
static int parse_photo_ids(pv_http_req_t *req, json_t *ids, pv_video_t *v)
{
    if (!json_is_array(ids))
        return bad_field(req, "photo_ids", "must be an array of photo ids");
    size_t n = json_array_size(ids);
    if (n < 1 || n > PV_VIDEO_MAX_PHOTOS)
        return bad_field(req, "photo_ids", "must hold 1 to 200 photo ids");
    v->photo_ids = calloc(n, 16);
    if (!v->photo_ids)
        return pv_api_fail(req, -ENOMEM), -ENOMEM;
    v->n_photos = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(ids, i);
        char f[32];
        snprintf(f, sizeof(f), "photo_ids[%zu]", i);
        if (!json_is_string(s))
            return bad_field(req, f, "must be a string");
        if (pv_id_decode(json_string_value(s), v->photo_ids[i]) < 0) {
            photo_not_found(req, (int)i);
            return -ENOENT;
        }
    }
    return 0;
}

static int parse_create(pv_http_req_t *req, json_t *body, create_call_t *c)
{
    const char *key;
    json_t *val;
    json_object_foreach(body, key, val) {
        bool known = false;
        for (size_t i = 0; i < PV_ARRAY_LEN(g_fields); i++)
            known |= strcmp(key, g_fields[i]) == 0;
        if (!known)
            return bad_field(req, key, "unknown field");
    }
    json_t *audio = json_object_get(body, "audio_id");
    if (audio && !json_is_null(audio))
        return bad_field(req, "audio_id", "music tracks are not supported yet");
    pv_render_opts_t o;
    pv_render_opts_default(&o);
    char field[64] = "", err[256] = "";
    if (pv_render_opts_from_json(body, &o, false, field, sizeof(field), err, sizeof(err)) < 0)
        return bad_field(req, *field ? field : "options", err);
    pv_video_t *v = &c->v;
    if (parse_photo_ids(req, json_object_get(body, "photo_ids"), v) < 0)
        return -EINVAL;
    v->v = 1;
    pv_id_new(v->id);
    pv_api_user_id(req, v->user_id);
    v->status = PV_VIDEO_QUEUED;
    v->opts = o.video;
    snprintf(v->title, sizeof(v->title), "%s", o.title);
    v->created_ms = pv_now_ms();
    v->started_ms = v->finished_ms = PV_TIME_NONE;
    v->duration_s = pv_render_duration(&o.video, (int)v->n_photos);
    v->width = (uint32_t)o.width;
    v->height = (uint32_t)o.height;
    return 0;
}

void pv_h_video_create(pv_http_req_t *req)
{
    json_t *body = pv_api_json_body(req);
    if (!body)
        return;
    create_call_t *c = pv_call_new(req, sizeof(*c));
    if (!c) {
        json_decref(body);
        pv_api_fail(req, -ENOMEM);
        return;
    }
    c->app = pv_api_app(req);
    c->missing = -1;
    int rc = parse_create(req, body, c);
    json_decref(body);
    if (rc < 0) {
        create_free(&c->base);
        return;
    }
    /* One request may not ask for days of rendering. */
    double secs = c->v.duration_s;
    double frames = secs * c->v.opts.fps;
    if (secs > c->app->cfg.max_video_seconds || frames > c->app->cfg.max_video_frames) {
        char m[200];
        snprintf(m, sizeof(m), "this video would be %.0f s (%.0f frames); this appliance makes "
                 "videos of at most %d s and %d frames", secs, frames,
                 c->app->cfg.max_video_seconds, c->app->cfg.max_video_frames);
        pv_http_respond_error(req, 413, "video_too_long", m);
        create_free(&c->base);
        return;
    }
    /* Fail fast on ids that are not the caller's; the commit checks again. */
    pv_txn_t txn;
    if (pv_txn_begin(c->app->store, &txn, false) == 0) {
        for (uint32_t i = 0; i < c->v.n_photos && rc == 0; i++)
            if (photo_exists(&txn, c->v.user_id, c->v.photo_ids[i]) < 0)
                c->missing = (int)i, rc = -ENOENT;
        pv_txn_abort(&txn);
    }
    if (rc < 0) {
        photo_not_found(req, c->missing);
        create_free(&c->base);
        return;
    }
    /* Without its hand-over the job would wait in PV_DB_JOBS for the next
     * start: no memory for it, no video. */
    c->enq = pv_msg_new(sizeof(*c->enq), PV_VIDEOS_ENQUEUE);
    if (!c->enq) {
        pv_api_fail(req, -ENOMEM);
        create_free(&c->base);
        return;
    }
    pv_call_store(&c->base, create_apply, create_committed);
}

/* ---------------- reads ---------------- */

static int video_item(pv_sb_t *sb, pv_http_req_t *req, const pv_val_t *val)
{
    pv_video_t v;
    int rc = pv_video_decode(val->data, val->len, &v);
    if (rc < 0)
        return rc;
    json_t *j = video_json(req, &v);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    if (text)
        pv_sb_puts(sb, text);
    else
        rc = -ENOMEM;
    free(text);
    json_decref(j);
    pv_video_clear(&v);
    return rc;
}

void pv_h_video_list(pv_http_req_t *req) { pv_api_list(req, PV_DB_VIDEOS, video_item); }

/* The caller's video {id}: 0, or an error answer was sent. */
static int load_own_video(pv_http_req_t *req, pv_video_t *v)
{
    pv_app_t *app = pv_api_app(req);
    const char *id_text = pv_http_param(req, "id");
    uint8_t uid[16], id[16];
    if (pv_api_user_id(req, uid) < 0 || !id_text || pv_id_decode(id_text, id) < 0) {
        pv_http_respond_error(req, 404, "not_found", "no such video");
        return -ENOENT;
    }
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc == 0) {
        rc = pv_video_load(&txn, uid, id, v);
        pv_txn_abort(&txn);
    }
    if (rc == -ENOENT)
        pv_http_respond_error(req, 404, "not_found", "no such video");
    else if (rc < 0)
        pv_api_fail(req, rc);
    return rc;
}

void pv_h_video_get(pv_http_req_t *req)
{
    pv_video_t v;
    if (load_own_video(req, &v) < 0)
        return;
    pv_http_respond_json(req, 200, json_pack("{s:o}", "video", video_json(req, &v)));
    pv_video_clear(&v);
}

/* /media/videos/{id}/{content|poster}: the owner is the signature's. */
void pv_h_media_video(pv_http_req_t *req)
{
    const char *what = pv_http_param(req, "what");
    bool content = strcmp(what, "content") == 0;
    if (!content && strcmp(what, "poster") != 0) {
        pv_http_respond_error(req, 404, "not_found", "no such object");
        return;
    }
    pv_video_t v;
    if (load_own_video(req, &v) < 0)
        return;
    if (v.status != PV_VIDEO_READY)
        pv_http_respond_error(req, 404, "not_found", "the video is not ready");
    else if (content)
        pv_api_serve_blob(req, v.sha256, "video/mp4");
    else
        pv_api_serve_blob(req, v.poster_sha256, "image/jpeg");
    pv_video_clear(&v);
}

/* ---------------- delete ---------------- */

typedef struct delete_call {
    pv_call_t base;
    pv_app_t *app;
    uint8_t user[16], id[16];
    pv_job_cmd_t *drop;        /* "stop rendering it", made before the commit */
} delete_call_t;

static bool has_blob(const uint8_t sha[32])
{
    static const uint8_t zero[32];
    return memcmp(sha, zero, 32) != 0;
}

static int delete_apply(pv_txn_t *txn, void *arg)
{
    delete_call_t *d = arg;
    pv_video_t v;
    int rc = pv_video_load(txn, d->user, d->id, &v);
    if (rc < 0)
        return rc;
    uint8_t key[32];
    pv_key2(key, d->user, d->id, 16);
    rc = pv_txn_del(txn, PV_DB_VIDEOS, key, sizeof(key));
    if (rc == 0) {
        rc = pv_txn_del(txn, PV_DB_JOBS, d->id, 16);
        if (rc == -ENOENT)
            rc = 0;
    }
    if (rc == 0) { /* its share links end with it */
        int n = pv_share_drop_video(txn, d->user, d->id);
        rc = n < 0 ? n : 0;
    }
    if (rc == 0 && v.status == PV_VIDEO_READY && has_blob(v.sha256))
        rc = pv_blob_unref(txn, v.sha256);
    if (rc == 0 && v.status == PV_VIDEO_READY && has_blob(v.poster_sha256))
        rc = pv_blob_unref(txn, v.poster_sha256);
    pv_video_clear(&v);
    return rc;
}

static void delete_committed(pv_call_t *call)
{
    delete_call_t *d = (delete_call_t *)call;
    int rc = call->sreq.msg.status;
    if (rc == -ENOENT) {
        pv_http_respond_error(call->req, 404, "not_found", "no such video");
    } else if (rc < 0) {
        pv_api_fail(call->req, rc);
    } else {
        /* Gone from the store: stop a render of it, if any. */
        pv_job_cmd_t *cmd = d->drop;
        d->drop = NULL;
        cmd->op = PV_JOB_DROP;
        memcpy(cmd->video_id, d->id, 16);
        pv_actor_send(d->app->videos, &cmd->msg);
        pv_http_respond(call->req, 204, NULL, NULL, 0);
    }
    pv_msg_free(d->drop ? &d->drop->msg : NULL);
    pv_call_free(call);
}

void pv_h_video_delete(pv_http_req_t *req)
{
    const char *id = pv_http_param(req, "id");
    delete_call_t *d = pv_call_new(req, sizeof(*d));
    if (!d) {
        pv_api_fail(req, -ENOMEM);
        return;
    }
    d->app = pv_api_app(req);
    if (pv_api_user_id(req, d->user) < 0 || !id || pv_id_decode(id, d->id) < 0) {
        pv_http_respond_error(req, 404, "not_found", "no such video");
        pv_call_free(&d->base);
        return;
    }
    /* A render of it must stop once it is gone: its message is made now. */
    d->drop = pv_msg_new(sizeof(*d->drop), PV_VIDEOS_JOB_CMD);
    if (!d->drop) {
        pv_api_fail(req, -ENOMEM);
        pv_call_free(&d->base);
        return;
    }
    pv_call_store(&d->base, delete_apply, delete_committed);
}

/* ---------------- cancel (an extension: keeps the record) ---------------- */

static void cancel_replied(pv_call_t *call)
{
    int rc = call->result;
    pv_job_cmd_t *cmd = (pv_job_cmd_t *)call->answer;
    if (rc == -ENOENT) {
        pv_http_respond_error(call->req, 404, "not_found", "no such video");
    } else if (rc == -EINVAL) {
        pv_http_respond_error(call->req, 409, "not_cancellable", cmd->err);
    } else if (rc < 0) {
        pv_api_fail(call->req, rc);
    } else {
        pv_video_t v;
        if (load_own_video(call->req, &v) == 0) {
            /* A running render stops within a second; say so now. */
            if (v.status == PV_VIDEO_RUNNING || v.status == PV_VIDEO_QUEUED)
                v.status = PV_VIDEO_CANCELLED;
            pv_http_respond_json(call->req, 202,
                                 json_pack("{s:o}", "video", video_json(call->req, &v)));
            pv_video_clear(&v);
        }
    }
    pv_msg_free(&cmd->msg);
    pv_call_free(call);
}

void pv_h_video_cancel(pv_http_req_t *req)
{
    const char *id = pv_http_param(req, "id");
    pv_call_t *call = pv_call_new(req, sizeof(*call));
    pv_job_cmd_t *cmd = pv_msg_new(sizeof(*cmd), PV_VIDEOS_JOB_CMD);
    if (!call || !cmd) {
        free(cmd);
        if (call)
            pv_call_free(call);
        pv_api_fail(req, -ENOMEM);
        return;
    }
    cmd->op = PV_JOB_CANCEL;
    cmd->has_user = true;
    if (pv_api_user_id(req, cmd->user_id) < 0 || !id || pv_id_decode(id, cmd->video_id) < 0) {
        pv_http_respond_error(req, 404, "not_found", "no such video");
        free(cmd);
        pv_call_free(call);
        return;
    }
    pv_call_ask(call, pv_api_app(req)->videos, &cmd->msg, cancel_replied);
}

/* ---------------- events (SSE) ---------------- */

/* A subscription with the messages that end its stream (videos.h). */
static pv_video_sub_t *sub_new(void)
{
    pv_video_sub_t *sub = calloc(1, sizeof(*sub));
    if (!sub)
        return NULL;
    sub->last = pv_msg_new(sizeof(*sub->last), 0);
    sub->last_unsub = pv_msg_new(sizeof(*sub->last_unsub), 0);
    sub->unsub = pv_msg_new(sizeof(*sub->unsub), PV_VIDEOS_UNSUB);
    if (sub->last && sub->last_unsub && sub->unsub)
        return sub;
    free(sub->last);
    free(sub->last_unsub);
    free(sub->unsub);
    free(sub);
    return NULL;
}

/* After the stream's last event: the subscription and what it did not use. */
static void sub_free(pv_video_sub_t *sub)
{
    free(sub->last);
    free(sub->last_unsub);
    free(sub->unsub);
    free(sub);
}

/* The client went away: ask the actor to let go; the stream ends when it
 * answers (on_event, unsubscribed). */
static void sub_closed(pv_http_req_t *req, void *arg)
{
    pv_video_sub_t *sub = arg;
    sub->closed = true;
    pv_video_sub_msg_t *m = sub->unsub;
    sub->unsub = NULL;
    m->sub = sub;
    pv_actor_send(pv_api_app(req)->videos, &m->msg);
}

/* On the request's loop: one event of the stream. After the last one
 * (end, or the answer to UNSUB) the actor holds no reference: ours alone. */
static void on_event(pv_msg_t *msg)
{
    pv_video_event_t *ev = (pv_video_event_t *)msg;
    pv_video_sub_t *sub = ev->sub;
    pv_http_req_t *req = sub->ctx;
    if (ev->unsubscribed) {
        pv_http_stream_end(req); /* releases the request */
        sub_free(sub);
    } else if (!sub->closed) {
        if (ev->text)
            pv_http_stream_write(req, ev->text, strlen(ev->text));
        if (ev->end) {
            pv_http_stream_end(req);
            sub_free(sub);
        }
    }
    pv_msg_free(msg);
}

void pv_h_video_events(pv_http_req_t *req)
{
    pv_video_t v;
    if (load_own_video(req, &v) < 0)
        return;
    pv_video_sub_t *sub = sub_new();
    pv_video_sub_msg_t *m = pv_msg_new(sizeof(*m), PV_VIDEOS_SUB);
    if (!sub || !m) {
        if (sub)
            sub_free(sub);
        free(m);
        pv_video_clear(&v);
        pv_api_fail(req, -ENOMEM);
        return;
    }
    memcpy(sub->id, v.id, 16);
    memcpy(sub->user, v.user_id, 16);
    pv_video_clear(&v);
    pv_http_loop_t *hl = pv_http_app(req);
    sub->home = hl->actor;
    sub->on_event = on_event;
    sub->ctx = req;
    pv_http_add_header(req, "Cache-Control", "no-cache");
    pv_http_add_header(req, "X-Accel-Buffering", "no");
    pv_http_stream_begin(req, 200, "text/event-stream; charset=utf-8", sub_closed, sub);
    m->sub = sub;
    pv_actor_send(hl->app->videos, &m->msg);
}
