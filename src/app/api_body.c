/*
 * api_body.c — request bodies and list parameters in, checked C structs out
 * (see api_body.h). Pure: no I/O, and the only allocation is jansson's
 * tree, freed before return.
 *
 * jansson already refuses invalid UTF-8, "\u0000" in strings (without
 * JSON_ALLOW_NUL) and trailing garbage; duplicate keys need
 * JSON_REJECT_DUPLICATES. What it does not bound is nesting (it allows 2048
 * levels of recursion), so a cheap scan counts depth first, and raw NUL
 * bytes are refused before it sees them.
 */
#include "app/api_body.h"

#include "base/pv.h"
#include "base/text.h"
#include "model/users.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Every error the parsers report, once: the code a client sees, the
 * result the parser returns, and the HTTP status it is answered with
 * (pv_api_body_error in src/app/kit.c answers from err->status). */
enum body_code {
    INVALID_JSON, MISSING_FIELD, WRONG_TYPE, INVALID_EMAIL, PASSWORD_TOO_SHORT,
    PASSWORD_TOO_LONG, INVALID_VALUE, BODY_TOO_LARGE, OUT_OF_MEMORY,
};

static const struct body_code_row {
    const char *code;
    int rc;
    int status;
} g_body_codes[] = {
    [INVALID_JSON] = {"invalid_json", -EINVAL, 400},
    [MISSING_FIELD] = {"missing_field", -EINVAL, 400},
    [WRONG_TYPE] = {"wrong_type", -EINVAL, 400},
    [INVALID_EMAIL] = {"invalid_email", -EINVAL, 400},
    [PASSWORD_TOO_SHORT] = {"password_too_short", -EINVAL, 400},
    [PASSWORD_TOO_LONG] = {"password_too_long", -EINVAL, 400},
    [INVALID_VALUE] = {"invalid_value", -EINVAL, 400},
    [BODY_TOO_LARGE] = {"body_too_large", -EMSGSIZE, 413},
    [OUT_OF_MEMORY] = {"out_of_memory", -ENOMEM, 503},
};

/* Fills *err from the table row of `code` and the message; returns the
 * row's result (a negative errno). */
__attribute__((format(printf, 4, 5))) static int
body_err(pv_body_err_t *err, enum body_code code, const char *field,
         const char *fmt, ...)
{
    const struct body_code_row *row = &g_body_codes[code];
    va_list ap;
    err->field = field;
    err->code = row->code;
    err->rc = row->rc;
    err->status = row->status;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return row->rc;
}

static void err_clear(pv_body_err_t *err)
{
    err->field = "";
    err->code = "";
    err->rc = 0;
    err->status = 0;
    err->message[0] = '\0';
}

/* Deepest nesting of arrays/objects outside strings. Brackets inside
 * strings do not count; the JSON parser finds anything malformed. */
static int json_depth(const char *s, size_t n)
{
    int depth = 0, max = 0;
    bool in_str = false;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                max = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

int pv_body_object(const char *body, size_t len, json_t **out,
                   pv_body_err_t *err)
{
    json_error_t jerr;
    json_t *root;

    *out = NULL;
    err_clear(err);
    if (len > PV_BODY_MAX_BYTES)
        return body_err(err, BODY_TOO_LARGE, "",
                        "the body is over %d bytes", PV_BODY_MAX_BYTES);
    if (!body || len == 0)
        return body_err(err, INVALID_JSON, "", "the body is empty: "
                        "send a JSON object");
    if (memchr(body, '\0', len))
        return body_err(err, INVALID_JSON, "", "the body holds a NUL byte");
    if (json_depth(body, len) > PV_BODY_MAX_DEPTH)
        return body_err(err, INVALID_JSON, "", "the body nests deeper "
                        "than %d levels", PV_BODY_MAX_DEPTH);
    if (pv_fail("body.json"))
        return body_err(err, OUT_OF_MEMORY, "", "out of memory");
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return body_err(err, INVALID_JSON, "",
                        "the body is not valid JSON (line %d, column %d): %s",
                        jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return body_err(err, INVALID_JSON, "", "the body must be a JSON object");
    }
    *out = root;
    return 0;
}

/* A required string member: its value and byte length in *s / *n. */
static int member_string(json_t *obj, const char *key, const char **s,
                         size_t *n, pv_body_err_t *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return body_err(err, MISSING_FIELD, key, "%s is required", key);
    *s = json_string_value(v); /* NULL unless a string */
    *n = json_string_length(v);
    if (!*s)
        return body_err(err, WRONG_TYPE, key, "%s must be a string", key);
    return 0;
}

/* Code points in valid UTF-8 (jansson checked it). */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            c++;
    return c;
}

static int check_password(const char *pw, size_t n, bool signup,
                          pv_body_err_t *err)
{
    if (n > PV_PASSWORD_MAX)
        return body_err(err, PASSWORD_TOO_LONG, "password",
                        "password must be at most %d bytes", PV_PASSWORD_MAX);
    if (signup && utf8_chars(pw, n) < PV_PASSWORD_MIN)
        return body_err(err, PASSWORD_TOO_SHORT, "password",
                        "password must be at least %d characters",
                        PV_PASSWORD_MIN);
    if (n == 0)
        return body_err(err, INVALID_VALUE, "password",
                        "password must not be empty");
    return 0;
}

int pv_body_credentials(const char *body, size_t len, bool signup,
                        pv_credentials_t *out, pv_body_err_t *err)
{
    json_t *root;
    const char *email = NULL, *pw = NULL;
    size_t en = 0, pn = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = pv_body_object(body, len, &root, err);
    if (rc != 0)
        return rc;
    rc = member_string(root, "email", &email, &en, err);
    if (rc == 0)
        rc = member_string(root, "password", &pw, &pn, err);
    if (rc != 0)
        goto out;
    if (pv_email_normalize(email, out->email, sizeof(out->email)) != 0) {
        rc = body_err(err, INVALID_EMAIL, "email",
                      "email must look like name@example.com");
        goto out;
    }
    rc = check_password(pw, pn, signup, err);
    if (rc == 0 && pw)
        memcpy(out->password, pw, pn + 1);
out:
    json_decref(root);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int pv_body_refresh(const char *body, size_t len, pv_refresh_body_t *out,
                    pv_body_err_t *err)
{
    json_t *root;
    const char *tok = NULL;
    size_t n = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = pv_body_object(body, len, &root, err);
    if (rc != 0)
        return rc;
    rc = member_string(root, "refresh_token", &tok, &n, err);
    if (rc == 0 && (n == 0 || n >= sizeof(out->refresh_token)))
        rc = body_err(err, INVALID_VALUE, "refresh_token",
                      "refresh_token must be 1 to %zu bytes",
                      sizeof(out->refresh_token) - 1);
    if (rc == 0 && tok)
        memcpy(out->refresh_token, tok, n + 1);
    json_decref(root);
    return rc;
}

/* ---- list parameters ---- */

/* Percent-decodes v[0..n) into out (cap bytes with the NUL); '+' is a
 * space. -EINVAL on a bad escape, on %00 (it would cut the value short),
 * or when it does not fit. */
static int query_decode(const char *v, size_t n, char *out, size_t cap)
{
    ssize_t o = pv_pct_decode(v, n, out, cap - 1, PV_PCT_PLUS_SPACE | PV_PCT_NO_NUL);
    if (o < 0)
        return -EINVAL;
    out[o] = '\0';
    return 0;
}

static int param_limit(const char *v, size_t n, pv_list_params_t *out,
                       pv_body_err_t *err)
{
    char buf[8];
    int x = 0;

    if (query_decode(v, n, buf, sizeof(buf)) != 0 || buf[0] == '\0')
        goto bad;
    for (const char *p = buf; *p; p++) {
        if (*p < '0' || *p > '9')
            goto bad;
        x = x * 10 + (*p - '0'); /* at most 6 digits: no overflow */
    }
    if (x < 1 || x > PV_LIST_LIMIT_MAX)
        goto bad;
    out->limit = x;
    return 0;
bad:
    return body_err(err, INVALID_VALUE, "limit",
                    "limit must be a whole number from 1 to %d",
                    PV_LIST_LIMIT_MAX);
}

static int param_cursor(const char *v, size_t n, pv_list_params_t *out,
                        pv_body_err_t *err)
{
    if (query_decode(v, n, out->cursor, sizeof(out->cursor)) != 0)
        goto bad;
    for (const char *p = out->cursor; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            goto bad;
    out->has_cursor = out->cursor[0] != '\0';
    return 0;
bad:
    out->cursor[0] = '\0';
    return body_err(err, INVALID_VALUE, "cursor",
                    "cursor must be the next_cursor of an earlier page");
}

int pv_body_list_params(const char *query, pv_list_params_t *out,
                        pv_body_err_t *err)
{
    bool seen_limit = false, seen_cursor = false;
    const char *p = query ? query : "";
    int rc = 0;

    memset(out, 0, sizeof(*out));
    out->limit = PV_LIST_LIMIT_DEFAULT;
    err_clear(err);
    while (*p && rc == 0) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t kn = eq ? (size_t)(eq - p) : n;
        const char *v = eq ? eq + 1 : p + n;
        size_t vn = eq ? n - kn - 1 : 0;
        bool *seen = NULL;

        if (kn == 5 && memcmp(p, "limit", 5) == 0)
            seen = &seen_limit;
        else if (kn == 6 && memcmp(p, "cursor", 6) == 0)
            seen = &seen_cursor;
        if (seen && *seen)
            rc = body_err(err, INVALID_VALUE, seen == &seen_limit ? "limit" : "cursor",
                          "%.*s is given twice", (int)kn, p);
        else if (seen == &seen_limit)
            rc = param_limit(v, vn, out, err);
        else if (seen == &seen_cursor)
            rc = param_cursor(v, vn, out, err);
        if (seen)
            *seen = true;
        p += n + (p[n] == '&');
    }
    if (rc != 0) { /* leave nothing half-set */
        memset(out, 0, sizeof(*out));
        out->limit = PV_LIST_LIMIT_DEFAULT;
    }
    return rc;
}
