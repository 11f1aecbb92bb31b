/*
 * test_image_shrink.c — photos shrunk on load (src/media/image.c with
 * image_jpeg.c): a JPEG larger than the head image.c reads is streamed
 * through libjpeg at a DCT-reduced scale, and what comes out must look
 * like what the full decode gave (SSIM >= 0.98 against the thumbnail of
 * the path it replaced: FFmpeg at full size, img_force_full), while a
 * truncated or damaged file is still refused.
 *
 * The photos are made here: 3000x2000, photo-like or hard-edged (see
 * make_photo), encoded at q 2 by our own encoder, so they are well past the
 * 256 KB head.
 */
#include "../../src/media/image.c"

#include "t.h"

#include <math.h>
#include <stdio.h>

#include <jpeglib.h>

#include <libavutil/frame.h>
#include <libavutil/pixfmt.h>

static char g_tmp[256];

/* A path in the temp dir; four in turn, so that one call can take two. */
static const char *tmp(const char *name)
{
    static char path[4][400];
    static unsigned turn;
    char *p = path[turn++ % 4];
    snprintf(p, sizeof(path[0]), "%s/%s", g_tmp, name);
    return p;
}

static uint8_t *g_big; /* the photo's bytes */
static size_t g_big_len;

static void write_file(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(d, 1, n, f);
    fclose(f);
}

static uint8_t clamp8(double v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5); }

/* Photo-like (smooth shapes, fine detail, a little noise), or hard-edged
 * (1 px lines and sharp blocks, like testsrc2 or a screenshot): a DCT-scaled
 * decode is a block average, and with too little room left for the final
 * scale, edges alias (SSIM 0.963 at 1/8 for testsrc2). */
static int make_photo(int w, int h, bool edges, const char *name, uint8_t **out, size_t *outlen)
{
    AVFrame *f = img_frame_new(AV_PIX_FMT_YUVJ420P, w, h);
    if (!f)
        return -ENOMEM;
    uint32_t seed = 12345;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            seed = seed * 1103515245u + 12345u;
            double v = 128 + 55 * sin(x / 97.0) * cos(y / 131.0) + 35 * sin((x + 2 * y) / 53.0) +
                       12 * sin(x / 6.0) * sin(y / 9.0) + (double)((seed >> 16) % 13) - 6;
            if (edges) /* blocks of 37x23 px, 1 px lines every 29 px */
                v = (x % 29 == 0 || y % 29 == 0) ? 250 : ((x / 37 * 7 + y / 23 * 13) % 5) * 50;
            f->data[0][(ptrdiff_t)y * f->linesize[0] + x] = clamp8(v);
        }
    for (int y = 0; y < h / 2; y++)
        for (int x = 0; x < w / 2; x++) {
            f->data[1][(ptrdiff_t)y * f->linesize[1] + x] = clamp8(128 + 50 * sin(y / 70.0));
            f->data[2][(ptrdiff_t)y * f->linesize[2] + x] = clamp8(128 + 50 * cos(x / 90.0));
        }
    f->color_range = AVCOL_RANGE_JPEG;
    AVPacket *pkt = NULL;
    int rc = pv_image_encode_jpeg(f, 2, &pkt);
    av_frame_free(&f);
    if (rc < 0)
        return rc;
    *out = malloc((size_t)pkt->size);
    if (*out) {
        memcpy(*out, pkt->data, (size_t)pkt->size);
        *outlen = (size_t)pkt->size;
        write_file(tmp(name), *out, *outlen);
    }
    av_packet_free(&pkt);
    return *out ? 0 : -ENOMEM;
}

/* Mean SSIM of two grey pictures of one size over 8x8 windows on a 4 px
 * grid (the blocks FFmpeg's ssim filter uses). */
static double ssim_gray(const AVFrame *a, const AVFrame *b)
{
    const double c1 = 6.5025, c2 = 58.5225; /* (0.01*255)^2, (0.03*255)^2 */
    double sum = 0;
    long n = 0;
    for (int y = 0; y + 8 <= a->height; y += 4)
        for (int x = 0; x + 8 <= a->width; x += 4) {
            double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < 8; i++) {
                    double pa = a->data[0][(ptrdiff_t)(y + j) * a->linesize[0] + x + i];
                    double pb = b->data[0][(ptrdiff_t)(y + j) * b->linesize[0] + x + i];
                    sa += pa, sb += pb, saa += pa * pa, sbb += pb * pb, sab += pa * pb;
                }
            double ma = sa / 64, mb = sb / 64;
            double va = saa / 64 - ma * ma, vb = sbb / 64 - mb * mb, cov = sab / 64 - ma * mb;
            sum +=
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            n++;
        }
    return n ? sum / (double)n : 0;
}

static double ssim_files(const char *pa, const char *pb)
{
    AVFrame *a = NULL, *b = NULL;
    char err[256] = "";
    double s = -1;
    if (pv_image_decode(pa, AV_PIX_FMT_GRAY8, 0, 0, &a, err, sizeof(err)) == 0 &&
        pv_image_decode(pb, AV_PIX_FMT_GRAY8, 0, 0, &b, err, sizeof(err)) == 0 &&
        a->width == b->width && a->height == b->height)
        s = ssim_gray(a, b);
    av_frame_free(&a);
    av_frame_free(&b);
    return s;
}

TEST(streams_big_jpeg)
{
    CHECK(g_big_len > 4 * IMG_HEAD);
    img_src_t s;
    char err[256] = "";
    int rc = img_load(tmp("big.jpg"), &s, PV_IMAGE_MAX_PIXELS, err, sizeof(err));
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK(s.libjpeg);
        CHECK(s.len <= IMG_HEAD && s.size == g_big_len); /* the head only */
        CHECK(s.probe.w == 3000 && s.probe.h == 2000 && !s.probe.jpeg_multiscan);
        CHECK_EQ_INT(img_pick_lowres(&s, 320, 214), 3);
        /* thumbnail decode: 375x250 RGB, the head, libjpeg's rows */
        CHECK(img_estimate(&s, 3) < (3u << 20));
    }
    img_src_free(&s);
}

static void thumb_vs_full(const char *name, double want)
{
    pv_image_info_t a, b;
    char err[256] = "";
    CHECK_EQ_INT(pv_image_ingest(tmp(name), &a, tmp("thumb.jpg"), err, sizeof(err)), 0);
    img_force_full = true;
    CHECK_EQ_INT(pv_image_ingest(tmp(name), &b, tmp("thumb_full.jpg"), err, sizeof(err)), 0);
    img_force_full = false;
    CHECK(memcmp(&a, &b, sizeof(a)) == 0);
    CHECK(a.width == 3000 && a.height == 2000);
    double s = ssim_files(tmp("thumb.jpg"), tmp("thumb_full.jpg"));
    printf("# %s: thumbnail SSIM, shrunk on load vs full decode: %.5f\n", name, s);
    CHECK(s >= want);
}

TEST(thumbnail_matches_full_decode)
{
    thumb_vs_full("big.jpg", 0.98);
    /* the spec's bar is 0.98; hard edges decoded at 1/8 straight to the
     * box (no factor of two left for swscale) give 0.984, with it 0.994 */
    thumb_vs_full("edges.jpg", 0.99);
}

TEST(render_frame_matches_full_decode)
{
    AVFrame *a = NULL, *b = NULL;
    char err[256] = "";
    /* 1280x720 box: 1080x720 out of a 1/2-scale decode (1500x1000) */
    CHECK_EQ_INT(pv_image_decode(tmp("big.jpg"), AV_PIX_FMT_YUV420P, 1280, 720, &a, err, 256), 0);
    img_force_full = true;
    CHECK_EQ_INT(pv_image_decode(tmp("big.jpg"), AV_PIX_FMT_YUV420P, 1280, 720, &b, err, 256), 0);
    img_force_full = false;
    if (a && b) {
        CHECK(a->width == 1080 && a->height == 720 && b->width == 1080 && b->height == 720);
        double s = ssim_gray(a, b); /* the Y plane */
        printf("# 1080x720 frame SSIM, shrunk on load vs full decode: %.5f\n", s);
        CHECK(s >= 0.98);
    }
    av_frame_free(&a);
    av_frame_free(&b);
}

static void check_refused(const char *what, const uint8_t *d, size_t n)
{
    pv_image_info_t info;
    char err[256] = "";
    write_file(tmp("bad.jpg"), d, n);
    int rc = pv_image_ingest(tmp("bad.jpg"), &info, tmp("bad_thumb.jpg"), err, sizeof(err));
    if (rc != -EINVAL || strncmp(err, IMG_BAD, strlen(IMG_BAD)) != 0)
        printf("#   %s: ingest %d (%s)\n", what, rc, err);
    CHECK_EQ_INT(rc, -EINVAL);
    CHECK(strncmp(err, IMG_BAD, strlen(IMG_BAD)) == 0);
    AVFrame *f = NULL;
    rc = pv_image_decode(tmp("bad.jpg"), AV_PIX_FMT_YUV420P, 64, 48, &f, err, sizeof(err));
    if (rc != -EINVAL)
        printf("#   %s: decode %d (%s)\n", what, rc, err);
    CHECK_EQ_INT(rc, -EINVAL);
    CHECK(f == NULL);
    av_frame_free(&f);
}

TEST(damaged_big_jpeg_refused)
{
    /* truncated: within the head, just past it, on through the scan, before EOI */
    static const double at[] = {0.02, 0.5, 0.9};
    check_refused("cut in the head", g_big, IMG_HEAD / 2);
    check_refused("cut past the head", g_big, IMG_HEAD + 1000);
    for (size_t k = 0; k < PV_ARRAY_LEN(at); k++)
        check_refused("cut", g_big, IMG_HEAD + (size_t)((double)(g_big_len - IMG_HEAD) * at[k]));
    check_refused("no EOI", g_big, g_big_len - 2);
    /* a marker in the middle of the entropy-coded data */
    uint8_t *d = malloc(g_big_len);
    if (!d)
        return;
    memcpy(d, g_big, g_big_len);
    d[g_big_len / 2] = 0xFF;
    d[g_big_len / 2 + 1] = 0xD9;
    check_refused("EOI in the scan", d, g_big_len);
    /* the scan cut short and the file padded back to size with zeros */
    memset(d + g_big_len / 2, 0, g_big_len / 2 - 2);
    check_refused("zeros in the scan", d, g_big_len);
    free(d);
}

/* A progressive JPEG (made with libjpeg's own encoder: FFmpeg's writes
 * baseline only): streamed too, its estimate holds every coefficient at
 * full size (what libjpeg buffers for a multi-scan file), and its
 * thumbnail still matches the full decode. */
TEST(progressive_big_jpeg)
{
    enum { W = 2400, H = 1600 };
    AVFrame *rgb = NULL;
    char err[256] = "";
    CHECK_EQ_INT(pv_image_decode(tmp("big.jpg"), AV_PIX_FMT_RGB24, W, H, &rgb, err, 256), 0);
    if (!rgb)
        return;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    FILE *f = fopen(tmp("prog.jpg"), "wb");
    if (!f) {
        jpeg_destroy_compress(&c);
        av_frame_free(&rgb);
        return;
    }
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)rgb->width;
    c.image_height = (JDIMENSION)rgb->height;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = rgb->data[0] + (ptrdiff_t)c.next_scanline * rgb->linesize[0];
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
    av_frame_free(&rgb);

    img_src_t s;
    int rc = img_load(tmp("prog.jpg"), &s, PV_IMAGE_MAX_PIXELS, err, sizeof(err));
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK(s.libjpeg && s.probe.jpeg_multiscan && s.len < s.size);
        /* 4:2:0: 1.5 coefficients a pixel, 2 bytes each */
        CHECK(s.probe.jpeg_coef >= (uint64_t)W * H * 3);
        CHECK(img_estimate(&s, 3) > s.probe.jpeg_coef);
    }
    img_src_free(&s);
    pv_image_info_t a, b;
    CHECK_EQ_INT(pv_image_ingest(tmp("prog.jpg"), &a, tmp("pthumb.jpg"), err, sizeof(err)), 0);
    img_force_full = true;
    CHECK_EQ_INT(pv_image_ingest(tmp("prog.jpg"), &b, tmp("pthumb_full.jpg"), err, sizeof(err)), 0);
    img_force_full = false;
    CHECK(a.width == W && a.height == H);
    double ss = ssim_files(tmp("pthumb.jpg"), tmp("pthumb_full.jpg"));
    printf("# progressive thumbnail SSIM, shrunk on load vs full decode: %.5f\n", ss);
    CHECK(ss >= 0.98);
}

/* The failure seam over the streamed path: each site that fails (the head
 * read, libjpeg's reads, its state, the frame) ends in a clean error. */
TEST(fail_seam_streamed)
{
    int n;
    for (n = 1; n < 100; n++) {
        char spec[64];
        snprintf(spec, sizeof(spec), "*:%d", n);
        pv_fail_reset(spec);
        pv_image_info_t info;
        char err[256] = "";
        int rc = pv_image_ingest(tmp("big.jpg"), &info, tmp("seam.jpg"), err, sizeof(err));
        pv_fail_count_t c = pv_fail_count();
        pv_fail_reset("");
        if (c.fired == 0) {
            CHECK_EQ_INT(rc, 0);
            break;
        }
        if (rc != 0 && (err[0] == '\0' || (rc != -ENOMEM && rc != -EIO && rc != -EINVAL))) {
            printf("#   step %d (%s): rc %d err \"%s\"\n", n, c.last, rc, err);
            t_cur_failed = 1;
        }
    }
    printf("# walk ingest big.jpg: %d steps\n", n);
    CHECK(n > 1 && n < 100);
}

int main(void)
{
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/pv_test_image_shrink.XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    img_init();
    uint8_t *edges = NULL;
    size_t edges_len = 0;
    if (make_photo(3000, 2000, false, "big.jpg", &g_big, &g_big_len) < 0 ||
        make_photo(3000, 2000, true, "edges.jpg", &edges, &edges_len) < 0) {
        printf("# cannot make the test photo\n");
        return 1;
    }
    RUN(streams_big_jpeg);
    RUN(thumbnail_matches_full_decode);
    RUN(render_frame_matches_full_decode);
    RUN(damaged_big_jpeg_refused);
    RUN(progressive_big_jpeg);
    RUN(fail_seam_streamed);
    free(g_big);
    free(edges);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", g_tmp);
    return t_done("image_shrink");
}
