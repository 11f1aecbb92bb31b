/*
 * pull.h — the blobs of a restore from S3, fetched after start
 * (actors/pull.c): in the background, and at once for a request or a
 * render that needs one (PV_PULL_NOW, in app/app.h).
 */
#ifndef PV_ACTORS_PULL_H
#define PV_ACTORS_PULL_H

#include "app/app.h"

/* META key that `pvd --restore-from` leaves when it did not fetch the
 * blobs: the S3 location ("s3://BUCKET/PREFIX/") they are fetched from.
 * The puller deletes it once every blob the store names is here. */
#define PV_PULL_META "restore/pull"

/* With PV_PULL_META in the store: makes the puller and its loop ("pull")
 * and starts it (app->puller). Without: nothing. Before the core loop
 * starts; 0 or -errno with err saying why. */
int pv_pull_start(pv_app_t *app, char *err, size_t errlen);
/* Stops its loop (fetches in flight are dropped; their temp files go;
 * askers still waiting are answered -ECANCELED). */
void pv_pull_stop(pv_app_t *app);
void pv_pull_free(pv_app_t *app);

#endif
