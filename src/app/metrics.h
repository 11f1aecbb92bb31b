/*
 * metrics.h — counters for /metrics, updated from every loop and thread
 * (relaxed atomics in fixed tables: no locks, no allocation on the request
 * path). Described once, in src/app/metrics.c.
 */
#ifndef PV_METRICS_H
#define PV_METRICS_H

#include "base/pv.h"
#include "store/store.h"

typedef struct pv_metrics pv_metrics_t;

enum pv_metric {
    PV_M_UPLOADS, PV_M_UPLOAD_BYTES, PV_M_JOBS_QUEUED, PV_M_JOBS_RUNNING, PV_M_JOBS_READY,
    PV_M_JOBS_FAILED, PV_M_JOBS_CANCELLED, PV_M_RENDER_FRAMES, PV_M_SYNC_CURSOR,
    PV_M_SYNC_LAG_ENTRIES, PV_M_SYNC_LAG_SECONDS, PV_M_SYNC_BLOBS, PV_M_SYNC_BYTES,
    PV_M_SYNC_SEGMENTS, PV_M_SYNC_FAILURES, PV_M_CHANGELOG_BYTES, PV_M_CHANGELOG_ALARM,
    PV_M_PULL_ACTIVE, PV_M_PULL_FETCHED, PV_M_PULL_MISSING,
    PV_M_SYNC_PG_CURSOR, PV_M_SYNC_PG_LAG_ENTRIES, PV_M_SYNC_PG_LAG_SECONDS, PV_M_SYNC_PG_ROWS,
    PV_M_SYNC_PG_FAILURES,
    PV_M_SYNC_DDB_CURSOR, PV_M_SYNC_DDB_LAG_ENTRIES, PV_M_SYNC_DDB_LAG_SECONDS, PV_M_SYNC_DDB_ITEMS,
    PV_M_SYNC_DDB_FAILURES, PV_M_SYNC_DDB_THROTTLED,
    PV_M_COUNT
};

pv_metrics_t *pv_metrics_new(void);
void pv_metrics_free(pv_metrics_t *m);
/* One answered request of the route named `route` (a static string). */
void pv_metrics_request(pv_metrics_t *m, const char *route, int status,
                        uint64_t bytes_out, double ms);
void pv_metrics_add(pv_metrics_t *m, int which, long long delta);
void pv_metrics_set(pv_metrics_t *m, int which, long long value);
/* The whole page (Prometheus text format) into o. */
void pv_metrics_text(pv_sb_t *o, pv_metrics_t *m, pv_store_t *store, int64_t started_ms);

#endif
