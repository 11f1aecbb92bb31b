/*
 * fuzz_presign.c — libFuzzer target for the text that reaches crypto.c
 * from the network: presigned-URL queries (parse and verify), and on the
 * side JWTs, ids, refresh tokens and base64url.
 *
 * Input: "PATH?QUERY" (no '?': all of it is the query, path "/media/x").
 * A query that parses must print back to one that parses the same; a
 * verification can only succeed for a signature made with our key.
 */
#include "base/crypto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pv_keys_t keys;

static void init_keys(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    memset(keys.jwt, 0x11, 32);
    keys.n_presign = 2;
    keys.presign_kid[0] = 2;
    keys.presign_kid[1] = 1;
    memset(keys.presign[0], 0x22, 32);
    memset(keys.presign[1], 0x33, 32);
}

static void check_roundtrip(const pv_presign_query_t *q)
{
    char again[256];
    pv_presign_query_t q2;
    snprintf(again, sizeof(again), "owner=%s&expires=%" PRId64 "&kid=%" PRIu32 "&sig=%s",
             q->owner, q->expires, q->kid, q->sig);
    if (pv_presign_parse(again, &q2) != 0 || strcmp(q->owner, q2.owner) != 0 ||
        q->expires != q2.expires || q->kid != q2.kid || strcmp(q->sig, q2.sig) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), *path = "/media/x", *query;
    pv_presign_query_t q;
    init_keys();
    memcpy(s, data, size);
    s[size] = '\0';

    query = strchr(s, '?');
    if (query)
        *query++ = '\0', path = s;
    else
        query = s;
    if (pv_presign_parse(query, &q) == 0)
        check_roundtrip(&q);
    int rc = pv_presign_verify(&keys, path, query, 1700000000, &q);
    if (rc != 0 && rc != -EACCES && rc != -ETIMEDOUT)
        abort();
    if (rc == 0 || rc == -ETIMEDOUT) {
        /* only possible if the signature is really ours */
        char url[512];
        int k = q.kid == 2 ? 0 : 1;
        pv_keys_t one = keys;
        one.presign_kid[0] = keys.presign_kid[k];
        memcpy(one.presign[0], keys.presign[k], 32);
        if (pv_presign_url(&one, path, q.owner, q.expires, url, sizeof(url)) != 0 ||
            !strstr(url, q.sig))
            abort();
    }

    /* the other parsers of untrusted text, on the whole input */
    if (query != s)
        query[-1] = '?';
    uint8_t id[16], h[32];
    char text[PV_ID_TEXT], uid[PV_ID_TEXT];
    if (pv_id_decode(s, id) == 0) {
        pv_id_encode(id, text);
        if (strcmp(text, s) != 0) /* one spelling per id */
            abort();
    }
    pv_refresh_hash(s, h);
    if (size < 2048)
        pv_jwt_verify(&keys, s, uid);
    size_t n;
    uint8_t raw[2048];
    pv_b64url_decode(s, raw, sizeof(raw), &n);
    free(s);
    return 0;
}
