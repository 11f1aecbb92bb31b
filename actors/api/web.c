/*
 * web.c — serves the web UI's static files (the output of
 * tools/webbuild.sh) from the web root, so that the appliance needs nothing
 * from outside: no CDN, no fonts, no analytics.
 *
 * Two kinds of answer:
 *  - the page itself (GET /, and the UI's own client-side routes such as
 *    /videos): index.html with Cache-Control: no-cache, so that a new build
 *    is seen on the next load;
 *  - assets (GET /assets/{name}): the build names them by content hash
 *    (main.3f2a9c01be.js), so they are immutable and cached for a year. A
 *    name without a hash (a development tree served as is) gets no-cache.
 * A ".gz" sibling written by the build is sent instead of the file, with
 * Content-Encoding: gzip, when the client accepts gzip.
 *
 * The web root is resolved once: the config key `web_root` when the config
 * table has it and it is set, else $PV_WEB_ROOT, else ../web or ../../web
 * next to the running binary (build/bin/pvd and build/test/bin/pvd both
 * find build/web), else ../share/pv/web (an installed PREFIX/bin/pvd, as
 * `make install` and the Debian package lay it out). Paths are never taken from the request beyond one
 * checked file name, so nothing outside the root can be reached.
 */
#include "actors/api/api.h"
#include "app/kit.h"
#include "base/pv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_ACTOR "web"
#define CACHE_PAGE "no-cache"
#define CACHE_IMMUTABLE "public, max-age=31536000, immutable"

static char g_root[PATH_MAX]; /* "" when no built UI was found */
static pthread_once_t g_root_once = PTHREAD_ONCE_INIT;

/* Content types by extension; anything else is not served. */
static const struct {
    const char *ext;
    const char *type;
} g_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".webp", "image/webp"},
    {".ico", "image/x-icon"},
    {".json", "application/json; charset=utf-8"},
    {".webmanifest", "application/manifest+json"},
    {".txt", "text/plain; charset=utf-8"},
    {".woff2", "font/woff2"},
};

static const char *web_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < PV_ARRAY_LEN(g_types); i++)
        if (strcmp(dot, g_types[i].ext) == 0)
            return g_types[i].type;
    return NULL;
}

static bool has_index(const char *dir)
{
    char p[PATH_MAX];
    struct stat st;
    int n = snprintf(p, sizeof(p), "%s/index.html", dir);
    return n > 0 && (size_t)n < sizeof(p) && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Runs once, whichever loop asks first. */
static void root_resolve(void)
{
    const char *env = getenv("PV_WEB_ROOT");
    if (env && *env) {
        snprintf(g_root, sizeof(g_root), "%s", env);
        if (!has_index(g_root))
            pv_warn(LOG_ACTOR, "web root %s has no index.html", g_root);
        return;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0)
        return;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return;
    *slash = '\0';
    static const char *const rel[] = {"/../web", "/../../web", "/../share/pv/web"};
    for (size_t i = 0; i < PV_ARRAY_LEN(rel); i++) {
        char p[PATH_MAX];
        int n = snprintf(p, sizeof(p), "%s%s", exe, rel[i]);
        if (n > 0 && (size_t)n < sizeof(p) && has_index(p)) {
            if (!realpath(p, g_root))
                snprintf(g_root, sizeof(g_root), "%s", p);
            return;
        }
    }
    pv_warn(LOG_ACTOR, "no built web UI next to %s (run make)", exe);
}

static const char *web_root(pv_http_req_t *req)
{
    const char *cfg = pv_api_app(req)->cfg.web_root;
    if (*cfg)
        return cfg;
    pthread_once(&g_root_once, root_resolve);
    return g_root;
}

/* One file name of the build: letters, digits, '.', '_', '-'; not hidden. */
static bool name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 128 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* True when the name carries a content hash: "main.0123456789.js". */
static bool name_hashed(const char *name)
{
    const char *last = strrchr(name, '.');
    if (!last || last == name)
        return false;
    const char *p = last - 1;
    size_t hex = 0;
    while (p > name && *p != '.') {
        bool h = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
        if (!h)
            return false;
        hex++;
        p--;
    }
    return p > name && *p == '.' && hex >= 8;
}

/* The q value of one Accept-Encoding element's parameters (";q=0.5"),
 * 1 when it has none. [p, e) is the text after the coding's name. */
static double coding_q(const char *p, const char *e)
{
    while (p < e) {
        const char *semi = memchr(p, ';', (size_t)(e - p));
        if (!semi)
            return 1.0;
        p = semi + 1;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        if (e - p >= 2 && (*p == 'q' || *p == 'Q') && p[1] == '=') {
            char num[16];
            size_t n = 0;
            for (p += 2; p < e && n + 1 < sizeof(num) && *p && strchr("0123456789.", *p); p++)
                num[n++] = *p;
            num[n] = '\0';
            return n ? strtod(num, NULL) : 0.0;
        }
    }
    return 1.0;
}

/* An Accept-Encoding value (RFC 9110 12.5.3) takes gzip: named with q > 0,
 * or not named and "*" with q > 0. Pure: tests/fuzz/fuzz_web.c feeds it
 * arbitrary bytes. */
static bool accepts_gzip(const char *h)
{
    double gzip_q = -1, star_q = -1;
    for (const char *p = h; p && *p;) {
        const char *e = p + strcspn(p, ",");
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        size_t tok = strcspn(p, "; \t,");
        if (p + tok > e)
            tok = (size_t)(e - p);
        if (tok == 4 && strncasecmp(p, "gzip", 4) == 0)
            gzip_q = coding_q(p + tok, e);
        else if (tok == 1 && *p == '*')
            star_q = coding_q(p + tok, e);
        p = *e ? e + 1 : e;
    }
    return gzip_q >= 0 ? gzip_q > 0 : star_q > 0;
}

/* Opens dir/name, or its .gz sibling when there is one and the client takes
 * gzip: the fd with *gz (sent gzipped), *vary (the answer depends on
 * Accept-Encoding) and the ETag filled in; -errno otherwise. */
static int open_variant(pv_http_req_t *req, const char *dir, const char *name,
                        bool *gz, bool *vary, char *etag, size_t etaglen)
{
    char p[PATH_MAX];
    struct stat st;
    int n = snprintf(p, sizeof(p), "%s/%s.gz", dir, name);
    if (n < 0 || (size_t)n >= sizeof(p))
        return -ENAMETOOLONG;
    bool have_gz = stat(p, &st) == 0 && S_ISREG(st.st_mode);
    *gz = have_gz && accepts_gzip(pv_http_header(req, "Accept-Encoding"));
    *vary = have_gz;
    if (!*gz)
        p[n - 3] = '\0';
    if (pv_fail("web_open"))
        return -EIO;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -ENOENT;
    }
    /* Size and mtime name this exact content; -gz keeps the two encodings
     * apart in caches. */
    snprintf(etag, etaglen, "%llx-%llx%s", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtime, *gz ? "-gz" : "");
    return fd;
}

static void serve(pv_http_req_t *req, const char *dir, const char *name,
                  const char *cache)
{
    const char *type = web_type(name);
    if (!type) {
        pv_http_respond_error(req, 404, "not_found", "no such file");
        return;
    }
    bool gz = false, vary = false;
    char etag[64];
    int fd = open_variant(req, dir, name, &gz, &vary, etag, sizeof(etag));
    if (fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR) {
        pv_http_respond_error(req, 404, "not_found", "no such file");
        return;
    }
    if (fd < 0) {
        pv_api_fail(req, fd);
        return;
    }
    if (vary)
        pv_http_add_header(req, "Vary", "Accept-Encoding");
    if (gz)
        pv_http_add_header(req, "Content-Encoding", "gzip");
    pv_http_respond_file(req, fd, type, etag, cache);
}

int pv_web_asset_name(pv_http_req_t *req, const char *name, char *out, size_t outlen)
{
    const char *root = web_root(req);
    const char *dot = strrchr(name, '.');
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%s/assets", root);
    if (!*root || !dot || n < 0 || (size_t)n >= sizeof(dir))
        return -ENOENT;
    size_t stem = (size_t)(dot - name);
    DIR *d = opendir(dir);
    if (!d)
        return -ENOENT;
    int rc = -ENOENT;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *f = e->d_name;
        bool same = strcmp(f, name) == 0;
        bool hashed = strncmp(f, name, stem) == 0 && f[stem] == '.' && name_hashed(f) &&
                      strcmp(strrchr(f, '.'), dot) == 0 && strchr(f + stem + 1, '.') == strrchr(f, '.');
        if ((same || hashed) && strlen(f) < outlen) {
            snprintf(out, outlen, "%s", f);
            rc = 0;
            if (hashed)
                break;
        }
    }
    closedir(d);
    return rc;
}

/* GET / and the UI's client-side routes: the page. */
void pv_h_web_index(pv_http_req_t *req)
{
    const char *root = web_root(req);
    if (!*root) {
        pv_http_respond_error(req, 404, "not_found",
                              "the web UI is not built on this server (run make)");
        return;
    }
    serve(req, root, "index.html", CACHE_PAGE);
}

/* GET /assets/{name}: one file of the build. */
void pv_h_web_asset(pv_http_req_t *req)
{
    const char *root = web_root(req);
    const char *name = pv_http_param(req, "name");
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%s/assets", root);
    if (!*root || !name_ok(name) || n < 0 || (size_t)n >= sizeof(dir)) {
        pv_http_respond_error(req, 404, "not_found", "no such file");
        return;
    }
    serve(req, dir, name, name_hashed(name) ? CACHE_IMMUTABLE : CACHE_PAGE);
}
