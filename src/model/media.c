/*
 * media.c — where a photo's or video's download goes: see media.h.
 */
#include "model/media.h"
#include "base/pv.h"
#include "base/text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pv_media {
    const pv_keys_t *keys;
    int64_t ttl;
    pv_store_t *store;
    pv_media_s3_fn s3;       /* NULL: every link to the appliance */
    void *s3_ctx;
    char prefix[300];
};

pv_media_t *pv_media_new(const pv_keys_t *keys, int64_t ttl, pv_store_t *store)
{
    pv_media_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->keys = keys;
    m->ttl = ttl;
    m->store = store;
    return m;
}

void pv_media_free(pv_media_t *m)
{
    if (!m)
        return;
    free(m);
}

void pv_media_set_s3(pv_media_t *m, const char *prefix, pv_media_s3_fn fn, void *ctx)
{
    snprintf(m->prefix, sizeof(m->prefix), "%s", prefix);
    m->s3_ctx = ctx;
    m->s3 = fn;
}

void pv_media_s3_mark_key(const uint8_t sha[32], char key[PV_MEDIA_S3_MARK_LEN + 1])
{
    memcpy(key, PV_MEDIA_S3_MARK, sizeof(PV_MEDIA_S3_MARK) - 1);
    pv_hex(sha, 32, key + sizeof(PV_MEDIA_S3_MARK) - 1);
}

/* Whether S3 has blob sha (marked by the replicator). */
static bool in_s3(pv_media_t *m, const uint8_t sha[32])
{
    char key[PV_MEDIA_S3_MARK_LEN + 1];
    pv_media_s3_mark_key(sha, key);
    pv_txn_t txn;
    pv_val_t v;
    if (pv_txn_begin(m->store, &txn, false) < 0) /* MVCC: microseconds */
        return false;
    bool there = pv_txn_get(&txn, PV_DB_META, key, PV_MEDIA_S3_MARK_LEN, &v) == 0;
    pv_txn_abort(&txn);
    return there;
}

void pv_media_link(pv_media_t *m, const char *path, const uint8_t owner[16], const uint8_t sha[32],
                   const char *ctype, char *url, size_t size)
{
    int64_t now = pv_now_ms() / 1000;
    if (m->s3 && in_s3(m, sha)) {
        char hex[65], key[sizeof(m->prefix) + 80];
        pv_hex(sha, 32, hex);
        snprintf(key, sizeof(key), "%sblobs/%.2s/%s", m->prefix, hex, hex);
        if (m->s3(m->s3_ctx, key, ctype, now, m->ttl, url, size) == 0)
            return;
    }
    char own[PV_ID_TEXT];
    pv_id_encode(owner, own);
    pv_presign_url(m->keys, path, own, now + m->ttl, url, size);
}
