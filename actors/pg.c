/*
 * pg.c — the PostgreSQL replicator: users (without password hashes),
 * photos and videos mirrored into the tables schema/records.json derives,
 * in change-log order, on a loop of its own ("pg") so that a slow or absent
 * database never touches a request or another target.
 *
 * Everything goes through libpq's asynchronous API with the connection's
 * socket in the loop: PQconnectStart/PQconnectPoll to connect (TLS as
 * libpq does it, from the DSN: sslmode=verify-full for RDS),
 * PQsendQuery(Params) and PQconsumeInput/PQgetResult to talk; nothing here
 * waits on the network. libpq would resolve a host name inside
 * PQconnectPoll with getaddrinfo, which blocks: the name is looked up on
 * the work pool first and handed to libpq as hostaddr (every address, in
 * order, the name kept for TLS's check).
 *
 * The tables: tools/pgschema.py turns schema/records.json into a table of
 * columns (build/gen/pg_schema.h) and every statement is built from it at
 * start, so no column list is kept by hand. pv_schema (one row) holds the
 * shape's version and digest and the database's own cursor: the last change
 * it holds. On connect: a database without pv_schema gets the tables; one
 * whose digest differs is migrated in one transaction (CREATE TABLE IF NOT
 * EXISTS, ALTER TABLE ADD COLUMN IF NOT EXISTS for each column, the
 * indexes; rows kept) and then loaded in full, since a new column has no
 * values yet; one written by a newer pvd (a higher version) is refused.
 *
 * A pass: up to sync_batch change entries after the cursor, coalesced to
 * the last change of each row, in one transaction: BEGIN; per table one
 * DELETE of the deleted ids and one INSERT ... ON CONFLICT (id) DO UPDATE
 * ... WHERE EXCLUDED.seq > t.seq of the rest (each a single parameter, the
 * rows as a JSON array unpacked by jsonb_populate_recordset); pv_schema's
 * cursor; COMMIT. Then the cursor goes to META (PV_REPL_PG_CURSOR) through
 * the store writer, and the change log may be trimmed below it. A change
 * sent twice (pvd killed between the COMMIT and the META write) is applied
 * at most once: the seq condition turns it into nothing.
 *
 * The full load: a database with no cursor, or one the log no longer
 * reaches (trimmed past it, or ahead of this store), is loaded from the
 * store itself. In one LMDB read transaction at head H and one SQL
 * transaction: every row deleted, then every user, photo and video sent
 * with seq = H through COPY ... FROM STDIN (PQputCopyData, a page of rows
 * at a time, the next once libpq has sent the last), cursor = H; readers
 * see the old rows until the COMMIT. Then the log is followed from H.
 *
 * Failures: a failed step drops the connection (the server rolls the
 * transaction back) and the pass starts again from the database's cursor
 * after a capped exponential backoff with jitter (1 s doubling to 5
 * minutes, then a random half to whole of that). Each step has a deadline.
 * Memory is bounded by sync_batch (and the load's page) whatever the
 * backlog. The DSN's password is never logged nor shown: status names the
 * host and the database.
 */
#include "actors/pg.h"
#include "actors/replicate.h"
#include "actors/target.h"
#include "actors/sync.h"
#include "app/metrics.h"
#include "base/crypto.h"
#include "base/records.h"
#include "base/text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <math.h>
#include <msgpack.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One column of a replicated table (generated from schema/records.json). */
typedef struct pg_column {
    const char *name;  /* the SQL column */
    const char *field; /* the record's field (msgpack key); NULL: seq */
    const char *type;  /* SQL type */
    bool null;         /* NULL allowed */
    bool unique;       /* a unique index */
    bool index;        /* an index */
} pg_column_t;

typedef struct pg_table {
    const char *kind;  /* the change log's kind */
    const char *table; /* the SQL table */
    int db;            /* its LMDB database (enum pv_db) */
    int id_off;        /* where the record's id sits in its key */
    const pg_column_t *cols;
    int n_cols;
} pg_table_t;

#include <pg_schema.h>

#define N_TABLES ((int)PV_ARRAY_LEN(pg_tables))
#define STEP_TIMEOUT_MS 60000   /* a statement or the connect, at most */
#define REFUSED_RETRY_MS 60000
#define LOAD_PAGE 1000          /* rows a statement of the full load */
#define MAX_STEPS (2 * N_TABLES + 2)

enum {
    PG_INIT = PV_REPL_PUBLIC_COUNT, /* first message on the loop */
    PG_STOP,                        /* drop the connection, stop the loop */
    PG_MSG_COUNT
};

typedef struct pg pg_t;
typedef void (*pg_done_fn)(pg_t *r, PGresult *res);

typedef struct cursor_req {
    pv_store_req_t sreq;    /* answered to the actor: cursor_stored() */
    pg_t *r;
    uint64_t cursor;
} cursor_req_t;

/* A table's statements, built once from its columns. */
typedef struct pg_stmts {
    char *upsert;           /* $1: JSON array of rows; newer seq only */
    char *copy;             /* the full load: COPY ... FROM STDIN */
    char *del;              /* $1: JSON array of {id, seq} */
} pg_stmts_t;

typedef struct pg_step {
    const char *sql;        /* with param: one statement; without: a script */
    char *param;            /* owned; NULL: none */
} pg_step_t;

struct pg {
    pv_app_t *app;
    pv_actor_t *self;
    pv_loop_t *loop;
    struct event *deadline; /* the step in flight (or the connect) ends by then */
    struct event *sock;     /* the connection's socket */
    int sock_fd;
    short sock_what;
    PGconn *conn;
    bool connecting;        /* PQconnectPoll under way */
    bool ready;             /* connected and the schema checked */
    bool failed;            /* this pass failed: last_error says why */
    bool loaded;            /* a full load ran on this connection */
    uint64_t cursor;        /* the last change the database holds */
    bool failing;           /* the last pass failed: say so when one works */
    /* the query in flight */
    bool in_query;
    pg_done_fn done;
    PGresult *last;         /* its last result */
    char qerr[400];         /* its first error ("" none) */
    /* a pass: its steps */
    pg_step_t steps[MAX_STEPS];
    int n_steps, next_step;
    uint64_t pass_last;     /* the cursor once it commits */
    uint64_t pass_rows;
    /* the full load */
    pv_txn_t load_txn;
    bool load_open;
    int load_table;
    uint8_t load_after[64];
    size_t load_after_len;
    uint64_t load_rows;
    int64_t load_started_ms;
    bool copying;           /* a COPY FROM STDIN is open */
    bool copy_last, copy_ended; /* its last page is read; its end is sent */
    char *copy_buf;         /* a page of COPY lines not yet taken by libpq */
    size_t copy_len;
    char *migrate_sql;
    char resolve_host[256]; /* the DSN's one host name, looked up before a
                             * connect ("" none: an address, a socket, a
                             * list, or hostaddr given) */
    pg_stmts_t stmts[N_TABLES];
    pv_target_core_t t;     /* status, timer, pause, backoff (actors/target.h) */
};

static void pass(pg_t *r);
static void pass_go(pg_t *r);
static void pass_failed(pg_t *r);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pass(arg);
}

/* Record why the pass failed (the first reason only). */
static void fail(pg_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(pg_t *r, const char *fmt, ...)
{
    if (r->failed)
        return;
    r->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->t.st.last_error, sizeof(r->t.st.last_error), fmt, ap);
    va_end(ap);
    /* libpq's messages end in a newline, some run over several lines */
    for (char *p = r->t.st.last_error; *p; p++)
        if (*p == '\n')
            *p = p[1] ? ' ' : '\0';
    r->t.st.last_error_ms = pv_now_ms();
}

/* ---------------- the cursor, the head, the lag ---------------- */

static int first_entry(void *arg, const pv_change_t *c)
{
    *(pv_change_t *)arg = *c;
    return 1;
}

/* ---------------- records to JSON rows ---------------- */

static void uuid_text(const uint8_t id[16], char out[37])
{
    static const char hx[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hx[id[i] >> 4];
        *o++ = hx[id[i] & 15];
    }
    *o = '\0';
}

static json_t *uuid_json(const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != 16)
        return NULL;
    char s[37];
    uuid_text((const uint8_t *)o->via.bin.ptr, s);
    return json_string(s);
}

/* bytea in its hex input form, \x... */
static json_t *bytea_json(const void *p, size_t n)
{
    char *s = malloc(2 * n + 3);
    if (!s)
        return NULL;
    s[0] = '\\';
    s[1] = 'x';
    pv_hex(p, n, s + 2);
    s[2 * n + 2] = '\0';
    json_t *j = json_string(s);
    free(s);
    return j;
}

static json_t *time_json(int64_t ms)
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int msec = (int)(ms - secs * 1000);
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return NULL;
    char s[64];
    snprintf(s, sizeof(s), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, msec);
    return json_string(s);
}

static json_t *real_json(double d)
{
    if (isnan(d))
        return json_string("NaN");
    if (isinf(d))
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

/* Any msgpack value as JSON (for jsonb): bins as hex text. */
static json_t *any_json(const msgpack_object *o, int depth)
{
    if (depth > 8)
        return NULL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return o->via.u64 > INT64_MAX ? json_real((double)o->via.u64)
                                      : json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return real_json(o->via.f64);
    case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: {
        char *s = malloc(2 * (size_t)o->via.bin.size + 1);
        json_t *j = NULL;
        if (s) {
            pv_hex((const uint8_t *)o->via.bin.ptr, o->via.bin.size, s);
            j = json_stringn(s, 2 * (size_t)o->via.bin.size);
        }
        free(s);
        return j;
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++)
            if (json_array_append_new(a, any_json(&o->via.array.ptr[i], depth + 1)) < 0) {
                json_decref(a);
                a = NULL;
            }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            char key[64];
            if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size >= sizeof(key) ||
                (memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size),
                 key[kv->key.via.str.size] = '\0',
                 json_object_set_new(m, key, any_json(&kv->val, depth + 1)) < 0)) {
                json_decref(m);
                m = NULL;
            }
        }
        return m;
    }
    default: return NULL;
    }
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == kl &&
            memcmp(kv->key.via.str.ptr, key, kl) == 0)
            return &kv->val;
    }
    return NULL;
}

/* A column's value from the record's field (absent: o NULL). An absent
 * field is the type's empty value, or NULL where the column allows it;
 * an empty text in a column that allows NULL is NULL ("error"). NULL
 * return: the field does not convert. */
static json_t *col_json(const pg_column_t *c, const msgpack_object *o)
{
    const char *t = c->type;
    bool nil = !o || o->type == MSGPACK_OBJECT_NIL;
    if (!strcmp(t, "uuid"))
        return nil ? (c->null ? json_null() : NULL) : uuid_json(o);
    if (!strcmp(t, "integer") || !strcmp(t, "smallint") || !strcmp(t, "bigint")) {
        if (nil)
            return c->null ? json_null() : json_integer(0);
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
            return json_integer((json_int_t)o->via.u64);
        return o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? json_integer((json_int_t)o->via.i64)
                                                          : NULL;
    }
    if (!strcmp(t, "text")) {
        if (nil || (o->type == MSGPACK_OBJECT_STR && o->via.str.size == 0))
            return c->null ? json_null() : json_string("");
        return o->type == MSGPACK_OBJECT_STR ? json_stringn(o->via.str.ptr, o->via.str.size) : NULL;
    }
    if (!strcmp(t, "boolean")) {
        if (nil)
            return c->null ? json_null() : json_false();
        return o->type == MSGPACK_OBJECT_BOOLEAN ? json_boolean(o->via.boolean) : NULL;
    }
    if (!strcmp(t, "double precision")) {
        if (nil)
            return c->null ? json_null() : json_real(0);
        if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
            return real_json(o->via.f64);
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return json_real((double)o->via.u64);
        return o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? json_real((double)o->via.i64) : NULL;
    }
    if (!strcmp(t, "timestamptz")) {
        if (nil)
            return c->null ? json_null() : NULL;
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
            return time_json((int64_t)o->via.u64);
        return o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? time_json(o->via.i64) : NULL;
    }
    if (!strcmp(t, "bytea")) {
        if (nil)
            return c->null ? json_null() : bytea_json("", 0);
        return o->type == MSGPACK_OBJECT_BIN ? bytea_json(o->via.bin.ptr, o->via.bin.size) : NULL;
    }
    if (!strcmp(t, "uuid[]")) {
        json_t *a = json_array();
        if (nil || !a)
            return a;
        if (o->type != MSGPACK_OBJECT_ARRAY) {
            json_decref(a);
            return NULL;
        }
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            json_t *u = uuid_json(&o->via.array.ptr[i]);
            if (!u || json_array_append_new(a, u) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    if (!strcmp(t, "jsonb"))
        return nil ? json_object() : o->type == MSGPACK_OBJECT_MAP ? any_json(o, 0) : NULL;
    return NULL;
}

/* A record as a row of table t, with seq; -EINVAL (err says which column)
 * when it does not decode or a field does not convert. */
static int row_json(const pg_table_t *t, const void *rec, size_t len, uint64_t seq,
                    json_t *rows, char *err, size_t errlen)
{
    if (pv_msgpack_check(rec, len) < 0) {
        snprintf(err, errlen, "a %s record is not msgpack", t->kind);
        return -EINVAL;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = 0;
    if (msgpack_unpack_next(&u, rec, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "a %s record is not a msgpack map", t->kind);
        rc = -EINVAL;
        goto out;
    }
    json_t *row = json_object();
    for (int i = 0; row && i < t->n_cols; i++) {
        const pg_column_t *c = &t->cols[i];
        json_t *v = c->field ? col_json(c, map_get(&u.data, c->field))
                             : json_integer((json_int_t)seq);
        if (!v) {
            snprintf(err, errlen, "a %s record's field %s does not convert to %s %s", t->kind,
                     c->field, t->table, c->name);
            json_decref(row);
            row = NULL;
            rc = -EINVAL;
            break;
        }
        json_object_set_new(row, c->name, v);
    }
    if (row && json_array_append_new(rows, row) < 0)
        rc = -ENOMEM;
    else if (!row && rc == 0)
        rc = -ENOMEM;
out:
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* ---------------- statements, from the column table ---------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = b->oom ? 0 : vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (b->oom || n < 0)
            return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap : 256) * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static char *sb_take(sbuf_t *b)
{
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

/* The value a NOT NULL column added to a table with rows starts with (the
 * full load that follows a migration writes the real ones). */
static const char *col_default(const pg_column_t *c)
{
    static const struct { const char *type, *def; } defs[] = {
        {"uuid", "'00000000-0000-0000-0000-000000000000'"}, {"integer", "0"}, {"smallint", "0"},
        {"bigint", "0"}, {"text", "''"}, {"boolean", "false"}, {"double precision", "0"},
        {"timestamptz", "'epoch'"}, {"bytea", "'\\x'"}, {"uuid[]", "'{}'"}, {"jsonb", "'{}'"},
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(defs); i++)
        if (!strcmp(defs[i].type, c->type))
            return defs[i].def;
    return "NULL";
}

static char *copy_sql(const pg_table_t *t)
{
    sbuf_t b = {0};
    sb_add(&b, "COPY %s (", t->table);
    for (int i = 0; i < t->n_cols; i++)
        sb_add(&b, "%s%s", i ? ", " : "", t->cols[i].name);
    sb_add(&b, ") FROM STDIN");
    return sb_take(&b);
}

static char *upsert_sql(const pg_table_t *t, bool cond)
{
    sbuf_t b = {0};
    sb_add(&b, "INSERT INTO %s AS t (", t->table);
    for (int i = 0; i < t->n_cols; i++)
        sb_add(&b, "%s%s", i ? ", " : "", t->cols[i].name);
    sb_add(&b, ") SELECT ");
    for (int i = 0; i < t->n_cols; i++)
        sb_add(&b, "%s%s", i ? ", " : "", t->cols[i].name);
    sb_add(&b, " FROM jsonb_populate_recordset(NULL::%s, $1::jsonb) ON CONFLICT (id) DO UPDATE SET ",
           t->table);
    bool first = true;
    for (int i = 0; i < t->n_cols; i++) {
        if (!strcmp(t->cols[i].name, "id"))
            continue;
        sb_add(&b, "%s%s = EXCLUDED.%s", first ? "" : ", ", t->cols[i].name, t->cols[i].name);
        first = false;
    }
    if (cond)
        sb_add(&b, " WHERE EXCLUDED.seq > t.seq");
    return sb_take(&b);
}

static char *delete_sql(const pg_table_t *t)
{
    sbuf_t b = {0};
    sb_add(&b, "DELETE FROM %s AS t USING jsonb_to_recordset($1::jsonb) AS d(id uuid, seq bigint) "
           "WHERE t.id = d.id AND t.seq < d.seq", t->table);
    return sb_take(&b);
}

/* The whole shape, idempotent: run on a database without it, or with an
 * older one. Ends with pv_schema at this version and cursor 0 (a full load
 * follows). */
static char *migrate_sql(void)
{
    sbuf_t b = {0};
    for (int i = 0; i < N_TABLES; i++) {
        const pg_table_t *t = &pg_tables[i];
        sb_add(&b, "CREATE TABLE IF NOT EXISTS %s (id uuid PRIMARY KEY);\n", t->table);
        for (int j = 0; j < t->n_cols; j++) {
            const pg_column_t *c = &t->cols[j];
            if (!strcmp(c->name, "id"))
                continue;
            sb_add(&b, "ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s", t->table, c->name, c->type);
            if (!c->null)
                sb_add(&b, " NOT NULL DEFAULT %s", col_default(c));
            sb_add(&b, ";\n");
            if (c->unique)
                sb_add(&b, "CREATE UNIQUE INDEX IF NOT EXISTS %s_%s_key ON %s (%s);\n", t->table,
                       c->name, t->table, c->name);
            else if (c->index)
                sb_add(&b, "CREATE INDEX IF NOT EXISTS %s_%s_idx ON %s (%s);\n", t->table, c->name,
                       t->table, c->name);
        }
    }
    sb_add(&b, "INSERT INTO pv_schema (id, version, digest, cursor) VALUES (1, %d, '%s', 0) "
           "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, digest = EXCLUDED.digest, "
           "cursor = 0", PG_SCHEMA_VERSION, PG_SCHEMA_DIGEST);
    return sb_take(&b);
}

/* ---------------- the connection ---------------- */

static void steps_free(pg_t *r)
{
    for (int i = 0; i < r->n_steps; i++)
        free(r->steps[i].param);
    r->n_steps = r->next_step = 0;
}

static void load_close(pg_t *r)
{
    if (r->load_open)
        pv_txn_abort(&r->load_txn);
    r->load_open = false;
}

/* Drop the connection (the server rolls back what was open). */
static void drop(pg_t *r)
{
    if (r->sock)
        event_free(r->sock);
    r->sock = NULL;
    if (r->deadline)
        evtimer_del(r->deadline);
    PQclear(r->last);
    r->last = NULL;
    if (r->conn)
        PQfinish(r->conn);
    r->conn = NULL;
    r->connecting = r->ready = r->in_query = r->loaded = r->copying = false;
    free(r->copy_buf);
    r->copy_buf = NULL;
    r->qerr[0] = '\0';
}

static void on_sock(evutil_socket_t fd, short what, void *arg);
static void copy_pump(pg_t *r);

/* Watch the connection's socket for what (it may change while connecting). */
static int watch(pg_t *r, short what)
{
    int fd = PQsocket(r->conn);
    if (fd < 0)
        return -EBADF;
    if (r->sock && r->sock_fd == fd && r->sock_what == what)
        return 0;
    if (r->sock)
        event_free(r->sock);
    r->sock = event_new(pv_loop_base(r->loop), fd, what | EV_PERSIST, on_sock, r);
    r->sock_fd = fd;
    r->sock_what = what;
    if (!r->sock || event_add(r->sock, NULL) < 0)
        return -ENOMEM;
    return 0;
}

static void deadline_in(pg_t *r, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(r->deadline, &tv);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    pg_t *r = arg;
    fail(r, "%s took longer than %d s", r->connecting ? "connecting" : "a statement",
         STEP_TIMEOUT_MS / 1000);
    pass_failed(r);
}

static void send_flush(pg_t *r)
{
    int rc = PQflush(r->conn);
    if (rc < 0 || watch(r, rc == 1 ? EV_READ | EV_WRITE : EV_READ) < 0) {
        fail(r, "sending: %s", PQerrorMessage(r->conn));
        pass_failed(r);
    }
}

/* Send sql (one statement with param, or a script of several without);
 * done runs with the last result once every result is in and none is an
 * error; an error fails the pass. */
static void send_q(pg_t *r, const char *sql, const char *param, pg_done_fn done)
{
    int ok = param ? PQsendQueryParams(r->conn, sql, 1, NULL, &param, NULL, NULL, 0)
                   : PQsendQuery(r->conn, sql);
    if (!ok) {
        fail(r, "%s", PQerrorMessage(r->conn));
        pass_failed(r);
        return;
    }
    r->in_query = true;
    r->done = done;
    r->qerr[0] = '\0';
    deadline_in(r, STEP_TIMEOUT_MS);
    send_flush(r);
}

/* Take the results in; false when the pass failed (the connection is gone). */
static void results(pg_t *r)
{
    while (r->in_query && !PQisBusy(r->conn)) {
        PGresult *res = PQgetResult(r->conn);
        if (!res) {
            r->in_query = false;
            evtimer_del(r->deadline);
            watch(r, EV_READ);
            if (r->qerr[0]) {
                fail(r, "%s", r->qerr);
                pass_failed(r);
                return;
            }
            PGresult *last = r->last;
            r->last = NULL;
            r->done(r, last);
            PQclear(last);
            return;
        }
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_COPY_IN) { /* the full load's data goes now */
            PQclear(res);
            r->copying = true;
            copy_pump(r);
            return;
        }
        if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY) {
            PQclear(r->last);
            r->last = res;
        } else {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            if (!r->qerr[0])
                snprintf(r->qerr, sizeof(r->qerr), "%s%s%s%s", PQresultErrorMessage(res),
                         state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
            PQclear(res);
        }
    }
}

static void connected(pg_t *r);

static void connect_poll(pg_t *r, PostgresPollingStatusType s)
{
    int rc = 0;
    switch (s) {
    case PGRES_POLLING_READING: rc = watch(r, EV_READ); break;
    case PGRES_POLLING_WRITING: rc = watch(r, EV_WRITE); break;
    case PGRES_POLLING_OK: connected(r); return;
    default:
        fail(r, "connecting to %s: %s", r->t.st.where, PQerrorMessage(r->conn));
        pass_failed(r);
        return;
    }
    if (rc < 0) {
        fail(r, "connecting to %s: cannot watch the socket", r->t.st.where);
        pass_failed(r);
    }
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
    pg_t *r = arg;
    if (r->connecting) {
        connect_poll(r, PQconnectPoll(r->conn));
        return;
    }
    if (r->copying) {
        if ((what & EV_READ) && !PQconsumeInput(r->conn)) {
            fail(r, "the full load: %s", PQerrorMessage(r->conn));
            pass_failed(r);
            return;
        }
        copy_pump(r);
        return;
    }
    if (!r->in_query) { /* idle: the server may have closed it */
        if (!PQconsumeInput(r->conn) || PQstatus(r->conn) == CONNECTION_BAD) {
            pv_info("pg", "the connection to %s closed while idle", r->t.st.where);
            drop(r);
        }
        return;
    }
    if (what & EV_WRITE) {
        send_flush(r);
        if (!r->conn)
            return;
    }
    if ((what & EV_READ) && !PQconsumeInput(r->conn)) {
        fail(r, "%s", PQerrorMessage(r->conn));
        pass_failed(r);
        return;
    }
    results(r);
}

/* The DSN's host name, looked up on the work pool: libpq would call
 * getaddrinfo inside PQconnectPoll, on this loop. */
typedef struct resolve_job {
    pv_msg_t msg;           /* work pool: answered to the actor: resolved() */
    pg_t *r;
    char host[256];
    char hosts[1024];       /* out: host repeated, one a address */
    char addrs[1024];       /* out: the addresses, comma-separated */
    char err[128];          /* out */
} resolve_job_t;

static void resolve_work(pv_msg_t *msg)
{
    resolve_job_t *j = (resolve_job_t *)msg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(j->host, NULL, &hints, &ai);
    if (rc != 0) {
        snprintf(j->err, sizeof(j->err), "%s", gai_strerror(rc));
        msg->status = -EHOSTUNREACH;
        return;
    }
    size_t hl = 0, al = 0;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        const void *src = a->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                                                   : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
            !inet_ntop(a->ai_family, src, ip, sizeof(ip)) ||
            hl + strlen(j->host) + 2 > sizeof(j->hosts) || al + strlen(ip) + 2 > sizeof(j->addrs))
            continue;
        hl += (size_t)snprintf(j->hosts + hl, sizeof(j->hosts) - hl, "%s%s", hl ? "," : "", j->host);
        al += (size_t)snprintf(j->addrs + al, sizeof(j->addrs) - al, "%s%s", al ? "," : "", ip);
    }
    freeaddrinfo(ai);
    if (!al) {
        snprintf(j->err, sizeof(j->err), "no IPv4 or IPv6 address");
        msg->status = -EHOSTUNREACH;
    }
}

static void conn_go(pg_t *r, const char *hosts, const char *addrs)
{
    /* the DSN, then host and hostaddr lists that override its host: libpq
     * tries them in turn, and checks TLS against the name */
    const char *keys[] = {"dbname", "host", "hostaddr", NULL};
    const char *vals[] = {r->app->cfg.pg_dsn, hosts, addrs, NULL};
    if (!hosts)
        keys[1] = NULL;
    r->conn = PQconnectStartParams(keys, vals, 1);
    if (!r->conn || PQstatus(r->conn) == CONNECTION_BAD) {
        fail(r, "connecting to %s: %s", r->t.st.where, r->conn ? PQerrorMessage(r->conn) : "out of memory");
        pass_failed(r);
        return;
    }
    r->connecting = true;
    deadline_in(r, STEP_TIMEOUT_MS);
    connect_poll(r, PGRES_POLLING_WRITING); /* as libpq says to start */
}

static void resolved(pv_msg_t *msg)
{
    resolve_job_t *j = (resolve_job_t *)msg;
    pg_t *r = j->r;
    if (r->t.stopping) {
        pv_msg_free(msg);
        return;
    }
    if (msg->status < 0) {
        fail(r, "cannot look up %s: %s", j->host, j->err);
        pv_msg_free(msg);
        pass_failed(r);
        return;
    }
    conn_go(r, j->hosts, j->addrs);
    pv_msg_free(msg);
}

static void conn_start(pg_t *r)
{
    pv_target_state(&r->t, "connecting");
    if (!r->resolve_host[0]) {
        conn_go(r, NULL, NULL);
        return;
    }
    resolve_job_t *j = pv_msg_new(sizeof(*j), 0);
    if (!j) {
        fail(r, "out of memory");
        pass_failed(r);
        return;
    }
    j->r = r;
    snprintf(j->host, sizeof(j->host), "%s", r->resolve_host);
    pv_msg_expect(&j->msg, r->self, resolved);
    int rc = pv_pool_submit(r->app->work, resolve_work, &j->msg);
    if (rc < 0) {
        pv_msg_free(&j->msg);
        fail(r, "cannot look up %s: %s", r->resolve_host, strerror(-rc));
        pass_failed(r);
    }
}

/* ---------------- the schema ---------------- */

static void migrated(pg_t *r, PGresult *res)
{
    (void)res;
    pv_info("pg", "the tables in %s are at schema version %d", r->t.st.where, PG_SCHEMA_VERSION);
    r->cursor = 0;
    r->ready = true;
    r->t.refused = false;
    pass_go(r);
}

static void schema_read(pg_t *r, PGresult *res)
{
    if (!res || PQntuples(res) == 0) {
        pv_info("pg", "creating the tables in %s", r->t.st.where);
        send_q(r, r->migrate_sql, NULL, migrated);
        return;
    }
    int version = atoi(PQgetvalue(res, 0, 0));
    const char *digest = PQgetvalue(res, 0, 1);
    unsigned long long cursor = strtoull(PQgetvalue(res, 0, 2), NULL, 10);
    if (!strcmp(digest, PG_SCHEMA_DIGEST)) {
        r->cursor = cursor;
        r->ready = true;
        r->t.refused = false;
        pass_go(r);
        return;
    }
    if (version > PG_SCHEMA_VERSION) {
        snprintf(r->t.st.last_error, sizeof(r->t.st.last_error),
                 "the tables in %.150s are at schema version %d, newer than this pvd's %d: "
                 "not touching them", r->t.st.where, version, PG_SCHEMA_VERSION);
        r->t.st.last_error_ms = pv_now_ms();
        if (!r->t.refused)
            pv_error("pg", "%s", r->t.st.last_error);
        r->t.refused = true;
        drop(r);
        r->t.busy = false;
        pv_target_state(&r->t, "refused");
        pv_target_later(&r->t, REFUSED_RETRY_MS);
        return;
    }
    pv_info("pg", "migrating the tables in %s from schema version %d to %d", r->t.st.where, version,
            PG_SCHEMA_VERSION);
    send_q(r, r->migrate_sql, NULL, migrated);
}

/* The server's notices ("already exists, skipping"): libpq would print
 * them on stderr, where every line must be a log record. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    size_t n = strlen(message);
    pv_debug("pg", "%.*s", (int)(n && message[n - 1] == '\n' ? n - 1 : n), message);
}

static void connected(pg_t *r)
{
    r->connecting = false;
    PQsetNoticeProcessor(r->conn, on_notice, NULL);
    evtimer_del(r->deadline);
    if (PQsetnonblocking(r->conn, 1) < 0) {
        fail(r, "%s", PQerrorMessage(r->conn));
        pass_failed(r);
        return;
    }
    send_q(r, "CREATE TABLE IF NOT EXISTS pv_schema (id integer PRIMARY KEY CHECK (id = 1), "
              "version integer NOT NULL, digest text NOT NULL, cursor bigint NOT NULL);\n"
              "SELECT version, digest, cursor FROM pv_schema WHERE id = 1",
           NULL, schema_read);
}

/* ---------------- the end of a pass ---------------- */

static void pass_failed(pg_t *r)
{
    if (r->t.stopping)
        return;
    drop(r);
    steps_free(r);
    load_close(r);
    r->t.busy = false;
    r->failed = false;
    r->failing = true;
    pv_target_failed(&r->t, r->cursor);
}

static int cursor_apply(pv_txn_t *txn, void *arg)
{
    cursor_req_t *c = arg;
    return pv_target_put_cursor(txn, PV_REPL_PG_CURSOR, c->cursor);
}

/* The pass is in the database; its cursor now in META: the next one. */
static void cursor_stored(pv_msg_t *msg)
{
    cursor_req_t *c = (cursor_req_t *)msg;
    pg_t *r = c->r;
    int rc = msg->status;
    pv_msg_free(msg);
    if (r->t.stopping)
        return;
    if (rc < 0) {
        fail(r, "cannot store the replication cursor: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    if (r->failing)
        pv_info("pg", "PostgreSQL replication works again (cursor %" PRIu64 ")", r->cursor);
    r->failing = false;
    r->t.failures_in_row = 0;
    r->t.st.next_retry_ms = 0;
    r->t.busy = false;
    pv_target_refresh_lag(&r->t, r->cursor);
    if (r->t.paused) {
        pv_target_state(&r->t, "paused");
        return;
    }
    bool behind = r->t.st.head > r->cursor;
    pv_target_state(&r->t, behind ? "sending" : "idle");
    pv_target_later(&r->t, behind ? 0 : (int64_t)r->app->cfg.sync_interval * 1000);
}

static void store_cursor(pg_t *r)
{
    cursor_req_t *c = pv_msg_new(sizeof(*c), 0);
    if (!c) {
        fail(r, "out of memory");
        pass_failed(r);
        return;
    }
    c->r = r;
    c->cursor = r->cursor;
    c->sreq.apply = cursor_apply;
    c->sreq.arg = c;
    pv_msg_expect(&c->sreq.msg, r->self, cursor_stored);
    pv_store_submit(r->app->store, &c->sreq);
}

/* ---------------- the full load ---------------- */

/* A text-format COPY field (PostgreSQL's "COPY ... FROM STDIN" text
 * format): backslash, tab, newline and CR escaped; NULL is \N. */
static void copy_text(sbuf_t *b, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = s[i] == '\\' ? "\\\\" : s[i] == '\t' ? "\\t" : s[i] == '\n' ? "\\n"
                        : s[i] == '\r' ? "\\r" : NULL;
        if (!esc)
            continue;
        sb_add(b, "%.*s%s", (int)(i - run), s + run, esc);
        run = i + 1;
    }
    sb_add(b, "%.*s", (int)(n - run), s + run);
}

/* A row (as row_json made it) as one COPY line, in the table's column
 * order: the same values the upserts send, in COPY's text forms. */
static void copy_line(sbuf_t *b, const pg_table_t *t, json_t *row)
{
    for (int i = 0; i < t->n_cols; i++) {
        json_t *v = json_object_get(row, t->cols[i].name);
        if (i)
            sb_add(b, "\t");
        if (!v || json_is_null(v)) {
            sb_add(b, "\\N");
        } else if (json_is_string(v)) {
            copy_text(b, json_string_value(v), json_string_length(v));
        } else if (json_is_integer(v)) {
            sb_add(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        } else if (json_is_real(v)) {
            sb_add(b, "%.17g", json_real_value(v));
        } else if (json_is_boolean(v)) {
            sb_add(b, "%s", json_is_true(v) ? "t" : "f");
        } else if (json_is_array(v)) { /* uuid[]: uuids need no quotes */
            sb_add(b, "{");
            for (size_t j = 0; j < json_array_size(v); j++)
                sb_add(b, "%s%s", j ? "," : "", json_string_value(json_array_get(v, j)));
            sb_add(b, "}");
        } else { /* jsonb */
            char *j = json_dumps(v, JSON_COMPACT);
            if (!j)
                b->oom = true;
            else
                copy_text(b, j, strlen(j));
            free(j);
        }
    }
    sb_add(b, "\n");
}

typedef struct load_page {
    pg_t *r;
    const pg_table_t *t;
    sbuf_t lines;
    size_t n;
    int rc;
    char err[300];
} load_page_t;

static int load_one(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    load_page_t *lp = arg;
    pg_t *r = lp->r;
    json_t *rows = json_array();
    lp->rc = rows ? row_json(lp->t, val->data, val->len, r->pass_last, rows, lp->err,
                             sizeof(lp->err))
                  : -ENOMEM;
    if (lp->rc == 0)
        copy_line(&lp->lines, lp->t, json_array_get(rows, 0));
    json_decref(rows);
    if (lp->rc == 0 && lp->lines.oom)
        lp->rc = -ENOMEM;
    if (lp->rc < 0)
        return lp->rc;
    if (key->len > sizeof(r->load_after))
        return lp->rc = -EINVAL;
    memcpy(r->load_after, key->data, key->len);
    r->load_after_len = key->len;
    return ++lp->n >= LOAD_PAGE ? 1 : 0;
}

static void load_next(pg_t *r, PGresult *res);

static void load_done(pg_t *r, PGresult *res)
{
    (void)res;
    load_close(r);
    r->cursor = r->pass_last;
    r->t.st.records += r->load_rows;
    r->loaded = true;
    pv_metrics_add(r->app->metrics, PV_M_SYNC_PG_ROWS, (long long)r->load_rows);
    pv_info("pg", "loaded %" PRIu64 " rows into %s in %.2f s (change %" PRIu64 ")", r->load_rows,
            r->t.st.where, (double)(pv_now_ms() - r->load_started_ms) / 1000.0, r->cursor);
    store_cursor(r);
}

/* The COPY of the table being loaded is open: feed it a page at a time,
 * the next only once libpq has sent the last (memory stays one page),
 * then end it; its result comes back through results(). */
static void copy_pump(pg_t *r)
{
    for (;;) {
        if (r->copy_buf) {
            int rc = PQputCopyData(r->conn, r->copy_buf, (int)r->copy_len);
            if (rc == 0) /* libpq's buffer is full: when the socket takes more */
                goto wait;
            if (rc < 0)
                goto broken;
            free(r->copy_buf);
            r->copy_buf = NULL;
        }
        if (r->copy_last && !r->copy_ended) {
            int rc = PQputCopyEnd(r->conn, NULL);
            if (rc == 0)
                goto wait;
            if (rc < 0)
                goto broken;
            r->copy_ended = true;
        }
        int f = PQflush(r->conn);
        if (f < 0)
            goto broken;
        if (f == 1)
            goto wait;
        if (r->copy_ended) {
            r->copying = false;
            if (watch(r, EV_READ) < 0)
                goto broken;
            results(r);
            return;
        }
        const pg_table_t *t = &pg_tables[r->load_table];
        load_page_t lp = {.r = r, .t = t};
        int rc = pv_txn_scan(&r->load_txn, t->db, NULL, 0, r->load_after_len ? r->load_after : NULL,
                             r->load_after_len, false, load_one, &lp);
        if (rc == 0 && lp.rc < 0)
            rc = lp.rc;
        if (rc < 0) {
            free(sb_take(&lp.lines));
            fail(r, "the full load: %s", lp.err[0] ? lp.err : strerror(-rc));
            pass_failed(r);
            return;
        }
        r->load_rows += lp.n;
        deadline_in(r, STEP_TIMEOUT_MS); /* a page went: the deadline is per page */
        r->copy_buf = sb_take(&lp.lines); /* NULL: an empty page */
        r->copy_len = lp.lines.len;
        r->copy_last = lp.n < LOAD_PAGE;
    }
wait:
    if (watch(r, EV_READ | EV_WRITE) < 0)
        goto broken;
    return;
broken:
    fail(r, "the full load: COPY: %s", PQerrorMessage(r->conn));
    pass_failed(r);
}

/* The next table's COPY, or the end: the cursor and the COMMIT. */
static void load_next(pg_t *r, PGresult *res)
{
    (void)res;
    if (++r->load_table < N_TABLES) {
        r->copy_last = r->copy_ended = false;
        r->load_after_len = 0;
        send_q(r, r->stmts[r->load_table].copy, NULL, load_next);
        return;
    }
    steps_free(r);
    char sql[128];
    snprintf(sql, sizeof(sql), "UPDATE pv_schema SET cursor = %" PRIu64 " WHERE id = 1; COMMIT",
             r->pass_last);
    send_q(r, sql, NULL, load_done);
}

static void load_start(pg_t *r)
{
    int rc = pv_txn_begin(r->app->store, &r->load_txn, false);
    pv_val_t v;
    if (rc == 0) {
        r->load_open = true;
        rc = pv_txn_get(&r->load_txn, PV_DB_META, "seq", 3, &v);
        r->pass_last = rc == 0 && v.len == 8 ? pv_be64_get(v.data) : 0;
        if (rc == -ENOENT)
            rc = 0;
    }
    if (rc < 0) {
        fail(r, "the full load: cannot read the store: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    pv_info("pg", "loading every user, photo and video into %s (the store at change %" PRIu64 ")",
            r->t.st.where, r->pass_last);
    pv_target_state(&r->t, "loading");
    r->load_table = -1;
    r->load_after_len = 0;
    r->load_rows = 0;
    r->load_started_ms = pv_now_ms();
    sbuf_t b = {0};
    sb_add(&b, "BEGIN");
    for (int i = 0; i < N_TABLES; i++)
        sb_add(&b, "; DELETE FROM %s", pg_tables[i].table);
    steps_free(r);
    r->steps[0].param = sb_take(&b); /* owned here: freed with the steps */
    r->n_steps = 1;
    if (!r->steps[0].param) {
        fail(r, "out of memory");
        pass_failed(r);
        return;
    }
    send_q(r, r->steps[0].param, NULL, load_next);
}

/* ---------------- a pass of the log ---------------- */

typedef struct entry {
    int table;              /* index in pg_tables */
    uint8_t id[16];
    uint64_t seq;
    bool del;
    const void *rec;        /* in the read txn */
    size_t len;
} entry_t;

typedef struct collect {
    entry_t *e;
    size_t n, cap;
    uint64_t last;
    int rc;
} collect_t;

static int collect_one(void *arg, const pv_change_t *c)
{
    collect_t *cc = arg;
    cc->last = c->seq;
    int t = 0;
    while (t < N_TABLES && strcmp(pg_tables[t].kind, c->kind) != 0)
        t++;
    if (t == N_TABLES)
        return 0; /* not a kind with a table */
    if (c->key.len != (size_t)pg_tables[t].id_off + 16) {
        cc->rc = -EINVAL;
        return -EINVAL;
    }
    if (cc->n == cc->cap) {
        size_t cap = cc->cap ? cc->cap * 2 : 256;
        entry_t *p = realloc(cc->e, cap * sizeof(*p));
        if (!p)
            return cc->rc = -ENOMEM;
        cc->e = p;
        cc->cap = cap;
    }
    entry_t *e = &cc->e[cc->n++];
    e->table = t;
    memcpy(e->id, (const uint8_t *)c->key.data + pg_tables[t].id_off, 16);
    e->seq = c->seq;
    e->del = c->del;
    e->rec = c->record.data;
    e->len = c->record.len;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    if (x->table != y->table)
        return x->table < y->table ? -1 : 1;
    int c = memcmp(x->id, y->id, 16);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The entries as statements: per table, the deletes, then the upserts of
 * each row's last change. */
static int build_steps(pg_t *r, collect_t *cc, char *err, size_t errlen)
{
    qsort(cc->e, cc->n, sizeof(entry_t), entry_cmp);
    json_t *dels[N_TABLES] = {0}, *puts[N_TABLES] = {0};
    int rc = 0;
    r->pass_rows = 0;
    for (size_t i = 0; i < cc->n && rc == 0; i++) {
        const entry_t *e = &cc->e[i];
        if (i + 1 < cc->n && cc->e[i + 1].table == e->table && !memcmp(cc->e[i + 1].id, e->id, 16))
            continue; /* a later change of the same row follows */
        const pg_table_t *t = &pg_tables[e->table];
        json_t **arr = e->del ? &dels[e->table] : &puts[e->table];
        if (!*arr && !(*arr = json_array())) {
            rc = -ENOMEM;
            break;
        }
        r->pass_rows++;
        if (e->del) {
            char id[37];
            uuid_text(e->id, id);
            if (json_array_append_new(*arr, json_pack("{s:s,s:I}", "id", id, "seq",
                                                      (json_int_t)e->seq)) < 0)
                rc = -ENOMEM;
        } else {
            rc = row_json(t, e->rec, e->len, e->seq, *arr, err, errlen);
        }
    }
    r->n_steps = 0;
    r->steps[r->n_steps++] = (pg_step_t){"BEGIN", NULL};
    for (int pass_no = 0; pass_no < 2; pass_no++)
        for (int t = 0; t < N_TABLES; t++) {
            json_t *a = pass_no ? puts[t] : dels[t];
            if (!a)
                continue;
            char *p = rc == 0 ? json_dumps(a, JSON_COMPACT) : NULL;
            if (rc == 0 && !p)
                rc = -ENOMEM;
            if (p)
                r->steps[r->n_steps++] = (pg_step_t){pass_no ? r->stmts[t].upsert : r->stmts[t].del, p};
        }
    for (int t = 0; t < N_TABLES; t++) {
        json_decref(dels[t]);
        json_decref(puts[t]);
    }
    return rc;
}

static void step_next(pg_t *r, PGresult *res);

static void batch_done(pg_t *r, PGresult *res)
{
    (void)res;
    steps_free(r);
    r->cursor = r->pass_last;
    r->t.st.records += r->pass_rows;
    pv_metrics_add(r->app->metrics, PV_M_SYNC_PG_ROWS, (long long)r->pass_rows);
    store_cursor(r);
}

static void step_next(pg_t *r, PGresult *res)
{
    (void)res;
    if (r->next_step < r->n_steps) {
        pg_step_t *s = &r->steps[r->next_step++];
        send_q(r, s->sql, s->param, step_next);
        return;
    }
    char sql[128];
    snprintf(sql, sizeof(sql), "UPDATE pv_schema SET cursor = %" PRIu64 " WHERE id = 1; COMMIT",
             r->pass_last);
    r->next_step = r->n_steps + 1;
    send_q(r, sql, NULL, batch_done);
}

/* Whether the log reaches the database's cursor: else a full load. */
static bool log_reaches(pg_t *r, uint64_t head)
{
    if (r->cursor == 0 && !r->loaded)
        return false; /* never loaded: the log may not go back to the start */
    if (r->cursor > head)
        return false; /* the database is ahead of this store */
    if (r->cursor == head)
        return true;
    pv_txn_t txn;
    pv_change_t c = {0};
    if (pv_txn_begin(r->app->store, &txn, false) < 0)
        return true; /* found out by the pass's own read */
    pv_changes_read(&txn, r->cursor, 1, first_entry, &c);
    pv_txn_abort(&txn);
    return c.seq == r->cursor + 1;
}

static void pass_go(pg_t *r)
{
    pv_target_refresh_lag(&r->t, r->cursor);
    if (!log_reaches(r, r->t.st.head)) {
        load_start(r);
        return;
    }
    collect_t cc = {0};
    pv_txn_t txn;
    char err[300] = "";
    int rc = pv_txn_begin(r->app->store, &txn, false);
    if (rc == 0) {
        rc = pv_changes_read(&txn, r->cursor, (size_t)r->app->cfg.sync_batch, collect_one, &cc);
        if (rc == 0)
            rc = cc.rc;
        if (rc == 0 && cc.last)
            rc = build_steps(r, &cc, err, sizeof(err));
        pv_txn_abort(&txn);
    }
    free(cc.e);
    if (rc < 0) {
        steps_free(r);
        fail(r, "reading the change log: %s", err[0] ? err : strerror(-rc));
        pass_failed(r);
        return;
    }
    if (!cc.last) { /* caught up */
        r->t.busy = false;
        r->t.failures_in_row = 0;
        pv_target_state(&r->t, "idle");
        pv_target_later(&r->t, (int64_t)r->app->cfg.sync_interval * 1000);
        return;
    }
    r->pass_last = cc.last;
    pv_target_state(&r->t, "sending");
    r->next_step = 0;
    step_next(r, NULL);
}

static void pass(pg_t *r)
{
    if (r->t.busy || r->t.paused || r->t.stopping)
        return;
    r->t.busy = true;
    r->t.st.next_retry_ms = 0;
    r->failed = false;
    if (!r->conn)
        conn_start(r);
    else if (!r->ready)
        connected(r);
    else
        pass_go(r);
}

/* ---------------- messages ---------------- */

static void on_init(pv_actor_t *self, pv_msg_t *msg)
{
    pg_t *r = pv_actor_state(self);
    pv_msg_free(msg);
    r->t.timer = evtimer_new(pv_loop_base(r->loop), on_timer, r);
    r->deadline = evtimer_new(pv_loop_base(r->loop), on_deadline, r);
    if (!r->t.timer || !r->deadline) {
        pv_error("pg", "PostgreSQL replication cannot start: out of memory");
        pv_target_state(&r->t, "refused");
        return;
    }
    pv_info("pg", "replicating to %s", r->t.st.where);
    pass(r);
}

static void on_stop(pv_actor_t *self, pv_msg_t *msg)
{
    pg_t *r = pv_actor_state(self);
    pv_msg_free(msg);
    r->t.stopping = true;
    if (r->t.timer)
        evtimer_del(r->t.timer);
    drop(r);
    load_close(r);
    pv_loop_stop(r->loop);
}

static void on_ctl(pv_actor_t *self, pv_msg_t *msg)
{
    pg_t *r = pv_actor_state(self);
    pv_target_ctl(&r->t, msg, r->cursor, r->t.timer);
}

static const pv_actor_fn pg_on[PG_MSG_COUNT] = {
    [PV_REPL_CTL] = on_ctl,
    [PG_INIT] = on_init,
    [PG_STOP] = on_stop,
};
static const pv_actor_def_t pg_def = {"pg", pg_on, PG_MSG_COUNT};

/* ---------------- start, stop ---------------- */

static int pg_parse(const char *dsn, char *out, size_t outlen, char *resolve, size_t rlen);

/* The host name to look up before a connect ("" none): one name, not an
 * address (libpq parses those without a lookup), not a socket directory,
 * no hostaddr. */
static void resolve_target(const char *host, const char *hostaddr, char *out, size_t outlen)
{
    unsigned char buf[sizeof(struct in6_addr)];
    out[0] = '\0';
    if (!host || !host[0] || hostaddr || host[0] == '/' || host[0] == '@' || strchr(host, ',') ||
        inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1 ||
        strlen(host) >= outlen)
        return;
    snprintf(out, outlen, "%s", host);
}

int pv_pg_where(const char *dsn, char *out, size_t outlen)
{
    return pg_parse(dsn, out, outlen, NULL, 0);
}

/* where (and the host to look up) from a DSN. */
static int pg_parse(const char *dsn, char *out, size_t outlen, char *resolve, size_t rlen)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &msg);
    if (!opts) {
        snprintf(out, outlen, "%s", msg ? msg : "out of memory");
        for (char *p = out; *p; p++)
            if (*p == '\n')
                *p = p[1] ? ' ' : '\0';
        PQfreemem(msg);
        return msg ? -EINVAL : -ENOMEM;
    }
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !o->val[0])
            continue;
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "hostaddr"))
            hostaddr = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
        else if (!strcmp(o->keyword, "dbname"))
            db = o->val;
        else if (!strcmp(o->keyword, "user"))
            user = o->val;
    }
    snprintf(out, outlen, "pg://%s%s%s/%s", host ? host : hostaddr ? hostaddr : "localhost",
             port ? ":" : "", port ? port : "", db ? db : user ? user : "");
    if (resolve)
        resolve_target(host, hostaddr, resolve, rlen);
    PQconninfoFree(opts);
    return 0;
}

static void pg_free_state(pg_t *r)
{
    for (int i = 0; i < N_TABLES; i++) {
        free(r->stmts[i].upsert);
        free(r->stmts[i].copy);
        free(r->stmts[i].del);
    }
    free(r->migrate_sql);
    free(r);
}

int pv_pg_start(pv_app_t *app, char *err, size_t errlen)
{
    if (!app->cfg.pg_dsn[0])
        return 0;
    pg_t *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->app = app;
    r->t.app = app;
    r->t.log = "pg";
    r->t.what = "PostgreSQL replication";
    r->t.m_cursor = PV_M_SYNC_PG_CURSOR;
    r->t.m_lag_entries = PV_M_SYNC_PG_LAG_ENTRIES;
    r->t.m_lag_seconds = PV_M_SYNC_PG_LAG_SECONDS;
    r->t.m_failures = PV_M_SYNC_PG_FAILURES;
    snprintf(r->t.st.target, sizeof(r->t.st.target), "pg");
    int rc = pg_parse(app->cfg.pg_dsn, r->t.st.where, sizeof(r->t.st.where), r->resolve_host,
                      sizeof(r->resolve_host));
    if (rc < 0) {
        snprintf(err, errlen, "pg_dsn: %s", r->t.st.where);
        free(r);
        return rc;
    }
    pv_target_state(&r->t, "idle");
    bool oom = !(r->migrate_sql = migrate_sql());
    for (int i = 0; i < N_TABLES; i++) {
        r->stmts[i].upsert = upsert_sql(&pg_tables[i], true);
        r->stmts[i].copy = copy_sql(&pg_tables[i]);
        r->stmts[i].del = delete_sql(&pg_tables[i]);
        oom |= !r->stmts[i].upsert || !r->stmts[i].copy || !r->stmts[i].del;
    }
    r->loop = oom ? NULL : pv_loop_new("pg");
    r->self = r->loop ? pv_actor_new(r->loop, &pg_def, r) : NULL;
    pv_msg_t *init = r->self ? pv_msg_new(sizeof(*init), PG_INIT) : NULL;
    if (!init) {
        if (r->self)
            pv_actor_free(r->self);
        pv_loop_free(r->loop);
        pg_free_state(r);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = pv_sync_add_target(app, "pg", PV_REPL_PG_CURSOR, r->self);
    if (rc < 0) {
        snprintf(err, errlen, "too many replication targets");
        pv_msg_free(init);
        pv_actor_free(r->self);
        pv_loop_free(r->loop);
        pg_free_state(r);
        return rc;
    }
    pv_actor_send(r->self, init);
    rc = pv_loop_start(r->loop);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start the pg loop: %s", strerror(-rc));
        return rc; /* pv_pg_free frees the rest */
    }
    return 0;
}

static pv_actor_t *pg_actor(pv_app_t *app)
{
    const struct pv_target *t = pv_sync_target(app, "pg");
    return t ? t->actor : NULL;
}

void pv_pg_stop(pv_app_t *app)
{
    pv_actor_t *a = pg_actor(app);
    if (!a)
        return;
    pg_t *r = pv_actor_state(a);
    pv_target_stop(&r->t, a, r->loop, PG_STOP);
}

void pv_pg_free(pv_app_t *app)
{
    pv_actor_t *a = pg_actor(app);
    if (!a)
        return;
    pg_t *r = pv_actor_state(a);
    pv_actor_free(a); /* pending messages: a cursor write's answer */
    if (r->t.timer)
        event_free(r->t.timer);
    drop(r);
    if (r->deadline)
        event_free(r->deadline);
    steps_free(r);
    load_close(r);
    pv_loop_free(r->loop);
    pg_free_state(r);
}
