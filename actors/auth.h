/*
 * auth.h — the auth actor (actors/auth.c): admission of login attempts. It
 * is the one owner of the login rate-limit tables (per account and per
 * address), so they need no lock.
 */
#ifndef PV_ACTORS_AUTH_H
#define PV_ACTORS_AUTH_H

#include "app/app.h"
#include "base/records.h"

enum pv_auth_msg {
    PV_AUTH_ADMIT, /* pv_auth_admit_t: may this login attempt go on? */
    PV_AUTH_MSG_COUNT
};

typedef struct pv_auth_admit {
    pv_msg_t msg;                 /* type PV_AUTH_ADMIT */
    char email[PV_EMAIL_MAX + 1]; /* normalised */
    char remote[64];              /* the client's address */
    int retry_after;              /* answer: seconds to wait; 0: admitted */
} pv_auth_admit_t;

/* The actor on app->core (before the loop starts); 0 or -ENOMEM. */
int pv_auth_start(pv_app_t *app);
/* After the core loop stopped. */
void pv_auth_free(pv_app_t *app);

#endif
