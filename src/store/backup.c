/*
 * backup.c — `pvctl backup` (a tar archive written while pvd serves) and
 * `pvd --restore` (its strict reader). The layout is in backup.h.
 *
 * Consistency: the store copy is LMDB's own (mdb_env_copy2 with
 * compaction, inside one read transaction: a snapshot). Blob files are not
 * in LMDB, and one whose reference count drops to zero is unlinked after
 * its commit, so a blob that the snapshot still names could vanish before
 * we read it. Hence: hard-link every blob into DATA/tmp before the copy,
 * copy the store, link again (blobs added meanwhile), then archive from the
 * links. A link keeps the file's content alive whatever the store does
 * next; extra blobs are harmless (pvd collects unreferenced ones at start).
 * If linking is impossible (another filesystem), the blob is read from
 * its place and counted as missing if it has gone.
 *
 * Staged links are named DATA/tmp/backup-*: the store sweeps DATA/tmp at
 * start, so a crash mid-backup leaves nothing behind for long.
 */
#include "store/backup.h"
#include "base/pv.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 512
#define COPY_BUF (256 * 1024)
#define STAGE_PREFIX "backup-"
#define SNAPSHOT_PREFIX "snapshot-" /* in DATA/tmp: swept at start like the rest */
#define SNAPSHOT_STAGE "snapstage-"

/* POSIX ustar header */
typedef struct tar_hdr {
    char name[100], mode[8], uid[8], gid[8], size[12], mtime[12], chksum[8];
    char type;
    char linkname[100], magic[6], version[2], uname[32], gname[32];
    char devmajor[8], devminor[8], prefix[155], pad[12];
} tar_hdr_t;
_Static_assert(sizeof(tar_hdr_t) == BLOCK, "a ustar header is one block");

/* Say why in err, return rc. */
__attribute__((format(printf, 4, 5))) static int errf(int rc, char *err, size_t errlen,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* snprintf for paths whose parts were length-checked up front (data_dir
 * is at most PATH_MAX - 72): -ENAMETOOLONG if that ever fails. */
__attribute__((format(printf, 3, 4))) static int pathf(char *out, size_t outlen,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

static bool is_hex64(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == 64;
}

/* ---------------- the tar writer ---------------- */

typedef struct tar_out {
    int fd;
    uint64_t bytes;
    int64_t mtime; /* seconds, for every entry */
} tar_out_t;

static int out_write(tar_out_t *t, const void *p, size_t n)
{
    if (pv_fail("backup_write"))
        return -ENOSPC;
    int rc = pv_write_all(t->fd, p, n);
    if (rc == 0)
        t->bytes += n;
    return rc;
}

static void put_octal(char *field, size_t n, uint64_t v)
{
    field[n - 1] = '\0';
    for (size_t i = n - 1; i-- > 0; v >>= 3)
        field[i] = (char)('0' + (v & 7));
}

/* Sizes of 8 GiB and more: GNU base-256 (first byte 0x80), which GNU tar,
 * bsdtar and Python's tarfile all read. */
static void put_size(char *field, uint64_t v)
{
    if (v < (1ull << 33)) {
        put_octal(field, 12, v);
        return;
    }
    memset(field, 0, 12);
    field[0] = (char)0x80;
    for (int i = 11; i >= 4; i--, v >>= 8)
        field[i] = (char)(v & 0xff);
}

static unsigned header_sum(const tar_hdr_t *h)
{
    const unsigned char *p = (const unsigned char *)h;
    unsigned sum = 0;
    for (size_t i = 0; i < BLOCK; i++)
        sum += (i >= offsetof(tar_hdr_t, chksum) && i < offsetof(tar_hdr_t, chksum) + 8)
                   ? ' '
                   : p[i];
    return sum;
}

static int tar_header(tar_out_t *t, const char *name, uint64_t size)
{
    tar_hdr_t h;
    memset(&h, 0, sizeof(h));
    size_t n = strlen(name);
    if (n >= sizeof(h.name))
        return -ENAMETOOLONG;
    memcpy(h.name, name, n);
    put_octal(h.mode, sizeof(h.mode), 0600);
    put_octal(h.uid, sizeof(h.uid), 0);
    put_octal(h.gid, sizeof(h.gid), 0);
    put_size(h.size, size);
    put_octal(h.mtime, sizeof(h.mtime), (uint64_t)t->mtime);
    h.type = '0';
    memcpy(h.magic, "ustar", 6);
    memcpy(h.version, "00", 2);
    put_octal(h.chksum, 7, header_sum(&h));
    h.chksum[7] = ' ';
    return out_write(t, &h, sizeof(h));
}

static int tar_pad(tar_out_t *t, uint64_t size)
{
    static const char zero[BLOCK];
    size_t r = (size_t)(size % BLOCK);
    return r ? out_write(t, zero, BLOCK - r) : 0;
}

static int tar_mem(tar_out_t *t, const char *name, const void *data, size_t len)
{
    int rc = tar_header(t, name, len);
    if (rc == 0)
        rc = out_write(t, data, len);
    return rc ? rc : tar_pad(t, len);
}

/* Copy exactly `size` bytes of fd into the archive: a file that shrinks
 * under us is an error (the header already promised its size). */
static int copy_fd(tar_out_t *t, int fd, uint64_t size, char *buf)
{
    uint64_t left = size;
    while (left > 0) {
        size_t want = left < COPY_BUF ? (size_t)left : COPY_BUF;
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        int rc = out_write(t, buf, (size_t)n);
        if (rc)
            return rc;
        left -= (uint64_t)n;
    }
    return tar_pad(t, size);
}

/* One file into the archive; -ENOENT when it is not there. */
static int tar_file(tar_out_t *t, const char *name, const char *src, char *buf, uint64_t *size)
{
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    if (rc == 0 && !S_ISREG(st.st_mode))
        rc = -EINVAL;
    if (rc == 0)
        rc = tar_header(t, name, (uint64_t)st.st_size);
    if (rc == 0)
        rc = copy_fd(t, fd, (uint64_t)st.st_size, buf);
    close(fd);
    if (rc == 0 && size)
        *size = (uint64_t)st.st_size;
    return rc;
}

/* ---------------- blob names ---------------- */

typedef struct names {
    char (*v)[65];
    size_t n, cap;
} names_t;

static int names_add(names_t *s, const char *hex)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        void *p = pv_fail("backup_alloc") ? NULL : realloc(s->v, cap * sizeof(*s->v));
        if (!p)
            return -ENOMEM;
        s->v = p;
        s->cap = cap;
    }
    memcpy(s->v[s->n++], hex, 65);
    return 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

static void names_unique(names_t *s)
{
    if (!s->n)
        return;
    qsort(s->v, s->n, sizeof(*s->v), cmp_name);
    size_t w = 1;
    for (size_t i = 1; i < s->n; i++)
        if (strcmp(s->v[i], s->v[w - 1]) != 0)
            memcpy(s->v[w++], s->v[i], 65);
    s->n = w;
}

/* Every DATA/blobs/ab/<hex> with a well-formed name. */
static int list_blobs(const char *blobs_dir, names_t *out)
{
    DIR *d = opendir(blobs_dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strlen(e->d_name) != 2 || e->d_name[0] == '.')
            continue;
        char shard[PATH_MAX];
        pathf(shard, sizeof(shard), "%s/%s", blobs_dir, e->d_name);
        DIR *s = opendir(shard);
        if (!s)
            continue;
        struct dirent *f;
        while (rc == 0 && (f = readdir(s)) != NULL)
            if (is_hex64(f->d_name) && strncmp(f->d_name, e->d_name, 2) == 0)
                rc = names_add(out, f->d_name);
        closedir(s);
    }
    closedir(d);
    return rc;
}

/* ---------------- staging in DATA/tmp ---------------- */

typedef struct backup_job {
    pv_store_t *store;
    const char *data_dir, *tls_cert, *tls_key, *path;
    bool blobs;
    const char *stage;            /* staged files' prefix in tmp_dir: a backup's and a
                                   * snapshot's never meet */
    char tmp_dir[PATH_MAX];
    char blobs_dir[PATH_MAX];
    names_t names;
    pv_backup_info_t *info;
    char *err;
    size_t errlen;
} backup_job_t;

static void stage_path(const backup_job_t *j, const char *what, char *out, size_t outlen)
{
    pathf(out, outlen, "%s/%s%s", j->tmp_dir, j->stage, what);
}

static void blob_path(const backup_job_t *j, const char *hex, char *out, size_t outlen)
{
    pathf(out, outlen, "%s/%.2s/%s", j->blobs_dir, hex, hex);
}

static void stage_clean(const char *tmp_dir, const char *stage)
{
    DIR *d = opendir(tmp_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, stage, strlen(stage)) == 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

/* List the blobs and hard-link the ones not linked yet. A failed link is
 * not fatal: the archive then reads the blob from its place. */
static int stage_blobs(backup_job_t *j)
{
    size_t before = j->names.n;
    int rc = list_blobs(j->blobs_dir, &j->names);
    if (rc < 0)
        return errf(rc, j->err, j->errlen, "cannot list %s: %s", j->blobs_dir, strerror(-rc));
    for (size_t i = before; i < j->names.n; i++) {
        char src[PATH_MAX], dst[PATH_MAX];
        blob_path(j, j->names.v[i], src, sizeof(src));
        stage_path(j, j->names.v[i], dst, sizeof(dst));
        if (link(src, dst) < 0 && errno != EEXIST && errno != ENOENT)
            pv_debug("backup", "cannot link %s: %s", src, strerror(errno));
    }
    return 0;
}

/* ---------------- writing the archive ---------------- */

static char *manifest_json(const backup_job_t *j, const pv_store_stat_t *st)
{
    char now[32];
    pv_time_format(pv_now_ms(), now);
    json_t *m = json_pack("{s:s,s:i,s:s,s:s,s:I,s:I,s:I,s:I,s:b,s:I}", "format", PV_BACKUP_FORMAT,
                          "version", PV_BACKUP_VERSION, "pvd", PV_VERSION, "created_at", now,
                          "last_seq", (json_int_t)st->last_seq, "users",
                          (json_int_t)st->entries[PV_DB_USERS], "photos",
                          (json_int_t)st->entries[PV_DB_PHOTOS], "videos",
                          (json_int_t)st->entries[PV_DB_VIDEOS], "blobs_included", j->blobs,
                          "blobs", (json_int_t)j->names.n);
    char *s = m ? json_dumps(m, JSON_INDENT(2)) : NULL;
    json_decref(m);
    return s;
}

/* keys.json, and the TLS files when they live in the data directory. */
static int write_secrets(backup_job_t *j, tar_out_t *t, char *buf)
{
    char src[PATH_MAX];
    snprintf(src, sizeof(src), "%s/keys.json", j->data_dir);
    int rc = tar_file(t, "keys.json", src, buf, NULL);
    if (rc == -ENOENT)
        rc = 0; /* a store with no keys yet */
    const char *tls[] = {j->tls_cert, j->tls_key};
    size_t dl = strlen(j->data_dir);
    for (size_t i = 0; rc == 0 && i < PV_ARRAY_LEN(tls); i++) {
        if (!tls[i] || strncmp(tls[i], j->data_dir, dl) != 0 || tls[i][dl] != '/' ||
            strncmp(tls[i] + dl + 1, "tls/", 4) != 0)
            continue;
        rc = tar_file(t, tls[i] + dl + 1, tls[i], buf, NULL);
        if (rc == -ENOENT)
            rc = 0;
    }
    if (rc < 0)
        errf(0, j->err, j->errlen, "cannot archive keys or TLS files: %s", strerror(-rc));
    return rc;
}

static int write_blobs(backup_job_t *j, tar_out_t *t, char *buf)
{
    for (size_t i = 0; i < j->names.n; i++) {
        const char *hex = j->names.v[i];
        char name[80], staged[PATH_MAX], src[PATH_MAX];
        snprintf(name, sizeof(name), "blobs/%.2s/%s", hex, hex);
        stage_path(j, hex, staged, sizeof(staged));
        blob_path(j, hex, src, sizeof(src));
        uint64_t size = 0;
        int rc = tar_file(t, name, staged, buf, &size);
        if (rc == -ENOENT)
            rc = tar_file(t, name, src, buf, &size);
        if (rc == -ENOENT) {
            j->info->blobs_missing++;
            continue;
        }
        if (rc < 0) {
            errf(0, j->err, j->errlen, "cannot archive blob %s: %s", hex, strerror(-rc));
            return rc;
        }
        j->info->blobs++;
        j->info->blob_bytes += size;
    }
    return 0;
}

static int write_archive(backup_job_t *j, const pv_store_stat_t *st, const char *tmp_path)
{
    char *buf = malloc(COPY_BUF);
    char *manifest = manifest_json(j, st);
    unlink(tmp_path); /* a crashed run's; never follow a link planted there */
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int rc = !buf || !manifest ? -ENOMEM : fd < 0 ? -errno : 0;
    if (rc < 0)
        errf(0, j->err, j->errlen, "cannot create %s: %s", tmp_path, strerror(-rc));
    tar_out_t t = {.fd = fd, .mtime = pv_now_ms() / 1000};
    if (rc == 0)
        rc = tar_mem(&t, "pv-backup.json", manifest, strlen(manifest));
    char data[PATH_MAX];
    stage_path(j, "data.mdb", data, sizeof(data));
    if (rc == 0 && (rc = tar_file(&t, "store/data.mdb", data, buf, &j->info->store_bytes)) < 0)
        errf(0, j->err, j->errlen, "cannot archive the store copy: %s", strerror(-rc));
    if (rc == 0)
        rc = write_secrets(j, &t, buf);
    if (rc == 0)
        rc = write_blobs(j, &t, buf);
    if (rc == 0) {
        memset(buf, 0, 2 * BLOCK); /* the end: two zero blocks */
        rc = out_write(&t, buf, 2 * BLOCK);
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0 && !j->err[0])
        errf(0, j->err, j->errlen, "cannot write %s: %s", tmp_path, strerror(-rc));
    j->info->bytes = t.bytes;
    free(buf);
    free(manifest);
    return rc;
}

static void dir_of(const char *path, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out)
        out[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(out, outlen, ".");
}

/* Refuse a FILE inside the data directory (one typo there could replace
 * the live store) or one that exists and is not a regular file. */
static int check_target(const char *path, const char *data_dir, char *err, size_t errlen)
{
    char dir[PATH_MAX], real_dir[PATH_MAX], real_data[PATH_MAX];
    dir_of(path, dir, sizeof(dir));
    if (!realpath(dir, real_dir))
        return errf(-errno, err, errlen, "cannot write into %s: %s", dir, strerror(errno));
    if (realpath(data_dir, real_data)) {
        size_t n = strlen(real_data);
        if (strncmp(real_dir, real_data, n) == 0 && (real_dir[n] == '/' || real_dir[n] == '\0'))
            return errf(-EINVAL, err, errlen,
                        "%s is inside the data directory; write the backup elsewhere", path);
    }
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return errf(-EEXIST, err, errlen, "%s exists and is not a regular file", path);
    return 0;
}

static int backup_run(backup_job_t *j)
{
    pv_store_stat_t st;
    char data[PATH_MAX], tmp_path[PATH_MAX];
    int rc = pv_store_stat(j->store, &st);
    if (rc < 0)
        return errf(rc, j->err, j->errlen, "cannot read the store: %s", strerror(-rc));
    j->info->last_seq = st.last_seq;
    if (j->blobs && (rc = stage_blobs(j)) < 0)
        return rc;
    stage_path(j, "data.mdb", data, sizeof(data));
    if ((rc = pv_store_backup(j->store, data)) < 0)
        return errf(rc, j->err, j->errlen, "cannot copy the store: %s", strerror(-rc));
    if (j->blobs && (rc = stage_blobs(j)) < 0)
        return rc;
    names_unique(&j->names);
    if (snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", j->path) >= (int)sizeof(tmp_path))
        return errf(-ENAMETOOLONG, j->err, j->errlen, "path too long");
    rc = write_archive(j, &st, tmp_path);
    if (rc == 0 && rename(tmp_path, j->path) < 0) {
        rc = -errno;
        errf(0, j->err, j->errlen, "cannot rename %s: %s", tmp_path, strerror(errno));
    }
    if (rc < 0) {
        unlink(tmp_path);
        return rc;
    }
    char dir[PATH_MAX];
    dir_of(j->path, dir, sizeof(dir));
    return pv_fsync_dir(dir);
}

static int backup_write(pv_store_t *store, const char *data_dir, const char *tls_cert,
                        const char *tls_key, const char *path, bool blobs, bool own_tmp,
                        pv_backup_info_t *info, char *err, size_t errlen)
{
    int64_t t0 = pv_mono_us();
    memset(info, 0, sizeof(*info));
    err[0] = '\0';
    if (!path || path[0] != '/')
        return errf(-EINVAL, err, errlen, "the backup path must be absolute");
    int rc = own_tmp ? 0 : check_target(path, data_dir, err, errlen);
    if (rc < 0)
        return rc;
    backup_job_t j = {.store = store, .data_dir = data_dir, .tls_cert = tls_cert,
                      .tls_key = tls_key, .path = path, .blobs = blobs, .info = info,
                      .err = err, .errlen = errlen};
    snprintf(j.tmp_dir, sizeof(j.tmp_dir), "%s", pv_store_tmp_dir(store));
    if (snprintf(j.blobs_dir, sizeof(j.blobs_dir), "%s/blobs", data_dir) >= PATH_MAX - 72)
        return errf(-ENAMETOOLONG, err, errlen, "data_dir is too long");
    j.stage = own_tmp ? SNAPSHOT_STAGE : STAGE_PREFIX;
    stage_clean(j.tmp_dir, j.stage); /* a crashed earlier backup's links */
    rc = backup_run(&j);
    stage_clean(j.tmp_dir, j.stage);
    free(j.names.v);
    info->files = 2 + info->blobs; /* manifest, store, blobs (+ keys and TLS) */
    info->seconds = (double)(pv_mono_us() - t0) / 1e6;
    return rc;
}

int pv_backup_write(pv_store_t *store, const char *data_dir, const char *tls_cert,
                    const char *tls_key, const char *path, bool blobs, pv_backup_info_t *info,
                    char *err, size_t errlen)
{
    return backup_write(store, data_dir, tls_cert, tls_key, path, blobs, false, info, err,
                        errlen);
}

int pv_snapshot_write(pv_store_t *store, const char *data_dir, const char *tls_cert,
                      const char *tls_key, const char *name, char *path, size_t pathlen,
                      pv_backup_info_t *info, char *err, size_t errlen)
{
    if (snprintf(path, pathlen, "%s/%s%s", pv_store_tmp_dir(store), SNAPSHOT_PREFIX, name) >=
        (int)pathlen)
        return errf(-ENAMETOOLONG, err, errlen, "path too long");
    return backup_write(store, data_dir, tls_cert, tls_key, path, false, true, info, err,
                        errlen);
}

/* ---------------- restore: the strict reader ---------------- */

enum { E_MANIFEST, E_STORE, E_KEYS, E_TLS, E_BLOB };

static bool safe_component(const char *s)
{
    if (!*s || *s == '.')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* Directories a re-packed backup may list (tar -c of a restored dir). */
static bool dir_ok(const char *name)
{
    char d[100];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(d))
        return false;
    memcpy(d, name, n + 1);
    if (d[n - 1] == '/')
        d[n - 1] = '\0';
    return strcmp(d, "store") == 0 || strcmp(d, "tls") == 0 || strcmp(d, "blobs") == 0 ||
           (strncmp(d, "blobs/", 6) == 0 && strlen(d) == 8 && isxdigit((unsigned char)d[6]) &&
            isxdigit((unsigned char)d[7]) && !isupper((unsigned char)d[6]) &&
            !isupper((unsigned char)d[7]));
}

/* The names a backup may hold; anything else (.., absolute paths, links,
 * devices) is refused rather than extracted. */
static int entry_kind(const char *name)
{
    if (strcmp(name, "pv-backup.json") == 0)
        return E_MANIFEST;
    if (strcmp(name, "store/data.mdb") == 0)
        return E_STORE;
    if (strcmp(name, "keys.json") == 0)
        return E_KEYS;
    if (strncmp(name, "tls/", 4) == 0 && safe_component(name + 4))
        return E_TLS;
    if (strncmp(name, "blobs/", 6) == 0 && strlen(name) == 6 + 3 + 64 && name[8] == '/' &&
        is_hex64(name + 9) && strncmp(name + 6, name + 9, 2) == 0)
        return E_BLOB;
    return -1;
}

static int read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -ENODATA; /* EOF: a truncated archive */
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int parse_size(const char *f, size_t n, uint64_t *v)
{
    *v = 0;
    if ((unsigned char)f[0] == 0x80) {
        for (size_t i = 1; i < n; i++) {
            if (*v >> 56)
                return -EINVAL;
            *v = *v << 8 | (unsigned char)f[i];
        }
        return 0;
    }
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    size_t digits = 0;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++)
        *v = *v << 3 | (uint64_t)(f[i] - '0');
    if (!digits || (i < n && f[i] != '\0' && f[i] != ' '))
        return -EINVAL;
    return 0;
}

typedef struct restore_job {
    int fd;
    const char *dir;
    pv_backup_info_t *info;
    char *err;
    size_t errlen;
    char *buf;
    bool seen_manifest, seen_store;
    char store_tmp[PATH_MAX + 16]; /* the store, renamed in place last */
} restore_job_t;

/* Check the header; 1 for the end marker, 2 for a directory to skip, 0
 * and name/size for a file. */
static int header_read(restore_job_t *r, char name[101], uint64_t *size)
{
    tar_hdr_t h;
    int rc = read_full(r->fd, &h, sizeof(h));
    if (rc < 0)
        return errf(-EIO, r->err, r->errlen, "the archive is truncated (no end marker)");
    static const char zero[BLOCK];
    if (memcmp(&h, zero, BLOCK) == 0)
        return 1;
    uint64_t sum;
    if (parse_size(h.chksum, sizeof(h.chksum), &sum) < 0 || sum != header_sum(&h) ||
        memcmp(h.magic, "ustar", 5) != 0)
        return errf(-EINVAL, r->err, r->errlen, "not a pv backup (a tar header is damaged)");
    memcpy(name, h.name, 100);
    name[100] = '\0';
    if (parse_size(h.size, sizeof(h.size), size) < 0)
        return errf(-EINVAL, r->err, r->errlen, "bad size for \"%s\"", name);
    if (!h.prefix[0] && h.type == '5' && dir_ok(name) && *size == 0)
        return 2; /* a directory: made as files need it */
    if (h.prefix[0] || (h.type != '0' && h.type != '\0') || entry_kind(name) < 0)
        return errf(-EINVAL, r->err, r->errlen, "unexpected entry \"%s\" in the archive", name);
    return 0;
}

static int check_manifest(restore_job_t *r, const char *text, size_t len)
{
    json_error_t je;
    json_t *m = json_loadb(text, len, 0, &je);
    const char *fmt = json_string_value(json_object_get(m, "format"));
    json_int_t ver = json_integer_value(json_object_get(m, "version"));
    int rc = 0;
    if (!fmt || strcmp(fmt, PV_BACKUP_FORMAT) != 0)
        rc = errf(-EINVAL, r->err, r->errlen, "not a pv backup (bad manifest)");
    else if (ver != PV_BACKUP_VERSION)
        rc = errf(-EINVAL, r->err, r->errlen, "backup format version %lld is not supported",
                     (long long)ver);
    else
        r->info->last_seq = (uint64_t)json_integer_value(json_object_get(m, "last_seq"));
    json_decref(m);
    return rc;
}

/* Stream `size` bytes of the current entry into dst (via a temp name),
 * checking a blob's SHA-256 against its name. */
static int extract(restore_job_t *r, const char *name, int kind, uint64_t size)
{
    char dst[PATH_MAX], tmp[PATH_MAX + 16], dir[PATH_MAX];
    if (snprintf(dst, sizeof(dst), "%s/%s", r->dir, name) >= (int)sizeof(dst))
        return errf(-ENAMETOOLONG, r->err, r->errlen, "path too long");
    snprintf(tmp, sizeof(tmp), "%s.restore", dst);
    dir_of(dst, dir, sizeof(dir));
    int rc = pv_mkdir_p(dir, 0700);
    int fd = rc < 0 ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (rc == 0 && fd < 0)
        rc = -errno;
    EVP_MD_CTX *md = kind == E_BLOB ? EVP_MD_CTX_new() : NULL;
    if (md)
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    uint64_t left = size;
    while (rc == 0 && left > 0) {
        size_t want = left < COPY_BUF ? (size_t)left : COPY_BUF;
        if ((rc = read_full(r->fd, r->buf, want)) < 0)
            break;
        if (md)
            EVP_DigestUpdate(md, r->buf, want);
        rc = pv_fail("restore_write") ? -ENOSPC : pv_write_all(fd, r->buf, want);
        left -= want;
    }
    if (rc == 0 && size % BLOCK)
        rc = read_full(r->fd, r->buf, BLOCK - size % BLOCK);
    if (rc == 0 && md) {
        unsigned char sha[32];
        char hex[65];
        EVP_DigestFinal_ex(md, sha, NULL);
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", sha[i]);
        if (strcmp(hex, name + 9) != 0)
            rc = -EBADMSG;
    }
    EVP_MD_CTX_free(md);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = -errno;
    /* The store goes in place only once everything else did: a failed
     * restore leaves no store behind that names missing blobs. */
    if (rc == 0 && kind == E_STORE)
        snprintf(r->store_tmp, sizeof(r->store_tmp), "%s", tmp);
    else if (rc == 0 && rename(tmp, dst) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        if (rc == -EBADMSG)
            return errf(rc, r->err, r->errlen, "%s is damaged (its content does not match its name)",
                        name);
        if (rc == -ENODATA)
            return errf(rc, r->err, r->errlen, "the archive is truncated (in %s)", name);
        return errf(rc, r->err, r->errlen, "cannot restore %s: %s", name, strerror(-rc));
    }
    return pv_fsync_dir(dir);
}

static int restore_entry(restore_job_t *r, const char *name, uint64_t size)
{
    int kind = entry_kind(name);
    if (!r->seen_manifest && kind != E_MANIFEST)
        return errf(-EINVAL, r->err, r->errlen, "not a pv backup (no manifest first)");
    if (kind == E_MANIFEST) {
        if (r->seen_manifest || size > 65536)
            return errf(-EINVAL, r->err, r->errlen, "not a pv backup (bad manifest)");
        size_t padded = (size_t)((size + BLOCK - 1) / BLOCK * BLOCK);
        int rc = read_full(r->fd, r->buf, padded);
        if (rc < 0)
            return errf(rc, r->err, r->errlen, "the archive is truncated");
        r->seen_manifest = true;
        return check_manifest(r, r->buf, (size_t)size);
    }
    int rc = extract(r, name, kind, size);
    if (rc < 0)
        return rc;
    r->info->files++;
    if (kind == E_STORE) {
        r->seen_store = true;
        r->info->store_bytes = size;
    } else if (kind == E_BLOB) {
        r->info->blobs++;
        r->info->blob_bytes += size;
    }
    return 0;
}

int pv_restore(const char *archive, const char *data_dir, pv_backup_info_t *info, char *err,
               size_t errlen)
{
    int64_t t0 = pv_mono_us();
    memset(info, 0, sizeof(*info));
    err[0] = '\0';
    char probe[PATH_MAX];
    snprintf(probe, sizeof(probe), "%s/store/data.mdb", data_dir);
    if (access(probe, F_OK) == 0)
        return errf(-EEXIST, err, errlen,
                       "%s already holds a store; restore into an empty data directory "
                       "(move it aside first)", data_dir);
    restore_job_t r = {.dir = data_dir, .info = info, .err = err, .errlen = errlen};
    r.fd = open(archive, O_RDONLY | O_CLOEXEC);
    if (r.fd < 0)
        return errf(-errno, err, errlen, "cannot open %s: %s", archive, strerror(errno));
    r.buf = malloc(COPY_BUF);
    int rc = r.buf ? pv_mkdir_p(data_dir, 0700) : -ENOMEM;
    if (rc < 0)
        errf(0, err, errlen, "cannot create %s: %s", data_dir, strerror(-rc));
    while (rc == 0) {
        char name[101];
        uint64_t size;
        rc = header_read(&r, name, &size);
        if (rc == 1) {
            rc = 0;
            break;
        }
        if (rc == 2) {
            rc = 0;
            continue;
        }
        if (rc == 0)
            rc = restore_entry(&r, name, size);
    }
    if (rc == 0 && !r.seen_store)
        rc = errf(-EINVAL, err, errlen, "the archive holds no store (store/data.mdb)");
    if (rc == 0) {
        char dst[PATH_MAX + 16], dir[PATH_MAX + 16];
        snprintf(dst, sizeof(dst), "%s/store/data.mdb", data_dir);
        dir_of(dst, dir, sizeof(dir));
        if (rename(r.store_tmp, dst) < 0 || pv_fsync_dir(dir) < 0)
            rc = errf(-errno, err, errlen, "cannot put the store in place: %s", strerror(errno));
    }
    if (rc < 0 && r.store_tmp[0])
        unlink(r.store_tmp);
    close(r.fd);
    free(r.buf);
    info->seconds = (double)(pv_mono_us() - t0) / 1e6;
    return rc;
}

int pv_restore_cli(const char *archive, const char *data_dir)
{
    pv_backup_info_t info;
    char err[512];
    int rc = pv_restore(archive, data_dir, &info, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "pvd: restore: %s\n", err);
        return 1;
    }
    printf("restored %s into %s: store %llu bytes (change log at %llu), %llu blobs "
           "(%llu bytes), %llu files in %.1f s; start pvd on it now\n",
           archive, data_dir, (unsigned long long)info.store_bytes,
           (unsigned long long)info.last_seq, (unsigned long long)info.blobs,
           (unsigned long long)info.blob_bytes, (unsigned long long)info.files, info.seconds);
    return 0;
}
