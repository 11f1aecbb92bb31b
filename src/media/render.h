/*
 * render.h — the video pipeline on the FFmpeg libraries, in-process.
 * Shared by pvd's render workers and the standalone pvrender.
 *
 * Each photo is decoded once (src/image.h, orientation applied), fitted to
 * the frame, and held only while it is on screen (memory does not grow with
 * the number of photos); transitions and Ken Burns are computed per frame;
 * frames go to libx264 (yuv420p) and into an MP4 with the moov atom first.
 * Blocking and CPU-bound: render threads only.
 */
#ifndef PV_RENDER_H
#define PV_RENDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/records.h"

typedef struct pv_render_opts {
    pv_video_opts_t video;   /* as stored in a video record */
    char title[PV_TITLE_MAX + 1]; /* optional title card; "" for none */
    int width, height;       /* derived from resolution + aspect */
    char x264_preset[16];    /* default "veryfast" */
    int crf;                 /* default 23 */
    uint64_t seed;           /* Ken Burns paths are deterministic per seed */
    int threads;             /* encoder threads; 0: auto */
} pv_render_opts_t;

/* Defaults as API.md says. */
void pv_render_opts_default(pv_render_opts_t *o);
/* Read and validate the video options of a JSON object (POST /api/v1/videos
 * or a pvrender spec): unknown transition, out-of-range numbers, wrong
 * types -> -EINVAL with the offending field's name in field and a message
 * in err. Fields absent keep their current value. Also fills width/height. */
int pv_render_opts_from_json(json_t *obj, pv_render_opts_t *o, bool allow_encoder_opts,
                             char *field, size_t fieldlen, char *err, size_t errlen);
/* n x seconds_per_photo - (n-1) x transition_seconds ("none": 0). */
double pv_render_duration(const pv_video_opts_t *o, int n_photos);

/* Progress: called from the render thread with frames done and total.
 * Return nonzero to cancel (pv_render then returns -ECANCELED soon). */
typedef int (*pv_render_progress_fn)(void *arg, int64_t done, int64_t total);

/* Render n photos to out_mp4 (written to a temp name beside it and renamed
 * only when complete) and, if poster_jpg is not NULL, a poster JPEG.
 * 0; -ECANCELED; -EINVAL (a photo does not decode: err names it); -ENOSPC;
 * -EIO (encoder/muxer failure; err says what). */
int pv_render(const char *const *photos, int n, const pv_render_opts_t *o,
              const char *out_mp4, const char *poster_jpg,
              pv_render_progress_fn progress, void *arg, char *err,
              size_t errlen);

/* The same render in steps, so that a render thread can be shared: pvd
 * runs one photo's worth of frames of a job, then lets another job have
 * the thread (actors/videos.c). photos, o and err must outlive r.
 *
 * pv_render_begin checks the photos and options and opens the encoder and
 * the temp files: 0 and *out, or a pv_render result (nothing is left).
 * pv_render_step renders up to max_frames more frames (0: all that are
 * left); after the last one it finishes the files (renamed to their final
 * names). 1: more to do; 0: done; else a pv_render result, err says why.
 * pv_render_free ends r at any point, removing the temp files of an
 * unfinished render. */
typedef struct pv_render pv_render_t;
int pv_render_begin(pv_render_t **out, const char *const *photos, int n,
                    const pv_render_opts_t *o, const char *out_mp4, const char *poster_jpg,
                    pv_render_progress_fn progress, void *arg, char *err, size_t errlen);
int pv_render_step(pv_render_t *r, int64_t max_frames);
/* Frames of one photo's clip without its overlap (a step's natural size),
 * at least 1. */
int64_t pv_render_photo_frames(const pv_render_t *r);
void pv_render_free(pv_render_t *r);

#endif
