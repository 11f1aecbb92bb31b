/*
 * replicate.h — the S3 replicator (actors/replicate.c), on its own loop
 * ("sync"): copies the change log and the blobs it names to S3 when
 * s3_bucket is set. These are its messages; pvctl's admin actor asks them.
 */
#ifndef PV_ACTORS_REPLICATE_H
#define PV_ACTORS_REPLICATE_H

#include "app/app.h"

enum pv_repl_msg {
    /* pv_repl_ctl_t: op says what; always answered with status 0 and the
     * target's status after the op. */
    PV_REPL_CTL,
    PV_REPL_PUBLIC_COUNT
};

enum pv_repl_op { PV_REPL_STATUS, PV_REPL_PAUSE, PV_REPL_RESUME, PV_REPL_NOW };

typedef struct pv_repl_status {
    char target[16];          /* "s3", "pg", "ddb" */
    char where[400];          /* s3://bucket/prefix, the database and table */
    char state[16];           /* "idle", "sending", "snapshot", "waiting" (after a failure),
                               * "paused", "refused"; "loading" (ddb: a full load) */
    uint64_t cursor;          /* last change-log entry durably in S3 */
    uint64_t head;            /* the change log's last entry */
    double lag_seconds;       /* age of the oldest entry not yet in S3; 0 when caught up */
    uint64_t bytes_pending;   /* the blobs of the batch in flight not yet sent */
    uint64_t blobs, blob_bytes, blobs_present, segments; /* since start */
    uint64_t failures;        /* failed passes since start */
    uint64_t blobs_repaired;  /* found in S3 with another size (a cut-short PUT kept), sent again */
    uint64_t parts_resumed;   /* parts of broken multipart uploads found in S3, not sent again */
    uint64_t snapshots;       /* snapshots sent since start */
    uint64_t records;         /* databases: rows or items written since start */
    uint64_t last_snapshot_seq; /* the last one's sequence (0: none since start) */
    int64_t last_snapshot_ms; /* when it was sent (0: none since start) */
    char last_error[256];     /* "" when none */
    int64_t last_error_ms;    /* when (epoch ms); 0: never */
    int64_t next_retry_ms;    /* when the next pass runs after a failure (epoch ms); 0: none */
} pv_repl_status_t;

typedef struct pv_repl_ctl {
    pv_msg_t msg;             /* type PV_REPL_CTL */
    int op;                   /* enum pv_repl_op */
    pv_repl_status_t st;      /* out */
} pv_repl_ctl_t;

/* The META key of the S3 target's cursor (u64 big-endian): the change log
 * is trimmed only below it (actors/sync.c). */
#define PV_REPL_S3_CURSOR "sync/s3/cursor"

/* With s3_bucket set: makes the actor and its loop and starts the loop
 * (app->repl). Without: nothing (app->repl stays NULL). Before the core
 * loop starts; 0 or -errno with err saying why. */
int pv_repl_start(pv_app_t *app, char *err, size_t errlen);
/* Stops the loop after its requests are cancelled (a batch in flight is
 * sent again at the next start: delivery is at least once). Before the
 * store closes. */
void pv_repl_stop(pv_app_t *app);
void pv_repl_free(pv_app_t *app);

#endif
