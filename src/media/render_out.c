/*
 * render_out.c — the renderer's outputs: libx264 into an MP4 with the moov
 * atom first, and the poster JPEG; both through temp files beside their
 * final names, renamed only once complete and durable.
 *
 * The MP4 is written through our own AVIOContext over a file descriptor
 * (mkstemp's) rather than avio_open: we see the real errno of every write
 * (ENOSPC is a result of its own, not "I/O error"), and the failure seam can
 * stand in for a full disk. faststart (movflags) makes the muxer rewrite
 * the file at the end so that moov precedes mdat: it re-opens the temp file
 * by name to read while it writes through our context.
 * Order at the end: trailer, fsync both files, rename the poster, rename
 * the MP4 (the MP4 under its final name means the job is complete), fsync
 * the directory.
 */
#include "media/image.h"
#include "media/render_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "base/pv.h"

#define IO_BUF_SIZE (256 * 1024)

typedef struct temp_file {
    char path[PATH_MAX];     /* "<final>.tmp-XXXXXX"; "" when none */
    char final[PATH_MAX];    /* where it goes when complete */
    int fd;                  /* -1 when closed */
} temp_file_t;

struct pv_rout {
    temp_file_t mp4, poster;
    int io_err;              /* first errno of a write or seek; sticky */
    AVFormatContext *fmt;    /* the mp4 muxer, over pb */
    AVIOContext *pb;         /* ours: writes to mp4.fd */
    AVCodecContext *enc;     /* libx264 */
    AVPacket *pkt;           /* reused for every encoded packet */
    AVPacket *jpeg;          /* the poster, encoded; NULL until taken */
    bool finished;           /* renamed: nothing to clean up */
};

/* ---- errors ---- */

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static bool is_full_disk(int e) { return e == ENOSPC || e == EDQUOT; }

/* An FFmpeg failure as a result: a full disk seen by our writer wins, then
 * ENOMEM, else -EIO; err says what failed and why. */
static int av_fail(pv_rout_t *r, int averr, const char *what, char *err, size_t errlen)
{
    if (is_full_disk(r->io_err) || averr == AVERROR(ENOSPC) || averr == AVERROR(EDQUOT))
        return errf(err, errlen, -ENOSPC, "disk full while writing %s", r->mp4.final);
    if (r->io_err)
        return errf(err, errlen, -EIO, "cannot write %s: %s", r->mp4.final,
                    strerror(r->io_err));
    if (averr == AVERROR(ENOMEM))
        return errf(err, errlen, -ENOMEM, "%s: out of memory", what);
    return errf(err, errlen, -EIO, "%s: %s", what, av_err2str(averr));
}

/* ---- temp files ---- */

static int temp_open(temp_file_t *t, const char *final, char *err, size_t errlen)
{
    t->fd = -1;
    if (snprintf(t->final, sizeof(t->final), "%s", final) >= (int)sizeof(t->final) ||
        snprintf(t->path, sizeof(t->path), "%s.tmp-XXXXXX", final) >= (int)sizeof(t->path))
        return errf(err, errlen, -EIO, "output path too long: %s", final);
    t->fd = pv_fail("render_io") ? (errno = EIO, -1) : mkostemp(t->path, O_CLOEXEC);
    if (t->fd < 0) {
        int e = errno;
        t->path[0] = '\0';
        return errf(err, errlen, is_full_disk(e) ? -ENOSPC : -EIO, "cannot create %s: %s",
                    final, strerror(e));
    }
    return 0;
}

/* fsync and close; 0 or -errno. */
static int temp_close(temp_file_t *t)
{
    int rc = 0;
    if (t->fd < 0)
        return 0;
    while (fsync(t->fd) < 0 && rc == 0)
        if (errno != EINTR)
            rc = -errno;
    if (close(t->fd) < 0 && rc == 0)
        rc = -errno;
    t->fd = -1;
    return rc;
}

static void temp_discard(temp_file_t *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (t->path[0])
        unlink(t->path);
    t->path[0] = '\0';
}

/* ---- our AVIOContext ---- */

static int io_write(void *opaque, uint8_t *buf, int size)
{
    pv_rout_t *r = opaque;
    if (r->io_err)
        return AVERROR(r->io_err);
    int rc = pv_fail("render_write") ? -ENOSPC : pv_write_all(r->mp4.fd, buf, (size_t)size);
    if (rc < 0) {
        r->io_err = -rc;
        return AVERROR(-rc);
    }
    return size;
}

static int64_t io_seek(void *opaque, int64_t offset, int whence)
{
    pv_rout_t *r = opaque;
    struct stat st;
    if (whence & AVSEEK_SIZE)
        return fstat(r->mp4.fd, &st) < 0 ? AVERROR(errno) : (int64_t)st.st_size;
    off_t pos = lseek(r->mp4.fd, (off_t)offset, whence & ~AVSEEK_FORCE);
    if (pos < 0) {
        r->io_err = r->io_err ? r->io_err : errno;
        return AVERROR(errno);
    }
    return (int64_t)pos;
}

/* ---- encoder and muxer ---- */

static int open_muxer(pv_rout_t *r, char *err, size_t errlen)
{
    int rc = avformat_alloc_output_context2(&r->fmt, NULL, "mp4", r->mp4.path);
    if (rc < 0 || pv_fail("render_alloc"))
        return av_fail(r, rc < 0 ? rc : AVERROR(ENOMEM), "MP4 muxer", err, errlen);
    uint8_t *buf = av_malloc(IO_BUF_SIZE);
    r->pb = buf ? avio_alloc_context(buf, IO_BUF_SIZE, 1, r, NULL, io_write, io_seek) : NULL;
    if (!r->pb) {
        av_free(buf);
        return av_fail(r, AVERROR(ENOMEM), "MP4 output", err, errlen);
    }
    r->fmt->pb = r->pb;
    r->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    return 0;
}

static int open_encoder(pv_rout_t *r, const pv_render_opts_t *o, int w, int h, char *err,
                        size_t errlen)
{
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec)
        return errf(err, errlen, -EIO, "this FFmpeg has no libx264 encoder");
    r->enc = pv_fail("render_alloc") ? NULL : avcodec_alloc_context3(codec);
    if (!r->enc)
        return av_fail(r, AVERROR(ENOMEM), "H.264 encoder", err, errlen);
    AVCodecContext *c = r->enc;
    c->width = w;
    c->height = h;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = (AVRational){1, o->video.fps};
    c->framerate = (AVRational){o->video.fps, 1};
    c->sample_aspect_ratio = (AVRational){1, 1};
    c->color_range = AVCOL_RANGE_MPEG;
    c->colorspace = AVCOL_SPC_BT470BG; /* photos' YUV is BT.601 (JPEG/swscale) */
    c->thread_count = o->threads;      /* 0: x264 picks (1.5 x cores) */
    /* Slice threads: every thread works on the same frame, so x264 holds
     * no extra frames per thread (frame threads cost ~75 MB more at 1080p)
     * at about the same speed on 2 cores; output quality is unchanged. */
    c->thread_type = FF_THREAD_SLICE;
    if (r->fmt->oformat->flags & AVFMT_GLOBALHEADER)
        c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "preset", o->x264_preset, 0);
    av_dict_set_int(&opts, "crf", o->crf, 0);
    int rc = pv_fail("render_encoder") ? AVERROR_EXTERNAL : avcodec_open2(c, codec, &opts);
    av_dict_free(&opts);
    if (rc < 0)
        return av_fail(r, rc, "cannot open the H.264 encoder (libx264)", err, errlen);
    AVStream *st = avformat_new_stream(r->fmt, NULL);
    if (!st)
        return av_fail(r, AVERROR(ENOMEM), "MP4 stream", err, errlen);
    rc = avcodec_parameters_from_context(st->codecpar, c);
    if (rc < 0)
        return av_fail(r, rc, "MP4 stream", err, errlen);
    st->time_base = c->time_base;
    st->avg_frame_rate = c->framerate;
    r->pkt = av_packet_alloc();
    return r->pkt ? 0 : av_fail(r, AVERROR(ENOMEM), "packet", err, errlen);
}

static int write_header(pv_rout_t *r, char *err, size_t errlen)
{
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "movflags", "+faststart", 0);
    int rc = pv_fail("render_mux") ? AVERROR_EXTERNAL : avformat_write_header(r->fmt, &opts);
    av_dict_free(&opts);
    return rc < 0 ? av_fail(r, rc, "cannot start the MP4", err, errlen) : 0;
}

int pv_rout_open(pv_rout_t **out, const char *out_mp4, const char *poster_jpg,
                 const pv_render_opts_t *o, int w, int h, char *err, size_t errlen)
{
    *out = NULL;
    pv_rout_t *r = pv_fail("render_alloc") ? NULL : calloc(1, sizeof(*r));
    if (!r)
        return errf(err, errlen, -ENOMEM, "out of memory");
    r->mp4.fd = r->poster.fd = -1;
    int rc = temp_open(&r->mp4, out_mp4, err, errlen);
    if (rc == 0 && poster_jpg)
        rc = temp_open(&r->poster, poster_jpg, err, errlen);
    if (rc == 0)
        rc = open_muxer(r, err, errlen);
    if (rc == 0)
        rc = open_encoder(r, o, w, h, err, errlen);
    if (rc == 0)
        rc = write_header(r, err, errlen);
    if (rc < 0) {
        pv_rout_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Move every packet the encoder has ready into the MP4. */
static int drain(pv_rout_t *r, char *err, size_t errlen)
{
    for (;;) {
        int rc = avcodec_receive_packet(r->enc, r->pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0)
            return av_fail(r, rc, "H.264 encoder", err, errlen);
        if (r->pkt->duration <= 0)
            r->pkt->duration = 1;
        av_packet_rescale_ts(r->pkt, r->enc->time_base, r->fmt->streams[0]->time_base);
        r->pkt->stream_index = 0;
        rc = av_interleaved_write_frame(r->fmt, r->pkt); /* takes the packet */
        if (rc < 0)
            return av_fail(r, rc, "cannot write the MP4", err, errlen);
    }
}

int pv_rout_frame(pv_rout_t *r, AVFrame *f, char *err, size_t errlen)
{
    int rc = avcodec_send_frame(r->enc, f);
    if (rc < 0)
        return av_fail(r, rc, "H.264 encoder", err, errlen);
    return drain(r, err, errlen);
}

/* ---- poster ---- */

/* Limited-range yuv420p -> full-range yuvj420p, as JPEG wants. */
static AVFrame *to_jpeg_range(const AVFrame *f)
{
    AVFrame *j = av_frame_alloc();
    if (!j)
        return NULL;
    j->format = AV_PIX_FMT_YUVJ420P;
    j->width = f->width;
    j->height = f->height;
    j->color_range = AVCOL_RANGE_JPEG;
    struct SwsContext *sws =
        sws_getContext(f->width, f->height, AV_PIX_FMT_YUV420P, f->width, f->height,
                       AV_PIX_FMT_YUVJ420P, SWS_POINT, NULL, NULL, NULL);
    if (!sws || av_frame_get_buffer(j, 0) < 0 ||
        sws_scale(sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, j->data,
                  j->linesize) <= 0)
        av_frame_free(&j);
    sws_freeContext(sws);
    return j;
}

int pv_rout_poster(pv_rout_t *r, const AVFrame *f, char *err, size_t errlen)
{
    if (r->poster.fd < 0 || r->jpeg)
        return 0;
    AVFrame *j = pv_fail("render_alloc") ? NULL : to_jpeg_range(f);
    int rc = j ? pv_image_encode_jpeg(j, 3, &r->jpeg) : -ENOMEM;
    av_frame_free(&j);
    return rc < 0 ? av_fail(r, AVERROR(-rc), "poster JPEG encoder", err, errlen) : 0;
}

/* ---- the end ---- */

static int write_poster(pv_rout_t *r, char *err, size_t errlen)
{
    if (r->poster.fd < 0)
        return 0;
    if (!r->jpeg)
        return errf(err, errlen, -EIO, "no poster frame was rendered");
    int rc = pv_fail("render_write") ? -ENOSPC
                                     : pv_write_all(r->poster.fd, r->jpeg->data,
                                                    (size_t)r->jpeg->size);
    if (rc == 0)
        rc = temp_close(&r->poster);
    if (rc < 0)
        return errf(err, errlen, is_full_disk(-rc) ? -ENOSPC : -EIO, "cannot write %s: %s",
                    r->poster.final, strerror(-rc));
    return 0;
}

static int finish_mp4(pv_rout_t *r, char *err, size_t errlen)
{
    int rc = avcodec_send_frame(r->enc, NULL);
    if (rc < 0)
        return av_fail(r, rc, "H.264 encoder", err, errlen);
    rc = drain(r, err, errlen);
    if (rc < 0)
        return rc;
    rc = av_write_trailer(r->fmt);
    if (rc < 0 || r->io_err || r->pb->error < 0)
        return av_fail(r, rc < 0 ? rc : r->pb->error < 0 ? r->pb->error : AVERROR(EIO),
                       "cannot finish the MP4", err, errlen);
    avio_flush(r->pb);
    if (r->io_err)
        return av_fail(r, AVERROR(r->io_err), "cannot finish the MP4", err, errlen);
    rc = temp_close(&r->mp4);
    if (rc < 0)
        return errf(err, errlen, is_full_disk(-rc) ? -ENOSPC : -EIO, "cannot write %s: %s",
                    r->mp4.final, strerror(-rc));
    return 0;
}

static int rename_into_place(temp_file_t *t, char *err, size_t errlen)
{
    if (!t->path[0])
        return 0;
    int e = pv_fail("render_rename") ? EIO : rename(t->path, t->final) < 0 ? errno : 0;
    if (e)
        return errf(err, errlen, is_full_disk(e) ? -ENOSPC : -EIO, "cannot rename to %s: %s",
                    t->final, strerror(e));
    t->path[0] = '\0';
    return 0;
}

int pv_rout_finish(pv_rout_t *r, char *err, size_t errlen)
{
    int rc = finish_mp4(r, err, errlen);
    if (rc == 0)
        rc = write_poster(r, err, errlen);
    if (rc == 0)
        rc = rename_into_place(&r->poster, err, errlen);
    if (rc == 0 && (rc = rename_into_place(&r->mp4, err, errlen)) < 0 && r->poster.final[0])
        unlink(r->poster.final); /* no poster without its video */
    if (rc < 0)
        return rc;
    r->finished = true;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", r->mp4.final);
    pv_fsync_dir(dirname(dir)); /* the rename's durability; best effort */
    return 0;
}

void pv_rout_free(pv_rout_t *r)
{
    if (!r)
        return;
    avcodec_free_context(&r->enc);
    av_packet_free(&r->pkt);
    av_packet_free(&r->jpeg);
    avformat_free_context(r->fmt);
    if (r->pb) {
        av_freep(&r->pb->buffer);
        avio_context_free(&r->pb);
    }
    temp_discard(&r->mp4);
    temp_discard(&r->poster);
    free(r);
}
