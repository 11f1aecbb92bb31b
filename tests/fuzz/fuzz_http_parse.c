/*
 * fuzz_http_parse.c — libFuzzer target for src/http_parse.c: the request
 * parser, framing rules, chunked decoder, Range and If-None-Match, and
 * the percent-decoder (src/base/text.c) the server runs over paths and
 * query strings.
 *
 * Beyond "no crash", it checks properties the server relies on: a head
 * that parses has every shorter prefix reported as "need more" (so feeding
 * bytes as they arrive gives the same answer), and the chunked decoder
 * gives the same bytes and the same end however its input is split; the
 * percent-decoder gives the same bytes in place (multipart decodes over
 * its source) and refuses, rather than cuts, what does not fit.
 */
#include "http/http_parse.h"
#include "base/text.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_request(const char *buf, size_t len)
{
    pv_http_reqline_t rl;
    pv_http_hdr_t h[PV_HTTP_MAX_HEADERS];
    size_t n = PV_HTTP_MAX_HEADERS;
    int r = pv_http_parse_request(buf, len, &rl, h, &n, 0);
    if (r > 0) {
        if ((size_t)r > len || n > PV_HTTP_MAX_HEADERS)
            __builtin_trap();
        for (size_t i = 0; i < n; i++) {
            if (h[i].name < buf || h[i].value + h[i].value_len > buf + r)
                __builtin_trap();
        }
        pv_http_framing_t f;
        pv_http_parse_framing(h, n, rl.minor_version, &f);
        /* The prefix one byte short must be "need more". */
        size_t n2 = PV_HTTP_MAX_HEADERS;
        if (pv_http_parse_request(buf, (size_t)r - 1, &rl, h, &n2, 0) !=
            PV_HTTP_PARSE_PARTIAL)
            __builtin_trap();
    }
    /* Same input with a line limit and a small header array. */
    pv_http_hdr_t few[3];
    size_t nf = 3;
    pv_http_parse_request(buf, len, &rl, few, &nf, 64);
}

/* Decodes with pieces of `step` bytes; returns the decoded length or -1,
 * and the bytes consumed in *used. */
static long fuzz_dechunk(const char *buf, size_t len, size_t step, char *out,
                         size_t *used)
{
    pv_http_chunked_t d;
    size_t pos = 0, o = 0;
    pv_http_chunked_init(&d);
    while (pos < len && !pv_http_chunked_done(&d)) {
        size_t piece = len - pos < step ? len - pos : step;
        const char *p;
        size_t dl;
        ssize_t k = pv_http_chunked_feed(&d, buf + pos, piece, &p, &dl);
        if (k < 0)
            return -1;
        if ((size_t)k > piece || dl > (size_t)k)
            __builtin_trap();
        if (dl) {
            memcpy(out + o, p, dl);
            o += dl;
        }
        pos += (size_t)k;
    }
    *used = pos;
    return pv_http_chunked_done(&d) ? (long)o : -2;
}

static void fuzz_chunked(const char *buf, size_t len)
{
    char *a = malloc(len + 1), *b = malloc(len + 1);
    size_t ua = 0, ub = 0;
    long ra = fuzz_dechunk(buf, len, len ? len : 1, a, &ua);
    long rb = fuzz_dechunk(buf, len, 1, b, &ub);
    if (ra != rb || (ra >= 0 && (ua != ub || memcmp(a, b, (size_t)ra))))
        __builtin_trap();
    free(a);
    free(b);
}

static void fuzz_pct(const char *buf, size_t len)
{
    char *dec = malloc(len ? len : 1), *inplace = malloc(len ? len : 1);
    for (unsigned flags = 0; flags <= (PV_PCT_PLUS_SPACE | PV_PCT_NO_NUL); flags++) {
        ssize_t n = pv_pct_decode(buf, len, dec, len, flags);
        if (n > (ssize_t)len || (n < 0 && n != -EINVAL))
            __builtin_trap();
        memcpy(inplace, buf, len);
        if (pv_pct_decode(inplace, len, inplace, len, flags) != n ||
            (n > 0 && memcmp(inplace, dec, (size_t)n) != 0))
            __builtin_trap();
        if (n > 0 && pv_pct_decode(buf, len, dec, (size_t)n - 1, flags) != -EMSGSIZE)
            __builtin_trap();
    }
    free(inplace);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so reads past the end are caught. */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    fuzz_request(buf, size);
    fuzz_chunked(buf, size);
    uint64_t a, l;
    int rr = pv_http_parse_range(buf, size, 1000, &a, &l);
    if (rr == 1 && (l == 0 || a + l > 1000))
        __builtin_trap();
    pv_http_etag_match(buf, size, "\"abc\"", 5);
    fuzz_pct(buf, size);
    free(buf);
    return 0;
}
