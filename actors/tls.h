/*
 * tls.h — the certificate's owner (actors/tls.c).
 */
#ifndef PV_ACTORS_TLS_H
#define PV_ACTORS_TLS_H

#include "app/app.h"

/* Reload the TLS certificate and key from the configured files; the old
 * context stays when the new one is bad. 0 or -errno (err says why). */
int pv_app_tls_reload(pv_app_t *app, char *err, size_t errlen);

#endif
