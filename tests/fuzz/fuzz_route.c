/*
 * fuzz_route.c — libFuzzer target for the router (src/http/route.c).
 *
 * Input: one byte of flags, then "METHOD PATH" (PATH as conn.c hands it
 * over: decoded, starting with '/'; one is added if missing). The path is
 * routed on pvd's own table (actors/api/routes.c) and on a table of odd
 * shapes, for the listeners named by the flags' low bits. With flag 0x80
 * the text up to the first newline is a pattern instead: it is compiled on
 * its own, must compile exactly when it is well formed, and must take a
 * path made from it.
 *
 * Every answer is checked against a matcher written apart from route.c
 * (it walks pattern and path as strings): a match is the first fitting
 * row and its captures lie in the path; 404 means no row has the path;
 * 405 means some row has it but none for this method, and Allow lists
 * only their methods.
 */
#include "actors/api/api.h"
#include "http/route.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const pv_http_route_t g_odd[] = {
    {"GET", "/", NULL, 0, 0, 0, PV_LISTEN_PUBLIC, "root"},
    {"GET", "/{a}", NULL, 0, 0, 0, PV_LISTEN_PRIVATE, "one"},
    {"PUT", "//", NULL, 0, 0, 0, PV_LISTEN_PUBLIC, "empty_segments"},
    {"GET", "/a/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", NULL, 0, 0, 0, PV_LISTEN_PUBLIC, "eight"},
    {"POST", "/{}/x", NULL, 0, 0, 0, PV_LISTEN_PUBLIC, "no_name"},
    {"DELETE", "/{", NULL, 0, 0, 0, PV_LISTEN_PUBLIC, "half_brace"},
    {"GET", "/x/", NULL, 0, 0, 0, PV_LISTEN_PUBLIC | PV_LISTEN_PRIVATE, "trailing"},
    {"HEAD", "/head", NULL, 0, 0, 0, PV_LISTEN_PUBLIC, "head_row"},
    {NULL, NULL, NULL, 0, 0, 0, 0, NULL},
};

/* One segment of a pattern at p (no leading '/'): its length. */
static size_t seg_len(const char *p)
{
    const char *e = strchr(p, '/');
    return e ? (size_t)(e - p) : strlen(p);
}

static int is_capture(const char *p, size_t len)
{
    return len >= 2 && p[0] == '{' && p[len - 1] == '}';
}

/* Does pattern take path[0..plen)? Both start with '/'. */
static int oracle_match(const char *pat, const char *path, size_t plen)
{
    size_t j = 0;
    for (const char *p = pat;;) {
        if (*p != '/' || j >= plen || path[j] != '/')
            return 0;
        p++;
        j++;
        size_t pl = seg_len(p);
        const char *e = memchr(path + j, '/', plen - j);
        size_t ql = e ? (size_t)(e - (path + j)) : plen - j;
        if (is_capture(p, pl) ? ql == 0 : (pl != ql || memcmp(p, path + j, pl) != 0))
            return 0;
        p += pl;
        j += ql;
        if (*p == '\0' || j == plen)
            return *p == '\0' && j == plen;
    }
}

static int oracle_fits(const pv_http_route_t *r, const char *method)
{
    return strcmp(r->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0);
}

/* Is m one of the comma-separated methods in allow? */
static int allow_has(const char *allow, const char *m)
{
    size_t ml = strlen(m);
    for (const char *p = allow; *p;) {
        const char *e = strstr(p, ", ");
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == ml && memcmp(p, m, ml) == 0)
            return 1;
        p = e ? e + 2 : p + l;
    }
    return 0;
}

static void check_find(const pv_route_table_t *t, const pv_http_route_t *rows, const char *method,
                       int listener, const char *path, size_t plen)
{
    pv_route_path_t ps;
    pv_route_match_t m;
    pv_route_split(path, plen, &ps);
    int rc = pv_route_find(t, method, listener, &ps, &m);
    int has_path = 0, first = -1;
    for (int i = 0; rows[i].method; i++) {
        if (!(rows[i].listeners & listener) || !oracle_match(rows[i].pattern, path, plen))
            continue;
        has_path = 1;
        if (first < 0 && oracle_fits(&rows[i], method))
            first = i;
    }
    if (rc == 0) {
        if (first < 0 || m.route != &rows[first])
            __builtin_trap();
        for (int i = 0; i < m.nparams; i++) {
            const pv_route_param_t *p = &m.param[i];
            if (p->val < path || p->val + p->val_len > path + plen || p->val_len == 0 ||
                p->name < m.route->pattern ||
                p->name + p->name_len > m.route->pattern + strlen(m.route->pattern))
                __builtin_trap();
        }
    } else if (rc == 404) {
        if (has_path || m.route)
            __builtin_trap();
    } else if (rc == 405) {
        if (!has_path || first >= 0 || m.route || !m.allow[0])
            __builtin_trap();
        for (int i = 0; rows[i].method; i++) /* each row's method is listed, if it fit */
            if ((rows[i].listeners & listener) && oracle_match(rows[i].pattern, path, plen) &&
                strlen(m.allow) + strlen(rows[i].method) + 3 <= sizeof(m.allow) &&
                !allow_has(m.allow, rows[i].method))
                __builtin_trap();
    } else {
        __builtin_trap();
    }
}

/* A pattern from the input: compiles exactly when it is well formed, and
 * then takes the path made by filling each capture. */
static void check_pattern(const char *pat)
{
    int segs = 0, caps = 0;
    for (const char *p = pat; *p == '/';) {
        p++;
        size_t l = seg_len(p);
        segs++;
        caps += is_capture(p, l);
        p += l;
    }
    int ok = pat[0] == '/' && segs <= PV_ROUTE_MAX_SEGS && caps <= PV_ROUTE_MAX_PARAMS;
    pv_http_route_t rows[2] = {{"GET", pat, NULL, 0, 0, 0, PV_LISTEN_PUBLIC, "p"}, {0}};
    pv_route_table_t *t = NULL;
    size_t bad;
    int rc = pv_route_table_new(rows, &t, &bad);
    if ((rc == 0) != ok)
        __builtin_trap();
    if (rc != 0)
        return;
    size_t cap = strlen(pat) + 1, n = 0; /* a capture's 'v' is never longer */
    char *path = malloc(cap);
    for (const char *p = pat; *p == '/';) {
        p++;
        size_t l = seg_len(p);
        path[n++] = '/';
        if (is_capture(p, l)) {
            path[n++] = 'v';
        } else {
            memcpy(path + n, p, l);
            n += l;
        }
        p += l;
    }
    pv_route_path_t ps;
    pv_route_match_t m;
    pv_route_split(path, n, &ps);
    if (pv_route_find(t, "GET", PV_LISTEN_PUBLIC, &ps, &m) != 0 || m.nparams != caps)
        __builtin_trap();
    check_find(t, rows, "HEAD", PV_LISTEN_PUBLIC, path, n);
    free(path);
    pv_route_table_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pv_route_table_t *api, *odd;
    if (!api) {
        size_t bad;
        if (pv_route_table_new(pv_api_routes, &api, &bad) != 0 ||
            pv_route_table_new(g_odd, &odd, &bad) != 0)
            __builtin_trap();
    }
    if (size < 1)
        return 0;
    int flags = data[0];
    int listener = flags & (PV_LISTEN_PUBLIC | PV_LISTEN_PRIVATE);
    char *s = malloc(size + 1);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    char *text = s;
    size_t tlen = size - 1;
    if (flags & 0x80) {
        char *nl = memchr(s, '\n', tlen);
        if (nl) {
            *nl = '\0';
            text = nl + 1;
            tlen -= (size_t)(text - s);
        }
        check_pattern(s); /* up to the newline, or a NUL in it */
        if (!nl)
            goto out;
    }
    /* "METHOD PATH": the method is a C string, the path has a length. */
    char *sp = memchr(text, ' ', tlen);
    const char *method = "GET";
    if (sp) {
        *sp = '\0';
        method = text;
        tlen -= (size_t)(sp + 1 - text);
        text = sp + 1;
    }
    char *path = malloc(tlen + 2);
    size_t plen = 0;
    if (tlen == 0 || text[0] != '/')
        path[plen++] = '/';
    memcpy(path + plen, text, tlen);
    plen += tlen;
    check_find(api, pv_api_routes, method, listener, path, plen);
    check_find(odd, g_odd, method, listener, path, plen);
    free(path);
out:
    free(s);
    return 0;
}
