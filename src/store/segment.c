/*
 * segment.c — change-log segments (segment.h): built with msgpack-c's
 * packer into a growing buffer, read with its unpacker over the whole
 * buffer (a segment is at most sync_batch entries: a few MB).
 */
#include "store/segment.h"
#include "base/records.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pv_segment {
    msgpack_sbuffer entries;  /* the packed entries */
    msgpack_sbuffer whole;    /* header + entries, made by pv_segment_bytes */
    size_t n;
    uint64_t first, last;
    int64_t first_time;
    bool oom;
};

pv_segment_t *pv_segment_new(void)
{
    pv_segment_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    msgpack_sbuffer_init(&s->entries);
    msgpack_sbuffer_init(&s->whole);
    return s;
}

void pv_segment_free(pv_segment_t *s)
{
    if (!s)
        return;
    msgpack_sbuffer_destroy(&s->entries);
    msgpack_sbuffer_destroy(&s->whole);
    free(s);
}

int pv_segment_add(pv_segment_t *s, const pv_change_t *c)
{
    if (s->n && c->seq <= s->last)
        return -EINVAL;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->entries, msgpack_sbuffer_write);
    size_t klen = strlen(c->kind);
    int rc = msgpack_pack_array(&pk, 6);
    rc |= msgpack_pack_uint64(&pk, c->seq);
    rc |= msgpack_pack_int64(&pk, c->time_ms);
    rc |= msgpack_pack_str(&pk, klen);
    rc |= msgpack_pack_str_body(&pk, c->kind, klen);
    rc |= c->del ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    rc |= msgpack_pack_bin(&pk, c->key.len);
    rc |= msgpack_pack_bin_body(&pk, c->key.data, c->key.len);
    rc |= msgpack_pack_bin(&pk, c->del ? 0 : c->record.len);
    if (!c->del)
        rc |= msgpack_pack_bin_body(&pk, c->record.data, c->record.len);
    if (rc != 0) {
        s->oom = true;
        return -ENOMEM;
    }
    if (s->n++ == 0) {
        s->first = c->seq;
        s->first_time = c->time_ms;
    }
    s->last = c->seq;
    return 0;
}

size_t pv_segment_count(const pv_segment_t *s) { return s->n; }
uint64_t pv_segment_first(const pv_segment_t *s) { return s->first; }
uint64_t pv_segment_last(const pv_segment_t *s) { return s->last; }
int64_t pv_segment_first_time(const pv_segment_t *s) { return s->first_time; }

const void *pv_segment_bytes(pv_segment_t *s, size_t *len)
{
    if (s->oom)
        return NULL;
    msgpack_sbuffer_clear(&s->whole);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->whole, msgpack_sbuffer_write);
    size_t flen = strlen(PV_SEGMENT_FORMAT);
    int rc = msgpack_pack_array(&pk, 5);
    rc |= msgpack_pack_str(&pk, flen);
    rc |= msgpack_pack_str_body(&pk, PV_SEGMENT_FORMAT, flen);
    rc |= msgpack_pack_int(&pk, PV_SEGMENT_VERSION);
    rc |= msgpack_pack_uint64(&pk, s->first);
    rc |= msgpack_pack_uint64(&pk, s->last);
    rc |= msgpack_pack_array(&pk, (uint32_t)s->n);
    if (rc == 0 && s->entries.size)
        rc = msgpack_sbuffer_write(&s->whole, s->entries.data, s->entries.size);
    if (rc != 0)
        return NULL;
    *len = s->whole.size;
    return s->whole.data;
}

void pv_segment_key(const pv_segment_t *s, char out[PV_SEGMENT_KEY_MAX])
{
    snprintf(out, PV_SEGMENT_KEY_MAX, "log/%020" PRIu64 "-%020" PRIu64 ".msgpack", s->first,
             s->last);
}

/* ---- reading ---- */

static bool as_u64(const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = o->via.u64;
    return true;
}

static bool as_i64(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return true;
    }
    return false;
}

static bool is_str(const msgpack_object *o, const char *want)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(want) &&
           memcmp(o->via.str.ptr, want, o->via.str.size) == 0;
}

/* One entry into c; the kind must be one the store logs. */
static bool entry(const msgpack_object *o, pv_change_t *c)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 6)
        return false;
    const msgpack_object *f = o->via.array.ptr;
    static const char *const kinds[] = {"user", "photo", "video", "share"};
    c->kind = NULL;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (is_str(&f[2], kinds[i]))
            c->kind = kinds[i];
    if (!as_u64(&f[0], &c->seq) || !as_i64(&f[1], &c->time_ms) || !c->kind ||
        f[3].type != MSGPACK_OBJECT_BOOLEAN || f[4].type != MSGPACK_OBJECT_BIN ||
        f[5].type != MSGPACK_OBJECT_BIN || f[4].via.bin.size == 0)
        return false;
    c->del = f[3].via.boolean;
    c->key.data = f[4].via.bin.ptr;
    c->key.len = f[4].via.bin.size;
    c->record.data = f[5].via.bin.ptr;
    c->record.len = f[5].via.bin.size;
    return c->del ? c->record.len == 0 : c->record.len > 0;
}

int pv_segment_read(const void *buf, size_t len, uint64_t *first, uint64_t *last,
                    int (*fn)(void *arg, const pv_change_t *c), void *arg)
{
    if (!buf || pv_msgpack_check(buf, len) < 0) /* headers that fit the bytes */
        return -EINVAL;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096))
        return -ENOMEM;
    msgpack_object root;
    size_t off = 0;
    int rc = -EINVAL;
    msgpack_unpack_return ur = msgpack_unpack((const char *)buf, len, &off, &zone, &root);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
        rc = -ENOMEM;
        goto out;
    }
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || root.type != MSGPACK_OBJECT_ARRAY ||
        root.via.array.size != 5)
        goto out;
    const msgpack_object *h = root.via.array.ptr;
    uint64_t f, l, version;
    if (!is_str(&h[0], PV_SEGMENT_FORMAT) || !as_u64(&h[1], &version) ||
        version != PV_SEGMENT_VERSION || !as_u64(&h[2], &f) || !as_u64(&h[3], &l) || f > l ||
        h[4].type != MSGPACK_OBJECT_ARRAY || h[4].via.array.size == 0)
        goto out;
    const msgpack_object_array *e = &h[4].via.array;
    /* Check every entry first: fn sees a segment whole or not at all. */
    pv_change_t c;
    uint64_t prev = 0;
    for (uint32_t i = 0; i < e->size; i++) {
        if (!entry(&e->ptr[i], &c) || (i == 0 ? c.seq != f : c.seq <= prev) ||
            (i == e->size - 1 && c.seq != l))
            goto out;
        prev = c.seq;
    }
    if (first)
        *first = f;
    if (last)
        *last = l;
    rc = 0;
    for (uint32_t i = 0; fn && rc == 0 && i < e->size; i++) {
        entry(&e->ptr[i], &c);
        rc = fn(arg, &c);
    }
out:
    msgpack_zone_destroy(&zone);
    return rc;
}
