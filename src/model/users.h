/*
 * users.h — user records at the transaction level and the normal form of
 * the email address that keys them (src/model/users.c).
 */
#ifndef PV_MODEL_USERS_H
#define PV_MODEL_USERS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/records.h"
#include "store/store.h"

/* Save u (is_new: refuse to overwrite, -EEXIST). */
int pv_user_save(pv_txn_t *txn, const pv_user_t *u, bool is_new);
/* A new user and its email index; -EEXIST when the email is taken. */
int pv_user_insert(pv_txn_t *txn, const pv_user_t *u);

/* The key of a user: trim, lower-case ASCII, check shape (one @,
 * non-empty parts, a dot in the domain, <= 254 chars, valid UTF-8, no
 * spaces or controls). 0 or -EINVAL (also when out has no room). */
int pv_email_normalize(const char *in, char *out, size_t outlen);

#endif
