/*
 * render_opts.c — the video options: defaults, the JSON validation shared by
 * POST /api/v1/videos and pvrender specs, the frame geometry and the
 * duration formula.
 *
 * Each field is described once in a table (name, kind, limits, setter); the
 * validator walks it, so a new option is one row. Absent fields keep their
 * value; present ones must have the right type and range or the call fails
 * with the field's name. The one cross-field rule (a transition may take at
 * most half of a photo's time, so that at most two photos share a frame) is
 * checked on the result.
 */
#include "media/render_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/pv.h"

#define SPP_MIN 0.5
#define SPP_MAX 60.0
#define TS_MAX 5.0

static const char *const g_resolutions[] = {"480p", "720p", "1080p", "2160p", NULL};
static const int g_short_sides[] = {480, 720, 1080, 2160};
static const char *const g_aspects[] = {"16:9", "9:16", "1:1", "4:3", NULL};
static const int g_aspect_wh[][2] = {{16, 9}, {9, 16}, {1, 1}, {4, 3}};
static const int g_fps[] = {24, 25, 30, 60};
static const char *const g_presets[] = {"ultrafast", "superfast", "veryfast", "faster",
                                        "fast",      "medium",    "slow",     "slower",
                                        "veryslow",  "placebo",   NULL};

static int name_index(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static void join_names(const char *const *names, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; names[i] && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s", i ? ", " : "", names[i]);
}

/* Frame size: the short side from the resolution, the other from the
 * aspect, rounded to even (yuv420p needs even sizes). */
int pv_ropts_frame_size(const pv_video_opts_t *v, int *w, int *h)
{
    int r = name_index(g_resolutions, v->resolution);
    int a = name_index(g_aspects, v->aspect);
    if (r < 0 || a < 0)
        return -EINVAL;
    int s = g_short_sides[r], aw = g_aspect_wh[a][0], ah = g_aspect_wh[a][1];
    if (aw >= ah) {
        *h = s;
        *w = 2 * (int)lround((double)s * aw / ah / 2.0);
    } else {
        *w = s;
        *h = 2 * (int)lround((double)s * ah / aw / 2.0);
    }
    return 0;
}

static void derive_size(pv_render_opts_t *o)
{
    pv_ropts_frame_size(&o->video, &o->width, &o->height);
}

void pv_render_opts_default(pv_render_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->video.seconds_per_photo = 3.0;
    snprintf(o->video.transition, sizeof(o->video.transition), "fade");
    o->video.transition_seconds = 0.5;
    snprintf(o->video.resolution, sizeof(o->video.resolution), "1080p");
    snprintf(o->video.aspect, sizeof(o->video.aspect), "16:9");
    o->video.fps = 30;
    o->video.ken_burns = false;
    snprintf(o->x264_preset, sizeof(o->x264_preset), "veryfast");
    o->crf = 23;
    o->seed = 0;
    o->threads = 0;
    derive_size(o);
}

double pv_ropts_transition_seconds(const pv_video_opts_t *v)
{
    return strcmp(v->transition, "none") == 0 ? 0.0 : v->transition_seconds;
}

double pv_render_duration(const pv_video_opts_t *o, int n_photos)
{
    if (n_photos <= 0)
        return 0.0;
    return n_photos * o->seconds_per_photo - (n_photos - 1) * pv_ropts_transition_seconds(o);
}

/* ---- validation: one row per field ---- */

typedef struct opt_ctx {
    pv_render_opts_t *o;
    char *err;
    size_t errlen;
} opt_ctx_t;

typedef int (*opt_set_fn)(opt_ctx_t *c, json_t *v);

typedef struct opt_field {
    const char *name;
    opt_set_fn set;
    bool encoder_opt;        /* only with allow_encoder_opts (pvrender) */
} opt_field_t;

static int bad(opt_ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(opt_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* A JSON number within [lo, hi]. */
static int get_number(opt_ctx_t *c, const char *name, json_t *v, double lo, double hi,
                      double *out)
{
    if (!json_is_number(v))
        return bad(c, "%s must be a number (%g..%g)", name, lo, hi);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return bad(c, "%s must be within %g..%g", name, lo, hi);
    *out = d;
    return 0;
}

/* A JSON integer (or a real with an integral value, e.g. 30.0). */
static int get_int(opt_ctx_t *c, const char *name, json_t *v, long long *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    double d = json_is_real(v) ? json_real_value(v) : NAN;
    if (isfinite(d) && d == floor(d) && fabs(d) < 1e15) {
        *out = (long long)d;
        return 0;
    }
    return bad(c, "%s must be an integer", name);
}

/* A string equal to one of names, copied into out. */
static int get_enum(opt_ctx_t *c, const char *name, json_t *v, const char *const *names,
                    char *out, size_t outlen)
{
    char list[256];
    join_names(names, list, sizeof(list));
    if (!json_is_string(v) || name_index(names, json_string_value(v)) < 0)
        return bad(c, "%s must be one of: %s", name, list);
    snprintf(out, outlen, "%s", json_string_value(v));
    return 0;
}

static int set_spp(opt_ctx_t *c, json_t *v)
{
    return get_number(c, "seconds_per_photo", v, SPP_MIN, SPP_MAX,
                      &c->o->video.seconds_per_photo);
}

static int set_transition(opt_ctx_t *c, json_t *v)
{
    return get_enum(c, "transition", v, pv_rfx_transition_names(), c->o->video.transition,
                    sizeof(c->o->video.transition));
}

static int set_ts(opt_ctx_t *c, json_t *v)
{
    return get_number(c, "transition_seconds", v, 0.0, TS_MAX,
                      &c->o->video.transition_seconds);
}

static int set_resolution(opt_ctx_t *c, json_t *v)
{
    return get_enum(c, "resolution", v, g_resolutions, c->o->video.resolution,
                    sizeof(c->o->video.resolution));
}

static int set_aspect(opt_ctx_t *c, json_t *v)
{
    return get_enum(c, "aspect", v, g_aspects, c->o->video.aspect, sizeof(c->o->video.aspect));
}

static int set_fps(opt_ctx_t *c, json_t *v)
{
    long long f = 0;
    if (get_int(c, "fps", v, &f) == 0)
        for (size_t i = 0; i < PV_ARRAY_LEN(g_fps); i++)
            if (f == g_fps[i]) {
                c->o->video.fps = (int)f;
                return 0;
            }
    return bad(c, "fps must be one of: 24, 25, 30, 60");
}

static int set_ken_burns(opt_ctx_t *c, json_t *v)
{
    if (!json_is_boolean(v))
        return bad(c, "ken_burns must be true or false");
    c->o->video.ken_burns = json_is_true(v);
    return 0;
}

static int set_title(opt_ctx_t *c, json_t *v)
{
    if (json_is_null(v)) {
        c->o->title[0] = '\0';
        return 0;
    }
    if (!json_is_string(v))
        return bad(c, "title must be a string");
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (strlen(s) != len)
        return bad(c, "title must not contain NUL characters");
    if (len > PV_TITLE_MAX)
        return bad(c, "title must be at most %d bytes of UTF-8", PV_TITLE_MAX);
    memcpy(c->o->title, s, len + 1);
    return 0;
}

static int set_preset(opt_ctx_t *c, json_t *v)
{
    return get_enum(c, "x264_preset", v, g_presets, c->o->x264_preset,
                    sizeof(c->o->x264_preset));
}

static int set_crf(opt_ctx_t *c, json_t *v)
{
    long long crf = 0;
    if (get_int(c, "crf", v, &crf) < 0 || crf < 0 || crf > 51)
        return bad(c, "crf must be an integer within 0..51");
    c->o->crf = (int)crf;
    return 0;
}

static int set_seed(opt_ctx_t *c, json_t *v)
{
    long long s = 0;
    if (get_int(c, "seed", v, &s) < 0 || s < 0)
        return bad(c, "seed must be a non-negative integer");
    c->o->seed = (uint64_t)s;
    return 0;
}

static int set_threads(opt_ctx_t *c, json_t *v)
{
    long long t = 0;
    if (get_int(c, "threads", v, &t) < 0 || t < 0 || t > 64)
        return bad(c, "threads must be an integer within 0..64 (0: auto)");
    c->o->threads = (int)t;
    return 0;
}

static const opt_field_t g_fields[] = {
    {"seconds_per_photo", set_spp, false},
    {"transition", set_transition, false},
    {"transition_seconds", set_ts, false},
    {"resolution", set_resolution, false},
    {"aspect", set_aspect, false},
    {"fps", set_fps, false},
    {"ken_burns", set_ken_burns, false},
    {"title", set_title, false},
    {"x264_preset", set_preset, true},
    {"crf", set_crf, true},
    {"seed", set_seed, true},
    {"threads", set_threads, true},
};

/* The cross-field rule, blamed on transition_seconds when the request gave
 * it and on seconds_per_photo otherwise. */
static int check_overlap(json_t *obj, const pv_render_opts_t *o, char *field, size_t fieldlen,
                         char *err, size_t errlen)
{
    double ts = pv_ropts_transition_seconds(&o->video), spp = o->video.seconds_per_photo;
    if (ts <= spp / 2.0)
        return 0;
    const char *name = json_object_get(obj, "transition_seconds") ? "transition_seconds"
                                                                   : "seconds_per_photo";
    snprintf(field, fieldlen, "%s", name);
    snprintf(err, errlen,
             "transition_seconds (%g) must be at most half of seconds_per_photo (%g)", ts, spp);
    return -EINVAL;
}

int pv_render_opts_from_json(json_t *obj, pv_render_opts_t *o, bool allow_encoder_opts,
                             char *field, size_t fieldlen, char *err, size_t errlen)
{
    if (fieldlen)
        field[0] = '\0';
    if (errlen)
        err[0] = '\0';
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "options must be a JSON object");
        return -EINVAL;
    }
    pv_render_opts_t tmp = *o; /* all or nothing: o changes only on success */
    opt_ctx_t c = {&tmp, err, errlen};
    for (size_t i = 0; i < PV_ARRAY_LEN(g_fields); i++) {
        json_t *v = json_object_get(obj, g_fields[i].name);
        if (!v || (g_fields[i].encoder_opt && !allow_encoder_opts))
            continue;
        int rc = g_fields[i].set(&c, v);
        if (rc < 0) {
            snprintf(field, fieldlen, "%s", g_fields[i].name);
            return rc;
        }
    }
    int rc = check_overlap(obj, &tmp, field, fieldlen, err, errlen);
    if (rc < 0)
        return rc;
    derive_size(&tmp);
    *o = tmp;
    return 0;
}
