/*
 * test_ratelimit.c — the login rate limiter (src/base/ratelimit.c):
 * bursts, refill, separate buckets per key, a clock that steps back,
 * eviction from a full set, and bad arguments.
 */
#include "base/ratelimit.h"
#include "base/pv.h"
#include "t.h"

#include <stdio.h>

TEST(ratelimit)
{
    pv_ratelimit_t *rl = pv_ratelimit_new(3, 6.0, 64); /* 1 every 10 s */
    CHECK(rl != NULL);
    if (!rl)
        return;
    int64_t t = 1000000;
    CHECK_EQ_INT(pv_ratelimit_take(rl, "a@x.io", t), 0);
    CHECK_EQ_INT(pv_ratelimit_take(rl, "a@x.io", t), 0);
    CHECK_EQ_INT(pv_ratelimit_take(rl, "a@x.io", t), 0);
    CHECK_EQ_INT(pv_ratelimit_take(rl, "a@x.io", t), 10);
    CHECK_EQ_INT(pv_ratelimit_take(rl, "b@x.io", t), 0); /* own bucket */
    CHECK_EQ_INT(pv_ratelimit_take(rl, "a@x.io", t + 4000), 6);
    CHECK_EQ_INT(pv_ratelimit_take(rl, "a@x.io", t + 9999), 1);
    CHECK_EQ_INT(pv_ratelimit_take(rl, "a@x.io", t + 10000), 0);
    CHECK_EQ_INT(pv_ratelimit_take(rl, "a@x.io", t + 10000), 10);
    /* a long pause refills up to the burst only */
    t += 1000000;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(pv_ratelimit_take(rl, "a@x.io", t), 0);
    CHECK(pv_ratelimit_take(rl, "a@x.io", t) > 0);
    /* the clock stepping back does not refill or crash */
    CHECK(pv_ratelimit_take(rl, "a@x.io", t - 500000) > 0);
    pv_ratelimit_free(rl);

    /* a table of one set: the ninth key evicts the least recently used */
    rl = pv_ratelimit_new(1, 1.0, 8);
    char key[16];
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CHECK_EQ_INT(pv_ratelimit_take(rl, key, 0), 0);
        CHECK_EQ_INT(pv_ratelimit_take(rl, key, 0), 60);
    }
    CHECK_EQ_INT(pv_ratelimit_take(rl, "k9", 0), 0);  /* evicts k0 */
    CHECK_EQ_INT(pv_ratelimit_take(rl, "k0", 0), 0);  /* fresh again: evicts k1 */
    CHECK_EQ_INT(pv_ratelimit_take(rl, "k2", 0), 60); /* still tracked */
    pv_ratelimit_free(rl);

    CHECK(pv_ratelimit_new(0, 1.0, 8) == NULL);
    CHECK(pv_ratelimit_new(1, 0.0, 8) == NULL);
    CHECK(pv_ratelimit_new(1, 1.0, 0) == NULL);
    pv_ratelimit_free(NULL);
}

/* The failure seam: no table, a clean NULL (the auth actor then fails to
 * start rather than run without limits). */
TEST(ratelimit_no_memory)
{
    pv_fail_reset("ratelimit.new:1");
    CHECK(pv_ratelimit_new(3, 6.0, 64) == NULL);
    pv_ratelimit_t *rl = pv_ratelimit_new(3, 6.0, 64);
    CHECK(rl != NULL);
    pv_ratelimit_free(rl);
    pv_fail_reset("");
}

int main(void)
{
    RUN(ratelimit);
    RUN(ratelimit_no_memory);
    return t_done("ratelimit");
}
