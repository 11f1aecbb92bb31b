/*
 * restore.h — `pvd --restore-from s3://BUCKET/PREFIX [--at POINT]`
 * (actors/restore.c): a data directory rebuilt from the S3 replica.
 */
#ifndef PV_ACTORS_RESTORE_H
#define PV_ACTORS_RESTORE_H

#include "base/config.h"

#include <stdbool.h>

/* Into cfg->data_dir (empty), with the S3 keys of cfg (endpoint, region,
 * path style, profile) and the credentials chain. at: NULL (the newest),
 * a change number, or an RFC 3339 time. pull_blobs: fetch every blob now;
 * else pvd fetches them after it starts (actors/pull.h). Prints what it
 * did; returns the process exit status (0 or 1). */
int pv_restore_s3_cli(const pv_config_t *cfg, const char *url, const char *at, bool pull_blobs);

#endif
