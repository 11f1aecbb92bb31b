/*
 * admin_proto.h — pvctl's wire protocol and the one table of admin commands.
 *
 * Frames: a 4-byte big-endian payload length, then that many bytes of
 * msgpack. A request is the map {"cmd": "user.add", "args": {...}}; the
 * answer is {"ok": true, "result": {...}} or
 * {"ok": false, "error": {"code": "snake_case", "message": "text"}}.
 *
 * Everything here is pure (no I/O): the frame splitter, a msgpack codec
 * that maps to and from jansson values (bounded in depth and item count, no
 * allocation sized by what the peer declares), request validation against
 * the command table, and pvctl's command-line parser. The command table is
 * the single source of the admin commands: pvd dispatches by its ids and
 * validates by its argument specs; pvctl parses, documents (help, man page)
 * and completes from it.
 */
#ifndef PV_ADMIN_PROTO_H
#define PV_ADMIN_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_ADMIN_HDR 4                 /* frame header: u32 BE payload length */
#define PV_ADMIN_REQ_MAX (1u << 20)    /* largest request payload pvd reads */
#define PV_ADMIN_RESP_MAX (16u << 20)  /* largest answer pvctl reads */
#define PV_ADMIN_DEPTH_MAX 16          /* nesting of maps and arrays */
#define PV_ADMIN_REQ_ITEMS 4096        /* values in one request */

/* pvctl's exit statuses (documented in pvctl(8)). */
enum pv_admin_exit {
    PV_EXIT_OK = 0,          /* the command did what was asked */
    PV_EXIT_FAILED = 1,      /* pvd answered with an error */
    PV_EXIT_USAGE = 2,       /* bad command line; nothing was sent */
    PV_EXIT_CONNECT = 3,     /* no pvd to talk to, or it refused us */
    PV_EXIT_UNAVAILABLE = 4, /* the feature is not configured here */
};

/* ---- frames ----
 * Returns the payload length (>= 0) when buf holds at least one whole frame
 * (the frame is PV_ADMIN_HDR + that many bytes), -EAGAIN when more bytes are
 * needed, -EMSGSIZE when the declared length is over max. */
long pv_admin_frame_check(const void *buf, size_t len, size_t max);
/* Header for a payload of len bytes. */
void pv_admin_frame_header(uint8_t hdr[PV_ADMIN_HDR], uint32_t len);

/* ---- msgpack <-> jansson ----
 * Unpack exactly one value filling buf (trailing bytes are an error).
 * Maps need string keys, no duplicates; strings must be UTF-8; bin, ext,
 * integers over INT64_MAX and non-finite floats are refused. 0 and *out
 * (json_decref it), or -EINVAL (malformed, too deep, over max_items) or
 * -ENOMEM. */
int pv_admin_unpack(const void *buf, size_t len, size_t max_items, json_t **out);
/* Pack v (null, bool, integer, real, string, array, object) as one frame:
 * header + payload, malloc'd in *out. -EINVAL for a value too deep, -ENOMEM,
 * -EMSGSIZE when the payload would be over max. */
int pv_admin_frame_pack(const json_t *v, size_t max, char **out, size_t *len);
/* The same, packing into buf (malloc'd, cap bytes, taken: handed back in
 * *out, grown, or freed on failure). An answer that fits allocates nothing,
 * so it cannot fail for memory. */
int pv_admin_frame_pack_in(const json_t *v, size_t max, char *buf, size_t cap, char **out,
                           size_t *len);

/* ---- answers ---- */
json_t *pv_admin_ok(json_t *result); /* steals result (NULL: {}) */
json_t *pv_admin_error(const char *code, const char *message);
/* Check an answer's shape. 0 and ok/result/error borrowed from resp, or
 * -EINVAL. */
int pv_admin_answer_parse(const json_t *resp, bool *ok, json_t **result,
                          const char **code, const char **message);
/* The exit status pvctl uses for an error code. */
int pv_admin_exit_for(const char *code);

/* ---- the command table ---- */
enum pv_admin_cmd_id {
    PV_CMD_STATUS,
    PV_CMD_USER_LIST,
    PV_CMD_USER_ADD,
    PV_CMD_USER_DISABLE,
    PV_CMD_USER_ENABLE,
    PV_CMD_USER_RESET_PASSWORD,
    PV_CMD_USER_INVITE,
    PV_CMD_JOB_LIST,
    PV_CMD_JOB_CANCEL,
    PV_CMD_JOB_RETRY,
    PV_CMD_SYNC_STATUS,
    PV_CMD_SYNC_PAUSE,
    PV_CMD_SYNC_RESUME,
    PV_CMD_SYNC_NOW,
    PV_CMD_BACKUP,
    PV_CMD_CONFIG_SHOW,
    PV_CMD_TLS_RELOAD,
    PV_CMD_LOG_LEVEL,
    PV_CMD_SHARE_LIST,
    PV_CMD_SHARE_REVOKE,
#ifdef PV_TEST_BUILD
    PV_CMD_DEBUG_FAILPOINTS, /* test build only: arm and read the failure seam */
    PV_CMD_DEBUG_CHECK,      /* test build only: the store's invariants */
#endif
    PV_CMD_COUNT
};

enum pv_admin_arg_type { PV_ARG_STR, PV_ARG_INT, PV_ARG_BOOL };

enum pv_admin_arg_how {
    PV_ARG_POS,    /* positional on pvctl's command line */
    PV_ARG_OPT,    /* --name VALUE (underscores typed as dashes) */
    PV_ARG_FLAG,   /* --name alone means true (PV_ARG_BOOL only) */
    PV_ARG_SECRET, /* never on the command line: pvctl generates or prompts */
};

enum pv_admin_cmd_flags {
    PV_CMDF_SLOW = 1u << 0, /* may take minutes: pvctl waits without a limit */
    PV_CMDF_PATH = 1u << 1, /* its "path" arg is a file pvctl makes absolute */
    PV_CMDF_TEST = 1u << 2, /* test build only: not listed in help, man pages or
                               completion, so that these read the same in
                               every build */
};

typedef struct pv_admin_arg {
    const char *name;    /* key in "args"; NULL ends the list */
    int type;            /* enum pv_admin_arg_type */
    int how;             /* enum pv_admin_arg_how */
    bool required;
    const char *meta;    /* placeholder in usage: EMAIL, N, FILE */
    const char *choices; /* "a|b|c" for strings, or NULL */
    long min, max;       /* range for integers */
    const char *help;    /* one line */
} pv_admin_arg_t;

#define PV_ADMIN_ARGS_MAX 4
typedef struct pv_admin_cmd {
    int id;              /* enum pv_admin_cmd_id: pvd's dispatch index */
    const char *name;    /* wire name: "user.add" */
    const char *words;   /* command line: "user add" */
    unsigned flags;      /* enum pv_admin_cmd_flags */
    const char *summary; /* one line, for lists */
    const char *help;    /* a paragraph for help and the man page */
    pv_admin_arg_t args[PV_ADMIN_ARGS_MAX + 1];
} pv_admin_cmd_t;

const pv_admin_cmd_t *pv_admin_cmds(size_t *n);
/* Whether help, man pages and completion list the command (not the test
 * build's own). */
bool pv_admin_cmd_listed(const pv_admin_cmd_t *c);
const pv_admin_cmd_t *pv_admin_cmd_by_name(const char *name);
/* "<words> ARG [--opt N]" usage line of one command into out. */
void pv_admin_cmd_usage(const pv_admin_cmd_t *c, char *out, size_t outlen);
/* How one argument is written on the command line ("--email", "EMAIL",
 * "--prompt"), for help and man pages. */
void pv_admin_arg_term(const pv_admin_arg_t *a, char *out, size_t outlen);

/* A short reason for an error answer or a usage error. */
typedef struct pv_admin_err {
    char code[32];
    char message[256];
} pv_admin_err_t;

/* pvd: unpack and validate one request payload. 0 and *req (owned: decref),
 * *cmd and *args (borrowed from *req, always an object); or -EINVAL with e
 * set (bad_request, unknown_command, bad_args). */
int pv_admin_request_parse(const void *buf, size_t len, json_t **req,
                           const pv_admin_cmd_t **cmd, json_t **args,
                           pv_admin_err_t *e);
/* Validate args (an object or NULL) against cmd's spec; 0 or -EINVAL. */
int pv_admin_args_check(const pv_admin_cmd_t *cmd, const json_t *args,
                        pv_admin_err_t *e);

/* pvctl: words and options after the global options -> command and args.
 * Secret args are left out (the caller fills them); *prompt is set by
 * --prompt on a command that has one. 0, or -EINVAL with e->message set
 * (a usage error), or -ENOENT when the words name no command (e->message
 * says which group they start, if any). */
int pv_admin_argv(int argc, char **argv, const pv_admin_cmd_t **cmd,
                  json_t **args, bool *prompt, pv_admin_err_t *e);

#endif
