/*
 * credchain.c — AWS credentials kept fresh for a long-lived client: see
 * credchain.h.
 */
#include "cloud/credchain.h"
#include "base/pv.h"
#include "cloud/imds.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAITERS_MAX 16
#define RETRY_MS    60000 /* a refresh that failed or came back short: not before */

typedef struct waiter {
    pv_credchain_fn fn;
    void *arg;
} waiter_t;

struct pv_credchain {
    pv_curlev_t *http;
    char profile[128];
    char imds[256];
    pv_aws_creds_t creds;
    bool have;               /* creds hold an answer */
    int64_t retry_ms;        /* no refresh before this */
    bool asking;             /* the instance service is being asked */
    waiter_t waiters[WAITERS_MAX];
    int n_waiters;
};

int pv_credchain_new(pv_curlev_t *http, const char *profile, const char *imds,
                     pv_credchain_t **out)
{
    pv_credchain_t *cc = calloc(1, sizeof(*cc));
    if (!cc)
        return -ENOMEM;
    cc->http = http;
    snprintf(cc->profile, sizeof(cc->profile), "%s", profile ? profile : "");
    snprintf(cc->imds, sizeof(cc->imds), "%s", imds ? imds : "off");
    *out = cc;
    return 0;
}

static void answer_all(pv_credchain_t *cc, int rc, const char *why)
{
    /* An answer may ask again (a new waiter): take the list first. */
    waiter_t w[WAITERS_MAX];
    int n = cc->n_waiters;
    memcpy(w, cc->waiters, sizeof(w[0]) * (size_t)n);
    cc->n_waiters = 0;
    for (int i = 0; i < n; i++)
        w[i].fn(rc, rc == 0 ? &cc->creds : NULL, why, w[i].arg);
}

static void on_imds(const pv_imds_result_t *res, void *arg)
{
    pv_credchain_t *cc = arg;
    cc->asking = false;
    int64_t now_ms = pv_now_ms();
    if (res->rc < 0) {
        cc->retry_ms = now_ms + RETRY_MS;
        if (cc->have && cc->creds.expires_s > now_ms / 1000) {
            pv_warn("aws", "could not refresh the instance role's credentials (%s); the current "
                    "ones last until they expire", res->message);
            answer_all(cc, 0, "");
            return;
        }
        char why[512];
        snprintf(why, sizeof(why), "no AWS credentials (environment, the shared files' profile, "
                 "or an instance role): %s", res->message);
        answer_all(cc, res->rc, why);
        return;
    }
    pv_awscreds_wipe(&cc->creds);
    cc->creds = *res->creds;
    cc->have = true;
    if (pv_awscreds_needs_refresh(&cc->creds, now_ms / 1000)) /* already inside the margin */
        cc->retry_ms = now_ms + RETRY_MS;
    answer_all(cc, 0, "");
}

void pv_credchain_get(pv_credchain_t *cc, pv_credchain_fn fn, void *arg)
{
    int64_t now = pv_now_ms();
    if (cc->have && (!pv_awscreds_needs_refresh(&cc->creds, now / 1000) || now < cc->retry_ms)) {
        fn(0, &cc->creds, "", arg);
        return;
    }
    if (cc->n_waiters == WAITERS_MAX) {
        fn(-EBUSY, NULL, "too many askers for AWS credentials at once", arg);
        return;
    }
    cc->waiters[cc->n_waiters++] = (waiter_t){fn, arg};
    if (cc->asking)
        return;
    pv_aws_creds_t c;
    int rc = pv_awscreds_load(cc->profile[0] ? cc->profile : NULL, &c);
    if (rc == 0) {
        pv_awscreds_wipe(&cc->creds);
        cc->creds = c;
        cc->have = true;
        pv_awscreds_wipe(&c);
        answer_all(cc, 0, "");
        return;
    }
    if (rc == -ENOENT && !pv_imds_off(cc->imds)) {
        rc = pv_imds_fetch(cc->http, cc->imds, on_imds, cc);
        if (rc == 0) {
            cc->asking = true;
            return;
        }
    }
    answer_all(cc, rc < 0 ? rc : -ENOENT,
               rc == -ENOENT ? "no AWS credentials: set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY, a profile in the shared credentials file "
                               "(aws_profile), or run on an instance with a role"
                             : "no AWS credentials: the credentials files could not be read");
}

void pv_credchain_free(pv_credchain_t *cc)
{
    if (!cc)
        return;
    answer_all(cc, -ECANCELED, "stopping");
    pv_awscreds_wipe(&cc->creds);
    free(cc);
}
