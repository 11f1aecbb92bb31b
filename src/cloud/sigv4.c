/*
 * sigv4.c — AWS Signature Version 4 (the contract is in sigv4.h).
 *
 * One pipeline serves header signing and query signing, so the two cannot
 * drift apart:
 *   1. check the inputs (refuse rather than sign something the server
 *      will see differently);
 *   2. collect the signed headers (lower-case names, trimmed values) and
 *      the query parameters (re-encoded; plus the X-Amz-* ones when
 *      presigning) into name/value lists, and sort them;
 *   3. print the canonical request and the string to sign;
 *   4. HMAC the string with the day's signing key;
 *   5. print what the caller adds: headers, or the signed query.
 * A list keeps its text in one string builder and refers to it by offset
 * while that may still move, then by pointer once sealed: a handful of
 * allocations per request and one failure flag to check. Nothing here
 * logs: the inputs carry secrets.
 */
#include "cloud/sigv4.h"

#include "base/crypto.h"
#include "base/text.h"
#include "base/pv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SV4_MAX_KEY_ID 128 /* access key ids are 16-128 chars */
#define SV4_MAX_NAME   64  /* region, service */
#define SV4_MAX_SECRET 255
#define SV4_MAX_DATE_S 253402300799LL /* 9999-12-31T23:59:59Z */
/* "YYYYMMDD/region/service/aws4_request" */
#define SV4_MAX_SCOPE (8 + 1 + SV4_MAX_NAME + 1 + SV4_MAX_NAME + 1 + 12 + 1)

/* ---- character classes and percent-encoding ---- */

static bool sv4_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static bool sv4_upper_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

/* RFC 7230 token: header names and methods. */
static bool sv4_is_token(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!sv4_unreserved(c) && !strchr("!#$%&'*+^`|", c))
            return false;
    }
    return true;
}

/* Visible ASCII only, none of `bad`, 1..max chars. */
static bool sv4_is_visible(const char *s, size_t max, const char *bad)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || strchr(bad, c))
            return false;
    }
    return true;
}

/* Region and service names go into the credential scope between '/'. */
static bool sv4_is_name(const char *s)
{
    size_t n = s ? strnlen(s, SV4_MAX_NAME + 1) : 0;
    if (n == 0 || n > SV4_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!sv4_unreserved((unsigned char)s[i]) || s[i] == '~')
            return false;
    return true;
}

/* The byte at s[*i], a %XX escape decoded when `decode`; advances *i. A
 * '%' without two hex digits after it is taken as a literal '%' (so it is
 * encoded as %25): there is nothing else it could mean. */
static unsigned char sv4_next_byte(const char *s, size_t n, size_t *i, bool decode)
{
    unsigned char c = (unsigned char)s[*i];
    if (decode && c == '%' && *i + 2 < n) {
        int hi = pv_hex_digit((unsigned char)s[*i + 1]);
        int lo = pv_hex_digit((unsigned char)s[*i + 2]);
        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return (unsigned char)(hi << 4 | lo);
        }
    }
    (*i)++;
    return c;
}

static void sv4_encode(pv_sb_t *sb, const char *s, size_t n, bool keep_slash, bool decode)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0;
    while (i < n) {
        unsigned char c = sv4_next_byte(s, n, &i, decode);
        if (sv4_unreserved(c) || (keep_slash && c == '/')) {
            char ch = (char)c;
            pv_sb_add(sb, &ch, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            pv_sb_add(sb, esc, 3);
        }
    }
}

void pv_sigv4_uri_encode(pv_sb_t *sb, const char *s, size_t n, bool keep_slash)
{
    sv4_encode(sb, s, n, keep_slash, false);
}

/* ---- the path ---- */

/* A path S3 can take as sent: unreserved bytes, '/' and upper-case %XX,
 * which is exactly what pv_sigv4_uri_encode() makes. Anything else would
 * be re-encoded by whoever sends it and the signature would not match,
 * so it is refused rather than signed. */
static bool sv4_s3_path_ok(const char *p)
{
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (sv4_unreserved(c) || c == '/')
            continue;
        if (c != '%' || !sv4_upper_hex(p[1]) || !sv4_upper_hex(p[2]))
            return false;
        p += 2;
    }
    return true;
}

/* Other services: any bytes but controls and the query/fragment marks
 * (AWS's suite signs raw spaces and UTF-8; they are encoded below). */
static bool sv4_path_ok(const char *p, unsigned flags)
{
    if (*p != '/')
        return false;
    if (flags & PV_SIGV4_S3)
        return sv4_s3_path_ok(p);
    for (; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '?' || *p == '#')
            return false;
    return true;
}

/* Drops empty and "." segments and resolves ".." (never above the root);
 * keeps a trailing slash unless nothing is left. Same rules as botocore
 * and the AWS suite's "normalized" cases. */
static void sv4_normalize(pv_sb_t *out, const char *path)
{
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (out->len > 0 && out->p[out->len - 1] != '/')
                out->len--;
            if (out->len > 0)
                out->len--; /* the '/' before the dropped segment */
        } else if (len > 0 && !(len == 1 && p[0] == '.')) {
            pv_sb_add(out, "/", 1);
            pv_sb_add(out, p, len);
        }
        p += len;
    }
    if (out->len == 0)
        pv_sb_add(out, "/", 1);
    else if (path[strlen(path) - 1] == '/')
        pv_sb_add(out, "/", 1);
    if (out->p)
        out->p[out->len] = '\0';
}

static void sv4_canonical_path(pv_sb_t *sb, const char *path, unsigned flags)
{
    if (flags & PV_SIGV4_S3) {
        pv_sb_puts(sb, path); /* encoded once already; checked above */
        return;
    }
    if (flags & PV_SIGV4_NO_NORMALIZE) {
        sv4_encode(sb, path, strlen(path), true, false);
        return;
    }
    pv_sb_t norm = {0};
    sv4_normalize(&norm, path);
    if (norm.failed)
        sb->failed = true;
    else
        sv4_encode(sb, norm.p, norm.len, true, false);
    pv_sb_free(&norm);
}

/* ---- name/value lists (headers, query parameters) ---- */

typedef struct sv4_kv {
    size_t name_off, value_off; /* into the list's text while it may move */
    const char *name, *value;   /* set by sv4_list_seal() */
    size_t order;               /* insertion order: duplicates stay in order */
} sv4_kv_t;

typedef struct sv4_list {
    sv4_kv_t *v;  /* entries */
    size_t n;     /* entries used */
    size_t cap;   /* entries allocated */
    pv_sb_t text; /* every name and value, each NUL-terminated */
    bool failed;  /* an allocation failed: the list is incomplete */
} sv4_list_t;

/* Starts an entry; its name is appended to l->text next. */
static sv4_kv_t *sv4_list_begin(sv4_list_t *l)
{
    if (l->failed)
        return NULL;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        sv4_kv_t *v = pv_fail("sigv4.alloc") ? NULL : realloc(l->v, cap * sizeof(*v));
        if (!v) {
            l->failed = true;
            return NULL;
        }
        l->v = v;
        l->cap = cap;
    }
    sv4_kv_t *kv = &l->v[l->n];
    kv->order = l->n++;
    kv->name_off = l->text.len;
    return kv;
}

/* Ends the name just appended; the value is appended next. */
static void sv4_list_value(sv4_list_t *l, sv4_kv_t *kv)
{
    pv_sb_add(&l->text, "", 1);
    kv->value_off = l->text.len;
}

static void sv4_list_end(sv4_list_t *l) { pv_sb_add(&l->text, "", 1); }

/* The text stops moving: offsets become pointers, then sort. */
static int sv4_list_seal(sv4_list_t *l, int (*cmp)(const void *, const void *))
{
    if (l->failed || l->text.failed)
        return -ENOMEM;
    for (size_t i = 0; i < l->n; i++) {
        l->v[i].name = l->text.p + l->v[i].name_off;
        l->v[i].value = l->text.p + l->v[i].value_off;
    }
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), cmp);
    return 0;
}

static void sv4_list_free(sv4_list_t *l)
{
    free(l->v);
    pv_sb_free(&l->text);
    *l = (sv4_list_t){0};
}

/* Headers: by name, duplicates in the order given (their values are
 * joined with ',' in that order, not sorted). */
static int sv4_header_cmp(const void *a, const void *b)
{
    const sv4_kv_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Parameters: by encoded name, then encoded value. */
static int sv4_param_cmp(const void *a, const void *b)
{
    const sv4_kv_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* ---- headers ---- */

static bool sv4_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* A value may hold folded lines (CR/LF then a blank: the suite's
 * multi-line case) but no other controls: a bare line break would let a
 * value start a header of its own. */
static bool sv4_value_ok(const char *v)
{
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '\r' || c == '\n') {
            const char *next = v + strspn(v, "\r\n");
            if (*next != ' ' && *next != '\t')
                return false;
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Appends v trimmed, each run of whitespace (line folds too) made one
 * space: SigV4's Trimall. */
static void sv4_trimall(pv_sb_t *sb, const char *v)
{
    bool gap = false, seen = false;
    for (; *v; v++) {
        if (sv4_is_space(*v)) {
            gap = seen;
            continue;
        }
        if (gap)
            pv_sb_add(sb, " ", 1);
        pv_sb_add(sb, v, 1);
        gap = false;
        seen = true;
    }
}

static void sv4_add_header(sv4_list_t *l, const char *name, const char *value)
{
    sv4_kv_t *kv = sv4_list_begin(l);
    if (!kv)
        return;
    for (const char *p = name; *p; p++) {
        char c = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
        pv_sb_add(&l->text, &c, 1);
    }
    sv4_list_value(l, kv);
    sv4_trimall(&l->text, value);
    sv4_list_end(l);
}

/* ---- query parameters ---- */

/* Presign parameters, in the order they are appended to the URL (that of
 * AWS's own signer); X-Amz-Signature comes last. */
static const char *const sv4_auth_params[] = {
    "X-Amz-Algorithm", "X-Amz-Credential",     "X-Amz-Date",      "X-Amz-SignedHeaders",
    "X-Amz-Expires",   "X-Amz-Security-Token", "X-Amz-Signature",
};

static void sv4_add_param(sv4_list_t *l, const char *name, size_t nlen, const char *value,
                          size_t vlen, bool decode)
{
    sv4_kv_t *kv = sv4_list_begin(l);
    if (!kv)
        return;
    sv4_encode(&l->text, name, nlen, false, decode);
    sv4_list_value(l, kv);
    sv4_encode(&l->text, value, vlen, false, decode);
    sv4_list_end(l);
}

/* Calls fn for each "name[=value]" piece of q; empty pieces carry no
 * parameter and are skipped. */
static void sv4_query_each(const char *q,
                           void (*fn)(void *arg, const char *name, size_t nlen, const char *value,
                                      size_t vlen),
                           void *arg)
{
    while (q && *q) {
        size_t len = strcspn(q, "&");
        if (len > 0) {
            const char *eq = memchr(q, '=', len);
            size_t nlen = eq ? (size_t)(eq - q) : len;
            fn(arg, q, nlen, eq ? eq + 1 : "", eq ? len - nlen - 1 : 0);
        }
        q += len;
        if (*q)
            q++;
    }
}

static void sv4_param_cb(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    sv4_add_param(arg, name, nlen, value, vlen, true);
}

/* Sets *(bool *)arg when a name (decoded) is one of the presign
 * parameters: presigning a URL that already carries them is a bug. */
static void sv4_auth_param_cb(void *arg, const char *name, size_t nlen, const char *value,
                              size_t vlen)
{
    char dec[32];
    size_t i = 0, n = 0;
    while (i < nlen && n < sizeof(dec) - 1)
        dec[n++] = (char)sv4_next_byte(name, nlen, &i, true);
    dec[n] = '\0';
    for (size_t k = 0; k < PV_ARRAY_LEN(sv4_auth_params); k++)
        if (i == nlen && strcasecmp(dec, sv4_auth_params[k]) == 0)
            *(bool *)arg = true;
}

/* ---- checking the inputs ---- */

static const char *sv4_token(const pv_sigv4_ctx_t *ctx)
{
    return ctx->token && *ctx->token ? ctx->token : NULL;
}

/* Headers the signer writes itself: a second copy would be signed too. */
static bool sv4_signer_owns(const pv_sigv4_ctx_t *ctx, const pv_sigv4_req_t *req, const char *name)
{
    if (strcasecmp(name, "authorization") == 0 || strcasecmp(name, "x-amz-date") == 0)
        return true;
    if (sv4_token(ctx) && strcasecmp(name, "x-amz-security-token") == 0)
        return true;
    return req->mode == PV_SIGV4_HEADER && (req->flags & PV_SIGV4_CONTENT_SHA256) &&
           strcasecmp(name, "x-amz-content-sha256") == 0;
}

static int sv4_check_headers(const pv_sigv4_ctx_t *ctx, const pv_sigv4_req_t *req)
{
    bool host = false;
    if (req->n_headers > 0 && !req->headers)
        return -EINVAL;
    for (size_t i = 0; i < req->n_headers; i++) {
        const char *name = req->headers[i].name, *value = req->headers[i].value;
        if (!sv4_is_token(name) || !value || !sv4_value_ok(value) ||
            sv4_signer_owns(ctx, req, name))
            return -EINVAL;
        host |= strcasecmp(name, "host") == 0;
    }
    return host ? 0 : -EINVAL; /* SigV4 always signs Host */
}

/* 64 lower-case hex digits, or one of AWS's named constants
 * (UNSIGNED-PAYLOAD, STREAMING-...). */
static bool sv4_payload_ok(const char *h)
{
    size_t n = h ? strnlen(h, 65) : 0;
    bool hex = n == 64, named = n > 0 && n <= 64;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        hex = hex && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        named = named && ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-');
    }
    return hex || named;
}

static bool sv4_query_ok(const char *q)
{
    for (; q && *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f || *q == '#')
            return false;
    return true;
}

/* The key id, region and service go into the scope between '/' and the
 * Authorization value between ','; the token into a header. */
static int sv4_check_ctx(const pv_sigv4_ctx_t *ctx)
{
    size_t secret_len = ctx->secret ? strnlen(ctx->secret, SV4_MAX_SECRET + 1) : 0;
    if (!sv4_is_visible(ctx->key_id, SV4_MAX_KEY_ID, "/,") || !sv4_is_name(ctx->region) ||
        !sv4_is_name(ctx->service))
        return -EINVAL;
    if (!ctx->signing_key && (secret_len == 0 || secret_len > SV4_MAX_SECRET))
        return -EINVAL;
    if (sv4_token(ctx) && !sv4_is_visible(ctx->token, SIZE_MAX - 1, ""))
        return -EINVAL;
    if (ctx->time_s < 0 || ctx->time_s > SV4_MAX_DATE_S)
        return -EINVAL;
    return 0;
}

static int sv4_check(const pv_sigv4_ctx_t *ctx, const pv_sigv4_req_t *req)
{
    int rc = sv4_check_ctx(ctx);
    if (rc)
        return rc;
    if (req->mode != PV_SIGV4_HEADER && req->mode != PV_SIGV4_QUERY)
        return -EINVAL;
    if (!sv4_is_token(req->method) || !sv4_payload_ok(req->payload_hash))
        return -EINVAL;
    if (req->path && *req->path && !sv4_path_ok(req->path, req->flags))
        return -EINVAL;
    if (!sv4_query_ok(req->query))
        return -EINVAL;
    if (req->mode == PV_SIGV4_QUERY) {
        bool taken = false;
        if (req->expires_s < 1 || req->expires_s > PV_SIGV4_MAX_EXPIRES)
            return -EINVAL;
        sv4_query_each(req->query, sv4_auth_param_cb, &taken);
        if (taken)
            return -EINVAL;
    }
    return sv4_check_headers(ctx, req);
}

/* ---- the signing job ---- */

typedef struct sv4_job {
    const pv_sigv4_ctx_t *ctx;                           /* who, where, when */
    const pv_sigv4_req_t *req;                           /* what */
    const char *token;                                   /* session token, NULL when none */
    bool token_signed;                                   /* false: added after signing */
    char scope[SV4_MAX_SCOPE];                           /* day/region/service/aws4_request */
    char credential[SV4_MAX_KEY_ID + 1 + SV4_MAX_SCOPE]; /* key_id/scope */
    char expires[16];                                    /* X-Amz-Expires as text */
    sv4_list_t headers;                                  /* signed headers, sorted */
    sv4_list_t params;                                   /* canonical query parameters, sorted */
    pv_sb_t signed_headers;                              /* "host;x-amz-date" */
} sv4_job_t;

/* X-Amz-* presign parameters as (name, value), in URL order, without the
 * signature. */
static size_t sv4_presign_params(const sv4_job_t *j, const pv_sigv4_out_t *out,
                                 pv_sigv4_header_t p[6])
{
    const char *values[] = {PV_SIGV4_ALGORITHM,  j->credential, out->amz_date,
                            j->signed_headers.p, j->expires,    j->token};
    size_t n = 0;
    for (size_t i = 0; i < PV_ARRAY_LEN(values); i++)
        if (values[i])
            p[n++] = (pv_sigv4_header_t){sv4_auth_params[i], values[i]};
    return n;
}

static int sv4_collect_headers(sv4_job_t *j, const pv_sigv4_out_t *out)
{
    const pv_sigv4_req_t *req = j->req;
    for (size_t i = 0; i < req->n_headers; i++)
        sv4_add_header(&j->headers, req->headers[i].name, req->headers[i].value);
    if (req->mode == PV_SIGV4_HEADER) {
        sv4_add_header(&j->headers, "x-amz-date", out->amz_date);
        if (j->token && j->token_signed)
            sv4_add_header(&j->headers, "x-amz-security-token", j->token);
        if (req->flags & PV_SIGV4_CONTENT_SHA256)
            sv4_add_header(&j->headers, "x-amz-content-sha256", req->payload_hash);
    }
    int rc = sv4_list_seal(&j->headers, sv4_header_cmp);
    if (rc)
        return rc;
    for (size_t i = 0; i < j->headers.n; i++) {
        if (i > 0 && strcmp(j->headers.v[i].name, j->headers.v[i - 1].name) == 0)
            continue;
        if (i > 0)
            pv_sb_add(&j->signed_headers, ";", 1);
        pv_sb_puts(&j->signed_headers, j->headers.v[i].name);
    }
    return j->signed_headers.failed ? -ENOMEM : 0;
}

static int sv4_collect_params(sv4_job_t *j, const pv_sigv4_out_t *out)
{
    sv4_query_each(j->req->query, sv4_param_cb, &j->params);
    if (j->req->mode == PV_SIGV4_QUERY) {
        pv_sigv4_header_t p[6];
        size_t n = sv4_presign_params(j, out, p);
        for (size_t i = 0; i < n; i++)
            if (j->token_signed || strcmp(p[i].name, "X-Amz-Security-Token") != 0)
                sv4_add_param(&j->params, p[i].name, strlen(p[i].name), p[i].value,
                              strlen(p[i].value), false);
    }
    return sv4_list_seal(&j->params, sv4_param_cmp);
}

static void sv4_canonical_request(const sv4_job_t *j, pv_sb_t *cr)
{
    const pv_sigv4_req_t *req = j->req;
    pv_sb_printf(cr, "%s\n", req->method);
    sv4_canonical_path(cr, req->path && *req->path ? req->path : "/", req->flags);
    pv_sb_add(cr, "\n", 1);
    for (size_t i = 0; i < j->params.n; i++)
        pv_sb_printf(cr, "%s%s=%s", i ? "&" : "", j->params.v[i].name, j->params.v[i].value);
    pv_sb_add(cr, "\n", 1);
    for (size_t i = 0; i < j->headers.n; i++) {
        const sv4_kv_t *h = &j->headers.v[i];
        bool same = i > 0 && strcmp(h->name, j->headers.v[i - 1].name) == 0;
        if (same)
            pv_sb_printf(cr, ",%s", h->value);
        else
            pv_sb_printf(cr, "%s%s:%s", i ? "\n" : "", h->name, h->value);
    }
    pv_sb_printf(cr, "\n\n%s\n%s", j->signed_headers.p, req->payload_hash);
}

static int sv4_sign_string(const sv4_job_t *j, pv_sigv4_out_t *out)
{
    uint8_t hash[32], key[32], mac[32];
    char hex[65];
    pv_sha256(out->canonical_request.p, out->canonical_request.len, hash);
    pv_hex(hash, sizeof(hash), hex);
    pv_sb_printf(&out->string_to_sign, "%s\n%s\n%s\n%s", PV_SIGV4_ALGORITHM, out->amz_date,
                 j->scope, hex);
    if (out->string_to_sign.failed)
        return -ENOMEM;
    if (j->ctx->signing_key)
        memcpy(key, j->ctx->signing_key, sizeof(key));
    else if (pv_sigv4_signing_key(j->ctx->secret, out->amz_date, j->ctx->region, j->ctx->service,
                                  key) != 0)
        return -EINVAL; /* cannot happen: sv4_check() passed these */
    pv_hmac_sha256(key, sizeof(key), out->string_to_sign.p, out->string_to_sign.len, mac);
    explicit_bzero(key, sizeof(key));
    pv_hex(mac, sizeof(mac), out->signature);
    return 0;
}

/* Header mode: Authorization, and the headers to add in the order AWS's
 * suite shows them. */
static void sv4_finish_headers(const sv4_job_t *j, pv_sigv4_out_t *out)
{
    pv_sb_printf(&out->authorization, "%s Credential=%s, SignedHeaders=%s, Signature=%s",
                 PV_SIGV4_ALGORITHM, j->credential, j->signed_headers.p, out->signature);
    if (j->token)
        out->add[out->n_add++] = (pv_sigv4_header_t){"X-Amz-Security-Token", j->token};
    out->add[out->n_add++] = (pv_sigv4_header_t){"X-Amz-Date", out->amz_date};
    if (j->req->flags & PV_SIGV4_CONTENT_SHA256)
        out->add[out->n_add++] = (pv_sigv4_header_t){"x-amz-content-sha256", j->req->payload_hash};
    out->add[out->n_add++] = (pv_sigv4_header_t){"Authorization", out->authorization.p};
}

/* Query mode: the request's own query as sent, then the X-Amz-* ones. */
static void sv4_finish_query(const sv4_job_t *j, pv_sigv4_out_t *out)
{
    const char *q = j->req->query ? j->req->query : "";
    size_t qlen = strlen(q);
    pv_sigv4_header_t p[6];
    size_t n = sv4_presign_params(j, out, p);

    pv_sb_add(&out->query, q, qlen);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 || (qlen > 0 && q[qlen - 1] != '&'))
            pv_sb_add(&out->query, "&", 1);
        pv_sb_printf(&out->query, "%s=", p[i].name);
        sv4_encode(&out->query, p[i].value, strlen(p[i].value), false, false);
    }
    pv_sb_printf(&out->query, "&X-Amz-Signature=%s", out->signature);
}

static int sv4_job_init(sv4_job_t *j, const pv_sigv4_ctx_t *ctx, const pv_sigv4_req_t *req,
                        pv_sigv4_out_t *out)
{
    *j = (sv4_job_t){.ctx = ctx, .req = req, .token = sv4_token(ctx)};
    j->token_signed = !(req->flags & PV_SIGV4_TOKEN_UNSIGNED);
    if (pv_sigv4_amz_date(ctx->time_s, out->amz_date) != 0)
        return -EINVAL;
    /* lengths were checked: neither can be cut */
    snprintf(j->scope, sizeof(j->scope), "%.8s/%s/%s/aws4_request", out->amz_date, ctx->region,
             ctx->service);
    snprintf(j->credential, sizeof(j->credential), "%s/%s", ctx->key_id, j->scope);
    snprintf(j->expires, sizeof(j->expires), "%d", req->expires_s);
    return 0;
}

static void sv4_job_free(sv4_job_t *j)
{
    sv4_list_free(&j->headers);
    sv4_list_free(&j->params);
    pv_sb_free(&j->signed_headers);
}

static bool sv4_out_failed(const pv_sigv4_out_t *out)
{
    return out->canonical_request.failed || out->string_to_sign.failed ||
           out->authorization.failed || out->query.failed;
}

int pv_sigv4_sign(const pv_sigv4_ctx_t *ctx, const pv_sigv4_req_t *req, pv_sigv4_out_t *out)
{
    sv4_job_t j;
    int rc;

    if (!out)
        return -EINVAL;
    *out = (pv_sigv4_out_t){0};
    if (!ctx || !req)
        return -EINVAL;
    rc = sv4_check(ctx, req);
    if (rc)
        return rc;
    rc = sv4_job_init(&j, ctx, req, out);
    if (rc == 0)
        rc = sv4_collect_headers(&j, out);
    if (rc == 0)
        rc = sv4_collect_params(&j, out);
    if (rc)
        goto out;
    sv4_canonical_request(&j, &out->canonical_request);
    rc = out->canonical_request.failed ? -ENOMEM : sv4_sign_string(&j, out);
    if (rc)
        goto out;
    if (req->mode == PV_SIGV4_HEADER)
        sv4_finish_headers(&j, out);
    else
        sv4_finish_query(&j, out);
    rc = sv4_out_failed(out) ? -ENOMEM : 0;
out:
    sv4_job_free(&j);
    if (rc)
        pv_sigv4_out_free(out);
    return rc;
}

void pv_sigv4_out_free(pv_sigv4_out_t *out)
{
    if (!out)
        return;
    pv_sb_free(&out->canonical_request);
    pv_sb_free(&out->string_to_sign);
    pv_sb_free(&out->authorization);
    pv_sb_free(&out->query);
    *out = (pv_sigv4_out_t){0};
}

/* ---- keys and dates ---- */

static void sv4_hmac_str(const uint8_t key[32], const char *s, uint8_t out[32])
{
    pv_hmac_sha256(key, 32, s, strlen(s), out);
}

int pv_sigv4_signing_key(const char *secret, const char *yyyymmdd, const char *region,
                         const char *service, uint8_t key[32])
{
    char k_secret[4 + SV4_MAX_SECRET];
    uint8_t k_date[32], k_region[32], k_service[32];
    size_t n = secret ? strnlen(secret, SV4_MAX_SECRET + 1) : 0;

    if (n == 0 || n > SV4_MAX_SECRET || !yyyymmdd || !sv4_is_name(region) || !sv4_is_name(service))
        return -EINVAL;
    for (int i = 0; i < 8; i++)
        if (yyyymmdd[i] < '0' || yyyymmdd[i] > '9')
            return -EINVAL;
    /* kSecret = "AWS4" + secret; then date, region, service, "aws4_request" */
    memcpy(k_secret, "AWS4", 4);
    memcpy(k_secret + 4, secret, n);
    pv_hmac_sha256(k_secret, 4 + n, yyyymmdd, 8, k_date);
    sv4_hmac_str(k_date, region, k_region);
    sv4_hmac_str(k_region, service, k_service);
    sv4_hmac_str(k_service, "aws4_request", key);
    /* the secret and every step towards the key */
    explicit_bzero(k_secret, sizeof(k_secret));
    explicit_bzero(k_date, sizeof(k_date));
    explicit_bzero(k_region, sizeof(k_region));
    explicit_bzero(k_service, sizeof(k_service));
    return 0;
}

int pv_sigv4_amz_date(int64_t t, char out[17])
{
    struct tm tm;
    time_t tt = (time_t)t;

    if (t < 0 || t > SV4_MAX_DATE_S || !gmtime_r(&tt, &tm) ||
        strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return -EINVAL;
    return 0;
}
