/*
 * test_render.c — the render pipeline (src/render*.c).
 *
 * Options: the validation table (every field, wrong types, ranges, enums,
 * the transition/photo-time rule, encoder options only when allowed,
 * all-or-nothing), frame sizes for every resolution x aspect, the duration
 * formula. Rendering (short 480p jobs of solid-colour photos, x264
 * ultrafast, so that colours can be checked exactly): ffprobe sees h264,
 * yuv420p, the size and the duration (+-1 frame); moov precedes mdat; the
 * frame in the middle of each clip shows its photo, letterboxed (black
 * bars); the middle of a fade is a mix; wipeleft uncovers the new photo
 * from the right; every transition renders the right number of frames; Ken
 * Burns with a title renders and is deterministic; the poster is a JPEG;
 * progress reaches total and cancelling returns -ECANCELED; a corrupt or
 * missing photo is -EINVAL naming the file; a full disk is -ENOSPC; encoder
 * and rename failures are -EIO; a walk over allocation failures ends
 * cleanly each time; and no failure leaves a file (final or temp) behind.
 *
 * Needs the ffmpeg and ffprobe commands (to make photos and inspect output).
 * render.c is #included (h2o's way) so that writable(), which only
 * allocates when the encoder still holds the last frame, can be driven.
 */
#include "../../src/media/render.c"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <libavutil/log.h>

#include "base/pv.h"
#include "media/render.h"
#include "t.h"

static char g_dir[64];
static char g_red[128], g_green[128], g_blue[128], g_corrupt[128], g_missing[128];

/* ---- helpers ---- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static void path_in(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", g_dir, name);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Files in the test folder whose name contains needle. */
static int count_files(const char *needle)
{
    DIR *d = opendir(g_dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, needle))
            n++;
    if (d)
        closedir(d);
    return n;
}

static void opts_small(pv_render_opts_t *o)
{
    pv_render_opts_default(o);
    o->video.seconds_per_photo = 1.0;
    o->video.transition_seconds = 0.25;
    o->video.fps = 24;
    /* width/height stay at the defaults' 1920x1080: pv_render must take the
     * size from resolution + aspect (render_basic checks 854x480) */
    snprintf(o->video.resolution, sizeof(o->video.resolution), "480p");
    snprintf(o->x264_preset, sizeof(o->x264_preset), "ultrafast");
}

static json_t *probe(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "ffprobe -v error -show_streams -show_format -of json '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    json_t *j = json_loadf(p, 0, NULL);
    pclose(p);
    return j;
}

static json_t *stream0(json_t *pr, const char *key)
{
    return json_object_get(json_array_get(json_object_get(pr, "streams"), 0), key);
}

static const char *stream_str(json_t *pr, const char *key)
{
    return json_string_value(stream0(pr, key));
}

static long long stream_int(json_t *pr, const char *key)
{
    return json_integer_value(stream0(pr, key));
}

static double format_duration(json_t *pr)
{
    const char *d = json_string_value(json_object_get(json_object_get(pr, "format"), "duration"));
    return d ? atof(d) : -1;
}

static long long frame_count(const char *path)
{
    json_t *pr = probe(path);
    const char *nb = stream_str(pr, "nb_frames");
    long long n = nb ? atoll(nb) : -1;
    json_decref(pr);
    return n;
}

/* Mean RGB of the w x h region at (x, y) of the frame shown at time t
 * (t < 0: a still image). */
static bool region_at(const char *path, double t, int x, int y, int w, int h, int rgb[3])
{
    char cmd[512], ss[32] = "";
    unsigned char px[3 * 256];
    if (t >= 0)
        snprintf(ss, sizeof(ss), "-ss %.4f", t);
    snprintf(cmd, sizeof(cmd),
             "ffmpeg -v error %s -i '%s' -frames:v 1 -vf format=rgb24,crop=%d:%d:%d:%d "
             "-f rawvideo -pix_fmt rgb24 - 2>/dev/null",
             ss, path, w, h, x, y);
    size_t n = (size_t)(w * h), got = 0;
    FILE *p = n <= 256 ? popen(cmd, "r") : NULL;
    if (p) {
        got = fread(px, 3, n, p);
        pclose(p);
    }
    for (int c = 0; c < 3; c++) {
        long sum = 0;
        for (size_t i = 0; i < got; i++)
            sum += px[3 * i + (size_t)c];
        rgb[c] = got ? (int)(sum / (long)got) : -1;
    }
    return got == n;
}

static bool pixel_at(const char *path, double t, int x, int y, int rgb[3])
{
    return region_at(path, t, x, y, 1, 1, rgb);
}

static bool near(const int rgb[3], int r, int g, int b, int tol)
{
    return abs(rgb[0] - r) <= tol && abs(rgb[1] - g) <= tol && abs(rgb[2] - b) <= tol;
}

#define CHECK_PIXEL(path, t, x, y, r, g, b, tol)                                              \
    do {                                                                                    \
        int px_[3] = {-1, -1, -1};                                                          \
        CHECK(pixel_at(path, t, x, y, px_));                                                \
        if (!near(px_, r, g, b, tol)) {                                                     \
            printf("#   pixel (%d,%d) at %.3f s is %d,%d,%d; want %d,%d,%d\n", x, y,        \
                   (double)(t), px_[0], px_[1], px_[2], r, g, b);                           \
            t_cur_failed = 1;                                                               \
        }                                                                                   \
    } while (0)

/* Top-level MP4 box types in order, as a string "ftyp moov mdat ...". */
static void atom_order(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "rb");
    out[0] = '\0';
    unsigned char h[16];
    size_t used = 0;
    while (f && fread(h, 1, 8, f) == 8 && used + 6 < len) {
        uint64_t size = (uint64_t)h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3];
        long hdr = 8;
        if (size == 1 && fread(h + 8, 1, 8, f) == 8) {
            size = 0;
            for (int i = 8; i < 16; i++)
                size = size << 8 | h[i];
            hdr = 16;
        }
        used += (size_t)snprintf(out + used, len - used, "%s%.4s", used ? " " : "", h + 4);
        if (size < (uint64_t)hdr || fseek(f, (long)(size - (uint64_t)hdr), SEEK_CUR) != 0)
            break;
    }
    if (f)
        fclose(f);
}

static int render3(const pv_render_opts_t *o, const char *out, const char *poster, char *err,
                   size_t errlen)
{
    const char *photos[] = {g_red, g_green, g_blue};
    return pv_render(photos, 3, o, out, poster, NULL, NULL, err, errlen);
}

/* ---- options ---- */

TEST(opts_default)
{
    pv_render_opts_t o;
    pv_render_opts_default(&o);
    CHECK(o.video.seconds_per_photo == 3.0);
    CHECK_EQ_STR(o.video.transition, "fade");
    CHECK(o.video.transition_seconds == 0.5);
    CHECK_EQ_STR(o.video.resolution, "1080p");
    CHECK_EQ_STR(o.video.aspect, "16:9");
    CHECK_EQ_INT(o.video.fps, 30);
    CHECK(!o.video.ken_burns);
    CHECK_EQ_STR(o.title, "");
    CHECK_EQ_INT(o.width, 1920);
    CHECK_EQ_INT(o.height, 1080);
    CHECK_EQ_STR(o.x264_preset, "veryfast");
    CHECK_EQ_INT(o.crf, 23);
}

typedef struct opt_case {
    const char *json;
    bool encoder;            /* allow_encoder_opts */
    const char *field;       /* NULL: valid */
} opt_case_t;

static const opt_case_t g_opt_cases[] = {
    {"{}", false, NULL},
    {"{\"seconds_per_photo\":5,\"transition\":\"dissolve\",\"transition_seconds\":2.5,"
     "\"resolution\":\"720p\",\"aspect\":\"9:16\",\"fps\":60,\"ken_burns\":true,"
     "\"title\":\"Hi\"}",
     false, NULL},
    {"{\"seconds_per_photo\":0.5,\"transition\":\"none\"}", false, NULL},
    {"{\"seconds_per_photo\":60,\"transition_seconds\":5}", false, NULL},
    {"{\"seconds_per_photo\":1,\"transition_seconds\":0}", false, NULL},
    {"{\"fps\":30.0}", false, NULL},
    {"{\"title\":null}", false, NULL},
    {"{\"photo_ids\":[\"a\"],\"audio_id\":null}", false, NULL},
    {"{\"x264_preset\":\"nonsense\",\"crf\":99}", false, NULL}, /* ignored: not allowed */
    {"{\"x264_preset\":\"medium\",\"crf\":0,\"seed\":7,\"threads\":2}", true, NULL},
    {"{\"seconds_per_photo\":0.4}", false, "seconds_per_photo"},
    {"{\"seconds_per_photo\":60.5}", false, "seconds_per_photo"},
    {"{\"seconds_per_photo\":\"3\"}", false, "seconds_per_photo"},
    {"{\"seconds_per_photo\":null}", false, "seconds_per_photo"},
    {"{\"seconds_per_photo\":0.5}", false, "seconds_per_photo"}, /* default 0.5 s fade */
    {"{\"transition\":\"spin\"}", false, "transition"},
    {"{\"transition\":1}", false, "transition"},
    {"{\"transition\":\"FADE\"}", false, "transition"},
    {"{\"transition_seconds\":-0.1}", false, "transition_seconds"},
    {"{\"transition_seconds\":5.5,\"seconds_per_photo\":20}", false, "transition_seconds"},
    {"{\"transition_seconds\":\"1\"}", false, "transition_seconds"},
    {"{\"seconds_per_photo\":2,\"transition_seconds\":1.5}", false, "transition_seconds"},
    {"{\"resolution\":\"1440p\"}", false, "resolution"},
    {"{\"resolution\":1080}", false, "resolution"},
    {"{\"aspect\":\"21:9\"}", false, "aspect"},
    {"{\"aspect\":null}", false, "aspect"},
    {"{\"fps\":29}", false, "fps"},
    {"{\"fps\":\"30\"}", false, "fps"},
    {"{\"fps\":30.5}", false, "fps"},
    {"{\"fps\":true}", false, "fps"},
    {"{\"ken_burns\":1}", false, "ken_burns"},
    {"{\"ken_burns\":\"yes\"}", false, "ken_burns"},
    {"{\"title\":5}", false, "title"},
    {"{\"title\":[\"a\"]}", false, "title"},
    {"{\"x264_preset\":\"fastest\"}", true, "x264_preset"},
    {"{\"x264_preset\":4}", true, "x264_preset"},
    {"{\"crf\":52}", true, "crf"},
    {"{\"crf\":-1}", true, "crf"},
    {"{\"crf\":23.5}", true, "crf"},
    {"{\"crf\":\"23\"}", true, "crf"},
    {"{\"seed\":-1}", true, "seed"},
    {"{\"threads\":65}", true, "threads"},
};

TEST(opts_table)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_opt_cases); i++) {
        const opt_case_t *c = &g_opt_cases[i];
        json_t *obj = json_loads(c->json, 0, NULL);
        pv_render_opts_t o;
        char field[64] = "x", err[256] = "x";
        pv_render_opts_default(&o);
        int rc = pv_render_opts_from_json(obj, &o, c->encoder, field, sizeof(field), err,
                                          sizeof(err));
        if (c->field) {
            CHECK_EQ_INT(rc, -EINVAL);
            CHECK_EQ_STR(field, c->field);
            CHECK(strstr(err, c->field) != NULL || strcmp(c->field, "seconds_per_photo") == 0);
            if (rc != -EINVAL || strcmp(field, c->field) != 0)
                printf("#   case %zu: %s -> %d field '%s' err '%s'\n", i, c->json, rc, field,
                       err);
        } else {
            CHECK_EQ_INT(rc, 0);
            if (rc != 0)
                printf("#   case %zu: %s -> %d %s: %s\n", i, c->json, rc, field, err);
        }
        json_decref(obj);
    }
}

TEST(opts_values_and_atomicity)
{
    pv_render_opts_t o;
    char field[64], err[256];
    pv_render_opts_default(&o);
    json_t *obj = json_loads("{\"seconds_per_photo\":4.5,\"transition\":\"wipeleft\","
                             "\"transition_seconds\":1,\"aspect\":\"4:3\",\"resolution\":\"720p\","
                             "\"fps\":25,\"ken_burns\":true,\"title\":\"Été\",\"crf\":30,"
                             "\"x264_preset\":\"slow\",\"seed\":42}",
                             0, NULL);
    CHECK_EQ_INT(pv_render_opts_from_json(obj, &o, true, field, sizeof(field), err,
                                          sizeof(err)),
                 0);
    json_decref(obj);
    CHECK(o.video.seconds_per_photo == 4.5);
    CHECK_EQ_STR(o.video.transition, "wipeleft");
    CHECK(o.video.transition_seconds == 1.0);
    CHECK_EQ_INT(o.width, 960);
    CHECK_EQ_INT(o.height, 720);
    CHECK_EQ_INT(o.video.fps, 25);
    CHECK(o.video.ken_burns);
    CHECK_EQ_STR(o.title, "Été");
    CHECK_EQ_INT(o.crf, 30);
    CHECK_EQ_STR(o.x264_preset, "slow");
    CHECK_EQ_INT(o.seed, 42);

    /* a later bad field leaves everything as it was */
    pv_render_opts_t before = o;
    obj = json_loads("{\"seconds_per_photo\":9,\"fps\":7}", 0, NULL);
    CHECK_EQ_INT(pv_render_opts_from_json(obj, &o, false, field, sizeof(field), err,
                                          sizeof(err)),
                 -EINVAL);
    CHECK_EQ_STR(field, "fps");
    CHECK(memcmp(&before, &o, sizeof(o)) == 0);
    json_decref(obj);

    /* a title of 200 bytes fits; 201 does not; not an object */
    char big[260];
    memset(big, 'a', 201);
    big[201] = '\0';
    json_t *t = json_pack("{s:s}", "title", big);
    CHECK_EQ_INT(pv_render_opts_from_json(t, &o, false, field, sizeof(field), err, sizeof(err)),
                 -EINVAL);
    CHECK_EQ_STR(field, "title");
    json_decref(t);
    big[200] = '\0';
    t = json_pack("{s:s}", "title", big);
    CHECK_EQ_INT(pv_render_opts_from_json(t, &o, false, field, sizeof(field), err, sizeof(err)),
                 0);
    CHECK_EQ_INT(strlen(o.title), 200);
    json_decref(t);
    json_t *arr = json_array();
    CHECK_EQ_INT(pv_render_opts_from_json(arr, &o, false, field, sizeof(field), err, sizeof(err)),
                 -EINVAL);
    json_decref(arr);
}

TEST(opts_sizes)
{
    static const struct {
        const char *res, *aspect;
        int w, h;
    } cases[] = {
        {"480p", "16:9", 854, 480},    {"480p", "9:16", 480, 854},   {"480p", "1:1", 480, 480},
        {"480p", "4:3", 640, 480},     {"720p", "16:9", 1280, 720},  {"720p", "9:16", 720, 1280},
        {"720p", "1:1", 720, 720},     {"720p", "4:3", 960, 720},    {"1080p", "16:9", 1920, 1080},
        {"1080p", "9:16", 1080, 1920}, {"1080p", "1:1", 1080, 1080}, {"1080p", "4:3", 1440, 1080},
        {"2160p", "16:9", 3840, 2160}, {"2160p", "9:16", 2160, 3840}, {"2160p", "1:1", 2160, 2160},
        {"2160p", "4:3", 2880, 2160},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
        pv_render_opts_t o;
        char field[64], err[256];
        pv_render_opts_default(&o);
        json_t *obj = json_pack("{s:s,s:s}", "resolution", cases[i].res, "aspect", cases[i].aspect);
        CHECK_EQ_INT(pv_render_opts_from_json(obj, &o, false, field, sizeof(field), err,
                                              sizeof(err)),
                     0);
        CHECK_EQ_INT(o.width, cases[i].w);
        CHECK_EQ_INT(o.height, cases[i].h);
        CHECK(o.width % 2 == 0 && o.height % 2 == 0);
        json_decref(obj);
    }
}

TEST(duration_formula)
{
    pv_render_opts_t o;
    pv_render_opts_default(&o);
    CHECK(fabs(pv_render_duration(&o.video, 10) - 25.5) < 1e-9);
    CHECK(fabs(pv_render_duration(&o.video, 1) - 3.0) < 1e-9);
    CHECK(pv_render_duration(&o.video, 0) == 0.0);
    snprintf(o.video.transition, sizeof(o.video.transition), "none");
    CHECK(fabs(pv_render_duration(&o.video, 10) - 30.0) < 1e-9); /* "none": no overlap */
    snprintf(o.video.transition, sizeof(o.video.transition), "dissolve");
    o.video.seconds_per_photo = 2.5;
    o.video.transition_seconds = 1.25;
    CHECK(fabs(pv_render_duration(&o.video, 200) - (500.0 - 199 * 1.25)) < 1e-9);
}

/* ---- rendering ---- */

TEST(render_basic)
{
    pv_render_opts_t o;
    char out[128], poster[128], err[256] = "";
    opts_small(&o);
    path_in(out, sizeof(out), "basic.mp4");
    path_in(poster, sizeof(poster), "basic.jpg");
    CHECK_EQ_INT(render3(&o, out, poster, err, sizeof(err)), 0);
    if (err[0])
        printf("#   %s\n", err);

    json_t *pr = probe(out);
    CHECK(pr != NULL);
    CHECK_EQ_STR(stream_str(pr, "codec_name"), "h264");
    CHECK_EQ_STR(stream_str(pr, "pix_fmt"), "yuv420p");
    CHECK_EQ_INT(stream_int(pr, "width"), 854);
    CHECK_EQ_INT(stream_int(pr, "height"), 480);
    double want = 3 * 1.0 - 2 * 0.25; /* 2.5 s, 60 frames */
    CHECK(fabs(format_duration(pr) - want) <= 1.0 / 24 + 1e-6);
    const char *nb = stream_str(pr, "nb_frames");
    CHECK(nb && llabs(atoll(nb) - 60) <= 1);
    json_decref(pr);

    char atoms[128];
    atom_order(out, atoms, sizeof(atoms));
    CHECK(strstr(atoms, "moov") && strstr(atoms, "mdat") &&
          strstr(atoms, "moov") < strstr(atoms, "mdat"));

    /* clip k spans [0.75 k, 0.75 k + 1); the middle of each shows its photo,
     * letterboxed: a 4:3 photo in 854x480 is 640 wide, bars of 107 */
    CHECK_PIXEL(out, 0.5, 427, 240, 255, 0, 0, 40);
    CHECK_PIXEL(out, 1.25, 427, 240, 0, 255, 0, 40);
    CHECK_PIXEL(out, 2.2, 427, 240, 0, 0, 255, 40);
    CHECK_PIXEL(out, 0.5, 20, 240, 0, 0, 0, 24);
    CHECK_PIXEL(out, 1.25, 840, 100, 0, 0, 0, 24);
    int mid[3];
    CHECK(pixel_at(out, 0.75 + 0.125, 427, 240, mid)); /* half way through the fade */
    CHECK(mid[0] > 70 && mid[0] < 190 && mid[1] > 70 && mid[1] < 190 && mid[2] < 40);

    FILE *f = fopen(poster, "rb");
    unsigned char magic[3] = {0};
    CHECK(f && fread(magic, 1, 3, f) == 3);
    CHECK(magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF);
    if (f)
        fclose(f);
    CHECK_PIXEL(poster, -1, 427, 240, 255, 0, 0, 40); /* middle of the first clip */
    CHECK_EQ_INT(count_files(".tmp-"), 0);
}

/* EXIF orientation 6 (display rotated 90 degrees clockwise): a stored
 * 320x240 photo, red left half and blue right half, shows as 240x320 with
 * red on top; fitted into 854x480 it is 360x480 between wide bars. */
TEST(render_exif_orientation)
{
    char photo[128], out[128], err[256] = "";
    path_in(photo, sizeof(photo), "oriented.jpg");
    int rc = sh("ffmpeg -v error -y -f lavfi -i color=c=red:s=320x240 -vf "
                "drawbox=x=160:y=0:w=160:h=240:color=blue:t=fill -frames:v 1 %s && "
                "exiftool -q -overwrite_original -n -Orientation=6 %s",
                photo, photo);
    CHECK_EQ_INT(rc, 0);
    pv_render_opts_t o;
    opts_small(&o);
    path_in(out, sizeof(out), "oriented.mp4");
    const char *photos[] = {photo};
    CHECK_EQ_INT(pv_render(photos, 1, &o, out, NULL, NULL, NULL, err, sizeof(err)), 0);
    CHECK_PIXEL(out, 0.5, 427, 100, 255, 0, 0, 40);
    CHECK_PIXEL(out, 0.5, 427, 380, 0, 0, 255, 40);
    CHECK_PIXEL(out, 0.5, 200, 240, 0, 0, 0, 24);
    CHECK_PIXEL(out, 0.5, 660, 240, 0, 0, 0, 24);
}

TEST(render_wipeleft_direction)
{
    pv_render_opts_t o;
    char out[128], err[256] = "";
    opts_small(&o);
    snprintf(o.video.transition, sizeof(o.video.transition), "wipeleft");
    path_in(out, sizeof(out), "wipe.mp4");
    CHECK_EQ_INT(render3(&o, out, NULL, err, sizeof(err)), 0);
    /* half way: the old photo on the left, the new one uncovered on the right */
    CHECK_PIXEL(out, 0.75 + 0.125, 200, 240, 255, 0, 0, 40);
    CHECK_PIXEL(out, 0.75 + 0.125, 650, 240, 0, 255, 0, 40);
}

TEST(render_every_transition)
{
    static const char *const names[] = {"none",      "fade",       "fadeblack", "wipeleft",
                                        "wiperight", "slideleft",  "slideright", "dissolve"};
    for (size_t i = 0; i < PV_ARRAY_LEN(names); i++) {
        pv_render_opts_t o;
        char out[128], err[256] = "";
        opts_small(&o);
        o.video.seconds_per_photo = 0.5;
        snprintf(o.video.transition, sizeof(o.video.transition), "%s", names[i]);
        snprintf(out, sizeof(out), "%s/tr_%s.mp4", g_dir, names[i]);
        const char *photos[] = {g_red, g_green};
        int rc = pv_render(photos, 2, &o, out, NULL, NULL, NULL, err, sizeof(err));
        CHECK_EQ_INT(rc, 0);
        long long want = strcmp(names[i], "none") == 0 ? 24 : 18; /* 1.0 s or 0.75 s */
        long long got = frame_count(out);
        if (llabs(got - want) > 0) {
            printf("#   %s: %lld frames, want %lld (%s)\n", names[i], got, want, err);
            t_cur_failed = 1;
        }
        unlink(out);
    }
}

TEST(render_ken_burns_title_deterministic)
{
    pv_render_opts_t o;
    char a[128], b[128], err[256] = "";
    opts_small(&o);
    o.video.ken_burns = true;
    o.seed = 1234;
    snprintf(o.video.aspect, sizeof(o.video.aspect), "9:16");
    snprintf(o.title, sizeof(o.title), "Été à Paris — a long title that has to wrap over "
                                       "several lines because it does not fit in one");
    path_in(a, sizeof(a), "kb_a.mp4");
    path_in(b, sizeof(b), "kb_b.mp4");
    CHECK_EQ_INT(render3(&o, a, NULL, err, sizeof(err)), 0);
    CHECK_EQ_INT(render3(&o, b, NULL, err, sizeof(err)), 0);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "test \"$(ffmpeg -v error -i %s -f md5 -)\" = \"$(ffmpeg -v error -i %s -f md5 -)\"",
             a, b);
    CHECK_EQ_INT(system(cmd), 0);
    json_t *pr = probe(a);
    CHECK_EQ_INT(stream_int(pr, "width"), 480);
    CHECK_EQ_INT(stream_int(pr, "height"), 854);
    json_decref(pr);
    /* Ken Burns fills the frame: no black bars */
    CHECK_PIXEL(a, 1.25, 4, 427, 0, 255, 0, 40);
    /* the title band darkens the lower part of the first clip only */
    int band[3], clear[3];
    CHECK(region_at(a, 0.3, 200, 683, 80, 1, band));
    CHECK(region_at(a, 0.3, 200, 200, 80, 1, clear));
    CHECK(band[0] < 200 && clear[0] > 220);
    if (!(band[0] < 200 && clear[0] > 220))
        printf("#   title band red %d, above it %d\n", band[0], clear[0]);
    CHECK_PIXEL(a, 2.2, 240, 683, 0, 0, 255, 40);
}

/* pvd shares a render thread between jobs: two renders, interleaved a
 * photo's worth of frames at a time, give the same frames as each in one
 * go; one freed half way leaves neither its output nor its temp files. */
TEST(render_steps_interleaved)
{
    pv_render_opts_t o;
    char one[128], a[128], b[128], c[128], err_a[256] = "", err_b[256] = "", err_c[256] = "";
    opts_small(&o);
    o.video.ken_burns = true;
    o.seed = 77;
    const char *photos[] = {g_red, g_green, g_blue};
    path_in(one, sizeof(one), "step_one.mp4");
    path_in(a, sizeof(a), "step_a.mp4");
    path_in(b, sizeof(b), "step_b.mp4");
    path_in(c, sizeof(c), "step_c.mp4");
    CHECK_EQ_INT(pv_render(photos, 3, &o, one, NULL, NULL, NULL, err_a, sizeof(err_a)), 0);
    pv_render_t *ra = NULL, *rb = NULL, *rc_ = NULL;
    CHECK_EQ_INT(pv_render_begin(&ra, photos, 3, &o, a, NULL, NULL, NULL, err_a, sizeof(err_a)), 0);
    CHECK_EQ_INT(pv_render_begin(&rb, photos, 3, &o, b, NULL, NULL, NULL, err_b, sizeof(err_b)), 0);
    CHECK_EQ_INT(pv_render_begin(&rc_, photos, 3, &o, c, NULL, NULL, NULL, err_c, sizeof(err_c)), 0);
    if (!ra || !rb || !rc_) {
        pv_render_free(ra);
        pv_render_free(rb);
        pv_render_free(rc_);
        return;
    }
    int64_t per = pv_render_photo_frames(ra);
    /* 1 s a photo, 0.25 s transitions at 24 fps: 18 frames a step */
    CHECK_EQ_INT((int)per, (int)llround((o.video.seconds_per_photo - o.video.transition_seconds) *
                                        o.video.fps));
    int sa = 1, sb = 1, steps = 0;
    while ((sa == 1 || sb == 1) && steps < 100) {
        if (sa == 1)
            sa = pv_render_step(ra, per);
        if (sb == 1)
            sb = pv_render_step(rb, 7); /* any size of step */
        if (steps == 0)
            CHECK_EQ_INT(pv_render_step(rc_, per), 1);
        steps++;
    }
    CHECK_EQ_INT(sa, 0);
    CHECK_EQ_INT(sb, 0);
    CHECK(steps > 3); /* it did run in steps */
    pv_render_free(ra);
    pv_render_free(rb);
    pv_render_free(rc_); /* abandoned half way */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "m=\"$(ffmpeg -v error -i %s -f md5 -)\" && test \"$m\" = \"$(ffmpeg -v error -i %s -f md5 -)\""
             " && test \"$m\" = \"$(ffmpeg -v error -i %s -f md5 -)\"",
             one, a, b);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK(access(c, F_OK) != 0);
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -a %s | grep step_c)\"", g_dir);
    CHECK_EQ_INT(system(cmd), 0);
}

typedef struct prog {
    int64_t last, total, calls;
    int64_t cancel_at;       /* return nonzero once done reaches it; 0: never */
    int64_t cancelled_us;    /* when it asked to cancel */
    bool monotonic;
} prog_t;

static int on_progress(void *arg, int64_t done, int64_t total)
{
    prog_t *p = arg;
    if (done < p->last)
        p->monotonic = false;
    p->last = done;
    p->total = total;
    p->calls++;
    if (p->cancel_at && done >= p->cancel_at) {
        p->cancelled_us = pv_mono_us();
        return 1;
    }
    return 0;
}

TEST(render_progress_and_cancel)
{
    pv_render_opts_t o;
    char out[128], poster[128], err[256] = "";
    opts_small(&o);
    path_in(out, sizeof(out), "prog.mp4");
    path_in(poster, sizeof(poster), "prog.jpg");
    const char *photos[] = {g_red, g_green, g_blue};
    prog_t p = {.monotonic = true};
    CHECK_EQ_INT(pv_render(photos, 3, &o, out, NULL, on_progress, &p, err, sizeof(err)), 0);
    CHECK(p.monotonic);
    CHECK_EQ_INT(p.total, 60);
    CHECK_EQ_INT(p.last, 60);
    CHECK(p.calls >= 2);
    unlink(out);

    prog_t c = {.monotonic = true, .cancel_at = 5};
    CHECK_EQ_INT(pv_render(photos, 3, &o, out, poster, on_progress, &c, err, sizeof(err)),
                 -ECANCELED);
    CHECK(c.last >= 5 && c.last < 60);
    CHECK(pv_mono_us() - c.cancelled_us < 1000000); /* returns within a second */
    CHECK(!exists(out));
    CHECK(!exists(poster));
    CHECK_EQ_INT(count_files(".tmp-"), 0);
}

TEST(render_bad_photos)
{
    pv_render_opts_t o;
    char out[128], err[256] = "";
    opts_small(&o);
    path_in(out, sizeof(out), "bad.mp4");
    const char *corrupt[] = {g_red, g_corrupt, g_blue};
    CHECK_EQ_INT(pv_render(corrupt, 3, &o, out, NULL, NULL, NULL, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, g_corrupt) != NULL);
    CHECK(!exists(out));
    const char *missing[] = {g_red, g_missing};
    CHECK_EQ_INT(pv_render(missing, 2, &o, out, NULL, NULL, NULL, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, g_missing) != NULL);
    char notimg[128];
    path_in(notimg, sizeof(notimg), "notimage.jpg");
    CHECK_EQ_INT(sh("echo 'hello' > %s", notimg), 0);
    const char *text[] = {notimg};
    CHECK_EQ_INT(pv_render(text, 1, &o, out, NULL, NULL, NULL, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, notimg) != NULL);
    CHECK_EQ_INT(pv_render(text, 0, &o, out, NULL, NULL, NULL, err, sizeof(err)), -EINVAL);
    CHECK(!exists(out));
    CHECK_EQ_INT(count_files(".tmp-"), 0);
}

/* Each failure seam gives its documented result and leaves nothing. */
TEST(render_failures)
{
    static const struct {
        const char *spec;
        int rc;
    } cases[] = {
        {"render_write:1+", -ENOSPC},  {"render_write:40", -ENOSPC},
        {"render_encoder:1", -EIO},    {"render_mux:1", -EIO},
        {"render_rename:1", -EIO},     {"render_rename:2", -EIO},
        {"render_io:1", -EIO},         {"render_io:2", -EIO},
        {"render_sws:1+", -EIO},       /* 320x240 photos must be scaled up */
    };
    pv_render_opts_t o;
    char out[128], poster[128], err[256];
    opts_small(&o);
    path_in(out, sizeof(out), "fail.mp4");
    path_in(poster, sizeof(poster), "fail.jpg");
    for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
        err[0] = '\0';
        pv_fail_reset(cases[i].spec);
        int rc = render3(&o, out, poster, err, sizeof(err));
        pv_fail_reset("");
        if (rc != cases[i].rc) {
            printf("#   %s: rc %d (%s), want %d\n", cases[i].spec, rc, err, cases[i].rc);
            t_cur_failed = 1;
        }
        if (rc < 0) {
            CHECK(err[0] != '\0');
            CHECK(!exists(out));
            CHECK(!exists(poster));
        }
        unlink(out);
        unlink(poster);
        CHECK_EQ_INT(count_files(".tmp-"), 0);
    }
}

/* The calls worth failing in a run of render_walk_once: for each call site,
 * its first and its last call. A render makes most of its calls per frame
 * or per packet (a hundred-odd in all); failing every one of them takes
 * the same paths in the same states over and over, at half a second a
 * render under ASan, so the walk takes the first and last of each site:
 * every site fails at least once, at the start and at the end of its
 * stream. A dry run with nothing armed finds them. */
static int walk_points(long *out, int max)
{
    pv_fail_site_t sites[256];
    size_t n = pv_fail_sites(sites, PV_ARRAY_LEN(sites));
    int k = 0;
    for (size_t i = 0; i < n && i < PV_ARRAY_LEN(sites); i++) {
        long pts[2] = {sites[i].first, sites[i].last};
        for (int j = 0; j < 2; j++) {
            bool have = pts[j] == 0;
            for (int m = 0; m < k && !have; m++)
                have = out[m] == pts[j];
            if (!have && k < max)
                out[k++] = pts[j];
        }
    }
    for (int i = 1; i < k; i++) /* ascending: the walk's order */
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            long t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return k;
}

/* SQLite-style: "*:N" fails the Nth pv_fail call of any site (allocation,
 * threads, scaler, encoder, muxer, file I/O, rename, photo decoding).
 * Every step ends in success or a clean error with a reason and no file
 * left behind: -ENOMEM, -EIO, -ENOSPC, or -EINVAL when a photo could not
 * be decoded (render.h). The render is small but takes every path: two
 * photos, a title, Ken Burns, a transition and a poster. */
TEST(render_walk)
{
    pv_render_opts_t o;
    char out[128], poster[128], err[256], spec[64], fired[4096] = "";
    opts_small(&o);
    o.video.seconds_per_photo = 0.5;
    o.video.ken_burns = true;
    snprintf(o.title, sizeof(o.title), "walk");
    path_in(out, sizeof(out), "walk.mp4");
    path_in(poster, sizeof(poster), "walk.jpg");
    const char *photos[] = {g_red, g_green};
    pv_fail_reset("");
    CHECK_EQ_INT(pv_render(photos, 2, &o, out, poster, NULL, NULL, err, sizeof(err)), 0);
    long calls = pv_fail_count().calls, points[256];
    int np = walk_points(points, (int)PV_ARRAY_LEN(points)), steps = 0;
    unlink(out);
    unlink(poster);
    for (int i = 0; i < np; i++, steps++) {
        snprintf(spec, sizeof(spec), "*:%ld", points[i]);
        pv_fail_reset(spec);
        err[0] = '\0';
        int rc = pv_render(photos, 2, &o, out, poster, NULL, NULL, err, sizeof(err));
        pv_fail_count_t c = pv_fail_count();
        pv_fail_reset("");
        if (c.fired == 0) { /* threads ran in another order: fewer calls this time */
            CHECK_EQ_INT(rc, 0);
            unlink(out);
            unlink(poster);
            continue;
        }
        const char *sp = strchr(c.last, ' '), *line = strrchr(c.last, ':');
        size_t used = strlen(fired);
        snprintf(fired + used, sizeof(fired) - used, " %.*s%s", (int)(sp ? sp - c.last : 0),
                 c.last, line ? line : "");
        bool photo = strncmp(c.last, "image_", 6) == 0;
        if (rc == 0) { /* absorbed (no loader thread: decoded inline): a whole video */
            CHECK(exists(out) && exists(poster));
        } else {
            if ((rc != -ENOMEM && rc != -EIO && rc != -ENOSPC && !(photo && rc == -EINVAL)) ||
                !err[0]) {
                printf("#   %s (%s): rc %d (%s)\n", spec, c.last, rc, err);
                t_cur_failed = 1;
            }
            CHECK(!exists(out));
            CHECK(!exists(poster));
        }
        unlink(out);
        unlink(poster);
        CHECK_EQ_INT(count_files(".tmp-"), 0);
    }
    printf("# walk render: %ld calls, %d steps (the first and last of each site);%s\n", calls,
           steps, fired);
    CHECK(steps > 10);
}

/* A frame the encoder still holds is not written over: writable() gives
 * the scratch a fresh buffer (the one allocation of a render that libx264
 * never makes happen, as it lets go of each frame at once), and a failure
 * there is a clean -ENOMEM with a reason. */
TEST(held_frame_gets_a_new_buffer)
{
    char err[128] = "";
    job_t j = {.err = err, .errlen = sizeof(err)};
    AVFrame *f = pv_rfx_picture_new(64, 48), *held = av_frame_alloc();
    CHECK(f && held);
    if (!f || !held)
        return;
    CHECK_EQ_INT(writable(&j, f), 0); /* sole owner: nothing to do */
    CHECK_EQ_INT(av_frame_ref(held, f), 0);
    uint8_t *old = f->data[0];
    old[0] = 7;
    pv_fail_reset("render_alloc:1");
    CHECK_EQ_INT(writable(&j, f), -ENOMEM);
    pv_fail_reset("");
    CHECK(strstr(err, "out of memory") != NULL);
    CHECK_EQ_INT(writable(&j, f), 0);
    CHECK(av_frame_is_writable(f) && f->data[0] != old && f->width == 64 && f->height == 48);
    CHECK_EQ_INT(held->data[0][0], 7); /* the held one is untouched */
    av_frame_free(&held);
    av_frame_free(&f);
}

/* ---- setup ---- */

static bool make_photo(char *path, size_t len, const char *name, const char *color)
{
    path_in(path, len, name);
    return sh("ffmpeg -v error -y -f lavfi -i color=c=%s:s=320x240 -frames:v 1 -q:v 2 %s",
              color, path) == 0;
}

int main(void)
{
    av_log_set_level(AV_LOG_ERROR);
    snprintf(g_dir, sizeof(g_dir), "/tmp/pv_test_render.XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    bool ok = make_photo(g_red, sizeof(g_red), "red.jpg", "red") &&
              make_photo(g_green, sizeof(g_green), "green.jpg", "lime") &&
              make_photo(g_blue, sizeof(g_blue), "blue.jpg", "blue");
    path_in(g_corrupt, sizeof(g_corrupt), "corrupt.jpg");
    path_in(g_missing, sizeof(g_missing), "missing.jpg");
    /* a JPEG header, then garbage: sniffs as JPEG, does not decode */
    ok = ok && sh("head -c 200 %s > %s && head -c 3000 /dev/urandom >> %s", g_red, g_corrupt,
                  g_corrupt) == 0;
    if (!ok) {
        printf("# cannot make test photos (is ffmpeg installed?)\n");
        return 1;
    }

    RUN(opts_default);
    RUN(opts_table);
    RUN(opts_values_and_atomicity);
    RUN(opts_sizes);
    RUN(duration_formula);
    RUN(render_basic);
    RUN(render_exif_orientation);
    RUN(render_wipeleft_direction);
    RUN(render_every_transition);
    RUN(render_ken_burns_title_deterministic);
    RUN(render_steps_interleaved);
    RUN(render_progress_and_cancel);
    RUN(render_bad_photos);
    RUN(render_failures);
    RUN(render_walk);
    RUN(held_frame_gets_a_new_buffer);

    if (!getenv("PV_TEST_KEEP"))
        sh("rm -rf %s", g_dir);
    return t_done("render");
}
