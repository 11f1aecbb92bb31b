/*
 * http_parse.h — pure HTTP/1.x request parsing: no I/O, no allocation.
 *
 * Modelled on h2o's picohttpparser: the caller hands in a buffer and an
 * array for the headers; the parser answers with the bytes used, or "need
 * more", or "bad". Results point into the caller's buffer. The chunked
 * decoder is an explicit state machine fed any split of the input, so the
 * server can run it straight over evbuffer segments. Both have a libFuzzer
 * target (tests/fuzz/fuzz_http_parse.c).
 */
#ifndef PV_HTTP_PARSE_H
#define PV_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PV_HTTP_MAX_HEADERS 64

/* Results of pv_http_parse_request (bytes used when >= 0). */
enum {
    PV_HTTP_PARSE_BAD = -1,        /* malformed: answer 400 */
    PV_HTTP_PARSE_PARTIAL = -2,    /* need more bytes */
    PV_HTTP_PARSE_TOO_LARGE = -3,  /* too many headers or a line too long: 431 */
};

typedef struct pv_http_hdr {
    const char *name;  /* points into the input, not NUL-terminated */
    size_t name_len;
    const char *value; /* leading and trailing blanks trimmed */
    size_t value_len;
} pv_http_hdr_t;

typedef struct pv_http_reqline {
    const char *method; /* upper-case token */
    size_t method_len;
    const char *target; /* origin-form ("/path?query") as sent */
    size_t target_len;
    int minor_version;  /* HTTP/1.0 -> 0, HTTP/1.1 -> 1 */
} pv_http_reqline_t;

/*
 * Parses the request line and headers at the start of buf[0..len).
 * hdrs has room for *num_headers entries; on success *num_headers is set to
 * the count. max_line bounds any one line (0: no bound).
 * Returns the head length (through the blank line), PV_HTTP_PARSE_PARTIAL,
 * PV_HTTP_PARSE_BAD or PV_HTTP_PARSE_TOO_LARGE. Malformed bytes are reported
 * as soon as they are seen, even before the head is complete.
 */
int pv_http_parse_request(const char *buf, size_t len, pv_http_reqline_t *rl,
                          pv_http_hdr_t *hdrs, size_t *num_headers,
                          size_t max_line);

/* What the headers say about framing and connection handling. */
typedef struct pv_http_framing {
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* after the version default and Connection */
    bool expect_continue;   /* Expect: 100-continue */
    bool expect_other;      /* an Expect we cannot meet: answer 417 */
} pv_http_framing_t;

/*
 * Reads framing from parsed headers. Returns 0, or -1 for a request that
 * must be refused with 400: a bad or conflicting Content-Length, any
 * Transfer-Encoding other than exactly "chunked", Transfer-Encoding with
 * Content-Length or on HTTP/1.0, a missing or repeated Host on HTTP/1.1.
 */
int pv_http_parse_framing(const pv_http_hdr_t *hdrs, size_t num_headers,
                          int minor_version, pv_http_framing_t *out);

/* Case-insensitive header name comparison against a NUL-terminated name. */
bool pv_http_hdr_is(const pv_http_hdr_t *h, const char *name);

/* ---- chunked transfer-coding decoder ---- */
typedef struct pv_http_chunked {
    int state;          /* internal */
    uint64_t remaining; /* data bytes left in the current chunk */
    uint32_t line_len;  /* bytes of the current size/trailer line */
    uint32_t trailer_bytes;
    int digits;
} pv_http_chunked_t;

void pv_http_chunked_init(pv_http_chunked_t *d);
/*
 * Feeds buf[0..len). Returns the bytes consumed (>= 0), or -1 on a framing
 * error. When the consumed bytes hold chunk data, *data and *data_len point at
 * it (at most one run per call; *data_len is 0 otherwise). Call again with
 * the rest until all is consumed or pv_http_chunked_done(). A call never
 * consumes past the end of the message.
 */
ssize_t pv_http_chunked_feed(pv_http_chunked_t *d, const char *buf, size_t len,
                             const char **data, size_t *data_len);
bool pv_http_chunked_done(const pv_http_chunked_t *d);

/* ---- small helpers shared with the server ----
 * (percent-decoding is pv_pct_decode, in base/text.h) */
/*
 * Range: bytes=... against a representation of `size` bytes. Returns 1 for
 * one satisfiable range (*start, *len), 0 when the header is to be ignored
 * and the whole representation sent (absent unit, bad syntax, several
 * ranges), or -1 when the range cannot be satisfied (416).
 */
int pv_http_parse_range(const char *v, size_t vlen, uint64_t size,
                        uint64_t *start, uint64_t *len);
/* If-None-Match value against an entity tag (quoted, maybe W/), with the
 * weak comparison RFC 9110 asks for; "*" matches any. */
bool pv_http_etag_match(const char *list, size_t list_len, const char *etag,
                        size_t etag_len);

#endif
