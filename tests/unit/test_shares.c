/*
 * test_shares.c — the pure pieces of share links (src/model/shares.c): the
 * cookie that proves a share's password (made, checked, refused when
 * forged, for another share, after rotation past its key), the password
 * body parser (form and JSON, with bad input), and HTML escaping of the
 * page's user text.
 */
#include "model/shares.h"
#include "t.h"

#include <string.h>

static void keys(pv_keys_t *k, uint32_t kid, uint8_t fill)
{
    memset(k, 0, sizeof(*k));
    k->n_presign = 1;
    k->presign_kid[0] = kid;
    memset(k->presign[0], fill, 32);
}

static void share(pv_share_t *s, uint8_t seed)
{
    memset(s, 0, sizeof(*s));
    s->v = 1;
    memset(s->id, seed, 16);
    s->expires_ms = 1764955206123;
}

TEST(cookie_round_trip)
{
    pv_keys_t k;
    pv_share_t s, other;
    keys(&k, 7, 1);
    share(&s, 1);
    share(&other, 2);
    char v[PV_SHARE_COOKIE_TEXT], h[256];
    pv_share_cookie_make(&k, &s, v);
    CHECK(strncmp(v, "7.", 2) == 0);
    CHECK_EQ_INT(strlen(v), 45);
    snprintf(h, sizeof(h), "a=b; pv_share=%s; c=d", v);
    CHECK(pv_share_cookie_ok(&k, &s, h));
    CHECK(!pv_share_cookie_ok(&k, &other, h)); /* another share */
    snprintf(h, sizeof(h), "pv_share=%s", v);
    CHECK(pv_share_cookie_ok(&k, &s, h));
    s.expires_ms++; /* a share made again with another expiry */
    CHECK(!pv_share_cookie_ok(&k, &s, h));
    s.expires_ms--;
    /* a second cookie of the name that does not fit, then one that does */
    snprintf(h, sizeof(h), "pv_share=7.%043d; pv_share=%s", 0, v);
    CHECK(pv_share_cookie_ok(&k, &s, h));
    /* rotation: the old key still verifies while kept; not once dropped */
    pv_keys_t r = k;
    r.n_presign = 2;
    r.presign_kid[1] = 7;
    memcpy(r.presign[1], k.presign[0], 32);
    r.presign_kid[0] = 8;
    memset(r.presign[0], 9, 32);
    CHECK(pv_share_cookie_ok(&r, &s, h));
    r.n_presign = 1;
    CHECK(!pv_share_cookie_ok(&r, &s, h));
}

TEST(cookie_refused)
{
    pv_keys_t k;
    pv_share_t s;
    keys(&k, 7, 1);
    share(&s, 1);
    char v[PV_SHARE_COOKIE_TEXT], h[256];
    pv_share_cookie_make(&k, &s, v);
    static const char *const bad[] = {
        NULL,
        "",
        "pv_share=",
        "pv_share=7.",
        "pv_share=.abc",
        "xpv_share=%s",
        "pv_share=8%s",
        "pv_share=7.%s0",
        "pv_share=x.%s",
        "pv_share=99999999999.%s",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!bad[i]) {
            CHECK(!pv_share_cookie_ok(&k, &s, NULL));
            continue;
        }
        snprintf(h, sizeof(h), bad[i], v + 2); /* v without "7." where %s */
        CHECK(!pv_share_cookie_ok(&k, &s, h));
    }
    snprintf(h, sizeof(h), "pv_share=%s", v);
    h[strlen(h) - 1] ^= 1; /* one character of the MAC */
    CHECK(!pv_share_cookie_ok(&k, &s, h));
}

TEST(password_parse)
{
    char pw[PV_SHARE_PASSWORD_MAX + 1];
    const char *f = "application/x-www-form-urlencoded";
    CHECK_EQ_INT(pv_share_password_parse(f, "password=open+s%C3%A9same", 25, pw), 0);
    CHECK_EQ_STR(pw, "open s\xc3\xa9same");
    CHECK_EQ_INT(pv_share_password_parse("application/x-www-form-urlencoded; charset=utf-8",
                                         "x=1&password=a&y=2", 18, pw),
                 0);
    CHECK_EQ_STR(pw, "a");
    CHECK_EQ_INT(pv_share_password_parse("application/json", "{\"password\":\"p w\"}", 18, pw), 0);
    CHECK_EQ_STR(pw, "p w");
    static const struct {
        const char *ctype, *body;
    } bad[] = {
        {"application/x-www-form-urlencoded", "password="},
        {"application/x-www-form-urlencoded", "pw=x"},
        {"application/x-www-form-urlencoded", "password=%00x"},
        {"application/x-www-form-urlencoded", "password=%zz"},
        {"application/x-www-form-urlencoded", "password=%ff"},
        {"application/json", "{\"password\":\"\"}"},
        {"application/json", "{\"password\":5}"},
        {"application/json", "{\"password\":\"a\\u0000b\"}"},
        {"application/json", "[\"password\"]"},
        {"application/json", "{nope"},
        {"text/plain", "password=x"},
        {NULL, "password=x"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(pv_share_password_parse(bad[i].ctype, bad[i].body, strlen(bad[i].body), pw),
                     -EINVAL);
    char big[PV_SHARE_PASSWORD_MAX + 32];
    memcpy(big, "password=", 9);
    memset(big + 9, 'a', PV_SHARE_PASSWORD_MAX + 1);
    CHECK_EQ_INT(pv_share_password_parse(f, big, 9 + PV_SHARE_PASSWORD_MAX + 1, pw), -EINVAL);
    CHECK_EQ_INT(pv_share_password_parse(f, big, 9 + PV_SHARE_PASSWORD_MAX, pw), 0);
    CHECK_EQ_INT(strlen(pw), PV_SHARE_PASSWORD_MAX);
}

TEST(page_escapes)
{
    pv_sb_t sb = {0};
    pv_share_page_t p = {.token = "tok",
                         .title = "<b>\"x\" & 'y'</b>",
                         .origin = "https://h",
                         .css = "share.css",
                         .width = 640,
                         .height = 480,
                         .duration_s = 3};
    pv_share_page_html(&sb, &p);
    CHECK(!sb.failed);
    CHECK(strstr(sb.p, "<b>") == NULL);
    CHECK(strstr(sb.p, "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;") != NULL);
    CHECK(strstr(sb.p, "content=\"https://h/s/tok/poster\"") != NULL);
    CHECK(strstr(sb.p, "style=") == NULL && strstr(sb.p, "<script") == NULL);
    pv_sb_free(&sb);
}

int main(void)
{
    RUN(cookie_round_trip);
    RUN(cookie_refused);
    RUN(password_parse);
    RUN(page_escapes);
    return t_done("shares");
}
