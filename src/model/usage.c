/*
 * usage.c — a user's usage, by scanning their records: photos and videos
 * under the user's key prefix, jobs in the (short) job table. A scan of a
 * user's records is what LMDB does in microseconds for thousands of them;
 * counters kept beside the records would be one more thing to keep exact
 * through every write and restore.
 */
#include "model/usage.h"
#include "base/pv.h"
#include "base/records.h"

#include <string.h>

static int usage_photo(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    pv_usage_t *u = arg;
    pv_photo_t p;
    if (pv_photo_decode(v->data, v->len, &p) == 0) {
        u->photos++;
        u->photo_bytes += p.bytes;
    }
    return 0;
}

static int usage_video(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    pv_usage_t *u = arg;
    pv_video_t vid;
    if (pv_video_decode(v->data, v->len, &vid) == 0) {
        u->videos++;
        u->video_bytes += vid.bytes;
        pv_video_clear(&vid);
    }
    return 0;
}

typedef struct jobs_ctx {
    const uint8_t *user;
    uint64_t n;
} jobs_ctx_t;

static int usage_job(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    jobs_ctx_t *j = arg;
    if (v->len == 16 && memcmp(v->data, j->user, 16) == 0)
        j->n++;
    return 0;
}

int pv_user_usage(pv_txn_t *txn, const uint8_t user[16], pv_usage_t *u)
{
    memset(u, 0, sizeof(*u));
    jobs_ctx_t jc = {user, 0};
    int rc = pv_txn_scan(txn, PV_DB_PHOTOS, user, 16, NULL, 0, false, usage_photo, u);
    if (rc == 0)
        rc = pv_txn_scan(txn, PV_DB_VIDEOS, user, 16, NULL, 0, false, usage_video, u);
    if (rc == 0)
        rc = pv_txn_scan(txn, PV_DB_JOBS, NULL, 0, NULL, 0, false, usage_job, &jc);
    u->jobs = jc.n;
    return rc < 0 ? rc : 0;
}
