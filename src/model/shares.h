/*
 * shares.h — public share links of videos (src/model/shares.c): the
 * records at the transaction level, and the pure pieces the share page
 * needs (its cookie, the password form, the page's HTML).
 *
 * A share is reached by its token: 32 random bytes, base64url (the same
 * shape as a refresh token, pv_refresh_new). The store keeps only the
 * token's SHA-256, as the record's key (PV_DB_SHARES), so a copy of the
 * store does not hand out working links; the owner lists and revokes by
 * the share's id. Revoking deletes the record: a revoked, an expired and
 * an unknown token look the same from outside.
 */
#ifndef PV_MODEL_SHARES_H
#define PV_MODEL_SHARES_H

#include <jansson.h>
#include <stdbool.h>

#include "base/crypto.h"
#include "base/pv.h"
#include "base/records.h"
#include "store/store.h"

#define PV_SHARE_TOKEN_TEXT   PV_REFRESH_TEXT /* 43 chars + NUL */
#define PV_SHARE_DEFAULT_DAYS 7
#define PV_SHARE_COOKIE       "pv_share"
/* "<kid>.<base64url HMAC>": up to 10 digits, a dot, 43 chars, NUL */
#define PV_SHARE_COOKIE_TEXT 56

int pv_share_load(pv_txn_t *txn, const uint8_t hash[32], pv_share_t *s);
int pv_share_save(pv_txn_t *txn, const uint8_t hash[32], const pv_share_t *s);
/* fn for each share (of user, of video, when not NULL), in key order;
 * fn returns 0 to go on, 1 to stop, < 0 to fail. */
typedef int (*pv_share_fn)(void *arg, const uint8_t hash[32], const pv_share_t *s);
int pv_share_each(pv_txn_t *txn, const uint8_t *user, const uint8_t *video, pv_share_fn fn,
                  void *arg);
/* Every share (of user, of video, when not NULL), newest first, in *out
 * (free() it; NULL when none) and *n. 0 or -ENOMEM / the store's error. */
int pv_share_list(pv_txn_t *txn, const uint8_t *user, const uint8_t *video, pv_share_t **out,
                  size_t *n);
/* The share with this id (of user, when not NULL): its key and record;
 * -ENOENT when there is none. A scan: shares are few. */
int pv_share_find(pv_txn_t *txn, const uint8_t id[16], const uint8_t *user, uint8_t hash[32],
                  pv_share_t *s);
/* Delete every share of a video (its delete revokes them); the count. */
int pv_share_drop_video(pv_txn_t *txn, const uint8_t user[16], const uint8_t video[16]);
/* {"id","video_id","created_at","expires_at","expired","has_password","views"} */
json_t *pv_share_json(const pv_share_t *s, int64_t now_ms);

/* ---- the share page's cookie: proof that the password was given ----
 * HMAC-SHA256(presign key kid, "pv-share\n" id "\n" expires_ms), so it
 * ends with the share and works for nothing else. */
void pv_share_cookie_make(const pv_keys_t *keys, const pv_share_t *s,
                          char out[PV_SHARE_COOKIE_TEXT]);
/* True when a pv_share cookie in the Cookie header (may be NULL) proves
 * the password of s; compared in constant time. Pure (fuzzed). */
bool pv_share_cookie_ok(const pv_keys_t *keys, const pv_share_t *s, const char *cookie_header);

/* The password of a POST /s/{token}: a form (application/x-www-form-
 * urlencoded, field "password") or JSON {"password"}. 0, or -EINVAL for a
 * body without one (or not UTF-8, or longer than PV_SHARE_PASSWORD_MAX).
 * Pure (fuzzed). */
#define PV_SHARE_PASSWORD_MAX 1024
int pv_share_password_parse(const char *ctype, const char *body, size_t len,
                            char out[PV_SHARE_PASSWORD_MAX + 1]);

/* ---- the pages (text/html, no script, no inline style) ---- */
typedef struct pv_share_page {
    const char *token;  /* URL-safe: base64url */
    const char *title;  /* the video's, user text: escaped here */
    const char *origin; /* "https://host[:port]" for the card tags, or "" */
    const char *css;    /* the stylesheet's name under /assets/, or "" */
    uint32_t width, height;
    double duration_s;
} pv_share_page_t;
void pv_share_page_html(pv_sb_t *sb, const pv_share_page_t *p);
/* The password form; wrong: say the last one was wrong. */
void pv_share_form_html(pv_sb_t *sb, const char *token, const char *css, bool wrong);
/* The one page for an expired, revoked or unknown link. */
void pv_share_gone_html(pv_sb_t *sb, const char *css);
/* s, HTML-escaped (& < > " '), into sb. */
void pv_share_esc(pv_sb_t *sb, const char *s);

#endif
