/*
 * pvd.c — the daemon's main: configuration, start-up order, signals and a
 * graceful stop.
 *
 * Start-up: config -> data dir -> keys -> certificate files (self-signed
 * on first start) -> store (opens LMDB, starts the writer, collects
 * orphans) -> workers -> the core loop's actors (auth, admin, videos,
 * sync) -> HTTP servers (the first listens; accepted connections are
 * dealt to all of them) -> the TLS actor, which loads the certificate and
 * hands each server its context -> the core loop and the HTTP loops run
 * -> ready (and READY=1 to systemd, for a Type=notify unit). The main
 * thread then runs its own loop, which owns the signals.
 *
 * Stop (SIGTERM/SIGINT): not ready; each HTTP loop stops accepting and
 * finishes its in-flight requests (up to a grace period); then the loops
 * stop, the workers finish their queue, and the store writer drains and
 * closes. SIGHUP asks the TLS actor to reload the certificate.
 */
#include "actors/admin.h"
#include "actors/api/api.h"
#include "actors/auth.h"
#include "actors/http.h"
#include "actors/pg.h"
#include "actors/ddb.h"
#include "actors/replicate.h"
#include "actors/pull.h"
#include "actors/restore.h"
#include "actors/sync.h"
#include "actors/tls.h"
#include "actors/videos.h"
#include "app/kit.h"
#include "app/metrics.h"
#include "base/notify.h"
#include "base/pv.h"
#include "store/backup.h"

#include <event2/event.h>
#include <libavutil/log.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GRACE_SECONDS 15

static const char g_usage[] =
    "usage: pvd [--config FILE] [--data DIR] [--https ADDR:PORT] [--http ADDR:PORT]\n"
    "           [--admin-socket PATH] [--set KEY=VALUE]... [--check-config]\n"
    "           [--restore FILE]\n"
    "           [--restore-from s3://BUCKET/PREFIX [--at SEQ|TIME] [--pull-blobs]]\n"
    "           [--routes]\n"
    "           [--help] [--version]\n"
    "\n"
    "Runs the pv appliance in the foreground; logs JSON lines to stderr.\n"
    "With no config it serves HTTPS on 127.0.0.1:8443 (self-signed certificate),\n"
    "plain HTTP (health, metrics) on 127.0.0.1:8080, data under ./pv-data.\n"
    "--restore FILE unpacks a `pvctl backup` file into an empty data dir and exits.\n"
    "--restore-from s3://BUCKET/PREFIX rebuilds an empty data dir from pvd's S3\n"
    "replica (the newest snapshot, then the change log; --at a change number or an\n"
    "RFC 3339 time restores that point), and exits. The blobs (photos, videos) are\n"
    "fetched in the background once pvd starts on it, each at once when a request or\n"
    "a render needs it; --pull-blobs fetches every one before it exits.\n"
    "--routes prints the HTTP route table as JSON and exits.\n"
    "Config file keys (also PV_<KEY> in the environment):\n";

typedef struct pvd_args {
    const char *config;       /* --config */
    bool config_given;
    bool check_only;          /* --check-config */
    const char *restore;      /* --restore FILE */
    const char *restore_from; /* --restore-from s3://BUCKET/PREFIX */
    bool pull_blobs;          /* --pull-blobs: every blob before it exits */
    const char *at;           /* --at SEQ|TIME */
} pvd_args_t;

static void usage_keys(FILE *f)
{
    size_t n;
    const pv_config_key_t *k = pv_config_keys(&n);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-26s %s%s%s%s\n", k[i].name, k[i].help, *k[i].def ? " [" : "",
                k[i].def, *k[i].def ? "]" : "");
}

static _Noreturn void die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "pvd: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see pvd --help)\n");
    exit(2);
}

/* `pvd --routes`: the route table as pvd dispatches it, one JSON document
 * (what the OpenAPI test checks the reference against). */
static int print_routes(FILE *f)
{
    static const char *const auth[] = {"none", "bearer", "presigned"};
    static const char *const body[] = {"none", "memory", "file"};
    json_t *rows = json_array();
    for (const pv_http_route_t *r = pv_api_routes; r->method; r++) {
        json_t *lst = json_array();
        if (r->listeners & PV_LISTEN_PUBLIC)
            json_array_append_new(lst, json_string("public"));
        if (r->listeners & PV_LISTEN_PRIVATE)
            json_array_append_new(lst, json_string("private"));
        json_array_append_new(rows, json_pack("{s:s,s:s,s:s,s:s,s:I,s:o,s:s}", "method", r->method,
                                              "path", r->pattern, "auth", auth[r->auth], "body",
                                              body[r->body], "max_body", (json_int_t)r->max_body,
                                              "listeners", lst, "name", r->name));
    }
    json_t *doc = json_pack("{s:o}", "routes", rows);
    int rc = doc && json_dumpf(doc, f, JSON_INDENT(1)) == 0 ? 0 : -EIO;
    json_decref(doc);
    fputc('\n', f);
    return rc;
}

/* Flags are applied after the file and the environment, so parse twice:
 * first for --config, then for the overrides. */
static int load_config(int argc, char **argv, pv_config_t *cfg, pvd_args_t *a)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"data", required_argument, 0, 'd'},
        {"https", required_argument, 0, 's'},  {"http", required_argument, 0, 'p'},
        {"admin-socket", required_argument, 0, 'a'}, {"set", required_argument, 0, 'S'},
        {"check-config", no_argument, 0, 'k'}, {"help", no_argument, 0, 'h'},
        {"restore", required_argument, 0, 'R'}, {"routes", no_argument, 0, 'r'},
        {"restore-from", required_argument, 0, 'F'}, {"at", required_argument, 0, 'A'},
        {"pull-blobs", no_argument, 0, 'P'},
        {"version", no_argument, 0, 'V'},      {0, 0, 0, 0}};
    char err[300];
    a->config = PV_DEFAULT_CONFIG;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': a->config = optarg; a->config_given = true; break;
        case 'k': a->check_only = true; break;
        case 'R': a->restore = optarg; break;
        case 'F': a->restore_from = optarg; break;
        case 'A': a->at = optarg; break;
        case 'P': a->pull_blobs = true; break;
        case 'h':
            fputs(g_usage, stdout);
            usage_keys(stdout);
            exit(0);
        case 'V': printf("pvd %s\n", PV_VERSION); exit(0);
        case 'r': exit(print_routes(stdout) < 0 ? 1 : 0);
        case '?': die_usage("unknown option %s", argv[optind - 1]);
        case ':': die_usage("option %s needs a value", argv[optind - 1]);
        default: break;
        }
    }
    if (optind < argc)
        die_usage("unexpected argument \"%s\"", argv[optind]);
    pv_config_defaults(cfg);
    int rc = pv_config_load_file(cfg, a->config, err, sizeof(err));
    if (rc < 0 && (a->config_given || rc != -ENOENT)) {
        fprintf(stderr, "pvd: %s\n", err);
        return rc;
    }
    if (pv_config_load_env(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "pvd: %s\n", err);
        return -EINVAL;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const char *key = NULL;
        char kv[512];
        switch (c) {
        case 'd': key = "data_dir"; break;
        case 's': key = "https_listen"; break;
        case 'p': key = "http_listen"; break;
        case 'a': key = "admin_socket"; break;
        case 'S': {
            snprintf(kv, sizeof(kv), "%s", optarg);
            char *eq = strchr(kv, '=');
            if (!eq)
                die_usage("--set takes KEY=VALUE, got \"%s\"", optarg);
            *eq = '\0';
            if (pv_config_set(cfg, kv, eq + 1, err, sizeof(err)) < 0) {
                fprintf(stderr, "pvd: --set: %s\n", err);
                return -EINVAL;
            }
            continue;
        }
        default: continue;
        }
        if (pv_config_set(cfg, key, optarg, err, sizeof(err)) < 0) {
            fprintf(stderr, "pvd: %s\n", err);
            return -EINVAL;
        }
    }
    if (pv_config_finish(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "pvd: %s\n", err);
        return -EINVAL;
    }
    return 0;
}

/* ---------------- TLS ---------------- */

static bool under_data_dir(const pv_config_t *c, const char *path)
{
    size_t n = strlen(c->data_dir);
    return strncmp(path, c->data_dir, n) == 0 && path[n] == '/';
}

/* The default certificate lives in the data dir: made on first start.
 * The TLS actor loads it later (pv_tls_start), once the servers exist. */
static int tls_setup(pv_app_t *app)
{
    pv_config_t *c = &app->cfg;
    if (!under_data_dir(c, c->tls_cert) || !under_data_dir(c, c->tls_key))
        return 0;
    char dir[PATH_MAX + 8];
    snprintf(dir, sizeof(dir), "%s/tls", c->data_dir);
    pv_mkdir_p(dir, 0700);
    int rc = pv_tls_ensure_self_signed(c->tls_cert, c->tls_key);
    if (rc < 0)
        pv_error("pvd", "cannot make a self-signed certificate: %s", strerror(-rc));
    return rc;
}

/* ---------------- the main actor: signals and stop ---------------- */

typedef struct main_state {
    pv_app_t *app;
    int drained;               /* HTTP loops done draining */
    struct event *sigterm, *sigint, *sighup, *grace;
} main_state_t;

/* One HTTP loop finished draining; the last one ends the main loop. */
static void drained(pv_msg_t *msg)
{
    main_state_t *ms = msg->ctx;
    if (++ms->drained == ms->app->n_loops)
        pv_loop_stop(ms->app->main_loop);
    pv_msg_free(msg);
}

static void begin_stop(main_state_t *ms, const char *why)
{
    pv_app_t *app = ms->app;
    if (atomic_exchange(&app->stopping, true))
        return;
    pv_info("pvd", "stopping (%s): finishing in-flight requests", why);
    pv_notify("STOPPING=1");
    /* Event streams never finish by themselves: end them first. */
    pv_msg_t *vs = app->videos ? pv_msg_new(sizeof(pv_msg_t), PV_VIDEOS_SHUTDOWN) : NULL;
    if (vs)
        pv_actor_send(app->videos, vs);
    for (int i = 0; i < app->n_loops; i++) {
        pv_msg_t *m = pv_msg_new(sizeof(pv_msg_t), PV_HTTP_SHUTDOWN);
        if (m) { /* answered once that loop has drained */
            m->ctx = ms;
            pv_msg_expect(m, app->main_actor, drained);
            pv_actor_send(app->loops[i].actor, m);
        }
    }
    struct timeval tv = {GRACE_SECONDS, 0};
    event_add(ms->grace, &tv);
}

/* The TLS actor answered a SIGHUP's reload. */
static void tls_reloaded(pv_msg_t *msg)
{
    pv_tls_reload_t *m = (pv_tls_reload_t *)msg;
    if (msg->status < 0)
        pv_warn("pvd", "SIGHUP: certificate reload failed (%s); the old one stays in use", m->err);
    else
        pv_info("pvd", "SIGHUP: certificate reloaded");
    pv_msg_free(msg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    main_state_t *ms = arg;
    if (sig == SIGHUP) {
        pv_tls_reload_t *m = pv_msg_new(sizeof(*m), PV_TLS_RELOAD);
        if (!m) {
            pv_warn("pvd", "SIGHUP: out of memory; the certificate was not reloaded");
            return;
        }
        pv_msg_expect(&m->msg, ms->app->main_actor, tls_reloaded);
        pv_actor_send(ms->app->tls, &m->msg);
        return;
    }
    begin_stop(ms, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    main_state_t *ms = arg;
    pv_warn("pvd", "grace period over; closing remaining connections");
    pv_loop_stop(ms->app->main_loop);
}

/* ---------------- start and stop ---------------- */

/* Every failed step of the start says what it was, once, here (the ones
 * whose callee gives more context say so themselves). */
static int start_failed(const char *what, int rc)
{
    pv_error("pvd", "cannot start %s: %s", what, strerror(-rc));
    return rc;
}

/* An HTTP loop and its server, not started yet. */
static int make_http_loop(pv_app_t *app, pv_http_loop_t *hl, int i)
{
    char name[16];
    snprintf(name, sizeof(name), "http%d", i);
    hl->app = app;
    hl->index = i;
    hl->loop = pv_loop_new(name);
    if (!hl->loop)
        return -ENOMEM;
    hl->actor = pv_http_actor_new(hl);
    pv_http_config_t hc = {
        .routes = pv_api_routes,
        .headers = pv_api_headers,
        .authorize = pv_api_authorize,
        .app = hl,
        .tmp_dir = pv_store_tmp_dir(app->store),
        .io = app->io,
        .max_header_bytes = 16384,
        .max_memory_body = app->cfg.max_json_bytes,
        .max_file_body = app->cfg.max_upload_bytes,
        .idle_timeout_s = app->cfg.idle_timeout,
        .read_timeout_s = app->cfg.read_timeout,
        .write_timeout_s = app->cfg.write_timeout,
        .header_timeout_s = app->cfg.header_timeout,
        .body_timeout_s = app->cfg.body_timeout,
        .body_min_rate = app->cfg.body_min_rate,
        .max_connections = app->cfg.max_connections,
        .max_connections_per_ip = app->cfg.max_connections_per_ip,
        .max_private_connections = app->cfg.max_private_connections,
        .ip_cap_exempt = app->cfg.trusted_proxies, /* a proxy carries many clients */
        .on_done = pv_api_on_done,
    };
    hl->server = pv_http_server_new(hl->loop, &hc);
    return hl->actor && hl->server ? 0 : -ENOMEM;
}

/* All loops share accepts (dealt round-robin); the first one listens. A
 * port already taken fails here rather than being shared with another
 * process (no SO_REUSEPORT). Made, not started: from here on app->loops
 * and app->n_loops do not change, so actors on the core loop (started
 * next) may send to the loops' actors. */
static int make_http_loops(pv_app_t *app)
{
    int n = app->cfg.loops, rc;
    app->loops = calloc((size_t)n, sizeof(pv_http_loop_t));
    app->servers = calloc((size_t)n, sizeof(pv_http_server_t *));
    if (!app->loops || !app->servers)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        app->n_loops = i + 1;
        if ((rc = make_http_loop(app, &app->loops[i], i)) < 0)
            return start_failed("an HTTP loop", rc);
        app->servers[i] = app->loops[i].server;
    }
    if (n > 1)
        pv_http_server_group(app->servers, n);
    pv_http_server_t *first = app->servers[0];
    if ((rc = pv_http_listen(first, app->cfg.https_listen, true, PV_LISTEN_PUBLIC)) < 0) {
        pv_error("pvd", "cannot listen on %s: %s", app->cfg.https_listen, strerror(-rc));
        return rc;
    }
    if ((rc = pv_http_listen(first, app->cfg.http_listen, false, PV_LISTEN_PRIVATE)) < 0) {
        pv_error("pvd", "cannot listen on %s: %s", app->cfg.http_listen, strerror(-rc));
        return rc;
    }
    if (app->cfg.http_redirect) { /* a public port 80: health checks, else HTTPS */
        static const char *const health[] = {"healthz", "readyz", NULL};
        int port = pv_http_server_port(first, PV_LISTEN_PUBLIC);
        for (int i = 0; i < n; i++)
            pv_http_server_set_redirect(app->servers[i], port, health);
    }
    return 0;
}

static int start(pv_app_t *app)
{
    pv_config_t *c = &app->cfg;
    int rc = pv_mkdir_p(c->data_dir, 0700);
    if (rc < 0) {
        pv_error("pvd", "cannot create %s: %s", c->data_dir, strerror(-rc));
        return rc;
    }
    if ((rc = pv_keys_load_or_create(c->data_dir, &app->keys)) < 0) {
        pv_error("pvd", "cannot load or create keys in %s: %s", c->data_dir, strerror(-rc));
        return rc;
    }
    if ((rc = tls_setup(app)) < 0)
        return rc;
    pv_store_opts_t so = {.map_size = c->map_size, .map_max = c->map_max};
    if ((rc = pv_store_open(&app->store, c->data_dir, &so)) < 0) {
        pv_error("pvd", "cannot open the store in %s: %s", c->data_dir, strerror(-rc));
        return rc;
    }
    if (!(app->media = pv_media_new(&app->keys, c->presign_ttl, app->store)))
        return start_failed("the media links", -ENOMEM);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int workers = c->workers > 0 ? c->workers : (int)(cores > 0 ? cores : 2);
    app->work = pv_pool_new("work", workers, 0);
    app->decode_big = pv_pool_new("decode_big", 1, 0);
    app->hash = pv_pool_new("hash", cores > 1 ? (int)cores / 2 : 1, PV_POOL_IDLE);
    if (app->hash) /* a flood of sign-ups or logins waits in no queue: 503 */
        pv_pool_set_max_queued(app->hash, c->hash_queue);
    app->io = pv_pool_new("io", 2, 0);
    int renders = c->render_workers > 0 ? c->render_workers : (int)(cores > 0 ? cores : 2);
    app->render = pv_pool_new("render", renders, 0);
    app->metrics = pv_metrics_new();
    app->core = pv_loop_new("core");
    if (!app->work || !app->decode_big || !app->hash || !app->io || !app->render ||
        !app->metrics || !app->core)
        return start_failed("the worker pools and the core loop", -ENOMEM);
    if ((rc = pv_auth_start(app)) < 0)
        return start_failed("the login admission (auth actor)", rc);
    /* before the core loop runs: the admin actor registers its events there */
    if ((rc = pv_admin_start(app)) < 0)
        return start_failed("the admin socket", rc);
    if ((rc = pv_videos_start(app)) < 0)
        return start_failed("the video jobs", rc);
    if ((rc = pv_sync_start(app)) < 0)
        return start_failed("the change-log trimming (sync actor)", rc);
    char rerr[300] = "";
    if ((rc = pv_repl_start(app, rerr, sizeof(rerr))) < 0) {
        pv_error("pvd", "cannot start S3 replication: %s", rerr);
        return rc;
    }
    if ((rc = pv_pull_start(app, rerr, sizeof(rerr))) < 0) {
        pv_error("pvd", "cannot start fetching the restore's blobs: %s", rerr);
        return rc;
    }
    if ((rc = pv_pg_start(app, rerr, sizeof(rerr))) < 0) {
        pv_error("pvd", "cannot start PostgreSQL replication: %s", rerr);
        return rc;
    }
    if ((rc = pv_ddb_repl_start(app, rerr, sizeof(rerr))) < 0) {
        pv_error("pvd", "cannot start DynamoDB replication: %s", rerr);
        return rc;
    }
    /* The servers exist before the TLS actor (it hands them the context)
     * and before the core loop runs (a pvctl reload reaches all of them;
     * the videos actor sends live progress to every loop). */
    if ((rc = make_http_loops(app)) < 0)
        return rc;
    char err[300] = "";
    if ((rc = pv_tls_start(app, err, sizeof(err))) < 0) {
        pv_error("pvd", "cannot start TLS: %s", err);
        return rc;
    }
    if ((rc = pv_loop_start(app->core)) < 0)
        return start_failed("the core loop", rc);
    for (int i = 0; i < app->n_loops; i++)
        if ((rc = pv_loop_start(app->loops[i].loop)) < 0)
            return start_failed("an HTTP loop", rc);
    return 0;
}

static void stop_all(pv_app_t *app)
{
    for (int i = 0; i < app->n_loops; i++) {
        if (!app->loops[i].loop)
            continue; /* a start that failed making it */
        pv_loop_stop(app->loops[i].loop);
        pv_loop_join(app->loops[i].loop);
    }
    if (app->core) {
        pv_loop_stop(app->core);
        pv_loop_join(app->core);
    }
    /* Nothing writes now: the replicator's requests are cancelled (what
     * was in flight is sent again at the next start). */
    pv_repl_stop(app);
    pv_pull_stop(app);
    pv_pg_stop(app);
    pv_ddb_repl_stop(app);
    /* With the core loop stopped: renders end at once and stay resumable,
     * and then the render pool can be joined with the others. */
    pv_videos_stop(app);
    pv_pool_t *pools[] = {app->work, app->decode_big, app->hash, app->io, app->render};
    for (size_t i = 0; i < PV_ARRAY_LEN(pools); i++)
        if (pools[i])
            pv_pool_stop(pools[i]);
    /* The writer drains before the actors it replies to are freed. */
    if (app->store)
        pv_store_close(app->store);
    app->store = NULL;
    for (int i = 0; i < app->n_loops; i++) {
        pv_http_loop_t *hl = &app->loops[i];
        if (hl->drain_timer)
            event_free(hl->drain_timer);
        if (hl->drain_msg) /* the grace period ended first: never answered */
            pv_msg_free(hl->drain_msg);
        if (hl->server)
            pv_http_server_free(hl->server);
        pv_http_actor_free(hl);
        pv_loop_free(hl->loop);
    }
    free(app->loops);
    free(app->servers);
    pv_videos_free(app);
    pv_sync_free(app);
    pv_ddb_repl_free(app);
    pv_repl_free(app);
    pv_pull_free(app);
    pv_pg_free(app);
    pv_tls_free(app);
    pv_auth_free(app);
    pv_admin_stop(app); /* after the pool and the store: nothing replies to it now */
    pv_loop_free(app->core);
    for (size_t i = 0; i < PV_ARRAY_LEN(pools); i++)
        pv_pool_free(pools[i]);
    if (app->store)
        pv_store_close(app->store);
    pv_metrics_free(app->metrics);
    pv_media_free(app->media);
}

int main(int argc, char **argv)
{
    static pv_app_t app;
    pvd_args_t args = {0};
    if (load_config(argc, argv, &app.cfg, &args) < 0)
        return 1;
    if (args.check_only) {
        printf("config ok\n");
        return 0;
    }
    if (args.restore) /* into an empty data dir, with pvd stopped */
        return pv_restore_cli(args.restore, app.cfg.data_dir);
    if (args.restore_from)
        return pv_restore_s3_cli(&app.cfg, args.restore_from, args.at, args.pull_blobs);
    if (args.at) {
        fprintf(stderr, "pvd: --at goes with --restore-from\n");
        return 2;
    }
    pv_log_set_level(pv_log_level_parse(app.cfg.log_level));
    /* stderr carries JSON lines only; FFmpeg's own chatter (x264's
     * banner, decoder warnings) would break that. Failures still reach
     * the log through our error paths. */
    av_log_set_level(AV_LOG_QUIET);
    /* Big buffers (a 20 MB photo read for decoding) come from mmap and go
     * back to the system when freed; otherwise glibc raises its threshold
     * after the first one and keeps every later one in the heap. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    signal(SIGPIPE, SIG_IGN);
    app.started_ms = pv_now_ms();

    main_state_t ms = {.app = &app};
    app.main_loop = pv_loop_new("main");
    /* The main actor has no messages of its own: it gets answers (drained),
     * without which a stop could not wait for the loops to drain. */
    static const pv_actor_def_t main_def = {"main", NULL, 0};
    app.main_actor = app.main_loop ? pv_actor_new(app.main_loop, &main_def, &ms) : NULL;
    if (!app.main_actor) {
        pv_loop_free(app.main_loop);
        start_failed("the main loop", -ENOMEM);
        return 1;
    }
    struct event_base *base = pv_loop_base(app.main_loop);
    ms.sigterm = evsignal_new(base, SIGTERM, on_signal, &ms);
    ms.sigint = evsignal_new(base, SIGINT, on_signal, &ms);
    ms.sighup = evsignal_new(base, SIGHUP, on_signal, &ms);
    ms.grace = evtimer_new(base, on_grace, &ms);
    event_add(ms.sigterm, NULL);
    event_add(ms.sigint, NULL);
    event_add(ms.sighup, NULL);

    int rc = start(&app);
    if (rc == 0) {
        atomic_store(&app.ready, true);
        pv_log(PV_LOG_INFO, "pvd", NULL, NULL,
               "pvd %s serving https://%s (public) and http://%s (private), data in %s",
               PV_VERSION, app.cfg.https_listen, app.cfg.http_listen, app.cfg.data_dir);
        /* systemd (Type=notify) starts what waits for pvd only now */
        int nrc = pv_notify("READY=1");
        if (nrc < 0)
            pv_warn("pvd", "cannot tell systemd that pvd is ready: %s", strerror(-nrc));
        pv_loop_run(app.main_loop);
    }
    atomic_store(&app.ready, false);
    stop_all(&app);
    event_free(ms.sigterm);
    event_free(ms.sigint);
    event_free(ms.sighup);
    event_free(ms.grace);
    pv_actor_free(app.main_actor);
    pv_loop_free(app.main_loop);
    if (rc == 0)
        pv_info("pvd", "stopped");
    return rc == 0 ? 0 : 1;
}
