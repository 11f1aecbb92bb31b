/*
 * man.c — roff for pvd(8) and pvctl(8). The lists that change (config
 * keys, admin commands and their arguments, exit statuses) come from the
 * tables the programs themselves run on, so the pages cannot drift from
 * the code; the prose around them is here. No date in the header: the
 * output is a pure function of the sources (doc/ stays reproducible and a
 * test can check it is up to date).
 */
#include "base/man.h"
#include "base/admin_proto.h"
#include "base/config.h"
#include "base/pv.h"

#include <string.h>

/* Text into roff: backslashes and hyphens escaped, no line may start with
 * a control character. */
static void roff(FILE *out, const char *s)
{
    bool bol = true;
    for (; *s; s++) {
        if (bol && (*s == '.' || *s == '\''))
            fputs("\\&", out);
        bol = *s == '\n';
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

static void section(FILE *out, const char *name) { fprintf(out, ".SH %s\n", name); }

static void para(FILE *out, const char *text)
{
    fputs(".PP\n", out);
    roff(out, text);
    fputc('\n', out);
}

/* .TP item: a bold term, then its description. */
static void item(FILE *out, const char *term, const char *text)
{
    fputs(".TP\n.B ", out);
    roff(out, term);
    fputc('\n', out);
    roff(out, text);
    fputc('\n', out);
}

static void header(FILE *out, const char *name, const char *title)
{
    fprintf(out, ".\\\" Generated from the sources by tools/mkman.sh; do not edit.\n");
    fprintf(out, ".TH %s 8 \"\" \"pv %s\" \"System Administration\"\n", name, PV_VERSION);
    section(out, "NAME");
    roff(out, title);
    fputc('\n', out);
}

/* ---------------- pvd(8) ---------------- */

static const struct {
    const char *flag, *text;
} g_pvd_flags[] = {
    {"--config FILE", "Read FILE instead of /etc/pv/pvd.conf (which may be absent)."},
    {"--data DIR", "Sets data_dir."},
    {"--https ADDR:PORT", "Sets https_listen, the public TLS listener."},
    {"--http ADDR:PORT", "Sets http_listen, the private plain-HTTP listener (health checks, /metrics)."},
    {"--admin-socket PATH", "Sets admin_socket, the Unix socket pvctl talks to."},
    {"--set KEY=VALUE", "Sets any configuration key; may be repeated."},
    {"--check-config", "Checks the configuration, prints \"config ok\" and exits."},
    {"--restore FILE", "Restores a backup made by pvctl backup into data_dir, which must not hold "
                       "a store yet, and exits. Start pvd normally afterwards."},
    {"--help", "Prints usage and every configuration key with its default."},
    {"--version", "Prints the version."},
};

void pv_man_pvd(FILE *out)
{
    header(out, "PVD", "pvd - the pv photo-to-video appliance daemon");
    section(out, "SYNOPSIS");
    fputs(".B pvd\n", out);
    for (size_t i = 0; i < PV_ARRAY_LEN(g_pvd_flags); i++) {
        fputs("[\\fB", out);
        const char *f = g_pvd_flags[i].flag, *sp = strchr(f, ' ');
        size_t n = sp ? (size_t)(sp - f) : strlen(f);
        char flag[64];
        snprintf(flag, sizeof(flag), "%.*s", (int)n, f);
        roff(out, flag);
        fputs("\\fR", out);
        if (sp) {
            fputs(" \\fI", out);
            roff(out, sp + 1);
            fputs("\\fR", out);
        }
        fputs("]\n", out);
    }
    section(out, "DESCRIPTION");
    para(out, "pvd serves the pv HTTP API: people sign up, upload photos and get videos made "
              "from them. It runs in the foreground and logs JSON lines to standard error. Its "
              "store is an LMDB environment under the data directory, with photo and video "
              "files beside it; it works fully offline.");
    para(out, "With no configuration at all it serves HTTPS on 127.0.0.1:8443 with a "
              "self-signed certificate made on first start, plain HTTP on 127.0.0.1:8080, "
              "keeps its data under ./pv-data and listens for pvctl on ./pv-data/admin.sock.");
    section(out, "OPTIONS");
    for (size_t i = 0; i < PV_ARRAY_LEN(g_pvd_flags); i++)
        item(out, g_pvd_flags[i].flag, g_pvd_flags[i].text);
    section(out, "CONFIGURATION");
    para(out, "The file holds key = value lines; # starts a comment; values may be quoted. "
              "Every key can also be set as the environment variable PV_<KEY> (upper case), "
              "and flags override both. Precedence: built-in default, file, environment, "
              "flags.");
    size_t n;
    const pv_config_key_t *k = pv_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        char text[512];
        snprintf(text, sizeof(text), "%s%s%s%s", k[i].help, *k[i].def ? " Default: " : "",
                 k[i].def, *k[i].def ? "." : "");
        item(out, k[i].name, text);
    }
    section(out, "SIGNALS");
    item(out, "SIGTERM, SIGINT", "Stop cleanly: stop accepting, finish in-flight requests, "
                                 "leave running renders resumable.");
    item(out, "SIGHUP", "Reload the TLS certificate and key. A bad new certificate is refused "
                        "and the old one stays in use. pvctl tls reload does the same.");
    section(out, "BACKUP AND RESTORE");
    para(out, "pvctl backup FILE writes a consistent backup while pvd serves: a tar archive "
              "holding a compacted copy of the store, the keys, the TLS files kept in the data "
              "directory and every photo and video file. To restore, stop pvd, move the data "
              "directory aside, then either run pvd --restore FILE --data DIR, which checks "
              "every file, or extract it by hand with tar -xf FILE -C DIR (as the user pvd "
              "runs as), and start pvd.");
    section(out, "FILES");
    item(out, "/etc/pv/pvd.conf", "The default configuration file.");
    item(out, "DATA/store/data.mdb", "The LMDB store.");
    item(out, "DATA/blobs/", "Photo originals, thumbnails and videos, named by SHA-256.");
    item(out, "DATA/keys.json", "Token signing and presign keys (mode 0600).");
    item(out, "DATA/tls/", "The self-signed certificate, when no other is configured.");
    item(out, "DATA/admin.sock", "The admin socket (mode 0600, or 0660 with admin_group).");
    section(out, "SEE ALSO");
    fputs(".BR pvctl (8)\n", out);
}

/* ---------------- pvctl(8) ---------------- */

static const struct {
    int code;
    const char *text;
} g_exits[] = {
    {PV_EXIT_OK, "The command did what was asked."},
    {PV_EXIT_FAILED, "pvd answered with an error (no such user, a bad certificate, ...)."},
    {PV_EXIT_USAGE, "Bad command line; nothing was sent."},
    {PV_EXIT_CONNECT, "No pvd to talk to: no socket, nothing listening, permission denied, "
                      "refused by pvd's credentials check, or no answer in time."},
    {PV_EXIT_UNAVAILABLE, "The feature is not configured on this pvd (for example sync with "
                          "no replication target, or video jobs in a pvd without them)."},
};

static void man_command(FILE *out, const pv_admin_cmd_t *c)
{
    char usage[256];
    pv_admin_cmd_usage(c, usage, sizeof(usage));
    item(out, usage, c->help);
    for (const pv_admin_arg_t *a = c->args; a->name; a++) {
        char term[96];
        pv_admin_arg_term(a, term, sizeof(term));
        fputs(".RS\n.TP\n.I ", out);
        roff(out, term);
        fputc('\n', out);
        if (a->how == PV_ARG_SECRET)
            roff(out, "ask for the password (twice on a terminal, one line from standard input "
                      "otherwise) instead of generating one");
        else {
            roff(out, a->help);
            if (a->choices) {
                roff(out, "; one of ");
                roff(out, a->choices);
            }
        }
        fputs("\n.RE\n", out);
    }
}

void pv_man_pvctl(FILE *out)
{
    header(out, "PVCTL", "pvctl - see and steer a running pvd");
    section(out, "SYNOPSIS");
    fputs(".B pvctl\n[\\fB\\-\\-socket\\fR \\fIPATH\\fR] [\\fB\\-\\-config\\fR \\fIFILE\\fR] "
          "[\\fB\\-\\-json\\fR] [\\fB\\-\\-timeout\\fR \\fISECONDS\\fR] \\fICOMMAND\\fR "
          "[\\fIARGS\\fR]\n.br\n.B pvctl help\n[\\fICOMMAND\\fR]\n", out);
    section(out, "DESCRIPTION");
    para(out, "pvctl talks to pvd over its admin socket: length-prefixed msgpack requests, one "
              "at a time. The socket is created mode 0600 (0660 with admin_group) and pvd "
              "checks each client's credentials: root, pvd's own user, or a member of "
              "admin_group. Output is a human table by default, or one JSON document with "
              "--json: {\"ok\": true, \"result\": {...}} or {\"ok\": false, \"error\": "
              "{\"code\", \"message\"}}.");
    section(out, "OPTIONS");
    item(out, "--socket PATH", "The admin socket. Default: admin_socket from the configuration "
                               "(data_dir/admin.sock).");
    item(out, "--config FILE", "Read the socket's path from FILE instead of /etc/pv/pvd.conf. "
                               "PV_ADMIN_SOCKET and PV_DATA_DIR in the environment apply too.");
    item(out, "--json", "Print the answer as one JSON document.");
    item(out, "--timeout SECONDS", "How long to wait for an answer (default 30; backup waits "
                                   "without a limit unless given).");
    item(out, "--help, --version", "Usage, or the version (the same as pvd --version).");
    section(out, "COMMANDS");
    size_t n;
    const pv_admin_cmd_t *c = pv_admin_cmds(&n);
    item(out, "help [COMMAND]", "Lists the commands, or describes one command or group.");
    for (size_t i = 0; i < n; i++)
        if (pv_admin_cmd_listed(&c[i]))
            man_command(out, &c[i]);
    section(out, "EXIT STATUS");
    for (size_t i = 0; i < PV_ARRAY_LEN(g_exits); i++) {
        char code[8];
        snprintf(code, sizeof(code), "%d", g_exits[i].code);
        item(out, code, g_exits[i].text);
    }
    section(out, "EXAMPLES");
    fputs(".nf\npvctl status\npvctl user add ann@example.com\npvctl \\-\\-json job list "
          "\\-\\-state failed\npvctl backup /var/backups/pv\\-$(date +%F).tar\n"
          "pvctl log\\-level debug\n.fi\n", out);
    section(out, "FILES");
    item(out, "/etc/pv/pvd.conf", "Where pvctl finds admin_socket.");
    section(out, "SEE ALSO");
    fputs(".BR pvd (8)\n", out);
}
