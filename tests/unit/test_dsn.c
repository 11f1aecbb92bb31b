/*
 * test_dsn.c — pg_dsn's password masked for pvctl config show
 * (src/base/dsn.c), in both of libpq's grammars, malformed ones included:
 * whatever the input, the password's characters never come out.
 */
#include "base/dsn.h"
#include "base/pv.h"
#include "t.h"

#include <string.h>

static const char *red(const char *dsn)
{
    static char out[512];
    pv_dsn_redact(dsn, out, sizeof(out));
    return out;
}

TEST(keyword_value)
{
    CHECK_EQ_STR(red("host=db.example.com dbname=pv user=pv password=s3cret sslmode=verify-full"),
                 "host=db.example.com dbname=pv user=pv password=*** sslmode=verify-full");
    CHECK_EQ_STR(red("password = 'it\\'s a \\\\ secret' host=h"), "password=*** host=h");
    CHECK_EQ_STR(red("host=h password='a b c'"), "host=h password=***");
    CHECK_EQ_STR(red("host=h"), "host=h");
    CHECK_EQ_STR(red(""), "");
    CHECK_EQ_STR(red("host='/var/run/x y' port=5432"), "host='/var/run/x y' port=5432");
    /* passfile names a file, not a secret: kept */
    CHECK_EQ_STR(red("passfile=/etc/pv/pgpass password=x"), "passfile=/etc/pv/pgpass password=***");
}

TEST(uri)
{
    CHECK_EQ_STR(red("postgresql://pv:s3cret@db.example.com:5432/pv?sslmode=verify-full"),
                 "postgresql://pv:***@db.example.com:5432/pv?sslmode=verify-full");
    CHECK_EQ_STR(red("postgres://pv@db/pv?password=s3cret&sslmode=require"),
                 "postgres://pv@db/pv?password=***&sslmode=require");
    CHECK_EQ_STR(red("postgresql://db/pv"), "postgresql://db/pv");
    CHECK_EQ_STR(red("postgresql://u:p%40ss@h"), "postgresql://u:***@h");
    /* libpq takes user:password@ up to the first '@' before a '/', past a '?' */
    CHECK_EQ_STR(red("postgres://h?x&u:SECRET@db/pv"), "postgres://h?x&u:***@db/pv");
    /* a parameter's name is percent-decoded by libpq */
    CHECK_EQ_STR(red("postgres://db/pv?pass%77ord=SECRET"), "postgres://db/pv?pass%77ord=***");
    /* a quoted password right before the next keyword stays apart from it */
    CHECK_EQ_STR(red("password='x y'host=h"), "password=*** host=h");
}

TEST(never_shows_it)
{
    static const char *const cases[] = {
        "password", "password=", "password=SECRETX", " password =  SECRETX", "password='SECRETX",
        "password=SECRETX\\", "a password=SECRETX", "password SECRETX", "x=1 password=SECRETX y",
        "postgresql://u:SECRETX@", "postgres://h/?password=SECRETX",
        "postgres://u:SECRETX@h/d?password=SECRETX&password=SECRETX",
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
        const char *o = red(cases[i]);
        if (strstr(o, "SECRETX"))
            fprintf(stderr, "  shown: %s -> %s\n", cases[i], o);
        CHECK(!strstr(o, "SECRETX"));
    }
    char small[8];
    pv_dsn_redact("host=abcdefghijkl", small, sizeof(small));
    CHECK_EQ_STR(small, "host=ab");
}

int main(void)
{
    RUN(keyword_value);
    RUN(uri);
    RUN(never_shows_it);
    return t_done("dsn");
}
