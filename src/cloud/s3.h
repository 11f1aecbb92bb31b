/*
 * s3.h — an S3 client for the replicator, on curlev (one event loop, no
 * thread per request): objects (PUT from memory or a file, streamed; GET
 * to memory with a cap or to a file, streamed; HEAD; DELETE),
 * ListObjectsV2, multipart uploads (create, part, complete, abort,
 * ListParts to resume one cut short) and conditional PUT
 * (If-None-Match: *), every request signed with SigV4 (sigv4.h).
 *
 * Calls and callbacks are on the curlev's loop thread. A call returns 0
 * and its done callback runs exactly once, later; or it returns -errno
 * (-EINVAL bad key or arguments, -ENOMEM, -ESHUTDOWN, -errno opening a
 * file) and done never runs. Borrowed inputs (memory bodies, fds) must
 * stay valid until done; strings are copied.
 *
 * The result says what happened and what to do: rc (0 or -errno, the
 * table in s3.c), status, S3's Code and Message, and `retryable`:
 * true for throttling, 5xx, timeouts, connection errors (back off and
 * send the same request again: every request here is idempotent), false
 * for the rest (a missing key, refused credentials, a failed condition, a
 * bad request: sending it again cannot help). Nothing is logged here:
 * the caller logs the result once; it never holds a secret.
 */
#ifndef PV_S3_H
#define PV_S3_H

#include "cloud/awscreds.h"
#include "cloud/curlev.h"
#include "cloud/s3xml.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_S3_MIN_PART      (5LL << 20) /* AWS: every part but the last */
#define PV_S3_MAX_PART      (5LL << 30)
#define PV_S3_GET_MAX       (64u << 20) /* default cap of a GET to memory */
#define PV_S3_UPLOAD_ID_MAX 1024

typedef struct pv_s3 pv_s3_t;

typedef struct pv_s3_config {
    const char *endpoint; /* "http(s)://host[:port]"; NULL: https://s3.REGION.amazonaws.com */
    const char *region;   /* NULL: "us-east-1" */
    const char *bucket;   /* required: 3-63 of a-z 0-9 . - */
    bool path_style;      /* ENDPOINT/BUCKET/KEY; false: virtual-hosted,
                           * BUCKET.ENDPOINT-HOST/KEY */
} pv_s3_config_t;

/* Where a body comes from. */
enum pv_s3_src { PV_S3_MEM, PV_S3_PATH, PV_S3_FD };
typedef struct pv_s3_body {
    enum pv_s3_src kind;
    const void *data;   /* MEM: the bytes (borrowed until done) */
    size_t len;         /* MEM: their count */
    const char *path;   /* PATH: a file the client opens and closes */
    int fd;             /* FD: an open file, read with pread (borrowed) */
    int64_t offset;     /* PATH, FD: the first byte */
    int64_t length;     /* PATH, FD: bytes from offset, -1: to the end */
    const char *sha256; /* the bytes' SHA-256 in hex if the caller has it
                         * (blobs are named by it); NULL: the client
                         * hashes them first, 256 KiB a loop turn */
} pv_s3_body_t;

/* What a PUT adds besides x-amz-content-sha256 (which S3 checks against
 * the body in any case). */
enum pv_s3_checksum {
    PV_S3_CHECKSUM_NONE,
    PV_S3_CHECKSUM_MD5,    /* Content-MD5 */
    PV_S3_CHECKSUM_SHA256, /* x-amz-checksum-sha256: S3 checks and keeps it */
};

typedef struct pv_s3_put_opts {
    enum pv_s3_checksum checksum;
    bool if_none_match;       /* If-None-Match: *: only if the key is free
                               * (-EEXIST, permanent, when taken) */
    const char *content_type; /* NULL: binary/octet-stream */
} pv_s3_put_opts_t;

/* Where a GET's body goes. */
enum pv_s3_sink_kind { PV_S3_TO_MEM, PV_S3_TO_PATH, PV_S3_TO_FD };
typedef struct pv_s3_sink {
    enum pv_s3_sink_kind kind;
    size_t max;       /* TO_MEM: more is -EMSGSIZE (0: PV_S3_GET_MAX) */
    const char *path; /* TO_PATH: created or truncated, 0600 (no fsync) */
    int fd;           /* TO_FD: written with pwrite from offset 0 (borrowed) */
} pv_s3_sink_t;

typedef struct pv_s3_result {
    int rc;                    /* 0 or -errno (see s3.c's table) */
    long status;               /* HTTP status of the last exchange, 0: none */
    bool retryable;            /* see above */
    char code[64];             /* S3's error Code, "" when none */
    char message[256];         /* S3's Message or the transport's; "" */
    char request_id[64];       /* x-amz-request-id, for AWS support */
    char etag[PV_S3_ETAG_MAX]; /* PUT, part, HEAD, GET, complete; no quotes */
    int64_t size;              /* PUT, part: bytes sent; HEAD: object size;
                                * GET: bytes received */
    char sha256[65];           /* PUT, part: of the bytes sent; GET: of
                                * the bytes received */
    const uint8_t *body;       /* GET to memory: the bytes, valid in done */
    size_t body_len;
    const char *upload_id;     /* create: valid in done */
    const pv_s3_listing_t *listing; /* list: one page, valid in done */
    const pv_s3_parts_t *parts;     /* list parts: all pages, valid in done */
    long connects;             /* new connections opened (0: all reused) */
    double seconds;            /* on the wire */
} pv_s3_result_t;

typedef void (*pv_s3_done_fn)(const pv_s3_result_t *res, void *arg);

/* 0 or -EINVAL (bad endpoint, bucket, region or credentials), -ENOMEM.
 * The credentials are copied (and wiped on free). http NULL: a client
 * that makes links only (pv_s3_presign_get); its requests are -EINVAL. */
int pv_s3_new(pv_curlev_t *http, const pv_s3_config_t *cfg, const pv_aws_creds_t *creds,
              pv_s3_t **out);
/* New credentials for the requests signed from now on. */
int pv_s3_set_creds(pv_s3_t *s3, const pv_aws_creds_t *creds);
/* Cancels its requests (each done runs with -ECANCELED), then frees.
 * Free every client before their curlev. */
void pv_s3_free(pv_s3_t *s3);

/* ---- objects ---- */
int pv_s3_put(pv_s3_t *s3, const char *key, const pv_s3_body_t *body,
              const pv_s3_put_opts_t *opts, pv_s3_done_fn done, void *arg);
int pv_s3_get(pv_s3_t *s3, const char *key, const pv_s3_sink_t *sink, pv_s3_done_fn done,
              void *arg);
/* 0 with size and etag; -ENOENT when there is no such key. */
int pv_s3_head(pv_s3_t *s3, const char *key, pv_s3_done_fn done, void *arg);
/* 0 also when there was no such key (S3 says 204 either way). */
int pv_s3_delete(pv_s3_t *s3, const char *key, pv_s3_done_fn done, void *arg);
/* One page of ListObjectsV2: keys under prefix (NULL: all), after token
 * (NULL: from the start), at most max_keys (0: S3's 1000). */
int pv_s3_list(pv_s3_t *s3, const char *prefix, const char *token, int max_keys,
               pv_s3_done_fn done, void *arg);

/* ---- multipart uploads ---- */
int pv_s3_mpu_create(pv_s3_t *s3, const char *key, const char *content_type, pv_s3_done_fn done,
                     void *arg);
/* Part `number` (1..10000) with Content-MD5: its etag (the part's MD5 in
 * hex) is what complete needs and what ListParts reports later. */
int pv_s3_mpu_part(pv_s3_t *s3, const char *key, const char *upload_id, int number,
                   const pv_s3_body_t *body, pv_s3_done_fn done, void *arg);
/* parts[0..n) in ascending part number; only number and etag are read. */
int pv_s3_mpu_complete(pv_s3_t *s3, const char *key, const char *upload_id,
                       const pv_s3_part_t *parts, size_t n, pv_s3_done_fn done, void *arg);
int pv_s3_mpu_abort(pv_s3_t *s3, const char *key, const char *upload_id, pv_s3_done_fn done,
                    void *arg);
/* Every part stored so far (following pages of max_parts, 0: 1000), so
 * an upload cut short resumes with the parts it lacks; -ENOENT when the
 * upload is gone (completed or aborted). */
int pv_s3_mpu_list_parts(pv_s3_t *s3, const char *key, const char *upload_id, int max_parts,
                         pv_s3_done_fn done, void *arg);
/* Parts of part_size (PV_S3_MIN_PART..PV_S3_MAX_PART) for total bytes:
 * the count, or -EINVAL (bad size, more than 10000 parts). */
int pv_s3_part_count(int64_t total, int64_t part_size);

/* ---- conditional writes ----
 * Whether the endpoint honours If-None-Match: * on PUT (AWS has since
 * 2024; s3rver 3 ignores it and overwrites): PUTs an empty object at key
 * twice with the condition, then deletes it. 0: the second was refused
 * (412), the lease can rely on it; -ENOTSUP: it was taken (the endpoint
 * overwrites); else the error of a step. */
int pv_s3_probe_conditional(pv_s3_t *s3, const char *key, pv_s3_done_fn done, void *arg);

/* ---- links for others to follow ---- */
/* A presigned GET of key (SigV4 query signing) valid expires_s seconds
 * from now_s; response_type (or NULL) is the Content-Type S3 answers
 * with. No I/O: a client made with http NULL serves for this alone. */
int pv_s3_presign_get(const pv_s3_t *s3, const char *key, const char *response_type,
                      int64_t now_s, int expires_s, char *url, size_t url_size);
/* "scheme://host" that links of a client made with cfg point at (for a
 * CSP). */
int pv_s3_origin(const pv_s3_config_t *cfg, char *out, size_t size);

/* ---- for tests and callers that classify on their own ---- */
/* An HTTP answer's status and S3 code -> rc and retryable. */
void pv_s3_classify(long status, const char *code, int *rc, bool *retryable);
/* Whether a transport rc (curlev's) is worth retrying. */
bool pv_s3_transport_retryable(int rc);
/* The request's URL, Host and signed path for key (tests, logs: no secrets). */
int pv_s3_url(const pv_s3_t *s3, const char *key, char *url, size_t url_size, char *host,
              size_t host_size);

#endif
