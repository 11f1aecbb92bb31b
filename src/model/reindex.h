/*
 * reindex.h — the store's derived databases rebuilt from the records, for
 * a restore that applied change-log entries (users, photos, videos) over
 * a snapshot: emails from users, photo_sha from photos, jobs from queued
 * and running videos, and every blob's reference count from the photos
 * (original, thumbnail) and ready videos (MP4, poster) that name it. The
 * result is what src/model/check.c checks.
 */
#ifndef PV_MODEL_REINDEX_H
#define PV_MODEL_REINDEX_H

#include <stdint.h>

#include "store/store.h"

typedef struct pv_reindex {
    uint64_t users, photos, videos, jobs, blobs; /* entries written */
} pv_reindex_t;

/* In a write transaction: 0, or -errno (-EINVAL: a record that does not
 * decode, or two users of one email). */
int pv_reindex(pv_txn_t *txn, pv_reindex_t *out);

#endif
