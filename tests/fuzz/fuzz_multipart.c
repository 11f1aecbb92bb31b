/*
 * fuzz_multipart.c — libFuzzer target for the multipart parser.
 *
 * Input: an optional first line "multipart/form-data; boundary=..." (fed to
 * pv_multipart_boundary; boundary "b" when it is not one), then the body.
 * The body is parsed twice, whole and in pseudo-random chunk sizes drawn
 * from the input, and the two runs must see the same callbacks, data,
 * result and part count: chunking may never change what is parsed.
 */
#include "http/multipart.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct digest {
    uint64_t h; /* FNV-1a over every callback and byte */
    int begins, ends;
} digest_t;

static void mix(digest_t *d, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        d->h = (d->h ^ b[i]) * 0x100000001b3ULL;
}

static int on_begin(void *ctx, const pv_mp_part_t *p)
{
    digest_t *d = ctx;
    /* the fields are always terminated inside their arrays */
    if (!memchr(p->name, 0, sizeof(p->name)) ||
        !memchr(p->filename, 0, sizeof(p->filename)) ||
        !memchr(p->content_type, 0, sizeof(p->content_type)))
        abort();
    d->begins++;
    mix(d, "B", 1);
    mix(d, p->name, strlen(p->name) + 1);
    mix(d, p->filename, strlen(p->filename) + 1);
    mix(d, &p->has_filename, 1);
    mix(d, p->content_type, strlen(p->content_type) + 1);
    return 0;
}

static int on_data(void *ctx, const void *data, size_t len)
{
    if (len == 0)
        abort(); /* never called for nothing */
    mix(ctx, data, len);
    return 0;
}

static int on_end(void *ctx)
{
    digest_t *d = ctx;
    d->ends++;
    mix(d, "E", 1);
    return 0;
}

static const pv_mp_callbacks_t cbs = {on_begin, on_data, on_end};
static pv_multipart_t mp;

static int run(const char *boundary, const uint8_t *body, size_t len,
               uint32_t seed, digest_t *d)
{
    memset(d, 0, sizeof(*d));
    d->h = 0xcbf29ce484222325ULL;
    if (pv_multipart_init(&mp, boundary, &cbs, d) != 0)
        abort(); /* boundaries here are always valid */
    size_t off = 0;
    while (off < len) {
        size_t n = len - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % 64;
            if (n > len - off)
                n = len - off;
        }
        if (pv_multipart_feed(&mp, body + off, n) != 0)
            break;
        off += n;
    }
    int rc = pv_multipart_finish(&mp);
    if (pv_multipart_done(&mp) != (rc == 0))
        abort();
    if (d->ends > d->begins || d->begins > PV_MP_MAX_PARTS)
        abort();
    return rc * 100000 + pv_multipart_parts(&mp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[256], boundary[PV_MP_BOUNDARY_MAX + 1] = "b";
    const uint8_t *body = data;
    size_t len = size;
    const uint8_t *nl = memchr(data, '\n', size < sizeof(line) ? size : sizeof(line));

    if (nl) {
        size_t n = (size_t)(nl - data);
        memcpy(line, data, n);
        line[n] = '\0';
        char b[PV_MP_BOUNDARY_MAX + 1];
        if (pv_multipart_boundary(line, b, sizeof(b)) == 0) {
            strcpy(boundary, b);
            body = nl + 1;
            len = size - n - 1;
        }
    }
    uint32_t seed = 1;
    for (size_t i = 0; i < size && i < 8; i++)
        seed = seed * 31 + data[i];
    seed |= 1;

    digest_t whole, chunked;
    int r1 = run(boundary, body, len, 0, &whole);
    int r2 = run(boundary, body, len, seed, &chunked);
    if (r1 != r2 || whole.h != chunked.h || whole.begins != chunked.begins ||
        whole.ends != chunked.ends)
        abort();
    return 0;
}
