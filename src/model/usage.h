/*
 * usage.h — what a user holds (src/model/usage.c): photos, videos, their
 * bytes, and the video jobs waiting or rendering. /me shows it, and the
 * per-user limits (storage, queued jobs) are checked against it.
 */
#ifndef PV_MODEL_USAGE_H
#define PV_MODEL_USAGE_H

#include <stdint.h>

#include "store/store.h"

typedef struct pv_usage {
    uint64_t photos, photo_bytes;
    uint64_t videos, video_bytes;
    uint64_t jobs;               /* videos queued or rendering */
} pv_usage_t;

/* The user's usage, read in txn (a read or a write transaction). */
int pv_user_usage(pv_txn_t *txn, const uint8_t user[16], pv_usage_t *u);

#endif
