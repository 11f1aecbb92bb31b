/*
 * text.h — the small text codecs every layer shares: hex digits and hex
 * strings, percent-decoding and UTF-8 validation (src/base/text.c).
 *
 * Each exists once so that the HTTP parser, multipart, the list
 * parameters, the store's blob names and the key file cannot drift apart
 * on what a hex digit or an escape is. All are pure: no allocation, no
 * I/O, no locale, and they take lengths, so the fuzzed parsers can run
 * them over bytes that are not NUL-terminated.
 */
#ifndef PV_TEXT_H
#define PV_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The digits pv writes: lower case only, so each byte string has one hex
 * spelling (blob names, ETags, the key file's temp names). */
#define PV_HEX_DIGITS "0123456789abcdef"

/* ---- hex ---- */
/* The value of one hex digit, either case ('0'-'9', 'a'-'f', 'A'-'F'), or
 * -1 for anything else (c may be a char or an unsigned char). */
int pv_hex_digit(int c);
/* in[0..len) as 2*len lower-case digits and a NUL (out: 2*len+1 bytes). */
void pv_hex(const uint8_t *in, size_t len, char *out);
/* Exactly 2*outlen hex digits (either case) into outlen bytes: 0, or
 * -EINVAL for a NULL, short, long or non-hex string (out is then
 * unspecified). */
int pv_unhex(const char *in, uint8_t *out, size_t outlen);

/* ---- percent-decoding (RFC 3986 pct-encoded) ---- */
enum {
    PV_PCT_PLUS_SPACE = 1, /* '+' means ' ' (query strings, forms) */
    PV_PCT_NO_NUL = 2,     /* refuse %00 (the result becomes a C string) */
};
/*
 * Decodes src[0..len) into dst, which has room for cap bytes; dst may be
 * src (a decoded byte is never written ahead of the bytes it came from).
 * Does not NUL-terminate. Returns the decoded length, -EINVAL for a '%'
 * not followed by two hex digits (or %00 with PV_PCT_NO_NUL), or
 * -EMSGSIZE when the result would not fit in cap bytes.
 */
ssize_t pv_pct_decode(const char *src, size_t len, char *dst, size_t cap,
                      unsigned flags);

/* ---- UTF-8 ---- */
/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid
 * (overlong, surrogate, past U+10FFFF, truncated). */
size_t pv_utf8_len(const unsigned char *s, size_t n);

#endif
