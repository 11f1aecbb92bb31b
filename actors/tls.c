/*
 * tls.c — reloading the server certificate.
 */
#include "actors/tls.h"
#include "base/pv.h"

#include <openssl/ssl.h>
#include <pthread.h>

int pv_app_tls_reload(pv_app_t *app, char *err, size_t errlen)
{
    SSL_CTX *ctx = pv_tls_ctx_new(app->cfg.tls_cert, app->cfg.tls_key, err, errlen);
    if (!ctx)
        return -EINVAL;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* SIGHUP vs pvctl */
    pthread_mutex_lock(&mu);
    SSL_CTX *old = atomic_exchange(&app->tls, ctx);
    /* An accept on another loop may have just loaded `old` and not yet
     * taken its reference (SSL_new): retire it instead of freeing it now;
     * the oldest retired context goes when the list is full. */
    if (old) {
        int slot = app->n_tls_retired++ % PV_TLS_RETIRED;
        if (app->tls_retired[slot])
            SSL_CTX_free(app->tls_retired[slot]);
        app->tls_retired[slot] = old;
    }
    pthread_mutex_unlock(&mu);
    return 0;
}

