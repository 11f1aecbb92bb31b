/*
 * fuzz_dsn.c — libFuzzer target for pg_dsn's password masking
 * (src/base/dsn.c): a string people type, shown by pvctl config show.
 *
 * Checks, against libpq's own parser: whatever libpq reads as the password
 * of the masked string is the mask (three asterisks, and a slash after them
 * where the password held one that keeps a URI's structure) or nothing; a password libpq reads from the
 * input (6 bytes or more, found once in it) does not appear in the output;
 * masking twice changes nothing more; the output is terminated inside its
 * buffer, also when it is cut short.
 */
#include "base/dsn.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *password_of(PQconninfoOption *o)
{
    for (; o && o->keyword; o++)
        if (!strcmp(o->keyword, "password"))
            return o->val;
    return NULL;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2048)
        return 0;
    char *in = malloc(size + 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    size_t outlen = strlen(in) * 2 + 32;
    char *out = malloc(outlen), *again = malloc(outlen), small[9];
    if (!out || !again)
        abort();
    pv_dsn_redact(in, out, outlen);
    if (strnlen(out, outlen) == outlen)
        abort();
    pv_dsn_redact(out, again, outlen);
    if (strcmp(out, again) != 0)
        abort();
    pv_dsn_redact(in, small, sizeof(small));
    if (strnlen(small, sizeof(small)) == sizeof(small) || strncmp(small, out, strlen(small)) != 0)
        abort();
    PQconninfoOption *o = PQconninfoParse(out, NULL);
    const char *pw = password_of(o);
    if (pw && pw[0] && strcmp(pw, "***") != 0 && strcmp(pw, "***/") != 0)
        abort();
    PQconninfoFree(o);
    o = PQconninfoParse(in, NULL);
    pw = password_of(o);
    if (pw && strlen(pw) >= 6 && count(in, pw) == 1 && strstr(out, pw))
        abort();
    PQconninfoFree(o);
    free(in);
    free(out);
    free(again);
    return 0;
}
