/*
 * revoked.c — see revoked.h. Keys are "revoked/" + jti and "notbefore/" +
 * user id (16 bytes); values are a big-endian u64 of seconds.
 */
#include "model/revoked.h"
#include "base/pv.h"

#include <string.h>

#define REVOKED "revoked/"
#define NOTBEFORE "notbefore/"

static size_t key_of(uint8_t *out, const char *prefix, const void *id, size_t n)
{
    size_t p = strlen(prefix);
    memcpy(out, prefix, p);
    memcpy(out + p, id, n);
    return p + n;
}

static int revoked_trim(pv_txn_t *txn, int64_t now_s, int max);

int pv_revoke_token(pv_txn_t *txn, const char *jti, int64_t exp_s)
{
    uint8_t key[64], val[8];
    size_t n = strlen(jti);
    if (n == 0 || n > sizeof(key) - sizeof(REVOKED))
        return -EINVAL;
    /* Each revocation first drops some whose tokens expired anyway, so the
     * list stays as long as the logouts of one token lifetime. */
    int rc = revoked_trim(txn, pv_now_ms() / 1000, 16);
    if (rc < 0)
        return rc;
    pv_be64_put(val, (uint64_t)exp_s);
    return pv_txn_put(txn, PV_DB_META, key, key_of(key, REVOKED, jti, n), val, 8, false);
}

int pv_revoke_user_before(pv_txn_t *txn, const uint8_t user[16], int64_t now_s)
{
    uint8_t key[32], val[8];
    pv_be64_put(val, (uint64_t)now_s);
    return pv_txn_put(txn, PV_DB_META, key, key_of(key, NOTBEFORE, user, 16), val, 8, false);
}

int pv_revoked_check(pv_txn_t *txn, const uint8_t user[16], const pv_jwt_claims_t *c)
{
    uint8_t key[64];
    pv_val_t v;
    size_t n = strlen(c->jti);
    if (n == 0 || n > sizeof(key) - sizeof(REVOKED))
        return -EACCES;
    int rc = pv_txn_get(txn, PV_DB_META, key, key_of(key, REVOKED, c->jti, n), &v);
    if (rc == 0)
        return -EACCES;
    if (rc != -ENOENT)
        return rc;
    rc = pv_txn_get(txn, PV_DB_META, key, key_of(key, NOTBEFORE, user, 16), &v);
    if (rc == 0 && v.len == 8 && c->iat < (int64_t)pv_be64_get(v.data))
        return -EACCES;
    return rc == -ENOENT || rc == 0 ? 0 : rc;
}

typedef struct trim_ctx {
    int64_t now_s;
    int max, n;
    uint8_t keys[64][64];
    size_t lens[64];
} trim_ctx_t;

static int trim_one(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    trim_ctx_t *t = arg;
    if (t->n == t->max)
        return 1;
    if (v->len == 8 && (int64_t)pv_be64_get(v->data) < t->now_s && k->len <= sizeof(t->keys[0])) {
        memcpy(t->keys[t->n], k->data, k->len);
        t->lens[t->n++] = k->len;
    }
    return 0;
}

static int revoked_trim(pv_txn_t *txn, int64_t now_s, int max)
{
    trim_ctx_t t = {.now_s = now_s, .max = max < 64 ? max : 64};
    int rc = pv_txn_scan(txn, PV_DB_META, REVOKED, strlen(REVOKED), NULL, 0, false, trim_one, &t);
    for (int i = 0; rc >= 0 && i < t.n; i++)
        rc = pv_txn_del(txn, PV_DB_META, t.keys[i], t.lens[i]);
    return rc < 0 ? rc : t.n;
}
