/*
 * store.c — the LMDB store: environment, transactions with a sticky error,
 * the change log, blob files and their reference counts, and the writer
 * thread that batches every write into one commit (group commit).
 *
 * Shape, and why:
 * - One table (store_dbs) names every database and whether writes to it are
 *   logged, and under which kind. Opening and change logging both read it.
 * - LMDB codes become -errno in exactly one place, store_errno().
 * - All writes funnel through one thread, the writer: a pv_loop of its own
 *   with one actor. The actor's handler only collects requests; a one-shot
 *   event that runs once the actor's wake-up is over takes them all, runs
 *   each apply() in a nested transaction (a failure rolls back only that
 *   request), commits once -- one fsync for the lot -- and then replies to
 *   each. Durability order: the commit is durable before any reply leaves.
 * - A full map is an answer, not a crash: the request gets -ENOSPC and the
 *   store stays usable. With opts.map_max the writer instead doubles the
 *   map and runs the batch again. mdb_env_set_mapsize needs every
 *   transaction of this process ended, so each transaction holds the map
 *   gate shared and the resize takes it exclusive. The gate is a counter
 *   under a mutex rather than a pthread_rwlock: MDB_NOTLS lets a read txn
 *   end on another thread than the one that began it, and a rwlock must be
 *   released by its holder. Readers are never held back by a waiting
 *   resize (only by one in progress), so a thread that opens a second read
 *   txn while holding one cannot deadlock against it.
 * - Blob files are content-addressed; PV_DB_BLOBS counts references. A
 *   count dropping to zero schedules an unlink that runs only after the
 *   outer commit succeeded (a nested transaction hands its list up only if
 *   it commits). Crashes leave at worst unreferenced files, which the sweep
 *   at open removes -- it runs before the writer starts, so no upload can be
 *   between pv_blob_commit_file and its record's commit.
 * - Pins close the window between pv_blob_commit_file and the commit of the
 *   record that counts the blob. The file may already be there (another
 *   record names the same bytes, e.g. every photo with the same pixels has
 *   the same thumbnail): then the temp copy is dropped, and a delete of
 *   that other record, committed meanwhile, would unlink the file the new
 *   record is about to name (its pv_blob_ref then finds no file: the
 *   upload failed with a 404). So the blob is pinned before it is looked
 *   for, and the post-commit unlink skips pinned blobs; both run under
 *   pin_mu, so either the unlink comes first and the blob is written anew,
 *   or the pin does and the file stays.
 */
#include "store/store.h"
#include "base/pv.h"
#include "base/text.h"

#include <dirent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_MAP_DEFAULT (1ull << 30) /* 1 GiB */
#define STORE_MAX_READERS 256
#define STORE_BATCH_MAX 256            /* requests per commit */
#define STORE_FORMAT 1                 /* META "format" */

/* Every database, by enum pv_db: its LMDB name and, when writes to it are
 * logged, the change entry's kind. */
static const struct {
    const char *name;
    const char *kind;
} store_dbs[PV_DB_COUNT] = {
    [PV_DB_META] = { "meta", NULL },
    [PV_DB_USERS] = { "users", "user" },
    [PV_DB_EMAILS] = { "emails", NULL },
    [PV_DB_PHOTOS] = { "photos", "photo" },
    [PV_DB_PHOTO_SHA] = { "photo_sha", NULL },
    [PV_DB_TOKENS] = { "tokens", NULL },
    [PV_DB_FAMILIES] = { "families", NULL },
    [PV_DB_BLOBS] = { "blobs", NULL },
    [PV_DB_VIDEOS] = { "videos", "video" },
    [PV_DB_JOBS] = { "jobs", NULL },
    [PV_DB_CHANGES] = { "changes", NULL },
    [PV_DB_SHARES] = { "shares", "share" },
};

/* Post-commit work of one transaction (pv_txn_t.pending). */
typedef struct store_unlink {
    struct store_unlink *next;
    uint8_t sha256[32];
} store_unlink_t;

typedef struct store_pending {
    store_unlink_t *unlinks; /* blobs whose count reached zero */
    bool map_full;           /* an operation failed with MDB_MAP_FULL */
    bool deleted;            /* something was deleted: may use the reserve */
    bool owned;              /* malloc'd by the txn (else the writer's) */
} store_pending_t;

struct pv_store {
    MDB_env *env;
    MDB_dbi dbi[PV_DB_COUNT];
    pv_store_opts_t opts;
    uint64_t map_size;            /* current map size (writer thread) */
    unsigned psize;               /* LMDB page size */
    pthread_mutex_t map_mu;       /* the map gate: txns shared, resize */
    pthread_cond_t map_cv;        /*   exclusive; signalled at 0 users */
    long map_users;               /* open txns (and backups) */
    char env_dir[PATH_MAX];       /* DATA/store */
    char blobs_dir[PATH_MAX];     /* DATA/blobs */
    char tmp_dir[PATH_MAX];       /* DATA/tmp */
    pthread_mutex_t pin_mu;       /* pins, and the unlinks that look at them */
    pv_blob_pin_t *pins;          /* held pins (a short list: uploads, renders in flight) */
    /* the writer: everything below is touched by its loop thread only */
    pv_loop_t *loop;
    pv_actor_t *writer;
    struct event *flush_ev;       /* runs a batch after the actor's turn */
    pv_msg_t close_msg;           /* "drain and stop", from pv_store_close */
    int n_batch;
    pv_store_req_t *batch[STORE_BATCH_MAX];
};

/* ---------------- errors ---------------- */

static const struct {
    int mdb;
    int err;
} store_errs[] = {
    { MDB_NOTFOUND, -ENOENT },   { MDB_MAP_FULL, -ENOSPC },
    { ENOSPC, -ENOSPC },         { EDQUOT, -ENOSPC },
    { MDB_KEYEXIST, -EEXIST },   { MDB_BAD_VALSIZE, -EINVAL },
    { EINVAL, -EINVAL },         { ENOMEM, -ENOMEM },
    { EACCES, -EACCES },         { EAGAIN, -EAGAIN },
};

/* The one mapping from LMDB (and the errnos it passes up) to ours. */
static int store_errno(int rc)
{
    if (rc == 0)
        return 0;
    for (size_t i = 0; i < PV_ARRAY_LEN(store_errs); i++)
        if (store_errs[i].mdb == rc)
            return store_errs[i].err;
    return -EIO;
}

/* Record a failure in the txn: the first one sticks. */
static int txn_fail(pv_txn_t *txn, int mdb_rc)
{
    if (mdb_rc == MDB_MAP_FULL && txn->pending)
        ((store_pending_t *)txn->pending)->map_full = true;
    int err = store_errno(mdb_rc);
    if (!txn->err)
        txn->err = err;
    return err;
}

static int txn_fail_errno(pv_txn_t *txn, int err)
{
    if (!txn->err)
        txn->err = err;
    return err;
}

/* ---------------- keys ---------------- */

void pv_be64_put(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

uint64_t pv_be64_get(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

size_t pv_key2(uint8_t *out, const uint8_t a[16], const void *b, size_t blen)
{
    memcpy(out, a, 16);
    if (blen)
        memcpy(out + 16, b, blen);
    return 16 + blen;
}

/* ---------------- the map gate ---------------- */

static void map_enter(pv_store_t *s)
{
    pthread_mutex_lock(&s->map_mu); /* held through a resize */
    s->map_users++;
    pthread_mutex_unlock(&s->map_mu);
}

static void map_leave(pv_store_t *s)
{
    pthread_mutex_lock(&s->map_mu);
    if (--s->map_users == 0)
        pthread_cond_broadcast(&s->map_cv);
    pthread_mutex_unlock(&s->map_mu);
}

/* Runs fn with no txn open in this process and none able to begin. */
static int map_exclusive(pv_store_t *s, int (*fn)(pv_store_t *s, void *arg),
                         void *arg)
{
    pthread_mutex_lock(&s->map_mu);
    while (s->map_users > 0)
        pthread_cond_wait(&s->map_cv, &s->map_mu);
    int rc = fn(s, arg);
    pthread_mutex_unlock(&s->map_mu);
    return rc;
}

/* ---------------- transactions ---------------- */

static void pending_clear(store_pending_t *p)
{
    while (p->unlinks) {
        store_unlink_t *u = p->unlinks;
        p->unlinks = u->next;
        free(u);
    }
}

static void pending_free(store_pending_t *p)
{
    if (!p)
        return;
    pending_clear(p);
    if (p->owned)
        free(p);
}

int pv_txn_begin(pv_store_t *store, pv_txn_t *txn, bool write)
{
    memset(txn, 0, sizeof(*txn));
    txn->store = store;
    txn->write = write;
    if (write ? pv_fail("store_txn_write") : pv_fail("store_txn_read"))
        return txn->err = -EIO;
    map_enter(store);
    MDB_txn *m = NULL;
    int rc = mdb_txn_begin(store->env, NULL, write ? 0 : MDB_RDONLY, &m);
    if (rc) {
        map_leave(store);
        return txn->err = store_errno(rc);
    }
    txn->mdb = m;
    return 0;
}

/* Ends the LMDB side (if still open) and the txn's claim on the map. */
static void txn_end(pv_txn_t *txn, bool abort_mdb)
{
    if (!txn->mdb)
        return;
    if (abort_mdb)
        mdb_txn_abort(txn->mdb);
    txn->mdb = NULL;
    map_leave(txn->store);
    pending_free(txn->pending);
    txn->pending = NULL;
}

void pv_txn_abort(pv_txn_t *txn)
{
    txn_end(txn, true);
}

static bool pinned_locked(pv_store_t *s, const uint8_t sha256[32])
{
    for (const pv_blob_pin_t *p = s->pins; p; p = p->next)
        if (memcmp(p->sha256, sha256, 32) == 0)
            return true;
    return false;
}

/* After a commit that dropped the blob's last reference; a pinned blob's
 * file stays (a record on its way names it, see the file comment). */
static void blob_unlink_file(pv_store_t *s, const uint8_t sha256[32])
{
    char path[PATH_MAX];
    pv_blob_path(s, sha256, path, sizeof(path));
    pthread_mutex_lock(&s->pin_mu);
    bool keep = pinned_locked(s, sha256);
    if (!keep && unlink(path) < 0 && errno != ENOENT)
        pv_warn("store", "cannot remove blob %s: %s", path, strerror(errno));
    pthread_mutex_unlock(&s->pin_mu);
    if (keep)
        pv_debug("store", "blob %s has no reference left but is pinned: kept", path);
}

/* A blob whose count fell to zero may have been referenced again later in
 * the same transaction (delete a photo, upload it again): keep those. */
static void pending_drop_referenced(pv_txn_t *txn, store_pending_t *p)
{
    store_unlink_t **up = &p->unlinks;
    while (*up) {
        store_unlink_t *u = *up;
        MDB_val k = { 32, u->sha256 }, v;
        if (mdb_get(txn->mdb, txn->store->dbi[PV_DB_BLOBS], &k, &v) == 0) {
            *up = u->next;
            free(u);
        } else {
            up = &u->next;
        }
    }
}

/* Commit; *map_full tells the writer whether growing the map could help. */
static int txn_commit(pv_txn_t *txn, bool *map_full)
{
    *map_full = false;
    if (!txn->mdb)
        return txn->err ? txn->err : -EINVAL;
    if (txn->err) {
        int err = txn->err;
        store_pending_t *p = txn->pending;
        *map_full = p && p->map_full;
        pv_txn_abort(txn);
        return err;
    }
    store_pending_t *p = txn->pending;
    if (p)
        pending_drop_referenced(txn, p);
    int rc;
    if (pv_fail("store_commit")) { /* as if the disk were full */
        mdb_txn_abort(txn->mdb);
        rc = ENOSPC;
    } else {
        rc = mdb_txn_commit(txn->mdb);
    }
    *map_full = rc == MDB_MAP_FULL;
    txn->pending = NULL; /* run after the unlock below, then free */
    txn_end(txn, false);
    if (rc == 0 && p)
        for (store_unlink_t *u = p->unlinks; u; u = u->next)
            blob_unlink_file(txn->store, u->sha256);
    pending_free(p);
    return txn->err = store_errno(rc);
}

int pv_txn_commit(pv_txn_t *txn)
{
    bool map_full;
    return txn_commit(txn, &map_full);
}

/* Common entry checks: sticky error, db index, write access. */
static int txn_check(pv_txn_t *txn, int db, bool write)
{
    if (txn->err)
        return txn->err;
    if (!txn->mdb || db < 0 || db >= PV_DB_COUNT || (write && !txn->write))
        return txn_fail_errno(txn, -EINVAL);
    return 0;
}

int pv_txn_get(pv_txn_t *txn, int db, const void *key, size_t klen,
               pv_val_t *val)
{
    int rc = txn_check(txn, db, false);
    if (rc)
        return rc;
    MDB_val k = { klen, (void *)key }, v;
    rc = mdb_get(txn->mdb, txn->store->dbi[db], &k, &v);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc)
        return txn_fail(txn, rc);
    val->data = v.mv_data;
    val->len = v.mv_size;
    return 0;
}

/* ---------------- change log ---------------- */

static const char store_seq_key[] = "seq";
static const char store_format_key[] = "format";

/* An 8-byte big-endian count or sequence stored under key; 0 if absent. */
static int get_u64(pv_txn_t *txn, int db, const void *key, size_t klen, uint64_t *out)
{
    pv_val_t v;
    int rc = pv_txn_get(txn, db, key, klen, &v);
    *out = 0;
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return rc;
    if (v.len != 8)
        return txn_fail_errno(txn, -EIO);
    *out = pv_be64_get(v.data);
    return 0;
}

static int meta_get_u64(pv_txn_t *txn, const char *name, uint64_t *out)
{
    return get_u64(txn, PV_DB_META, name, strlen(name), out);
}

static int meta_put_u64(pv_txn_t *txn, const char *name, uint64_t val)
{
    uint8_t b[8];
    pv_be64_put(b, val);
    MDB_val k = { strlen(name), (void *)name }, v = { 8, b };
    int rc = mdb_put(txn->mdb, txn->store->dbi[PV_DB_META], &k, &v, 0);
    return rc ? txn_fail(txn, rc) : 0;
}

static int pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

/* {seq, t, kind, op, key, rec}: schema/records.json "change". */
static int change_encode(msgpack_sbuffer *sb, uint64_t seq, const char *kind,
                         const MDB_val *key, const MDB_val *rec)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int bad = msgpack_pack_map(&pk, 6);
    bad |= pack_str(&pk, "seq") || msgpack_pack_uint64(&pk, seq);
    bad |= pack_str(&pk, "t") || msgpack_pack_int64(&pk, pv_now_ms());
    bad |= pack_str(&pk, "kind") || pack_str(&pk, kind);
    bad |= pack_str(&pk, "op") || pack_str(&pk, rec ? "put" : "del");
    bad |= pack_str(&pk, "key") || msgpack_pack_bin(&pk, key->mv_size) ||
           msgpack_pack_bin_body(&pk, key->mv_data, key->mv_size);
    bad |= pack_str(&pk, "rec");
    if (rec)
        bad |= msgpack_pack_bin(&pk, rec->mv_size) ||
               msgpack_pack_bin_body(&pk, rec->mv_data, rec->mv_size);
    else
        bad |= msgpack_pack_nil(&pk);
    return bad ? -ENOMEM : 0;
}

/* Append the change for a write in db to the log, in the same txn. */
static int change_append(pv_txn_t *txn, int db, const MDB_val *key,
                         const MDB_val *rec)
{
    uint64_t seq;
    int rc = meta_get_u64(txn, store_seq_key, &seq);
    if (rc)
        return rc;
    seq++;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (pv_fail("store_change") ||
        change_encode(&sb, seq, store_dbs[db].kind, key, rec)) {
        msgpack_sbuffer_destroy(&sb);
        return txn_fail_errno(txn, -ENOMEM);
    }
    uint8_t kb[8];
    pv_be64_put(kb, seq);
    MDB_val k = { 8, kb }, v = { sb.size, sb.data };
    /* Sequences only grow, so every entry goes at the end of the tree. */
    rc = mdb_put(txn->mdb, txn->store->dbi[PV_DB_CHANGES], &k, &v, MDB_APPEND);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return txn_fail(txn, rc);
    return meta_put_u64(txn, store_seq_key, seq);
}

/* ---------------- put, delete, scan ---------------- */

static void txn_deleted(pv_txn_t *txn)
{
    if (txn->pending)
        ((store_pending_t *)txn->pending)->deleted = true;
}

int pv_txn_put(pv_txn_t *txn, int db, const void *key, size_t klen,
               const void *val, size_t vlen, bool no_overwrite)
{
    int rc = txn_check(txn, db, true);
    if (rc)
        return rc;
    if (pv_fail("store_put"))
        return txn_fail(txn, MDB_MAP_FULL);
    MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
    rc = mdb_put(txn->mdb, txn->store->dbi[db], &k, &v,
                 no_overwrite ? MDB_NOOVERWRITE : 0);
    if (rc == MDB_KEYEXIST && no_overwrite)
        return -EEXIST;
    if (rc)
        return txn_fail(txn, rc);
    if (!store_dbs[db].kind)
        return 0;
    MDB_val rec = { vlen, (void *)val };
    k = (MDB_val){ klen, (void *)key };
    return change_append(txn, db, &k, &rec);
}

int pv_txn_del(pv_txn_t *txn, int db, const void *key, size_t klen)
{
    int rc = txn_check(txn, db, true);
    if (rc)
        return rc;
    MDB_val k = { klen, (void *)key };
    rc = mdb_del(txn->mdb, txn->store->dbi[db], &k, NULL);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc)
        return txn_fail(txn, rc);
    txn_deleted(txn);
    if (!store_dbs[db].kind)
        return 0;
    return change_append(txn, db, &k, NULL);
}

int pv_txn_clear(pv_txn_t *txn, int db)
{
    int rc = txn_check(txn, db, true);
    if (rc)
        return rc;
    if (store_dbs[db].kind || db == PV_DB_META || db == PV_DB_CHANGES)
        return -EINVAL; /* the log and what it logs are never emptied wholesale */
    rc = mdb_drop(txn->mdb, txn->store->dbi[db], 0);
    if (rc)
        return txn_fail(txn, rc);
    txn_deleted(txn);
    return 0;
}

static bool has_prefix(const MDB_val *k, const void *prefix, size_t plen)
{
    return plen == 0 ||
           (k->mv_size >= plen && memcmp(k->mv_data, prefix, plen) == 0);
}

/* The smallest key above every key that starts with prefix: prefix with
 * its last non-0xff byte incremented and the rest dropped. 0: none. */
static size_t prefix_succ(const uint8_t *prefix, size_t plen, uint8_t *out)
{
    if (plen)
        memcpy(out, prefix, plen);
    while (plen > 0 && out[plen - 1] == 0xff)
        plen--;
    if (plen > 0)
        out[plen - 1]++;
    return plen;
}

/* Position c on the first key of a forward walk. */
static int scan_first_fwd(pv_txn_t *txn, int db, MDB_cursor *c, MDB_val *k,
                          MDB_val *v, const void *prefix, size_t plen,
                          const void *after, size_t alen)
{
    MDB_val a = { alen, (void *)after }, p = { plen, (void *)prefix };
    if (after && mdb_cmp(txn->mdb, txn->store->dbi[db], &a, &p) >= 0) {
        *k = a;
        int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
        if (rc == 0 && mdb_cmp(txn->mdb, txn->store->dbi[db], k, &a) == 0)
            rc = mdb_cursor_get(c, k, v, MDB_NEXT);
        return rc;
    }
    if (plen == 0)
        return mdb_cursor_get(c, k, v, MDB_FIRST);
    *k = p;
    return mdb_cursor_get(c, k, v, MDB_SET_RANGE);
}

/* Position c on the first key of a reverse walk: the last key below
 * min(after, successor of prefix). */
static int scan_first_rev(pv_txn_t *txn, int db, MDB_cursor *c, MDB_val *k,
                          MDB_val *v, const void *prefix, size_t plen,
                          const void *after, size_t alen)
{
    uint8_t succ[512];
    size_t slen = prefix_succ(prefix, plen, succ);
    MDB_val bound = { slen, succ }, a = { alen, (void *)after };
    bool have = slen > 0;
    if (after && (!have || mdb_cmp(txn->mdb, txn->store->dbi[db], &a,
                                   &bound) < 0)) {
        bound = a;
        have = true;
    }
    if (!have)
        return mdb_cursor_get(c, k, v, MDB_LAST);
    *k = bound;
    int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
        return mdb_cursor_get(c, k, v, MDB_LAST);
    return rc ? rc : mdb_cursor_get(c, k, v, MDB_PREV);
}

int pv_txn_scan(pv_txn_t *txn, int db, const void *prefix, size_t plen,
                const void *after, size_t alen, bool reverse, pv_scan_fn fn,
                void *arg)
{
    int rc = txn_check(txn, db, false);
    if (rc)
        return rc;
    if (plen > 511 || (plen && !prefix))
        return txn_fail_errno(txn, -EINVAL);
    MDB_cursor *c;
    rc = mdb_cursor_open(txn->mdb, txn->store->dbi[db], &c);
    if (rc)
        return txn_fail(txn, rc);
    MDB_val k, v;
    rc = reverse ? scan_first_rev(txn, db, c, &k, &v, prefix, plen, after, alen)
                 : scan_first_fwd(txn, db, c, &k, &v, prefix, plen, after, alen);
    int out = 0;
    while (rc == 0 && has_prefix(&k, prefix, plen)) {
        pv_val_t key = { k.mv_data, k.mv_size }, val = { v.mv_data, v.mv_size };
        out = fn(arg, &key, &val);
        if (out) /* 1: stop; < 0: the caller's own failure, not sticky */
            break;
        rc = mdb_cursor_get(c, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return txn_fail(txn, rc);
    return out < 0 ? out : 0;
}

/* ---------------- reading and trimming the change log ---------------- */

static int change_field_bin(const msgpack_object *o, pv_val_t *out)
{
    if (o->type == MSGPACK_OBJECT_NIL) {
        *out = (pv_val_t){ NULL, 0 };
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_BIN)
        return -EIO;
    *out = (pv_val_t){ o->via.bin.ptr, o->via.bin.size };
    return 0;
}

static bool obj_str_is(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* The static kind name for an entry's kind (so c->kind outlives it). */
static const char *change_kind(const msgpack_object *o)
{
    for (size_t i = 0; i < PV_DB_COUNT; i++)
        if (store_dbs[i].kind && obj_str_is(o, store_dbs[i].kind))
            return store_dbs[i].kind;
    return NULL;
}

/* One entry into c; key and record point into buf (the map). */
static int change_decode(const msgpack_object *m, pv_change_t *c)
{
    if (m->type != MSGPACK_OBJECT_MAP)
        return -EIO;
    memset(c, 0, sizeof(*c));
    unsigned seen = 0;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        const msgpack_object *v = &m->via.map.ptr[i].val;
        int rc = 0;
        if (obj_str_is(k, "seq") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            c->seq = v->via.u64, seen |= 1;
        else if (obj_str_is(k, "t") &&
                 (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                  v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER))
            c->time_ms = v->via.i64, seen |= 2;
        else if (obj_str_is(k, "kind") && (c->kind = change_kind(v)))
            seen |= 4;
        else if (obj_str_is(k, "op") &&
                 (obj_str_is(v, "put") || obj_str_is(v, "del")))
            c->del = obj_str_is(v, "del"), seen |= 8;
        else if (obj_str_is(k, "key"))
            rc = change_field_bin(v, &c->key), seen |= 16;
        else if (obj_str_is(k, "rec"))
            rc = change_field_bin(v, &c->record), seen |= 32;
        if (rc)
            return rc;
    }
    return seen == 63 ? 0 : -EIO;
}

int pv_changes_read(pv_txn_t *txn, uint64_t after, size_t max,
                    int (*fn)(void *arg, const pv_change_t *c), void *arg)
{
    int rc = txn_check(txn, PV_DB_CHANGES, false);
    if (rc || after == UINT64_MAX || max == 0)
        return rc;
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn->mdb, txn->store->dbi[PV_DB_CHANGES], &cur);
    if (rc)
        return txn_fail(txn, rc);
    uint8_t kb[8];
    pv_be64_put(kb, after + 1);
    MDB_val k = { 8, kb }, v;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int out = 0;
    size_t n = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && n < max; n++) {
        size_t off = 0;
        pv_change_t c;
        if (msgpack_unpack_next(&up, v.mv_data, v.mv_size, &off) !=
                MSGPACK_UNPACK_SUCCESS ||
            change_decode(&up.data, &c) != 0) {
            out = txn_fail_errno(txn, -EIO); /* a damaged log */
            break;
        }
        out = fn(arg, &c);
        if (out)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    msgpack_unpacked_destroy(&up);
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return txn_fail(txn, rc);
    return out < 0 ? out : 0;
}

int pv_changes_trim(pv_txn_t *txn, uint64_t upto)
{
    int rc = txn_check(txn, PV_DB_CHANGES, true);
    if (rc)
        return rc;
    MDB_cursor *c;
    rc = mdb_cursor_open(txn->mdb, txn->store->dbi[PV_DB_CHANGES], &c);
    if (rc)
        return txn_fail(txn, rc);
    MDB_val k, v;
    /* Re-read the first entry each time: no reliance on where a cursor
     * sits after a delete. */
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size != 8 || pv_be64_get(k.mv_data) > upto)
            break;
        rc = mdb_cursor_del(c, 0);
        if (rc)
            break;
        txn_deleted(txn);
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return txn_fail(txn, rc);
    return 0;
}

/* ---------------- blobs ---------------- */

/* Blob names are pv_hex's lower-case spelling and only that, so the
 * sweep never takes a file that pv_blob_path did not name ("AB/...") for
 * a blob. True when s is exactly n lower-case hex digits. */
static bool lower_hex(const char *s, size_t n)
{
    return strlen(s) == n && strspn(s, PV_HEX_DIGITS) == n;
}

/* A blob file name: exactly 64 lower-case hex digits. */
static int unhex32(const char *s, uint8_t out[32])
{
    return lower_hex(s, 64) ? pv_unhex(s, out, 32) : -EINVAL;
}

void pv_blob_path(pv_store_t *store, const uint8_t sha256[32], char *out,
                  size_t outlen)
{
    char hex[65];
    pv_hex(sha256, 32, hex);
    /* store_paths() left room for "/ab/<64 hex>" in PATH_MAX, the size
     * every caller passes, so this is never cut; were it cut, it would
     * name another file, so it names none. */
    int n = snprintf(out, outlen, "%s/%.2s/%s", store->blobs_dir, hex, hex);
    if ((n < 0 || (size_t)n >= outlen) && outlen > 0)
        out[0] = '\0';
}

static void dir_of(const char *path, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, outlen, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

static int fsync_fd(int fd)
{
    while (fsync(fd) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

static void unpin_locked(pv_store_t *s, pv_blob_pin_t *pin)
{
    if (pin->prev)
        pin->prev->next = pin->next;
    else
        s->pins = pin->next;
    if (pin->next)
        pin->next->prev = pin->prev;
    pin->next = pin->prev = NULL;
    pin->held = false;
}

static void pin_locked(pv_store_t *s, pv_blob_pin_t *pin, const uint8_t sha256[32])
{
    if (pin->held) /* a pin used again: it holds the new blob only */
        unpin_locked(s, pin);
    memcpy(pin->sha256, sha256, 32);
    pin->prev = NULL;
    pin->next = s->pins;
    if (s->pins)
        s->pins->prev = pin;
    s->pins = pin;
    pin->held = true;
}

void pv_blob_unpin(pv_store_t *store, pv_blob_pin_t *pin)
{
    if (!pin || !pin->held)
        return;
    pthread_mutex_lock(&store->pin_mu);
    unpin_locked(store, pin);
    pthread_mutex_unlock(&store->pin_mu);
}

void pv_blob_pin_move(pv_store_t *store, pv_blob_pin_t *to, pv_blob_pin_t *from)
{
    if (!from->held)
        return;
    pthread_mutex_lock(&store->pin_mu);
    pin_locked(store, to, from->sha256);
    unpin_locked(store, from);
    pthread_mutex_unlock(&store->pin_mu);
}

/* Step 3 of pv_blob_commit_file, under pin_mu when pinning: the name. */
static int blob_put_name(pv_store_t *store, const char *tmp_path, const char *path,
                     const uint8_t sha256[32], pv_blob_pin_t *pin)
{
    if (pin) /* before the file is looked for: see the file comment */
        pin_locked(store, pin, sha256);
    /* content-addressed, so an existing file is the same */
    if (access(path, F_OK) == 0) {
        unlink(tmp_path);
        return 0;
    }
    if (pv_fail("blob_rename"))
        return -EIO;
    if (rename(tmp_path, path) < 0)
        return -errno;
    return 1; /* renamed: its directory entry is to be made durable */
}

int pv_blob_commit_file(pv_store_t *store, const char *tmp_path,
                        const uint8_t sha256[32], pv_blob_pin_t *pin)
{
    char path[PATH_MAX], shard[PATH_MAX];
    pv_blob_path(store, sha256, path, sizeof(path));
    dir_of(path, shard, sizeof(shard));
    bool sync = !store->opts.no_sync;

    /* 1. the bytes are durable */
    int fd = open(tmp_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = pv_fail("blob_fsync") ? -EIO : sync ? fsync_fd(fd) : 0;
    close(fd);
    if (rc)
        return rc;
    /* 2. its shard directory exists, durably */
    if (mkdir(shard, 0755) == 0) {
        if (sync && (rc = pv_fsync_dir(store->blobs_dir)))
            return rc;
    } else if (errno != EEXIST) {
        return -errno;
    }
    /* 3. the name, pinned first (the unlinks after commits look at pins
     * under the same lock) */
    pthread_mutex_lock(&store->pin_mu);
    rc = blob_put_name(store, tmp_path, path, sha256, pin);
    if (rc < 0 && pin)
        unpin_locked(store, pin);
    pthread_mutex_unlock(&store->pin_mu);
    if (rc <= 0)
        return rc;
    /* 4. the rename is durable: only now may a record name the blob */
    rc = sync ? pv_fsync_dir(shard) : 0;
    if (rc < 0)
        pv_blob_unpin(store, pin);
    return rc;
}

static int blob_count(pv_txn_t *txn, const uint8_t sha256[32], uint64_t *n)
{
    return get_u64(txn, PV_DB_BLOBS, sha256, 32, n);
}

static int blob_count_put(pv_txn_t *txn, const uint8_t sha256[32], uint64_t n)
{
    uint8_t b[8];
    pv_be64_put(b, n);
    return pv_txn_put(txn, PV_DB_BLOBS, sha256, 32, b, 8, false);
}

int pv_blob_ref(pv_txn_t *txn, const uint8_t sha256[32])
{
    int rc = txn_check(txn, PV_DB_BLOBS, true);
    uint64_t n;
    if (rc || (rc = blob_count(txn, sha256, &n)))
        return rc;
    if (n == 0) {
        /* A record must never name a file that is not there: also closes
         * the race with an unlink of the same blob after a commit. */
        char path[PATH_MAX];
        pv_blob_path(txn->store, sha256, path, sizeof(path));
        if (access(path, F_OK) < 0)
            return txn_fail_errno(txn, -ENOENT);
    }
    return blob_count_put(txn, sha256, n + 1);
}

static store_pending_t *txn_pending(pv_txn_t *txn)
{
    if (!txn->pending) {
        store_pending_t *p = pv_fail("store_pending") ? NULL
                                                      : calloc(1, sizeof(*p));
        if (!p)
            return NULL;
        p->owned = true;
        txn->pending = p;
    }
    return txn->pending;
}

int pv_blob_unref(pv_txn_t *txn, const uint8_t sha256[32])
{
    int rc = txn_check(txn, PV_DB_BLOBS, true);
    uint64_t n;
    if (rc || (rc = blob_count(txn, sha256, &n)))
        return rc;
    if (n > 1)
        return blob_count_put(txn, sha256, n - 1);
    if (n == 0) {
        /* Tolerated so that deletes keep working; it means a bug. */
        pv_warn("store", "unref of a blob with no references");
        return 0;
    }
    store_pending_t *p = txn_pending(txn);
    store_unlink_t *u = p && !pv_fail("store_unref") ? malloc(sizeof(*u))
                                                      : NULL;
    if (!u)
        return txn_fail_errno(txn, -ENOMEM);
    memcpy(u->sha256, sha256, 32);
    u->next = p->unlinks;
    p->unlinks = u;
    rc = pv_txn_del(txn, PV_DB_BLOBS, sha256, 32);
    return rc == -ENOENT ? txn_fail_errno(txn, -EIO) : rc;
}

/* ---------------- the writer ---------------- */

/* Pages held by every tree as txn sees them (free pages not included). */
static uint64_t txn_pages(pv_store_t *s, MDB_txn *m)
{
    uint64_t n = 0;
    MDB_stat st;
    for (int i = -1; i < PV_DB_COUNT; i++) {
        MDB_dbi dbi = i < 0 ? 1 /* MAIN_DBI: the named dbs' records */ : s->dbi[i];
        if (mdb_stat(m, dbi, &st) == 0)
            n += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
    return n;
}

/* The quota above LMDB (Knot DNS's lesson). LMDB needs fresh pages even
 * to delete (copy-on-write), and pages freed by the last transactions are
 * not reusable yet; a map filled to the last page can then never be
 * emptied again. So writes that grow the trees stop at map - reserve and
 * only requests that delete something may go past it. */
static bool writer_over_quota(pv_store_t *s, uint64_t before, uint64_t after,
                              const store_pending_t *p)
{
    uint64_t pages = s->map_size / s->psize;
    uint64_t reserve = pages / 16 > 32 ? pages / 16 : 32;
    uint64_t limit = pages > 2 * reserve ? pages - reserve : pages / 2;
    return after > before && after > limit && !p->deleted;
}

/* Run one request in a nested txn of top. On success its post-commit work
 * joins top's; on failure nothing of it remains. */
static int writer_apply(pv_txn_t *top, pv_store_req_t *req, bool *map_full)
{
    pv_store_t *s = top->store;
    store_pending_t pend = { 0 };
    pv_txn_t child = { .store = s, .write = true, .pending = &pend };
    uint64_t before = txn_pages(s, top->mdb);
    MDB_txn *m;
    int rc = mdb_txn_begin(s->env, top->mdb, 0, &m);
    if (rc) {
        *map_full = rc == MDB_MAP_FULL;
        return store_errno(rc);
    }
    child.mdb = m;
    rc = req->apply(&child, req->arg);
    if (rc >= 0 && child.err)
        rc = child.err; /* apply ignored a sticky error */
    if (rc >= 0 && writer_over_quota(s, before, txn_pages(s, m), &pend)) {
        pend.map_full = true;
        rc = -ENOSPC;
    }
    if (rc >= 0) {
        int crc = mdb_txn_commit(m);
        if (crc == 0) {
            store_pending_t *tp = top->pending;
            store_unlink_t **tail = &tp->unlinks;
            while (*tail)
                tail = &(*tail)->next;
            *tail = pend.unlinks;
            return rc;
        }
        pend.map_full |= crc == MDB_MAP_FULL;
        rc = store_errno(crc);
    } else {
        mdb_txn_abort(m);
    }
    *map_full = pend.map_full;
    pending_clear(&pend);
    return rc;
}

/* One attempt at a batch. Returns true when it was abandoned because the
 * map is full and may grow; otherwise st[] holds every request's result. */
static bool writer_attempt(pv_store_t *s, pv_store_req_t **reqs, int n,
                           int *st, bool may_grow)
{
    store_pending_t pend = { 0 };
    pv_txn_t top;
    int rc = pv_txn_begin(s, &top, true);
    for (int i = 0; i < n && rc; i++)
        st[i] = rc;
    if (rc)
        return false;
    top.pending = &pend;
    for (int i = 0; i < n; i++) {
        bool full = false;
        st[i] = writer_apply(&top, reqs[i], &full);
        if (full && may_grow) {
            pv_txn_abort(&top);
            return true;
        }
    }
    bool full;
    rc = txn_commit(&top, &full);
    if (rc == 0)
        return false;
    if (full && may_grow)
        return true;
    for (int i = 0; i < n; i++)
        if (st[i] >= 0)
            st[i] = rc;
    return false;
}

static int writer_resize(pv_store_t *s, void *arg)
{
    uint64_t want = *(uint64_t *)arg;
    int rc = pv_fail("store_grow") ? ENOMEM : mdb_env_set_mapsize(s->env, want);
    MDB_envinfo info;
    if (rc == 0 && mdb_env_info(s->env, &info) == 0)
        s->map_size = info.me_mapsize;
    return rc;
}

/* Double the map, up to map_max. No txn of this process may be open:
 * the exclusive lock waits for readers to finish. */
static int writer_grow(pv_store_t *s)
{
    uint64_t want = s->map_size * 2;
    if (want > s->opts.map_max)
        want = s->opts.map_max;
    int rc = map_exclusive(s, writer_resize, &want);
    if (rc) {
        pv_error("store", "cannot grow the map to %llu bytes: %s",
                 (unsigned long long)want, mdb_strerror(rc));
        return store_errno(rc);
    }
    pv_info("store", "map grown to %llu bytes", (unsigned long long)s->map_size);
    return 0;
}

static void writer_reply_all(pv_store_req_t **reqs, int n, const int *st)
{
    for (int i = 0; i < n; i++)
        pv_actor_reply(&reqs[i]->msg, st[i]);
}

static void writer_flush(pv_store_t *s)
{
    int n = s->n_batch, st[STORE_BATCH_MAX];
    s->n_batch = 0;
    if (n == 0)
        return;
    bool may_grow = s->opts.map_max > s->map_size;
    while (writer_attempt(s, s->batch, n, st, may_grow)) {
        if (writer_grow(s) != 0)
            may_grow = false;
        else
            may_grow = s->opts.map_max > s->map_size;
    }
    writer_reply_all(s->batch, n, st);
}

static void writer_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    writer_flush(arg);
}

/* The actor's handler: collect; the flush event runs once this wake-up of
 * the actor is over, so everything that queued up during the previous
 * commit goes into the next one. */
static void on_close(pv_actor_t *self, pv_msg_t *msg)
{
    pv_store_t *s = pv_actor_state(self);
    writer_flush(s);
    pv_loop_stop(s->loop);
}

static void on_write(pv_actor_t *self, pv_msg_t *msg)
{
    pv_store_t *s = pv_actor_state(self);
    s->batch[s->n_batch++] = (pv_store_req_t *)msg;
    if (s->n_batch == 1)
        event_active(s->flush_ev, EV_TIMEOUT, 0);
    else if (s->n_batch == STORE_BATCH_MAX)
        writer_flush(s);
}

/* The store writer's messages. */
enum { STORE_WRITE, STORE_CLOSE, STORE_MSG_COUNT };
static const pv_actor_fn writer_on[STORE_MSG_COUNT] = {
    [STORE_WRITE] = on_write,
    [STORE_CLOSE] = on_close,
};
static const pv_actor_def_t writer_def = {"store-writer", writer_on, STORE_MSG_COUNT};

void pv_store_submit(pv_store_t *store, pv_store_req_t *req)
{
    req->msg.type = STORE_WRITE;
    pv_actor_send(store->writer, &req->msg);
}

typedef struct store_sync {
    pv_store_req_t req; /* first: the writer frees it through free_fn */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} store_sync_t;

/* The writer "frees" a request that has no reply address: for a sync
 * request that means waking its caller. */
static void store_sync_done(pv_msg_t *msg)
{
    store_sync_t *w = (store_sync_t *)msg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int pv_store_write_sync(pv_store_t *store, pv_store_apply_fn apply, void *arg)
{
    store_sync_t w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    w.req.apply = apply;
    w.req.arg = arg;
    w.req.msg.free_fn = store_sync_done;
    w.req.msg.status = -ESHUTDOWN; /* if dropped unanswered at close */
    pv_store_submit(store, &w.req);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return w.req.msg.status;
}

static void store_close_msg_free(pv_msg_t *msg)
{
    (void)msg; /* embedded in the store */
}

static int writer_start(pv_store_t *s)
{
    s->loop = pv_loop_new("store");
    if (!s->loop)
        return -ENOMEM;
    s->writer = pv_actor_new(s->loop, &writer_def, s);
    if (!s->writer)
        return -ENOMEM;
    s->flush_ev = event_new(pv_loop_base(s->loop), -1, 0, writer_flush_cb, s);
    if (!s->flush_ev)
        return -ENOMEM;
    s->close_msg.free_fn = store_close_msg_free;
    s->close_msg.type = STORE_CLOSE;
    return pv_loop_start(s->loop);
}

/* ---------------- open, sweep, close ---------------- */

/* Remove every file left in DATA/tmp (uploads cut short by a crash). */
static void sweep_tmp(pv_store_t *s)
{
    DIR *d = opendir(s->tmp_dir);
    if (!d)
        return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' &&
            (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    if (n)
        pv_info("store", "removed %d stale temp files", n);
}

static int sweep_shard(pv_txn_t *txn, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        uint8_t sha[32];
        pv_val_t v;
        if (unhex32(e->d_name, sha) != 0)
            continue;
        if (pv_txn_get(txn, PV_DB_BLOBS, sha, 32, &v) == -ENOENT &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* Blob files nobody references: a crash between a blob's rename and its
 * record's commit, or between a count's drop and the unlink. Only safe
 * before the writer runs (see the file comment). */
static int sweep_blobs(pv_store_t *s)
{
    pv_txn_t txn;
    int rc = pv_txn_begin(s, &txn, false);
    if (rc)
        return rc;
    DIR *d = opendir(s->blobs_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!lower_hex(e->d_name, 2))
            continue;
        char shard[PATH_MAX];
        if (snprintf(shard, sizeof(shard), "%s/%s", s->blobs_dir,
                     e->d_name) < (int)sizeof(shard))
            n += sweep_shard(&txn, shard);
    }
    if (d)
        closedir(d);
    pv_txn_abort(&txn);
    if (n)
        pv_info("store", "removed %d unreferenced blobs", n);
    return 0;
}

static int store_paths(pv_store_t *s, const char *data_dir)
{
    const struct {
        char *dst;
        const char *sub;
    } paths[] = {
        { s->env_dir, "store" }, { s->blobs_dir, "blobs" }, { s->tmp_dir, "tmp" },
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(paths); i++) {
        int n = snprintf(paths[i].dst, PATH_MAX, "%s/%s", data_dir, paths[i].sub);
        if (n < 0 || n >= PATH_MAX - 72) /* room for /ab/<64 hex> */
            return -ENAMETOOLONG;
        int rc = pv_mkdir_p(paths[i].dst, 0700);
        if (rc)
            return rc;
    }
    return 0;
}

static int store_env_open(pv_store_t *s)
{
    int rc = mdb_env_create(&s->env);
    if (rc)
        return store_errno(rc);
    unsigned flags = MDB_NOTLS | (s->opts.no_sync ? MDB_NOSYNC : 0);
    if ((rc = mdb_env_set_maxdbs(s->env, PV_DB_COUNT + 4)) ||
        (rc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS)) ||
        (rc = mdb_env_set_mapsize(s->env, s->opts.map_size)) ||
        (rc = mdb_env_open(s->env, s->env_dir, flags, 0600))) {
        pv_error("store", "cannot open %s: %s", s->env_dir, mdb_strerror(rc));
        return store_errno(rc);
    }
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    s->map_size = info.me_mapsize;
    s->psize = st.ms_psize;
    int dead = 0;
    mdb_reader_check(s->env, &dead); /* slots of crashed processes */
    return 0;
}

/* Create or open every database of the table; check the format. */
static int store_dbs_open(pv_store_t *s)
{
    pv_txn_t txn;
    int rc = pv_txn_begin(s, &txn, true);
    if (rc)
        return rc;
    for (int i = 0; i < PV_DB_COUNT && !txn.err; i++) {
        int mrc = mdb_dbi_open(txn.mdb, store_dbs[i].name, MDB_CREATE,
                               &s->dbi[i]);
        if (mrc)
            txn_fail(&txn, mrc);
    }
    uint64_t format = 0;
    if (!txn.err)
        meta_get_u64(&txn, store_format_key, &format);
    if (!txn.err && format == 0)
        meta_put_u64(&txn, store_format_key, STORE_FORMAT);
    else if (!txn.err && format != STORE_FORMAT) {
        pv_error("store", "store format %llu, this pvd knows %d",
                 (unsigned long long)format, STORE_FORMAT);
        txn_fail_errno(&txn, -EINVAL);
    }
    return pv_txn_commit(&txn);
}

static void store_free(pv_store_t *s)
{
    if (s->loop) {
        pv_loop_join(s->loop);
        if (s->writer)
            pv_actor_free(s->writer);
        if (s->flush_ev)
            event_free(s->flush_ev);
        pv_loop_free(s->loop);
    }
    if (s->env)
        mdb_env_close(s->env);
    /* Pins still held (requests freed after the stop) are let go, so that
     * their later pv_blob_unpin, finding them not held, leaves the store
     * alone. */
    pthread_mutex_lock(&s->pin_mu);
    for (pv_blob_pin_t *p = s->pins, *next; p; p = next) {
        next = p->next;
        p->next = p->prev = NULL;
        p->held = false;
    }
    s->pins = NULL;
    pthread_mutex_unlock(&s->pin_mu);
    pthread_cond_destroy(&s->map_cv);
    pthread_mutex_destroy(&s->map_mu);
    pthread_mutex_destroy(&s->pin_mu);
    free(s);
}

int pv_store_open(pv_store_t **out, const char *data_dir,
                  const pv_store_opts_t *opts)
{
    *out = NULL;
    pv_store_t *s = pv_fail("store_open") ? NULL : calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->map_mu, NULL);
    pthread_mutex_init(&s->pin_mu, NULL);
    pthread_cond_init(&s->map_cv, NULL);
    if (opts)
        s->opts = *opts;
    if (!s->opts.map_size)
        s->opts.map_size = STORE_MAP_DEFAULT;
    int rc = store_paths(s, data_dir);
    if (!rc)
        rc = store_env_open(s);
    if (!rc)
        rc = store_dbs_open(s);
    if (!rc) {
        sweep_tmp(s);
        rc = sweep_blobs(s);
    }
    if (!rc)
        rc = writer_start(s);
    if (rc) {
        store_free(s); /* the writer never started */
        return rc;
    }
    *out = s;
    return 0;
}

void pv_store_close(pv_store_t *store)
{
    if (!store)
        return;
    /* FIFO mailbox: everything submitted before this is written first. */
    pv_actor_send(store->writer, &store->close_msg);
    store_free(store);
}

const char *pv_store_tmp_dir(pv_store_t *store)
{
    return store->tmp_dir;
}

const char *pv_store_blobs_dir(pv_store_t *store)
{
    return store->blobs_dir;
}

/* ---------------- stat, backup ---------------- */

int pv_store_stat(pv_store_t *store, pv_store_stat_t *out)
{
    memset(out, 0, sizeof(*out));
    pv_txn_t txn;
    int rc = pv_txn_begin(store, &txn, false);
    if (rc)
        return rc;
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(store->env, &info);
    mdb_env_stat(store->env, &st);
    out->map_size = info.me_mapsize;
    out->map_used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    for (int i = 0; i < PV_DB_COUNT; i++) {
        MDB_stat ds;
        rc = mdb_stat(txn.mdb, store->dbi[i], &ds);
        if (rc) {
            txn_fail(&txn, rc);
            break;
        }
        out->entries[i] = ds.ms_entries;
        out->bytes[i] = (ds.ms_branch_pages + ds.ms_leaf_pages + ds.ms_overflow_pages) *
                        (uint64_t)ds.ms_psize;
    }
    meta_get_u64(&txn, store_seq_key, &out->last_seq);
    rc = txn.err;
    pv_txn_abort(&txn);
    return rc;
}

int pv_store_backup(pv_store_t *store, const char *path)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    /* The copy runs its own read txn: hold the map steady like one. */
    map_enter(store);
    int rc = pv_fail("store_backup") ? ENOSPC
                                     : mdb_env_copyfd2(store->env, fd, MDB_CP_COMPACT);
    map_leave(store);
    rc = store_errno(rc);
    if (!rc)
        rc = fsync_fd(fd);
    if (close(fd) < 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    dir_of(path, dir, sizeof(dir));
    return pv_fsync_dir(dir);
}
