/*
 * users.h — user records at the transaction level (src/model/users.c).
 */
#ifndef PV_MODEL_USERS_H
#define PV_MODEL_USERS_H

#include <stdbool.h>

#include "base/records.h"
#include "store/store.h"

/* Save u (is_new: refuse to overwrite, -EEXIST). */
int pv_user_save(pv_txn_t *txn, const pv_user_t *u, bool is_new);
/* A new user and its email index; -EEXIST when the email is taken. */
int pv_user_insert(pv_txn_t *txn, const pv_user_t *u);

#endif
