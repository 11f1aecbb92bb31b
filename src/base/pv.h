/*
 * pv.h — what every part of pv shares: the version, the result convention,
 * logging and the failure seam used by tests.
 *
 * Results: functions return 0 on success and a negative errno on failure
 * (-ENOENT not found, -EEXIST conflict, -EINVAL bad input, -ENOSPC store or
 * disk full, -EMSGSIZE too large, -ENOMEM, -EIO, -EACCES, -ETIMEDOUT).
 * One convention throughout; pv_api_fail() (src/app/kit.c) maps a result
 * to an HTTP answer, and the admin actor's req_error_rc() to a pvctl one.
 */
#ifndef PV_H
#define PV_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_VERSION "0.1.0"

#define PV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- logging (src/log.c): JSON lines on stderr ---- */
enum pv_log_level { PV_LOG_DEBUG, PV_LOG_INFO, PV_LOG_WARN, PV_LOG_ERROR };

void pv_log_set_level(int level);
int pv_log_get_level(void);
/* "debug", "info", "warn", "error" -> level; -EINVAL otherwise. */
int pv_log_level_parse(const char *name);
const char *pv_log_level_name(int level);
/*
 * One JSON line: {"time","level","actor","req"?,"msg", ...extra}.
 * extra is NULL or a string of already-encoded JSON members without braces,
 * e.g. "\"status\":200,\"ms\":1.5".
 */
void pv_log(int level, const char *actor, const char *req_id, const char *extra,
            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define pv_info(actor, ...) pv_log(PV_LOG_INFO, actor, NULL, NULL, __VA_ARGS__)
#define pv_warn(actor, ...) pv_log(PV_LOG_WARN, actor, NULL, NULL, __VA_ARGS__)
#define pv_error(actor, ...) pv_log(PV_LOG_ERROR, actor, NULL, NULL, __VA_ARGS__)
#define pv_debug(actor, ...) pv_log(PV_LOG_DEBUG, actor, NULL, NULL, __VA_ARGS__)

/* ---- failure seam (src/base/fail.c): the test build only ----
 * Allocation, I/O, network and FFmpeg call sites are written
 *     p = pv_fail("site") ? NULL : malloc(n);
 * In the test build (-DPV_TEST_BUILD), PV_FAILPOINTS="site:N[,site:N...]"
 * makes the Nth call of pv_fail("site") (counting from 1) return true,
 * once; "site:N+" fails the Nth and every later call; the site "*" is any
 * site, so "*:N" fails the Nth pv_fail call whatever its site. Call sites
 * turn that into their normal error path, so tests can walk N and see a
 * clean error each time. In every other build pv_fail(site) is the
 * constant false: the failure branches are dead code and are compiled
 * away, with the site names. */
#ifdef PV_TEST_BUILD
bool pv_fail_at(const char *site, const char *file, int line);
#define pv_fail(site) pv_fail_at(site, __FILE__, __LINE__)
/* Re-read the rules from spec (NULL: the environment, "": none) and start
 * counting calls and failures from zero. Any thread. */
void pv_fail_reset(const char *spec);
/* While held (nested), this thread's pv_fail calls neither count nor
 * fail: for the test-only admin commands that arm and read the seam. */
void pv_fail_hold(bool on);
/* Calls and injected failures since the last reset, and the last one. */
typedef struct pv_fail_count {
    long calls, fired;
    char last[128];     /* "site file:line" of the last failure, or "" */
} pv_fail_count_t;
pv_fail_count_t pv_fail_count(void);
/* Every call site reached since the process started, with its counts
 * (never reset) and where in the current window (since the last reset)
 * its first and last calls fell, as call numbers (0: not called). */
typedef struct pv_fail_site {
    const char *site, *file; /* static strings */
    int line;
    long calls, fired;
    long first, last;
} pv_fail_site_t;
/* Copies at most max records into out; returns how many there are. */
size_t pv_fail_sites(pv_fail_site_t *out, size_t max);
#else
#define pv_fail(site) ((void)sizeof(site), false)
#endif

/* ---- small helpers (src/util.c) ---- */
int64_t pv_now_ms(void);                      /* wall clock, ms since epoch */
int64_t pv_mono_us(void);                     /* monotonic, microseconds */
/* RFC 3339 UTC with milliseconds: 2026-11-28T17:20:06.123Z (needs 25 bytes) */
void pv_time_format(int64_t ms, char out[32]);
/* write all / fsync helpers that retry EINTR; 0 or -errno */
int pv_write_all(int fd, const void *buf, size_t len);
int pv_fsync_dir(const char *dir);
int pv_mkdir_p(const char *path, unsigned mode);
/* Copy src into dst (size bytes), always NUL-terminated, cut if longer;
 * returns strlen(src). */
size_t pv_strlcpy(char *dst, const char *src, size_t size);

/* ---- string builder (src/util.c): answers written straight to text ----
 * On allocation failure `failed` is set and later writes are no-ops. */
typedef struct pv_sb {
    char *p;        /* NUL-terminated text, or NULL before the first write */
    size_t len;     /* bytes used */
    size_t cap;     /* bytes allocated */
    bool failed;    /* an allocation failed: the text is incomplete */
} pv_sb_t;
void pv_sb_add(pv_sb_t *sb, const char *s, size_t n);
void pv_sb_puts(pv_sb_t *sb, const char *s);
void pv_sb_printf(pv_sb_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string, quotes included (s must be valid UTF-8). */
void pv_sb_json_str(pv_sb_t *sb, const char *s);
void pv_sb_free(pv_sb_t *sb);

#endif
