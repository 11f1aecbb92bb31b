/*
 * awscreds.c — the AWS credential chain's parsers (contract in
 * awscreds.h).
 *
 * The two INI files share one line walker that knows only sections,
 * options, continuations and comments, and calls back once per option;
 * what an option means lives in each file's callback. Values are located
 * in the caller's buffer and copied out once, after the checks, so the INI
 * parsers allocate nothing (the IMDS one uses jansson). The rules follow
 * botocore's (configparser) where users would notice a difference.
 *
 * Secrets: nothing is logged, outputs are wiped on every error, and the
 * file wrappers wipe what they read before freeing it.
 */
#include "cloud/awscreds.h"

#include "base/pv.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- spans and values ---- */

typedef struct aw_span {
    const char *p; /* into the caller's buffer; NULL: absent */
    size_t n;      /* bytes */
} aw_span_t;

static bool aw_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static aw_span_t aw_trim(const char *p, size_t n)
{
    while (n > 0 && aw_space(*p))
        p++, n--;
    while (n > 0 && aw_space(p[n - 1]))
        n--;
    return (aw_span_t){p, n};
}

static bool aw_is(aw_span_t s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static bool aw_is_ci(aw_span_t s, const char *lit)
{
    return s.n == strlen(lit) && strncasecmp(s.p, lit, s.n) == 0;
}

/* Copies a credential: visible ASCII only. A blank or control in a key is
 * a paste gone wrong (or an inline comment, which INI files do not have),
 * and these values end up in HTTP headers. */
static int aw_copy(char *dst, size_t size, aw_span_t v)
{
    if (v.n >= size)
        return -EMSGSIZE;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (c <= ' ' || c >= 0x7f)
            return -EINVAL;
    }
    if (v.n > 0)
        memcpy(dst, v.p, v.n);
    dst[v.n] = '\0';
    return 0;
}

static aw_span_t aw_cstr(const char *s) { return (aw_span_t){s, s ? strlen(s) : 0}; }

/* Both keys, or neither (-ENOENT: look elsewhere), never just one. */
static int aw_fill(pv_aws_creds_t *out, const char *source, aw_span_t id, aw_span_t secret,
                   aw_span_t token)
{
    int rc;
    if (id.n == 0 && secret.n == 0)
        return -ENOENT;
    if (id.n == 0 || secret.n == 0)
        return -EINVAL;
    if ((rc = aw_copy(out->key_id, sizeof(out->key_id), id)) != 0 ||
        (rc = aw_copy(out->secret, sizeof(out->secret), secret)) != 0 ||
        (rc = aw_copy(out->token, sizeof(out->token), token)) != 0)
        return rc;
    pv_strlcpy(out->source, source, sizeof(out->source));
    return 0;
}

void pv_awscreds_wipe(pv_aws_creds_t *c)
{
    if (c)
        explicit_bzero(c, sizeof(*c));
}

/* ---- the environment ---- */

/* The value of name in envp, NULL when unset or empty. */
static const char *aw_env(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return (*envp)[n + 1] ? *envp + n + 1 : NULL;
    return NULL;
}

int pv_awscreds_from_env(char *const *envp, pv_aws_creds_t *out)
{
    const char *id = aw_env(envp, "AWS_ACCESS_KEY_ID");
    const char *secret = aw_env(envp, "AWS_SECRET_ACCESS_KEY");
    /* botocore looks at the old name first */
    const char *token = aw_env(envp, "AWS_SECURITY_TOKEN");
    const char *expires = aw_env(envp, "AWS_CREDENTIAL_EXPIRATION");
    if (!token)
        token = aw_env(envp, "AWS_SESSION_TOKEN");

    pv_awscreds_wipe(out);
    int rc = aw_fill(out, "env", aw_cstr(id), aw_cstr(secret), aw_cstr(token));
    if (rc == 0 && expires)
        rc = pv_awscreds_parse_time(expires, &out->expires_s);
    if (rc)
        pv_awscreds_wipe(out);
    return rc;
}

const char *pv_awscreds_profile(const char *arg, char *const *envp)
{
    const char *env = aw_env(envp, "AWS_PROFILE");
    return arg && *arg ? arg : env ? env : "default";
}

/* ---- INI files ---- */

/* Called once per option with its section (trimmed), name and value. */
typedef void (*aw_ini_fn)(void *arg, aw_span_t section, aw_span_t name, aw_span_t value);

static size_t aw_indent(const char *p, const char *end)
{
    size_t n = 0;
    while (p + n < end && (p[n] == ' ' || p[n] == '\t'))
        n++;
    return n;
}

/* "[name]" -> name (up to the last ']', as configparser); absent if not. */
static aw_span_t aw_section(aw_span_t line)
{
    const char *close = NULL;
    for (size_t i = 1; i < line.n; i++)
        if (line.p[i] == ']')
            close = line.p + i;
    if (!close)
        return (aw_span_t){NULL, 0};
    aw_span_t s = aw_trim(line.p + 1, (size_t)(close - line.p - 1));
    if (s.p == NULL || s.n == 0)
        return (aw_span_t){NULL, 0};
    return s;
}

/*
 * Walks the lines of buf. Options before any section, or after a broken
 * section header, belong to no section and are dropped (configparser
 * would refuse the whole file; being lenient costs nothing here since
 * those options could not be meant for the profile). A line indented
 * deeper than the option above continues it (nested S3 settings, wrapped
 * values) and is skipped with it. Lines that are none of these are
 * ignored.
 */
static void aw_ini_walk(const char *buf, size_t len, aw_ini_fn fn, void *arg)
{
    const char *p = buf, *end = buf + len;
    aw_span_t section = {NULL, 0};
    size_t option_indent = SIZE_MAX; /* SIZE_MAX: no option to continue */

    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
        p += 3; /* UTF-8 byte order mark */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        size_t indent = aw_indent(p, eol);
        aw_span_t line = aw_trim(p, (size_t)(eol - p));
        p = nl ? nl + 1 : end;

        if (line.n == 0 || line.p[0] == '#' || line.p[0] == ';')
            continue;
        if (option_indent != SIZE_MAX && indent > option_indent)
            continue; /* continues the option above */
        option_indent = SIZE_MAX;
        if (line.p[0] == '[') {
            section = aw_section(line);
            continue;
        }
        size_t sep = 0; /* the buffer need not end in NUL: no strcspn */
        while (sep < line.n && line.p[sep] != '=' && line.p[sep] != ':')
            sep++;
        if (sep == line.n)
            continue; /* not an option */
        option_indent = indent;
        aw_span_t name = aw_trim(line.p, sep);
        if (section.p && name.n > 0)
            fn(arg, section, name, aw_trim(line.p + sep + 1, line.n - sep - 1));
    }
}

/* What a walk collects for one profile; the last of repeated options wins. */
typedef struct aw_profile {
    const char *name; /* the profile wanted */
    bool config;      /* config file: sections are "profile NAME" */
    aw_span_t key_id, secret, session_token, security_token, region;
} aw_profile_t;

/* Whether a section is the profile: itself in the credentials file;
 * "profile NAME" (any blanks, NAME maybe quoted) or "default" in config. */
static bool aw_section_is(const aw_profile_t *pr, aw_span_t s)
{
    if (!pr->config || (strcmp(pr->name, "default") == 0 && aw_is(s, "default")))
        return aw_is(s, pr->name);
    if (s.n < 8 || memcmp(s.p, "profile", 7) != 0 || !aw_space(s.p[7]))
        return false;
    aw_span_t n = aw_trim(s.p + 7, s.n - 7);
    if (n.n >= 2 && n.p[0] == '"' && n.p[n.n - 1] == '"')
        n = (aw_span_t){n.p + 1, n.n - 2};
    return aw_is(n, pr->name);
}

static void aw_profile_option(void *arg, aw_span_t section, aw_span_t name, aw_span_t value)
{
    aw_profile_t *pr = arg;
    if (!aw_section_is(pr, section))
        return;
    if (aw_is_ci(name, "aws_access_key_id"))
        pr->key_id = value;
    else if (aw_is_ci(name, "aws_secret_access_key"))
        pr->secret = value;
    else if (aw_is_ci(name, "aws_session_token"))
        pr->session_token = value;
    else if (aw_is_ci(name, "aws_security_token"))
        pr->security_token = value;
    else if (aw_is_ci(name, "region"))
        pr->region = value;
}

int pv_awscreds_parse_credentials(const char *buf, size_t len, const char *profile,
                                  pv_aws_creds_t *out)
{
    aw_profile_t pr = {.name = profile};
    pv_awscreds_wipe(out);
    if (!buf || !profile || !*profile)
        return -EINVAL;
    aw_ini_walk(buf, len, aw_profile_option, &pr);
    /* botocore takes the old token name first */
    aw_span_t token = pr.security_token.p ? pr.security_token : pr.session_token;
    int rc = aw_fill(out, "file", pr.key_id, pr.secret, token);
    if (rc)
        pv_awscreds_wipe(out);
    return rc;
}

/* Region names as AWS and S3-compatible stores spell them. */
static int aw_copy_region(char *region, size_t size, aw_span_t v)
{
    if (v.n == 0)
        return -ENOENT;
    if (v.n >= size)
        return -EMSGSIZE;
    for (size_t i = 0; i < v.n; i++) {
        char c = v.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return -EINVAL;
    }
    memcpy(region, v.p, v.n);
    region[v.n] = '\0';
    return 0;
}

int pv_awscreds_parse_config_region(const char *buf, size_t len, const char *profile, char *region,
                                    size_t size)
{
    aw_profile_t pr = {.name = profile, .config = true};
    if (!region || size == 0)
        return -EINVAL;
    region[0] = '\0';
    if (!buf || !profile || !*profile)
        return -EINVAL;
    aw_ini_walk(buf, len, aw_profile_option, &pr);
    int rc = aw_copy_region(region, size, pr.region);
    if (rc)
        region[0] = '\0';
    return rc;
}

/* ---- the IMDS document ---- */

static aw_span_t aw_json_str(json_t *doc, const char *key)
{
    json_t *v = json_object_get(doc, key);
    return json_is_string(v) ? (aw_span_t){json_string_value(v), json_string_length(v)}
                             : (aw_span_t){NULL, 0};
}

static int aw_imds_fields(json_t *doc, pv_aws_creds_t *out)
{
    if (!json_is_object(doc))
        return -EINVAL;
    json_t *code = json_object_get(doc, "Code");
    if (code && !aw_is(aw_json_str(doc, "Code"), "Success"))
        return -EINVAL; /* e.g. a role without permission to be assumed */
    aw_span_t token = aw_json_str(doc, "Token");
    aw_span_t expires = aw_json_str(doc, "Expiration");
    if (token.n == 0 || expires.n == 0 || strlen(expires.p) != expires.n)
        return -EINVAL; /* IMDS keys always expire and need their token */
    int rc = aw_fill(out, "imds", aw_json_str(doc, "AccessKeyId"),
                     aw_json_str(doc, "SecretAccessKey"), token);
    if (rc == -ENOENT)
        rc = -EINVAL;
    return rc ? rc : pv_awscreds_parse_time(expires.p, &out->expires_s);
}

int pv_awscreds_parse_imds(const char *buf, size_t len, pv_aws_creds_t *out)
{
    json_error_t err;
    pv_awscreds_wipe(out);
    if (!buf)
        return -EINVAL;
    /* duplicate keys would make "which AccessKeyId?" ambiguous */
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    int rc = aw_imds_fields(doc, out);
    json_decref(doc);
    if (rc)
        pv_awscreds_wipe(out);
    return rc;
}

/* ---- RFC 3339 times ---- */

/* n decimal digits at s, or -1 (stops at the first non-digit, so never
 * reads past a NUL). */
static int aw_digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int aw_days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

/* Days from 1970-01-01 (proleptic Gregorian; Howard Hinnant's
 * days_from_civil), so no time zone or libc state is involved. */
static int64_t aw_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "Z", or "+HH:MM"/"-HH:MM" -> seconds east of UTC; *p moves past it. */
static int aw_offset(const char **p, int64_t *off)
{
    const char *s = *p;
    if (*s == 'Z' || *s == 'z') {
        *off = 0;
        *p = s + 1;
        return 0;
    }
    if (*s != '+' && *s != '-')
        return -EINVAL;
    int h = aw_digits(s + 1, 2);
    int m = h < 0 || s[3] != ':' ? -1 : aw_digits(s + 4, 2);
    if (h < 0 || h > 23 || m < 0 || m > 59)
        return -EINVAL;
    *off = (int64_t)(h * 60 + m) * 60 * (*s == '-' ? -1 : 1);
    *p = s + 6;
    return 0;
}

int pv_awscreds_parse_time(const char *s, int64_t *out)
{
    if (!s || strnlen(s, 20) < 20 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
        return -EINVAL;
    int y = aw_digits(s, 4), mo = aw_digits(s + 5, 2), d = aw_digits(s + 8, 2);
    int h = aw_digits(s + 11, 2), mi = aw_digits(s + 14, 2), sec = aw_digits(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > aw_days_in_month(y, mo) || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || sec < 0 || sec > 60) /* 60: a leap second */
        return -EINVAL;
    const char *p = s + 19;
    if (*p == '.') { /* fractions of a second: dropped */
        if (p[1] < '0' || p[1] > '9')
            return -EINVAL;
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    }
    int64_t off;
    if (aw_offset(&p, &off) != 0 || *p)
        return -EINVAL;
    *out = aw_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return 0;
}

/* ---- the chain and refreshing ---- */

int pv_awscreds_resolve(const char *profile_arg, char *const *envp, const char *cred,
                        size_t cred_len, pv_aws_creds_t *out)
{
    /* an explicit profile means that profile, even with keys in the env */
    if (!profile_arg || !*profile_arg) {
        int rc = pv_awscreds_from_env(envp, out);
        if (rc != -ENOENT)
            return rc; /* found, or half-set: an error, not a fallback */
    }
    if (!cred) {
        pv_awscreds_wipe(out);
        return -ENOENT;
    }
    return pv_awscreds_parse_credentials(cred, cred_len, pv_awscreds_profile(profile_arg, envp),
                                         out);
}

int pv_awscreds_resolve_region(const char *profile_arg, char *const *envp, const char *cfg,
                               size_t cfg_len, char *region, size_t size)
{
    const char *env = aw_env(envp, "AWS_REGION");
    if (!env)
        env = aw_env(envp, "AWS_DEFAULT_REGION");
    if (!region || size == 0)
        return -EINVAL;
    region[0] = '\0';
    if (env) {
        int rc = aw_copy_region(region, size, aw_cstr(env));
        if (rc)
            region[0] = '\0';
        return rc;
    }
    if (!cfg)
        return -ENOENT;
    return pv_awscreds_parse_config_region(cfg, cfg_len, pv_awscreds_profile(profile_arg, envp),
                                           region, size);
}

int64_t pv_awscreds_refresh_at(const pv_aws_creds_t *c)
{
    if (!c || !c->key_id[0])
        return INT64_MIN;
    if (c->expires_s == 0)
        return INT64_MAX;
    if (c->expires_s < INT64_MIN + PV_AWSCREDS_REFRESH_S)
        return INT64_MIN;
    return c->expires_s - PV_AWSCREDS_REFRESH_S;
}

bool pv_awscreds_needs_refresh(const pv_aws_creds_t *c, int64_t now_s)
{
    return now_s >= pv_awscreds_refresh_at(c);
}

/* ---- files ---- */

int pv_awscreds_path(char *const *envp, enum pv_awscreds_file which, char *out, size_t size)
{
    bool config = which == PV_AWSCREDS_CONFIG;
    const char *set = aw_env(envp, config ? "AWS_CONFIG_FILE" : "AWS_SHARED_CREDENTIALS_FILE");
    const char *home = aw_env(envp, "HOME");
    int n;

    if (set && strncmp(set, "~/", 2) != 0)
        n = snprintf(out, size, "%s", set);
    else if (!home)
        return -ENOENT;
    else if (set)
        n = snprintf(out, size, "%s/%s", home, set + 2);
    else
        n = snprintf(out, size, "%s/.aws/%s", home, config ? "config" : "credentials");
    return n < 0 || (size_t)n >= size ? -EMSGSIZE : 0;
}

static void aw_buf_free(char *buf, size_t len)
{
    if (buf)
        explicit_bzero(buf, len);
    free(buf);
}

static int aw_read_fd(int fd, size_t size, char **buf, size_t *len)
{
    char *b = pv_fail("awscreds.alloc") ? NULL : malloc(size + 1);
    size_t n = 0;
    if (!b)
        return -ENOMEM;
    while (n < size) {
        ssize_t got = pv_fail("awscreds.read") ? (errno = EIO, -1) : read(fd, b + n, size - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int rc = -errno;
            aw_buf_free(b, n);
            return rc;
        }
        if (got == 0)
            break; /* the file shrank: take what is there */
        n += (size_t)got;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

/* The whole file (a regular one, at most PV_AWSCREDS_MAX_FILE bytes).
 * Free with aw_buf_free(): it holds secrets. */
static int aw_read_file(const char *path, char **buf, size_t *len)
{
    struct stat st;
    int rc, fd;

    *buf = NULL;
    *len = 0;
    fd = pv_fail("awscreds.open") ? (errno = EACCES, -1) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode))
        rc = -EINVAL;
    else if (st.st_size > PV_AWSCREDS_MAX_FILE)
        rc = -EMSGSIZE;
    else
        rc = aw_read_fd(fd, (size_t)st.st_size, buf, len);
    close(fd);
    return rc;
}

int pv_awscreds_load_file(const char *path, const char *profile, pv_aws_creds_t *out)
{
    char *buf;
    size_t len;
    pv_awscreds_wipe(out);
    int rc = aw_read_file(path, &buf, &len);
    if (rc == 0)
        rc = pv_awscreds_parse_credentials(buf, len, profile, out);
    aw_buf_free(buf, len);
    return rc;
}

int pv_awscreds_load(const char *profile_arg, pv_aws_creds_t *out)
{
    char path[4096], *buf = NULL;
    size_t len = 0;
    int file_rc = pv_awscreds_path(environ, PV_AWSCREDS_CREDENTIALS, path, sizeof(path));
    if (file_rc == 0)
        file_rc = aw_read_file(path, &buf, &len);
    int rc = pv_awscreds_resolve(profile_arg, environ, buf, len, out);
    aw_buf_free(buf, len);
    /* found nowhere: a file that is there but unreadable says why */
    if (rc == -ENOENT && file_rc != 0 && file_rc != -ENOENT)
        rc = file_rc;
    return rc;
}

int pv_awscreds_load_region(const char *profile_arg, char *region, size_t size)
{
    char path[4096], *buf = NULL;
    size_t len = 0;
    int file_rc = pv_awscreds_path(environ, PV_AWSCREDS_CONFIG, path, sizeof(path));
    if (file_rc == 0)
        file_rc = aw_read_file(path, &buf, &len);
    int rc = pv_awscreds_resolve_region(profile_arg, environ, buf, len, region, size);
    aw_buf_free(buf, len);
    if (rc == -ENOENT && file_rc != 0 && file_rc != -ENOENT)
        rc = file_rc;
    return rc;
}
