/*
 * sync.h — the change log's consumer side (actors/sync.c), on the core
 * loop: trimming below every replication target's cursor, and the table of
 * those targets.
 */
#ifndef PV_ACTORS_SYNC_H
#define PV_ACTORS_SYNC_H

#include "app/app.h"

int pv_sync_start(pv_app_t *app);   /* before the core loop starts */
void pv_sync_free(pv_app_t *app);   /* after it stopped */

/* A replicator enrols as a target (app->targets): pvctl sync finds it by
 * name, and the log is kept until its cursor (META cursor_key) passes an
 * entry. Before the core loop starts; -ENOSPC past PV_TARGETS_MAX. */
int pv_sync_add_target(pv_app_t *app, const char *name, const char *cursor_key,
                       pv_actor_t *actor);
/* The target named so (NULL: none). */
const struct pv_target *pv_sync_target(const pv_app_t *app, const char *name);

#endif
