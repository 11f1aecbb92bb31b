/*
 * fuzz_render_opts.c — the video options of POST /api/v1/videos and pvrender
 * specs (pv_render_opts_from_json) and, when they validate, the title
 * layout and drawing (render_title.c) on a small frame: arbitrary UTF-8 and
 * lengths must never crash or write outside the frame.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>
#include <libavutil/frame.h>

#include "media/render.h"
#include "media/render_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *obj = json_loadb((const char *)data, size, 0, NULL);
    if (!obj)
        return 0;
    pv_render_opts_t o;
    char field[64], err[256];
    pv_render_opts_default(&o);
    bool enc = size > 0 && (data[0] & 1);
    int rc = pv_render_opts_from_json(obj, &o, enc, field, sizeof(field), err, sizeof(err));
    if (rc < 0 && (rc != -EINVAL || !err[0] || (json_is_object(obj) && !field[0])))
        abort(); /* a failure names the field and says why */
    if (rc == 0 && (o.width < 2 || o.height < 2 || (o.width | o.height) & 1 ||
                    o.video.seconds_per_photo < 0.5 || o.video.seconds_per_photo > 60 ||
                    pv_ropts_transition_seconds(&o.video) > o.video.seconds_per_photo / 2 ||
                    strlen(o.title) > PV_TITLE_MAX || !pv_rfx_transition_find(o.video.transition)))
        abort(); /* what passes is renderable */
    if (rc == 0 && o.title[0]) {
        /* small frames of every aspect: the layout must fit any of them */
        static const int sizes[][2] = {{64, 36}, {36, 64}, {48, 48}, {854, 480}};
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            int rc = 0;
            pv_rtitle_t *t = pv_rtitle_new(o.title, sizes[i][0], sizes[i][1], &rc);
            AVFrame *f = pv_rfx_picture_new(sizes[i][0], sizes[i][1]);
            if (t && f)
                pv_rtitle_draw(t, f);
            av_frame_free(&f);
            pv_rtitle_free(t);
        }
    }
    json_decref(obj);
    return 0;
}
