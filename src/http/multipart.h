/*
 * multipart.h — a streaming multipart/form-data parser (RFC 7578, RFC 2046).
 *
 * Pure: no I/O and no allocation; the parser lives in caller storage (about
 * 9 KiB, so put it in a request object rather than on a small stack). Feed
 * it the body in chunks of any size — byte by byte works, and a boundary
 * may straddle chunks. It calls back at each part's start (with its parsed
 * headers), for each run of the part's bytes, and at each part's end.
 *
 *   pv_multipart_t *mp = ...;
 *   char b[PV_MP_BOUNDARY_MAX + 1];
 *   if (pv_multipart_boundary(content_type, b, sizeof(b)) != 0) -> 400
 *   pv_multipart_init(mp, b, &callbacks, ctx);
 *   while (more) if ((rc = pv_multipart_feed(mp, buf, n)) != 0) -> error
 *   rc = pv_multipart_finish(mp);  0: the close delimiter was seen
 *
 * Results are 0 or a negative errno, and errors are sticky: -EINVAL for a
 * malformed body (bad headers, bytes after a boundary, truncated at
 * finish), -EMSGSIZE when a part's header block or the number of parts is
 * over the limit, or whatever negative value a callback returned. After an
 * error or a truncated body the open part gets no part_end: the caller
 * drops what it collected for it. The preamble and the epilogue are
 * ignored.
 */
#ifndef PV_MULTIPART_H
#define PV_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_MP_BOUNDARY_MAX 70   /* RFC 2046 */
#define PV_MP_HEADER_MAX 8192   /* one part's header block, CRLFs included */
#define PV_MP_MAX_PARTS 1000

/* A part's headers. Names and filenames are valid UTF-8 without control
 * characters (anything else is -EINVAL); longer ones are cut at a
 * character boundary. */
typedef struct pv_mp_part {
    char name[128];        /* Content-Disposition name= */
    char filename[256];    /* filename*= (RFC 5987, UTF-8) else filename= */
    bool has_filename;     /* either filename parameter was present */
    char content_type[64]; /* media type, lower case, no parameters; "" if absent */
} pv_mp_part_t;

/* Each returns 0 to go on, or a negative errno that stops the parser and
 * becomes its result. Any of them may be NULL. */
typedef struct pv_mp_callbacks {
    int (*part_begin)(void *ctx, const pv_mp_part_t *part);
    int (*part_data)(void *ctx, const void *data, size_t len);
    int (*part_end)(void *ctx);
} pv_mp_callbacks_t;

typedef struct pv_multipart {
    pv_mp_callbacks_t cb;               /* copied at init */
    void *ctx;                          /* passed to the callbacks */
    char delim[4 + PV_MP_BOUNDARY_MAX]; /* "\r\n--" boundary */
    size_t delim_len;
    size_t match;                       /* delimiter bytes matched (held back) */
    size_t lent;                        /* of those, leading CRLF bytes that
                                           were not data (see multipart.c) */
    int state;                          /* internal state machine */
    int err;                            /* sticky result, 0 while fine */
    int parts;                          /* parts begun so far */
    size_t hdr_len;                     /* bytes in hdr */
    pv_mp_part_t part;                  /* the part being parsed */
    char hdr[PV_MP_HEADER_MAX + 1];     /* the current header block */
} pv_multipart_t;

/* The boundary parameter of a "multipart/form-data; boundary=..." header
 * (quoted or not); out needs PV_MP_BOUNDARY_MAX + 1 bytes. 0 or -EINVAL
 * (another media type, no or a bad boundary). */
int pv_multipart_boundary(const char *content_type, char *out, size_t outlen);

/* 0 or -EINVAL for a boundary that is empty, too long or has characters
 * RFC 2046 does not allow. cb may be NULL. */
int pv_multipart_init(pv_multipart_t *mp, const char *boundary,
                      const pv_mp_callbacks_t *cb, void *ctx);
int pv_multipart_feed(pv_multipart_t *mp, const void *data, size_t len);
/* At the end of the body: 0 when the close delimiter was seen, -EINVAL when
 * the body stopped early, or the earlier error. */
int pv_multipart_finish(pv_multipart_t *mp);
bool pv_multipart_done(const pv_multipart_t *mp); /* close delimiter seen */
int pv_multipart_parts(const pv_multipart_t *mp); /* parts begun */

#endif
