/*
 * test_records.c — the record codecs against schema/records.json.
 *
 * The schema is the single source of every record's fields, so the checks
 * here are driven by it: each encoder must write exactly the schema's
 * field names, each value with the msgpack type the schema's type names;
 * string limits must be what the schema says; every required field must be
 * required and every optional one optional; wrong types, truncated input,
 * trailing bytes, duplicate keys and garbage must fail cleanly; round trips
 * must be lossless.
 */
#include "base/records.h"
#include "base/pv.h"
#include "t.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdlib.h>

/* ---------------- one adapter per record kind ---------------- */

typedef union any_rec {
    pv_user_t user;
    pv_photo_t photo;
    pv_token_t token;
    pv_share_t share;
    pv_video_t video;
} any_rec_t;

typedef struct kind {
    const char *name;
    void (*fill)(any_rec_t *r, int variant);
    int (*enc)(const any_rec_t *r, char **out, size_t *len);
    int (*dec)(const void *buf, size_t len, any_rec_t *r);
    bool (*equal)(const any_rec_t *a, const any_rec_t *b);
    void (*clear)(any_rec_t *r);
} kind_t;

static void fill_id(uint8_t *id, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        id[i] = (uint8_t)(seed * 31 + (int)i * 7 + 1);
}

/* variant 0: every field set to something non-default; variant 1: the
 * "empty" values (times unset, hashes zero, strings empty). */
static void fill_user(any_rec_t *r, int variant)
{
    pv_user_t *u = &r->user;
    memset(u, 0, sizeof(*u));
    u->v = 1;
    fill_id(u->id, sizeof(u->id), 1);
    snprintf(u->email, sizeof(u->email), "%s", variant ? "a@b" : "someone@example.com");
    snprintf(u->pw_hash, sizeof(u->pw_hash), "$argon2id$v=19$m=65536,t=2,p=1$abc$def");
    u->created_ms = 1764350406123;
    u->disabled = !variant;
}

static void fill_photo(any_rec_t *r, int variant)
{
    pv_photo_t *p = &r->photo;
    memset(p, 0, sizeof(*p));
    p->v = 1;
    fill_id(p->id, sizeof(p->id), 2);
    fill_id(p->user_id, sizeof(p->user_id), 3);
    snprintf(p->filename, sizeof(p->filename), "%s", variant ? "" : "IMG_0001.HEIC");
    snprintf(p->content_type, sizeof(p->content_type), "image/heic");
    p->bytes = variant ? 0 : 5000000000ull;
    fill_id(p->sha256, sizeof(p->sha256), 4);
    if (!variant)
        fill_id(p->thumb_sha256, sizeof(p->thumb_sha256), 5);
    p->width = variant ? 0 : 4032;
    p->height = 3024;
    p->orientation = variant ? 1 : -6; /* any int survives */
    p->taken_ms = variant ? PV_TIME_NONE : -86400000; /* before 1970 */
    p->created_ms = 1764350406123;
}

static void fill_token(any_rec_t *r, int variant)
{
    pv_token_t *t = &r->token;
    memset(t, 0, sizeof(*t));
    t->v = variant ? 7 : 1; /* a newer version still decodes */
    fill_id(t->user_id, sizeof(t->user_id), 6);
    fill_id(t->family_id, sizeof(t->family_id), 7);
    t->spent = !variant;
    t->created_ms = 1764350406123;
    t->expires_ms = INT64_MAX;
}

static uint8_t g_ids[PV_VIDEO_MAX_PHOTOS][PV_ID_LEN];

static void fill_video(any_rec_t *r, int variant)
{
    pv_video_t *v = &r->video;
    memset(v, 0, sizeof(*v));
    v->v = 1;
    fill_id(v->id, sizeof(v->id), 8);
    fill_id(v->user_id, sizeof(v->user_id), 9);
    v->status = variant ? PV_VIDEO_QUEUED : PV_VIDEO_READY;
    v->progress = variant ? 0 : 1.0;
    snprintf(v->error, sizeof(v->error), "%s", variant ? "" : "no space left");
    snprintf(v->title, sizeof(v->title), "%s", variant ? "" : "Summer \xc3\xa9t\xc3\xa9");
    for (int i = 0; i < PV_VIDEO_MAX_PHOTOS; i++)
        fill_id(g_ids[i], PV_ID_LEN, 100 + i);
    v->n_photos = variant ? 0 : PV_VIDEO_MAX_PHOTOS;
    v->photo_ids = variant ? NULL : g_ids;
    v->opts.seconds_per_photo = 3;
    snprintf(v->opts.transition, sizeof(v->opts.transition), "%s", variant ? "none" : "wipeleft");
    v->opts.transition_seconds = 0.5;
    snprintf(v->opts.resolution, sizeof(v->opts.resolution), "1080p");
    snprintf(v->opts.aspect, sizeof(v->opts.aspect), "16:9");
    v->opts.fps = 30;
    v->opts.ken_burns = !variant;
    v->created_ms = 1764350406123;
    v->started_ms = variant ? PV_TIME_NONE : 1764350407000;
    v->finished_ms = variant ? PV_TIME_NONE : 1764350417000;
    v->duration_s = variant ? 0 : 28.5;
    v->width = 1920;
    v->height = 1080;
    v->bytes = variant ? 0 : 12345678;
    if (!variant) {
        fill_id(v->sha256, sizeof(v->sha256), 10);
        fill_id(v->poster_sha256, sizeof(v->poster_sha256), 11);
    }
}

static void fill_share(any_rec_t *r, int variant)
{
    pv_share_t *s = &r->share;
    memset(s, 0, sizeof(*s));
    s->v = 1;
    fill_id(s->id, sizeof(s->id), 20);
    fill_id(s->user_id, sizeof(s->user_id), 21);
    fill_id(s->video_id, sizeof(s->video_id), 22);
    s->created_ms = 1764350406123;
    s->expires_ms = 1764955206123;
    snprintf(s->pw_hash, sizeof(s->pw_hash), "%s", variant ? "" : "$argon2id$v=19$m=65536,t=2,p=1$abc$def");
    s->views = variant ? 0 : 42;
}

static int enc_user(const any_rec_t *r, char **o, size_t *l) { return pv_user_encode(&r->user, o, l); }
static int enc_photo(const any_rec_t *r, char **o, size_t *l) { return pv_photo_encode(&r->photo, o, l); }
static int enc_token(const any_rec_t *r, char **o, size_t *l) { return pv_token_encode(&r->token, o, l); }
static int enc_share(const any_rec_t *r, char **o, size_t *l) { return pv_share_encode(&r->share, o, l); }
static int dec_share(const void *b, size_t l, any_rec_t *r) { return pv_share_decode(b, l, &r->share); }
static bool eq_share(const any_rec_t *a, const any_rec_t *b) { return memcmp(&a->share, &b->share, sizeof(a->share)) == 0; }
static int enc_video(const any_rec_t *r, char **o, size_t *l) { return pv_video_encode(&r->video, o, l); }
static int dec_user(const void *b, size_t l, any_rec_t *r) { return pv_user_decode(b, l, &r->user); }
static int dec_photo(const void *b, size_t l, any_rec_t *r) { return pv_photo_decode(b, l, &r->photo); }
static int dec_token(const void *b, size_t l, any_rec_t *r) { return pv_token_decode(b, l, &r->token); }
static int dec_video(const void *b, size_t l, any_rec_t *r) { return pv_video_decode(b, l, &r->video); }

/* Structs are memset before they are filled and before they are decoded,
 * so padding is zero on both sides and memcmp is a fair comparison. */
static bool eq_user(const any_rec_t *a, const any_rec_t *b) { return memcmp(&a->user, &b->user, sizeof(a->user)) == 0; }
static bool eq_photo(const any_rec_t *a, const any_rec_t *b) { return memcmp(&a->photo, &b->photo, sizeof(a->photo)) == 0; }
static bool eq_token(const any_rec_t *a, const any_rec_t *b) { return memcmp(&a->token, &b->token, sizeof(a->token)) == 0; }

static bool eq_video(const any_rec_t *a, const any_rec_t *b)
{
    pv_video_t x = a->video, y = b->video;
    if (x.n_photos != y.n_photos)
        return false;
    if (x.n_photos && memcmp(x.photo_ids, y.photo_ids, x.n_photos * PV_ID_LEN))
        return false;
    x.photo_ids = y.photo_ids = NULL;
    return memcmp(&x, &y, sizeof(x)) == 0;
}

static void clear_video(any_rec_t *r) { pv_video_clear(&r->video); }

static const kind_t kinds[] = {
    { "user", fill_user, enc_user, dec_user, eq_user, NULL },
    { "photo", fill_photo, enc_photo, dec_photo, eq_photo, NULL },
    { "token", fill_token, enc_token, dec_token, eq_token, NULL },
    { "video", fill_video, enc_video, dec_video, eq_video, clear_video },
    { "share", fill_share, enc_share, dec_share, eq_share, NULL },
};

static void rec_clear(const kind_t *k, any_rec_t *r)
{
    if (k->clear)
        k->clear(r);
}

/* ---------------- the schema ---------------- */

static json_t *g_schema;

static json_t *load_schema(void)
{
    static const char *const paths[] = { "schema/records.json",
                                         "../schema/records.json",
                                         "../../schema/records.json" };
    for (size_t i = 0; i < PV_ARRAY_LEN(paths); i++) {
        json_error_t err;
        json_t *j = json_load_file(paths[i], 0, &err);
        if (j)
            return j;
        if (i == 0 && err.line > 0)
            printf("# %s:%d: %s\n", paths[i], err.line, err.text);
    }
    return NULL;
}

static json_t *schema_fields(const char *kind)
{
    json_t *rec = json_object_get(json_object_get(g_schema, "records"), kind);
    return json_object_get(rec, "fields");
}

static const char *field_type(json_t *f)
{
    const char *t = json_string_value(json_object_get(f, "type"));
    return t ? t : "";
}

static bool field_flag(json_t *f, const char *name)
{
    return json_is_true(json_object_get(f, name));
}

/* Does msgpack value o fit schema field f? (the schema's "types"). */
static bool type_matches(json_t *f, const msgpack_object *o)
{
    const char *t = field_type(f);
    bool nil = o->type == MSGPACK_OBJECT_NIL;
    bool pos = o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    bool neg = o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
    if (!strcmp(t, "u32"))
        return pos && o->via.u64 <= UINT32_MAX;
    if (!strcmp(t, "u64"))
        return pos;
    if (!strcmp(t, "i32"))
        return (pos && o->via.u64 <= INT32_MAX) || (neg && o->via.i64 >= INT32_MIN);
    if (!strcmp(t, "time"))
        return pos || neg || nil;
    if (!strcmp(t, "bool"))
        return o->type == MSGPACK_OBJECT_BOOLEAN;
    if (!strcmp(t, "f64"))
        return o->type == MSGPACK_OBJECT_FLOAT64;
    if (!strcmp(t, "str"))
        return o->type == MSGPACK_OBJECT_STR &&
               o->via.str.size <= json_integer_value(json_object_get(f, "max"));
    if (!strcmp(t, "id"))
        return o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == 16;
    if (!strcmp(t, "sha256"))
        return (o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == 32) ||
               (nil && field_flag(f, "nullable"));
    if (!strcmp(t, "enum")) {
        json_t *vals = json_object_get(f, "values");
        for (size_t i = 0; o->type == MSGPACK_OBJECT_STR && i < json_array_size(vals); i++) {
            const char *v = json_string_value(json_array_get(vals, i));
            if (strlen(v) == o->via.str.size && !memcmp(v, o->via.str.ptr, o->via.str.size))
                return true;
        }
        return false;
    }
    if (!strcmp(t, "ids")) {
        if (o->type != MSGPACK_OBJECT_ARRAY ||
            o->via.array.size > json_integer_value(json_object_get(f, "max")))
            return false;
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (o->via.array.ptr[i].type != MSGPACK_OBJECT_BIN ||
                o->via.array.ptr[i].via.bin.size != 16)
                return false;
        return true;
    }
    return false; /* "map" is checked by check_map */
}

static void obj_key(const msgpack_object *k, char *out, size_t n)
{
    if (k->type == MSGPACK_OBJECT_STR)
        snprintf(out, n, "%.*s", (int)k->via.str.size, k->via.str.ptr);
    else
        snprintf(out, n, "(not a string)");
}

/* The map's keys are exactly the schema's fields, each value typed as the
 * schema says; nested maps recursively. */
static void check_map(const char *what, json_t *fields, const msgpack_object *m)
{
    CHECK(m->type == MSGPACK_OBJECT_MAP);
    if (m->type != MSGPACK_OBJECT_MAP || !fields)
        return;
    CHECK_EQ_INT(m->via.map.size, json_object_size(fields));
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        char name[64];
        obj_key(&m->via.map.ptr[i].key, name, sizeof(name));
        json_t *f = json_object_get(fields, name);
        if (!f) {
            printf("#   %s: field \"%s\" is not in the schema\n", what, name);
            t_cur_failed = 1;
            continue;
        }
        for (uint32_t j = 0; j < i; j++) { /* no key twice */
            char other[64];
            obj_key(&m->via.map.ptr[j].key, other, sizeof(other));
            CHECK(strcmp(name, other) != 0);
        }
        const msgpack_object *v = &m->via.map.ptr[i].val;
        if (!strcmp(field_type(f), "map")) {
            check_map(name, json_object_get(f, "fields"), v);
        } else if (!type_matches(f, v)) {
            printf("#   %s.%s: msgpack type %d does not match \"%s\"\n", what,
                   name, v->type, field_type(f));
            t_cur_failed = 1;
        }
    }
}

/* ---------------- re-packing with changes ---------------- */

/* Packs o; in its top-level map, the key `skip` is left out and the value
 * of `replace` is packed by repl(). */
typedef void (*repl_fn)(msgpack_packer *pk, void *arg);

static void pack_obj_edit(msgpack_packer *pk, const msgpack_object *o,
                          const char *skip, const char *replace, repl_fn repl,
                          void *arg, const char *extra_key)
{
    uint32_t n = o->via.map.size;
    uint32_t out_n = n + (extra_key ? 1 : 0);
    for (uint32_t i = 0; i < n && skip; i++) {
        char name[64];
        obj_key(&o->via.map.ptr[i].key, name, sizeof(name));
        if (!strcmp(name, skip))
            out_n--;
    }
    msgpack_pack_map(pk, out_n);
    for (uint32_t i = 0; i < n; i++) {
        char name[64];
        obj_key(&o->via.map.ptr[i].key, name, sizeof(name));
        if (skip && !strcmp(name, skip))
            continue;
        msgpack_pack_object(pk, o->via.map.ptr[i].key);
        if (replace && !strcmp(name, replace))
            repl(pk, arg);
        else
            msgpack_pack_object(pk, o->via.map.ptr[i].val);
    }
    if (extra_key) {
        msgpack_pack_str(pk, strlen(extra_key));
        msgpack_pack_str_body(pk, extra_key, strlen(extra_key));
        if (replace && !strcmp(extra_key, replace))
            repl(pk, arg);
        else
            msgpack_pack_array(pk, 0);
    }
}

/* Encode variant 0 of k, edit, decode: the decoder's result. */
static int edit_and_decode(const kind_t *k, const char *skip,
                           const char *replace, repl_fn repl, void *arg,
                           const char *extra_key, any_rec_t *out)
{
    any_rec_t r;
    char *buf = NULL;
    size_t len = 0;
    k->fill(&r, 0);
    if (k->enc(&r, &buf, &len) != 0)
        return -999;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    msgpack_unpack_next(&up, buf, len, &off);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_obj_edit(&pk, &up.data, skip, replace, repl, arg, extra_key);
    int rc = k->dec(sb.data, sb.size, out);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&up);
    free(buf);
    return rc;
}

static void repl_int(msgpack_packer *pk, void *arg) { msgpack_pack_int64(pk, *(int64_t *)arg); }
static void repl_uint(msgpack_packer *pk, void *arg) { msgpack_pack_uint64(pk, *(uint64_t *)arg); }
static void repl_nil(msgpack_packer *pk, void *arg) { msgpack_pack_nil(pk); }
static void repl_true(msgpack_packer *pk, void *arg) { msgpack_pack_true(pk); }
static void repl_float(msgpack_packer *pk, void *arg) { msgpack_pack_double(pk, 0.5); }
static void repl_empty_map(msgpack_packer *pk, void *arg) { msgpack_pack_map(pk, 0); }

static void repl_str(msgpack_packer *pk, void *arg)
{
    const char *s = arg;
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void repl_bin(msgpack_packer *pk, void *arg)
{
    size_t n = *(size_t *)arg;
    uint8_t b[64] = { 0 };
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, b, n);
}

/* ---------------- tests ---------------- */

TEST(schema_loads)
{
    g_schema = load_schema();
    CHECK(g_schema != NULL);
    if (!g_schema)
        return;
    for (size_t i = 0; i < PV_ARRAY_LEN(kinds); i++) {
        json_t *f = schema_fields(kinds[i].name);
        CHECK(json_is_object(f));
        CHECK(field_flag(json_object_get(f, "v"), "required"));
    }
    CHECK(json_is_object(json_object_get(json_object_get(g_schema, "change"), "fields")));
    CHECK_EQ_INT(json_array_size(json_object_get(g_schema, "dbs")), 12);
}

/* Every encoder writes exactly the schema's fields, with their types. */
TEST(encoders_match_schema)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(kinds); i++) {
        for (int variant = 0; variant < 2; variant++) {
            const kind_t *k = &kinds[i];
            any_rec_t r;
            char *buf = NULL;
            size_t len = 0;
            k->fill(&r, variant);
            CHECK_EQ_INT(k->enc(&r, &buf, &len), 0);
            if (!buf)
                continue;
            msgpack_unpacked up;
            msgpack_unpacked_init(&up);
            size_t off = 0;
            CHECK(msgpack_unpack_next(&up, buf, len, &off) == MSGPACK_UNPACK_SUCCESS);
            CHECK_EQ_INT(off, len);
            check_map(k->name, schema_fields(k->name), &up.data);
            msgpack_unpacked_destroy(&up);
            free(buf);
        }
    }
}

/* The SQL and DynamoDB shapes name only real fields, and cover each field
 * that they do not explicitly omit. */
static void check_derived(const char *kind, const char *section,
                          const char *list)
{
    json_t *rec = json_object_get(json_object_get(g_schema, "records"), kind);
    json_t *sec = json_object_get(rec, section);
    if (json_is_null(sec))
        return;
    json_t *fields = json_object_get(rec, "fields");
    json_t *cols = json_object_get(sec, list);
    json_t *omit = json_object_get(sec, "omit");
    CHECK(json_is_array(cols));
    size_t i;
    json_t *c;
    json_array_foreach(cols, i, c) {
        json_t *field = json_object_get(c, "field");
        CHECK(json_is_null(field) ||
              json_object_get(fields, json_string_value(field)) != NULL);
    }
    const char *name;
    json_t *f;
    json_object_foreach(fields, name, f) {
        bool covered = false;
        json_array_foreach(cols, i, c) {
            const char *cf = json_string_value(json_object_get(c, "field"));
            covered |= cf && !strcmp(cf, name);
        }
        json_t *o;
        json_array_foreach(omit, i, o)
            covered |= !strcmp(json_string_value(o), name);
        if (!covered) {
            printf("#   %s.%s: field %s neither mapped nor omitted\n", kind, section, name);
            t_cur_failed = 1;
        }
    }
}

TEST(derived_shapes)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(kinds); i++) {
        check_derived(kinds[i].name, "sql", "columns");
        check_derived(kinds[i].name, "dynamodb", "attributes");
    }
}

TEST(round_trip)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(kinds); i++) {
        for (int variant = 0; variant < 2; variant++) {
            const kind_t *k = &kinds[i];
            any_rec_t a, b;
            char *buf = NULL;
            size_t len = 0;
            k->fill(&a, variant);
            CHECK_EQ_INT(k->enc(&a, &buf, &len), 0);
            CHECK_EQ_INT(k->dec(buf, len, &b), 0);
            if (!k->equal(&a, &b)) {
                printf("#   %s variant %d: round trip differs\n", k->name, variant);
                t_cur_failed = 1;
            }
            rec_clear(k, &b);
            free(buf);
        }
    }
}

/* Required fields are required, optional ones are not, exactly as the
 * schema says; absent optional times come back as PV_TIME_NONE. */
TEST(required_fields)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(kinds); i++) {
        const kind_t *k = &kinds[i];
        const char *name;
        json_t *f;
        json_object_foreach(schema_fields(k->name), name, f) {
            any_rec_t r;
            int rc = edit_and_decode(k, name, NULL, NULL, NULL, NULL, &r);
            int want = field_flag(f, "required") ? -EINVAL : 0;
            if (rc != want) {
                printf("#   %s without %s: %d, want %d\n", k->name, name, rc, want);
                t_cur_failed = 1;
            }
            if (rc == 0 && !strcmp(field_type(f), "time")) {
                if (!strcmp(k->name, "photo"))
                    CHECK(r.photo.taken_ms == PV_TIME_NONE);
                if (!strcmp(k->name, "video") && !strcmp(name, "started_ms"))
                    CHECK(r.video.started_ms == PV_TIME_NONE);
            }
            if (rc == 0)
                rec_clear(k, &r);
        }
    }
}

/* A value of the wrong msgpack type is -EINVAL for every field. */
TEST(wrong_types)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(kinds); i++) {
        const kind_t *k = &kinds[i];
        const char *name;
        json_t *f;
        json_object_foreach(schema_fields(k->name), name, f) {
            const char *t = field_type(f);
            bool is_str = !strcmp(t, "str") || !strcmp(t, "enum");
            any_rec_t r;
            /* a string where it wants anything else, an int where it
             * wants a string */
            int rc = is_str ? edit_and_decode(k, NULL, name, repl_true, NULL, NULL, &r)
                            : edit_and_decode(k, NULL, name, repl_str, "x", NULL, &r);
            if (rc != -EINVAL) {
                printf("#   %s.%s with a wrong type: %d\n", k->name, name, rc);
                t_cur_failed = 1;
                if (rc == 0)
                    rec_clear(k, &r);
            }
            /* nil only where the schema allows it */
            bool nil_ok = !strcmp(t, "time") || field_flag(f, "nullable");
            rc = edit_and_decode(k, NULL, name, repl_nil, NULL, NULL, &r);
            if ((rc == 0) != nil_ok) {
                printf("#   %s.%s = nil: %d\n", k->name, name, rc);
                t_cur_failed = 1;
            }
            if (rc == 0)
                rec_clear(k, &r);
            /* floats are not ints and ints are not floats */
            if (strcmp(t, "str") && strcmp(t, "enum")) {
                bool is_f = !strcmp(t, "f64");
                int64_t one = 1;
                rc = is_f ? edit_and_decode(k, NULL, name, repl_int, &one, NULL, &r)
                          : edit_and_decode(k, NULL, name, repl_float, NULL, NULL, &r);
                CHECK_EQ_INT(rc, -EINVAL);
            }
        }
    }
}

/* Integer ranges, bin lengths, string limits from the schema. */
TEST(limits)
{
    any_rec_t r;
    uint64_t big = (uint64_t)UINT32_MAX + 1;
    CHECK_EQ_INT(edit_and_decode(&kinds[1], NULL, "width", repl_uint, &big, NULL, &r), -EINVAL);
    int64_t neg = -1;
    CHECK_EQ_INT(edit_and_decode(&kinds[1], NULL, "bytes", repl_int, &neg, NULL, &r), -EINVAL);
    int64_t over = (int64_t)INT32_MAX + 1;
    CHECK_EQ_INT(edit_and_decode(&kinds[1], NULL, "orientation", repl_int, &over, NULL, &r), -EINVAL);
    int64_t v0 = 0;
    CHECK_EQ_INT(edit_and_decode(&kinds[0], NULL, "v", repl_int, &v0, NULL, &r), -EINVAL);
    size_t n15 = 15, n33 = 33;
    CHECK_EQ_INT(edit_and_decode(&kinds[0], NULL, "id", repl_bin, &n15, NULL, &r), -EINVAL);
    CHECK_EQ_INT(edit_and_decode(&kinds[1], NULL, "sha256", repl_bin, &n33, NULL, &r), -EINVAL);
    CHECK_EQ_INT(edit_and_decode(&kinds[3], NULL, "status", repl_str, "paused", NULL, &r), -EINVAL);
    CHECK_EQ_INT(edit_and_decode(&kinds[3], NULL, "opts", repl_empty_map, NULL, NULL, &r), 0);
    CHECK_EQ_INT(r.video.opts.fps, 0);
    pv_video_clear(&r.video);
    /* unknown keys are skipped (a newer writer), duplicates are not */
    CHECK_EQ_INT(edit_and_decode(&kinds[0], NULL, NULL, NULL, NULL, "from_the_future", &r), 0);
    CHECK_EQ_INT(edit_and_decode(&kinds[0], NULL, NULL, NULL, NULL, "email", &r), -EINVAL);

    /* every str field: max bytes decode, max + 1 do not */
    for (size_t i = 0; i < PV_ARRAY_LEN(kinds); i++) {
        const kind_t *k = &kinds[i];
        const char *name;
        json_t *f;
        json_object_foreach(schema_fields(k->name), name, f) {
            if (strcmp(field_type(f), "str"))
                continue;
            size_t max = (size_t)json_integer_value(json_object_get(f, "max"));
            char s[300];
            CHECK(max > 0 && max + 1 < sizeof(s));
            memset(s, 'x', max + 1);
            s[max + 1] = '\0';
            CHECK_EQ_INT(edit_and_decode(k, NULL, name, repl_str, s, NULL, &r), -EINVAL);
            s[max] = '\0';
            int rc = edit_and_decode(k, NULL, name, repl_str, s, NULL, &r);
            CHECK_EQ_INT(rc, 0);
            if (rc == 0)
                rec_clear(k, &r);
        }
    }
}

static void repl_str_nul(msgpack_packer *pk, void *arg)
{
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
}

static void repl_ids(msgpack_packer *pk, void *arg)
{
    uint32_t n = *(uint32_t *)arg;
    uint8_t id[16] = { 0 };
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        msgpack_pack_bin(pk, i == 2 && n == 3 ? 15 : 16);
        msgpack_pack_bin_body(pk, id, i == 2 && n == 3 ? 15 : 16);
    }
}

TEST(strings_and_ids)
{
    any_rec_t r;
    /* an embedded NUL would cut a C string short */
    CHECK_EQ_INT(edit_and_decode(&kinds[0], NULL, "email", repl_str_nul, NULL, NULL, &r), -EINVAL);
    uint32_t n = PV_VIDEO_MAX_PHOTOS + 1;
    CHECK_EQ_INT(edit_and_decode(&kinds[3], NULL, "photo_ids", repl_ids, &n, NULL, &r), -EINVAL);
    n = 3; /* third id 15 bytes: no leak of the first two (ASan) */
    CHECK_EQ_INT(edit_and_decode(&kinds[3], NULL, "photo_ids", repl_ids, &n, NULL, &r), -EINVAL);
    CHECK(r.video.photo_ids == NULL);
    n = 2;
    CHECK_EQ_INT(edit_and_decode(&kinds[3], NULL, "photo_ids", repl_ids, &n, NULL, &r), 0);
    CHECK_EQ_INT(r.video.n_photos, 2);
    pv_video_clear(&r.video);
}

TEST(encode_errors)
{
    pv_user_t u;
    memset(&u, 0, sizeof(u));
    char *buf = (char *)1;
    size_t len = 1;
    memset(u.email, 'x', sizeof(u.email)); /* no terminator */
    CHECK_EQ_INT(pv_user_encode(&u, &buf, &len), -EINVAL);
    CHECK(buf == NULL && len == 0);
    any_rec_t r;
    fill_video(&r, 0);
    r.video.n_photos = PV_VIDEO_MAX_PHOTOS + 1;
    CHECK_EQ_INT(pv_video_encode(&r.video, &buf, &len), -EINVAL);
    r.video.n_photos = 1;
    r.video.photo_ids = NULL;
    CHECK_EQ_INT(pv_video_encode(&r.video, &buf, &len), -EINVAL);
    fill_video(&r, 0);
    r.video.status = 99;
    CHECK_EQ_INT(pv_video_encode(&r.video, &buf, &len), -EINVAL);
    /* v = 0 means "the current version" */
    fill_user(&r, 0);
    r.user.v = 0;
    CHECK_EQ_INT(pv_user_encode(&r.user, &buf, &len), 0);
    pv_user_t back;
    CHECK_EQ_INT(pv_user_decode(buf, len, &back), 0);
    CHECK_EQ_INT(back.v, 1);
    free(buf);
    /* the failure seam */
    pv_fail_reset("records_encode:1");
    fill_user(&r, 0);
    CHECK_EQ_INT(pv_user_encode(&r.user, &buf, &len), -ENOMEM);
    CHECK(buf == NULL);
    pv_fail_reset("records_decode:1");
    CHECK_EQ_INT(pv_user_encode(&r.user, &buf, &len), 0);
    CHECK_EQ_INT(pv_user_decode(buf, len, &back), -ENOMEM);
    pv_fail_reset("");
    CHECK_EQ_INT(pv_user_decode(buf, len, &back), 0);
    free(buf);
}

/* Every prefix of a valid record, the record with a byte more, garbage,
 * and hostile headers: a clean error and a zeroed struct, no crash. */
TEST(bad_input)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(kinds); i++) {
        const kind_t *k = &kinds[i];
        any_rec_t a, b;
        char *buf = NULL;
        size_t len = 0;
        k->fill(&a, 0);
        CHECK_EQ_INT(k->enc(&a, &buf, &len), 0);
        int bad = 0;
        for (size_t n = 0; n < len; n++)
            bad += k->dec(buf, n, &b) == -EINVAL;
        CHECK_EQ_INT(bad, len);
        char *more = malloc(len + 1);
        memcpy(more, buf, len);
        more[len] = 0;
        CHECK_EQ_INT(k->dec(more, len + 1, &b), -EINVAL);
        /* flip bits all over: never a crash, a failure leaves zeros */
        unsigned seed = 12345;
        for (int round = 0; round < 2000; round++) {
            memcpy(more, buf, len);
            for (int j = 0; j < 3; j++) {
                seed = seed * 1103515245u + 12345u;
                more[(seed >> 8) % len] ^= (char)(1u << (seed >> 4 & 7));
            }
            int rc = k->dec(more, len, &b);
            if (rc == 0)
                rec_clear(k, &b);
            else
                CHECK(b.user.v == 0);
        }
        free(more);
        free(buf);
        CHECK_EQ_INT(k->dec(NULL, 0, &b), -EINVAL);
    }
    static const struct {
        const char *bytes;
        size_t len;
    } hostile[] = {
        { "\xdd\xff\xff\xff\xff", 5 },             /* array of 4G items */
        { "\xdf\xff\xff\xff\xff", 5 },             /* map of 4G pairs */
        { "\x81\xa1v\xdb\xff\xff\xff\xff", 8 },    /* str of 4G bytes */
        { "\x81\xa1v\xc6\x7f\xff\xff\xff", 8 },    /* bin of 2G bytes */
        { "\xc1", 1 },                             /* never used */
        { "\x90", 1 },                             /* an array */
        { "\x80", 1 },                             /* empty map: no v */
        { "\x81\xa1v\x01", 4 },                    /* only v */
        { "\x81\x01\x01", 3 },                     /* int key */
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(hostile); i++) {
        any_rec_t b;
        for (size_t k = 0; k < PV_ARRAY_LEN(kinds); k++)
            CHECK_EQ_INT(kinds[k].dec(hostile[i].bytes, hostile[i].len, &b), -EINVAL);
    }
    /* deep nesting */
    char deep[200];
    memset(deep, 0x91, sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = 0x01;
    any_rec_t b;
    CHECK_EQ_INT(pv_video_decode(deep, sizeof(deep), &b.video), -EINVAL);
}

TEST(status_names)
{
    CHECK_EQ_STR(pv_video_status_name(PV_VIDEO_QUEUED), "queued");
    CHECK_EQ_STR(pv_video_status_name(PV_VIDEO_RUNNING), "running");
    CHECK_EQ_STR(pv_video_status_name(PV_VIDEO_READY), "ready");
    CHECK_EQ_STR(pv_video_status_name(PV_VIDEO_FAILED), "failed");
    CHECK_EQ_STR(pv_video_status_name(PV_VIDEO_CANCELLED), "cancelled");
    CHECK_EQ_STR(pv_video_status_name(-1), "unknown");
    CHECK_EQ_STR(pv_video_status_name(5), "unknown");
    /* and the schema lists the same names in the same order */
    json_t *vals = json_object_get(json_object_get(schema_fields("video"), "status"), "values");
    CHECK_EQ_INT(json_array_size(vals), 5);
    for (int i = 0; i < 5 && i < (int)json_array_size(vals); i++)
        CHECK_EQ_STR(json_string_value(json_array_get(vals, (size_t)i)),
                     pv_video_status_name(i));
}

int main(void)
{
    RUN(schema_loads);
    if (!g_schema)
        return t_done("records");
    RUN(encoders_match_schema);
    RUN(derived_shapes);
    RUN(round_trip);
    RUN(required_fields);
    RUN(wrong_types);
    RUN(limits);
    RUN(strings_and_ids);
    RUN(encode_errors);
    RUN(bad_input);
    RUN(status_names);
    json_decref(g_schema);
    return t_done("records");
}
