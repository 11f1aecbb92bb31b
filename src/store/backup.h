/*
 * backup.h — backups of a running pvd and their restore.
 *
 * A backup is one tar (ustar) archive whose names are paths under the data
 * directory, so that `tar -xf FILE -C DATA` is a valid restore by hand:
 *
 *   pv-backup.json      manifest (format, version, counts), always first
 *   store/data.mdb      compacted, consistent LMDB copy (mdb_env_copy2)
 *   keys.json           JWT and presign keys (tokens and links stay valid)
 *   tls/...             certificate and key, when they live in the data dir
 *   blobs/ab/<sha256>   photo and video files (unless left out)
 *
 * The archive is written to FILE.tmp, fsynced and renamed: FILE is either
 * absent or complete. Written with mode 0600: it holds keys.
 */
#ifndef PV_BACKUP_H
#define PV_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define PV_BACKUP_FORMAT "pv-backup"
#define PV_BACKUP_VERSION 1

typedef struct pv_backup_info {
    uint64_t bytes;        /* archive size */
    uint64_t store_bytes;  /* the compacted data.mdb */
    uint64_t files;        /* entries written or restored */
    uint64_t blobs;        /* blob files in it */
    uint64_t blob_bytes;
    uint64_t blobs_missing; /* listed but gone before they could be kept */
    uint64_t last_seq;     /* change-log head when the copy began */
    double seconds;
} pv_backup_info_t;

/* Blocking (minutes for a big store): call on a worker thread. `path` must
 * be absolute. tls_cert/tls_key are included when under data_dir. 0 or
 * -errno with err set. */
int pv_backup_write(pv_store_t *store, const char *data_dir, const char *tls_cert,
                    const char *tls_key, const char *path, bool blobs,
                    pv_backup_info_t *info, char *err, size_t errlen);

/* The same archive without blobs, for the S3 snapshots: written to
 * DATA/tmp/snapshot-NAME (path: where), which the caller uploads and
 * removes (a crash leaves it to the store's sweep of DATA/tmp). */
int pv_snapshot_write(pv_store_t *store, const char *data_dir, const char *tls_cert,
                      const char *tls_key, const char *name, char *path, size_t pathlen,
                      pv_backup_info_t *info, char *err, size_t errlen);

/* Extract a backup into data_dir, which must not hold a store yet. Only
 * the names listed above are accepted; blob files are checked against
 * their SHA-256 names. pvd must not be running on data_dir. */
int pv_restore(const char *archive, const char *data_dir, pv_backup_info_t *info,
               char *err, size_t errlen);

/* `pvd --restore FILE`: runs pv_restore and reports on stdout/stderr;
 * returns the process exit status (0 or 1). */
int pv_restore_cli(const char *archive, const char *data_dir);

#endif
