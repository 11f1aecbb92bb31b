/*
 * image_jpeg.c — JPEG through libjpeg-turbo, shrunk on load.
 *
 * Why not FFmpeg's MJPEG decoder with lowres, which image.c used before:
 * it wants the whole file as one packet and makes its own unescaped copy
 * of the scan, so a 20 MB, 24-megapixel photo took ~40 MB to decode even
 * at lowres=3 (93 MB max RSS for `ffmpeg -threads 1 -lowres 3`), and its
 * Huffman decoding is slow (~1.1 s for that file). libjpeg-turbo reads the
 * file through a small buffer and scales in the IDCT (scale_denom 8: the
 * DC coefficient alone), so the same decode takes ~0.27 s and ~2 MB. That
 * is what lets uploads decode two at a time within the memory budget.
 *
 * Shape: one heap block holds libjpeg's state, the error manager with its
 * jmp_buf, and the read buffer, so nothing the longjmp skips over lives on
 * the stack. libjpeg reports fatal errors through error_exit and damaged
 * data through warnings (emit_message at level -1); both end the decode
 * here. A progress monitor caps the number of scans.
 */
#include "media/image_jpeg.h"
#include "base/pv.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jerror.h>
#include <jpeglib.h>
#include <libavutil/frame.h>

#define JD_BUF (64 * 1024)

typedef struct jd {
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr jerr;
    struct jpeg_source_mgr src;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    int fd;
    int rc; /* set before the longjmp: -EINVAL, -ENOMEM, -EIO */
    char msg[JMSG_LENGTH_MAX + 64];
    bool created; /* jpeg_create_decompress ran */
    AVFrame *frame;
    JOCTET buf[JD_BUF];
} jd_t;

static void jd_fail(jd_t *j, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void jd_fail(jd_t *j, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
    va_end(ap);
    j->rc = rc;
    longjmp(j->jb, 1);
}

static void jd_error_exit(j_common_ptr c)
{
    jd_t *j = (jd_t *)c->client_data;
    char m[JMSG_LENGTH_MAX];
    c->err->format_message(c, m);
    if (c->err->msg_code == JERR_OUT_OF_MEMORY)
        jd_fail(j, -ENOMEM, "out of memory decoding the JPEG");
    jd_fail(j, -EINVAL, "not a decodable image: JPEG (%s)", m);
}

/* Warnings are damaged data (a bad Huffman code, data ending early): an
 * error, not a half-grey picture. Trace messages (level >= 1) are ignored. */
static void jd_emit_message(j_common_ptr c, int level)
{
    if (level < 0)
        jd_error_exit(c);
}

static void jd_progress(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > PV_JPEG_MAX_SCANS)
        jd_fail((jd_t *)c->client_data, -EINVAL, "not a decodable image: JPEG has too many scans");
}

/* ---- a source that reads the file descriptor ---- */

static void jd_init_source(j_decompress_ptr c) { (void)c; }

static boolean jd_fill(j_decompress_ptr c)
{
    jd_t *j = (jd_t *)c->client_data;
    ssize_t n;
    do
        n = pv_fail("image_io") ? (errno = EIO, -1) : read(j->fd, j->buf, sizeof(j->buf));
    while (n < 0 && errno == EINTR);
    if (n < 0)
        jd_fail(j, -EIO, "cannot read image: %s", strerror(errno));
    if (n == 0)
        WARNMS(c, JWRN_JPEG_EOF); /* fatal: see jd_emit_message */
    j->src.next_input_byte = j->buf;
    j->src.bytes_in_buffer = (size_t)n;
    return TRUE;
}

static void jd_skip(j_decompress_ptr c, long n)
{
    jd_t *j = (jd_t *)c->client_data;
    while (n > 0 && (size_t)n > j->src.bytes_in_buffer) {
        n -= (long)j->src.bytes_in_buffer;
        jd_fill(c);
    }
    if (n > 0) {
        j->src.next_input_byte += n;
        j->src.bytes_in_buffer -= (size_t)n;
    }
}

static void jd_term_source(j_decompress_ptr c) { (void)c; }

/* ---- decode ---- */

static void jd_run(jd_t *j, int shift)
{
    struct jpeg_decompress_struct *c = &j->c;
    jpeg_create_decompress(c);
    j->created = true;
    c->client_data = j;
    c->progress = &j->progress;
    j->progress.progress_monitor = jd_progress;
    j->src = (struct jpeg_source_mgr){.init_source = jd_init_source,
                                      .fill_input_buffer = jd_fill,
                                      .skip_input_data = jd_skip,
                                      .resync_to_restart = jpeg_resync_to_restart,
                                      .term_source = jd_term_source};
    c->src = &j->src;
    jpeg_read_header(c, TRUE);
    bool gray = c->num_components == 1;
    if (!gray && c->jpeg_color_space != JCS_YCbCr && c->jpeg_color_space != JCS_RGB)
        jd_fail(j, -EINVAL, "not a decodable image: JPEG colour space %d",
                (int)c->jpeg_color_space);
    c->out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    c->scale_num = 1;
    c->scale_denom = 1u << shift;
    c->dct_method = JDCT_ISLOW;
    jpeg_start_decompress(c);
    j->frame = pv_fail("image_alloc") ? NULL : av_frame_alloc();
    if (!j->frame)
        jd_fail(j, -ENOMEM, "out of memory");
    j->frame->format = gray ? AV_PIX_FMT_GRAY8 : AV_PIX_FMT_RGB24;
    j->frame->width = (int)c->output_width;
    j->frame->height = (int)c->output_height;
    if (av_frame_get_buffer(j->frame, 0) < 0)
        jd_fail(j, -ENOMEM, "out of memory");
    while (c->output_scanline < c->output_height) {
        JSAMPROW row = j->frame->data[0] + (ptrdiff_t)c->output_scanline * j->frame->linesize[0];
        jpeg_read_scanlines(c, &row, 1);
    }
    jpeg_finish_decompress(c); /* reads on to EOI: a missing one is an error */
}

int pv_jpeg_decode(int fd, int shift, AVFrame **out, char *err, size_t errlen)
{
    *out = NULL;
    if (shift < 0 || shift > 3)
        return -EINVAL;
    jd_t *j = pv_fail("image_alloc") ? NULL : calloc(1, sizeof(*j));
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    j->fd = fd;
    j->c.err = jpeg_std_error(&j->jerr);
    j->jerr.error_exit = jd_error_exit;
    j->jerr.emit_message = jd_emit_message;
    j->c.client_data = j; /* jpeg_create_decompress keeps it */
    int rc = 0;
    if (lseek(fd, 0, SEEK_SET) < 0) {
        rc = -EIO;
        snprintf(err, errlen, "cannot read image: %s", strerror(errno));
    } else if (setjmp(j->jb) == 0) {
        jd_run(j, shift);
        *out = j->frame;
        j->frame = NULL;
    } else {
        rc = j->rc;
        snprintf(err, errlen, "%s", j->msg);
    }
    if (j->created)
        jpeg_destroy_decompress(&j->c);
    av_frame_free(&j->frame);
    free(j);
    return rc;
}
