/*
 * image.h — decoding photos: validation, measurement, EXIF, thumbnails, and
 * decoded frames for the renderer. JPEG, PNG and WebP decode through the
 * FFmpeg libraries (libavformat/libavcodec, swscale); HEIC through libheif.
 * EXIF (orientation, DateTimeOriginal) through libexif.
 *
 * Everything here is blocking and CPU-bound: call it on worker or render
 * threads, never on an event loop. Functions are thread-safe.
 */
#ifndef PV_IMAGE_H
#define PV_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct AVFrame;
struct AVPacket;

#define PV_THUMB_MAX_SIDE 320

typedef struct pv_image_info {
    char content_type[32]; /* detected from the bytes: image/jpeg, image/png,
                              image/webp, image/heic */
    int width, height;     /* after EXIF orientation */
    int orientation;       /* EXIF 1..8; 1 when absent */
    int64_t taken_ms;      /* EXIF DateTimeOriginal as UTC ms, or INT64_MIN */
} pv_image_info_t;

/* Limits: images larger than this many pixels are refused (-EMSGSIZE)
 * unless the caller sets its own (pv_image_ingest_limited). */
#define PV_IMAGE_MAX_PIXELS (100LL * 1000 * 1000)

typedef struct pv_image_limits {
    int64_t max_pixels;        /* declared or decoded: -EMSGSIZE past it */
    uint64_t max_decode_bytes; /* estimated decode memory: -E2BIG past it */
} pv_image_limits_t;

/*
 * Decode the file at `path` fully (so a truncated or corrupt file is caught),
 * fill *info and, when thumb_path is not NULL, write a JPEG thumbnail of at
 * most PV_THUMB_MAX_SIDE px on its long side, orientation applied, to
 * thumb_path (created/truncated; not fsync'd).
 * Returns 0; -EINVAL when the bytes are not a decodable image of a
 * supported type (err says why, for the user); -EMSGSIZE when too large;
 * -ENOMEM/-EIO otherwise.
 */
int pv_image_ingest(const char *path, pv_image_info_t *info,
                    const char *thumb_path, char *err, size_t errlen);
/* The same within limits. The memory a decode takes is estimated from the
 * declared size and pixel format (at the reduced scale a thumbnail needs)
 * before anything is decoded; past max_decode_bytes it returns -E2BIG with
 * *estimate set (when not NULL), so the caller can send it to a pool that
 * decodes one at a time, or refuse it. HEIC's decoded size is checked too. */
int pv_image_ingest_limited(const char *path, const pv_image_limits_t *lim, pv_image_info_t *info,
                            const char *thumb_path, uint64_t *estimate, char *err,
                            size_t errlen);

/* Whether a decode of the file at `path` reads all of it into memory
 * before it can judge its own cost (PNG, WebP, HEIC), or streams it (JPEG:
 * only its header segments are read up front; the rare JPEG libjpeg
 * cannot decode is read whole then). From the first bytes only; true when
 * they cannot be read. */
bool pv_image_holds_file(const char *path);

/* Sniff a supported type from the first bytes: returns the content type or
 * NULL. Pure; safe on any buffer. */
const char *pv_image_sniff(const void *buf, size_t len);

/*
 * Decode to an AVFrame in pix_fmt (an enum AVPixelFormat, e.g.
 * AV_PIX_FMT_YUV420P or AV_PIX_FMT_RGB24), with EXIF orientation applied,
 * scaled (aspect kept) so that it fits in max_w x max_h if it is larger
 * (0, 0: full size). The caller frees it with av_frame_free.
 */
int pv_image_decode(const char *path, int pix_fmt, int max_w, int max_h,
                    struct AVFrame **out, char *err, size_t errlen);

/* Encode a full-range yuvj420p frame as one JPEG packet, quality as
 * ffmpeg's -q:v q (2 best .. 31). 0, -ENOMEM or -EIO. Thumbnails and video
 * posters both come through here. */
int pv_image_encode_jpeg(const struct AVFrame *f, int q, struct AVPacket **out);

#endif
