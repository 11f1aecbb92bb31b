/*
 * dsn.c — masking a libpq connection string's password (dsn.h). Follows
 * libpq's two grammars (its "Connection Strings" section): keyword = value
 * pairs, values bare or in single quotes with backslash escapes; and URIs,
 * postgres[ql]://[user[:password]@][hosts][/db][?param=value&...].
 * Whatever does not parse is copied as it is, up to a password keyword:
 * from there on the rest is masked, so a malformed string never shows one.
 */
#include "base/dsn.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

typedef struct out {
    char *p;
    size_t len, cap;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n && o->len + 1 < o->cap; i++)
        o->p[o->len++] = s[i];
    o->p[o->len] = '\0';
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static bool is_uri(const char *s)
{
    return !strncmp(s, "postgresql://", 13) || !strncmp(s, "postgres://", 11);
}

static void redact_uri(const char *s, out_t *o)
{
    const char *rest = strstr(s, "://") + 3;
    put(o, s, (size_t)(rest - s));
    size_t auth = strcspn(rest, "/?");
    const char *at = NULL;
    for (size_t i = 0; i < auth; i++)
        if (rest[i] == '@')
            at = rest + i; /* the last one: a password may hold '@' only encoded */
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (colon) {
            put(o, rest, (size_t)(colon - rest) + 1);
            puts_(o, "***");
            put(o, at, (size_t)(rest + auth - at));
        } else {
            put(o, rest, auth);
        }
    } else {
        put(o, rest, auth);
    }
    const char *p = rest + auth;
    const char *q = strchr(p, '?');
    if (!q) {
        puts_(o, p);
        return;
    }
    put(o, p, (size_t)(q - p) + 1);
    for (p = q + 1; *p;) {
        size_t n = strcspn(p, "&");
        if (n >= 9 && !strncmp(p, "password=", 9)) {
            puts_(o, "password=***");
        } else {
            put(o, p, n);
        }
        p += n;
        if (*p == '&') {
            puts_(o, "&");
            p++;
        }
    }
}

static void redact_kv(const char *s, out_t *o)
{
    const char *p = s;
    while (*p) {
        if (isspace((unsigned char)*p)) {
            put(o, p++, 1);
            continue;
        }
        const char *key = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t klen = (size_t)(p - key);
        bool secret = klen == 8 && !strncmp(key, "password", 8);
        put(o, key, klen);
        const char *eq = p;
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=') { /* not keyword=value: copy on, masking from a password on */
            if (secret) {
                puts_(o, " ***");
                return;
            }
            put(o, eq, (size_t)(p - eq));
            continue;
        }
        p++;
        while (isspace((unsigned char)*p))
            p++;
        const char *val = p;
        if (*p == '\'') {
            for (p++; *p && *p != '\''; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p == '\'')
                p++;
        } else {
            while (*p && !isspace((unsigned char)*p)) {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
        }
        puts_(o, "=");
        if (secret)
            puts_(o, "***");
        else
            put(o, val, (size_t)(p - val));
    }
}

void pv_dsn_redact(const char *dsn, char *out, size_t outlen)
{
    if (!outlen)
        return;
    out_t o = {out, 0, outlen};
    out[0] = '\0';
    if (is_uri(dsn))
        redact_uri(dsn, &o);
    else
        redact_kv(dsn, &o);
}
