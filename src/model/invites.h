/*
 * invites.h — sign-up invitations (src/model/invites.c), for an appliance
 * whose `signup` key is `invite`: `pvctl user invite` makes a code, the
 * person signs up with it, and it is spent in the same transaction that
 * creates the account.
 */
#ifndef PV_MODEL_INVITES_H
#define PV_MODEL_INVITES_H

#include <stdint.h>

#include "store/store.h"

#define PV_INVITE_TEXT 23   /* 22 base64url characters (128 bits) + NUL */

/* A new code valid for ttl_s seconds, for `email` only (normalised) or for
 * anyone ("" or NULL); only its SHA-256 is stored. */
int pv_invite_new(pv_txn_t *txn, const char *email, int64_t ttl_s, char code[PV_INVITE_TEXT]);
/* Spend a code for `email`: 0, or -EACCES when it is unknown, spent,
 * expired or made for another email. */
int pv_invite_take(pv_txn_t *txn, const char *code, const char *email);

#endif
