/*
 * fuzz_json_body.c — libFuzzer target for every parser in api_body.c: the
 * input is tried as a credentials body (signup and login), a refresh body,
 * a bare object and a list query string, and as an email address
 * (pv_email_normalize, which the credentials parser calls). Whatever
 * passes must hold what the header promises.
 */
#include "app/api_body.h"
#include "model/users.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_err(int rc, const pv_body_err_t *e)
{
    if (rc == 0)
        return;
    if ((rc != -EINVAL && rc != -EMSGSIZE && rc != -ENOMEM) || !e->field ||
        !e->code || !e->code[0] || !e->message[0] || e->rc != rc)
        abort();
    /* the status each result is answered with (api_body.h) */
    if (e->status != (rc == -EINVAL ? 400 : rc == -EMSGSIZE ? 413 : 503))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    pv_body_err_t e;
    pv_credentials_t c;
    pv_refresh_body_t r;
    pv_list_params_t l;
    json_t *o;
    int rc;

    for (int signup = 0; signup <= 1; signup++) {
        rc = pv_body_credentials(body, size, signup, &c, &e);
        check_err(rc, &e);
        if (rc == 0) {
            char again[300];
            if (pv_email_normalize(c.email, again, sizeof(again)) != 0 ||
                strcmp(again, c.email) != 0 || c.password[0] == '\0' ||
                strlen(c.password) > PV_PASSWORD_MAX || (signup && strlen(c.password) < 8))
                abort();
        }
    }
    rc = pv_body_refresh(body, size, &r, &e);
    check_err(rc, &e);
    if (rc == 0 && (r.refresh_token[0] == '\0'))
        abort();
    rc = pv_body_object(body, size, &o, &e);
    check_err(rc, &e);
    if (rc == 0)
        json_decref(o);

    char *q = malloc(size + 1);
    memcpy(q, data, size);
    q[size] = '\0';
    char email[300];
    if (pv_email_normalize(q, email, sizeof(email)) == 0) {
        char again[300]; /* one normal form: normalising it changes nothing */
        if (pv_email_normalize(email, again, sizeof(again)) != 0 || strcmp(email, again) != 0)
            abort();
    }
    rc = pv_body_list_params(q, &l, &e);
    check_err(rc, &e);
    if (l.limit < 1 || l.limit > PV_LIST_LIMIT_MAX || strlen(l.cursor) > PV_CURSOR_MAX ||
        l.has_cursor != (l.cursor[0] != '\0'))
        abort();
    for (const char *p = l.cursor; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", *p))
            abort();
    free(q);
    return 0;
}
