/*
 * test_store.c — the LMDB store: transactions and their sticky error,
 * scans (prefix, cursor, both directions), the change log, the writer's
 * group commit and per-request rollback, a full map (with and without
 * growth), blobs and their reference counts, the orphan sweep, backups.
 *
 * Every test works in its own temp data directory and opens the store with
 * no_sync (fsync adds nothing to what these tests show, only time).
 */
#include "store/store.h"
#include "base/pv.h"
#include "t.h"

#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <lmdb.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------- helpers ---------------- */

static int rm_cb(const char *path, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tmp_data_dir(char *buf)
{
    strcpy(buf, "/tmp/pv_test_store_XXXXXX");
    return mkdtemp(buf);
}

static pv_store_t *open_store(const char *dir, uint64_t map_size,
                              uint64_t map_max)
{
    pv_store_opts_t o = { .map_size = map_size, .map_max = map_max,
                          .no_sync = true };
    pv_store_t *s = NULL;
    int rc = pv_store_open(&s, dir, &o);
    CHECK_EQ_INT(rc, 0);
    return s;
}

/* A write described as data: put (val != NULL) or delete key in db. */
typedef struct op {
    int db;
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
    int fail_with; /* after the op, return this (tests rollback) */
} op_t;

static int apply_op(pv_txn_t *txn, void *arg)
{
    const op_t *o = arg;
    int rc = o->val ? pv_txn_put(txn, o->db, o->key, o->klen, o->val, o->vlen,
                                 false)
                    : pv_txn_del(txn, o->db, o->key, o->klen);
    if (rc)
        return rc;
    return o->fail_with;
}

static int put_sync(pv_store_t *s, int db, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
    op_t o = { db, key, klen, val, vlen, 0 };
    return pv_store_write_sync(s, apply_op, &o);
}

static int del_sync(pv_store_t *s, int db, const void *key, size_t klen)
{
    op_t o = { db, key, klen, NULL, 0, 0 };
    return pv_store_write_sync(s, apply_op, &o);
}

/* 0 and a copy of the value (NUL-terminated) or -errno. */
static int get_str(pv_store_t *s, int db, const void *key, size_t klen,
                   char *out, size_t outlen)
{
    pv_txn_t txn;
    int rc = pv_txn_begin(s, &txn, false);
    if (rc)
        return rc;
    pv_val_t v;
    rc = pv_txn_get(&txn, db, key, klen, &v);
    if (rc == 0)
        snprintf(out, outlen, "%.*s", (int)v.len, (const char *)v.data);
    pv_txn_abort(&txn);
    return rc;
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void id16(uint8_t out[16], unsigned user, unsigned n)
{
    memset(out, 0, 16);
    out[0] = (uint8_t)user;
    pv_be64_put(out + 8, n);
}

/* ---------------- basics ---------------- */

TEST(keys)
{
    uint8_t b[8];
    pv_be64_put(b, 0x0102030405060708ull);
    CHECK(b[0] == 1 && b[7] == 8);
    CHECK(pv_be64_get(b) == 0x0102030405060708ull);
    uint8_t a[16], out[48];
    id16(a, 7, 9);
    CHECK_EQ_INT(pv_key2(out, a, "xyz", 3), 19);
    CHECK(memcmp(out, a, 16) == 0 && memcmp(out + 16, "xyz", 3) == 0);
}

TEST(put_get_del)
{
    char dir[64], buf[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 0, 0);
    if (!s)
        return;
    CHECK_EQ_INT(put_sync(s, PV_DB_EMAILS, "a@x", 3, "one", 3), 0);
    CHECK_EQ_INT(put_sync(s, PV_DB_EMAILS, "b@x", 3, "two", 3), 0);
    CHECK_EQ_INT(get_str(s, PV_DB_EMAILS, "a@x", 3, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "one");
    CHECK_EQ_INT(put_sync(s, PV_DB_EMAILS, "a@x", 3, "uno", 3), 0);
    CHECK_EQ_INT(get_str(s, PV_DB_EMAILS, "a@x", 3, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "uno");
    CHECK_EQ_INT(del_sync(s, PV_DB_EMAILS, "a@x", 3), 0);
    CHECK_EQ_INT(get_str(s, PV_DB_EMAILS, "a@x", 3, buf, sizeof(buf)), -ENOENT);
    CHECK_EQ_INT(del_sync(s, PV_DB_EMAILS, "a@x", 3), -ENOENT);
    CHECK_EQ_INT(get_str(s, PV_DB_EMAILS, "b@x", 3, buf, sizeof(buf)), 0);
    /* the same key in another db is another record */
    CHECK_EQ_INT(get_str(s, PV_DB_TOKENS, "b@x", 3, buf, sizeof(buf)), -ENOENT);
    pv_store_close(s);
    rm_rf(dir);
}

/* A txn used directly (tools may): no_overwrite and misses are answers,
 * not failures; a real failure sticks. */
TEST(sticky_error)
{
    char dir[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 0, 0);
    if (!s)
        return;
    pv_txn_t txn;
    CHECK_EQ_INT(pv_txn_begin(s, &txn, true), 0);
    CHECK_EQ_INT(pv_txn_put(&txn, PV_DB_EMAILS, "k", 1, "v", 1, true), 0);
    CHECK_EQ_INT(pv_txn_put(&txn, PV_DB_EMAILS, "k", 1, "w", 1, true), -EEXIST);
    pv_val_t v;
    CHECK_EQ_INT(pv_txn_get(&txn, PV_DB_EMAILS, "nope", 4, &v), -ENOENT);
    CHECK_EQ_INT(txn.err, 0);
    CHECK_EQ_INT(pv_txn_put(&txn, PV_DB_EMAILS, "k2", 2, "v", 1, false), 0);
    /* a key longer than LMDB allows: the first real failure */
    char big[600];
    memset(big, 'k', sizeof(big));
    CHECK_EQ_INT(pv_txn_put(&txn, PV_DB_EMAILS, big, sizeof(big), "v", 1, false),
                 -EINVAL);
    CHECK_EQ_INT(txn.err, -EINVAL);
    /* ... turns every later call into a no-op with the same error */
    CHECK_EQ_INT(pv_txn_get(&txn, PV_DB_EMAILS, "k", 1, &v), -EINVAL);
    CHECK_EQ_INT(pv_txn_put(&txn, PV_DB_EMAILS, "k3", 2, "v", 1, false), -EINVAL);
    CHECK_EQ_INT(pv_txn_del(&txn, PV_DB_EMAILS, "k", 1), -EINVAL);
    CHECK_EQ_INT(pv_txn_commit(&txn), -EINVAL);
    char buf[8];
    CHECK_EQ_INT(get_str(s, PV_DB_EMAILS, "k", 1, buf, sizeof(buf)), -ENOENT);

    /* writes in a read txn and bad db numbers are refused */
    CHECK_EQ_INT(pv_txn_begin(s, &txn, false), 0);
    CHECK_EQ_INT(pv_txn_put(&txn, PV_DB_EMAILS, "k", 1, "v", 1, false), -EINVAL);
    pv_txn_abort(&txn);
    CHECK_EQ_INT(pv_txn_begin(s, &txn, false), 0);
    CHECK_EQ_INT(pv_txn_get(&txn, PV_DB_COUNT, "k", 1, &v), -EINVAL);
    pv_txn_abort(&txn);

    /* an apply that ignores a sticky error still fails its request */
    op_t bad = { PV_DB_EMAILS, big, sizeof(big), "v", 1, 0 };
    CHECK_EQ_INT(pv_store_write_sync(s, apply_op, &bad), -EINVAL);
    pv_store_close(s);
    rm_rf(dir);
}

/* ---------------- scans ---------------- */

typedef struct scan_acc {
    int n, stop_at;
    unsigned got[32];
} scan_acc_t;

static int scan_collect(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    scan_acc_t *a = arg;
    CHECK(key->len == 32 && val->len == 1);
    if (a->n < 32)
        a->got[a->n++] = (unsigned)pv_be64_get((const uint8_t *)key->data + 24) +
                         100 * ((const uint8_t *)key->data)[0];
    return a->stop_at && a->n == a->stop_at ? 1 : 0;
}

static int scan_fail(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    return -ECANCELED;
}

static int apply_fill_photos(pv_txn_t *txn, void *arg)
{
    /* users 1, 2 and 255 with photos 1..n: 255 tests the prefix
     * successor at the top of the key space */
    static const unsigned users[] = { 1, 2, 255 }, counts[] = { 5, 3, 2 };
    for (int u = 0; u < 3; u++) {
        for (unsigned p = 1; p <= counts[u]; p++) {
            uint8_t uid[16], pid[16], key[32];
            id16(uid, users[u], 0);
            memset(uid, users[u], 16);
            id16(pid, 0, p);
            pv_key2(key, uid, pid, 16);
            pv_txn_put(txn, PV_DB_PHOTO_SHA, key, 32, "x", 1, false);
        }
    }
    return txn->err;
}

static int do_scan(pv_store_t *s, unsigned user, const unsigned *after_photo,
                   bool reverse, int stop_at, scan_acc_t *acc)
{
    uint8_t uid[16], pid[16], after[32];
    memset(uid, (int)user, 16);
    memset(acc, 0, sizeof(*acc));
    acc->stop_at = stop_at;
    if (after_photo) {
        id16(pid, 0, *after_photo);
        pv_key2(after, uid, pid, 16);
    }
    pv_txn_t txn;
    int rc = pv_txn_begin(s, &txn, false);
    if (rc)
        return rc;
    rc = pv_txn_scan(&txn, PV_DB_PHOTO_SHA, uid, 16, after_photo ? after : NULL,
                     after_photo ? 32 : 0, reverse, scan_collect, acc);
    pv_txn_abort(&txn);
    return rc;
}

TEST(scan)
{
    char dir[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 0, 0);
    if (!s)
        return;
    CHECK_EQ_INT(pv_store_write_sync(s, apply_fill_photos, NULL), 0);
    scan_acc_t a;
    CHECK_EQ_INT(do_scan(s, 1, NULL, false, 0, &a), 0);
    CHECK_EQ_INT(a.n, 5);
    CHECK(a.got[0] == 101 && a.got[4] == 105);
    CHECK_EQ_INT(do_scan(s, 1, NULL, true, 0, &a), 0);
    CHECK_EQ_INT(a.n, 5);
    CHECK(a.got[0] == 105 && a.got[4] == 101);
    unsigned two = 2, four = 4, zero = 0, nine = 9;
    CHECK_EQ_INT(do_scan(s, 1, &two, false, 0, &a), 0);
    CHECK_EQ_INT(a.n, 3);
    CHECK_EQ_INT(a.got[0], 103);
    CHECK_EQ_INT(do_scan(s, 1, &four, true, 0, &a), 0);
    CHECK_EQ_INT(a.n, 3);
    CHECK(a.got[0] == 103 && a.got[2] == 101);
    /* cursors outside the user's keys: all or nothing, never a neighbour */
    CHECK_EQ_INT(do_scan(s, 1, &zero, false, 0, &a), 0);
    CHECK_EQ_INT(a.n, 5);
    CHECK_EQ_INT(do_scan(s, 1, &zero, true, 0, &a), 0);
    CHECK_EQ_INT(a.n, 0);
    CHECK_EQ_INT(do_scan(s, 1, &nine, true, 0, &a), 0);
    CHECK_EQ_INT(a.n, 5);
    CHECK_EQ_INT(do_scan(s, 2, NULL, true, 0, &a), 0);
    CHECK(a.n == 3 && a.got[0] == 203);
    /* the all-0xff user: no prefix successor exists */
    CHECK_EQ_INT(do_scan(s, 255, NULL, true, 0, &a), 0);
    CHECK(a.n == 2 && a.got[0] == 25502 && a.got[1] == 25501);
    CHECK_EQ_INT(do_scan(s, 255, NULL, false, 0, &a), 0);
    CHECK_EQ_INT(a.n, 2);
    CHECK_EQ_INT(do_scan(s, 3, NULL, true, 0, &a), 0);
    CHECK_EQ_INT(a.n, 0);

    /* newest-first paging with a cursor, two at a time */
    unsigned cursor = 0, pages = 0, seen = 0;
    for (bool first = true;; first = false) {
        CHECK_EQ_INT(do_scan(s, 1, first ? NULL : &cursor, true, 2, &a), 0);
        if (a.n == 0)
            break;
        pages++;
        seen += (unsigned)a.n;
        cursor = a.got[a.n - 1] - 100;
        if (pages > 10)
            break;
    }
    CHECK_EQ_INT(pages, 3);
    CHECK_EQ_INT(seen, 5);

    /* whole db, and a failing callback */
    pv_txn_t txn;
    CHECK_EQ_INT(pv_txn_begin(s, &txn, false), 0);
    memset(&a, 0, sizeof(a));
    CHECK_EQ_INT(pv_txn_scan(&txn, PV_DB_PHOTO_SHA, NULL, 0, NULL, 0, false,
                             scan_collect, &a), 0);
    CHECK_EQ_INT(a.n, 10);
    CHECK_EQ_INT(pv_txn_scan(&txn, PV_DB_PHOTO_SHA, NULL, 0, NULL, 0, true,
                             scan_fail, NULL), -ECANCELED);
    pv_txn_abort(&txn);
    pv_store_close(s);
    rm_rf(dir);
}

/* ---------------- the change log ---------------- */

typedef struct changes {
    int n;
    uint64_t seq[16];
    bool del[16];
    char kind[16][8];
    char key[16][16];
    char rec[16][16];
} changes_t;

static int changes_collect(void *arg, const pv_change_t *c)
{
    changes_t *a = arg;
    if (a->n >= 16)
        return 1;
    a->seq[a->n] = c->seq;
    a->del[a->n] = c->del;
    CHECK(c->time_ms > 1600000000000LL);
    snprintf(a->kind[a->n], 8, "%s", c->kind);
    snprintf(a->key[a->n], 16, "%.*s", (int)c->key.len, (const char *)c->key.data);
    snprintf(a->rec[a->n], 16, "%.*s", (int)c->record.len,
             (const char *)c->record.data);
    a->n++;
    return 0;
}

static int read_changes(pv_store_t *s, uint64_t after, size_t max, changes_t *a)
{
    memset(a, 0, sizeof(*a));
    pv_txn_t txn;
    int rc = pv_txn_begin(s, &txn, false);
    if (rc)
        return rc;
    rc = pv_changes_read(&txn, after, max, changes_collect, a);
    pv_txn_abort(&txn);
    return rc;
}

static json_t *load_schema(void)
{
    static const char *const paths[] = { "schema/records.json",
                                         "../schema/records.json",
                                         "../../schema/records.json" };
    for (size_t i = 0; i < PV_ARRAY_LEN(paths); i++) {
        json_t *j = json_load_file(paths[i], 0, NULL);
        if (j)
            return j;
    }
    return NULL;
}

/* The raw entry's keys are exactly the schema's "change" fields. */
static void check_change_shape(pv_store_t *s, uint64_t seq)
{
    json_t *schema = load_schema();
    CHECK(schema != NULL);
    json_t *fields = json_object_get(json_object_get(schema, "change"), "fields");
    CHECK(json_is_object(fields));
    pv_txn_t txn;
    CHECK_EQ_INT(pv_txn_begin(s, &txn, false), 0);
    uint8_t k[8];
    pv_be64_put(k, seq);
    pv_val_t v;
    CHECK_EQ_INT(pv_txn_get(&txn, PV_DB_CHANGES, k, 8, &v), 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    CHECK(msgpack_unpack_next(&up, v.data, v.len, &off) == MSGPACK_UNPACK_SUCCESS);
    CHECK(up.data.type == MSGPACK_OBJECT_MAP);
    if (up.data.type == MSGPACK_OBJECT_MAP && fields) {
        CHECK_EQ_INT(up.data.via.map.size, json_object_size(fields));
        for (uint32_t i = 0; i < up.data.via.map.size; i++) {
            msgpack_object_str ks = up.data.via.map.ptr[i].key.via.str;
            char name[32];
            snprintf(name, sizeof(name), "%.*s", (int)ks.size, ks.ptr);
            CHECK(json_object_get(fields, name) != NULL);
        }
    }
    msgpack_unpacked_destroy(&up);
    pv_txn_abort(&txn);
    json_decref(schema);
}

TEST(change_log)
{
    char dir[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 0, 0);
    if (!s)
        return;
    CHECK_EQ_INT(put_sync(s, PV_DB_USERS, "u1", 2, "rec1", 4), 0);
    CHECK_EQ_INT(put_sync(s, PV_DB_EMAILS, "e1", 2, "u1", 2), 0); /* unlogged */
    CHECK_EQ_INT(put_sync(s, PV_DB_PHOTOS, "p1", 2, "rec2", 4), 0);
    CHECK_EQ_INT(del_sync(s, PV_DB_USERS, "u1", 2), 0);
    CHECK_EQ_INT(del_sync(s, PV_DB_EMAILS, "e1", 2), 0);
    CHECK_EQ_INT(del_sync(s, PV_DB_USERS, "u1", 2), -ENOENT); /* no entry */
    CHECK_EQ_INT(put_sync(s, PV_DB_VIDEOS, "v1", 2, "rec3", 4), 0);
    changes_t c;
    CHECK_EQ_INT(read_changes(s, 0, 100, &c), 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK(c.seq[0] == 1 && c.seq[1] == 2 && c.seq[2] == 3 && c.seq[3] == 4);
    CHECK_EQ_STR(c.kind[0], "user");
    CHECK(!c.del[0]);
    CHECK_EQ_STR(c.key[0], "u1");
    CHECK_EQ_STR(c.rec[0], "rec1");
    CHECK_EQ_STR(c.kind[1], "photo");
    CHECK_EQ_STR(c.kind[2], "user");
    CHECK(c.del[2]);
    CHECK_EQ_STR(c.rec[2], "");
    CHECK_EQ_STR(c.kind[3], "video");
    /* after and max */
    CHECK_EQ_INT(read_changes(s, 2, 1, &c), 0);
    CHECK(c.n == 1 && c.seq[0] == 3);
    CHECK_EQ_INT(read_changes(s, 4, 10, &c), 0);
    CHECK_EQ_INT(c.n, 0);
    check_change_shape(s, 1);
    check_change_shape(s, 3);
    pv_store_close(s);
    rm_rf(dir);
}

static int apply_trim(pv_txn_t *txn, void *arg)
{
    return pv_changes_trim(txn, *(uint64_t *)arg);
}

TEST(seq_across_reopen)
{
    char dir[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 0, 0);
    if (!s)
        return;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(put_sync(s, PV_DB_USERS, "u", 1, "r", 1), 0);
    pv_store_close(s);
    s = open_store(dir, 0, 0);
    if (!s)
        return;
    CHECK_EQ_INT(put_sync(s, PV_DB_USERS, "u", 1, "r", 1), 0);
    uint64_t upto = 2;
    CHECK_EQ_INT(pv_store_write_sync(s, apply_trim, &upto), 0);
    changes_t c;
    CHECK_EQ_INT(read_changes(s, 0, 100, &c), 0);
    CHECK(c.n == 2 && c.seq[0] == 3 && c.seq[1] == 4);
    /* trimming everything must not reset the sequence */
    upto = 100;
    CHECK_EQ_INT(pv_store_write_sync(s, apply_trim, &upto), 0);
    pv_store_close(s);
    s = open_store(dir, 0, 0);
    if (!s)
        return;
    CHECK_EQ_INT(del_sync(s, PV_DB_USERS, "u", 1), 0);
    CHECK_EQ_INT(read_changes(s, 0, 100, &c), 0);
    CHECK(c.n == 1 && c.seq[0] == 5 && c.del[0]);
    pv_store_stat_t st;
    CHECK_EQ_INT(pv_store_stat(s, &st), 0);
    CHECK_EQ_INT(st.last_seq, 5);
    CHECK_EQ_INT(st.entries[PV_DB_CHANGES], 1);
    CHECK_EQ_INT(st.entries[PV_DB_USERS], 0);
    CHECK(st.map_size >= (1u << 30) && st.map_used > 0);
    pv_store_close(s);
    rm_rf(dir);
}

/* ---------------- the writer ---------------- */

/* Requests through actors, as the daemon sends them. The first request
 * holds the writer until every other one is queued, so batching is certain
 * rather than likely. */
#define GC_THREADS 4
#define GC_PER_THREAD 50
#define GC_TOTAL (GC_THREADS * GC_PER_THREAD + 1)

typedef struct gc {
    pv_store_t *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gate_open, at_gate;
    int replies, failures;
    atomic_int n_ids;
    size_t txn_ids[GC_TOTAL];
    pv_actor_t *counter;
} gc_t;

typedef struct gc_req {
    pv_store_req_t req;
    gc_t *gc;
    int n;
    int fail_with;
} gc_req_t;

static int gc_apply(pv_txn_t *txn, void *arg)
{
    gc_req_t *r = arg;
    gc_t *g = r->gc;
    if (r->n == 0) { /* the gate */
        pthread_mutex_lock(&g->mu);
        g->at_gate = true;
        pthread_cond_broadcast(&g->cv);
        while (!g->gate_open)
            pthread_cond_wait(&g->cv, &g->mu);
        pthread_mutex_unlock(&g->mu);
    }
    int i = atomic_fetch_add(&g->n_ids, 1);
    if (i < GC_TOTAL)
        g->txn_ids[i] = mdb_txn_id(txn->mdb);
    uint8_t key[8];
    pv_be64_put(key, (uint64_t)r->n);
    int rc = pv_txn_put(txn, PV_DB_USERS, key, 8, &r->n, sizeof(r->n), false);
    return rc ? rc : r->fail_with;
}

/* The answer's continuation, on the counter's loop. */
static void gc_on_reply(pv_msg_t *msg)
{
    gc_req_t *r = (gc_req_t *)msg;
    gc_t *g = r->gc;
    pthread_mutex_lock(&g->mu);
    g->replies++;
    if (msg->status != r->fail_with)
        g->failures++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pv_msg_free(msg);
}

static void gc_submit(gc_t *g, int n, int fail_with)
{
    gc_req_t *r = pv_msg_new(sizeof(*r), 1);
    CHECK(r != NULL);
    if (!r)
        return;
    r->gc = g;
    r->n = n;
    r->fail_with = fail_with;
    r->req.apply = gc_apply;
    r->req.arg = r;
    pv_msg_expect(&r->req.msg, g->counter, gc_on_reply);
    pv_store_submit(g->s, &r->req);
}

static void *gc_thread(void *arg)
{
    gc_t *g = ((void **)arg)[0];
    int t = (int)(intptr_t)((void **)arg)[1];
    for (int i = 0; i < GC_PER_THREAD; i++)
        gc_submit(g, 1 + t * GC_PER_THREAD + i, 0);
    return NULL;
}

static void gc_open_gate(gc_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->gate_open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Request 0 is inside its apply: the writer is busy, all else queues. */
static void gc_wait_gate(gc_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->at_gate)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gc_wait(gc_t *g, int replies)
{
    pthread_mutex_lock(&g->mu);
    while (g->replies < replies)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static int distinct(const size_t *v, int n)
{
    int d = 0;
    for (int i = 0; i < n; i++) {
        bool dup = false;
        for (int j = 0; j < i && !dup; j++)
            dup = v[j] == v[i];
        d += !dup;
    }
    return d;
}

static bool gc_setup(gc_t *g, const char *dir, pv_loop_t **loop)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->s = open_store(dir, 0, 0);
    *loop = pv_loop_new("test");
    static const pv_actor_def_t def = {"counter", NULL, 0}; /* it gets answers only */
    g->counter = *loop ? pv_actor_new(*loop, &def, g) : NULL;
    CHECK(g->s && g->counter);
    return g->s && g->counter && pv_loop_start(*loop) == 0;
}

static void gc_teardown(gc_t *g, pv_loop_t *loop)
{
    pv_store_close(g->s);
    if (loop) {
        pv_loop_stop(loop);
        pv_loop_join(loop);
        pv_actor_free(g->counter);
        pv_loop_free(loop);
    }
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

TEST(group_commit)
{
    char dir[64];
    tmp_data_dir(dir);
    static gc_t g;
    pv_loop_t *loop = NULL;
    if (!gc_setup(&g, dir, &loop))
        return;
    gc_submit(&g, 0, 0);
    gc_wait_gate(&g);
    pthread_t th[GC_THREADS];
    void *args[GC_THREADS][2];
    for (int t = 0; t < GC_THREADS; t++) {
        args[t][0] = &g;
        args[t][1] = (void *)(intptr_t)t;
        pthread_create(&th[t], NULL, gc_thread, args[t]);
    }
    for (int t = 0; t < GC_THREADS; t++)
        pthread_join(th[t], NULL);
    gc_open_gate(&g);
    gc_wait(&g, GC_TOTAL);
    CHECK_EQ_INT(g.replies, GC_TOTAL);
    CHECK_EQ_INT(g.failures, 0);
    int commits = distinct(g.txn_ids, GC_TOTAL);
    printf("# group commit: %d requests in %d commits\n", GC_TOTAL, commits);
    CHECK(commits < GC_TOTAL / 4);
    pv_txn_t txn;
    CHECK_EQ_INT(pv_txn_begin(g.s, &txn, false), 0);
    int found = 0;
    for (int n = 0; n < GC_TOTAL; n++) {
        uint8_t key[8];
        pv_val_t v;
        pv_be64_put(key, (uint64_t)n);
        if (pv_txn_get(&txn, PV_DB_USERS, key, 8, &v) == 0 &&
            v.len == sizeof(int) && memcmp(v.data, &n, sizeof(int)) == 0)
            found++;
    }
    pv_txn_abort(&txn);
    CHECK_EQ_INT(found, GC_TOTAL);
    pv_store_stat_t st;
    CHECK_EQ_INT(pv_store_stat(g.s, &st), 0);
    CHECK_EQ_INT(st.last_seq, GC_TOTAL);
    gc_teardown(&g, loop);
    rm_rf(dir);
}

/* A failing request in a batch rolls back only itself. */
TEST(nested_failure)
{
    char dir[64];
    tmp_data_dir(dir);
    static gc_t g;
    pv_loop_t *loop = NULL;
    if (!gc_setup(&g, dir, &loop))
        return;
    gc_submit(&g, 0, 0);
    gc_wait_gate(&g);
    gc_submit(&g, 1, 0);
    gc_submit(&g, 2, -EINVAL); /* its put happened, then it failed */
    gc_submit(&g, 3, 0);
    gc_submit(&g, 4, 7);       /* positive results pass through */
    gc_open_gate(&g);
    gc_wait(&g, 5);
    CHECK_EQ_INT(g.failures, 0); /* each got its own status */
    CHECK_EQ_INT(distinct(g.txn_ids + 1, 4), 1); /* 1..4: one batch */
    char buf[8];
    for (int n = 0; n < 5; n++) {
        uint8_t key[8];
        pv_be64_put(key, (uint64_t)n);
        CHECK_EQ_INT(get_str(g.s, PV_DB_USERS, key, 8, buf, sizeof(buf)),
                     n == 2 ? -ENOENT : 0);
    }
    /* the rolled-back request left no change entry either */
    changes_t c;
    CHECK_EQ_INT(read_changes(g.s, 0, 100, &c), 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK(c.seq[3] == 4);
    gc_teardown(&g, loop);
    rm_rf(dir);
}

/* The failure seam at commit: everyone in the batch hears it; nothing of
 * the batch is stored; the next write works. */
TEST(commit_failure)
{
    char dir[64], buf[8];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 0, 0);
    if (!s)
        return;
    pv_fail_reset("store_commit:1");
    CHECK_EQ_INT(put_sync(s, PV_DB_USERS, "a", 1, "1", 1), -ENOSPC);
    pv_fail_reset("");
    CHECK_EQ_INT(get_str(s, PV_DB_USERS, "a", 1, buf, sizeof(buf)), -ENOENT);
    CHECK_EQ_INT(put_sync(s, PV_DB_USERS, "b", 1, "2", 1), 0);
    changes_t c;
    CHECK_EQ_INT(read_changes(s, 0, 100, &c), 0);
    CHECK(c.n == 1 && c.seq[0] == 1);
    pv_store_close(s);
    rm_rf(dir);
}

/* ---------------- a full map ---------------- */

#define VAL_SIZE 4000

static void fill_val(char *v, int n)
{
    memset(v, 'a' + n % 26, VAL_SIZE);
    memcpy(v, &n, sizeof(n));
}

static int fill_until_full(pv_store_t *s, int max, int *stored)
{
    static char v[VAL_SIZE];
    int rc = 0;
    *stored = 0;
    for (int n = 0; n < max; n++) {
        uint8_t key[8];
        pv_be64_put(key, (uint64_t)n);
        fill_val(v, n);
        rc = put_sync(s, PV_DB_PHOTOS, key, 8, v, VAL_SIZE);
        if (rc)
            break;
        (*stored)++;
    }
    return rc;
}

static int count_intact(pv_store_t *s, int n_max, int skip_below)
{
    static char want[VAL_SIZE];
    pv_txn_t txn;
    if (pv_txn_begin(s, &txn, false))
        return -1;
    int ok = 0;
    for (int n = skip_below; n < n_max; n++) {
        uint8_t key[8];
        pv_val_t v;
        pv_be64_put(key, (uint64_t)n);
        fill_val(want, n);
        if (pv_txn_get(&txn, PV_DB_PHOTOS, key, 8, &v) == 0 &&
            v.len == VAL_SIZE && memcmp(v.data, want, VAL_SIZE) == 0)
            ok++;
    }
    pv_txn_abort(&txn);
    return ok;
}

/* A write into a map that is nearly full, from key `first` on. */
static int fill_from(pv_store_t *s, int first, int max, int *stored)
{
    static char v[VAL_SIZE];
    int rc = 0;
    *stored = 0;
    for (int n = first; n < first + max; n++) {
        uint8_t key[8];
        pv_be64_put(key, (uint64_t)n);
        fill_val(v, n);
        if ((rc = put_sync(s, PV_DB_PHOTOS, key, 8, v, VAL_SIZE)) != 0)
            break;
        (*stored)++;
    }
    return rc;
}

TEST(map_full)
{
    char dir[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 256 * 1024, 0);
    if (!s)
        return;
    CHECK_EQ_INT(put_sync(s, PV_DB_EMAILS, "e0", 2, "x", 1), 0);
    int stored;
    CHECK_EQ_INT(fill_until_full(s, 200, &stored), -ENOSPC);
    printf("# map full after %d records of %d bytes\n", stored, VAL_SIZE);
    CHECK(stored > 5);
    CHECK_EQ_INT(count_intact(s, stored, 0), stored);
    /* one value larger than the whole map */
    char *huge = calloc(1, 512 * 1024);
    CHECK_EQ_INT(put_sync(s, PV_DB_PHOTOS, "huge", 4, huge, 512 * 1024), -ENOSPC);
    free(huge);
    /* still usable: a small write that fits, deletes, a big write again */
    CHECK_EQ_INT(put_sync(s, PV_DB_EMAILS, "e1", 2, "x", 1), 0);
    for (int n = 0; n < 4; n++) {
        uint8_t key[8];
        pv_be64_put(key, (uint64_t)n);
        CHECK_EQ_INT(del_sync(s, PV_DB_PHOTOS, key, 8), 0);
    }
    static char v[VAL_SIZE];
    fill_val(v, 1000);
    CHECK_EQ_INT(put_sync(s, PV_DB_PHOTOS, "new", 3, v, VAL_SIZE), 0);
    /* fill and empty again, a few rounds: never stuck */
    for (int round = 0; round < 3; round++) {
        int more;
        CHECK_EQ_INT(fill_from(s, 1000, 200, &more), -ENOSPC);
        for (int n = 1000; n < 1000 + more; n++) {
            uint8_t key[8];
            pv_be64_put(key, (uint64_t)n);
            CHECK_EQ_INT(del_sync(s, PV_DB_PHOTOS, key, 8), 0);
        }
        uint64_t upto = UINT64_MAX - 1; /* the log is data too */
        CHECK_EQ_INT(pv_store_write_sync(s, apply_trim, &upto), 0);
    }
    pv_store_close(s);
    /* and it reopens with everything that was acknowledged */
    s = open_store(dir, 256 * 1024, 0);
    if (!s)
        return;
    CHECK_EQ_INT(count_intact(s, stored, 4), stored - 4);
    char buf[8];
    CHECK_EQ_INT(get_str(s, PV_DB_EMAILS, "e1", 2, buf, sizeof(buf)), 0);
    pv_store_close(s);
    rm_rf(dir);
}

static atomic_bool g_readers_stop;

/* Readers on other threads while the writer grows the map. */
static void *reader_thread(void *arg)
{
    pv_store_t *s = arg;
    long reads = 0;
    while (!atomic_load(&g_readers_stop)) {
        pv_txn_t txn;
        if (pv_txn_begin(s, &txn, false) != 0)
            continue;
        uint8_t key[8];
        pv_val_t v;
        pv_be64_put(key, 0);
        if (pv_txn_get(&txn, PV_DB_PHOTOS, key, 8, &v) == 0)
            CHECK(v.len == VAL_SIZE);
        pv_txn_abort(&txn);
        reads++;
    }
    return (void *)reads;
}

TEST(map_growth)
{
    char dir[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 256 * 1024, 8 * 1024 * 1024);
    if (!s)
        return;
    atomic_store(&g_readers_stop, false);
    pthread_t r[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&r[i], NULL, reader_thread, s);
    int stored;
    CHECK_EQ_INT(fill_until_full(s, 300, &stored), 0);
    CHECK_EQ_INT(stored, 300);
    atomic_store(&g_readers_stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    CHECK_EQ_INT(count_intact(s, 300, 0), 300);
    pv_store_stat_t st;
    CHECK_EQ_INT(pv_store_stat(s, &st), 0);
    CHECK(st.map_size > 256 * 1024 && st.map_size <= 8 * 1024 * 1024);
    /* past map_max it is -ENOSPC again, and the store stays whole */
    int more;
    CHECK_EQ_INT(fill_until_full(s, 5000, &more), -ENOSPC);
    CHECK(more >= 300);
    CHECK_EQ_INT(pv_store_stat(s, &st), 0);
    CHECK_EQ_INT(st.map_size, 8 * 1024 * 1024);
    CHECK_EQ_INT(count_intact(s, more, 0), more);
    pv_store_close(s);
    rm_rf(dir);
}

/* ---------------- blobs ---------------- */

static void sha_of(uint8_t sha[32], int n)
{
    memset(sha, 0, 32);
    sha[0] = (uint8_t)(0xa0 + n);
    sha[31] = (uint8_t)n;
}

static int make_blob(pv_store_t *s, int n, const char *text)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/upload-%d", pv_store_tmp_dir(s), n);
    write_file(tmp, text);
    uint8_t sha[32];
    sha_of(sha, n);
    int rc = pv_blob_commit_file(s, tmp, sha, NULL);
    CHECK(!file_exists(tmp));
    return rc;
}

typedef struct blob_op {
    int n;
    int refs, unrefs; /* refs first, then unrefs */
    bool unref_first; /* unrefs first, then refs */
    int fail_with;
} blob_op_t;

static int apply_blob(pv_txn_t *txn, void *arg)
{
    const blob_op_t *b = arg;
    uint8_t sha[32];
    sha_of(sha, b->n);
    for (int pass = 0; pass < 2; pass++) {
        bool refs = (pass == 0) != b->unref_first;
        for (int i = 0; i < (refs ? b->refs : b->unrefs); i++) {
            int rc = refs ? pv_blob_ref(txn, sha) : pv_blob_unref(txn, sha);
            if (rc)
                return rc;
        }
    }
    return b->fail_with;
}

static bool blob_exists(pv_store_t *s, int n)
{
    uint8_t sha[32];
    char path[PATH_MAX];
    sha_of(sha, n);
    pv_blob_path(s, sha, path, sizeof(path));
    return file_exists(path);
}

TEST(blobs)
{
    char dir[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 0, 0);
    if (!s)
        return;
    uint8_t sha[32];
    char path[PATH_MAX], want[PATH_MAX];
    sha_of(sha, 1);
    pv_blob_path(s, sha, path, sizeof(path));
    snprintf(want, sizeof(want), "%s/blobs/a1/a1%060d01", dir, 0);
    CHECK_EQ_STR(path, want);

    CHECK_EQ_INT(make_blob(s, 1, "one"), 0);
    CHECK(blob_exists(s, 1));
    CHECK_EQ_INT(make_blob(s, 1, "one"), 0); /* again: temp dropped */
    blob_op_t ref2 = { 1, 2, 0, false, 0 };
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &ref2), 0);
    blob_op_t unref1 = { 1, 0, 1, false, 0 };
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &unref1), 0);
    CHECK(blob_exists(s, 1));
    /* to zero in a request that then fails: rolled back, file kept */
    blob_op_t unref_fail = { 1, 0, 1, false, -EINVAL };
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &unref_fail), -EINVAL);
    CHECK(blob_exists(s, 1));
    /* to zero and referenced again in the same txn: kept */
    blob_op_t unref_ref = { 1, 1, 1, true, 0 };
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &unref_ref), 0);
    CHECK(blob_exists(s, 1));
    /* to zero: gone once the commit is done */
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &unref1), 0);
    CHECK(!blob_exists(s, 1));
    /* a record may not name a blob that is not on disk */
    blob_op_t ref_missing = { 1, 1, 0, false, 0 };
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &ref_missing), -ENOENT);
    /* an unref with nothing to drop is tolerated */
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &unref1), 0);

    /* the failure seam in commit_file: a clean error, temp left for the
     * caller (or the next sweep) */
    char upload5[PATH_MAX];
    snprintf(upload5, sizeof(upload5), "%s/upload-5", pv_store_tmp_dir(s));
    write_file(upload5, "five");
    sha_of(sha, 5);
    pv_fail_reset("blob_rename:1");
    CHECK_EQ_INT(pv_blob_commit_file(s, upload5, sha, NULL), -EIO);
    pv_fail_reset("");
    CHECK(!blob_exists(s, 5));
    CHECK(file_exists(upload5));

    /* orphan sweep at open */
    CHECK_EQ_INT(make_blob(s, 2, "kept"), 0);
    blob_op_t ref1 = { 2, 1, 0, false, 0 };
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &ref1), 0);
    CHECK_EQ_INT(make_blob(s, 3, "orphan"), 0);
    char stray[PATH_MAX], junk[PATH_MAX];
    snprintf(stray, sizeof(stray), "%s/partial", pv_store_tmp_dir(s));
    write_file(stray, "half an upload");
    snprintf(junk, sizeof(junk), "%s/blobs/a2/README", dir);
    write_file(junk, "not a blob");
    /* a blob name is pv_hex's lower-case spelling only: an upper-case
     * name, or a lower-case one in an upper-case shard, is not ours */
    char upper[PATH_MAX], upper_shard[PATH_MAX], in_upper[PATH_MAX];
    snprintf(upper, sizeof(upper), "%s/blobs/a2/A2%060d03", dir, 0);
    write_file(upper, "not a blob");
    snprintf(upper_shard, sizeof(upper_shard), "%s/blobs/A4", dir);
    CHECK_EQ_INT(mkdir(upper_shard, 0700), 0);
    snprintf(in_upper, sizeof(in_upper), "%s/blobs/A4/a4%060d04", dir, 0);
    write_file(in_upper, "not a blob");
    pv_store_close(s);
    s = open_store(dir, 0, 0);
    if (!s)
        return;
    CHECK(blob_exists(s, 2));
    CHECK(!blob_exists(s, 3));
    CHECK(!file_exists(stray));
    CHECK(file_exists(junk)); /* only blob-named files are collected */
    CHECK(file_exists(upper));
    CHECK(file_exists(in_upper));
    CHECK(!file_exists(upload5)); /* same path: DATA/tmp did not move */
    pv_store_close(s);
    rm_rf(dir);
}

/* ---------------- backup ---------------- */

/* The window between a blob made durable for a record and that record's
 * commit. The file may already be there (another record names the same
 * bytes: photos with the same pixels share a thumbnail), so its temp copy
 * is dropped; if the other record is deleted meanwhile, its commit drops
 * the last reference and unlinks the file, and the new record's
 * pv_blob_ref finds none: an upload of a good photo failed (a 404). A pin
 * taken by pv_blob_commit_file keeps the file until it is released. */
static int commit_copy(pv_store_t *s, int n, const char *text, pv_blob_pin_t *pin)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/copy-%d", pv_store_tmp_dir(s), n);
    write_file(tmp, text);
    uint8_t sha[32];
    sha_of(sha, n);
    int rc = pv_blob_commit_file(s, tmp, sha, pin);
    CHECK(!file_exists(tmp)); /* the file was there: the copy is dropped */
    return rc;
}

TEST(blob_pins)
{
    char dir[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 0, 0);
    if (!s)
        return;
    blob_op_t ref1 = {6, 1, 0, false, 0}, unref1 = {6, 0, 1, false, 0};
    /* Unpinned, the race as it was: the new record cannot name the blob. */
    CHECK_EQ_INT(make_blob(s, 6, "six"), 0);
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &ref1), 0);   /* record A */
    CHECK_EQ_INT(commit_copy(s, 6, "six", NULL), 0);              /* B's upload */
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &unref1), 0); /* A deleted */
    CHECK(!blob_exists(s, 6));
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &ref1), -ENOENT); /* B */
    /* Pinned: the delete leaves the file, B's commit counts it. */
    pv_blob_pin_t pin = {0};
    CHECK_EQ_INT(make_blob(s, 6, "six"), 0);
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &ref1), 0);
    CHECK_EQ_INT(commit_copy(s, 6, "six", &pin), 0);
    CHECK(pin.held);
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &unref1), 0);
    CHECK(blob_exists(s, 6));
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &ref1), 0);
    pv_blob_unpin(s, &pin);
    CHECK(!pin.held);
    pv_blob_unpin(s, &pin); /* again: nothing */
    /* Released: the next drop to zero unlinks as before. */
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &unref1), 0);
    CHECK(!blob_exists(s, 6));
    /* A pin handed over holds as the first did; two pins on one blob hold
     * until both are gone. */
    pv_blob_pin_t a = {0}, b = {0}, c = {0};
    CHECK_EQ_INT(make_blob(s, 6, "six"), 0);
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &ref1), 0);
    CHECK_EQ_INT(commit_copy(s, 6, "six", &a), 0);
    CHECK_EQ_INT(commit_copy(s, 6, "six", &b), 0);
    pv_blob_pin_move(s, &c, &a);
    CHECK(!a.held && c.held);
    pv_blob_unpin(s, &c);
    CHECK_EQ_INT(pv_store_write_sync(s, apply_blob, &unref1), 0);
    CHECK(blob_exists(s, 6)); /* b still holds it */
    pv_blob_unpin(s, &b);
    /* A failed commit_file leaves no pin behind. */
    char tmp[PATH_MAX];
    uint8_t sha[32];
    snprintf(tmp, sizeof(tmp), "%s/upload-7", pv_store_tmp_dir(s));
    write_file(tmp, "seven");
    sha_of(sha, 7);
    pv_fail_reset("blob_rename:1");
    CHECK_EQ_INT(pv_blob_commit_file(s, tmp, sha, &a), -EIO);
    pv_fail_reset("");
    CHECK(!a.held);
    /* Pins still held at the close are let go with the store. */
    CHECK_EQ_INT(commit_copy(s, 6, "six", &a), 0);
    pv_store_close(s);
    CHECK(!a.held);
    pv_blob_unpin(NULL, &a); /* after the close: touches nothing */
    rm_rf(dir);
}

TEST(backup)
{
    char dir[64], dir2[64], path[PATH_MAX], buf[16];
    tmp_data_dir(dir);
    tmp_data_dir(dir2);
    pv_store_t *s = open_store(dir, 0, 0);
    if (!s)
        return;
    CHECK_EQ_INT(put_sync(s, PV_DB_USERS, "u1", 2, "alice", 5), 0);
    CHECK_EQ_INT(put_sync(s, PV_DB_EMAILS, "a@x", 3, "u1", 2), 0);
    snprintf(path, sizeof(path), "%s/store", dir2);
    CHECK_EQ_INT(pv_mkdir_p(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/store/data.mdb", dir2);
    CHECK_EQ_INT(pv_store_backup(s, path), 0);
    CHECK(file_exists(path));
    /* a write after the backup is not in it */
    CHECK_EQ_INT(put_sync(s, PV_DB_USERS, "u2", 2, "bob", 3), 0);
    pv_store_close(s);
    pv_store_t *b = open_store(dir2, 0, 0);
    if (!b)
        return;
    CHECK_EQ_INT(get_str(b, PV_DB_USERS, "u1", 2, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "alice");
    CHECK_EQ_INT(get_str(b, PV_DB_EMAILS, "a@x", 3, buf, sizeof(buf)), 0);
    CHECK_EQ_INT(get_str(b, PV_DB_USERS, "u2", 2, buf, sizeof(buf)), -ENOENT);
    pv_store_stat_t st;
    CHECK_EQ_INT(pv_store_stat(b, &st), 0);
    CHECK_EQ_INT(st.last_seq, 1);
    /* the copy goes on where the original was */
    CHECK_EQ_INT(put_sync(b, PV_DB_USERS, "u3", 2, "carol", 5), 0);
    CHECK_EQ_INT(pv_store_stat(b, &st), 0);
    CHECK_EQ_INT(st.last_seq, 2);
    /* a backup into a directory that does not exist fails cleanly */
    CHECK(pv_store_backup(b, "/nonexistent/dir/x.mdb") < 0);
    pv_store_close(b);
    rm_rf(dir);
    rm_rf(dir2);
}

/* A read txn begun on one thread and ended on another (MDB_NOTLS). */
static void *abort_elsewhere(void *arg)
{
    pv_txn_abort(arg);
    return NULL;
}

TEST(read_txn_moves_threads)
{
    char dir[64];
    tmp_data_dir(dir);
    pv_store_t *s = open_store(dir, 256 * 1024, 1024 * 1024);
    if (!s)
        return;
    pv_txn_t a, b;
    CHECK_EQ_INT(pv_txn_begin(s, &a, false), 0);
    CHECK_EQ_INT(pv_txn_begin(s, &b, false), 0); /* two on one thread */
    pthread_t th;
    pthread_create(&th, NULL, abort_elsewhere, &a);
    pthread_join(th, NULL);
    pv_txn_abort(&b);
    /* the map can still grow: every txn really ended */
    int stored;
    CHECK_EQ_INT(fill_until_full(s, 100, &stored), 0);
    pv_store_close(s);
    rm_rf(dir);
}

TEST(open_errors)
{
    pv_store_t *s = NULL;
    pv_store_opts_t o = { .no_sync = true };
    CHECK(pv_store_open(&s, "/proc/pv-no-such-dir", &o) < 0);
    CHECK(s == NULL);
    pv_fail_reset("store_open:1");
    char dir[64];
    tmp_data_dir(dir);
    CHECK_EQ_INT(pv_store_open(&s, dir, &o), -ENOMEM);
    pv_fail_reset("loop_start:1");
    CHECK(pv_store_open(&s, dir, &o) < 0);
    CHECK(s == NULL);
    pv_fail_reset("");
    CHECK_EQ_INT(pv_store_open(&s, dir, &o), 0);
    pv_store_close(s);
    rm_rf(dir);
}

int main(void)
{
    pv_log_set_level(PV_LOG_ERROR); /* tests provoke warnings on purpose */
    RUN(keys);
    RUN(put_get_del);
    RUN(sticky_error);
    RUN(scan);
    RUN(change_log);
    RUN(seq_across_reopen);
    RUN(group_commit);
    RUN(nested_failure);
    RUN(commit_failure);
    RUN(map_full);
    RUN(map_growth);
    RUN(blobs);
    RUN(blob_pins);
    RUN(backup);
    RUN(read_txn_moves_threads);
    RUN(open_errors);
    return t_done("store");
}
