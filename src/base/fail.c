/*
 * fail.c — the failure seam (SQLite's idea), in the test build only:
 * PV_FAILPOINTS="site:N,..." makes the Nth call of pv_fail("site") return
 * true; "site:N+" fails from the Nth call on; the site "*" stands for any
 * site, so "*:N" fails the Nth pv_fail call of the process whatever its
 * site. Tests walk N to show that every failure ends cleanly: an operation
 * run under "*:N" for N = 1, 2, ... fails at each of its site calls in turn
 * until one run fires nothing (pv_fail_fired() == 0) and succeeds.
 *
 * The release build never compiles this file: pv.h turns pv_fail() into a
 * constant false there, so the failure branches are dead code the optimiser
 * removes, and no site name ends up in the binaries.
 *
 * Besides the rules, every call site (name, file, line) is recorded with
 * how often it was called and how often it failed, so that tests can tell
 * which sites an operation passes and which were fired. With
 * PV_FAILPOINTS_LOG=FILE each injected failure also appends one line
 * "site<TAB>file:line<TAB>tag" to FILE (tag: PV_FAILPOINTS_TAG, else the
 * program's name); tests/run.sh gathers these over the whole suite and
 * tools/failsites.py checks that every site in the source was fired.
 *
 * One mutex guards it all: a test build may pay for it, and a reset from
 * any thread cannot race a pv_fail on another.
 */
#include "base/pv.h"

#ifndef PV_TEST_BUILD
#error "fail.c is the test build's failure seam; release builds compile it out (pv.h)"
#endif

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAIL_MAX_RULES 16
#define FAIL_MAX_SITES 256

typedef struct fail_rule {
    char name[48];          /* site name, or "*" for any site */
    long nth;               /* 1-based call number that fails */
    bool sticky;            /* "N+": every call from nth on fails */
    long calls;             /* matching calls since the rule was set */
} fail_rule_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static fail_rule_t g_rules[FAIL_MAX_RULES];
static int g_nrules;                     /* 0: nothing fails */
static long g_calls, g_fired;            /* since the last reset */
static pv_fail_site_t g_sites[FAIL_MAX_SITES]; /* every call site seen */
static size_t g_nsites;
static char g_last[128];                 /* the last failure: "site file:line" */
static char g_log[512];                  /* PV_FAILPOINTS_LOG */
static char g_tag[64];
static _Thread_local int t_hold;              /* pv_fail_hold depth of this thread */

/* Under g_mu. */
static void fail_parse(const char *spec)
{
    int n = 0;
    g_calls = g_fired = 0;
    g_last[0] = '\0';
    for (size_t i = 0; i < g_nsites; i++)
        g_sites[i].first = g_sites[i].last = 0;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", spec ? spec : "");
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && n < FAIL_MAX_RULES;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (!colon)
            continue;
        *colon = '\0';
        fail_rule_t *r = &g_rules[n];
        snprintf(r->name, sizeof(r->name), "%s", tok);
        char *end = NULL;
        r->nth = strtol(colon + 1, &end, 10);
        r->sticky = end && *end == '+';
        r->calls = 0;
        if (r->nth > 0)
            n++;
    }
    g_nrules = n;
}

static void fail_init(void)
{
    pthread_mutex_lock(&g_mu);
    fail_parse(getenv("PV_FAILPOINTS"));
    const char *log = getenv("PV_FAILPOINTS_LOG");
    const char *tag = getenv("PV_FAILPOINTS_TAG");
    snprintf(g_log, sizeof(g_log), "%s", log ? log : "");
    snprintf(g_tag, sizeof(g_tag), "%s", tag && *tag ? tag : program_invocation_short_name);
    pthread_mutex_unlock(&g_mu);
}

/* Under g_mu: the record of one call site, made on its first call. */
static pv_fail_site_t *site_of(const char *site, const char *file, int line)
{
    for (size_t i = 0; i < g_nsites; i++)
        if (g_sites[i].line == line && strcmp(g_sites[i].file, file) == 0 &&
            strcmp(g_sites[i].site, site) == 0)
            return &g_sites[i];
    if (g_nsites == FAIL_MAX_SITES)
        return NULL;
    pv_fail_site_t *s = &g_sites[g_nsites++];
    *s = (pv_fail_site_t){.site = site, .file = file, .line = line};
    return s;
}

/* Under g_mu: one line for tools/failsites.py; O_APPEND keeps the lines of
 * several processes whole. */
static void log_fired(const char *site, const char *file, int line)
{
    if (!g_log[0])
        return;
    int fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    char text[256];
    int n = snprintf(text, sizeof(text), "%s\t%s:%d\t%s\n", site, file, line, g_tag);
    if (n > 0 && (size_t)n < sizeof(text))
        (void)pv_write_all(fd, text, (size_t)n);
    close(fd);
}

static bool rule_fires(fail_rule_t *r, const char *site)
{
    if (strcmp(r->name, "*") != 0 && strcmp(r->name, site) != 0)
        return false;
    long c = ++r->calls;
    return r->sticky ? c >= r->nth : c == r->nth;
}

bool pv_fail_at(const char *site, const char *file, int line)
{
    pthread_once(&g_once, fail_init);
    if (t_hold)
        return false;
    pthread_mutex_lock(&g_mu);
    g_calls++;
    bool fire = false;
    for (int i = 0; i < g_nrules; i++)
        fire |= rule_fires(&g_rules[i], site); /* every matching rule counts */
    pv_fail_site_t *s = site_of(site, file, line);
    if (s) {
        s->calls++;
        if (!s->first)
            s->first = g_calls;
        s->last = g_calls;
    }
    if (fire) {
        g_fired++;
        if (s)
            s->fired++;
        snprintf(g_last, sizeof(g_last), "%s %s:%d", site, file, line);
        log_fired(site, file, line);
    }
    pthread_mutex_unlock(&g_mu);
    return fire;
}

void pv_fail_reset(const char *spec)
{
    pthread_once(&g_once, fail_init);
    pthread_mutex_lock(&g_mu);
    fail_parse(spec ? spec : getenv("PV_FAILPOINTS"));
    pthread_mutex_unlock(&g_mu);
}

void pv_fail_hold(bool on)
{
    t_hold += on ? 1 : -1;
}

pv_fail_count_t pv_fail_count(void)
{
    pthread_once(&g_once, fail_init);
    pthread_mutex_lock(&g_mu);
    pv_fail_count_t c = {.calls = g_calls, .fired = g_fired};
    snprintf(c.last, sizeof(c.last), "%s", g_last);
    pthread_mutex_unlock(&g_mu);
    return c;
}

size_t pv_fail_sites(pv_fail_site_t *out, size_t max)
{
    pthread_once(&g_once, fail_init);
    pthread_mutex_lock(&g_mu);
    size_t n = g_nsites;
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = g_sites[i];
    pthread_mutex_unlock(&g_mu);
    return n;
}
