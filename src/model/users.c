/*
 * users.c — user records at the transaction level, and the one spelling
 * of an email address that keys them. Sign-up and `pvctl user add` both
 * insert through pv_user_insert; sign-up, login and every pvctl command
 * that names a user normalise the address through pv_email_normalize, so
 * "Alice@Example.com " finds the account "alice@example.com".
 */
#include "model/users.h"
#include "base/pv.h"
#include "base/text.h"

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

/* ---------------- email addresses ---------------- */

static bool is_trim_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

/* Domain: labels separated by dots, none empty, at least two labels. */
static bool email_domain_ok(const char *d, size_t n)
{
    if (n == 0 || d[0] == '.' || d[n - 1] == '.' || !memchr(d, '.', n))
        return false;
    for (size_t i = 1; i < n; i++)
        if (d[i] == '.' && d[i - 1] == '.')
            return false;
    return true;
}

int pv_email_normalize(const char *in, char *out, size_t outlen)
{
    if (!in || !out)
        return -EINVAL;
    size_t len = strlen(in), start = 0, at = SIZE_MAX;
    while (start < len && is_trim_space(in[start]))
        start++;
    while (len > start && is_trim_space(in[len - 1]))
        len--;
    len -= start;
    if (len == 0 || len > PV_EMAIL_MAX || len + 1 > outlen)
        return -EINVAL;

    const unsigned char *s = (const unsigned char *)in + start;
    for (size_t i = 0; i < len;) {
        size_t cl = pv_utf8_len(s + i, len - i);
        if (cl == 0 || s[i] <= 0x20 || s[i] == 0x7f)
            return -EINVAL;
        if (s[i] == '@') {
            if (at != SIZE_MAX)
                return -EINVAL;
            at = i;
        }
        i += cl;
    }
    if (at == SIZE_MAX || at == 0 ||
        !email_domain_ok((const char *)s + at + 1, len - at - 1))
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : (char)s[i];
    out[len] = '\0';
    return 0;
}
