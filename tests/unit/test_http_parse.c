/*
 * test_http_parse.c — the pure request parser, framing rules, chunked
 * decoder, Range and If-None-Match helpers.
 */
#include "http/http_parse.h"
#include "base/pv.h"
#include "t.h"

#include <stdlib.h>
#include <string.h>

static int parse(const char *s, pv_http_reqline_t *rl, pv_http_hdr_t *h,
                 size_t *n)
{
    *n = PV_HTTP_MAX_HEADERS;
    return pv_http_parse_request(s, strlen(s), rl, h, n, 8192);
}

static int parse_status(const char *s)
{
    pv_http_reqline_t rl;
    pv_http_hdr_t h[PV_HTTP_MAX_HEADERS];
    size_t n;
    return parse(s, &rl, h, &n);
}

static bool span_is(const char *p, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

TEST(parse_simple_get)
{
    const char *s = "GET /api/v1/photos?limit=2 HTTP/1.1\r\n"
                    "Host: example\r\n"
                    "X-Empty:\r\n"
                    "Accept:   */*  \r\n"
                    "\r\nEXTRA";
    pv_http_reqline_t rl;
    pv_http_hdr_t h[PV_HTTP_MAX_HEADERS];
    size_t n;
    int r = parse(s, &rl, h, &n);
    CHECK_EQ_INT(r, (int)(strlen(s) - 5));
    CHECK(span_is(rl.method, rl.method_len, "GET"));
    CHECK(span_is(rl.target, rl.target_len, "/api/v1/photos?limit=2"));
    CHECK_EQ_INT(rl.minor_version, 1);
    CHECK_EQ_INT(n, 3);
    CHECK(span_is(h[0].name, h[0].name_len, "Host"));
    CHECK(span_is(h[0].value, h[0].value_len, "example"));
    CHECK(span_is(h[1].name, h[1].name_len, "X-Empty"));
    CHECK_EQ_INT(h[1].value_len, 0);
    CHECK(span_is(h[2].value, h[2].value_len, "*/*"));
    CHECK(pv_http_hdr_is(&h[0], "host"));
    CHECK(pv_http_hdr_is(&h[0], "HOST"));
    CHECK(!pv_http_hdr_is(&h[0], "hos"));
    CHECK(!pv_http_hdr_is(&h[0], "hostx"));
}

TEST(parse_http10_and_obs_text)
{
    pv_http_reqline_t rl;
    pv_http_hdr_t h[PV_HTTP_MAX_HEADERS];
    size_t n;
    int r = parse("POST /x HTTP/1.0\r\nX-Name: caf\xc3\xa9\tok\r\n\r\n", &rl,
                  h, &n);
    CHECK(r > 0);
    CHECK_EQ_INT(rl.minor_version, 0);
    CHECK_EQ_INT(n, 1);
    CHECK(span_is(h[0].value, h[0].value_len, "caf\xc3\xa9\tok"));
}

TEST(parse_bad_inputs)
{
    static const char *bad[] = {
        "get / HTTP/1.1\r\n\r\n",            /* lower-case method */
        " GET / HTTP/1.1\r\n\r\n",           /* leading space */
        "GET  / HTTP/1.1\r\n\r\n",           /* two spaces */
        "GET / HTTP/1.1 \r\n\r\n",           /* trailing space */
        "GET x HTTP/1.1\r\n\r\n",            /* not origin-form */
        "GET http://a/ HTTP/1.1\r\n\r\n",    /* absolute-form */
        "GET / HTTP/2.0\r\n\r\n",            /* version */
        "GET / HTTP/1.2\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTP/1.1\n\r\n",              /* bare LF */
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        "GET / HTTP/1.1\r\nHost a\r\n\r\n",  /* no colon */
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n", /* space before colon */
        "GET / HTTP/1.1\r\n: a\r\n\r\n",     /* empty name */
        "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", /* obs-fold */
        "GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", /* control char */
        "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",  /* bare CR */
        "GET /a\x01 HTTP/1.1\r\n\r\n",
        "GET /\xff HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\n\r",              /* CR then not LF is partial */
        "VERYLONGMETHODNAME1 / HTTP/1.1\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\n\r\n",        /* caller skips these */
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
        int r = parse_status(bad[i]);
        if (i == 21) {
            CHECK_EQ_INT(r, PV_HTTP_PARSE_PARTIAL);
            continue;
        }
        if (r != PV_HTTP_PARSE_BAD)
            printf("#   bad input %zu gave %d\n", i, r);
        CHECK_EQ_INT(r, PV_HTTP_PARSE_BAD);
    }
    /* NUL bytes (strlen would stop at them) */
    static const char nul1[] = "GET / HTTP/1.1\r\nX\0Y: a\r\n\r\n";
    static const char nul2[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    static const char nul3[] = "GET /\0 HTTP/1.1\r\n\r\n";
    pv_http_reqline_t rl;
    pv_http_hdr_t h[PV_HTTP_MAX_HEADERS];
    size_t n = PV_HTTP_MAX_HEADERS;
    CHECK_EQ_INT(pv_http_parse_request(nul1, sizeof(nul1) - 1, &rl, h, &n, 0),
                 PV_HTTP_PARSE_BAD);
    n = PV_HTTP_MAX_HEADERS;
    CHECK_EQ_INT(pv_http_parse_request(nul2, sizeof(nul2) - 1, &rl, h, &n, 0),
                 PV_HTTP_PARSE_BAD);
    n = PV_HTTP_MAX_HEADERS;
    CHECK_EQ_INT(pv_http_parse_request(nul3, sizeof(nul3) - 1, &rl, h, &n, 0),
                 PV_HTTP_PARSE_BAD);
}

TEST(parse_early_garbage_detected)
{
    /* Garbage is reported before any line end arrives. */
    CHECK_EQ_INT(parse_status("\x16\x03\x01\x02"), PV_HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_status("GET /a b"), PV_HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_status("GET"), PV_HTTP_PARSE_PARTIAL);
    CHECK_EQ_INT(parse_status(""), PV_HTTP_PARSE_PARTIAL);
}

TEST(parse_limits)
{
    pv_http_reqline_t rl;
    pv_http_hdr_t h[4];
    size_t n = 4;
    const char *s = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    CHECK(pv_http_parse_request(s, strlen(s), &rl, h, &n, 0) > 0);
    CHECK_EQ_INT(n, 4);
    const char *s5 =
        "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
    n = 4;
    CHECK_EQ_INT(pv_http_parse_request(s5, strlen(s5), &rl, h, &n, 0),
                 PV_HTTP_PARSE_TOO_LARGE);

    /* A line over max_line, complete or still arriving. */
    char big[300];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    n = 4;
    CHECK_EQ_INT(pv_http_parse_request(big, sizeof(big), &rl, h, &n, 100),
                 PV_HTTP_PARSE_TOO_LARGE);
    n = 4;
    CHECK_EQ_INT(pv_http_parse_request(big, sizeof(big), &rl, h, &n, 1000),
                 PV_HTTP_PARSE_PARTIAL);
    const char *longhdr = "GET / HTTP/1.1\r\nX: "
                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    n = 4;
    CHECK_EQ_INT(pv_http_parse_request(longhdr, strlen(longhdr), &rl, h, &n,
                                       30),
                 PV_HTTP_PARSE_TOO_LARGE);
}

/* Every prefix of a good request is "partial", the whole is good. */
TEST(parse_byte_by_byte)
{
    const char *s = "PUT /a/b%20c?x=1 HTTP/1.1\r\nHost: h\r\n"
                    "Content-Length: 5\r\nX-A:  v  \r\n\r\n";
    size_t len = strlen(s);
    pv_http_reqline_t rl;
    pv_http_hdr_t h[PV_HTTP_MAX_HEADERS];
    for (size_t i = 0; i < len; i++) {
        char *copy = malloc(i ? i : 1); /* exact size: ASan sees overreads */
        memcpy(copy, s, i);
        size_t n = PV_HTTP_MAX_HEADERS;
        int r = pv_http_parse_request(copy, i, &rl, h, &n, 8192);
        if (r != PV_HTTP_PARSE_PARTIAL)
            printf("#   prefix %zu gave %d\n", i, r);
        CHECK_EQ_INT(r, PV_HTTP_PARSE_PARTIAL);
        free(copy);
    }
    size_t n = PV_HTTP_MAX_HEADERS;
    CHECK_EQ_INT(pv_http_parse_request(s, len, &rl, h, &n, 8192), (int)len);
    CHECK_EQ_INT(n, 3);
    CHECK(span_is(h[2].value, h[2].value_len, "v"));
}

static int framing(const char *s, pv_http_framing_t *f)
{
    pv_http_reqline_t rl;
    pv_http_hdr_t h[PV_HTTP_MAX_HEADERS];
    size_t n;
    if (parse(s, &rl, h, &n) <= 0)
        return -99;
    return pv_http_parse_framing(h, n, rl.minor_version, f);
}

TEST(framing_rules)
{
    pv_http_framing_t f;
    CHECK_EQ_INT(framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &f), 0);
    CHECK(f.keep_alive);
    CHECK_EQ_INT(f.content_length, -1);
    CHECK(!f.chunked);

    CHECK_EQ_INT(framing("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                         &f), 0);
    CHECK(!f.keep_alive);
    CHECK_EQ_INT(framing("GET / HTTP/1.0\r\n\r\n", &f), 0);
    CHECK(!f.keep_alive);
    CHECK_EQ_INT(framing("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                         &f), 0);
    CHECK(f.keep_alive);
    CHECK_EQ_INT(framing("GET / HTTP/1.1\r\nHost: a\r\n"
                         "Connection: keep-alive, Close\r\n\r\n", &f), 0);
    CHECK(!f.keep_alive);

    CHECK_EQ_INT(framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n"
                         "Content-Length: 42\r\n\r\n", &f), 0);
    CHECK_EQ_INT(f.content_length, 42);
    CHECK_EQ_INT(framing("POST / HTTP/1.1\r\nHost: a\r\n"
                         "Transfer-Encoding: Chunked\r\n"
                         "Expect: 100-continue\r\n\r\n", &f), 0);
    CHECK(f.chunked);
    CHECK(f.expect_continue);
    CHECK_EQ_INT(framing("POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n",
                         &f), 0);
    CHECK(f.expect_other);

    static const char *bad[] = {
        "GET / HTTP/1.1\r\n\r\n", /* no Host */
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
        "Content-Length: 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\n"
        "Content-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
        int r = framing(bad[i], &f);
        if (r != -1)
            printf("#   framing case %zu gave %d\n", i, r);
        CHECK_EQ_INT(r, -1);
    }
}

/* Decodes a whole chunked body fed in pieces of `step` bytes. Returns the
 * decoded length, -1 on error, -2 if the end was not reached. */
static long dechunk(const char *in, size_t len, size_t step, char *out,
                    size_t *consumed)
{
    pv_http_chunked_t d;
    size_t o = 0, pos = 0;
    pv_http_chunked_init(&d);
    while (pos < len && !pv_http_chunked_done(&d)) {
        size_t piece = len - pos < step ? len - pos : step;
        /* copy to an exact-size buffer so ASan catches overreads */
        char *buf = malloc(piece);
        memcpy(buf, in + pos, piece);
        size_t used = 0;
        while (used < piece && !pv_http_chunked_done(&d)) {
            const char *data;
            size_t dl;
            ssize_t k = pv_http_chunked_feed(&d, buf + used, piece - used,
                                             &data, &dl);
            if (k < 0) {
                free(buf);
                return -1;
            }
            if (dl) {
                memcpy(out + o, data, dl);
                o += dl;
            }
            used += (size_t)k;
        }
        free(buf);
        pos += used;
    }
    if (consumed)
        *consumed = pos;
    return pv_http_chunked_done(&d) ? (long)o : -2;
}

TEST(chunked_good)
{
    const char *s = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n"
                    "0\r\nTrailer: x\r\n\r\nNEXT";
    char out[64];
    for (size_t step = 1; step <= strlen(s); step++) {
        size_t used;
        long n = dechunk(s, strlen(s), step, out, &used);
        CHECK_EQ_INT(n, 16);
        if (n == 16)
            CHECK(memcmp(out, "hello 0123456789", 16) == 0);
        CHECK_EQ_INT(used, strlen(s) - 4); /* stops before NEXT */
    }
    CHECK_EQ_INT(dechunk("0\r\n\r\n", 5, 5, out, NULL), 0);
    CHECK_EQ_INT(dechunk("00000a\r\n0123456789\r\n0\r\n\r\n", 25, 3, out,
                         NULL), 10);
    CHECK_EQ_INT(dechunk("5\r\nhel", 6, 6, out, NULL), -2);
}

TEST(chunked_bad)
{
    static const char *bad[] = {
        "x\r\n",                      /* not hex */
        "\r\n",                       /* no size */
        "5\nhello\r\n0\r\n\r\n",      /* bare LF */
        "5\r\nhelloX\r\n0\r\n\r\n",   /* data longer than size */
        "5\r\nhello\r\r0\r\n\r\n",
        "1234567890abcdef1\r\n",     /* too many digits */
        "-5\r\n",
        "5\x01\r\n",
        "0\r\nBad\x01: x\r\n\r\n",    /* control char in trailer */
        "0\r\n folded\r\n\r\n",
        "0\r\n\rX",
        "5;\x7f\r\n",
    };
    char out[64];
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
        long n = dechunk(bad[i], strlen(bad[i]), 1, out, NULL);
        if (n != -1)
            printf("#   chunked case %zu gave %ld\n", i, n);
        CHECK_EQ_INT(n, -1);
    }
    /* An endless chunk extension is refused. */
    size_t len = 10000;
    char *ext = malloc(len);
    memset(ext, 'a', len);
    memcpy(ext, "1;", 2);
    CHECK_EQ_INT(dechunk(ext, len, 512, out, NULL), -1);
    /* So are endless trailers. */
    memcpy(ext, "0\r\nX: ", 6);
    CHECK_EQ_INT(dechunk(ext, len, 512, out, NULL), -1);
    free(ext);
}

TEST(range_parse)
{
    uint64_t a = 0, l = 0;
#define RANGE(s, size) pv_http_parse_range(s, strlen(s), size, &a, &l)
    CHECK_EQ_INT(RANGE("bytes=0-99", 1000), 1);
    CHECK(a == 0 && l == 100);
    CHECK_EQ_INT(RANGE("bytes=500-", 1000), 1);
    CHECK(a == 500 && l == 500);
    CHECK_EQ_INT(RANGE("bytes=-100", 1000), 1);
    CHECK(a == 900 && l == 100);
    CHECK_EQ_INT(RANGE("bytes=-5000", 1000), 1);
    CHECK(a == 0 && l == 1000);
    CHECK_EQ_INT(RANGE("bytes=990-5000", 1000), 1);
    CHECK(a == 990 && l == 10);
    CHECK_EQ_INT(RANGE("Bytes=1-1", 1000), 1);
    CHECK(a == 1 && l == 1);
    CHECK_EQ_INT(RANGE("bytes=1000-", 1000), -1);
    CHECK_EQ_INT(RANGE("bytes=-0", 1000), -1);
    CHECK_EQ_INT(RANGE("bytes=0-", 0), -1);
    CHECK_EQ_INT(RANGE("bytes=0-1,5-6", 1000), 0);
    CHECK_EQ_INT(RANGE("bytes=5-1", 1000), 0);
    CHECK_EQ_INT(RANGE("items=0-1", 1000), 0);
    CHECK_EQ_INT(RANGE("bytes=a-b", 1000), 0);
    CHECK_EQ_INT(RANGE("bytes=", 1000), 0);
    CHECK_EQ_INT(RANGE("bytes=-", 1000), 0);
    CHECK_EQ_INT(RANGE("bytes=99999999999999999999-", 1000), 0);
#undef RANGE
}

TEST(etag_match)
{
    const char *e = "\"abc\"";
#define M(list) pv_http_etag_match(list, strlen(list), e, strlen(e))
    CHECK(M("\"abc\""));
    CHECK(M("W/\"abc\""));
    CHECK(M("\"x\", \"abc\""));
    CHECK(M("*"));
    CHECK(!M("\"abcd\""));
    CHECK(!M("abc"));
    CHECK(!M(""));
    CHECK(!M("\"x\",,  W/\"y\""));
#undef M
}

int main(void)
{
    RUN(parse_simple_get);
    RUN(parse_http10_and_obs_text);
    RUN(parse_bad_inputs);
    RUN(parse_early_garbage_detected);
    RUN(parse_limits);
    RUN(parse_byte_by_byte);
    RUN(framing_rules);
    RUN(chunked_good);
    RUN(chunked_bad);
    RUN(range_parse);
    RUN(etag_match);
    return t_done("http_parse");
}
