/*
 * render_fx.c — the per-pixel work of the renderer, on yuv420p planes:
 * letterboxing a decoded photo into a slide, the transitions, and Ken Burns
 * sampling.
 *
 * Everything stays in the encoder's own format (limited-range yuv420p), so
 * a frame is never converted: a slide is built once per photo, a static
 * frame is that slide, and a transition frame is one pass of integer math
 * over three planes (loops the compiler can vectorise). Boundaries of wipes
 * and slides fall on even columns so luma and chroma move together.
 * Transitions follow FFmpeg's xfade (progress 0: all outgoing).
 */
#include "media/render_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "base/pv.h"

#define Y_BLACK 16
#define C_GREY 128
#define MAX_SIDE 4096 /* longest frame side we sample (2160p is 3840) */

/* A plane's geometry: plane 0 is full size, 1 and 2 half (rounded up). */
static int plane_w(const AVFrame *f, int i) { return i ? (f->width + 1) / 2 : f->width; }
static int plane_h(const AVFrame *f, int i) { return i ? (f->height + 1) / 2 : f->height; }
static int plane_black(int i) { return i ? C_GREY : Y_BLACK; }

AVFrame *pv_rfx_picture_new(int w, int h)
{
    if (pv_fail("render_alloc"))
        return NULL;
    AVFrame *f = av_frame_alloc();
    if (!f)
        return NULL;
    f->format = AV_PIX_FMT_YUV420P;
    f->width = w;
    f->height = h;
    f->color_range = AVCOL_RANGE_MPEG;
    f->colorspace = AVCOL_SPC_BT470BG;
    if (av_frame_get_buffer(f, 0) < 0) {
        av_frame_free(&f);
        return NULL;
    }
    pv_rfx_fill_black(f);
    return f;
}

void pv_rfx_fill_black(AVFrame *f)
{
    for (int i = 0; i < 3; i++)
        for (int y = 0; y < plane_h(f, i); y++)
            memset(f->data[i] + (ptrdiff_t)y * f->linesize[i], plane_black(i),
                   (size_t)plane_w(f, i));
}

/* ---- letterbox ---- */

static int even_at_least_2(double v)
{
    int e = 2 * (int)lround(v / 2.0);
    return e < 2 ? 2 : e;
}

void pv_rfx_fit_size(int pw, int ph, int w, int h, int *fw, int *fh)
{
    if ((int64_t)pw * h >= (int64_t)ph * w) { /* wider than the frame */
        *fw = w;
        *fh = even_at_least_2((double)w * ph / pw);
        if (*fh > h)
            *fh = h;
    } else {
        *fh = h;
        *fw = even_at_least_2((double)h * pw / ph);
        if (*fw > w)
            *fw = w;
    }
}

/* Copy src (yuv420p, even size) into dst at (x, y), both even. */
static void blit(AVFrame *dst, const AVFrame *src, int x, int y)
{
    for (int i = 0; i < 3; i++) {
        int sh = i ? 1 : 0, w = plane_w(src, i);
        for (int r = 0; r < plane_h(src, i); r++)
            memcpy(dst->data[i] + (ptrdiff_t)((y >> sh) + r) * dst->linesize[i] + (x >> sh),
                   src->data[i] + (ptrdiff_t)r * src->linesize[i], (size_t)w);
    }
}

static bool is_full_range(const AVFrame *f)
{
    return f->color_range == AVCOL_RANGE_JPEG || f->format == AV_PIX_FMT_YUVJ420P ||
           f->format == AV_PIX_FMT_YUVJ422P || f->format == AV_PIX_FMT_YUVJ444P;
}

/* Scale any picture to a new w x h limited-range yuv420p one (bicubic, as
 * FFmpeg's scale filter). */
static int scale_to(const AVFrame *src, int w, int h, AVFrame **out)
{
    *out = NULL;
    AVFrame *dst = pv_rfx_picture_new(w, h);
    if (!dst)
        return -ENOMEM;
    struct SwsContext *sws = pv_fail("render_sws")
                                 ? NULL
                                 : sws_getContext(src->width, src->height, src->format, w, h,
                                                  AV_PIX_FMT_YUV420P, SWS_BICUBIC, NULL, NULL,
                                                  NULL);
    if (!sws) {
        av_frame_free(&dst);
        return -EIO;
    }
    const int *coef = sws_getCoefficients(SWS_CS_ITU601);
    sws_setColorspaceDetails(sws, coef, is_full_range(src), coef, 0, 0, 1 << 16, 1 << 16);
    int rows = sws_scale(sws, (const uint8_t *const *)src->data, src->linesize, 0, src->height,
                         dst->data, dst->linesize);
    sws_freeContext(sws);
    if (rows <= 0) {
        av_frame_free(&dst);
        return -EIO;
    }
    *out = dst;
    return 0;
}

int pv_rfx_normalize(const AVFrame *photo, AVFrame **out)
{
    *out = NULL;
    if (photo->format == AV_PIX_FMT_YUV420P && !is_full_range(photo))
        return 0;
    return scale_to(photo, photo->width, photo->height, out);
}

int pv_rfx_letterbox(const AVFrame *photo, int w, int h, AVFrame **out)
{
    *out = NULL;
    int fw, fh, rc = 0;
    pv_rfx_fit_size(photo->width, photo->height, w, h, &fw, &fh);
    AVFrame *slide = pv_rfx_picture_new(w, h), *fitted = NULL;
    if (!slide)
        return -ENOMEM;
    bool direct = photo->format == AV_PIX_FMT_YUV420P && !is_full_range(photo) &&
                  photo->width == fw && photo->height == fh;
    if (!direct) {
        rc = scale_to(photo, fw, fh, &fitted);
        if (rc < 0) {
            av_frame_free(&slide);
            return rc;
        }
    }
    blit(slide, direct ? photo : fitted, ((w - fw) / 2) & ~1, ((h - fh) / 2) & ~1);
    av_frame_free(&fitted);
    *out = slide;
    return 0;
}

/* ---- transitions ---- */

/* p in [0, 1] as a weight in 0..256. */
static int weight256(double p)
{
    int w = (int)lround(p * 256.0);
    return w < 0 ? 0 : w > 256 ? 256 : w;
}

/* An even column in [0, width] at fraction p of it. */
static int even_col(int width, double p)
{
    int c = 2 * (int)lround(width * p / 2.0);
    return c < 0 ? 0 : c > width ? width & ~1 : c;
}

static void blend_rows(uint8_t *restrict d, const uint8_t *restrict a, const uint8_t *restrict b,
                       int n, int wb)
{
    const int wa = 256 - wb;
    for (int x = 0; x < n; x++)
        d[x] = (uint8_t)((a[x] * wa + b[x] * wb + 128) >> 8);
}

static void tr_fade(AVFrame *dst, const AVFrame *a, const AVFrame *b, double p, uint64_t seed)
{
    int wb = weight256(p);
    for (int i = 0; i < 3; i++)
        for (int y = 0; y < plane_h(dst, i); y++)
            blend_rows(dst->data[i] + (ptrdiff_t)y * dst->linesize[i],
                       a->data[i] + (ptrdiff_t)y * a->linesize[i],
                       b->data[i] + (ptrdiff_t)y * b->linesize[i], plane_w(dst, i), wb);
}

/* Through black: the first half fades a out, the second fades b in. */
static void tr_fadeblack(AVFrame *dst, const AVFrame *a, const AVFrame *b, double p,
                         uint64_t seed)
{
    const AVFrame *src = p < 0.5 ? a : b;
    int keep = weight256(p < 0.5 ? 1.0 - 2.0 * p : 2.0 * p - 1.0);
    for (int i = 0; i < 3; i++) {
        int k = plane_black(i) * (256 - keep) + 128;
        for (int y = 0; y < plane_h(dst, i); y++) {
            uint8_t *restrict d = dst->data[i] + (ptrdiff_t)y * dst->linesize[i];
            const uint8_t *restrict s = src->data[i] + (ptrdiff_t)y * src->linesize[i];
            for (int x = 0; x < plane_w(dst, i); x++)
                d[x] = (uint8_t)((s[x] * keep + k) >> 8);
        }
    }
}

/* Row by row, columns [0, cut) from `left` starting at column lx, the rest
 * from `right` starting at column rx (all in luma columns, even). */
static void split_rows(AVFrame *dst, const AVFrame *left, int lx, const AVFrame *right, int rx,
                       int cut)
{
    for (int i = 0; i < 3; i++) {
        int sh = i ? 1 : 0, w = plane_w(dst, i), c = cut >> sh;
        for (int y = 0; y < plane_h(dst, i); y++) {
            uint8_t *d = dst->data[i] + (ptrdiff_t)y * dst->linesize[i];
            memcpy(d, left->data[i] + (ptrdiff_t)y * left->linesize[i] + (lx >> sh), (size_t)c);
            memcpy(d + c, right->data[i] + (ptrdiff_t)y * right->linesize[i] + (rx >> sh),
                   (size_t)(w - c));
        }
    }
}

/* b is uncovered from the right edge leftwards. */
static void tr_wipeleft(AVFrame *dst, const AVFrame *a, const AVFrame *b, double p, uint64_t seed)
{
    int cut = even_col(dst->width, 1.0 - p);
    split_rows(dst, a, 0, b, cut, cut);
}

/* b is uncovered from the left edge rightwards. */
static void tr_wiperight(AVFrame *dst, const AVFrame *a, const AVFrame *b, double p,
                         uint64_t seed)
{
    int cut = even_col(dst->width, p);
    split_rows(dst, b, 0, a, cut, cut);
}

/* a moves out to the left while b follows it in from the right. */
static void tr_slideleft(AVFrame *dst, const AVFrame *a, const AVFrame *b, double p,
                         uint64_t seed)
{
    int s = even_col(dst->width, p);
    split_rows(dst, a, s, b, 0, dst->width - s);
}

/* a moves out to the right while b follows it in from the left. */
static void tr_slideright(AVFrame *dst, const AVFrame *a, const AVFrame *b, double p,
                          uint64_t seed)
{
    int s = even_col(dst->width, p);
    split_rows(dst, b, dst->width - s, a, 0, s);
}

/* A fixed per-pixel threshold in 0..255 (an integer hash of x, y, seed). */
static inline unsigned dissolve_threshold(unsigned x, unsigned y, uint32_t seed)
{
    uint32_t h = x * 0x9E3779B1u ^ (y * 0x85EBCA77u + seed);
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    h *= 0x297A2D39u;
    h ^= h >> 15;
    return h >> 24;
}

/* Each pixel switches from a to b once progress passes its own random
 * threshold, like xfade's dissolve. A chroma sample follows the top-left
 * luma pixel of its 2x2 block. */
static void tr_dissolve(AVFrame *dst, const AVFrame *a, const AVFrame *b, double p,
                        uint64_t seed)
{
    unsigned wb = (unsigned)weight256(p);
    uint32_t s32 = (uint32_t)(seed ^ (seed >> 32));
    for (int i = 0; i < 3; i++) {
        int sh = i ? 1 : 0;
        for (int y = 0; y < plane_h(dst, i); y++) {
            uint8_t *d = dst->data[i] + (ptrdiff_t)y * dst->linesize[i];
            const uint8_t *ra = a->data[i] + (ptrdiff_t)y * a->linesize[i];
            const uint8_t *rb = b->data[i] + (ptrdiff_t)y * b->linesize[i];
            for (int x = 0; x < plane_w(dst, i); x++)
                d[x] = dissolve_threshold((unsigned)x << sh, (unsigned)y << sh, s32) < wb
                           ? rb[x]
                           : ra[x];
        }
    }
}

static const pv_rfx_transition_t g_transitions[] = {
    {"none", NULL},
    {"fade", tr_fade},
    {"fadeblack", tr_fadeblack},
    {"wipeleft", tr_wipeleft},
    {"wiperight", tr_wiperight},
    {"slideleft", tr_slideleft},
    {"slideright", tr_slideright},
    {"dissolve", tr_dissolve},
};

static const char *const g_transition_names[] = {
    "none", "fade", "fadeblack", "wipeleft", "wiperight", "slideleft", "slideright", "dissolve",
    NULL,
};

const pv_rfx_transition_t *pv_rfx_transition_find(const char *name)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_transitions); i++)
        if (strcmp(g_transitions[i].name, name) == 0)
            return &g_transitions[i];
    return NULL;
}

const char *const *pv_rfx_transition_names(void)
{
    return g_transition_names;
}

/* ---- Ken Burns ---- */

#define KB_ZOOM_MIN 0.10 /* the zoomed end is 1.10x .. 1.20x */
#define KB_ZOOM_SPAN 0.10

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double unit_rand(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) / (double)(1ull << 53);
}

int pv_rfx_kb_decode_side(int w, int h)
{
    return (int)ceil((w > h ? w : h) * (1.0 + KB_ZOOM_MIN + KB_ZOOM_SPAN));
}

/* A centre for a crop of size c along a side of length len. */
static double pick_centre(double len, double c, double r)
{
    double lo = c / 2.0, hi = len - c / 2.0;
    return hi <= lo ? len / 2.0 : lo + (hi - lo) * r;
}

void pv_rfx_kb_plan(pv_rfx_kb_t *kb, uint64_t seed, int index, int pw, int ph, int w, int h)
{
    uint64_t s = seed ^ ((uint64_t)(index + 1) * 0xD1B54A32D192ED03ull);
    memset(kb, 0, sizeof(*kb));
    kb->pw = pw;
    kb->ph = ph;
    if ((int64_t)pw * h >= (int64_t)ph * w) {
        kb->ch = ph;
        kb->cw = (double)ph * w / h;
    } else {
        kb->cw = pw;
        kb->ch = (double)pw * h / w;
    }
    double zoom = 1.0 + KB_ZOOM_MIN + KB_ZOOM_SPAN * unit_rand(&s);
    bool zoom_in = unit_rand(&s) < 0.5;
    kb->z0 = zoom_in ? 1.0 : zoom;
    kb->z1 = zoom_in ? zoom : 1.0;
    kb->x0 = pick_centre(pw, kb->cw / kb->z0, unit_rand(&s));
    kb->y0 = pick_centre(ph, kb->ch / kb->z0, unit_rand(&s));
    kb->x1 = pick_centre(pw, kb->cw / kb->z1, unit_rand(&s));
    kb->y1 = pick_centre(ph, kb->ch / kb->z1, unit_rand(&s));
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Source positions of n output samples: src = left + (i + 0.5) * step - 0.5,
 * clamped to [0, len - 1], each as (index << 8 | 8-bit fraction). The
 * right neighbour index + 1 may be len (with fraction 0): callers keep one
 * readable element past the end. */
static void sample_table(int n, double left, double step, int len, int32_t *tab)
{
    for (int i = 0; i < n; i++) {
        double s = clampd(left + (i + 0.5) * step - 0.5, 0.0, len - 1);
        int k = (int)s, f = (int)lround((s - k) * 256.0);
        if (f == 256) { /* rounding reached the next sample */
            k++;
            f = 0;
        }
        tab[i] = k << 8 | f;
    }
}

typedef uint8_t v16u8 __attribute__((vector_size(16)));
typedef uint16_t v16u16 __attribute__((vector_size(32)));

/* tmp[x] = r0[x] * gy + r1[x] * fy for x in [lo, hi], 16 at a time (GCC
 * and clang vector extensions; plain -O2 does not vectorise this). */
static void mix_rows(uint16_t *tmp, const uint8_t *r0, const uint8_t *r1, int lo, int hi,
                     int fy)
{
    const int gy = 256 - fy;
    int x = lo;
    v16u16 vf = {0}, vg = {0};
    for (int i = 0; i < 16; i++) {
        vf[i] = (uint16_t)fy;
        vg[i] = (uint16_t)gy;
    }
    for (; x + 16 <= hi + 1; x += 16) {
        v16u8 a, b;
        memcpy(&a, r0 + x, sizeof(a));
        memcpy(&b, r1 + x, sizeof(b));
        v16u16 t = __builtin_convertvector(a, v16u16) * vg +
                   __builtin_convertvector(b, v16u16) * vf;
        memcpy(tmp + x, &t, sizeof(t));
    }
    for (; x <= hi; x++)
        tmp[x] = (uint16_t)(r0[x] * gy + r1[x] * fy);
}

/* Bilinear resample of one plane's rectangle into a whole plane. Vertical
 * first: the two source rows are mixed into a 16-bit row over the span the
 * output row reads, then each output pixel mixes two neighbours of that
 * row. tmp holds sw + 1 values. */
static void sample_plane(uint8_t *dst, int dls, int dw, int dh, const uint8_t *src, int sls,
                         int sw, int sh, double left, double top, double step, uint16_t *tmp)
{
    int32_t xt[MAX_SIDE], yt[MAX_SIDE];
    if (dw < 1 || dh < 1 || dw > MAX_SIDE || dh > MAX_SIDE)
        return;
    sample_table(dw, left, step, sw, xt);
    sample_table(dh, top, step, sh, yt);
    int lo = xt[0] >> 8, hi = xt[dw - 1] >> 8;
    hi = hi + 1 < sw ? hi + 1 : sw - 1;
    for (int y = 0; y < dh; y++) {
        int k = yt[y] >> 8, fy = yt[y] & 255;
        const uint8_t *r0 = src + (ptrdiff_t)k * sls;
        const uint8_t *r1 = k + 1 < sh ? r0 + sls : r0;
        mix_rows(tmp, r0, r1, lo, hi, fy);
        tmp[hi + 1] = tmp[hi];
        uint8_t *restrict d = dst + (ptrdiff_t)y * dls;
        for (int x = 0; x < dw; x++) {
            int i = xt[x] >> 8, fx = xt[x] & 255;
            d[x] = (uint8_t)((tmp[i] * (256 - fx) + tmp[i + 1] * fx + 32768) >> 16);
        }
    }
}

int pv_rfx_kb_draw(AVFrame *dst, const AVFrame *photo, const pv_rfx_kb_t *kb, double u)
{
    u = clampd(u, 0.0, 1.0);
    double z = kb->z0 + (kb->z1 - kb->z0) * u;
    double cw = kb->cw / z, ch = kb->ch / z;
    double cx = clampd(kb->x0 + (kb->x1 - kb->x0) * u, cw / 2.0, kb->pw - cw / 2.0);
    double cy = clampd(kb->y0 + (kb->y1 - kb->y0) * u, ch / 2.0, kb->ph - ch / 2.0);
    double step = cw / dst->width; /* same both ways: the crop has the frame's aspect */
    if (dst->width > MAX_SIDE || dst->height > MAX_SIDE)
        return -EINVAL;
    uint16_t *tmp = pv_fail("render_alloc") ? NULL : malloc(sizeof(*tmp) * ((size_t)kb->pw + 2));
    if (!tmp)
        return -ENOMEM;
    for (int i = 0; i < 3; i++) {
        double k = i ? 0.5 : 1.0; /* chroma planes: half the coordinates */
        sample_plane(dst->data[i], dst->linesize[i], plane_w(dst, i), plane_h(dst, i),
                     photo->data[i], photo->linesize[i], plane_w(photo, i), plane_h(photo, i),
                     (cx - cw / 2.0) * k, (cy - ch / 2.0) * k, step, tmp);
    }
    free(tmp);
    return 0;
}
