/*
 * auth.c — the auth actor: admits login attempts against the rate limits,
 * per account and per address, and sign-ups per address. It is the tables'
 * one owner, on the core loop; the handlers (actors/api/auth.c) ask it
 * before any hashing, so a flood costs a table look-up, not argon2id.
 */
#include "actors/auth.h"
#include "base/ratelimit.h"
#include "base/pv.h"

#include <stdlib.h>

typedef struct auth_state {
    pv_ratelimit_t *per_account;
    pv_ratelimit_t *per_ip;
    pv_ratelimit_t *signup_per_ip;
    pv_ratelimit_t *share_per_share; /* share passwords, per share link */
    pv_ratelimit_t *share_per_ip;    /* ... and per address */
} auth_state_t;

static void state_free(auth_state_t *st)
{
    if (!st)
        return;
    pv_ratelimit_free(st->per_account);
    pv_ratelimit_free(st->per_ip);
    pv_ratelimit_free(st->signup_per_ip);
    pv_ratelimit_free(st->share_per_share);
    pv_ratelimit_free(st->share_per_ip);
    free(st);
}

static auth_state_t *state_new(const pv_config_t *cfg)
{
    auth_state_t *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->per_account = pv_ratelimit_new(cfg->login_account_burst,
                                       cfg->login_account_per_minute, 4096);
    st->per_ip = pv_ratelimit_new(cfg->login_ip_burst, cfg->login_ip_per_minute, 4096);
    st->signup_per_ip = pv_ratelimit_new(cfg->signup_ip_burst, cfg->signup_ip_per_minute, 4096);
    st->share_per_share = pv_ratelimit_new(cfg->login_account_burst,
                                           cfg->login_account_per_minute, 4096);
    st->share_per_ip = pv_ratelimit_new(cfg->login_ip_burst, cfg->login_ip_per_minute, 4096);
    if (!st->per_account || !st->per_ip || !st->signup_per_ip || !st->share_per_share ||
        !st->share_per_ip) {
        state_free(st);
        return NULL;
    }
    return st;
}

static void on_admit(pv_actor_t *self, pv_msg_t *msg)
{
    auth_state_t *st = pv_actor_state(self);
    pv_auth_admit_t *a = (pv_auth_admit_t *)msg;
    int64_t now = pv_now_ms();
    if (a->kind == PV_ADMIT_SIGNUP) {
        a->retry_after = pv_ratelimit_take(st->signup_per_ip, a->remote, now);
    } else if (a->kind == PV_ADMIT_SHARE) {
        int sh = pv_ratelimit_take(st->share_per_share, a->email, now);
        int ip = pv_ratelimit_take(st->share_per_ip, a->remote, now);
        a->retry_after = sh > ip ? sh : ip;
    } else {
        int acc = pv_ratelimit_take(st->per_account, a->email, now);
        int ip = pv_ratelimit_take(st->per_ip, a->remote, now);
        a->retry_after = acc > ip ? acc : ip;
    }
    pv_actor_reply(msg, 0);
}

static const pv_actor_fn auth_on[PV_AUTH_MSG_COUNT] = {
    [PV_AUTH_ADMIT] = on_admit,
};

int pv_auth_start(pv_app_t *app)
{
    static const pv_actor_def_t def = {"auth", auth_on, PV_AUTH_MSG_COUNT};
    auth_state_t *st = state_new(&app->cfg);
    app->auth = st ? pv_actor_new(app->core, &def, st) : NULL;
    if (!app->auth) {
        state_free(st);
        return -ENOMEM;
    }
    return 0;
}

void pv_auth_free(pv_app_t *app)
{
    if (!app->auth)
        return;
    state_free(pv_actor_state(app->auth));
    pv_actor_free(app->auth);
    app->auth = NULL;
}
