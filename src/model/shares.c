/*
 * shares.c — share links at the transaction level, and the pure pieces
 * of the share page: its cookie, the password form's body, the HTML.
 *
 * Shares are few next to photos and videos, so the one database is keyed
 * by what the public side looks up (the token's hash) and the owner's
 * views (a video's shares, a share by id) are scans. The page is written
 * here rather than in a template file: it is small, every piece of user
 * text in it goes through pv_share_esc, and it has no script and no
 * inline style, so the strict CSP holds for it as for the web UI.
 */
#include "model/shares.h"
#include "base/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------- records ---------------- */

int pv_share_load(pv_txn_t *txn, const uint8_t hash[32], pv_share_t *s)
{
    pv_val_t val;
    int rc = pv_txn_get(txn, PV_DB_SHARES, hash, 32, &val);
    return rc < 0 ? rc : pv_share_decode(val.data, val.len, s);
}

int pv_share_save(pv_txn_t *txn, const uint8_t hash[32], const pv_share_t *s)
{
    char *buf;
    size_t len;
    int rc = pv_share_encode(s, &buf, &len);
    if (rc < 0)
        return rc;
    rc = pv_txn_put(txn, PV_DB_SHARES, hash, 32, buf, len, false);
    free(buf);
    return rc;
}

typedef struct each_ctx {
    const uint8_t *user, *video;
    pv_share_fn fn;
    void *arg;
} each_ctx_t;

static int each_one(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    each_ctx_t *e = arg;
    pv_share_t s;
    if (k->len != 32 || pv_share_decode(v->data, v->len, &s) < 0)
        return 0; /* pvd check reports a bad record; a list skips it */
    if ((e->user && memcmp(s.user_id, e->user, 16) != 0) ||
        (e->video && memcmp(s.video_id, e->video, 16) != 0))
        return 0;
    return e->fn(e->arg, k->data, &s);
}

int pv_share_each(pv_txn_t *txn, const uint8_t *user, const uint8_t *video, pv_share_fn fn,
                  void *arg)
{
    each_ctx_t e = {user, video, fn, arg};
    return pv_txn_scan(txn, PV_DB_SHARES, NULL, 0, NULL, 0, false, each_one, &e);
}

typedef struct share_rows {
    pv_share_t *items;
    size_t n, cap;
} share_rows_t;

static int share_row(void *arg, const uint8_t hash[32], const pv_share_t *s)
{
    (void)hash;
    share_rows_t *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        pv_share_t *p = realloc(l->items, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n++] = *s;
    return 0;
}

/* Newest first: ids start with their creation time. */
static int newest_first(const void *a, const void *b)
{
    return memcmp(((const pv_share_t *)b)->id, ((const pv_share_t *)a)->id, 16);
}

int pv_share_list(pv_txn_t *txn, const uint8_t *user, const uint8_t *video, pv_share_t **out,
                  size_t *n)
{
    share_rows_t l = {0};
    int rc = pv_share_each(txn, user, video, share_row, &l);
    if (rc < 0) {
        free(l.items);
        l.items = NULL;
        l.n = 0;
    } else if (l.n) {
        qsort(l.items, l.n, sizeof(*l.items), newest_first);
    }
    *out = l.items;
    *n = l.n;
    return rc < 0 ? rc : 0;
}

typedef struct find_ctx {
    const uint8_t *id;
    uint8_t *hash;
    pv_share_t *out;
    bool found;
} find_ctx_t;

static int find_one(void *arg, const uint8_t hash[32], const pv_share_t *s)
{
    find_ctx_t *f = arg;
    if (memcmp(s->id, f->id, 16) != 0)
        return 0;
    memcpy(f->hash, hash, 32);
    *f->out = *s;
    f->found = true;
    return 1;
}

int pv_share_find(pv_txn_t *txn, const uint8_t id[16], const uint8_t *user, uint8_t hash[32],
                  pv_share_t *s)
{
    find_ctx_t f = {id, hash, s, false};
    int rc = pv_share_each(txn, user, NULL, find_one, &f);
    return rc < 0 ? rc : f.found ? 0 : -ENOENT;
}

/* Keys are collected first: a scan must not delete under its cursor. */
typedef struct drop_ctx {
    uint8_t (*keys)[32];
    size_t n, cap;
} drop_ctx_t;

static int drop_one(void *arg, const uint8_t hash[32], const pv_share_t *s)
{
    (void)s;
    drop_ctx_t *d = arg;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        void *p = realloc(d->keys, cap * sizeof(*d->keys));
        if (!p)
            return -ENOMEM;
        d->keys = p;
        d->cap = cap;
    }
    memcpy(d->keys[d->n++], hash, 32);
    return 0;
}

int pv_share_drop_video(pv_txn_t *txn, const uint8_t user[16], const uint8_t video[16])
{
    drop_ctx_t d = {0};
    int rc = pv_share_each(txn, user, video, drop_one, &d);
    for (size_t i = 0; i < d.n && rc == 0; i++)
        rc = pv_txn_del(txn, PV_DB_SHARES, d.keys[i], 32);
    free(d.keys);
    return rc < 0 ? rc : (int)d.n;
}

json_t *pv_share_json(const pv_share_t *s, int64_t now_ms)
{
    char id[PV_ID_TEXT], vid[PV_ID_TEXT], created[32], expires[32];
    pv_id_encode(s->id, id);
    pv_id_encode(s->video_id, vid);
    pv_time_format(s->created_ms, created);
    pv_time_format(s->expires_ms, expires);
    return json_pack("{s:s,s:s,s:s,s:s,s:b,s:b,s:I}", "id", id, "video_id", vid, "created_at",
                     created, "expires_at", expires, "expired", now_ms >= s->expires_ms,
                     "has_password", s->pw_hash[0] != '\0', "views", (json_int_t)s->views);
}

/* ---------------- the cookie ---------------- */

static void cookie_sig(const uint8_t key[32], const pv_share_t *s, char out[44])
{
    char id[PV_ID_TEXT], msg[96];
    pv_id_encode(s->id, id);
    int n = snprintf(msg, sizeof(msg), "pv-share\n%s\n%lld", id, (long long)s->expires_ms);
    uint8_t mac[32];
    pv_hmac_sha256(key, 32, msg, (size_t)n, mac);
    pv_b64url_encode(mac, sizeof(mac), out);
}

void pv_share_cookie_make(const pv_keys_t *keys, const pv_share_t *s,
                          char out[PV_SHARE_COOKIE_TEXT])
{
    char sig[44];
    cookie_sig(keys->presign[0], s, sig);
    snprintf(out, PV_SHARE_COOKIE_TEXT, "%u.%s", (unsigned)keys->presign_kid[0], sig);
}

/* One cookie value "<kid>.<sig>" ([p, p+n)) against s. */
static bool cookie_value_ok(const pv_keys_t *keys, const pv_share_t *s, const char *p, size_t n)
{
    const char *dot = memchr(p, '.', n);
    if (!dot || dot == p || dot - p > 10 || (size_t)(p + n - (dot + 1)) != 43)
        return false;
    unsigned long kid = 0;
    for (const char *q = p; q < dot; q++) {
        if (*q < '0' || *q > '9')
            return false;
        kid = kid * 10 + (unsigned long)(*q - '0');
    }
    for (int i = 0; i < keys->n_presign && i < PV_MAX_PRESIGN_KEYS; i++) {
        if (keys->presign_kid[i] != kid)
            continue;
        char want[44];
        cookie_sig(keys->presign[i], s, want);
        return pv_memeq_ct(want, dot + 1, 43) == 0; /* 0: equal */
    }
    return false;
}

bool pv_share_cookie_ok(const pv_keys_t *keys, const pv_share_t *s, const char *h)
{
    static const char name[] = PV_SHARE_COOKIE "=";
    const size_t nl = sizeof(name) - 1;
    for (const char *p = h; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        size_t n = strcspn(p, ";");
        if (n > nl && strncmp(p, name, nl) == 0) {
            size_t vn = n - nl;
            while (vn && (p[nl + vn - 1] == ' ' || p[nl + vn - 1] == '\t'))
                vn--;
            if (cookie_value_ok(keys, s, p + nl, vn))
                return true;
        }
        p += n;
    }
    return false;
}

/* ---------------- the password form ---------------- */

static int password_ok(const char *s, size_t n)
{
    if (n == 0 || n > PV_SHARE_PASSWORD_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n;) {
        size_t l = pv_utf8_len((const unsigned char *)s + i, n - i);
        if (l == 0 || s[i] == '\0')
            return -EINVAL;
        i += l;
    }
    return 0;
}

static int password_json(const char *body, size_t len, char *out)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    const char *pw = json_string_value(json_object_get(root, "password"));
    size_t n = pw ? json_string_length(json_object_get(root, "password")) : 0;
    int rc = pw && strlen(pw) == n ? password_ok(pw, n) : -EINVAL;
    if (rc == 0) {
        memcpy(out, pw, n);
        out[n] = '\0';
    }
    json_decref(root);
    return rc;
}

static int password_form(const char *body, size_t len, char *out)
{
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > 9 && memcmp(p, "password=", 9) == 0) {
            ssize_t n = pv_pct_decode(p + 9, (size_t)(e - p - 9), out, PV_SHARE_PASSWORD_MAX,
                                      PV_PCT_PLUS_SPACE | PV_PCT_NO_NUL);
            if (n < 0 || password_ok(out, (size_t)n) < 0)
                return -EINVAL;
            out[n] = '\0';
            return 0;
        }
        p = e + 1;
    }
    return -EINVAL;
}

int pv_share_password_parse(const char *ctype, const char *body, size_t len,
                            char out[PV_SHARE_PASSWORD_MAX + 1])
{
    out[0] = '\0';
    if (!ctype || !body)
        return -EINVAL;
    if (strncasecmp(ctype, "application/json", 16) == 0)
        return password_json(body, len, out);
    if (strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0)
        return password_form(body, len, out);
    return -EINVAL;
}

/* ---------------- pages ---------------- */

void pv_share_esc(pv_sb_t *sb, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            pv_sb_puts(sb, "&amp;");
            break;
        case '<':
            pv_sb_puts(sb, "&lt;");
            break;
        case '>':
            pv_sb_puts(sb, "&gt;");
            break;
        case '"':
            pv_sb_puts(sb, "&quot;");
            break;
        case '\'':
            pv_sb_puts(sb, "&#39;");
            break;
        default:
            pv_sb_add(sb, s, 1);
            break;
        }
    }
}

static void head(pv_sb_t *sb, const char *title, const char *css)
{
    pv_sb_puts(sb, "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<meta name=\"robots\" content=\"noindex\">\n"
                   "<meta name=\"referrer\" content=\"no-referrer\">\n<title>");
    pv_share_esc(sb, title);
    pv_sb_puts(sb, "</title>\n");
    if (css && *css) {
        pv_sb_puts(sb, "<link rel=\"stylesheet\" href=\"/assets/");
        pv_share_esc(sb, css);
        pv_sb_puts(sb, "\">\n");
    }
}

/* og/twitter tags: property or name, and the content escaped. */
static void meta(pv_sb_t *sb, const char *attr, const char *name, const char *pre,
                 const char *value, const char *post)
{
    pv_sb_printf(sb, "<meta %s=\"%s\" content=\"", attr, name);
    pv_share_esc(sb, pre);
    pv_share_esc(sb, value);
    pv_share_esc(sb, post);
    pv_sb_puts(sb, "\">\n");
}

void pv_share_page_html(pv_sb_t *sb, const pv_share_page_t *p)
{
    const char *title = p->title && *p->title ? p->title : "A video";
    char base[512], dims[32];
    snprintf(base, sizeof(base), "%s/s/%s", p->origin ? p->origin : "", p->token);
    head(sb, title, p->css);
    meta(sb, "property", "og:type", "", "video.other", "");
    meta(sb, "property", "og:title", "", title, "");
    meta(sb, "property", "og:url", "", base, "");
    meta(sb, "property", "og:image", "", base, "/poster");
    meta(sb, "property", "og:video", "", base, "/video");
    meta(sb, "property", "og:video:type", "", "video/mp4", "");
    snprintf(dims, sizeof(dims), "%u", (unsigned)p->width);
    meta(sb, "property", "og:video:width", "", dims, "");
    snprintf(dims, sizeof(dims), "%u", (unsigned)p->height);
    meta(sb, "property", "og:video:height", "", dims, "");
    meta(sb, "name", "twitter:card", "", "summary_large_image", "");
    meta(sb, "name", "twitter:title", "", title, "");
    meta(sb, "name", "twitter:image", "", base, "/poster");
    pv_sb_puts(sb, "</head>\n<body class=\"share\">\n<main class=\"share-main\">\n<h1>");
    pv_share_esc(sb, title);
    pv_sb_printf(sb,
                 "</h1>\n<video class=\"share-video\" controls playsinline preload=\"metadata\" "
                 "width=\"%u\" height=\"%u\" poster=\"/s/%s/poster\" src=\"/s/%s/video\">"
                 "</video>\n<p class=\"share-actions\"><a class=\"share-download\" "
                 "href=\"/s/%s/video\" download=\"",
                 (unsigned)p->width, (unsigned)p->height, p->token, p->token, p->token);
    pv_share_esc(sb, title);
    pv_sb_printf(sb,
                 ".mp4\">Download</a> <span class=\"share-meta\">%.0f s</span></p>\n"
                 "</main>\n</body>\n</html>\n",
                 p->duration_s);
}

void pv_share_form_html(pv_sb_t *sb, const char *token, const char *css, bool wrong)
{
    head(sb, "A shared video", css);
    pv_sb_puts(sb, "</head>\n<body class=\"share\">\n<main class=\"share-main share-narrow\">\n"
                   "<h1>This video is protected</h1>\n");
    if (wrong)
        pv_sb_puts(sb, "<p class=\"share-error\" role=\"alert\">Wrong password.</p>\n");
    pv_sb_printf(sb,
                 "<form class=\"share-form\" method=\"post\" action=\"/s/%s\">\n"
                 "<label for=\"pw\">Password</label>\n"
                 "<input id=\"pw\" name=\"password\" type=\"password\" required "
                 "autocomplete=\"current-password\" autofocus>\n"
                 "<button type=\"submit\">Watch</button>\n</form>\n</main>\n</body>\n</html>\n",
                 token);
}

void pv_share_gone_html(pv_sb_t *sb, const char *css)
{
    head(sb, "Not found", css);
    pv_sb_puts(sb, "</head>\n<body class=\"share\">\n<main class=\"share-main share-narrow\">\n"
                   "<h1>This link does not work</h1>\n<p>It may have expired or been revoked."
                   "</p>\n</main>\n</body>\n</html>\n");
}
