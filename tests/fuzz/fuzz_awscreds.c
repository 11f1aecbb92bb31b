/*
 * fuzz_awscreds.c — libFuzzer target for the credential chain's parsers:
 * they read files people edit by hand (~/.aws/credentials, config) and a
 * document that comes over the network (IMDS).
 *
 * The whole input goes to every parser: the credentials and config INI
 * parsers (profile "default", and a profile named by the input's first
 * line), the IMDS JSON parser and the RFC 3339 time parser; its lines also
 * serve as an environment for the chain (pv_awscreds_resolve). Checks:
 * only the documented results; a success leaves non-empty, NUL-terminated,
 * visible-ASCII values inside their fields and parses back the same from a
 * clean file; an error leaves the output wiped.
 */
#include "cloud/awscreds.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_ENV 16

static bool zeroed(const pv_aws_creds_t *c)
{
    static const pv_aws_creds_t zero;
    return memcmp(c, &zero, sizeof(zero)) == 0;
}

/* NUL inside the field, visible ASCII before it, non-empty if required. */
static void check_field(const char *f, size_t size, bool required)
{
    size_t n = strnlen(f, size);
    if (n == size || (required && n == 0))
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)f[i] <= ' ' || (unsigned char)f[i] >= 0x7f)
            abort();
}

static void check_creds(int rc, const pv_aws_creds_t *c)
{
    if (rc != 0 && rc != -ENOENT && rc != -EINVAL && rc != -EMSGSIZE)
        abort();
    if (rc != 0) {
        if (!zeroed(c))
            abort(); /* a failed parse must not leave half a secret */
        return;
    }
    check_field(c->key_id, sizeof(c->key_id), true);
    check_field(c->secret, sizeof(c->secret), true);
    check_field(c->token, sizeof(c->token), false);
    check_field(c->source, sizeof(c->source), true);
}

/* What parsed must parse the same from a file written cleanly. */
static void check_roundtrip(const pv_aws_creds_t *c)
{
    static char text[4096];
    pv_aws_creds_t again;
    int n = snprintf(text, sizeof(text),
                     "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n%s%s\n",
                     c->key_id, c->secret, c->token[0] ? "aws_session_token = " : "", c->token);
    if (n < 0 || (size_t)n >= sizeof(text) ||
        pv_awscreds_parse_credentials(text, (size_t)n, "default", &again) != 0 ||
        strcmp(again.key_id, c->key_id) != 0 || strcmp(again.secret, c->secret) != 0 ||
        strcmp(again.token, c->token) != 0)
        abort();
}

static void check_region(int rc, const char *region)
{
    if (rc != 0 && rc != -ENOENT && rc != -EINVAL && rc != -EMSGSIZE)
        abort();
    if ((rc == 0) != (region[0] != '\0'))
        abort();
}

static void fuzz_ini(const uint8_t *data, size_t size, const char *profile)
{
    pv_aws_creds_t c;
    char region[64];
    int rc = pv_awscreds_parse_credentials((const char *)data, size, profile, &c);
    check_creds(rc, &c);
    if (rc == 0)
        check_roundtrip(&c);
    rc = pv_awscreds_parse_config_region((const char *)data, size, profile, region, sizeof(region));
    check_region(rc, region);
}

static void fuzz_time(const char *text)
{
    int64_t t;
    /* 0000-01-01 minus a day .. 9999-12-31 plus a day */
    if (pv_awscreds_parse_time(text, &t) == 0 &&
        (t < -62167219200LL - 86400 || t > 253402300799LL + 86400))
        abort();
}

/* The input's lines as "NAME=value" entries, for the environment checks. */
static void fuzz_env(char *text, const uint8_t *data, size_t size)
{
    char *env[FUZZ_MAX_ENV + 1];
    int n = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && n < FUZZ_MAX_ENV;
         line = strtok_r(NULL, "\n", &save))
        env[n++] = line;
    env[n] = NULL;

    pv_aws_creds_t c;
    char region[64];
    check_creds(pv_awscreds_from_env(env, &c), &c);
    check_creds(pv_awscreds_resolve(NULL, env, (const char *)data, size, &c), &c);
    check_region(
        pv_awscreds_resolve_region(NULL, env, (const char *)data, size, region, sizeof(region)),
        region);
    const char *p = pv_awscreds_profile(NULL, env);
    if (!p || !*p)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the INI and JSON parsers get the bytes as they are: no NUL after */
    fuzz_ini(data, size, "default");
    pv_aws_creds_t c;
    check_creds(pv_awscreds_parse_imds((const char *)data, size, &c), &c);

    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    fuzz_time(text);
    size_t first = strcspn(text, "\n");
    if (first > 0 && first < 64) { /* a profile named by the first line */
        char profile[64];
        memcpy(profile, text, first);
        profile[first] = '\0';
        fuzz_ini(data, size, profile);
    }
    fuzz_env(text, data, size);
    free(text);
    return 0;
}
