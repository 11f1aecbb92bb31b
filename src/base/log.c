/*
 * log.c — JSON lines on stderr, one write(2) per line so that lines from
 * different threads never interleave. The level can change at run time
 * (pvctl log-level), hence the atomic.
 */
#include "base/pv.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int g_level = PV_LOG_INFO;

static const char *const g_names[] = {"debug", "info", "warn", "error"};

void pv_log_set_level(int level)
{
    if (level >= PV_LOG_DEBUG && level <= PV_LOG_ERROR)
        atomic_store(&g_level, level);
}

int pv_log_get_level(void) { return atomic_load(&g_level); }

int pv_log_level_parse(const char *name)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_names); i++)
        if (name && strcmp(name, g_names[i]) == 0)
            return (int)i;
    if (name && strcmp(name, "warning") == 0)
        return PV_LOG_WARN;
    return -EINVAL;
}

const char *pv_log_level_name(int level)
{
    if (level < PV_LOG_DEBUG || level > PV_LOG_ERROR)
        return "info";
    return g_names[level];
}

/* Append s as a JSON string body (without quotes), escaping as needed. */
static size_t json_escape(char *out, size_t cap, size_t pos, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[pos++] = '\\';
            out[pos++] = (char)c;
        } else if (c == '\n') {
            out[pos++] = '\\';
            out[pos++] = 'n';
        } else if (c < 0x20) {
            pos += (size_t)snprintf(out + pos, cap - pos, "\\u%04x", c);
        } else {
            out[pos++] = (char)c;
        }
    }
    return pos;
}

static size_t put(char *out, size_t cap, size_t pos, const char *s)
{
    if (pos + 1 >= cap)
        return pos;
    size_t n = strnlen(s, cap - pos - 1);
    memcpy(out + pos, s, n);
    return pos + n;
}

void pv_log(int level, const char *actor, const char *req_id, const char *extra,
            const char *fmt, ...)
{
    if (level < atomic_load_explicit(&g_level, memory_order_relaxed))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    char ts[32];
    pv_time_format(pv_now_ms(), ts);
    char line[4096];
    size_t cap = sizeof(line) - 2, pos = 0;
    pos = put(line, cap, pos, "{\"time\":\"");
    pos = put(line, cap, pos, ts);
    pos = put(line, cap, pos, "\",\"level\":\"");
    pos = put(line, cap, pos, pv_log_level_name(level));
    pos = put(line, cap, pos, "\",\"actor\":\"");
    pos = json_escape(line, cap, pos, actor ? actor : "pv");
    if (req_id) {
        pos = put(line, cap, pos, "\",\"req\":\"");
        pos = json_escape(line, cap, pos, req_id);
    }
    pos = put(line, cap, pos, "\",\"msg\":\"");
    pos = json_escape(line, cap, pos, msg);
    pos = put(line, cap, pos, "\"");
    if (extra && *extra) {
        pos = put(line, cap, pos, ",");
        pos = put(line, cap, pos, extra);
    }
    pos = put(line, cap, pos, "}");
    line[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w; /* nowhere left to report a failed log write */
}
