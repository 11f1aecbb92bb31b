/*
 * ddb.c — the DynamoDB client (contract in ddb.h) on curlev.
 *
 * One ddb_req_t per call and one HTTP exchange per request: DynamoDB's
 * JSON API is POST / with the operation in X-Amz-Target and the body in
 * application/x-amz-json-1.0. The body's SHA-256 is taken once, at the
 * call; the signature (service "dynamodb", path "/", headers Host,
 * Content-Type and X-Amz-Target signed) is made in curlev's start hook.
 * Answers are read into a buffer capped at PV_DDB_BODY_MAX and parsed with
 * jansson; errors are sorted by their __type (the part after '#').
 *
 * The local peer, dynalite 4 (tests/peers/), checks no signature: the
 * signer is checked against botocore's for a DynamoDB request instead
 * (tests/unit/sigv4_botocore.py --ddb). Sending again is the caller's:
 * a request here is sent once.
 */
#include "cloud/ddb.h"

#include "base/crypto.h"
#include "base/pv.h"
#include "base/text.h"
#include "cloud/sigv4.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#define DDB_TARGET_PREFIX "DynamoDB_20120810."
#define DDB_CTYPE         "application/x-amz-json-1.0"
#define DDB_USER_AGENT    "User-Agent: pv/" PV_VERSION

typedef struct ddb_req ddb_req_t;

struct pv_ddb {
    pv_curlev_t *http;
    char url[300];  /* scheme://host[:port]/ */
    char host[256]; /* host[:port], the signed Host */
    char region[32];
    pv_aws_creds_t creds;
    uint8_t key_cache[32]; /* today's signing key */
    char key_day[9];       /* its day, "" none */
    LIST_HEAD(, ddb_req) reqs;
};

struct ddb_req {
    LIST_ENTRY(ddb_req) link;
    pv_ddb_t *d;
    CURL *easy;
    char target[64]; /* X-Amz-Target's value */
    char *body;
    size_t len;
    char sha256[65]; /* the body's, hex */
    struct curl_slist *hdrs;
    pv_sb_t answer;
    bool too_big;
    pv_ddb_done_fn done;
    void *arg;
};

/* ---- errors ---- */

static bool type_is(const char *type, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(type, *names) == 0)
            return true;
    return false;
}

void pv_ddb_classify(long status, const char *body, size_t len, pv_ddb_result_t *res)
{
    static const char *const throttled[] = {"ProvisionedThroughputExceededException",
                                            "ThrottlingException", "RequestLimitExceeded",
                                            "LimitExceededException", NULL};
    static const char *const auth[] = {"UnrecognizedClientException",
                                       "AccessDeniedException",
                                       "InvalidSignatureException",
                                       "MissingAuthenticationTokenException",
                                       "IncompleteSignatureException",
                                       "ExpiredTokenException",
                                       NULL};
    res->type[0] = res->message[0] = '\0';
    json_t *doc = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(doc, "__type"));
    const char *m = json_string_value(json_object_get(doc, "message"));
    if (!m)
        m = json_string_value(json_object_get(doc, "Message"));
    if (t) {
        const char *hash = strrchr(t, '#');
        snprintf(res->type, sizeof(res->type), "%s", hash ? hash + 1 : t);
    }
    snprintf(res->message, sizeof(res->message), "%s", m ? m : "");
    json_decref(doc);
    res->retryable = false;
    if (strcmp(res->type, "ConditionalCheckFailedException") == 0)
        res->rc = -EEXIST;
    else if (type_is(res->type, throttled) || status >= 500 || status == 429)
        res->rc = -EAGAIN, res->retryable = true;
    else if (strcmp(res->type, "ResourceNotFoundException") == 0)
        res->rc = -ENOENT;
    else if (strcmp(res->type, "ResourceInUseException") == 0)
        res->rc = -EBUSY;
    else if (type_is(res->type, auth) || status == 401 || status == 403)
        res->rc = -EACCES;
    else
        res->rc = -EINVAL;
}

/* ---- the client ---- */

static int parse_endpoint(pv_ddb_t *d, const char *ep)
{
    const char *rest;
    if (strncmp(ep, "http://", 7) == 0)
        rest = ep + 7;
    else if (strncmp(ep, "https://", 8) == 0)
        rest = ep + 8;
    else
        return -EINVAL;
    size_t n = strcspn(rest, "/?#");
    if (n == 0 || n >= sizeof(d->host) || rest[n] == '?' || rest[n] == '#' ||
        (rest[n] == '/' && rest[n + 1]))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)rest[i] <= ' ' || rest[i] == '@')
            return -EINVAL;
    memcpy(d->host, rest, n);
    d->host[n] = '\0';
    if ((size_t)snprintf(d->url, sizeof(d->url), "%.*s%s/", (int)(rest - ep), ep, d->host) >=
        sizeof(d->url))
        return -EINVAL;
    return 0;
}

int pv_ddb_new(pv_curlev_t *http, const pv_ddb_config_t *cfg, const pv_aws_creds_t *creds,
               pv_ddb_t **out)
{
    *out = NULL;
    if (!http || !cfg || !cfg->region || !cfg->region[0] ||
        strlen(cfg->region) >= sizeof(((pv_ddb_t *)0)->region) || !creds)
        return -EINVAL;
    pv_ddb_t *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->http = http;
    snprintf(d->region, sizeof(d->region), "%s", cfg->region);
    char ep[300];
    if (cfg->endpoint && cfg->endpoint[0])
        snprintf(ep, sizeof(ep), "%s", cfg->endpoint);
    else
        snprintf(ep, sizeof(ep), "https://dynamodb.%s.amazonaws.com", cfg->region);
    int rc = parse_endpoint(d, ep);
    if (rc == 0)
        rc = pv_ddb_set_creds(d, creds);
    if (rc < 0) {
        pv_awscreds_wipe(&d->creds);
        free(d);
        return rc;
    }
    LIST_INIT(&d->reqs);
    *out = d;
    return 0;
}

int pv_ddb_set_creds(pv_ddb_t *d, const pv_aws_creds_t *creds)
{
    if (!creds->key_id[0] || !creds->secret[0])
        return -EINVAL;
    d->creds = *creds;
    d->key_day[0] = '\0';
    return 0;
}

const char *pv_ddb_host(const pv_ddb_t *d) { return d->host; }

static void req_free(ddb_req_t *r)
{
    curl_slist_free_all(r->hdrs);
    pv_sb_free(&r->answer);
    free(r->body);
    free(r);
}

void pv_ddb_free(pv_ddb_t *d)
{
    if (!d)
        return;
    /* each cancel runs its done (-ECANCELED), which unlinks the request */
    while (!LIST_EMPTY(&d->reqs)) {
        ddb_req_t *r = LIST_FIRST(&d->reqs);
        if (pv_curlev_cancel(d->http, r->easy) < 0) { /* not curlev's: should not happen */
            LIST_REMOVE(r, link);
            curl_easy_cleanup(r->easy);
            req_free(r);
        }
    }
    pv_awscreds_wipe(&d->creds);
    memset(d->key_cache, 0, sizeof(d->key_cache));
    free(d);
}

/* ---- one exchange ---- */

static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
    ddb_req_t *r = arg;
    size_t len = size * n;
    if (r->answer.len + len > PV_DDB_BODY_MAX) {
        r->too_big = true;
        pv_curlev_fail(r->easy, -EMSGSIZE);
        return 0;
    }
    pv_sb_add(&r->answer, p, len);
    if (r->answer.failed) {
        pv_curlev_fail(r->easy, -ENOMEM);
        return 0;
    }
    return len;
}

static int add_header(ddb_req_t *r, const char *name, const char *value)
{
    char line[2304];
    if ((size_t)snprintf(line, sizeof(line), "%s: %s", name, value) >= sizeof(line))
        return -EINVAL;
    struct curl_slist *l = curl_slist_append(r->hdrs, line);
    if (!l)
        return -ENOMEM;
    r->hdrs = l;
    return 0;
}

static const uint8_t *signing_key(pv_ddb_t *d, const char *amz_date)
{
    if (strncmp(d->key_day, amz_date, 8) != 0) {
        char day[9];
        memcpy(day, amz_date, 8);
        day[8] = '\0';
        if (pv_sigv4_signing_key(d->creds.secret, day, d->region, "dynamodb", d->key_cache) != 0)
            return NULL;
        memcpy(d->key_day, day, sizeof(day));
    }
    return d->key_cache;
}

/* curlev's start hook: the headers, signed now. */
static int req_start(CURL *easy, void *arg)
{
    ddb_req_t *r = arg;
    pv_ddb_t *d = r->d;
    int64_t now = (int64_t)time(NULL);
    char amz_date[17];
    if (pv_sigv4_amz_date(now, amz_date) != 0)
        return -EINVAL;
    pv_sigv4_header_t h[] = {
        {"Host", d->host}, {"Content-Type", DDB_CTYPE}, {"X-Amz-Target", r->target}};
    pv_sigv4_ctx_t ctx = {
        .key_id = d->creds.key_id,
        .secret = d->creds.secret,
        .token = d->creds.token[0] ? d->creds.token : NULL,
        .region = d->region,
        .service = "dynamodb",
        .time_s = now,
        .signing_key = signing_key(d, amz_date),
    };
    pv_sigv4_req_t req = {
        .mode = PV_SIGV4_HEADER,
        .method = "POST",
        .path = "/",
        .headers = h,
        .n_headers = PV_ARRAY_LEN(h),
        .payload_hash = r->sha256,
    };
    pv_sigv4_out_t out;
    int rc = pv_sigv4_sign(&ctx, &req, &out);
    if (rc < 0)
        return rc;
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    for (size_t i = 0; rc == 0 && i < PV_ARRAY_LEN(h); i++)
        rc = add_header(r, h[i].name, h[i].value);
    for (int i = 0; rc == 0 && i < out.n_add; i++)
        rc = add_header(r, out.add[i].name, out.add[i].value);
    pv_sigv4_out_free(&out);
    if (rc == 0) {
        struct curl_slist *l = curl_slist_append(r->hdrs, DDB_USER_AGENT);
        rc = l ? 0 : -ENOMEM;
        r->hdrs = l ? l : r->hdrs;
        l = rc == 0 ? curl_slist_append(r->hdrs, "Expect:") : NULL; /* no 100-continue wait */
        rc = l ? 0 : -ENOMEM;
        r->hdrs = l ? l : r->hdrs;
    }
    if (rc == 0)
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->hdrs);
    return rc;
}

static void req_done(CURL *easy, const pv_curlev_result_t *hr, void *arg)
{
    ddb_req_t *r = arg;
    LIST_REMOVE(r, link);
    curl_easy_cleanup(easy);
    pv_ddb_result_t res = {.status = hr->status};
    json_t *doc = NULL;
    if (hr->rc < 0) {
        res.rc = r->too_big ? -EMSGSIZE : hr->rc;
        res.retryable =
            res.rc != -ECANCELED && res.rc != -ENOMEM && res.rc != -EMSGSIZE && res.rc != -EINVAL;
        snprintf(res.message, sizeof(res.message), "%s",
                 hr->error && hr->error[0] ? hr->error : strerror(-res.rc));
    } else if (hr->status >= 200 && hr->status < 300) {
        doc = json_loadb(r->answer.p ? r->answer.p : "", r->answer.len, 0, NULL);
        if (!json_is_object(doc)) {
            res.rc = -EBADMSG;
            snprintf(res.message, sizeof(res.message),
                     "HTTP %ld with an answer that is not a JSON object", hr->status);
        }
        res.body = doc;
    } else {
        pv_ddb_classify(hr->status, r->answer.p, r->answer.len, &res);
        if (!res.message[0])
            snprintf(res.message, sizeof(res.message), "HTTP %ld", hr->status);
    }
    pv_ddb_done_fn done = r->done;
    void *darg = r->arg;
    req_free(r);
    done(&res, darg);
    json_decref(doc);
}

static const pv_curlev_ops_t req_ops = {req_start, req_done};

int pv_ddb_call(pv_ddb_t *d, const char *op, const char *body, size_t len, pv_ddb_done_fn done,
                void *arg)
{
    if (!d || !op || !body || !done || strlen(op) + sizeof(DDB_TARGET_PREFIX) > 64)
        return -EINVAL;
    ddb_req_t *r = pv_fail("ddb_req") ? NULL : calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->d = d;
    r->done = done;
    r->arg = arg;
    snprintf(r->target, sizeof(r->target), DDB_TARGET_PREFIX "%s", op);
    r->body = malloc(len + 1);
    r->easy = r->body ? curl_easy_init() : NULL;
    if (!r->easy) {
        req_free(r);
        return -ENOMEM;
    }
    memcpy(r->body, body, len);
    r->body[len] = '\0';
    r->len = len;
    uint8_t sha[32];
    pv_sha256(body, len, sha);
    pv_hex(sha, 32, r->sha256);
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, d->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    int rc = pv_curlev_submit(d->http, e, &req_ops, r);
    if (rc < 0) {
        curl_easy_cleanup(e);
        req_free(r);
        return rc;
    }
    LIST_INSERT_HEAD(&d->reqs, r, link);
    return 0;
}

int pv_ddb_call_json(pv_ddb_t *d, const char *op, const json_t *body, pv_ddb_done_fn done,
                     void *arg)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text)
        return -ENOMEM;
    int rc = pv_ddb_call(d, op, text, strlen(text), done, arg);
    free(text);
    return rc;
}
