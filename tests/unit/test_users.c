/*
 * test_users.c — the normal form of an email address (src/model/users.c):
 * what is trimmed and lower-cased, which shapes are refused, the length
 * limit and the room in the output.
 */
#include "model/users.h"
#include "base/pv.h"
#include "t.h"

#include <stdio.h>

TEST(email_normalize)
{
    static const struct {
        const char *in, *out; /* out NULL: -EINVAL */
    } cases[] = {
        {"alice@example.com", "alice@example.com"},
        {"  Alice@Example.COM\t\r\n", "alice@example.com"},
        {"a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk"},
        {"\xc3\x89lise@exemple.fr", "\xc3\x89lise@exemple.fr"}, /* non-ASCII kept */
        {"", NULL},
        {"   ", NULL},
        {"alice", NULL},
        {"@example.com", NULL},
        {"alice@", NULL},
        {"alice@localhost", NULL},
        {"alice@@example.com", NULL},
        {"a@b@example.com", NULL},
        {"al ice@example.com", NULL},
        {"alice@exa\tmple.com", NULL},
        {"alice@.example.com", NULL},
        {"alice@example.com.", NULL},
        {"alice@example..com", NULL},
        {"ali\x01" "ce@example.com", NULL},
        {"ali\x7f" "ce@example.com", NULL},
        {"\xc3@example.com", NULL},      /* truncated UTF-8 */
        {"\xed\xa0\x80@example.com", NULL}, /* surrogate */
    };
    char out[300];
    for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
        int rc = pv_email_normalize(cases[i].in, out, sizeof(out));
        if (cases[i].out) {
            CHECK_EQ_INT(rc, 0);
            CHECK_EQ_STR(out, cases[i].out);
        } else {
            if (rc != -EINVAL)
                printf("#   case %zu: \"%s\" accepted\n", i, cases[i].in);
            CHECK_EQ_INT(rc, -EINVAL);
        }
    }
    /* 254 chars is the limit */
    char big[300];
    memset(big, 'a', sizeof(big));
    memcpy(big + 254 - 12, "@example.com", 13);
    CHECK_EQ_INT(strlen(big), 254);
    CHECK_EQ_INT(pv_email_normalize(big, out, sizeof(out)), 0);
    memset(big, 'a', sizeof(big));
    memcpy(big + 255 - 12, "@example.com", 13);
    CHECK_EQ_INT(pv_email_normalize(big, out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(pv_email_normalize("a@b.co", out, 6), -EINVAL); /* no room */
    CHECK_EQ_INT(pv_email_normalize("a@b.co", out, 7), 0);
}

int main(void)
{
    RUN(email_normalize);
    return t_done("users");
}
