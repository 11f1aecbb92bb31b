/*
 * reindex.c — the derived databases rebuilt from the records (reindex.h).
 * Each derived database is emptied, then one pass over each kind of record
 * writes what it implies. Blob references are gathered in memory (32 bytes
 * a reference), sorted and counted: a restore's one-off cost.
 */
#include "model/reindex.h"
#include "base/pv.h"
#include "base/records.h"

#include <stdlib.h>
#include <string.h>

typedef struct ri {
    pv_txn_t *txn;
    pv_reindex_t *out;
    uint8_t (*refs)[32];
    size_t n, cap;
    int rc;
} ri_t;

static int add_ref(ri_t *r, const uint8_t sha[32])
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        void *p = realloc(r->refs, cap * 32);
        if (!p)
            return -ENOMEM;
        r->refs = p;
        r->cap = cap;
    }
    memcpy(r->refs[r->n++], sha, 32);
    return 0;
}

static int one_user(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    ri_t *r = arg;
    pv_user_t u;
    if (k->len != 16 || pv_user_decode(v->data, v->len, &u) < 0)
        return r->rc = -EINVAL;
    int rc = pv_txn_put(r->txn, PV_DB_EMAILS, u.email, strlen(u.email), k->data, 16, true);
    if (rc < 0)
        return r->rc = rc == -EEXIST ? -EINVAL : rc;
    r->out->users++;
    return 0;
}

static int one_photo(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    ri_t *r = arg;
    pv_photo_t p;
    if (k->len != 32 || pv_photo_decode(v->data, v->len, &p) < 0)
        return r->rc = -EINVAL;
    uint8_t skey[48];
    pv_key2(skey, p.user_id, p.sha256, 32);
    int rc = pv_txn_put(r->txn, PV_DB_PHOTO_SHA, skey, sizeof(skey), p.id, 16, false);
    if (rc == 0)
        rc = add_ref(r, p.sha256);
    if (rc == 0)
        rc = add_ref(r, p.thumb_sha256);
    if (rc < 0)
        return r->rc = rc;
    r->out->photos++;
    return 0;
}

static int one_video(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    ri_t *r = arg;
    pv_video_t vid;
    if (k->len != 32 || pv_video_decode(v->data, v->len, &vid) < 0)
        return r->rc = -EINVAL;
    int rc = 0;
    if (vid.status == PV_VIDEO_QUEUED || vid.status == PV_VIDEO_RUNNING) {
        rc = pv_txn_put(r->txn, PV_DB_JOBS, vid.id, 16, vid.user_id, 16, false);
        r->out->jobs++;
    } else if (vid.status == PV_VIDEO_READY) {
        rc = add_ref(r, vid.sha256);
        if (rc == 0)
            rc = add_ref(r, vid.poster_sha256);
    }
    pv_video_clear(&vid);
    if (rc < 0)
        return r->rc = rc;
    r->out->videos++;
    return 0;
}

static int cmp32(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

int pv_reindex(pv_txn_t *txn, pv_reindex_t *out)
{
    memset(out, 0, sizeof(*out));
    ri_t r = {.txn = txn, .out = out};
    static const int derived[] = {PV_DB_EMAILS, PV_DB_PHOTO_SHA, PV_DB_BLOBS, PV_DB_JOBS};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < PV_ARRAY_LEN(derived); i++)
        rc = pv_txn_clear(txn, derived[i]);
    if (rc == 0)
        rc = pv_txn_scan(txn, PV_DB_USERS, NULL, 0, NULL, 0, false, one_user, &r);
    if (rc == 0)
        rc = pv_txn_scan(txn, PV_DB_PHOTOS, NULL, 0, NULL, 0, false, one_photo, &r);
    if (rc == 0)
        rc = pv_txn_scan(txn, PV_DB_VIDEOS, NULL, 0, NULL, 0, false, one_video, &r);
    if (rc == 0 && r.rc < 0)
        rc = r.rc;
    if (rc == 0 && r.n) {
        qsort(r.refs, r.n, 32, cmp32);
        for (size_t i = 0; rc == 0 && i < r.n;) {
            size_t j = i + 1;
            while (j < r.n && memcmp(r.refs[j], r.refs[i], 32) == 0)
                j++;
            uint8_t count[8];
            pv_be64_put(count, (uint64_t)(j - i));
            rc = pv_txn_put(txn, PV_DB_BLOBS, r.refs[i], 32, count, 8, false);
            out->blobs++;
            i = j;
        }
    }
    free(r.refs);
    return rc < 0 ? rc : r.rc;
}
