/*
 * replicate.c — the S3 replicator: the change log and the blobs it names,
 * copied to S3 in log order, in the background, on its own loop ("sync")
 * so that a slow or absent S3 never touches a request.
 *
 * A pass reads up to sync_batch entries after the cursor (the last entry
 * durably in S3, kept in META under PV_REPL_S3_CURSOR) and then:
 *   1. every blob those entries name (a photo's original and thumbnail, a
 *      ready video's MP4 and poster) goes to PREFIX/blobs/xx/<sha256>:
 *      HEAD first, PUT only when absent (a name is its content, so a blob
 *      already there is the same bytes). Eight at once. A blob deleted
 *      here since (its file gone) is skipped: a later entry deletes it.
 *   2. then the entries, as one segment (src/store/segment.h) at
 *      PREFIX/log/FIRST-LAST.msgpack: a blob reaches S3 before any
 *      segment that names it.
 *   3. then the cursor moves to LAST, through the store writer.
 * Caught up, the next pass is sync_interval later; behind, at once.
 *
 * A blob past s3_multipart_threshold goes up in parts of s3_part_size, one
 * part at a time, each with its Content-MD5; the upload's id is kept in
 * META (sync/s3/mpu/<sha256>) from its creation to its completion, so a
 * pass cut short, or a pvd killed, resumes it: ListParts, then only the
 * parts S3 lacks.
 *
 * Delivery is at least once: a pass cut short (S3 down, pvd killed) is
 * sent again from the cursor, and every write is idempotent (blob keys are
 * content hashes; a segment sent again has the same first entry and may
 * end further on; a restore applies entries above what it has). A failed
 * pass waits with capped exponential backoff and jitter (1 s doubling to
 * 5 minutes, then a random half to whole of that) and starts again from
 * the cursor; the appliance serves on meanwhile, and the change log is
 * kept below the cursor (actors/sync.c trims only up to it).
 *
 * One appliance a prefix: before its first pass pvd checks that the log in
 * S3 does not go past its own (else it was restored to an earlier point,
 * or another appliance writes there) and takes a lease, PREFIX/lease.json
 * naming its appliance id (META appliance/id, which a restore keeps), with
 * a conditional PUT (If-None-Match: *). A lease of another appliance that
 * has not expired makes it refuse to replicate, saying why, and look again
 * a minute later; one that expired is taken over. The lease is renewed
 * (read, checked, written) a third of the way through its time; it lasts
 * max(60 s, 6 x sync_interval).
 *
 * Snapshots: a restore starts from a snapshot, so the first pass in a
 * prefix without one makes one, and then one every snapshot_interval: a
 * compacted copy of the store with the keys and TLS files (the archive of
 * pvctl backup without blobs, made on the work pool), uploaded as
 * PREFIX/snapshots/SEQ-MS.tar (SEQ: the change-log head when the copy
 * began, so that the copy holds at least every entry up to it; MS: when),
 * in one PUT or, past s3_multipart_threshold, a multipart upload. Before it, every
 * blob the store holds is made sure of (HEAD, PUT when absent), a page of
 * PV_DB_BLOBS at a time: blobs of records older than the first replicated
 * entry reach S3 this way. Then the oldest snapshots beyond
 * snapshot_retention are deleted (segments stay: they are small).
 *
 * Memory is bounded by sync_batch whatever the backlog: one segment and
 * its blob names at a time; blob files and snapshots are streamed from
 * disk by the S3 client. Nothing here logs a secret: errors name S3's code
 * and message.
 */
#include "actors/replicate.h"
#include "actors/target.h"
#include "actors/sync.h"
#include "app/kit.h"
#include "app/metrics.h"
#include <jansson.h>
#include "base/crypto.h"
#include "base/records.h"
#include "base/text.h"
#include "cloud/credchain.h"
#include "cloud/s3.h"
#include "cloud/sigv4.h"
#include "store/backup.h"
#include "store/segment.h"

#include <errno.h>
#include <pthread.h>
#include <event2/event.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOBS_AT_ONCE 8
#define BLOB_PAGE 256                  /* PV_DB_BLOBS keys a snapshot checks at a time */


enum {
    REPL_INIT = PV_REPL_PUBLIC_COUNT, /* first message on the loop: make the client */
    REPL_STOP,                        /* cancel everything, stop the loop */
    REPL_MSG_COUNT
};

typedef struct repl repl_t;

typedef struct blob_job {
    repl_t *r;
    uint8_t sha[32];
    char key[PV_SEGMENT_KEY_MAX + 320];
    char path[PATH_MAX];
    char hex[65];
    uint64_t size;          /* the local file's, for bytes_pending */
    /* a multipart upload (past s3_multipart_threshold) */
    char upload_id[PV_S3_UPLOAD_ID_MAX];
    pv_s3_part_t *parts;    /* [n_parts]: number 0 until that part is in S3 */
    int n_parts, next;
    int64_t part_size;
} blob_job_t;

/* META: a multipart upload under way, by blob, so that a pvd killed in
 * the middle resumes it (ListParts) rather than start again. */
#define MPU_META "sync/s3/mpu/"

typedef struct mpu_meta {
    pv_store_req_t sreq;    /* answered to the actor: mpu_meta_done() */
    char key[sizeof(MPU_META) + 64];
    char upload_id[PV_S3_UPLOAD_ID_MAX]; /* "" deletes */
} mpu_meta_t;

typedef struct snap_job {
    pv_msg_t msg;           /* work pool: answered to the actor: snap_made() */
    repl_t *r;
    char name[64];
    char path[PATH_MAX];    /* out */
    pv_backup_info_t info;  /* out */
    char err[256];          /* out */
    int rc;                 /* out */
} snap_job_t;

typedef struct cursor_req {
    pv_store_req_t sreq;    /* answered to the actor: cursor_stored() */
    repl_t *r;
    uint64_t cursor;
} cursor_req_t;

struct repl {
    pv_app_t *app;
    pv_actor_t *self;
    pv_loop_t *loop;
    pv_curlev_t *http;
    pv_s3_t *s3;
    pv_credchain_t *cc;     /* credentials, fresh before they expire */
    pthread_mutex_t links_mu; /* links */
    pv_s3_t *links;         /* media_from_s3: a client for presigned links only,
                             * used by the HTTP loops (s3_link) */
    char region[32];
    char prefix[300];       /* "" or ending in '/' */
    uint64_t cursor;
    /* the pass in flight */
    pv_segment_t *seg;
    uint8_t (*shas)[32];
    size_t n_shas, next_sha;
    uint8_t (*in_s3)[32];   /* of shas: the ones S3 acknowledged (marked in META) */
    size_t n_in_s3;
    int in_flight;
    bool failed;            /* a step failed: end the pass once nothing is in flight */
    void (*after_blobs)(repl_t *r); /* what follows the blobs: the segment, or a
                                     * snapshot's next page */
    /* snapshots */
    bool snap_known;        /* S3's newest snapshot was looked up */
    int64_t snap_due_ms;    /* when the next one is due */
    char snap_path[PATH_MAX]; /* the archive being sent ("" none) */
    char snap_key[400];
    int64_t snap_size;
    uint8_t blob_after[32]; /* the snapshot's blob scan: the last key checked */
    bool blob_after_set, blob_scan_done;
    char upload_id[PV_S3_UPLOAD_ID_MAX];
    pv_s3_part_t *parts;
    int n_parts, part_next;
    /* one appliance a prefix */
    char appliance[33];     /* META appliance/id, in hex */
    bool checked;           /* the log in S3 was checked against ours */
    bool lease_held;
    int64_t lease_renew_ms; /* when to renew (or try again) */
    uint64_t s3_last;       /* the prefix check: the last change S3 holds */
    char *list_token;
    char *lease_body;       /* the lease PUT's body, borrowed until it is done */
    bool lease_conditional; /* that PUT had If-None-Match: * */
    pv_target_core_t t;     /* status, timer, pause, backoff (actors/target.h) */
};

static void pass(repl_t *r);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pass(arg);
}

/* ---------------- the cursor, the head, the lag ---------------- */

static int load_cursor(repl_t *r)
{
    pv_txn_t txn;
    pv_val_t v;
    int rc = pv_txn_begin(r->app->store, &txn, false);
    if (rc < 0)
        return rc;
    rc = pv_txn_get(&txn, PV_DB_META, PV_REPL_S3_CURSOR, strlen(PV_REPL_S3_CURSOR), &v);
    if (rc == 0 && v.len == 8)
        r->cursor = pv_be64_get(v.data);
    pv_txn_abort(&txn);
    return rc == -ENOENT ? 0 : rc;
}

/* The head and the age of the oldest entry not yet in S3, for status and
 * the metrics. */
/* ---------------- the end of a pass ---------------- */

static void pass_free(repl_t *r)
{
    if (r->snap_path[0])
        unlink(r->snap_path);
    r->snap_path[0] = '\0';
    r->blob_after_set = r->blob_scan_done = false;
    free(r->parts);
    r->parts = NULL;
    r->n_parts = r->part_next = 0;
    r->upload_id[0] = '\0';
    pv_segment_free(r->seg);
    r->seg = NULL;
    free(r->shas);
    r->shas = NULL;
    r->n_shas = r->next_sha = 0;
    free(r->in_s3);
    r->in_s3 = NULL;
    r->n_in_s3 = 0;
    r->t.st.bytes_pending = 0;
    r->failed = false;
    r->t.busy = false;
}

/* Record why the pass failed; it ends once nothing is in flight. */
static void fail(repl_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(repl_t *r, const char *fmt, ...)
{
    if (r->failed || r->t.stopping)
        return;
    r->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->t.st.last_error, sizeof(r->t.st.last_error), fmt, ap);
    va_end(ap);
    r->t.st.last_error_ms = pv_now_ms();
}

static void fail_s3(repl_t *r, const char *what, const pv_s3_result_t *res)
{
    if (res->status)
        fail(r, "%s: HTTP %ld %s%s%s", what, res->status, res->code,
             res->code[0] && res->message[0] ? ": " : "", res->message);
    else
        fail(r, "%s: %s%s%s", what, strerror(-res->rc), res->message[0] ? ": " : "",
             res->message);
}

/* A failed pass: wait (capped exponential backoff with jitter), then
 * start again from the cursor. */
static void pass_failed(repl_t *r)
{
    pass_free(r);
    pv_target_failed(&r->t, r->cursor);
}

/* A step of a pass is one S3 request at a time (the blobs aside). Its
 * start: counted in flight, or the pass fails with what. */
static void step_started(repl_t *r, int rc, const char *what)
{
    if (rc < 0) {
        fail(r, "%s: %s", what, strerror(-rc));
        pass_failed(r);
        return;
    }
    r->in_flight++;
}

/* Its answer: true to go on; false when pvd stops or the step failed
 * (then the pass has failed with what and S3's words). */
static bool step_answered(repl_t *r, const pv_s3_result_t *res, const char *what)
{
    r->in_flight--;
    if (r->t.stopping)
        return false;
    if (res->rc < 0) {
        fail_s3(r, what, res);
        pass_failed(r);
        return false;
    }
    return true;
}

/* ---------------- 3. the cursor ---------------- */

static int cursor_apply(pv_txn_t *txn, void *arg)
{
    cursor_req_t *c = arg;
    return pv_target_put_cursor(txn, PV_REPL_S3_CURSOR, c->cursor);
}

static void cursor_stored(pv_msg_t *msg)
{
    cursor_req_t *c = (cursor_req_t *)msg;
    repl_t *r = c->r;
    int rc = msg->status;
    uint64_t cursor = c->cursor;
    pv_msg_free(msg);
    if (r->t.stopping)
        return;
    if (rc < 0) {
        fail(r, "cannot store the replication cursor: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    r->cursor = cursor;
    r->t.st.segments++;
    pv_metrics_add(r->app->metrics, PV_M_SYNC_SEGMENTS, 1);
    if (r->t.failures_in_row)
        pv_info("sync", "S3 replication works again (cursor %" PRIu64 ")", cursor);
    r->t.failures_in_row = 0;
    r->t.st.next_retry_ms = 0;
    pass_free(r);
    pv_target_refresh_lag(&r->t, r->cursor);
    if (r->t.paused) {
        pv_target_state(&r->t, "paused");
        return;
    }
    bool behind = r->t.st.head > r->cursor;
    pv_target_state(&r->t, behind ? "sending" : "idle");
    pv_target_later(&r->t, behind ? 0 : (int64_t)r->app->cfg.sync_interval * 1000);
}

static void store_cursor(repl_t *r)
{
    cursor_req_t *c = pv_msg_new(sizeof(*c), 0);
    if (!c) {
        fail(r, "out of memory");
        pass_failed(r);
        return;
    }
    c->r = r;
    c->cursor = pv_segment_last(r->seg);
    c->sreq.apply = cursor_apply;
    c->sreq.arg = c;
    pv_msg_expect(&c->sreq.msg, r->self, cursor_stored);
    pv_store_submit(r->app->store, &c->sreq);
}

/* ---------------- 2. the segment ---------------- */

static void segment_done(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    if (!step_answered(r, res, "PUT segment"))
        return;
    store_cursor(r);
}

static void put_segment(repl_t *r)
{
    size_t len = 0;
    const void *bytes = pv_segment_bytes(r->seg, &len);
    char key[sizeof(r->prefix) + PV_SEGMENT_KEY_MAX], name[PV_SEGMENT_KEY_MAX];
    pv_segment_key(r->seg, name);
    snprintf(key, sizeof(key), "%s%s", r->prefix, name);
    pv_s3_body_t body = {.kind = PV_S3_MEM, .data = bytes, .len = len};
    pv_s3_put_opts_t opts = {.checksum = PV_S3_CHECKSUM_MD5,
                             .content_type = "application/vnd.msgpack"};
    int rc = bytes ? pv_s3_put(r->s3, key, &body, &opts, segment_done, r) : -ENOMEM;
    step_started(r, rc, "PUT segment");
}

/* ---------------- 1. the blobs ---------------- */

static void blobs_next(repl_t *r);

/* S3 has blob j: noted, and once the blobs of the step are done, marked
 * in META (model/media.h) for media_from_s3's links. */
static void in_s3(repl_t *r, const blob_job_t *j)
{
    if (r->n_in_s3 % 64 == 0) {
        void *p = realloc(r->in_s3, (r->n_in_s3 + 64) * 32);
        if (!p)
            return; /* unmarked: its links point at the appliance */
        r->in_s3 = p;
    }
    memcpy(r->in_s3[r->n_in_s3++], j->sha, 32);
}

typedef struct marks_req {
    pv_store_req_t sreq;
    size_t n;
    uint8_t (*shas)[32];
} marks_req_t;

static int marks_apply(pv_txn_t *txn, void *arg)
{
    marks_req_t *m = arg;
    for (size_t i = 0; i < m->n; i++) {
        char key[PV_MEDIA_S3_MARK_LEN + 1];
        pv_media_s3_mark_key(m->shas[i], key);
        int rc = pv_txn_put(txn, PV_DB_META, key, PV_MEDIA_S3_MARK_LEN, "", 0, false);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void marks_done(pv_msg_t *msg)
{
    marks_req_t *m = (marks_req_t *)msg;
    /* Best effort: a mark not written only keeps a link on the appliance. */
    free(m->shas);
    pv_msg_free(msg);
}

static void marks_write(repl_t *r)
{
    if (r->n_in_s3 == 0)
        return;
    marks_req_t *m = pv_msg_new(sizeof(*m), 0);
    if (!m)
        return;
    m->n = r->n_in_s3;
    m->shas = r->in_s3;
    r->in_s3 = NULL;
    r->n_in_s3 = 0;
    m->sreq.apply = marks_apply;
    m->sreq.arg = m;
    pv_msg_expect(&m->sreq.msg, r->self, marks_done);
    pv_store_submit(r->app->store, &m->sreq);
}

static void blob_end(blob_job_t *j)
{
    repl_t *r = j->r;
    r->in_flight--;
    r->t.st.bytes_pending -= j->size <= r->t.st.bytes_pending ? j->size : r->t.st.bytes_pending;
    free(j->parts);
    free(j);
    if (!r->t.stopping)
        blobs_next(r);
}

static void blob_put_done(const pv_s3_result_t *res, void *arg)
{
    blob_job_t *j = arg;
    repl_t *r = j->r;
    if (res->rc == 0) {
        in_s3(r, j);
        r->t.st.blobs++;
        r->t.st.blob_bytes += (uint64_t)res->size;
        pv_metrics_add(r->app->metrics, PV_M_SYNC_BLOBS, 1);
        pv_metrics_add(r->app->metrics, PV_M_SYNC_BYTES, res->size);
    } else {
        fail_s3(r, "PUT blob", res);
    }
    blob_end(j);
}

/* ---- a blob in parts ---- */

static void mpu_meta_done(pv_msg_t *msg)
{
    /* Best effort: without the record a crash restarts the upload; with a
     * stale one, ListParts says it is gone and a new one starts. */
    pv_msg_free(msg);
}

static int mpu_meta_apply(pv_txn_t *txn, void *arg)
{
    mpu_meta_t *m = arg;
    size_t kl = strlen(m->key);
    if (!m->upload_id[0]) {
        int rc = pv_txn_del(txn, PV_DB_META, m->key, kl);
        return rc == -ENOENT ? 0 : rc;
    }
    return pv_txn_put(txn, PV_DB_META, m->key, kl, m->upload_id, strlen(m->upload_id), false);
}

/* Record (or with id NULL, forget) the blob's upload id. */
static void mpu_meta_save(repl_t *r, const blob_job_t *j, const char *id)
{
    mpu_meta_t *m = pv_msg_new(sizeof(*m), 0);
    if (!m)
        return;
    snprintf(m->key, sizeof(m->key), MPU_META "%s", j->hex);
    snprintf(m->upload_id, sizeof(m->upload_id), "%s", id ? id : "");
    m->sreq.apply = mpu_meta_apply;
    m->sreq.arg = m;
    pv_msg_expect(&m->sreq.msg, r->self, mpu_meta_done);
    pv_store_submit(r->app->store, &m->sreq);
}

static void blob_part_next(blob_job_t *j);

static void blob_mpu_completed(const pv_s3_result_t *res, void *arg)
{
    blob_job_t *j = arg;
    repl_t *r = j->r;
    if (res->rc == 0) {
        in_s3(r, j);
        r->t.st.blobs++;
        r->t.st.blob_bytes += j->size;
        pv_metrics_add(r->app->metrics, PV_M_SYNC_BLOBS, 1);
        pv_metrics_add(r->app->metrics, PV_M_SYNC_BYTES, (long long)j->size);
        if (!r->t.stopping)
            mpu_meta_save(r, j, NULL);
    } else {
        fail_s3(r, "complete a blob's multipart upload", res);
    }
    blob_end(j);
}

static void blob_part_done(const pv_s3_result_t *res, void *arg)
{
    blob_job_t *j = arg;
    repl_t *r = j->r;
    if (res->rc < 0) { /* the upload stays: the next pass resumes it */
        fail_s3(r, "PUT blob part", res);
        blob_end(j);
        return;
    }
    pv_s3_part_t *p = &j->parts[j->next];
    p->number = j->next + 1;
    p->size = res->size;
    snprintf(p->etag, sizeof(p->etag), "%s", res->etag);
    j->next++;
    blob_part_next(j);
}

static void blob_part_next(blob_job_t *j)
{
    repl_t *r = j->r;
    while (j->next < j->n_parts && j->parts[j->next].number) /* in S3 already */
        j->next++;
    if (r->failed || r->t.stopping) {
        blob_end(j);
        return;
    }
    int rc;
    if (j->next == j->n_parts) {
        rc = pv_s3_mpu_complete(r->s3, j->key, j->upload_id, j->parts, (size_t)j->n_parts,
                                blob_mpu_completed, j);
    } else if (pv_fail("repl_part")) {
        rc = -EIO;
    } else {
        int64_t off = (int64_t)j->next * j->part_size;
        int64_t len = (int64_t)j->size - off < j->part_size ? (int64_t)j->size - off : j->part_size;
        pv_s3_body_t body = {.kind = PV_S3_PATH, .path = j->path, .offset = off, .length = len};
        rc = pv_s3_mpu_part(r->s3, j->key, j->upload_id, j->next + 1, &body, blob_part_done, j);
    }
    if (rc < 0) {
        fail(r, "blob %.12s... in parts: %s", j->hex, strerror(-rc));
        blob_end(j);
    }
}

static int blob_parts_alloc(blob_job_t *j)
{
    j->part_size = (int64_t)j->r->app->cfg.s3_part_size;
    j->n_parts = pv_s3_part_count((int64_t)j->size, j->part_size);
    j->parts = j->n_parts > 0 ? calloc((size_t)j->n_parts, sizeof(*j->parts)) : NULL;
    return j->parts ? 0 : j->n_parts > 0 ? -ENOMEM : -EINVAL;
}

static void blob_mpu_created(const pv_s3_result_t *res, void *arg)
{
    blob_job_t *j = arg;
    repl_t *r = j->r;
    if (res->rc < 0 || !res->upload_id) {
        fail_s3(r, "start a blob's multipart upload", res);
        blob_end(j);
        return;
    }
    snprintf(j->upload_id, sizeof(j->upload_id), "%s", res->upload_id);
    if (!r->t.stopping)
        mpu_meta_save(r, j, j->upload_id);
    int rc = blob_parts_alloc(j);
    if (rc < 0) {
        fail(r, "blob %.12s... in parts: %s", j->hex, strerror(-rc));
        blob_end(j);
        return;
    }
    blob_part_next(j);
}

static void blob_mpu_create(blob_job_t *j)
{
    int rc = pv_s3_mpu_create(j->r->s3, j->key, NULL, blob_mpu_created, j);
    if (rc < 0) {
        fail(j->r, "start a blob's multipart upload: %s", strerror(-rc));
        blob_end(j);
    }
}

/* ListParts of the upload a pass before left: keep the parts of the
 * right size, send the others. */
static void blob_parts_listed(const pv_s3_result_t *res, void *arg)
{
    blob_job_t *j = arg;
    repl_t *r = j->r;
    if (res->rc == -ENOENT) { /* completed or aborted meanwhile: start again */
        j->upload_id[0] = '\0';
        blob_mpu_create(j);
        return;
    }
    if (res->rc < 0) {
        fail_s3(r, "list a blob's uploaded parts", res);
        blob_end(j);
        return;
    }
    int rc = blob_parts_alloc(j);
    if (rc < 0) {
        fail(r, "blob %.12s... in parts: %s", j->hex, strerror(-rc));
        blob_end(j);
        return;
    }
    for (size_t i = 0; res->parts && i < res->parts->n; i++) {
        const pv_s3_part_t *p = &res->parts->v[i];
        if (p->number < 1 || p->number > j->n_parts)
            continue;
        int64_t off = (int64_t)(p->number - 1) * j->part_size;
        int64_t want = (int64_t)j->size - off < j->part_size ? (int64_t)j->size - off : j->part_size;
        if (p->size != want)
            continue; /* cut short: sent again */
        j->parts[p->number - 1] = *p;
        r->t.st.parts_resumed++;
    }
    j->next = 0;
    blob_part_next(j);
}

/* A blob past the threshold: resume its upload if META knows one, else
 * start one. */
static void blob_mpu(blob_job_t *j)
{
    repl_t *r = j->r;
    char mkey[sizeof(MPU_META) + 64];
    snprintf(mkey, sizeof(mkey), MPU_META "%s", j->hex);
    pv_txn_t txn;
    pv_val_t v;
    if (pv_txn_begin(r->app->store, &txn, false) == 0) {
        if (pv_txn_get(&txn, PV_DB_META, mkey, strlen(mkey), &v) == 0 && v.len > 0 &&
            v.len < sizeof(j->upload_id)) {
            memcpy(j->upload_id, v.data, v.len);
            j->upload_id[v.len] = '\0';
        }
        pv_txn_abort(&txn);
    }
    int rc = 0;
    if (j->upload_id[0])
        rc = pv_s3_mpu_list_parts(r->s3, j->key, j->upload_id, 0, blob_parts_listed, j);
    else
        blob_mpu_create(j);
    if (rc < 0) {
        fail(r, "list a blob's uploaded parts: %s", strerror(-rc));
        blob_end(j);
    }
}

/* Send the blob: in one PUT, or in parts past the threshold. Ends the job. */
static void blob_send(blob_job_t *j)
{
    repl_t *r = j->r;
    if (j->size > r->app->cfg.s3_multipart_threshold) {
        blob_mpu(j);
        return;
    }
    pv_s3_body_t body = {.kind = PV_S3_PATH, .path = j->path, .length = -1, .sha256 = j->hex};
    pv_s3_put_opts_t opts = {.checksum = PV_S3_CHECKSUM_NONE};
    int rc = pv_s3_put(r->s3, j->key, &body, &opts, blob_put_done, j);
    if (rc == 0)
        return; /* still in flight */
    if (rc != -ENOENT) /* ENOENT: deleted since the HEAD */
        fail(r, "PUT blob: %s", strerror(-rc));
    blob_end(j);
}

static void blob_head_done(const pv_s3_result_t *res, void *arg)
{
    blob_job_t *j = arg;
    repl_t *r = j->r;
    if (res->rc == 0 && res->size == (int64_t)j->size) { /* there: a name is its content */
        in_s3(r, j);
        r->t.st.blobs_present++;
    } else if (res->rc == 0 && !r->failed && !r->t.stopping) {
        /* There, but not whole: a store that kept what a cut-short PUT
         * sent (AWS never does; some S3-compatible stores do). Again. */
        pv_warn("sync", "blob %.16s... in S3 has %lld bytes, not %llu: sending it again", j->hex,
                (long long)res->size, (unsigned long long)j->size);
        r->t.st.blobs_repaired++;
        blob_send(j);
        return;
    } else if (res->rc != -ENOENT && res->rc != 0) {
        fail_s3(r, "HEAD blob", res);
    } else if (res->rc == -ENOENT && !r->failed && !r->t.stopping) {
        blob_send(j);
        return;
    }
    blob_end(j);
}

static void blob_start(repl_t *r, const uint8_t sha[32])
{
    blob_job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        fail(r, "out of memory");
        return;
    }
    j->r = r;
    memcpy(j->sha, sha, 32);
    pv_hex(sha, 32, j->hex);
    snprintf(j->key, sizeof(j->key), "%sblobs/%.2s/%s", r->prefix, j->hex, j->hex);
    pv_blob_path(r->app->store, sha, j->path, sizeof(j->path));
    struct stat sb;
    if (stat(j->path, &sb) < 0) { /* deleted here since: a later entry deletes it */
        if (errno != ENOENT)
            fail(r, "blob %s: %s", j->hex, strerror(errno));
        free(j);
        return;
    }
    j->size = (uint64_t)sb.st_size;
    r->t.st.bytes_pending += j->size;
    int rc = pv_s3_head(r->s3, j->key, blob_head_done, j);
    if (rc < 0) {
        r->t.st.bytes_pending -= j->size;
        free(j);
        fail(r, "HEAD blob: %s", strerror(-rc));
        return;
    }
    r->in_flight++;
}

static void blobs_next(repl_t *r)
{
    while (!r->failed && r->in_flight < BLOBS_AT_ONCE && r->next_sha < r->n_shas)
        blob_start(r, r->shas[r->next_sha++]);
    if (r->in_flight > 0)
        return;
    marks_write(r); /* what S3 acknowledged holds, failed or not */
    if (r->failed)
        pass_failed(r);
    else
        r->after_blobs(r);
}

/* ---------------- snapshots ---------------- */

static void snap_blob_page(repl_t *r);

static void snap_done(repl_t *r)
{
    r->t.st.snapshots++;
    r->t.st.last_snapshot_ms = pv_now_ms();
    r->snap_due_ms = r->t.st.last_snapshot_ms + (int64_t)r->app->cfg.snapshot_interval * 1000;
    pv_info("sync", "snapshot %s sent (%" PRId64 " bytes)", r->snap_key, r->snap_size);
    r->t.failures_in_row = 0;
    pass_free(r); /* the local archive goes */
    pv_target_state(&r->t, "sending");
    pv_target_later(&r->t, 0);
}

static void snap_retain(repl_t *r);

static void snap_deleted(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    if (!step_answered(r, res, "DELETE old snapshot"))
        return;
    snap_retain(r); /* list again: one more may be past the count */
}

/* S3 lists keys in order: SEQ first, so the oldest come first. */
static void snap_listed_for_retention(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    if (!step_answered(r, res, "LIST snapshots"))
        return;
    const pv_s3_listing_t *l = res->listing;
    size_t keep = (size_t)r->app->cfg.snapshot_retention;
    if (l && l->n > keep) {
        int rc = pv_s3_delete(r->s3, l->objects[0].key, snap_deleted, r);
        if (rc == 0) {
            r->in_flight++;
            return;
        }
        fail(r, "DELETE old snapshot: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    snap_done(r);
}

static void snap_retain(repl_t *r)
{
    char prefix[sizeof(r->prefix) + 16];
    snprintf(prefix, sizeof(prefix), "%ssnapshots/", r->prefix);
    int rc = pv_s3_list(r->s3, prefix, NULL, 1000, snap_listed_for_retention, r);
    step_started(r, rc, "LIST snapshots");
}

static void snap_sent(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    if (!step_answered(r, res, "PUT snapshot"))
        return;
    snap_retain(r);
}

static void mpu_aborted(const pv_s3_result_t *res, void *arg)
{
    (void)res; /* best effort: S3's lifecycle rules clear what is left */
    repl_t *r = arg;
    r->in_flight--;
}

/* A multipart snapshot failed: abort the upload (best effort), then the
 * pass fails. */
static void mpu_failed(repl_t *r, const char *what, const pv_s3_result_t *res)
{
    if (res)
        fail_s3(r, what, res);
    else
        fail(r, "%s: out of memory", what);
    if (r->upload_id[0] && pv_s3_mpu_abort(r->s3, r->snap_key, r->upload_id, mpu_aborted, r) == 0)
        r->in_flight++;
    pass_failed(r);
}

static void snap_part_next(repl_t *r);

static void snap_part_done(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    r->in_flight--;
    if (r->t.stopping)
        return;
    if (res->rc < 0) {
        mpu_failed(r, "PUT snapshot part", res);
        return;
    }
    pv_s3_part_t *p = &r->parts[r->part_next];
    p->number = r->part_next + 1;
    p->size = res->size;
    snprintf(p->etag, sizeof(p->etag), "%s", res->etag);
    r->part_next++;
    snap_part_next(r);
}

static void snap_part_next(repl_t *r)
{
    int rc;
    if (r->part_next == r->n_parts) {
        rc = pv_s3_mpu_complete(r->s3, r->snap_key, r->upload_id, r->parts, (size_t)r->n_parts,
                                snap_sent, r);
    } else {
        int64_t part = (int64_t)r->app->cfg.s3_part_size;
        int64_t off = (int64_t)r->part_next * part;
        int64_t len = r->snap_size - off < part ? r->snap_size - off : part;
        pv_s3_body_t body = {.kind = PV_S3_PATH, .path = r->snap_path, .offset = off,
                             .length = len};
        rc = pv_s3_mpu_part(r->s3, r->snap_key, r->upload_id, r->part_next + 1, &body,
                            snap_part_done, r);
    }
    if (rc < 0) {
        fail(r, "snapshot upload: %s", strerror(-rc));
        mpu_failed(r, "snapshot upload", NULL);
        return;
    }
    r->in_flight++;
}

static void mpu_created(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    r->in_flight--;
    if (r->t.stopping)
        return;
    if (res->rc < 0 || !res->upload_id) {
        fail_s3(r, "create the snapshot's multipart upload", res);
        pass_failed(r);
        return;
    }
    snprintf(r->upload_id, sizeof(r->upload_id), "%s", res->upload_id);
    int n = pv_s3_part_count(r->snap_size, (int64_t)r->app->cfg.s3_part_size);
    r->parts = n > 0 ? calloc((size_t)n, sizeof(*r->parts)) : NULL;
    if (!r->parts) {
        mpu_failed(r, "snapshot parts", NULL);
        return;
    }
    r->n_parts = n;
    r->part_next = 0;
    snap_part_next(r);
}

static void snap_put(repl_t *r)
{
    int rc;
    if ((uint64_t)r->snap_size <= r->app->cfg.s3_multipart_threshold) {
        pv_s3_body_t body = {.kind = PV_S3_PATH, .path = r->snap_path, .length = -1};
        pv_s3_put_opts_t opts = {.checksum = PV_S3_CHECKSUM_NONE, .content_type = "application/x-tar"};
        rc = pv_s3_put(r->s3, r->snap_key, &body, &opts, snap_sent, r);
    } else {
        rc = pv_s3_mpu_create(r->s3, r->snap_key, "application/x-tar", mpu_created, r);
    }
    step_started(r, rc, "PUT snapshot");
}

typedef struct blob_page {
    repl_t *r;
    size_t n;
} blob_page_t;

static int blob_key(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    (void)v;
    blob_page_t *bp = arg;
    if (k->len != 32)
        return 0;
    memcpy(bp->r->shas[bp->n++], k->data, 32);
    return bp->n == BLOB_PAGE ? 1 : 0;
}

/* The next page of the store's blobs, each made sure of in S3; then the
 * archive. */
static void snap_blob_page(repl_t *r)
{
    if (r->blob_scan_done) {
        snap_put(r);
        return;
    }
    if (!r->shas && !(r->shas = malloc(BLOB_PAGE * 32))) {
        fail(r, "out of memory");
        pass_failed(r);
        return;
    }
    blob_page_t bp = {.r = r};
    pv_txn_t txn;
    int rc = pv_txn_begin(r->app->store, &txn, false);
    if (rc == 0) {
        rc = pv_txn_scan(&txn, PV_DB_BLOBS, NULL, 0, r->blob_after_set ? r->blob_after : NULL,
                         r->blob_after_set ? 32 : 0, false, blob_key, &bp);
        pv_txn_abort(&txn);
    }
    if (rc < 0) {
        fail(r, "cannot read the blob table: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    r->n_shas = bp.n;
    r->next_sha = 0;
    r->blob_scan_done = bp.n < BLOB_PAGE;
    if (bp.n) {
        memcpy(r->blob_after, r->shas[bp.n - 1], 32);
        r->blob_after_set = true;
    }
    r->after_blobs = snap_blob_page;
    blobs_next(r);
}

static void snap_work(pv_msg_t *msg)
{
    snap_job_t *j = (snap_job_t *)msg;
    const pv_config_t *c = &j->r->app->cfg;
    j->rc = pv_snapshot_write(j->r->app->store, c->data_dir, c->tls_cert, c->tls_key, j->name,
                              j->path, sizeof(j->path), &j->info, j->err, sizeof(j->err));
    msg->status = j->rc;
}

static void snap_made(pv_msg_t *msg)
{
    snap_job_t *j = (snap_job_t *)msg;
    repl_t *r = j->r;
    if (r->t.stopping || j->rc < 0) {
        if (j->path[0])
            unlink(j->path);
        if (!r->t.stopping) {
            fail(r, "cannot make a snapshot: %s", j->err[0] ? j->err : strerror(-j->rc));
            pass_failed(r);
        }
        pv_msg_free(msg);
        return;
    }
    snprintf(r->snap_path, sizeof(r->snap_path), "%s", j->path);
    r->snap_size = (int64_t)j->info.bytes;
    int64_t ms = pv_now_ms();
    snprintf(r->snap_key, sizeof(r->snap_key), "%ssnapshots/%020" PRIu64 "-%013" PRId64 ".tar",
             r->prefix, j->info.last_seq, ms);
    r->t.st.last_snapshot_seq = j->info.last_seq;
    pv_msg_free(msg);
    snap_blob_page(r);
}

static void snap_start(repl_t *r)
{
    pv_target_state(&r->t, "snapshot");
    /* If it fails, the log goes on being sent and the snapshot is tried
     * again in ten minutes (or at its interval, if that is shorter). */
    int64_t retry = r->app->cfg.snapshot_interval < 600 ? r->app->cfg.snapshot_interval : 600;
    r->snap_due_ms = pv_now_ms() + retry * 1000;
    snap_job_t *j = pv_msg_new(sizeof(*j), 0);
    if (!j) {
        fail(r, "out of memory");
        pass_failed(r);
        return;
    }
    j->r = r;
    snprintf(j->name, sizeof(j->name), "%" PRId64 ".tar", pv_now_ms());
    pv_msg_expect(&j->msg, r->self, snap_made);
    int rc = pv_pool_submit(r->app->work, snap_work, &j->msg);
    if (rc < 0) {
        pv_msg_free(&j->msg);
        fail(r, "cannot make a snapshot: %s", strerror(-rc));
        pass_failed(r);
    }
}

/* At the first pass: when S3's newest snapshot was made, hence when the
 * next is due (now if there is none). */
static void snap_looked_up(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    if (!step_answered(r, res, "LIST snapshots"))
        return;
    int64_t newest = 0;
    const pv_s3_listing_t *l = res->listing;
    for (size_t i = 0; l && i < l->n; i++) {
        const char *name = strrchr(l->objects[i].key, '/');
        unsigned long long seq;
        long long ms;
        if (name && sscanf(name + 1, "%20llu-%13lld.tar", &seq, &ms) == 2 && ms > newest)
            newest = ms;
    }
    r->snap_known = true;
    r->snap_due_ms = newest ? newest + (int64_t)r->app->cfg.snapshot_interval * 1000 : 0;
    pass_free(r);
    pass(r);
}

static void snap_lookup(repl_t *r)
{
    char prefix[sizeof(r->prefix) + 16];
    snprintf(prefix, sizeof(prefix), "%ssnapshots/", r->prefix);
    int rc = pv_s3_list(r->s3, prefix, NULL, 1000, snap_looked_up, r);
    step_started(r, rc, "LIST snapshots");
}

/* ---------------- one appliance a prefix ---------------- */

static int64_t lease_ttl_ms(const repl_t *r)
{
    int64_t s = 6LL * r->app->cfg.sync_interval;
    return (s < 60 ? 60 : s) * 1000;
}

static void step_done(repl_t *r)
{
    pass_free(r);
    pass(r);
}

static void refuse(repl_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(repl_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char why[256];
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (!r->t.refused)
        pv_error("sync", "S3 replication refused: %s", why);
    r->t.refused = true;
    r->lease_held = false;
    r->checked = false;
    snprintf(r->t.st.last_error, sizeof(r->t.st.last_error), "%s", why);
    r->t.st.last_error_ms = pv_now_ms();
    r->t.st.failures++;
    pv_metrics_add(r->app->metrics, PV_M_SYNC_FAILURES, 1);
    pass_free(r);
    pv_target_state(&r->t, "refused");
    r->t.st.next_retry_ms = pv_now_ms() + 60000; /* look again in a minute */
    pv_target_refresh_lag(&r->t, r->cursor);
    pv_target_later(&r->t, 60000);
}

static void lease_put_done(const pv_s3_result_t *res, void *arg);

static int lease_put(repl_t *r, bool if_none_match)
{
    char key[sizeof(r->prefix) + 16], host[128] = "";
    snprintf(key, sizeof(key), "%slease.json", r->prefix);
    gethostname(host, sizeof(host) - 1);
    int64_t exp = pv_now_ms() + lease_ttl_ms(r);
    char t[32];
    pv_time_format(exp, t);
    json_t *j = json_pack("{s:s,s:s,s:s,s:I}", "appliance", r->appliance, "host", host,
                          "expires", t, "expires_ms", (json_int_t)exp);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body)
        return -ENOMEM;
    /* the body is borrowed until done: keep it in the pass's segment slot */
    free(r->lease_body);
    r->lease_body = body;
    pv_s3_body_t b = {.kind = PV_S3_MEM, .data = body, .len = strlen(body)};
    pv_s3_put_opts_t o = {.if_none_match = if_none_match, .content_type = "application/json"};
    int rc = pv_s3_put(r->s3, key, &b, &o, lease_put_done, r);
    if (rc == 0) {
        r->in_flight++;
        r->lease_conditional = if_none_match;
    }
    return rc;
}

static void lease_got(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    r->in_flight--;
    if (r->t.stopping)
        return;
    if (res->rc == -ENOENT) { /* gone meanwhile: take it again */
        int rc = lease_put(r, true);
        if (rc < 0) {
            fail(r, "PUT lease: %s", strerror(-rc));
            pass_failed(r);
        }
        return;
    }
    if (res->rc < 0) {
        fail_s3(r, "GET lease", res);
        pass_failed(r);
        return;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)res->body, res->body_len, 0, &je);
    const char *owner = json_string_value(json_object_get(j, "appliance"));
    const char *host = json_string_value(json_object_get(j, "host"));
    const char *until = json_string_value(json_object_get(j, "expires"));
    json_int_t exp = json_integer_value(json_object_get(j, "expires_ms"));
    bool ours = owner && !strcmp(owner, r->appliance);
    if (!ours && owner && exp > pv_now_ms()) {
        char why[256];
        snprintf(why, sizeof(why),
                 "lease.json is held by appliance %.32s (host %.48s) until %.24s: another pvd "
                 "replicates to this prefix; give this one another s3_prefix",
                 owner, host ? host : "?", until ? until : "?");
        json_decref(j);
        refuse(r, "%s", why);
        return;
    }
    if (!ours)
        pv_warn("sync", "taking over %slease.json from appliance %.32s (%s)", r->prefix,
                owner ? owner : "(unreadable)", owner ? "expired" : "not a lease");
    json_decref(j);
    int rc = lease_put(r, false);
    if (rc < 0) {
        fail(r, "PUT lease: %s", strerror(-rc));
        pass_failed(r);
    }
}

static int lease_get(repl_t *r)
{
    char key[sizeof(r->prefix) + 16];
    snprintf(key, sizeof(key), "%slease.json", r->prefix);
    pv_s3_sink_t sink = {.kind = PV_S3_TO_MEM, .max = 4096};
    int rc = pv_s3_get(r->s3, key, &sink, lease_got, r);
    if (rc == 0)
        r->in_flight++;
    return rc;
}

static void lease_put_done(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    r->in_flight--;
    if (r->t.stopping)
        return;
    if (res->rc == -EEXIST && r->lease_conditional) { /* taken: whose? */
        int rc = lease_get(r);
        if (rc < 0) {
            fail(r, "GET lease: %s", strerror(-rc));
            pass_failed(r);
        }
        return;
    }
    if (res->rc < 0) {
        fail_s3(r, "PUT lease", res);
        pass_failed(r);
        return;
    }
    if (!r->lease_held)
        pv_info("sync", "holding %slease.json (appliance %s)", r->prefix, r->appliance);
    if (r->t.refused)
        r->t.st.last_error[0] = '\0';
    r->lease_held = true;
    r->t.refused = false;
    r->lease_renew_ms = pv_now_ms() + lease_ttl_ms(r) / 3;
    step_done(r);
}

/* Take the lease (conditional PUT), or renew it (read: still ours? then
 * write). */
static void lease_step(repl_t *r)
{
    int rc = r->lease_held ? lease_get(r) : lease_put(r, true);
    if (rc < 0) {
        fail(r, "lease: %s", strerror(-rc));
        pass_failed(r);
    }
}

static void log_listed(const pv_s3_result_t *res, void *arg)
{
    repl_t *r = arg;
    if (!step_answered(r, res, "LIST log"))
        return;
    const pv_s3_listing_t *l = res->listing;
    for (size_t i = 0; l && i < l->n; i++) {
        const char *name = strrchr(l->objects[i].key, '/');
        unsigned long long f, last;
        if (name && sscanf(name + 1, "%20llu-%20llu.msgpack", &f, &last) == 2 && last > r->s3_last)
            r->s3_last = last;
    }
    free(r->list_token);
    r->list_token = l && l->truncated && l->next_token ? strdup(l->next_token) : NULL;
    if (l && l->truncated && l->next_token) {
        if (!r->list_token) {
            fail(r, "out of memory");
            pass_failed(r);
            return;
        }
        char prefix[sizeof(r->prefix) + 8];
        snprintf(prefix, sizeof(prefix), "%slog/", r->prefix);
        int rc = pv_s3_list(r->s3, prefix, r->list_token, 1000, log_listed, r);
        if (rc < 0) {
            fail(r, "LIST log: %s", strerror(-rc));
            pass_failed(r);
        } else {
            r->in_flight++;
        }
        return;
    }
    pv_target_refresh_lag(&r->t, r->cursor);
    if (r->s3_last > r->t.st.head) {
        refuse(r, "s3://%s/%slog/ holds changes up to %" PRIu64 " but this store's log ends at %"
               PRIu64 ": it was restored to an earlier point, or another appliance writes there; "
               "give this one another s3_prefix", r->app->cfg.s3_bucket, r->prefix, r->s3_last,
               r->t.st.head);
        return;
    }
    r->checked = true;
    step_done(r);
}

/* Before the first pass: the log in S3 must not go past ours. */
static void check_prefix(repl_t *r)
{
    char prefix[sizeof(r->prefix) + 8];
    snprintf(prefix, sizeof(prefix), "%slog/", r->prefix);
    r->s3_last = 0;
    int rc = pv_s3_list(r->s3, prefix, NULL, 1000, log_listed, r);
    step_started(r, rc, "LIST log");
}

/* ---------------- a pass ---------------- */

typedef struct collect {
    repl_t *r;
    size_t cap;
    int rc;
} collect_t;

static int collect_one(void *arg, const pv_change_t *c)
{
    collect_t *cc = arg;
    repl_t *r = cc->r;
    if ((cc->rc = pv_segment_add(r->seg, c)) < 0)
        return cc->rc;
    uint8_t shas[2][32];
    int n = c->del ? 0 : pv_record_blobs(c->kind, c->record.data, c->record.len, shas);
    for (int i = 0; i < n; i++) {
        if (r->n_shas == cc->cap) {
            size_t cap = cc->cap ? cc->cap * 2 : 64;
            void *p = realloc(r->shas, cap * 32);
            if (!p)
                return cc->rc = -ENOMEM;
            r->shas = p;
            cc->cap = cap;
        }
        memcpy(r->shas[r->n_shas++], shas[i], 32);
    }
    return 0;
}

static int sha_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

/* Sorted and unique: a blob named twice in a batch goes once. */
static void unique_shas(repl_t *r)
{
    if (r->n_shas < 2)
        return;
    qsort(r->shas, r->n_shas, 32, sha_cmp);
    size_t w = 1;
    for (size_t i = 1; i < r->n_shas; i++)
        if (memcmp(r->shas[i], r->shas[w - 1], 32) != 0)
            memmove(r->shas[w++], r->shas[i], 32);
    r->n_shas = w;
}

/* The client, made with the first credentials and given fresh ones as
 * they come (the chain asks again before they expire). */
static int install_creds(repl_t *r, const pv_aws_creds_t *c)
{
    int rc;
    if (r->s3) {
        rc = pv_s3_set_creds(r->s3, c);
    } else {
        pv_s3_config_t sc = {.endpoint = r->app->cfg.s3_endpoint[0] ? r->app->cfg.s3_endpoint : NULL,
                             .region = r->region,
                             .bucket = r->app->cfg.s3_bucket,
                             .path_style = r->app->cfg.s3_path_style};
        rc = pv_s3_new(r->http, &sc, c, &r->s3);
    }
    if (rc == 0 && r->app->cfg.media_from_s3) { /* the links' copy, for the HTTP loops */
        pthread_mutex_lock(&r->links_mu);
        if (r->links) {
            rc = pv_s3_set_creds(r->links, c);
        } else {
            pv_s3_config_t sc = {.endpoint = r->app->cfg.s3_endpoint[0] ? r->app->cfg.s3_endpoint
                                                                        : NULL,
                                 .region = r->region,
                                 .bucket = r->app->cfg.s3_bucket,
                                 .path_style = r->app->cfg.s3_path_style};
            rc = pv_s3_new(NULL, &sc, c, &r->links);
        }
        pthread_mutex_unlock(&r->links_mu);
    }
    if (rc < 0)
        fail(r, "cannot make the S3 client (endpoint, bucket, region or credentials): %s",
             strerror(-rc));
    return rc;
}

static void pass_go(repl_t *r);

/* Credentials, the usual chain (src/cloud/credchain.h): the environment,
 * the shared files' profile, then the instance's role (IMDSv2), fetched
 * again before they expire. The pass goes on or fails. */
static void on_creds(int rc, const pv_aws_creds_t *c, const char *why, void *arg)
{
    repl_t *r = arg;
    if (r->t.stopping)
        return;
    if (rc < 0)
        fail(r, "%s", why);
    if (rc < 0 || install_creds(r, c) < 0)
        pass_failed(r);
    else
        pass_go(r);
}

static void pass(repl_t *r)
{
    if (r->t.busy || r->t.paused || r->t.stopping)
        return;
    r->t.busy = true;
    r->t.st.next_retry_ms = 0;
    pv_credchain_get(r->cc, on_creds, r); /* on_creds may run inside */
}

/* A pass with credentials: the checks that come first, a snapshot when one
 * is due, else the next batch of the log. */
static void pass_go(repl_t *r)
{
    if (!r->checked) {
        check_prefix(r);
        return;
    }
    if (!r->lease_held || pv_now_ms() >= r->lease_renew_ms) {
        lease_step(r);
        return;
    }
    if (!r->snap_known) {
        snap_lookup(r);
        return;
    }
    if (pv_now_ms() >= r->snap_due_ms) {
        snap_start(r);
        return;
    }
    collect_t cc = {.r = r};
    pv_txn_t txn;
    r->seg = pv_segment_new();
    int rc = r->seg ? pv_txn_begin(r->app->store, &txn, false) : -ENOMEM;
    if (rc == 0) {
        rc = pv_changes_read(&txn, r->cursor, (size_t)r->app->cfg.sync_batch, collect_one, &cc);
        pv_txn_abort(&txn);
    }
    if (rc == 0)
        rc = cc.rc;
    if (rc < 0) {
        fail(r, "cannot read the change log: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    if (pv_segment_count(r->seg) == 0) { /* caught up */
        pass_free(r);
        pv_target_refresh_lag(&r->t, r->cursor);
        pv_target_state(&r->t, "idle");
        pv_target_later(&r->t, (int64_t)r->app->cfg.sync_interval * 1000);
        return;
    }
    unique_shas(r);
    pv_target_state(&r->t, "sending");
    pv_target_refresh_lag(&r->t, r->cursor);
    r->after_blobs = put_segment;
    blobs_next(r);
}

/* ---------------- messages ---------------- */

static void on_init(pv_actor_t *self, pv_msg_t *msg)
{
    repl_t *r = pv_actor_state(self);
    pv_msg_free(msg);
    r->t.timer = evtimer_new(pv_loop_base(r->loop), on_timer, r);
    int rc = r->t.timer ? pv_curlev_new(pv_loop_base(r->loop), NULL, &r->http) : -ENOMEM;
    if (rc == 0)
        rc = pv_credchain_new(r->http, r->app->cfg.aws_profile, r->app->cfg.aws_imds_endpoint,
                              &r->cc);
    if (rc == 0)
        rc = load_cursor(r);
    if (rc < 0) {
        pv_error("sync", "S3 replication cannot start: %s", strerror(-rc));
        pv_target_state(&r->t, "refused");
        snprintf(r->t.st.last_error, sizeof(r->t.st.last_error), "cannot start: %s", strerror(-rc));
        return;
    }
    pv_info("sync", "replicating to %s from change %" PRIu64, r->t.st.where, r->cursor + 1);
    pass(r);
}

static void on_stop(pv_actor_t *self, pv_msg_t *msg)
{
    repl_t *r = pv_actor_state(self);
    pv_msg_free(msg);
    r->t.stopping = true;
    if (r->t.timer)
        evtimer_del(r->t.timer);
    pv_s3_free(r->s3); /* each request's done runs (cancelled) and does nothing */
    r->s3 = NULL;
    pv_curlev_free(r->http);
    r->http = NULL;
    pv_loop_stop(r->loop);
}

static void on_ctl(pv_actor_t *self, pv_msg_t *msg)
{
    repl_t *r = pv_actor_state(self);
    pv_target_ctl(&r->t, msg, r->cursor, r->http);
}

static const pv_actor_fn repl_on[REPL_MSG_COUNT] = {
    [PV_REPL_CTL] = on_ctl,
    [REPL_INIT] = on_init,
    [REPL_STOP] = on_stop,
};
static const pv_actor_def_t repl_def = {"sync", repl_on, REPL_MSG_COUNT};

/* ---------------- start, stop ---------------- */

#define APPLIANCE_ID "appliance/id"

static int make_id(pv_txn_t *txn, void *arg)
{
    (void)arg;
    pv_val_t v;
    if (pv_txn_get(txn, PV_DB_META, APPLIANCE_ID, strlen(APPLIANCE_ID), &v) == 0)
        return 0; /* there already */
    uint8_t id[16];
    pv_random(id, sizeof(id));
    return pv_txn_put(txn, PV_DB_META, APPLIANCE_ID, strlen(APPLIANCE_ID), id, sizeof(id), false);
}

/* This appliance's id (META appliance/id, made once): the lease's owner.
 * A restore keeps it, so a rebuilt appliance takes its own lease back. */
static int appliance_id(pv_app_t *app, char hex[33])
{
    int rc = pv_store_write_sync(app->store, make_id, NULL);
    pv_txn_t txn;
    pv_val_t v;
    if (rc == 0)
        rc = pv_txn_begin(app->store, &txn, false);
    if (rc < 0)
        return rc;
    rc = pv_txn_get(&txn, PV_DB_META, APPLIANCE_ID, strlen(APPLIANCE_ID), &v);
    if (rc == 0 && v.len == 16)
        pv_hex(v.data, 16, hex);
    else if (rc == 0)
        rc = -EIO;
    pv_txn_abort(&txn);
    return rc;
}

/* media_from_s3: a presigned GET for an HTTP loop (model/media.h). */
static int s3_link(void *ctx, const char *key, const char *ctype, int64_t now_s, int64_t ttl,
                   char *url, size_t size)
{
    repl_t *r = ctx;
    pthread_mutex_lock(&r->links_mu);
    int rc = r->links ? pv_s3_presign_get(r->links, key, ctype, now_s,
                                          ttl < PV_SIGV4_MAX_EXPIRES ? (int)ttl
                                                                     : PV_SIGV4_MAX_EXPIRES,
                                          url, size)
                      : -EAGAIN;
    pthread_mutex_unlock(&r->links_mu);
    return rc;
}

int pv_repl_start(pv_app_t *app, char *err, size_t errlen)
{
    const pv_config_t *cfg = &app->cfg;
    if (!cfg->s3_bucket[0])
        return 0;
    repl_t *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->app = app;
    r->t.app = app;
    r->t.log = "sync";
    r->t.what = "S3 replication";
    r->t.m_cursor = PV_M_SYNC_CURSOR;
    r->t.m_lag_entries = PV_M_SYNC_LAG_ENTRIES;
    r->t.m_lag_seconds = PV_M_SYNC_LAG_SECONDS;
    r->t.m_failures = PV_M_SYNC_FAILURES;
    snprintf(r->t.st.target, sizeof(r->t.st.target), "s3");
    size_t pl = strlen(cfg->s3_prefix);
    while (pl && cfg->s3_prefix[pl - 1] == '/')
        pl--;
    const char *p = cfg->s3_prefix;
    while (pl && *p == '/')
        p++, pl--;
    snprintf(r->prefix, sizeof(r->prefix), "%.*s%s", (int)pl, p, pl ? "/" : "");
    snprintf(r->t.st.where, sizeof(r->t.st.where), "s3://%s/%s", cfg->s3_bucket, r->prefix);
    if (cfg->s3_region[0])
        snprintf(r->region, sizeof(r->region), "%s", cfg->s3_region);
    else if (pv_awscreds_load_region(cfg->aws_profile[0] ? cfg->aws_profile : NULL, r->region,
                                     sizeof(r->region)) < 0 || !r->region[0])
        snprintf(r->region, sizeof(r->region), "us-east-1");
    pv_target_state(&r->t, "idle");
    pthread_mutex_init(&r->links_mu, NULL);
    if (cfg->media_from_s3) { /* the web UI shows pictures from there */
        char origin[400];
        pv_s3_config_t sc = {.endpoint = cfg->s3_endpoint[0] ? cfg->s3_endpoint : NULL,
                             .region = r->region, .bucket = cfg->s3_bucket,
                             .path_style = cfg->s3_path_style};
        if (pv_s3_origin(&sc, origin, sizeof(origin)) == 0)
            pv_api_csp_media_origin(origin);
        pv_media_set_s3(app->media, r->prefix, s3_link, r);
    }
    int rc = appliance_id(app, r->appliance);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read or make the appliance id: %s", strerror(-rc));
        free(r);
        return rc;
    }
    r->loop = pv_loop_new("sync");
    r->self = r->loop ? pv_actor_new(r->loop, &repl_def, r) : NULL;
    pv_msg_t *init = r->self ? pv_msg_new(sizeof(*init), REPL_INIT) : NULL;
    if (!init) {
        if (r->self)
            pv_actor_free(r->self);
        pv_loop_free(r->loop);
        free(r);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    app->repl = r->self;
    rc = pv_sync_add_target(app, "s3", PV_REPL_S3_CURSOR, r->self);
    if (rc < 0) {
        snprintf(err, errlen, "too many replication targets");
        pv_msg_free(init);
        return rc; /* pv_repl_free frees the rest */
    }
    pv_actor_send(r->self, init);
    rc = pv_loop_start(r->loop);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start the sync loop: %s", strerror(-rc));
        return rc; /* pv_repl_free frees the rest */
    }
    return 0;
}

void pv_repl_stop(pv_app_t *app)
{
    if (!app->repl)
        return;
    repl_t *r = pv_actor_state(app->repl);
    pv_target_stop(&r->t, app->repl, r->loop, REPL_STOP);
}

void pv_repl_free(pv_app_t *app)
{
    if (!app->repl)
        return;
    repl_t *r = pv_actor_state(app->repl);
    pv_actor_free(app->repl); /* pending messages: a cursor write's answer */
    app->repl = NULL;
    if (r->t.timer)
        event_free(r->t.timer);
    pv_s3_free(r->s3);
    pv_curlev_free(r->http);
    pass_free(r);
    free(r->lease_body);
    free(r->list_token);
    pv_credchain_free(r->cc);
    pv_s3_free(r->links);
    pthread_mutex_destroy(&r->links_mu);
    pv_loop_free(r->loop);
    free(r);
}
