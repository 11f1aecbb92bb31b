/*
 * test_admit.c — the connection caps' own parts (src/http/admit.c, included
 * so that its static functions can be tested, as h2o's unit tests do): the
 * key an address counts under, the exempt list, and the per-address table
 * against a plain model through many adds and removals. The caps at work on
 * sockets are in test_http.c (caps_refuse_cheaply).
 */
#include "http/admit.c"
#include "t.h"

#include <arpa/inet.h>

static void key_of(const char *text, uint8_t key[16])
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    uint8_t addr[16];
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    memset(key, 0xee, 16);
    if (admit_addr((const struct sockaddr *)&ss, addr))
        admit_key(addr, key);
}

TEST(keys)
{
    uint8_t a[16], b[16];
    key_of("2001:db8:1:2::1", a);
    key_of("2001:db8:1:2:ffff:1:2:3", b);
    CHECK(memcmp(a, b, 16) == 0); /* one /64 */
    key_of("2001:db8:1:3::1", b);
    CHECK(memcmp(a, b, 16) != 0);
    key_of("203.0.113.9", a);
    key_of("::ffff:203.0.113.9", b);
    CHECK(memcmp(a, b, 16) == 0); /* IPv4 alike on a dual-stack socket */
    key_of("203.0.113.10", b);
    CHECK(memcmp(a, b, 16) != 0); /* IPv4 counts whole */
}

TEST(exempt_list)
{
    pv_http_server_t s = {0};
    const char *bad = NULL;
    s.cfg.ip_cap_exempt = "127.0.0.1, ::1 2001:db8::7,,";
    CHECK_EQ_INT(admit_parse_exempt(&s, &bad), 0);
    CHECK_EQ_INT(s.nexempt, 3);
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    uint8_t addr[16];
    inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
    admit_addr((const struct sockaddr *)&v4, addr);
    CHECK(admit_exempt(&s, addr));
    inet_pton(AF_INET, "127.0.0.2", &v4.sin_addr);
    admit_addr((const struct sockaddr *)&v4, addr);
    CHECK(!admit_exempt(&s, addr));
    free(s.exempt);

    pv_http_server_t t = {0};
    t.cfg.ip_cap_exempt = "10.0.0.1, proxy.example";
    CHECK_EQ_INT(admit_parse_exempt(&t, &bad), -EINVAL);
    CHECK(bad && strncmp(bad, "proxy.example", 13) == 0);
    free(t.exempt);
}

/* Adds and removals in a random order against an array of counts: every
 * count stays right, through growth and through the moves that removal
 * makes (a broken probe chain would lose a key's count). */
TEST(table_against_model)
{
    enum { KEYS = 700, ROUNDS = 60000 };
    static uint32_t model[KEYS];
    static uint8_t keys[KEYS][16];
    pv_http_server_t s = {0};
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int wrong = 0;
    for (int i = 0; i < KEYS; i++) {
        char text[64];
        snprintf(text, sizeof(text), i % 2 ? "10.%d.%d.1" : "2001:db8:%x:%x::1", i / 256, i % 256);
        key_of(text, keys[i]);
    }
    for (int r = 0; r < ROUNDS; r++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int k = (int)(rng % KEYS);
        /* Counts walk at random near 0, a little up in the first half and
         * down in the second: addresses keep leaving the table (and
         * removal moves others) while it grows, then while it empties. */
        bool add = (rng >> 32) % 100 < (r < ROUNDS / 2 ? 55u : 45u);
        if (add) {
            CHECK_EQ_INT(admit_inc(&s, keys[k]), 0);
            model[k]++;
        } else if (model[k]) {
            admit_dec(s.addrs, keys[k]);
            model[k]--;
        }
        if (r % 1000 == 999)
            for (int i = 0; i < KEYS; i++)
                wrong += admit_count(s.addrs, keys[i]) != model[i];
    }
    size_t live = 0;
    for (int i = 0; i < KEYS; i++)
        live += model[i] != 0;
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(s.addrs->used, live);
    CHECK(s.addrs->used * 2 <= s.addrs->cap);
    for (int i = 0; i < KEYS; i++)
        while (model[i]) {
            admit_dec(s.addrs, keys[i]);
            model[i]--;
        }
    CHECK_EQ_INT(s.addrs->used, 0);
    size_t left = 0;
    for (size_t i = 0; i < s.addrs->cap; i++)
        left += s.addrs->slot[i].n != 0;
    CHECK_EQ_INT(left, 0);
    pv_admit_free(&s);
}

/* Each allocation fails cleanly: the exempt list, the table, its slots. */
TEST(allocations_fail_cleanly)
{
    pv_http_server_t s = {0};
    const char *bad = NULL;
    s.cfg.ip_cap_exempt = "127.0.0.1";
    pv_fail_reset("http.alloc:1");
    CHECK_EQ_INT(admit_parse_exempt(&s, &bad), -ENOMEM);
    CHECK(s.exempt == NULL);
    uint8_t key[16];
    key_of("10.0.0.9", key);
    pv_fail_reset("http.alloc:1"); /* the table itself */
    CHECK_EQ_INT(admit_inc(&s, key), -ENOMEM);
    CHECK(s.addrs == NULL);
    pv_fail_reset("http.alloc:2"); /* its first slots */
    CHECK_EQ_INT(admit_inc(&s, key), -ENOMEM);
    CHECK(s.addrs == NULL || admit_count(s.addrs, key) == 0);
    pv_fail_reset("");
    CHECK_EQ_INT(admit_inc(&s, key), 0);
    CHECK_EQ_INT(admit_count(s.addrs, key), 1);
    pv_admit_free(&s);
}

int main(void)
{
    RUN(keys);
    RUN(exempt_list);
    RUN(table_against_model);
    RUN(allocations_fail_cleanly);
    return t_done("admit");
}
