/*
 * fuzz_s3xml.c — libFuzzer target for the XML reader S3's answers go
 * through (src/cloud/s3xml.c): they come over the network, from AWS or
 * from whatever answers at the configured endpoint.
 *
 * The whole input goes to pv_xml_parse with a callback that checks the
 * event stream (OPEN and CLOSE balanced, depth and path in step, TEXT
 * only just before its element's CLOSE, every text decodable and never
 * longer decoded than raw), then to each of S3's document readers, whose
 * results must hold what the header promises (keys of valid UTF-8 within
 * S3's limit, part numbers in 1..10000, sizes not negative, NUL-terminated
 * fields), with no leak on any path.
 */
#include "cloud/s3xml.h"

#include "base/text.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct walk {
    int depth;          /* open elements, as we count them */
    bool text_pending;  /* a TEXT was seen: CLOSE must come next */
    char dec[1 << 16];  /* decoded text */
} walk_t;

static int walk_cb(void *arg, enum pv_xml_event ev, const char *path, int depth, const char *text,
                   size_t len)
{
    walk_t *w = arg;
    size_t plen = strnlen(path, PV_XML_MAX_PATH);
    if (plen == PV_XML_MAX_PATH || plen == 0 || depth < 1 || depth > PV_XML_MAX_DEPTH)
        abort();
    if (ev == PV_XML_OPEN) {
        if (w->text_pending || depth != w->depth + 1)
            abort();
        w->depth = depth;
    } else if (ev == PV_XML_TEXT) {
        if (w->text_pending || depth != w->depth || (len && !text))
            abort();
        ssize_t n = pv_xml_text(text, len, w->dec, sizeof(w->dec), true);
        if (n < 0 || (size_t)n > len || strlen(w->dec) != (size_t)n)
            abort(); /* the reader checked this text: it must decode */
        w->text_pending = true;
    } else {
        if (depth != w->depth)
            abort();
        w->depth--;
        w->text_pending = false;
    }
    return 0;
}

static void check_str(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n == size)
        abort();
    for (size_t i = 0; i < n;) {
        size_t l = pv_utf8_len((const unsigned char *)s + i, n - i);
        if (l == 0)
            abort();
        i += l;
    }
}

static void check_results(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    pv_s3_error_doc_t e;
    if (pv_s3xml_error(buf, size, &e) == 0 && !e.code[0])
        abort();
    check_str(e.code, sizeof(e.code));
    check_str(e.message, sizeof(e.message));

    pv_s3_listing_t l;
    int rc = pv_s3xml_listing(buf, size, &l);
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        if (!l.objects[i].key || l.objects[i].size < 0 ||
            strlen(l.objects[i].key) > PV_S3_KEY_MAX)
            abort();
        check_str(l.objects[i].key, PV_S3_KEY_MAX + 1);
        check_str(l.objects[i].etag, sizeof(l.objects[i].etag));
    }
    if (rc == 0 && l.truncated && !l.next_token)
        abort();
    pv_s3_listing_free(&l);

    pv_s3_parts_t p = {0};
    rc = pv_s3xml_parts(buf, size, &p);
    /* a second page appends to the first */
    size_t first = p.n;
    if (rc == 0 && pv_s3xml_parts(buf, size, &p) == 0 && p.n != 2 * first)
        abort();
    for (size_t i = 0; rc == 0 && i < p.n; i++)
        if (p.v[i].number < 1 || p.v[i].number > PV_S3_MAX_PARTS || p.v[i].size < 0)
            abort();
    pv_s3_parts_free(&p);

    char id[64], etag[PV_S3_ETAG_MAX];
    if (pv_s3xml_upload_id(buf, size, id, sizeof(id)) == 0 && !id[0])
        abort();
    if (pv_s3xml_complete(buf, size, etag) == 0)
        check_str(etag, sizeof(etag));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static walk_t w;
    w.depth = 0;
    w.text_pending = false;
    int rc = pv_xml_parse((const char *)data, size, walk_cb, &w);
    if (rc != 0 && rc != -EINVAL && rc != -EMSGSIZE)
        abort();
    if (rc == 0 && w.depth != 0)
        abort(); /* a parse that succeeds closed everything it opened */
    check_results(data, size);
    return 0;
}
