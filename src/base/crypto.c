/*
 * crypto.c — ids, hashes, encodings, passwords, JWT access tokens, refresh
 * tokens, presigned URLs and the key file.
 *
 * Shape: libsodium gives randomness, argon2id, HMAC and constant-time
 * compares; OpenSSL gives SHA-256 (it uses the CPU's SHA extensions, which
 * matters for content hashes of large photos); libjwt only encodes and
 * checks HS256 tokens — it has no validation helpers, so alg and exp are
 * checked here. Everything that reads text from the network (ids, base64url,
 * presign queries, JWTs) is strict: one accepted spelling per value, so no
 * two different strings mean the same thing.
 */
#include "base/crypto.h"

#include "base/pv.h"
#include "base/text.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- library init: sodium_init once, from any thread ---- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_init_once(void)
{
    /* sodium_init only fails when no entropy source exists at all; then
     * nothing here can be made safe, so stop rather than hand out weak
     * keys. */
    if (sodium_init() < 0)
        abort();
}

static void crypto_init(void)
{
    pthread_once(&sodium_once, sodium_init_once);
}

void pv_random(void *buf, size_t len)
{
    crypto_init();
    randombytes_buf(buf, len);
}

int pv_memeq_ct(const void *a, const void *b, size_t len)
{
    crypto_init();
    return sodium_memcmp(a, b, len) == 0 ? 0 : 1;
}

/* ---- ids ---- */

static const char b32_alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t id_last_ms;
static uint8_t id_last_rand[10];

/* Ids made in the same millisecond (or while the clock stepped back) reuse
 * the last time and add one to the random part, so ids from one process
 * are strictly increasing. */
static void id_bump(uint8_t r[10])
{
    for (int i = 9; i >= 0; i--)
        if (++r[i] != 0)
            return;
}

void pv_id_new(uint8_t id[16])
{
    uint64_t now = (uint64_t)pv_now_ms() & 0xffffffffffffULL;

    pthread_mutex_lock(&id_lock);
    if (now <= id_last_ms) {
        id_bump(id_last_rand);
        /* All-zero after the bump means the 80 bits wrapped: move on one
         * millisecond instead (never happens in practice). */
        static const uint8_t zero[10];
        if (memcmp(id_last_rand, zero, sizeof(zero)) == 0)
            id_last_ms++;
        now = id_last_ms;
    } else {
        pv_random(id_last_rand, sizeof(id_last_rand));
        /* Keep headroom so a burst within one ms does not wrap. */
        id_last_rand[0] &= 0x7f;
        id_last_ms = now;
    }
    for (int i = 0; i < 6; i++)
        id[i] = (uint8_t)(now >> (8 * (5 - i)));
    memcpy(id + 6, id_last_rand, 10);
    pthread_mutex_unlock(&id_lock);
}

/* Bit k (0 = most significant) of the 130-bit value 00|id. */
static int id_bit(const uint8_t id[16], int k)
{
    if (k < 2)
        return 0;
    k -= 2;
    return (id[k / 8] >> (7 - k % 8)) & 1;
}

void pv_id_encode(const uint8_t id[16], char out[PV_ID_TEXT])
{
    for (int i = 0; i < 26; i++) {
        int v = 0;
        for (int b = 0; b < 5; b++)
            v = (v << 1) | id_bit(id, i * 5 + b);
        out[i] = b32_alphabet[v];
    }
    out[26] = '\0';
}

static int b32_value(char c)
{
    const char *p = c ? strchr(b32_alphabet, c) : NULL;
    return p ? (int)(p - b32_alphabet) : -1;
}

int pv_id_decode(const char *text, uint8_t id[16])
{
    if (!text || strnlen(text, 27) != 26)
        return -EINVAL;
    uint8_t tmp[16] = {0};
    for (int i = 0; i < 26; i++) {
        int v = b32_value(text[i]);
        /* The first char carries only the 2 padding bits and 3 real ones:
         * anything above 7 would not fit in 128 bits. */
        if (v < 0 || (i == 0 && v > 7))
            return -EINVAL;
        for (int b = 0; b < 5; b++) {
            int k = i * 5 + b - 2;
            if (k >= 0 && ((v >> (4 - b)) & 1))
                tmp[k / 8] |= (uint8_t)(1u << (7 - k % 8));
        }
    }
    memcpy(id, tmp, 16);
    return 0;
}

/* ---- hashes and encodings ---- */

void pv_sha256(const void *data, size_t len, uint8_t out[32])
{
    SHA256(data ? data : (const void *)"", len, out);
}

void pv_hmac_sha256(const void *key, size_t keylen, const void *data,
                    size_t len, uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;

    crypto_init();
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

int pv_sha256_file(const char *path, uint8_t out[32], uint64_t *bytes)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    crypto_hash_sha256_state st;
    crypto_init();
    crypto_hash_sha256_init(&st);
    uint8_t buf[65536];
    uint64_t total = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : 0;
            break;
        }
        crypto_hash_sha256_update(&st, buf, (size_t)n);
        total += (uint64_t)n;
    }
    close(fd);
    if (rc == 0)
        crypto_hash_sha256_final(&st, out);
    if (bytes)
        *bytes = total;
    return rc;
}

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t pv_b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict: no padding, no whitespace, and the unused low bits of the last
 * char must be zero (so each byte string has exactly one text form).
 * -EINVAL malformed, -EMSGSIZE when outmax is too small. */
int pv_b64url_decode(const char *in, uint8_t *out, size_t outmax,
                     size_t *outlen)
{
    if (!in)
        return -EINVAL;
    size_t n = strlen(in);
    if (n % 4 == 1)
        return -EINVAL;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(in[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outmax)
                return -EMSGSIZE;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -EINVAL;
    if (outlen)
        *outlen = o;
    return 0;
}

/* ---- passwords ---- */

int pv_password_hash(const char *password, char out[PV_PWHASH_LEN])
{
    crypto_init();
    if (pv_fail("crypto.pwhash"))
        return -ENOMEM;
    /* crypto_pwhash_STRBYTES is 128: the header's size is that. */
    _Static_assert(PV_PWHASH_LEN == crypto_pwhash_STRBYTES, "pwhash size");
    if (crypto_pwhash_str(out, password, strlen(password),
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return -ENOMEM; /* the only way it fails: 64 MiB not available */
    return 0;
}

bool pv_password_verify(const char *hash, const char *password)
{
    crypto_init();
    if (!hash || !password || strnlen(hash, PV_PWHASH_LEN) >= PV_PWHASH_LEN)
        return false;
    return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[PV_PWHASH_LEN];

/* Used only when hashing fails at start (no memory): a valid argon2id hash
 * with the same INTERACTIVE cost, of a password nobody knows. */
static const char dummy_fallback[] =
    "$argon2id$v=19$m=65536,t=2,p=1$"
    "hufuLfqgJW1tJP1f7K8qdg$"
    "acihcgnO3MlnHCoCIK2TI8TbFoMGG4vAee5PrrORyUs";

static void dummy_make(void)
{
    uint8_t pw[24];
    char text[40];

    pv_random(pw, sizeof(pw));
    pv_b64url_encode(pw, sizeof(pw), text);
    if (pv_password_hash(text, dummy_hash) != 0)
        snprintf(dummy_hash, sizeof(dummy_hash), "%s", dummy_fallback);
    sodium_memzero(text, sizeof(text));
}

const char *pv_password_dummy_hash(void)
{
    pthread_once(&dummy_once, dummy_make);
    return dummy_hash;
}

/* ---- keys.json ---- */

#define KEYS_FILE "keys.json"
#define KEYS_MAX_BYTES 65536

static int key_from_json(json_t *v, uint8_t key[32])
{
    size_t n = 0;
    if (!json_is_string(v) ||
        pv_b64url_decode(json_string_value(v), key, 32, &n) != 0 || n != 32)
        return -EINVAL;
    return 0;
}

static int keys_parse(const char *text, size_t len, pv_keys_t *keys)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *arr;
    pv_keys_t k;
    int rc = -EINVAL;

    memset(&k, 0, sizeof(k));
    if (!root || !json_is_object(root))
        goto out;
    if (key_from_json(json_object_get(root, "jwt"), k.jwt) != 0)
        goto out;
    arr = json_object_get(root, "presign");
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > PV_MAX_PRESIGN_KEYS)
        goto out;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *e = json_array_get(arr, i), *kid = json_object_get(e, "kid");
        if (!json_is_integer(kid) || json_integer_value(kid) < 0 ||
            json_integer_value(kid) > UINT32_MAX)
            goto out;
        k.presign_kid[i] = (uint32_t)json_integer_value(kid);
        for (size_t j = 0; j < i; j++)
            if (k.presign_kid[j] == k.presign_kid[i])
                goto out;
        if (key_from_json(json_object_get(e, "key"), k.presign[i]) != 0)
            goto out;
        k.n_presign = (int)i + 1;
    }
    *keys = k;
    rc = 0;
out:
    sodium_memzero(&k, sizeof(k));
    json_decref(root);
    return rc;
}

static json_t *key_to_json(const uint8_t key[32])
{
    char text[48];
    pv_b64url_encode(key, 32, text);
    json_t *v = json_string(text);
    sodium_memzero(text, sizeof(text));
    return v;
}

/* The JSON text of the keys, malloc'd (NULL on no memory). */
static char *keys_dump(const pv_keys_t *keys)
{
    json_t *root = json_object(), *arr = json_array();
    char *text = NULL;

    if (!root || !arr || pv_fail("keys.dump"))
        goto out;
    if (json_object_set_new(root, "jwt", key_to_json(keys->jwt)) != 0)
        goto out;
    for (int i = 0; i < keys->n_presign; i++) {
        json_t *e = json_pack("{s:I,s:o}", "kid",
                              (json_int_t)keys->presign_kid[i], "key",
                              key_to_json(keys->presign[i]));
        if (!e || json_array_append_new(arr, e) != 0)
            goto out;
    }
    if (json_object_set(root, "presign", arr) != 0)
        goto out;
    text = json_dumps(root, JSON_INDENT(2));
out:
    json_decref(arr);
    json_decref(root);
    return text;
}

/*
 * Durability order: write a temp file (0600), fsync it, then either link it
 * into place (create: fails with -EEXIST when another process won the race,
 * so both end up with the same keys) or rename over the old file (rotate),
 * then fsync the directory.
 */
static int keys_save(const char *data_dir, const pv_keys_t *keys, bool create)
{
    char path[4096], tmp[4200];
    uint8_t rnd[8];
    char rhex[17];
    char *text = NULL;
    int fd = -1, rc;

    if (snprintf(path, sizeof(path), "%s/%s", data_dir, KEYS_FILE) >=
        (int)sizeof(path))
        return -ENAMETOOLONG;
    pv_random(rnd, sizeof(rnd));
    pv_hex(rnd, sizeof(rnd), rhex);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%s", path, (long)getpid(), rhex);

    text = keys_dump(keys);
    if (!text)
        return -ENOMEM;
    fd = pv_fail("keys.open") ? (errno = EACCES, -1)
                              : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                                     0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = pv_fail("keys.write") ? -EIO : pv_write_all(fd, text, strlen(text));
    if (rc == 0 && pv_fail("keys.fsync"))
        rc = -EIO;
    else if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && pv_fail("keys.rename"))
        rc = -EIO;
    else if (rc == 0 && create)
        rc = link(tmp, path) == 0 ? 0 : -errno;
    else if (rc == 0)
        rc = rename(tmp, path) == 0 ? 0 : -errno;
    /* After a link (or any failure) the temp name is still there. */
    if (create || rc != 0)
        unlink(tmp);
    if (rc == 0)
        rc = pv_fsync_dir(data_dir);
out:
    if (text) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
    return rc;
}

static int keys_read(const char *data_dir, pv_keys_t *keys)
{
    char path[4096];
    char *buf = NULL;
    struct stat st = {0};
    ssize_t n;
    int fd, rc;

    if (snprintf(path, sizeof(path), "%s/%s", data_dir, KEYS_FILE) >=
        (int)sizeof(path))
        return -ENAMETOOLONG;
    fd = pv_fail("keys.read") ? (errno = EIO, -1)
                              : open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > KEYS_MAX_BYTES) {
        rc = -EINVAL;
        goto out;
    }
    if (st.st_mode & 077)
        pv_warn("crypto", "%s is readable by group/others (mode %03o); "
                "chmod 600 it", path, (unsigned)(st.st_mode & 0777));
    buf = malloc((size_t)st.st_size);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    n = read(fd, buf, (size_t)st.st_size);
    if (n != st.st_size) {
        rc = n < 0 ? -errno : -EIO;
        goto out;
    }
    rc = keys_parse(buf, (size_t)n, keys);
    if (rc != 0)
        pv_error("crypto", "%s is malformed; refusing to start with other "
                 "keys (move it away to make new ones)", path);
out:
    if (buf) {
        sodium_memzero(buf, (size_t)st.st_size);
        free(buf);
    }
    close(fd);
    return rc;
}

int pv_keys_load_or_create(const char *data_dir, pv_keys_t *keys)
{
    int rc = keys_read(data_dir, keys);
    if (rc != -ENOENT)
        return rc;

    rc = pv_mkdir_p(data_dir, 0700);
    if (rc != 0)
        return rc;
    pv_keys_t k;
    memset(&k, 0, sizeof(k));
    pv_random(k.jwt, sizeof(k.jwt));
    k.n_presign = 1;
    k.presign_kid[0] = 1;
    pv_random(k.presign[0], sizeof(k.presign[0]));
    rc = keys_save(data_dir, &k, true);
    if (rc == -EEXIST) /* another process made them first: use those */
        rc = keys_read(data_dir, &k);
    if (rc == 0) {
        *keys = k;
        pv_info("crypto", "created %s/%s", data_dir, KEYS_FILE);
    }
    sodium_memzero(&k, sizeof(k));
    return rc;
}

int pv_keys_rotate_presign(const char *data_dir, pv_keys_t *keys)
{
    pv_keys_t k = *keys;
    uint32_t kid = 0;
    int rc;

    for (int i = 0; i < k.n_presign; i++)
        if (k.presign_kid[i] > kid)
            kid = k.presign_kid[i];
    if (kid == UINT32_MAX)
        return -EINVAL;
    int keep = k.n_presign < PV_MAX_PRESIGN_KEYS ? k.n_presign
                                                 : PV_MAX_PRESIGN_KEYS - 1;
    memmove(&k.presign_kid[1], &k.presign_kid[0], (size_t)keep * sizeof(uint32_t));
    memmove(&k.presign[1], &k.presign[0], (size_t)keep * 32);
    k.presign_kid[0] = kid + 1;
    pv_random(k.presign[0], 32);
    k.n_presign = keep + 1;
    rc = keys_save(data_dir, &k, false);
    if (rc == 0)
        *keys = k;
    sodium_memzero(&k, sizeof(k));
    return rc;
}

/* ---- JWT access tokens ---- */

#define JWT_MAX_TEXT 4096

int pv_jwt_issue(const pv_keys_t *keys, const char *user_id, int ttl_s,
                 char **token_out)
{
    jwt_t *jwt = NULL;
    uint8_t jti_raw[16];
    char jti[32];
    uint8_t id[16];
    int64_t now_ms = pv_now_ms();
    long now = (long)(now_ms / 1000);
    /* exp rounded up: a token lives at least ttl_s whatever the fraction of
     * the second it was issued in (rounded down, a 1 s token issued at
     * x.9 s would live 0.1 s). */
    long exp = (long)((now_ms + (int64_t)ttl_s * 1000 + 999) / 1000);
    int rc = -ENOMEM;

    *token_out = NULL;
    if (!user_id || pv_id_decode(user_id, id) != 0)
        return -EINVAL;
    pv_random(jti_raw, sizeof(jti_raw));
    pv_b64url_encode(jti_raw, sizeof(jti_raw), jti);
    if (pv_fail("crypto.jwt") || jwt_new(&jwt) != 0)
        return -ENOMEM;
    if (jwt_add_grant(jwt, "sub", user_id) != 0 ||
        jwt_add_grant_int(jwt, "iat", now) != 0 ||
        jwt_add_grant_int(jwt, "exp", exp) != 0 ||
        jwt_add_grant(jwt, "jti", jti) != 0 ||
        jwt_set_alg(jwt, JWT_ALG_HS256, keys->jwt, sizeof(keys->jwt)) != 0)
        goto out;
    *token_out = jwt_encode_str(jwt);
    if (*token_out)
        rc = 0;
out:
    jwt_free(jwt);
    return rc;
}

/* Our own constant-time check of the HS256 signature before libjwt sees
 * the token: libjwt then only ever parses JSON that we signed, and the
 * compare does not leak timing whatever libjwt does inside. */
static bool jwt_sig_ok(const pv_keys_t *keys, const char *token, size_t len)
{
    const char *dot = memrchr(token, '.', len);
    uint8_t want[32], got[32];
    char sig[48];
    size_t n = 0;

    if (!dot || (size_t)(token + len - dot - 1) != 43)
        return false;
    memcpy(sig, dot + 1, 43);
    sig[43] = '\0';
    if (pv_b64url_decode(sig, got, sizeof(got), &n) != 0 || n != sizeof(got))
        return false;
    pv_hmac_sha256(keys->jwt, sizeof(keys->jwt), token, (size_t)(dot - token), want);
    return pv_memeq_ct(want, got, sizeof(want)) == 0;
}

int pv_jwt_verify_claims(const pv_keys_t *keys, const char *token, pv_jwt_claims_t *c)
{
    jwt_t *jwt = NULL;
    uint8_t id[16];
    const char *sub, *jti;
    long exp, iat;
    int rc = -EACCES;

    memset(c, 0, sizeof(*c));
    if (!token || strnlen(token, JWT_MAX_TEXT + 1) > JWT_MAX_TEXT)
        return -EACCES;
    if (!jwt_sig_ok(keys, token, strlen(token)))
        return -EACCES;
    if (jwt_decode(&jwt, token, keys->jwt, sizeof(keys->jwt)) != 0 || !jwt)
        return -EACCES;
    /* libjwt trusts the header's alg: a token saying "none" (or another
     * HMAC) must not pass just because it decoded. */
    if (jwt_get_alg(jwt) != JWT_ALG_HS256)
        goto out;
    sub = jwt_get_grant(jwt, "sub");
    jti = jwt_get_grant(jwt, "jti");
    if (!sub || pv_id_decode(sub, id) != 0 || !jti || strlen(jti) >= sizeof(c->jti))
        goto out;
    errno = 0;
    exp = jwt_get_grant_int(jwt, "exp");
    iat = errno == 0 ? jwt_get_grant_int(jwt, "iat") : 0;
    if (errno != 0)
        goto out;
    if (pv_now_ms() / 1000 >= (int64_t)exp) {
        rc = -ETIMEDOUT;
        goto out;
    }
    memcpy(c->user_id, sub, PV_ID_TEXT - 1);
    c->user_id[PV_ID_TEXT - 1] = '\0';
    snprintf(c->jti, sizeof(c->jti), "%s", jti);
    c->iat = iat;
    c->exp = exp;
    rc = 0;
out:
    jwt_free(jwt);
    return rc;
}

int pv_jwt_verify(const pv_keys_t *keys, const char *token, char user_id[PV_ID_TEXT])
{
    pv_jwt_claims_t c;
    int rc = pv_jwt_verify_claims(keys, token, &c);
    if (rc == 0)
        memcpy(user_id, c.user_id, PV_ID_TEXT);
    return rc;
}

/* ---- refresh tokens ---- */

void pv_refresh_new(char out[PV_REFRESH_TEXT], uint8_t hash[32])
{
    uint8_t raw[32];
    pv_random(raw, sizeof(raw));
    pv_b64url_encode(raw, sizeof(raw), out); /* 43 chars + NUL */
    pv_sha256(raw, sizeof(raw), hash);
    sodium_memzero(raw, sizeof(raw));
}

int pv_refresh_hash(const char *text, uint8_t hash[32])
{
    uint8_t raw[32];
    size_t n = 0;

    if (!text || strnlen(text, PV_REFRESH_TEXT) != PV_REFRESH_TEXT - 1 ||
        pv_b64url_decode(text, raw, sizeof(raw), &n) != 0 || n != sizeof(raw))
        return -EINVAL;
    pv_sha256(raw, sizeof(raw), hash);
    sodium_memzero(raw, sizeof(raw));
    return 0;
}

/* ---- presigned URLs ---- */

#define PRESIGN_SIG_TEXT 43 /* base64url of 32 bytes */

/* Owners go into the URL unencoded, so they must be URL-safe. */
static bool owner_ok(const char *s, size_t n)
{
    if (n == 0 || n >= sizeof(((pv_presign_query_t *)0)->owner))
        return false;
    for (size_t i = 0; i < n; i++)
        if (b64url_value(s[i]) < 0) /* [A-Za-z0-9_-] */
            return false;
    return true;
}

/* The path is signed verbatim; it may not carry a query, a fragment,
 * controls (the signed text is newline-separated) or spaces. */
static bool path_ok(const char *p)
{
    if (!p || p[0] != '/')
        return false;
    for (; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '?' || *p == '#')
            return false;
    return true;
}

/* HMAC-SHA256 for presigning, on OpenSSL (which uses the CPU's SHA
 * instructions; libsodium's SHA-256 is portable C). The keyed inner and
 * outer states are the same for every URL of a key, so each thread keeps
 * them and copies them: a photo list signs 40 URLs. The per-thread cache is
 * freed by a pthread key destructor when the thread ends. */
typedef struct hmac_cache {
    uint8_t key[32];
    bool ready;
    EVP_MD_CTX *in, *out, *tmp;
} hmac_cache_t;

static pthread_key_t g_hmac_key;
static pthread_once_t g_hmac_once = PTHREAD_ONCE_INIT;

static void hmac_cache_free(void *p)
{
    hmac_cache_t *h = p;
    EVP_MD_CTX_free(h->in);
    EVP_MD_CTX_free(h->out);
    EVP_MD_CTX_free(h->tmp);
    OPENSSL_cleanse(h, sizeof(*h));
    free(h);
}

static void hmac_key_init(void) { pthread_key_create(&g_hmac_key, hmac_cache_free); }

static hmac_cache_t *hmac_keyed(const uint8_t key[32])
{
    pthread_once(&g_hmac_once, hmac_key_init);
    hmac_cache_t *h = pthread_getspecific(g_hmac_key);
    if (!h) {
        h = calloc(1, sizeof(*h));
        if (!h)
            return NULL;
        h->in = EVP_MD_CTX_new();
        h->out = EVP_MD_CTX_new();
        h->tmp = EVP_MD_CTX_new();
        if (!h->in || !h->out || !h->tmp || pthread_setspecific(g_hmac_key, h) != 0) {
            hmac_cache_free(h);
            return NULL;
        }
    }
    if (h->ready && CRYPTO_memcmp(h->key, key, 32) == 0)
        return h;
    uint8_t ipad[64], opad[64];
    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));
    for (int i = 0; i < 32; i++) {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }
    h->ready = EVP_DigestInit_ex(h->in, EVP_sha256(), NULL) && EVP_DigestUpdate(h->in, ipad, 64) &&
               EVP_DigestInit_ex(h->out, EVP_sha256(), NULL) && EVP_DigestUpdate(h->out, opad, 64);
    OPENSSL_cleanse(ipad, sizeof(ipad));
    OPENSSL_cleanse(opad, sizeof(opad));
    memcpy(h->key, key, 32);
    return h->ready ? h : NULL;
}

static void presign_mac(const uint8_t key[32], const char *path,
                        const char *owner, int64_t expires, uint8_t mac[32])
{
    char msg[1024];
    int n = snprintf(msg, sizeof(msg), "GET\n%s\n%s\n%" PRId64, path, owner, expires);
    hmac_cache_t *h = n > 0 && (size_t)n < sizeof(msg) ? hmac_keyed(key) : NULL;
    uint8_t inner[32];
    if (!h || !EVP_MD_CTX_copy_ex(h->tmp, h->in) || !EVP_DigestUpdate(h->tmp, msg, (size_t)n) ||
        !EVP_DigestFinal_ex(h->tmp, inner, NULL) || !EVP_MD_CTX_copy_ex(h->tmp, h->out) ||
        !EVP_DigestUpdate(h->tmp, inner, 32) || !EVP_DigestFinal_ex(h->tmp, mac, NULL)) {
        /* Cannot sign (no memory, or a path past 1 KiB): a MAC of random
         * bytes, which no request will ever match. */
        pv_random(mac, 32);
    }
}

int pv_presign_url(const pv_keys_t *keys, const char *path, const char *owner,
                   int64_t expires, char *out, size_t outlen)
{
    uint8_t mac[32];
    char sig[48];

    if (keys->n_presign < 1 || !path_ok(path) || !owner ||
        !owner_ok(owner, strlen(owner)) || expires < 0)
        return -EINVAL;
    presign_mac(keys->presign[0], path, owner, expires, mac);
    pv_b64url_encode(mac, sizeof(mac), sig);
    int n = snprintf(out, outlen, "%s?owner=%s&expires=%" PRId64 "&kid=%" PRIu32
                     "&sig=%s", path, owner, expires, keys->presign_kid[0], sig);
    if (n < 0 || (size_t)n >= outlen)
        return -EMSGSIZE;
    return 0;
}

/* A decimal number without sign or leading zeros (one spelling each),
 * at most max. */
static int parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

enum { Q_OWNER = 1, Q_EXPIRES = 2, Q_KID = 4, Q_SIG = 8 };

static int presign_param(const char *k, size_t kn, const char *v, size_t vn,
                         pv_presign_query_t *q, unsigned *seen)
{
    uint64_t x;
    unsigned bit;

    if (kn == 5 && memcmp(k, "owner", 5) == 0) {
        bit = Q_OWNER;
        if (!owner_ok(v, vn))
            return -EINVAL;
        memcpy(q->owner, v, vn);
        q->owner[vn] = '\0';
    } else if (kn == 7 && memcmp(k, "expires", 7) == 0) {
        bit = Q_EXPIRES;
        if (parse_uint(v, vn, INT64_MAX, &x) != 0)
            return -EINVAL;
        q->expires = (int64_t)x;
    } else if (kn == 3 && memcmp(k, "kid", 3) == 0) {
        bit = Q_KID;
        if (parse_uint(v, vn, UINT32_MAX, &x) != 0)
            return -EINVAL;
        q->kid = (uint32_t)x;
    } else if (kn == 3 && memcmp(k, "sig", 3) == 0) {
        bit = Q_SIG;
        if (vn != PRESIGN_SIG_TEXT)
            return -EINVAL;
        for (size_t i = 0; i < vn; i++)
            if (b64url_value(v[i]) < 0)
                return -EINVAL;
        memcpy(q->sig, v, vn);
        q->sig[vn] = '\0';
    } else {
        return 0; /* unknown parameters are not signed and not used */
    }
    if (*seen & bit) /* a repeated parameter is ambiguous: refuse */
        return -EINVAL;
    *seen |= bit;
    return 0;
}

int pv_presign_parse(const char *query, pv_presign_query_t *q)
{
    unsigned seen = 0;

    memset(q, 0, sizeof(*q));
    if (!query)
        return -EINVAL;
    const char *p = query;
    for (;;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        if (n > 0) {
            size_t kn = eq ? (size_t)(eq - p) : n;
            size_t vn = eq ? n - kn - 1 : 0;
            if (presign_param(p, kn, eq ? eq + 1 : p + n, vn, q, &seen) != 0)
                return -EINVAL;
        }
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    if (seen != (Q_OWNER | Q_EXPIRES | Q_KID | Q_SIG))
        return -EINVAL;
    return 0;
}

int pv_presign_verify(const pv_keys_t *keys, const char *path,
                      const char *query, int64_t now_s, pv_presign_query_t *q)
{
    uint8_t want[32], got[32];
    size_t n = 0;
    int k;

    if (pv_presign_parse(query, q) != 0 || !path_ok(path))
        return -EACCES;
    for (k = 0; k < keys->n_presign; k++)
        if (keys->presign_kid[k] == q->kid)
            break;
    if (k == keys->n_presign)
        return -EACCES;
    if (pv_b64url_decode(q->sig, got, sizeof(got), &n) != 0 || n != sizeof(got))
        return -EACCES;
    presign_mac(keys->presign[k], path, q->owner, q->expires, want);
    if (pv_memeq_ct(want, got, sizeof(want)) != 0)
        return -EACCES;
    if (now_s > q->expires)
        return -ETIMEDOUT;
    return 0;
}

int64_t pv_backoff_ms(int n, int64_t first_ms, int64_t max_ms)
{
    int shift = n - 1 > 16 ? 16 : n < 1 ? 0 : n - 1;
    int64_t delay = first_ms << shift;
    if (delay > max_ms)
        delay = max_ms;
    uint32_t rnd;
    pv_random(&rnd, sizeof(rnd));
    return delay / 2 + (int64_t)(rnd % (uint32_t)(delay / 2 + 1));
}
