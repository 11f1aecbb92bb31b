/*
 * videos_api.c — the /api/v1/videos routes, the event stream and the
 * presigned /media/videos links.
 *
 * A new video is validated on the request's loop (options through the
 * renderer's own validator, so the API and pvrender accept the same
 * things), then its record and job entry are committed by the store
 * writer — photo ownership is checked again inside that transaction —
 * and only then is it 202 and handed to the videos actor.
 */
#include "videos.h"
#include "pv.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------- JSON ---------------- */

static json_t *time_or_null(int64_t ms)
{
    if (ms == PV_TIME_NONE)
        return json_null();
    char t[32];
    pv_time_format(ms, t);
    return json_string(t);
}

static json_t *video_urls(pv_app_t *app, const pv_video_t *v)
{
    char id[PV_ID_TEXT], owner[PV_ID_TEXT], path[128], content[512], poster[512];
    pv_id_encode(v->id, id);
    pv_id_encode(v->user_id, owner);
    int64_t exp = pv_now_ms() / 1000 + app->cfg.presign_ttl;
    snprintf(path, sizeof(path), "/media/videos/%s/content", id);
    pv_presign_url(&app->keys, path, owner, exp, content, sizeof(content));
    snprintf(path, sizeof(path), "/media/videos/%s/poster", id);
    pv_presign_url(&app->keys, path, owner, exp, poster, sizeof(poster));
    return json_pack("{s:s,s:s}", "content", content, "poster", poster);
}

json_t *pv_video_json(pv_app_t *app, const pv_video_t *v)
{
    char id[PV_ID_TEXT], created[32];
    pv_id_encode(v->id, id);
    pv_time_format(v->created_ms, created);
    json_t *photos = json_array();
    for (uint32_t i = 0; i < v->n_photos; i++) {
        char pid[PV_ID_TEXT];
        pv_id_encode(v->photo_ids[i], pid);
        json_array_append_new(photos, json_string(pid));
    }
    double progress = v->progress;
    if (v->status == PV_VIDEO_RUNNING) {
        double live = pv_videos_live_progress(app, v->id);
        if (live >= 0)
            progress = live;
    }
    const pv_video_opts_t *o = &v->opts;
    json_t *opts = json_pack("{s:f,s:s,s:f,s:s,s:s,s:i,s:b}", "seconds_per_photo",
                             o->seconds_per_photo, "transition", o->transition,
                             "transition_seconds", o->transition_seconds, "resolution",
                             o->resolution, "aspect", o->aspect, "fps", o->fps, "ken_burns",
                             o->ken_burns);
    return json_pack("{s:s,s:s,s:f,s:o,s:s,s:o,s:o,s:s,s:o,s:o,s:f,s:i,s:i,s:I,s:o}", "id", id,
                     "status", pv_video_status_name(v->status), "progress", progress, "error",
                     v->error[0] ? json_string(v->error) : json_null(), "title", v->title,
                     "photo_ids", photos, "options", opts, "created_at", created, "started_at",
                     time_or_null(v->started_ms), "finished_at", time_or_null(v->finished_ms),
                     "duration_s", v->duration_s, "width", (int)v->width, "height",
                     (int)v->height, "bytes", (json_int_t)v->bytes, "urls",
                     v->status == PV_VIDEO_READY ? video_urls(app, v) : json_null());
}

static char *event_text(const char *event, json_t *data)
{
    char *d = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(data);
    if (!d)
        return NULL;
    size_t n = strlen(event) + strlen(d) + 32;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "event: %s\ndata: %s\n\n", event, d);
    free(d);
    return out;
}

char *pv_video_event_status(pv_app_t *app, const pv_video_t *v)
{
    return event_text("status", pv_video_json(app, v));
}

char *pv_video_event_progress(const uint8_t id[16], double progress)
{
    char t[PV_ID_TEXT];
    pv_id_encode(id, t);
    return event_text("progress", json_pack("{s:s,s:s,s:f}", "id", t, "status", "running",
                                            "progress", progress));
}

char *pv_video_event_gone(const uint8_t id[16])
{
    char t[PV_ID_TEXT];
    pv_id_encode(id, t);
    return event_text("gone", json_pack("{s:s}", "id", t));
}

/* ---------------- options ---------------- */

static json_t *opts_json(const pv_video_opts_t *o, const char *title)
{
    return json_pack("{s:f,s:s,s:f,s:s,s:s,s:i,s:b,s:s}", "seconds_per_photo",
                     o->seconds_per_photo, "transition", o->transition, "transition_seconds",
                     o->transition_seconds, "resolution", o->resolution, "aspect", o->aspect,
                     "fps", o->fps, "ken_burns", o->ken_burns, "title", title);
}

int pv_video_render_opts(const pv_video_t *v, pv_render_opts_t *o, char *err, size_t errlen)
{
    pv_render_opts_default(o);
    json_t *j = opts_json(&v->opts, v->title);
    char field[64];
    int rc = j ? pv_render_opts_from_json(j, o, false, field, sizeof(field), err, errlen) : -ENOMEM;
    json_decref(j);
    uint64_t seed = 0;
    for (int i = 0; i < 8; i++)
        seed = seed << 8 | v->id[8 + i];
    o->seed = seed; /* the same video always pans and zooms the same way */
    return rc;
}

/* ---------------- create ---------------- */

typedef struct create_call {
    pv_call_t base;
    pv_app_t *app;
    pv_video_t v;
    int missing;               /* index of a photo not found, or -1 */
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
    int rc = pv_video_save(txn, &c->v);
    if (rc == 0)
        rc = pv_txn_put(txn, PV_DB_JOBS, c->v.id, 16, c->v.user_id, 16, true);
    return rc;
}

static void create_free(pv_call_t *call)
{
    pv_video_clear(&((create_call_t *)call)->v);
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
    if (rc == -ENOENT && c->missing >= 0) {
        photo_not_found(call->req, c->missing);
    } else if (rc < 0) {
        pv_api_fail(call->req, rc);
    } else {
        pv_video_enqueue_t *e = pv_msg_new(sizeof(*e), PV_MSG_VIDEO_ENQUEUE);
        if (e) { /* else it is picked up from PV_DB_JOBS at the next start */
            memcpy(e->id, c->v.id, 16);
            memcpy(e->user, c->v.user_id, 16);
            pv_actor_send(c->app->videos, &e->msg);
        }
        pv_http_respond_json(call->req, 202, json_pack("{s:o}", "video", pv_video_json(c->app, &c->v)));
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
    create_call_t *c = pv_call_new(req, sizeof(*c), create_committed);
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
    pv_call_store(&c->base, create_apply);
}

/* ---------------- reads ---------------- */

static int video_item(pv_sb_t *sb, pv_app_t *app, const pv_val_t *val)
{
    pv_video_t v;
    int rc = pv_video_decode(val->data, val->len, &v);
    if (rc < 0)
        return rc;
    json_t *j = pv_video_json(app, &v);
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
    pv_http_respond_json(req, 200, json_pack("{s:o}", "video", pv_video_json(pv_api_app(req), &v)));
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
        pv_job_cmd_t *cmd = pv_msg_new(sizeof(*cmd), PV_MSG_JOB_CMD);
        if (cmd) {
            cmd->op = PV_JOB_DROP;
            memcpy(cmd->video_id, d->id, 16);
            pv_actor_send(d->app->videos, &cmd->msg);
        }
        pv_http_respond(call->req, 204, NULL, NULL, 0);
    }
    pv_call_free(call);
}

void pv_h_video_delete(pv_http_req_t *req)
{
    const char *id = pv_http_param(req, "id");
    delete_call_t *d = pv_call_new(req, sizeof(*d), delete_committed);
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
    pv_call_store(&d->base, delete_apply);
}

/* ---------------- cancel (an extension: keeps the record) ---------------- */

static void cancel_replied(pv_call_t *call)
{
    int rc = call->result;
    pv_job_cmd_t *cmd = call->sreq.arg;
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
                                 json_pack("{s:o}", "video", pv_video_json(pv_api_app(call->req), &v)));
            pv_video_clear(&v);
        }
    }
    pv_msg_free(&cmd->msg);
    pv_call_free(call);
}

void pv_h_video_cancel(pv_http_req_t *req)
{
    const char *id = pv_http_param(req, "id");
    pv_call_t *call = pv_call_new(req, sizeof(*call), cancel_replied);
    pv_job_cmd_t *cmd = pv_msg_new(sizeof(*cmd), PV_MSG_JOB_CMD);
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
    call->sreq.arg = cmd;
    cmd->msg.cookie = call;
    cmd->msg.reply_to = call->hl->actor;
    pv_actor_send(pv_api_app(req)->videos, &cmd->msg);
}

/* ---------------- events (SSE) ---------------- */

static void sub_closed(pv_http_req_t *req, void *arg)
{
    pv_video_sub_t *sub = arg;
    sub->closed = true;
    pv_sse_msg_t *m = pv_msg_new(sizeof(*m), PV_MSG_UNSUB);
    if (m) {
        m->sub = sub;
        pv_actor_send(sub->hl->app->videos, &m->msg);
    }
}

void pv_h_video_events(pv_http_req_t *req)
{
    pv_video_t v;
    if (load_own_video(req, &v) < 0)
        return;
    pv_video_sub_t *sub = calloc(1, sizeof(*sub));
    pv_sse_msg_t *m = pv_msg_new(sizeof(*m), PV_MSG_SUB);
    if (!sub || !m) {
        free(sub);
        free(m);
        pv_video_clear(&v);
        pv_api_fail(req, -ENOMEM);
        return;
    }
    memcpy(sub->id, v.id, 16);
    memcpy(sub->user, v.user_id, 16);
    pv_video_clear(&v);
    sub->hl = pv_http_app(req);
    sub->req = req;
    pv_http_add_header(req, "Cache-Control", "no-cache");
    pv_http_add_header(req, "X-Accel-Buffering", "no");
    pv_http_stream_begin(req, 200, "text/event-stream; charset=utf-8", sub_closed, sub);
    m->sub = sub;
    pv_actor_send(sub->hl->app->videos, &m->msg);
}

/* On the HTTP loop: events to write, subscriptions to free, replies. */
void pv_videos_http_msg(pv_actor_t *self, pv_msg_t *msg)
{
    if (msg->type == PV_MSG_JOB_CMD) {
        pv_call_t *call = msg->cookie;
        call->result = msg->status;
        call->k(call); /* frees msg too */
        return;
    }
    pv_sse_msg_t *m = (pv_sse_msg_t *)msg;
    pv_video_sub_t *sub = m->sub;
    if (msg->type == PV_MSG_UNSUB_DONE) {
        pv_http_stream_end(sub->req); /* releases the request */
        free(sub);
    } else if (!sub->closed) {
        pv_http_stream_write(sub->req, m->text, strlen(m->text));
        if (m->end) { /* the actor dropped it already: ours alone now */
            pv_http_stream_end(sub->req);
            free(sub);
        }
    }
    pv_msg_free(msg);
}
