/*
 * videos.c — video records at the transaction level: load, save, find,
 * "is this photo used by a video still to render", their JSON and event
 * texts, and the render options a record stands for. No actor here: the
 * videos actor, the handlers and pvctl all come through these.
 */
#include "model/videos.h"
#include "base/pv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct find_ctx {
    const uint8_t *id;
    pv_video_t *out;
    int rc;
} find_ctx_t;

static int find_one(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    find_ctx_t *f = arg;
    if (k->len != 32 || memcmp((const uint8_t *)k->data + 16, f->id, 16) != 0)
        return 0;
    f->rc = pv_video_decode(v->data, v->len, f->out);
    return 1;
}

/* A video by id alone (pvctl): a scan, fine for an operator's command. */
int pv_video_find(pv_txn_t *txn, const uint8_t id[16], pv_video_t *v)
{
    find_ctx_t f = {id, v, -ENOENT};
    int rc = pv_txn_scan(txn, PV_DB_VIDEOS, NULL, 0, NULL, 0, false, find_one, &f);
    return rc < 0 ? rc : f.rc;
}

int pv_video_load(pv_txn_t *txn, const uint8_t user[16], const uint8_t id[16], pv_video_t *v)
{
    uint8_t key[32];
    pv_key2(key, user, id, 16);
    pv_val_t val;
    int rc = pv_txn_get(txn, PV_DB_VIDEOS, key, sizeof(key), &val);
    return rc < 0 ? rc : pv_video_decode(val.data, val.len, v);
}

int pv_video_save(pv_txn_t *txn, const pv_video_t *v)
{
    uint8_t key[32];
    pv_key2(key, v->user_id, v->id, 16);
    char *buf;
    size_t len;
    int rc = pv_video_encode(v, &buf, &len);
    if (rc < 0)
        return rc;
    rc = pv_txn_put(txn, PV_DB_VIDEOS, key, sizeof(key), buf, len, false);
    free(buf);
    return rc;
}

/* ---------------- JSON ---------------- */

static json_t *time_or_null(int64_t ms)
{
    if (ms == PV_TIME_NONE)
        return json_null();
    char t[32];
    pv_time_format(ms, t);
    return json_string(t);
}

static json_t *video_urls(pv_media_t *media, const pv_video_t *v)
{
    char id[PV_ID_TEXT], path[128], content[PV_MEDIA_URL_MAX], poster[PV_MEDIA_URL_MAX];
    pv_id_encode(v->id, id);
    snprintf(path, sizeof(path), "/media/videos/%s/content", id);
    pv_media_link(media, path, v->user_id, v->sha256, "video/mp4", content, sizeof(content));
    snprintf(path, sizeof(path), "/media/videos/%s/poster", id);
    pv_media_link(media, path, v->user_id, v->poster_sha256, "image/jpeg", poster, sizeof(poster));
    return json_pack("{s:s,s:s}", "content", content, "poster", poster);
}

json_t *pv_video_json(pv_media_t *media, const pv_video_t *v, double live)
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
                     v->status == PV_VIDEO_READY ? video_urls(media, v) : json_null());
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

char *pv_video_event_status(pv_media_t *media, const pv_video_t *v, double live)
{
    return event_text("status", pv_video_json(media, v, live));
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

/* ---------------- photo in use ---------------- */

typedef struct in_use_ctx {
    pv_txn_t *txn;
    const uint8_t *user, *photo;
    int found;
} in_use_ctx_t;

static int in_use_job(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    in_use_ctx_t *c = arg;
    if (k->len != 16 || v->len != 16 || memcmp(v->data, c->user, 16) != 0)
        return 0;
    pv_video_t vid;
    if (pv_video_load(c->txn, c->user, k->data, &vid) < 0)
        return 0;
    for (uint32_t i = 0; i < vid.n_photos && !c->found; i++)
        c->found = memcmp(vid.photo_ids[i], c->photo, 16) == 0;
    pv_video_clear(&vid);
    return c->found ? 1 : 0;
}

int pv_video_uses_photo(pv_txn_t *txn, const uint8_t user[16], const uint8_t photo[16])
{
    in_use_ctx_t c = {txn, user, photo, 0};
    int rc = pv_txn_scan(txn, PV_DB_JOBS, NULL, 0, NULL, 0, false, in_use_job, &c);
    return rc < 0 ? rc : c.found;
}
