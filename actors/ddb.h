/*
 * ddb.h — the DynamoDB replicator (actors/ddb.c), on its own loop
 * ("ddb"): mirrors every video's status into the table dynamodb_table
 * when that is set. It answers PV_REPL_CTL (actors/replicate.h) like the
 * S3 target; pvctl finds it as target "ddb".
 */
#ifndef PV_ACTORS_DDB_H
#define PV_ACTORS_DDB_H

#include "app/app.h"

/* The META key of its cursor (u64 big-endian): the last change-log entry
 * whose effect is in the table. Absent: a full load comes first. */
#define PV_REPL_DDB_CURSOR "sync/ddb/cursor"

/* With dynamodb_table set: makes the actor and its loop, enrols it as
 * target "ddb" (actors/sync.c) and starts the loop. Without: nothing.
 * Before the core loop starts; 0 or -errno with err saying why. */
int pv_ddb_repl_start(pv_app_t *app, char *err, size_t errlen);
/* Stops the loop after its requests are cancelled (a batch in flight is
 * sent again at the next start). Before the store closes. */
void pv_ddb_repl_stop(pv_app_t *app);
void pv_ddb_repl_free(pv_app_t *app);

#endif
