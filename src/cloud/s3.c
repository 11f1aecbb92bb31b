/*
 * s3.c — the S3 client (contract in s3.h) on curlev.
 *
 * One s3_req_t per call. It lives through one or more HTTP exchanges
 * (ListParts follows pages; the conditional probe is PUT, PUT, DELETE):
 * each exchange is a fresh easy handle submitted to curlev, signed in
 * curlev's start hook, i.e. when it leaves the FIFO, so that a request
 * that waited behind others still carries a fresh X-Amz-Date. A body
 * without a known SHA-256 is hashed first, 256 KiB a loop turn, so a 5
 * GiB file does not stall the loop: SigV4 needs the hash before the
 * first byte is sent. Bodies stream from memory or a file with pread
 * (CURLOPT_READFUNCTION, with a seek callback so curl can rewind when a
 * kept-alive connection turns out dead and it resends); GET bodies stream
 * to memory (capped) or a file with pwrite, hashed as they come. Error
 * bodies go to a small buffer of their own, never into the caller's sink.
 *
 * The local peer, s3rver 3.7.1 (tests/peers/), differs from AWS in what
 * we use; what it does, and what this code does about it:
 *   - Signatures: s3rver checks none (only that an Authorization header
 *     is well formed and x-amz-content-sha256 is there, and that the
 *     key id is S3RVER). Our signer is checked against AWS's suite and
 *     botocore instead (tests/unit/test_sigv4.c, sigv4_botocore.py);
 *     here every request is signed exactly as sent (Host set by us, path
 *     sent as signed with CURLOPT_PATH_AS_IS).
 *   - Payload hashes and checksums: AWS refuses a body whose SHA-256 is
 *     not x-amz-content-sha256 (XAmzContentSHA256Mismatch), whose MD5 is
 *     not Content-MD5 (BadDigest), or whose x-amz-checksum-sha256 does
 *     not match. s3rver checks none of them and does not keep the
 *     checksum. We always send the real SHA-256, so AWS checks every
 *     byte; those refusals are permanent errors (-EBADMSG). The tests
 *     compare what comes back byte for byte and by SHA-256 instead.
 *   - Conditional writes: AWS answers a PUT with If-None-Match: * on a
 *     taken key with 412 PreconditionFailed (-EEXIST here, permanent)
 *     and a race between two such writes with 409
 *     ConditionalRequestConflict (-EAGAIN, retryable). s3rver ignores the
 *     header on PUT and overwrites (it honours it only on GET, with a
 *     304). pv_s3_probe_conditional tells the two apart at run time, so
 *     a lease is used only where the endpoint keeps it.
 *   - Multipart: AWS refuses parts under 5 MiB but the last
 *     (EntityTooSmall, at complete); s3rver takes any size.
 *     pv_s3_part_count refuses plans that AWS would. s3rver 3 has no
 *     ListParts and no AbortMultipartUpload (405 MethodNotAllowed); the
 *     test peer adds both over s3rver's own upload folder
 *     (tests/peers/s3rver-pv.js) in AWS's documented shape, and the XML
 *     reader is also checked on AWS's own example documents.
 *   - ETags: a single PUT's ETag is the hex MD5 of the body on both (AWS:
 *     without SSE-KMS/SSE-C). A multipart object's ETag on AWS is the MD5
 *     of the parts' MD5s with "-N" appended; s3rver gives the MD5 of the
 *     whole. So ETags are never taken as a content hash of an object:
 *     only a part's ETag is compared with the part's MD5 (to resume),
 *     and content is checked by SHA-256.
 *   - ListObjectsV2: s3rver ignores encoding-type=url, so we do not ask
 *     for it and refuse keys with control characters instead (XML 1.0
 *     cannot carry them). Continuation tokens are opaque on both
 *     (s3rver makes them with DES: its script enables OpenSSL 3's legacy
 *     provider, or every second page would be a 500).
 *   - Keys: s3rver keeps objects as files, so a key with "." or ".."
 *     segments is stored under the path they resolve to and a key with
 *     "//" is a 404; AWS keeps any key as it is. We send and sign keys as
 *     they are (encoded once, CURLOPT_PATH_AS_IS); the tests check such
 *     keys' signatures on a fake peer instead. Our own keys are hashes.
 *   - Errors: s3rver adds x-amz-error-code/-message headers (used when an
 *     answer has no body, e.g. HEAD); AWS sends a body or nothing.
 */
#include "cloud/s3.h"

#include "base/pv.h"
#include "base/text.h"
#include "cloud/sigv4.h"

#include <event2/event.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S3_HASH_CHUNK   (64 * 1024)
#define S3_HASH_TURN    4                 /* chunks a loop turn: 256 KiB */
#define S3_ERR_BODY_MAX (64 * 1024)       /* of an error document kept */
#define S3_XML_MAX      (16u << 20)       /* of a listing, parts page... */
#define S3_MAX_HOST     320
#define S3_USER_AGENT   "User-Agent: pv/" PV_VERSION

enum s3_op {
    S3_PUT,
    S3_GET,
    S3_HEAD,
    S3_DELETE,
    S3_LIST,
    S3_MPU_CREATE,
    S3_MPU_PART,
    S3_MPU_COMPLETE,
    S3_MPU_ABORT,
    S3_MPU_LIST_PARTS,
    S3_PROBE,
};

/* The method of each operation (the probe's depends on its step). */
static const char *const s3_methods[] = {
    [S3_PUT] = "PUT",           [S3_GET] = "GET",         [S3_HEAD] = "HEAD",
    [S3_DELETE] = "DELETE",     [S3_LIST] = "GET",        [S3_MPU_CREATE] = "POST",
    [S3_MPU_PART] = "PUT",      [S3_MPU_COMPLETE] = "POST", [S3_MPU_ABORT] = "DELETE",
    [S3_MPU_LIST_PARTS] = "GET", [S3_PROBE] = "PUT",
};

typedef struct s3_src {
    bool on;            /* the request has a body */
    const uint8_t *mem; /* from memory, or NULL */
    int fd;             /* from this file when mem is NULL */
    bool own_fd;        /* we opened fd: we close it */
    int64_t off, len;   /* range of the file (mem: 0, its length) */
    int64_t pos;        /* next byte to send, from 0 */
} s3_src_t;

typedef struct s3_sink {
    enum { SINK_NONE, SINK_MEM, SINK_FD } kind;
    size_t max;        /* SINK_MEM: cap */
    pv_sb_t mem;       /* SINK_MEM: the bytes */
    int fd;            /* SINK_FD */
    bool own_fd;       /* we opened fd */
    int64_t written;   /* bytes taken */
    EVP_MD_CTX *sha;   /* SHA-256 of the bytes taken (GET) */
} s3_sink_t;

typedef struct s3_req {
    LIST_ENTRY(s3_req) link; /* in s3->reqs */
    pv_s3_t *s3;             /* owner */
    enum s3_op op;
    pv_s3_done_fn done;      /* the caller's */
    void *arg;
    char *key;               /* the object key (copy) */
    char *upload_id;         /* multipart: the upload (copy, or from create) */
    int part;                /* part number; list parts: the marker */
    int max_n;               /* list: max keys; list parts: max parts */
    char *prefix, *token;    /* list */
    int step;                /* probe: 0 put, 1 put again, 2 delete */
    int verdict;             /* probe: what the second PUT said */

    /* the body and its digests */
    s3_src_t src;
    pv_sb_t xml;                    /* complete: the body we send */
    enum pv_s3_checksum checksum;   /* what to add besides the payload hash */
    bool if_none_match;
    char content_type[128];         /* "" when none */
    char sha256[65];                /* payload hash, hex */
    char md5_b64[25];               /* Content-MD5 */
    char sha256_b64[45];            /* x-amz-checksum-sha256 */
    struct event *hash_ev;          /* hashing turns; NULL when not hashing */
    uint8_t *hash_buf;              /* S3_HASH_CHUNK bytes while hashing */
    EVP_MD_CTX *h_sha, *h_md5;      /* while hashing */
    int64_t hash_pos;               /* bytes hashed */

    /* the exchange in flight */
    CURL *easy;                     /* NULL between exchanges */
    struct curl_slist *hdrs;        /* its headers (signed in start) */
    s3_sink_t sink;                 /* where a 2xx body goes */
    pv_sb_t err;                    /* where any other body goes */
    bool local_error;               /* a read/write of ours failed: permanent */
    long status;                    /* from the status line */
    int64_t content_length;         /* Content-Length, -1: none */
    char etag[PV_S3_ETAG_MAX];      /* ETag header, quotes removed */
    char hdr_code[64];              /* x-amz-error-code (s3rver) */
    char hdr_message[256];          /* x-amz-error-message (s3rver) */
    char request_id[64];            /* x-amz-request-id */

    pv_s3_result_t res;             /* built as we go */
    pv_s3_listing_t listing;        /* list */
    pv_s3_parts_t parts;            /* list parts, all pages */
} s3_req_t;

LIST_HEAD(s3_req_list, s3_req);

struct pv_s3 {
    pv_curlev_t *http;          /* the transport */
    char scheme[8];             /* "http" or "https" */
    char host[S3_MAX_HOST];     /* endpoint host[:port] as in the URL */
    char bucket[64];
    char region[64];
    bool path_style;
    pv_aws_creds_t creds;       /* wiped on free */
    char key_day[9];            /* the day key_cache was made for */
    uint8_t key_cache[32];      /* SigV4 signing key of that day */
    struct s3_req_list reqs;    /* requests not yet done */
    bool closing;               /* pv_s3_free is cancelling: no new calls */
};

static int s3_exchange(s3_req_t *r);
static void s3_finish(s3_req_t *r);

/* ---- classification ---- */

static const struct {
    const char *code;
    int rc;
    bool retry;
} s3_codes[] = {
    {"SlowDown", -EBUSY, true},
    {"ServiceUnavailable", -EBUSY, true},
    {"Throttling", -EBUSY, true},
    {"InternalError", -EIO, true},
    {"RequestTimeout", -ETIMEDOUT, true},
    {"RequestTimeTooSkewed", -ETIME, true},       /* after fixing the clock */
    {"ExpiredToken", -EKEYEXPIRED, true},         /* after new credentials */
    {"TokenRefreshRequired", -EKEYEXPIRED, true}, /* after new credentials */
    {"ConditionalRequestConflict", -EAGAIN, true},
    {"OperationAborted", -EAGAIN, true},
    {"NoSuchKey", -ENOENT, false},
    {"NoSuchBucket", -ENOENT, false},
    {"NoSuchUpload", -ENOENT, false},
    {"PreconditionFailed", -EEXIST, false},
    {"BadDigest", -EBADMSG, false},
    {"InvalidDigest", -EBADMSG, false},
    {"XAmzContentSHA256Mismatch", -EBADMSG, false},
    {"EntityTooSmall", -EINVAL, false},
    {"EntityTooLarge", -EMSGSIZE, false},
    {"InvalidPart", -EINVAL, false},
    {"InvalidPartOrder", -EINVAL, false},
    {"AccessDenied", -EACCES, false},
    {"InvalidAccessKeyId", -EACCES, false},
    {"SignatureDoesNotMatch", -EACCES, false},
    {"NotImplemented", -ENOTSUP, false},
    {"MethodNotAllowed", -ENOTSUP, false},
};

/* By status when the code is unknown or absent; first match wins. */
static const struct {
    long lo, hi;
    int rc;
    bool retry;
} s3_statuses[] = {
    {404, 404, -ENOENT, false},   {412, 412, -EEXIST, false},   {408, 408, -ETIMEDOUT, true},
    {429, 429, -EBUSY, true},     {401, 403, -EACCES, false},   {405, 405, -ENOTSUP, false},
    {501, 501, -ENOTSUP, false},  {503, 503, -EBUSY, true},     {500, 599, -EIO, true},
    {400, 499, -EINVAL, false},   {300, 399, -EREMOTE, false},  {0, 1000, -EPROTO, true},
};

void pv_s3_classify(long status, const char *code, int *rc, bool *retryable)
{
    for (size_t i = 0; code && *code && i < PV_ARRAY_LEN(s3_codes); i++)
        if (strcmp(code, s3_codes[i].code) == 0) {
            *rc = s3_codes[i].rc;
            *retryable = s3_codes[i].retry;
            return;
        }
    for (size_t i = 0; i < PV_ARRAY_LEN(s3_statuses); i++)
        if (status >= s3_statuses[i].lo && status <= s3_statuses[i].hi) {
            *rc = s3_statuses[i].rc;
            *retryable = s3_statuses[i].retry;
            return;
        }
    *rc = -EPROTO;
    *retryable = true;
}

bool pv_s3_transport_retryable(int rc)
{
    switch (rc) {
    case -ECANCELED:
    case -EINVAL:
    case -EMSGSIZE:
    case -ESHUTDOWN:
        return false;
    default:
        return rc != 0;
    }
}

/* ---- checking inputs ---- */

/* 1..1024 bytes of UTF-8 without control characters. */
static bool s3_key_ok(const char *key)
{
    size_t n = key ? strnlen(key, PV_S3_KEY_MAX + 1) : 0;
    if (n == 0 || n > PV_S3_KEY_MAX)
        return false;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        size_t l = pv_utf8_len((const unsigned char *)key + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

static bool s3_bucket_ok(const char *b)
{
    size_t n = b ? strlen(b) : 0;
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' ||
              b[i] == '-'))
            return false;
    return b[0] != '.' && b[0] != '-' && b[n - 1] != '.' && b[n - 1] != '-';
}

static bool s3_region_ok(const char *r)
{
    size_t n = r ? strlen(r) : 0;
    if (n == 0 || n >= 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
            return false;
    return true;
}

/* "http(s)://host[:port][/]" -> scheme and host[:port]. */
static int s3_endpoint(pv_s3_t *s3, const char *ep)
{
    const char *rest;
    if (strncmp(ep, "https://", 8) == 0) {
        pv_strlcpy(s3->scheme, "https", sizeof(s3->scheme));
        rest = ep + 8;
    } else if (strncmp(ep, "http://", 7) == 0) {
        pv_strlcpy(s3->scheme, "http", sizeof(s3->scheme));
        rest = ep + 7;
    } else {
        return -EINVAL;
    }
    size_t n = strcspn(rest, "/");
    if (n == 0 || n >= S3_MAX_HOST - 70 || (rest[n] == '/' && rest[n + 1] != '\0'))
        return -EINVAL; /* no path: the bucket and key make it */
    for (size_t i = 0; i < n; i++) {
        char c = rest[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return -EINVAL;
    }
    memcpy(s3->host, rest, n);
    s3->host[n] = '\0';
    return 0;
}

static bool s3_creds_ok(const pv_aws_creds_t *c)
{
    return c && c->key_id[0] && c->secret[0];
}

/* ---- the client ---- */

int pv_s3_new(pv_curlev_t *http, const pv_s3_config_t *cfg, const pv_aws_creds_t *creds,
              pv_s3_t **out)
{
    *out = NULL;
    if (!cfg || !s3_bucket_ok(cfg->bucket) || !s3_creds_ok(creds))
        return -EINVAL;
    const char *region = cfg->region ? cfg->region : "us-east-1";
    if (!s3_region_ok(region))
        return -EINVAL;
    pv_s3_t *s3 = pv_fail("s3_new") ? NULL : calloc(1, sizeof(*s3));
    if (!s3)
        return -ENOMEM;
    s3->http = http;
    pv_strlcpy(s3->bucket, cfg->bucket, sizeof(s3->bucket));
    pv_strlcpy(s3->region, region, sizeof(s3->region));
    s3->path_style = cfg->path_style;
    LIST_INIT(&s3->reqs);
    int rc;
    if (cfg->endpoint) {
        rc = s3_endpoint(s3, cfg->endpoint);
    } else {
        char ep[128];
        snprintf(ep, sizeof(ep), "https://s3.%s.amazonaws.com", region);
        rc = s3_endpoint(s3, ep);
    }
    if (rc == 0)
        rc = pv_s3_set_creds(s3, creds);
    if (rc) {
        free(s3);
        return rc;
    }
    *out = s3;
    return 0;
}

int pv_s3_set_creds(pv_s3_t *s3, const pv_aws_creds_t *creds)
{
    if (!s3_creds_ok(creds))
        return -EINVAL;
    pv_awscreds_wipe(&s3->creds);
    s3->creds = *creds;
    explicit_bzero(s3->key_cache, sizeof(s3->key_cache));
    s3->key_day[0] = '\0';
    return 0;
}

void pv_s3_free(pv_s3_t *s3)
{
    s3_req_t *r;
    if (!s3 || s3->closing)
        return; /* a done callback of ours freeing it again */
    s3->closing = true;
    while ((r = LIST_FIRST(&s3->reqs))) {
        if (r->easy && pv_curlev_cancel(s3->http, r->easy) == 0)
            continue; /* its done finished r */
        r->res.rc = -ECANCELED;
        pv_strlcpy(r->res.message, "cancelled", sizeof(r->res.message));
        s3_finish(r);
    }
    pv_awscreds_wipe(&s3->creds);
    explicit_bzero(s3->key_cache, sizeof(s3->key_cache));
    free(s3);
}

int pv_s3_part_count(int64_t total, int64_t part_size)
{
    if (total < 0 || part_size < PV_S3_MIN_PART || part_size > PV_S3_MAX_PART)
        return -EINVAL;
    int64_t n = total == 0 ? 1 : (total + part_size - 1) / part_size;
    return n > PV_S3_MAX_PARTS ? -EINVAL : (int)n;
}

/* ---- URLs ---- */

/* Host (as sent and signed) of requests: the endpoint's, or the bucket's
 * name in front of it. */
static void s3_host(const pv_s3_t *s3, char *out, size_t size)
{
    if (s3->path_style)
        snprintf(out, size, "%s", s3->host);
    else
        snprintf(out, size, "%s.%s", s3->bucket, s3->host);
}

/* The path as sent and signed: encoded once, '/' kept. */
static void s3_path(const pv_s3_t *s3, const char *key, pv_sb_t *sb)
{
    pv_sb_add(sb, "/", 1);
    if (s3->path_style) {
        pv_sb_puts(sb, s3->bucket);
        if (key)
            pv_sb_add(sb, "/", 1);
    }
    if (key)
        pv_sigv4_uri_encode(sb, key, strlen(key), true);
}

int pv_s3_url(const pv_s3_t *s3, const char *key, char *url, size_t url_size, char *host,
              size_t host_size)
{
    if (key && !s3_key_ok(key))
        return -EINVAL;
    char h[S3_MAX_HOST + 64];
    pv_sb_t path = {0};
    s3_host(s3, h, sizeof(h));
    s3_path(s3, key, &path);
    int rc = path.failed ? -ENOMEM : 0;
    if (rc == 0 && (size_t)snprintf(url, url_size, "%s://%s%s", s3->scheme, h, path.p) >= url_size)
        rc = -EMSGSIZE;
    if (rc == 0 && host && pv_strlcpy(host, h, host_size) >= host_size)
        rc = -EMSGSIZE;
    pv_sb_free(&path);
    return rc;
}

int pv_s3_presign_get(const pv_s3_t *s3, const char *key, const char *response_type,
                      int64_t now_s, int expires_s, char *url, size_t url_size)
{
    if (!key || !s3_key_ok(key) || expires_s < 1 || expires_s > PV_SIGV4_MAX_EXPIRES)
        return -EINVAL;
    char host[S3_MAX_HOST + 64];
    pv_sb_t path = {0}, query = {0};
    s3_host(s3, host, sizeof(host));
    s3_path(s3, key, &path);
    if (response_type) {
        pv_sb_puts(&query, "response-content-type=");
        pv_sigv4_uri_encode(&query, response_type, strlen(response_type), false);
    }
    pv_sigv4_header_t h[1] = {{"Host", host}};
    pv_sigv4_ctx_t ctx = {
        .key_id = s3->creds.key_id,
        .secret = s3->creds.secret,
        .token = s3->creds.token[0] ? s3->creds.token : NULL,
        .region = s3->region,
        .service = "s3",
        .time_s = now_s,
    };
    pv_sigv4_req_t req = {
        .mode = PV_SIGV4_QUERY,
        .flags = PV_SIGV4_S3,
        .method = "GET",
        .path = path.p,
        .query = query.len ? query.p : NULL,
        .headers = h,
        .n_headers = 1,
        .payload_hash = PV_SIGV4_UNSIGNED_PAYLOAD,
        .expires_s = expires_s,
    };
    pv_sigv4_out_t out;
    int rc = path.failed || query.failed ? -ENOMEM : pv_sigv4_sign(&ctx, &req, &out);
    if (rc == 0) {
        if ((size_t)snprintf(url, url_size, "%s://%s%s?%s", s3->scheme, host, path.p,
                             out.query.p) >= url_size)
            rc = -EMSGSIZE;
        pv_sigv4_out_free(&out);
    }
    pv_sb_free(&path);
    pv_sb_free(&query);
    return rc;
}

int pv_s3_origin(const pv_s3_config_t *cfg, char *out, size_t size)
{
    if (!cfg || !s3_bucket_ok(cfg->bucket))
        return -EINVAL;
    const char *region = cfg->region ? cfg->region : "us-east-1";
    pv_s3_t s3 = {.path_style = cfg->path_style};
    pv_strlcpy(s3.bucket, cfg->bucket, sizeof(s3.bucket));
    char ep[128];
    snprintf(ep, sizeof(ep), "https://s3.%s.amazonaws.com", region);
    int rc = s3_endpoint(&s3, cfg->endpoint ? cfg->endpoint : ep);
    if (rc < 0)
        return rc;
    char host[S3_MAX_HOST + 64];
    s3_host(&s3, host, sizeof(host));
    return (size_t)snprintf(out, size, "%s://%s", s3.scheme, host) >= size ? -EMSGSIZE : 0;
}

/* "name=value" with the value encoded, after a '&' unless first. */
static void s3_query_add(pv_sb_t *q, const char *name, const char *value)
{
    if (q->len)
        pv_sb_add(q, "&", 1);
    pv_sb_puts(q, name);
    if (value) {
        pv_sb_add(q, "=", 1);
        pv_sigv4_uri_encode(q, value, strlen(value), false);
    }
}

static void s3_query_int(pv_sb_t *q, const char *name, long v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%ld", v);
    s3_query_add(q, name, buf);
}

/* The query of r's next exchange (signed as is). */
static void s3_query(const s3_req_t *r, pv_sb_t *q)
{
    switch (r->op) {
    case S3_LIST:
        s3_query_add(q, "list-type", "2");
        if (r->max_n > 0)
            s3_query_int(q, "max-keys", r->max_n);
        if (r->prefix)
            s3_query_add(q, "prefix", r->prefix);
        if (r->token)
            s3_query_add(q, "continuation-token", r->token);
        break;
    case S3_MPU_CREATE:
        s3_query_add(q, "uploads", NULL);
        break;
    case S3_MPU_PART:
        s3_query_int(q, "partNumber", r->part);
        s3_query_add(q, "uploadId", r->upload_id);
        break;
    case S3_MPU_COMPLETE:
    case S3_MPU_ABORT:
        s3_query_add(q, "uploadId", r->upload_id);
        break;
    case S3_MPU_LIST_PARTS:
        if (r->max_n > 0)
            s3_query_int(q, "max-parts", r->max_n);
        if (r->part > 0)
            s3_query_int(q, "part-number-marker", r->part);
        s3_query_add(q, "uploadId", r->upload_id);
        break;
    default:
        break;
    }
}

static const char *s3_method(const s3_req_t *r)
{
    if (r->op == S3_PROBE)
        return r->step == 2 ? "DELETE" : "PUT";
    return s3_methods[r->op];
}

/* ---- bodies ---- */

static int s3_src_read(s3_src_t *s, uint8_t *buf, size_t want, int64_t at, size_t *got)
{
    if (s->mem) {
        memcpy(buf, s->mem + at, want);
        *got = want;
        return 0;
    }
    ssize_t n;
    do
        n = pv_fail("s3_read") ? (errno = EIO, -1) : pread(s->fd, buf, want, (off_t)(s->off + at));
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -EIO; /* the file is shorter than it was */
    *got = (size_t)n;
    return 0;
}

static size_t s3_read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    s3_req_t *r = arg;
    s3_src_t *s = &r->src;
    size_t want = size * nitems, got = 0;
    int64_t left = s->len - s->pos;
    if (left <= 0)
        return 0;
    if ((int64_t)want > left)
        want = (size_t)left;
    int rc = s3_src_read(s, (uint8_t *)buf, want, s->pos, &got);
    if (rc) {
        r->local_error = true;
        pv_curlev_fail(r->easy, rc);
        return CURL_READFUNC_ABORT;
    }
    s->pos += (int64_t)got;
    return got;
}

/* curl rewinds to resend on a new connection. */
static int s3_seek_cb(void *arg, curl_off_t off, int origin)
{
    s3_req_t *r = arg;
    if (origin != SEEK_SET || off < 0 || off > r->src.len)
        return CURL_SEEKFUNC_FAIL;
    r->src.pos = off;
    return CURL_SEEKFUNC_OK;
}

/* Opens or borrows the body; sets r->src. */
static int s3_src_init(s3_req_t *r, const pv_s3_body_t *b)
{
    s3_src_t *s = &r->src;
    *s = (s3_src_t){.on = true, .fd = -1};
    if (b->kind == PV_S3_MEM) {
        if (!b->data && b->len)
            return -EINVAL;
        s->mem = b->data ? b->data : (const uint8_t *)"";
        s->len = (int64_t)b->len;
        return 0;
    }
    if (b->kind == PV_S3_PATH) {
        if (!b->path)
            return -EINVAL;
        s->fd = pv_fail("s3_open") ? (errno = EACCES, -1) : open(b->path, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0)
            return -errno;
        s->own_fd = true;
    } else if (b->kind == PV_S3_FD && b->fd >= 0) {
        s->fd = b->fd;
    } else {
        return -EINVAL;
    }
    struct stat st;
    if (fstat(s->fd, &st) != 0)
        return -errno;
    if (b->offset < 0 || b->offset > st.st_size || b->length < -1 ||
        (b->length >= 0 && b->length > st.st_size - b->offset))
        return -EINVAL;
    s->off = b->offset;
    s->len = b->length >= 0 ? b->length : st.st_size - b->offset;
    return 0;
}

static bool s3_hex64(const char *h)
{
    if (!h || strlen(h) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (pv_hex_digit((unsigned char)h[i]) < 0)
            return false;
    return true;
}

static void s3_b64(const uint8_t *d, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, d, (int)n);
}

/* ---- hashing a body before it is sent ---- */

static int s3_hash_finish(s3_req_t *r)
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (r->h_sha) {
        if (EVP_DigestFinal_ex(r->h_sha, d, &n) != 1)
            return -ENOMEM;
        pv_hex(d, n, r->sha256);
        s3_b64(d, n, r->sha256_b64);
    }
    if (r->h_md5) {
        if (EVP_DigestFinal_ex(r->h_md5, d, &n) != 1)
            return -ENOMEM;
        s3_b64(d, n, r->md5_b64);
    }
    return 0;
}

static void s3_hash_free(s3_req_t *r)
{
    if (r->hash_ev)
        event_free(r->hash_ev);
    free(r->hash_buf);
    r->hash_buf = NULL;
    EVP_MD_CTX_free(r->h_sha);
    EVP_MD_CTX_free(r->h_md5);
    r->hash_ev = NULL;
    r->h_sha = r->h_md5 = NULL;
}

/* One loop turn of hashing; the exchange starts once the body is read. */
static void s3_hash_cb(evutil_socket_t fd, short what, void *arg)
{
    s3_req_t *r = arg;
    uint8_t *buf = r->hash_buf;
    int rc = 0;
    (void)fd;
    (void)what;
    for (int i = 0; i < S3_HASH_TURN && r->hash_pos < r->src.len && rc == 0; i++) {
        size_t want = (size_t)(r->src.len - r->hash_pos), got = 0;
        if (want > S3_HASH_CHUNK)
            want = S3_HASH_CHUNK;
        rc = s3_src_read(&r->src, buf, want, r->hash_pos, &got);
        if (rc == 0 && ((r->h_sha && EVP_DigestUpdate(r->h_sha, buf, got) != 1) ||
                        (r->h_md5 && EVP_DigestUpdate(r->h_md5, buf, got) != 1)))
            rc = -ENOMEM;
        r->hash_pos += (int64_t)got;
    }
    if (rc == 0 && r->hash_pos < r->src.len) {
        event_active(r->hash_ev, 0, 0);
        return;
    }
    if (rc == 0)
        rc = s3_hash_finish(r);
    s3_hash_free(r);
    if (rc == 0)
        rc = s3_exchange(r);
    if (rc) {
        r->local_error = true;
        r->res.rc = rc;
        pv_strlcpy(r->res.message, "cannot read the body", sizeof(r->res.message));
        s3_finish(r);
    }
}

/* Hashes what the headers need and nobody gave, then starts. */
static int s3_hash_start(s3_req_t *r)
{
    bool need_sha = !r->sha256[0];
    bool need_md5 = r->checksum == PV_S3_CHECKSUM_MD5;
    if (!need_sha && !need_md5)
        return s3_exchange(r);
    if (need_sha && !(r->h_sha = EVP_MD_CTX_new()))
        return -ENOMEM;
    if (need_md5 && !(r->h_md5 = EVP_MD_CTX_new()))
        goto fail;
    if ((r->h_sha && EVP_DigestInit_ex(r->h_sha, EVP_sha256(), NULL) != 1) ||
        (r->h_md5 && EVP_DigestInit_ex(r->h_md5, EVP_md5(), NULL) != 1))
        goto fail;
    r->hash_buf = malloc(S3_HASH_CHUNK);
    r->hash_ev = event_new(pv_curlev_base(r->s3->http), -1, 0, s3_hash_cb, r);
    if (!r->hash_ev || !r->hash_buf)
        goto fail;
    event_active(r->hash_ev, 0, 0);
    return 0;
fail:
    s3_hash_free(r);
    return -ENOMEM;
}

/* The payload hash known from the caller: its base64 form too. */
static int s3_known_sha(s3_req_t *r, const char *hex)
{
    uint8_t d[32];
    if (!s3_hex64(hex) || pv_unhex(hex, d, sizeof(d)) != 0)
        return -EINVAL;
    pv_hex(d, sizeof(d), r->sha256); /* lower case, as SigV4 wants */
    s3_b64(d, sizeof(d), r->sha256_b64);
    return 0;
}

/* ---- answers ---- */

static void s3_copy_trim(char *dst, size_t size, const char *v, size_t n)
{
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    if (n >= size)
        n = size - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t s3_header_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    s3_req_t *r = arg;
    size_t len = size * nitems;
    if (len > 5 && memcmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', len);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->content_length = -1;
        r->etag[0] = r->hdr_code[0] = r->hdr_message[0] = '\0';
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (!colon)
        return len;
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    static const struct {
        const char *name;
        size_t off, size;
    } keep[] = {
        {"etag", offsetof(s3_req_t, etag), PV_S3_ETAG_MAX},
        {"x-amz-error-code", offsetof(s3_req_t, hdr_code), 64},
        {"x-amz-error-message", offsetof(s3_req_t, hdr_message), 256},
        {"x-amz-request-id", offsetof(s3_req_t, request_id), 64},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(keep); i++)
        if (strlen(keep[i].name) == nlen && strncasecmp(buf, keep[i].name, nlen) == 0)
            s3_copy_trim((char *)r + keep[i].off, keep[i].size, v, vlen);
    if (nlen == 14 && strncasecmp(buf, "content-length", 14) == 0) {
        char num[24];
        s3_copy_trim(num, sizeof(num), v, vlen);
        r->content_length = strtoll(num, NULL, 10);
        if (r->status / 100 == 2 && r->sink.kind == SINK_MEM && r->op == S3_GET &&
            r->content_length > (int64_t)r->sink.max) {
            pv_curlev_fail(r->easy, -EMSGSIZE);
            return 0; /* too big: stop before the body */
        }
    }
    return len;
}

static int s3_sink_take(s3_req_t *r, const char *buf, size_t len)
{
    s3_sink_t *k = &r->sink;
    if (k->kind == SINK_MEM) {
        if (k->mem.len + len > k->max)
            return -EMSGSIZE;
        pv_sb_add(&k->mem, buf, len);
        if (k->mem.failed)
            return -ENOMEM;
    } else if (k->kind == SINK_FD) {
        int rc = pv_fail("s3_write") ? -ENOSPC : 0;
        for (size_t done = 0; rc == 0 && done < len;) {
            ssize_t n = pwrite(k->fd, buf + done, len - done, (off_t)(k->written + (int64_t)done));
            if (n < 0 && errno != EINTR)
                rc = -errno;
            else if (n > 0)
                done += (size_t)n;
        }
        if (rc)
            return rc;
    }
    if (k->sha && EVP_DigestUpdate(k->sha, buf, len) != 1)
        return -ENOMEM;
    k->written += (int64_t)len;
    return 0;
}

static size_t s3_write_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    s3_req_t *r = arg;
    size_t len = size * nitems;
    if (r->status / 100 != 2 || r->sink.kind == SINK_NONE) {
        size_t room = S3_ERR_BODY_MAX > r->err.len ? S3_ERR_BODY_MAX - r->err.len : 0;
        pv_sb_add(&r->err, buf, len < room ? len : room); /* the rest is dropped */
        return len;
    }
    int rc = s3_sink_take(r, buf, len);
    if (rc) {
        r->local_error = rc != -EMSGSIZE && rc != -ENOMEM;
        pv_curlev_fail(r->easy, rc);
        return 0;
    }
    return len;
}

/* ---- signing and sending ---- */

static int s3_add_header(s3_req_t *r, const char *name, const char *value)
{
    char line[2304];
    if ((size_t)snprintf(line, sizeof(line), "%s: %s", name, value) >= sizeof(line))
        return -EINVAL;
    struct curl_slist *l = pv_fail("s3_header") ? NULL : curl_slist_append(r->hdrs, line);
    if (!l)
        return -ENOMEM;
    r->hdrs = l;
    return 0;
}

/* The signing key of today, kept for the day. */
static const uint8_t *s3_signing_key(pv_s3_t *s3, const char *amz_date)
{
    if (strncmp(s3->key_day, amz_date, 8) != 0) {
        char day[9];
        memcpy(day, amz_date, 8);
        day[8] = '\0';
        if (pv_sigv4_signing_key(s3->creds.secret, day, s3->region, "s3", s3->key_cache) != 0)
            return NULL;
        memcpy(s3->key_day, day, sizeof(day));
    }
    return s3->key_cache;
}

/* curlev's start hook: headers, signed now. */
static int s3_http_start(CURL *easy, void *arg)
{
    s3_req_t *r = arg;
    pv_s3_t *s3 = r->s3;
    pv_sigv4_header_t h[6];
    size_t n = 0;
    char host[S3_MAX_HOST + 64], amz_date[17];
    pv_sb_t path = {0}, query = {0};
    pv_sigv4_out_t out;
    int64_t now = (int64_t)time(NULL);
    bool put = strcmp(s3_method(r), "PUT") == 0;

    s3_host(s3, host, sizeof(host));
    h[n++] = (pv_sigv4_header_t){"Host", host};
    if (put && r->checksum == PV_S3_CHECKSUM_MD5)
        h[n++] = (pv_sigv4_header_t){"Content-MD5", r->md5_b64};
    if (put && r->checksum == PV_S3_CHECKSUM_SHA256)
        h[n++] = (pv_sigv4_header_t){"x-amz-checksum-sha256", r->sha256_b64};
    if (put && r->if_none_match)
        h[n++] = (pv_sigv4_header_t){"If-None-Match", "*"};
    if (r->content_type[0])
        h[n++] = (pv_sigv4_header_t){"Content-Type", r->content_type};
    s3_path(s3, r->op == S3_LIST ? NULL : r->key, &path);
    s3_query(r, &query);
    if (path.failed || query.failed || pv_sigv4_amz_date(now, amz_date) != 0) {
        pv_sb_free(&path);
        pv_sb_free(&query);
        return -ENOMEM;
    }
    pv_sigv4_ctx_t ctx = {
        .key_id = s3->creds.key_id,
        .secret = s3->creds.secret,
        .token = s3->creds.token[0] ? s3->creds.token : NULL,
        .region = s3->region,
        .service = "s3",
        .time_s = now,
        .signing_key = s3_signing_key(s3, amz_date),
    };
    pv_sigv4_req_t req = {
        .mode = PV_SIGV4_HEADER,
        .flags = PV_SIGV4_S3 | PV_SIGV4_CONTENT_SHA256,
        .method = s3_method(r),
        .path = path.p,
        .query = query.p,
        .headers = h,
        .n_headers = n,
        .payload_hash = r->src.on ? r->sha256 : PV_SIGV4_EMPTY_SHA256,
    };
    int rc = pv_sigv4_sign(&ctx, &req, &out);
    pv_sb_free(&path);
    pv_sb_free(&query);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = s3_add_header(r, h[i].name, h[i].value);
    for (int i = 0; rc == 0 && i < out.n_add; i++)
        rc = s3_add_header(r, out.add[i].name, out.add[i].value);
    /* "Content-Type:" with no value drops the one curl adds to a POST */
    for (int i = 0; rc == 0 && i < 2; i++) {
        const char *line = i == 0 ? S3_USER_AGENT : r->content_type[0] ? NULL : "Content-Type:";
        struct curl_slist *l = line ? curl_slist_append(r->hdrs, line) : r->hdrs;
        rc = l ? 0 : -ENOMEM;
        r->hdrs = l ? l : r->hdrs;
    }
    if (rc == 0)
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->hdrs);
    pv_sigv4_out_free(&out);
    return rc;
}

static void s3_http_done(CURL *easy, const pv_curlev_result_t *hr, void *arg);

static const pv_curlev_ops_t s3_http_ops = {s3_http_start, s3_http_done};

/* What the exchange's 2xx body is for. */
static int s3_sink_init(s3_req_t *r)
{
    s3_sink_t *k = &r->sink;
    k->written = 0;
    pv_sb_free(&k->mem);
    if (k->sha) {
        EVP_MD_CTX_free(k->sha);
        k->sha = NULL;
    }
    if (r->op == S3_GET) {
        k->sha = EVP_MD_CTX_new();
        if (!k->sha || EVP_DigestInit_ex(k->sha, EVP_sha256(), NULL) != 1)
            return -ENOMEM;
        return 0; /* kind set by pv_s3_get */
    }
    bool xml = r->op == S3_LIST || r->op == S3_MPU_CREATE || r->op == S3_MPU_COMPLETE ||
               r->op == S3_MPU_LIST_PARTS;
    k->kind = xml ? SINK_MEM : SINK_NONE;
    k->max = S3_XML_MAX;
    return 0;
}

static void s3_method_opts(s3_req_t *r, CURL *e)
{
    const char *m = s3_method(r);
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "DELETE") == 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else if (strcmp(m, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->src.len);
    } else if (strcmp(m, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->src.on ? r->src.len : 0));
    }
    if (r->src.on) {
        curl_easy_setopt(e, CURLOPT_READFUNCTION, s3_read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, r);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, s3_seek_cb);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
    } else if (strcmp(m, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
}

/* One HTTP exchange of r: a fresh handle, queued on curlev. */
static int s3_exchange(s3_req_t *r)
{
    char url[S3_MAX_HOST + 64 + 3 * PV_S3_KEY_MAX + 4096];
    pv_sb_t q = {0};
    int rc = pv_s3_url(r->s3, r->op == S3_LIST ? NULL : r->key, url, sizeof(url), NULL, 0);
    if (rc)
        return rc;
    s3_query(r, &q);
    if (q.failed || (q.len && strlen(url) + 1 + q.len >= sizeof(url))) {
        pv_sb_free(&q);
        return q.failed ? -ENOMEM : -EMSGSIZE;
    }
    if (q.len) {
        strcat(url, "?");
        strcat(url, q.p);
    }
    pv_sb_free(&q);
    if ((rc = s3_sink_init(r)) != 0)
        return rc;
    CURL *e = pv_fail("s3_easy") ? NULL : curl_easy_init();
    if (!e)
        return -ENOMEM;
    r->status = 0;
    r->content_length = -1;
    r->etag[0] = r->hdr_code[0] = r->hdr_message[0] = r->request_id[0] = '\0';
    pv_sb_free(&r->err);
    r->src.pos = 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L); /* sent as signed: no dot-segment squashing */
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, s3_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s3_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    s3_method_opts(r, e);
    r->easy = e;
    rc = pv_curlev_submit(r->s3->http, e, &s3_http_ops, r);
    if (rc) {
        r->easy = NULL;
        curl_easy_cleanup(e);
    }
    return rc;
}

/* ---- ending a request ---- */

static void s3_req_free(s3_req_t *r)
{
    s3_hash_free(r);
    if (r->src.own_fd && r->src.fd >= 0)
        close(r->src.fd);
    if (r->sink.own_fd && r->sink.fd >= 0)
        close(r->sink.fd);
    EVP_MD_CTX_free(r->sink.sha);
    pv_sb_free(&r->sink.mem);
    pv_sb_free(&r->err);
    pv_sb_free(&r->xml);
    pv_s3_listing_free(&r->listing);
    pv_s3_parts_free(&r->parts);
    free(r->key);
    free(r->upload_id);
    free(r->prefix);
    free(r->token);
    free(r);
}

static void s3_finish(s3_req_t *r)
{
    LIST_REMOVE(r, link);
    pv_s3_result_t *res = &r->res;
    if (res->rc && !res->retryable && !r->local_error && res->rc != -ECANCELED && !res->status)
        res->retryable = pv_s3_transport_retryable(res->rc);
    if (!res->request_id[0])
        pv_strlcpy(res->request_id, r->request_id, sizeof(res->request_id));
    r->done(res, r->arg);
    s3_req_free(r);
}

/* A non-2xx answer (or a 200 carrying an Error): code, message, class. */
static void s3_http_error(s3_req_t *r, const pv_s3_error_doc_t *doc)
{
    pv_s3_result_t *res = &r->res;
    pv_s3_error_doc_t parsed;
    if (!doc && r->err.len && pv_s3xml_error(r->err.p, r->err.len, &parsed) == 0)
        doc = &parsed;
    if (doc) {
        pv_strlcpy(res->code, doc->code, sizeof(res->code));
        pv_strlcpy(res->message, doc->message, sizeof(res->message));
        pv_strlcpy(res->request_id, doc->request_id, sizeof(res->request_id));
    } else {
        pv_strlcpy(res->code, r->hdr_code, sizeof(res->code));
        pv_strlcpy(res->message, r->hdr_message, sizeof(res->message));
    }
    if (!res->message[0])
        snprintf(res->message, sizeof(res->message), "HTTP %ld", r->status);
    pv_s3_classify(r->status, res->code, &res->rc, &res->retryable);
}

/* A 2xx body S3 sends as XML, parsed; 1: another exchange follows. */
static int s3_xml_ok(s3_req_t *r)
{
    pv_s3_result_t *res = &r->res;
    const char *b = r->sink.mem.p ? r->sink.mem.p : "";
    size_t n = r->sink.mem.len;
    pv_s3_error_doc_t doc;
    int rc = 0;
    if (pv_s3xml_error(b, n, &doc) == 0) { /* 200 with an Error (complete) */
        s3_http_error(r, &doc);
        return 0;
    }
    switch (r->op) {
    case S3_LIST:
        rc = pv_s3xml_listing(b, n, &r->listing);
        res->listing = rc == 0 ? &r->listing : NULL; /* never a half-read one */
        break;
    case S3_MPU_CREATE:
        free(r->upload_id);
        r->upload_id = malloc(PV_S3_UPLOAD_ID_MAX + 1);
        rc = r->upload_id ? pv_s3xml_upload_id(b, n, r->upload_id, PV_S3_UPLOAD_ID_MAX + 1)
                          : -ENOMEM;
        res->upload_id = r->upload_id;
        break;
    case S3_MPU_COMPLETE:
        rc = pv_s3xml_complete(b, n, res->etag);
        break;
    case S3_MPU_LIST_PARTS:
        rc = pv_s3xml_parts(b, n, &r->parts);
        res->parts = &r->parts;
        if (rc == 0 && r->parts.truncated) {
            if (r->parts.next_marker <= r->part)
                rc = -EPROTO; /* no progress: the server loops */
            r->part = r->parts.next_marker;
            if (rc == 0)
                return 1;
        }
        break;
    default:
        break;
    }
    if (rc) {
        res->rc = rc == -ENOMEM ? -ENOMEM : -EPROTO;
        res->retryable = true; /* a cut or garbled answer */
        pv_strlcpy(res->message, "S3 answered with XML we cannot read", sizeof(res->message));
    }
    return 0;
}

/* The probe's steps; 1: another exchange follows. */
static int s3_probe_step(s3_req_t *r, bool ok)
{
    pv_s3_result_t *res = &r->res;
    if (r->step == 0) {
        if (!ok)
            return 0; /* the first PUT failed: that is the answer */
        r->step = 1;
        return 1;
    }
    if (r->step == 1) {
        if (ok)
            r->verdict = -ENOTSUP; /* taken twice: the condition is ignored */
        else if (res->rc == -EEXIST)
            r->verdict = 0;
        else
            return 0; /* another failure: report it, leave the key */
        *res = (pv_s3_result_t){0};
        r->step = 2;
        return 1;
    }
    if (ok) {
        res->rc = r->verdict;
        if (r->verdict)
            pv_strlcpy(res->message, "the endpoint ignores If-None-Match on PUT",
                       sizeof(res->message));
    }
    return 0;
}

/* A 2xx answer; 1: another exchange follows. */
static int s3_ok(s3_req_t *r)
{
    pv_s3_result_t *res = &r->res;
    pv_strlcpy(res->etag, r->etag, sizeof(res->etag));
    switch (r->op) {
    case S3_PUT:
    case S3_MPU_PART:
        res->size = r->src.len;
        pv_strlcpy(res->sha256, r->sha256, sizeof(res->sha256));
        return 0;
    case S3_HEAD:
        res->size = r->content_length;
        return 0;
    case S3_GET: {
        uint8_t d[32];
        unsigned n = 0;
        if (EVP_DigestFinal_ex(r->sink.sha, d, &n) != 1) {
            res->rc = -ENOMEM;
            return 0;
        }
        pv_hex(d, n, res->sha256);
        res->size = r->sink.written;
        if (r->sink.kind == SINK_MEM) {
            res->body = (const uint8_t *)(r->sink.mem.p ? r->sink.mem.p : "");
            res->body_len = r->sink.mem.len;
        }
        return 0;
    }
    case S3_PROBE:
        return s3_probe_step(r, true);
    case S3_LIST:
    case S3_MPU_CREATE:
    case S3_MPU_COMPLETE:
    case S3_MPU_LIST_PARTS:
        return s3_xml_ok(r);
    default:
        return 0;
    }
}

static void s3_http_done(CURL *easy, const pv_curlev_result_t *hr, void *arg)
{
    s3_req_t *r = arg;
    pv_s3_result_t *res = &r->res;
    int again = 0;

    curl_easy_cleanup(easy);
    curl_slist_free_all(r->hdrs);
    r->easy = NULL;
    r->hdrs = NULL;
    res->connects += hr->connects;
    res->seconds += hr->seconds;
    res->status = hr->status;
    if (hr->rc) {
        res->rc = hr->rc;
        res->status = 0; /* no answer to speak of */
        res->retryable = !r->local_error && pv_s3_transport_retryable(hr->rc);
        if (hr->rc == -EMSGSIZE)
            pv_strlcpy(res->message, "the object is larger than the limit", sizeof(res->message));
        else if (r->local_error)
            snprintf(res->message, sizeof(res->message), "local file: %s", strerror(-hr->rc));
        else
            pv_strlcpy(res->message, hr->error, sizeof(res->message));
    } else if (r->status / 100 == 2) {
        again = s3_ok(r);
    } else {
        s3_http_error(r, NULL);
        if (r->op == S3_PROBE)
            again = s3_probe_step(r, false);
    }
    if (again) {
        int rc = s3_exchange(r);
        if (rc == 0)
            return;
        res->rc = rc;
        res->retryable = pv_s3_transport_retryable(rc);
    }
    s3_finish(r);
}

/* ---- the calls ---- */

static s3_req_t *s3_req_new(pv_s3_t *s3, enum s3_op op, const char *key, pv_s3_done_fn done,
                            void *arg, int *rc)
{
    *rc = -EINVAL;
    if (!s3 || !s3->http || !done || (key && !s3_key_ok(key)))
        return NULL;
    *rc = -ESHUTDOWN;
    if (s3->closing)
        return NULL;
    *rc = -ENOMEM;
    s3_req_t *r = pv_fail("s3_req") ? NULL : calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->s3 = s3;
    r->op = op;
    r->done = done;
    r->arg = arg;
    r->src.fd = r->sink.fd = -1;
    r->res.size = -1;
    if (key && !(r->key = strdup(key))) {
        free(r);
        return NULL;
    }
    *rc = 0;
    return r;
}

/* Starts r (hashing first when needed) or frees it. */
static int s3_go(s3_req_t *r)
{
    int rc = r->src.on ? s3_hash_start(r) : s3_exchange(r);
    if (rc) {
        s3_req_free(r);
        return rc;
    }
    LIST_INSERT_HEAD(&r->s3->reqs, r, link);
    return 0;
}

static int s3_body(s3_req_t *r, const pv_s3_body_t *body)
{
    if (!body)
        return -EINVAL;
    int rc = s3_src_init(r, body);
    if (rc == 0 && body->sha256)
        rc = s3_known_sha(r, body->sha256);
    return rc;
}

int pv_s3_put(pv_s3_t *s3, const char *key, const pv_s3_body_t *body,
              const pv_s3_put_opts_t *opts, pv_s3_done_fn done, void *arg)
{
    int rc;
    if (!key)
        return -EINVAL;
    s3_req_t *r = s3_req_new(s3, S3_PUT, key, done, arg, &rc);
    if (!r)
        return rc;
    if (opts) {
        r->checksum = opts->checksum;
        r->if_none_match = opts->if_none_match;
        if (opts->content_type &&
            pv_strlcpy(r->content_type, opts->content_type, sizeof(r->content_type)) >=
                sizeof(r->content_type))
            rc = -EINVAL;
    }
    if (rc == 0)
        rc = s3_body(r, body);
    if (rc) {
        s3_req_free(r);
        return rc;
    }
    return s3_go(r);
}

int pv_s3_get(pv_s3_t *s3, const char *key, const pv_s3_sink_t *sink, pv_s3_done_fn done,
              void *arg)
{
    int rc;
    if (!key || !sink)
        return -EINVAL;
    s3_req_t *r = s3_req_new(s3, S3_GET, key, done, arg, &rc);
    if (!r)
        return rc;
    s3_sink_t *k = &r->sink;
    switch (sink->kind) {
    case PV_S3_TO_MEM:
        k->kind = SINK_MEM;
        k->max = sink->max ? sink->max : PV_S3_GET_MAX;
        break;
    case PV_S3_TO_PATH:
        k->kind = SINK_FD;
        k->fd = !sink->path                ? (errno = EINVAL, -1)
                : pv_fail("s3_open")       ? (errno = EACCES, -1)
                : open(sink->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        k->own_fd = k->fd >= 0;
        rc = k->fd >= 0 ? 0 : -errno;
        break;
    case PV_S3_TO_FD:
        k->kind = SINK_FD;
        k->fd = sink->fd;
        rc = sink->fd >= 0 ? 0 : -EINVAL;
        break;
    default:
        rc = -EINVAL;
    }
    if (rc) {
        s3_req_free(r);
        return rc;
    }
    return s3_go(r);
}

static int s3_simple(pv_s3_t *s3, enum s3_op op, const char *key, pv_s3_done_fn done, void *arg)
{
    int rc;
    if (!key)
        return -EINVAL;
    s3_req_t *r = s3_req_new(s3, op, key, done, arg, &rc);
    return r ? s3_go(r) : rc;
}

int pv_s3_head(pv_s3_t *s3, const char *key, pv_s3_done_fn done, void *arg)
{
    return s3_simple(s3, S3_HEAD, key, done, arg);
}

int pv_s3_delete(pv_s3_t *s3, const char *key, pv_s3_done_fn done, void *arg)
{
    return s3_simple(s3, S3_DELETE, key, done, arg);
}

int pv_s3_list(pv_s3_t *s3, const char *prefix, const char *token, int max_keys,
               pv_s3_done_fn done, void *arg)
{
    int rc;
    if (max_keys < 0 || max_keys > 1000 || (prefix && *prefix && !s3_key_ok(prefix)) ||
        (token && strlen(token) > 4096))
        return -EINVAL;
    s3_req_t *r = s3_req_new(s3, S3_LIST, NULL, done, arg, &rc);
    if (!r)
        return rc;
    r->max_n = max_keys;
    if ((prefix && *prefix && !(r->prefix = strdup(prefix))) ||
        (token && *token && !(r->token = strdup(token)))) {
        s3_req_free(r);
        return -ENOMEM;
    }
    return s3_go(r);
}

/* An upload id goes into a query: visible ASCII, bounded. */
static bool s3_upload_id_ok(const char *id)
{
    size_t n = id ? strnlen(id, PV_S3_UPLOAD_ID_MAX + 1) : 0;
    if (n == 0 || n > PV_S3_UPLOAD_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] <= ' ' || (unsigned char)id[i] >= 0x7f)
            return false;
    return true;
}

static s3_req_t *s3_mpu_req(pv_s3_t *s3, enum s3_op op, const char *key, const char *upload_id,
                            pv_s3_done_fn done, void *arg, int *rc)
{
    if (!key || !s3_upload_id_ok(upload_id)) {
        *rc = -EINVAL;
        return NULL;
    }
    s3_req_t *r = s3_req_new(s3, op, key, done, arg, rc);
    if (r && !(r->upload_id = strdup(upload_id))) {
        s3_req_free(r);
        *rc = -ENOMEM;
        return NULL;
    }
    return r;
}

int pv_s3_mpu_create(pv_s3_t *s3, const char *key, const char *content_type, pv_s3_done_fn done,
                     void *arg)
{
    int rc;
    if (!key)
        return -EINVAL;
    s3_req_t *r = s3_req_new(s3, S3_MPU_CREATE, key, done, arg, &rc);
    if (!r)
        return rc;
    if (content_type &&
        pv_strlcpy(r->content_type, content_type, sizeof(r->content_type)) >= sizeof(r->content_type)) {
        s3_req_free(r);
        return -EINVAL;
    }
    return s3_go(r);
}

int pv_s3_mpu_part(pv_s3_t *s3, const char *key, const char *upload_id, int number,
                   const pv_s3_body_t *body, pv_s3_done_fn done, void *arg)
{
    int rc;
    if (number < 1 || number > PV_S3_MAX_PARTS)
        return -EINVAL;
    s3_req_t *r = s3_mpu_req(s3, S3_MPU_PART, key, upload_id, done, arg, &rc);
    if (!r)
        return rc;
    r->part = number;
    r->checksum = PV_S3_CHECKSUM_MD5; /* the part's ETag is checked by S3 as it is stored */
    rc = s3_body(r, body);
    if (rc) {
        s3_req_free(r);
        return rc;
    }
    return s3_go(r);
}

int pv_s3_mpu_complete(pv_s3_t *s3, const char *key, const char *upload_id,
                       const pv_s3_part_t *parts, size_t n, pv_s3_done_fn done, void *arg)
{
    int rc;
    if (!parts || n == 0 || n > PV_S3_MAX_PARTS)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (parts[i].number < 1 || parts[i].number > PV_S3_MAX_PARTS || !parts[i].etag[0] ||
            strpbrk(parts[i].etag, "<>&\"") || (i > 0 && parts[i].number <= parts[i - 1].number))
            return -EINVAL;
    s3_req_t *r = s3_mpu_req(s3, S3_MPU_COMPLETE, key, upload_id, done, arg, &rc);
    if (!r)
        return rc;
    pv_sb_puts(&r->xml, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (size_t i = 0; i < n; i++)
        pv_sb_printf(&r->xml, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                     parts[i].number, parts[i].etag);
    pv_sb_puts(&r->xml, "</CompleteMultipartUpload>");
    pv_strlcpy(r->content_type, "application/xml", sizeof(r->content_type));
    pv_s3_body_t body = {.kind = PV_S3_MEM, .data = r->xml.p, .len = r->xml.len};
    rc = r->xml.failed ? -ENOMEM : s3_body(r, &body);
    if (rc) {
        s3_req_free(r);
        return rc;
    }
    return s3_go(r);
}

int pv_s3_mpu_abort(pv_s3_t *s3, const char *key, const char *upload_id, pv_s3_done_fn done,
                    void *arg)
{
    int rc;
    s3_req_t *r = s3_mpu_req(s3, S3_MPU_ABORT, key, upload_id, done, arg, &rc);
    return r ? s3_go(r) : rc;
}

int pv_s3_mpu_list_parts(pv_s3_t *s3, const char *key, const char *upload_id, int max_parts,
                         pv_s3_done_fn done, void *arg)
{
    int rc;
    if (max_parts < 0 || max_parts > 1000)
        return -EINVAL;
    s3_req_t *r = s3_mpu_req(s3, S3_MPU_LIST_PARTS, key, upload_id, done, arg, &rc);
    if (!r)
        return rc;
    r->max_n = max_parts;
    return s3_go(r);
}

int pv_s3_probe_conditional(pv_s3_t *s3, const char *key, pv_s3_done_fn done, void *arg)
{
    int rc;
    if (!key)
        return -EINVAL;
    s3_req_t *r = s3_req_new(s3, S3_PROBE, key, done, arg, &rc);
    if (!r)
        return rc;
    r->if_none_match = true;
    pv_s3_body_t empty = {.kind = PV_S3_MEM, .sha256 = PV_SIGV4_EMPTY_SHA256};
    rc = s3_body(r, &empty);
    if (rc) {
        s3_req_free(r);
        return rc;
    }
    return s3_go(r);
}
