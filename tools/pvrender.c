/*
 * pvrender — the render pipeline as a command, without a daemon:
 *
 *   pvrender --spec SPEC.json --out OUT.mp4 [--poster POSTER.jpg]
 *
 * SPEC is {"photos":["a.jpg",...], ...video options as in POST
 * /api/v1/videos}, plus the encoder options x264_preset, crf, seed and
 * threads. Photo paths are relative to the spec file's folder. Progress goes
 * to stderr; OUT appears only when complete (pv_render renames a temp file),
 * so exit 0 <=> OUT is complete. SIGINT/SIGTERM cancel cleanly.
 *
 * Exit: 0 done; 1 the render failed (a photo does not decode, disk full,
 * encoder error); 2 bad usage, spec or option; 130 cancelled.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <libavutil/log.h>

#include "base/pv.h"
#include "media/render.h"

#define EXIT_RENDER 1
#define EXIT_USAGE 2
#define EXIT_CANCELLED 130

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) { g_stop = sig; }

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pvrender --spec SPEC.json --out OUT.mp4 [--poster POSTER.jpg]\n"
            "                [--quiet]\n"
            "Render photos into an H.264 MP4 (moov first) without pvd.\n"
            "SPEC: {\"photos\":[\"a.jpg\",...], \"seconds_per_photo\":3, \"transition\":\"fade\",\n"
            "  \"transition_seconds\":0.5, \"resolution\":\"1080p\", \"aspect\":\"16:9\", \"fps\":30,\n"
            "  \"ken_burns\":false, \"title\":\"\", \"x264_preset\":\"veryfast\", \"crf\":23,\n"
            "  \"seed\":0, \"threads\":0}   (all but photos optional; defaults shown)\n"
            "transition: none fade fadeblack wipeleft wiperight slideleft slideright dissolve\n"
            "resolution: 480p 720p 1080p 2160p; aspect: 16:9 9:16 1:1 4:3; fps: 24 25 30 60\n"
            "Photo paths are relative to SPEC's folder. Exit 0 only when OUT is complete;\n"
            "1 render failed, 2 bad usage/spec/option, 130 cancelled.\n"
            "  --quiet    no progress on stderr\n"
            "  --help, --version\n");
}

/* One line, the reason: "pvrender: MSG [ARG] (see pvrender --help)". */
static int die_usage(const char *msg, const char *arg)
{
    fprintf(stderr, "pvrender: %s%s%s (see pvrender --help)\n", msg, arg ? " " : "",
            arg ? arg : "");
    return EXIT_USAGE;
}

typedef struct progress {
    bool quiet, tty;
    int last_pct;
    int64_t start_us;
} progress_t;

static int on_progress(void *arg, int64_t done, int64_t total)
{
    progress_t *p = arg;
    int pct = total > 0 ? (int)(done * 100 / total) : 100;
    if (!p->quiet && pct != p->last_pct && (p->tty || pct % 5 == 0 || done == total)) {
        double s = (double)(pv_mono_us() - p->start_us) / 1e6;
        fprintf(stderr, "%spvrender: %3d%% (%lld/%lld frames, %.1f s)%s", p->tty ? "\r" : "",
                pct, (long long)done, (long long)total, s, p->tty ? "" : "\n");
        p->last_pct = pct;
    }
    return g_stop != 0;
}

/* photos[i] = spec_dir/path unless path is absolute. */
static int read_photos(json_t *spec, const char *spec_dir, char ***out, int *n)
{
    json_t *arr = json_object_get(spec, "photos");
    if (!json_is_array(arr) || json_array_size(arr) < 1 ||
        json_array_size(arr) > PV_VIDEO_MAX_PHOTOS) {
        fprintf(stderr, "pvrender: spec: \"photos\" must be an array of 1 to %d file names\n",
                PV_VIDEO_MAX_PHOTOS);
        return -EINVAL;
    }
    *n = (int)json_array_size(arr);
    char **photos = calloc((size_t)*n, sizeof(*photos));
    if (!photos)
        return -ENOMEM;
    *out = photos;
    for (int i = 0; i < *n; i++) {
        const char *p = json_string_value(json_array_get(arr, (size_t)i));
        if (!p || !p[0]) {
            fprintf(stderr, "pvrender: spec: photos[%d] must be a non-empty string\n", i);
            return -EINVAL;
        }
        if (p[0] == '/' ? asprintf(&photos[i], "%s", p) < 0
                        : asprintf(&photos[i], "%s/%s", spec_dir, p) < 0) {
            photos[i] = NULL;
            return -ENOMEM;
        }
    }
    return 0;
}

static void warn_unknown_keys(json_t *spec)
{
    static const char *const known[] = {
        "photos", "seconds_per_photo", "transition", "transition_seconds", "resolution",
        "aspect", "fps", "ken_burns", "title", "x264_preset", "crf", "seed", "threads",
        "photo_ids", "audio_id", NULL,
    };
    const char *key;
    json_t *v;
    json_object_foreach(spec, key, v) {
        int i = 0;
        while (known[i] && strcmp(known[i], key) != 0)
            i++;
        if (!known[i])
            fprintf(stderr, "pvrender: warning: spec: unknown key \"%s\" ignored\n", key);
    }
}

typedef struct args {
    const char *spec, *out, *poster;
    bool quiet;
} args_t;

/* 0 to go on; otherwise the exit code (-1: exit 0 after --help/--version). */
static int parse_args(int argc, char **argv, args_t *a)
{
    static const struct option opts[] = {
        {"spec", required_argument, NULL, 's'}, {"out", required_argument, NULL, 'o'},
        {"poster", required_argument, NULL, 'p'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case 's': a->spec = optarg; break;
        case 'o': a->out = optarg; break;
        case 'p': a->poster = optarg; break;
        case 'q': a->quiet = true; break;
        case 'h': usage(stdout); return -1;
        case 'V': printf("pvrender %s\n", PV_VERSION); return -1;
        default:
            return die_usage("unknown or incomplete option",
                             argv[optind - 1] ? argv[optind - 1] : "?");
        }
    }
    if (optind < argc)
        return die_usage("unexpected argument", argv[optind]);
    if (!a->spec)
        return die_usage("missing --spec SPEC.json", NULL);
    if (!a->out)
        return die_usage("missing --out OUT.mp4", NULL);
    return 0;
}

static int render(const args_t *a, json_t *spec, char **photos, int n)
{
    pv_render_opts_t o;
    char field[64], err[512];
    pv_render_opts_default(&o);
    if (pv_render_opts_from_json(spec, &o, true, field, sizeof(field), err, sizeof(err)) < 0) {
        fprintf(stderr, "pvrender: spec: %s\n", err); /* err names the field */
        return EXIT_USAGE;
    }
    progress_t p = {.quiet = a->quiet, .tty = isatty(2), .last_pct = -1,
                    .start_us = pv_mono_us()};
    int rc = pv_render((const char *const *)photos, n, &o, a->out, a->poster, on_progress, &p,
                       err, sizeof(err));
    if (p.tty && !p.quiet)
        fputc('\n', stderr);
    if (rc == -ECANCELED) {
        fprintf(stderr, "pvrender: cancelled; no output written\n");
        return EXIT_CANCELLED;
    }
    if (rc < 0) {
        fprintf(stderr, "pvrender: %s\n", err[0] ? err : strerror(-rc));
        return EXIT_RENDER;
    }
    mode_t mask = umask(0);
    umask(mask);
    chmod(a->out, 0666 & ~mask); /* pv_render's files are private (0600) */
    if (a->poster)
        chmod(a->poster, 0666 & ~mask);
    if (!a->quiet)
        fprintf(stderr, "pvrender: wrote %s (%dx%d, %.2f s, %d photos) in %.1f s\n", a->out,
                o.width, o.height, pv_render_duration(&o.video, n), n,
                (double)(pv_mono_us() - p.start_us) / 1e6);
    return 0;
}

int main(int argc, char **argv)
{
    args_t a = {0};
    int code = parse_args(argc, argv, &a);
    if (code)
        return code < 0 ? 0 : code;
    av_log_set_level(AV_LOG_QUIET); /* our own messages say what failed */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    json_error_t jerr;
    json_t *spec = json_load_file(a.spec, JSON_REJECT_DUPLICATES, &jerr);
    if (!spec) {
        fprintf(stderr, "pvrender: spec %s: %s (line %d)\n", a.spec, jerr.text, jerr.line);
        return EXIT_USAGE;
    }
    char **photos = NULL;
    int n = 0;
    char dirbuf[PATH_MAX];
    snprintf(dirbuf, sizeof(dirbuf), "%s", a.spec);
    if (!json_is_object(spec)) {
        fprintf(stderr, "pvrender: spec %s: must be a JSON object\n", a.spec);
        code = EXIT_USAGE;
    } else if (read_photos(spec, dirname(dirbuf), &photos, &n) < 0) {
        code = EXIT_USAGE;
    } else {
        warn_unknown_keys(spec);
        code = render(&a, spec, photos, n);
    }
    for (int i = 0; photos && i < n; i++)
        free(photos[i]);
    free(photos);
    json_decref(spec);
    return code;
}
