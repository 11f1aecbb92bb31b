/*
 * test_imds.c — the IMDSv2 client (src/cloud/imds.c) against a loopback
 * instance-metadata service, tests/peers/imds.py, started here on free
 * ports (one per behaviour: a role, no role, a bad document, a huge
 * answer) and stopped at the end; each exits by itself if this process
 * dies. The peer requires tokens as an instance with HttpTokens=required
 * does, so a fetch that works proves the token was asked for and sent.
 *
 * Also: an endpoint where nothing listens (fails at once) and one that
 * accepts and never answers (fails at the client's own time limit, not
 * curlev's), endpoint checks, a refresh that brings new keys, the
 * region, fetches side by side, the curlev freed mid-fetch, the failure
 * seam, and that no message carries a secret.
 */
#include "cloud/curlev.h"
#include "cloud/imds.h"

#include "base/pv.h"
#include "t.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static struct event_base *g_base;
static pv_curlev_t *g_http;

/* ---- the peers ---- */

typedef struct peer {
    pid_t pid; /* 0: not running */
    int out;   /* its stdout until the port is read, else -1 */
    int port;
    char endpoint[64];
} peer_t;

static peer_t g_peer;     /* a role, keys for 6 h */
static peer_t g_short;    /* a role, keys for 200 s: inside the refresh margin */
static peer_t g_norole;   /* no role attached */
static peer_t g_baddoc;   /* a credential document without a secret */
static peer_t g_huge;     /* a role list past the cap */

/* Starts tests/peers/imds.py with extra (NULL-terminated) options;
 * peer_port then reads the port, the one line it prints. Python takes
 * seconds to start on a busy machine, so the peers start side by side. */
static int peer_spawn(peer_t *p, const char *const *extra)
{
    char watch[16];
    const char *argv[16] = {"python3", "tests/peers/imds.py", "--watch-pid", watch};
    int n = 4, fds[2];
    snprintf(watch, sizeof(watch), "%d", (int)getpid());
    for (int i = 0; extra && extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    p->out = -1;
    if (pipe2(fds, O_CLOEXEC) != 0) /* the next peers need not hold this one's */
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    int rc = posix_spawnp(&p->pid, "python3", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        p->pid = 0;
        return -1;
    }
    p->out = fds[0];
    return 0;
}

static int peer_port(peer_t *p)
{
    if (p->out < 0)
        return -1;
    FILE *f = fdopen(p->out, "r");
    char line[32] = "";
    if (!f || !fgets(line, sizeof(line), f))
        line[0] = '\0';
    if (f)
        fclose(f);
    else
        close(p->out);
    p->out = -1;
    p->port = atoi(line);
    snprintf(p->endpoint, sizeof(p->endpoint), "http://127.0.0.1:%d", p->port);
    return p->port > 0 ? 0 : -1;
}

static void peer_stop(peer_t *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

static void peers_stop(void)
{
    peer_stop(&g_peer);
    peer_stop(&g_short);
    peer_stop(&g_norole);
    peer_stop(&g_baddoc);
    peer_stop(&g_huge);
}

/* The peer's counters (GET /_stats, a plain blocking curl). */
typedef struct stats {
    int tokens, documents, refused;
} stats_t;

static size_t to_buf(char *b, size_t size, size_t n, void *arg)
{
    char *out = arg;
    size_t have = strlen(out), len = size * n;
    if (have + len >= 512)
        return 0;
    memcpy(out + have, b, len);
    out[have + len] = '\0';
    return len;
}

/* A blocking request to a peer: its status, body into out[512]. */
static long raw(const peer_t *p, const char *method, const char *path, const char *header,
                char *out)
{
    char url[128];
    long status = 0;
    snprintf(url, sizeof(url), "%s%s", p->endpoint, path);
    out[0] = '\0';
    CURL *e = curl_easy_init();
    struct curl_slist *h = header ? curl_slist_append(NULL, header) : NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, to_buf);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return status;
}

static stats_t peer_stats(const peer_t *p)
{
    char body[512];
    stats_t s = {-1, -1, -1};
    if (raw(p, "GET", "/_stats", NULL, body) == 200)
        sscanf(body, "{\"tokens\": %d, \"documents\": %d, \"refused\": %d}", &s.tokens,
               &s.documents, &s.refused);
    return s;
}

/* ---- running the loop ---- */

static bool g_timed_out;

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    g_timed_out = true;
    event_base_loopbreak(g_base);
}

/* Runs the loop until *pending is 0 (or 20 s). */
static bool run_until(const int *pending)
{
    struct event *t = evtimer_new(g_base, timeout_cb, NULL);
    struct timeval tv = {20, 0};
    g_timed_out = false;
    evtimer_add(t, &tv);
    while (*pending > 0 && !g_timed_out)
        event_base_loop(g_base, EVLOOP_ONCE);
    event_free(t);
    if (g_timed_out)
        printf("#   timed out waiting for %d fetch(es)\n", *pending);
    return !g_timed_out;
}

/* What a done callback saw, copied out of it. */
typedef struct got {
    int calls;
    int *pending;
    pv_imds_result_t r;      /* creds pointer cleared */
    bool has_creds;
    pv_aws_creds_t creds;    /* a copy */
    pv_curlev_t *free_me;    /* freed from inside done, when set */
} got_t;

static void on_done(const pv_imds_result_t *res, void *arg)
{
    got_t *g = arg;
    g->calls++;
    g->r = *res;
    g->r.creds = NULL;
    g->has_creds = res->creds != NULL;
    if (res->creds)
        g->creds = *res->creds;
    if (g->pending)
        (*g->pending)--;
    if (g->free_me)
        pv_curlev_free(g->free_me);
}

/* Waits for one call; its rc (-999: the call itself failed). */
static int wait_got(int start_rc, got_t *g)
{
    int pending = 1;
    if (start_rc != 0) {
        printf("#   the call failed at once: %d\n", start_rc);
        return -999;
    }
    if (g->calls != 0)
        printf("#   done ran inside the call\n");
    g->pending = &pending;
    run_until(&pending);
    g->pending = NULL;
    if (g->calls != 1)
        printf("#   done ran %d times\n", g->calls);
    return g->calls == 1 ? g->r.rc : -998;
}

#define DO(g, call) ((g) = (got_t){0}, wait_got((call), &(g)))

/* No secret of the peer's (they all say "imds-peer-" or start ASIA) in
 * a message. */
static bool message_clean(const got_t *g)
{
    const char *m = g->r.message;
    if (strstr(m, "imds-peer-") || strstr(m, "ASIA")) {
        printf("#   a secret in the message: %s\n", m);
        return false;
    }
    return true;
}

/* A port where nothing listens now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

/* A listener that never accepts: connections complete in the kernel's
 * backlog and no answer ever comes. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        abort();
    *port = ntohs(a.sin_port);
    return fd;
}

/* ================= tests ================= */

TEST(endpoints_checked)
{
    got_t g = {0};
    CHECK(pv_imds_off(NULL));
    CHECK(pv_imds_off(""));
    CHECK(pv_imds_off("off"));
    CHECK(!pv_imds_off(PV_IMDS_ENDPOINT));
    const char *bad[] = {"",
                         "off",
                         "169.254.169.254",
                         "ftp://169.254.169.254",
                         "http://",
                         "http:///",
                         "http://169.254.169.254/latest",
                         "http://host name",
                         "http://h/?x",
                         "http://user@host"};
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
        int rc = pv_imds_fetch(g_http, bad[i], on_done, &g);
        if (rc != -EINVAL)
            printf("#   \"%s\": %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, -EINVAL);
    }
    CHECK_EQ_INT(pv_imds_fetch(g_http, NULL, on_done, &g), -EINVAL);
    CHECK_EQ_INT(pv_imds_fetch(NULL, PV_IMDS_ENDPOINT, on_done, &g), -EINVAL);
    CHECK_EQ_INT(pv_imds_fetch(g_http, PV_IMDS_ENDPOINT, NULL, &g), -EINVAL);
    CHECK_EQ_INT(pv_imds_region(g_http, "nope", on_done, &g), -EINVAL);
    for (int i = 0; i < 5; i++)
        event_base_loop(g_base, EVLOOP_NONBLOCK);
    CHECK_EQ_INT(g.calls, 0);
}

TEST(fetch_gets_the_role_credentials)
{
    got_t g;
    int64_t now = pv_now_ms() / 1000;
    char ep[80];
    snprintf(ep, sizeof(ep), "%s/", g_peer.endpoint); /* a trailing '/' is fine */
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, ep, on_done, &g)), 0);
    CHECK(g.has_creds);
    CHECK_EQ_STR(g.creds.source, "imds");
    CHECK(strncmp(g.creds.key_id, "ASIAIMDSPEER", 12) == 0);
    char want[200];
    snprintf(want, sizeof(want), "imds-peer-secret-%s", g.creds.key_id);
    CHECK_EQ_STR(g.creds.secret, want);
    snprintf(want, sizeof(want), "imds-peer-session-token-%s", g.creds.key_id);
    CHECK_EQ_STR(g.creds.token, want);
    CHECK(g.creds.expires_s >= now + 21600 - 60 && g.creds.expires_s <= now + 21600 + 60);
    CHECK(!pv_awscreds_needs_refresh(&g.creds, now));
    CHECK_EQ_STR(g.r.role, "pv-test-role");
    CHECK_EQ_STR(g.r.step, "credentials");
    CHECK_EQ_INT(g.r.status, 200);
    CHECK_EQ_STR(g.r.message, "");
    pv_awscreds_wipe(&g.creds);
}

/* The peer refuses what IMDSv1 sends (no token), so the fetch that
 * works sent one on each GET; the token PUT needs its TTL header. */
TEST(token_required_and_sent)
{
    got_t g;
    char body[512];
    stats_t before = peer_stats(&g_peer);
    CHECK(before.tokens >= 0);
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g)), 0);
    stats_t after = peer_stats(&g_peer);
    CHECK_EQ_INT(after.tokens, before.tokens + 1);      /* one token a fetch */
    CHECK_EQ_INT(after.documents, before.documents + 1);
    CHECK_EQ_INT(after.refused, before.refused);       /* none of ours refused */

    CHECK_EQ_INT(raw(&g_peer, "GET", "/latest/meta-data/iam/security-credentials/", NULL, body),
                 401);
    CHECK_EQ_INT(raw(&g_peer, "GET", "/latest/meta-data/iam/security-credentials/",
                     "X-aws-ec2-metadata-token: made-up", body),
                 401);
    CHECK_EQ_INT(peer_stats(&g_peer).refused, after.refused + 2);
    CHECK_EQ_INT(raw(&g_peer, "PUT", "/latest/api/token", NULL, body), 400);
    pv_awscreds_wipe(&g.creds);
}

TEST(no_role_is_a_clear_error)
{
    got_t g;
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, g_norole.endpoint, on_done, &g)), -ENOENT);
    CHECK(!g.has_creds);
    CHECK_EQ_STR(g.r.step, "role");
    CHECK_EQ_INT(g.r.status, 404);
    CHECK(strstr(g.r.message, "no IAM role") != NULL);
    CHECK(strstr(g.r.message, g_norole.endpoint) != NULL);
    CHECK(message_clean(&g));
}

TEST(bad_document_is_a_clear_error)
{
    got_t g;
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, g_baddoc.endpoint, on_done, &g)), -EBADMSG);
    CHECK(!g.has_creds);
    CHECK_EQ_STR(g.r.step, "credentials");
    CHECK_EQ_STR(g.r.role, "pv-test-role");
    CHECK(strstr(g.r.message, "credential document") != NULL);
    CHECK(message_clean(&g));
}

TEST(huge_answer_is_capped)
{
    got_t g;
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, g_huge.endpoint, on_done, &g)), -EMSGSIZE);
    CHECK_EQ_STR(g.r.step, "role");
    CHECK(strstr(g.r.message, "64 KiB") != NULL);
}

TEST(nothing_listening_fails_fast)
{
    got_t g;
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", free_port());
    int64_t t0 = pv_mono_us();
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, ep, on_done, &g)), -ECONNREFUSED);
    double s = (double)(pv_mono_us() - t0) / 1e6;
    if (s >= 3.0)
        printf("#   took %.2f s\n", s);
    CHECK(s < 3.0);
    CHECK_EQ_STR(g.r.step, "token");
    CHECK_EQ_INT(g.r.status, 0);
    CHECK(strstr(g.r.message, ep) != NULL);
}

/* curlev's own limits are far longer (no whole-transfer limit, 30 s of
 * silence): this ends at PV_IMDS_TIMEOUT_MS, so the client's win. */
TEST(silent_service_times_out_at_the_client_limit)
{
    got_t g;
    int port, fd = silent_listener(&port);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
    int64_t t0 = pv_mono_us();
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, ep, on_done, &g)), -ETIMEDOUT);
    double s = (double)(pv_mono_us() - t0) / 1e6;
    if (s < PV_IMDS_TIMEOUT_MS / 1000.0 - 0.2 || s > PV_IMDS_TIMEOUT_MS / 1000.0 + 2)
        printf("#   took %.2f s\n", s);
    CHECK(s >= PV_IMDS_TIMEOUT_MS / 1000.0 - 0.2 && s <= PV_IMDS_TIMEOUT_MS / 1000.0 + 2);
    CHECK_EQ_STR(g.r.step, "token");
    close(fd);
}

/* Keys that expire inside the margin need a refresh; fetching again
 * brings the service's new ones. */
TEST(refresh_brings_new_keys)
{
    got_t a, b;
    int64_t now = pv_now_ms() / 1000;
    CHECK_EQ_INT(DO(a, pv_imds_fetch(g_http, g_short.endpoint, on_done, &a)), 0);
    CHECK(a.creds.expires_s >= now + 200 - 60 && a.creds.expires_s <= now + 200 + 60);
    CHECK(pv_awscreds_needs_refresh(&a.creds, now)); /* 200 s < PV_AWSCREDS_REFRESH_S */
    CHECK_EQ_INT(DO(b, pv_imds_fetch(g_http, g_short.endpoint, on_done, &b)), 0);
    CHECK(strcmp(a.creds.key_id, b.creds.key_id) != 0);
    CHECK(strcmp(a.creds.secret, b.creds.secret) != 0);
    CHECK(strcmp(a.creds.token, b.creds.token) != 0);
    CHECK_EQ_STR(b.creds.source, "imds");
    pv_awscreds_wipe(&a.creds);
    pv_awscreds_wipe(&b.creds);
}

TEST(region)
{
    got_t g;
    CHECK_EQ_INT(DO(g, pv_imds_region(g_http, g_peer.endpoint, on_done, &g)), 0);
    CHECK_EQ_STR(g.r.region, "us-test-1");
    CHECK_EQ_STR(g.r.step, "region");
    CHECK(!g.has_creds);
    /* the region needs no role */
    CHECK_EQ_INT(DO(g, pv_imds_region(g_http, g_norole.endpoint, on_done, &g)), 0);
}

TEST(fetches_side_by_side)
{
    got_t g[4] = {{0}};
    int pending = 4;
    for (int i = 0; i < 4; i++) {
        g[i].pending = &pending;
        CHECK_EQ_INT(pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g[i]), 0);
    }
    run_until(&pending);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(g[i].calls, 1);
        CHECK_EQ_INT(g[i].r.rc, 0);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(g[i].creds.key_id, g[j].creds.key_id) != 0);
    }
    for (int i = 0; i < 4; i++)
        pv_awscreds_wipe(&g[i].creds);
}

/* Freeing the curlev ends a fetch in flight once, with -ECANCELED; so
 * does freeing it from inside another fetch's done. */
TEST(curlev_freed_mid_fetch)
{
    int port, fd = silent_listener(&port);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
    pv_curlev_t *cl = NULL;
    got_t g = {0};
    CHECK_EQ_INT(pv_curlev_new(g_base, NULL, &cl), 0);
    CHECK_EQ_INT(pv_imds_fetch(cl, ep, on_done, &g), 0);
    for (int i = 0; i < 20; i++)
        event_base_loop(g_base, EVLOOP_NONBLOCK);
    CHECK_EQ_INT(g.calls, 0);
    pv_curlev_free(cl);
    CHECK_EQ_INT(g.calls, 1);
    CHECK_EQ_INT(g.r.rc, -ECANCELED);
    CHECK_EQ_STR(g.r.step, "token");

    got_t first = {0}, stuck = {0};
    int pending = 1;
    CHECK_EQ_INT(pv_curlev_new(g_base, NULL, &cl), 0);
    first.free_me = cl;
    first.pending = &pending;
    CHECK_EQ_INT(pv_imds_fetch(cl, ep, on_done, &stuck), 0);
    CHECK_EQ_INT(pv_imds_fetch(cl, g_peer.endpoint, on_done, &first), 0);
    run_until(&pending);
    CHECK_EQ_INT(first.r.rc, 0);
    CHECK_EQ_INT(stuck.calls, 1);
    CHECK_EQ_INT(stuck.r.rc, -ECANCELED);
    pv_awscreds_wipe(&first.creds);
    close(fd);
}

TEST(failure_seam_gives_clean_errors)
{
    got_t g = {0};
    pv_fail_reset("imds_req:1");
    CHECK_EQ_INT(pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g), -ENOMEM);
    pv_fail_reset("imds_easy:1");
    CHECK_EQ_INT(pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g), -ENOMEM);
    pv_fail_reset("imds_header:1");
    CHECK_EQ_INT(pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g), -ENOMEM);
    CHECK_EQ_INT(g.calls, 0);
    pv_fail_reset("curlev_submit:1");
    CHECK_EQ_INT(pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g), -ENOMEM);
    CHECK_EQ_INT(g.calls, 0);

    /* a later step: done says so */
    pv_fail_reset("imds_easy:2");
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g)), -ENOMEM);
    CHECK_EQ_STR(g.r.step, "role");
    pv_fail_reset("imds_header:3");
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g)), -ENOMEM);
    CHECK_EQ_STR(g.r.step, "credentials");
    CHECK(!g.has_creds);
    pv_fail_reset("curlev_add:2");
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g)), -ENOMEM);
    CHECK_EQ_STR(g.r.step, "role");
    pv_fail_reset("");
    CHECK_EQ_INT(DO(g, pv_imds_fetch(g_http, g_peer.endpoint, on_done, &g)), 0);
    pv_awscreds_wipe(&g.creds);
}

/* ================= main ================= */

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    g_base = event_base_new();
    if (!g_base || pv_curlev_new(g_base, NULL, &g_http) != 0)
        return 1;
    atexit(peers_stop);
    /* the peers start while the tests that need none run */
    const char *shorter[] = {"--expires-in", "200", NULL};
    const char *norole[] = {"--no-role", NULL};
    const char *baddoc[] = {"--bad-document", NULL};
    const char *huge[] = {"--huge", NULL};
    int started = peer_spawn(&g_peer, NULL) | peer_spawn(&g_short, shorter) |
                  peer_spawn(&g_norole, norole) | peer_spawn(&g_baddoc, baddoc) |
                  peer_spawn(&g_huge, huge);
    RUN(endpoints_checked);
    RUN(nothing_listening_fails_fast);
    RUN(silent_service_times_out_at_the_client_limit);

    started |= peer_port(&g_peer) | peer_port(&g_short) | peer_port(&g_norole) |
               peer_port(&g_baddoc) | peer_port(&g_huge);
    if (started != 0) {
        printf("not ok - imds_peers_started (python3 tests/peers/imds.py)\n");
        t_failed++;
    } else {
        RUN(fetch_gets_the_role_credentials);
        RUN(token_required_and_sent);
        RUN(no_role_is_a_clear_error);
        RUN(bad_document_is_a_clear_error);
        RUN(huge_answer_is_capped);
        RUN(refresh_brings_new_keys);
        RUN(region);
        RUN(fetches_side_by_side);
        RUN(curlev_freed_mid_fetch);
        RUN(failure_seam_gives_clean_errors);
    }
    peers_stop();
    pv_curlev_free(g_http);
    event_base_free(g_base);
    curl_global_cleanup();
    return t_done("imds");
}
