/*
 * shares.c — public share links of videos: the owner's routes under
 * /api/v1/videos/{id}/shares, and the public share page /s/{token} with
 * its media.
 *
 * The owner's side is like any other record's: the video must be the
 * caller's (else 404, as for the video itself), writes go through the store
 * writer, a password is hashed with argon2id on the hash pool first.
 *
 * The public side answers one 404 page for every link that does not work
 * (unknown, revoked, expired, its video gone or not ready, its owner
 * disabled), so a link
 * says nothing about why. A share with a password shows only the form
 * until the password was given: POST /s/{token} admits the attempt through
 * the auth actor's limits (per share, per address) before any hashing, and
 * on success sets a cookie scoped to /s/{token} that carries an HMAC of
 * the share's id and expiry (src/model/shares.c), so the page and its
 * media need no server-side session. A page load counts one view; the
 * media's Range requests do not.
 */
#include "model/shares.h"
#include "actors/api/api.h"
#include "actors/auth.h"
#include "app/kit.h"
#include "base/pv.h"
#include "model/videos.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS    (86400ll * 1000)
#define NOT_READY 1 /* create_apply: the video is not ready (409) */

static void not_found(pv_http_req_t *req)
{
    pv_http_respond_error(req, 404, "not_found", "no such video");
}

/* ---------------- create ---------------- */

typedef struct create_call {
    pv_call_t base;
    pv_app_t *app;
    pv_share_t s;
    uint8_t hash[32];
    char token[PV_SHARE_TOKEN_TEXT];
    char password[PV_SHARE_PASSWORD_MAX + 1];
} create_call_t;

/* {"expires_in_days"?, "password"?}: 0, or an answer was sent. */
static int create_body(pv_http_req_t *req, create_call_t *c)
{
    size_t len;
    pv_http_body(req, &len);
    int max_days = c->app->cfg.share_max_days;
    int days = PV_SHARE_DEFAULT_DAYS < max_days ? PV_SHARE_DEFAULT_DAYS : max_days;
    json_t *root = len ? pv_api_json_body(req) : NULL;
    if (len && !root)
        return -EINVAL;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "expires_in_days") == 0) {
            json_int_t d = json_is_integer(val) ? json_integer_value(val) : 0;
            if (d < 1 || d > max_days) {
                char m[96];
                snprintf(m, sizeof(m),
                         "expires_in_days: a whole number from 1 to %d "
                         "(share_max_days)",
                         max_days);
                pv_http_respond_error(req, 400, "invalid_field", m);
                goto bad;
            }
            days = (int)d;
        } else if (strcmp(key, "password") == 0) {
            const char *pw = json_string_value(val);
            size_t n = pw ? json_string_length(val) : 0;
            if (!pw || n == 0 || n > PV_SHARE_PASSWORD_MAX || strlen(pw) != n) {
                pv_http_respond_error(req, 400, "invalid_field",
                                      "password: a string of 1 to 1024 bytes");
                goto bad;
            }
            memcpy(c->password, pw, n + 1);
        } else {
            char m[160];
            snprintf(m, sizeof(m), "unknown field \"%.64s\" (expected expires_in_days, password)",
                     key);
            pv_http_respond_error(req, 400, "invalid_field", m);
            goto bad;
        }
    }
    json_decref(root);
    c->s.created_ms = pv_now_ms();
    c->s.expires_ms = c->s.created_ms + days * DAY_MS;
    return 0;
bad:
    json_decref(root);
    return -EINVAL;
}

static int create_apply(pv_txn_t *txn, void *arg)
{
    create_call_t *c = arg;
    pv_video_t v;
    int rc = pv_video_load(txn, c->s.user_id, c->s.video_id, &v);
    if (rc < 0)
        return rc;
    bool ready = v.status == PV_VIDEO_READY;
    pv_video_clear(&v);
    if (!ready)
        return NOT_READY;
    return pv_share_save(txn, c->hash, &c->s); /* 256 random bits: a new key */
}

static void create_committed(pv_call_t *call)
{
    create_call_t *c = (create_call_t *)call;
    int rc = call->sreq.msg.status;
    if (rc == -ENOENT) {
        not_found(call->req);
    } else if (rc == NOT_READY) {
        pv_http_respond_error(call->req, 409, "video_not_ready",
                              "only a ready video can be shared");
    } else if (rc < 0) {
        pv_api_fail(call->req, rc);
    } else {
        json_t *j = pv_share_json(&c->s, pv_now_ms());
        char url[64];
        snprintf(url, sizeof(url), "/s/%s", c->token);
        json_object_set_new(j, "token", json_string(c->token));
        json_object_set_new(j, "url", json_string(url));
        pv_http_respond_json(call->req, 201, json_pack("{s:o}", "share", j));
    }
    sodium_memzero(c->token, sizeof(c->token));
    pv_call_free(call);
}

static void create_hash_work(pv_msg_t *m)
{
    create_call_t *c = (create_call_t *)m;
    char hash[PV_PWHASH_LEN];
    c->base.result = pv_password_hash(c->password, hash);
    sodium_memzero(c->password, sizeof(c->password));
    if (c->base.result == 0)
        snprintf(c->s.pw_hash, sizeof(c->s.pw_hash), "%s", hash);
}

static void create_hashed(pv_call_t *call)
{
    if (call->result < 0) {
        pv_api_fail(call->req, call->result);
        pv_call_free(call);
        return;
    }
    pv_call_store(call, create_apply, create_committed);
}

void pv_h_share_create(pv_http_req_t *req)
{
    create_call_t *c = pv_call_new(req, sizeof(*c));
    if (!c) {
        pv_api_fail(req, -ENOMEM);
        return;
    }
    c->app = pv_api_app(req);
    const char *id = pv_http_param(req, "id");
    if (pv_api_user_id(req, c->s.user_id) < 0 || !id || pv_id_decode(id, c->s.video_id) < 0) {
        not_found(req);
        pv_call_free(&c->base);
        return;
    }
    if (create_body(req, c) < 0) {
        pv_call_free(&c->base);
        return;
    }
    c->s.v = 1;
    pv_id_new(c->s.id);
    pv_refresh_new(c->token, c->hash);
    if (c->password[0])
        pv_call_work_at(&c->base, c->app->hash, create_hash_work, create_hashed, PV_PRIO_LOW);
    else
        pv_call_store(&c->base, create_apply, create_committed);
}

/* ---------------- list ---------------- */

/* The caller's video {id} exists: 0, or an answer was sent. */
static int own_video(pv_http_req_t *req, pv_txn_t *txn, uint8_t user[16], uint8_t video[16])
{
    const char *id = pv_http_param(req, "id");
    if (pv_api_user_id(req, user) < 0 || !id || pv_id_decode(id, video) < 0) {
        not_found(req);
        return -ENOENT;
    }
    pv_video_t v;
    int rc = pv_video_load(txn, user, video, &v);
    if (rc == 0)
        pv_video_clear(&v);
    else if (rc == -ENOENT)
        not_found(req);
    else
        pv_api_fail(req, rc);
    return rc;
}

void pv_h_share_list(pv_http_req_t *req)
{
    pv_app_t *app = pv_api_app(req);
    uint8_t user[16], video[16];
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0) {
        pv_api_fail(req, rc);
        return;
    }
    if (own_video(req, &txn, user, video) < 0) {
        pv_txn_abort(&txn);
        return;
    }
    pv_share_t *shares;
    size_t n;
    rc = pv_share_list(&txn, user, video, &shares, &n);
    pv_txn_abort(&txn);
    if (rc < 0) {
        pv_api_fail(req, rc);
        return;
    }
    json_t *items = json_array();
    int64_t now = pv_now_ms();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, pv_share_json(&shares[i], now));
    free(shares);
    pv_http_respond_json(req, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

/* ---------------- revoke ---------------- */

typedef struct revoke_call {
    pv_call_t base;
    uint8_t user[16], video[16], id[16];
} revoke_call_t;

static int revoke_apply(pv_txn_t *txn, void *arg)
{
    revoke_call_t *r = arg;
    uint8_t hash[32];
    pv_share_t s;
    int rc = pv_share_find(txn, r->id, r->user, hash, &s);
    if (rc < 0)
        return rc;
    if (memcmp(s.video_id, r->video, 16) != 0)
        return -ENOENT;
    return pv_txn_del(txn, PV_DB_SHARES, hash, 32);
}

static void revoke_committed(pv_call_t *call)
{
    int rc = call->sreq.msg.status;
    if (rc == -ENOENT)
        pv_http_respond_error(call->req, 404, "not_found", "no such share");
    else if (rc < 0)
        pv_api_fail(call->req, rc);
    else
        pv_http_respond(call->req, 204, NULL, NULL, 0);
    pv_call_free(call);
}

void pv_h_share_revoke(pv_http_req_t *req)
{
    revoke_call_t *r = pv_call_new(req, sizeof(*r));
    if (!r) {
        pv_api_fail(req, -ENOMEM);
        return;
    }
    const char *vid = pv_http_param(req, "id"), *sid = pv_http_param(req, "share_id");
    if (pv_api_user_id(req, r->user) < 0 || !vid || pv_id_decode(vid, r->video) < 0 || !sid ||
        pv_id_decode(sid, r->id) < 0) {
        pv_http_respond_error(req, 404, "not_found", "no such share");
        pv_call_free(&r->base);
        return;
    }
    pv_call_store(&r->base, revoke_apply, revoke_committed);
}

/* ---------------- the public side ---------------- */

/* The stylesheet of the pages, as the build names it ("" when none). */
static void page_css(pv_http_req_t *req, char *out, size_t outlen)
{
    if (pv_web_asset_name(req, "share.css", out, outlen) < 0)
        out[0] = '\0';
}

static void answer_html(pv_http_req_t *req, int status, pv_sb_t *sb)
{
    pv_http_add_header(req, "Cache-Control", "no-store");
    if (sb->failed)
        pv_api_fail(req, -ENOMEM);
    else
        pv_http_respond(req, status, "text/html; charset=utf-8", sb->p, sb->len);
    pv_sb_free(sb);
}

/* The one answer for a link that does not work, whatever the reason. */
static void gone(pv_http_req_t *req)
{
    char css[128];
    page_css(req, css, sizeof(css));
    pv_sb_t sb = {0};
    pv_share_gone_html(&sb, css);
    answer_html(req, 404, &sb);
}

static void form(pv_http_req_t *req, int status, const char *token, bool wrong)
{
    char css[128];
    page_css(req, css, sizeof(css));
    pv_sb_t sb = {0};
    pv_share_form_html(&sb, token, css, wrong);
    answer_html(req, status, &sb);
}

/* The live share behind {token} and its ready video: 0; -ENOENT for a
 * link that does not work (gone() answers it); other < 0 is the store's. */
static int share_open(pv_http_req_t *req, uint8_t hash[32], pv_share_t *s, pv_video_t *v)
{
    const char *token = pv_http_param(req, "token");
    if (!token || pv_refresh_hash(token, hash) < 0)
        return -ENOENT;
    pv_app_t *app = pv_api_app(req);
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0)
        return rc;
    rc = pv_share_load(&txn, hash, s);
    if (rc == 0 && pv_now_ms() >= s->expires_ms)
        rc = -ENOENT;
    if (rc == 0)
        rc = pv_video_load(&txn, s->user_id, s->video_id, v);
    pv_txn_abort(&txn);
    if (rc == 0 && v->status != PV_VIDEO_READY) {
        pv_video_clear(v);
        rc = -ENOENT;
    }
    if (rc == 0) { /* a disabled owner's links stop with the account */
        int ua = pv_api_user_active(app, s->user_id);
        if (ua < 0) {
            pv_video_clear(v);
            rc = ua == -EACCES || ua == -ENOENT ? -ENOENT : ua;
        }
    }
    return rc == -EINVAL ? -ENOENT : rc;
}

/* share_open, answering a failure itself: 0 or < 0 (answered). */
static int share_open_or_answer(pv_http_req_t *req, uint8_t hash[32], pv_share_t *s, pv_video_t *v)
{
    int rc = share_open(req, hash, s, v);
    if (rc == -ENOENT)
        gone(req);
    else if (rc < 0)
        pv_api_fail(req, rc);
    return rc;
}

static bool unlocked(pv_http_req_t *req, const pv_share_t *s)
{
    return !s->pw_hash[0] ||
           pv_share_cookie_ok(&pv_api_app(req)->keys, s, pv_http_header(req, "Cookie"));
}

/* "https://host" from the Host header when it is a plain host[:port]. */
static void origin(pv_http_req_t *req, char *out, size_t outlen)
{
    const char *h = pv_http_header(req, "Host");
    size_t n = h ? strlen(h) : 0;
    out[0] = '\0';
    if (n == 0 || n > 255 ||
        strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  "0123456789.-:[]") != n)
        return;
    snprintf(out, outlen, "https://%s", h);
}

typedef struct page_call {
    pv_call_t base;
    uint8_t hash[32];
    char title[PV_TITLE_MAX + 1];
    uint32_t width, height;
    double duration_s;
} page_call_t;

/* One view more; a share revoked meanwhile is left alone. */
static int view_apply(pv_txn_t *txn, void *arg)
{
    page_call_t *p = arg;
    pv_share_t s;
    int rc = pv_share_load(txn, p->hash, &s);
    if (rc < 0)
        return rc == -ENOENT ? 0 : rc;
    s.views++;
    return pv_share_save(txn, p->hash, &s);
}

static void page_counted(pv_call_t *call)
{
    page_call_t *p = (page_call_t *)call;
    pv_http_req_t *req = call->req;
    if (call->sreq.msg.status < 0) /* the page still shows; the count is short by one */
        pv_log(PV_LOG_WARN, "shares", pv_http_request_id(req), NULL, "view not counted: %s",
               strerror(-call->sreq.msg.status));
    char css[128], org[280];
    page_css(req, css, sizeof(css));
    origin(req, org, sizeof(org));
    pv_share_page_t pg = {
        .token = pv_http_param(req, "token"),
        .title = p->title,
        .origin = org,
        .css = css,
        .width = p->width,
        .height = p->height,
        .duration_s = p->duration_s,
    };
    pv_sb_t sb = {0};
    pv_share_page_html(&sb, &pg);
    answer_html(req, 200, &sb);
    pv_call_free(call);
}

/* GET /s/{token}: the page (or the password form). */
void pv_h_share_page(pv_http_req_t *req)
{
    uint8_t hash[32];
    pv_share_t s;
    pv_video_t v;
    if (share_open_or_answer(req, hash, &s, &v) < 0)
        return;
    page_call_t *p = pv_call_new(req, sizeof(*p));
    if (!p) {
        pv_video_clear(&v);
        pv_api_fail(req, -ENOMEM);
        return;
    }
    memcpy(p->hash, hash, 32);
    snprintf(p->title, sizeof(p->title), "%s", v.title);
    p->width = v.width;
    p->height = v.height;
    p->duration_s = v.duration_s;
    pv_video_clear(&v);
    if (!unlocked(req, &s)) {
        form(req, 200, pv_http_param(req, "token"), false);
        pv_call_free(&p->base);
    } else if (pv_http_is_head(req)) {
        p->base.sreq.msg.status = 0;
        page_counted(&p->base); /* a HEAD is not a view */
    } else {
        pv_call_store(&p->base, view_apply, page_counted);
    }
}

/* GET /s/{token}/{video|poster}: the media, with Range and caching. */
void pv_h_share_media(pv_http_req_t *req)
{
    const char *what = pv_http_param(req, "what");
    bool video = what && strcmp(what, "video") == 0;
    if (!video && (!what || strcmp(what, "poster") != 0)) {
        gone(req);
        return;
    }
    uint8_t hash[32];
    pv_share_t s;
    pv_video_t v;
    if (share_open_or_answer(req, hash, &s, &v) < 0)
        return;
    if (!unlocked(req, &s))
        gone(req);
    else if (video)
        pv_api_serve_blob(req, v.sha256, "video/mp4");
    else
        pv_api_serve_blob(req, v.poster_sha256, "image/jpeg");
    pv_video_clear(&v);
}

/* ---------------- the password ---------------- */

typedef struct unlock_call {
    pv_call_t base;
    pv_share_t s;
    char password[PV_SHARE_PASSWORD_MAX + 1];
    bool verified;
} unlock_call_t;

static void unlock_verified(pv_call_t *call)
{
    unlock_call_t *u = (unlock_call_t *)call;
    pv_http_req_t *req = call->req;
    const char *token = pv_http_param(req, "token");
    if (!u->verified) {
        form(req, 401, token, true);
        pv_call_free(call);
        return;
    }
    char value[PV_SHARE_COOKIE_TEXT], cookie[256], loc[64];
    pv_share_cookie_make(&pv_api_app(req)->keys, &u->s, value);
    long long max_age = (u->s.expires_ms - pv_now_ms()) / 1000;
    snprintf(cookie, sizeof(cookie),
             PV_SHARE_COOKIE "=%s; Path=/s/%s; Max-Age=%lld; HttpOnly; Secure; SameSite=Strict",
             value, token, max_age > 0 ? max_age : 0);
    snprintf(loc, sizeof(loc), "/s/%s", token);
    pv_http_add_header(req, "Set-Cookie", cookie);
    pv_http_add_header(req, "Location", loc);
    pv_http_add_header(req, "Cache-Control", "no-store");
    pv_http_respond(req, 303, NULL, NULL, 0);
    pv_call_free(call);
}

static void unlock_work(pv_msg_t *m)
{
    unlock_call_t *u = (unlock_call_t *)m;
    u->verified = pv_password_verify(u->s.pw_hash, u->password);
    sodium_memzero(u->password, sizeof(u->password));
}

static void unlock_admitted(pv_call_t *call)
{
    unlock_call_t *u = (unlock_call_t *)call;
    int retry_after = ((pv_auth_admit_t *)call->answer)->retry_after;
    pv_msg_free(call->answer);
    call->answer = NULL;
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", retry_after);
        pv_http_add_header(call->req, "Retry-After", ra);
        pv_http_respond_error(call->req, 429, "rate_limited",
                              "too many password attempts; try again later");
        sodium_memzero(u->password, sizeof(u->password));
        pv_call_free(call);
        return;
    }
    pv_call_work(call, pv_api_app(call->req)->hash, unlock_work, unlock_verified);
}

/* POST /s/{token}: the password, as a form or JSON. */
void pv_h_share_unlock(pv_http_req_t *req)
{
    uint8_t hash[32];
    pv_share_t s;
    pv_video_t v;
    if (share_open_or_answer(req, hash, &s, &v) < 0)
        return;
    pv_video_clear(&v);
    const char *token = pv_http_param(req, "token");
    if (!s.pw_hash[0]) { /* nothing to unlock: the page */
        char loc[64];
        snprintf(loc, sizeof(loc), "/s/%s", token);
        pv_http_add_header(req, "Location", loc);
        pv_http_respond(req, 303, NULL, NULL, 0);
        return;
    }
    unlock_call_t *u = pv_call_new(req, sizeof(*u));
    pv_auth_admit_t *adm = pv_msg_new(sizeof(*adm), PV_AUTH_ADMIT);
    if (!u || !adm) {
        if (u)
            pv_call_free(&u->base);
        if (adm)
            pv_msg_free(&adm->msg);
        pv_api_fail(req, -ENOMEM);
        return;
    }
    size_t len;
    const char *body = pv_http_body(req, &len);
    if (pv_share_password_parse(pv_http_header(req, "Content-Type"), body, len, u->password) < 0) {
        form(req, 400, token, false);
        pv_call_free(&u->base);
        pv_msg_free(&adm->msg);
        return;
    }
    u->s = s;
    char client[64];
    adm->kind = PV_ADMIT_SHARE;
    pv_id_encode(s.id, adm->email);
    pv_api_limit_key(pv_api_client_addr(req, client, sizeof(client)), adm->remote,
                     sizeof(adm->remote));
    pv_call_ask(&u->base, pv_api_app(req)->auth, &adm->msg, unlock_admitted);
}
