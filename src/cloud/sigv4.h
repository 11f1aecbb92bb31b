/*
 * sigv4.h — AWS Signature Version 4 for the cloud sync (S3, DynamoDB):
 * one signer for both the Authorization header and presigned URLs.
 *
 * Pure functions: no I/O, no clock, no logging. The caller passes the time
 * and the credentials; the results are the canonical request, the string
 * to sign, the signature, and either the headers to add (header signing)
 * or the signed query string (query signing, presigned URLs).
 *
 * The path and query are taken exactly as they go on the request line
 * (already percent-encoded; raw bytes are tolerated as in AWS's test
 * suite). Build them from raw object keys with pv_sigv4_uri_encode().
 *   - default (DynamoDB and most services): the path is normalised
 *     (dot segments and empty segments removed) and URI-encoded again,
 *     as AWS requires for every service but S3;
 *   - PV_SIGV4_S3: the path is signed as sent, encoded once, never
 *     normalised (an object key may hold "//" or "..").
 * The query is split on '&', each name and value percent-decoded and
 * re-encoded (RFC 3986, upper-case hex; '+' is a literal plus), then
 * sorted by name, then value.
 */
#ifndef PV_SIGV4_H
#define PV_SIGV4_H

#include "base/pv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_SIGV4_ALGORITHM        "AWS4-HMAC-SHA256"
#define PV_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define PV_SIGV4_EMPTY_SHA256     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define PV_SIGV4_MAX_EXPIRES      (7 * 24 * 3600) /* AWS refuses longer presigns */

typedef struct pv_sigv4_header {
    const char *name;  /* any case; lower-cased for signing */
    const char *value; /* trimmed and inner whitespace runs collapsed */
} pv_sigv4_header_t;

enum pv_sigv4_mode {
    PV_SIGV4_HEADER, /* Authorization header (+ X-Amz-Date, token, ...) */
    PV_SIGV4_QUERY,  /* presigned URL: X-Amz-* query parameters */
};

enum pv_sigv4_flags {
    PV_SIGV4_S3 = 1 << 0,             /* path as sent: no normalising, no 2nd encoding */
    PV_SIGV4_NO_NORMALIZE = 1 << 1,   /* non-S3 path encoded but not normalised */
    PV_SIGV4_CONTENT_SHA256 = 1 << 2, /* header mode: add and sign x-amz-content-sha256 (S3) */
    PV_SIGV4_TOKEN_UNSIGNED = 1 << 3, /* add the session token after signing (some services) */
};

/* Who signs, where and when. */
typedef struct pv_sigv4_ctx {
    const char *key_id;         /* access key id */
    const char *secret;         /* secret key; unused when signing_key is set */
    const char *token;          /* session token, or NULL */
    const char *region;         /* "us-east-1" */
    const char *service;        /* "s3", "dynamodb" */
    int64_t time_s;             /* request time, seconds since the epoch (UTC) */
    const uint8_t *signing_key; /* NULL, or 32 bytes from pv_sigv4_signing_key()
                                 * for the same UTC day, region and service */
} pv_sigv4_ctx_t;

/* What is signed. */
typedef struct pv_sigv4_req {
    enum pv_sigv4_mode mode;
    unsigned flags;                   /* enum pv_sigv4_flags */
    const char *method;               /* "GET", "PUT", ... */
    const char *path;                 /* as sent, starts with '/'; NULL or "" = "/" */
    const char *query;                /* as sent, without '?'; NULL or "" = none */
    const pv_sigv4_header_t *headers; /* headers to sign, Host required;
                                       * duplicates are combined in order */
    size_t n_headers;
    const char *payload_hash; /* 64 lower-case hex digits of the body's
                               * SHA-256, or "UNSIGNED-PAYLOAD" */
    int expires_s;            /* query mode: 1..PV_SIGV4_MAX_EXPIRES */
} pv_sigv4_req_t;

/* What comes out. Free with pv_sigv4_out_free(). */
typedef struct pv_sigv4_out {
    pv_sb_t canonical_request;
    pv_sb_t string_to_sign;
    char signature[65];       /* lower-case hex */
    char amz_date[17];        /* YYYYMMDDTHHMMSSZ */
    pv_sb_t authorization;    /* header mode: the Authorization value */
    pv_sb_t query;            /* query mode: the request's query, then the
                               * X-Amz-* parameters, X-Amz-Signature last */
    pv_sigv4_header_t add[4]; /* header mode: headers to add to the request,
                               * in order; values point into out, ctx, req */
    int n_add;
} pv_sigv4_out_t;

/*
 * Signs req. 0 and out filled; -EINVAL for bad input (no Host header, a
 * header the signer owns such as X-Amz-Date or Authorization, a malformed
 * name, payload hash, path in S3 mode, time or expiry, X-Amz-* auth
 * parameters already in a query to presign); -ENOMEM. On error out holds
 * nothing to free. Secrets never appear in out, except that the session
 * token is part of the request by design.
 */
int pv_sigv4_sign(const pv_sigv4_ctx_t *ctx, const pv_sigv4_req_t *req, pv_sigv4_out_t *out);
void pv_sigv4_out_free(pv_sigv4_out_t *out);

/*
 * The signing key for (secret, UTC day "YYYYMMDD", region, service): the
 * HMAC chain of SigV4. It is valid for that whole day, so callers may keep
 * it and pass it as ctx->signing_key instead of the secret. 0 or -EINVAL.
 */
int pv_sigv4_signing_key(const char *secret, const char *yyyymmdd, const char *region,
                         const char *service, uint8_t key[32]);

/* "YYYYMMDDTHHMMSSZ" for t (UTC); its first 8 chars are the key's day.
 * 0 or -EINVAL (before 1970 or after 9999). */
int pv_sigv4_amz_date(int64_t t, char out[17]);

/* Appends s (n bytes) percent-encoded as SigV4 wants: everything but
 * A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash) becomes %XX, upper case.
 * Object key -> path: pv_sigv4_uri_encode(sb, key, len, true). */
void pv_sigv4_uri_encode(pv_sb_t *sb, const char *s, size_t n, bool keep_slash);

#endif
