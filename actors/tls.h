/*
 * tls.h — the TLS actor (actors/tls.c), on app->core: the owner of the
 * server certificate's context. These are its messages; it answers them
 * and knows nothing of who asks (pvctl's admin actor, pvd's SIGHUP).
 */
#ifndef PV_ACTORS_TLS_H
#define PV_ACTORS_TLS_H

#include "app/app.h"

enum pv_tls_msg {
    /* pv_tls_reload_t: load tls_cert and tls_key again. Answered with
     * status 0 once every HTTP loop makes its new connections with the new
     * context; or -EINVAL (err says why: unreadable, not a certificate, a
     * key that does not match) or -ENOMEM, and the old context stays. */
    PV_TLS_RELOAD,
    PV_TLS_MSG_COUNT
};

typedef struct pv_tls_reload {
    pv_msg_t msg;  /* type PV_TLS_RELOAD */
    char err[256]; /* the answer's reason when its status is < 0 */
} pv_tls_reload_t;

/* Loads the certificate and makes the actor on app->core. Call once the
 * HTTP servers exist and before the core and HTTP loops run: each server
 * gets its reference to the context here. 0, or -EINVAL / -ENOMEM with
 * err saying why. */
int pv_tls_start(pv_app_t *app, char *err, size_t errlen);
/* With the core loop and the work pool stopped. */
void pv_tls_free(pv_app_t *app);

#endif
