/*
 * text.c — hex, percent-decoding and UTF-8 validation (see text.h).
 *
 * Strict where text arrives from the network: an escape is '%' and two
 * hex digits or it is an error (no "%" passed through as itself), and a
 * UTF-8 sequence has its one shortest form. Which bytes a caller then
 * accepts (NUL, '/', controls) is the caller's business: the flags say
 * only what differs between URL paths, query strings and RFC 5987 values.
 */
#include "base/text.h"

#include <errno.h>
#include <string.h>

/* ---- hex ---- */

int pv_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void pv_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = PV_HEX_DIGITS;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int pv_unhex(const char *in, uint8_t *out, size_t outlen)
{
    if (!in || strnlen(in, 2 * outlen + 1) != 2 * outlen)
        return -EINVAL;
    for (size_t i = 0; i < outlen; i++) {
        int hi = pv_hex_digit(in[2 * i]), lo = pv_hex_digit(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* ---- percent-decoding ---- */

ssize_t pv_pct_decode(const char *src, size_t len, char *dst, size_t cap,
                      unsigned flags)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            int hi, lo;
            if (len - i < 3 || (hi = pv_hex_digit(src[i + 1])) < 0 ||
                (lo = pv_hex_digit(src[i + 2])) < 0)
                return -EINVAL;
            c = (char)(hi << 4 | lo);
            if (c == '\0' && (flags & PV_PCT_NO_NUL))
                return -EINVAL;
            i += 2;
        } else if (c == '+' && (flags & PV_PCT_PLUS_SPACE)) {
            c = ' ';
        }
        if (o == cap)
            return -EMSGSIZE;
        dst[o++] = c; /* o <= i: in place, src[i] was already read */
    }
    return (ssize_t)o;
}

/* ---- UTF-8 ---- */

size_t pv_utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1fu;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0fu;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    /* overlong three- and four-byte forms, surrogates, past U+10FFFF */
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}
