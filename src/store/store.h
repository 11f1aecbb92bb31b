/*
 * store.h — the LMDB store: the primary copy of every record.
 *
 * One LMDB environment under the data directory with one named database per
 * record kind (enum pv_db). Keys are fixed-width and big-endian so cursors
 * sort numerically; ids are 16-byte time-ordered values (src/crypto.h), so
 * "newest first" is a reverse cursor walk. Values are msgpack records
 * (src/records.h, shapes in schema/records.json).
 *
 * Every operation goes through pv_txn_t, which carries a sticky error (Knot
 * DNS's idea): the first failure turns every later call into a no-op that
 * returns the same error, and the caller checks once, at the end. MDB codes
 * map to -errno in one place: MDB_NOTFOUND -> -ENOENT, MDB_MAP_FULL and
 * ENOSPC -> -ENOSPC, MDB_KEYEXIST -> -EEXIST, others -> -EIO.
 *
 * Writes in a database marked "logged" append a change entry (monotonic
 * sequence, kind, op, key, record) to PV_DB_CHANGES in the same
 * transaction: the replicators read that log.
 *
 * Reads may happen on any thread (pv_txn_begin(..., false)). All writes go
 * through the store writer (pv_store_submit): one dedicated thread that
 * takes every queued write request, runs each in its own nested
 * transaction (a failing request rolls back only itself), commits them all
 * with one fsync (group commit), then replies to each.
 *
 * Blobs (photo originals, thumbnails, videos) are files under
 * DATA/blobs/xx/<sha256 hex>, written temp -> fsync -> rename -> fsync dir
 * before the record that names them commits. PV_DB_BLOBS holds a reference
 * count per blob; when it drops to zero the file is unlinked after the
 * commit, unless a pin holds it: a blob made durable for a record still on
 * its way (an upload, a render) may be a file that was already there, and
 * a delete of the last record naming it must not take it from under the
 * record about to name it again. pv_store_open() also collects blob files
 * with no reference and stale temp files (left by a crash).
 */
#ifndef PV_STORE_H
#define PV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/actor.h"

typedef struct pv_store pv_store_t;

enum pv_db {
    PV_DB_META,      /* name -> value: "seq", cursors, format version */
    PV_DB_USERS,     /* user_id(16) -> pv_user_t (logged: "user") */
    PV_DB_EMAILS,    /* normalised email -> user_id(16) */
    PV_DB_PHOTOS,    /* user_id(16)|photo_id(16) -> pv_photo_t (logged: "photo") */
    PV_DB_PHOTO_SHA, /* user_id(16)|sha256(32) -> photo_id(16) (dedupe) */
    PV_DB_TOKENS,    /* sha256(refresh token)(32) -> pv_token_t */
    PV_DB_FAMILIES,  /* family_id(16) -> revoked flag (1 byte) */
    PV_DB_BLOBS,     /* sha256(32) -> refcount (u64 BE) */
    PV_DB_VIDEOS,    /* user_id(16)|video_id(16) -> pv_video_t (logged: "video") */
    PV_DB_JOBS,      /* video_id(16) -> user_id(16): queued or running jobs */
    PV_DB_CHANGES,   /* seq (u64 BE) -> change entry */
    PV_DB_SHARES,    /* sha256(share token)(32) -> pv_share_t (logged: "share") */
    PV_DB_COUNT
};

typedef struct pv_store_opts {
    uint64_t map_size;  /* initial map size in bytes (default 1 GiB) */
    uint64_t map_max;   /* grow up to this on MAP_FULL; 0: never grow */
    bool no_sync;       /* tests only: skip fsync */
} pv_store_opts_t;

/* Opens (creating) DATA/store (LMDB) and DATA/blobs, DATA/tmp; starts the
 * writer thread; collects orphans. */
int pv_store_open(pv_store_t **out, const char *data_dir,
                  const pv_store_opts_t *opts);
/* Drains the writer, then closes; pins still held are released (their
 * pv_blob_unpin after this does nothing). */
void pv_store_close(pv_store_t *store);
const char *pv_store_tmp_dir(pv_store_t *store); /* DATA/tmp */
const char *pv_store_blobs_dir(pv_store_t *store); /* DATA/blobs */

typedef struct pv_store_stat {
    uint64_t map_size, map_used; /* bytes */
    uint64_t entries[PV_DB_COUNT];
    uint64_t bytes[PV_DB_COUNT]; /* the pages each database takes */
    uint64_t last_seq;           /* change log head */
} pv_store_stat_t;
int pv_store_stat(pv_store_t *store, pv_store_stat_t *out);
/* Consistent compacted copy (mdb_env_copy2 MDB_CP_COMPACT) to path. */
int pv_store_backup(pv_store_t *store, const char *path);

/* ---- transactions ---- */
typedef struct pv_txn {
    pv_store_t *store;
    void *mdb;      /* MDB_txn * */
    int err;        /* sticky error: 0 or -errno */
    bool write;
    void *pending;  /* store-private: post-commit actions */
} pv_txn_t;

typedef struct pv_val {
    const void *data; /* points into the map; valid until the txn ends */
    size_t len;
} pv_val_t;

int pv_txn_begin(pv_store_t *store, pv_txn_t *txn, bool write);
int pv_txn_commit(pv_txn_t *txn); /* returns the sticky error or commit's */
void pv_txn_abort(pv_txn_t *txn);

/* -ENOENT when absent (not sticky: a miss is an answer, not a failure). */
int pv_txn_get(pv_txn_t *txn, int db, const void *key, size_t klen,
               pv_val_t *val);
/* Put/delete; in a logged db also appends the change entry. With
 * no_overwrite a present key is -EEXIST (not sticky). */
int pv_txn_put(pv_txn_t *txn, int db, const void *key, size_t klen,
               const void *val, size_t vlen, bool no_overwrite);
int pv_txn_del(pv_txn_t *txn, int db, const void *key, size_t klen);
/* Empty a derived database (an index the records rebuild: emails,
 * photo_sha, blobs, jobs...); -EINVAL for META, the change log and the
 * logged databases. For restores (src/model/reindex.c). */
int pv_txn_clear(pv_txn_t *txn, int db);

/* Walk keys that start with prefix. Forward from the first key > after
 * (or from the start when after is NULL); reverse walks from the last key
 * < after downwards. fn returns 0 to go on, 1 to stop, <0 to fail. */
typedef int (*pv_scan_fn)(void *arg, const pv_val_t *key, const pv_val_t *val);
int pv_txn_scan(pv_txn_t *txn, int db, const void *prefix, size_t plen,
                const void *after, size_t alen, bool reverse, pv_scan_fn fn,
                void *arg);

/* Blob reference counting, inside a write txn. pv_blob_unref to zero
 * unlinks the file after a successful commit. pv_blob_ref of a blob with
 * no references yet requires its file on disk (-ENOENT, sticky, if not). */
int pv_blob_ref(pv_txn_t *txn, const uint8_t sha256[32]);
int pv_blob_unref(pv_txn_t *txn, const uint8_t sha256[32]);

/* ---- blobs on disk ---- */
/* DATA/blobs/ab/<hex>; out must hold PATH_MAX. */
void pv_blob_path(pv_store_t *store, const uint8_t sha256[32], char *out,
                  size_t outlen);

/* A pin: the caller's memory (nothing is allocated, nothing can fail),
 * zeroed before first use. While held, a commit that drops the blob's
 * last reference leaves its file on disk (unreferenced, it is collected
 * at the next start if nothing names it by then). */
typedef struct pv_blob_pin {
    struct pv_blob_pin *next, *prev;
    uint8_t sha256[32];
    bool held;
} pv_blob_pin_t;

/* Make the temp file `tmp_path` durable as the blob named by sha256:
 * fsync, rename (or drop it if the blob already exists), fsync the dir.
 * With a pin, the blob is pinned before it is looked for and stays pinned
 * on success, until pv_blob_unpin: call that once the record naming it
 * has committed, or failed. Blocking: call on a worker thread. */
int pv_blob_commit_file(pv_store_t *store, const char *tmp_path,
                        const uint8_t sha256[32], pv_blob_pin_t *pin);
/* Release a pin (a pin not held: nothing). Any thread. */
void pv_blob_unpin(pv_store_t *store, pv_blob_pin_t *pin);
/* Hand a held pin over to another (`to` must not be held). Any thread. */
void pv_blob_pin_move(pv_store_t *store, pv_blob_pin_t *to, pv_blob_pin_t *from);

/* ---- change log ---- */
typedef struct pv_change {
    uint64_t seq;
    int64_t time_ms;
    const char *kind;  /* "user", "photo", "video", "share" */
    bool del;          /* true: the key was deleted */
    pv_val_t key;
    pv_val_t record;   /* empty for deletes */
} pv_change_t;
/* Entries with seq > after, in order, at most max; fn as in pv_txn_scan. */
int pv_changes_read(pv_txn_t *txn, uint64_t after, size_t max,
                    int (*fn)(void *arg, const pv_change_t *c), void *arg);
/* Remove entries with seq <= upto. */
int pv_changes_trim(pv_txn_t *txn, uint64_t upto);

/* ---- the writer (group commit) ---- */
typedef int (*pv_store_apply_fn)(pv_txn_t *txn, void *arg);
/* A write request is a message embedding pv_store_req_t first. The writer
 * calls apply(txn, arg) in a nested transaction; its return value (or the
 * commit's failure) becomes msg.status, and the message is answered: its
 * continuation msg.k runs on msg.reply_to's loop. Any thread. A result >= 0 is success and is passed through
 * as it is; < 0 (or a sticky txn error) rolls back only this request.
 * apply may run more than once (the batch runs again after the map grew):
 * it must act only through txn. Writes that grow the store stop with
 * -ENOSPC short of a full map, keeping a reserve for requests that delete. */
typedef struct pv_store_req {
    pv_msg_t msg;
    pv_store_apply_fn apply;
    void *arg;
} pv_store_req_t;
void pv_store_submit(pv_store_t *store, pv_store_req_t *req);
/* Blocking convenience for tools and tests: submit and wait. */
int pv_store_write_sync(pv_store_t *store, pv_store_apply_fn apply, void *arg);

/* ---- keys ---- */
void pv_be64_put(uint8_t out[8], uint64_t v);
uint64_t pv_be64_get(const uint8_t in[8]);
/* out = a(16) | b(blen) */
size_t pv_key2(uint8_t *out, const uint8_t a[16], const void *b, size_t blen);

#endif
