/*
 * revoked.h — access tokens ended before they expire (src/model/revoked.c).
 *
 * Access tokens are stateless JWTs valid for access_token_ttl; logging out
 * or having a password reset must still end access at once. Two small
 * records in META do it: "revoked/<jti>" (one token, kept until it would
 * have expired) and "notbefore/<user>" (every token issued before that
 * second). The bearer check reads both in the read transaction it opens
 * anyway for the user's state.
 */
#ifndef PV_MODEL_REVOKED_H
#define PV_MODEL_REVOKED_H

#include <stdint.h>

#include "base/crypto.h"
#include "store/store.h"

/* End one token (its jti) until exp_s; drops a few revocations whose
 * tokens have expired anyway. */
int pv_revoke_token(pv_txn_t *txn, const char *jti, int64_t exp_s);
/* End every token of the user issued before now_s. */
int pv_revoke_user_before(pv_txn_t *txn, const uint8_t user[16], int64_t now_s);
/* 0 when the token may be used; -EACCES when it was ended. */
int pv_revoked_check(pv_txn_t *txn, const uint8_t user[16], const pv_jwt_claims_t *c);

#endif
