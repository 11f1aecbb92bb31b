/*
 * test_api_body.c — tables of good and bad request bodies and list query
 * strings, with the field and code each bad one must name.
 */
#include "app/api_body.h"
#include "base/pv.h"
#include "t.h"

#include <stdlib.h>

#define B(s) s, sizeof(s) - 1

TEST(credentials_table)
{
    static const struct {
        const char *body;
        size_t len;
        bool signup;
        int rc;
        const char *field, *code; /* on error */
        const char *email;        /* on success */
    } cases[] = {
        {B("{\"email\":\" Bob@Example.COM \",\"password\":\"12345678\"}"), true, 0, 0, 0,
         "bob@example.com"},
        {B("{\"password\":\"12345678\",\"email\":\"a@b.io\",\"extra\":[1,{}]}"), true, 0, 0, 0,
         "a@b.io"},
        {B(" {\"email\":\"a@b.io\",\"password\":\"x\"} \r\n"), false, 0, 0, 0, "a@b.io"},
        /* 8 characters, 16 bytes */
        {B("{\"email\":\"a@b.io\",\"password\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}"),
         true, 0, 0, 0, "a@b.io"},
        {B("{\"email\":\"a@b.io\",\"password\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}"),
         true, -EINVAL, "password", "password_too_short", 0},
        {B("{\"email\":\"a@b.io\",\"password\":\"1234567\"}"), true, -EINVAL, "password",
         "password_too_short", 0},
        {B("{\"email\":\"a@b.io\",\"password\":\"1234567\"}"), false, 0, 0, 0, "a@b.io"},
        {B("{\"email\":\"a@b.io\",\"password\":\"\"}"), false, -EINVAL, "password",
         "invalid_value", 0},
        {B("{\"email\":\"a@b.io\"}"), false, -EINVAL, "password", "missing_field", 0},
        {B("{\"password\":\"12345678\"}"), false, -EINVAL, "email", "missing_field", 0},
        {B("{\"email\":7,\"password\":\"12345678\"}"), false, -EINVAL, "email", "wrong_type", 0},
        {B("{\"email\":\"a@b.io\",\"password\":null}"), false, -EINVAL, "password",
         "wrong_type", 0},
        {B("{\"email\":\"a@b.io\",\"password\":[\"x\"]}"), false, -EINVAL, "password",
         "wrong_type", 0},
        {B("{\"email\":\"nope\",\"password\":\"12345678\"}"), false, -EINVAL, "email",
         "invalid_email", 0},
        {B("{\"email\":\"a b@c.io\",\"password\":\"12345678\"}"), false, -EINVAL, "email",
         "invalid_email", 0},
        {B("{\"email\":\"a@b.io\",\"email\":\"c@d.io\",\"password\":\"12345678\"}"), false,
         -EINVAL, "", "invalid_json", 0},
        {B("{\"email\":\"a@b.io\",\"password\":\"12345678\"} x"), false, -EINVAL, "",
         "invalid_json", 0},
        {B("{\"email\":\"a@b.io\",\"password\":\"12345678\"}{}"), false, -EINVAL, "",
         "invalid_json", 0},
        {B("{\"email\":\"a@b.io\",\"password\":\"1234\\u00005678\"}"), false, -EINVAL, "",
         "invalid_json", 0},
        {B("{\"email\":\"a@b.io\",\"password\":\"12345678\"}\0"), false, -EINVAL, "",
         "invalid_json", 0},
        {B("{\"email\":\"a@b.io\",\"password\":\"1234\xff" "5678\"}"), false, -EINVAL, "",
         "invalid_json", 0},
        {B("{\"email\":\"a@b.io\",\"password\":\"\xed\xa0\x80" "12345678\"}"), false, -EINVAL,
         "", "invalid_json", 0},
        {B("[\"a@b.io\",\"12345678\"]"), false, -EINVAL, "", "invalid_json", 0},
        {B("\"a@b.io\""), false, -EINVAL, "", "invalid_json", 0},
        {B("null"), false, -EINVAL, "", "invalid_json", 0},
        {B(""), false, -EINVAL, "", "invalid_json", 0},
        {B("   "), false, -EINVAL, "", "invalid_json", 0},
        {B("{\"email\":\"a@b.io\",\"password\":\"12345678\""), false, -EINVAL, "",
         "invalid_json", 0},
        {B("{'email':'a@b.io'}"), false, -EINVAL, "", "invalid_json", 0},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
        pv_credentials_t c;
        pv_body_err_t e;
        int rc = pv_body_credentials(cases[i].body, cases[i].len, cases[i].signup, &c, &e);
        if (rc != cases[i].rc)
            printf("#   case %zu: rc %d (%s: %s)\n", i, rc, rc ? e.code : "", rc ? e.message : "");
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0 && cases[i].rc == 0) {
            CHECK_EQ_STR(c.email, cases[i].email);
        } else if (rc != 0 && cases[i].rc != 0) {
            CHECK_EQ_STR(e.field, cases[i].field);
            CHECK_EQ_STR(e.code, cases[i].code);
            CHECK_EQ_INT(e.rc, rc); /* the error says what was returned */
            CHECK_EQ_INT(e.status, 400);
            CHECK(e.message[0] != '\0');
            CHECK(c.password[0] == '\0'); /* nothing half-filled */
        }
    }
}

TEST(credentials_limits)
{
    pv_credentials_t c;
    pv_body_err_t e;
    char *body = malloc(PV_BODY_MAX_BYTES + 100);
    /* 1024 bytes of password passes, 1025 does not */
    for (int extra = 0; extra <= 1; extra++) {
        int n = sprintf(body, "{\"email\":\"a@b.io\",\"password\":\"");
        memset(body + n, 'p', (size_t)(PV_PASSWORD_MAX + extra));
        n += PV_PASSWORD_MAX + extra;
        n += sprintf(body + n, "\"}");
        int rc = pv_body_credentials(body, (size_t)n, true, &c, &e);
        CHECK_EQ_INT(rc, extra ? -EINVAL : 0);
        if (extra)
            CHECK_EQ_STR(e.code, "password_too_long");
        else
            CHECK_EQ_INT(strlen(c.password), PV_PASSWORD_MAX);
    }
    /* too large a body */
    memset(body, ' ', PV_BODY_MAX_BYTES + 1);
    CHECK_EQ_INT(pv_body_credentials(body, PV_BODY_MAX_BYTES + 1, true, &c, &e), -EMSGSIZE);
    CHECK_EQ_STR(e.code, "body_too_large");
    CHECK_EQ_INT(e.rc, -EMSGSIZE);
    CHECK_EQ_INT(e.status, 413);
    /* nesting: 32 levels parse, 33 do not; brackets in strings do not count */
    for (int depth = PV_BODY_MAX_DEPTH - 1; depth <= PV_BODY_MAX_DEPTH; depth++) {
        int n = sprintf(body, "{\"email\":\"a@b.io\",\"password\":\"[[[{{{12345678\",\"x\":");
        for (int i = 0; i < depth; i++)
            body[n++] = '[';
        for (int i = 0; i < depth; i++)
            body[n++] = ']';
        body[n++] = '}';
        int rc = pv_body_credentials(body, (size_t)n, true, &c, &e);
        CHECK_EQ_INT(rc, depth < PV_BODY_MAX_DEPTH ? 0 : -EINVAL);
    }
    /* deep abuse well past jansson's own limit fails fast, no crash */
    memset(body, '[', 60000);
    CHECK_EQ_INT(pv_body_credentials(body, 60000, true, &c, &e), -EINVAL);
    CHECK_EQ_STR(e.code, "invalid_json");
    free(body);
    /* allocation failure is a clean error */
    pv_fail_reset("body.json:1");
    CHECK_EQ_INT(pv_body_credentials(B("{\"email\":\"a@b.io\",\"password\":\"12345678\"}"),
                                     true, &c, &e), -ENOMEM);
    pv_fail_reset("");
    CHECK_EQ_STR(e.code, "out_of_memory");
    CHECK_EQ_INT(e.rc, -ENOMEM);
    CHECK_EQ_INT(e.status, 503);
}

TEST(refresh_table)
{
    static const struct {
        const char *body;
        size_t len;
        int rc;
        const char *code;
    } cases[] = {
        {B("{\"refresh_token\":\"abc-_DEF\"}"), 0, NULL},
        {B("{\"refresh_token\":\"\"}"), -EINVAL, "invalid_value"},
        {B("{\"refresh_token\":42}"), -EINVAL, "wrong_type"},
        {B("{}"), -EINVAL, "missing_field"},
        {B("{\"refresh\":\"abc\"}"), -EINVAL, "missing_field"},
        {B("[]"), -EINVAL, "invalid_json"},
        {B("{\"refresh_token\":\"a\",\"refresh_token\":\"b\"}"), -EINVAL, "invalid_json"},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
        pv_refresh_body_t r;
        pv_body_err_t e;
        int rc = pv_body_refresh(cases[i].body, cases[i].len, &r, &e);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0)
            CHECK_EQ_STR(r.refresh_token, "abc-_DEF");
        else if (cases[i].code)
            CHECK_EQ_STR(e.code, cases[i].code);
    }
    char body[400];
    pv_refresh_body_t r;
    pv_body_err_t e;
    int n = sprintf(body, "{\"refresh_token\":\"");
    memset(body + n, 'a', 257);
    n += 257;
    n += sprintf(body + n, "\"}");
    CHECK_EQ_INT(pv_body_refresh(body, (size_t)n, &r, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "refresh_token");
}

TEST(list_params_table)
{
    static const struct {
        const char *q;
        int rc;
        int limit;
        const char *cursor; /* NULL: none */
        const char *field;  /* on error */
    } cases[] = {
        {NULL, 0, 50, NULL, NULL},
        {"", 0, 50, NULL, NULL},
        {"limit=10", 0, 10, NULL, NULL},
        {"limit=1&cursor=01hx4k3d5e6f7g8h9j0k1m2n3p", 0, 1, "01hx4k3d5e6f7g8h9j0k1m2n3p", NULL},
        {"cursor=abc_DEF-9&limit=100", 0, 100, "abc_DEF-9", NULL},
        {"other=1&&limit=07&x", 0, 7, NULL, NULL},
        {"cursor=", 0, 50, NULL, NULL},
        {"limit=%31%32", 0, 12, NULL, NULL},
        {"limit=0", -EINVAL, 0, NULL, "limit"},
        {"limit=101", -EINVAL, 0, NULL, "limit"},
        {"limit=-1", -EINVAL, 0, NULL, "limit"},
        {"limit=", -EINVAL, 0, NULL, "limit"},
        {"limit", -EINVAL, 0, NULL, "limit"},
        {"limit=1e2", -EINVAL, 0, NULL, "limit"},
        {"limit=99999999999999999999", -EINVAL, 0, NULL, "limit"},
        {"limit=+5", -EINVAL, 0, NULL, "limit"},
        {"limit=5&limit=6", -EINVAL, 0, NULL, "limit"},
        {"limit=%3", -EINVAL, 0, NULL, "limit"},
        {"cursor=a.b", -EINVAL, 0, NULL, "cursor"},
        {"cursor=a%00b", -EINVAL, 0, NULL, "cursor"},
        {"cursor=a+b", -EINVAL, 0, NULL, "cursor"},
        {"cursor=a&cursor=b", -EINVAL, 0, NULL, "cursor"},
        {"cursor=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, 50,
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL},
        {"cursor=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", -EINVAL, 0,
         NULL, "cursor"},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
        pv_list_params_t l;
        pv_body_err_t e;
        int rc = pv_body_list_params(cases[i].q, &l, &e);
        if (rc != cases[i].rc)
            printf("#   case %zu (%s): rc %d\n", i, cases[i].q, rc);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0 && cases[i].rc == 0) {
            CHECK_EQ_INT(l.limit, cases[i].limit);
            CHECK_EQ_INT(l.has_cursor, cases[i].cursor != NULL);
            CHECK_EQ_STR(l.cursor, cases[i].cursor ? cases[i].cursor : "");
        } else if (rc != 0) {
            CHECK_EQ_STR(e.field, cases[i].field);
            CHECK_EQ_STR(e.code, "invalid_value");
            CHECK_EQ_INT(l.limit, 50);
            CHECK(!l.has_cursor);
        }
    }
}

TEST(object_for_other_handlers)
{
    json_t *o;
    pv_body_err_t e;
    CHECK_EQ_INT(pv_body_object(B("{\"photo_ids\":[\"a\",\"b\"],\"fps\":30}"), &o, &e), 0);
    CHECK(json_is_array(json_object_get(o, "photo_ids")));
    json_decref(o);
    CHECK_EQ_INT(pv_body_object(B("{\"a\":1}garbage"), &o, &e), -EINVAL);
    CHECK(o == NULL);
    CHECK_EQ_INT(pv_body_object(NULL, 0, &o, &e), -EINVAL);
}

int main(void)
{
    RUN(credentials_table);
    RUN(credentials_limits);
    RUN(refresh_table);
    RUN(list_params_table);
    RUN(object_for_other_handlers);
    return t_done("api_body");
}
