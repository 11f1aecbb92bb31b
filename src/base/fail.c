/*
 * fail.c — the failure seam (SQLite's idea): PV_FAILPOINTS="site:N,..."
 * makes the Nth call of pv_fail("site") return true; "site:N+" fails from
 * the Nth call on. Tests walk N to show that every failure ends cleanly.
 *
 * The spec is parsed once into a small fixed table; counters are atomics so
 * any thread may hit a site. With no spec, pv_fail is one relaxed load.
 */
#include "base/pv.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#define FAIL_MAX_SITES 16

typedef struct fail_site {
    char name[48];          /* call-site name */
    long nth;               /* 1-based call number that fails */
    bool sticky;            /* "N+": every call from nth on fails */
    atomic_long calls;      /* calls seen so far */
} fail_site_t;

static fail_site_t g_sites[FAIL_MAX_SITES];
static atomic_int g_nsites;     /* 0: seam off */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fail_parse(const char *spec)
{
    int n = 0;
    atomic_store(&g_nsites, 0);
    if (!spec)
        return;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && n < FAIL_MAX_SITES;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (!colon)
            continue;
        *colon = '\0';
        fail_site_t *s = &g_sites[n];
        snprintf(s->name, sizeof(s->name), "%s", tok);
        char *end = NULL;
        s->nth = strtol(colon + 1, &end, 10);
        s->sticky = end && *end == '+';
        atomic_store(&s->calls, 0);
        if (s->nth > 0)
            n++;
    }
    atomic_store(&g_nsites, n);
}

static void fail_init(void)
{
    fail_parse(getenv("PV_FAILPOINTS"));
}

bool pv_fail(const char *site)
{
    pthread_once(&g_once, fail_init);
    int n = atomic_load_explicit(&g_nsites, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
        fail_site_t *s = &g_sites[i];
        if (strcmp(s->name, site) != 0)
            continue;
        long c = atomic_fetch_add(&s->calls, 1) + 1;
        return s->sticky ? c >= s->nth : c == s->nth;
    }
    return false;
}

void pv_fail_reset(const char *spec)
{
    pthread_once(&g_once, fail_init);
    fail_parse(spec ? spec : getenv("PV_FAILPOINTS"));
}
