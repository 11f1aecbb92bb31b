/*
 * render.c — pv_render: photos in, an MP4 and a poster out. This file is
 * the timeline; the pixels are render_fx.c's, the title render_title.c's,
 * the encoder and files render_out.c's.
 *
 * Time: photo k's clip starts at k x step (step = seconds_per_photo -
 * transition_seconds) and lasts seconds_per_photo, so clip k-1's last
 * transition_seconds overlap clip k's first: that overlap is the
 * transition, and a frame shows at most two photos (render_opts.c keeps
 * the transition at most half a clip). Frame i is at i / fps; there are
 * round(duration x fps) frames.
 *
 * Memory: each photo is decoded once, into a "slide" (letterboxed to the
 * frame) or, with Ken Burns, into a picture a little larger than the frame
 * to pan over. Two slots hold what is on screen (at most two photos); a
 * photo is decoded on the render thread when the timeline first needs it,
 * after the photo before the pair is released, so at most two decoded
 * photos exist at a time whatever the number of photos. There is no
 * decode-ahead thread: a 1080p photo decodes in ~40 ms against ~1.5 s of
 * encoding for its clip, and x264 already keeps the cores busy, so
 * decoding beside it did not measurably shorten a render on the 2-core
 * appliance (bench/render/README.md, "Decoding ahead").
 *
 * Speed: a static frame is the slide itself, sent again with a new pts (the
 * encoder copies its input; we never write a slide after it is built), so
 * most frames cost the encoder's time only. Transition and Ken Burns frames
 * are drawn into scratch pictures, made writable again only if the encoder
 * still holds a reference.
 */
#include "media/render.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/frame.h>
#include <libavutil/pixfmt.h>

#include "media/image.h"
#include "base/pv.h"
#include "media/render_int.h"

#define EPS 1e-9
#define REPORT_US 200000 /* progress at least this often (cancel latency) */

typedef struct slot {
    int index;               /* photo index; -1 when empty */
    AVFrame *pic;            /* the slide, or the photo for Ken Burns */
    pv_rfx_kb_t kb;          /* Ken Burns path (ken_burns only) */
} slot_t;

typedef struct pv_render {
    const pv_render_opts_t *o;
    const char *const *photos;
    int n, w, h, fps;
    double spp, ts, step;    /* seconds: per photo, transition, clip stride */
    int64_t total, poster_at; /* frames */
    const pv_rfx_transition_t *tr;
    pv_rtitle_t *title;      /* NULL without a title */
    slot_t slots[2];
    AVFrame *out, *pa, *pb;  /* scratch: composed frame, Ken Burns a and b */
    pv_rout_t *rout;
    pv_render_progress_fn progress;
    void *arg;
    int64_t next_report, last_report_us;
    int64_t next;            /* the next frame to compose */
    char *err;
    size_t errlen;
    char dummy_err[8];       /* err when the caller gave none */
} job_t;

static int errf(job_t *j, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(job_t *j, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, j->errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- photos: decode, slots ---- */

/* Decode photo index into *s (slide or Ken Burns picture). */
static int load_photo(const job_t *j, int index, slot_t *s, char *err, size_t errlen)
{
    AVFrame *photo = NULL, *conv = NULL;
    char why[200] = "";
    const char *path = j->photos[index];
    bool kb = j->o->video.ken_burns;
    int side = kb ? pv_rfx_kb_decode_side(j->w, j->h) : 0;
    int rc = pv_image_decode(path, AV_PIX_FMT_YUV420P, kb ? side : j->w, kb ? side : j->h,
                             &photo, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "photo %d (%s) cannot be decoded: %s", index + 1, path,
                 why[0] ? why : strerror(-rc));
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    s->index = index;
    if (kb) {
        rc = pv_rfx_normalize(photo, &conv);
        if (conv) {
            av_frame_free(&photo);
            photo = conv;
        }
        s->pic = photo;
        photo = NULL;
        pv_rfx_kb_plan(&s->kb, j->o->seed, index, s->pic->width, s->pic->height, j->w, j->h);
    } else {
        rc = pv_rfx_letterbox(photo, j->w, j->h, &s->pic);
        if (rc == 0 && index == 0)
            pv_rtitle_draw(j->title, s->pic); /* baked in: the slide is static */
    }
    av_frame_free(&photo);
    if (rc < 0) {
        av_frame_free(&s->pic);
        s->index = -1;
        snprintf(err, errlen, "photo %d (%s): cannot fit it to the frame (%s)", index + 1, path,
                 strerror(-rc));
    }
    return rc;
}

static void slot_clear(slot_t *s)
{
    av_frame_free(&s->pic);
    s->index = -1;
}

/* Free the slots holding photos before index. */
static void release_before(job_t *j, int index)
{
    for (int i = 0; i < 2; i++)
        if (j->slots[i].index >= 0 && j->slots[i].index < index)
            slot_clear(&j->slots[i]);
}

/* The slot holding photo index, loading it if needed. */
static int need(job_t *j, int index, slot_t **out)
{
    slot_t *free_slot = NULL;
    for (int i = 0; i < 2; i++) {
        if (j->slots[i].index == index) {
            *out = &j->slots[i];
            return 0;
        }
        if (j->slots[i].index < 0 && !free_slot)
            free_slot = &j->slots[i];
    }
    if (!free_slot) { /* cannot happen: the timeline needs two photos at most */
        errf(j, -EIO, "internal error: no free photo slot for photo %d", index + 1);
        return -EIO;
    }
    int rc = load_photo(j, index, free_slot, j->err, j->errlen);
    if (rc < 0)
        return rc;
    *out = free_slot;
    return 0;
}

/* A quick look at every photo before any work: exists, readable, and its
 * first bytes are a supported image type. Full decoding happens later, once
 * per photo; this only makes a typo fail at once instead of minutes in. */
static int precheck(job_t *j)
{
    for (int i = 0; i < j->n; i++) {
        unsigned char head[64];
        int fd = open(j->photos[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return errf(j, -EINVAL, "photo %d (%s) cannot be opened: %s", i + 1, j->photos[i],
                        strerror(errno));
        ssize_t got = read(fd, head, sizeof(head));
        close(fd);
        if (got < 0 || !pv_image_sniff(head, (size_t)got))
            return errf(j, -EINVAL,
                        "photo %d (%s) is not a supported image (JPEG, PNG, WebP, HEIC)", i + 1,
                        j->photos[i]);
    }
    return 0;
}

/* ---- composing a frame ---- */

/* Make f's buffer ours to overwrite (the encoder may still reference it;
 * then take a fresh buffer rather than copy what we overwrite anyway). */
static int writable(job_t *j, AVFrame *f)
{
    if (av_frame_is_writable(f))
        return 0;
    int w = f->width, h = f->height;
    av_frame_unref(f);
    f->format = AV_PIX_FMT_YUV420P;
    f->width = w;
    f->height = h;
    f->color_range = AVCOL_RANGE_MPEG;
    f->colorspace = AVCOL_SPC_BT470BG;
    if (pv_fail("render_alloc") || av_frame_get_buffer(f, 0) < 0)
        return errf(j, -ENOMEM, "out of memory for a frame");
    return 0;
}

/* Photo s's picture at time t of the video, for Ken Burns, into dst. */
static int kb_at(job_t *j, const slot_t *s, double t, AVFrame *dst)
{
    double u = (t - s->index * j->step) / j->spp;
    if (pv_rfx_kb_draw(dst, s->pic, &s->kb, u) < 0)
        return errf(j, -ENOMEM, "out of memory for a frame");
    if (s->index == 0)
        pv_rtitle_draw(j->title, dst);
    return 0;
}

static int scratch(job_t *j, AVFrame **f)
{
    if (!*f && !(*f = pv_rfx_picture_new(j->w, j->h)))
        return errf(j, -ENOMEM, "out of memory for a frame");
    return writable(j, *f);
}

/* Frame i: a static clip (the slide as is, or a Ken Burns picture) or a
 * transition from photo k-1 to photo k. */
static int compose(job_t *j, int64_t i, AVFrame **frame)
{
    double t = (double)i / j->fps;
    int k = (int)floor(t / j->step + EPS);
    k = k < 0 ? 0 : k >= j->n ? j->n - 1 : k;
    double local = t - k * j->step;
    bool in_tr = k > 0 && j->ts > 0 && local < j->ts - EPS;
    slot_t *a = NULL, *b = NULL;
    int rc;
    if (!in_tr) {
        release_before(j, k);
        if ((rc = need(j, k, &b)) < 0)
            return rc;
        if (!j->o->video.ken_burns) {
            *frame = b->pic;
            return 0;
        }
        if ((rc = scratch(j, &j->out)) < 0 || (rc = kb_at(j, b, t, j->out)) < 0)
            return rc;
        *frame = j->out;
        return 0;
    }
    release_before(j, k - 1); /* back-to-back transitions: k-2 is gone */
    if ((rc = need(j, k - 1, &a)) < 0 || (rc = need(j, k, &b)) < 0 ||
        (rc = scratch(j, &j->out)) < 0)
        return rc;
    const AVFrame *pa = a->pic, *pb = b->pic;
    if (j->o->video.ken_burns) {
        if ((rc = scratch(j, &j->pa)) < 0 || (rc = scratch(j, &j->pb)) < 0 ||
            (rc = kb_at(j, a, t, j->pa)) < 0 || (rc = kb_at(j, b, t, j->pb)) < 0)
            return rc;
        pa = j->pa;
        pb = j->pb;
    }
    j->tr->fn(j->out, pa, pb, local / j->ts, j->o->seed);
    *frame = j->out;
    return 0;
}

/* ---- progress ---- */

static int report(job_t *j, int64_t done)
{
    if (!j->progress)
        return 0;
    int64_t now = pv_mono_us();
    if (done < j->total && done < j->next_report && now - j->last_report_us < REPORT_US)
        return 0;
    int64_t pct1 = j->total / 100 > 0 ? j->total / 100 : 1;
    j->next_report = done + pct1;
    j->last_report_us = now;
    return j->progress(j->arg, done, j->total) ? errf(j, -ECANCELED, "cancelled") : 0;
}

/* ---- the job ---- */

static int setup(job_t *j, const char *const *photos, int n, const pv_render_opts_t *o)
{
    j->o = o;
    j->photos = photos;
    j->n = n;
    /* resolution + aspect decide the size when they are known names: a
     * caller that copied a stored record's options into o cannot then
     * render at a stale width/height */
    if (pv_ropts_frame_size(&o->video, &j->w, &j->h) < 0) {
        j->w = o->width;
        j->h = o->height;
    }
    j->fps = o->video.fps;
    j->slots[0].index = j->slots[1].index = -1;
    if (n < 1 || n > PV_VIDEO_MAX_PHOTOS)
        return errf(j, -EINVAL, "between 1 and %d photos, not %d", PV_VIDEO_MAX_PHOTOS, n);
    if (j->w < 16 || j->h < 16 || j->w > 4096 || j->h > 4096 || (j->w | j->h) & 1 || j->fps < 1)
        return errf(j, -EINVAL, "bad frame size %dx%d or fps %d", j->w, j->h, j->fps);
    j->tr = pv_rfx_transition_find(o->video.transition);
    if (!j->tr)
        return errf(j, -EINVAL, "unknown transition \"%s\"", o->video.transition);
    j->spp = o->video.seconds_per_photo;
    j->ts = j->tr->fn ? pv_ropts_transition_seconds(&o->video) : 0.0;
    if (!(j->spp > 0) || j->ts < 0 || j->ts > j->spp / 2 + EPS)
        return errf(j, -EINVAL, "bad timing: %g s a photo, %g s transitions", j->spp, j->ts);
    j->step = j->spp - j->ts;
    j->total = llround(pv_render_duration(&o->video, n) * j->fps);
    if (j->total < 1)
        j->total = 1;
    j->poster_at = llround(j->spp * j->fps / 2.0);
    j->poster_at = j->poster_at >= j->total ? j->total - 1 : j->poster_at;
    int rc = 0;
    j->title = pv_rtitle_new(o->title, j->w, j->h, &rc);
    return rc < 0 ? errf(j, rc, "out of memory") : 0;
}

static void teardown(job_t *j)
{
    slot_clear(&j->slots[0]);
    slot_clear(&j->slots[1]);
    av_frame_free(&j->out);
    av_frame_free(&j->pa);
    av_frame_free(&j->pb);
    pv_rtitle_free(j->title);
    pv_rout_free(j->rout);
}

int64_t pv_render_photo_frames(const pv_render_t *r)
{
    int64_t n = llround(r->step * r->fps);
    return n > 0 ? n : 1;
}

int pv_render_begin(pv_render_t **out, const char *const *photos, int n,
                    const pv_render_opts_t *o, const char *out_mp4, const char *poster_jpg,
                    pv_render_progress_fn progress, void *arg, char *err, size_t errlen)
{
    *out = NULL;
    job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    j->progress = progress;
    j->arg = arg;
    j->err = err ? err : j->dummy_err;
    j->errlen = err ? errlen : sizeof(j->dummy_err);
    if (j->errlen)
        j->err[0] = '\0';
    int rc = setup(j, photos, n, o);
    if (rc == 0)
        rc = precheck(j);
    if (rc == 0)
        rc = pv_rout_open(&j->rout, out_mp4, poster_jpg, j->o, j->w, j->h, j->err, j->errlen);
    if (rc == 0)
        rc = report(j, 0);
    if (rc < 0) {
        pv_render_free(j);
        return rc;
    }
    *out = j;
    return 0;
}

int pv_render_step(pv_render_t *j, int64_t max_frames)
{
    int64_t end = max_frames > 0 && j->total - j->next > max_frames ? j->next + max_frames
                                                                    : j->total;
    int rc = 0;
    for (; rc == 0 && j->next < end; j->next++) {
        int64_t i = j->next;
        AVFrame *f = NULL;
        rc = compose(j, i, &f);
        if (rc == 0 && i == j->poster_at)
            rc = pv_rout_poster(j->rout, f, j->err, j->errlen);
        if (rc == 0) {
            f->pts = i;
            rc = pv_rout_frame(j->rout, f, j->err, j->errlen);
        }
        if (rc == 0)
            rc = report(j, i + 1);
    }
    if (rc < 0)
        return rc;
    if (j->next < j->total)
        return 1;
    return pv_rout_finish(j->rout, j->err, j->errlen);
}

void pv_render_free(pv_render_t *j)
{
    if (!j)
        return;
    teardown(j);
    free(j);
}

int pv_render(const char *const *photos, int n, const pv_render_opts_t *o, const char *out_mp4,
              const char *poster_jpg, pv_render_progress_fn progress, void *arg, char *err,
              size_t errlen)
{
    pv_render_t *r;
    int rc = pv_render_begin(&r, photos, n, o, out_mp4, poster_jpg, progress, arg, err, errlen);
    if (rc == 0)
        rc = pv_render_step(r, 0);
    pv_render_free(r);
    return rc;
}
