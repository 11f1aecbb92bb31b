/*
 * sync.h — the change log's consumer side (actors/sync.c), on the core
 * loop: trimming now; replication targets later.
 */
#ifndef PV_ACTORS_SYNC_H
#define PV_ACTORS_SYNC_H

#include "app/app.h"

int pv_sync_start(pv_app_t *app);   /* before the core loop starts */
void pv_sync_free(pv_app_t *app);   /* after it stopped */

#endif
