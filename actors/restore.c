/*
 * restore.c — `pvd --restore-from s3://BUCKET/PREFIX`: a lost
 * appliance rebuilt from what its replicator left in S3
 * (actors/replicate.c), into an empty data directory, pvd not running.
 * Not an actor: the replicator's inverse, run by pvd before anything
 * starts, so it lives beside it (the S3 client is below the actors).
 *
 *   1. the newest snapshot at or before the point (--at SEQ or an RFC 3339
 *      time; default: the newest), fetched and unpacked as a backup is
 *      (store, keys, TLS files: tokens and links stay valid);
 *   2. the segments after the snapshot's own head, in order: every entry
 *      above that head and at or before the point is applied through the
 *      store (so the local change log continues with the same sequence
 *      numbers); a hole between segments stops the restore with an error;
 *   3. the derived databases rebuilt from the records (src/model/reindex.c);
 *   4. with --pull-blobs, every blob the records name, fetched and checked
 *      against its name (eight at once); one missing from S3 is reported.
 *      Without, the S3 location is left in META (PV_PULL_META) and pvd,
 *      once started, fetches them in the background (actors/pull.c), each
 *      at once when a request or a render needs it;
 *   5. the replication cursor set to the restored head, so that a pvd
 *      started on it sends only what is new.
 *
 * The S3 client is asynchronous (curlev on an event base); a restore is a
 * sequence, so each request runs the base until its answer came.
 */
#include "actors/pull.h"
#include "actors/restore.h"
#include "actors/replicate.h"
#include "base/pv.h"
#include "base/records.h"
#include "base/text.h"
#include "cloud/imds.h"
#include "cloud/s3.h"
#include "model/media.h"
#include "model/reindex.h"
#include "store/backup.h"
#include "store/segment.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PULL_AT_ONCE 8

typedef struct obj {
    char *key;
    uint64_t first, last; /* segments: their entries; snapshots: first = seq */
    int64_t ms;           /* snapshots: when made */
} obj_t;

typedef struct rs {
    struct event_base *base;
    pv_curlev_t *http;
    pv_s3_t *s3;
    const char *data_dir;
    char prefix[300];
    char err[600];
    /* a listing */
    obj_t *objs;
    size_t n, cap;
    char *token;
    bool done, truncated;
    pv_s3_result_t res;     /* the last answer (pointers cleared) */
    uint8_t *body;          /* a GET to memory: a copy */
    size_t body_len;
    /* the point */
    uint64_t at_seq;        /* UINT64_MAX: no limit */
    int64_t at_ms;          /* INT64_MAX: no limit */
    /* applying */
    pv_store_t *store;
    uint64_t head;
    bool stop;              /* the point was reached */
    pv_aws_creds_t *imds_creds; /* where imds_got puts them */
    /* blobs */
    int in_flight;
    uint64_t pulled, present, missing, bad;
} rs_t;

static int fail(rs_t *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(rs_t *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    return rc;
}

static int s3_fail(rs_t *r, const char *what)
{
    const pv_s3_result_t *x = &r->res;
    if (x->status)
        return fail(r, x->rc < 0 ? x->rc : -EIO, "%s: HTTP %ld %s%s%s", what, x->status, x->code,
                    x->message[0] ? ": " : "", x->message);
    return fail(r, x->rc, "%s: %s%s%s", what, strerror(-x->rc), x->message[0] ? ": " : "",
                x->message);
}

/* Run the base until the request's done ran. */
static void s3_wait(rs_t *r)
{
    while (!r->done)
        event_base_loop(r->base, EVLOOP_ONCE);
}

static void keep_result(rs_t *r, const pv_s3_result_t *res)
{
    r->res = *res;
    r->res.body = NULL;
    r->res.listing = NULL;
    r->res.parts = NULL;
    r->res.upload_id = NULL;
    r->done = true;
}

/* ---------------- listings ---------------- */

static void listed(const pv_s3_result_t *res, void *arg)
{
    rs_t *r = arg;
    keep_result(r, res);
    free(r->token);
    r->token = NULL;
    r->truncated = false;
    const pv_s3_listing_t *l = res->listing;
    if (res->rc < 0 || !l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        if (r->n == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 64;
            obj_t *p = realloc(r->objs, cap * sizeof(*p));
            if (!p) {
                r->res.rc = -ENOMEM;
                return;
            }
            r->objs = p;
            r->cap = cap;
        }
        obj_t *o = &r->objs[r->n];
        memset(o, 0, sizeof(*o));
        if (!(o->key = strdup(l->objects[i].key))) {
            r->res.rc = -ENOMEM;
            return;
        }
        r->n++;
    }
    if (l->truncated && l->next_token) {
        r->token = strdup(l->next_token);
        r->truncated = r->token != NULL;
        if (!r->token)
            r->res.rc = -ENOMEM;
    }
}

static void objs_free(rs_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->objs[i].key);
    free(r->objs);
    r->objs = NULL;
    r->n = r->cap = 0;
}

/* Every key under PREFIX+what, all pages. */
static int list_all(rs_t *r, const char *what)
{
    char prefix[sizeof(r->prefix) + 32];
    snprintf(prefix, sizeof(prefix), "%s%s", r->prefix, what);
    objs_free(r);
    do {
        r->done = false;
        int rc = pv_s3_list(r->s3, prefix, r->token, 1000, listed, r);
        if (rc < 0)
            return fail(r, rc, "cannot list %s: %s", prefix, strerror(-rc));
        s3_wait(r);
        if (r->res.rc < 0)
            return s3_fail(r, "LIST");
    } while (r->truncated);
    return 0;
}

/* ---------------- GETs ---------------- */

static void got(const pv_s3_result_t *res, void *arg)
{
    rs_t *r = arg;
    keep_result(r, res);
    if (res->rc == 0 && res->body) {
        r->body = malloc(res->body_len ? res->body_len : 1);
        if (r->body) {
            memcpy(r->body, res->body, res->body_len);
            r->body_len = res->body_len;
        } else {
            r->res.rc = -ENOMEM;
        }
    }
}

/* One GET into sink, run until it is answered. */
static int get_into(rs_t *r, const char *key, const pv_s3_sink_t *sink)
{
    r->done = false;
    int rc = pv_s3_get(r->s3, key, sink, got, r);
    if (rc < 0)
        return fail(r, rc, "GET %s: %s", key, strerror(-rc));
    s3_wait(r);
    return r->res.rc < 0 ? s3_fail(r, "GET") : 0;
}

static int get_to_path(rs_t *r, const char *key, const char *path)
{
    pv_s3_sink_t sink = {.kind = PV_S3_TO_PATH, .path = path};
    return get_into(r, key, &sink);
}

/* Into r->body (a copy, freed by the next GET or at the end). */
static int get_to_mem(rs_t *r, const char *key)
{
    pv_s3_sink_t sink = {.kind = PV_S3_TO_MEM, .max = 256u << 20};
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    return get_into(r, key, &sink);
}

/* ---------------- 1. the snapshot ---------------- */

static int pick_snapshot(rs_t *r, obj_t **out)
{
    int rc = list_all(r, "snapshots/");
    if (rc < 0)
        return rc;
    obj_t *best = NULL;
    for (size_t i = 0; i < r->n; i++) {
        obj_t *o = &r->objs[i];
        const char *name = strrchr(o->key, '/');
        unsigned long long seq;
        long long ms;
        char tail[8] = "";
        if (!name || sscanf(name + 1, "%20llu-%13lld%7s", &seq, &ms, tail) != 3 ||
            strcmp(tail, ".tar") != 0)
            continue;
        o->first = seq;
        o->ms = ms;
        if (seq > r->at_seq || ms > r->at_ms)
            continue;
        if (!best || seq > best->first || (seq == best->first && ms > best->ms))
            best = o;
    }
    if (!best)
        return fail(r, -ENOENT, "no snapshot in s3://.../%ssnapshots/ %s", r->prefix,
                    r->n ? "at or before that point" : "(has pvd replicated here yet?)");
    *out = best;
    return 0;
}

/* ---------------- 2. the segments ---------------- */

static int seg_cmp(const void *a, const void *b)
{
    const obj_t *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first ? 1 : (x->last > y->last) - (x->last < y->last);
}

typedef struct apply_ctx {
    rs_t *r;
    const uint8_t *buf;
    size_t len;
} apply_ctx_t;

static int db_of(const char *kind)
{
    return !strcmp(kind, "user")    ? PV_DB_USERS
           : !strcmp(kind, "photo") ? PV_DB_PHOTOS
           : !strcmp(kind, "share") ? PV_DB_SHARES
                                    : PV_DB_VIDEOS;
}

typedef struct entry_ctx {
    rs_t *r;
    pv_txn_t *txn;
    uint64_t head;
} entry_ctx_t;

static int apply_entry(void *arg, const pv_change_t *c)
{
    entry_ctx_t *e = arg;
    rs_t *r = e->r;
    if (c->seq <= e->head) /* in the snapshot already */
        return 0;
    if (c->seq > r->at_seq || c->time_ms > r->at_ms) {
        r->stop = true;
        return 1;
    }
    if (c->seq != e->head + 1)
        return -ERANGE; /* a hole: said by the caller */
    int db = db_of(c->kind);
    /* In order from a consistent snapshot, a delete finds its key: -ENOENT
     * here means the snapshot and the log disagree (an error). */
    int rc = c->del ? pv_txn_del(e->txn, db, c->key.data, c->key.len)
                    : pv_txn_put(e->txn, db, c->key.data, c->key.len, c->record.data,
                                 c->record.len, false);
    if (rc < 0)
        return rc == -ENOENT ? -ESTALE : rc;
    e->head = c->seq;
    return 0;
}

static int apply_segment(pv_txn_t *txn, void *arg)
{
    apply_ctx_t *a = arg;
    entry_ctx_t e = {.r = a->r, .txn = txn, .head = a->r->head};
    a->r->stop = false;
    int rc = pv_segment_read(a->buf, a->len, NULL, NULL, apply_entry, &e);
    if (rc == 1)
        rc = 0;
    if (rc == 0)
        a->r->head = e.head;
    return rc;
}

static uint64_t store_head(pv_store_t *store)
{
    pv_store_stat_t ss;
    return pv_store_stat(store, &ss) == 0 ? ss.last_seq : 0;
}

static int apply_segments(rs_t *r)
{
    int rc = list_all(r, "log/");
    if (rc < 0)
        return rc;
    size_t w = 0;
    for (size_t i = 0; i < r->n; i++) {
        const char *name = strrchr(r->objs[i].key, '/');
        unsigned long long f, l;
        char tail[16] = "";
        if (name && sscanf(name + 1, "%20llu-%20llu%15s", &f, &l, tail) == 3 &&
            !strcmp(tail, ".msgpack") && f <= l && l > r->head) {
            r->objs[i].first = f;
            r->objs[i].last = l;
            r->objs[w++] = r->objs[i];
        } else {
            free(r->objs[i].key);
        }
    }
    r->n = w;
    qsort(r->objs, r->n, sizeof(*r->objs), seg_cmp);
    for (size_t i = 0; i < r->n && !r->stop && r->head < r->at_seq; i++) {
        obj_t *o = &r->objs[i];
        if (o->last <= r->head)
            continue; /* covered by one before it (a batch sent again) */
        if (o->first > r->head + 1)
            return fail(r, -ERANGE,
                        "the change log in S3 has a hole: nothing holds changes %" PRIu64
                        " to %" PRIu64 " (the restore stops at %" PRIu64 ")",
                        r->head + 1, o->first - 1, r->head);
        if ((rc = get_to_mem(r, o->key)) < 0)
            return rc;
        apply_ctx_t a = {.r = r, .buf = r->body, .len = r->body_len};
        uint64_t before = r->head;
        rc = pv_store_write_sync(r->store, apply_segment, &a);
        if (rc == -EINVAL)
            return fail(r, rc, "%s is not a valid segment", o->key);
        if (rc == -ESTALE)
            return fail(r, rc, "%s deletes a record the restored store does not have: the "
                        "snapshot and the log disagree", o->key);
        if (rc < 0)
            return fail(r, rc, "cannot apply %s: %s", o->key, strerror(-rc));
        if (store_head(r->store) != r->head)
            return fail(r, -EIO,
                        "applying %s moved the change log to %" PRIu64 ", not %" PRIu64
                        " (changes %" PRIu64 "..%" PRIu64 ")",
                        o->key, store_head(r->store), r->head, before + 1, r->head);
    }
    return 0;
}

/* ---------------- 3. indexes, 5. the cursor ---------------- */

/* Every blob the records name came from S3 (or comes, fetched later):
 * media_from_s3's links may point there (model/media.h). */
static int mark_in_s3(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    (void)v;
    if (k->len != 32)
        return 0;
    char key[PV_MEDIA_S3_MARK_LEN + 1];
    pv_media_s3_mark_key(k->data, key);
    return pv_txn_put(arg, PV_DB_META, key, PV_MEDIA_S3_MARK_LEN, "", 0, false);
}

static int reindex_apply(pv_txn_t *txn, void *arg)
{
    int rc = pv_reindex(txn, arg);
    if (rc < 0)
        return rc;
    /* A pvd started here sends only what comes after the restored head
     * (the store's "seq": the change log's last number). */
    pv_val_t seq;
    rc = pv_txn_get(txn, PV_DB_META, "seq", 3, &seq);
    uint8_t v[8] = {0};
    if (rc == 0 && seq.len == 8)
        memcpy(v, seq.data, 8);
    else if (rc != -ENOENT)
        return rc < 0 ? rc : -EIO;
    rc = pv_txn_put(txn, PV_DB_META, PV_REPL_S3_CURSOR, strlen(PV_REPL_S3_CURSOR), v, 8, false);
    return rc < 0 ? rc : pv_txn_scan(txn, PV_DB_BLOBS, NULL, 0, NULL, 0, false, mark_in_s3, txn);
}

/* ---------------- 4. the blobs ---------------- */

typedef struct pull {
    rs_t *r;
    uint8_t sha[32];
    char hex[65];
    char tmp[PATH_MAX];
} pull_t;

static void pulled(const pv_s3_result_t *res, void *arg)
{
    pull_t *p = arg;
    rs_t *r = p->r;
    r->in_flight--;
    if (res->rc == -ENOENT) {
        r->missing++;
        fprintf(stderr, "pvd: restore: blob %s is not in S3\n", p->hex);
    } else if (res->rc < 0) {
        if (!r->err[0])
            fail(r, res->rc, "GET blob %s: %s %s", p->hex, strerror(-res->rc), res->message);
    } else if (strcmp(res->sha256, p->hex) != 0) {
        r->bad++;
        fprintf(stderr, "pvd: restore: blob %s in S3 has other bytes (sha256 %s)\n", p->hex,
                res->sha256);
    } else {
        int rc = pv_blob_commit_file(r->store, p->tmp, p->sha, NULL);
        if (rc < 0 && !r->err[0])
            fail(r, rc, "cannot store blob %s: %s", p->hex, strerror(-rc));
        else if (rc == 0)
            r->pulled++;
    }
    unlink(p->tmp);
    free(p);
}

typedef struct want {
    uint8_t (*v)[32];
    size_t n, cap;
} want_t;

static int want_blob(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    (void)v;
    want_t *w = arg;
    if (k->len != 32)
        return 0;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        void *p = realloc(w->v, cap * 32);
        if (!p)
            return -ENOMEM;
        w->v = p;
        w->cap = cap;
    }
    memcpy(w->v[w->n++], k->data, 32);
    return 0;
}

static int pull_blobs(rs_t *r)
{
    want_t w = {0};
    pv_txn_t txn;
    int rc = pv_txn_begin(r->store, &txn, false);
    if (rc == 0) {
        rc = pv_txn_scan(&txn, PV_DB_BLOBS, NULL, 0, NULL, 0, false, want_blob, &w);
        pv_txn_abort(&txn);
    }
    if (rc < 0) {
        free(w.v);
        return fail(r, rc, "cannot read the blob table: %s", strerror(-rc));
    }
    size_t next = 0;
    while ((next < w.n || r->in_flight > 0) && !r->err[0]) {
        while (next < w.n && r->in_flight < PULL_AT_ONCE && !r->err[0]) {
            pull_t *p = calloc(1, sizeof(*p));
            if (!p) {
                fail(r, -ENOMEM, "out of memory");
                break;
            }
            p->r = r;
            memcpy(p->sha, w.v[next++], 32);
            pv_hex(p->sha, 32, p->hex);
            char path[PATH_MAX];
            pv_blob_path(r->store, p->sha, path, sizeof(path));
            struct stat sb;
            if (stat(path, &sb) == 0) {
                r->present++;
                free(p);
                continue;
            }
            char key[sizeof(r->prefix) + 80];
            snprintf(key, sizeof(key), "%sblobs/%.2s/%s", r->prefix, p->hex, p->hex);
            snprintf(p->tmp, sizeof(p->tmp), "%s/pull-%s", pv_store_tmp_dir(r->store), p->hex);
            pv_s3_sink_t sink = {.kind = PV_S3_TO_PATH, .path = p->tmp};
            rc = pv_s3_get(r->s3, key, &sink, pulled, p);
            if (rc < 0) {
                free(p);
                fail(r, rc, "GET blob: %s", strerror(-rc));
                break;
            }
            r->in_flight++;
        }
        if (r->in_flight > 0)
            event_base_loop(r->base, EVLOOP_ONCE);
    }
    while (r->in_flight > 0) /* after an error: let the others end */
        event_base_loop(r->base, EVLOOP_ONCE);
    free(w.v);
    return r->err[0] ? -EIO : 0;
}

/* The instance role's credentials (IMDSv2), for a restore on EC2. */
static void imds_got(const pv_imds_result_t *res, void *arg)
{
    rs_t *r = arg;
    r->done = true;
    r->res.rc = res->rc;
    if (res->rc == 0)
        *r->imds_creds = *res->creds;
    else
        snprintf(r->err, sizeof(r->err), "%s", res->message);
}

/* ---------------- the whole ---------------- */

static int parse_url(rs_t *r, const char *url, char *bucket, size_t blen)
{
    if (strncmp(url, "s3://", 5) != 0)
        return fail(r, -EINVAL, "expected s3://BUCKET[/PREFIX], got \"%s\"", url);
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t bl = slash ? (size_t)(slash - b) : strlen(b);
    if (bl == 0 || bl >= blen)
        return fail(r, -EINVAL, "no bucket in \"%s\"", url);
    memcpy(bucket, b, bl);
    bucket[bl] = '\0';
    const char *p = slash ? slash + 1 : "";
    size_t pl = strlen(p);
    while (pl && p[pl - 1] == '/')
        pl--;
    if (pl >= sizeof(r->prefix) - 1)
        return fail(r, -EINVAL, "the prefix is too long");
    snprintf(r->prefix, sizeof(r->prefix), "%.*s%s", (int)pl, p, pl ? "/" : "");
    return 0;
}

static int parse_at(rs_t *r, const char *at)
{
    r->at_seq = UINT64_MAX;
    r->at_ms = INT64_MAX;
    if (!at)
        return 0;
    char *end;
    errno = 0;
    unsigned long long seq = strtoull(at, &end, 10);
    if (*at >= '0' && *at <= '9' && !*end && !errno) {
        r->at_seq = seq;
        return 0;
    }
    int64_t s;
    if (pv_awscreds_parse_time(at, &s) == 0) {
        r->at_ms = s * 1000 + 999;
        return 0;
    }
    return fail(r, -EINVAL, "--at: expected a change number or an RFC 3339 time, got \"%s\"", at);
}

/* The S3 location the blobs come from, for the puller. */
static int mark_apply(pv_txn_t *txn, void *arg)
{
    const char *where = arg;
    return pv_txn_put(txn, PV_DB_META, PV_PULL_META, strlen(PV_PULL_META), where, strlen(where),
                      false);
}

static int run(rs_t *r, const pv_config_t *cfg, const char *url, const char *at, bool pull)
{
    char bucket[64];
    int rc = parse_url(r, url, bucket, sizeof(bucket));
    if (rc == 0)
        rc = parse_at(r, at);
    if (rc < 0)
        return rc;
    char probe[PATH_MAX];
    snprintf(probe, sizeof(probe), "%s/store/data.mdb", r->data_dir);
    if (access(probe, F_OK) == 0)
        return fail(r, -EEXIST, "%s already holds a store; restore into an empty data directory",
                    r->data_dir);
    if (!(r->base = event_base_new()) || pv_curlev_new(r->base, NULL, &r->http) < 0)
        return fail(r, -ENOMEM, "out of memory");
    pv_aws_creds_t creds;
    const char *profile = cfg->aws_profile[0] ? cfg->aws_profile : NULL;
    rc = pv_awscreds_load(profile, &creds);
    if (rc == -ENOENT && !pv_imds_off(cfg->aws_imds_endpoint)) { /* an instance role? */
        r->done = false;
        r->imds_creds = &creds;
        rc = pv_imds_fetch(r->http, cfg->aws_imds_endpoint, imds_got, r);
        if (rc == 0) {
            s3_wait(r);
            rc = r->res.rc;
        }
    }
    if (rc < 0)
        return fail(r, -ENOKEY, "no AWS credentials: set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY, a profile (aws_profile), or run on an "
                                "instance with a role%s%s", r->err[0] ? ": " : "", r->err);
    char region[32] = "us-east-1";
    if (cfg->s3_region[0])
        snprintf(region, sizeof(region), "%s", cfg->s3_region);
    else
        pv_awscreds_load_region(profile, region, sizeof(region));
    if (!region[0])
        snprintf(region, sizeof(region), "us-east-1");
    pv_s3_config_t sc = {.endpoint = cfg->s3_endpoint[0] ? cfg->s3_endpoint : NULL,
                         .region = region, .bucket = bucket, .path_style = cfg->s3_path_style};
    rc = pv_s3_new(r->http, &sc, &creds, &r->s3);
    pv_awscreds_wipe(&creds);
    if (rc < 0)
        return fail(r, rc, "cannot make the S3 client (endpoint, bucket or region): %s",
                    strerror(-rc));

    obj_t *snap = NULL;
    if ((rc = pick_snapshot(r, &snap)) < 0)
        return rc;
    char snap_key[1024];
    snprintf(snap_key, sizeof(snap_key), "%s", snap->key);
    if ((rc = pv_mkdir_p(r->data_dir, 0700)) < 0)
        return fail(r, rc, "cannot create %s: %s", r->data_dir, strerror(-rc));
    char archive[PATH_MAX];
    snprintf(archive, sizeof(archive), "%s/.restore-snapshot.tar", r->data_dir);
    rc = get_to_path(r, snap_key, archive);
    pv_backup_info_t info;
    char berr[512] = "";
    if (rc == 0 && (rc = pv_restore(archive, r->data_dir, &info, berr, sizeof(berr))) < 0)
        fail(r, rc, "snapshot %s: %s", snap_key, berr);
    unlink(archive);
    if (rc < 0)
        return rc;
    printf("snapshot %s: store %" PRIu64 " bytes\n", snap_key, info.store_bytes);

    pv_store_opts_t so = {.map_size = cfg->map_size, .map_max = cfg->map_max};
    if ((rc = pv_store_open(&r->store, r->data_dir, &so)) < 0)
        return fail(r, rc, "cannot open the restored store: %s", strerror(-rc));
    r->head = store_head(r->store);
    uint64_t snap_head = r->head;
    if ((rc = apply_segments(r)) < 0)
        return rc;
    printf("change log: %" PRIu64 " in the snapshot, %" PRIu64 " applied after it, now at %" PRIu64
           "\n", snap_head, r->head - snap_head, r->head);
    pv_reindex_t ri;
    if ((rc = pv_store_write_sync(r->store, reindex_apply, &ri)) < 0)
        return fail(r, rc, "cannot rebuild the indexes: %s", strerror(-rc));
    printf("records: %" PRIu64 " users, %" PRIu64 " photos, %" PRIu64 " videos (%" PRIu64
           " jobs), %" PRIu64 " blobs\n", ri.users, ri.photos, ri.videos, ri.jobs, ri.blobs);
    if (!pull) {
        char where[sizeof(r->prefix) + 80];
        snprintf(where, sizeof(where), "s3://%s/%s", bucket, r->prefix);
        if ((rc = pv_store_write_sync(r->store, mark_apply, where)) < 0)
            return fail(r, rc, "cannot note where the blobs come from: %s", strerror(-rc));
        printf("blobs: %" PRIu64 " to fetch from %s once pvd starts (each at once when a "
               "request or a render needs it; --pull-blobs fetches them now)\n", ri.blobs, where);
        return 0;
    }
    if ((rc = pull_blobs(r)) < 0)
        return rc;
    printf("blobs: %" PRIu64 " fetched, %" PRIu64 " already here, %" PRIu64 " missing, %" PRIu64
           " with other bytes\n", r->pulled, r->present, r->missing, r->bad);
    if (r->missing || r->bad)
        return fail(r, -EIO, "%" PRIu64 " blob(s) could not be restored (see above)",
                    r->missing + r->bad);
    return 0;
}

int pv_restore_s3_cli(const pv_config_t *cfg, const char *url, const char *at, bool pull_blobs)
{
    rs_t r = {.data_dir = cfg->data_dir};
    int64_t t0 = pv_mono_us();
    int rc = run(&r, cfg, url, at, pull_blobs);
    pv_s3_free(r.s3);
    pv_curlev_free(r.http);
    if (r.base)
        event_base_free(r.base);
    if (r.store)
        pv_store_close(r.store);
    objs_free(&r);
    free(r.token);
    free(r.body);
    if (rc < 0) {
        fprintf(stderr, "pvd: restore-from: %s\n", r.err[0] ? r.err : strerror(-rc));
        return 1;
    }
    printf("restored %s into %s in %.1f s; start pvd on it\n", url, cfg->data_dir,
           (double)(pv_mono_us() - t0) / 1e6);
    return 0;
}
