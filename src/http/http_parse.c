/*
 * http_parse.c — the pure HTTP/1.x request parser and chunked decoder.
 *
 * Strict on purpose: the server faces the internet, and every leniency in a
 * parser is a place where a proxy in front of us and we could disagree
 * about where a request ends (request smuggling). So: CRLF line ends only,
 * one SP between request-line parts, no obs-fold, no whitespace before a
 * header colon, no control characters, one Content-Length value, and
 * Transfer-Encoding only as exactly "chunked" and never with a length.
 *
 * The request parser re-scans from the start on each call, like
 * picohttpparser; a head is small and usually arrives in one read, and the
 * caller bounds its size. Bad bytes are reported as soon as they are seen.
 */
#include "http/http_parse.h"
#include "base/text.h"

#include <string.h>

/* RFC 9110 tchar. */
static const char pv_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

#define PV_MAX_METHOD 16

/* A field-value byte: HTAB, visible ASCII, SP, or obs-text. */
static inline bool pv_value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static inline unsigned char pv_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Ran out of input inside a line: wait for more unless the line is already
 * too long to be acceptable. */
static int pv_partial(const char *line_start, const char *end, size_t max_line)
{
    if (max_line && (size_t)(end - line_start) > max_line)
        return PV_HTTP_PARSE_TOO_LARGE;
    return PV_HTTP_PARSE_PARTIAL;
}

/* Request line: METHOD SP origin-form SP HTTP/1.x CRLF. Returns the offset
 * after the CRLF, or a negative result. */
static int pv_parse_reqline(const char *buf, const char *end,
                            pv_http_reqline_t *rl, size_t max_line)
{
    static const char ver[] = "HTTP/1.";
    const char *p = buf;

    rl->method = p;
    while (p < end && *p >= 'A' && *p <= 'Z') {
        if (p - buf >= PV_MAX_METHOD)
            return PV_HTTP_PARSE_BAD;
        p++;
    }
    if (p == end)
        return pv_partial(buf, end, max_line);
    if (*p != ' ' || p == buf)
        return PV_HTTP_PARSE_BAD;
    rl->method_len = (size_t)(p - buf);
    p++;

    rl->target = p;
    if (p == end)
        return pv_partial(buf, end, max_line);
    if (*p != '/')
        return PV_HTTP_PARSE_BAD;
    while (p < end && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
        p++;
    if (p == end)
        return pv_partial(buf, end, max_line);
    if (*p != ' ')
        return PV_HTTP_PARSE_BAD;
    rl->target_len = (size_t)(p - rl->target);
    p++;

    for (size_t i = 0; i < sizeof(ver) - 1; i++, p++) {
        if (p == end)
            return pv_partial(buf, end, max_line);
        if (*p != ver[i])
            return PV_HTTP_PARSE_BAD;
    }
    if (p == end)
        return pv_partial(buf, end, max_line);
    if (*p != '0' && *p != '1')
        return PV_HTTP_PARSE_BAD;
    rl->minor_version = *p - '0';
    p++;
    if (p == end)
        return pv_partial(buf, end, max_line);
    if (*p != '\r')
        return PV_HTTP_PARSE_BAD;
    p++;
    if (p == end)
        return pv_partial(buf, end, max_line);
    if (*p != '\n')
        return PV_HTTP_PARSE_BAD;
    p++;
    if (max_line && (size_t)(p - buf) > max_line)
        return PV_HTTP_PARSE_TOO_LARGE;
    return (int)(p - buf);
}

/* One header line starting at *pp. Returns 1 when a header was stored, 0 at
 * the blank line that ends the head (*pp moved past it), or a negative
 * result. */
static int pv_parse_header(const char **pp, const char *end, pv_http_hdr_t *h,
                           size_t max_line)
{
    const char *start = *pp, *p = *pp;

    if (p == end)
        return PV_HTTP_PARSE_PARTIAL;
    if (*p == '\r') {
        if (p + 1 == end)
            return PV_HTTP_PARSE_PARTIAL;
        if (p[1] != '\n')
            return PV_HTTP_PARSE_BAD;
        *pp = p + 2;
        return 0;
    }
    /* A line starting with SP/HTAB is obs-fold; anything else not a tchar
     * (including an empty name before ':') is malformed. */
    while (p < end && pv_tchar[(unsigned char)*p])
        p++;
    if (p == end)
        return pv_partial(start, end, max_line);
    if (*p != ':' || p == start)
        return PV_HTTP_PARSE_BAD;
    h->name = start;
    h->name_len = (size_t)(p - start);
    p++;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    h->value = p;
    while (p < end && pv_value_byte((unsigned char)*p))
        p++;
    if (p == end)
        return pv_partial(start, end, max_line);
    if (*p != '\r')
        return PV_HTTP_PARSE_BAD;
    const char *vend = p;
    while (vend > h->value && (vend[-1] == ' ' || vend[-1] == '\t'))
        vend--;
    h->value_len = (size_t)(vend - h->value);
    p++;
    if (p == end)
        return pv_partial(start, end, max_line);
    if (*p != '\n')
        return PV_HTTP_PARSE_BAD;
    p++;
    if (max_line && (size_t)(p - start) > max_line)
        return PV_HTTP_PARSE_TOO_LARGE;
    *pp = p;
    return 1;
}

int pv_http_parse_request(const char *buf, size_t len, pv_http_reqline_t *rl,
                          pv_http_hdr_t *hdrs, size_t *num_headers,
                          size_t max_line)
{
    const char *end = buf + len;
    size_t cap = *num_headers, n = 0;

    *num_headers = 0;
    if (len > (size_t)INT32_MAX)
        return PV_HTTP_PARSE_TOO_LARGE;
    int r = pv_parse_reqline(buf, end, rl, max_line);
    if (r < 0)
        return r;
    const char *p = buf + r;
    for (;;) {
        pv_http_hdr_t tmp;
        r = pv_parse_header(&p, end, n < cap ? &hdrs[n] : &tmp, max_line);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        if (n == cap)
            return PV_HTTP_PARSE_TOO_LARGE;
        n++;
    }
    *num_headers = n;
    return (int)(p - buf);
}

bool pv_http_hdr_is(const pv_http_hdr_t *h, const char *name)
{
    size_t i = 0;
    for (; i < h->name_len; i++) {
        if (!name[i] || pv_lower((unsigned char)h->name[i]) !=
                            pv_lower((unsigned char)name[i]))
            return false;
    }
    return name[i] == '\0';
}

static bool pv_token_eq(const char *s, size_t len, const char *lit)
{
    size_t i = 0;
    for (; i < len; i++) {
        if (!lit[i] ||
            pv_lower((unsigned char)s[i]) != pv_lower((unsigned char)lit[i]))
            return false;
    }
    return lit[i] == '\0';
}

/* 1*DIGIT as uint64 (at most 19 digits, so no overflow). */
static int pv_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Content-Length: 1*DIGIT, at most 18 digits so that it fits in int64. */
static int pv_parse_length(const char *s, size_t len, int64_t *out)
{
    uint64_t v;
    if (len > 18 || pv_parse_u64(s, len, &v) < 0)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Walks a comma-separated token list (Connection) and notes close and
 * keep-alive. */
static void pv_scan_connection(const char *s, size_t len, bool *close,
                               bool *ka)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        size_t j = i;
        while (j < len && s[j] != ',' && s[j] != ' ' && s[j] != '\t')
            j++;
        if (pv_token_eq(s + i, j - i, "close"))
            *close = true;
        else if (pv_token_eq(s + i, j - i, "keep-alive"))
            *ka = true;
        i = j;
    }
}

int pv_http_parse_framing(const pv_http_hdr_t *hdrs, size_t num_headers,
                          int minor_version, pv_http_framing_t *out)
{
    bool close = false, ka = false, te = false;
    int hosts = 0;

    memset(out, 0, sizeof(*out));
    out->content_length = -1;
    for (size_t i = 0; i < num_headers; i++) {
        const pv_http_hdr_t *h = &hdrs[i];
        if (pv_http_hdr_is(h, "content-length")) {
            int64_t v;
            if (pv_parse_length(h->value, h->value_len, &v) < 0)
                return -1;
            if (out->content_length >= 0 && out->content_length != v)
                return -1;
            out->content_length = v;
        } else if (pv_http_hdr_is(h, "transfer-encoding")) {
            if (te || !pv_token_eq(h->value, h->value_len, "chunked"))
                return -1;
            te = true;
        } else if (pv_http_hdr_is(h, "connection")) {
            pv_scan_connection(h->value, h->value_len, &close, &ka);
        } else if (pv_http_hdr_is(h, "expect")) {
            if (pv_token_eq(h->value, h->value_len, "100-continue"))
                out->expect_continue = minor_version >= 1;
            else
                out->expect_other = true;
        } else if (pv_http_hdr_is(h, "host")) {
            hosts++;
        }
    }
    if (te && (out->content_length >= 0 || minor_version == 0))
        return -1;
    if (hosts > 1 || (minor_version >= 1 && hosts == 0))
        return -1;
    out->chunked = te;
    out->keep_alive = minor_version >= 1 ? !close : (ka && !close);
    return 0;
}

/* ---- chunked decoder ---- */
enum {
    CH_SIZE0,     /* first hex digit of a chunk size */
    CH_SIZE,      /* more hex digits */
    CH_EXT,       /* chunk extension, ignored up to CR */
    CH_SIZE_LF,   /* CR seen after the size line */
    CH_DATA,      /* chunk data */
    CH_DATA_CR,   /* CR after data */
    CH_DATA_LF,   /* LF after data */
    CH_TRAILER0,  /* start of a trailer line, or of the final CRLF */
    CH_TRAILER,   /* inside a trailer line */
    CH_TRAILER_LF,
    CH_FINAL_LF,  /* LF of the final CRLF */
    CH_DONE,
};

#define PV_CHUNK_LINE_MAX 4096u   /* size line with extensions */
#define PV_TRAILER_MAX 8192u      /* all trailer lines together */
#define PV_CHUNK_DIGITS_MAX 15    /* < 2^60: no overflow */

void pv_http_chunked_init(pv_http_chunked_t *d)
{
    memset(d, 0, sizeof(*d));
    d->state = CH_SIZE0;
}

bool pv_http_chunked_done(const pv_http_chunked_t *d)
{
    return d->state == CH_DONE;
}

/* One framing byte. Returns 0 or -1. */
static int pv_chunk_byte(pv_http_chunked_t *d, unsigned char c)
{
    int v;
    switch (d->state) {
    case CH_SIZE0:
    case CH_SIZE:
        v = pv_hex_digit(c);
        if (v >= 0) {
            if (++d->digits > PV_CHUNK_DIGITS_MAX)
                return -1;
            d->remaining = (d->remaining << 4) | (uint64_t)v;
            d->state = CH_SIZE;
        } else if (d->state == CH_SIZE0) {
            return -1;
        } else if (c == '\r') {
            d->state = CH_SIZE_LF;
        } else if (c == ';' || c == ' ' || c == '\t') {
            d->state = CH_EXT;
        } else {
            return -1;
        }
        break;
    case CH_EXT:
        if (c == '\r')
            d->state = CH_SIZE_LF;
        else if (!pv_value_byte(c))
            return -1;
        break;
    case CH_SIZE_LF:
        if (c != '\n')
            return -1;
        d->line_len = 0;
        d->digits = 0;
        d->state = d->remaining ? CH_DATA : CH_TRAILER0;
        return 0;
    case CH_DATA_CR:
        if (c != '\r')
            return -1;
        d->state = CH_DATA_LF;
        return 0;
    case CH_DATA_LF:
        if (c != '\n')
            return -1;
        d->state = CH_SIZE0;
        d->line_len = 0;
        return 0;
    case CH_TRAILER0:
        if (c == '\r') {
            d->state = CH_FINAL_LF;
            return 0;
        }
        if (c == ' ' || c == '\t' || !pv_value_byte(c))
            return -1;
        d->state = CH_TRAILER;
        break;
    case CH_TRAILER:
        if (c == '\r')
            d->state = CH_TRAILER_LF;
        else if (!pv_value_byte(c))
            return -1;
        break;
    case CH_TRAILER_LF:
        if (c != '\n')
            return -1;
        d->state = CH_TRAILER0;
        break;
    case CH_FINAL_LF:
        if (c != '\n')
            return -1;
        d->state = CH_DONE;
        return 0;
    default:
        return -1;
    }
    if (d->state == CH_TRAILER || d->state == CH_TRAILER0 ||
        d->state == CH_TRAILER_LF) {
        if (++d->trailer_bytes > PV_TRAILER_MAX)
            return -1;
    } else if (++d->line_len > PV_CHUNK_LINE_MAX) {
        return -1;
    }
    return 0;
}

ssize_t pv_http_chunked_feed(pv_http_chunked_t *d, const char *buf, size_t len,
                             const char **data, size_t *data_len)
{
    size_t i = 0;

    *data = NULL;
    *data_len = 0;
    if (d->state == CH_DATA && len > 0) {
        size_t n = len < d->remaining ? len : (size_t)d->remaining;
        *data = buf;
        *data_len = n;
        d->remaining -= n;
        if (d->remaining == 0)
            d->state = CH_DATA_CR;
        return (ssize_t)n;
    }
    while (i < len && d->state != CH_DATA && d->state != CH_DONE) {
        if (pv_chunk_byte(d, (unsigned char)buf[i]) < 0)
            return -1;
        i++;
    }
    return (ssize_t)i;
}

int pv_http_parse_range(const char *v, size_t vlen, uint64_t size,
                        uint64_t *start, uint64_t *len)
{
    static const char unit[] = "bytes=";
    const size_t ulen = sizeof(unit) - 1;
    uint64_t a, b;

    if (vlen < ulen || !pv_token_eq(v, ulen, unit))
        return 0;
    v += ulen;
    vlen -= ulen;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (memchr(v, ',', vlen))
        return 0; /* several ranges: we send the whole thing */
    const char *dash = memchr(v, '-', vlen);
    if (!dash)
        return 0;
    size_t alen = (size_t)(dash - v), blen = vlen - alen - 1;
    if (alen == 0) { /* suffix: the last n bytes */
        if (pv_parse_u64(dash + 1, blen, &b) < 0)
            return 0;
        if (b == 0 || size == 0)
            return -1;
        if (b > size)
            b = size;
        *start = size - b;
        *len = b;
        return 1;
    }
    if (pv_parse_u64(v, alen, &a) < 0)
        return 0;
    if (blen == 0) {
        b = UINT64_MAX;
    } else if (pv_parse_u64(dash + 1, blen, &b) < 0 || b < a) {
        return 0;
    }
    if (a >= size)
        return -1;
    if (b > size - 1)
        b = size - 1;
    *start = a;
    *len = b - a + 1;
    return 1;
}

/* The opaque-tag of an entity tag, without a W/ prefix. */
static void pv_etag_strip(const char **s, size_t *len)
{
    if (*len >= 2 && (*s)[0] == 'W' && (*s)[1] == '/') {
        *s += 2;
        *len -= 2;
    }
}

bool pv_http_etag_match(const char *list, size_t list_len, const char *etag,
                        size_t etag_len)
{
    size_t i = 0;

    pv_etag_strip(&etag, &etag_len);
    while (i < list_len) {
        while (i < list_len && (list[i] == ' ' || list[i] == '\t' ||
                                list[i] == ','))
            i++;
        if (i == list_len)
            break;
        const char *t = list + i;
        size_t j = i;
        if (list[j] == '*') {
            j++;
        } else {
            if (list[j] == 'W' && j + 1 < list_len && list[j + 1] == '/')
                j += 2;
            if (j < list_len && list[j] == '"') {
                j++;
                while (j < list_len && list[j] != '"')
                    j++;
                if (j < list_len)
                    j++;
            } else {
                while (j < list_len && list[j] != ',')
                    j++;
            }
        }
        size_t tlen = j - i;
        if (tlen == 1 && t[0] == '*')
            return true;
        pv_etag_strip(&t, &tlen);
        if (tlen == etag_len && tlen > 0 && memcmp(t, etag, tlen) == 0)
            return true;
        i = j;
    }
    return false;
}
