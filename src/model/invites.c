/*
 * invites.c — sign-up invitations. A code is 128 random bits; the store
 * keeps only its SHA-256, under META "invite/<sha256>", with its expiry
 * and the email it was made for, so a leaked store does not leak usable
 * codes. Spending deletes the entry in the sign-up's own transaction: a
 * code creates one account, even when two sign-ups race.
 */
#include "model/invites.h"
#include "base/crypto.h"
#include "base/pv.h"

#include <stdlib.h>
#include <string.h>

#define INVITE_PREFIX "invite/"
#define INVITE_KEY_LEN (sizeof(INVITE_PREFIX) - 1 + 32)

static void invite_key(const char *code, uint8_t key[INVITE_KEY_LEN])
{
    memcpy(key, INVITE_PREFIX, sizeof(INVITE_PREFIX) - 1);
    pv_sha256(code, strlen(code), key + sizeof(INVITE_PREFIX) - 1);
}

int pv_invite_new(pv_txn_t *txn, const char *email, int64_t ttl_s, char code[PV_INVITE_TEXT])
{
    uint8_t raw[16], key[INVITE_KEY_LEN];
    pv_random(raw, sizeof(raw));
    pv_b64url_encode(raw, sizeof(raw), code);
    invite_key(code, key);
    size_t elen = email ? strlen(email) : 0;
    uint8_t *val = malloc(8 + elen);
    if (!val)
        return -ENOMEM;
    pv_be64_put(val, (uint64_t)(pv_now_ms() + ttl_s * 1000));
    if (elen)
        memcpy(val + 8, email, elen);
    int rc = pv_txn_put(txn, PV_DB_META, key, sizeof(key), val, 8 + elen, true);
    free(val);
    return rc;
}

int pv_invite_take(pv_txn_t *txn, const char *code, const char *email)
{
    size_t n = code ? strlen(code) : 0;
    if (n == 0 || n >= PV_INVITE_TEXT)
        return -EACCES;
    uint8_t key[INVITE_KEY_LEN];
    invite_key(code, key);
    pv_val_t v;
    int rc = pv_txn_get(txn, PV_DB_META, key, sizeof(key), &v);
    if (rc == -ENOENT || (rc == 0 && v.len < 8))
        return -EACCES;
    if (rc < 0)
        return rc;
    const uint8_t *p = v.data;
    size_t elen = v.len - 8;
    bool expired = (int64_t)pv_be64_get(p) < pv_now_ms();
    bool other = elen && (strlen(email) != elen || memcmp(p + 8, email, elen) != 0);
    if (expired || other)
        return -EACCES;
    return pv_txn_del(txn, PV_DB_META, key, sizeof(key));
}
