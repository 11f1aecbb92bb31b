/*
 * route.h — the router (src/http/route.c): a route table compiled once,
 * and the match of a method and a decoded path against it.
 *
 * Pure, like the parser: no I/O, and no allocation after the table is
 * compiled (a match fills a struct the caller owns). The outcome is what
 * an HTTP answer needs: the row with its {name} captures, or 404, or 405
 * with the Allow list of the methods the path does take. It has its own
 * unit test (tests/unit/test_route.c) and libFuzzer target
 * (tests/fuzz/fuzz_route.c).
 */
#ifndef PV_HTTP_ROUTE_H
#define PV_HTTP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"

#define PV_ROUTE_MAX_SEGS   32  /* segments in a pattern; a longer path matches nothing */
#define PV_ROUTE_MAX_PARAMS 8   /* {name} captures in one pattern */
#define PV_ROUTE_ALLOW_MAX  128 /* a 405's Allow list, NUL included */

typedef struct pv_route_table pv_route_table_t;

/* A decoded path cut at its slashes; the segments point into the path. */
typedef struct pv_route_path {
    int n;                            /* segments; -1: more than PV_ROUTE_MAX_SEGS */
    const char *s[PV_ROUTE_MAX_SEGS]; /* segment starts (not NUL-terminated) */
    size_t len[PV_ROUTE_MAX_SEGS];    /* segment lengths; 0 for an empty one */
} pv_route_path_t;

/* One capture: the {name} of the pattern and the path segment it took. */
typedef struct pv_route_param {
    const char *name; /* inside the route's pattern */
    size_t name_len;
    const char *val; /* inside the matched path */
    size_t val_len;  /* >= 1: a capture never takes an empty segment */
} pv_route_param_t;

typedef struct pv_route_match {
    const pv_http_route_t *route; /* the row found, or NULL */
    int nparams;
    pv_route_param_t param[PV_ROUTE_MAX_PARAMS];
    char allow[PV_ROUTE_ALLOW_MAX]; /* 405 only: "GET, HEAD, POST" */
} pv_route_match_t;

/* Compiles routes (ended by a row whose method is NULL). 0, or -EINVAL
 * for a pattern that does not start with '/', -E2BIG for one with too
 * many segments or captures (*bad: that row's index), -ENOMEM. */
int pv_route_table_new(const pv_http_route_t *routes, pv_route_table_t **out, size_t *bad);
void pv_route_table_free(pv_route_table_t *t);

/* Cuts a decoded path ("/a/b", starting with '/') into segments. */
void pv_route_split(const char *path, size_t len, pv_route_path_t *out);

/* The route for method on path, among the rows served on listener (a
 * pv_http_listener_kind): 0 with m->route and its captures, 404 when no
 * row has this path, 405 when rows have it for other methods (m->allow
 * lists them). A GET row also serves HEAD. The first fitting row wins. */
int pv_route_find(const pv_route_table_t *t, const char *method, int listener,
                  const pv_route_path_t *path, pv_route_match_t *m);

#endif
