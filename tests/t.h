/*
 * t.h — the unit-test harness: one binary per module under tests/unit/.
 * Each TEST prints "ok - name" or "not ok - name" (TAP-like) and the binary
 * ends with "# unit NAME: P passed, F failed"; tests/run.sh adds them up.
 *
 *   TEST(store_put_get) { ... CHECK(x == 1); CHECK_EQ_INT(a, b); }
 *   int main(void) { RUN(store_put_get); return t_done("store"); }
 */
#ifndef PV_T_H
#define PV_T_H

#include <stdio.h>
#include <string.h>

static int t_passed, t_failed, t_cur_failed;

#define TEST(name) static void test_##name(void)
#define RUN(name)                                                            \
    do {                                                                     \
        t_cur_failed = 0;                                                    \
        test_##name();                                                       \
        if (t_cur_failed) {                                                  \
            t_failed++;                                                      \
            printf("not ok - %s\n", #name);                                  \
        } else {                                                             \
            t_passed++;                                                      \
            printf("ok - %s\n", #name);                                      \
        }                                                                    \
        fflush(stdout);                                                      \
    } while (0)

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,     \
                   #cond);                                                   \
            t_cur_failed = 1;                                                \
        }                                                                    \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                   \
    do {                                                                     \
        long long t_a = (long long)(a), t_b = (long long)(b);                \
        if (t_a != t_b) {                                                    \
            printf("#   %s:%d: %s == %s failed: %lld != %lld\n", __FILE__,  \
                   __LINE__, #a, #b, t_a, t_b);                              \
            t_cur_failed = 1;                                                \
        }                                                                    \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                   \
    do {                                                                     \
        const char *t_a = (a), *t_b = (b);                                   \
        if (!t_a || !t_b || strcmp(t_a, t_b) != 0) {                         \
            printf("#   %s:%d: %s == %s failed: \"%s\" != \"%s\"\n",        \
                   __FILE__, __LINE__, #a, #b, t_a ? t_a : "(null)",         \
                   t_b ? t_b : "(null)");                                    \
            t_cur_failed = 1;                                                \
        }                                                                    \
    } while (0)

static inline int t_done(const char *suite)
{
    printf("# unit %s: %d passed, %d failed\n", suite, t_passed, t_failed);
    return t_failed ? 1 : 0;
}

#endif
