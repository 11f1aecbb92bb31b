/*
 * test_route.c — the router (src/http/route.c) on its own: compiling
 * tables, splitting paths, matches with captures, 404 against 405 and the
 * Allow list, listener masks, and the limits on segments and captures.
 */
#include "http/route.h"
#include "t.h"

#include <errno.h>
#include <stdio.h>

#define PUB  PV_LISTEN_PUBLIC
#define PRIV PV_LISTEN_PRIVATE

static const pv_http_route_t g_routes[] = {
    {"GET", "/", NULL, 0, PV_BODY_NONE, 0, PUB, "root"},
    {"GET", "/hello", NULL, 0, PV_BODY_NONE, 0, PUB | PRIV, "hello"},
    {"GET", "/items/{id}", NULL, 0, PV_BODY_NONE, 0, PUB, "item_get"},
    {"POST", "/items/{id}", NULL, 0, PV_BODY_NONE, 0, PUB, "item_post"},
    {"DELETE", "/items/{id}", NULL, 0, PV_BODY_NONE, 0, PUB, "item_delete"},
    {"GET", "/items/{id}/content", NULL, 0, PV_BODY_NONE, 0, PUB, "item_content"},
    {"GET", "/items/special", NULL, 0, PV_BODY_NONE, 0, PUB, "never: the capture row comes first"},
    {"GET", "/media/{kind}/{id}/{what}", NULL, 0, PV_BODY_NONE, 0, PUB, "media"},
    {"GET", "/metrics", NULL, 0, PV_BODY_NONE, 0, PRIV, "metrics"},
    {"POST", "/metrics", NULL, 0, PV_BODY_NONE, 0, PRIV, "metrics_post"},
    {"GET", "/{x}", NULL, 0, PV_BODY_NONE, 0, PRIV, "catch_one"},
    {NULL, NULL, NULL, 0, 0, 0, 0, NULL},
};

static pv_route_table_t *g_t;

/* Finds method+path on listener; the path is split the way conn.c does. */
static int find(const char *method, const char *path, int listener, pv_route_match_t *m)
{
    pv_route_path_t ps;
    pv_route_split(path, strlen(path), &ps);
    return pv_route_find(g_t, method, listener, &ps, m);
}

static const char *name_of(const pv_route_match_t *m)
{
    return m->route ? m->route->name : "(none)";
}

/* The value of capture `name` as a string (captures are not NUL-ended). */
static const char *param(const pv_route_match_t *m, const char *name, char *buf, size_t cap)
{
    for (int i = 0; i < m->nparams; i++) {
        const pv_route_param_t *p = &m->param[i];
        if (p->name_len == strlen(name) && memcmp(p->name, name, p->name_len) == 0) {
            snprintf(buf, cap, "%.*s", (int)p->val_len, p->val);
            return buf;
        }
    }
    return NULL;
}

TEST(compile)
{
    CHECK(g_t != NULL);
    size_t bad = 99;
    pv_route_table_t *t = NULL;
    static const pv_http_route_t no_slash[] = {
        {"GET", "/ok", NULL, 0, 0, 0, PUB, "ok"},
        {"GET", "nope", NULL, 0, 0, 0, PUB, "bad"},
        {NULL, NULL, NULL, 0, 0, 0, 0, NULL},
    };
    CHECK_EQ_INT(pv_route_table_new(no_slash, &t, &bad), -EINVAL);
    CHECK_EQ_INT(bad, 1);
    static const pv_http_route_t no_pattern[] = {
        {"GET", NULL, NULL, 0, 0, 0, PUB, "bad"},
        {NULL, NULL, NULL, 0, 0, 0, 0, NULL},
    };
    CHECK_EQ_INT(pv_route_table_new(no_pattern, &t, &bad), -EINVAL);
    CHECK_EQ_INT(bad, 0);

    /* 32 segments compile; 33 do not. */
    char deep[256] = "";
    for (int i = 0; i < PV_ROUTE_MAX_SEGS; i++)
        strcat(deep, "/a");
    pv_http_route_t one[2] = {{"GET", deep, NULL, 0, 0, 0, PUB, "deep"}, {0}};
    CHECK_EQ_INT(pv_route_table_new(one, &t, &bad), 0);
    pv_route_table_free(t);
    strcat(deep, "/a");
    CHECK_EQ_INT(pv_route_table_new(one, &t, &bad), -E2BIG);

    /* 8 captures compile; a 9th could never be read: refused. */
    char caps[256] = "";
    for (int i = 0; i < PV_ROUTE_MAX_PARAMS; i++)
        snprintf(caps + strlen(caps), sizeof(caps) - strlen(caps), "/{p%d}", i);
    one[0].pattern = caps;
    CHECK_EQ_INT(pv_route_table_new(one, &t, &bad), 0);
    pv_route_table_free(t);
    strcat(caps, "/{p8}");
    CHECK_EQ_INT(pv_route_table_new(one, &t, &bad), -E2BIG);

    /* An empty table compiles and matches nothing. */
    static const pv_http_route_t none[] = {{NULL, NULL, NULL, 0, 0, 0, 0, NULL}};
    CHECK_EQ_INT(pv_route_table_new(none, &t, &bad), 0);
    pv_route_path_t ps;
    pv_route_match_t m;
    pv_route_split("/", 1, &ps);
    CHECK_EQ_INT(pv_route_find(t, "GET", PUB, &ps, &m), 404);
    pv_route_table_free(t);
}

TEST(split)
{
    pv_route_path_t ps;
    pv_route_split("/", 1, &ps);
    CHECK_EQ_INT(ps.n, 1);
    CHECK_EQ_INT(ps.len[0], 0);
    pv_route_split("/a/bc//d/", 9, &ps);
    CHECK_EQ_INT(ps.n, 5);
    CHECK_EQ_INT(ps.len[0], 1);
    CHECK_EQ_INT(ps.len[1], 2);
    CHECK_EQ_INT(ps.len[2], 0);
    CHECK_EQ_INT(ps.len[3], 1);
    CHECK_EQ_INT(ps.len[4], 0);
    CHECK(memcmp(ps.s[1], "bc", 2) == 0);
    char deep[128] = "";
    for (int i = 0; i <= PV_ROUTE_MAX_SEGS; i++)
        strcat(deep, "/x");
    pv_route_split(deep, strlen(deep), &ps);
    CHECK_EQ_INT(ps.n, -1);
}

TEST(matches)
{
    pv_route_match_t m;
    char v[64];
    CHECK_EQ_INT(find("GET", "/", PUB, &m), 0);
    CHECK_EQ_STR(name_of(&m), "root");
    CHECK_EQ_INT(m.nparams, 0);
    CHECK_EQ_INT(find("GET", "/hello", PUB, &m), 0);
    CHECK_EQ_STR(name_of(&m), "hello");
    CHECK_EQ_INT(find("GET", "/hello", PRIV, &m), 0);

    CHECK_EQ_INT(find("GET", "/items/42", PUB, &m), 0);
    CHECK_EQ_STR(name_of(&m), "item_get");
    CHECK_EQ_INT(m.nparams, 1);
    CHECK_EQ_STR(param(&m, "id", v, sizeof(v)), "42");
    CHECK_EQ_INT(find("POST", "/items/42", PUB, &m), 0);
    CHECK_EQ_STR(name_of(&m), "item_post");
    CHECK_EQ_INT(find("GET", "/items/42/content", PUB, &m), 0);
    CHECK_EQ_STR(name_of(&m), "item_content");
    CHECK_EQ_STR(param(&m, "id", v, sizeof(v)), "42");

    CHECK_EQ_INT(find("GET", "/media/photos/abc/thumb", PUB, &m), 0);
    CHECK_EQ_INT(m.nparams, 3);
    CHECK_EQ_STR(param(&m, "kind", v, sizeof(v)), "photos");
    CHECK_EQ_STR(param(&m, "id", v, sizeof(v)), "abc");
    CHECK_EQ_STR(param(&m, "what", v, sizeof(v)), "thumb");
    CHECK(param(&m, "nope", v, sizeof(v)) == NULL);

    /* The first fitting row wins, in table order. */
    CHECK_EQ_INT(find("GET", "/items/special", PUB, &m), 0);
    CHECK_EQ_STR(name_of(&m), "item_get");

    /* HEAD is served by GET rows, and only by them. */
    CHECK_EQ_INT(find("HEAD", "/items/7", PUB, &m), 0);
    CHECK_EQ_STR(name_of(&m), "item_get");
    /* Methods are case-sensitive (RFC 9110 9.1). */
    CHECK_EQ_INT(find("get", "/hello", PUB, &m), 405);
}

TEST(not_found)
{
    pv_route_match_t m;
    CHECK_EQ_INT(find("GET", "/nope", PUB, &m), 404);
    CHECK(m.route == NULL);
    CHECK_EQ_INT(find("GET", "/hello/", PUB, &m), 404); /* a trailing slash is a segment */
    CHECK_EQ_INT(find("GET", "/items/", PUB, &m), 404); /* captures take no empty segment */
    CHECK_EQ_INT(find("GET", "/items/1/2", PUB, &m), 404);
    CHECK_EQ_INT(find("GET", "//", PUB, &m), 404);
    CHECK_EQ_INT(find("GET", "/hellox", PUB, &m), 404);
    CHECK_EQ_INT(find("GET", "/hell", PUB, &m), 404);
    /* A row served on the other listener only is not there at all. */
    CHECK_EQ_INT(find("GET", "/metrics", PUB, &m), 404);
    CHECK_EQ_INT(find("GET", "/metrics", PRIV, &m), 0);
    CHECK_EQ_INT(find("GET", "/", PRIV, &m), 404);
    CHECK_EQ_INT(find("GET", "/anything", PRIV, &m), 0);
    CHECK_EQ_STR(name_of(&m), "catch_one");
    /* A path deeper than any pattern can be. */
    char deep[128] = "";
    for (int i = 0; i <= PV_ROUTE_MAX_SEGS; i++)
        strcat(deep, "/x");
    CHECK_EQ_INT(find("GET", deep, PUB, &m), 404);
}

TEST(method_not_allowed)
{
    pv_route_match_t m;
    CHECK_EQ_INT(find("DELETE", "/hello", PUB, &m), 405);
    CHECK(m.route == NULL);
    CHECK_EQ_STR(m.allow, "GET, HEAD");
    CHECK_EQ_INT(find("PUT", "/items/7", PUB, &m), 405);
    CHECK_EQ_STR(m.allow, "GET, HEAD, POST, DELETE");
    /* Only rows of this listener count towards Allow. */
    CHECK_EQ_INT(find("PUT", "/metrics", PRIV, &m), 405);
    CHECK_EQ_STR(m.allow, "GET, HEAD, POST");
    /* /items/special: two GET rows, HEAD and GET listed once. */
    CHECK_EQ_INT(find("PATCH", "/items/special", PUB, &m), 405);
    CHECK_EQ_STR(m.allow, "GET, HEAD, POST, DELETE");
}

TEST(allow_list_is_bounded)
{
    /* More distinct methods than the Allow buffer holds: it stays a
     * well-formed prefix of the list. */
    static char names[40][24];
    static pv_http_route_t many[41];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "METHOD%02d", i);
        many[i] = (pv_http_route_t){names[i], "/x", NULL, 0, 0, 0, PUB, "x"};
    }
    pv_route_table_t *t;
    size_t bad;
    CHECK_EQ_INT(pv_route_table_new(many, &t, &bad), 0);
    pv_route_path_t ps;
    pv_route_match_t m;
    pv_route_split("/x", 2, &ps);
    CHECK_EQ_INT(pv_route_find(t, "GET", PUB, &ps, &m), 405);
    CHECK(strlen(m.allow) < sizeof(m.allow));
    CHECK(strncmp(m.allow, "METHOD00, METHOD01, ", 20) == 0);
    CHECK(m.allow[strlen(m.allow) - 1] != ' ');
    pv_route_table_free(t);
}

int main(void)
{
    size_t bad;
    if (pv_route_table_new(g_routes, &g_t, &bad) != 0) {
        printf("not ok - the test table compiles (row %zu)\n", bad);
        return 1;
    }
    RUN(compile);
    RUN(split);
    RUN(matches);
    RUN(not_found);
    RUN(method_not_allowed);
    RUN(allow_list_is_bounded);
    pv_route_table_free(g_t);
    return t_done("route");
}
