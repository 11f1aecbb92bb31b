/*
 * fuzz_image.c — libFuzzer target for src/image.c: the bytes go into a
 * memfd and through pv_image_ingest (sniff, header probes, EXIF, decode,
 * thumbnail encode), then through pv_image_decode into a small box, the
 * renderer's path. Uploads reach exactly this code.
 *
 *   make build/fuzz/bin/fuzz_image && ./build/fuzz/bin/fuzz_image \
 *       -max_total_time=60 tests/fuzz/corpus/fuzz_image
 */
#include "media/image.h"
#include "base/pv.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libavutil/frame.h>
#include <libavutil/pixfmt.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int g_in = -1, g_thumb = -1;
static char g_in_path[64], g_thumb_path[64];

static int memfd_path(const char *name, char *path, size_t len)
{
    int fd = memfd_create(name, 0);
    if (fd >= 0)
        snprintf(path, len, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_in < 0) {
        g_in = memfd_path("fuzz_image_in", g_in_path, sizeof(g_in_path));
        g_thumb = memfd_path("fuzz_image_thumb", g_thumb_path, sizeof(g_thumb_path));
        if (g_in < 0 || g_thumb < 0)
            return 0;
    }
    if (ftruncate(g_in, 0) != 0 || pwrite(g_in, data, size, 0) != (ssize_t)size)
        return 0;

    pv_image_info_t info;
    char err[256];
    int rc = pv_image_ingest(g_in_path, &info, g_thumb_path, err, sizeof(err));
    if (rc == 0 && (info.width <= 0 || info.height <= 0 || info.orientation < 1 ||
                    info.orientation > 8 || !pv_image_sniff(data, size)))
        __builtin_trap(); /* success must mean a sane answer */
    if (rc == 0) {
        AVFrame *f = NULL;
        rc = pv_image_decode(g_in_path, AV_PIX_FMT_YUV420P, 64, 48, &f, err, sizeof(err));
        if (rc == 0 && (!f || f->width > 64 || f->height > 48 || f->width < 1 || f->height < 1))
            __builtin_trap();
        av_frame_free(&f);
    }
    return 0;
}
