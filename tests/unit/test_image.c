/*
 * test_image.c — src/image.c against the committed fixtures in
 * tests/fixtures/ (see make.sh there: one 80x60 pattern, left half red,
 * top-right green, bottom-right blue, so that every orientation shows).
 *
 * image.c is included (h2o's t/00unit style) so that its pure helpers —
 * header probes, EXIF date parsing, fitting, the orientation copy — can be
 * tested directly; the public functions are tested through the fixtures.
 */
#include "../../src/media/image.c"

#include "t.h"

#include <pthread.h>
#include <time.h>

#include <libavutil/frame.h>
#include <libavutil/pixfmt.h>

/* Fixtures live beside this file: tests/unit/../fixtures. */
static char g_fix[512];
static char g_tmp[256];

static const char *fix(const char *name)
{
    static _Thread_local char path[640];
    snprintf(path, sizeof(path), "%s/%s", g_fix, name);
    return path;
}

static const char *tmp(const char *name)
{
    static _Thread_local char path[400];
    snprintf(path, sizeof(path), "%s/%s", g_tmp, name);
    return path;
}

static void write_file(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(d, 1, n, f);
    fclose(f);
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* Colour near (r, g, b)? JPEG and chroma subsampling blur edges; samples
 * are taken at quarter centres, away from edges. */
static bool px_near(const AVFrame *f, int x, int y, int r, int g, int b)
{
    const uint8_t *p = f->data[0] + (ptrdiff_t)y * f->linesize[0] + x * 3;
    bool ok = abs(p[0] - r) < 48 && abs(p[1] - g) < 48 && abs(p[2] - b) < 48;
    if (!ok)
        printf("#   pixel (%d,%d) = (%d,%d,%d), want ~(%d,%d,%d)\n", x, y, p[0], p[1], p[2], r,
               g, b);
    return ok;
}

#define RED 255, 0, 0
#define GREEN 0, 255, 0
#define BLUE 0, 0, 255
#define WHITE 255, 255, 255

/* The pattern as stored (orientation 1), sampled in a w x h RGB24 frame. */
static bool is_pattern(const AVFrame *f)
{
    int w = f->width, h = f->height;
    return px_near(f, w / 4, h / 4, RED) && px_near(f, w / 4, 3 * h / 4, RED) &&
           px_near(f, 3 * w / 4, h / 4, GREEN) && px_near(f, 3 * w / 4, 3 * h / 4, BLUE);
}

/* ---- sniff ---- */

TEST(sniff)
{
    static const uint8_t jpg[] = {0xFF, 0xD8, 0xFF, 0xE0};
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0};
    static const uint8_t webp[] = "RIFF\x10\0\0\0WEBPVP8 ";
    static const uint8_t heic[] = "\0\0\0\x18" "ftypheic\0\0\0\0mif1heic";
    static const uint8_t mif1[] = "\0\0\0\x18" "ftypmif1\0\0\0\0mif1heic";
    static const uint8_t compat[] = "\0\0\0\x18" "ftypXXXX\0\0\0\0mif1heix";
    static const uint8_t avif[] = "\0\0\0\x18" "ftypavif\0\0\0\0mif1miaf";
    static const uint8_t mp4[] = "\0\0\0\x18" "ftypisom\0\0\0\0isomavc1";
    CHECK_EQ_STR(pv_image_sniff(jpg, sizeof(jpg)), "image/jpeg");
    CHECK_EQ_STR(pv_image_sniff(png, sizeof(png)), "image/png");
    CHECK_EQ_STR(pv_image_sniff(webp, sizeof(webp) - 1), "image/webp");
    CHECK_EQ_STR(pv_image_sniff(heic, sizeof(heic) - 1), "image/heic");
    CHECK_EQ_STR(pv_image_sniff(mif1, sizeof(mif1) - 1), "image/heic");
    CHECK_EQ_STR(pv_image_sniff(compat, sizeof(compat) - 1), "image/heic");
    CHECK(pv_image_sniff(avif, sizeof(avif) - 1) == NULL);
    CHECK(pv_image_sniff(mp4, sizeof(mp4) - 1) == NULL);
    CHECK(pv_image_sniff(jpg, 2) == NULL);
    CHECK(pv_image_sniff(png, 7) == NULL);
    CHECK(pv_image_sniff(webp, 11) == NULL);
    CHECK(pv_image_sniff("GIF89a....", 10) == NULL);
    CHECK(pv_image_sniff(NULL, 0) == NULL);
    CHECK(pv_image_sniff("", 0) == NULL);
    /* a box size that lies about its length stays inside the buffer */
    static const uint8_t liar[] = "\xff\xff\xff\xff" "ftypXXXX\0\0\0\0";
    CHECK(pv_image_sniff(liar, sizeof(liar) - 1) == NULL);

    uint8_t buf[4096];
    size_t n = read_file(fix("photo.heic"), buf, sizeof(buf));
    CHECK_EQ_STR(pv_image_sniff(buf, n), "image/heic");
    n = read_file(fix("photo.webp"), buf, sizeof(buf));
    CHECK_EQ_STR(pv_image_sniff(buf, n), "image/webp");
    n = read_file(fix("text.jpg"), buf, sizeof(buf));
    CHECK(pv_image_sniff(buf, n) == NULL);
}

/* ---- pure helpers ---- */

TEST(exif_datetime)
{
    CHECK_EQ_INT(exif_parse_datetime("2021:06:15 10:34:56"), 1623753296000LL);
    CHECK_EQ_INT(exif_parse_datetime("2020:02:29 23:59:59"), 1583020799000LL);
    CHECK_EQ_INT(exif_parse_datetime("1999-12-31 23:59:59"), 946684799000LL);
    CHECK_EQ_INT(exif_parse_datetime("1970:01:01 00:00:00"), 0);
    CHECK_EQ_INT(exif_parse_datetime("1969:12:31 23:59:59"), -1000);
    CHECK(exif_parse_datetime("0000:00:00 00:00:00") == INT64_MIN);
    CHECK(exif_parse_datetime("    :  :     :  :  ") == INT64_MIN);
    CHECK(exif_parse_datetime("2021:02:29 10:00:00") == INT64_MIN); /* not a leap year */
    CHECK(exif_parse_datetime("2021:13:01 10:00:00") == INT64_MIN);
    CHECK(exif_parse_datetime("2021:06:15 24:00:00") == INT64_MIN);
    CHECK(exif_parse_datetime("2021:06:15") == INT64_MIN);
    CHECK(exif_parse_datetime("") == INT64_MIN);
    int off = 0;
    CHECK(exif_parse_offset("+02:00", &off) && off == 120);
    CHECK(exif_parse_offset("-05:30", &off) && off == -330);
    CHECK(!exif_parse_offset("02:00", &off));
    CHECK(!exif_parse_offset("+2:00", &off));
    CHECK(!exif_parse_offset("", &off));
}

TEST(fit)
{
    int w, h;
    img_fit(4000, 3000, 320, 320, &w, &h);
    CHECK(w == 320 && h == 240);
    img_fit(3000, 4000, 320, 320, &w, &h);
    CHECK(w == 240 && h == 320);
    img_fit(80, 60, 320, 320, &w, &h); /* never upscaled */
    CHECK(w == 80 && h == 60);
    img_fit(5000, 10, 320, 320, &w, &h); /* never zero */
    CHECK(w == 320 && h == 1);
    img_fit(1920, 1080, 0, 0, &w, &h);
    CHECK(w == 1920 && h == 1080);
    img_fit(1920, 1080, 0, 540, &w, &h);
    CHECK(w == 960 && h == 540);
}

/* Every orientation against the mapping written out by hand (EXIF 2.3,
 * 0th row / 0th column table), on a 3x2 frame of distinct pixels. */
TEST(orient_table)
{
    AVFrame *src = img_frame_new(AV_PIX_FMT_RGB24, 3, 2);
    CHECK(src != NULL);
    if (!src)
        return;
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
            src->data[0][y * src->linesize[0] + x * 3] = (uint8_t)(10 * y + x);
    /* displayed rows, as stored values 10*y+x */
    static const int want[9][6] = {
        [1] = {0, 1, 2, 10, 11, 12},  [2] = {2, 1, 0, 12, 11, 10},
        [3] = {12, 11, 10, 2, 1, 0},  [4] = {10, 11, 12, 0, 1, 2},
        [5] = {0, 10, 1, 11, 2, 12},  [6] = {10, 0, 11, 1, 12, 2},
        [7] = {12, 2, 11, 1, 10, 0},  [8] = {2, 12, 1, 11, 0, 10},
    };
    for (int o = 1; o <= 8; o++) {
        AVFrame *d = NULL;
        CHECK_EQ_INT(img_orient(src, o, &d), 0);
        if (!d)
            continue;
        CHECK_EQ_INT(d->width, orient_swaps(o) ? 2 : 3);
        for (int i = 0; i < 6; i++) {
            int x = i % d->width, y = i / d->width;
            int got = d->data[0][y * d->linesize[0] + x * 3];
            if (got != want[o][i])
                printf("#   orientation %d pixel %d: %d != %d\n", o, i, got, want[o][i]);
            CHECK_EQ_INT(got, want[o][i]);
        }
        av_frame_free(&d);
    }
    av_frame_free(&src);
}

/* ---- ingest per type ---- */

static int ingest(const char *name, pv_image_info_t *info, const char *thumb, char *err)
{
    memset(info, 0x5A, sizeof(*info)); /* must all be overwritten... */
    info->content_type[sizeof(info->content_type) - 1] = '\0'; /* ...but printable */
    return pv_image_ingest(fix(name), info, thumb, err, 256);
}

/* Decode a thumbnail we wrote: a JPEG of the expected size. */
static AVFrame *check_thumb(const char *path, int w, int h)
{
    uint8_t head[8];
    CHECK(read_file(path, head, sizeof(head)) == sizeof(head));
    CHECK_EQ_STR(pv_image_sniff(head, sizeof(head)), "image/jpeg");
    AVFrame *f = NULL;
    char err[256] = "";
    CHECK_EQ_INT(pv_image_decode(path, AV_PIX_FMT_RGB24, 0, 0, &f, err, sizeof(err)), 0);
    if (f) {
        CHECK_EQ_INT(f->width, w);
        CHECK_EQ_INT(f->height, h);
    }
    return f;
}

TEST(ingest_jpeg_orientation6)
{
    pv_image_info_t info;
    char err[256] = "";
    CHECK_EQ_INT(ingest("orient6.jpg", &info, tmp("t6.jpg"), err), 0);
    CHECK_EQ_STR(info.content_type, "image/jpeg");
    CHECK_EQ_INT(info.width, 60);
    CHECK_EQ_INT(info.height, 80);
    CHECK_EQ_INT(info.orientation, 6);
    CHECK_EQ_INT(info.taken_ms, 1623753296000LL); /* 12:34:56+02:00 */
    AVFrame *f = check_thumb(tmp("t6.jpg"), 60, 80);
    if (f) /* rotated clockwise: red on top, blue bottom-left, green bottom-right */
        CHECK(px_near(f, 30, 20, RED) && px_near(f, 15, 60, BLUE) && px_near(f, 45, 60, GREEN));
    av_frame_free(&f);
}

TEST(ingest_jpeg_plain)
{
    pv_image_info_t info;
    char err[256] = "";
    CHECK_EQ_INT(ingest("plain.jpg", &info, tmp("tp.jpg"), err), 0);
    CHECK_EQ_STR(info.content_type, "image/jpeg");
    CHECK(info.width == 80 && info.height == 60);
    CHECK_EQ_INT(info.orientation, 1);
    CHECK(info.taken_ms == INT64_MIN);
    AVFrame *f = check_thumb(tmp("tp.jpg"), 80, 60);
    if (f)
        CHECK(is_pattern(f));
    av_frame_free(&f);
    /* no thumbnail wanted */
    CHECK_EQ_INT(ingest("plain.jpg", &info, NULL, err), 0);
    CHECK(info.width == 80 && info.height == 60);
}

TEST(ingest_jpeg_big_orientation8)
{
    pv_image_info_t info;
    char err[256] = "";
    CHECK_EQ_INT(ingest("big8.jpg", &info, tmp("t8.jpg"), err), 0);
    CHECK(info.width == 960 && info.height == 1280);
    CHECK_EQ_INT(info.orientation, 8);
    CHECK(info.taken_ms == INT64_MIN);
    AVFrame *f = check_thumb(tmp("t8.jpg"), 240, 320);
    if (f) /* counter-clockwise: green top-left, blue top-right, red bottom */
        CHECK(px_near(f, 60, 80, GREEN) && px_near(f, 180, 80, BLUE) &&
              px_near(f, 120, 240, RED));
    av_frame_free(&f);
}

TEST(ingest_png_alpha)
{
    pv_image_info_t info;
    char err[256] = "";
    CHECK_EQ_INT(ingest("alpha.png", &info, tmp("ta.jpg"), err), 0);
    CHECK_EQ_STR(info.content_type, "image/png");
    CHECK(info.width == 80 && info.height == 60);
    CHECK_EQ_INT(info.orientation, 1);
    CHECK(info.taken_ms == INT64_MIN);
    AVFrame *f = check_thumb(tmp("ta.jpg"), 80, 60);
    if (f) /* on white: transparent -> white, half-transparent green -> pale */
        CHECK(px_near(f, 20, 30, RED) && px_near(f, 60, 15, 127, 255, 127) &&
              px_near(f, 60, 45, WHITE));
    av_frame_free(&f);
}

TEST(ingest_webp)
{
    pv_image_info_t info;
    char err[256] = "";
    CHECK_EQ_INT(ingest("photo.webp", &info, tmp("tw.jpg"), err), 0);
    CHECK_EQ_STR(info.content_type, "image/webp");
    CHECK(info.width == 80 && info.height == 60);
    CHECK_EQ_INT(info.orientation, 1);
    AVFrame *f = check_thumb(tmp("tw.jpg"), 80, 60);
    if (f)
        CHECK(is_pattern(f));
    av_frame_free(&f);
}

/* EXIF outside JPEG: PNG's eXIf chunk, WebP's EXIF chunk. */
TEST(ingest_exif_png_webp)
{
    pv_image_info_t info;
    char err[256] = "";
    CHECK_EQ_INT(ingest("orient3.png", &info, tmp("t3.jpg"), err), 0);
    CHECK(info.width == 80 && info.height == 60);
    CHECK_EQ_INT(info.orientation, 3);
    CHECK_EQ_INT(info.taken_ms, 978307200000LL);
    AVFrame *f = check_thumb(tmp("t3.jpg"), 80, 60);
    if (f) /* upside down: red right, blue top-left, green bottom-left */
        CHECK(px_near(f, 60, 30, RED) && px_near(f, 20, 15, BLUE) && px_near(f, 20, 45, GREEN));
    av_frame_free(&f);

    CHECK_EQ_INT(ingest("orient5.webp", &info, tmp("t5.jpg"), err), 0);
    CHECK(info.width == 60 && info.height == 80);
    CHECK_EQ_INT(info.orientation, 5);
    CHECK_EQ_INT(info.taken_ms, 978327000250LL); /* 00:00:00.25-05:30 */
    f = check_thumb(tmp("t5.jpg"), 60, 80);
    if (f) /* transposed: red top, green bottom-left, blue bottom-right */
        CHECK(px_near(f, 30, 20, RED) && px_near(f, 15, 60, GREEN) && px_near(f, 45, 60, BLUE));
    av_frame_free(&f);
}

TEST(ingest_heic)
{
    pv_image_info_t info;
    char err[256] = "";
    CHECK_EQ_INT(ingest("photo.heic", &info, tmp("th.jpg"), err), 0);
    if (err[0])
        printf("#   %s\n", err);
    CHECK_EQ_STR(info.content_type, "image/heic");
    CHECK(info.width == 80 && info.height == 60);
    CHECK_EQ_INT(info.orientation, 1);
    CHECK_EQ_INT(info.taken_ms, 1583020799000LL); /* no offset: UTC */
    AVFrame *f = check_thumb(tmp("th.jpg"), 80, 60);
    if (f)
        CHECK(is_pattern(f));
    av_frame_free(&f);

    /* EXIF says 6, HEIF has no irot: HEIF rules, EXIF orientation ignored
     * (libheif applies irot/imir itself; applying EXIF too would double) */
    CHECK_EQ_INT(ingest("exif6.heic", &info, tmp("th6.jpg"), err), 0);
    CHECK(info.width == 80 && info.height == 60);
    CHECK_EQ_INT(info.orientation, 1);
    CHECK_EQ_INT(info.taken_ms, 1623753296000LL);
    f = check_thumb(tmp("th6.jpg"), 80, 60);
    if (f)
        CHECK(is_pattern(f));
    av_frame_free(&f);
    /* alpha (an auxiliary image in HEIF) composited on white */
    CHECK_EQ_INT(ingest("alpha.heic", &info, tmp("tha.jpg"), err), 0);
    CHECK(info.width == 80 && info.height == 60);
    f = check_thumb(tmp("tha.jpg"), 80, 60);
    if (f)
        CHECK(px_near(f, 20, 30, RED) && px_near(f, 60, 15, 127, 255, 127) &&
              px_near(f, 60, 45, WHITE));
    av_frame_free(&f);
}

/* ---- decode for the renderer ---- */

TEST(decode_orientation_and_fit)
{
    AVFrame *f = NULL;
    char err[256] = "";
    CHECK_EQ_INT(pv_image_decode(fix("orient6.jpg"), AV_PIX_FMT_RGB24, 0, 0, &f, err, 256), 0);
    if (f) {
        CHECK(f->width == 60 && f->height == 80 && f->format == AV_PIX_FMT_RGB24);
        CHECK(px_near(f, 30, 20, RED) && px_near(f, 15, 60, BLUE) && px_near(f, 45, 60, GREEN));
    }
    av_frame_free(&f);

    /* fit into a box, lowres path, orientation 8 */
    CHECK_EQ_INT(pv_image_decode(fix("big8.jpg"), AV_PIX_FMT_RGB24, 240, 240, &f, err, 256), 0);
    if (f) {
        CHECK(f->width == 180 && f->height == 240);
        CHECK(px_near(f, 45, 60, GREEN) && px_near(f, 135, 60, BLUE) && px_near(f, 90, 180, RED));
    }
    av_frame_free(&f);

    /* full size yuv420p, as the renderer asks */
    CHECK_EQ_INT(pv_image_decode(fix("big8.jpg"), AV_PIX_FMT_YUV420P, 0, 0, &f, err, 256), 0);
    if (f) {
        CHECK(f->width == 960 && f->height == 1280 && f->format == AV_PIX_FMT_YUV420P);
        /* luma: red ~ 81, green ~ 145, blue ~ 41 (BT.601 limited range) */
        CHECK(abs(f->data[0][f->linesize[0] * 1000 + 480] - 81) < 20);
        CHECK(abs(f->data[0][f->linesize[0] * 300 + 200] - 145) < 20);
    }
    av_frame_free(&f);

    /* never upscaled */
    CHECK_EQ_INT(pv_image_decode(fix("photo.webp"), AV_PIX_FMT_RGB24, 1920, 1080, &f, err, 256), 0);
    if (f) {
        CHECK(f->width == 80 && f->height == 60);
        CHECK(is_pattern(f));
    }
    av_frame_free(&f);

    CHECK_EQ_INT(pv_image_decode(fix("photo.heic"), AV_PIX_FMT_RGB24, 40, 40, &f, err, 256), 0);
    if (f) {
        CHECK(f->width == 40 && f->height == 30);
        CHECK(is_pattern(f));
    }
    av_frame_free(&f);

    /* alpha kept when asked for */
    CHECK_EQ_INT(pv_image_decode(fix("alpha.png"), AV_PIX_FMT_RGBA, 0, 0, &f, err, 256), 0);
    if (f) {
        CHECK(f->format == AV_PIX_FMT_RGBA);
        CHECK_EQ_INT(f->data[0][f->linesize[0] * 45 + 60 * 4 + 3], 0);
        CHECK_EQ_INT(f->data[0][f->linesize[0] * 15 + 20 * 4 + 3], 255);
    }
    av_frame_free(&f);

    /* a pixel format that is not one */
    CHECK_EQ_INT(pv_image_decode(fix("plain.jpg"), 100000, 0, 0, &f, err, 256), -EINVAL);
    CHECK(f == NULL);
}

/* Every orientation through the whole path: rewrite orient6.jpg's
 * orientation tag in a copy (the SHORT value follows its tag entry). */
TEST(decode_all_orientations)
{
    uint8_t buf[4096];
    size_t n = read_file(fix("orient6.jpg"), buf, sizeof(buf));
    uint8_t *tag = NULL;
    for (size_t i = 0; i + 12 <= n && !tag; i++) /* big- or little-endian entry */
        if ((buf[i] == 0x01 && buf[i + 1] == 0x12 && buf[i + 2] == 0 && buf[i + 3] == 3) ||
            (buf[i] == 0x12 && buf[i + 1] == 0x01 && buf[i + 2] == 3 && buf[i + 3] == 0))
            tag = buf + i;
    CHECK(tag != NULL);
    if (!tag)
        return;
    bool be = tag[0] == 0x01;
    /* displayed (x, y) sample points in quarters of the displayed frame,
     * and which stored quarter each shows: 0 TL red, 1 TR green, 2 BL red,
     * 3 BR blue. Displayed quarter q = (y>=half)*2 + (x>=half). */
    for (int o = 1; o <= 8; o++) {
        tag[be ? 9 : 8] = (uint8_t)o;
        tag[be ? 8 : 9] = 0;
        write_file(tmp("o.jpg"), buf, n);
        AVFrame *f = NULL;
        char err[256] = "";
        CHECK_EQ_INT(pv_image_decode(tmp("o.jpg"), AV_PIX_FMT_RGB24, 0, 0, &f, err, 256), 0);
        if (!f)
            continue;
        const img_orient_t *m = &img_orients[o];
        CHECK_EQ_INT(f->width, m->swap ? 60 : 80);
        for (int q = 0; q < 4; q++) {
            int dx = (q & 1) ? 3 * f->width / 4 : f->width / 4;
            int dy = (q & 2) ? 3 * f->height / 4 : f->height / 4;
            /* map to stored, like img_orient does */
            int sx = m->swap ? dy : dx, sy = m->swap ? dx : dy;
            if (m->flip_x)
                sx = 79 - sx;
            if (m->flip_y)
                sy = 59 - sy;
            bool ok = sx < 40 ? px_near(f, dx, dy, RED)
                      : sy < 30 ? px_near(f, dx, dy, GREEN)
                                : px_near(f, dx, dy, BLUE);
            if (!ok)
                printf("#   orientation %d quarter %d\n", o, q);
            CHECK(ok);
        }
        av_frame_free(&f);
    }
}

/* ---- bad input ---- */

static void check_bad(const char *path_in, int want)
{
    char path[640];
    snprintf(path, sizeof(path), "%s", path_in); /* tmp() reuses its buffer */
    pv_image_info_t info;
    char err[256] = "";
    AVFrame *f = NULL;
    int rc = pv_image_ingest(path, &info, tmp("bad.jpg"), err, sizeof(err));
    if (rc != want)
        printf("#   %s: %d (%s)\n", path, rc, err);
    CHECK_EQ_INT(rc, want);
    if (want == -EINVAL)
        CHECK(strncmp(err, "not a decodable image: ", 23) == 0);
    else
        CHECK(err[0] != '\0');
    err[0] = '\0';
    CHECK_EQ_INT(pv_image_decode(path, AV_PIX_FMT_RGB24, 0, 0, &f, err, sizeof(err)), want);
    CHECK(f == NULL && err[0] != '\0');
    av_frame_free(&f);
}

TEST(truncated_and_garbage)
{
    check_bad(fix("truncated.jpg"), -EINVAL);
    check_bad(fix("text.jpg"), -EINVAL);
    write_file(tmp("empty.jpg"), "", 0);
    check_bad(tmp("empty.jpg"), -EINVAL);

    /* every prefix of each fixture is refused cleanly, never decoded */
    static const char *const names[] = {"plain.jpg", "alpha.png", "photo.webp", "photo.heic"};
    uint8_t buf[4096];
    for (size_t k = 0; k < PV_ARRAY_LEN(names); k++) {
        size_t n = read_file(fix(names[k]), buf, sizeof(buf));
        for (size_t cut = 1; cut < n; cut += 1 + cut / 8) {
            write_file(tmp("cut"), buf, cut);
            pv_image_info_t info;
            char err[256] = "";
            int rc = pv_image_ingest(tmp("cut"), &info, NULL, err, sizeof(err));
            if (rc != -EINVAL)
                printf("#   %s cut at %zu: %d %s\n", names[k], cut, rc, err);
            CHECK_EQ_INT(rc, -EINVAL);
        }
    }

    /* right magic, garbage after */
    uint8_t junk[600];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    static const uint8_t *const heads[] = {
        (const uint8_t *)"\xFF\xD8\xFF\xE0", (const uint8_t *)"\x89PNG\r\n\x1a\n",
        (const uint8_t *)"RIFF\x50\x02\0\0WEBP", (const uint8_t *)"\0\0\0\x18" "ftypheic"};
    static const size_t hlen[] = {4, 8, 12, 12};
    for (size_t k = 0; k < PV_ARRAY_LEN(heads); k++) {
        memcpy(junk, heads[k], hlen[k]);
        write_file(tmp("junk"), junk, sizeof(junk));
        check_bad(tmp("junk"), -EINVAL);
    }

    /* a corrupted middle (with EOI intact) */
    size_t n = read_file(fix("big8.jpg"), buf, sizeof(buf));
    for (size_t i = n / 2; i < n / 2 + 64; i++)
        buf[i] = 0xA5;
    write_file(tmp("corrupt.jpg"), buf, n);
    pv_image_info_t info;
    char err[256] = "";
    int rc = pv_image_ingest(tmp("corrupt.jpg"), &info, NULL, err, sizeof(err));
    CHECK(rc == 0 || rc == -EINVAL); /* JPEG may resync; never crash */

    err[0] = '\0';
    CHECK_EQ_INT(pv_image_ingest(tmp("does-not-exist"), &info, NULL, err, sizeof(err)), -EIO);
    CHECK(err[0] != '\0');
}

static uint32_t crc32_png(const uint8_t *d, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= d[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

TEST(too_large)
{
    /* PNG: a valid header claiming 20000x20000, a tiny IDAT, IEND */
    uint8_t png[8 + 25 + 12 + 12];
    memcpy(png, png_sig, 8);
    uint8_t *ihdr = png + 8;
    put_be32(ihdr, 13);
    memcpy(ihdr + 4, "IHDR", 4);
    put_be32(ihdr + 8, 20000);
    put_be32(ihdr + 12, 20000);
    memcpy(ihdr + 16, "\x08\x02\x00\x00\x00", 5);
    put_be32(ihdr + 21, crc32_png(ihdr + 4, 17));
    uint8_t *idat = ihdr + 25;
    put_be32(idat, 0);
    memcpy(idat + 4, "IDAT", 4);
    put_be32(idat + 8, crc32_png(idat + 4, 4));
    uint8_t *iend = idat + 12;
    put_be32(iend, 0);
    memcpy(iend + 4, "IEND", 4);
    put_be32(iend + 8, crc32_png(iend + 4, 4));
    write_file(tmp("huge.png"), png, sizeof(png));

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    check_bad(tmp("huge.png"), -EMSGSIZE);
    CHECK(ms_since(&t0) < 200);

    /* JPEG: SOF0 claiming 20000x20000 */
    static const uint8_t jpg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0x4E, 0x20, 0x4E, 0x20,
                                  1, 1, 0x11, 0, 0xFF, 0xD9};
    write_file(tmp("huge.jpg"), jpg, sizeof(jpg));
    check_bad(tmp("huge.jpg"), -EMSGSIZE);

    /* WebP: VP8X canvas 16384x16384 */
    uint8_t webp[30] = "RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0";
    webp[24] = webp[25] = 0xFF, webp[26] = 0x3F, webp[27] = 0xFF, webp[28] = 0x3F;
    write_file(tmp("huge.webp"), webp, sizeof(webp));
    check_bad(tmp("huge.webp"), -EMSGSIZE);

    /* Exactly at the limit is not refused for size (10000x10000 = 100 MP):
     * it then fails as incomplete, not as too large. */
    put_be32(ihdr + 8, 10000);
    put_be32(ihdr + 12, 10000);
    put_be32(ihdr + 21, crc32_png(ihdr + 4, 17));
    write_file(tmp("limit.png"), png, sizeof(png) - 12); /* no IEND */
    check_bad(tmp("limit.png"), -EINVAL);
}

/* A progressive-JPEG bomb: a few bytes per scan, each scan a full pass. */
TEST(jpeg_scan_limit)
{
    static const uint8_t head[] = {0xFF, 0xD8, 0xFF, 0xC2, 0, 11, 8, 0, 16, 0, 16, 1, 1, 0x11, 0};
    static const uint8_t sos[] = {0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0, 0, 0};
    size_t cap = sizeof(head) + 1100 * sizeof(sos) + 2;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return;
    for (int nscans = 999; nscans <= 1001; nscans += 2) {
        size_t n = 0;
        memcpy(buf, head, sizeof(head));
        n += sizeof(head);
        for (int k = 0; k < nscans; k++, n += sizeof(sos))
            memcpy(buf + n, sos, sizeof(sos));
        buf[n++] = 0xFF;
        buf[n++] = 0xD9;
        img_probe_t p = {0};
        char err[256] = "";
        int rc = probe_jpeg(buf, n, &p, err, sizeof(err));
        CHECK_EQ_INT(rc, nscans > 1000 ? -EINVAL : 0);
        CHECK(p.w == 16 && p.h == 16);
        if (rc == 0)
            CHECK(p.complete);
    }
    free(buf);
}

/* ---- failure seam: SQLite's walk. "*:N" fails the Nth pv_fail call of
 * whatever site, for N = 1, 2, ... until a run fires nothing: each site on
 * the way (allocation, file I/O, FFmpeg, libheif, libexif) fails once, and
 * each step must be a clean error (ASan shows any leak at exit) ---- */

static void walk_seam(const char *name, bool decode)
{
    int n;
    char fired[1024] = "", rerr[256];
    pv_image_info_t ref; /* what a run with nothing failing finds */
    memset(&ref, 0, sizeof(ref));
    if (!decode)
        CHECK_EQ_INT(pv_image_ingest(fix(name), &ref, tmp("seam.jpg"), rerr, sizeof(rerr)), 0);
    for (n = 1; n < 200; n++) {
        char spec[64];
        snprintf(spec, sizeof(spec), "*:%d", n);
        pv_fail_reset(spec);
        pv_image_info_t info;
        memset(&info, 0, sizeof(info));
        char err[256] = "";
        AVFrame *f = NULL;
        int rc = decode ? pv_image_decode(fix(name), AV_PIX_FMT_YUV420P, 30, 30, &f, err, 256)
                        : pv_image_ingest(fix(name), &info, tmp("seam.jpg"), err, sizeof(err));
        av_frame_free(&f);
        pv_fail_count_t c = pv_fail_count();
        pv_fail_reset("");
        if (c.fired == 0) {
            CHECK_EQ_INT(rc, 0);
            break;
        }
        size_t used = strlen(fired);
        const char *sp = strchr(c.last, ' '), *line = strrchr(c.last, ':');
        snprintf(fired + used, sizeof(fired) - used, " %.*s%s", (int)(sp ? sp - c.last : 0), c.last,
                 line ? line : "");
        if (rc == 0) { /* absorbed: then it must not have changed what was found */
            if (!decode && memcmp(&info, &ref, sizeof(info)) != 0) {
                printf("#   ingest %s step %d (%s): succeeded with other metadata\n", name, n,
                       c.last);
                t_cur_failed = 1;
            }
            continue;
        }
        if (rc >= 0 || err[0] == '\0' || (rc != -ENOMEM && rc != -EIO && rc != -EINVAL))
            printf("#   %s %s step %d (%s): rc %d err \"%s\"\n", decode ? "decode" : "ingest", name,
                   n, c.last, rc, err);
        CHECK(rc < 0 && err[0] != '\0');
        CHECK(rc == -ENOMEM || rc == -EIO || rc == -EINVAL);
        if (strstr(err, "No such file")) { /* the file is there: a stale errno */
            printf("#   %s %s step %d (%s): \"%s\"\n", decode ? "decode" : "ingest", name, n,
                   c.last, err);
            t_cur_failed = 1;
        }
    }
    printf("# walk %s %s: %d steps;%s\n", decode ? "decode" : "ingest", name, n, fired);
    CHECK(n > 1 && n < 200); /* sites were reached, and the walk ended */
}

TEST(fail_seam)
{
    static const char *const names[] = {"orient6.jpg", "alpha.png", "orient5.webp",
                                        "alpha.heic", "exif6.heic"};
    for (size_t k = 0; k < PV_ARRAY_LEN(names); k++) {
        walk_seam(names[k], false);
        walk_seam(names[k], true);
    }
}

/* ---- threads: the renderer decodes on several at once ---- */

static void *decode_thread(void *arg)
{
    const char *name = arg;
    for (int i = 0; i < 5; i++) {
        AVFrame *f = NULL;
        char err[256];
        if (pv_image_decode(fix(name), AV_PIX_FMT_RGB24, 100, 100, &f, err, sizeof(err)) != 0)
            return (void *)1;
        av_frame_free(&f);
    }
    return NULL;
}

TEST(threads)
{
    static const char *const names[] = {"orient6.jpg", "alpha.png", "photo.webp", "photo.heic",
                                        "big8.jpg"};
    pthread_t th[PV_ARRAY_LEN(names)];
    for (size_t i = 0; i < PV_ARRAY_LEN(names); i++)
        pthread_create(&th[i], NULL, decode_thread, (void *)names[i]);
    for (size_t i = 0; i < PV_ARRAY_LEN(names); i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        CHECK(r == NULL);
    }
}

int main(void)
{
    const char *env = getenv("PV_FIXTURES");
    if (env) {
        snprintf(g_fix, sizeof(g_fix), "%s", env);
    } else {
        snprintf(g_fix, sizeof(g_fix), "%s", __FILE__);
        char *slash = strrchr(g_fix, '/');
        if (slash)
            snprintf(slash, sizeof(g_fix) - (size_t)(slash - g_fix), "/../fixtures");
        else
            snprintf(g_fix, sizeof(g_fix), "../fixtures");
    }
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/pv_test_image.XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(sniff);
    RUN(exif_datetime);
    RUN(fit);
    RUN(orient_table);
    RUN(ingest_jpeg_orientation6);
    RUN(ingest_jpeg_plain);
    RUN(ingest_jpeg_big_orientation8);
    RUN(ingest_png_alpha);
    RUN(ingest_webp);
    RUN(ingest_exif_png_webp);
    RUN(ingest_heic);
    RUN(decode_orientation_and_fit);
    RUN(decode_all_orientations);
    RUN(truncated_and_garbage);
    RUN(too_large);
    RUN(jpeg_scan_limit);
    RUN(fail_seam);
    RUN(threads);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", g_tmp);
    return t_done("image");
}
