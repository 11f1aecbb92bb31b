/*
 * test_text.c — the shared text codecs (src/base/text.c): hex digits and
 * strings, percent-decoding with each caller's flags, UTF-8 validation.
 */
#include "base/text.h"
#include "base/pv.h"
#include "t.h"

#include <errno.h>
#include <string.h>

TEST(hex_digit)
{
    static const char digits[] = "0123456789abcdefABCDEF";
    for (int i = 0; digits[i]; i++)
        CHECK_EQ_INT(pv_hex_digit(digits[i]), i < 16 ? i : i - 6);
    /* the neighbours of each range, and bytes past ASCII either signed or not */
    static const int bad[] = {'/', ':', '@', 'G', '`', 'g', ' ', '%', '\0', -1, 0x80, 0xc1, 0xe1, 0xff};
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++)
        CHECK_EQ_INT(pv_hex_digit(bad[i]), -1);
    CHECK_EQ_INT(pv_hex_digit((char)0xe1), -1); /* 'a' | 0x80 */
}

TEST(hex_round_trip)
{
    uint8_t in[5] = {0x00, 0x01, 0xab, 0xcd, 0xff}, out[5];
    char x[11];
    pv_hex(in, 5, x);
    CHECK_EQ_STR(x, "0001abcdff"); /* lower case only */
    CHECK_EQ_INT(pv_unhex(x, out, 5), 0);
    CHECK(memcmp(in, out, 5) == 0);
    CHECK_EQ_INT(pv_unhex("0001ABCDFF", out, 5), 0);
    CHECK(memcmp(in, out, 5) == 0);
    CHECK_EQ_INT(pv_unhex("0001aBcDfF", out, 5), 0);
    CHECK(memcmp(in, out, 5) == 0);
    CHECK_EQ_INT(pv_unhex("0001abcdf", out, 5), -EINVAL);   /* short */
    CHECK_EQ_INT(pv_unhex("0001abcdff0", out, 5), -EINVAL); /* long */
    CHECK_EQ_INT(pv_unhex("0001abcdfg", out, 5), -EINVAL);  /* bad digit */
    CHECK_EQ_INT(pv_unhex(" 001abcdff", out, 5), -EINVAL);
    CHECK_EQ_INT(pv_unhex("0x01abcdff", out, 5), -EINVAL);
    CHECK_EQ_INT(pv_unhex(NULL, out, 5), -EINVAL);
    CHECK_EQ_INT(pv_unhex("", out, 0), 0);
    pv_hex(in, 0, x);
    CHECK_EQ_STR(x, "");
}

/* pv_pct_decode into a NUL-filled buffer of `cap` bytes, as a string. */
static ssize_t pct(const char *s, size_t cap, unsigned flags, char out[64])
{
    memset(out, 0, 64);
    return pv_pct_decode(s, strlen(s), out, cap, flags);
}

TEST(pct_decode)
{
    char out[64];
    CHECK_EQ_INT(pct("a%20b%2f", 63, 0, out), 4);
    CHECK_EQ_STR(out, "a b/");
    CHECK_EQ_INT(pct("%2F%2f%41%61", 63, 0, out), 4); /* either case */
    CHECK_EQ_STR(out, "//Aa");
    CHECK_EQ_INT(pct("", 63, 0, out), 0);
    CHECK_EQ_INT(pct("plain", 63, 0, out), 5);
    CHECK_EQ_STR(out, "plain");
    /* bad escapes: truncated at the end, not hex, sign or space inside */
    static const char *bad[] = {"%", "%4", "a%", "ab%4", "%zz", "%4g", "%g4", "%+1", "% 1", "%%41"};
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++)
        CHECK_EQ_INT(pct(bad[i], 63, 0, out), -EINVAL);
    /* an escaped '%' is data, not the start of another escape */
    CHECK_EQ_INT(pct("%2541", 63, 0, out), 3);
    CHECK_EQ_STR(out, "%41");
}

TEST(pct_decode_plus)
{
    char out[64];
    /* paths keep '+'; query strings and forms read it as a space */
    CHECK_EQ_INT(pct("a+b", 63, 0, out), 3);
    CHECK_EQ_STR(out, "a+b");
    CHECK_EQ_INT(pct("a+b", 63, PV_PCT_PLUS_SPACE, out), 3);
    CHECK_EQ_STR(out, "a b");
    /* an escaped '+' is a plus either way */
    CHECK_EQ_INT(pct("a%2Bb+", 63, PV_PCT_PLUS_SPACE, out), 4);
    CHECK_EQ_STR(out, "a+b ");
}

TEST(pct_decode_nul)
{
    char out[64];
    /* %00 decodes to a NUL byte unless the caller wants a C string */
    CHECK_EQ_INT(pct("%00", 63, 0, out), 1);
    CHECK_EQ_INT(out[0], 0);
    CHECK_EQ_INT(pct("a%00b", 63, 0, out), 3);
    CHECK(memcmp(out, "a\0b", 3) == 0);
    CHECK_EQ_INT(pct("a%00b", 63, PV_PCT_NO_NUL, out), -EINVAL);
    CHECK_EQ_INT(pct("%00", 63, PV_PCT_NO_NUL | PV_PCT_PLUS_SPACE, out), -EINVAL);
    CHECK_EQ_INT(pct("%01%7f%ff", 63, PV_PCT_NO_NUL, out), 3);
    CHECK(memcmp(out, "\x01\x7f\xff", 3) == 0);
}

TEST(pct_decode_room)
{
    char out[64];
    /* the decoded length counts, not the source's */
    CHECK_EQ_INT(pct("%31%32%33", 3, 0, out), 3);
    CHECK_EQ_STR(out, "123");
    CHECK_EQ_INT(pct("%31%32%33", 2, 0, out), -EMSGSIZE);
    CHECK_EQ_INT(pct("abc", 3, 0, out), 3);
    CHECK_EQ_INT(out[3], 0); /* no terminator written */
    CHECK_EQ_INT(pct("abc", 2, 0, out), -EMSGSIZE);
    CHECK_EQ_INT(pct("", 0, 0, out), 0);
    CHECK_EQ_INT(pct("a", 0, 0, out), -EMSGSIZE);
    /* decoding stops at the first problem, whichever it is */
    CHECK_EQ_INT(pct("ab%zz", 1, 0, out), -EMSGSIZE);
    CHECK_EQ_INT(pct("%zzab", 1, 0, out), -EINVAL);
}

TEST(pct_decode_in_place)
{
    /* multipart decodes a filename* value over its own bytes */
    char s[] = "caf%C3%A9+%2B.jpg;rest";
    size_t n = strlen("caf%C3%A9+%2B.jpg");
    ssize_t r = pv_pct_decode(s, n, s, n, 0);
    CHECK_EQ_INT(r, 11);
    CHECK(memcmp(s, "caf\xc3\xa9+\x2b.jpg", 11) == 0);
    CHECK_EQ_STR(s + n, ";rest"); /* nothing written past the value */
}

TEST(utf8_len)
{
    static const struct {
        const char *s;
        size_t len; /* 0: invalid */
    } cases[] = {
        {"a", 1},
        {"\x7f", 1},
        {"\xc3\xa9", 2},               /* é */
        {"\xe2\x82\xac", 3},           /* € */
        {"\xf0\x9f\x98\x80", 4},       /* 😀 */
        {"\xf4\x8f\xbf\xbf", 4},       /* U+10FFFF */
        {"\xc0\xaf", 0},               /* overlong '/' */
        {"\xc1\xbf", 0},
        {"\xe0\x80\xaf", 0},           /* overlong, three bytes */
        {"\xf0\x80\x80\xaf", 0},       /* overlong, four bytes */
        {"\xed\xa0\x80", 0},           /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 0},       /* past U+10FFFF */
        {"\xf5\x80\x80\x80", 0},
        {"\x80", 0},                   /* a lone continuation byte */
        {"\xc3(", 0},                  /* not a continuation */
        {"\xff", 0},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
        const unsigned char *s = (const unsigned char *)cases[i].s;
        size_t got = pv_utf8_len(s, strlen(cases[i].s));
        if (got != cases[i].len)
            printf("#   case %zu\n", i);
        CHECK_EQ_INT(got, cases[i].len);
    }
    /* truncated: the bytes are there, the length says they are not */
    CHECK_EQ_INT(pv_utf8_len((const unsigned char *)"\xe2\x82\xac", 2), 0);
    CHECK_EQ_INT(pv_utf8_len((const unsigned char *)"\xc3\xa9", 1), 0);
    CHECK_EQ_INT(pv_utf8_len((const unsigned char *)"a", 0), 0);
}

int main(void)
{
    RUN(hex_digit);
    RUN(hex_round_trip);
    RUN(pct_decode);
    RUN(pct_decode_plus);
    RUN(pct_decode_nul);
    RUN(pct_decode_room);
    RUN(pct_decode_in_place);
    RUN(utf8_len);
    return t_done("text");
}
