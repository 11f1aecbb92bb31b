/*
 * s3xml.h — the XML S3 answers with, read by a small pure parser: the
 * Error document, ListBucketResult (ListObjectsV2),
 * InitiateMultipartUploadResult, ListPartsResult and
 * CompleteMultipartUploadResult.
 *
 * pv_xml_parse walks a buffer and reports elements to a callback, h2o
 * style: no I/O, no allocation, lengths everywhere (the buffer need not
 * be NUL-terminated), so it can be fuzzed (tests/fuzz/fuzz_s3xml.c). It
 * takes the subset S3 writes: a prolog, comments and processing
 * instructions between elements, attributes (skipped), the five named
 * entities and numeric character references, UTF-8. It refuses what S3
 * never sends and a parser should not guess at: a DOCTYPE (so no entity
 * expansion), CDATA, text mixed with child elements, comments inside
 * text, control characters, bad UTF-8, more than one root. The
 * collectors on top allocate their lists (free them with the matching
 * _free) and bound them.
 *
 * Results: 0; -EINVAL malformed (or not the document asked for);
 * -EMSGSIZE deeper, longer or bigger than the bounds; -ENOENT the root is
 * another element (e.g. an Error where a result was expected); -ENOMEM.
 */
#ifndef PV_S3XML_H
#define PV_S3XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PV_XML_MAX_DEPTH 16
#define PV_XML_MAX_PATH  256      /* "Root/Child/Leaf" */
#define PV_S3_KEY_MAX    1024     /* S3's own limit, bytes of UTF-8 */
#define PV_S3_ETAG_MAX   80       /* "hex" or "hex-N", no quotes */
#define PV_S3_MAX_LIST   10000    /* objects a page, parts an upload */
#define PV_S3_MAX_PARTS  10000    /* S3's limit of parts an upload */

enum pv_xml_event {
    PV_XML_OPEN,  /* an element starts */
    PV_XML_TEXT,  /* a leaf element's raw text (escaped; maybe empty) */
    PV_XML_CLOSE, /* an element ends (after its TEXT, if a leaf) */
};

/* path: element names from the root joined by '/', NUL-terminated, valid
 * during the call; depth 1 is the root. Non-zero stops the parse and is
 * returned. */
typedef int (*pv_xml_fn)(void *arg, enum pv_xml_event ev, const char *path, int depth,
                         const char *text, size_t len);

int pv_xml_parse(const char *buf, size_t len, pv_xml_fn fn, void *arg);

/* Decodes raw text (from PV_XML_TEXT) into dst (cap bytes, NUL included):
 * the decoded length; -EMSGSIZE when it does not fit (unless cut: then
 * it is cut at a UTF-8 boundary); -EINVAL for a bad reference or a
 * decoded NUL. */
ssize_t pv_xml_text(const char *raw, size_t len, char *dst, size_t cap, bool cut);

/* ---- S3's documents ---- */

typedef struct pv_s3_error_doc {
    char code[64];       /* "NoSuchKey" */
    char message[256];   /* for people; cut to fit */
    char request_id[64]; /* RequestId */
} pv_s3_error_doc_t;

typedef struct pv_s3_object {
    char *key;                        /* decoded, NUL-terminated */
    int64_t size;                     /* bytes */
    char etag[PV_S3_ETAG_MAX];        /* quotes removed */
    char last_modified[32];           /* as S3 wrote it (RFC 3339) */
} pv_s3_object_t;

typedef struct pv_s3_listing {
    pv_s3_object_t *objects; /* in S3's order (UTF-8 binary order) */
    size_t n;                /* objects */
    bool truncated;          /* IsTruncated: ask again with next_token */
    char *next_token;        /* NextContinuationToken, NULL when none */
} pv_s3_listing_t;

typedef struct pv_s3_part {
    int number;                /* 1..10000 */
    int64_t size;              /* bytes */
    char etag[PV_S3_ETAG_MAX]; /* quotes removed: the part's MD5 in hex on
                                * AWS (without SSE-KMS) and on s3rver */
} pv_s3_part_t;

typedef struct pv_s3_parts {
    pv_s3_part_t *v;  /* by part number, as S3 lists them */
    size_t n;         /* parts */
    bool truncated;   /* IsTruncated: more after next_marker */
    int next_marker;  /* NextPartNumberMarker */
} pv_s3_parts_t;

/* An <Error> document. -ENOENT when the root is something else. */
int pv_s3xml_error(const char *buf, size_t len, pv_s3_error_doc_t *out);
/* ListBucketResult into out (zeroed first; free with pv_s3_listing_free,
 * also after an error). */
int pv_s3xml_listing(const char *buf, size_t len, pv_s3_listing_t *out);
void pv_s3_listing_free(pv_s3_listing_t *l);
/* ListPartsResult appended to out (so that pages add up; zero it before
 * the first); truncated and next_marker are the last page's. */
int pv_s3xml_parts(const char *buf, size_t len, pv_s3_parts_t *out);
void pv_s3_parts_free(pv_s3_parts_t *p);
/* InitiateMultipartUploadResult: its UploadId. */
int pv_s3xml_upload_id(const char *buf, size_t len, char *id, size_t cap);
/* CompleteMultipartUploadResult: its ETag, quotes removed. (S3 may answer
 * 200 with an <Error> instead: that is -ENOENT here; read it with
 * pv_s3xml_error.) */
int pv_s3xml_complete(const char *buf, size_t len, char etag[PV_S3_ETAG_MAX]);

#endif
