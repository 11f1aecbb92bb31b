/*
 * awscreds.h — the pure parts of the AWS credential chain for the cloud
 * sync: the environment, the shared credentials file, the config file
 * (region) and the instance-metadata (IMDS) credential document.
 *
 * Parsers take a buffer and do no I/O, so they can be fuzzed
 * (tests/fuzz/fuzz_awscreds.c); thin wrappers read the files. Fetching the
 * IMDS document over HTTP is the caller's. Nothing here logs: the values
 * are secrets.
 *
 * Precedence, as botocore: an explicit profile argument means that profile
 * of the credentials file and nothing else; otherwise AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY win, then the profile AWS_PROFILE names, then
 * "default". Region: AWS_REGION, AWS_DEFAULT_REGION, then the config file.
 *
 * Results: 0; -ENOENT nothing there (no profile, no keys, no file);
 * -EINVAL present but unusable (only one of the two keys, a value with
 * spaces or controls, malformed JSON or time); -EMSGSIZE a value longer
 * than its field; other -errno from reading a file.
 */
#ifndef PV_AWSCREDS_H
#define PV_AWSCREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_AWSCREDS_REFRESH_S 300       /* refresh this long before expiry */
#define PV_AWSCREDS_MAX_FILE  (1 << 20) /* larger credential files are refused */

typedef struct pv_aws_creds {
    char key_id[128];  /* access key id */
    char secret[128];  /* secret access key */
    char token[2048];  /* session token; "" for long-term keys */
    int64_t expires_s; /* expiry, seconds since the epoch; 0: never */
    char source[16];   /* "env", "file" or "imds" */
} pv_aws_creds_t;

/* AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (or the old
 * AWS_SECURITY_TOKEN) and AWS_CREDENTIAL_EXPIRATION from envp, an array
 * like environ ("NAME=value", NULL-terminated). */
int pv_awscreds_from_env(char *const *envp, pv_aws_creds_t *out);

/* The profile to use: arg when non-empty, else AWS_PROFILE, else "default". */
const char *pv_awscreds_profile(const char *arg, char *const *envp);

/* [profile] of a shared credentials file (~/.aws/credentials): keys
 * aws_access_key_id, aws_secret_access_key, aws_session_token (or
 * aws_security_token). buf holds len bytes, NUL not needed. Whole-line
 * comments (# and ;), CRLF, a UTF-8 BOM and blanks around names and
 * values are fine; option names are case-insensitive, section names not;
 * indented lines continue the previous option and are ignored. A profile
 * with neither key is -ENOENT (it may hold a role instead). */
int pv_awscreds_parse_credentials(const char *buf, size_t len, const char *profile,
                                  pv_aws_creds_t *out);

/* region of [default] or [profile NAME] in a config file (~/.aws/config);
 * "[profile default]" also names the default. */
int pv_awscreds_parse_config_region(const char *buf, size_t len, const char *profile, char *region,
                                    size_t size);

/* The IMDS (or ECS) credential document: AccessKeyId, SecretAccessKey,
 * Token, Expiration (RFC 3339); "Code", when there, must be "Success". */
int pv_awscreds_parse_imds(const char *buf, size_t len, pv_aws_creds_t *out);

/* RFC 3339 ("2026-11-28T17:20:06Z", "...06.5+01:00") -> epoch seconds. */
int pv_awscreds_parse_time(const char *s, int64_t *out);

/* The chain over given inputs (pure): environment first unless a profile
 * is given, then that profile of the credentials text (cred may be NULL:
 * no file). */
int pv_awscreds_resolve(const char *profile_arg, char *const *envp, const char *cred,
                        size_t cred_len, pv_aws_creds_t *out);
/* Region the same way, from the environment then the config text. */
int pv_awscreds_resolve_region(const char *profile_arg, char *const *envp, const char *cfg,
                               size_t cfg_len, char *region, size_t size);

/* When to fetch again: PV_AWSCREDS_REFRESH_S before expiry; INT64_MAX for
 * keys that do not expire, INT64_MIN for empty ones. */
int64_t pv_awscreds_refresh_at(const pv_aws_creds_t *c);
bool pv_awscreds_needs_refresh(const pv_aws_creds_t *c, int64_t now_s);

/* Clears every field (not optimised away). */
void pv_awscreds_wipe(pv_aws_creds_t *c);

/* ---- files (thin wrappers; they read, the parsers above decide) ---- */

enum pv_awscreds_file { PV_AWSCREDS_CREDENTIALS, PV_AWSCREDS_CONFIG };
/* AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE (a leading "~/" is
 * $HOME), else $HOME/.aws/credentials or config. */
int pv_awscreds_path(char *const *envp, enum pv_awscreds_file which, char *out, size_t size);
int pv_awscreds_load_file(const char *path, const char *profile, pv_aws_creds_t *out);
/* The chain with environ and the credentials file. */
int pv_awscreds_load(const char *profile_arg, pv_aws_creds_t *out);
/* The region with environ and the config file. */
int pv_awscreds_load_region(const char *profile_arg, char *region, size_t size);

#endif
