/*
 * auth.c — sign-up, login, refresh, logout and /me, and the auth actor.
 *
 * Passwords are argon2id (about 80 ms and 64 MiB each): hashing and
 * verifying run on worker threads. Login is admitted first by the auth
 * actor, the one owner of the rate-limit tables (per account and per
 * address); an unknown email is verified against a dummy hash so that it
 * costs as long as a wrong password and answers the same 401.
 *
 * Refresh tokens are random, stored only as their SHA-256, and rotate: a
 * refresh spends the token and issues a new one in the same family.
 * Presenting a spent token revokes the whole family (someone replayed it),
 * so both the thief's and the owner's newer tokens stop working.
 */
#include "actors/api/api.h"
#include "actors/auth.h"
#include "app/kit.h"
#include "base/pv.h"
#include "model/invites.h"
#include "model/revoked.h"
#include "model/usage.h"
#include "model/users.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PV_ACCESS_MAX 1024 /* an access token's text (about 250 bytes) */

typedef struct login_call {
    pv_call_t base;
    pv_app_t *app;
    char email[PV_EMAIL_MAX + 1];
    char password[1100];
    char pw_hash[PV_PWHASH_MAX + 1];
    bool user_found;
    bool verified;
    pv_user_t user;
    char refresh[PV_REFRESH_TEXT];
    uint8_t refresh_hash[32];
    char access[PV_ACCESS_MAX];  /* issued before the commit */
} login_call_t;

/* ---------------- helpers ---------------- */

static json_t *user_json(const pv_user_t *u)
{
    char id[PV_ID_TEXT], created[32];
    pv_id_encode(u->id, id);
    pv_time_format(u->created_ms, created);
    return json_pack("{s:s,s:s,s:s}", "id", id, "email", u->email, "created_at", created);
}

/* Browser sessions ask, with "X-PV-Session: cookie", for the refresh
 * token in an HttpOnly cookie rather than in the body: scripts injected
 * into the page can then never read it. */
static bool cookie_session(pv_http_req_t *req)
{
    const char *h = pv_http_header(req, "X-PV-Session");
    return h && strcasecmp(h, "cookie") == 0;
}

#define REFRESH_COOKIE_MAX 256 /* the Set-Cookie value below */

/* A browser session's cookie goes with an answer written after the token
 * committed: its header room is taken before (0, or -ENOMEM). */
static int refresh_cookie_room(pv_http_req_t *req)
{
    return cookie_session(req) ? pv_http_header_room(req, REFRESH_COOKIE_MAX + 16) : 0;
}

static void set_refresh_cookie(pv_http_req_t *req, const char *token, int max_age)
{
    char c[REFRESH_COOKIE_MAX];
    snprintf(c, sizeof(c),
             "pv_refresh=%s; Path=/api/v1/auth; Max-Age=%d; HttpOnly; Secure; SameSite=Strict",
             token, max_age);
    pv_http_add_header(req, "Set-Cookie", c);
}

/* The pv_refresh cookie's value into out; false when absent. */
static bool refresh_cookie(pv_http_req_t *req, char *out, size_t outlen)
{
    const char *h = pv_http_header(req, "Cookie");
    for (const char *p = h; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        if (strncmp(p, "pv_refresh=", 11) == 0) {
            p += 11;
            size_t n = strcspn(p, ";");
            if (n == 0 || n >= outlen)
                return false;
            memcpy(out, p, n);
            out[n] = '\0';
            return true;
        }
        p = strchr(p, ';');
    }
    return false;
}

/* An access token for user_id into out: issued before the refresh token
 * it comes with is committed, so that nothing can fail once it is. */
static int issue_access(pv_app_t *app, const uint8_t user_id[16], char out[PV_ACCESS_MAX])
{
    char uid[PV_ID_TEXT];
    pv_id_encode(user_id, uid);
    char *access = NULL;
    int rc = pv_jwt_issue(&app->keys, uid, app->cfg.access_token_ttl, &access);
    if (rc == 0 && strlen(access) >= PV_ACCESS_MAX)
        rc = -EMSGSIZE;
    if (rc == 0)
        memcpy(out, access, strlen(access) + 1);
    free(access);
    return rc;
}

/* The token pair answer of login and refresh: both tokens are made and
 * the refresh token committed; this only writes the answer. */
static void respond_tokens(pv_http_req_t *req, pv_app_t *app, const char *access,
                           const char *refresh)
{
    json_t *j = json_pack("{s:s,s:s,s:i}", "access_token", access, "token_type", "Bearer",
                          "expires_in", app->cfg.access_token_ttl);
    if (cookie_session(req))
        set_refresh_cookie(req, refresh, app->cfg.refresh_token_ttl);
    else
        json_object_set_new(j, "refresh_token", json_string(refresh));
    pv_http_respond_json(req, 200, j);
}

static int read_user_by_email(pv_app_t *app, const char *email, pv_user_t *u)
{
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0)
        return rc;
    pv_val_t v;
    rc = pv_txn_get(&txn, PV_DB_EMAILS, email, strlen(email), &v);
    if (rc == 0 && v.len == 16) {
        uint8_t id[16];
        memcpy(id, v.data, 16);
        rc = pv_txn_get(&txn, PV_DB_USERS, id, 16, &v);
        if (rc == 0)
            rc = pv_user_decode(v.data, v.len, u);
    } else if (rc == 0) {
        rc = -EIO;
    }
    pv_txn_abort(&txn);
    return rc;
}

/* Put a new refresh token of `family` for `user` (in a write txn). */
static int put_refresh(pv_txn_t *txn, pv_app_t *app, const uint8_t user[16],
                       const uint8_t family[16], const uint8_t hash[32])
{
    pv_token_t t = {.v = 1, .spent = false};
    memcpy(t.user_id, user, 16);
    memcpy(t.family_id, family, 16);
    t.created_ms = pv_now_ms();
    t.expires_ms = t.created_ms + (int64_t)app->cfg.refresh_token_ttl * 1000;
    char *buf;
    size_t len;
    int rc = pv_token_encode(&t, &buf, &len);
    if (rc < 0)
        return rc;
    rc = pv_txn_put(txn, PV_DB_TOKENS, hash, 32, buf, len, true);
    free(buf);
    return rc;
}

/* ---------------- signup ---------------- */

typedef struct signup_call {
    pv_call_t base;
    pv_app_t *app;
    pv_credentials_t cred;
    pv_user_t user;
    bool invited;                /* signup = invite: spend `invite` */
    char invite[PV_INVITE_TEXT + 8];
} signup_call_t;

static void signup_committed(pv_call_t *c)
{
    signup_call_t *s = (signup_call_t *)c;
    int rc = c->sreq.msg.status;
    if (rc == -EEXIST)
        pv_http_respond_error(c->req, 409, "email_taken", "an account with this email already exists");
    else if (rc == -EACCES)
        pv_http_respond_error(c->req, 403, "invalid_invite",
                              "this invite code is not valid: it may be used, expired or made for another email");
    else if (rc < 0)
        pv_api_fail(c->req, rc);
    else
        pv_http_respond_json(c->req, 201, json_pack("{s:o}", "user", user_json(&s->user)));
    pv_call_free(c);
}

static int signup_apply(pv_txn_t *txn, void *arg)
{
    signup_call_t *s = arg;
    int rc = s->invited ? pv_invite_take(txn, s->invite, s->user.email) : 0;
    return rc < 0 ? rc : pv_user_insert(txn, &s->user);
}

static void signup_hash_work(pv_msg_t *m);
static void signup_hashed(pv_call_t *c);

/* The auth actor said wait: 429 with Retry-After, and the call ends. */
static void limited(pv_call_t *c, int retry_after, const char *message)
{
    char ra[16];
    snprintf(ra, sizeof(ra), "%d", retry_after);
    pv_http_add_header(c->req, "Retry-After", ra);
    pv_http_respond_error(c->req, 429, "rate_limited", message);
    pv_call_free(c);
}

/* The auth actor admitted the sign-up (or not): hash, after any login. */
static void signup_admitted(pv_call_t *c)
{
    signup_call_t *s = (signup_call_t *)c;
    int retry_after = ((pv_auth_admit_t *)c->answer)->retry_after;
    pv_msg_free(c->answer);
    c->answer = NULL;
    if (retry_after > 0) {
        limited(c, retry_after, "too many sign-ups from this address; try again later");
        return;
    }
    pv_user_t probe;
    if (read_user_by_email(s->app, s->cred.email, &probe) == 0) {
        /* Known at once: spare the hashing. The store re-checks. */
        pv_http_respond_error(c->req, 409, "email_taken", "an account with this email already exists");
        pv_call_free(c);
        return;
    }
    pv_call_work_at(c, s->app->hash, signup_hash_work, signup_hashed, PV_PRIO_LOW);
}

static void signup_hashed(pv_call_t *c)
{
    if (c->result < 0) {
        pv_api_fail(c->req, c->result);
        pv_call_free(c);
        return;
    }
    pv_call_store(c, signup_apply, signup_committed);
}

static void signup_hash_work(pv_msg_t *m)
{
    signup_call_t *s = (signup_call_t *)m;
    char hash[PV_PWHASH_LEN];
    s->base.result = pv_password_hash(s->cred.password, hash);
    snprintf(s->user.pw_hash, sizeof(s->user.pw_hash), "%s", hash);
    sodium_memzero(s->cred.password, sizeof(s->cred.password));
}

/* signup = invite: the body's "invite" member, or an answer (403). */
static bool take_invite(pv_http_req_t *req, const char *body, size_t len, signup_call_t *s)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *code = json_string_value(json_object_get(j, "invite"));
    bool ok = code && *code && strlen(code) < sizeof(s->invite);
    if (ok)
        snprintf(s->invite, sizeof(s->invite), "%s", code);
    json_decref(j);
    if (!ok)
        pv_http_respond_error(req, 403, "invite_required",
                              "this appliance takes new accounts by invitation: enter the "
                              "invite code its operator gave you");
    s->invited = ok;
    return ok;
}

void pv_h_signup(pv_http_req_t *req)
{
    pv_app_t *app = pv_api_app(req);
    int mode = pv_config_signup_mode(&app->cfg);
    if (mode == PV_SIGNUP_CLOSED) {
        pv_http_respond_error(req, 403, "signup_closed",
                              "sign-up is closed on this appliance; ask its operator for an account");
        return;
    }
    size_t len;
    const char *body = pv_http_body(req, &len);
    signup_call_t *s = pv_call_new(req, sizeof(*s));
    pv_auth_admit_t *adm = pv_msg_new(sizeof(*adm), PV_AUTH_ADMIT);
    if (!s || !adm) {
        pv_api_fail(req, -ENOMEM);
        if (s)
            pv_call_free(&s->base);
        if (adm)
            pv_msg_free(&adm->msg);
        return;
    }
    pv_body_err_t e;
    if (pv_body_credentials(body, len, true, &s->cred, &e) < 0) {
        pv_api_body_error(req, &e);
        goto drop;
    }
    if (mode == PV_SIGNUP_INVITE && !take_invite(req, body, len, s))
        goto drop;
    s->app = app;
    s->user.v = 1;
    pv_id_new(s->user.id);
    snprintf(s->user.email, sizeof(s->user.email), "%s", s->cred.email);
    s->user.created_ms = pv_now_ms();
    char client[64];
    adm->kind = PV_ADMIT_SIGNUP;
    pv_api_limit_key(pv_api_client_addr(req, client, sizeof(client)), adm->remote, sizeof(adm->remote));
    pv_call_ask(&s->base, app->auth, &adm->msg, signup_admitted);
    return;
drop:
    pv_call_free(&s->base);
    pv_msg_free(&adm->msg);
}

/* ---------------- login ---------------- */

static void login_committed(pv_call_t *c)
{
    login_call_t *lc = (login_call_t *)c;
    if (c->sreq.msg.status < 0)
        pv_api_fail(c->req, c->sreq.msg.status);
    else
        respond_tokens(c->req, lc->app, lc->access, lc->refresh);
    pv_call_free(c);
}

static int login_apply(pv_txn_t *txn, void *arg)
{
    login_call_t *lc = arg;
    uint8_t family[16];
    pv_id_new(family);
    return put_refresh(txn, lc->app, lc->user.id, family, lc->refresh_hash);
}

static void invalid_credentials(pv_http_req_t *req)
{
    pv_http_respond_error(req, 401, "invalid_credentials", "wrong email or password");
}

static void login_verified(pv_call_t *c)
{
    login_call_t *lc = (login_call_t *)c;
    if (!lc->verified || !lc->user_found) {
        invalid_credentials(c->req);
        pv_call_free(c);
        return;
    }
    if (lc->user.disabled) {
        pv_http_respond_error(c->req, 403, "account_disabled", "this account is disabled");
        pv_call_free(c);
        return;
    }
    int rc = issue_access(lc->app, lc->user.id, lc->access);
    if (rc == 0)
        rc = refresh_cookie_room(c->req);
    if (rc < 0) {
        pv_api_fail(c->req, rc);
        pv_call_free(c);
        return;
    }
    pv_refresh_new(lc->refresh, lc->refresh_hash);
    pv_call_store(c, login_apply, login_committed);
}

static void login_verify_work(pv_msg_t *m)
{
    login_call_t *lc = (login_call_t *)m;
    const char *hash = lc->user_found ? lc->user.pw_hash : pv_password_dummy_hash();
    lc->verified = pv_password_verify(hash, lc->password) && lc->user_found;
    sodium_memzero(lc->password, sizeof(lc->password));
}

static void login_admitted(pv_call_t *c)
{
    login_call_t *lc = (login_call_t *)c;
    pv_auth_admit_t *adm = (pv_auth_admit_t *)c->answer;
    int retry_after = adm->retry_after;
    pv_msg_free(c->answer);
    c->answer = NULL;
    if (retry_after > 0) {
        limited(c, retry_after, "too many login attempts; try again later");
        return;
    }
    int rc = read_user_by_email(lc->app, lc->email, &lc->user);
    if (rc < 0 && rc != -ENOENT) {
        pv_api_fail(c->req, rc);
        pv_call_free(c);
        return;
    }
    lc->user_found = rc == 0;
    pv_call_work(c, lc->app->hash, login_verify_work, login_verified);
}

void pv_h_login(pv_http_req_t *req)
{
    pv_app_t *app = pv_api_app(req);
    size_t len;
    const char *body = pv_http_body(req, &len);
    login_call_t *lc = pv_call_new(req, sizeof(*lc));
    pv_auth_admit_t *adm = pv_msg_new(sizeof(*adm), PV_AUTH_ADMIT);
    if (!lc || !adm) {
        pv_api_fail(req, -ENOMEM);
        if (lc)
            pv_call_free(&lc->base);
        if (adm)
            pv_msg_free(&adm->msg);
        return;
    }
    pv_credentials_t cred;
    pv_body_err_t e;
    if (pv_body_credentials(body, len, false, &cred, &e) < 0) {
        pv_api_body_error(req, &e);
        pv_call_free(&lc->base);
        pv_msg_free(&adm->msg);
        return;
    }
    lc->app = app;
    snprintf(lc->email, sizeof(lc->email), "%s", cred.email);
    snprintf(lc->password, sizeof(lc->password), "%s", cred.password);
    sodium_memzero(cred.password, sizeof(cred.password));
    char client[64];
    adm->kind = PV_ADMIT_LOGIN;
    snprintf(adm->email, sizeof(adm->email), "%s", cred.email);
    pv_api_limit_key(pv_api_client_addr(req, client, sizeof(client)), adm->remote, sizeof(adm->remote));
    pv_call_ask(&lc->base, app->auth, &adm->msg, login_admitted);
}

/* ---------------- refresh and logout ---------------- */

enum { REFRESH_OK, REFRESH_INVALID, REFRESH_REVOKED };

typedef struct refresh_call {
    pv_call_t base;
    pv_app_t *app;
    uint8_t hash[32];
    bool logout;
    uint8_t user_id[16];       /* logout: the caller; refresh: the owner */
    pv_jwt_claims_t presented; /* logout: the access token presented, ended too */
    char new_refresh[PV_REFRESH_TEXT];
    uint8_t new_hash[32];
    char access[PV_ACCESS_MAX]; /* refresh: issued in the commit */
} refresh_call_t;

static int family_revoke(pv_txn_t *txn, const uint8_t family[16])
{
    uint8_t one = 1;
    return pv_txn_put(txn, PV_DB_FAMILIES, family, 16, &one, 1, false);
}

static bool family_revoked(pv_txn_t *txn, const uint8_t family[16])
{
    pv_val_t v;
    return pv_txn_get(txn, PV_DB_FAMILIES, family, 16, &v) == 0;
}

static int token_save(pv_txn_t *txn, const uint8_t hash[32], const pv_token_t *t)
{
    char *buf;
    size_t len;
    int rc = pv_token_encode(t, &buf, &len);
    if (rc < 0)
        return rc;
    rc = pv_txn_put(txn, PV_DB_TOKENS, hash, 32, buf, len, false);
    free(buf);
    return rc;
}

/* Outcome in call->result; the return value is only for store failures,
 * so that a revocation commits even though the answer is 401. */
static int refresh_apply(pv_txn_t *txn, void *arg)
{
    refresh_call_t *r = arg;
    pv_val_t v;
    pv_token_t t;
    r->base.result = REFRESH_INVALID;
    int rc = 0;
    if (r->logout && r->presented.jti[0]) /* the access token ends now, not at its expiry */
        rc = pv_revoke_token(txn, r->presented.jti, r->presented.exp);
    if (rc == 0)
        rc = pv_txn_get(txn, PV_DB_TOKENS, r->hash, 32, &v);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0 || (rc = pv_token_decode(v.data, v.len, &t)) < 0)
        return rc;
    if (r->logout) {
        if (memcmp(t.user_id, r->user_id, 16) != 0)
            return 0; /* another user's token: not ours to revoke */
        t.spent = true;
        rc = token_save(txn, r->hash, &t);
        return rc < 0 ? rc : family_revoke(txn, t.family_id);
    }
    if (t.spent) {
        r->base.result = REFRESH_REVOKED;
        return family_revoke(txn, t.family_id);
    }
    if (family_revoked(txn, t.family_id) || t.expires_ms < pv_now_ms())
        return 0;
    /* The owner must still be there and enabled: checked here, in the
     * transaction, so that a token is never spent for an answer that
     * then says no. */
    pv_user_t u;
    if ((rc = pv_txn_get(txn, PV_DB_USERS, t.user_id, 16, &v)) == -ENOENT)
        return 0;
    if (rc < 0 || (rc = pv_user_decode(v.data, v.len, &u)) < 0)
        return rc;
    if (u.disabled)
        return 0;
    /* The access token too, before anything is spent: once this commits,
     * answering cannot fail. */
    if ((rc = issue_access(r->app, t.user_id, r->access)) < 0)
        return rc;
    t.spent = true;
    if ((rc = token_save(txn, r->hash, &t)) < 0)
        return rc;
    rc = put_refresh(txn, r->app, t.user_id, t.family_id, r->new_hash);
    if (rc < 0)
        return rc;
    memcpy(r->user_id, t.user_id, 16);
    r->base.result = REFRESH_OK;
    return 0;
}

static void refresh_committed(pv_call_t *c)
{
    refresh_call_t *r = (refresh_call_t *)c;
    int rc = c->sreq.msg.status;
    if (rc < 0)
        pv_api_fail(c->req, rc);
    else if (r->logout) {
        if (cookie_session(c->req))
            set_refresh_cookie(c->req, "", 0);
        pv_http_respond(c->req, 204, NULL, NULL, 0);
    }
    else if (c->result != REFRESH_OK)
        pv_http_respond_error(c->req, 401, "invalid_refresh_token",
                              "the refresh token is not valid; log in again");
    else
        respond_tokens(c->req, r->app, r->access, r->new_refresh);
    pv_call_free(c);
}

static void refresh_or_logout(pv_http_req_t *req, bool logout)
{
    size_t len;
    const char *body = pv_http_body(req, &len);
    pv_refresh_body_t rb;
    char *token = rb.refresh_token;
    pv_body_err_t e;
    bool from_cookie = cookie_session(req) && refresh_cookie(req, token, sizeof(rb.refresh_token));
    if (!from_cookie && pv_body_refresh(body, len, &rb, &e) < 0) {
        pv_api_body_error(req, &e);
        return;
    }
    refresh_call_t *r = pv_call_new(req, sizeof(*r));
    if (!r) {
        pv_api_fail(req, -ENOMEM);
        return;
    }
    r->app = pv_api_app(req);
    r->logout = logout;
    if (pv_refresh_hash(token, r->hash) < 0) {
        if (logout)
            pv_http_respond_error(req, 400, "invalid_field", "refresh_token: malformed");
        else
            pv_http_respond_error(req, 401, "invalid_refresh_token",
                                  "the refresh token is not valid; log in again");
        pv_call_free(&r->base);
        return;
    }
    if (logout) {
        pv_api_user_id(req, r->user_id);
        /* the authorize hook checked it: its claims, to end it at once */
        const char *h = pv_http_header(req, "Authorization");
        if (h && strlen(h) > 7)
            pv_jwt_verify_claims(&r->app->keys, h + 7, &r->presented);
    } else {
        pv_refresh_new(r->new_refresh, r->new_hash);
    }
    if (refresh_cookie_room(req) < 0) {
        pv_api_fail(req, -ENOMEM);
        pv_call_free(&r->base);
        return;
    }
    pv_call_store(&r->base, refresh_apply, refresh_committed);
}

void pv_h_refresh(pv_http_req_t *req) { refresh_or_logout(req, false); }
void pv_h_logout(pv_http_req_t *req) { refresh_or_logout(req, true); }

/* ---------------- /me ---------------- */

void pv_h_me(pv_http_req_t *req)
{
    pv_app_t *app = pv_api_app(req);
    uint8_t uid[16];
    pv_api_user_id(req, uid);
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0) {
        pv_api_fail(req, rc);
        return;
    }
    pv_val_t v;
    pv_user_t u;
    pv_usage_t use;
    rc = pv_txn_get(&txn, PV_DB_USERS, uid, 16, &v);
    if (rc == 0)
        rc = pv_user_decode(v.data, v.len, &u);
    if (rc == 0)
        rc = pv_user_usage(&txn, uid, &use);
    pv_txn_abort(&txn);
    if (rc < 0) {
        pv_api_fail(req, rc);
        return;
    }
    const pv_config_t *c = &app->cfg;
    json_t *j = user_json(&u);
    json_object_set_new(j, "usage",
                        json_pack("{s:I,s:I,s:I,s:I,s:I}", "photos", (json_int_t)use.photos,
                                  "photo_bytes", (json_int_t)use.photo_bytes, "videos",
                                  (json_int_t)use.videos, "video_bytes",
                                  (json_int_t)use.video_bytes, "jobs", (json_int_t)use.jobs));
    json_object_set_new(j, "limits",
                        json_pack("{s:i,s:i,s:i,s:i,s:o}", "video_seconds", c->max_video_seconds,
                                  "video_frames", c->max_video_frames, "running_jobs",
                                  c->user_running_jobs, "queued_jobs", c->user_queued_jobs,
                                  "storage_bytes",
                                  c->user_storage_bytes ? json_integer((json_int_t)c->user_storage_bytes)
                                                        : json_null()));
    pv_http_respond_json(req, 200, j);
}
