/*
 * segment.h — change-log segments: the replicated form of the change log
 * (src/store/store.h). A segment holds consecutive change entries; the S3
 * replicator writes one object a batch, PREFIX/log/FIRST-LAST.msgpack with
 * FIRST and LAST as 20-digit sequence numbers, and never rewrites it. A
 * restore reads the segments in order of FIRST and applies every entry
 * with a sequence above what it has (segments may overlap: a batch sent
 * again after a crash can end further on); a hole between them is an
 * error.
 *
 * The bytes are one msgpack array:
 *   ["pv-segment", 1, FIRST, LAST, [ENTRY...]]
 *   ENTRY = [seq, time_ms, kind, deleted, key, record]
 * with kind a string ("user", "photo", "video"), deleted a boolean, key
 * and record binaries (record empty for a delete). The records are the
 * store's own encoding (src/base/records.h). Pure: no I/O.
 */
#ifndef PV_SEGMENT_H
#define PV_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define PV_SEGMENT_FORMAT "pv-segment"
#define PV_SEGMENT_VERSION 1
#define PV_SEGMENT_KEY_MAX 64 /* "log/" + 20 + "-" + 20 + ".msgpack" + NUL */

typedef struct pv_segment pv_segment_t;

/* A segment being built. NULL on ENOMEM. */
pv_segment_t *pv_segment_new(void);
void pv_segment_free(pv_segment_t *s);
/* Append one entry; entries must come in ascending seq. 0, -ENOMEM, -EINVAL. */
int pv_segment_add(pv_segment_t *s, const pv_change_t *c);
/* Entries added, their first and last seq, the oldest entry's time. */
size_t pv_segment_count(const pv_segment_t *s);
uint64_t pv_segment_first(const pv_segment_t *s);
uint64_t pv_segment_last(const pv_segment_t *s);
int64_t pv_segment_first_time(const pv_segment_t *s);
/* The finished bytes (valid until the next add or free); NULL on ENOMEM. */
const void *pv_segment_bytes(pv_segment_t *s, size_t *len);
/* "log/FIRST-LAST.msgpack" for the entries added so far. */
void pv_segment_key(const pv_segment_t *s, char out[PV_SEGMENT_KEY_MAX]);

/* Read a segment: fn runs for each entry in order (its strings and
 * binaries point into buf); a non-zero return stops the walk and is
 * returned. -EINVAL for anything malformed (then fn may have run for the
 * entries before the fault: check first, or apply in one transaction);
 * first and last (may be NULL) are the header's. */
int pv_segment_read(const void *buf, size_t len, uint64_t *first, uint64_t *last,
                    int (*fn)(void *arg, const pv_change_t *c), void *arg);

#endif
