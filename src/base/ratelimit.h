/*
 * ratelimit.h — token buckets by key, for the login limits (per account
 * and per client address); src/base/ratelimit.c.
 *
 * A fixed-size table: memory is bounded whatever the keys, and a key
 * pushed out of the table starts again with a full bucket. Not
 * thread-safe: each owner (the auth actor) has its own tables.
 */
#ifndef PV_RATELIMIT_H
#define PV_RATELIMIT_H

#include <stdint.h>

typedef struct pv_ratelimit pv_ratelimit_t;
/* burst attempts, refilled at per_minute; a table of `slots` keys (LRU).
 * NULL for a bad argument or no memory. */
pv_ratelimit_t *pv_ratelimit_new(int burst, double per_minute, int slots);
void pv_ratelimit_free(pv_ratelimit_t *rl);
/* 0 when allowed (consumes one); else seconds until the next attempt. */
int pv_ratelimit_take(pv_ratelimit_t *rl, const char *key, int64_t now_ms);

#endif
