/*
 * render_title.c — the title overlay: white text on a translucent dark band
 * in the lower third of the first photo's clip (so the video's length does
 * not change), drawn with the built-in font of render_font.c.
 *
 * The layout (word wrap, size) and the text's coverage mask are computed
 * once; drawing is then a blend over the band, cheap enough to repeat on
 * every Ken Burns frame. Glyphs are stored small and upscaled bilinearly,
 * then their edge ramp is steepened in proportion to the scale, which keeps
 * strokes crisp at 2160p without a big table. Text outside printable ASCII
 * is folded: Latin-1 letters lose their accents, dashes and curly quotes
 * become their ASCII cousins, anything else becomes '?'.
 */
#include "media/render_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/frame.h>

#include "base/pv.h"

#define MAX_GLYPHS (PV_TITLE_MAX + 1)
#define MAX_LINES 32
#define BAND_ALPHA 140 /* of 256: how much the band darkens the photo */
#define TEXT_Y 235     /* white, limited range */

struct pv_rtitle {
    int x, y, w, h;      /* the band in the frame (even) */
    uint8_t *a;          /* w x h text coverage, 0..255 */
    uint8_t *ac;         /* (w/2) x (h/2) coverage for the chroma planes */
};

typedef struct line {
    int start, end;      /* glyph range [start, end) */
    int width;           /* in font pixels */
} line_t;

/* U+00C0..U+00FF without accents. */
static const char g_latin1[] = "AAAAAAACEEEEIIIIDNOOOOOxOUUUUYPs"
                               "aaaaaaaceeeeiiiidnooooo/ouuuuypy";

/* Common typography folded to ASCII. */
static const struct {
    unsigned cp;
    char ascii;
} g_punct[] = {
    {0xA0, ' '},   {0xAB, '"'},   {0xBB, '"'},   {0xB4, '\''}, {0x2010, '-'}, {0x2011, '-'},
    {0x2012, '-'}, {0x2013, '-'}, {0x2014, '-'}, {0x2212, '-'}, {0x2018, '\''}, {0x2019, '\''},
    {0x201A, '\''}, {0x201C, '"'}, {0x201D, '"'}, {0x201E, '"'}, {0x2022, '*'}, {0x2026, '.'},
    {0x2039, '<'}, {0x203A, '>'},  {0x202F, ' '}, {0x2009, ' '},
};

static unsigned fold(unsigned c)
{
    if (c >= 0xC0 && c <= 0xFF)
        return (unsigned char)g_latin1[c - 0xC0];
    for (size_t i = 0; i < PV_ARRAY_LEN(g_punct); i++)
        if (g_punct[i].cp == c)
            return (unsigned char)g_punct[i].ascii;
    return '?';
}

/* UTF-8 -> glyph indices (0..94). jansson already validated the UTF-8;
 * here malformed bytes simply become '?'. */
static int to_glyphs(const char *s, uint8_t *g, int max)
{
    int n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && n < max) {
        unsigned c = *p++;
        if (c >= 0x80) {
            int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
            c &= 0x3Fu >> extra;
            for (; extra > 0 && (*p & 0xC0) == 0x80; extra--)
                c = (c << 6) | (*p++ & 0x3Fu);
            c = fold(c);
        }
        if (c == '\t' || c == '\n' || c == '\r')
            c = ' ';
        g[n++] = (uint8_t)((c < 32 || c > 126 ? '?' : c) - 32);
    }
    return n;
}

static int glyph_w(uint8_t g) { return pv_rfont_glyphs[g].w; }

/* Greedy word wrap at maxw font pixels; a word longer than a line is
 * broken. Returns the number of lines (at most MAX_LINES). */
static int wrap(const uint8_t *g, int n, int maxw, line_t *lines)
{
    int nl = 0, i = 0;
    const uint8_t space = ' ' - 32;
    while (i < n && nl < MAX_LINES) {
        while (i < n && g[i] == space)
            i++;
        if (i >= n)
            break;
        line_t *l = &lines[nl++];
        l->start = i;
        l->end = i;
        l->width = 0;
        int w = 0, last_break = -1, width_at_break = 0;
        for (; i < n; i++) {
            if (g[i] == space) {
                last_break = i;
                width_at_break = w;
            }
            if (w + glyph_w(g[i]) > maxw && i > l->start)
                break;
            w += glyph_w(g[i]);
        }
        if (i < n && last_break > l->start) { /* back up to the last space */
            i = last_break;
            w = width_at_break;
        }
        while (i > l->start && g[i - 1] == space) { /* no trailing spaces */
            i--;
            w -= glyph_w(g[i]);
        }
        l->end = i;
        l->width = w;
    }
    return nl;
}

/* One line of glyphs as a font-size coverage bitmap (width x font height). */
static void line_bitmap(const uint8_t *g, const line_t *l, uint8_t *bm)
{
    int fh = pv_rfont_height, x0 = 0;
    for (int i = l->start; i < l->end; i++) {
        const pv_rglyph_t *gl = &pv_rfont_glyphs[g[i]];
        for (int y = 0; y < fh; y++)
            for (int x = 0; x < gl->w; x++) {
                char c = gl->px[y * gl->w + x];
                int v = c >= 'a' ? c - 'a' + 10 : c - '0';
                bm[y * l->width + x0 + x] = (uint8_t)(v * 17);
            }
        x0 += gl->w;
    }
}

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

/* Scale a line bitmap by s into the mask at (ox, oy), steepening edges. */
static void line_draw(const uint8_t *bm, int bw, double s, uint8_t *mask, int mw, int mh, int ox,
                      int oy)
{
    int fh = pv_rfont_height, dw = (int)lround(bw * s), dh = (int)lround(fh * s);
    double sharp = s > 1.5 ? s / 1.5 : 1.0;
    for (int y = 0; y < dh && oy + y < mh; y++) {
        double v = clamp01(((y + 0.5) / s - 0.5) / (fh - 1)) * (fh - 1);
        int y0 = (int)v, y1 = y0 + 1 < fh ? y0 + 1 : y0;
        double fy = v - y0;
        for (int x = 0; x < dw && ox + x < mw; x++) {
            double u = clamp01(((x + 0.5) / s - 0.5) / (bw - 1 > 0 ? bw - 1 : 1)) * (bw - 1);
            int x0 = (int)u, x1 = x0 + 1 < bw ? x0 + 1 : x0;
            double fx = u - x0;
            double top = bm[y0 * bw + x0] * (1 - fx) + bm[y0 * bw + x1] * fx;
            double bot = bm[y1 * bw + x0] * (1 - fx) + bm[y1 * bw + x1] * fx;
            double a = (top * (1 - fy) + bot * fy) / 255.0;
            a = clamp01((a - 0.5) * sharp + 0.5);
            mask[(oy + y) * mw + ox + x] = (uint8_t)lround(a * 255.0);
        }
    }
}

/* Pick a size: start at a twelfth of the frame's short side per line and
 * shrink until the title takes at most three lines (or the floor). */
static int layout(const uint8_t *g, int n, int w, int h, line_t *lines, double *scale)
{
    int shortside = w < h ? w : h, nl = 0;
    double lh = shortside / 12.0, min_lh = shortside / 26.0;
    for (;; lh *= 0.88) {
        if (lh < min_lh)
            lh = min_lh;
        double s = lh / pv_rfont_height;
        nl = wrap(g, n, (int)(w * 0.86 / s), lines);
        *scale = s;
        if (nl <= 3 || lh <= min_lh)
            return nl;
    }
}

static int build_mask(pv_rtitle_t *t, const uint8_t *g, const line_t *lines, int nl, double s)
{
    int maxw = 0;
    for (int i = 0; i < nl; i++)
        maxw = lines[i].width > maxw ? lines[i].width : maxw;
    if (maxw < 1)
        return 0;
    uint8_t *bm = malloc((size_t)maxw * pv_rfont_height);
    if (!bm)
        return -ENOMEM;
    int pad = (int)lround(pv_rfont_height * s * 0.45);
    int pitch = (int)lround(pv_rfont_height * s * 1.1);
    for (int i = 0; i < nl; i++) {
        memset(bm, 0, (size_t)lines[i].width * pv_rfont_height);
        line_bitmap(g, &lines[i], bm);
        int lw = (int)lround(lines[i].width * s);
        int ox = lw < t->w ? (t->w - lw) / 2 : 0; /* too wide: clipped on the right */
        line_draw(bm, lines[i].width, s, t->a, t->w, t->h, ox, pad + i * pitch);
    }
    free(bm);
    int cw = t->w / 2;
    for (int y = 0; y < t->h / 2; y++)
        for (int x = 0; x < cw; x++) {
            const uint8_t *p = t->a + (2 * y) * t->w + 2 * x;
            t->ac[y * cw + x] = (uint8_t)((p[0] + p[1] + p[t->w] + p[t->w + 1] + 2) / 4);
        }
    return 0;
}

pv_rtitle_t *pv_rtitle_new(const char *title, int w, int h, int *rc)
{
    uint8_t g[MAX_GLYPHS];
    line_t lines[MAX_LINES];
    double s = 1.0;
    *rc = 0;
    int n = to_glyphs(title, g, MAX_GLYPHS);
    int nl = n ? layout(g, n, w, h, lines, &s) : 0;
    if (nl == 0)
        return NULL;
    int maxw = 0;
    for (int i = 0; i < nl; i++)
        maxw = lines[i].width > maxw ? lines[i].width : maxw;
    int pad = (int)lround(pv_rfont_height * s * 0.45);
    int pitch = (int)lround(pv_rfont_height * s * 1.1);
    pv_rtitle_t *t = calloc(1, sizeof(*t));
    if (!t || pv_fail("render_alloc"))
        goto nomem;
    t->w = ((int)lround(maxw * s) + 4 * pad + 1) & ~1;
    t->h = ((nl - 1) * pitch + (int)lround(pv_rfont_height * s) + 2 * pad + 1) & ~1;
    t->w = t->w > w ? w : t->w;
    t->h = t->h > h ? h : t->h;
    t->x = ((w - t->w) / 2) & ~1;
    t->y = ((int)(h * 0.80) - t->h / 2) & ~1;
    if (t->y + t->h > h)
        t->y = (h - t->h) & ~1;
    if (t->y < 0)
        t->y = 0;
    t->a = calloc((size_t)t->w * t->h, 1);
    t->ac = calloc((size_t)(t->w / 2) * (t->h / 2) + 1, 1);
    if (!t->a || !t->ac || build_mask(t, g, lines, nl, s) < 0)
        goto nomem;
    return t;
nomem:
    pv_rtitle_free(t);
    *rc = -ENOMEM;
    return NULL;
}

/* v darkened by the band, then pulled towards target by coverage a. */
static inline uint8_t over(int v, int base, int target, int a)
{
    v = base + (((v - base) * (256 - BAND_ALPHA)) >> 8);
    return (uint8_t)(v + (((target - v) * a + 127) / 255));
}

void pv_rtitle_draw(const pv_rtitle_t *t, AVFrame *dst)
{
    if (!t)
        return;
    for (int y = 0; y < t->h; y++) {
        uint8_t *d = dst->data[0] + (ptrdiff_t)(t->y + y) * dst->linesize[0] + t->x;
        const uint8_t *a = t->a + y * t->w;
        for (int x = 0; x < t->w; x++)
            d[x] = over(d[x], 16, TEXT_Y, a[x]);
    }
    for (int i = 1; i < 3; i++)
        for (int y = 0; y < t->h / 2; y++) {
            uint8_t *d = dst->data[i] + (ptrdiff_t)(t->y / 2 + y) * dst->linesize[i] + t->x / 2;
            const uint8_t *a = t->ac + y * (t->w / 2);
            for (int x = 0; x < t->w / 2; x++)
                d[x] = over(d[x], 128, 128, a[x]);
        }
}

void pv_rtitle_free(pv_rtitle_t *t)
{
    if (!t)
        return;
    free(t->a);
    free(t->ac);
    free(t);
}
