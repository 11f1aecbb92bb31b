/*
 * records.c — msgpack codecs for the records kept in the store.
 *
 * Each record kind is described once, by a table of fields (name, type,
 * where it lives in the C struct, required or not). One encoder and one
 * decoder walk those tables; the per-type work sits in a second table of
 * pack/unpack functions. schema/records.json repeats the same field lists
 * for the other consumers (SQL, DynamoDB, docs) and tests/unit/
 * test_records.c checks that the two agree, so a field added here without
 * the schema (or the other way round) fails the build's tests.
 *
 * Decoding is strict about what it knows and lenient about what it does
 * not: unknown keys are skipped (a newer pvd may add fields), but a known
 * key with the wrong msgpack type, an over-long string, a duplicate key or a
 * missing required key is -EINVAL. Input is first walked by a tiny header
 * scanner (pv_msgpack_check) that proves every declared array/map/str length
 * fits in the bytes that remain: msgpack-c allocates an array's slots as
 * soon as it reads the header, so five hostile bytes could otherwise ask it
 * for gigabytes.
 */
#include "base/records.h"
#include "base/pv.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* ---- field tables ---- */

enum rec_type {
    RT_U32,  /* uint32_t: positive int */
    RT_U64,  /* uint64_t: positive int */
    RT_I32,  /* int: any int in range */
    RT_TIME, /* int64_t ms; PV_TIME_NONE <-> nil */
    RT_BOOL, /* bool */
    RT_F64,  /* double: float64 (float32 accepted) */
    RT_STR,  /* char[size]: str of at most size-1 bytes, no NUL */
    RT_BIN,  /* uint8_t[size]: bin of exactly size bytes */
    RT_ENUM, /* int: str, one of names[] */
    RT_IDS,  /* uint8_t (*)[16] + uint32_t count: array of bin16 */
    RT_MAP,  /* nested struct: map described by a sub-kind */
    RT_COUNT
};

typedef struct rec_kind rec_kind_t;

typedef struct rec_field {
    const char *name;     /* msgpack key; also the schema's field name */
    uint8_t type;         /* enum rec_type */
    bool required;        /* absent -> -EINVAL */
    bool nullable;        /* RT_BIN: all-zero <-> nil */
    size_t off;           /* offsetof the member */
    size_t size;          /* RT_STR/RT_BIN: member size; RT_IDS: max count */
    size_t off2;          /* RT_IDS: offsetof the uint32_t count */
    const void *aux;      /* RT_ENUM: const char *const[size]; RT_MAP: kind */
} rec_field_t;

struct rec_kind {
    const char *name;
    uint32_t version;          /* written when the struct's v is 0 */
    size_t size;               /* sizeof the struct */
    const rec_field_t *fields;
    size_t n_fields;
};

#define F(st, name, type, req) \
    { #name, type, req, false, offsetof(st, name), sizeof(((st *)0)->name), 0, NULL }
#define F_NULL(st, name) \
    { #name, RT_BIN, false, true, offsetof(st, name), sizeof(((st *)0)->name), 0, NULL }

static const rec_field_t user_fields[] = {
    F(pv_user_t, v, RT_U32, true),
    F(pv_user_t, id, RT_BIN, true),
    F(pv_user_t, email, RT_STR, true),
    F(pv_user_t, pw_hash, RT_STR, true),
    F(pv_user_t, created_ms, RT_TIME, true),
    F(pv_user_t, disabled, RT_BOOL, false),
};

static const rec_field_t photo_fields[] = {
    F(pv_photo_t, v, RT_U32, true),
    F(pv_photo_t, id, RT_BIN, true),
    F(pv_photo_t, user_id, RT_BIN, true),
    F(pv_photo_t, filename, RT_STR, false),
    F(pv_photo_t, content_type, RT_STR, true),
    F(pv_photo_t, bytes, RT_U64, true),
    F(pv_photo_t, sha256, RT_BIN, true),
    F_NULL(pv_photo_t, thumb_sha256),
    F(pv_photo_t, width, RT_U32, false),
    F(pv_photo_t, height, RT_U32, false),
    F(pv_photo_t, orientation, RT_I32, false),
    F(pv_photo_t, taken_ms, RT_TIME, false),
    F(pv_photo_t, created_ms, RT_TIME, true),
};

static const rec_field_t token_fields[] = {
    F(pv_token_t, v, RT_U32, true),
    F(pv_token_t, user_id, RT_BIN, true),
    F(pv_token_t, family_id, RT_BIN, true),
    F(pv_token_t, spent, RT_BOOL, false),
    F(pv_token_t, created_ms, RT_TIME, true),
    F(pv_token_t, expires_ms, RT_TIME, true),
};

static const rec_field_t share_fields[] = {
    F(pv_share_t, v, RT_U32, true),
    F(pv_share_t, id, RT_BIN, true),
    F(pv_share_t, user_id, RT_BIN, true),
    F(pv_share_t, video_id, RT_BIN, true),
    F(pv_share_t, created_ms, RT_TIME, true),
    F(pv_share_t, expires_ms, RT_TIME, true),
    F(pv_share_t, pw_hash, RT_STR, false),
    F(pv_share_t, views, RT_U64, false),
};

static const rec_field_t video_opts_fields[] = {
    F(pv_video_opts_t, seconds_per_photo, RT_F64, false),
    F(pv_video_opts_t, transition, RT_STR, false),
    F(pv_video_opts_t, transition_seconds, RT_F64, false),
    F(pv_video_opts_t, resolution, RT_STR, false),
    F(pv_video_opts_t, aspect, RT_STR, false),
    F(pv_video_opts_t, fps, RT_I32, false),
    F(pv_video_opts_t, ken_burns, RT_BOOL, false),
};

static const rec_kind_t video_opts_kind = {
    "video_opts", 1, sizeof(pv_video_opts_t), video_opts_fields,
    PV_ARRAY_LEN(video_opts_fields),
};

/* Index = enum pv_video_status; these are also the API's names. */
static const char *const video_status_names[] = {
    "queued", "running", "ready", "failed", "cancelled",
};

static const rec_field_t video_fields[] = {
    F(pv_video_t, v, RT_U32, true),
    F(pv_video_t, id, RT_BIN, true),
    F(pv_video_t, user_id, RT_BIN, true),
    { "status", RT_ENUM, true, false, offsetof(pv_video_t, status),
      PV_ARRAY_LEN(video_status_names), 0, video_status_names },
    F(pv_video_t, progress, RT_F64, false),
    F(pv_video_t, error, RT_STR, false),
    F(pv_video_t, title, RT_STR, false),
    { "photo_ids", RT_IDS, false, false, offsetof(pv_video_t, photo_ids),
      PV_VIDEO_MAX_PHOTOS, offsetof(pv_video_t, n_photos), NULL },
    { "opts", RT_MAP, false, false, offsetof(pv_video_t, opts),
      sizeof(pv_video_opts_t), 0, &video_opts_kind },
    F(pv_video_t, created_ms, RT_TIME, true),
    F(pv_video_t, started_ms, RT_TIME, false),
    F(pv_video_t, finished_ms, RT_TIME, false),
    F(pv_video_t, duration_s, RT_F64, false),
    F(pv_video_t, width, RT_U32, false),
    F(pv_video_t, height, RT_U32, false),
    F(pv_video_t, bytes, RT_U64, false),
    F_NULL(pv_video_t, sha256),
    F_NULL(pv_video_t, poster_sha256),
};

#undef F
#undef F_NULL

static const rec_kind_t user_kind = {
    "user", 1, sizeof(pv_user_t), user_fields, PV_ARRAY_LEN(user_fields),
};
static const rec_kind_t photo_kind = {
    "photo", 1, sizeof(pv_photo_t), photo_fields, PV_ARRAY_LEN(photo_fields),
};
static const rec_kind_t token_kind = {
    "token", 1, sizeof(pv_token_t), token_fields, PV_ARRAY_LEN(token_fields),
};
static const rec_kind_t share_kind = {
    "share", 1, sizeof(pv_share_t), share_fields, PV_ARRAY_LEN(share_fields),
};
static const rec_kind_t video_kind = {
    "video", 1, sizeof(pv_video_t), video_fields, PV_ARRAY_LEN(video_fields),
};

/* The decoder tracks seen keys in a 32-bit mask. */
_Static_assert(PV_ARRAY_LEN(video_fields) <= 32, "too many fields for mask");

/* ---- per-type packing ---- */

#define AT(rec, f) ((char *)(rec) + (f)->off)
#define CAT(rec, f) ((const char *)(rec) + (f)->off)

static bool rec_all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static int pack_str_n(msgpack_packer *pk, const char *s, size_t n)
{
    if (msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n))
        return -ENOMEM;
    return 0;
}

static int pack_u32(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    uint32_t v;
    memcpy(&v, CAT(rec, f), sizeof(v));
    return msgpack_pack_uint32(pk, v) ? -ENOMEM : 0;
}

static int pack_u64(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    uint64_t v;
    memcpy(&v, CAT(rec, f), sizeof(v));
    return msgpack_pack_uint64(pk, v) ? -ENOMEM : 0;
}

static int pack_i32(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    int v;
    memcpy(&v, CAT(rec, f), sizeof(v));
    return msgpack_pack_int32(pk, v) ? -ENOMEM : 0;
}

static int pack_time(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    int64_t v;
    memcpy(&v, CAT(rec, f), sizeof(v));
    int rc = v == PV_TIME_NONE ? msgpack_pack_nil(pk) : msgpack_pack_int64(pk, v);
    return rc ? -ENOMEM : 0;
}

static int pack_bool(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    bool v;
    memcpy(&v, CAT(rec, f), sizeof(v));
    return (v ? msgpack_pack_true(pk) : msgpack_pack_false(pk)) ? -ENOMEM : 0;
}

static int pack_f64(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    double v;
    memcpy(&v, CAT(rec, f), sizeof(v));
    return msgpack_pack_double(pk, v) ? -ENOMEM : 0;
}

static int pack_str(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    const char *s = CAT(rec, f);
    size_t n = strnlen(s, f->size);
    if (n == f->size) /* not terminated inside its buffer */
        return -EINVAL;
    return pack_str_n(pk, s, n);
}

static int pack_bin(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    const uint8_t *p = (const uint8_t *)CAT(rec, f);
    if (f->nullable && rec_all_zero(p, f->size))
        return msgpack_pack_nil(pk) ? -ENOMEM : 0;
    if (msgpack_pack_bin(pk, f->size) ||
        msgpack_pack_bin_body(pk, p, f->size))
        return -ENOMEM;
    return 0;
}

static int pack_enum(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    const char *const *names = f->aux;
    int v;
    memcpy(&v, CAT(rec, f), sizeof(v));
    if (v < 0 || (size_t)v >= f->size)
        return -EINVAL;
    return pack_str_n(pk, names[v], strlen(names[v]));
}

static int pack_ids(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    const uint8_t(*ids)[PV_ID_LEN];
    uint32_t n;
    memcpy(&ids, CAT(rec, f), sizeof(ids));
    memcpy(&n, (const char *)rec + f->off2, sizeof(n));
    if (n > f->size || (n && !ids))
        return -EINVAL;
    if (msgpack_pack_array(pk, n))
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        if (msgpack_pack_bin(pk, PV_ID_LEN) ||
            msgpack_pack_bin_body(pk, ids[i], PV_ID_LEN))
            return -ENOMEM;
    return 0;
}

static int rec_pack(msgpack_packer *pk, const rec_kind_t *k, const void *rec);

static int pack_map(msgpack_packer *pk, const rec_field_t *f, const void *rec)
{
    return rec_pack(pk, f->aux, CAT(rec, f));
}

/* ---- per-type unpacking ---- */

static int unpack_uint(const msgpack_object *o, uint64_t max, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
        return -EINVAL;
    *out = o->via.u64;
    return 0;
}

static int unpack_int(const msgpack_object *o, int64_t min, int64_t max,
                      int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)max)
            return -EINVAL;
        *out = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER || o->via.i64 < min)
        return -EINVAL;
    *out = o->via.i64;
    return 0;
}

static int unpack_u32(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    uint64_t v;
    if (unpack_uint(o, UINT32_MAX, &v))
        return -EINVAL;
    uint32_t v32 = (uint32_t)v;
    memcpy(AT(rec, f), &v32, sizeof(v32));
    return 0;
}

static int unpack_u64(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    uint64_t v;
    if (unpack_uint(o, UINT64_MAX, &v))
        return -EINVAL;
    memcpy(AT(rec, f), &v, sizeof(v));
    return 0;
}

static int unpack_i32(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    int64_t v;
    if (unpack_int(o, INT32_MIN, INT32_MAX, &v))
        return -EINVAL;
    int v32 = (int)v;
    memcpy(AT(rec, f), &v32, sizeof(v32));
    return 0;
}

static int unpack_time(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    int64_t v = PV_TIME_NONE;
    if (o->type != MSGPACK_OBJECT_NIL && unpack_int(o, INT64_MIN, INT64_MAX, &v))
        return -EINVAL;
    memcpy(AT(rec, f), &v, sizeof(v));
    return 0;
}

static int unpack_bool(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return -EINVAL;
    bool v = o->via.boolean;
    memcpy(AT(rec, f), &v, sizeof(v));
    return 0;
}

static int unpack_f64(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    if (o->type != MSGPACK_OBJECT_FLOAT64 && o->type != MSGPACK_OBJECT_FLOAT32)
        return -EINVAL;
    double v = o->via.f64;
    memcpy(AT(rec, f), &v, sizeof(v));
    return 0;
}

static int unpack_str(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= f->size)
        return -EINVAL;
    if (memchr(o->via.str.ptr, '\0', o->via.str.size))
        return -EINVAL; /* would be cut short as a C string */
    char *dst = AT(rec, f);
    memcpy(dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = '\0';
    return 0;
}

static int unpack_bin(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    if (f->nullable && o->type == MSGPACK_OBJECT_NIL) {
        memset(AT(rec, f), 0, f->size);
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != f->size)
        return -EINVAL;
    memcpy(AT(rec, f), o->via.bin.ptr, f->size);
    return 0;
}

static int unpack_enum(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    const char *const *names = f->aux;
    if (o->type != MSGPACK_OBJECT_STR)
        return -EINVAL;
    for (size_t i = 0; i < f->size; i++) {
        if (strlen(names[i]) == o->via.str.size &&
            memcmp(names[i], o->via.str.ptr, o->via.str.size) == 0) {
            int v = (int)i;
            memcpy(AT(rec, f), &v, sizeof(v));
            return 0;
        }
    }
    return -EINVAL;
}

static int unpack_ids(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > f->size)
        return -EINVAL;
    uint32_t n = o->via.array.size;
    uint8_t(*ids)[PV_ID_LEN] = NULL;
    if (n) {
        ids = pv_fail("records_ids") ? NULL : malloc((size_t)n * PV_ID_LEN);
        if (!ids)
            return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_BIN || e->via.bin.size != PV_ID_LEN) {
            free(ids);
            return -EINVAL;
        }
        memcpy(ids[i], e->via.bin.ptr, PV_ID_LEN);
    }
    memcpy(AT(rec, f), &ids, sizeof(ids));
    memcpy((char *)rec + f->off2, &n, sizeof(n));
    return 0;
}

static int rec_unpack(const msgpack_object *o, const rec_kind_t *k, void *rec);

static int unpack_map(const msgpack_object *o, const rec_field_t *f, void *rec)
{
    return rec_unpack(o, f->aux, AT(rec, f));
}

/* How each type is written and read: the dispatch table. */
static const struct {
    int (*pack)(msgpack_packer *pk, const rec_field_t *f, const void *rec);
    int (*unpack)(const msgpack_object *o, const rec_field_t *f, void *rec);
} rec_ops[RT_COUNT] = {
    [RT_U32] = { pack_u32, unpack_u32 },
    [RT_U64] = { pack_u64, unpack_u64 },
    [RT_I32] = { pack_i32, unpack_i32 },
    [RT_TIME] = { pack_time, unpack_time },
    [RT_BOOL] = { pack_bool, unpack_bool },
    [RT_F64] = { pack_f64, unpack_f64 },
    [RT_STR] = { pack_str, unpack_str },
    [RT_BIN] = { pack_bin, unpack_bin },
    [RT_ENUM] = { pack_enum, unpack_enum },
    [RT_IDS] = { pack_ids, unpack_ids },
    [RT_MAP] = { pack_map, unpack_map },
};

/* ---- walking a kind ---- */

static int rec_pack(msgpack_packer *pk, const rec_kind_t *k, const void *rec)
{
    if (msgpack_pack_map(pk, k->n_fields))
        return -ENOMEM;
    for (size_t i = 0; i < k->n_fields; i++) {
        const rec_field_t *f = &k->fields[i];
        int rc = pack_str_n(pk, f->name, strlen(f->name));
        if (rc == 0)
            rc = rec_ops[f->type].pack(pk, f, rec);
        if (rc)
            return rc;
    }
    return 0;
}

static const rec_field_t *rec_field_find(const rec_kind_t *k,
                                         const msgpack_object *key, size_t *idx)
{
    if (key->type != MSGPACK_OBJECT_STR)
        return NULL;
    for (size_t i = 0; i < k->n_fields; i++) {
        const char *name = k->fields[i].name;
        if (strlen(name) == key->via.str.size &&
            memcmp(name, key->via.str.ptr, key->via.str.size) == 0) {
            *idx = i;
            return &k->fields[i];
        }
    }
    return NULL;
}

/* Absent optional fields keep their zero, except times: "not set". */
static int rec_defaults(const rec_kind_t *k, void *rec, uint32_t seen)
{
    for (size_t i = 0; i < k->n_fields; i++) {
        const rec_field_t *f = &k->fields[i];
        if (seen & (1u << i))
            continue;
        if (f->required)
            return -EINVAL;
        if (f->type == RT_TIME) {
            int64_t none = PV_TIME_NONE;
            memcpy(AT(rec, f), &none, sizeof(none));
        }
    }
    return 0;
}

/* On failure the caller frees whatever RT_IDS fields were set (they are
 * zeroed first, so that is always safe). */
static int rec_unpack(const msgpack_object *o, const rec_kind_t *k, void *rec)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return -EINVAL;
    uint32_t seen = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            return -EINVAL;
        size_t idx;
        const rec_field_t *f = rec_field_find(k, &kv->key, &idx);
        if (!f)
            continue; /* a field from a newer version */
        if (seen & (1u << idx))
            return -EINVAL; /* duplicate key */
        seen |= 1u << idx;
        int rc = rec_ops[f->type].unpack(&kv->val, f, rec);
        if (rc)
            return rc;
    }
    return rec_defaults(k, rec, seen);
}

/* ---- the header scanner ---- */

/* Headers of the 0xc0..0xdf tags: total header bytes, where the length
 * field sits and how wide it is, and what the length counts. */
enum { MP_BAD, MP_SCALAR, MP_RAW, MP_ARRAY, MP_MAP };
static const struct {
    uint8_t hlen, len_size, what;
} mp_tags[32] = {
    [0x00] = { 1, 0, MP_SCALAR }, /* nil */
    [0x01] = { 0, 0, MP_BAD },    /* never used */
    [0x02] = { 1, 0, MP_SCALAR }, /* false */
    [0x03] = { 1, 0, MP_SCALAR }, /* true */
    [0x04] = { 2, 1, MP_RAW },    /* bin 8 */
    [0x05] = { 3, 2, MP_RAW },    /* bin 16 */
    [0x06] = { 5, 4, MP_RAW },    /* bin 32 */
    [0x07] = { 3, 1, MP_RAW },    /* ext 8: len, type */
    [0x08] = { 4, 2, MP_RAW },    /* ext 16 */
    [0x09] = { 6, 4, MP_RAW },    /* ext 32 */
    [0x0a] = { 5, 0, MP_SCALAR }, /* float 32 */
    [0x0b] = { 9, 0, MP_SCALAR }, /* float 64 */
    [0x0c] = { 2, 0, MP_SCALAR }, /* uint 8 */
    [0x0d] = { 3, 0, MP_SCALAR },
    [0x0e] = { 5, 0, MP_SCALAR },
    [0x0f] = { 9, 0, MP_SCALAR },
    [0x10] = { 2, 0, MP_SCALAR }, /* int 8 */
    [0x11] = { 3, 0, MP_SCALAR },
    [0x12] = { 5, 0, MP_SCALAR },
    [0x13] = { 9, 0, MP_SCALAR },
    [0x14] = { 3, 0, MP_SCALAR }, /* fixext 1: type + 1 */
    [0x15] = { 4, 0, MP_SCALAR },
    [0x16] = { 6, 0, MP_SCALAR },
    [0x17] = { 10, 0, MP_SCALAR },
    [0x18] = { 18, 0, MP_SCALAR },
    [0x19] = { 2, 1, MP_RAW },    /* str 8 */
    [0x1a] = { 3, 2, MP_RAW },
    [0x1b] = { 5, 4, MP_RAW },
    [0x1c] = { 3, 2, MP_ARRAY },  /* array 16 */
    [0x1d] = { 5, 4, MP_ARRAY },
    [0x1e] = { 3, 2, MP_MAP },    /* map 16 */
    [0x1f] = { 5, 4, MP_MAP },
};

/* One object header at p: its header size, what it is and its count. */
static int mp_head(const uint8_t *p, size_t left, size_t *hlen, int *what,
                   uint64_t *n)
{
    uint8_t b = p[0];
    *n = 0;
    *hlen = 1;
    if (b <= 0x7f || b >= 0xe0) {
        *what = MP_SCALAR;
    } else if (b <= 0x8f) {
        *what = MP_MAP, *n = b & 0x0f;
    } else if (b <= 0x9f) {
        *what = MP_ARRAY, *n = b & 0x0f;
    } else if (b <= 0xbf) {
        *what = MP_RAW, *n = b & 0x1f;
    } else {
        const unsigned t = b - 0xc0u;
        *what = mp_tags[t].what;
        *hlen = mp_tags[t].hlen;
        if (*what == MP_BAD || *hlen > left)
            return -EINVAL;
        for (unsigned i = 0; i < mp_tags[t].len_size; i++)
            *n = *n << 8 | p[1 + i];
    }
    return 0;
}

/* Records nest three levels deep (record, opts / photo_ids, value); allow
 * some room for fields of newer versions, and no more. */
#define MP_MAX_DEPTH 8

/* 0 when buf is exactly one well-formed msgpack object, nested at most
 * MP_MAX_DEPTH deep, whose every declared length fits in the bytes that
 * follow it. No allocation. */
int pv_msgpack_check(const uint8_t *buf, size_t len)
{
    uint64_t left[MP_MAX_DEPTH]; /* items still to read, per open level */
    uint64_t pending = 1;        /* all of them; each needs >= 1 byte */
    int depth = 0;
    size_t pos = 0;
    left[0] = 1;
    while (depth >= 0) {
        if (left[depth] == 0) {
            depth--;
            continue;
        }
        if (pos >= len)
            return -EINVAL;
        size_t hlen;
        int what;
        uint64_t n;
        if (mp_head(buf + pos, len - pos, &hlen, &what, &n))
            return -EINVAL;
        pos += hlen;
        left[depth]--;
        pending--;
        if (what == MP_RAW) {
            if (n > len - pos)
                return -EINVAL;
            pos += (size_t)n;
        } else if ((what == MP_ARRAY || what == MP_MAP) && n > 0) {
            if (depth + 1 >= MP_MAX_DEPTH)
                return -EINVAL;
            left[++depth] = what == MP_MAP ? 2 * n : n;
            pending += left[depth];
        }
        if (pending > len - pos)
            return -EINVAL;
    }
    return pos == len ? 0 : -EINVAL;
}

/* ---- entry points ---- */

static int rec_encode(const rec_kind_t *k, const void *rec, char **out,
                      size_t *len)
{
    *out = NULL;
    *len = 0;
    if (pv_fail("records_encode"))
        return -ENOMEM;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rc = rec_pack(&pk, k, rec);
    if (rc) {
        msgpack_sbuffer_destroy(&sb);
        return rc;
    }
    *len = sb.size;
    *out = msgpack_sbuffer_release(&sb);
    return 0;
}

/* The v field comes first in every table; 0 means "the current one". */
static int rec_encode_versioned(const rec_kind_t *k, const void *rec,
                                uint32_t v, char **out, size_t *len)
{
    if (v != 0)
        return rec_encode(k, rec, out, len);
    /* Encode a copy with v filled in; records are small. */
    char copy[sizeof(pv_video_t) > sizeof(pv_photo_t) ? sizeof(pv_video_t)
                                                      : sizeof(pv_photo_t)];
    _Static_assert(sizeof(pv_user_t) <= sizeof(copy), "copy too small");
    _Static_assert(sizeof(pv_token_t) <= sizeof(copy), "copy too small");
    memcpy(copy, rec, k->size);
    memcpy(copy + k->fields[0].off, &k->version, sizeof(uint32_t));
    return rec_encode(k, copy, out, len);
}

static int rec_decode(const rec_kind_t *k, const void *buf, size_t len,
                      void *rec)
{
    memset(rec, 0, k->size);
    if (!buf || pv_msgpack_check(buf, len))
        return -EINVAL;
    if (pv_fail("records_decode"))
        return -ENOMEM;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc;
    switch (msgpack_unpack_next(&up, buf, len, &off)) {
    case MSGPACK_UNPACK_SUCCESS:
        rc = off == len ? rec_unpack(&up.data, k, rec) : -EINVAL;
        break;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        rc = -ENOMEM;
        break;
    default:
        rc = -EINVAL;
        break;
    }
    msgpack_unpacked_destroy(&up);
    uint32_t v;
    memcpy(&v, (char *)rec + k->fields[0].off, sizeof(v));
    if (rc == 0 && v == 0)
        rc = -EINVAL; /* versions start at 1 */
    return rc;
}

int pv_user_encode(const pv_user_t *u, char **out, size_t *len)
{
    return rec_encode_versioned(&user_kind, u, u->v, out, len);
}

int pv_user_decode(const void *buf, size_t len, pv_user_t *u)
{
    int rc = rec_decode(&user_kind, buf, len, u);
    if (rc)
        memset(u, 0, sizeof(*u));
    return rc;
}

int pv_photo_encode(const pv_photo_t *p, char **out, size_t *len)
{
    return rec_encode_versioned(&photo_kind, p, p->v, out, len);
}

int pv_photo_decode(const void *buf, size_t len, pv_photo_t *p)
{
    int rc = rec_decode(&photo_kind, buf, len, p);
    if (rc)
        memset(p, 0, sizeof(*p));
    return rc;
}

int pv_token_encode(const pv_token_t *t, char **out, size_t *len)
{
    return rec_encode_versioned(&token_kind, t, t->v, out, len);
}

int pv_token_decode(const void *buf, size_t len, pv_token_t *t)
{
    int rc = rec_decode(&token_kind, buf, len, t);
    if (rc)
        memset(t, 0, sizeof(*t));
    return rc;
}

int pv_share_encode(const pv_share_t *s, char **out, size_t *len)
{
    return rec_encode_versioned(&share_kind, s, s->v, out, len);
}

int pv_share_decode(const void *buf, size_t len, pv_share_t *s)
{
    int rc = rec_decode(&share_kind, buf, len, s);
    if (rc)
        memset(s, 0, sizeof(*s));
    return rc;
}

int pv_video_encode(const pv_video_t *v, char **out, size_t *len)
{
    return rec_encode_versioned(&video_kind, v, v->v, out, len);
}

int pv_video_decode(const void *buf, size_t len, pv_video_t *v)
{
    int rc = rec_decode(&video_kind, buf, len, v);
    if (rc)
        pv_video_clear(v);
    return rc;
}

void pv_video_clear(pv_video_t *v)
{
    free(v->photo_ids);
    memset(v, 0, sizeof(*v));
}

const char *pv_video_status_name(int status)
{
    if (status < 0 || (size_t)status >= PV_ARRAY_LEN(video_status_names))
        return "unknown";
    return video_status_names[status];
}

int pv_record_blobs(const char *kind, const void *rec, size_t len, uint8_t out[2][32])
{
    if (!strcmp(kind, "photo")) {
        pv_photo_t p;
        if (pv_photo_decode(rec, len, &p) < 0)
            return -EINVAL;
        memcpy(out[0], p.sha256, 32);
        memcpy(out[1], p.thumb_sha256, 32);
        return 2;
    }
    if (!strcmp(kind, "video")) {
        pv_video_t v;
        if (pv_video_decode(rec, len, &v) < 0)
            return -EINVAL;
        int n = 0;
        if (v.status == PV_VIDEO_READY) {
            memcpy(out[n++], v.sha256, 32);
            memcpy(out[n++], v.poster_sha256, 32);
        }
        pv_video_clear(&v);
        return n;
    }
    return 0;
}
