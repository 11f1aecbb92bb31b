/*
 * test_awscreds.c — the credential chain's parsers: credentials-file
 * profiles, missing keys, comments, whitespace, CRLF, absent profiles,
 * config regions, the environment and its precedence over the files, the
 * IMDS document (good and malformed), RFC 3339 times, refresh timing, and
 * the file wrappers (failures included, and nothing written to stderr).
 */
#include "cloud/awscreds.h"

#include "base/pv.h"
#include "t.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const k_file = "# shared credentials\n"
                                  "[default]\n"
                                  "aws_access_key_id = AKIDDEFAULT\n"
                                  "aws_secret_access_key = secretdefault/+x\n"
                                  "\n"
                                  "[work]\n"
                                  "aws_access_key_id=AKIDWORK\n"
                                  "aws_secret_access_key=secretwork\n"
                                  "aws_session_token=tokenwork==\n"
                                  "\n"
                                  "[role-only]\n"
                                  "role_arn = arn:aws:iam::123456789012:role/x\n"
                                  "source_profile = default\n"
                                  "\n"
                                  "[half]\n"
                                  "aws_access_key_id = AKIDHALF\n";

/* Parses text (without its NUL, from an exact-size copy so ASan sees any
 * read past the end) for profile. */
static int parse(const char *text, const char *profile, pv_aws_creds_t *c)
{
    size_t n = strlen(text);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, text, n);
    int rc = pv_awscreds_parse_credentials(copy, n, profile, c);
    free(copy);
    return rc;
}

static int region_of(const char *text, const char *profile, char *region, size_t size)
{
    size_t n = strlen(text);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, text, n);
    int rc = pv_awscreds_parse_config_region(copy, n, profile, region, size);
    free(copy);
    return rc;
}

static int imds(const char *json, pv_aws_creds_t *c)
{
    return pv_awscreds_parse_imds(json, strlen(json), c);
}

static bool all_zero(const pv_aws_creds_t *c)
{
    static const pv_aws_creds_t zero;
    return memcmp(c, &zero, sizeof(zero)) == 0;
}

TEST(credentials_profiles)
{
    pv_aws_creds_t c;
    CHECK_EQ_INT(parse(k_file, "default", &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDDEFAULT");
    CHECK_EQ_STR(c.secret, "secretdefault/+x");
    CHECK_EQ_STR(c.token, "");
    CHECK_EQ_INT(c.expires_s, 0);
    CHECK_EQ_STR(c.source, "file");
    CHECK_EQ_INT(parse(k_file, "work", &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDWORK");
    CHECK_EQ_STR(c.secret, "secretwork");
    CHECK_EQ_STR(c.token, "tokenwork==");
    /* option names are case-insensitive, section names are not */
    CHECK_EQ_INT(parse("[p]\nAWS_ACCESS_KEY_ID = A\nAws_Secret_Access_Key = B\n", "p", &c), 0);
    CHECK_EQ_STR(c.key_id, "A");
    CHECK_EQ_INT(parse("[P]\naws_access_key_id = A\naws_secret_access_key = B\n", "p", &c),
                 -ENOENT);
    /* the old token name, which botocore reads first */
    CHECK_EQ_INT(parse("[p]\naws_access_key_id=A\naws_secret_access_key=B\n"
                       "aws_session_token=new\naws_security_token=old\n",
                       "p", &c),
                 0);
    CHECK_EQ_STR(c.token, "old");
    /* a repeated option or section: the last one wins */
    CHECK_EQ_INT(parse("[p]\naws_access_key_id=A1\naws_secret_access_key=B\n"
                       "[q]\naws_access_key_id=Q\n[p]\naws_access_key_id=A2\n",
                       "p", &c),
                 0);
    CHECK_EQ_STR(c.key_id, "A2");
    /* ':' separates too (configparser) */
    CHECK_EQ_INT(parse("[p]\naws_access_key_id: A\naws_secret_access_key :B\n", "p", &c), 0);
    CHECK_EQ_STR(c.secret, "B");
}

TEST(credentials_missing_keys)
{
    pv_aws_creds_t c;
    CHECK_EQ_INT(parse(k_file, "role-only", &c), -ENOENT); /* not ours to handle */
    CHECK_EQ_INT(parse(k_file, "half", &c), -EINVAL);
    CHECK(all_zero(&c));
    CHECK_EQ_INT(parse("[p]\naws_secret_access_key=B\n", "p", &c), -EINVAL);
    CHECK_EQ_INT(parse("[p]\naws_access_key_id=\naws_secret_access_key=\n", "p", &c), -ENOENT);
    CHECK_EQ_INT(parse("[p]\naws_access_key_id=A\naws_secret_access_key=\n", "p", &c), -EINVAL);
    CHECK_EQ_INT(parse("[p]\n", "p", &c), -ENOENT);
}

TEST(credentials_comments)
{
    pv_aws_creds_t c;
    const char *f = "; top comment\n"
                    "#[p]\n"
                    "[p]\n"
                    "# aws_access_key_id = COMMENTED\n"
                    "   ; aws_secret_access_key = COMMENTED\n"
                    "aws_access_key_id = A\n"
                    "\t# indented comment\n"
                    "aws_secret_access_key = B\n"
                    "#aws_session_token = T\n";
    CHECK_EQ_INT(parse(f, "p", &c), 0);
    CHECK_EQ_STR(c.key_id, "A");
    CHECK_EQ_STR(c.secret, "B");
    CHECK_EQ_STR(c.token, "");
    /* no inline comments in INI (as configparser): refused, not misread */
    CHECK_EQ_INT(parse("[p]\naws_access_key_id = A # work\naws_secret_access_key = B\n", "p", &c),
                 -EINVAL);
}

TEST(credentials_whitespace)
{
    pv_aws_creds_t c;
    CHECK_EQ_INT(parse("  [  p  ]  \n\t aws_access_key_id\t=\t A \t\n"
                       "aws_secret_access_key    =B   \n\n\n",
                       "p", &c),
                 0);
    CHECK_EQ_STR(c.key_id, "A");
    CHECK_EQ_STR(c.secret, "B");
    /* a value with a blank inside is a broken paste */
    CHECK_EQ_INT(parse("[p]\naws_access_key_id = A B\naws_secret_access_key = B\n", "p", &c),
                 -EINVAL);
    CHECK_EQ_INT(parse("[p]\naws_access_key_id = A\x01\naws_secret_access_key = B\n", "p", &c),
                 -EINVAL);
    CHECK_EQ_INT(parse("[p]\naws_access_key_id = \xc3\xa9\naws_secret_access_key = B\n", "p", &c),
                 -EINVAL);
    /* indented lines continue the option above (nested settings) */
    CHECK_EQ_INT(parse("[p]\naws_access_key_id = A\naws_secret_access_key = B\n"
                       "s3 =\n  aws_access_key_id = NESTED\n  max_concurrent_requests = 2\n",
                       "p", &c),
                 0);
    CHECK_EQ_STR(c.key_id, "A");
    /* an indented option right after a header is an option */
    CHECK_EQ_INT(parse("[p]\n  aws_access_key_id = A\n  aws_secret_access_key = B\n", "p", &c), 0);
    CHECK_EQ_STR(c.secret, "B");
}

TEST(credentials_crlf)
{
    pv_aws_creds_t c;
    CHECK_EQ_INT(parse("[default]\r\naws_access_key_id = A\r\naws_secret_access_key = B\r\n"
                       "aws_session_token = T\r\n",
                       "default", &c),
                 0);
    CHECK_EQ_STR(c.key_id, "A");
    CHECK_EQ_STR(c.secret, "B");
    CHECK_EQ_STR(c.token, "T");
    /* a UTF-8 byte order mark (Windows editors), and no final newline */
    CHECK_EQ_INT(
        parse("\xef\xbb\xbf[p]\r\naws_access_key_id=A\r\naws_secret_access_key=B", "p", &c), 0);
    CHECK_EQ_STR(c.secret, "B");
}

TEST(credentials_absent_profile)
{
    pv_aws_creds_t c;
    memset(&c, 'x', sizeof(c));
    CHECK_EQ_INT(parse(k_file, "nope", &c), -ENOENT);
    CHECK(all_zero(&c)); /* wiped, not stale */
    CHECK_EQ_INT(parse("", "default", &c), -ENOENT);
    /* options before any section, or after a broken header, belong to none */
    CHECK_EQ_INT(parse("aws_access_key_id=A\naws_secret_access_key=B\n", "default", &c), -ENOENT);
    CHECK_EQ_INT(parse("[p\naws_access_key_id=A\naws_secret_access_key=B\n", "p", &c), -ENOENT);
    CHECK_EQ_INT(parse("[p]\n[]\naws_access_key_id=A\naws_secret_access_key=B\n", "p", &c),
                 -ENOENT);
    /* text after the last ']' is dropped, as configparser does */
    CHECK_EQ_INT(parse("[p]x\naws_access_key_id=A\naws_secret_access_key=B\n", "p", &c), 0);
    /* a "profile NAME" section is a config-file spelling */
    CHECK_EQ_INT(parse("[profile p]\naws_access_key_id=A\naws_secret_access_key=B\n", "p", &c),
                 -ENOENT);
    CHECK_EQ_INT(pv_awscreds_parse_credentials(NULL, 0, "p", &c), -EINVAL);
    CHECK_EQ_INT(parse(k_file, "", &c), -EINVAL);
}

TEST(credentials_limits)
{
    pv_aws_creds_t c;
    char f[4096];
    memset(&c, 0, sizeof(c));
    snprintf(f, sizeof(f), "[p]\naws_access_key_id = %0127d\naws_secret_access_key = B\n", 0);
    CHECK_EQ_INT(parse(f, "p", &c), 0);
    CHECK_EQ_INT(strlen(c.key_id), 127);
    snprintf(f, sizeof(f), "[p]\naws_access_key_id = %0128d\naws_secret_access_key = B\n", 0);
    CHECK_EQ_INT(parse(f, "p", &c), -EMSGSIZE);
    char *big = malloc(3000);
    memset(big, 'T', 2999);
    big[2999] = '\0';
    snprintf(f, sizeof(f),
             "[p]\naws_access_key_id=A\naws_secret_access_key=B\n"
             "aws_session_token=%.2048s\n",
             big);
    CHECK_EQ_INT(parse(f, "p", &c), -EMSGSIZE);
    snprintf(f, sizeof(f),
             "[p]\naws_access_key_id=A\naws_secret_access_key=B\n"
             "aws_session_token=%.2047s\n",
             big);
    CHECK_EQ_INT(parse(f, "p", &c), 0);
    CHECK_EQ_INT(strlen(c.token), 2047);
    free(big);
}

TEST(config_region)
{
    char r[64];
    const char *cfg = "[default]\nregion = eu-west-1\noutput = json\n"
                      "[profile work]\nregion=us-east-2\n"
                      "[profile  \"spaced name\"]\nregion = ap-south-1\n"
                      "[plain]\nregion = xx-not-a-profile-1\n"
                      "[profile empty]\noutput = text\n";
    CHECK_EQ_INT(region_of(cfg, "default", r, sizeof(r)), 0);
    CHECK_EQ_STR(r, "eu-west-1");
    CHECK_EQ_INT(region_of(cfg, "work", r, sizeof(r)), 0);
    CHECK_EQ_STR(r, "us-east-2");
    CHECK_EQ_INT(region_of(cfg, "spaced name", r, sizeof(r)), 0);
    CHECK_EQ_STR(r, "ap-south-1");
    CHECK_EQ_INT(region_of(cfg, "plain", r, sizeof(r)), -ENOENT); /* needs "profile " */
    CHECK_EQ_INT(region_of(cfg, "empty", r, sizeof(r)), -ENOENT);
    CHECK_EQ_STR(r, "");
    CHECK_EQ_INT(region_of(cfg, "nope", r, sizeof(r)), -ENOENT);
    CHECK_EQ_INT(region_of("[profile default]\r\nregion = sa-east-1\r\n", "default", r, sizeof(r)),
                 0);
    CHECK_EQ_STR(r, "sa-east-1");
    CHECK_EQ_INT(region_of("[default]\nregion = eu west\n", "default", r, sizeof(r)), -EINVAL);
    CHECK_EQ_INT(region_of("[default]\nregion = eu-west-1\n", "default", r, 9), -EMSGSIZE);
    CHECK_EQ_STR(r, "");
}

TEST(env_credentials)
{
    pv_aws_creds_t c;
    char *full[] = {"PATH=/bin", "AWS_ACCESS_KEY_ID=AKIDENV", "AWS_SECRET_ACCESS_KEY=secretenv",
                    "AWS_SESSION_TOKEN=tokenenv", NULL};
    CHECK_EQ_INT(pv_awscreds_from_env(full, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDENV");
    CHECK_EQ_STR(c.secret, "secretenv");
    CHECK_EQ_STR(c.token, "tokenenv");
    CHECK_EQ_STR(c.source, "env");
    char *expiring[] = {"AWS_ACCESS_KEY_ID=A", "AWS_SECRET_ACCESS_KEY=B",
                        "AWS_CREDENTIAL_EXPIRATION=2026-01-02T03:04:05Z", NULL};
    CHECK_EQ_INT(pv_awscreds_from_env(expiring, &c), 0);
    CHECK_EQ_INT(c.expires_s, 1767323045);
    char *bad_exp[] = {"AWS_ACCESS_KEY_ID=A", "AWS_SECRET_ACCESS_KEY=B",
                       "AWS_CREDENTIAL_EXPIRATION=tomorrow", NULL};
    CHECK_EQ_INT(pv_awscreds_from_env(bad_exp, &c), -EINVAL);
    CHECK(all_zero(&c));
    char *half[] = {"AWS_ACCESS_KEY_ID=A", NULL};
    CHECK_EQ_INT(pv_awscreds_from_env(half, &c), -EINVAL);
    char *empty[] = {"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", NULL};
    CHECK_EQ_INT(pv_awscreds_from_env(empty, &c), -ENOENT);
    char *prefix[] = {"AWS_ACCESS_KEY_ID_X=A", "XAWS_SECRET_ACCESS_KEY=B", NULL};
    CHECK_EQ_INT(pv_awscreds_from_env(prefix, &c), -ENOENT);
    CHECK_EQ_INT(pv_awscreds_from_env(NULL, &c), -ENOENT);
    char *both_tokens[] = {"AWS_ACCESS_KEY_ID=A", "AWS_SECRET_ACCESS_KEY=B",
                           "AWS_SESSION_TOKEN=new", "AWS_SECURITY_TOKEN=old", NULL};
    CHECK_EQ_INT(pv_awscreds_from_env(both_tokens, &c), 0);
    CHECK_EQ_STR(c.token, "old"); /* botocore's order */
}

/* Which source wins: the environment, an explicit profile, AWS_PROFILE. */
TEST(env_precedence)
{
    pv_aws_creds_t c;
    size_t n = strlen(k_file);
    char *none[] = {"HOME=/nowhere", NULL};
    char *keys[] = {"AWS_ACCESS_KEY_ID=AKIDENV", "AWS_SECRET_ACCESS_KEY=secretenv", NULL};
    char *prof[] = {"AWS_PROFILE=work", NULL};
    char *keys_prof[] = {"AWS_PROFILE=work", "AWS_ACCESS_KEY_ID=AKIDENV",
                         "AWS_SECRET_ACCESS_KEY=secretenv", NULL};
    char *half[] = {"AWS_ACCESS_KEY_ID=AKIDENV", NULL};

    CHECK_EQ_INT(pv_awscreds_resolve(NULL, none, k_file, n, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDDEFAULT"); /* nothing else: [default] */
    CHECK_EQ_INT(pv_awscreds_resolve(NULL, keys, k_file, n, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDENV"); /* env beats the file */
    CHECK_EQ_STR(c.source, "env");
    CHECK_EQ_INT(pv_awscreds_resolve("work", keys, k_file, n, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDWORK"); /* an explicit profile beats env */
    CHECK_EQ_INT(pv_awscreds_resolve("", prof, k_file, n, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDWORK"); /* AWS_PROFILE picks the profile */
    CHECK_EQ_INT(pv_awscreds_resolve(NULL, keys_prof, k_file, n, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDENV"); /* ...but env keys still win over it */
    CHECK_EQ_INT(pv_awscreds_resolve(NULL, half, k_file, n, &c), -EINVAL); /* no fallback */
    CHECK_EQ_INT(pv_awscreds_resolve(NULL, none, NULL, 0, &c), -ENOENT);
    CHECK_EQ_INT(pv_awscreds_resolve("nope", keys, k_file, n, &c), -ENOENT);
    CHECK(all_zero(&c));

    CHECK_EQ_STR(pv_awscreds_profile(NULL, none), "default");
    CHECK_EQ_STR(pv_awscreds_profile("x", prof), "x");
    CHECK_EQ_STR(pv_awscreds_profile("", prof), "work");

    char r[64];
    const char *cfg = "[default]\nregion=eu-west-1\n[profile work]\nregion=us-east-2\n";
    char *reg[] = {"AWS_DEFAULT_REGION=ca-central-1", "AWS_REGION=eu-north-1", NULL};
    char *dreg[] = {"AWS_DEFAULT_REGION=ca-central-1", NULL};
    CHECK_EQ_INT(pv_awscreds_resolve_region(NULL, reg, cfg, strlen(cfg), r, sizeof(r)), 0);
    CHECK_EQ_STR(r, "eu-north-1");
    CHECK_EQ_INT(pv_awscreds_resolve_region(NULL, dreg, cfg, strlen(cfg), r, sizeof(r)), 0);
    CHECK_EQ_STR(r, "ca-central-1");
    CHECK_EQ_INT(pv_awscreds_resolve_region(NULL, prof, cfg, strlen(cfg), r, sizeof(r)), 0);
    CHECK_EQ_STR(r, "us-east-2");
    CHECK_EQ_INT(pv_awscreds_resolve_region("default", prof, cfg, strlen(cfg), r, sizeof(r)), 0);
    CHECK_EQ_STR(r, "eu-west-1");
    CHECK_EQ_INT(pv_awscreds_resolve_region(NULL, none, NULL, 0, r, sizeof(r)), -ENOENT);
}

static const char *const k_imds =
    "{\n"
    "  \"Code\" : \"Success\",\n"
    "  \"LastUpdated\" : \"2026-11-28T16:39:16Z\",\n"
    "  \"Type\" : \"AWS-HMAC\",\n"
    "  \"AccessKeyId\" : \"ASIAIOSFODNN7EXAMPLE\",\n"
    "  \"SecretAccessKey\" : \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\",\n"
    "  \"Token\" : \"IQoJb3JpZ2luX2VjEXAMPLE+/=\",\n"
    "  \"Expiration\" : \"2026-11-28T22:55:44Z\"\n"
    "}\n";

TEST(imds_good)
{
    pv_aws_creds_t c;
    CHECK_EQ_INT(imds(k_imds, &c), 0);
    CHECK_EQ_STR(c.key_id, "ASIAIOSFODNN7EXAMPLE");
    CHECK_EQ_STR(c.secret, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    CHECK_EQ_STR(c.token, "IQoJb3JpZ2luX2VjEXAMPLE+/=");
    CHECK_EQ_INT(c.expires_s, 1795906544);
    CHECK_EQ_STR(c.source, "imds");
    /* ECS task credentials: same fields, no Code */
    CHECK_EQ_INT(imds("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"B\",\"Token\":\"T\","
                      "\"Expiration\":\"2026-11-28T22:55:44.123+01:00\",\"RoleArn\":\"r\"}",
                      &c),
                 0);
    CHECK_EQ_INT(c.expires_s, 1795906544 - 3600);
}

TEST(imds_malformed)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "\"Success\"",
        "{\"Code\":\"Success\"", /* truncated */
        "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"AccessKeyId\":\"A\","
        "\"SecretAccessKey\":\"B\",\"Token\":\"T\",\"Expiration\":\"2026-11-28T22:55:44Z\"}",
        "{\"Code\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"B\",\"Token\":\"T\","
        "\"Expiration\":\"2026-11-28T22:55:44Z\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"B\",\"Expiration\":\"2026-11-28T22:55:44Z\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"B\",\"Token\":\"T\"}",
        "{\"AccessKeyId\":\"A\",\"Token\":\"T\",\"Expiration\":\"2026-11-28T22:55:44Z\"}",
        "{\"SecretAccessKey\":\"B\",\"Token\":\"T\",\"Expiration\":\"2026-11-28T22:55:44Z\"}",
        "{\"AccessKeyId\":7,\"SecretAccessKey\":\"B\",\"Token\":\"T\","
        "\"Expiration\":\"2026-11-28T22:55:44Z\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"B\",\"Token\":\"\","
        "\"Expiration\":\"2026-11-28T22:55:44Z\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"B\",\"Token\":\"T\","
        "\"Expiration\":\"2026-11-28\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"B C\",\"Token\":\"T\","
        "\"Expiration\":\"2026-11-28T22:55:44Z\"}",
        "{\"AccessKeyId\":\"A\",\"AccessKeyId\":\"X\",\"SecretAccessKey\":\"B\",\"Token\":\"T\","
        "\"Expiration\":\"2026-11-28T22:55:44Z\"}", /* duplicate key */
        "{\"AccessKeyId\":\"A\\u0000X\",\"SecretAccessKey\":\"B\",\"Token\":\"T\","
        "\"Expiration\":\"2026-11-28T22:55:44Z\"}",
    };
    pv_aws_creds_t c;
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
        memset(&c, 'x', sizeof(c));
        int rc = imds(bad[i], &c);
        if (rc != -EINVAL)
            printf("#   imds case %zu: rc %d\n", i, rc);
        CHECK_EQ_INT(rc, -EINVAL);
        CHECK(all_zero(&c));
    }
    CHECK_EQ_INT(pv_awscreds_parse_imds(NULL, 0, &c), -EINVAL);
    /* a token longer than the field */
    char *big = malloc(4000);
    snprintf(big, 4000,
             "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"B\",\"Token\":\"%02100d\","
             "\"Expiration\":\"2026-11-28T22:55:44Z\"}",
             0);
    CHECK_EQ_INT(imds(big, &c), -EMSGSIZE);
    free(big);
    /* the buffer's length is what counts, not a NUL */
    CHECK_EQ_INT(pv_awscreds_parse_imds(k_imds, 20, &c), -EINVAL);
}

TEST(rfc3339_times)
{
    static const struct {
        const char *text;
        int64_t want; /* ignored when ok is false */
        bool ok;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0, true},
        {"2026-11-28T22:55:44Z", 1795906544, true},
        {"2026-11-28t22:55:44z", 1795906544, true},
        {"2026-11-28 22:55:44Z", 1795906544, true},
        {"2026-11-28T22:55:44.999999Z", 1795906544, true},
        {"2026-11-28T23:55:44+01:00", 1795906544, true},
        {"2026-11-28T20:25:44-02:30", 1795906544, true},
        {"2000-02-29T00:00:00Z", 951782400, true},
        {"1969-12-31T23:59:59Z", -1, true},
        {"2016-12-31T23:59:60Z", 1483228800, true}, /* leap second */
        {"9999-12-31T23:59:59Z", 253402300799LL, true},
        {"2023-02-29T00:00:00Z", 0, false},
        {"1900-02-29T00:00:00Z", 0, false},
        {"2026-13-01T00:00:00Z", 0, false},
        {"2026-00-01T00:00:00Z", 0, false},
        {"2026-04-31T00:00:00Z", 0, false},
        {"2026-11-28T24:00:00Z", 0, false},
        {"2026-11-28T22:60:00Z", 0, false},
        {"2026-11-28T22:55:44", 0, false},
        {"2026-11-28T22:55:44Zjunk", 0, false},
        {"2026-11-28T22:55:44.Z", 0, false},
        {"2026-11-28T22:55:44+0100", 0, false},
        {"2026-11-28T22:55:44+24:00", 0, false},
        {"2026-11-28T22:55:44+01:", 0, false},
        {"2026-11-28T22:55:44+", 0, false},
        {"2026-1-28T22:55:44Z", 0, false},
        {"+026-11-28T22:55:44Z", 0, false},
        {"2026-11-28X22:55:44Z", 0, false},
        {"", 0, false},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
        int64_t t = 12345;
        int rc = pv_awscreds_parse_time(cases[i].text, &t);
        if ((rc == 0) != cases[i].ok || (cases[i].ok && t != cases[i].want))
            printf("#   \"%s\": rc %d, t %lld\n", cases[i].text, rc, (long long)t);
        CHECK_EQ_INT(rc, cases[i].ok ? 0 : -EINVAL);
        if (cases[i].ok)
            CHECK_EQ_INT(t, cases[i].want);
    }
    int64_t t;
    CHECK_EQ_INT(pv_awscreds_parse_time(NULL, &t), -EINVAL);
}

TEST(refresh)
{
    pv_aws_creds_t c;
    memset(&c, 0, sizeof(c));
    CHECK(pv_awscreds_needs_refresh(&c, 0)); /* nothing yet */
    CHECK(pv_awscreds_needs_refresh(NULL, 0));
    strcpy(c.key_id, "A");
    CHECK(!pv_awscreds_needs_refresh(&c, INT64_MAX - 1)); /* long-term keys */
    CHECK_EQ_INT(pv_awscreds_refresh_at(&c), INT64_MAX);
    c.expires_s = 1000000;
    CHECK_EQ_INT(pv_awscreds_refresh_at(&c), 1000000 - PV_AWSCREDS_REFRESH_S);
    CHECK(!pv_awscreds_needs_refresh(&c, 1000000 - 301));
    CHECK(pv_awscreds_needs_refresh(&c, 1000000 - 300));
    CHECK(pv_awscreds_needs_refresh(&c, 1000000 + 5));
    c.expires_s = INT64_MIN + 5; /* no overflow at the edges */
    CHECK_EQ_INT(pv_awscreds_refresh_at(&c), INT64_MIN);
    CHECK(pv_awscreds_needs_refresh(&c, INT64_MIN));
    c.expires_s = INT64_MAX;
    CHECK(!pv_awscreds_needs_refresh(&c, 0));
    pv_awscreds_wipe(&c);
    CHECK(all_zero(&c));
    pv_awscreds_wipe(NULL);
}

/* ---- files: a temporary HOME, stderr captured to show nothing is logged */

static char g_home[64];

static void write_file(const char *path, const char *text, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        abort();
    close(fd);
}

TEST(files)
{
    char path[256], dir[128], r[64];
    pv_aws_creds_t c;
    snprintf(g_home, sizeof(g_home), "/tmp/pv_test_awscreds.XXXXXX");
    if (!mkdtemp(g_home))
        abort();
    snprintf(dir, sizeof(dir), "%s/.aws", g_home);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/credentials", dir);
    write_file(path, k_file, 0600);
    char cfg[256];
    snprintf(cfg, sizeof(cfg), "%s/config", dir);
    write_file(cfg, "[default]\nregion = eu-west-3\n[profile work]\nregion = us-west-2\n", 0600);

    /* stderr to a file for the rest of the test */
    char errpath[128];
    snprintf(errpath, sizeof(errpath), "%s/stderr", g_home);
    fflush(stderr);
    int saved = dup(2), errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(errfd, 2);

    CHECK_EQ_INT(pv_awscreds_load_file(path, "work", &c), 0);
    CHECK_EQ_STR(c.secret, "secretwork");
    CHECK_EQ_INT(pv_awscreds_load_file(path, "half", &c), -EINVAL);
    CHECK_EQ_INT(pv_awscreds_load_file("/nonexistent/credentials", "default", &c), -ENOENT);
    CHECK_EQ_INT(pv_awscreds_load_file(dir, "default", &c), -EINVAL); /* a directory */

    /* the failure seam: each ends cleanly, nothing left behind */
    static const char *const sites[] = {"awscreds.open:1", "awscreds.alloc:1", "awscreds.read:1"};
    for (size_t i = 0; i < PV_ARRAY_LEN(sites); i++) {
        memset(&c, 'x', sizeof(c));
        pv_fail_reset(sites[i]);
        int rc = pv_awscreds_load_file(path, "work", &c);
        pv_fail_reset("");
        CHECK(rc == -EACCES || rc == -ENOMEM || rc == -EIO);
        CHECK(all_zero(&c));
    }

    /* the chain with the real environment */
    setenv("HOME", g_home, 1);
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    unsetenv("AWS_CONFIG_FILE");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_SECURITY_TOKEN");
    unsetenv("AWS_CREDENTIAL_EXPIRATION");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    CHECK_EQ_INT(pv_awscreds_load(NULL, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDDEFAULT");
    CHECK_EQ_INT(pv_awscreds_load_region(NULL, r, sizeof(r)), 0);
    CHECK_EQ_STR(r, "eu-west-3");
    setenv("AWS_PROFILE", "work", 1);
    CHECK_EQ_INT(pv_awscreds_load(NULL, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDWORK");
    CHECK_EQ_INT(pv_awscreds_load_region(NULL, r, sizeof(r)), 0);
    CHECK_EQ_STR(r, "us-west-2");
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secretenv", 1);
    CHECK_EQ_INT(pv_awscreds_load(NULL, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDENV");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_PROFILE");
    /* AWS_SHARED_CREDENTIALS_FILE, with "~/" */
    snprintf(path, sizeof(path), "%s/other", g_home);
    write_file(path, "[default]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=s\n", 0600);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "~/other", 1);
    CHECK_EQ_INT(pv_awscreds_load(NULL, &c), 0);
    CHECK_EQ_STR(c.key_id, "AKIDOTHER");
    /* an unreadable file is the reason when nothing else has keys */
    pv_fail_reset("awscreds.open:1");
    CHECK_EQ_INT(pv_awscreds_load(NULL, &c), -EACCES);
    pv_fail_reset("");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/x", 1);
    CHECK_EQ_INT(pv_awscreds_load(NULL, &c), -ENOENT);

    char *env[] = {"HOME=/h", NULL}, *set[] = {"HOME=/h", "AWS_CONFIG_FILE=/etc/aws", NULL},
         *nohome[] = {NULL};
    CHECK_EQ_INT(pv_awscreds_path(env, PV_AWSCREDS_CREDENTIALS, path, sizeof(path)), 0);
    CHECK_EQ_STR(path, "/h/.aws/credentials");
    CHECK_EQ_INT(pv_awscreds_path(set, PV_AWSCREDS_CONFIG, path, sizeof(path)), 0);
    CHECK_EQ_STR(path, "/etc/aws");
    CHECK_EQ_INT(pv_awscreds_path(nohome, PV_AWSCREDS_CONFIG, path, sizeof(path)), -ENOENT);
    CHECK_EQ_INT(pv_awscreds_path(env, PV_AWSCREDS_CREDENTIALS, path, 10), -EMSGSIZE);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(errfd);
    struct stat st;
    CHECK_EQ_INT(stat(errpath, &st), 0);
    CHECK_EQ_INT(st.st_size, 0); /* not a word logged, secrets or not */

    snprintf(path, sizeof(path), "rm -rf '%s'", g_home);
    CHECK_EQ_INT(system(path), 0);
}

int main(void)
{
    pv_log_set_level(PV_LOG_DEBUG); /* anything logged would show in `files` */
    RUN(credentials_profiles);
    RUN(credentials_missing_keys);
    RUN(credentials_comments);
    RUN(credentials_whitespace);
    RUN(credentials_crlf);
    RUN(credentials_absent_profile);
    RUN(credentials_limits);
    RUN(config_region);
    RUN(env_credentials);
    RUN(env_precedence);
    RUN(imds_good);
    RUN(imds_malformed);
    RUN(rfc3339_times);
    RUN(refresh);
    RUN(files);
    return t_done("awscreds");
}
