/*
 * admin.c — the admin actor: pvctl's Unix socket, on the core loop.
 *
 * Access is checked twice. The socket file is created 0600 (0660 and
 * chgrp'd when admin_group is set), and each accepted connection's peer
 * credentials (SO_PEERCRED, SO_PEERGROUPS) must be root, pvd's own uid, or
 * a member of admin_group; anyone else gets one error frame and is closed.
 *
 * A connection is a bufferevent on the core loop. It carries one request
 * at a time: once a whole frame is in, reading stops until the answer is
 * queued, so a client that pipelines or floods waits in its own socket
 * buffer, and pvd's memory per connection is bounded by one frame. Frames
 * over PV_ADMIN_REQ_MAX are refused from their header alone. Junk in a
 * well-framed payload gets an error answer and the connection stays
 * usable; a bad header cannot be resynchronised, so it closes. Idle
 * connections time out.
 *
 * The command table (src/base/admin_proto.c) drives dispatch: g_handlers
 * is indexed by command id and pv_admin_start refuses to run with a gap. A
 * request becomes an admin_req_t, which embeds a call (src/app/call.h)
 * first: the same continuations HTTP handlers use. Anything blocking —
 * store scans, the backup — runs on the work pool, argon2id on the hash
 * pool; what another actor owns (video jobs, the certificate) is asked of
 * it. Either way the next step comes back to this loop.
 * Answers find their connection by id: if the client went away meanwhile,
 * the answer is dropped.
 */
#include "actors/admin.h"
#include "actors/replicate.h"
#include "actors/sync.h"
#include "actors/tls.h"
#include "actors/videos.h"
#include "app/call.h"
#include "base/admin_proto.h"
#include "base/pv.h"
#include "model/invites.h"
#include "model/revoked.h"
#include "model/shares.h"
#include "model/check.h"
#include "model/users.h"
#include "model/videos.h"
#include "store/backup.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <grp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

#define ADMIN_MAX_CONNS 16
#define ADMIN_IDLE_S 60      /* a connection with no request in flight */
#define ADMIN_WRITE_S 30     /* a client that does not read its answer */
#define ADMIN_LIST_DEFAULT 1000
#define ADMIN_PW_MIN 8
#define ADMIN_PW_MAX 1024
#define ADMIN_ANSWER_ROOM 1024 /* answer frame taken with each request */

typedef struct admin_conn admin_conn_t;
struct admin_conn {
    admin_conn_t *next;
    pv_admin_t *adm;
    uint64_t id;               /* answers find their connection by this */
    struct bufferevent *bev;
    bool busy;                 /* a request is in flight */
    bool in_read;              /* inside conn_read: do not recurse or free */
    bool closing;              /* close once the output has drained */
    uid_t uid;
    pid_t pid;
};

struct pv_admin {
    pv_app_t *app;
    pv_actor_t *actor;
    struct evconnlistener *listener;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev;                 /* the socket file we made: unlinked at stop */
    ino_t ino;                 /* only if it is still ours */
    bool has_group;
    gid_t gid;                 /* admin_group */
    admin_conn_t *conns;
    int n_conns;
    uint64_t next_id;
    bool backup_running;       /* one at a time */
    int64_t refused_log_ms;    /* when a refused peer was last logged */
    unsigned refused_quiet;    /* refused since then, not logged */
};

typedef struct admin_req admin_req_t;
typedef void (*admin_step_fn)(admin_req_t *r);

struct admin_req {
    pv_call_t call;            /* first: message, pool job, store write */
    pv_admin_t *adm;
    pv_app_t *app;
    uint64_t conn_id;
    const pv_admin_cmd_t *cmd;
    json_t *req;               /* the whole request; owns args */
    json_t *args;
    admin_step_fn k;           /* next step, on the core loop (through step()) */
    int rc;                    /* outcome of the last step */
    json_t *result;            /* the answer on success */
    pv_admin_err_t err;        /* the answer when err.code is set */
    char *room;                /* ADMIN_ANSWER_ROOM bytes for the answer frame: a
                                  command that changed the store can always say so */
    /* scratch of the user commands */
    char who[PV_EMAIL_MAX + 1];      /* email or id text as given */
    char password[ADMIN_PW_MAX + 1]; /* wiped once hashed */
    pv_user_t user;
    bool changed;
    int revoked;
    pv_backup_info_t backup;
    char invite[PV_INVITE_TEXT];     /* user invite: the code, wiped once sent */
    int invite_days;
    int sync_next;                   /* sync: the target asked next */
};

/* ---------------- requests: life, errors, answers ---------------- */

static void req_free(pv_msg_t *m)
{
    admin_req_t *r = (admin_req_t *)m;
    sodium_memzero(r->password, sizeof(r->password));
    json_decref(r->req);
    json_decref(r->result);
    free(r->room);
    free(r);
}

__attribute__((format(printf, 3, 4))) static void req_error(admin_req_t *r, const char *code,
                                                            const char *fmt, ...)
{
    va_list ap;
    snprintf(r->err.code, sizeof(r->err.code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(r->err.message, sizeof(r->err.message), fmt, ap);
    va_end(ap);
}

/* The one mapping from a result code to an error answer (cf. pv_api_fail;
 * pvctl's exit status then follows from the code, pv_admin_exit_for). The
 * message names what failed, unless the reason is pvd's as a whole. A
 * result not listed is logged and answered "internal" with its text. */
static const struct admin_rc_error {
    int rc;
    const char *code;
    const char *text;
    bool says_what;     /* "what: text" rather than just the text */
} g_rc_errors[] = {
    {-ENOENT, "not_found", "not found", true},
    {-EEXIST, "exists", "already exists", true},
    {-ENOSPC, "store_full", "the store or the disk is full", true},
    {-ENOMEM, "overloaded", "out of memory; try again", true},
    {-EAGAIN, "overloaded", "out of memory; try again", true},
    {-ESHUTDOWN, "shutting_down", "pvd is stopping", false},
};

static void req_error_rc(admin_req_t *r, int rc, const char *what)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_rc_errors); i++) {
        const struct admin_rc_error *e = &g_rc_errors[i];
        if (e->rc != rc)
            continue;
        if (e->says_what)
            req_error(r, e->code, "%s: %s", what, e->text);
        else
            req_error(r, e->code, "%s", e->text);
        return;
    }
    pv_error("admin", "%s: %s", what, strerror(-rc));
    req_error(r, "internal", "%s: %s", what, strerror(-rc));
}

static admin_conn_t *conn_find(pv_admin_t *adm, uint64_t id)
{
    for (admin_conn_t *c = adm->conns; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static void conn_read(struct bufferevent *bev, void *arg);

/* Queue a frame, packed into room when given (taken); on a frame we
 * cannot build, say so in a small one. */
static void conn_send(admin_conn_t *c, json_t *answer, char *room)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = answer ? pv_admin_frame_pack_in(answer, PV_ADMIN_RESP_MAX, room,
                                             ADMIN_ANSWER_ROOM, &buf, &len)
                    : (free(room), -ENOMEM);
    json_decref(answer);
    if (rc < 0) {
        json_t *e = rc == -EMSGSIZE
                        ? pv_admin_error("too_large", "the answer is too large; ask for fewer rows (--limit)")
                        : pv_admin_error("overloaded", "out of memory building the answer");
        rc = e ? pv_admin_frame_pack(e, PV_ADMIN_RESP_MAX, &buf, &len) : -ENOMEM;
        json_decref(e);
    }
    if (rc == 0)
        bufferevent_write(c->bev, buf, len);
    else
        c->closing = true; /* cannot even say why: hang up */
    free(buf);
}

/* The last step of every request: answer (if the client is still there),
 * let the connection read its next request, free. */
static void req_done(admin_req_t *r)
{
    admin_conn_t *c = conn_find(r->adm, r->conn_id);
    if (c) {
        json_t *answer = r->err.code[0] ? pv_admin_error(r->err.code, r->err.message)
                                        : pv_admin_ok(r->result);
        r->result = NULL; /* stolen by pv_admin_ok */
        conn_send(c, answer, r->room);
        r->room = NULL;
        c->busy = false;
        if (!c->closing)
            bufferevent_enable(c->bev, EV_READ);
        if (!c->in_read) /* frames that arrived meanwhile are already buffered */
            conn_read(c->bev, c);
    }
    pv_call_free(&r->call);
}

/* Every step comes back here, on the core loop. */
static void step(pv_call_t *call)
{
    admin_req_t *r = (admin_req_t *)call;
    r->k(r);
}

/* 0, or the pool refused (stopping, no memory): r was answered and freed. */
static int go_pool_on(admin_req_t *r, pv_pool_t *pool, pv_work_fn work, admin_step_fn k)
{
    r->k = k;
    int rc = pv_call_pool(&r->call, pool, work, step);
    if (rc < 0) {
        req_error_rc(r, rc, r->cmd->words);
        req_done(r);
    }
    return rc;
}

static int go_pool(admin_req_t *r, pv_work_fn work, admin_step_fn k)
{
    return go_pool_on(r, r->app->work, work, k);
}

static void go_store(admin_req_t *r, pv_store_apply_fn apply, admin_step_fn k)
{
    r->k = k;
    pv_call_store(&r->call, apply, step);
}

/* The last step of a command whose work left its answer in r->result, or
 * its failure in r->rc (named by the command's words, as go_pool_on does). */
static void work_done(admin_req_t *r)
{
    if (r->rc < 0)
        req_error_rc(r, r->rc, r->cmd->words);
    req_done(r);
}

/* ---------------- shared helpers ---------------- */

static const char *arg_str(admin_req_t *r, const char *name)
{
    return json_string_value(json_object_get(r->args, name));
}

static long arg_int(admin_req_t *r, const char *name, long def)
{
    json_t *v = json_object_get(r->args, name);
    return v ? (long)json_integer_value(v) : def;
}

static json_t *time_json(int64_t ms)
{
    if (ms == PV_TIME_NONE)
        return json_null();
    char t[32];
    pv_time_format(ms, t);
    return json_string(t);
}

static json_t *id_json(const uint8_t id[16])
{
    char t[PV_ID_TEXT];
    pv_id_encode(id, t);
    return json_string(t);
}

static json_t *user_json(const pv_user_t *u)
{
    return json_pack("{s:s,s:o,s:o,s:s}", "email", u->email, "id", id_json(u->id), "created_at",
                     time_json(u->created_ms), "state", u->disabled ? "disabled" : "active");
}

/* A user by email (normalised) or by id text, inside any transaction. */
static int user_lookup(pv_txn_t *txn, const char *who, pv_user_t *u)
{
    uint8_t id[16];
    pv_val_t v;
    if (strchr(who, '@')) {
        char email[PV_EMAIL_MAX + 1];
        if (pv_email_normalize(who, email, sizeof(email)) < 0)
            return -ENOENT;
        int rc = pv_txn_get(txn, PV_DB_EMAILS, email, strlen(email), &v);
        if (rc < 0)
            return rc;
        if (v.len != 16)
            return -EIO;
        memcpy(id, v.data, 16);
    } else if (pv_id_decode(who, id) < 0) {
        return -ENOENT;
    }
    int rc = pv_txn_get(txn, PV_DB_USERS, id, 16, &v);
    return rc < 0 ? rc : pv_user_decode(v.data, v.len, u);
}

/* ---------------- status ---------------- */

typedef struct video_counts {
    uint64_t by_status[PV_VIDEO_CANCELLED + 1];
} video_counts_t;

static int count_video(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    video_counts_t *vc = arg;
    pv_video_t vid;
    if (pv_video_decode(v->data, v->len, &vid) < 0)
        return 0; /* a damaged record is not this command's business */
    if (vid.status >= 0 && vid.status <= PV_VIDEO_CANCELLED)
        vc->by_status[vid.status]++;
    pv_video_clear(&vid);
    return 0;
}

static json_t *jobs_json(const video_counts_t *vc)
{
    json_t *j = json_object();
    for (int s = 0; s <= PV_VIDEO_CANCELLED; s++)
        json_object_set_new(j, pv_video_status_name(s), json_integer((json_int_t)vc->by_status[s]));
    return j;
}

static json_t *store_json(pv_app_t *app, const pv_store_stat_t *st)
{
    char path[PATH_MAX + 32];
    struct stat fst;
    snprintf(path, sizeof(path), "%s/store/data.mdb", app->cfg.data_dir);
    json_int_t file = stat(path, &fst) == 0 ? (json_int_t)fst.st_size : -1;
    double pct = st->map_size ? 100.0 * (double)st->map_used / (double)st->map_size : 0;
    return json_pack("{s:s,s:I,s:I,s:I,s:f,s:I}", "path", path, "file_bytes", file, "map_size",
                     (json_int_t)st->map_size, "map_used", (json_int_t)st->map_used,
                     "map_used_pct", (double)(int)(pct * 10) / 10, "map_max",
                     (json_int_t)app->cfg.map_max);
}

static void status_work(pv_msg_t *m)
{
    admin_req_t *r = (admin_req_t *)m;
    pv_app_t *app = r->app;
    pv_store_stat_t st;
    video_counts_t vc = {{0}};
    pv_txn_t txn;
    int rc = pv_store_stat(app->store, &st);
    if (rc == 0 && (rc = pv_txn_begin(app->store, &txn, false)) == 0) {
        rc = pv_txn_scan(&txn, PV_DB_VIDEOS, NULL, 0, NULL, 0, false, count_video, &vc);
        pv_txn_abort(&txn);
    }
    if (rc < 0) {
        r->rc = rc;
        return;
    }
    char listeners[512];
    if (app->listeners[0])
        snprintf(listeners, sizeof(listeners), "%s", app->listeners);
    else
        snprintf(listeners, sizeof(listeners), "https://%s (public), http://%s (private)",
                 app->cfg.https_listen, app->cfg.http_listen);
    int64_t now = pv_now_ms();
    r->result = json_pack(
        "{s:s,s:i,s:o,s:I,s:s,s:s,s:s,s:b,s:b,s:o,s:{s:I,s:I,s:I,s:I,s:I},s:o,s:{s:I,s:I},"
        "s:{s:i,s:s}}",
        "version", PV_VERSION, "pid", (int)getpid(), "started_at", time_json(app->started_ms),
        "uptime_s", (json_int_t)((now - app->started_ms) / 1000), "listeners", listeners,
        "data_dir", app->cfg.data_dir, "log_level", pv_log_level_name(pv_log_get_level()),
        "ready", atomic_load(&app->ready), "stopping", atomic_load(&app->stopping), "store",
        store_json(app, &st), "counts", "users", (json_int_t)st.entries[PV_DB_USERS], "photos",
        (json_int_t)st.entries[PV_DB_PHOTOS], "videos", (json_int_t)st.entries[PV_DB_VIDEOS],
        "blobs", (json_int_t)st.entries[PV_DB_BLOBS], "active_jobs",
        (json_int_t)st.entries[PV_DB_JOBS], "jobs", jobs_json(&vc), "changes", "head",
        (json_int_t)st.last_seq, "kept", (json_int_t)st.entries[PV_DB_CHANGES], "sync",
        "targets", app->n_targets, "state",
        app->n_targets ? "replicating (pvctl sync status)" : "no replication targets are configured");
    json_t *ch = r->result ? json_object_get(r->result, "changes") : NULL;
    if (ch) { /* the disk alarm: a target far behind keeps the log growing */
        json_object_set_new(ch, "bytes", json_integer((json_int_t)st.bytes[PV_DB_CHANGES]));
        json_object_set_new(ch, "alarm", json_boolean(st.bytes[PV_DB_CHANGES] >
                                                      app->cfg.changelog_alarm_bytes));
    }
    r->rc = r->result ? 0 : -ENOMEM;
}

static void h_status(admin_req_t *r) { (void)go_pool(r, status_work, work_done); }

/* ---------------- users ---------------- */

typedef struct user_list {
    pv_txn_t *txn;
    json_t *items;
    long limit;
    int rc;
    char last[PV_EMAIL_MAX + 1];
    bool more;
} user_list_t;

static int count_one(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    (*(json_int_t *)arg)++;
    return 0;
}

static int list_user(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    user_list_t *ul = arg;
    if ((long)json_array_size(ul->items) >= ul->limit) {
        ul->more = true;
        return 1;
    }
    pv_val_t rec;
    pv_user_t u;
    if (v->len != 16 || pv_txn_get(ul->txn, PV_DB_USERS, v->data, 16, &rec) < 0 ||
        pv_user_decode(rec.data, rec.len, &u) < 0)
        return 0; /* an email whose user is gone: skip it */
    json_int_t photos = 0;
    int rc = pv_txn_scan(ul->txn, PV_DB_PHOTOS, u.id, 16, NULL, 0, false, count_one, &photos);
    if (rc < 0)
        return rc;
    json_t *j = user_json(&u);
    if (!j || json_object_set_new(j, "photos", json_integer(photos)) < 0 ||
        json_array_append_new(ul->items, j) < 0)
        return -ENOMEM;
    snprintf(ul->last, sizeof(ul->last), "%.*s", (int)(k->len < PV_EMAIL_MAX ? k->len : PV_EMAIL_MAX),
             (const char *)k->data);
    return 0;
}

static void user_list_work(pv_msg_t *m)
{
    admin_req_t *r = (admin_req_t *)m;
    pv_txn_t txn;
    user_list_t ul = {.txn = &txn, .items = json_array(),
                      .limit = arg_int(r, "limit", ADMIN_LIST_DEFAULT)};
    const char *after = arg_str(r, "after");
    int rc = ul.items ? pv_txn_begin(r->app->store, &txn, false) : -ENOMEM;
    if (rc == 0) {
        rc = pv_txn_scan(&txn, PV_DB_EMAILS, NULL, 0, after, after ? strlen(after) : 0, false,
                         list_user, &ul);
        pv_txn_abort(&txn);
    }
    if (rc == 0 && !(r->result = json_pack("{s:O,s:o}", "users", ul.items, "next",
                                           ul.more ? json_string(ul.last) : json_null())))
        rc = -ENOMEM;
    r->rc = rc;
    json_decref(ul.items);
}

static void h_user_list(admin_req_t *r) { (void)go_pool(r, user_list_work, work_done); }

/* The password arrives from pvctl (generated or typed there). */
static int take_password(admin_req_t *r)
{
    const char *pw = arg_str(r, "password");
    size_t n = pw ? strlen(pw) : 0;
    if (n < ADMIN_PW_MIN || n > ADMIN_PW_MAX) {
        req_error(r, "bad_args", "the password must be %d to %d characters", ADMIN_PW_MIN,
                  ADMIN_PW_MAX);
        return -EINVAL;
    }
    memcpy(r->password, pw, n + 1);
    /* Keep no second copy in the request tree. */
    json_t *v = json_object_get(r->args, "password");
    sodium_memzero((char *)json_string_value(v), n);
    json_object_del(r->args, "password");
    return 0;
}

static void hash_work(pv_msg_t *m)
{
    admin_req_t *r = (admin_req_t *)m;
    char hash[PV_PWHASH_LEN];
    r->rc = pv_password_hash(r->password, hash);
    sodium_memzero(r->password, sizeof(r->password));
    if (r->rc == 0)
        snprintf(r->user.pw_hash, sizeof(r->user.pw_hash), "%s", hash);
    sodium_memzero(hash, sizeof(hash));
}

/* Both records in one write, as sign-up does: the email index (refusing a
 * taken email) and the user. */
static int user_add_apply(pv_txn_t *txn, void *arg)
{
    admin_req_t *r = arg;
    return pv_user_insert(txn, &r->user);
}

static void user_add_committed(admin_req_t *r)
{
    int rc = r->call.sreq.msg.status;
    if (rc == -EEXIST)
        req_error(r, "exists", "a user with the email %s already exists", r->user.email);
    else if (rc < 0)
        req_error_rc(r, rc, "user add");
    else {
        r->result = json_pack("{s:o}", "user", user_json(&r->user));
        pv_info("admin", "user %s added by pvctl", r->user.email);
    }
    req_done(r);
}

static void user_add_hashed(admin_req_t *r)
{
    if (r->rc < 0) {
        req_error_rc(r, r->rc, "hashing the password");
        req_done(r);
        return;
    }
    go_store(r, user_add_apply, user_add_committed);
}

/* ---- user invite ---- */

static int invite_apply(pv_txn_t *txn, void *arg)
{
    admin_req_t *r = arg;
    return pv_invite_new(txn, r->user.email, r->invite_days * 86400LL, r->invite);
}

static void invite_committed(admin_req_t *r)
{
    int rc = r->call.sreq.msg.status;
    if (rc < 0) {
        req_error_rc(r, rc, "user invite");
    } else {
        int mode = pv_config_signup_mode(&r->app->cfg);
        r->result = json_pack("{s:s,s:o,s:o,s:s}", "code", r->invite, "email",
                              *r->user.email ? json_string(r->user.email) : json_null(),
                              "expires_at", time_json(pv_now_ms() + r->invite_days * 86400000LL),
                              "signup", r->app->cfg.signup);
        if (mode != PV_SIGNUP_INVITE)
            json_object_set_new(r->result, "note",
                                json_string("codes are asked for only when signup = invite"));
    }
    sodium_memzero(r->invite, sizeof(r->invite));
    req_done(r);
}

static void h_user_invite(admin_req_t *r)
{
    const char *email = arg_str(r, "email");
    if (email && pv_email_normalize(email, r->user.email, sizeof(r->user.email)) < 0) {
        req_error(r, "bad_args", "\"%.200s\" is not a valid email", email);
        req_done(r);
        return;
    }
    r->invite_days = (int)arg_int(r, "days", 7);
    go_store(r, invite_apply, invite_committed);
}

static void h_user_add(admin_req_t *r)
{
    if (pv_email_normalize(arg_str(r, "email"), r->user.email, sizeof(r->user.email)) < 0) {
        req_error(r, "bad_args", "\"%.200s\" is not a valid email", arg_str(r, "email"));
        req_done(r);
        return;
    }
    if (take_password(r) < 0) {
        req_done(r);
        return;
    }
    pv_txn_t txn;
    pv_val_t v;
    if (pv_txn_begin(r->app->store, &txn, false) == 0) {
        /* Known at once: spare the hashing (the writer checks again). */
        bool taken = pv_txn_get(&txn, PV_DB_EMAILS, r->user.email, strlen(r->user.email), &v) == 0;
        pv_txn_abort(&txn);
        if (taken) {
            req_error(r, "exists", "a user with the email %s already exists", r->user.email);
            req_done(r);
            return;
        }
    }
    r->user.v = 1;
    pv_id_new(r->user.id);
    r->user.created_ms = pv_now_ms();
    (void)go_pool_on(r, r->app->hash, hash_work, user_add_hashed);
}

/* disable / enable: one read-modify-write in the writer. */
static int user_state_apply(pv_txn_t *txn, void *arg)
{
    admin_req_t *r = arg;
    bool disable = r->cmd->id == PV_CMD_USER_DISABLE;
    int rc = user_lookup(txn, r->who, &r->user);
    if (rc < 0 || r->user.disabled == disable)
        return rc;
    r->user.disabled = disable;
    r->changed = true;
    return pv_user_save(txn, &r->user, false);
}

static void user_state_committed(admin_req_t *r)
{
    int rc = r->call.sreq.msg.status;
    if (rc == -ENOENT)
        req_error(r, "not_found", "no user %s", r->who);
    else if (rc < 0)
        req_error_rc(r, rc, r->cmd->words);
    else {
        r->result = json_pack("{s:o,s:b}", "user", user_json(&r->user), "changed", r->changed);
        if (r->changed)
            pv_info("admin", "user %s %s by pvctl", r->user.email,
                    r->user.disabled ? "disabled" : "enabled");
    }
    req_done(r);
}

static void h_user_state(admin_req_t *r)
{
    snprintf(r->who, sizeof(r->who), "%s", arg_str(r, "user"));
    go_store(r, user_state_apply, user_state_committed);
}

typedef struct family_list {
    const uint8_t *user;
    uint8_t (*ids)[16];
    size_t n, cap;
} family_list_t;

static int collect_family(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    family_list_t *fl = arg;
    pv_token_t t;
    if (pv_token_decode(v->data, v->len, &t) < 0 || memcmp(t.user_id, fl->user, 16) != 0)
        return 0;
    if (fl->n == fl->cap) {
        size_t cap = fl->cap ? fl->cap * 2 : 16;
        void *p = realloc(fl->ids, cap * 16);
        if (!p)
            return -ENOMEM;
        fl->ids = p;
        fl->cap = cap;
    }
    memcpy(fl->ids[fl->n++], t.family_id, 16);
    return 0;
}

/* New hash, and every refresh-token family of the user revoked (the way a
 * replayed token revokes one in auth.c). */
static int reset_password_apply(pv_txn_t *txn, void *arg)
{
    admin_req_t *r = arg;
    pv_user_t u;
    int rc = user_lookup(txn, r->who, &u);
    if (rc < 0)
        return rc;
    memcpy(u.pw_hash, r->user.pw_hash, sizeof(u.pw_hash));
    r->user = u;
    if ((rc = pv_user_save(txn, &u, false)) < 0)
        return rc;
    /* Access tokens already issued end now too, not at their expiry. */
    if ((rc = pv_revoke_user_before(txn, u.id, pv_now_ms() / 1000)) < 0)
        return rc;
    family_list_t fl = {.user = u.id};
    rc = pv_txn_scan(txn, PV_DB_TOKENS, NULL, 0, NULL, 0, false, collect_family, &fl);
    uint8_t one = 1;
    for (size_t i = 0; rc >= 0 && i < fl.n; i++)
        rc = pv_txn_put(txn, PV_DB_FAMILIES, fl.ids[i], 16, &one, 1, false);
    r->revoked = (int)fl.n;
    free(fl.ids);
    return rc < 0 ? rc : 0;
}

static void reset_password_committed(admin_req_t *r)
{
    int rc = r->call.sreq.msg.status;
    if (rc == -ENOENT)
        req_error(r, "not_found", "no user %s", r->who);
    else if (rc < 0)
        req_error_rc(r, rc, "user reset-password");
    else {
        r->result = json_pack("{s:o,s:i}", "user", user_json(&r->user), "revoked_sessions",
                              r->revoked);
        pv_info("admin", "password of %s reset by pvctl", r->user.email);
    }
    req_done(r);
}

static void reset_password_hashed(admin_req_t *r)
{
    if (r->rc < 0) {
        req_error_rc(r, r->rc, "hashing the password");
        req_done(r);
        return;
    }
    go_store(r, reset_password_apply, reset_password_committed);
}

static void h_user_reset_password(admin_req_t *r)
{
    snprintf(r->who, sizeof(r->who), "%s", arg_str(r, "user"));
    if (take_password(r) < 0) {
        req_done(r);
        return;
    }
    (void)go_pool_on(r, r->app->hash, hash_work, reset_password_hashed);
}

/* ---------------- jobs ---------------- */

typedef struct job_list {
    pv_txn_t *txn;
    json_t *items;
    int want;        /* a status, or -1: queued and running, -2: all */
    long limit;
    bool more;
} job_list_t;

static json_t *video_json(pv_txn_t *txn, const pv_video_t *v)
{
    pv_val_t rec;
    pv_user_t u;
    const char *email = "?";
    if (pv_txn_get(txn, PV_DB_USERS, v->user_id, 16, &rec) == 0 &&
        pv_user_decode(rec.data, rec.len, &u) == 0)
        email = u.email;
    return json_pack("{s:o,s:s,s:s,s:f,s:i,s:s,s:o,s:o,s:o,s:s}", "id", id_json(v->id), "user",
                     email, "status", pv_video_status_name(v->status), "progress", v->progress,
                     "photos", (int)v->n_photos, "title", v->title, "created_at",
                     time_json(v->created_ms), "started_at", time_json(v->started_ms),
                     "finished_at", time_json(v->finished_ms), "error", v->error);
}

static int add_video(job_list_t *jl, const pv_val_t *v)
{
    pv_video_t vid;
    if (pv_video_decode(v->data, v->len, &vid) < 0)
        return 0;
    bool match = jl->want == -2 || vid.status == jl->want ||
                 (jl->want == -1 && (vid.status == PV_VIDEO_QUEUED || vid.status == PV_VIDEO_RUNNING));
    int rc = 0;
    if (match) {
        json_t *j = video_json(jl->txn, &vid);
        rc = j && json_array_append_new(jl->items, j) == 0 ? 0 : -ENOMEM;
    }
    pv_video_clear(&vid);
    return rc;
}

/* PV_DB_JOBS: video id -> user id, queued and running only. */
static int list_job(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    job_list_t *jl = arg;
    if ((long)json_array_size(jl->items) >= jl->limit) {
        jl->more = true;
        return 1;
    }
    uint8_t key[32];
    pv_val_t rec;
    if (k->len != 16 || v->len != 16)
        return 0;
    pv_key2(key, v->data, k->data, 16);
    if (pv_txn_get(jl->txn, PV_DB_VIDEOS, key, sizeof(key), &rec) < 0)
        return 0;
    return add_video(jl, &rec);
}

static int list_video(void *arg, const pv_val_t *k, const pv_val_t *v)
{
    return add_video(arg, v);
}

/* Newest first across users: the ids are time-ordered. */
static int cmp_newest(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "id"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "id"));
    return strcmp(y ? y : "", x ? x : "");
}

static int sort_and_cut(job_list_t *jl)
{
    size_t n = json_array_size(jl->items);
    json_t **v = malloc((n ? n : 1) * sizeof(*v));
    json_t *out = json_array();
    if (!v || !out) {
        free(v);
        json_decref(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(jl->items, i);
    qsort(v, n, sizeof(*v), cmp_newest);
    for (size_t i = 0; i < n && (long)i < jl->limit; i++)
        json_array_append(out, v[i]);
    jl->more = (long)n > jl->limit;
    free(v);
    json_decref(jl->items);
    jl->items = out;
    return 0;
}

static int want_state(const char *s)
{
    if (!s || strcmp(s, "active") == 0)
        return -1;
    if (strcmp(s, "all") == 0)
        return -2;
    for (int i = 0; i <= PV_VIDEO_CANCELLED; i++)
        if (strcmp(s, pv_video_status_name(i)) == 0)
            return i;
    return -1;
}

static void job_list_work(pv_msg_t *m)
{
    admin_req_t *r = (admin_req_t *)m;
    pv_txn_t txn;
    job_list_t jl = {.txn = &txn, .items = json_array(), .want = want_state(arg_str(r, "state")),
                     .limit = arg_int(r, "limit", ADMIN_LIST_DEFAULT)};
    int rc = jl.items ? pv_txn_begin(r->app->store, &txn, false) : -ENOMEM;
    if (rc == 0) {
        if (jl.want == -1)
            rc = pv_txn_scan(&txn, PV_DB_JOBS, NULL, 0, NULL, 0, true, list_job, &jl);
        else if ((rc = pv_txn_scan(&txn, PV_DB_VIDEOS, NULL, 0, NULL, 0, false, list_video, &jl)) == 0)
            rc = sort_and_cut(&jl);
        pv_txn_abort(&txn);
    }
    const char *state = arg_str(r, "state");
    if (rc == 0 && !(r->result = json_pack("{s:O,s:s,s:b,s:b}", "jobs", jl.items, "state",
                                           state ? state : "active", "truncated", jl.more,
                                           "video_jobs_available", r->app->videos != NULL)))
        rc = -ENOMEM;
    r->rc = rc;
    json_decref(jl.items);
}

static void h_job_list(admin_req_t *r) { (void)go_pool(r, job_list_work, work_done); }

/* The videos actor answered the command (call.answer). */
static void job_replied(pv_call_t *call)
{
    admin_req_t *r = (admin_req_t *)call;
    const pv_job_cmd_t *cmd = (const pv_job_cmd_t *)call->answer;
    int rc = call->result;
    char id[PV_ID_TEXT];
    pv_id_encode(cmd->video_id, id);
    if (rc == -ENOENT)
        req_error(r, "not_found", "no video %s", id);
    else if (rc == -EINVAL)
        req_error(r, "conflict", "%s", cmd->err[0] ? cmd->err : "not possible in its state");
    else if (rc < 0)
        req_error_rc(r, rc, r->cmd->words);
    else
        r->result = json_pack("{s:s,s:s}", "id", id, "done",
                              cmd->op == PV_JOB_CANCEL ? "cancelled" : "queued again");
    pv_msg_free(call->answer);
    call->answer = NULL;
    req_done(r);
}

static void h_job_cmd(admin_req_t *r)
{
    if (!r->app->videos) {
        req_error(r, "unavailable", "video jobs are not available in this pvd");
        req_done(r);
        return;
    }
    pv_job_cmd_t *cmd = pv_msg_new(sizeof(*cmd), PV_VIDEOS_JOB_CMD);
    if (!cmd || pv_id_decode(arg_str(r, "id"), cmd->video_id) < 0) {
        if (cmd)
            req_error(r, "bad_args", "\"%.64s\" is not a video id", arg_str(r, "id"));
        else
            req_error_rc(r, -ENOMEM, r->cmd->words);
        free(cmd);
        req_done(r);
        return;
    }
    cmd->op = r->cmd->id == PV_CMD_JOB_CANCEL ? PV_JOB_CANCEL : PV_JOB_RETRY;
    pv_call_ask(&r->call, r->app->videos, &cmd->msg, job_replied);
}

/* ---------------- sync: the replication targets ---------------- */

static json_t *epoch_ms_json(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char t[32];
    pv_time_format(ms, t);
    return json_string(t);
}

static json_t *repl_status_json(const pv_repl_status_t *s)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:f,s:I,s:I}", "target", s->target, "where",
                          s->where, "state", s->state, "cursor", (json_int_t)s->cursor, "head",
                          (json_int_t)s->head, "lag_entries",
                          (json_int_t)(s->head > s->cursor ? s->head - s->cursor : 0),
                          "lag_seconds", s->lag_seconds, "bytes_pending",
                          (json_int_t)s->bytes_pending, "failures", (json_int_t)s->failures);
    if (!o)
        return NULL;
    json_object_set_new(o, "last_error", s->last_error[0] ? json_string(s->last_error)
                                                          : json_null());
    json_object_set_new(o, "last_error_at", epoch_ms_json(s->last_error_ms));
    json_object_set_new(o, "next_retry_at", epoch_ms_json(s->next_retry_ms));
    if (strcmp(s->target, "s3") != 0) { /* a database: rows or items */
        json_object_set_new(o, "records_written", json_integer((json_int_t)s->records));
        return o;
    }
    json_object_set_new(o, "blobs_sent", json_integer((json_int_t)s->blobs));
    json_object_set_new(o, "blob_bytes_sent", json_integer((json_int_t)s->blob_bytes));
    json_object_set_new(o, "blobs_present", json_integer((json_int_t)s->blobs_present));
    json_object_set_new(o, "segments", json_integer((json_int_t)s->segments));
    json_object_set_new(o, "snapshots_sent", json_integer((json_int_t)s->snapshots));
    json_object_set_new(o, "parts_resumed", json_integer((json_int_t)s->parts_resumed));
    json_object_set_new(o, "blobs_repaired", json_integer((json_int_t)s->blobs_repaired));
    json_object_set_new(o, "last_snapshot_seq", s->last_snapshot_ms
                                                    ? json_integer((json_int_t)s->last_snapshot_seq)
                                                    : json_null());
    json_object_set_new(o, "last_snapshot_at", epoch_ms_json(s->last_snapshot_ms));
    return o;
}

static void sync_ask(admin_req_t *r);

/* A target answered (call.answer): its status after the op. The next one
 * is asked in turn; an outage of one never holds the others' answers,
 * because each answers from its own state at once. */
static void sync_replied(pv_call_t *call)
{
    admin_req_t *r = (admin_req_t *)call;
    pv_repl_ctl_t *m = (pv_repl_ctl_t *)call->answer;
    json_t *t = call->result == 0 ? repl_status_json(&m->st) : NULL;
    pv_msg_free(call->answer);
    call->answer = NULL;
    if (call->result < 0 || !t || json_array_append_new(json_object_get(r->result, "targets"), t)) {
        req_error_rc(r, call->result < 0 ? call->result : -ENOMEM, r->cmd->words);
        json_decref(r->result);
        r->result = NULL;
        req_done(r);
        return;
    }
    r->sync_next++;
    sync_ask(r);
}

/* Asks target sync_next (or, with a name, that one alone) to do the op. */
static void sync_ask(admin_req_t *r)
{
    const char *name = arg_str(r, "target");
    while (r->sync_next < r->app->n_targets && name &&
           strcmp(r->app->targets[r->sync_next].name, name) != 0)
        r->sync_next++;
    if (r->sync_next >= r->app->n_targets || (name && json_array_size(json_object_get(r->result,
                                                                                     "targets")))) {
        req_done(r);
        return;
    }
    pv_repl_ctl_t *m = pv_msg_new(sizeof(*m), PV_REPL_CTL);
    if (!m) {
        req_error_rc(r, -ENOMEM, r->cmd->words);
        json_decref(r->result);
        r->result = NULL;
        req_done(r);
        return;
    }
    m->op = r->cmd->id == PV_CMD_SYNC_PAUSE    ? PV_REPL_PAUSE
            : r->cmd->id == PV_CMD_SYNC_RESUME ? PV_REPL_RESUME
            : r->cmd->id == PV_CMD_SYNC_NOW    ? PV_REPL_NOW
                                               : PV_REPL_STATUS;
    pv_call_ask(&r->call, r->app->targets[r->sync_next].actor, &m->msg, sync_replied);
}

static void h_sync(admin_req_t *r)
{
    const char *t = arg_str(r, "target");
    const pv_app_t *app = r->app;
    if (app->n_targets == 0 || (t && !pv_sync_target(app, t))) {
        if (r->cmd->id == PV_CMD_SYNC_STATUS && !t) {
            pv_store_stat_t st;
            int rc = pv_store_stat(r->app->store, &st); /* a read txn: microseconds */
            if (rc < 0)
                req_error_rc(r, rc, "sync status");
            else
                r->result = json_pack("{s:[],s:I,s:I,s:s}", "targets", "head",
                                      (json_int_t)st.last_seq, "kept",
                                      (json_int_t)st.entries[PV_DB_CHANGES], "message",
                                      "no replication targets are configured");
        } else if (t) {
            char names[64] = "";
            for (int i = 0; i < app->n_targets; i++)
                snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                         i ? ", " : " (there is: ", app->targets[i].name);
            req_error(r, "not_configured", "no replication target \"%.64s\" is configured%s%s",
                      t, names, names[0] ? ")" : "");
        } else {
            req_error(r, "not_configured", "no replication target is configured");
        }
        req_done(r);
        return;
    }
    r->result = json_pack("{s:[]}", "targets");
    if (!r->result) {
        req_error_rc(r, -ENOMEM, r->cmd->words);
        req_done(r);
        return;
    }
    r->sync_next = 0;
    sync_ask(r);
}

/* ---------------- backup ---------------- */

static void backup_work(pv_msg_t *m)
{
    admin_req_t *r = (admin_req_t *)m;
    pv_config_t *c = &r->app->cfg;
    bool blobs = !json_is_true(json_object_get(r->args, "no_blobs"));
    r->rc = pv_backup_write(r->app->store, c->data_dir, c->tls_cert, c->tls_key,
                            arg_str(r, "path"), blobs, &r->backup, r->err.message,
                            sizeof(r->err.message));
}

static void backup_done(admin_req_t *r)
{
    pv_backup_info_t *b = &r->backup;
    r->adm->backup_running = false;
    if (r->rc < 0) {
        char why[sizeof(r->err.message)];
        snprintf(why, sizeof(why), "%s", r->err.message);
        pv_warn("admin", "backup to %s failed: %s", arg_str(r, "path"), why);
        req_error(r, r->rc == -ENOSPC ? "store_full" : "backup_failed", "%s", why);
    } else {
        r->result = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "path", arg_str(r, "path"),
                              "bytes", (json_int_t)b->bytes, "store_bytes",
                              (json_int_t)b->store_bytes, "blobs", (json_int_t)b->blobs,
                              "blob_bytes", (json_int_t)b->blob_bytes, "blobs_missing",
                              (json_int_t)b->blobs_missing, "last_seq", (json_int_t)b->last_seq,
                              "seconds", b->seconds);
        pv_info("admin", "backup written to %s (%llu bytes, %llu blobs, %.1f s)",
                arg_str(r, "path"), (unsigned long long)b->bytes, (unsigned long long)b->blobs,
                b->seconds);
    }
    req_done(r);
}

/* pvd writes a backup with its own rights, so only where the operator
 * said it may: a file directly or further down in backup_dir (symbolic
 * links resolved), never the data directory's own files or elsewhere. */
static int backup_path_check(const char *dir, const char *path)
{
    char d[PATH_MAX], parent[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!slash || !*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
        (size_t)(slash - path) >= sizeof(parent) || !realpath(dir, d))
        return -EACCES;
    memcpy(parent, path, (size_t)(slash - path));
    parent[slash - path] = '\0';
    if (!realpath(*parent ? parent : "/", real))
        return errno == ENOENT ? -ENOENT : -EACCES;
    size_t n = strlen(d);
    return strncmp(real, d, n) == 0 && (real[n] == '\0' || real[n] == '/') ? 0 : -EACCES;
}

static void h_backup(admin_req_t *r)
{
    const char *path = arg_str(r, "path");
    if (path[0] != '/') {
        req_error(r, "bad_args", "the backup path must be absolute (pvctl makes it so)");
        req_done(r);
        return;
    }
    const char *dir = r->app->cfg.backup_dir;
    int rc = pv_mkdir_p(dir, 0700);
    if (rc < 0)
        req_error(r, "backup_failed", "cannot create the backup directory %s: %s", dir,
                  strerror(-rc));
    else if ((rc = backup_path_check(dir, path)) == -ENOENT)
        req_error(r, "backup_failed", "no such directory for %s", path);
    else if (rc < 0)
        req_error(r, "bad_args", "pvd writes backups only in %s (the backup_dir key): give a "
                  "file there", dir);
    if (rc < 0) {
        req_done(r);
        return;
    }
    if (r->adm->backup_running) {
        req_error(r, "busy", "a backup is already running");
        req_done(r);
        return;
    }
    pv_admin_t *adm = r->adm;
    adm->backup_running = true;
    if (go_pool(r, backup_work, backup_done) < 0)
        adm->backup_running = false; /* r is gone: it was answered */
}

/* ---------------- config, TLS, log level ---------------- */

static void h_config_show(admin_req_t *r)
{
    char *dump = pv_config_dump(&r->app->cfg);
    json_t *cfg = json_object();
    for (char *line = dump, *nl; line && *line; line = nl ? nl + 1 : line + strlen(line)) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char *eq = strstr(line, " = ");
        if (eq) {
            *eq = '\0';
            json_object_set_new(cfg, line, json_string(eq + 3));
        }
    }
    free(dump);
    if (!dump || !cfg)
        req_error_rc(r, -ENOMEM, "config show");
    else
        r->result = json_pack("{s:O}", "config", cfg);
    json_decref(cfg);
    req_done(r);
}

/* The TLS actor answered (call.answer): every HTTP loop has the new
 * certificate, or the old one stays and the answer says why. */
static void tls_replied(pv_call_t *call)
{
    admin_req_t *r = (admin_req_t *)call;
    const pv_tls_reload_t *m = (const pv_tls_reload_t *)call->answer;
    if (call->result == -EINVAL) {
        pv_warn("admin", "certificate reload failed (%s); the old one stays in use", m->err);
        req_error(r, "tls_invalid", "%s; the old certificate stays in use", m->err);
    } else if (call->result < 0) {
        req_error_rc(r, call->result, r->cmd->words);
    } else {
        r->result = json_pack("{s:b,s:s,s:s}", "reloaded", 1, "cert", r->app->cfg.tls_cert,
                              "key", r->app->cfg.tls_key);
        pv_info("admin", "certificate reloaded from %s (pvctl)", r->app->cfg.tls_cert);
    }
    pv_msg_free(call->answer);
    call->answer = NULL;
    req_done(r);
}

static void h_tls_reload(admin_req_t *r)
{
    pv_tls_reload_t *m = pv_msg_new(sizeof(*m), PV_TLS_RELOAD);
    if (!m) {
        req_error_rc(r, -ENOMEM, r->cmd->words);
        req_done(r);
        return;
    }
    pv_call_ask(&r->call, r->app->tls, &m->msg, tls_replied);
}

static void h_log_level(admin_req_t *r)
{
    const char *want = arg_str(r, "level");
    int old = pv_log_get_level();
    if (want) {
        pv_log_set_level(pv_log_level_parse(want)); /* the table checked the name */
        pv_log(PV_LOG_WARN, "admin", NULL, NULL, "log level %s -> %s (pvctl)",
               pv_log_level_name(old), want);
    }
    r->result = json_pack("{s:s,s:s}", "level", pv_log_level_name(pv_log_get_level()),
                          "previous", pv_log_level_name(old));
    req_done(r);
}

/* ---------------- share links ---------------- */

/* One row: the share, its owner's email and its video's title. */
static json_t *share_row_json(pv_txn_t *txn, const pv_share_t *s, int64_t now)
{
    pv_val_t v;
    pv_user_t u;
    pv_video_t vid;
    const char *email = "";
    if (pv_txn_get(txn, PV_DB_USERS, s->user_id, 16, &v) == 0 && pv_user_decode(v.data, v.len, &u) == 0)
        email = u.email;
    char title[PV_TITLE_MAX + 1] = "";
    if (pv_video_load(txn, s->user_id, s->video_id, &vid) == 0) {
        snprintf(title, sizeof(title), "%s", vid.title);
        pv_video_clear(&vid);
    }
    return json_pack("{s:o,s:s,s:o,s:s,s:o,s:o,s:b,s:b,s:I}", "id", id_json(s->id), "user", email,
                     "video", id_json(s->video_id), "title", title, "created_at",
                     time_json(s->created_ms), "expires_at", time_json(s->expires_ms), "expired",
                     now >= s->expires_ms, "password", s->pw_hash[0] != '\0', "views",
                     (json_int_t)s->views);
}

static void share_list_work(pv_msg_t *m)
{
    admin_req_t *r = (admin_req_t *)m;
    pv_txn_t txn;
    pv_share_t *shares = NULL;
    size_t n = 0;
    const char *who = arg_str(r, "user");
    long limit = arg_int(r, "limit", ADMIN_LIST_DEFAULT);
    int rc = pv_txn_begin(r->app->store, &txn, false);
    if (rc < 0) {
        r->rc = rc;
        return;
    }
    if (who && user_lookup(&txn, who, &r->user) < 0) {
        pv_txn_abort(&txn);
        req_error(r, "not_found", "no user %s", who);
        return;
    }
    rc = pv_share_list(&txn, who ? r->user.id : NULL, NULL, &shares, &n);
    json_t *rows = json_array();
    int64_t now = pv_now_ms();
    for (size_t i = 0; rc == 0 && rows && i < n && (long)i < limit; i++)
        if (json_array_append_new(rows, share_row_json(&txn, &shares[i], now)) < 0)
            rc = -ENOMEM;
    pv_txn_abort(&txn);
    free(shares);
    if (rc == 0 && !(r->result = json_pack("{s:o,s:I}", "shares", rows, "total", (json_int_t)n)))
        rc = -ENOMEM;
    else if (rc < 0)
        json_decref(rows);
    r->rc = rc;
}

static void h_share_list(admin_req_t *r) { (void)go_pool(r, share_list_work, work_done); }

/* TOKEN, /s/TOKEN, a link ending in it, or a share id. */
static int share_revoke_apply(pv_txn_t *txn, void *arg)
{
    admin_req_t *r = arg;
    const char *what = r->who, *slash = strrchr(what, '/');
    uint8_t id[16], hash[32];
    pv_share_t s;
    int rc;
    if (pv_id_decode(what, id) == 0)
        rc = pv_share_find(txn, id, NULL, hash, &s);
    else if (pv_refresh_hash(slash ? slash + 1 : what, hash) == 0)
        rc = pv_share_load(txn, hash, &s);
    else
        rc = -ENOENT;
    if (rc == 0)
        rc = pv_txn_del(txn, PV_DB_SHARES, hash, 32);
    if (rc == 0)
        memcpy(r->user.id, s.id, 16); /* for the answer */
    return rc;
}

static void share_revoke_committed(admin_req_t *r)
{
    int rc = r->call.sreq.msg.status;
    if (rc == -ENOENT || rc == -EINVAL) {
        req_error(r, "not_found", "no share %s", r->who);
    } else if (rc < 0) {
        req_error_rc(r, rc, r->cmd->words);
    } else {
        r->result = json_pack("{s:o,s:b}", "share", id_json(r->user.id), "revoked", true);
        pv_info("admin", "share link %s revoked by pvctl", json_string_value(json_object_get(r->result, "share")));
    }
    req_done(r);
}

static void h_share_revoke(admin_req_t *r)
{
    snprintf(r->who, sizeof(r->who), "%s", arg_str(r, "share"));
    go_store(r, share_revoke_apply, share_revoke_committed);
}

/* ---------------- test build: the failure seam and the store check ----------------
 * The failure walks (tests/integration/test_failwalk.py) arm the seam, run
 * an operation, read what it passed and fired, and check the store. Both
 * commands answer at once, on the core loop, inside seam_hold (dispatch):
 * their own work, answer included, is neither counted nor failed. */
#ifdef PV_TEST_BUILD
static json_t *sites_json(void)
{
    pv_fail_site_t sites[256];
    size_t n = pv_fail_sites(sites, PV_ARRAY_LEN(sites));
    json_t *a = json_array();
    for (size_t i = 0; a && i < n && i < PV_ARRAY_LEN(sites); i++)
        json_array_append_new(a, json_pack("{s:s,s:s,s:i,s:I,s:I,s:I,s:I}", "site", sites[i].site,
                                           "file", sites[i].file, "line", sites[i].line, "calls",
                                           (json_int_t)sites[i].calls, "fired",
                                           (json_int_t)sites[i].fired, "first",
                                           (json_int_t)sites[i].first, "last",
                                           (json_int_t)sites[i].last));
    return a;
}

static void h_debug_failpoints(admin_req_t *r)
{
    pv_fail_count_t c = pv_fail_count();
    r->result = json_pack("{s:I,s:I,s:s}", "calls", (json_int_t)c.calls, "fired",
                          (json_int_t)c.fired, "last", c.last);
    if (r->result && json_is_true(json_object_get(r->args, "sites")))
        json_object_set_new(r->result, "sites", sites_json());
    const char *spec = arg_str(r, "spec");
    if (spec) {
        pv_fail_reset(spec);
        pv_info("admin", "failpoints armed: \"%s\" (pvctl)", spec);
    }
    if (!r->result)
        req_error_rc(r, -ENOMEM, "debug failpoints");
    req_done(r);
}

static void h_debug_check(admin_req_t *r)
{
    pv_check_t c;
    pv_store_stat_t st;
    bool content = json_is_true(json_object_get(r->args, "content"));
    int rc = pv_check_store_flags(r->app->store, content ? PV_CHECK_CONTENT : 0, &c);
    if (rc == 0)
        rc = pv_store_stat(r->app->store, &st);
    if (rc == 0)
        r->result = json_pack(
            "{s:i,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I}}", "problems",
            c.problems, "text", c.text.p ? c.text.p : "", "digest", c.digest, "records",
            (json_int_t)c.records, "blobs", (json_int_t)c.blobs, "changes",
            (json_int_t)c.changes, "seq", (json_int_t)c.seq, "stray_files",
            (json_int_t)c.stray_files, "tmp_files", (json_int_t)c.tmp_files, "counts", "users",
            (json_int_t)st.entries[PV_DB_USERS], "photos", (json_int_t)st.entries[PV_DB_PHOTOS],
            "videos", (json_int_t)st.entries[PV_DB_VIDEOS], "jobs",
            (json_int_t)st.entries[PV_DB_JOBS], "tokens", (json_int_t)st.entries[PV_DB_TOKENS]);
    if (r->result) { /* one digest a database: a restore compares records and indexes */
        static const char *const names[PV_DB_COUNT] = {
            [PV_DB_META] = "meta", [PV_DB_USERS] = "users", [PV_DB_EMAILS] = "emails",
            [PV_DB_PHOTOS] = "photos", [PV_DB_PHOTO_SHA] = "photo_sha",
            [PV_DB_TOKENS] = "tokens", [PV_DB_FAMILIES] = "families", [PV_DB_BLOBS] = "blobs",
            [PV_DB_VIDEOS] = "videos", [PV_DB_JOBS] = "jobs", [PV_DB_CHANGES] = "changes"};
        json_t *d = json_object();
        for (int i = 0; d && i < PV_DB_COUNT; i++)
            json_object_set_new(d, names[i], json_string(c.db_digest[i]));
        json_object_set_new(r->result, "db_digests", d);
    }
    if (rc == 0 && !r->result)
        rc = -ENOMEM;
    if (rc < 0)
        req_error_rc(r, rc, "debug check");
    pv_check_free(&c);
    req_done(r);
}

static void seam_hold(const pv_admin_cmd_t *cmd, bool on)
{
    if (cmd->flags & PV_CMDF_TEST)
        pv_fail_hold(on);
}
#else
static void seam_hold(const pv_admin_cmd_t *cmd, bool on)
{
    (void)cmd;
    (void)on;
}
#endif

/* ---------------- dispatch ---------------- */

typedef void (*admin_handler_fn)(admin_req_t *r);

static const admin_handler_fn g_handlers[PV_CMD_COUNT] = {
    [PV_CMD_STATUS] = h_status,
    [PV_CMD_USER_LIST] = h_user_list,
    [PV_CMD_USER_ADD] = h_user_add,
    [PV_CMD_USER_DISABLE] = h_user_state,
    [PV_CMD_USER_ENABLE] = h_user_state,
    [PV_CMD_USER_RESET_PASSWORD] = h_user_reset_password,
    [PV_CMD_JOB_LIST] = h_job_list,
    [PV_CMD_USER_INVITE] = h_user_invite,
    [PV_CMD_JOB_CANCEL] = h_job_cmd,
    [PV_CMD_JOB_RETRY] = h_job_cmd,
    [PV_CMD_SYNC_STATUS] = h_sync,
    [PV_CMD_SYNC_PAUSE] = h_sync,
    [PV_CMD_SYNC_RESUME] = h_sync,
    [PV_CMD_SYNC_NOW] = h_sync,
    [PV_CMD_BACKUP] = h_backup,
    [PV_CMD_CONFIG_SHOW] = h_config_show,
    [PV_CMD_TLS_RELOAD] = h_tls_reload,
    [PV_CMD_LOG_LEVEL] = h_log_level,
    [PV_CMD_SHARE_LIST] = h_share_list,
    [PV_CMD_SHARE_REVOKE] = h_share_revoke,
#ifdef PV_TEST_BUILD
    [PV_CMD_DEBUG_FAILPOINTS] = h_debug_failpoints,
    [PV_CMD_DEBUG_CHECK] = h_debug_check,
#endif
};

/* Answer a frame-level error on c without a request object. */
static void conn_reply_error(admin_conn_t *c, const char *code, const char *message)
{
    conn_send(c, pv_admin_error(code, message), NULL);
}

static void dispatch(admin_conn_t *c, const void *payload, size_t len)
{
    pv_admin_t *adm = c->adm;
    json_t *req, *args;
    const pv_admin_cmd_t *cmd;
    pv_admin_err_t e = {"", ""};
    if (pv_admin_request_parse(payload, len, &req, &cmd, &args, &e) < 0) {
        pv_debug("admin", "bad request from uid %u: %s", (unsigned)c->uid, e.message);
        conn_reply_error(c, e.code, e.message);
        return;
    }
    seam_hold(cmd, true);
    admin_req_t *r = pv_fail("admin_req") ? NULL : pv_msg_new(sizeof(*r), 0);
    char *room = r && !pv_fail("admin_req") ? malloc(ADMIN_ANSWER_ROOM) : NULL;
    if (!room) {
        free(r);
        json_decref(req);
        conn_reply_error(c, "overloaded", "out of memory; try again");
        seam_hold(cmd, false);
        return;
    }
    r->room = room;
    r->call.sreq.msg.free_fn = req_free;
    pv_call_init(&r->call, adm->app, adm->actor);
    r->adm = adm;
    r->app = adm->app;
    r->conn_id = c->id;
    r->cmd = cmd;
    r->req = req;
    r->args = args;
    c->busy = true;
    bufferevent_disable(c->bev, EV_READ);
    pv_debug("admin", "%s from uid %u", cmd->name, (unsigned)c->uid);
    g_handlers[cmd->id](r);
    seam_hold(cmd, false);
}

/* ---------------- connections ---------------- */

static void conn_free(admin_conn_t *c)
{
    pv_admin_t *adm = c->adm;
    for (admin_conn_t **p = &adm->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    adm->n_conns--;
    bufferevent_free(c->bev);
    free(c);
}

/* Take whole frames off the input while no request is in flight. */
static void conn_read(struct bufferevent *bev, void *arg)
{
    admin_conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->in_read = true;
    while (!c->busy && !c->closing) {
        size_t avail = evbuffer_get_length(in);
        uint8_t hdr[PV_ADMIN_HDR];
        if (avail < PV_ADMIN_HDR)
            break;
        evbuffer_copyout(in, hdr, sizeof(hdr));
        if (pv_admin_frame_check(hdr, sizeof(hdr), PV_ADMIN_REQ_MAX) == -EMSGSIZE) {
            pv_warn("admin", "uid %u sent a frame over %u bytes; closing", (unsigned)c->uid,
                    PV_ADMIN_REQ_MAX);
            conn_reply_error(c, "too_large", "the request frame is larger than 1 MiB");
            c->closing = true;
            break;
        }
        size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
        if (avail < PV_ADMIN_HDR + n) {
            /* wake when the whole frame is in, not on every piece */
            bufferevent_setwatermark(bev, EV_READ, PV_ADMIN_HDR + n, PV_ADMIN_REQ_MAX + 4096);
            break;
        }
        bufferevent_setwatermark(bev, EV_READ, 0, PV_ADMIN_REQ_MAX + 4096);
        const uint8_t *frame = evbuffer_pullup(in, (ev_ssize_t)(PV_ADMIN_HDR + n));
        if (!frame) {
            conn_reply_error(c, "overloaded", "out of memory reading the request");
            c->closing = true;
            break;
        }
        dispatch(c, frame + PV_ADMIN_HDR, n); /* the parse copies what it keeps */
        evbuffer_drain(in, PV_ADMIN_HDR + n);
    }
    c->in_read = false;
    if (c->closing) {
        bufferevent_disable(bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && !c->busy)
            conn_free(c);
    }
}

static void conn_write(struct bufferevent *bev, void *arg)
{
    admin_conn_t *c = arg;
    if (c->closing && !c->busy)
        conn_free(c); /* the last answer is out */
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    admin_conn_t *c = arg;
    bool unsent = evbuffer_get_length(bufferevent_get_output(bev)) > 0;
    if ((what & BEV_EVENT_EOF) && (c->busy || unsent)) {
        /* half-closed after its request: answer, then close (conn_write) */
        c->closing = true;
        bufferevent_disable(bev, EV_READ);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT)
        pv_debug("admin", "connection of uid %u timed out", (unsigned)c->uid);
    conn_free(c);
}

/* ---------------- accepting ---------------- */

static bool in_group(int fd, gid_t gid)
{
    gid_t groups[256];
    socklen_t len = sizeof(groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
        return false;
    for (size_t i = 0; i < len / sizeof(gid_t); i++)
        if (groups[i] == gid)
            return true;
    return false;
}

static bool peer_allowed(pv_admin_t *adm, int fd, struct ucred *uc)
{
    socklen_t len = sizeof(*uc);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, uc, &len) < 0)
        return false;
    if (uc->uid == 0 || uc->uid == geteuid())
        return true;
    return adm->has_group && (uc->gid == adm->gid || in_group(fd, adm->gid));
}

/* One small frame, straight to a socket we are about to close. */
static void refuse(int fd, const char *code, const char *message)
{
    json_t *e = pv_admin_error(code, message);
    char *buf;
    size_t len;
    if (e && pv_admin_frame_pack(e, PV_ADMIN_RESP_MAX, &buf, &len) == 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n; /* best effort: the peer may be gone already */
        free(buf);
    }
    json_decref(e);
    evutil_closesocket(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    pv_admin_t *adm = arg;
    struct ucred uc = {0, (uid_t)-1, (gid_t)-1};
    if (!peer_allowed(adm, fd, &uc)) {
        /* A local user in a loop must not fill the log: one line a minute. */
        int64_t now = pv_now_ms();
        if (now - adm->refused_log_ms >= 60000 || adm->refused_log_ms == 0) {
            pv_warn("admin", "refused a connection from uid %d (pid %d): not root, pvd's user "
                    "or admin_group (%u more refused in the last minute)", (int)uc.uid,
                    (int)uc.pid, adm->refused_quiet);
            adm->refused_log_ms = now;
            adm->refused_quiet = 0;
        } else {
            adm->refused_quiet++;
        }
        refuse(fd, "forbidden", "permission denied: run pvctl as root, as pvd's user or as a "
                                "member of admin_group");
        return;
    }
    if (adm->n_conns >= ADMIN_MAX_CONNS) {
        refuse(fd, "too_many_connections", "too many pvctl connections; try again");
        return;
    }
    admin_conn_t *c = pv_fail("admin_conn") ? NULL : calloc(1, sizeof(*c));
    struct bufferevent *bev =
        c ? bufferevent_socket_new(pv_loop_base(pv_actor_loop(adm->actor)), fd,
                                   BEV_OPT_CLOSE_ON_FREE)
          : NULL;
    if (!bev) {
        free(c);
        refuse(fd, "overloaded", "out of memory; try again");
        return;
    }
    c->adm = adm;
    c->bev = bev;
    c->id = ++adm->next_id;
    c->uid = uc.uid;
    c->pid = uc.pid;
    c->next = adm->conns;
    adm->conns = c;
    adm->n_conns++;
    struct timeval idle = {ADMIN_IDLE_S, 0}, wr = {ADMIN_WRITE_S, 0};
    bufferevent_setcb(bev, conn_read, conn_write, conn_event, c);
    bufferevent_set_timeouts(bev, &idle, &wr);
    bufferevent_setwatermark(bev, EV_READ, 0, PV_ADMIN_REQ_MAX + 4096);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ---------------- the socket file ---------------- */

static int resolve_group(pv_admin_t *adm, const char *name)
{
    if (!*name)
        return 0;
    char *end;
    long n = strtol(name, &end, 10);
    if (*end == '\0' && n >= 0) {
        adm->gid = (gid_t)n;
    } else {
        struct group gr, *res = NULL;
        char buf[4096];
        if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || !res) {
            pv_error("admin", "admin_group \"%s\": no such group", name);
            return -ENOENT;
        }
        adm->gid = res->gr_gid;
    }
    adm->has_group = true;
    return 0;
}

/* A socket file left by a pvd that died is removed; one that still
 * answers belongs to a running pvd, and we must not steal it. */
static int clear_stale(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        pv_error("admin", "%s exists and is not a socket; not touching it", path);
        return -EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    bool live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    if (live) {
        pv_error("admin", "another pvd is serving %s", path);
        return -EADDRINUSE;
    }
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

static int make_socket(pv_admin_t *adm)
{
    const char *path = adm->path;
    char dir[sizeof(adm->path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        pv_mkdir_p(dir, adm->has_group ? 0750 : 0700); /* existing dirs are left as they are */
    }
    int rc = clear_stale(path);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    mode_t old = umask(0177); /* born 0600: never a moment wider */
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    umask(old);
    if (rc == 0 && adm->has_group &&
        (chown(path, (uid_t)-1, adm->gid) < 0 || chmod(path, 0660) < 0))
        rc = -errno;
    if (rc == 0 && listen(fd, 128) < 0)
        rc = -errno;
    struct stat st;
    if (rc == 0 && lstat(path, &st) == 0) {
        adm->dev = st.st_dev;
        adm->ino = st.st_ino;
    }
    if (rc < 0) {
        pv_error("admin", "cannot serve %s: %s", path, strerror(-rc));
        close(fd);
        return rc;
    }
    return fd;
}

int pv_admin_start(pv_app_t *app)
{
    for (int i = 0; i < PV_CMD_COUNT; i++)
        if (!g_handlers[i]) {
            pv_error("admin", "command %d has no handler", i);
            return -EINVAL;
        }
    const char *path = app->cfg.admin_socket;
    pv_admin_t *adm = calloc(1, sizeof(*adm));
    if (!adm)
        return -ENOMEM;
    adm->app = app;
    int rc = 0;
    if (strlen(path) >= sizeof(adm->path)) {
        pv_error("admin", "admin_socket path is longer than %zu bytes: %s",
                 sizeof(adm->path) - 1, path);
        rc = -ENAMETOOLONG;
    }
    if (rc == 0) {
        memcpy(adm->path, path, strlen(path) + 1);
        rc = resolve_group(adm, app->cfg.admin_group);
    }
    int fd = rc == 0 ? make_socket(adm) : rc;
    if (fd < 0) {
        free(adm);
        return fd;
    }
    /* Its requests come from its own socket; its messages are answers. */
    static const pv_actor_def_t def = {"admin", NULL, 0};
    adm->actor = pv_actor_new(app->core, &def, adm);
    if (adm->actor)
        adm->listener = evconnlistener_new(pv_loop_base(app->core), on_accept, adm,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!adm->listener) {
        close(fd);
        unlink(adm->path);
        pv_actor_free(adm->actor);
        free(adm);
        return -ENOMEM;
    }
    app->admin = adm;
    pv_info("admin", "pvctl socket at %s (mode %s%s)", adm->path,
            adm->has_group ? "0660, group " : "0600", adm->has_group ? app->cfg.admin_group : "");
    return 0;
}

void pv_admin_stop(pv_app_t *app)
{
    pv_admin_t *adm = app->admin;
    if (!adm)
        return;
    evconnlistener_free(adm->listener);
    while (adm->conns)
        conn_free(adm->conns);
    pv_actor_free(adm->actor); /* pending steps are freed with their requests */
    struct stat st;
    if (lstat(adm->path, &st) == 0 && st.st_dev == adm->dev && st.st_ino == adm->ino)
        unlink(adm->path);
    free(adm);
    app->admin = NULL;
}
