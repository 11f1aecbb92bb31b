/*
 * imds.c — the IMDSv2 client (contract in imds.h) on curlev.
 *
 * One imds_req_t per call, living through its two or three exchanges:
 * each is a fresh easy handle submitted to curlev, the next one started
 * from the previous one's done callback. curlev sets its own timeouts on
 * every handle at submit, so ours (short: the service is local) are set
 * in the start hook, which runs after that, when the request goes on the
 * wire. Bodies go to one fixed buffer of PV_IMDS_BODY_MAX (never
 * realloc'd, so no copy of a secret is left behind in freed memory),
 * wiped after each exchange; the token lives in the request and in its
 * header list, both wiped before they are freed.
 */
#include "cloud/imds.h"

#include "base/pv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMDS_TOKEN_MAX   4096 /* real ones are ~60 bytes */
#define IMDS_BASE_MAX    128  /* scheme://host[:port] */
#define IMDS_USER_AGENT  "pv/" PV_VERSION
#define IMDS_TOKEN_PATH  "/latest/api/token"
#define IMDS_CREDS_PATH  "/latest/meta-data/iam/security-credentials/"
#define IMDS_REGION_PATH "/latest/meta-data/placement/region"

enum imds_step { IMDS_TOKEN, IMDS_ROLE, IMDS_CREDS, IMDS_REGION };

static const char *const imds_step_names[] = {
    [IMDS_TOKEN] = "token",
    [IMDS_ROLE] = "role",
    [IMDS_CREDS] = "credentials",
    [IMDS_REGION] = "region",
};

typedef struct imds_req {
    pv_curlev_t *http;
    pv_imds_done_fn done; /* the caller's */
    void *arg;
    bool want_region;             /* pv_imds_region: token, then region */
    enum imds_step step;          /* the exchange in flight */
    char base[IMDS_BASE_MAX];     /* the endpoint without a trailing '/' */
    char token[IMDS_TOKEN_MAX];   /* secret: wiped */
    CURL *easy;                   /* the exchange in flight, NULL between them */
    struct curl_slist *hdrs;      /* its headers; may hold the token */
    char *body;                   /* PV_IMDS_BODY_MAX + 1 bytes; secret: wiped */
    size_t body_len;
    pv_aws_creds_t creds;         /* secret: wiped */
    pv_imds_result_t res;         /* built as we go */
} imds_req_t;

static const pv_curlev_ops_t imds_ops;

bool pv_imds_off(const char *endpoint)
{
    return !endpoint || !*endpoint || strcmp(endpoint, "off") == 0;
}

/* "http(s)://host[:port][/]" -> base (no trailing '/'); host as s3.c
 * takes it: names, IPv4, [IPv6]. */
static int imds_base(const char *ep, char *base, size_t size)
{
    const char *rest;
    if (strncmp(ep, "http://", 7) == 0)
        rest = ep + 7;
    else if (strncmp(ep, "https://", 8) == 0)
        rest = ep + 8;
    else
        return -EINVAL;
    size_t n = strcspn(rest, "/");
    if (n == 0 || (rest[n] == '/' && rest[n + 1] != '\0'))
        return -EINVAL; /* no path: ours make it */
    for (size_t i = 0; i < n; i++) {
        char c = rest[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return -EINVAL;
    }
    size_t len = (size_t)(rest - ep) + n;
    if (len >= size)
        return -EINVAL;
    memcpy(base, ep, len);
    base[len] = '\0';
    return 0;
}

/* ---- checking what came ---- */

/* A token goes into a header: visible ASCII only (no CR/LF to smuggle
 * another header in). Trailing blanks and newlines are dropped. */
static int imds_take_token(imds_req_t *r)
{
    size_t n = r->body_len;
    while (n > 0 && (r->body[n - 1] == '\n' || r->body[n - 1] == '\r' || r->body[n - 1] == ' '))
        n--;
    if (n == 0 || n >= sizeof(r->token))
        return -EBADMSG;
    for (size_t i = 0; i < n; i++)
        if (r->body[i] <= 0x20 || r->body[i] >= 0x7f)
            return -EBADMSG;
    memcpy(r->token, r->body, n);
    r->token[n] = '\0';
    return 0;
}

/* The first line of the role list: an IAM role name goes into our URL,
 * so only what IAM allows in one ([A-Za-z0-9+=,.@_-], 1..64). -ENOENT
 * for an empty list. */
static int imds_take_role(imds_req_t *r)
{
    size_t n = strcspn(r->body, "\r\n");
    if (n == 0)
        return -ENOENT;
    if (n > PV_IMDS_ROLE_MAX)
        return -EBADMSG;
    for (size_t i = 0; i < n; i++) {
        char c = r->body[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("+=,.@_-", c)))
            return -EBADMSG;
    }
    memcpy(r->res.role, r->body, n);
    r->res.role[n] = '\0';
    return 0;
}

/* A region name: [a-z0-9-], as s3.c checks it. */
static int imds_take_region(imds_req_t *r)
{
    size_t n = strcspn(r->body, "\r\n");
    if (n == 0 || n >= sizeof(r->res.region))
        return -EBADMSG;
    for (size_t i = 0; i < n; i++) {
        char c = r->body[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return -EBADMSG;
    }
    memcpy(r->res.region, r->body, n);
    r->res.region[n] = '\0';
    return 0;
}

/* ---- the exchanges ---- */

static size_t imds_write_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    imds_req_t *r = arg;
    size_t len = size * nitems;
    if (len > PV_IMDS_BODY_MAX - r->body_len) {
        pv_curlev_fail(r->easy, -EMSGSIZE);
        return 0;
    }
    memcpy(r->body + r->body_len, buf, len);
    r->body_len += len;
    return len;
}

/* Wipes each header line (one may carry the token), then frees them. */
static void imds_hdrs_free(imds_req_t *r)
{
    for (struct curl_slist *l = r->hdrs; l; l = l->next)
        explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
}

static int imds_add_header(imds_req_t *r, const char *name, const char *value)
{
    char line[IMDS_TOKEN_MAX + 64];
    snprintf(line, sizeof(line), "%s: %s", name, value); /* fits: token < IMDS_TOKEN_MAX */
    struct curl_slist *l = pv_fail("imds_header") ? NULL : curl_slist_append(r->hdrs, line);
    explicit_bzero(line, sizeof(line));
    if (!l)
        return -ENOMEM;
    r->hdrs = l;
    return 0;
}

/* curlev's start hook: runs after curlev set its own limits on the
 * handle, so these win. */
static int imds_http_start(CURL *easy, void *arg)
{
    (void)arg;
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)PV_IMDS_CONNECT_MS);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)PV_IMDS_TIMEOUT_MS);
    return 0;
}

/* The exchange of r->step: a fresh handle, queued on curlev. */
static int imds_exchange(imds_req_t *r)
{
    char url[IMDS_BASE_MAX + sizeof(IMDS_CREDS_PATH) + PV_IMDS_ROLE_MAX];
    const char *path = r->step == IMDS_TOKEN    ? IMDS_TOKEN_PATH
                       : r->step == IMDS_REGION ? IMDS_REGION_PATH
                                                : IMDS_CREDS_PATH;
    snprintf(url, sizeof(url), "%s%s%s", r->base, path, r->step == IMDS_CREDS ? r->res.role : "");
    r->res.step = imds_step_names[r->step];
    r->res.status = 0;
    r->body_len = 0;
    imds_hdrs_free(r);
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", PV_IMDS_TOKEN_TTL_S);
    int rc = r->step == IMDS_TOKEN ? imds_add_header(r, "X-aws-ec2-metadata-token-ttl-seconds", ttl)
                                   : imds_add_header(r, "X-aws-ec2-metadata-token", r->token);
    if (rc)
        return rc;
    CURL *e = pv_fail("imds_easy") ? NULL : curl_easy_init();
    if (!e)
        return -ENOMEM;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, IMDS_USER_AGENT);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never through a proxy, whatever the environment */
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, imds_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (r->step == IMDS_TOKEN)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT"); /* no body, as `curl -X PUT` */
    r->easy = e;
    rc = pv_curlev_submit(r->http, e, &imds_ops, r);
    if (rc) {
        r->easy = NULL;
        curl_easy_cleanup(e);
    }
    return rc;
}

/* ---- ending ---- */

static void imds_finish(imds_req_t *r)
{
    if (r->res.rc == 0 && !r->want_region)
        r->res.creds = &r->creds;
    r->done(&r->res, r->arg);
    imds_hdrs_free(r);
    explicit_bzero(r->token, sizeof(r->token));
    explicit_bzero(r->body, r->body_len);
    pv_awscreds_wipe(&r->creds);
    free(r->body);
    free(r);
}

/* Ends r with rc and the message "instance metadata at BASE, STEP: what". */
static void imds_fail(imds_req_t *r, int rc, const char *what)
{
    r->res.rc = rc;
    snprintf(r->res.message, sizeof(r->res.message), "instance metadata at %s, %s: %s", r->base,
             r->res.step, what);
    imds_finish(r);
}

/* A non-200 answer -> rc and what it means here. */
static int imds_status(const imds_req_t *r, long status, const char **what)
{
    switch (status) {
    case 401:
        *what = "the token was refused (401)";
        return -EACCES;
    case 403:
        *what = "refused (403): instance metadata is off for this instance, or the request "
                "went through a proxy";
        return -EACCES;
    case 404:
        if (r->step == IMDS_ROLE) {
            *what = "no IAM role is attached to this instance (404)";
            return -ENOENT;
        }
        if (r->step == IMDS_CREDS) {
            *what = "the instance's IAM role is gone (404)";
            return -ENOENT;
        }
        *what = "not found (404): not an EC2 metadata service, or one without IMDSv2";
        return -EIO;
    case 429:
        *what = "throttled (429)";
        return -EBUSY;
    case 503:
        *what = "unavailable (503)";
        return -EBUSY;
    default:
        *what = NULL;
        return -EIO;
    }
}

/* What a 200 carries, taken; *more: another exchange follows. */
static int imds_take(imds_req_t *r, bool *more, const char **bad)
{
    int rc = 0;
    *more = r->step == IMDS_TOKEN || r->step == IMDS_ROLE;
    switch (r->step) {
    case IMDS_TOKEN:
        rc = imds_take_token(r);
        *bad = "the token is empty, too long or has bad characters";
        r->step = r->want_region ? IMDS_REGION : IMDS_ROLE;
        break;
    case IMDS_ROLE:
        rc = imds_take_role(r);
        *bad = rc == -ENOENT ? "no IAM role is attached to this instance (empty list)"
                             : "the role name is not an IAM role name";
        r->step = IMDS_CREDS;
        break;
    case IMDS_CREDS:
        rc = pv_awscreds_parse_imds(r->body, r->body_len, &r->creds);
        if (rc == -ENOMEM) {
            *bad = "out of memory";
        } else if (rc) {
            rc = -EBADMSG;
            *bad = "the credential document is not usable (Code not Success, or a key, the "
                   "Token or the Expiration missing or malformed)";
        }
        break;
    case IMDS_REGION:
        rc = imds_take_region(r);
        *bad = "the region is not a region name";
        break;
    }
    return rc;
}

static void imds_http_done(CURL *easy, const pv_curlev_result_t *hr, void *arg)
{
    imds_req_t *r = arg;
    char what[200];
    const char *w = NULL;
    bool more = false;
    int rc;

    curl_easy_cleanup(easy);
    r->easy = NULL;
    imds_hdrs_free(r);
    r->res.status = hr->status;
    r->body[r->body_len] = '\0';
    if (hr->rc == -EMSGSIZE) {
        rc = hr->rc;
        snprintf(what, sizeof(what), "the answer is larger than %d KiB", PV_IMDS_BODY_MAX / 1024);
        w = what;
    } else if (hr->rc) {
        rc = hr->rc;
        snprintf(what, sizeof(what), "no answer (%s)", hr->error[0] ? hr->error : "?");
        w = rc == -ECANCELED ? "cancelled" : what;
    } else if (hr->status != 200) {
        rc = imds_status(r, hr->status, &w);
        if (!w) {
            snprintf(what, sizeof(what), "unexpected HTTP status %ld", hr->status);
            w = what;
        }
    } else {
        rc = imds_take(r, &more, &w);
    }
    explicit_bzero(r->body, r->body_len);
    r->body_len = 0;
    if (rc == 0 && more && (rc = imds_exchange(r)) != 0)
        w = rc == -ENOMEM ? "out of memory" : "cannot send the next request";
    if (rc)
        imds_fail(r, rc, w);
    else if (!more)
        imds_finish(r);
}

static const pv_curlev_ops_t imds_ops = {imds_http_start, imds_http_done};

/* ---- the calls ---- */

static int imds_start(pv_curlev_t *http, const char *endpoint, bool want_region,
                      pv_imds_done_fn done, void *arg)
{
    char base[IMDS_BASE_MAX];
    if (!http || !done || pv_imds_off(endpoint) || imds_base(endpoint, base, sizeof(base)) != 0)
        return -EINVAL;
    imds_req_t *r = pv_fail("imds_req") ? NULL : calloc(1, sizeof(*r));
    char *body = r ? malloc(PV_IMDS_BODY_MAX + 1) : NULL;
    if (!body) {
        free(r);
        return -ENOMEM;
    }
    r->http = http;
    r->done = done;
    r->arg = arg;
    r->want_region = want_region;
    r->step = IMDS_TOKEN;
    r->body = body;
    memcpy(r->base, base, sizeof(base));
    int rc = imds_exchange(r);
    if (rc) {
        imds_hdrs_free(r);
        free(r->body);
        free(r);
    }
    return rc;
}

int pv_imds_fetch(pv_curlev_t *http, const char *endpoint, pv_imds_done_fn done, void *arg)
{
    return imds_start(http, endpoint, false, done, arg);
}

int pv_imds_region(pv_curlev_t *http, const char *endpoint, pv_imds_done_fn done, void *arg)
{
    return imds_start(http, endpoint, true, done, arg);
}
