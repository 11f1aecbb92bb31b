/*
 * test_crypto.c — known vectors for the hashes and encodings, the id
 * format, JWTs (good, expired, forged), refresh tokens, presigned URLs
 * (tampering, expiry, key rotation), keys.json and passwords.
 */
#include "base/crypto.h"
#include "base/pv.h"
#include "base/text.h"
#include "t.h"

#include <dirent.h>
#include <jwt.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir[64];

static void make_tmp_dir(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/pv_test_crypto.XXXXXX");
    if (!mkdtemp(tmp_dir))
        abort();
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void hex_of(const uint8_t *b, size_t n, char *out) { pv_hex(b, n, out); }

TEST(sha256_vectors)
{
    uint8_t h[32];
    char x[65];
    pv_sha256("", 0, h);
    hex_of(h, 32, x);
    CHECK_EQ_STR(x, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    pv_sha256("abc", 3, h);
    hex_of(h, 32, x);
    CHECK_EQ_STR(x, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    pv_sha256(m, strlen(m), h);
    hex_of(h, 32, x);
    CHECK_EQ_STR(x, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(hmac_vectors) /* RFC 4231 cases 1, 2, 6 */
{
    uint8_t k[131], h[32];
    char x[65];
    memset(k, 0x0b, 20);
    pv_hmac_sha256(k, 20, "Hi There", 8, h);
    hex_of(h, 32, x);
    CHECK_EQ_STR(x, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    pv_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, h);
    hex_of(h, 32, x);
    CHECK_EQ_STR(x, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(k, 0xaa, 131);
    const char *m = "Test Using Larger Than Block-Size Key - Hash Key First";
    pv_hmac_sha256(k, 131, m, strlen(m), h);
    hex_of(h, 32, x);
    CHECK_EQ_STR(x, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(b64url_vectors)
{
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    char out[16];
    uint8_t dec[16];
    size_t n;
    for (size_t i = 0; i < PV_ARRAY_LEN(plain); i++) {
        size_t len = pv_b64url_encode((const uint8_t *)plain[i], strlen(plain[i]), out);
        CHECK_EQ_INT(len, strlen(enc[i]));
        CHECK_EQ_STR(out, enc[i]);
        CHECK_EQ_INT(pv_b64url_decode(enc[i], dec, sizeof(dec), &n), 0);
        CHECK_EQ_INT(n, strlen(plain[i]));
        CHECK(memcmp(dec, plain[i], n) == 0);
    }
    const uint8_t url[3] = {0xfb, 0xff, 0xbf};
    pv_b64url_encode(url, 3, out);
    CHECK_EQ_STR(out, "-_-_");
    /* bad: padding, standard alphabet, stray bits, impossible length */
    CHECK_EQ_INT(pv_b64url_decode("Zg==", dec, sizeof(dec), &n), -EINVAL);
    CHECK_EQ_INT(pv_b64url_decode("Zm9+", dec, sizeof(dec), &n), -EINVAL);
    CHECK_EQ_INT(pv_b64url_decode("Zm9/", dec, sizeof(dec), &n), -EINVAL);
    CHECK_EQ_INT(pv_b64url_decode("Zh", dec, sizeof(dec), &n), -EINVAL);
    CHECK_EQ_INT(pv_b64url_decode("Zm9vY", dec, sizeof(dec), &n), -EINVAL);
    CHECK_EQ_INT(pv_b64url_decode("Zm 9v", dec, sizeof(dec), &n), -EINVAL);
    CHECK_EQ_INT(pv_b64url_decode("Zm9vYmFy", dec, 5, &n), -EMSGSIZE);
    /* random round trips of every length up to 40 */
    for (size_t len = 0; len <= 40; len++) {
        uint8_t r[40], back[40];
        char t[64];
        pv_random(r, len);
        pv_b64url_encode(r, len, t);
        CHECK_EQ_INT(pv_b64url_decode(t, back, sizeof(back), &n), 0);
        CHECK_EQ_INT(n, len);
        CHECK(memcmp(r, back, len) == 0);
    }
}

TEST(id_format)
{
    uint8_t id[16], back[16];
    char t[PV_ID_TEXT];
    memset(id, 0, 16);
    pv_id_encode(id, t);
    CHECK_EQ_STR(t, "00000000000000000000000000");
    memset(id, 0xff, 16);
    pv_id_encode(id, t);
    CHECK_EQ_STR(t, "7zzzzzzzzzzzzzzzzzzzzzzzzz");
    CHECK_EQ_INT(pv_id_decode(t, back), 0);
    CHECK(memcmp(id, back, 16) == 0);
    /* a known ULID-style value: time 0x0123456789ab, then 0x01.. */
    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t)(0x01 + i * 0x11);
    pv_id_encode(id, t);
    CHECK_EQ_INT(pv_id_decode(t, back), 0);
    CHECK(memcmp(id, back, 16) == 0);
    for (int i = 0; i < 100; i++) {
        pv_random(id, 16);
        pv_id_encode(id, t);
        CHECK_EQ_INT(strlen(t), 26);
        CHECK_EQ_INT(pv_id_decode(t, back), 0);
        CHECK(memcmp(id, back, 16) == 0);
    }
    CHECK_EQ_INT(pv_id_decode("0000000000000000000000000", back), -EINVAL);
    CHECK_EQ_INT(pv_id_decode("000000000000000000000000000", back), -EINVAL);
    CHECK_EQ_INT(pv_id_decode("80000000000000000000000000", back), -EINVAL);
    CHECK_EQ_INT(pv_id_decode("0000000000000000000000000u", back), -EINVAL);
    CHECK_EQ_INT(pv_id_decode("0000000000000000000000000i", back), -EINVAL);
    CHECK_EQ_INT(pv_id_decode("0000000000000000000000000A", back), -EINVAL);
    CHECK_EQ_INT(pv_id_decode("", back), -EINVAL);
    CHECK_EQ_INT(pv_id_decode(NULL, back), -EINVAL);
}

TEST(id_ordering)
{
    uint8_t prev[16], id[16];
    char pt[PV_ID_TEXT], t[PV_ID_TEXT];
    int64_t now = pv_now_ms();
    pv_id_new(prev);
    pv_id_encode(prev, pt);
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | prev[i];
    CHECK((int64_t)ms >= now - 1000 && (int64_t)ms <= now + 1000);
    for (int i = 0; i < 5000; i++) {
        pv_id_new(id);
        pv_id_encode(id, t);
        CHECK(memcmp(prev, id, 16) < 0);
        CHECK(strcmp(pt, t) < 0);
        memcpy(prev, id, 16);
        memcpy(pt, t, sizeof(t));
    }
}

static void test_keys(pv_keys_t *k, uint8_t fill)
{
    memset(k, 0, sizeof(*k));
    memset(k->jwt, fill, 32);
    k->n_presign = 1;
    k->presign_kid[0] = 7;
    memset(k->presign[0], fill + 1, 32);
}

static void some_id(char out[PV_ID_TEXT])
{
    uint8_t id[16];
    pv_id_new(id);
    pv_id_encode(id, out);
}

/* Replaces the token's payload part with b64url(json), keeping header and
 * signature. */
static void swap_payload(const char *tok, const char *json, char *out, size_t n)
{
    const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    char p[512];
    pv_b64url_encode((const uint8_t *)json, strlen(json), p);
    snprintf(out, n, "%.*s.%s%s", (int)(d1 - tok), tok, p, d2);
}

TEST(jwt_issue_verify)
{
    pv_keys_t k, other;
    char uid[PV_ID_TEXT], got[PV_ID_TEXT], *tok = NULL, *tok2 = NULL;
    test_keys(&k, 1);
    test_keys(&other, 9);
    some_id(uid);

    CHECK_EQ_INT(pv_jwt_issue(&k, uid, 900, &tok), 0);
    CHECK(tok != NULL);
    if (!tok)
        return;
    CHECK_EQ_INT(pv_jwt_verify(&k, tok, got), 0);
    CHECK_EQ_STR(got, uid);
    /* two tokens for the same user differ (jti) */
    CHECK_EQ_INT(pv_jwt_issue(&k, uid, 900, &tok2), 0);
    CHECK(tok2 && strcmp(tok, tok2) != 0);
    /* another key */
    CHECK_EQ_INT(pv_jwt_verify(&other, tok, got), -EACCES);
    /* flip one char of the signature */
    char bad[1024];
    snprintf(bad, sizeof(bad), "%s", tok);
    size_t L = strlen(bad);
    bad[L - 2] = bad[L - 2] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(pv_jwt_verify(&k, bad, got), -EACCES);
    /* payload swapped for another user, signature kept */
    char other_uid[PV_ID_TEXT], js[256];
    some_id(other_uid);
    snprintf(js, sizeof(js), "{\"sub\":\"%s\",\"exp\":%lld}", other_uid,
             (long long)(pv_now_ms() / 1000 + 900));
    swap_payload(tok, js, bad, sizeof(bad));
    CHECK_EQ_INT(pv_jwt_verify(&k, bad, got), -EACCES);
    /* alg none, no signature */
    char h[64], p[256];
    pv_b64url_encode((const uint8_t *)"{\"alg\":\"none\",\"typ\":\"JWT\"}", 27, h);
    pv_b64url_encode((const uint8_t *)js, strlen(js), p);
    snprintf(bad, sizeof(bad), "%s.%s.", h, p);
    CHECK_EQ_INT(pv_jwt_verify(&k, bad, got), -EACCES);
    snprintf(bad, sizeof(bad), "%s.%s", h, p);
    CHECK_EQ_INT(pv_jwt_verify(&k, bad, got), -EACCES);
    /* right key, other HMAC: alg must be HS256 */
    jwt_t *j = NULL;
    CHECK_EQ_INT(jwt_new(&j), 0);
    jwt_add_grant(j, "sub", uid);
    jwt_add_grant_int(j, "exp", (long)(pv_now_ms() / 1000 + 900));
    jwt_set_alg(j, JWT_ALG_HS512, k.jwt, 32);
    char *t512 = jwt_encode_str(j);
    jwt_free(j);
    CHECK(t512 != NULL);
    CHECK_EQ_INT(pv_jwt_verify(&k, t512, got), -EACCES);
    free(t512);
    /* garbage */
    CHECK_EQ_INT(pv_jwt_verify(&k, "", got), -EACCES);
    CHECK_EQ_INT(pv_jwt_verify(&k, "a.b.c", got), -EACCES);
    CHECK_EQ_INT(pv_jwt_verify(&k, NULL, got), -EACCES);
    free(tok2);
    CHECK_EQ_INT(pv_jwt_issue(&k, "not-an-id", 900, &tok2), -EINVAL);
    CHECK(tok2 == NULL);
    free(tok);
    tok = NULL;
    /* expired: checked after the signature */
    CHECK_EQ_INT(pv_jwt_issue(&k, uid, -10, &tok), 0);
    CHECK_EQ_INT(pv_jwt_verify(&k, tok, got), -ETIMEDOUT);
    CHECK_EQ_INT(pv_jwt_verify(&other, tok, got), -EACCES);
    free(tok);
}

TEST(refresh_tokens)
{
    char t[PV_REFRESH_TEXT], t2[PV_REFRESH_TEXT];
    uint8_t h[32], h2[32];
    pv_refresh_new(t, h);
    CHECK_EQ_INT(strlen(t), 43);
    CHECK_EQ_INT(pv_refresh_hash(t, h2), 0);
    CHECK(memcmp(h, h2, 32) == 0);
    pv_refresh_new(t2, h2);
    CHECK(strcmp(t, t2) != 0 && memcmp(h, h2, 32) != 0);
    char bad[64];
    snprintf(bad, sizeof(bad), "%.42s", t);
    CHECK_EQ_INT(pv_refresh_hash(bad, h2), -EINVAL);
    snprintf(bad, sizeof(bad), "%s=", t);
    CHECK_EQ_INT(pv_refresh_hash(bad, h2), -EINVAL);
    snprintf(bad, sizeof(bad), "%s", t);
    bad[5] = '+';
    CHECK_EQ_INT(pv_refresh_hash(bad, h2), -EINVAL);
    CHECK_EQ_INT(pv_refresh_hash("", h2), -EINVAL);
    CHECK_EQ_INT(pv_refresh_hash(NULL, h2), -EINVAL);
}

/* Splits a presigned URL into path and query. */
static void split_url(const char *url, char *path, char *query)
{
    const char *q = strchr(url, '?');
    sprintf(path, "%.*s", (int)(q - url), url);
    strcpy(query, q + 1);
}

TEST(presign_sign_verify)
{
    pv_keys_t k;
    pv_presign_query_t q;
    char url[512], path[256], query[256], bad[300];
    const char *owner = "01hx4k3d5e6f7g8h9j0k1m2n3p";
    int64_t now = 1700000000;
    test_keys(&k, 3);

    CHECK_EQ_INT(pv_presign_url(&k, "/media/photos/abc/content", owner,
                                now + 3600, url, sizeof(url)), 0);
    const char *want = "/media/photos/abc/content?owner=01hx4k3d5e6f7g8h9j0k1m2n3p"
                       "&expires=1700003600&kid=7&sig=";
    CHECK(strncmp(url, want, strlen(want)) == 0);
    CHECK_EQ_INT(strlen(url), strlen(want) + 43);
    split_url(url, path, query);
    CHECK_EQ_INT(pv_presign_verify(&k, path, query, now, &q), 0);
    CHECK_EQ_STR(q.owner, owner);
    CHECK_EQ_INT(q.expires, now + 3600);
    CHECK_EQ_INT(q.kid, 7);
    CHECK_EQ_INT(strlen(q.sig), 43);
    /* the last second still works; one after is expired */
    CHECK_EQ_INT(pv_presign_verify(&k, path, query, now + 3600, &q), 0);
    CHECK_EQ_INT(pv_presign_verify(&k, path, query, now + 3601, &q), -ETIMEDOUT);
    /* changed path */
    CHECK_EQ_INT(pv_presign_verify(&k, "/media/photos/abd/content", query, now, &q), -EACCES);
    CHECK_EQ_INT(pv_presign_verify(&k, "/media/photos/abc/thumbnail", query, now, &q), -EACCES);
    /* changed owner, expiry, kid, signature */
    snprintf(bad, sizeof(bad), "%s", query);
    bad[strlen("owner=")] = '1';
    CHECK_EQ_INT(pv_presign_verify(&k, path, bad, now, &q), -EACCES);
    snprintf(bad, sizeof(bad), "%s", query);
    char *e = strstr(bad, "expires=") + 8;
    *e = '2'; /* 2700003600: far future */
    CHECK_EQ_INT(pv_presign_verify(&k, path, bad, now, &q), -EACCES);
    snprintf(bad, sizeof(bad), "%s", query);
    strstr(bad, "kid=7")[4] = '8';
    CHECK_EQ_INT(pv_presign_verify(&k, path, bad, now, &q), -EACCES);
    snprintf(bad, sizeof(bad), "%s", query);
    char *s = strstr(bad, "sig=") + 4;
    s[0] = s[0] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(pv_presign_verify(&k, path, bad, now, &q), -EACCES);
    /* forged and expired: the signature is checked first */
    CHECK_EQ_INT(pv_presign_verify(&k, path, bad, now + 99999, &q), -EACCES);
    /* order of parameters and an unknown extra one do not matter */
    const char *sig = strstr(query, "sig=") + 4;
    snprintf(bad, sizeof(bad), "sig=%s&kid=7&x=1&expires=%lld&owner=%s", sig,
             (long long)(now + 3600), owner);
    CHECK_EQ_INT(pv_presign_verify(&k, path, bad, now, &q), 0);
    /* a repeated parameter, a missing one, a signed leading zero */
    snprintf(bad, sizeof(bad), "%s&kid=7", query);
    CHECK_EQ_INT(pv_presign_verify(&k, path, bad, now, &q), -EACCES);
    snprintf(bad, sizeof(bad), "owner=%s&expires=%lld&kid=7", owner, (long long)(now + 3600));
    CHECK_EQ_INT(pv_presign_verify(&k, path, bad, now, &q), -EACCES);
    snprintf(bad, sizeof(bad), "owner=%s&expires=0%lld&kid=7&sig=%s", owner,
             (long long)(now + 3600), sig);
    CHECK_EQ_INT(pv_presign_verify(&k, path, bad, now, &q), -EACCES);
    CHECK_EQ_INT(pv_presign_verify(&k, path, "", now, &q), -EACCES);
    /* bad inputs to signing */
    CHECK_EQ_INT(pv_presign_url(&k, "no-slash", owner, now, url, sizeof(url)), -EINVAL);
    CHECK_EQ_INT(pv_presign_url(&k, "/a?b", owner, now, url, sizeof(url)), -EINVAL);
    CHECK_EQ_INT(pv_presign_url(&k, "/a", "a&b", now, url, sizeof(url)), -EINVAL);
    CHECK_EQ_INT(pv_presign_url(&k, "/a", owner, now, url, 40), -EMSGSIZE);
}

TEST(presign_parse)
{
    pv_presign_query_t q;
    const char *sig = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    char s[256];
    snprintf(s, sizeof(s), "owner=u1&expires=9223372036854775807&kid=4294967295&sig=%s", sig);
    CHECK_EQ_INT(pv_presign_parse(s, &q), 0);
    CHECK_EQ_INT(q.expires, INT64_MAX);
    CHECK_EQ_INT(q.kid, 4294967295u);
    snprintf(s, sizeof(s), "owner=u1&expires=9223372036854775808&kid=1&sig=%s", sig);
    CHECK_EQ_INT(pv_presign_parse(s, &q), -EINVAL);
    snprintf(s, sizeof(s), "owner=u1&expires=1&kid=4294967296&sig=%s", sig);
    CHECK_EQ_INT(pv_presign_parse(s, &q), -EINVAL);
    snprintf(s, sizeof(s), "owner=u1&expires=-1&kid=1&sig=%s", sig);
    CHECK_EQ_INT(pv_presign_parse(s, &q), -EINVAL);
    snprintf(s, sizeof(s), "owner=u%%31&expires=1&kid=1&sig=%s", sig);
    CHECK_EQ_INT(pv_presign_parse(s, &q), -EINVAL);
    snprintf(s, sizeof(s), "owner=&expires=1&kid=1&sig=%s", sig);
    CHECK_EQ_INT(pv_presign_parse(s, &q), -EINVAL);
    snprintf(s, sizeof(s), "owner=u1&expires=1&kid=1&sig=%s=", sig);
    CHECK_EQ_INT(pv_presign_parse(s, &q), -EINVAL);
    snprintf(s, sizeof(s), "&&owner=u1&&expires=1&kid=1&sig=%s&", sig);
    CHECK_EQ_INT(pv_presign_parse(s, &q), 0);
    CHECK_EQ_INT(pv_presign_parse(NULL, &q), -EINVAL);
}

TEST(keys_file)
{
    pv_keys_t k1, k2;
    struct stat st;
    char path[160];
    make_tmp_dir();
    char sub[128];
    snprintf(sub, sizeof(sub), "%s/data", tmp_dir);

    CHECK_EQ_INT(pv_keys_load_or_create(sub, &k1), 0);
    CHECK_EQ_INT(k1.n_presign, 1);
    snprintf(path, sizeof(path), "%s/keys.json", sub);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    CHECK_EQ_INT(count_files(sub), 1); /* no temp file left */
    CHECK_EQ_INT(pv_keys_load_or_create(sub, &k2), 0);
    CHECK(memcmp(&k1, &k2, sizeof(k1)) == 0);

    /* rotation: newest first, old kid still there, saved */
    pv_presign_query_t q;
    char url[512], p[256], qs[256];
    CHECK_EQ_INT(pv_presign_url(&k1, "/media/x", "u1", 100, url, sizeof(url)), 0);
    split_url(url, p, qs);
    CHECK_EQ_INT(pv_keys_rotate_presign(sub, &k1), 0);
    CHECK_EQ_INT(k1.n_presign, 2);
    CHECK(k1.presign_kid[0] != k1.presign_kid[1]);
    CHECK_EQ_INT(k1.presign_kid[1], k2.presign_kid[0]);
    CHECK_EQ_INT(pv_presign_verify(&k1, p, qs, 50, &q), 0); /* old kid verifies */
    char url2[512];
    CHECK_EQ_INT(pv_presign_url(&k1, "/media/x", "u1", 100, url2, sizeof(url2)), 0);
    CHECK(strstr(url2, "kid=2&") != NULL); /* new key signs */
    CHECK_EQ_INT(pv_keys_load_or_create(sub, &k2), 0);
    CHECK(memcmp(&k1, &k2, sizeof(k1)) == 0);
    for (int i = 0; i < PV_MAX_PRESIGN_KEYS; i++)
        CHECK_EQ_INT(pv_keys_rotate_presign(sub, &k1), 0);
    CHECK_EQ_INT(k1.n_presign, PV_MAX_PRESIGN_KEYS);
    CHECK_EQ_INT(pv_presign_verify(&k1, p, qs, 50, &q), -EACCES); /* dropped */
    CHECK_EQ_INT(count_files(sub), 1);

    /* a failed save leaves the old file and no temp file */
    pv_keys_t before = k1;
    static const char *sites[] = {"keys.open:1", "keys.write:1", "keys.fsync:1",
                                  "keys.rename:1", "keys.dump:1"};
    for (size_t i = 0; i < PV_ARRAY_LEN(sites); i++) {
        pv_fail_reset(sites[i]);
        CHECK(pv_keys_rotate_presign(sub, &k1) < 0);
        pv_fail_reset("");
        CHECK(memcmp(&k1, &before, sizeof(k1)) == 0);
        CHECK_EQ_INT(count_files(sub), 1);
        CHECK_EQ_INT(pv_keys_load_or_create(sub, &k2), 0);
        CHECK(memcmp(&k1, &k2, sizeof(k1)) == 0);
    }

    /* group-readable: a warning, still loads */
    CHECK_EQ_INT(chmod(path, 0644), 0);
    CHECK_EQ_INT(pv_keys_load_or_create(sub, &k2), 0);
    CHECK(memcmp(&k1, &k2, sizeof(k1)) == 0);

    /* malformed: refused, not replaced */
    FILE *f = fopen(path, "w");
    fputs("{\"jwt\":\"short\",\"presign\":[]}", f);
    fclose(f);
    CHECK_EQ_INT(pv_keys_load_or_create(sub, &k2), -EINVAL);
    f = fopen(path, "w");
    fputs("not json", f);
    fclose(f);
    CHECK_EQ_INT(pv_keys_load_or_create(sub, &k2), -EINVAL);

    /* creation failing cleanly */
    unlink(path);
    pv_fail_reset("keys.write:1");
    CHECK_EQ_INT(pv_keys_load_or_create(sub, &k2), -EIO);
    pv_fail_reset("");
    CHECK_EQ_INT(count_files(sub), 0);
    rm_dir(sub);
    rm_dir(tmp_dir);
}

TEST(passwords)
{
    char h[PV_PWHASH_LEN];
    CHECK_EQ_INT(pv_password_hash("correct horse battery", h), 0);
    CHECK(strncmp(h, "$argon2id$", 10) == 0);
    CHECK(pv_password_verify(h, "correct horse battery"));
    CHECK(!pv_password_verify(h, "correct horse batterY"));
    CHECK(!pv_password_verify("garbage", "x"));
    const char *d = pv_password_dummy_hash();
    CHECK(strncmp(d, "$argon2id$", 10) == 0);
    CHECK(d == pv_password_dummy_hash());
    pv_fail_reset("crypto.pwhash:1");
    CHECK_EQ_INT(pv_password_hash("x", h), -ENOMEM);
    pv_fail_reset("");
}

/* The presign MAC is plain HMAC-SHA256 over "GET\npath\nowner\nexpires":
 * the expected value comes from Python's hmac module. */
TEST(presign_known_answer)
{
    pv_keys_t k = {0};
    memset(k.presign[0], 1, 32);
    k.n_presign = 1;
    k.presign_kid[0] = 1;
    char url[512];
    CHECK_EQ_INT(pv_presign_url(&k, "/media/photos/x/content", "owner1", 1000, url, sizeof(url)), 0);
    CHECK(strstr(url, "sig=-XpTPM2UElz9Qz6yxNxlGm-6SueCdsO5Pc-M8089FuE") != NULL);
    /* The same key again (the per-thread keyed state) and another key. */
    CHECK_EQ_INT(pv_presign_url(&k, "/media/photos/x/content", "owner1", 1000, url, sizeof(url)), 0);
    CHECK(strstr(url, "sig=-XpTPM2UElz9Qz6yxNxlGm-6SueCdsO5Pc-M8089FuE") != NULL);
    memset(k.presign[0], 2, 32);
    CHECK_EQ_INT(pv_presign_url(&k, "/media/photos/x/content", "owner1", 1000, url, sizeof(url)), 0);
    CHECK(strstr(url, "sig=-XpTPM2UElz9Qz6yxNxlGm-6SueCdsO5Pc-M8089FuE") == NULL);
}

int main(void)
{
    RUN(presign_known_answer);
    pv_log_set_level(PV_LOG_ERROR);
    RUN(sha256_vectors);
    RUN(hmac_vectors);
    RUN(b64url_vectors);
    RUN(id_format);
    RUN(id_ordering);
    RUN(jwt_issue_verify);
    RUN(refresh_tokens);
    RUN(presign_sign_verify);
    RUN(presign_parse);
    RUN(keys_file);
    RUN(passwords);
    return t_done("crypto");
}
