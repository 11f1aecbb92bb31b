/*
 * test_web.c — the pure parts of actors/web.c, the static file handler:
 * which Accept-Encoding values take gzip, which asset names are served,
 * which count as content-hashed (immutable), and content types. The file
 * is #included so that its static functions can be tested (h2o's way);
 * serving itself is tested end to end by tests/ui (real pvd, real browser).
 */
#include "../../actors/api/web.c"

#include "t.h"

TEST(gzip_accepted)
{
    CHECK(accepts_gzip("gzip"));
    CHECK(accepts_gzip("gzip, deflate, br"));
    CHECK(accepts_gzip("br, GZIP"));
    CHECK(accepts_gzip("deflate,gzip;q=0.5"));
    CHECK(accepts_gzip("gzip ; q=1"));
    CHECK(accepts_gzip("\tgzip"));
    CHECK(accepts_gzip("*"));
    CHECK(accepts_gzip("br;q=1, *;q=0.1"));
    CHECK(accepts_gzip("gzip;level=9"));
}

TEST(gzip_refused)
{
    CHECK(!accepts_gzip(NULL));
    CHECK(!accepts_gzip(""));
    CHECK(!accepts_gzip("identity"));
    CHECK(!accepts_gzip("br, deflate"));
    CHECK(!accepts_gzip("gzip;q=0"));
    CHECK(!accepts_gzip("gzip;q=0.000"));
    CHECK(!accepts_gzip("gzip; q=0, *"));     /* named beats "*" */
    CHECK(!accepts_gzip("*;q=0"));
    CHECK(!accepts_gzip("x-gzip"));
    CHECK(!accepts_gzip("gzipx"));
    CHECK(!accepts_gzip("gzip;q="));
    CHECK(!accepts_gzip(",,,;;;q=1"));
}

TEST(asset_names)
{
    CHECK(name_ok("main.0123456789.js"));
    CHECK(name_ok("icons.svg"));
    CHECK(name_ok("a_b-c.css"));
    CHECK(!name_ok(NULL));
    CHECK(!name_ok(""));
    CHECK(!name_ok("."));
    CHECK(!name_ok(".."));
    CHECK(!name_ok(".env"));
    CHECK(!name_ok("../pvd.conf"));
    CHECK(!name_ok("a/b.js"));
    CHECK(!name_ok("a b.js"));
    CHECK(!name_ok("a%2fb.js"));
    char longname[200];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK(!name_ok(longname));
}

TEST(hashed_names)
{
    CHECK(name_hashed("main.0123456789.js"));
    CHECK(name_hashed("app.3e24cb3713.css"));
    CHECK(name_hashed("x.deadbeef.svg"));
    CHECK(!name_hashed("main.js"));
    CHECK(!name_hashed("main.0123.js"));        /* too short to be a hash */
    CHECK(!name_hashed("main.0123456789ABCDEF.js")); /* upper case: not ours */
    CHECK(!name_hashed("main.notahashatall.js"));
    CHECK(!name_hashed("0123456789.js"));       /* no name before it */
    CHECK(!name_hashed(".0123456789.js"));
}

TEST(content_types)
{
    CHECK_EQ_STR(web_type("index.html"), "text/html; charset=utf-8");
    CHECK_EQ_STR(web_type("main.0123456789.js"), "text/javascript; charset=utf-8");
    CHECK_EQ_STR(web_type("app.css"), "text/css; charset=utf-8");
    CHECK_EQ_STR(web_type("icons.svg"), "image/svg+xml");
    CHECK(web_type("pvd.conf") == NULL);
    CHECK(web_type("noext") == NULL);
    CHECK(web_type("x.js.gz") == NULL); /* siblings are never asked for by name */
}

int main(void)
{
    RUN(gzip_accepted);
    RUN(gzip_refused);
    RUN(asset_names);
    RUN(hashed_names);
    RUN(content_types);
    return t_done("web");
}
