/*
 * check.h — the store's invariants, checked record by record.
 *
 * What must hold after every commit, whatever failed before it:
 *  - every record decodes, and its key agrees with what it holds;
 *  - the indexes agree with the records both ways: emails <-> users,
 *    photo_sha <-> photos, jobs <-> videos that are queued or running;
 *  - photos, tokens and videos belong to users that exist;
 *  - PV_DB_BLOBS counts exactly the references the records make (a photo:
 *    its original and thumbnail; a ready video: its MP4 and poster), and
 *    each counted blob's file is on disk; a photo's and a ready video's
 *    `bytes` are their file's size (what usage adds up), and with
 *    PV_CHECK_CONTENT each counted file's SHA-256 is its name;
 *  - a queued or running video's photos exist (a photo in use cannot be
 *    deleted: the render would find nothing to read);
 *  - the change log's entries decode, their sequences rise, the head in
 *    META is the last one, and for every key of a logged database the last
 *    entry is the record as it is now (a put of the same bytes, or a
 *    delete of a key that is gone); with no entry trimmed yet, every
 *    record has one.
 * The digest covers every entry of every database, so two checks with the
 * same digest saw the same store: failure walks compare it before and
 * after a failed operation ("unchanged"). Blob files nobody references are
 * not a fault (a crash or a failed commit leaves them, and an upload or a
 * render has its blobs on disk just before its record commits; the store
 * removes them at the next start) and are not in the digest: they are
 * counted (stray_files), as are the files in DATA/tmp, so that a test can
 * ask for none where nothing can be on its way, such as right after a
 * start.
 *
 * Used by the tests and by the test build's `pvctl debug check`; nothing
 * in pvd's normal path calls it.
 */
#ifndef PV_MODEL_CHECK_H
#define PV_MODEL_CHECK_H

#include <stdint.h>

#include "base/pv.h"
#include "store/store.h"

typedef struct pv_check {
    int problems;          /* invariants found broken */
    pv_sb_t text;          /* one line per problem (the first few) */
    char digest[65];       /* hex SHA-256 over every database's entries */
    char db_digest[PV_DB_COUNT][65]; /* the same, one database at a time (a restore
                                      * compares the records' and indexes' ones) */
    uint64_t records;      /* entries over every database */
    uint64_t blobs;        /* referenced blobs (PV_DB_BLOBS entries) */
    uint64_t changes;      /* change log entries */
    uint64_t seq;          /* change log head (META "seq") */
    uint64_t stray_files;  /* files under DATA/blobs that no count names */
    uint64_t tmp_files;    /* files in DATA/tmp */
} pv_check_t;

enum {
    PV_CHECK_CONTENT = 1 << 0, /* also hash every counted blob file (reads them all) */
};

/* Reads the store in one read transaction. 0 (see out->problems), or
 * -errno when the store could not be read at all. pv_check_free after. */
int pv_check_store(pv_store_t *store, pv_check_t *out);
/* The same with PV_CHECK_* flags. */
int pv_check_store_flags(pv_store_t *store, unsigned flags, pv_check_t *out);
void pv_check_free(pv_check_t *c);

#endif
