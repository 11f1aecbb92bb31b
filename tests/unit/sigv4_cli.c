/*
 * sigv4_cli.c — a thin driver over pv_sigv4_sign() so that other signers
 * (botocore, in tests/integration/test_sigv4_botocore.py) can be compared
 * with ours on many requests.
 *
 * stdin: one or more JSON objects, one request each (whitespace between):
 *   {"mode": "header"|"query", "method": "PUT",
 *    "path": "/as/sent" | "raw_path": "/bucket/raw key" (encoded here with
 *      pv_sigv4_uri_encode, '/' kept),
 *    "query": "a=1&b", "headers": [["Host", "..."], ...],
 *    "payload_hash": "<hex>"|"UNSIGNED-PAYLOAD",
 *    "key_id", "secret", "token" (optional), "region", "service",
 *    "time": <epoch s>, "expires": <s>,
 *    "s3": bool, "normalize": bool (default true), "content_sha256": bool,
 *    "token_unsigned": bool}
 * stdout: one JSON line per request:
 *   {"rc": 0, "path", "canonical_request", "string_to_sign", "signature",
 *    "amz_date", and "authorization" + "headers" (header mode) or "query"}
 *   or {"rc": -errno, "error": "..."}.
 * The secret is read, never printed. Exit status 1 on unreadable input.
 */
#include "cloud/sigv4.h"

#include "base/pv.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_MAX_HEADERS 64

static const char *cli_str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool cli_bool(json_t *o, const char *key, bool dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static json_t *cli_error(int rc, const char *msg)
{
    return json_pack("{s:i, s:s}", "rc", rc, "error", msg);
}

/* The request's fields into req/ctx (pointers into `in`). */
static int cli_read(json_t *in, pv_sigv4_ctx_t *ctx, pv_sigv4_req_t *req, pv_sigv4_header_t *h,
                    pv_sb_t *path)
{
    json_t *hs = json_object_get(in, "headers"), *pair;
    size_t i;
    const char *mode = cli_str(in, "mode"), *raw = cli_str(in, "raw_path");

    if (json_array_size(hs) > CLI_MAX_HEADERS)
        return -EMSGSIZE;
    json_array_foreach(hs, i, pair)
    {
        h[i].name = json_string_value(json_array_get(pair, 0));
        h[i].value = json_string_value(json_array_get(pair, 1));
    }
    if (raw)
        pv_sigv4_uri_encode(path, raw, strlen(raw), true);
    else
        pv_sb_puts(path, cli_str(in, "path") ? cli_str(in, "path") : "/");
    if (path->failed)
        return -ENOMEM;

    *ctx = (pv_sigv4_ctx_t){
        .key_id = cli_str(in, "key_id"),
        .secret = cli_str(in, "secret"),
        .token = cli_str(in, "token"),
        .region = cli_str(in, "region"),
        .service = cli_str(in, "service"),
        .time_s = json_integer_value(json_object_get(in, "time")),
    };
    *req = (pv_sigv4_req_t){
        .mode = mode && strcmp(mode, "query") == 0 ? PV_SIGV4_QUERY : PV_SIGV4_HEADER,
        .flags = (cli_bool(in, "s3", false) ? PV_SIGV4_S3 : 0) |
                 (cli_bool(in, "normalize", true) ? 0 : PV_SIGV4_NO_NORMALIZE) |
                 (cli_bool(in, "content_sha256", false) ? PV_SIGV4_CONTENT_SHA256 : 0) |
                 (cli_bool(in, "token_unsigned", false) ? PV_SIGV4_TOKEN_UNSIGNED : 0),
        .method = cli_str(in, "method"),
        .path = path->p,
        .query = cli_str(in, "query"),
        .headers = h,
        .n_headers = json_array_size(hs),
        .payload_hash = cli_str(in, "payload_hash"),
        .expires_s = (int)json_integer_value(json_object_get(in, "expires")),
    };
    return 0;
}

static json_t *cli_result(const pv_sigv4_req_t *req, const pv_sigv4_out_t *out)
{
    json_t *r =
        json_pack("{s:i, s:s, s:s, s:s, s:s, s:s}", "rc", 0, "path", req->path, "canonical_request",
                  out->canonical_request.p, "string_to_sign", out->string_to_sign.p, "signature",
                  out->signature, "amz_date", out->amz_date);
    if (!r)
        return cli_error(-EINVAL, "output is not UTF-8");
    if (req->mode == PV_SIGV4_QUERY) {
        json_object_set_new(r, "query", json_string(out->query.p));
        return r;
    }
    json_t *add = json_array();
    for (int i = 0; i < out->n_add; i++)
        json_array_append_new(add, json_pack("[s, s]", out->add[i].name, out->add[i].value));
    json_object_set_new(r, "headers", add);
    json_object_set_new(r, "authorization", json_string(out->authorization.p));
    return r;
}

static json_t *cli_sign(json_t *in)
{
    pv_sigv4_header_t h[CLI_MAX_HEADERS];
    pv_sigv4_ctx_t ctx;
    pv_sigv4_req_t req;
    pv_sigv4_out_t out;
    pv_sb_t path = {0};
    json_t *res;

    int rc = cli_read(in, &ctx, &req, h, &path);
    if (rc == 0)
        rc = pv_sigv4_sign(&ctx, &req, &out);
    res = rc ? cli_error(rc, "pv_sigv4_sign refused the request") : cli_result(&req, &out);
    if (rc == 0)
        pv_sigv4_out_free(&out);
    pv_sb_free(&path);
    return res;
}

/* Skips whitespace; false at the end of the input. */
static bool cli_more(FILE *f)
{
    int c;
    while ((c = getc(f)) != EOF && isspace(c))
        ;
    if (c == EOF)
        return false;
    ungetc(c, f);
    return true;
}

int main(void)
{
    json_error_t err;
    while (cli_more(stdin)) {
        json_t *in = json_loadf(stdin, JSON_DISABLE_EOF_CHECK, &err);
        if (!json_is_object(in)) {
            /* position only: jansson's text quotes the input, secrets too */
            fprintf(stderr, "sigv4_cli: no JSON object at line %d, column %d\n", err.line,
                    err.column);
            json_decref(in);
            return 1;
        }
        json_t *res = cli_sign(in);
        char *text = json_dumps(res, JSON_COMPACT);
        if (text)
            puts(text);
        free(text);
        json_decref(res);
        json_decref(in);
    }
    return 0;
}
