/*
 * metrics.c — counters for /metrics (Prometheus text format, private
 * listener only). Every HTTP loop updates them, so they are relaxed atomics
 * in fixed tables (no locks, no allocation on the request path): one row
 * per route name (the route table's static strings, matched by pointer) and
 * one column per status in a fixed list.
 */
#include "app/metrics.h"
#include "store/store.h"
#include "base/pv.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define M_ROUTES 48
static const int g_statuses[] = {200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405,
                                 409, 411, 413, 415, 416, 429, 431, 500, 503, 507, 0};
#define M_STATUSES PV_ARRAY_LEN(g_statuses) /* last column: any other */
static const double g_buckets[] = {0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000};
#define M_BUCKETS PV_ARRAY_LEN(g_buckets)

typedef struct m_route {
    const char *_Atomic name;           /* claimed once, by pointer */
    atomic_ullong count[M_STATUSES];
    atomic_ullong bucket[M_BUCKETS + 1]; /* ms histogram; last: +Inf */
    atomic_ullong sum_us;
    atomic_ullong bytes_out;
} m_route_t;

/* Counters and gauges other actors update, described once here. */
static const struct {
    const char *name, *type, *help;
} g_vals[PV_M_COUNT] = {
    [PV_M_UPLOADS] = {"pv_photo_uploads_total", "counter", "Photos stored (new, not duplicates)."},
    [PV_M_UPLOAD_BYTES] = {"pv_photo_upload_bytes_total", "counter", "Bytes of photos stored."},
    [PV_M_JOBS_QUEUED] = {"pv_video_jobs_queued", "gauge", "Video jobs waiting for a render thread (queue depth)."},
    [PV_M_JOBS_RUNNING] = {"pv_video_jobs_running", "gauge", "Video jobs rendering now."},
    [PV_M_JOBS_READY] = {"pv_video_jobs_ready_total", "counter", "Video jobs finished ready."},
    [PV_M_JOBS_FAILED] = {"pv_video_jobs_failed_total", "counter", "Video jobs that failed."},
    [PV_M_JOBS_CANCELLED] = {"pv_video_jobs_cancelled_total", "counter", "Video jobs cancelled."},
    [PV_M_RENDER_FRAMES] = {"pv_render_frames_total", "counter", "Frames rendered (rate() gives frames per second)."},
    [PV_M_SYNC_CURSOR] = {"pv_sync_s3_cursor", "gauge", "Last change-log entry durably in S3 (0 without s3_bucket)."},
    [PV_M_SYNC_LAG_ENTRIES] = {"pv_sync_s3_lag_entries", "gauge", "Change-log entries not yet in S3."},
    [PV_M_SYNC_LAG_SECONDS] = {"pv_sync_s3_lag_seconds", "gauge", "Age of the oldest change not yet in S3, seconds (0: caught up)."},
    [PV_M_SYNC_BLOBS] = {"pv_sync_s3_blobs_total", "counter", "Blobs sent to S3."},
    [PV_M_SYNC_BYTES] = {"pv_sync_s3_blob_bytes_total", "counter", "Bytes of blobs sent to S3."},
    [PV_M_SYNC_SEGMENTS] = {"pv_sync_s3_segments_total", "counter", "Change-log segments durably in S3."},
    [PV_M_CHANGELOG_BYTES] = {"pv_changelog_bytes", "gauge", "Bytes the change log takes in the store (kept until every replication target has it)."},
    [PV_M_CHANGELOG_ALARM] = {"pv_changelog_alarm", "gauge", "1 while the change log is past changelog_alarm_bytes (a replication target is far behind)."},
    [PV_M_SYNC_FAILURES] = {"pv_sync_s3_failures_total", "counter", "Replication passes that failed (each retried with backoff)."},
    [PV_M_PULL_ACTIVE] = {"pv_restore_pull_active", "gauge", "1 while the blobs of a restore from S3 are still being fetched in the background."},
    [PV_M_PULL_FETCHED] = {"pv_restore_blobs_fetched_total", "counter", "Blobs of a restore fetched from S3 after start (in the background or on first use)."},
    [PV_M_PULL_MISSING] = {"pv_restore_blobs_missing_total", "counter", "Blobs of a restore that S3 does not have (or has with other bytes)."},
    [PV_M_SYNC_PG_CURSOR] = {"pv_sync_pg_cursor", "gauge", "Last change-log entry committed in PostgreSQL (0 without pg_dsn)."},
    [PV_M_SYNC_PG_LAG_ENTRIES] = {"pv_sync_pg_lag_entries", "gauge", "Change-log entries not yet in PostgreSQL."},
    [PV_M_SYNC_PG_LAG_SECONDS] = {"pv_sync_pg_lag_seconds", "gauge", "Age of the oldest change not yet in PostgreSQL, seconds (0: caught up)."},
    [PV_M_SYNC_PG_ROWS] = {"pv_sync_pg_rows_total", "counter", "Rows written to PostgreSQL (upserts and deletes, full loads included)."},
    [PV_M_SYNC_PG_FAILURES] = {"pv_sync_pg_failures_total", "counter", "PostgreSQL replication passes that failed (each retried with backoff)."},
    [PV_M_SYNC_DDB_CURSOR] = {"pv_sync_ddb_cursor", "gauge", "Last change-log entry whose effect is in DynamoDB (0 without dynamodb_table)."},
    [PV_M_SYNC_DDB_LAG_ENTRIES] = {"pv_sync_ddb_lag_entries", "gauge", "Change-log entries not yet applied to DynamoDB."},
    [PV_M_SYNC_DDB_LAG_SECONDS] = {"pv_sync_ddb_lag_seconds", "gauge", "Age of the oldest change not yet in DynamoDB, seconds (0: caught up)."},
    [PV_M_SYNC_DDB_ITEMS] = {"pv_sync_ddb_items_total", "counter", "DynamoDB items written or deleted (failed conditions not counted)."},
    [PV_M_SYNC_DDB_FAILURES] = {"pv_sync_ddb_failures_total", "counter", "DynamoDB replication passes that failed (each retried with backoff)."},
    [PV_M_SYNC_DDB_THROTTLED] = {"pv_sync_ddb_throttled_total", "counter", "DynamoDB requests throttled (or 5xx) and sent again after a backoff."},
};

struct pv_metrics {
    m_route_t routes[M_ROUTES];
    atomic_llong vals[PV_M_COUNT];
};

void pv_metrics_add(pv_metrics_t *m, int which, long long delta)
{
    if (m && which >= 0 && which < PV_M_COUNT)
        atomic_fetch_add_explicit(&m->vals[which], delta, memory_order_relaxed);
}

void pv_metrics_set(pv_metrics_t *m, int which, long long value)
{
    if (m && which >= 0 && which < PV_M_COUNT)
        atomic_store_explicit(&m->vals[which], value, memory_order_relaxed);
}

pv_metrics_t *pv_metrics_new(void) { return calloc(1, sizeof(pv_metrics_t)); }
void pv_metrics_free(pv_metrics_t *m) { free(m); }

static m_route_t *route_slot(pv_metrics_t *m, const char *name)
{
    for (int i = 0; i < M_ROUTES; i++) {
        const char *cur = atomic_load_explicit(&m->routes[i].name, memory_order_acquire);
        if (cur == name)
            return &m->routes[i];
        if (cur == NULL) {
            const char *expect = NULL;
            if (atomic_compare_exchange_strong(&m->routes[i].name, &expect, name) ||
                expect == name)
                return &m->routes[i];
        }
    }
    return NULL;
}

void pv_metrics_request(pv_metrics_t *m, const char *route, int status,
                        uint64_t bytes_out, double ms)
{
    m_route_t *r = route_slot(m, route);
    if (!r)
        return;
    size_t s = M_STATUSES - 1;
    for (size_t i = 0; i + 1 < M_STATUSES; i++)
        if (g_statuses[i] == status)
            s = i;
    atomic_fetch_add_explicit(&r->count[s], 1, memory_order_relaxed);
    size_t b = M_BUCKETS;
    for (size_t i = 0; i < M_BUCKETS; i++)
        if (ms <= g_buckets[i]) {
            b = i;
            break;
        }
    atomic_fetch_add_explicit(&r->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sum_us, (unsigned long long)(ms * 1000), memory_order_relaxed);
    atomic_fetch_add_explicit(&r->bytes_out, bytes_out, memory_order_relaxed);
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ., .. and the DIR's own fd */
}

static void requests_text(pv_sb_t *o, pv_metrics_t *m)
{
    pv_sb_printf(o, "# HELP pv_http_requests_total HTTP requests answered, by route and status.\n"
           "# TYPE pv_http_requests_total counter\n");
    for (int i = 0; i < M_ROUTES; i++) {
        m_route_t *r = &m->routes[i];
        const char *name = atomic_load(&r->name);
        if (!name)
            break;
        for (size_t s = 0; s < M_STATUSES; s++) {
            unsigned long long c = atomic_load(&r->count[s]);
            if (!c)
                continue;
            if (g_statuses[s])
                pv_sb_printf(o, "pv_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", name, g_statuses[s], c);
            else
                pv_sb_printf(o, "pv_http_requests_total{route=\"%s\",status=\"other\"} %llu\n", name, c);
        }
    }
    pv_sb_printf(o, "# HELP pv_http_request_duration_ms Time to answer, by route.\n"
           "# TYPE pv_http_request_duration_ms histogram\n");
    for (int i = 0; i < M_ROUTES; i++) {
        m_route_t *r = &m->routes[i];
        const char *name = atomic_load(&r->name);
        if (!name)
            break;
        unsigned long long cum = 0;
        for (size_t b = 0; b <= M_BUCKETS; b++) {
            cum += atomic_load(&r->bucket[b]);
            if (b < M_BUCKETS)
                pv_sb_printf(o, "pv_http_request_duration_ms_bucket{route=\"%s\",le=\"%g\"} %llu\n", name, g_buckets[b], cum);
            else
                pv_sb_printf(o, "pv_http_request_duration_ms_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", name, cum);
        }
        pv_sb_printf(o, "pv_http_request_duration_ms_sum{route=\"%s\"} %.3f\n", name, atomic_load(&r->sum_us) / 1000.0);
        pv_sb_printf(o, "pv_http_request_duration_ms_count{route=\"%s\"} %llu\n", name, cum);
    }
    pv_sb_printf(o, "# HELP pv_http_response_bytes_total Bytes of answer bodies, by route.\n"
           "# TYPE pv_http_response_bytes_total counter\n");
    for (int i = 0; i < M_ROUTES; i++) {
        const char *name = atomic_load(&m->routes[i].name);
        if (!name)
            break;
        pv_sb_printf(o, "pv_http_response_bytes_total{route=\"%s\"} %llu\n", name, atomic_load(&m->routes[i].bytes_out));
    }
}

/* The whole /metrics page (Prometheus text format) into o. */
void pv_metrics_text(pv_sb_t *o, pv_metrics_t *m, pv_store_t *store, int64_t started_ms)
{
    requests_text(o, m);
    pv_store_stat_t st;
    if (pv_store_stat(store, &st) == 0) {
        pv_sb_printf(o, "# TYPE pv_store_map_size_bytes gauge\npv_store_map_size_bytes %llu\n",
            (unsigned long long)st.map_size);
        pv_sb_printf(o, "# TYPE pv_store_map_used_bytes gauge\npv_store_map_used_bytes %llu\n",
            (unsigned long long)st.map_used);
        pv_sb_printf(o, "# TYPE pv_changelog_head gauge\npv_changelog_head %llu\n",
            (unsigned long long)st.last_seq);
        pv_sb_printf(o, "# HELP pv_changelog_entries Change-log entries kept (not yet trimmed).\n"
                "# TYPE pv_changelog_entries gauge\npv_changelog_entries %llu\n",
            (unsigned long long)st.entries[PV_DB_CHANGES]);
        pv_sb_printf(o, "# TYPE pv_users gauge\npv_users %llu\n", (unsigned long long)st.entries[PV_DB_USERS]);
        pv_sb_printf(o, "# TYPE pv_photos gauge\npv_photos %llu\n", (unsigned long long)st.entries[PV_DB_PHOTOS]);
        pv_sb_printf(o, "# TYPE pv_videos gauge\npv_videos %llu\n", (unsigned long long)st.entries[PV_DB_VIDEOS]);
    }
    for (int i = 0; i < PV_M_COUNT; i++)
        pv_sb_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", g_vals[i].name, g_vals[i].help,
            g_vals[i].name, g_vals[i].type, g_vals[i].name, atomic_load(&m->vals[i]));
    pv_sb_printf(o, "# TYPE pv_process_resident_memory_bytes gauge\npv_process_resident_memory_bytes %ld\n", rss_bytes());
    pv_sb_printf(o, "# TYPE pv_process_open_fds gauge\npv_process_open_fds %d\n", open_fds());
    pv_sb_printf(o, "# TYPE pv_uptime_seconds gauge\npv_uptime_seconds %lld\n",
        (long long)((pv_now_ms() - started_ms) / 1000));
}
