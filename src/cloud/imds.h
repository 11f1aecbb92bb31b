/*
 * imds.h — the EC2 instance-metadata service (IMDSv2) client for the cloud
 * sync: the credentials of the instance's IAM role (the last link of the
 * AWS credential chain, after the environment and the shared files) and,
 * cheaply, the instance's region. On curlev, so it never blocks the loop.
 *
 * A fetch is the IMDSv2 exchange, every step one HTTP request:
 *   PUT /latest/api/token  (X-aws-ec2-metadata-token-ttl-seconds: 21600)
 *       -> a session token, sent as X-aws-ec2-metadata-token on the rest;
 *   GET /latest/meta-data/iam/security-credentials/       -> the role name
 *   GET /latest/meta-data/iam/security-credentials/ROLE   -> the credential
 *       document (pv_awscreds_parse_imds; source "imds")
 * or, for the region, the token then GET /latest/meta-data/placement/region.
 * There is no fall-back to IMDSv1 (requests without a token): an instance
 * that requires tokens refuses them, and a token PUT is what a forwarded
 * request (SSRF) cannot make.
 *
 * The service is a link-local neighbour, so every request has short
 * limits (PV_IMDS_CONNECT_MS to connect, PV_IMDS_TIMEOUT_MS in all, set
 * when it goes on the wire) and never goes through a proxy: off EC2 a
 * fetch fails within seconds instead of hanging. A request still waits
 * in the curlev's FIFO like any other: with a curlev whose slots long
 * transfers fill, give IMDS a small curlev of its own on the same base.
 *
 * Calls and callbacks are on the curlev's loop thread. A call returns 0
 * and done runs exactly once, later (never inside the call); or it
 * returns -errno (-EINVAL: no done, or an endpoint that is not
 * http(s)://HOST[:PORT][/]; -ENOMEM; -ESHUTDOWN: the curlev is being
 * freed) and done never runs. Freeing the curlev ends a fetch in flight
 * with -ECANCELED (done runs from inside pv_curlev_free). Done may free
 * the curlev or start another fetch.
 *
 * Secrets: nothing here logs. The token, the keys and every body are
 * wiped once used; result messages name the endpoint, the step, the
 * HTTP status and the role, never a token or a key.
 */
#ifndef PV_IMDS_H
#define PV_IMDS_H

#include "cloud/awscreds.h"
#include "cloud/curlev.h"

#include <stdbool.h>

#define PV_IMDS_ENDPOINT    "http://169.254.169.254" /* EC2's, IPv4 */
#define PV_IMDS_TOKEN_TTL_S 21600                    /* asked for; a fetch uses it once */
#define PV_IMDS_CONNECT_MS  1000                     /* to connect, each request */
#define PV_IMDS_TIMEOUT_MS  3000                     /* in all, each request */
#define PV_IMDS_BODY_MAX    (64 * 1024)              /* larger answers: -EMSGSIZE */
#define PV_IMDS_ROLE_MAX    64                       /* IAM role names: 1..64 of [\w+=,.@-] */

/* How a fetch ended.
 *
 * rc: 0, or
 *   transport (curlev's): -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH,
 *       -ECONNRESET, -EPROTO: no metadata service answered (not on EC2,
 *       or it is off and firewalled);
 *   -ENOENT   no IAM role is attached to the instance (404 or an empty
 *             list at security-credentials/), or it went away between
 *             the steps (404 on security-credentials/ROLE);
 *   -EACCES   the service refused: 403 (metadata turned off for the
 *             instance, or the request came through a proxy) or 401
 *             (the token was refused);
 *   -EBUSY    throttled (429) or unavailable (503): try again later;
 *   -EBADMSG  an answer we cannot use: a token or role name with bad
 *             characters, a credential document pv_awscreds_parse_imds
 *             refuses (its Code is not Success, keys or Expiration
 *             missing or malformed), a region that is not one;
 *   -EIO      any other HTTP status (5xx, a redirect, ...);
 *   -EMSGSIZE an answer past PV_IMDS_BODY_MAX;
 *   -ECANCELED the curlev was freed;  -ENOMEM.
 */
typedef struct pv_imds_result {
    int rc;
    long status;              /* HTTP status of the last exchange, 0: none came */
    const char *step;         /* the last exchange: "token", "role",
                               * "credentials" or "region" (static) */
    char message[384];        /* rc != 0: what failed, for the log (no secrets) */
    char role[PV_IMDS_ROLE_MAX + 1]; /* the IAM role, once known ("" before) */
    const pv_aws_creds_t *creds; /* pv_imds_fetch, rc 0: the credentials
                               * (source "imds", expires_s set), valid in
                               * done only: copy them, they are wiped after */
    char region[64];          /* pv_imds_region, rc 0: e.g. "eu-west-1" */
} pv_imds_result_t;

typedef void (*pv_imds_done_fn)(const pv_imds_result_t *res, void *arg);

/* True for the values of aws_imds_endpoint that turn IMDS off: NULL, ""
 * and "off". */
bool pv_imds_off(const char *endpoint);

/* The instance role's credentials from the service at endpoint
 * ("http://169.254.169.254"; a trailing '/' is fine). Call it again for
 * fresh ones when pv_awscreds_needs_refresh says so (IMDS hands out new
 * keys some minutes before the old ones expire). */
int pv_imds_fetch(pv_curlev_t *http, const char *endpoint, pv_imds_done_fn done, void *arg);

/* The instance's region (placement/region) into res->region. */
int pv_imds_region(pv_curlev_t *http, const char *endpoint, pv_imds_done_fn done, void *arg);

#endif
