/*
 * users.c — user records at the transaction level. Sign-up and
 * `pvctl user add` both insert through pv_user_insert.
 */
#include "model/users.h"
#include "base/pv.h"

#include <stdlib.h>
#include <string.h>

int pv_user_save(pv_txn_t *txn, const pv_user_t *u, bool is_new)
{
    char *buf;
    size_t len;
    int rc = pv_user_encode(u, &buf, &len);
    if (rc < 0)
        return rc;
    rc = pv_txn_put(txn, PV_DB_USERS, u->id, 16, buf, len, is_new);
    free(buf);
    return rc;
}

/* A new user and its email index, in one transaction; -EEXIST when the
 * email is taken. Sign-up and `pvctl user add` both come here. */
int pv_user_insert(pv_txn_t *txn, const pv_user_t *u)
{
    int rc = pv_txn_put(txn, PV_DB_EMAILS, u->email, strlen(u->email), u->id, 16, true);
    return rc < 0 ? rc : pv_user_save(txn, u, true);
}

