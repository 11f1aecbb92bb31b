/*
 * check.c — the store's invariants (check.h), checked in one read
 * transaction: a pass over every database for the digest, then one pass
 * per invariant, each looking up the other side of what it reads. Small
 * stores (tests) are the use: lookups are point reads, the change log is
 * matched against the records with a linear table.
 */
#include "model/check.h"
#include "base/crypto.h"
#include "base/records.h"
#include "base/text.h"

#include <dirent.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK_LINES 20 /* problems spelled out; the rest only counted */

typedef struct ref {
    uint8_t sha[32];
} ref_t;

/* The last change log entry of one key. */
typedef struct last_change {
    int db;
    pv_val_t key, record;
    bool del;
} last_change_t;

typedef struct ck {
    pv_txn_t *txn;
    pv_store_t *store;
    pv_check_t *out;
    unsigned flags;         /* PV_CHECK_* */
    EVP_MD_CTX *md;
    EVP_MD_CTX *db_md;      /* the database being hashed, alone */
    int db;                 /* the database being hashed */
    ref_t *refs;            /* references the records make */
    size_t n_refs, cap_refs;
    last_change_t *last;    /* per key, from the change log */
    size_t n_last, cap_last;
    uint64_t prev_seq, first_seq;
    int nomem;
} ck_t;

__attribute__((format(printf, 2, 3))) static void problem(ck_t *k, const char *fmt, ...)
{
    if (k->out->problems++ >= CHECK_LINES)
        return;
    char line[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pv_sb_printf(&k->out->text, "%s\n", line);
}

static void key_text(const pv_val_t *key, char out[72])
{
    size_t n = key->len < 32 ? key->len : 32;
    pv_hex(key->data, n, out);
}

static bool get(ck_t *k, int db, const void *key, size_t klen, pv_val_t *v)
{
    pv_val_t tmp;
    return pv_txn_get(k->txn, db, key, klen, v ? v : &tmp) == 0;
}

/* ---------------- the digest ---------------- */

static int hash_one(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    uint8_t head[12];
    pv_be64_put(head, key->len);
    head[8] = (uint8_t)k->db;
    head[9] = head[10] = head[11] = 0;
    EVP_MD_CTX *mds[2] = {k->md, k->db_md};
    for (int i = 0; i < 2; i++) {
        pv_be64_put(head, key->len);
        EVP_DigestUpdate(mds[i], head, sizeof(head));
        EVP_DigestUpdate(mds[i], key->data, key->len);
        pv_be64_put(head, val->len);
        EVP_DigestUpdate(mds[i], head, 8);
        EVP_DigestUpdate(mds[i], val->data, val->len);
    }
    k->out->records++;
    return 0;
}

static int digest(ck_t *k)
{
    k->md = EVP_MD_CTX_new();
    if (!k->md || !EVP_DigestInit_ex(k->md, EVP_sha256(), NULL))
        return -ENOMEM;
    k->db_md = EVP_MD_CTX_new();
    if (!k->db_md)
        return -ENOMEM;
    int rc = 0;
    uint8_t sum[32];
    for (k->db = 0; k->db < PV_DB_COUNT && rc == 0; k->db++) {
        if (!EVP_DigestInit_ex(k->db_md, EVP_sha256(), NULL))
            rc = -ENOMEM;
        if (rc == 0)
            rc = pv_txn_scan(k->txn, k->db, NULL, 0, NULL, 0, false, hash_one, k);
        if (rc == 0 && !EVP_DigestFinal_ex(k->db_md, sum, NULL))
            rc = -ENOMEM;
        if (rc == 0)
            pv_hex(sum, 32, k->out->db_digest[k->db]);
    }
    if (rc == 0 && !EVP_DigestFinal_ex(k->md, sum, NULL))
        rc = -ENOMEM;
    if (rc == 0)
        pv_hex(sum, 32, k->out->digest);
    return rc;
}

/* The size of blob sha's file, or -1 when it is not there (check_blob
 * says so for a counted one). */
static int64_t blob_size(ck_t *k, const uint8_t sha[32])
{
    char path[PATH_MAX];
    struct stat st;
    pv_blob_path(k->store, sha, path, sizeof(path));
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* A record's `bytes` is its blob's size: usage (model/usage.c) adds up
 * the records, so this is what keeps it true to the disk. */
static void check_size(ck_t *k, const char *what, const char *kt, const uint8_t sha[32],
                       uint64_t bytes)
{
    int64_t have = blob_size(k, sha);
    if (have >= 0 && (uint64_t)have != bytes)
        problem(k, "%s %s: says %llu bytes, its file has %lld", what, kt,
                (unsigned long long)bytes, (long long)have);
}

/* ---------------- users and emails ---------------- */

static int check_user(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    char kt[72];
    key_text(key, kt);
    pv_user_t u;
    if (key->len != 16 || pv_user_decode(val->data, val->len, &u) < 0) {
        problem(k, "users %s: does not decode", kt);
        return 0;
    }
    pv_val_t id;
    if (memcmp(u.id, key->data, 16) != 0)
        problem(k, "users %s: the record's id is another", kt);
    if (!get(k, PV_DB_EMAILS, u.email, strlen(u.email), &id) || id.len != 16 ||
        memcmp(id.data, key->data, 16) != 0)
        problem(k, "users %s: emails[%s] does not name it", kt, u.email);
    return 0;
}

static int check_email(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    pv_val_t rec;
    pv_user_t u;
    int n = key->len < 200 ? (int)key->len : 200;
    if (val->len != 16 || !get(k, PV_DB_USERS, val->data, 16, &rec) ||
        pv_user_decode(rec.data, rec.len, &u) < 0 || strlen(u.email) != key->len ||
        memcmp(u.email, key->data, key->len) != 0)
        problem(k, "emails %.*s: no user of that email", n, (const char *)key->data);
    return 0;
}

static bool user_exists(ck_t *k, const uint8_t id[16])
{
    return get(k, PV_DB_USERS, id, 16, NULL);
}

/* ---------------- photos ---------------- */

static void add_ref(ck_t *k, const uint8_t sha[32])
{
    if (k->n_refs == k->cap_refs) {
        size_t cap = k->cap_refs ? k->cap_refs * 2 : 64;
        ref_t *p = realloc(k->refs, cap * sizeof(*p));
        if (!p) {
            k->nomem = 1;
            return;
        }
        k->refs = p;
        k->cap_refs = cap;
    }
    memcpy(k->refs[k->n_refs++].sha, sha, 32);
}

static int check_photo(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    char kt[72];
    key_text(key, kt);
    pv_photo_t p;
    if (key->len != 32 || pv_photo_decode(val->data, val->len, &p) < 0) {
        problem(k, "photos %s: does not decode", kt);
        return 0;
    }
    uint8_t want[32], skey[48];
    pv_key2(want, p.user_id, p.id, 16);
    if (memcmp(want, key->data, 32) != 0)
        problem(k, "photos %s: the record's user|id is another", kt);
    if (!user_exists(k, p.user_id))
        problem(k, "photos %s: its user does not exist", kt);
    pv_key2(skey, p.user_id, p.sha256, 32);
    pv_val_t id;
    if (!get(k, PV_DB_PHOTO_SHA, skey, sizeof(skey), &id) || id.len != 16 ||
        memcmp(id.data, p.id, 16) != 0)
        problem(k, "photos %s: photo_sha does not name it", kt);
    check_size(k, "photos", kt, p.sha256, p.bytes);
    add_ref(k, p.sha256);
    add_ref(k, p.thumb_sha256);
    return 0;
}

static int check_photo_sha(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    char kt[72];
    key_text(key, kt);
    uint8_t pkey[32];
    pv_val_t rec;
    pv_photo_t p;
    if (key->len != 48 || val->len != 16) {
        problem(k, "photo_sha %s: malformed", kt);
        return 0;
    }
    pv_key2(pkey, key->data, val->data, 16);
    if (!get(k, PV_DB_PHOTOS, pkey, sizeof(pkey), &rec) ||
        pv_photo_decode(rec.data, rec.len, &p) < 0 ||
        memcmp(p.sha256, (const uint8_t *)key->data + 16, 32) != 0)
        problem(k, "photo_sha %s: no photo of that content", kt);
    return 0;
}

/* ---------------- videos and jobs ---------------- */

static bool is_active(int status)
{
    return status == PV_VIDEO_QUEUED || status == PV_VIDEO_RUNNING;
}

static int check_video(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    char kt[72];
    key_text(key, kt);
    pv_video_t v;
    if (key->len != 32 || pv_video_decode(val->data, val->len, &v) < 0) {
        problem(k, "videos %s: does not decode", kt);
        return 0;
    }
    uint8_t want[32];
    pv_key2(want, v.user_id, v.id, 16);
    if (memcmp(want, key->data, 32) != 0)
        problem(k, "videos %s: the record's user|id is another", kt);
    if (!user_exists(k, v.user_id))
        problem(k, "videos %s: its user does not exist", kt);
    pv_val_t job;
    bool has_job = get(k, PV_DB_JOBS, v.id, 16, &job);
    if (is_active(v.status) &&
        (!has_job || job.len != 16 || memcmp(job.data, v.user_id, 16) != 0))
        problem(k, "videos %s: %s but no job entry", kt, pv_video_status_name(v.status));
    if (!is_active(v.status) && has_job)
        problem(k, "videos %s: %s but still a job entry", kt, pv_video_status_name(v.status));
    for (uint32_t i = 0; is_active(v.status) && i < v.n_photos; i++) {
        uint8_t pkey[32];
        pv_key2(pkey, v.user_id, v.photo_ids[i], 16);
        if (!get(k, PV_DB_PHOTOS, pkey, sizeof(pkey), NULL))
            problem(k, "videos %s: %s but its photo %u of %u does not exist", kt,
                    pv_video_status_name(v.status), i + 1, v.n_photos);
    }
    if (v.status == PV_VIDEO_READY) {
        check_size(k, "videos", kt, v.sha256, v.bytes);
        add_ref(k, v.sha256);
        add_ref(k, v.poster_sha256);
    }
    pv_video_clear(&v);
    return 0;
}

static int check_job(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    char kt[72];
    key_text(key, kt);
    uint8_t vkey[32];
    pv_val_t rec;
    pv_video_t v;
    if (key->len != 16 || val->len != 16) {
        problem(k, "jobs %s: malformed", kt);
        return 0;
    }
    pv_key2(vkey, val->data, key->data, 16);
    if (!get(k, PV_DB_VIDEOS, vkey, sizeof(vkey), &rec) ||
        pv_video_decode(rec.data, rec.len, &v) < 0) {
        problem(k, "jobs %s: no such video", kt);
        return 0;
    }
    pv_video_clear(&v); /* its status is check_video's business */
    return 0;
}

/* ---------------- tokens ---------------- */

static int check_token(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    char kt[72];
    key_text(key, kt);
    pv_token_t t;
    if (key->len != 32 || pv_token_decode(val->data, val->len, &t) < 0)
        problem(k, "tokens %s: does not decode", kt);
    else if (!user_exists(k, t.user_id))
        problem(k, "tokens %s: its user does not exist", kt);
    return 0;
}

static int check_family(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    char kt[72];
    key_text(key, kt);
    if (key->len != 16 || val->len != 1)
        problem(k, "families %s: malformed", kt);
    return 0;
}

/* ---------------- blobs ---------------- */

static int cmp_ref(const void *a, const void *b) { return memcmp(a, b, 32); }

typedef struct blob_walk {
    ck_t *k;
    size_t i; /* next unmatched reference (sorted) */
} blob_walk_t;

/* How many times refs[*i..] holds sha; moves *i past them. */
static uint64_t take_refs(ck_t *k, size_t *i, const uint8_t *sha)
{
    uint64_t n = 0;
    while (*i < k->n_refs && memcmp(k->refs[*i].sha, sha, 32) == 0)
        (*i)++, n++;
    return n;
}

static void refs_without_count(ck_t *k, size_t *i, const uint8_t *upto)
{
    while (*i < k->n_refs && (!upto || memcmp(k->refs[*i].sha, upto, 32) < 0)) {
        char hex[65];
        pv_hex(k->refs[*i].sha, 32, hex);
        problem(k, "blobs %s: referenced but not counted", hex);
        take_refs(k, i, k->refs[*i].sha);
    }
}

static int check_blob(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    blob_walk_t *w = arg;
    ck_t *k = w->k;
    char hex[72];
    key_text(key, hex);
    if (key->len != 32 || val->len != 8) {
        problem(k, "blobs %s: malformed", hex);
        return 0;
    }
    refs_without_count(k, &w->i, key->data);
    uint64_t have = pv_be64_get(val->data), want = take_refs(k, &w->i, key->data);
    if (have != want)
        problem(k, "blobs %s: counted %llu, referenced %llu", hex, (unsigned long long)have,
                (unsigned long long)want);
    char path[PATH_MAX];
    pv_blob_path(k->store, key->data, path, sizeof(path));
    uint8_t sum[32];
    if (access(path, F_OK) != 0)
        problem(k, "blobs %s: counted but its file is missing", hex);
    else if ((k->flags & PV_CHECK_CONTENT) &&
             (pv_sha256_file(path, sum, NULL) < 0 || memcmp(sum, key->data, 32) != 0))
        problem(k, "blobs %s: its file's content is another", hex);
    k->out->blobs++;
    return 0;
}

static int check_blobs(ck_t *k)
{
    if (k->n_refs)
        qsort(k->refs, k->n_refs, sizeof(*k->refs), cmp_ref);
    blob_walk_t w = {k, 0};
    int rc = pv_txn_scan(k->txn, PV_DB_BLOBS, NULL, 0, NULL, 0, false, check_blob, &w);
    if (rc == 0)
        refs_without_count(k, &w.i, NULL);
    return rc;
}

/* Files under DATA/blobs that no count names: anything but a file
 * DATA/blobs/ab/ab<62 hex> whose count exists. Not problems (see check.h),
 * counted. Read after the transaction began: a blob committed since is
 * counted here but not stray. */
static bool blob_name(const char *shard, const char *name, uint8_t sha[32])
{
    return strlen(name) == 64 && strspn(name, PV_HEX_DIGITS) == 64 &&
           strncmp(shard, name, 2) == 0 && pv_unhex(name, sha, 32) == 0;
}

static uint64_t stray_in_shard(ck_t *k, const char *dir, const char *shard)
{
    DIR *d = opendir(dir);
    if (!d)
        return 1; /* not a directory: a stray file itself */
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        uint8_t sha[32];
        if (!blob_name(shard, e->d_name, sha) || !get(k, PV_DB_BLOBS, sha, 32, NULL))
            n++;
    }
    closedir(d);
    return n;
}

static uint64_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    uint64_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    return n;
}

static void check_files(ck_t *k)
{
    const char *root = pv_store_blobs_dir(k->store);
    DIR *d = opendir(root);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char dir[PATH_MAX];
        if (snprintf(dir, sizeof(dir), "%s/%s", root, e->d_name) < (int)sizeof(dir))
            k->out->stray_files += stray_in_shard(k, dir, e->d_name);
    }
    if (d)
        closedir(d);
    k->out->tmp_files = count_files(pv_store_tmp_dir(k->store));
}

/* ---------------- the change log ---------------- */

static const struct {
    const char *kind;
    int db;
} g_logged[] = {{"user", PV_DB_USERS}, {"photo", PV_DB_PHOTOS}, {"video", PV_DB_VIDEOS},
                {"share", PV_DB_SHARES}};

static int logged_db(const char *kind)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_logged); i++)
        if (strcmp(g_logged[i].kind, kind) == 0)
            return g_logged[i].db;
    return -1;
}

static last_change_t *last_of(ck_t *k, int db, const pv_val_t *key)
{
    for (size_t i = 0; i < k->n_last; i++)
        if (k->last[i].db == db && k->last[i].key.len == key->len &&
            memcmp(k->last[i].key.data, key->data, key->len) == 0)
            return &k->last[i];
    if (k->n_last == k->cap_last) {
        size_t cap = k->cap_last ? k->cap_last * 2 : 64;
        last_change_t *p = realloc(k->last, cap * sizeof(*p));
        if (!p)
            return NULL;
        k->last = p;
        k->cap_last = cap;
    }
    last_change_t *l = &k->last[k->n_last++];
    *l = (last_change_t){.db = db, .key = *key};
    return l;
}

static int read_change(void *arg, const pv_change_t *c)
{
    ck_t *k = arg;
    if (!k->first_seq)
        k->first_seq = c->seq;
    if (c->seq <= k->prev_seq)
        problem(k, "changes %llu: after %llu, out of order", (unsigned long long)c->seq,
                (unsigned long long)k->prev_seq);
    k->prev_seq = c->seq;
    k->out->changes++;
    int db = logged_db(c->kind);
    last_change_t *l = db < 0 ? NULL : last_of(k, db, &c->key);
    if (!l)
        return db < 0 ? 0 : -ENOMEM;
    l->del = c->del;
    l->record = c->record;
    return 0;
}

/* The last entry of each key is the record as it is now. */
static void changes_vs_records(ck_t *k)
{
    for (size_t i = 0; i < k->n_last; i++) {
        const last_change_t *l = &k->last[i];
        char kt[72];
        key_text(&l->key, kt);
        pv_val_t now;
        bool present = get(k, l->db, l->key.data, l->key.len, &now);
        if (l->del && present)
            problem(k, "changes: record %s is logged deleted but is there", kt);
        else if (!l->del && !present)
            problem(k, "changes: record %s is logged written but is not there", kt);
        else if (!l->del && (now.len != l->record.len ||
                             memcmp(now.data, l->record.data, now.len) != 0))
            problem(k, "changes: record %s differs from its last logged write", kt);
    }
}

/* With nothing trimmed, every record of a logged database has an entry. */
static int count_record(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    ck_t *k = arg;
    for (size_t i = 0; i < k->n_last; i++)
        if (k->last[i].db == k->db && !k->last[i].del && k->last[i].key.len == key->len &&
            memcmp(k->last[i].key.data, key->data, key->len) == 0)
            return 0;
    char kt[72];
    key_text(key, kt);
    problem(k, "changes: record %s was written without a log entry", kt);
    return 0;
}

static int check_changes(ck_t *k)
{
    int rc = pv_changes_read(k->txn, 0, SIZE_MAX, read_change, k);
    if (rc < 0) {
        problem(k, "changes: the log cannot be read (%s)", strerror(-rc));
        return 0;
    }
    pv_val_t v;
    uint64_t seq = 0;
    if (get(k, PV_DB_META, "seq", 3, &v) && v.len == 8)
        seq = pv_be64_get(v.data);
    k->out->seq = seq;
    if (k->out->changes && seq != k->prev_seq)
        problem(k, "changes: the head is %llu, the last entry %llu", (unsigned long long)seq,
                (unsigned long long)k->prev_seq);
    changes_vs_records(k);
    if (k->first_seq > 1 || (k->out->changes == 0 && seq > 0))
        return 0; /* trimmed: older records may have no entry left */
    for (size_t i = 0; i < PV_ARRAY_LEN(g_logged) && rc == 0; i++) {
        k->db = g_logged[i].db;
        rc = pv_txn_scan(k->txn, k->db, NULL, 0, NULL, 0, false, count_record, k);
    }
    return rc;
}

/* ---------------- all of it ---------------- */

static int run(ck_t *k)
{
    static const struct {
        int db;
        pv_scan_fn fn;
    } passes[] = {
        {PV_DB_USERS, check_user},     {PV_DB_EMAILS, check_email},
        {PV_DB_PHOTOS, check_photo},   {PV_DB_PHOTO_SHA, check_photo_sha},
        {PV_DB_VIDEOS, check_video},   {PV_DB_JOBS, check_job},
        {PV_DB_TOKENS, check_token},   {PV_DB_FAMILIES, check_family},
    };
    int rc = digest(k);
    for (size_t i = 0; i < PV_ARRAY_LEN(passes) && rc == 0; i++)
        rc = pv_txn_scan(k->txn, passes[i].db, NULL, 0, NULL, 0, false, passes[i].fn, k);
    if (rc == 0 && k->nomem)
        rc = -ENOMEM;
    if (rc == 0)
        rc = check_blobs(k);
    if (rc == 0)
        check_files(k);
    if (rc == 0)
        rc = check_changes(k);
    return rc;
}

int pv_check_store(pv_store_t *store, pv_check_t *out)
{
    return pv_check_store_flags(store, 0, out);
}

int pv_check_store_flags(pv_store_t *store, unsigned flags, pv_check_t *out)
{
    memset(out, 0, sizeof(*out));
    pv_txn_t txn;
    int rc = pv_txn_begin(store, &txn, false);
    if (rc < 0)
        return rc;
    ck_t k = {.txn = &txn, .store = store, .out = out, .flags = flags};
    rc = run(&k);
    pv_txn_abort(&txn);
    if (out->problems > CHECK_LINES)
        pv_sb_printf(&out->text, "... and %d more\n", out->problems - CHECK_LINES);
    if (rc == 0 && out->text.failed)
        rc = -ENOMEM;
    EVP_MD_CTX_free(k.md);
    EVP_MD_CTX_free(k.db_md);
    free(k.refs);
    free(k.last);
    return rc;
}

void pv_check_free(pv_check_t *c)
{
    pv_sb_free(&c->text);
}
