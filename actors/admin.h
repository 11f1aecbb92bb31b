/*
 * admin.h — the admin actor (actors/admin.c): pvctl's Unix socket on the
 * core loop.
 */
#ifndef PV_ACTORS_ADMIN_H
#define PV_ACTORS_ADMIN_H

#include "app/app.h"

typedef struct pv_admin pv_admin_t;

int pv_admin_start(pv_app_t *app);  /* after the store and core loop exist */
void pv_admin_stop(pv_app_t *app);  /* on the core loop's thread or after it stopped */

#endif
