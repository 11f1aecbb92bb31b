/*
 * ratelimit.c — the login rate limiter (see ratelimit.h): a token bucket
 * per key, each holding up to `burst` attempts and refilled continuously.
 *
 * A set-associative table: a key hashes (keyed SipHash, so clients cannot
 * aim at one set) to a set of WAYS slots; a miss takes an empty slot or
 * the least recently used one of that set. Lookups cost at most WAYS
 * compares whatever the table size. An evicted key starts again with a
 * full bucket: the table size bounds memory, not attackers' patience.
 */
#include "base/ratelimit.h"

#include "base/crypto.h"
#include "base/pv.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define RL_WAYS 8

typedef struct rl_slot {
    uint64_t hash;      /* keyed hash of the key; 0: empty */
    double tokens;      /* attempts left (fractional while refilling) */
    int64_t last_ms;    /* when tokens was last brought up to date */
    uint64_t used;      /* LRU stamp: higher is more recent */
} rl_slot_t;

struct pv_ratelimit {
    double burst;       /* bucket size */
    double per_ms;      /* refill rate, tokens per millisecond */
    int n_sets;         /* slots / RL_WAYS, at least 1 */
    uint64_t clock;     /* LRU stamp counter */
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    rl_slot_t *slots;   /* n_sets * RL_WAYS */
};

pv_ratelimit_t *pv_ratelimit_new(int burst, double per_minute, int slots)
{
    if (burst < 1 || !(per_minute > 0) || !isfinite(per_minute) || slots < 1)
        return NULL;
    if (pv_fail("ratelimit.new"))
        return NULL;
    pv_ratelimit_t *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    rl->n_sets = (slots + RL_WAYS - 1) / RL_WAYS;
    rl->slots = calloc((size_t)rl->n_sets * RL_WAYS, sizeof(rl_slot_t));
    if (!rl->slots) {
        free(rl);
        return NULL;
    }
    rl->burst = burst;
    rl->per_ms = per_minute / 60000.0;
    pv_random(rl->hkey, sizeof(rl->hkey));
    return rl;
}

void pv_ratelimit_free(pv_ratelimit_t *rl)
{
    if (!rl)
        return;
    free(rl->slots);
    free(rl);
}

static rl_slot_t *rl_find(pv_ratelimit_t *rl, const char *key, int64_t now_ms)
{
    uint8_t h8[crypto_shorthash_BYTES];
    uint64_t h = 0;

    crypto_shorthash(h8, (const uint8_t *)key, strlen(key), rl->hkey);
    memcpy(&h, h8, sizeof(h));
    h |= 1; /* 0 marks an empty slot */
    rl_slot_t *set = rl->slots + ((size_t)(h >> 1) % (size_t)rl->n_sets) * RL_WAYS;
    rl_slot_t *victim = &set[0];
    for (int i = 0; i < RL_WAYS; i++) {
        if (set[i].hash == h)
            return &set[i];
        if (victim->hash != 0 && (set[i].hash == 0 || set[i].used < victim->used))
            victim = &set[i];
    }
    victim->hash = h;
    victim->tokens = rl->burst;
    victim->last_ms = now_ms;
    return victim;
}

int pv_ratelimit_take(pv_ratelimit_t *rl, const char *key, int64_t now_ms)
{
    rl_slot_t *s = rl_find(rl, key ? key : "", now_ms);

    s->used = ++rl->clock;
    if (now_ms > s->last_ms) {
        s->tokens += (double)(now_ms - s->last_ms) * rl->per_ms;
        if (s->tokens > rl->burst)
            s->tokens = rl->burst;
    }
    s->last_ms = now_ms; /* a clock stepping back just refills nothing */
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
        return 0;
    }
    double wait_s = (1.0 - s->tokens) / rl->per_ms / 1000.0;
    int secs = (int)ceil(wait_s - 1e-9);
    return secs < 1 ? 1 : secs;
}
