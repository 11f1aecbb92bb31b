/*
 * route.c — the router: compiles the route table once, then matches a
 * method and a decoded path against it (route.h).
 *
 * Why a scan and not a trie: pvd has a few dozen rows, and a linear scan
 * over pre-split segments compares a handful of short strings per row,
 * with no allocation and an order that is the table's own (the first
 * fitting row wins, which is easy to reason about when reading routes.c).
 * Segments are compared whole, so "/a/{id}" never matches "/a/b/c" and a
 * capture never takes an empty segment ("/items/" is 404, not a match).
 *
 * 404 and 405 are told apart here because both depend on the same scan:
 * a path that some row has, with another method, is 405, and its Allow
 * list is built from those rows (HEAD added for GET, no duplicates).
 */
#include "http/route.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One compiled segment of a pattern. */
typedef struct route_seg {
    const char *s; /* literal text, or the capture's name */
    size_t len;
    bool capture; /* "{name}" */
} route_seg_t;

typedef struct route_c {
    const pv_http_route_t *r;
    int nsegs;
    route_seg_t seg[PV_ROUTE_MAX_SEGS];
} route_c_t;

struct pv_route_table {
    size_t n;
    route_c_t rows[]; /* in table order */
};

/* Splits a pattern into segments: "/a/{id}/b" -> "a", {id}, "b". */
static int route_compile(const pv_http_route_t *r, route_c_t *out)
{
    const char *p = r->pattern;
    int captures = 0;

    if (!p || p[0] != '/')
        return -EINVAL;
    out->r = r;
    out->nsegs = 0;
    p++;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (out->nsegs == PV_ROUTE_MAX_SEGS)
            return -E2BIG;
        route_seg_t *sg = &out->seg[out->nsegs++];
        sg->capture = len >= 2 && p[0] == '{' && p[len - 1] == '}';
        sg->s = sg->capture ? p + 1 : p;
        sg->len = sg->capture ? len - 2 : len;
        if (sg->capture && ++captures > PV_ROUTE_MAX_PARAMS)
            return -E2BIG; /* a capture the handler could never read */
        if (!e)
            return 0;
        p = e + 1;
    }
}

int pv_route_table_new(const pv_http_route_t *routes, pv_route_table_t **out, size_t *bad)
{
    size_t n = 0;
    while (routes && routes[n].method)
        n++;
    pv_route_table_t *t = calloc(1, sizeof(*t) + n * sizeof(route_c_t));
    if (!t)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = route_compile(&routes[i], &t->rows[i]);
        if (rc < 0) {
            if (bad)
                *bad = i;
            free(t);
            return rc;
        }
    }
    t->n = n;
    *out = t;
    return 0;
}

void pv_route_table_free(pv_route_table_t *t) { free(t); }

void pv_route_split(const char *path, size_t len, pv_route_path_t *out)
{
    const char *p = path + 1, *end = path + len; /* past the leading '/' */

    out->n = 0;
    if (len == 0)
        p = end; /* no path at all: one empty segment, as for "/" */
    for (;;) {
        const char *e = memchr(p, '/', (size_t)(end - p));
        const char *stop = e ? e : end;
        if (out->n == PV_ROUTE_MAX_SEGS) {
            out->n = -1; /* too deep for any pattern: nothing matches */
            return;
        }
        out->s[out->n] = p;
        out->len[out->n] = (size_t)(stop - p);
        out->n++;
        if (!e)
            return;
        p = e + 1;
    }
}

/* Whether the row's segments take the path's; with m, records captures. */
static bool route_match(const route_c_t *rc, const pv_route_path_t *ps, pv_route_match_t *m)
{
    int np = 0;
    if (rc->nsegs != ps->n)
        return false;
    for (int i = 0; i < rc->nsegs; i++) {
        const route_seg_t *sg = &rc->seg[i];
        if (sg->capture) {
            if (ps->len[i] == 0)
                return false;
            if (m)
                m->param[np] = (pv_route_param_t){sg->s, sg->len, ps->s[i], ps->len[i]};
            np++;
        } else if (sg->len != ps->len[i] || memcmp(sg->s, ps->s[i], sg->len) != 0) {
            return false;
        }
    }
    if (m)
        m->nparams = np;
    return true;
}

static bool route_method_fits(const char *route_method, const char *method, bool head)
{
    return strcmp(route_method, method) == 0 || (head && strcmp(route_method, "GET") == 0);
}

/* Appends a method to a ", " list unless it is there already; a list that
 * would not fit is left as it is (the cap is far above pvd's methods). */
static void route_allow_add(char *buf, size_t cap, const char *m)
{
    size_t ml = strlen(m), bl = strlen(buf);
    for (const char *p = buf; *p;) {
        const char *e = strstr(p, ", ");
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == ml && memcmp(p, m, ml) == 0)
            return;
        p = e ? e + 2 : p + l;
    }
    if (bl + ml + 3 > cap)
        return;
    if (bl) {
        memcpy(buf + bl, ", ", 2);
        bl += 2;
    }
    memcpy(buf + bl, m, ml + 1);
}

int pv_route_find(const pv_route_table_t *t, const char *method, int listener,
                  const pv_route_path_t *path, pv_route_match_t *m)
{
    bool head = strcmp(method, "HEAD") == 0, path_hit = false;

    m->route = NULL;
    m->nparams = 0;
    m->allow[0] = '\0';
    for (size_t i = 0; i < t->n; i++) {
        const route_c_t *rc = &t->rows[i];
        if (!(rc->r->listeners & listener) || !route_match(rc, path, NULL))
            continue;
        path_hit = true;
        if (route_method_fits(rc->r->method, method, head)) {
            route_match(rc, path, m);
            m->route = rc->r;
            return 0;
        }
    }
    if (!path_hit)
        return 404;
    for (size_t i = 0; i < t->n; i++) {
        const route_c_t *rc = &t->rows[i];
        if (!(rc->r->listeners & listener) || !route_match(rc, path, NULL))
            continue;
        route_allow_add(m->allow, sizeof(m->allow), rc->r->method);
        if (strcmp(rc->r->method, "GET") == 0)
            route_allow_add(m->allow, sizeof(m->allow), "HEAD");
    }
    return 405;
}
