/*
 * test_backup.c — src/backup.c: a backup of a live store restores to the
 * same records and blobs; the reader refuses what a backup cannot hold
 * (other names, "..", damaged headers, a blob whose content does not match
 * its name, a truncated archive, a data dir that already has a store); and
 * every failure point on the write path ends in a clean error with no
 * half-written FILE left behind.
 */
#include "store/backup.h"
#include "base/crypto.h"
#include "base/pv.h"
#include "base/records.h"
#include "store/store.h"
#include "t.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_root[] = "/tmp/pv-test-backup-XXXXXX";

static void path_of(char *out, size_t len, const char *rel)
{
    snprintf(out, len, "%s/%s", g_root, rel);
}

static int put_user(pv_txn_t *txn, void *arg)
{
    const pv_user_t *u = arg;
    char *buf;
    size_t len;
    int rc = pv_user_encode(u, &buf, &len);
    if (rc < 0)
        return rc;
    rc = pv_txn_put(txn, PV_DB_USERS, u->id, 16, buf, len, true);
    free(buf);
    if (rc == 0)
        rc = pv_txn_put(txn, PV_DB_EMAILS, u->email, strlen(u->email), u->id, 16, true);
    return rc;
}

typedef struct blob_arg {
    uint8_t sha[32];
} blob_arg_t;

static int ref_blob(pv_txn_t *txn, void *arg) { return pv_blob_ref(txn, ((blob_arg_t *)arg)->sha); }

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -errno;
    int rc = pv_write_all(fd, data, len);
    close(fd);
    return rc;
}

/* A store in g_root/src with one user and one referenced blob. */
static pv_store_t *make_source(pv_user_t *u, blob_arg_t *b)
{
    char dir[512], tmp[600];
    path_of(dir, sizeof(dir), "src");
    pv_store_opts_t o = {.map_size = 8 << 20, .no_sync = true};
    pv_store_t *s = NULL;
    if (pv_store_open(&s, dir, &o) < 0)
        return NULL;
    memset(u, 0, sizeof(*u));
    u->v = 1;
    pv_id_new(u->id);
    snprintf(u->email, sizeof(u->email), "ann@example.com");
    snprintf(u->pw_hash, sizeof(u->pw_hash), "$argon2id$fake");
    u->created_ms = 1700000000000;
    static const char content[] = "pretend this is a photo";
    pv_sha256(content, sizeof(content) - 1, b->sha);
    snprintf(tmp, sizeof(tmp), "%s/blob.tmp", pv_store_tmp_dir(s));
    if (write_file(tmp, content, sizeof(content) - 1) < 0 ||
        pv_blob_commit_file(s, tmp, b->sha, NULL) < 0 ||
        pv_store_write_sync(s, ref_blob, b) < 0 || pv_store_write_sync(s, put_user, u) < 0) {
        pv_store_close(s);
        return NULL;
    }
    snprintf(tmp, sizeof(tmp), "%s/keys.json", dir);
    write_file(tmp, "{\"k\":1}", 7);
    return s;
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(round_trip)
{
    pv_user_t u;
    blob_arg_t b;
    pv_store_t *s = make_source(&u, &b);
    CHECK(s != NULL);
    if (!s)
        return;
    char src[512], archive[512], dst[512], err[512];
    path_of(src, sizeof(src), "src");
    path_of(archive, sizeof(archive), "b.tar");
    path_of(dst, sizeof(dst), "dst");
    pv_backup_info_t info;
    int rc = pv_backup_write(s, src, NULL, NULL, archive, true, &info, err, sizeof(err));
    if (rc)
        printf("#   backup: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(info.blobs, 1);
    CHECK_EQ_INT(info.blobs_missing, 0);
    CHECK(info.store_bytes > 0 && info.bytes > info.store_bytes);
    /* staged links are gone, the archive is a plain tar */
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "ls %s/tmp | grep -q backup-", src);
    CHECK(run(cmd) != 0);
    snprintf(cmd, sizeof(cmd), "tar -tf %s | head -1 | grep -qx pv-backup.json", archive);
    CHECK_EQ_INT(run(cmd), 0);

    rc = pv_restore(archive, dst, &info, err, sizeof(err));
    if (rc)
        printf("#   restore: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(info.blobs, 1);
    pv_store_t *d = NULL;
    pv_store_opts_t o = {.map_size = 8 << 20, .no_sync = true};
    CHECK_EQ_INT(pv_store_open(&d, dst, &o), 0);
    if (d) {
        pv_txn_t txn;
        pv_val_t v;
        pv_user_t got;
        CHECK_EQ_INT(pv_txn_begin(d, &txn, false), 0);
        CHECK_EQ_INT(pv_txn_get(&txn, PV_DB_USERS, u.id, 16, &v), 0);
        CHECK(pv_user_decode(v.data, v.len, &got) == 0 && strcmp(got.email, u.email) == 0);
        pv_txn_abort(&txn);
        char bp[4096];
        pv_blob_path(d, b.sha, bp, sizeof(bp));
        CHECK(access(bp, R_OK) == 0); /* referenced: kept by the start-up sweep */
        pv_store_close(d);
    }
    char keys[600];
    snprintf(keys, sizeof(keys), "%s/keys.json", dst);
    CHECK(access(keys, R_OK) == 0);
    /* a second restore into the same place is refused */
    rc = pv_restore(archive, dst, &info, err, sizeof(err));
    CHECK_EQ_INT(rc, -EEXIST);
    CHECK(strstr(err, "already holds a store") != NULL);
    /* --no-blobs */
    path_of(archive, sizeof(archive), "small.tar");
    CHECK_EQ_INT(pv_backup_write(s, src, NULL, NULL, archive, false, &info, err, sizeof(err)), 0);
    CHECK_EQ_INT(info.blobs, 0);
    /* never into the data directory, never over a directory */
    char inside[600];
    snprintf(inside, sizeof(inside), "%s/store/data.mdb", src);
    CHECK_EQ_INT(pv_backup_write(s, src, NULL, NULL, inside, true, &info, err, sizeof(err)),
                 -EINVAL);
    CHECK(strstr(err, "inside the data directory") != NULL);
    CHECK_EQ_INT(pv_backup_write(s, src, NULL, NULL, g_root, true, &info, err, sizeof(err)),
                 -EEXIST);
    path_of(inside, sizeof(inside), "no/such/dir/x.tar");
    CHECK_EQ_INT(pv_backup_write(s, src, NULL, NULL, inside, true, &info, err, sizeof(err)),
                 -ENOENT);
    /* relative paths are refused (pvctl makes them absolute) */
    CHECK_EQ_INT(pv_backup_write(s, src, NULL, NULL, "rel.tar", true, &info, err, sizeof(err)),
                 -EINVAL);
    pv_store_close(s);
}

/* Every failure point of the write path: a clean error and no FILE. */
TEST(write_failpoints)
{
    char src[512], archive[512], err[512];
    path_of(src, sizeof(src), "src"); /* round_trip's store: a user and a blob */
    pv_store_t *s = NULL;
    pv_store_opts_t o = {.map_size = 8 << 20, .no_sync = true};
    CHECK_EQ_INT(pv_store_open(&s, src, &o), 0);
    if (!s)
        return;
    static const char *sites[] = {"backup_write", "store_backup", "backup_alloc"};
    for (size_t i = 0; i < PV_ARRAY_LEN(sites); i++) {
        for (int n = 1; n < 50; n++) {
            char spec[64];
            snprintf(spec, sizeof(spec), "%s:%d", sites[i], n);
            pv_fail_reset(spec);
            path_of(archive, sizeof(archive), "fp.tar");
            unlink(archive);
            pv_backup_info_t info;
            int rc = pv_backup_write(s, src, NULL, NULL, archive, true, &info, err, sizeof(err));
            pv_fail_reset("");
            if (rc == 0)
                break; /* past the last call of this site */
            CHECK(rc < 0 && err[0]);
            CHECK(access(archive, F_OK) != 0);
            char tmp[600];
            snprintf(tmp, sizeof(tmp), "%s.tmp", archive);
            CHECK(access(tmp, F_OK) != 0);
        }
    }
    pv_store_close(s);
}

/* Write a one-entry tar by hand with the given name and content. */
static void craft(const char *path, const char *name, const char *data, bool good_sum)
{
    char h[512] = {0};
    snprintf(h, 100, "%s", name);
    snprintf(h + 100, 8, "%07o", 0600);
    snprintf(h + 108, 8, "%07o", 0);
    snprintf(h + 116, 8, "%07o", 0);
    snprintf(h + 124, 12, "%011o", (unsigned)strlen(data));
    snprintf(h + 136, 12, "%011o", 0);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", good_sum ? sum : sum + 1);
    char body[512] = {0};
    memcpy(body, data, strlen(data));
    char zero[1024] = {0};
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, h, 512) == 512 && write(fd, body, 512) == 512 &&
          write(fd, zero, 1024) == 1024);
    close(fd);
}

TEST(reader_refuses)
{
    static const struct {
        const char *name, *data;
        bool good_sum;
        const char *says;
    } bad[] = {
        {"pv-backup.json", "{\"format\":\"pv-backup\",\"version\":1}", false, "damaged"},
        {"../evil", "x", true, "unexpected entry"},
        {"/etc/passwd", "x", true, "unexpected entry"},
        {"store/../../x", "x", true, "unexpected entry"},
        {"keys.json", "{}", true, "no manifest first"},
        {"pv-backup.json", "{\"format\":\"zip\"}", true, "not a pv backup"},
        {"pv-backup.json", "{\"format\":\"pv-backup\",\"version\":99}", true, "not supported"},
        {"pv-backup.json", "{\"format\":\"pv-backup\",\"version\":1}", true, "no store"},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
        char archive[512], dst[512], err[512];
        path_of(archive, sizeof(archive), "bad.tar");
        snprintf(dst, sizeof(dst), "%s/bad%zu", g_root, i);
        craft(archive, bad[i].name, bad[i].data, bad[i].good_sum);
        pv_backup_info_t info;
        int rc = pv_restore(archive, dst, &info, err, sizeof(err));
        if (rc == 0 || !strstr(err, bad[i].says))
            printf("#   %s: %d \"%s\"\n", bad[i].name, rc, err);
        CHECK(rc < 0);
        CHECK(strstr(err, bad[i].says) != NULL);
    }
    /* a blob whose content does not match its name; a truncated archive */
    char good[512], cmd[1600], dst[512], err[512];
    path_of(good, sizeof(good), "b.tar");
    snprintf(cmd, sizeof(cmd),
             "cd %s && rm -rf x && mkdir x && tar -xf b.tar -C x && "
             "f=$(ls x/blobs/*/* | head -1) && echo tampered > $f && "
             "tar --format=ustar -cf tampered.tar -C x pv-backup.json store keys.json blobs && "
             "head -c 9000 b.tar > cut.tar",
             g_root);
    CHECK_EQ_INT(run(cmd), 0);
    pv_backup_info_t info;
    char archive[512];
    path_of(archive, sizeof(archive), "tampered.tar");
    path_of(dst, sizeof(dst), "t1");
    CHECK(pv_restore(archive, dst, &info, err, sizeof(err)) < 0);
    CHECK(strstr(err, "damaged") != NULL); /* past tar's directory entries, to the blob */
    char mdb[600];
    snprintf(mdb, sizeof(mdb), "%s/store/data.mdb", dst);
    CHECK(access(mdb, F_OK) != 0); /* a failed restore leaves no store behind */
    path_of(archive, sizeof(archive), "cut.tar");
    path_of(dst, sizeof(dst), "t2");
    CHECK(pv_restore(archive, dst, &info, err, sizeof(err)) < 0);
    CHECK(strstr(err, "truncated") != NULL);
    path_of(archive, sizeof(archive), "none.tar");
    CHECK(pv_restore(archive, dst, &info, err, sizeof(err)) == -ENOENT);
}

int main(void)
{
    if (!mkdtemp(g_root))
        return 1;
    pv_log_set_level(PV_LOG_ERROR);
    RUN(round_trip);
    RUN(write_failpoints);
    RUN(reader_refuses);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_root);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", g_root);
    return t_done("backup");
}
