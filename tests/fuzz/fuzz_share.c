/*
 * fuzz_share.c — libFuzzer target for what reaches src/model/shares.c
 * from the network: the body of POST /s/{token} (the password, as a form
 * or JSON), the Cookie header that may prove a share's password, and the
 * share record's decoder.
 *
 * Input: one byte choosing the content type, then the bytes. A parsed
 * password is never empty, never longer than the limit and has no NUL; a
 * cookie is only ever accepted when it is the one the keys make.
 */
#include "model/shares.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ctypes[] = {
        "application/x-www-form-urlencoded",
        "application/json",
        "text/plain",
        NULL,
    };
    if (size < 1)
        return 0;
    const char *ctype = ctypes[data[0] % 4];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    char pw[PV_SHARE_PASSWORD_MAX + 1];
    if (pv_share_password_parse(ctype, body, len, pw) == 0) {
        size_t n = strlen(pw);
        if (n == 0 || n > PV_SHARE_PASSWORD_MAX)
            abort();
    }

    pv_keys_t keys;
    memset(&keys, 0, sizeof(keys));
    keys.n_presign = 1;
    keys.presign_kid[0] = 1;
    memset(keys.presign[0], 0x22, 32);
    pv_share_t s;
    memset(&s, 0, sizeof(s));
    s.v = 1;
    s.expires_ms = 1;
    char *h = malloc(len + 1);
    if (!h)
        return 0;
    memcpy(h, body, len);
    h[len] = '\0';
    if (pv_share_cookie_ok(&keys, &s, h)) {
        char want[PV_SHARE_COOKIE_TEXT];
        pv_share_cookie_make(&keys, &s, want);
        if (!strstr(h, want))
            abort();
    }
    free(h);

    pv_share_t d;
    (void)pv_share_decode(body, len, &d);
    return 0;
}
