/*
 * config.c — the configuration table and its parsers. The file format is
 * deliberately small: `key = value` per line, `#` starts a comment, values
 * may be quoted with "double quotes". Every key is also PV_<KEY> in the
 * environment and settable by pvd's flags. Parsing is pure (no I/O besides
 * reading the named file) so that it can be fuzzed and tested.
 */
#include "base/config.h"
#include "base/dsn.h"
#include "base/pv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T_STR, T_INT, T_U64, T_DBL, T_BOOL };

#define F(field) offsetof(pv_config_t, field), sizeof(((pv_config_t *)0)->field)

static const pv_config_key_t g_keys[] = {
    {"data_dir", T_STR, F(data_dir), "./pv-data", "where the store, blobs, keys and TLS files live"},
    {"https_listen", T_STR, F(https_listen), "127.0.0.1:8443", "public HTTPS listener ADDR:PORT"},
    {"http_listen", T_STR, F(http_listen), "127.0.0.1:8080", "private plain-HTTP listener (health, metrics)"},
    {"http_redirect", T_BOOL, F(http_redirect), "false", "the plain-HTTP listener answers /healthz and /readyz only and redirects everything else (/metrics too) to HTTPS: for a public port 80"},
    {"admin_socket", T_STR, F(admin_socket), "", "pvctl's Unix socket (default DATA/admin.sock)"},
    {"admin_group", T_STR, F(admin_group), "", "group allowed to use the admin socket (mode 0660)"},
    {"backup_dir", T_STR, F(backup_dir), "", "where pvctl backup may write (default DATA/backups)"},
    {"tls_cert", T_STR, F(tls_cert), "", "PEM certificate (default DATA/tls/cert.pem, self-signed)"},
    {"tls_key", T_STR, F(tls_key), "", "PEM private key (default DATA/tls/key.pem)"},
    {"access_token_ttl", T_INT, F(access_token_ttl), "900", "access token lifetime, seconds"},
    {"refresh_token_ttl", T_INT, F(refresh_token_ttl), "2592000", "refresh token lifetime, seconds"},
    {"presign_ttl", T_INT, F(presign_ttl), "3600", "presigned URL lifetime, seconds"},
    {"share_max_days", T_INT, F(share_max_days), "30", "longest a video's share link may live, days (a new one lives 7 days unless asked otherwise)"},
    {"login_account_burst", T_INT, F(login_account_burst), "10", "login attempts per account before 429"},
    {"login_account_per_minute", T_DBL, F(login_account_per_minute), "5", "per-account refill rate"},
    {"login_ip_burst", T_INT, F(login_ip_burst), "30", "login attempts per address before 429"},
    {"login_ip_per_minute", T_DBL, F(login_ip_per_minute), "30", "per-address refill rate"},
    {"signup", T_STR, F(signup), "open", "who may sign up: open, invite (with a code from `pvctl user invite`) or closed (accounts from `pvctl user add`)"},
    {"signup_ip_burst", T_INT, F(signup_ip_burst), "10", "sign-ups per address before 429"},
    {"signup_ip_per_minute", T_DBL, F(signup_ip_per_minute), "0.2", "per-address sign-up refill rate"},
    {"hash_queue", T_INT, F(hash_queue), "32", "password hashes waiting, per priority, before 503 (logins go first)"},
    {"max_photo_pixels", T_U64, F(max_photo_pixels), "100000000", "largest photo, in pixels (declared or decoded): 413 past it"},
    {"decode_memory", T_U64, F(decode_memory), "167772160", "memory all photo decodes may take together; half for the largest one"},
    {"max_video_seconds", T_INT, F(max_video_seconds), "600", "longest video one request may ask for, seconds"},
    {"max_video_frames", T_INT, F(max_video_frames), "36000", "most frames one video may have (seconds x fps)"},
    {"user_running_jobs", T_INT, F(user_running_jobs), "1", "renders one user may have running at once"},
    {"user_queued_jobs", T_INT, F(user_queued_jobs), "20", "videos one user may have queued or rendering; 429 past it"},
    {"user_storage_bytes", T_U64, F(user_storage_bytes), "0", "photos and videos one user may store, bytes (0: no limit); 507 past it"},
    {"max_upload_bytes", T_U64, F(max_upload_bytes), "209715200", "largest upload request body"},
    {"max_json_bytes", T_U64, F(max_json_bytes), "65536", "largest JSON request body (at most 64K, what the JSON parser takes)"},
    {"map_size", T_U64, F(map_size), "1073741824", "initial LMDB map size, bytes"},
    {"map_max", T_U64, F(map_max), "68719476736", "grow the LMDB map up to this (0: never)"},
    {"loops", T_INT, F(loops), "2", "HTTP event loops (threads)"},
    {"workers", T_INT, F(workers), "0", "worker threads for blocking work (0: cores)"},
    {"render_workers", T_INT, F(render_workers), "0", "render threads (0: cores)"},
    {"render_open_jobs", T_INT, F(render_open_jobs), "4", "renders started at once; they share the render threads a photo at a time"},
    {"log_level", T_STR, F(log_level), "info", "debug, info, warn or error"},
    {"idle_timeout", T_INT, F(idle_timeout), "60", "keep-alive idle timeout, seconds"},
    {"read_timeout", T_INT, F(read_timeout), "30", "seconds without a byte while a request arrives before 408 and close"},
    {"write_timeout", T_INT, F(write_timeout), "60", "slow-client write timeout, seconds"},
    {"header_timeout", T_INT, F(header_timeout), "10", "seconds a request head may take from its first byte (a new connection's from the accept, TLS handshake included); 408 past it"},
    {"body_timeout", T_INT, F(body_timeout), "20", "seconds a request body may take, plus 1 s for every body_min_rate bytes received; 408 past it"},
    {"body_min_rate", T_U64, F(body_min_rate), "1024", "bytes/s a request body must average past body_timeout: a big upload on a slow link goes on, a trickle is cut"},
    {"max_connections", T_INT, F(max_connections), "0", "connections on the public listener in all; past it new ones are closed at once (0: from the open-file limit, (RLIMIT_NOFILE - 256 - max_private_connections) / 2)"},
    {"max_connections_per_ip", T_INT, F(max_connections_per_ip), "128", "connections on the public listener from one address (an IPv6 one by its /64, the peer's, not X-Forwarded-For's; trusted_proxies are exempt)"},
    {"max_private_connections", T_INT, F(max_private_connections), "32", "connections on the private listener, counted apart so that a public flood never takes the health checks' place; past it a 503"},
    {"trusted_proxies", T_STR, F(trusted_proxies), "", "comma-separated proxy addresses (IPv4, IPv6) for X-Forwarded-For: the client is the right-most entry of all its lines that is not one of them"},
    {"s3_bucket", T_STR, F(s3_bucket), "", "S3 bucket pvd replicates to (empty: no cloud sync)"},
    {"s3_prefix", T_STR, F(s3_prefix), "", "key prefix in the bucket, e.g. pv/box1 (one appliance a prefix)"},
    {"s3_region", T_STR, F(s3_region), "", "the bucket's region (empty: from the AWS config file, else us-east-1)"},
    {"s3_endpoint", T_STR, F(s3_endpoint), "", "http(s)://host[:port] of an S3-compatible service (empty: AWS's regional endpoint)"},
    {"s3_path_style", T_BOOL, F(s3_path_style), "false", "ENDPOINT/BUCKET/KEY URLs instead of BUCKET.ENDPOINT/KEY"},
    {"media_from_s3", T_BOOL, F(media_from_s3), "false", "photo and video links point at S3 (presigned GETs) once S3 has the file"},
    {"aws_profile", T_STR, F(aws_profile), "", "profile of the AWS shared credentials and config files (empty: AWS_PROFILE, else default)"},
    {"aws_imds_endpoint", T_STR, F(aws_imds_endpoint), "http://169.254.169.254", "EC2 instance metadata (IMDSv2), where S3 credentials come from when neither the environment nor the shared files have any (empty or off: never)"},
    {"pg_dsn", T_STR, F(pg_dsn), "", "libpq connection string of a PostgreSQL (RDS) database pvd mirrors users, photos and videos into, e.g. \"host=db.example.com dbname=pv user=pv sslmode=verify-full\" (empty: none; the password is never shown: prefer PGPASSFILE)"},
    {"sync_interval", T_INT, F(sync_interval), "10", "seconds between replication passes once caught up"},
    {"sync_batch", T_INT, F(sync_batch), "1000", "change-log entries in one replicated segment at most"},
    {"s3_multipart_threshold", T_U64, F(s3_multipart_threshold), "64M", "files larger than this go to S3 in parts (a broken upload resumes)"},
    {"s3_part_size", T_U64, F(s3_part_size), "16M", "size of those parts (5M to 5G)"},
    {"dynamodb_table", T_STR, F(dynamodb_table), "", "DynamoDB table pvd mirrors video status into, keyed user_id/video_id (empty: none; schema/records.json's is pv_video_status)"},
    {"dynamodb_endpoint", T_STR, F(dynamodb_endpoint), "", "http(s)://host[:port] of a DynamoDB-compatible service (empty: AWS's regional endpoint)"},
    {"dynamodb_region", T_STR, F(dynamodb_region), "", "the table's region (empty: s3_region, else the AWS config file's, else us-east-1)"},
    {"dynamodb_create", T_BOOL, F(dynamodb_create), "false", "make the DynamoDB table (on-demand capacity) when it is missing"},
    {"snapshot_interval", T_INT, F(snapshot_interval), "86400", "seconds between store snapshots in S3 (the first one when S3 has none)"},
    {"snapshot_retention", T_INT, F(snapshot_retention), "7", "snapshots kept in S3; older ones are deleted"},
    {"changelog_alarm_bytes", T_U64, F(changelog_alarm_bytes), "1G", "warn (log, metric, pvctl status) when the change log kept for replication passes this size"},
    {"changelog_trim_seconds", T_INT, F(changelog_trim_seconds), "5", "how often the change log is trimmed below every replication cursor"},
    {"web_root", T_STR, F(web_root), "", "the built web UI (default: ../web beside the pvd binary, else ../share/pv/web)"},
};

const pv_config_key_t *pv_config_keys(size_t *n)
{
    *n = PV_ARRAY_LEN(g_keys);
    return g_keys;
}

static const pv_config_key_t *find_key(const char *name)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_keys); i++)
        if (strcmp(g_keys[i].name, name) == 0)
            return &g_keys[i];
    return NULL;
}

static int parse_value(const pv_config_key_t *k, void *field, const char *v,
                       char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    switch (k->type) {
    case T_STR:
        if (strlen(v) >= k->size) {
            snprintf(err, errlen, "%s: value too long", k->name);
            return -EINVAL;
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case T_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < 0 || x > 100000000) {
            snprintf(err, errlen, "%s: expected a whole number, got \"%s\"", k->name, v);
            return -EINVAL;
        }
        *(int *)field = (int)x;
        return 0;
    }
    case T_U64: {
        if (*v == '-')
            goto bad_u64;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v)
            goto bad_u64;
        /* optional K/M/G suffix, powers of 1024 */
        unsigned long long mul = 1;
        if (*end == 'K' || *end == 'k')
            mul = 1ULL << 10;
        else if (*end == 'M' || *end == 'm')
            mul = 1ULL << 20;
        else if (*end == 'G' || *end == 'g')
            mul = 1ULL << 30;
        if (mul > 1)
            end++;
        if (*end || (x && mul > UINT64_MAX / x))
            goto bad_u64;
        *(uint64_t *)field = x * mul;
        return 0;
    bad_u64:
        snprintf(err, errlen, "%s: expected a size in bytes (K/M/G allowed), got \"%s\"", k->name, v);
        return -EINVAL;
    }
    case T_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1")) {
            *(bool *)field = true;
            return 0;
        }
        if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0")) {
            *(bool *)field = false;
            return 0;
        }
        snprintf(err, errlen, "%s: expected true or false, got \"%s\"", k->name, v);
        return -EINVAL;
    case T_DBL: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || x < 0) {
            snprintf(err, errlen, "%s: expected a number, got \"%s\"", k->name, v);
            return -EINVAL;
        }
        *(double *)field = x;
        return 0;
    }
    }
    return -EINVAL;
}

int pv_config_set(pv_config_t *c, const char *key, const char *value,
                  char *err, size_t errlen)
{
    const pv_config_key_t *k = find_key(key);
    if (!k) {
        snprintf(err, errlen, "unknown config key \"%s\"", key);
        return -EINVAL;
    }
    return parse_value(k, (char *)c + k->offset, value, err, errlen);
}

void pv_config_defaults(pv_config_t *c)
{
    char err[128];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < PV_ARRAY_LEN(g_keys); i++)
        parse_value(&g_keys[i], (char *)c + g_keys[i].offset, g_keys[i].def,
                    err, sizeof(err));
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* One line of a config file. Pure. */
static int parse_line(pv_config_t *c, char *line, int lineno, char *err,
                      size_t errlen)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
        return 0;
    char *eq = strchr(s, '=');
    if (!eq) {
        snprintf(err, errlen, "line %d: expected key = value", lineno);
        return -EINVAL;
    }
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    size_t vl = strlen(val);
    if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
        val[vl - 1] = '\0';
        val++;
    } else {
        char *hash = strstr(val, " #");
        if (hash)
            *hash = '\0', val = trim(val);
    }
    char sub[200];
    int rc = pv_config_set(c, key, val, sub, sizeof(sub));
    if (rc < 0)
        snprintf(err, errlen, "line %d: %s", lineno, sub);
    return rc;
}

int pv_config_load_file(pv_config_t *c, const char *path, char *err,
                        size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char line[1024], sub[256];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s: line %d too long", path, lineno);
            rc = -EINVAL;
            break;
        }
        rc = parse_line(c, line, lineno, sub, sizeof(sub));
        if (rc < 0) {
            snprintf(err, errlen, "%s: %s", path, sub);
            break;
        }
    }
    fclose(f);
    return rc;
}

int pv_config_load_env(pv_config_t *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_keys); i++) {
        char name[64] = "PV_";
        size_t j = 3;
        for (const char *p = g_keys[i].name; *p && j < sizeof(name) - 1; p++)
            name[j++] = (char)toupper((unsigned char)*p);
        name[j] = '\0';
        const char *v = getenv(name);
        if (!v)
            continue;
        char sub[200];
        int rc = parse_value(&g_keys[i], (char *)c + g_keys[i].offset, v, sub,
                             sizeof(sub));
        if (rc < 0) {
            snprintf(err, errlen, "%s: %s", name, sub);
            return rc;
        }
    }
    return 0;
}

/* "1.2.3.4:443" or "[::1]:443", port 0..65535. */
static bool valid_listen(const char *s)
{
    char host[64];
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return false;
        hl = (size_t)(close - s - 1);
        if (hl == 0 || hl >= sizeof(host))
            return false;
        memcpy(host, s + 1, hl);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host))
            return false;
        hl = (size_t)(colon - s);
        memcpy(host, s, hl);
    }
    host[hl] = '\0';
    unsigned char buf[16];
    if (inet_pton(s[0] == '[' ? AF_INET6 : AF_INET, host, buf) != 1)
        return false;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    return !errno && end != colon + 1 && !*end && port >= 0 && port <= 65535;
}

static int derive(char *field, size_t size, const char *dir, const char *rel)
{
    if (*field)
        return 0;
    int n = snprintf(field, size, "%s/%s", dir, rel);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int pv_config_signup_mode(const pv_config_t *c)
{
    static const char *const modes[] = {"open", "invite", "closed"};
    for (int i = 0; i < (int)PV_ARRAY_LEN(modes); i++)
        if (strcmp(c->signup, modes[i]) == 0)
            return i;
    return -EINVAL;
}

/* trusted_proxies: addresses (IPv4 or IPv6), comma- or space-separated;
 * 0, or -EINVAL with the first entry that is not one in err. */
/* DynamoDB: a table name AWS takes (3-255 of [A-Za-z0-9_.-]), a region
 * that can go into a host name, and an http(s) endpoint. */
static int check_dynamodb(const pv_config_t *c, char *err, size_t errlen)
{
    size_t n = strlen(c->dynamodb_table);
    bool ok = n == 0 || (n >= 3 && strspn(c->dynamodb_table, "abcdefghijklmnopqrstuvwxyz"
                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n);
    if (!ok) {
        snprintf(err, errlen, "dynamodb_table: 3 to 255 of A-Z a-z 0-9 _ . -, got \"%s\"",
                 c->dynamodb_table);
        return -EINVAL;
    }
    size_t rn = strlen(c->dynamodb_region);
    if (rn && strspn(c->dynamodb_region, "abcdefghijklmnopqrstuvwxyz0123456789-") != rn) {
        snprintf(err, errlen, "dynamodb_region: a region name such as eu-west-1, got \"%s\"",
                 c->dynamodb_region);
        return -EINVAL;
    }
    if (c->dynamodb_endpoint[0] && strncmp(c->dynamodb_endpoint, "http://", 7) &&
        strncmp(c->dynamodb_endpoint, "https://", 8)) {
        snprintf(err, errlen, "dynamodb_endpoint: expected http://HOST[:PORT] or https://HOST[:PORT]");
        return -EINVAL;
    }
    return 0;
}

static int check_proxies(const char *list, char *err, size_t errlen)
{
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        char host[64];
        unsigned char buf[16];
        if (n && (n >= sizeof(host) || (memcpy(host, p, n), host[n] = '\0',
                                          inet_pton(AF_INET, host, buf) != 1 &&
                                          inet_pton(AF_INET6, host, buf) != 1))) {
            snprintf(err, errlen, "trusted_proxies: \"%.*s\" is not an IP address", (int)(n < 64 ? n : 64), p);
            return -EINVAL;
        }
        p += n;
    }
    return 0;
}

int pv_config_finish(pv_config_t *c, char *err, size_t errlen)
{
    if (!*c->data_dir) {
        snprintf(err, errlen, "data_dir must not be empty");
        return -EINVAL;
    }
    if (derive(c->admin_socket, sizeof(c->admin_socket), c->data_dir, "admin.sock") ||
        derive(c->backup_dir, sizeof(c->backup_dir), c->data_dir, "backups") ||
        derive(c->tls_cert, sizeof(c->tls_cert), c->data_dir, "tls/cert.pem") ||
        derive(c->tls_key, sizeof(c->tls_key), c->data_dir, "tls/key.pem")) {
        snprintf(err, errlen, "data_dir is too long");
        return -EINVAL;
    }
    if (pv_log_level_parse(c->log_level) < 0) {
        snprintf(err, errlen, "log_level: expected debug, info, warn or error, got \"%s\"", c->log_level);
        return -EINVAL;
    }
    if (c->loops < 1 || c->loops > 64) {
        snprintf(err, errlen, "loops: expected 1 to 64");
        return -EINVAL;
    }
    if (c->access_token_ttl < 1 || c->presign_ttl < 1 || c->refresh_token_ttl < 1) {
        snprintf(err, errlen, "token and URL lifetimes must be at least 1 second");
        return -EINVAL;
    }
    if (c->share_max_days < 1 || c->share_max_days > 3650) {
        snprintf(err, errlen, "share_max_days: expected 1 to 3650");
        return -EINVAL;
    }
    if (pv_config_signup_mode(c) < 0) {
        snprintf(err, errlen, "signup: expected open, invite or closed, got \"%s\"", c->signup);
        return -EINVAL;
    }
    if (c->hash_queue < 1 || c->signup_ip_burst < 1 || c->signup_ip_per_minute <= 0) {
        snprintf(err, errlen, "hash_queue, signup_ip_burst and signup_ip_per_minute: at least 1, 1 and above 0");
        return -EINVAL;
    }
    if (c->max_video_seconds < 1 || c->max_video_frames < 1 || c->user_running_jobs < 1 ||
        c->user_queued_jobs < 1 || c->render_open_jobs < 1) {
        snprintf(err, errlen, "max_video_seconds, max_video_frames, user_running_jobs, "
                 "user_queued_jobs, render_open_jobs: at least 1");
        return -EINVAL;
    }
    if (c->max_json_bytes < 1024 || c->max_json_bytes > PV_JSON_MAX_BYTES) {
        snprintf(err, errlen, "max_json_bytes: 1K to %dK (what the JSON parser takes)", PV_JSON_MAX_BYTES >> 10);
        return -EINVAL;
    }
    if (c->max_photo_pixels < 1 || c->decode_memory < (16u << 20)) {
        snprintf(err, errlen, "max_photo_pixels: at least 1; decode_memory: at least 16M");
        return -EINVAL;
    }
    if (c->max_connections_per_ip < 1 || c->max_private_connections < 1) {
        snprintf(err, errlen, "max_connections_per_ip and max_private_connections: at least 1");
        return -EINVAL;
    }
    if (c->header_timeout < 1 || c->body_timeout < 1 || c->body_min_rate < 1 || c->read_timeout < 1 ||
        c->idle_timeout < 1 || c->write_timeout < 1) {
        snprintf(err, errlen, "the timeouts and body_min_rate: at least 1");
        return -EINVAL;
    }
    if (c->media_from_s3 && !c->s3_bucket[0]) {
        snprintf(err, errlen, "media_from_s3 needs s3_bucket (links point at its replica)");
        return -EINVAL;
    }
    if (c->sync_interval < 1 || c->sync_batch < 1 || c->sync_batch > 100000 ||
        c->snapshot_interval < 10 || c->snapshot_retention < 1) {
        snprintf(err, errlen, "sync_interval: at least 1; sync_batch: 1 to 100000; "
                 "snapshot_interval: at least 10; snapshot_retention: at least 1");
        return -EINVAL;
    }
    if (c->s3_part_size < (5ULL << 20) || c->s3_part_size > (5ULL << 30) ||
        c->s3_multipart_threshold < (5ULL << 20)) {
        snprintf(err, errlen, "s3_part_size: 5M to 5G; s3_multipart_threshold: at least 5M (S3's smallest part)");
        return -EINVAL;
    }
    if (c->s3_endpoint[0] && strncmp(c->s3_endpoint, "http://", 7) && strncmp(c->s3_endpoint, "https://", 8)) {
        snprintf(err, errlen, "s3_endpoint: expected http://HOST[:PORT] or https://HOST[:PORT]");
        return -EINVAL;
    }
    if (check_dynamodb(c, err, errlen) < 0)
        return -EINVAL;
    if (c->aws_imds_endpoint[0] && strcmp(c->aws_imds_endpoint, "off") &&
        strncmp(c->aws_imds_endpoint, "http://", 7) && strncmp(c->aws_imds_endpoint, "https://", 8)) {
        snprintf(err, errlen, "aws_imds_endpoint: expected http://HOST[:PORT], empty or off");
        return -EINVAL;
    }
    if (c->changelog_trim_seconds < 1) {
        snprintf(err, errlen, "changelog_trim_seconds: at least 1");
        return -EINVAL;
    }
    if (c->map_size < (64u << 10)) {
        snprintf(err, errlen, "map_size: at least 64K");
        return -EINVAL;
    }
    if (check_proxies(c->trusted_proxies, err, errlen) < 0)
        return -EINVAL;
    if (!valid_listen(c->https_listen) || !valid_listen(c->http_listen)) {
        snprintf(err, errlen, "https_listen and http_listen take IP:PORT or [IPv6]:PORT (port 0-65535), got \"%s\", \"%s\"",
                 c->https_listen, c->http_listen);
        return -EINVAL;
    }
    return 0;
}

char *pv_config_dump(const pv_config_t *c)
{
    size_t cap = 16384, pos = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[0] = '\0';
    for (size_t i = 0; i < PV_ARRAY_LEN(g_keys) && pos < cap; i++) {
        const pv_config_key_t *k = &g_keys[i];
        const void *f = (const char *)c + k->offset;
        int n = 0;
        switch (k->type) {
        case T_STR:
            if (!strcmp(k->name, "pg_dsn")) { /* its password is never shown */
                char masked[sizeof(c->pg_dsn) + 16];
                pv_dsn_redact(f, masked, sizeof(masked));
                n = snprintf(out + pos, cap - pos, "%s = %s\n", k->name, masked);
                break;
            }
            n = snprintf(out + pos, cap - pos, "%s = %s\n", k->name, (const char *)f);
            break;
        case T_INT: n = snprintf(out + pos, cap - pos, "%s = %d\n", k->name, *(const int *)f); break;
        case T_U64: n = snprintf(out + pos, cap - pos, "%s = %llu\n", k->name, (unsigned long long)*(const uint64_t *)f); break;
        case T_DBL: n = snprintf(out + pos, cap - pos, "%s = %g\n", k->name, *(const double *)f); break;
        case T_BOOL: n = snprintf(out + pos, cap - pos, "%s = %s\n", k->name, *(const bool *)f ? "true" : "false"); break;
        }
        if (n > 0)
            pos += (size_t)n;
    }
    return out;
}
