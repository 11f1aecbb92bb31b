/*
 * ddb.h — a DynamoDB client for the cloud sync: the JSON protocol
 * (POST /, X-Amz-Target: DynamoDB_20120810.OP, a JSON body) over curlev,
 * signed with SigV4 (service "dynamodb") when each request leaves curlev's
 * FIFO, so one that waited still carries a fresh X-Amz-Date.
 *
 * A call takes the request body as JSON text and ends exactly once, in
 * done, on the curlev's loop thread (never inside the call): with the
 * parsed answer on success, or an error sorted for the caller (rc below)
 * with DynamoDB's own error type and message. Nothing here logs; messages
 * name DynamoDB's error type and text, never a key or a signature.
 */
#ifndef PV_DDB_H
#define PV_DDB_H

#include "cloud/awscreds.h"
#include "cloud/curlev.h"

#include <jansson.h>
#include <stdbool.h>

#define PV_DDB_BODY_MAX (16 << 20) /* answers larger than this: -EMSGSIZE */

typedef struct pv_ddb pv_ddb_t;

typedef struct pv_ddb_config {
    const char *endpoint; /* http(s)://HOST[:PORT]; NULL or "": AWS's regional endpoint */
    const char *region;   /* "us-east-1" */
} pv_ddb_config_t;

/* How a call ended.
 * rc: 0 (an HTTP 2xx, body parsed), or
 *   -EEXIST    ConditionalCheckFailedException: the condition was false;
 *   -EAGAIN    throttled (ProvisionedThroughputExceededException,
 *              ThrottlingException, RequestLimitExceeded) or DynamoDB busy
 *              (5xx): back off and send again (retryable is set);
 *   -ENOENT    ResourceNotFoundException (no such table);
 *   -EBUSY     ResourceInUseException (the table exists or is changing);
 *   -EACCES    the keys or signature were refused (4xx auth errors);
 *   -EINVAL    any other 4xx (ValidationException...): a bug or bad input;
 *   -EBADMSG   a 2xx whose body is not a JSON object;
 *   transport (curlev's): -ECONNREFUSED, -ETIMEDOUT, ... (retryable);
 *   -ECANCELED the client was freed;  -ENOMEM;  -EMSGSIZE. */
typedef struct pv_ddb_result {
    int rc;
    bool retryable;    /* worth sending again as it is */
    long status;       /* HTTP status, 0 when none came */
    char type[96];     /* DynamoDB's error type, short form ("" when none) */
    char message[256]; /* its message, or the transport's */
    json_t *body;      /* rc 0: the answer (borrowed: valid in done only) */
} pv_ddb_result_t;

typedef void (*pv_ddb_done_fn)(const pv_ddb_result_t *res, void *arg);

/* 0, -EINVAL (endpoint not http(s)://HOST[:PORT][/], no region) or
 * -ENOMEM. The client keeps a copy of creds. */
int pv_ddb_new(pv_curlev_t *http, const pv_ddb_config_t *cfg, const pv_aws_creds_t *creds,
               pv_ddb_t **out);
int pv_ddb_set_creds(pv_ddb_t *d, const pv_aws_creds_t *creds);
/* Ends every call in flight (done runs with -ECANCELED), then frees. */
void pv_ddb_free(pv_ddb_t *d);
/* "dynamodb.REGION.amazonaws.com" or the endpoint's HOST[:PORT]. */
const char *pv_ddb_host(const pv_ddb_t *d);

/* Sends op ("PutItem", "DescribeTable", ...) with body (JSON text, len
 * bytes; copied). 0: done runs once, later; -errno: it never runs. */
int pv_ddb_call(pv_ddb_t *d, const char *op, const char *body, size_t len, pv_ddb_done_fn done,
                void *arg);
/* The same with a JSON value (not stolen). */
int pv_ddb_call_json(pv_ddb_t *d, const char *op, const json_t *body, pv_ddb_done_fn done,
                     void *arg);

/* Sorts an error answer (pure, for tests): rc and retryable for HTTP
 * status and the body's __type; type and message filled from the body. */
void pv_ddb_classify(long status, const char *body, size_t len, pv_ddb_result_t *res);

#endif
