/*
 * render_int.h — private to src/render*.c: the pieces the pipeline
 * (render.c) assembles. Pictures are yuv420p AVFrames, limited range,
 * even-sized, with refcounted buffers (av_frame_get_buffer).
 *
 *   render_opts.c   option tables, JSON validation, geometry, duration
 *   render_fx.c     per-pixel work: fit/letterbox, transitions, Ken Burns
 *   render_title.c  the title overlay, drawn with render_font.c's glyphs
 *   render_out.c    libx264 + MP4 (faststart) + poster, temp files, rename
 */
#ifndef PV_RENDER_INT_H
#define PV_RENDER_INT_H

#include <stdint.h>

#include "media/render.h"

struct AVFrame;

/* ---- render_opts.c ---- */
/* The frame size for v's resolution and aspect; -EINVAL if unknown. */
int pv_ropts_frame_size(const pv_video_opts_t *v, int *w, int *h);
/* Effective transition length: 0 with "none" (API.md). */
double pv_ropts_transition_seconds(const pv_video_opts_t *v);

/* ---- render_fx.c ---- */
/* A transition draws frame dst from outgoing a and incoming b at progress
 * p in [0, 1) (0: all a). dst, a and b are distinct pictures of one size;
 * seed makes per-pixel patterns (dissolve) deterministic. */
typedef void (*pv_rfx_transition_fn)(struct AVFrame *dst, const struct AVFrame *a,
                                     const struct AVFrame *b, double p, uint64_t seed);
typedef struct pv_rfx_transition {
    const char *name;        /* as in the API: "fade", ... */
    pv_rfx_transition_fn fn; /* NULL for "none" (a cut) */
} pv_rfx_transition_t;

/* The transition called name, or NULL if there is none of that name. */
const pv_rfx_transition_t *pv_rfx_transition_find(const char *name);
/* Every transition name, NULL-terminated (for messages and tests). */
const char *const *pv_rfx_transition_names(void);

/* A yuv420p picture of w x h (even), black (Y 16, U/V 128), or NULL. */
struct AVFrame *pv_rfx_picture_new(int w, int h);
/* Paint a whole picture black. */
void pv_rfx_fill_black(struct AVFrame *f);

/* The size (even, >= 2) a photo of pw x ph takes when fitted whole into
 * w x h with its aspect kept. */
void pv_rfx_fit_size(int pw, int ph, int w, int h, int *fw, int *fh);
/* A w x h letterboxed slide: photo (any pixel format, any size) scaled to
 * fit, centred on black. 0, -ENOMEM or -EIO (swscale failed). */
int pv_rfx_letterbox(const struct AVFrame *photo, int w, int h, struct AVFrame **out);

/* Ken Burns: a pan from one crop of the photo to another, zooming in or
 * out, fixed by (seed, index) so that a re-render is identical. */
typedef struct pv_rfx_kb {
    int pw, ph;               /* photo size */
    double cw, ch;            /* the largest crop with the frame's aspect */
    double z0, z1;            /* zoom at the start and end (>= 1) */
    double x0, y0, x1, y1;    /* crop centres at the start and end */
} pv_rfx_kb_t;

void pv_rfx_kb_plan(pv_rfx_kb_t *kb, uint64_t seed, int index, int pw, int ph, int w, int h);
/* Sample the photo's crop at clip time u in [0, 1] into dst (bilinear).
 * 0 or -ENOMEM. */
int pv_rfx_kb_draw(struct AVFrame *dst, const struct AVFrame *photo, const pv_rfx_kb_t *kb,
                    double u);
/* If photo is not limited-range yuv420p, a converted copy in *out (else
 * *out = NULL: use photo as it is). 0, -ENOMEM or -EIO. */
int pv_rfx_normalize(const struct AVFrame *photo, struct AVFrame **out);
/* How large to decode a photo for Ken Burns at w x h: its longest side. */
int pv_rfx_kb_decode_side(int w, int h);

/* ---- render_title.c ---- */
typedef struct pv_rtitle pv_rtitle_t;
/* Lay out title for a w x h frame; NULL when title is empty or on ENOMEM
 * (*rc says which: 0 or -ENOMEM). */
pv_rtitle_t *pv_rtitle_new(const char *title, int w, int h, int *rc);
void pv_rtitle_draw(const pv_rtitle_t *t, struct AVFrame *dst);
void pv_rtitle_free(pv_rtitle_t *t);

/* ---- render_out.c ----
 * Every function returns 0 or a pv_render result (-EIO, -ENOSPC, -ENOMEM)
 * with a message in err. Nothing is visible under the final names before
 * pv_rout_finish succeeds; pv_rout_free removes whatever is left. */
typedef struct pv_rout pv_rout_t;
int pv_rout_open(pv_rout_t **out, const char *out_mp4, const char *poster_jpg,
                 const pv_render_opts_t *o, int w, int h, char *err, size_t errlen);
/* Encode one w x h yuv420p frame; f->pts is the frame number. */
int pv_rout_frame(pv_rout_t *r, struct AVFrame *f, char *err, size_t errlen);
/* Keep f (any time) as the poster JPEG. A no-op without a poster path. */
int pv_rout_poster(pv_rout_t *r, const struct AVFrame *f, char *err, size_t errlen);
/* Flush the encoder, finish the MP4, make both files durable, rename. */
int pv_rout_finish(pv_rout_t *r, char *err, size_t errlen);
void pv_rout_free(pv_rout_t *r);

/* ---- render_font.c (generated) ---- */
typedef struct pv_rglyph {
    int w;                   /* advance and bitmap width, pixels */
    const char *px;          /* w x pv_rfont_height hex digits, 0..f */
} pv_rglyph_t;
extern const int pv_rfont_height;
extern const pv_rglyph_t pv_rfont_glyphs[95]; /* ASCII 32..126 */

#endif
