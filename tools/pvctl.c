/*
 * pvctl.c — the appliance owner's window into a running pvd: one request
 * over the admin socket, one answer, printed as a table or as JSON, with an
 * exit status scripts can trust (see pvctl(8), or `pvctl help`).
 *
 * Everything about the commands — their words, arguments, help, man page
 * and completion — comes from the table in src/admin_proto.c; this file is
 * the plumbing around it: finding the socket (flag, config, environment),
 * secrets (a password is generated here or typed here, never put on the
 * command line), relative paths made absolute (pvd runs elsewhere), the
 * blocking exchange with timeouts, and output.
 */
#include "base/admin_proto.h"
#include "base/config.h"
#include "base/man.h"
#include "base/pv.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_S 30
#define GEN_PW_LEN 20

typedef struct pvctl_opts {
    const char *socket;  /* --socket */
    const char *config;  /* --config */
    bool json;           /* --json */
    int timeout_s;       /* --timeout; -1: the command's default */
} pvctl_opts_t;

static void usage_line(FILE *f)
{
    fputs("usage: pvctl [--socket PATH] [--config FILE] [--json] [--timeout SECONDS] COMMAND [ARGS]\n"
          "       pvctl help [COMMAND]\n",
          f);
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "pvctl: %s\n", msg);
    return PV_EXIT_USAGE;
}

/* ---------------- help ---------------- */

static void help_all(FILE *f)
{
    usage_line(f);
    fputs("\nSees and steers a running pvd over its admin socket.\n\nCommands:\n", f);
    size_t n;
    const pv_admin_cmd_t *c = pv_admin_cmds(&n);
    for (size_t i = 0; i < n; i++) {
        char u[256];
        if (!pv_admin_cmd_listed(&c[i]))
            continue;
        pv_admin_cmd_usage(&c[i], u, sizeof(u));
        fprintf(f, "  %-44s %s\n", u, c[i].summary);
    }
    fputs("  help [COMMAND]                               describe a command\n"
          "\nOptions:\n"
          "  --socket PATH      the admin socket (default: admin_socket from the config)\n"
          "  --config FILE      config file to read it from (default /etc/pv/pvd.conf)\n"
          "  --json             print one JSON document\n"
          "  --timeout SECONDS  wait this long for an answer (default 30; backup: no limit)\n"
          "  --help, --version\n"
          "\nExit status: 0 ok, 1 pvd answered with an error, 2 usage, 3 cannot reach pvd\n"
          "(no socket, permission denied, refused, no answer), 4 not configured here.\n",
          f);
}

static void help_one(FILE *f, const pv_admin_cmd_t *c)
{
    char u[256];
    pv_admin_cmd_usage(c, u, sizeof(u));
    fprintf(f, "usage: pvctl %s\n\n%s\n", u, c->help);
    bool any = false;
    for (const pv_admin_arg_t *a = c->args; a->name; a++) {
        char term[80];
        pv_admin_arg_term(a, term, sizeof(term));
        fprintf(f, "%s  %-14s %s%s%s\n", any ? "" : "\n", term,
                a->how == PV_ARG_SECRET ? "type the password instead of generating one" : a->help,
                a->choices ? "; one of " : "", a->choices ? a->choices : "");
        any = true;
    }
}

/* pvctl help [WORDS...]: a command, a group ("user"), or everything. */
static int cmd_help(int argc, char **argv)
{
    if (argc == 0) {
        help_all(stdout);
        return PV_EXIT_OK;
    }
    size_t n;
    const pv_admin_cmd_t *c = pv_admin_cmds(&n);
    char want[256] = "";
    for (int i = 0; i < argc; i++)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%s", i ? " " : "", argv[i]);
    int shown = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(c[i].words, want) == 0) {
            help_one(stdout, &c[i]);
            return PV_EXIT_OK;
        }
    size_t wl = strlen(want);
    for (size_t i = 0; i < n; i++)
        if (pv_admin_cmd_listed(&c[i]) && strncmp(c[i].words, want, wl) == 0 &&
            c[i].words[wl] == ' ') {
            fputs(shown++ ? "\n" : "", stdout);
            help_one(stdout, &c[i]);
        }
    if (shown)
        return PV_EXIT_OK;
    fprintf(stderr, "pvctl: no command \"%s\" (see pvctl help)\n", want);
    return PV_EXIT_USAGE;
}

/* ---------------- completion (tools/pvctl.bash-completion) ---------------- */

static bool words_prefix(const char *words, int argc, char **argv, const char **next)
{
    const char *p = words;
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (strncmp(p, argv[i], n) != 0 || (p[n] != ' ' && p[n] != '\0'))
            return false;
        p += n;
        if (*p == ' ')
            p++;
    }
    *next = p;
    return true;
}

static void print_choices(const char *choices)
{
    for (const char *p = choices; *p; p++)
        putchar(*p == '|' ? '\n' : *p);
    putchar('\n');
}

/* Candidates for the word after argv (the words already typed). */
static int cmd_complete(int argc, char **argv)
{
    static const char *globals[] = {"--socket", "--config", "--json", "--timeout", "--help",
                                    "--version"};
    int i = 0;
    while (i < argc && strncmp(argv[i], "--", 2) == 0) {
        bool takes = strcmp(argv[i], "--socket") == 0 || strcmp(argv[i], "--config") == 0 ||
                     strcmp(argv[i], "--timeout") == 0;
        if (takes && i + 1 == argc) { /* completing its value */
            puts(strcmp(argv[i], "--timeout") == 0 ? "" : "__files__");
            return 0;
        }
        i += takes ? 2 : 1;
    }
    argc -= i < argc ? i : argc;
    argv += i;
    size_t n;
    const pv_admin_cmd_t *c = pv_admin_cmds(&n);
    const pv_admin_cmd_t *full = NULL;
    int used = 0;
    for (size_t k = 0; k < n; k++) { /* a whole command typed: its arguments */
        int nw = 1;
        for (const char *p = c[k].words; *p; p++)
            nw += *p == ' ';
        const char *rest;
        if (!pv_admin_cmd_listed(&c[k]))
            continue;
        if (nw <= argc && nw > used && words_prefix(c[k].words, nw, argv, &rest) && !*rest) {
            full = &c[k];
            used = nw;
        }
    }
    if (!full) {
        if (argc == 0) {
            for (size_t k = 0; k < PV_ARRAY_LEN(globals); k++)
                puts(globals[k]);
            puts("help");
        }
        char last[64] = "";
        for (size_t k = 0; k < n; k++) {
            const char *rest;
            if (!pv_admin_cmd_listed(&c[k]) || !words_prefix(c[k].words, argc, argv, &rest) ||
                !*rest)
                continue;
            const char *sp = strchr(rest, ' ');
            char word[64];
            snprintf(word, sizeof(word), "%.*s", (int)(sp ? (size_t)(sp - rest) : strlen(rest)), rest);
            if (strcmp(word, last) != 0) /* the table keeps a group's rows together */
                puts(word);
            snprintf(last, sizeof(last), "%s", word);
        }
        return 0;
    }
    const char *prev = argc > used ? argv[argc - 1] : NULL;
    for (const pv_admin_arg_t *a = full->args; prev && a->name; a++) {
        char opt[64];
        snprintf(opt, sizeof(opt), "--%s", a->name);
        for (char *p = opt; *p; p++)
            *p = *p == '_' ? '-' : *p;
        if (a->how == PV_ARG_OPT && strcmp(prev, opt) == 0) {
            if (a->choices)
                print_choices(a->choices);
            return 0;
        }
    }
    for (const pv_admin_arg_t *a = full->args; a->name; a++) {
        if (a->how == PV_ARG_OPT || a->how == PV_ARG_FLAG) {
            printf("--");
            for (const char *p = a->name; *p; p++)
                putchar(*p == '_' ? '-' : *p);
            putchar('\n');
        } else if (a->how == PV_ARG_SECRET) {
            puts("--prompt");
        } else if (a->how == PV_ARG_POS && a->choices) {
            print_choices(a->choices);
        }
    }
    if (full->flags & PV_CMDF_PATH)
        puts("__files__");
    return 0;
}

/* ---------------- secrets and paths ---------------- */

static int gen_password(char out[GEN_PW_LEN + 1])
{
    /* no look-alikes (0/O, 1/l/I): it may be read out or copied by hand */
    static const char alphabet[] = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    const unsigned n = sizeof(alphabet) - 1, limit = 256 - 256 % n;
    int i = 0;
    while (i < GEN_PW_LEN) {
        unsigned char b[32];
        if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
            return -EIO;
        for (size_t k = 0; k < sizeof(b) && i < GEN_PW_LEN; k++)
            if (b[k] < limit) /* rejection sampling: no modulo bias */
                out[i++] = alphabet[b[k] % n];
    }
    out[GEN_PW_LEN] = '\0';
    return 0;
}

static int read_line(FILE *f, char *buf, size_t len)
{
    if (!fgets(buf, (int)len, f))
        return -EIO;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

/* On a terminal: twice, without echo. Otherwise one line from stdin. */
static int prompt_password(char *out, size_t len)
{
    if (!isatty(STDIN_FILENO))
        return read_line(stdin, out, len) < 0 ? -EIO : 0;
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty)
        return -errno;
    struct termios old, quiet;
    int fd = fileno(tty);
    tcgetattr(fd, &old);
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(fd, TCSAFLUSH, &quiet);
    char again[1100];
    fputs("password: ", tty);
    fflush(tty);
    int rc = read_line(tty, out, len);
    fputs("\nagain: ", tty);
    fflush(tty);
    if (rc == 0)
        rc = read_line(tty, again, sizeof(again));
    fputs("\n", tty);
    tcsetattr(fd, TCSAFLUSH, &old);
    fclose(tty);
    if (rc == 0 && strcmp(out, again) != 0)
        rc = -EINVAL;
    memset(again, 0, sizeof(again));
    return rc;
}

/* Fills the command's secret argument. *generated: one was made here. */
static int fill_secret(const pv_admin_cmd_t *cmd, json_t *args, bool prompt, char *pw,
                       size_t pwlen, bool *generated)
{
    *generated = false;
    for (const pv_admin_arg_t *a = cmd->args; a->name; a++) {
        if (a->how != PV_ARG_SECRET)
            continue;
        int rc = prompt ? prompt_password(pw, pwlen) : gen_password(pw);
        if (rc == -EINVAL)
            return usage_error("the passwords do not match");
        if (rc < 0)
            return usage_error(prompt ? "cannot read a password" : "cannot generate a password");
        if (strlen(pw) < 8)
            return usage_error("the password must be at least 8 characters");
        *generated = !prompt;
        json_object_set_new(args, a->name, json_string(pw));
    }
    return 0;
}

/* pvd runs elsewhere: a relative FILE means pvctl's directory. */
static int absolute_path(json_t *args)
{
    const char *p = json_string_value(json_object_get(args, "path"));
    if (!p || p[0] == '/')
        return 0;
    char cwd[4096], full[8192];
    if (!getcwd(cwd, sizeof(cwd)))
        return usage_error("cannot find the current directory");
    snprintf(full, sizeof(full), "%s/%s", cwd, p);
    json_object_set_new(args, "path", json_string(full));
    return 0;
}

/* ---------------- the socket ---------------- */

static int socket_path(const pvctl_opts_t *o, char *out, size_t len)
{
    if (o->socket) {
        snprintf(out, len, "%s", o->socket);
        return 0;
    }
    static pv_config_t cfg; /* large: not on the stack */
    char err[512];
    pv_config_defaults(&cfg);
    int rc = pv_config_load_file(&cfg, o->config ? o->config : PV_DEFAULT_CONFIG, err, sizeof(err));
    if (rc == -EACCES && !o->config) /* an admin_group member may not read it */
        fprintf(stderr, "pvctl: %s; using the default socket path (or pass --socket)\n", err);
    else if (rc < 0 && (o->config || rc != -ENOENT)) {
        fprintf(stderr, "pvctl: %s\n", err);
        return -EINVAL;
    }
    if (pv_config_load_env(&cfg, err, sizeof(err)) < 0 ||
        pv_config_finish(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "pvctl: config: %s\n", err);
        return -EINVAL;
    }
    snprintf(out, len, "%s", cfg.admin_socket);
    return 0;
}

/* Why no answer came, with the code --json prints and the exit status
 * (pvctl(8)): not reaching pvd is "cannot connect"; an answer that came
 * but cannot be read is "failed". */
typedef enum conn_fail {
    CONN_UNREACHABLE,
    CONN_TIMEOUT,
    CONN_TOO_LARGE,
    CONN_BAD_ANSWER,
} conn_fail_t;

static const struct {
    const char *code;
    int exit;
} g_conn_fails[] = {
    [CONN_UNREACHABLE] = {"cannot_connect", PV_EXIT_CONNECT},
    [CONN_TIMEOUT] = {"timeout", PV_EXIT_CONNECT},
    [CONN_TOO_LARGE] = {"too_large", PV_EXIT_CONNECT},
    [CONN_BAD_ANSWER] = {"bad_answer", PV_EXIT_FAILED},
};

typedef struct conn_err {
    conn_fail_t why;
    char message[512];
} conn_err_t;

__attribute__((format(printf, 3, 4))) static int cfail(conn_err_t *e, conn_fail_t why,
                                                       const char *fmt, ...)
{
    va_list ap;
    e->why = why;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -EIO;
}

static int dial(const char *path, conn_err_t *e)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return cfail(e, CONN_UNREACHABLE, "socket path too long: %s", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cfail(e, CONN_UNREACHABLE, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    int err = errno;
    close(fd);
    if (err == ENOENT)
        return cfail(e, CONN_UNREACHABLE, "no admin socket at %s (is pvd running? see --socket)", path);
    if (err == EACCES || err == EPERM)
        return cfail(e, CONN_UNREACHABLE, "permission denied on %s: run pvctl as root, as pvd's "
                     "user or as a member of admin_group", path);
    if (err == ECONNREFUSED)
        return cfail(e, CONN_UNREACHABLE, "nothing listens on %s (is pvd running?)", path);
    return cfail(e, CONN_UNREACHABLE, "cannot connect to %s: %s", path, strerror(err));
}

/* Read exactly len bytes before the deadline (ms; -1: none). */
static int read_exact(int fd, void *buf, size_t len, int64_t deadline, conn_err_t *e)
{
    char *p = buf;
    while (len > 0) {
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - pv_mono_us() / 1000;
            if (left <= 0)
                return cfail(e, CONN_TIMEOUT, "no answer from pvd in time (see --timeout)");
            wait = left > 60000 ? 60000 : (int)left;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, wait);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            continue; /* the deadline is checked above */
        ssize_t n = read(fd, p, len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return cfail(e, CONN_UNREACHABLE, "reading from pvd: %s", strerror(errno));
        if (n == 0)
            return cfail(e, CONN_UNREACHABLE, "pvd closed the connection without an answer");
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One request, one answer (json_decref it). */
static int exchange(const char *path, json_t *request, int timeout_s, json_t **answer,
                    conn_err_t *e)
{
    *answer = NULL;
    char *frame;
    size_t len;
    if (pv_admin_frame_pack(request, PV_ADMIN_REQ_MAX, &frame, &len) < 0)
        return cfail(e, CONN_TOO_LARGE, "the request is too large");
    int fd = dial(path, e);
    if (fd < 0) {
        free(frame);
        return fd;
    }
    /* A refused peer may find the answer waiting and the socket closed:
     * a failed send is not the end, the read says what happened. */
    ssize_t sent = send(fd, frame, len, MSG_NOSIGNAL);
    (void)sent;
    free(frame);
    int64_t deadline = timeout_s >= 0 ? pv_mono_us() / 1000 + (int64_t)timeout_s * 1000 : -1;
    uint8_t hdr[PV_ADMIN_HDR];
    int rc = read_exact(fd, hdr, sizeof(hdr), deadline, e);
    long n = rc < 0 ? rc : pv_admin_frame_check(hdr, sizeof(hdr), PV_ADMIN_RESP_MAX);
    size_t plen = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    char *payload = NULL;
    if (rc == 0 && n == -EMSGSIZE)
        rc = cfail(e, CONN_BAD_ANSWER, "pvd's answer is larger than %u bytes", PV_ADMIN_RESP_MAX);
    if (rc == 0 && !(payload = malloc(plen ? plen : 1)))
        rc = cfail(e, CONN_BAD_ANSWER, "out of memory");
    if (rc == 0)
        rc = read_exact(fd, payload, plen, deadline, e);
    if (rc == 0 && pv_admin_unpack(payload, plen, SIZE_MAX, answer) < 0)
        rc = cfail(e, CONN_BAD_ANSWER, "pvd's answer is not well-formed");
    free(payload);
    close(fd);
    return rc;
}

/* ---------------- output ---------------- */

static void scalar(FILE *f, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING: fputs(*json_string_value(v) ? json_string_value(v) : "-", f); break;
    case JSON_INTEGER: fprintf(f, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: fprintf(f, "%g", json_real_value(v)); break;
    case JSON_TRUE: fputs("yes", f); break;
    case JSON_FALSE: fputs("no", f); break;
    case JSON_NULL: fputs("-", f); break;
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fputs(s ? s : "?", f);
        free(s);
    }
    }
}

static int scalar_width(const json_t *v)
{
    char buf[512];
    FILE *m = fmemopen(buf, sizeof(buf), "w");
    if (!m)
        return 0;
    scalar(m, v);
    long w = ftell(m);
    fclose(m);
    return (int)w;
}

/* An array of objects: columns from the first row, in pvd's order. */
static void table(FILE *f, const json_t *rows, int indent)
{
    const json_t *first = json_array_get(rows, 0);
    const char *key;
    json_t *v;
    size_t ncol = json_object_size(first), i = 0;
    const char **cols = calloc(ncol ? ncol : 1, sizeof(*cols));
    int *w = calloc(ncol ? ncol : 1, sizeof(*w));
    if (!cols || !w)
        goto out;
    json_object_foreach((json_t *)first, key, v) {
        cols[i] = key;
        w[i++] = (int)strlen(key);
    }
    for (size_t r = 0; r < json_array_size(rows); r++)
        for (size_t c = 0; c < ncol; c++) {
            int cw = scalar_width(json_object_get(json_array_get(rows, r), cols[c]));
            w[c] = cw > w[c] ? cw : w[c];
        }
    fprintf(f, "%*s", indent, "");
    for (size_t c = 0; c < ncol; c++)
        fprintf(f, "%-*s%s", c + 1 < ncol ? w[c] : 0, cols[c], c + 1 < ncol ? "  " : "\n");
    for (size_t r = 0; r < json_array_size(rows); r++) {
        fprintf(f, "%*s", indent, "");
        for (size_t c = 0; c < ncol; c++) {
            const json_t *cell = json_object_get(json_array_get(rows, r), cols[c]);
            int cw = scalar_width(cell);
            scalar(f, cell ? cell : json_null());
            if (c + 1 < ncol)
                fprintf(f, "%*s", w[c] - cw + 2, "");
        }
        fputc('\n', f);
    }
out:
    free(cols);
    free(w);
}

static void print_object(FILE *f, const json_t *obj, int indent)
{
    const char *key;
    json_t *v;
    int kw = 0;
    json_object_foreach((json_t *)obj, key, v)
        kw = (int)strlen(key) > kw ? (int)strlen(key) : kw;
    json_object_foreach((json_t *)obj, key, v) {
        if (json_is_object(v)) {
            fprintf(f, "%*s%s:\n", indent, "", key);
            print_object(f, v, indent + 2);
        } else if (json_is_array(v) && json_is_object(json_array_get(v, 0))) {
            fprintf(f, "%*s%s:\n", indent, "", key);
            table(f, v, indent + 2);
        } else if (json_is_array(v) && json_array_size(v) == 0) {
            fprintf(f, "%*s%-*s  (none)\n", indent, "", kw + 1, key);
        } else {
            fprintf(f, "%*s%s:%*s  ", indent, "", key, kw - (int)strlen(key), "");
            if (json_is_array(v)) {
                for (size_t i = 0; i < json_array_size(v); i++) {
                    fputs(i ? ", " : "", f);
                    scalar(f, json_array_get(v, i));
                }
            } else {
                scalar(f, v);
            }
            fputc('\n', f);
        }
    }
}

static int print_answer(const pvctl_opts_t *o, const pv_admin_cmd_t *cmd, json_t *answer,
                        const char *generated_pw)
{
    bool ok;
    json_t *result;
    const char *code, *message;
    if (pv_admin_answer_parse(answer, &ok, &result, &code, &message) < 0) {
        fprintf(stderr, "pvctl: pvd's answer has an unexpected shape\n");
        return PV_EXIT_FAILED;
    }
    if (ok && generated_pw)
        json_object_set_new(result, "password", json_string(generated_pw));
    if (o->json) {
        char *s = json_dumps(answer, JSON_INDENT(2));
        puts(s ? s : "{}");
        free(s);
    } else if (ok) {
        print_object(stdout, result, 0);
        if (generated_pw)
            puts("(the password is shown once: give it to the user now)");
    } else {
        fprintf(stderr, "pvctl: %s: %s (%s)\n", cmd->words, message, code);
    }
    return ok ? PV_EXIT_OK : pv_admin_exit_for(code);
}

static int print_conn_error(const pvctl_opts_t *o, const conn_err_t *e)
{
    if (o->json) {
        json_t *doc = pv_admin_error(g_conn_fails[e->why].code, e->message);
        char *s = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
        puts(s ? s : "{\"ok\": false}");
        free(s);
        json_decref(doc);
    } else {
        fprintf(stderr, "pvctl: %s\n", e->message);
    }
    return g_conn_fails[e->why].exit;
}

/* ---------------- main ---------------- */

/* Global options before the command; returns the index of the command. */
static int parse_globals(int argc, char **argv, pvctl_opts_t *o, int *exit_now)
{
    int i = 1;
    *exit_now = -1;
    for (; i < argc && strncmp(argv[i], "-", 1) == 0; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        bool takes = strcmp(a, "--socket") == 0 || strcmp(a, "--config") == 0 ||
                     strcmp(a, "--timeout") == 0 || strcmp(a, "--man") == 0;
        if (takes) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pvctl: %s needs a value (see pvctl --help)\n", a);
                *exit_now = PV_EXIT_USAGE;
                return i;
            }
            val = argv[++i];
        }
        if (strcmp(a, "--socket") == 0)
            o->socket = val;
        else if (strcmp(a, "--config") == 0)
            o->config = val;
        else if (strcmp(a, "--json") == 0)
            o->json = true;
        else if (strcmp(a, "--timeout") == 0) {
            char *end;
            long t = strtol(val, &end, 10);
            if (*end || end == val || t < 1 || t > 86400) {
                fprintf(stderr, "pvctl: --timeout takes 1 to 86400 seconds, got \"%s\"\n", val);
                *exit_now = PV_EXIT_USAGE;
                return i;
            }
            o->timeout_s = (int)t;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help_all(stdout);
            *exit_now = PV_EXIT_OK;
        } else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            printf("pvctl %s\n", PV_VERSION);
            *exit_now = PV_EXIT_OK;
        } else if (strcmp(a, "--man") == 0) {
            if (strcmp(val, "pvd") == 0)
                pv_man_pvd(stdout);
            else
                pv_man_pvctl(stdout);
            *exit_now = PV_EXIT_OK;
        } else if (strcmp(a, "--complete") == 0) {
            *exit_now = cmd_complete(argc - i - 1, argv + i + 1);
        } else {
            fprintf(stderr, "pvctl: unknown option %s (see pvctl --help)\n", a);
            *exit_now = PV_EXIT_USAGE;
        }
        if (*exit_now >= 0)
            return i;
    }
    return i;
}

static int run_command(const pvctl_opts_t *o, int argc, char **argv)
{
    const pv_admin_cmd_t *cmd;
    json_t *args;
    bool prompt, generated = false;
    pv_admin_err_t e = {"", ""};
    if (pv_admin_argv(argc, argv, &cmd, &args, &prompt, &e) < 0)
        return usage_error(e.message);
    char pw[1100] = "";
    int rc = fill_secret(cmd, args, prompt, pw, sizeof(pw), &generated);
    if (rc == 0 && (cmd->flags & PV_CMDF_PATH))
        rc = absolute_path(args);
    char path[4096];
    if (rc == 0 && socket_path(o, path, sizeof(path)) < 0)
        rc = PV_EXIT_USAGE;
    json_t *req = rc == 0 ? json_pack("{s:s,s:O}", "cmd", cmd->name, "args", args) : NULL;
    json_decref(args);
    if (rc != 0 || !req) {
        memset(pw, 0, sizeof(pw));
        return rc ? rc : usage_error("out of memory");
    }
    int timeout = o->timeout_s >= 0 ? o->timeout_s
                                    : (cmd->flags & PV_CMDF_SLOW) ? -1 : DEFAULT_TIMEOUT_S;
    json_t *answer;
    conn_err_t ce = {CONN_UNREACHABLE, ""};
    rc = exchange(path, req, timeout, &answer, &ce);
    json_decref(req);
    if (rc < 0)
        rc = print_conn_error(o, &ce);
    else
        rc = print_answer(o, cmd, answer, generated ? pw : NULL);
    json_decref(answer);
    memset(pw, 0, sizeof(pw));
    return rc;
}

int main(int argc, char **argv)
{
    pvctl_opts_t o = {.timeout_s = -1};
    signal(SIGPIPE, SIG_IGN);
    int exit_now;
    int i = parse_globals(argc, argv, &o, &exit_now);
    if (exit_now >= 0)
        return exit_now;
    if (i >= argc) {
        usage_line(stderr);
        fputs("pvctl: a command is needed (see pvctl help)\n", stderr);
        return PV_EXIT_USAGE;
    }
    if (strcmp(argv[i], "help") == 0)
        return cmd_help(argc - i - 1, argv + i + 1);
    return run_command(&o, argc - i, argv + i);
}
