/*
 * crypto.h — ids, hashes, encodings, passwords, JWT access tokens, refresh
 * tokens and presigned URLs. (Hex and percent-decoding are in text.h, the
 * login rate limiter in ratelimit.h.)
 *
 * Keys live in DATA/keys.json (mode 0600), made on first start: the JWT
 * HS256 key and the presign keys. Presign keys rotate: a new key becomes the
 * signing key, older ones still verify until dropped (kid in the URL).
 */
#ifndef PV_CRYPTO_H
#define PV_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- ids: 16 bytes = 48-bit ms time (big-endian) | 80 random bits ----
 * Text form: 26 chars of Crockford base32, lower case (time-sortable). */
#define PV_ID_TEXT 27 /* 26 + NUL */
void pv_id_new(uint8_t id[16]);
void pv_id_encode(const uint8_t id[16], char out[PV_ID_TEXT]);
int pv_id_decode(const char *text, uint8_t id[16]); /* 0 or -EINVAL */

/* ---- hashes and encodings ---- */
void pv_sha256(const void *data, size_t len, uint8_t out[32]);
/* SHA-256 of a file's bytes (blocking); bytes may be NULL. 0 or -errno. */
int pv_sha256_file(const char *path, uint8_t out[32], uint64_t *bytes);
/* HMAC-SHA256 with a key of any length (also for SigV4 signing) */
void pv_hmac_sha256(const void *key, size_t keylen, const void *data,
                    size_t len, uint8_t out[32]);
/* base64url without padding; out needs 4*ceil(len/3)+1 */
size_t pv_b64url_encode(const uint8_t *in, size_t len, char *out);
int pv_b64url_decode(const char *in, uint8_t *out, size_t outmax,
                     size_t *outlen);
void pv_random(void *buf, size_t len);
/* Capped exponential backoff with jitter, for the n-th failure in a row
 * (n >= 1): first_ms doubling up to max_ms, then a random half to whole
 * of that, so that many clients that failed together do not come back
 * together. */
int64_t pv_backoff_ms(int n, int64_t first_ms, int64_t max_ms);
/* constant-time compare: 0 when equal */
int pv_memeq_ct(const void *a, const void *b, size_t len);

/* ---- passwords (argon2id, libsodium INTERACTIVE limits) ----
 * Blocking (~80 ms, 64 MiB): worker threads only. */
#define PV_PWHASH_LEN 128
int pv_password_hash(const char *password, char out[PV_PWHASH_LEN]);
bool pv_password_verify(const char *hash, const char *password);
/* A valid hash of a random password: verifying against it costs the same as
 * a real one, so unknown emails take as long as wrong passwords. */
const char *pv_password_dummy_hash(void);

/* ---- keys ---- */
#define PV_MAX_PRESIGN_KEYS 4
typedef struct pv_keys {
    uint8_t jwt[32];
    int n_presign;                             /* newest first */
    uint32_t presign_kid[PV_MAX_PRESIGN_KEYS];
    uint8_t presign[PV_MAX_PRESIGN_KEYS][32];
} pv_keys_t;
/* Load DATA/keys.json or create it (0600). */
int pv_keys_load_or_create(const char *data_dir, pv_keys_t *keys);
/* Add a new presign signing key (keeping up to the max), save. */
int pv_keys_rotate_presign(const char *data_dir, pv_keys_t *keys);

/* ---- JWT access tokens (HS256 via libjwt) ----
 * Claims: sub (user id text), iat, exp, jti. */
int pv_jwt_issue(const pv_keys_t *keys, const char *user_id, int ttl_s,
                 char **token_out /* free() */);
/* 0 and the sub in user_id; -EACCES bad/forged/malformed; -ETIMEDOUT
 * expired. Checks alg == HS256 and exp against now. */
int pv_jwt_verify(const pv_keys_t *keys, const char *token,
                  char user_id[PV_ID_TEXT]);
/* The same, with the claims a revocation check needs. */
typedef struct pv_jwt_claims {
    char user_id[PV_ID_TEXT];
    char jti[32];            /* the token's own id */
    int64_t iat, exp;        /* issued at, expires: seconds since the epoch */
} pv_jwt_claims_t;
int pv_jwt_verify_claims(const pv_keys_t *keys, const char *token, pv_jwt_claims_t *c);

/* ---- refresh tokens: 32 random bytes, base64url text; stored hashed ---- */
#define PV_REFRESH_TEXT 44
void pv_refresh_new(char out[PV_REFRESH_TEXT], uint8_t hash[32]);
int pv_refresh_hash(const char *text, uint8_t hash[32]); /* -EINVAL if malformed */

/* ---- presigned URLs ----
 * sig = HMAC-SHA256(key[kid], "GET\n" path "\n" owner "\n" expires), base64url.
 * URL: path?owner=<owner>&expires=<unix s>&kid=<kid>&sig=<sig>.
 * HEAD verifies like GET. */
int pv_presign_url(const pv_keys_t *keys, const char *path, const char *owner,
                   int64_t expires, char *out, size_t outlen);
typedef struct pv_presign_query {
    char owner[64];
    int64_t expires;
    uint32_t kid;
    char sig[64];
} pv_presign_query_t;
/* Pure parser of the query string (fuzzed): 0 or -EINVAL. */
int pv_presign_parse(const char *query, pv_presign_query_t *q);
/* 0 and q filled; -EACCES bad signature/changed path/unknown kid/malformed;
 * -ETIMEDOUT expired (checked after the signature). */
int pv_presign_verify(const pv_keys_t *keys, const char *path,
                      const char *query, int64_t now_s, pv_presign_query_t *q);

#endif
