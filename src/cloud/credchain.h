/*
 * credchain.h — AWS credentials for a long-lived client, the usual chain:
 * the environment, the shared files' profile, then the instance's role
 * (IMDSv2), fetched again before they expire. One per loop; the answer
 * comes on the curlev's loop thread.
 *
 * The replicators and the background blob pull (actors/) each keep one:
 * a long run outlives an instance role's keys, so they ask before every
 * batch, and only an answer near expiry costs a request.
 */
#ifndef PV_CREDCHAIN_H
#define PV_CREDCHAIN_H

#include "cloud/awscreds.h"
#include "cloud/curlev.h"

typedef struct pv_credchain pv_credchain_t;

/* rc 0 with creds (valid inside the call only: copy them) or -errno with
 * why: what failed, for the log (no secrets). */
typedef void (*pv_credchain_fn)(int rc, const pv_aws_creds_t *creds, const char *why, void *arg);

/* profile: aws_profile ("" or NULL: AWS_PROFILE, else "default"); imds:
 * aws_imds_endpoint ("off" turns the role off). */
int pv_credchain_new(pv_curlev_t *http, const char *profile, const char *imds,
                     pv_credchain_t **out);
/* Current credentials. When they are good for a while yet, fn runs inside
 * the call; else after the chain was asked again (fn may then run later,
 * once the instance's service answered). While an earlier answer is near
 * expiry but a refresh failed, the old keys are handed out until they
 * expire (a refresh is tried again a minute later). Up to 16 askers may
 * wait at once; more: -EBUSY at once. */
void pv_credchain_get(pv_credchain_t *cc, pv_credchain_fn fn, void *arg);
/* After the curlev was freed (that ends an instance-service fetch in
 * flight, and its askers are answered -ECANCELED). */
void pv_credchain_free(pv_credchain_t *cc);

#endif
