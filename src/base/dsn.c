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
#include <stdlib.h>
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

/* Whether a URI parameter's name (percent-encoded, as libpq decodes it)
 * is "password". */
static bool is_password_key(const char *k, size_t n)
{
    char dec[16];
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)k[i];
        if (c == '%' && i + 2 < n && isxdigit((unsigned char)k[i + 1]) &&
            isxdigit((unsigned char)k[i + 2])) {
            char hx[3] = {k[i + 1], k[i + 2], 0};
            c = (int)strtol(hx, NULL, 16);
            i += 2;
        }
        if (d == sizeof(dec) - 1)
            return false;
        dec[d++] = (char)c;
    }
    dec[d] = '\0';
    return d == 8 && !memcmp(dec, "password", 8);
}

/* libpq's URI grammar: user:password@ up to the first '@' before any '/'
 * (a '?' does not end it), then hosts, then ?name=value&... */
static void redact_uri(const char *s, out_t *o)
{
    const char *rest = strstr(s, "://") + 3;
    put(o, s, (size_t)(rest - s));
    size_t ui = strcspn(rest, "@/");
    if (rest[ui] == '@') {
        const char *colon = memchr(rest, ':', ui);
        if (colon) {
            put(o, rest, (size_t)(colon - rest) + 1);
            puts_(o, "***");
        } else {
            put(o, rest, ui);
        }
        puts_(o, "@");
        rest += ui + 1;
    }
    const char *q = strchr(rest, '?');
    if (!q) {
        puts_(o, rest);
        return;
    }
    put(o, rest, (size_t)(q - rest) + 1);
    for (const char *p = q + 1; *p;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        if (eq && is_password_key(p, (size_t)(eq - p))) {
            put(o, p, (size_t)(eq - p) + 1);
            /* a '/' in it kept: without it, an '@' further on would turn
             * what precedes it into user:password@ for libpq */
            puts_(o, memchr(eq, '/', (size_t)(p + n - eq)) ? "***/" : "***");
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
        if (secret) /* kept apart from what follows, as the quotes kept it */
            puts_(o, *p && !isspace((unsigned char)*p) ? "*** " : "***");
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
