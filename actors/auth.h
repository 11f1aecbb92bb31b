/*
 * auth.h — the auth actor (actors/auth.c): admission of login and sign-up
 * attempts. It is the one owner of the rate-limit tables (logins per
 * account and per address, sign-ups per address), so they need no lock.
 */
#ifndef PV_ACTORS_AUTH_H
#define PV_ACTORS_AUTH_H

#include "app/app.h"
#include "base/records.h"

enum pv_auth_msg {
    PV_AUTH_ADMIT, /* pv_auth_admit_t: may this attempt go on? answered */
    PV_AUTH_MSG_COUNT
};

/* PV_ADMIT_SHARE: a share link's password (actors/api/shares.c), limited
 * per share (the share's id text in `email`) and per address, in tables of
 * their own with the login limits' numbers. */
enum pv_auth_kind { PV_ADMIT_LOGIN, PV_ADMIT_SIGNUP, PV_ADMIT_SHARE };

typedef struct pv_auth_admit {
    pv_msg_t msg;                 /* type PV_AUTH_ADMIT */
    int kind;                     /* enum pv_auth_kind */
    char email[PV_EMAIL_MAX + 1]; /* normalised (logins); the share id (shares) */
    char remote[64];              /* the client's address */
    int retry_after;              /* answer: seconds to wait; 0: admitted */
} pv_auth_admit_t;

/* The actor on app->core (before the loop starts); 0 or -ENOMEM. */
int pv_auth_start(pv_app_t *app);
/* After the core loop stopped. */
void pv_auth_free(pv_app_t *app);

#endif
