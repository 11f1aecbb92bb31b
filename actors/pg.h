/*
 * pg.h — the PostgreSQL replicator (actors/pg.c), on its own loop ("pg"):
 * mirrors users (without password hashes), photos and videos into the
 * tables schema/records.json derives (pv_users, pv_photos, pv_videos) when
 * pg_dsn is set. It answers PV_REPL_CTL (actors/replicate.h) like the S3
 * target, under the name "pg".
 */
#ifndef PV_ACTORS_PG_H
#define PV_ACTORS_PG_H

#include "app/app.h"

/* The META key of its cursor (u64 big-endian): the change log is kept
 * above it (actors/sync.c). The database keeps its own copy (pv_schema),
 * which is where a pass starts from. */
#define PV_REPL_PG_CURSOR "sync/pg/cursor"

/* With pg_dsn set: checks the DSN, makes the actor and its loop, enrols it
 * as target "pg" and starts the loop (it connects in the background).
 * Without: nothing. Before the core loop starts; 0 or -errno with err
 * saying why (never the password). */
int pv_pg_start(pv_app_t *app, char *err, size_t errlen);
/* Stops the loop; a batch in flight is rolled back by the server and sent
 * again at the next start. Before the store closes. */
void pv_pg_stop(pv_app_t *app);
void pv_pg_free(pv_app_t *app);

/* "pg://HOST:PORT/DB" (or the socket directory for HOST) from a DSN, never
 * its password; -EINVAL (out: libpq's words) when libpq cannot parse it. */
int pv_pg_where(const char *dsn, char *out, size_t outlen);

#endif
