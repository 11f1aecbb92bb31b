/*
 * fuzz_segment.c — change-log segments as a restore reads them from S3
 * (src/store/segment.c): arbitrary bytes must be refused or walked
 * cleanly, and a segment that reads must be whole (the walk sees every
 * entry, in ascending order, within the header's first and last).
 */
#include "store/segment.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct walk {
    uint64_t prev, n;
} walk_t;

static int step(void *arg, const pv_change_t *c)
{
    walk_t *w = arg;
    if (w->n && c->seq <= w->prev)
        abort();
    if (c->del ? c->record.len != 0 : c->record.len == 0)
        abort();
    w->prev = c->seq;
    w->n++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t first = 0, last = 0;
    walk_t w = {0};
    if (pv_segment_read(data, size, &first, &last, step, &w) == 0) {
        if (w.n == 0 || first > last || w.prev != last)
            abort();
    }
    return 0;
}
