/*
 * test_admin_proto.c — the admin socket's frames, the msgpack codec, request
 * validation, pvctl's command-line parser and the command table itself.
 * msgpack-c's own unpacker serves as an independent check of what we write.
 */
#include "base/admin_proto.h"
#include "base/pv.h"
#include "t.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Pack v and unpack it again; returns the copy (or NULL) and checks the
 * header. */
static json_t *round_trip(const json_t *v)
{
    char *buf;
    size_t len;
    if (pv_admin_frame_pack(v, PV_ADMIN_RESP_MAX, &buf, &len) < 0)
        return NULL;
    long n = pv_admin_frame_check(buf, len, PV_ADMIN_RESP_MAX);
    json_t *out = NULL;
    if (n == (long)(len - PV_ADMIN_HDR))
        pv_admin_unpack(buf + PV_ADMIN_HDR, (size_t)n, SIZE_MAX, &out);
    free(buf);
    return out;
}

static int unpack_bytes(const char *bytes, size_t len, json_t **out)
{
    return pv_admin_unpack(bytes, len, PV_ADMIN_REQ_ITEMS, out);
}

TEST(frame_check)
{
    uint8_t b[16] = {0, 0, 0, 5, 1, 2, 3, 4, 5, 6};
    CHECK_EQ_INT(pv_admin_frame_check(b, 0, 100), -EAGAIN);
    CHECK_EQ_INT(pv_admin_frame_check(b, 3, 100), -EAGAIN);
    CHECK_EQ_INT(pv_admin_frame_check(b, 8, 100), -EAGAIN);
    CHECK_EQ_INT(pv_admin_frame_check(b, 9, 100), 5);
    CHECK_EQ_INT(pv_admin_frame_check(b, 10, 100), 5); /* the next frame's bytes */
    CHECK_EQ_INT(pv_admin_frame_check(b, 9, 4), -EMSGSIZE);
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    /* Too large is known from the header alone: no waiting for 4 GiB. */
    CHECK_EQ_INT(pv_admin_frame_check(huge, 4, PV_ADMIN_REQ_MAX), -EMSGSIZE);
    uint8_t hdr[4];
    pv_admin_frame_header(hdr, 0x01020304);
    CHECK(hdr[0] == 1 && hdr[1] == 2 && hdr[2] == 3 && hdr[3] == 4);
}

TEST(pack_exact_bytes)
{
    json_t *v = json_pack("{s:s}", "cmd", "status");
    char *buf;
    size_t len;
    CHECK_EQ_INT(pv_admin_frame_pack(v, 100, &buf, &len), 0);
    static const char want[] = "\x00\x00\x00\x0c\x81\xa3" "cmd" "\xa6" "status";
    CHECK_EQ_INT(len, sizeof(want) - 1);
    CHECK(memcmp(buf, want, sizeof(want) - 1) == 0);
    free(buf);
    /* The same value over a too-small limit */
    CHECK_EQ_INT(pv_admin_frame_pack(v, 11, &buf, &len), -EMSGSIZE);
    CHECK(buf == NULL);
    json_decref(v);
    CHECK_EQ_INT(pv_admin_frame_pack(NULL, 100, &buf, &len), -EINVAL);
}

static const json_int_t g_ints[] = {
    0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295LL, 4294967296LL, INT64_MAX,
    -1, -32, -33, -128, -129, -32768, -32769, INT32_MIN, (json_int_t)INT32_MIN - 1, INT64_MIN,
};

TEST(round_trip_scalars)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_ints); i++) {
        json_t *v = json_integer(g_ints[i]);
        json_t *w = round_trip(v);
        CHECK(w && json_is_integer(w));
        if (w && json_integer_value(w) != g_ints[i])
            printf("#   integer %lld came back as %lld\n", (long long)g_ints[i],
                   (long long)json_integer_value(w));
        CHECK(w && json_integer_value(w) == g_ints[i]);
        json_decref(v);
        json_decref(w);
    }
    json_t *v = json_pack("[n,b,b,f,f,s]", 1, 0, 1.5, -0.25, "");
    json_t *w = round_trip(v);
    CHECK(w && json_equal(v, w));
    json_decref(v);
    json_decref(w);
}

TEST(round_trip_sizes)
{
    /* the fix / 8 / 16 / 32-bit boundaries of strings, arrays and maps */
    static const size_t lens[] = {0, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000};
    for (size_t i = 0; i < PV_ARRAY_LEN(lens); i++) {
        size_t n = lens[i];
        char *s = malloc(n + 1);
        memset(s, 'x', n);
        s[n] = '\0';
        json_t *arr = json_array(), *obj = json_object();
        for (size_t k = 0; k < n; k++) {
            json_array_append_new(arr, json_integer((json_int_t)k));
            char key[24];
            snprintf(key, sizeof(key), "k%zu", k);
            json_object_set_new(obj, key, json_true());
        }
        json_t *v = json_pack("{s:s,s:o,s:o}", "s", s, "a", arr, "o", obj);
        json_t *w = round_trip(v);
        CHECK(w && json_equal(v, w));
        json_decref(v);
        json_decref(w);
        free(s);
    }
}

/* msgpack-c reads what we write the same way. */
TEST(cross_check_msgpack_c)
{
    json_t *v = json_pack("{s:s,s:{s:i,s:I,s:b,s:n,s:[i,s]}}", "cmd", "user.list", "args",
                          "limit", 300, "big", (json_int_t)-5000000000LL, "flag", 1, "none",
                          "arr", 7, "seven");
    char *buf;
    size_t len;
    CHECK_EQ_INT(pv_admin_frame_pack(v, PV_ADMIN_REQ_MAX, &buf, &len), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = msgpack_unpack_next(&u, buf + PV_ADMIN_HDR, len - PV_ADMIN_HDR, &off);
    CHECK_EQ_INT(rc, MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT(off, len - PV_ADMIN_HDR);
    msgpack_object o = u.data;
    CHECK(o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 2);
    if (o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 2) {
        msgpack_object args = o.via.map.ptr[1].val;
        CHECK(args.type == MSGPACK_OBJECT_MAP && args.via.map.size == 5);
        CHECK(args.via.map.ptr[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
              args.via.map.ptr[0].val.via.u64 == 300);
        CHECK(args.via.map.ptr[1].val.type == MSGPACK_OBJECT_NEGATIVE_INTEGER &&
              args.via.map.ptr[1].val.via.i64 == -5000000000LL);
        CHECK(args.via.map.ptr[2].val.type == MSGPACK_OBJECT_BOOLEAN);
        CHECK(args.via.map.ptr[3].val.type == MSGPACK_OBJECT_NIL);
    }
    msgpack_unpacked_destroy(&u);
    free(buf);

    /* ... and we read what msgpack-c writes (str8, uint16, float32). */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "a", 1);
    msgpack_pack_str(&pk, 40);
    msgpack_pack_str_body(&pk, "0123456789012345678901234567890123456789", 40);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "b", 1);
    msgpack_pack_uint16(&pk, 40000);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "c", 1);
    msgpack_pack_float(&pk, 2.5f);
    json_t *w = NULL;
    CHECK_EQ_INT(unpack_bytes(sb.data, sb.size, &w), 0);
    CHECK(w && json_string_length(json_object_get(w, "a")) == 40);
    CHECK(w && json_integer_value(json_object_get(w, "b")) == 40000);
    CHECK(w && json_real_value(json_object_get(w, "c")) == 2.5);
    json_decref(w);
    msgpack_sbuffer_destroy(&sb);
    json_decref(v);
}

TEST(unpack_refuses)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *why;
    } bad[] = {
        {"", 0, "empty"},
        {"\xc0\xc0", 2, "trailing bytes"},
        {"\x92\x01", 2, "truncated array"},
        {"\xa5" "abc", 4, "truncated string"},
        {"\xc4\x01\x00", 3, "bin"},
        {"\xd4\x01\x00", 3, "fixext"},
        {"\xc7\x01\x01\x00", 4, "ext8"},
        {"\xc1", 1, "never-used byte"},
        {"\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9, "uint64 over INT64_MAX"},
        {"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9, "NaN"},
        {"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00", 9, "infinity"},
        {"\xdd\xff\xff\xff\xff", 5, "array32 of 4G declared in 5 bytes"},
        {"\xdf\xff\xff\xff\xff\xc0", 6, "map32 of 4G declared"},
        {"\x82\xa1" "a\x01\xa1" "a\x02", 7, "duplicate key"},
        {"\x81\x01\x02", 3, "integer key"},
        {"\xa2\xc3\x28", 3, "invalid UTF-8"},
        {"\xa3" "a\0b", 4, "NUL inside a string"},
        {"\x81\xa3" "a\0b\x01", 6, "NUL inside a key"},
        {"\xcd\x01", 2, "truncated uint16"},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
        json_t *v = (json_t *)1;
        int rc = unpack_bytes(bad[i].bytes, bad[i].len, &v);
        if (rc != -EINVAL)
            printf("#   %s: got %d\n", bad[i].why, rc);
        CHECK_EQ_INT(rc, -EINVAL);
        CHECK(v == NULL);
    }
}

TEST(unpack_limits)
{
    /* depth: 16 nested arrays are fine, 17 are not */
    char deep[40];
    memset(deep, 0x91, sizeof(deep));
    json_t *v = NULL;
    deep[PV_ADMIN_DEPTH_MAX] = (char)0xc0;
    CHECK_EQ_INT(unpack_bytes(deep, PV_ADMIN_DEPTH_MAX + 1, &v), 0);
    json_decref(v);
    memset(deep, 0x91, sizeof(deep));
    deep[PV_ADMIN_DEPTH_MAX + 1] = (char)0xc0;
    CHECK_EQ_INT(unpack_bytes(deep, PV_ADMIN_DEPTH_MAX + 2, &v), -EINVAL);
    /* item count: an array of 5000 nils is over the request limit */
    size_t n = 5000;
    char *many = malloc(n + 3);
    many[0] = (char)0xdc;
    many[1] = (char)(n >> 8);
    many[2] = (char)n;
    memset(many + 3, 0xc0, n);
    CHECK_EQ_INT(pv_admin_unpack(many, n + 3, PV_ADMIN_REQ_ITEMS, &v), -EINVAL);
    CHECK_EQ_INT(pv_admin_unpack(many, n + 3, SIZE_MAX, &v), 0);
    CHECK_EQ_INT(json_array_size(v), n);
    json_decref(v);
    free(many);
    /* and packing refuses a value nested deeper than the reader accepts */
    json_t *nest = json_null();
    for (int i = 0; i < PV_ADMIN_DEPTH_MAX + 2; i++)
        nest = json_pack("[o]", nest);
    char *buf;
    size_t len;
    CHECK_EQ_INT(pv_admin_frame_pack(nest, PV_ADMIN_RESP_MAX, &buf, &len), -EINVAL);
    json_decref(nest);
}

/* A deterministic pseudo-random walk over mutations of a valid request:
 * nothing may crash (ASan checks) and every result is 0 or -EINVAL. */
TEST(unpack_mutations)
{
    json_t *v = json_pack("{s:s,s:{s:s,s:i,s:b,s:[i,i,{s:f}]}}", "cmd", "job.list", "args",
                          "state", "failed", "limit", 70000, "x", 1, "arr", 1, 2, "r", 0.5);
    char *buf;
    size_t len;
    pv_admin_frame_pack(v, PV_ADMIN_REQ_MAX, &buf, &len);
    unsigned seed = 12345;
    int bad_rc = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char m[256];
        size_t n = len - PV_ADMIN_HDR;
        memcpy(m, buf + PV_ADMIN_HDR, n);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            m[(seed >> 8) % n] = (char)(seed >> 16);
        }
        seed = seed * 1103515245u + 12345u;
        size_t cut = (seed >> 4) % (n + 1);
        json_t *out = NULL;
        int rc = unpack_bytes(m, cut, &out);
        if (rc != 0 && rc != -EINVAL)
            bad_rc++;
        json_decref(out);
    }
    CHECK_EQ_INT(bad_rc, 0);
    free(buf);
    json_decref(v);
}

static int parse_req(json_t *v, const pv_admin_cmd_t **cmd, json_t **args, json_t **req,
                     pv_admin_err_t *e)
{
    char *buf;
    size_t len;
    if (pv_admin_frame_pack(v, PV_ADMIN_REQ_MAX, &buf, &len) < 0)
        return -99;
    json_decref(v);
    int rc = pv_admin_request_parse(buf + PV_ADMIN_HDR, len - PV_ADMIN_HDR, req, cmd, args, e);
    free(buf);
    return rc;
}

static const char *req_error(json_t *v)
{
    static pv_admin_err_t e;
    const pv_admin_cmd_t *cmd;
    json_t *args, *req;
    memset(&e, 0, sizeof(e));
    if (parse_req(v, &cmd, &args, &req, &e) == 0) {
        json_decref(req);
        return "ok";
    }
    return e.code;
}

TEST(request_parse)
{
    const pv_admin_cmd_t *cmd;
    json_t *args, *req;
    pv_admin_err_t e;
    CHECK_EQ_INT(parse_req(json_pack("{s:s}", "cmd", "status"), &cmd, &args, &req, &e), 0);
    CHECK(cmd && cmd->id == PV_CMD_STATUS);
    CHECK(json_is_object(args) && json_object_size(args) == 0);
    json_decref(req);

    CHECK_EQ_INT(parse_req(json_pack("{s:s,s:{s:s,s:s}}", "cmd", "user.add", "args", "email",
                                     "a@b.example", "password", "12345678"),
                           &cmd, &args, &req, &e), 0);
    CHECK(cmd && cmd->id == PV_CMD_USER_ADD);
    CHECK_EQ_STR(json_string_value(json_object_get(args, "email")), "a@b.example");
    json_decref(req);

    CHECK_EQ_STR(req_error(json_pack("{s:s,s:n}", "cmd", "status", "args")), "ok");
    CHECK_EQ_STR(req_error(json_pack("[s]", "status")), "bad_request");
    CHECK_EQ_STR(req_error(json_pack("{s:i}", "cmd", 3)), "bad_request");
    CHECK_EQ_STR(req_error(json_pack("{s:s}", "args", "x")), "bad_request");
    CHECK_EQ_STR(req_error(json_pack("{s:s}", "cmd", "rm -rf")), "unknown_command");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:[]}", "cmd", "status", "args")), "bad_args");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:{s:i}}", "cmd", "status", "args", "x", 1)),
                 "bad_args");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:{}}", "cmd", "user.add", "args")), "bad_args");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:{s:i,s:s}}", "cmd", "user.add", "args", "email", 5,
                                     "password", "12345678")),
                 "bad_args");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:{s:s}}", "cmd", "job.list", "args", "limit", "5")),
                 "bad_args");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:{s:i}}", "cmd", "job.list", "args", "limit", 0)),
                 "bad_args");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:{s:i}}", "cmd", "job.list", "args", "limit", 5)),
                 "ok");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:{s:s}}", "cmd", "job.list", "args", "state", "x")),
                 "bad_args");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:{s:s}}", "cmd", "backup", "args", "no_blobs", "1")),
                 "bad_args");
    CHECK_EQ_STR(req_error(json_pack("{s:s,s:{s:s}}", "cmd", "log.level", "args", "level", "")),
                 "bad_args");
    /* junk bytes */
    CHECK_EQ_INT(pv_admin_request_parse("\xc1\x00", 2, &req, &cmd, &args, &e), -EINVAL);
    CHECK_EQ_STR(e.code, "bad_request");
}

static int argv_parse(const char *line, const pv_admin_cmd_t **cmd, json_t **args, bool *prompt,
                      pv_admin_err_t *e)
{
    char buf[256], *argv[16];
    int argc = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    char *save = NULL;
    for (char *w = strtok_r(buf, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    return pv_admin_argv(argc, argv, cmd, args, prompt, e);
}

TEST(argv_commands)
{
    const pv_admin_cmd_t *cmd;
    json_t *args;
    bool prompt;
    pv_admin_err_t e;
    CHECK_EQ_INT(argv_parse("user add a@b.example", &cmd, &args, &prompt, &e), 0);
    CHECK(cmd && cmd->id == PV_CMD_USER_ADD && !prompt);
    CHECK_EQ_STR(json_string_value(json_object_get(args, "email")), "a@b.example");
    CHECK(json_object_get(args, "password") == NULL);
    json_decref(args);

    CHECK_EQ_INT(argv_parse("user reset-password a@b.example --prompt", &cmd, &args, &prompt, &e), 0);
    CHECK(cmd && cmd->id == PV_CMD_USER_RESET_PASSWORD && prompt);
    json_decref(args);

    CHECK_EQ_INT(argv_parse("job list --state failed --limit=5", &cmd, &args, &prompt, &e), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(args, "state")), "failed");
    CHECK_EQ_INT(json_integer_value(json_object_get(args, "limit")), 5);
    json_decref(args);

    CHECK_EQ_INT(argv_parse("backup /tmp/x.tar --no-blobs", &cmd, &args, &prompt, &e), 0);
    CHECK(cmd && cmd->id == PV_CMD_BACKUP);
    CHECK(json_is_true(json_object_get(args, "no_blobs")));
    json_decref(args);

    CHECK_EQ_INT(argv_parse("backup -- --odd-name", &cmd, &args, &prompt, &e), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(args, "path")), "--odd-name");
    json_decref(args);

    CHECK_EQ_INT(argv_parse("log-level", &cmd, &args, &prompt, &e), 0);
    CHECK(cmd && cmd->id == PV_CMD_LOG_LEVEL && json_object_size(args) == 0);
    json_decref(args);
    CHECK_EQ_INT(argv_parse("status", &cmd, &args, &prompt, &e), 0);
    json_decref(args);
}

TEST(argv_errors)
{
    const pv_admin_cmd_t *cmd;
    json_t *args;
    bool prompt;
    pv_admin_err_t e;
    static const struct {
        const char *line;
        int rc;
        const char *says;
    } bad[] = {
        {"user", -ENOENT, "which one"},
        {"frobnicate", -ENOENT, "unknown command"},
        {"", -ENOENT, "unknown command"},
        {"user add", -EINVAL, "EMAIL is required"},
        {"user add a@b.example extra", -EINVAL, "unexpected argument"},
        {"user add a@b.example --password x", -EINVAL, "unknown option"},
        {"status --prompt", -EINVAL, "unknown option"},
        {"job list --limit", -EINVAL, "needs a value"},
        {"job list --limit ten", -EINVAL, "whole number"},
        {"job list --limit 0", -EINVAL, "from 1 to"},
        {"job list --state sleeping", -EINVAL, "one of"},
        {"backup f --no-blobs=yes", -EINVAL, "takes no value"},
        {"log-level loud", -EINVAL, "one of"},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
        memset(&e, 0, sizeof(e));
        int rc = argv_parse(bad[i].line, &cmd, &args, &prompt, &e);
        if (rc != bad[i].rc || !strstr(e.message, bad[i].says))
            printf("#   \"%s\": %d \"%s\"\n", bad[i].line, rc, e.message);
        CHECK_EQ_INT(rc, bad[i].rc);
        CHECK(strstr(e.message, bad[i].says) != NULL);
        CHECK(cmd == NULL && args == NULL);
    }
}

TEST(table_consistent)
{
    size_t n;
    const pv_admin_cmd_t *c = pv_admin_cmds(&n);
    CHECK_EQ_INT(n, PV_CMD_COUNT);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(c[i].id, (int)i);
        CHECK(pv_admin_cmd_by_name(c[i].name) == &c[i]);
        CHECK(c[i].summary && *c[i].summary && c[i].help && *c[i].help);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(c[i].words, c[j].words) != 0);
        int secrets = 0;
        for (const pv_admin_arg_t *a = c[i].args; a->name; a++) {
            CHECK(a->help && *a->help);
            CHECK(a->how != PV_ARG_FLAG || a->type == PV_ARG_BOOL);
            CHECK(a->how != PV_ARG_SECRET || a->type == PV_ARG_STR);
            CHECK(a->how != PV_ARG_POS || a->meta);
            CHECK(a->type != PV_ARG_INT || a->min <= a->max);
            secrets += a->how == PV_ARG_SECRET;
        }
        CHECK(secrets <= 1);
    }
    char u[256];
    pv_admin_cmd_usage(pv_admin_cmd_by_name("user.add"), u, sizeof(u));
    CHECK_EQ_STR(u, "user add EMAIL [--prompt]");
    pv_admin_cmd_usage(pv_admin_cmd_by_name("job.list"), u, sizeof(u));
    CHECK_EQ_STR(u, "job list [--state STATE] [--limit N]");
    pv_admin_cmd_usage(pv_admin_cmd_by_name("backup"), u, sizeof(u));
    CHECK_EQ_STR(u, "backup FILE [--no-blobs]");
    char tiny[8];
    pv_admin_cmd_usage(pv_admin_cmd_by_name("job.list"), tiny, sizeof(tiny));
    CHECK_EQ_INT(strlen(tiny), 7);
}

TEST(answers)
{
    json_t *ok = pv_admin_ok(json_pack("{s:i}", "n", 1));
    bool is_ok;
    json_t *result;
    const char *code, *msg;
    CHECK_EQ_INT(pv_admin_answer_parse(ok, &is_ok, &result, &code, &msg), 0);
    CHECK(is_ok && json_integer_value(json_object_get(result, "n")) == 1);
    json_decref(ok);
    json_t *err = pv_admin_error("not_found", "no such user");
    CHECK_EQ_INT(pv_admin_answer_parse(err, &is_ok, &result, &code, &msg), 0);
    CHECK(!is_ok);
    CHECK_EQ_STR(code, "not_found");
    CHECK_EQ_STR(msg, "no such user");
    json_decref(err);
    json_t *junk = json_pack("{s:s}", "ok", "yes");
    CHECK_EQ_INT(pv_admin_answer_parse(junk, &is_ok, &result, &code, &msg), -EINVAL);
    json_decref(junk);
    CHECK_EQ_INT(pv_admin_exit_for("not_configured"), PV_EXIT_UNAVAILABLE);
    CHECK_EQ_INT(pv_admin_exit_for("forbidden"), PV_EXIT_CONNECT);
    CHECK_EQ_INT(pv_admin_exit_for("not_found"), PV_EXIT_FAILED);
    CHECK_EQ_INT(pv_admin_exit_for(NULL), PV_EXIT_FAILED);
}

TEST(pack_failpoint)
{
    json_t *v = json_pack("{s:s}", "cmd", "status");
    char *buf = NULL;
    size_t len;
    pv_fail_reset("admin_pack:1");
    CHECK_EQ_INT(pv_admin_frame_pack(v, 100, &buf, &len), -ENOMEM);
    CHECK(buf == NULL);
    CHECK_EQ_INT(pv_admin_frame_pack(v, 100, &buf, &len), 0);
    free(buf);
    /* Into room taken beforehand: an answer that fits allocates nothing,
     * so no failure can strike it; one that does not fit grows it. */
    pv_fail_reset("admin_pack:1+");
    char *room = malloc(64);
    CHECK_EQ_INT(pv_admin_frame_pack_in(v, 100, room, 64, &buf, &len), 0);
    CHECK(buf == room && len == 4 + 1 + 4 + 7);
    free(buf);
    pv_fail_reset("");
    room = malloc(8);
    CHECK_EQ_INT(pv_admin_frame_pack_in(v, 100, room, 8, &buf, &len), 0);
    CHECK(buf != NULL && len == 16 && memcmp(buf + 4, "\x81\xa3" "cmd", 5) == 0);
    free(buf);
    pv_fail_reset("admin_pack:1");
    room = malloc(8);
    CHECK_EQ_INT(pv_admin_frame_pack_in(v, 100, room, 8, &buf, &len), -ENOMEM);
    CHECK(buf == NULL); /* room was freed: ASan would see a leak */
    pv_fail_reset("");
    json_decref(v);
}

int main(void)
{
    RUN(frame_check);
    RUN(pack_exact_bytes);
    RUN(round_trip_scalars);
    RUN(round_trip_sizes);
    RUN(cross_check_msgpack_c);
    RUN(unpack_refuses);
    RUN(unpack_limits);
    RUN(unpack_mutations);
    RUN(request_parse);
    RUN(argv_commands);
    RUN(argv_errors);
    RUN(table_consistent);
    RUN(answers);
    RUN(pack_failpoint);
    return t_done("admin_proto");
}
