/*
 * admin_proto.c — the admin socket's frames, a msgpack codec over jansson
 * values, the command table, request validation and pvctl's command-line
 * parser. See admin_proto.h for the wire shapes.
 *
 * Why our own msgpack reader rather than msgpack-c's unpacker: msgpack-c
 * allocates an array or map of the size the peer *declares* before it has
 * seen the elements, so a five-byte frame can ask for gigabytes. This reader
 * refuses a count larger than the bytes left (every element takes at least
 * one byte), bounds the depth and the total number of values, and builds
 * the jansson tree as it goes: memory stays proportional to the frame.
 * Like h2o's parsers it does no I/O, so the fuzzer drives it directly.
 */
#include "base/admin_proto.h"
#include "base/pv.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- frames ---------------- */

long pv_admin_frame_check(const void *buf, size_t len, size_t max)
{
    const uint8_t *p = buf;
    if (len < PV_ADMIN_HDR)
        return -EAGAIN;
    uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (n > max)
        return -EMSGSIZE;
    if (len - PV_ADMIN_HDR < n)
        return -EAGAIN;
    return (long)n;
}

void pv_admin_frame_header(uint8_t hdr[PV_ADMIN_HDR], uint32_t len)
{
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
}

/* ---------------- msgpack reader ---------------- */

typedef struct rd {
    const uint8_t *p, *end;
    size_t items, max_items;
} rd_t;

static size_t rd_left(const rd_t *r) { return (size_t)(r->end - r->p); }

static int rd_uint(rd_t *r, int bytes, uint64_t *v)
{
    if (rd_left(r) < (size_t)bytes)
        return -EINVAL;
    *v = 0;
    for (int i = 0; i < bytes; i++)
        *v = *v << 8 | *r->p++;
    return 0;
}

static int unpack_value(rd_t *r, int depth, json_t **out);

static int unpack_str(rd_t *r, uint64_t n, json_t **out)
{
    if (rd_left(r) < n || memchr(r->p, '\0', (size_t)n))
        return -EINVAL;
    *out = json_stringn((const char *)r->p, (size_t)n); /* NULL: not UTF-8 */
    r->p += n;
    return *out ? 0 : -EINVAL;
}

/* A count the peer declares must fit in what is left of the frame. */
static int count_ok(rd_t *r, uint64_t n, uint64_t per_item)
{
    if (n > rd_left(r) / per_item)
        return -EINVAL;
    r->items += (size_t)n;
    return r->items <= r->max_items ? 0 : -EINVAL;
}

static int unpack_array(rd_t *r, uint64_t n, int depth, json_t **out)
{
    if (depth >= PV_ADMIN_DEPTH_MAX || count_ok(r, n, 1) < 0)
        return -EINVAL;
    json_t *a = json_array();
    if (!a)
        return -ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        json_t *v = NULL;
        int rc = unpack_value(r, depth + 1, &v);
        if (rc == 0 && json_array_append_new(a, v) < 0)
            rc = -ENOMEM;
        if (rc < 0) {
            json_decref(a);
            return rc;
        }
    }
    *out = a;
    return 0;
}

/* Map keys are strings; a repeated key is refused rather than guessed at. */
static int unpack_key(rd_t *r, char **key, size_t *klen)
{
    uint64_t n;
    uint8_t b = rd_left(r) ? *r->p++ : 0xc1;
    if (b >= 0xa0 && b <= 0xbf)
        n = b & 0x1f;
    else if (b >= 0xd9 && b <= 0xdb) {
        if (rd_uint(r, 1 << (b - 0xd9), &n) < 0)
            return -EINVAL;
    } else
        return -EINVAL;
    json_t *s;
    if (unpack_str(r, n, &s) < 0)
        return -EINVAL;
    *klen = json_string_length(s);
    *key = strdup(json_string_value(s));
    json_decref(s);
    return *key ? 0 : -ENOMEM;
}

static int unpack_map(rd_t *r, uint64_t n, int depth, json_t **out)
{
    if (depth >= PV_ADMIN_DEPTH_MAX || count_ok(r, n, 2) < 0)
        return -EINVAL;
    json_t *m = json_object();
    if (!m)
        return -ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        char *key = NULL;
        size_t klen = 0;
        json_t *v = NULL;
        int rc = unpack_key(r, &key, &klen);
        if (rc == 0 && json_object_get(m, key))
            rc = -EINVAL;
        if (rc == 0)
            rc = unpack_value(r, depth + 1, &v);
        if (rc == 0 && json_object_set_new(m, key, v) < 0)
            rc = -ENOMEM;
        free(key);
        if (rc < 0) {
            json_decref(m);
            return rc;
        }
    }
    *out = m;
    return 0;
}

static int unpack_float(rd_t *r, int bytes, json_t **out)
{
    uint64_t bits;
    if (rd_uint(r, bytes, &bits) < 0)
        return -EINVAL;
    double d;
    if (bytes == 4) {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, sizeof(f));
        d = f;
    } else {
        memcpy(&d, &bits, sizeof(d));
    }
    if (!isfinite(d))
        return -EINVAL;
    *out = json_real(d);
    return *out ? 0 : -ENOMEM;
}

static int unpack_int(rd_t *r, uint8_t b, json_t **out)
{
    uint64_t u;
    bool is_signed = b >= 0xd0;
    int bytes = 1 << (b - (is_signed ? 0xd0 : 0xcc));
    if (rd_uint(r, bytes, &u) < 0)
        return -EINVAL;
    int64_t v;
    if (!is_signed) {
        if (u > INT64_MAX)
            return -EINVAL;
        v = (int64_t)u;
    } else if (bytes == 8) {
        memcpy(&v, &u, sizeof(v)); /* two's complement, as sent */
    } else {
        int shift = 64 - 8 * bytes; /* sign-extend from the top bit */
        v = (int64_t)(u << shift) >> shift;
    }
    *out = json_integer(v);
    return *out ? 0 : -ENOMEM;
}

static int unpack_value(rd_t *r, int depth, json_t **out)
{
    if (!rd_left(r))
        return -EINVAL;
    uint8_t b = *r->p++;
    uint64_t n;
    if (b <= 0x7f || b >= 0xe0) {
        *out = json_integer(b <= 0x7f ? b : (int)b - 256);
        return *out ? 0 : -ENOMEM;
    }
    if (b >= 0x80 && b <= 0x8f)
        return unpack_map(r, b & 0x0f, depth, out);
    if (b >= 0x90 && b <= 0x9f)
        return unpack_array(r, b & 0x0f, depth, out);
    if (b >= 0xa0 && b <= 0xbf)
        return unpack_str(r, b & 0x1f, out);
    switch (b) {
    case 0xc0: *out = json_null(); return 0;
    case 0xc2: *out = json_false(); return 0;
    case 0xc3: *out = json_true(); return 0;
    case 0xca: return unpack_float(r, 4, out);
    case 0xcb: return unpack_float(r, 8, out);
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        return unpack_int(r, b, out);
    case 0xd9: case 0xda: case 0xdb:
        return rd_uint(r, 1 << (b - 0xd9), &n) < 0 ? -EINVAL : unpack_str(r, n, out);
    case 0xdc: case 0xdd:
        return rd_uint(r, b == 0xdc ? 2 : 4, &n) < 0 ? -EINVAL : unpack_array(r, n, depth, out);
    case 0xde: case 0xdf:
        return rd_uint(r, b == 0xde ? 2 : 4, &n) < 0 ? -EINVAL : unpack_map(r, n, depth, out);
    default:
        return -EINVAL; /* 0xc1 (never used), bin and ext: not in this protocol */
    }
}

int pv_admin_unpack(const void *buf, size_t len, size_t max_items, json_t **out)
{
    *out = NULL;
    rd_t r = {buf, (const uint8_t *)buf + len, 1, max_items};
    json_t *v = NULL;
    int rc = unpack_value(&r, 0, &v);
    if (rc == 0 && rd_left(&r) != 0)
        rc = -EINVAL; /* one value per frame, nothing after it */
    if (rc < 0) {
        json_decref(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* ---------------- msgpack writer ---------------- */

typedef struct wr {
    uint8_t *p;
    size_t len, cap, max; /* max: of the whole frame */
    int err;
} wr_t;

static void wr_bytes(wr_t *w, const void *src, size_t n)
{
    if (w->err)
        return;
    if (n > w->max - w->len) {
        w->err = -EMSGSIZE;
        return;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *p = pv_fail("admin_pack") ? NULL : realloc(w->p, cap);
        if (!p) {
            w->err = -ENOMEM;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

/* One tag byte followed by v in `bytes` big-endian bytes. */
static void wr_tag(wr_t *w, uint8_t tag, uint64_t v, int bytes)
{
    uint8_t b[9];
    b[0] = tag;
    for (int i = 0; i < bytes; i++)
        b[1 + i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    wr_bytes(w, b, (size_t)bytes + 1);
}

/* Sized header: the fix form when n fits under fix_limit, else 8/16/32. */
static void wr_len(wr_t *w, uint64_t n, uint8_t fix, uint64_t fix_limit,
                   uint8_t t8, uint8_t t16, uint8_t t32)
{
    if (n < fix_limit)
        wr_tag(w, (uint8_t)(fix | n), 0, 0);
    else if (t8 && n <= 0xff)
        wr_tag(w, t8, n, 1);
    else if (n <= 0xffff)
        wr_tag(w, t16, n, 2);
    else
        wr_tag(w, t32, n, 4);
}

static void wr_int(wr_t *w, json_int_t v)
{
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u <= 0x7f)
            wr_tag(w, (uint8_t)u, 0, 0);
        else if (u <= 0xff)
            wr_tag(w, 0xcc, u, 1);
        else if (u <= 0xffff)
            wr_tag(w, 0xcd, u, 2);
        else if (u <= 0xffffffffu)
            wr_tag(w, 0xce, u, 4);
        else
            wr_tag(w, 0xcf, u, 8);
        return;
    }
    if (v >= -32)
        wr_tag(w, (uint8_t)(int8_t)v, 0, 0);
    else if (v >= INT8_MIN)
        wr_tag(w, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN)
        wr_tag(w, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN)
        wr_tag(w, 0xd2, (uint64_t)v, 4);
    else
        wr_tag(w, 0xd3, (uint64_t)v, 8);
}

static void wr_str(wr_t *w, const char *s, size_t n)
{
    wr_len(w, n, 0xa0, 32, 0xd9, 0xda, 0xdb);
    wr_bytes(w, s, n);
}

static void pack_value(wr_t *w, const json_t *v, int depth)
{
    if (depth > PV_ADMIN_DEPTH_MAX && !w->err)
        w->err = -EINVAL;
    if (w->err)
        return;
    switch (json_typeof(v)) {
    case JSON_NULL: wr_tag(w, 0xc0, 0, 0); return;
    case JSON_TRUE: wr_tag(w, 0xc3, 0, 0); return;
    case JSON_FALSE: wr_tag(w, 0xc2, 0, 0); return;
    case JSON_INTEGER: wr_int(w, json_integer_value(v)); return;
    case JSON_REAL: {
        double d = json_real_value(v);
        uint64_t bits;
        memcpy(&bits, &d, sizeof(bits));
        wr_tag(w, 0xcb, bits, 8);
        return;
    }
    case JSON_STRING: wr_str(w, json_string_value(v), json_string_length(v)); return;
    case JSON_ARRAY: {
        wr_len(w, json_array_size(v), 0x90, 16, 0, 0xdc, 0xdd);
        for (size_t i = 0; i < json_array_size(v); i++)
            pack_value(w, json_array_get(v, i), depth + 1);
        return;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        wr_len(w, json_object_size(v), 0x80, 16, 0, 0xde, 0xdf);
        json_object_foreach((json_t *)v, k, x) {
            wr_str(w, k, strlen(k));
            pack_value(w, x, depth + 1);
        }
        return;
    }
    }
}

int pv_admin_frame_pack(const json_t *v, size_t max, char **out, size_t *len)
{
    return pv_admin_frame_pack_in(v, max, NULL, 0, out, len);
}

int pv_admin_frame_pack_in(const json_t *v, size_t max, char *buf, size_t cap, char **out,
                           size_t *len)
{
    *out = NULL;
    *len = 0;
    if (max > UINT32_MAX)
        max = UINT32_MAX;
    wr_t w = {.p = (uint8_t *)buf, .cap = buf ? cap : 0, .max = max + PV_ADMIN_HDR};
    uint8_t hdr[PV_ADMIN_HDR] = {0};
    wr_bytes(&w, hdr, sizeof(hdr)); /* filled in once the size is known */
    if (v)
        pack_value(&w, v, 0);
    else
        w.err = -EINVAL;
    if (w.err) {
        free(w.p);
        return w.err;
    }
    pv_admin_frame_header(w.p, (uint32_t)(w.len - PV_ADMIN_HDR));
    *out = (char *)w.p;
    *len = w.len;
    return 0;
}

/* ---------------- answers ---------------- */

json_t *pv_admin_ok(json_t *result)
{
    return json_pack("{s:b,s:o}", "ok", 1, "result", result ? result : json_object());
}

json_t *pv_admin_error(const char *code, const char *message)
{
    return json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", code, "message",
                     message && *message ? message : code);
}

int pv_admin_answer_parse(const json_t *resp, bool *ok, json_t **result,
                          const char **code, const char **message)
{
    json_t *jok = json_object_get(resp, "ok");
    *result = NULL;
    *code = *message = NULL;
    if (!json_is_boolean(jok))
        return -EINVAL;
    *ok = json_is_true(jok);
    if (*ok) {
        *result = json_object_get(resp, "result");
        return json_is_object(*result) ? 0 : -EINVAL;
    }
    json_t *e = json_object_get(resp, "error");
    *code = json_string_value(json_object_get(e, "code"));
    *message = json_string_value(json_object_get(e, "message"));
    return *code && *message ? 0 : -EINVAL;
}

/* Error codes whose exit status is not plain "failed". */
static const struct {
    const char *code;
    int exit;
} g_exit_codes[] = {
    {"forbidden", PV_EXIT_CONNECT},       /* the socket refused our uid */
    {"too_many_connections", PV_EXIT_CONNECT},
    {"shutting_down", PV_EXIT_CONNECT},
    {"not_configured", PV_EXIT_UNAVAILABLE}, /* e.g. no sync target */
    {"unavailable", PV_EXIT_UNAVAILABLE},    /* e.g. no video jobs here */
};

int pv_admin_exit_for(const char *code)
{
    for (size_t i = 0; code && i < PV_ARRAY_LEN(g_exit_codes); i++)
        if (strcmp(code, g_exit_codes[i].code) == 0)
            return g_exit_codes[i].exit;
    return PV_EXIT_FAILED;
}

/* ---------------- the command table ---------------- */

#define STR_POS(n, m, req, h) {n, PV_ARG_STR, PV_ARG_POS, req, m, NULL, 0, 0, h}
#define SECRET(n, h) {n, PV_ARG_STR, PV_ARG_SECRET, true, NULL, NULL, 0, 0, h}
#define LIMIT_OPT {"limit", PV_ARG_INT, PV_ARG_OPT, false, "N", NULL, 1, 100000, \
                   "at most N rows (default 1000)"}
#define USER_ARG STR_POS("user", "USER", true, "the user's email (or id)")
#define TARGET_ARG STR_POS("target", "TARGET", false, "one replication target (default: all)")

static const pv_admin_cmd_t g_cmds[] = {
    {PV_CMD_STATUS, "status", "status", 0, "show what pvd is doing",
     "Version, uptime, listeners, the store's size and map use, counts of users, "
     "photos and videos, jobs by state, and the change log's head sequence.",
     {{0}}},
    {PV_CMD_USER_LIST, "user.list", "user list", 0, "list users by email",
     "Lists users in email order with their id, creation time, state and photo "
     "count. With --after EMAIL the list starts after that email (for paging).",
     {LIMIT_OPT,
      {"after", PV_ARG_STR, PV_ARG_OPT, false, "EMAIL", NULL, 0, 0, "start after this email"},
      {0}}},
    {PV_CMD_USER_ADD, "user.add", "user add", 0, "create a user",
     "Creates a user. pvctl generates a password and prints it once, or asks for "
     "one with --prompt (read from standard input when it is not a terminal); the "
     "password never appears on the command line.",
     {STR_POS("email", "EMAIL", true, "the new user's email"),
      SECRET("password", "at least 8 characters"), {0}}},
    {PV_CMD_USER_DISABLE, "user.disable", "user disable", 0, "disable a user at once",
     "Marks the user disabled. pvd checks this on every request, so tokens already "
     "issued stop working immediately; logging in is refused.",
     {USER_ARG, {0}}},
    {PV_CMD_USER_ENABLE, "user.enable", "user enable", 0, "enable a disabled user",
     "Clears the disabled mark; the user can log in again.", {USER_ARG, {0}}},
    {PV_CMD_USER_RESET_PASSWORD, "user.reset-password", "user reset-password", 0,
     "set a new password",
     "Sets a new password (generated, or asked for with --prompt) and ends the "
     "user's sessions at once: refresh tokens and access tokens already issued.",
     {USER_ARG, SECRET("password", "at least 8 characters"), {0}}},
    {PV_CMD_USER_INVITE, "user.invite", "user invite", 0, "make a sign-up invite code",
     "Makes a code that lets one person sign up when the signup key is `invite`; "
     "with EMAIL only that email can use it. It is spent by the sign-up it allows "
     "and expires after --days (default 7). pvd keeps only its hash: the code is "
     "shown once.",
     {STR_POS("email", "EMAIL", false, "the only email that may use it"),
      {"days", PV_ARG_INT, PV_ARG_OPT, false, "N", NULL, 1, 365, "valid this many days (default 7)"},
      {0}}},
    {PV_CMD_JOB_LIST, "job.list", "job list", 0, "list video jobs",
     "Lists queued and running render jobs, or with --state the videos in that "
     "state (queued, running, ready, failed, cancelled, all), newest first.",
     {{"state", PV_ARG_STR, PV_ARG_OPT, false, "STATE",
       "active|queued|running|ready|failed|cancelled|all", 0, 0,
       "which jobs (default active: queued and running)"},
      LIMIT_OPT, {0}}},
    {PV_CMD_JOB_CANCEL, "job.cancel", "job cancel", 0, "cancel a queued or running job",
     "Cancels the render of the video with this id.",
     {STR_POS("id", "ID", true, "the video's id"), {0}}},
    {PV_CMD_JOB_RETRY, "job.retry", "job retry", 0, "queue a failed or cancelled job again",
     "Queues the render of a failed or cancelled video again.",
     {STR_POS("id", "ID", true, "the video's id"), {0}}},
    {PV_CMD_SYNC_STATUS, "sync.status", "sync status", 0, "show replication targets",
     "Each replication target (s3 when s3_bucket is set): its cursor (the last "
     "change durably there) against the change log's head, the lag in entries and "
     "seconds, bytes pending, what it sent, its state (idle, sending, waiting after "
     "a failure, paused), its last error with its time and the next retry. With no "
     "target configured it says so (exit 0).",
     {{0}}},
    {PV_CMD_SYNC_PAUSE, "sync.pause", "sync pause", 0, "pause replication",
     "Pauses replication to one or every target. Exits 4 when no target is configured.",
     {TARGET_ARG, {0}}},
    {PV_CMD_SYNC_RESUME, "sync.resume", "sync resume", 0, "resume replication",
     "Resumes paused replication. Exits 4 when no target is configured.",
     {TARGET_ARG, {0}}},
    {PV_CMD_SYNC_NOW, "sync.now", "sync now", 0, "replicate now",
     "Starts a replication pass now, skipping any back-off wait. Exits 4 when no "
     "target is configured.",
     {TARGET_ARG, {0}}},
    {PV_CMD_BACKUP, "backup", "backup", PV_CMDF_SLOW | PV_CMDF_PATH,
     "write a consistent backup while pvd serves",
     "Writes FILE, a tar archive: a compacted, consistent copy of the store "
     "(LMDB copy with compaction, taken while pvd serves), the keys, the TLS files "
     "kept in the data directory and, unless --no-blobs, every photo and video "
     "file. pvd writes FILE itself (as its own user), through FILE.tmp, and only "
     "inside backup_dir (default DATA/backups; pvctl makes a relative FILE absolute "
     "from its own directory). Restore "
     "with `pvd --restore FILE --data DIR` or `tar -xf FILE -C DIR`, pvd stopped.",
     {STR_POS("path", "FILE", true, "where to write the archive"),
      {"no_blobs", PV_ARG_BOOL, PV_ARG_FLAG, false, NULL, NULL, 0, 0,
       "leave out photo and video files"},
      {0}}},
    {PV_CMD_CONFIG_SHOW, "config.show", "config show", 0, "show the effective config",
     "Every configuration key with the value pvd runs with (defaults, file, "
     "environment and flags applied).",
     {{0}}},
    {PV_CMD_TLS_RELOAD, "tls.reload", "tls reload", 0, "reload the TLS certificate",
     "Loads the certificate and key files again. New connections use the new "
     "certificate; open ones keep theirs. A bad certificate is refused and the old "
     "one stays (exit 1). SIGHUP does the same.",
     {{0}}},
    {PV_CMD_LOG_LEVEL, "log.level", "log-level", 0, "show or change the log level",
     "Without LEVEL shows the current level; with it, changes it at once.",
     {{"level", PV_ARG_STR, PV_ARG_POS, false, "LEVEL", "debug|info|warn|error", 0, 0,
       "the new level"},
      {0}}},
    {PV_CMD_SHARE_LIST, "share.list", "share list", 0, "list video share links",
     "Lists the public share links of every user's videos, or of USER's (email or id): "
     "each share's id, owner, video, title, expiry, whether it has a password and its "
     "views, newest first. Tokens are not shown: pvd keeps only their hashes.",
     {STR_POS("user", "USER", false, "only this user's shares (email or id)"), LIMIT_OPT, {0}}},
    {PV_CMD_SHARE_REVOKE, "share.revoke", "share revoke", 0, "revoke a share link",
     "Revokes the share with this id, or the one this token (or /s/TOKEN link) opens: "
     "its page and media answer 404 at once.",
     {STR_POS("share", "TOKEN|ID", true, "the share's id, its token or its link"), {0}}},
#ifdef PV_TEST_BUILD
    /* The failure walks (tests/integration/test_failwalk.py) drive these; a
     * release build has neither the rows nor the seam behind them. */
    {PV_CMD_DEBUG_FAILPOINTS, "debug.failpoints", "debug failpoints", PV_CMDF_TEST,
     "arm and read the failure seam (test build)",
     "Reports the pv_fail calls and injected failures since the seam was last armed, and "
     "the last failure's site; with --sites, every call site reached since pvd started "
     "with its counts and the numbers of its first and last calls since the seam was "
     "armed. Then, given SPEC, arms it: PV_FAILPOINTS syntax (\"*:N\" fails the "
     "Nth call of any site; an empty SPEC disarms) and counts from zero. This command's "
     "own handling neither counts nor fails. Test build only.",
     {{"spec", PV_ARG_STR, PV_ARG_POS, false, "SPEC", NULL, 0, 0, "the failpoints to arm"},
      {"sites", PV_ARG_BOOL, PV_ARG_FLAG, false, NULL, NULL, 0, 0,
       "list every call site reached"},
      {0}}},
    {PV_CMD_DEBUG_CHECK, "debug.check", "debug check", PV_CMDF_TEST,
     "check the store's invariants (test build)",
     "Checks the store record by record (src/model/check.h): records, indexes, blob "
     "reference counts and files, the change log. Answers the problems found, a digest of "
     "every database (equal digests: the same store) and counts, among them the blob files "
     "no count names and the files in the temp directory. With --content, also reads "
     "every counted blob file and checks its SHA-256 against its name. Test build only.",
     {{"content", PV_ARG_BOOL, PV_ARG_FLAG, false, NULL, NULL, 0, 0,
       "hash every counted blob file"},
      {0}}},
#endif
};

_Static_assert(PV_ARRAY_LEN(g_cmds) == PV_CMD_COUNT, "one table row per command id");

const pv_admin_cmd_t *pv_admin_cmds(size_t *n)
{
    *n = PV_ARRAY_LEN(g_cmds);
    return g_cmds;
}

bool pv_admin_cmd_listed(const pv_admin_cmd_t *c)
{
    return !(c->flags & PV_CMDF_TEST);
}

const pv_admin_cmd_t *pv_admin_cmd_by_name(const char *name)
{
    for (size_t i = 0; name && i < PV_ARRAY_LEN(g_cmds); i++)
        if (strcmp(g_cmds[i].name, name) == 0)
            return &g_cmds[i];
    return NULL;
}

/* --no_blobs is typed --no-blobs */
static void opt_name(const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", name);
    for (char *p = out; *p; p++)
        if (*p == '_')
            *p = '-';
}

void pv_admin_cmd_usage(const pv_admin_cmd_t *c, char *out, size_t outlen)
{
    size_t pos = 0;
    int n = snprintf(out, outlen, "%s", c->words);
    bool secret = false;
    for (const pv_admin_arg_t *a = c->args; a->name && n >= 0; a++) {
        pos += (size_t)n < outlen - pos ? (size_t)n : outlen - pos - 1;
        char opt[64];
        opt_name(a->name, opt, sizeof(opt));
        n = 0;
        switch (a->how) {
        case PV_ARG_POS:
            n = snprintf(out + pos, outlen - pos, a->required ? " %s" : " [%s]",
                         a->choices ? a->choices : a->meta);
            break;
        case PV_ARG_OPT:
            n = snprintf(out + pos, outlen - pos, " [--%s %s]", opt, a->meta);
            break;
        case PV_ARG_FLAG: n = snprintf(out + pos, outlen - pos, " [--%s]", opt); break;
        default: secret = true; break;
        }
    }
    if (secret && n >= 0) {
        pos += (size_t)n < outlen - pos ? (size_t)n : outlen - pos - 1;
        snprintf(out + pos, outlen - pos, " [--prompt]");
    }
}

/* ---------------- validation ---------------- */

__attribute__((format(printf, 3, 4))) static int fail(pv_admin_err_t *e, const char *code,
                                                      const char *fmt, ...)
{
    va_list ap;
    snprintf(e->code, sizeof(e->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const pv_admin_arg_t *arg_spec(const pv_admin_cmd_t *c, const char *name)
{
    for (const pv_admin_arg_t *a = c->args; a->name; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

static bool in_choices(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        p = bar ? bar + 1 : p + len;
    }
    return false;
}

static const char *type_name(int type)
{
    return type == PV_ARG_INT ? "an integer" : type == PV_ARG_BOOL ? "true or false" : "a string";
}

static int arg_check(const pv_admin_cmd_t *c, const pv_admin_arg_t *a, const json_t *v,
                     pv_admin_err_t *e)
{
    bool type_ok = (a->type == PV_ARG_STR && json_is_string(v)) ||
                   (a->type == PV_ARG_INT && json_is_integer(v)) ||
                   (a->type == PV_ARG_BOOL && json_is_boolean(v));
    if (!type_ok)
        return fail(e, "bad_args", "%s: %s must be %s", c->words, a->name, type_name(a->type));
    if (a->type == PV_ARG_INT) {
        json_int_t x = json_integer_value(v);
        if (x < a->min || x > a->max)
            return fail(e, "bad_args", "%s: %s must be from %ld to %ld", c->words, a->name,
                        a->min, a->max);
    }
    if (a->type == PV_ARG_STR) {
        const char *s = json_string_value(v);
        if (a->choices && !in_choices(a->choices, s))
            return fail(e, "bad_args", "%s: %s must be one of %s", c->words, a->name, a->choices);
        if (a->required && !*s)
            return fail(e, "bad_args", "%s: %s must not be empty", c->words, a->name);
        if (json_string_length(v) > 4096)
            return fail(e, "bad_args", "%s: %s is too long", c->words, a->name);
    }
    return 0;
}

int pv_admin_args_check(const pv_admin_cmd_t *c, const json_t *args, pv_admin_err_t *e)
{
    if (args && !json_is_object(args))
        return fail(e, "bad_args", "%s: args must be a map", c->words);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)args, k, v) {
        const pv_admin_arg_t *a = arg_spec(c, k);
        if (!a)
            return fail(e, "bad_args", "%s: unknown argument \"%.64s\"", c->words, k);
        if (arg_check(c, a, v, e) < 0)
            return -EINVAL;
    }
    for (const pv_admin_arg_t *a = c->args; a->name; a++)
        if (a->required && !json_object_get(args, a->name))
            return fail(e, "bad_args", "%s: %s is required", c->words, a->name);
    return 0;
}

int pv_admin_request_parse(const void *buf, size_t len, json_t **req,
                           const pv_admin_cmd_t **cmd, json_t **args, pv_admin_err_t *e)
{
    *req = NULL;
    *cmd = NULL;
    *args = NULL;
    json_t *r = NULL;
    int rc = pv_admin_unpack(buf, len, PV_ADMIN_REQ_ITEMS, &r);
    if (rc == -ENOMEM) {
        fail(e, "overloaded", "out of memory reading the request");
        return -ENOMEM;
    }
    if (rc < 0)
        return fail(e, "bad_request", "the frame is not one well-formed msgpack value");
    const char *name = json_string_value(json_object_get(r, "cmd"));
    json_t *a = json_object_get(r, "args");
    if (!json_is_object(r) || !name) {
        rc = fail(e, "bad_request", "a request is a map with a \"cmd\" string");
    } else if (!(*cmd = pv_admin_cmd_by_name(name))) {
        rc = fail(e, "unknown_command", "unknown command \"%.64s\"", name);
    } else if (a && !json_is_null(a) && !json_is_object(a)) {
        rc = fail(e, "bad_args", "%s: args must be a map", (*cmd)->words);
    } else {
        if (!json_is_object(a)) {
            a = json_object();
            if (!a || json_object_set_new(r, "args", a) < 0) {
                fail(e, "overloaded", "out of memory");
                rc = -ENOMEM;
            }
        }
        if (rc == 0)
            rc = pv_admin_args_check(*cmd, a, e);
    }
    if (rc < 0) {
        json_decref(r);
        *cmd = NULL;
        return rc;
    }
    *req = r;
    *args = a;
    return 0;
}

/* ---------------- pvctl's command line ---------------- */

/* The command whose words are the longest prefix of argv; *used: words. */
static const pv_admin_cmd_t *match_words(int argc, char **argv, int *used)
{
    const pv_admin_cmd_t *best = NULL;
    *used = 0;
    for (size_t i = 0; i < PV_ARRAY_LEN(g_cmds); i++) {
        char words[64];
        snprintf(words, sizeof(words), "%s", g_cmds[i].words);
        int n = 0;
        bool ok = true;
        char *save = NULL;
        for (char *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save), n++)
            if (n >= argc || strcmp(argv[n], w) != 0) {
                ok = false;
                break;
            }
        if (ok && n > *used) {
            best = &g_cmds[i];
            *used = n;
        }
    }
    return best;
}

static bool is_group(const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i < PV_ARRAY_LEN(g_cmds); i++)
        if (strncmp(g_cmds[i].words, word, n) == 0 && g_cmds[i].words[n] == ' ')
            return true;
    return false;
}

static int set_value(const pv_admin_cmd_t *c, const pv_admin_arg_t *a, const char *text,
                     json_t *args, pv_admin_err_t *e)
{
    json_t *v = NULL;
    if (a->type == PV_ARG_INT) {
        char *end;
        errno = 0;
        long long x = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            return fail(e, "usage", "%s: %s takes a whole number, got \"%s\"", c->words,
                        a->meta ? a->meta : a->name, text);
        v = json_integer(x);
    } else if (a->type == PV_ARG_BOOL) {
        v = json_true();
    } else {
        v = json_string(text);
        if (!v)
            return fail(e, "usage", "%s: %s is not valid UTF-8", c->words, a->name);
    }
    if (!v || json_object_set_new(args, a->name, v) < 0)
        return fail(e, "usage", "out of memory");
    return 0;
}

static const pv_admin_arg_t *opt_spec(const pv_admin_cmd_t *c, const char *opt)
{
    for (const pv_admin_arg_t *a = c->args; a->name; a++) {
        char name[64];
        opt_name(a->name, name, sizeof(name));
        if ((a->how == PV_ARG_OPT || a->how == PV_ARG_FLAG) && strcmp(name, opt) == 0)
            return a;
    }
    return NULL;
}

static bool has_secret(const pv_admin_cmd_t *c)
{
    for (const pv_admin_arg_t *a = c->args; a->name; a++)
        if (a->how == PV_ARG_SECRET)
            return true;
    return false;
}

/* One --option (with its value from `=` or the next word). */
static int parse_option(const pv_admin_cmd_t *c, int argc, char **argv, int *i, json_t *args,
                        bool *prompt, pv_admin_err_t *e)
{
    char opt[64];
    const char *eq = strchr(argv[*i] + 2, '=');
    size_t n = eq ? (size_t)(eq - argv[*i] - 2) : strlen(argv[*i] + 2);
    snprintf(opt, sizeof(opt), "%.*s", (int)(n < sizeof(opt) ? n : sizeof(opt) - 1), argv[*i] + 2);
    if (strcmp(opt, "prompt") == 0 && has_secret(c) && !eq) {
        *prompt = true;
        return 0;
    }
    const pv_admin_arg_t *a = opt_spec(c, opt);
    if (!a)
        return fail(e, "usage", "%s: unknown option --%s", c->words, opt);
    if (a->how == PV_ARG_FLAG) {
        if (eq)
            return fail(e, "usage", "%s: --%s takes no value", c->words, opt);
        return set_value(c, a, "", args, e);
    }
    const char *val = eq ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (!val)
        return fail(e, "usage", "%s: --%s needs a value", c->words, opt);
    return set_value(c, a, val, args, e);
}

static int parse_rest(const pv_admin_cmd_t *c, int argc, char **argv, json_t *args,
                      bool *prompt, pv_admin_err_t *e)
{
    const pv_admin_arg_t *pos = c->args;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        if (!only_pos && strcmp(argv[i], "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && strncmp(argv[i], "--", 2) == 0) {
            if (parse_option(c, argc, argv, &i, args, prompt, e) < 0)
                return -EINVAL;
            continue;
        }
        while (pos->name && pos->how != PV_ARG_POS)
            pos++;
        if (!pos->name)
            return fail(e, "usage", "%s: unexpected argument \"%s\"", c->words, argv[i]);
        if (set_value(c, pos++, argv[i], args, e) < 0)
            return -EINVAL;
    }
    return 0;
}

int pv_admin_argv(int argc, char **argv, const pv_admin_cmd_t **cmd, json_t **args,
                  bool *prompt, pv_admin_err_t *e)
{
    *cmd = NULL;
    *args = NULL;
    *prompt = false;
    int used;
    const pv_admin_cmd_t *c = match_words(argc, argv, &used);
    if (!c) {
        if (argc > 0 && is_group(argv[0]))
            fail(e, "usage", "%s: which one? (see pvctl help %s)", argv[0], argv[0]);
        else
            fail(e, "usage", "unknown command \"%s\" (see pvctl help)", argc ? argv[0] : "");
        return -ENOENT;
    }
    json_t *a = json_object();
    if (!a)
        return fail(e, "usage", "out of memory");
    int rc = parse_rest(c, argc - used, argv + used, a, prompt, e);
    /* Secrets come later from pvctl itself: check everything else now. */
    for (const pv_admin_arg_t *s = c->args; rc == 0 && s->name; s++)
        if (s->required && s->how != PV_ARG_SECRET && !json_object_get(a, s->name))
            rc = fail(e, "usage", "%s: %s is required", c->words, s->meta ? s->meta : s->name);
    for (const pv_admin_arg_t *s = c->args; rc == 0 && s->name; s++) {
        json_t *v = json_object_get(a, s->name);
        if (v && arg_check(c, s, v, e) < 0)
            rc = -EINVAL;
    }
    if (rc < 0) {
        snprintf(e->code, sizeof(e->code), "usage");
        json_decref(a);
        return -EINVAL;
    }
    *cmd = c;
    *args = a;
    return 0;
}

void pv_admin_arg_term(const pv_admin_arg_t *a, char *out, size_t outlen)
{
    if (a->how == PV_ARG_SECRET) {
        snprintf(out, outlen, "--prompt");
    } else if (a->how == PV_ARG_POS) {
        snprintf(out, outlen, "%s", a->meta);
    } else {
        snprintf(out, outlen, "--%s", a->name);
        for (char *p = out; *p; p++)
            *p = *p == '_' ? '-' : *p;
    }
}
