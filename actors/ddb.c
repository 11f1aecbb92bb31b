/*
 * ddb.c — the DynamoDB replicator: every video's status mirrored into
 * dynamodb_table (records.json's "dynamodb" shape: pv_video_status, keyed
 * by user_id and video_id), on its own loop ("ddb") so that a slow or
 * absent DynamoDB touches neither a request nor the S3 target.
 *
 * The store stays the primary; the table follows its change log. The
 * cursor (META PV_REPL_DDB_CURSOR) is the last entry whose effect is in
 * the table; the log is kept above it (actors/sync.c).
 *
 * Every write is idempotent and ordered by the change log's sequence: an
 * item carries "seq" (the entry that made it), and PutItem and DeleteItem
 * carry the condition `attribute_not_exists(seq) OR seq < :seq`. A write
 * whose condition fails was overtaken by a newer one and counts as done.
 * So a batch sent again (DynamoDB down, pvd killed) cannot take an item
 * back to an older state, and delivery at least once has the effect of
 * exactly once. BatchWriteItem takes no conditions, so it is used only
 * where no newer item can exist: the full load into a table this pvd has
 * just created (UnprocessedItems are sent again, with backoff).
 *
 * A pass:
 *   0. credentials (the environment, aws_profile's shared files, the
 *      instance role), then the table: DescribeTable; missing and
 *      dynamodb_create: CreateTable (PAY_PER_REQUEST, the keys of
 *      records.json), then DescribeTable until ACTIVE. A table whose key
 *      schema is not (user_id HASH, video_id RANGE) is refused.
 *   1. no cursor yet, the log trimmed past it (the target was off while
 *      pvd trimmed), or the table just made: a full load. In one LMDB read
 *      transaction at head H, the keys of every video. If the table held
 *      items already, a Scan (a page at a time) deletes those not in the
 *      store; an item with seq > H means another appliance (or this one
 *      before a restore to an earlier point) writes there, and the target
 *      refuses, as S3's does. Then every video is put with seq = H, a page
 *      of keys at a time, each read in a short transaction of its own: a
 *      video changed after H then carries newer content under seq H, and
 *      the log after H, applied next, brings it to the same end; one
 *      deleted after H is skipped (its delete is in the log). Cursor = H.
 *   2. otherwise up to sync_batch entries after the cursor. Only "video"
 *      entries matter; within the batch only the last entry of each video
 *      is sent (coalesced), so a render's progress reaches DynamoDB at
 *      most once per video per pass. Up to DDB_IN_FLIGHT requests at once;
 *      when all are done the cursor moves to the batch's last entry.
 *      A delete's key is the videos database's key, user_id(16) |
 *      video_id(16): both halves of the item's key, with no lookup.
 * Caught up (a batch shorter than sync_batch), the next pass is
 * sync_interval later; so with the store writing a running render's
 * progress every 10 %, DynamoDB gets at most one write per video per
 * sync_interval (default 10 s). Behind, the next pass starts at once.
 *
 * Throttling (ProvisionedThroughputExceededException, ThrottlingException,
 * RequestLimitExceeded) and 5xx answers: that request goes back in the
 * queue and sending stops for a backoff (50 ms doubling to 5 s, jittered);
 * after DDB_TRIES of them in a row the pass fails. A failed pass (no
 * answer, refused keys, a bad request) waits 1 s doubling to 5 minutes
 * with jitter and starts again from the cursor. Errors name DynamoDB's
 * error type and message, never a key.
 *
 * The item's attributes come from schema/records.json at build time
 * (tools/gen_ddb.py writes build/gen/ddb_schema.h): no hand-kept copy.
 */
#include "actors/ddb.h"
#include "actors/replicate.h"
#include "actors/target.h"
#include "actors/sync.h"
#include "app/metrics.h"
#include "base/crypto.h"
#include "base/records.h"
#include "cloud/ddb.h"
#include "cloud/credchain.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the item shape, generated ---- */

enum pv_ddb_kind {
    PV_DDB_ID,
    PV_DDB_ENUM,
    PV_DDB_STR,
    PV_DDB_TIME,
    PV_DDB_F64,
    PV_DDB_U32,
    PV_DDB_U64
};

typedef struct pv_ddb_attr {
    const char *name;  /* the attribute */
    const char *type;  /* DynamoDB's: "S", "N" */
    int kind;          /* enum pv_ddb_kind: the record field's type */
    size_t off;        /* the field in pv_video_t */
    bool absent_empty; /* left out when "" or not set */
} pv_ddb_attr_t;

#include "build/gen/ddb_schema.h"

#define DDB_IN_FLIGHT     16  /* requests on the wire at once */
#define DDB_BATCH_ITEMS   25  /* BatchWriteItem's limit */
#define DDB_LOAD_PAGE     400 /* keys a full-load page reads */
#define DDB_TRIES         10  /* throttled answers in a row before the pass fails */
#define THROTTLE_FIRST_MS 50
#define THROTTLE_MAX_MS   5000
#define DESCRIBE_POLL_MS  250 /* a table being made: look again */
#define COND_EXPR         "attribute_not_exists(#q) OR #q < :q"

enum {
    DDB_INIT = PV_REPL_PUBLIC_COUNT, /* first message on the loop */
    DDB_STOP,                        /* cancel everything, stop the loop */
    DDB_MSG_COUNT
};

enum op_state { OP_TODO, OP_SENT, OP_DONE };

typedef struct ddb_repl repl_t;

/* One request of the phase under way. */
typedef struct op {
    repl_t *r;
    const char *api; /* "PutItem", "DeleteItem", "BatchWriteItem" */
    char *body;      /* its JSON */
    int items;       /* items it writes */
    int items_sent;  /* items in the body as last sent */
    int tries;       /* throttled answers so far */
    int state;       /* enum op_state */
} op_t;

/* A change-log entry of a batch, before coalescing. */
typedef struct entry {
    uint8_t key[32]; /* user_id | video_id */
    uint64_t seq;
    char *body; /* the PutItem or DeleteItem JSON */
    bool del;
} entry_t;

typedef struct cursor_req {
    pv_store_req_t sreq; /* answered to the actor: cursor_stored() */
    repl_t *r;
    uint64_t cursor;
} cursor_req_t;

struct ddb_repl {
    pv_app_t *app;
    pv_actor_t *self;
    pv_loop_t *loop;
    struct event *pump;  /* sending again after a throttle backoff */
    pv_curlev_t *http;
    pv_ddb_t *ddb;
    pv_credchain_t *cc;     /* credentials, fresh before they expire */
    char region[32];
    char table[256];
    bool failed;
    bool table_ready; /* DescribeTable said ACTIVE with our keys */
    bool loading;     /* a full load is under way */
    bool created;     /* this pvd made the table: load it whole */
    bool have_cursor;
    uint64_t cursor;
    /* the phase under way: requests, and what follows once all are done */
    op_t *ops;
    size_t n_ops, next_op, ops_left;
    int in_flight;
    int throttle_row; /* throttled answers in a row */
    void (*after_ops)(repl_t *r);
    uint64_t batch_last; /* log pass: the cursor after it */
    bool batch_full;     /* log pass: sync_batch entries: more follow at once */
    /* a full load */
    uint64_t load_head;  /* H */
    uint8_t (*keys)[32]; /* the videos at H, in key order */
    size_t n_keys, load_next;
    json_t *scan_from; /* Scan's ExclusiveStartKey, NULL: the first page */
    bool scan_done;
    pv_target_core_t t;  /* status, timer, pause, backoff (actors/target.h) */
};

static void pass(repl_t *r);
static void pass_go(repl_t *r);
static void pump(repl_t *r);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pass(arg);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

/* ---------------- items ---------------- */

/* A number as DynamoDB's N text: the shortest of %.15g / %.17g that
 * reads back the same double. */
static void put_double(pv_sb_t *sb, double d)
{
    char buf[40];
    if (!isfinite(d))
        d = 0;
    snprintf(buf, sizeof(buf), "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, sizeof(buf), "%.17g", d);
    pv_sb_puts(sb, buf);
}

/* One attribute's value ({"S": ...} / {"N": ...}), or nothing (false)
 * when it is left out. */
static bool put_attr(pv_sb_t *sb, const pv_ddb_attr_t *a, const pv_video_t *v)
{
    const char *p = (const char *)v + a->off;
    char text[64];
    switch (a->kind) {
    case PV_DDB_ID:
        pv_id_encode((const uint8_t *)p, text);
        break;
    case PV_DDB_ENUM:
        snprintf(text, sizeof(text), "%s", pv_video_status_name(*(const int *)p));
        break;
    case PV_DDB_STR:
        if (a->absent_empty && !p[0])
            return false;
        break;
    case PV_DDB_TIME: {
        int64_t ms;
        memcpy(&ms, p, sizeof(ms));
        if (ms == PV_TIME_NONE)
            return false;
        pv_time_format(ms, text);
        break;
    }
    default:
        break;
    }
    pv_sb_printf(sb, "{\"%s\":", a->type);
    if (a->kind == PV_DDB_STR) {
        pv_sb_json_str(sb, p);
    } else if (a->kind == PV_DDB_F64) {
        double d;
        memcpy(&d, p, sizeof(d));
        pv_sb_puts(sb, "\"");
        put_double(sb, d);
        pv_sb_puts(sb, "\"");
    } else if (a->kind == PV_DDB_U32) {
        uint32_t u;
        memcpy(&u, p, sizeof(u));
        pv_sb_printf(sb, "\"%" PRIu32 "\"", u);
    } else if (a->kind == PV_DDB_U64) {
        uint64_t u;
        memcpy(&u, p, sizeof(u));
        pv_sb_printf(sb, "\"%" PRIu64 "\"", u);
    } else {
        pv_sb_json_str(sb, text);
    }
    pv_sb_puts(sb, "}");
    return true;
}

/* The item of v, written at change seq: {"user_id":{"S":...},...}. */
static void put_item(pv_sb_t *sb, const pv_video_t *v, uint64_t seq)
{
    pv_sb_puts(sb, "{");
    for (size_t i = 0; i < PV_ARRAY_LEN(pv_ddb_attrs); i++) {
        const pv_ddb_attr_t *a = &pv_ddb_attrs[i];
        size_t mark = sb->len;
        pv_sb_printf(sb, "\"%s\":", a->name);
        if (put_attr(sb, a, v)) {
            pv_sb_puts(sb, ",");
        } else if (!sb->failed) { /* left out: take the name back */
            sb->len = mark;
            sb->p[mark] = '\0';
        }
    }
    pv_sb_printf(sb, "\"" PV_DDB_SEQ_ATTR "\":{\"N\":\"%" PRIu64 "\"}}", seq);
}

static void put_key(pv_sb_t *sb, const uint8_t key[32])
{
    char u[PV_ID_TEXT], v[PV_ID_TEXT];
    pv_id_encode(key, u);
    pv_id_encode(key + 16, v);
    pv_sb_printf(
        sb, "{\"" PV_DDB_PARTITION_KEY "\":{\"S\":\"%s\"},\"" PV_DDB_SORT_KEY "\":{\"S\":\"%s\"}}",
        u, v);
}

static void put_condition(pv_sb_t *sb, uint64_t seq)
{
    pv_sb_printf(sb,
                 ",\"ConditionExpression\":\"" COND_EXPR "\",\"ExpressionAttributeNames\":"
                 "{\"#q\":\"" PV_DDB_SEQ_ATTR "\"},\"ExpressionAttributeValues\":{\":q\":"
                 "{\"N\":\"%" PRIu64 "\"}}}",
                 seq);
}

static char *sb_take(pv_sb_t *sb)
{
    if (sb->failed) {
        pv_sb_free(sb);
        return NULL;
    }
    return sb->p;
}

/* PutItem of the video record rec (msgpack) with seq, conditional. */
static int put_body(repl_t *r, const void *rec, size_t len, uint64_t seq, char **out)
{
    pv_video_t v;
    int rc = pv_video_decode(rec, len, &v);
    if (rc < 0)
        return rc;
    pv_sb_t sb = {0};
    pv_sb_puts(&sb, "{\"TableName\":");
    pv_sb_json_str(&sb, r->table);
    pv_sb_puts(&sb, ",\"Item\":");
    put_item(&sb, &v, seq);
    put_condition(&sb, seq);
    pv_video_clear(&v);
    *out = sb_take(&sb);
    return *out ? 0 : -ENOMEM;
}

/* DeleteItem of key (user_id | video_id) with seq, conditional. */
static char *delete_body(repl_t *r, const uint8_t key[32], uint64_t seq)
{
    pv_sb_t sb = {0};
    pv_sb_puts(&sb, "{\"TableName\":");
    pv_sb_json_str(&sb, r->table);
    pv_sb_puts(&sb, ",\"Key\":");
    put_key(&sb, key);
    put_condition(&sb, seq);
    return sb_take(&sb);
}

/* ---------------- the cursor, the lag ---------------- */

static int load_cursor(repl_t *r)
{
    pv_txn_t txn;
    pv_val_t v;
    int rc = pv_txn_begin(r->app->store, &txn, false);
    if (rc < 0)
        return rc;
    rc = pv_txn_get(&txn, PV_DB_META, PV_REPL_DDB_CURSOR, strlen(PV_REPL_DDB_CURSOR), &v);
    if (rc == 0 && v.len == 8) {
        r->cursor = pv_be64_get(v.data);
        r->have_cursor = true;
    }
    pv_txn_abort(&txn);
    return rc == -ENOENT ? 0 : rc;
}

/* ---------------- the end of a pass ---------------- */

static void ops_free(repl_t *r)
{
    for (size_t i = 0; i < r->n_ops; i++)
        free(r->ops[i].body);
    free(r->ops);
    r->ops = NULL;
    r->n_ops = r->next_op = r->ops_left = 0;
    r->throttle_row = 0;
}

static void load_free(repl_t *r)
{
    free(r->keys);
    r->keys = NULL;
    r->loading = false;
    r->n_keys = r->load_next = 0;
    json_decref(r->scan_from);
    r->scan_from = NULL;
    r->scan_done = false;
}

static void pass_free(repl_t *r)
{
    ops_free(r);
    if (r->pump)
        evtimer_del(r->pump);
    r->failed = false;
    r->t.busy = false;
}

static void fail(repl_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(repl_t *r, const char *fmt, ...)
{
    if (r->failed || r->t.stopping)
        return;
    r->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->t.st.last_error, sizeof(r->t.st.last_error), fmt, ap);
    va_end(ap);
    r->t.st.last_error_ms = pv_now_ms();
}

static void fail_ddb(repl_t *r, const char *what, const pv_ddb_result_t *res)
{
    if (res->rc == -ENOENT) /* the table went away: look at it again */
        r->table_ready = false;
    if (res->status)
        fail(r, "%s: HTTP %ld %s%s%s", what, res->status, res->type,
             res->type[0] && res->message[0] ? ": " : "", res->message);
    else
        fail(r, "%s: %s%s%s", what, strerror(-res->rc), res->message[0] ? ": " : "", res->message);
}

/* A failed pass: wait (capped exponential backoff with jitter), then
 * start again from the cursor. A full load starts again from its start. */
static void pass_failed(repl_t *r)
{
    pass_free(r);
    load_free(r);
    pv_target_failed(&r->t, r->cursor);
}

/* The pass ended well: the next one at once (more to send) or later. */
static void pass_ok(repl_t *r, bool more, int64_t wait_ms)
{
    if (r->t.failures_in_row || r->t.refused)
        pv_info("sync", "DynamoDB replication works again (cursor %" PRIu64 ")", r->cursor);
    if (r->t.refused) { /* said once, until a pass went through */
        r->t.st.last_error[0] = '\0';
        r->t.refused = false;
    }
    r->t.failures_in_row = 0;
    r->t.st.next_retry_ms = 0;
    pass_free(r);
    pv_target_refresh_lag(&r->t, r->cursor);
    if (r->t.paused) {
        pv_target_state(&r->t, "paused");
        return;
    }
    pv_target_state(&r->t, more ? "sending" : "idle");
    pv_target_later(&r->t, more ? 0 : wait_ms);
}

/* The target refuses (another writer in the table): said once, looked at
 * again a minute later. */
static void refuse(repl_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(repl_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->t.st.last_error, sizeof(r->t.st.last_error), fmt, ap);
    va_end(ap);
    r->t.st.last_error_ms = pv_now_ms();
    if (!r->t.refused)
        pv_error("sync", "DynamoDB replication refused: %s", r->t.st.last_error);
    r->t.refused = true;
    r->failed = true;
    pass_free(r);
    load_free(r);
    r->table_ready = false;
    pv_target_state(&r->t, "refused");
    r->t.st.next_retry_ms = pv_now_ms() + 60000;
    pv_target_later(&r->t, 60000);
}

/* ---------------- the requests of a phase ---------------- */

static void op_done(const pv_ddb_result_t *res, void *arg);

/* Sends what waits, up to DDB_IN_FLIGHT; when all are done (and none
 * failed), what follows. */
static void pump(repl_t *r)
{
    if (r->t.stopping)
        return;
    if (r->failed) {
        if (r->in_flight == 0)
            pass_failed(r);
        return;
    }
    if (evtimer_pending(r->pump, NULL))
        return; /* backing off */
    while (r->in_flight < DDB_IN_FLIGHT && r->next_op < r->n_ops) {
        op_t *o = &r->ops[r->next_op];
        if (o->state != OP_TODO) {
            r->next_op++;
            continue;
        }
        int rc = pv_ddb_call(r->ddb, o->api, o->body, strlen(o->body), op_done, o);
        if (rc < 0) {
            fail(r, "%s: %s", o->api, strerror(-rc));
            pump(r);
            return;
        }
        o->state = OP_SENT;
        o->items_sent = o->items;
        r->in_flight++;
        r->next_op++;
    }
    if (r->ops_left == 0 && r->in_flight == 0) {
        void (*next)(repl_t *) = r->after_ops;
        ops_free(r);
        next(r);
    }
}

/* Starts the phase whose requests are r->ops; then runs. */
static void run_ops(repl_t *r, void (*after)(repl_t *))
{
    r->next_op = 0;
    r->ops_left = r->n_ops;
    r->after_ops = after;
    pump(r);
}

/* BatchWriteItem's UnprocessedItems: the same op again with only those. */
static int unprocessed(repl_t *r, op_t *o, const json_t *body)
{
    json_t *left = json_object_get(json_object_get(body, "UnprocessedItems"), r->table);
    size_t n = json_array_size(left);
    if (n == 0)
        return 0;
    json_t *req = json_pack("{s:{s:O}}", "RequestItems", r->table, left);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text)
        return -ENOMEM;
    free(o->body);
    o->body = text;
    o->items = (int)n;
    return (int)n;
}

/* A throttled (or 5xx) answer: this one again after a backoff that grows
 * with every such answer in a row. */
static void throttled(repl_t *r, op_t *o, const pv_ddb_result_t *res)
{
    pv_metrics_add(r->app->metrics, PV_M_SYNC_DDB_THROTTLED, 1);
    o->state = OP_TODO;
    size_t i = (size_t)(o - r->ops);
    if (i < r->next_op)
        r->next_op = i;
    if (++o->tries >= DDB_TRIES) {
        if (res->rc == 0)
            fail(r, "%s: %d items still unprocessed after %d tries", o->api, o->items, DDB_TRIES);
        else
            fail_ddb(r, o->api, res);
        return;
    }
    r->throttle_row++;
    int64_t delay = pv_backoff_ms(r->throttle_row, THROTTLE_FIRST_MS, THROTTLE_MAX_MS);
    if (!evtimer_pending(r->pump, NULL)) {
        struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)(delay % 1000) * 1000};
        evtimer_add(r->pump, &tv);
    }
}

static void op_done(const pv_ddb_result_t *res, void *arg)
{
    op_t *o = arg;
    repl_t *r = o->r;
    r->in_flight--;
    if (r->t.stopping || res->rc == -ECANCELED)
        return;
    if (res->rc == 0 || res->rc == -EEXIST) { /* a failed condition: a newer write is there */
        int left = 0;
        if (res->rc == 0 && strcmp(o->api, "BatchWriteItem") == 0)
            left = unprocessed(r, o, res->body);
        if (left < 0) {
            fail(r, "out of memory");
        } else if (left > 0) {
            int done = o->items_sent > left ? o->items_sent - left : 0;
            r->t.st.records += (uint64_t)done;
            pv_metrics_add(r->app->metrics, PV_M_SYNC_DDB_ITEMS, done);
            if (done > 0) { /* progress: only answers with none count, and back off anew */
                o->tries = 0;
                r->throttle_row = 0;
            }
            throttled(r, o, res);
        } else {
            if (res->rc == 0) {
                r->t.st.records += (uint64_t)o->items;
                pv_metrics_add(r->app->metrics, PV_M_SYNC_DDB_ITEMS, o->items);
            }
            o->state = OP_DONE;
            r->ops_left--;
            r->throttle_row = 0;
        }
    } else if (res->retryable && res->status) {
        throttled(r, o, res);
    } else {
        fail_ddb(r, o->api, res);
    }
    pump(r);
}

static int ops_reserve(repl_t *r, size_t n)
{
    op_t *p = calloc(n ? n : 1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    r->ops = p;
    r->n_ops = 0;
    return 0;
}

static void ops_add(repl_t *r, const char *api, char *body, int items)
{
    op_t *o = &r->ops[r->n_ops++];
    *o = (op_t){.r = r, .api = api, .body = body, .items = items, .state = OP_TODO};
}

/* ---------------- the cursor ---------------- */

static int cursor_apply(pv_txn_t *txn, void *arg)
{
    cursor_req_t *c = arg;
    return pv_target_put_cursor(txn, PV_REPL_DDB_CURSOR, c->cursor);
}

static void cursor_stored(pv_msg_t *msg)
{
    cursor_req_t *c = (cursor_req_t *)msg;
    repl_t *r = c->r;
    int rc = msg->status;
    uint64_t cursor = c->cursor;
    pv_msg_free(msg);
    if (r->t.stopping)
        return;
    if (rc < 0) {
        fail(r, "cannot store the DynamoDB cursor: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    bool loaded = r->loading;
    r->cursor = cursor;
    r->have_cursor = true;
    if (loaded) {
        pv_info("sync", "DynamoDB table %s loaded: %zu videos at change %" PRIu64, r->table,
                r->n_keys, cursor);
        load_free(r);
        r->loading = r->created = false;
    }
    pass_ok(r, loaded || r->batch_full, (int64_t)r->app->cfg.sync_interval * 1000);
}

static void store_cursor(repl_t *r, uint64_t cursor)
{
    cursor_req_t *c = pv_msg_new(sizeof(*c), 0);
    if (!c) {
        fail(r, "out of memory");
        pass_failed(r);
        return;
    }
    c->r = r;
    c->cursor = cursor;
    c->sreq.apply = cursor_apply;
    c->sreq.arg = c;
    pv_msg_expect(&c->sreq.msg, r->self, cursor_stored);
    pv_store_submit(r->app->store, &c->sreq);
}

/* ---------------- 2. the log ---------------- */

typedef struct collect {
    repl_t *r;
    entry_t *e;
    size_t n, cap, entries;
    uint64_t last;
    int rc;
} collect_t;

static int collect_one(void *arg, const pv_change_t *c)
{
    collect_t *cc = arg;
    cc->entries++;
    cc->last = c->seq;
    if (strcmp(c->kind, "video") != 0)
        return 0;
    if (c->key.len != 32) {
        cc->rc = -EINVAL;
        return 1;
    }
    if (cc->n == cc->cap) {
        size_t cap = cc->cap ? cc->cap * 2 : 64;
        entry_t *p = realloc(cc->e, cap * sizeof(*p));
        if (!p)
            return cc->rc = -ENOMEM;
        cc->e = p;
        cc->cap = cap;
    }
    entry_t *e = &cc->e[cc->n];
    memcpy(e->key, c->key.data, 32);
    e->seq = c->seq;
    e->del = c->del;
    e->body = NULL;
    if (c->del) {
        e->body = delete_body(cc->r, e->key, c->seq);
        cc->rc = e->body ? 0 : -ENOMEM;
    } else {
        cc->rc = put_body(cc->r, c->record.data, c->record.len, c->seq, &e->body);
    }
    if (cc->rc < 0)
        return cc->rc;
    cc->n++;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    int c = memcmp(x->key, y->key, 32);
    return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void log_sent(repl_t *r) { store_cursor(r, r->batch_last); }

/* Up to sync_batch entries after the cursor; the last of each video. */
static void log_pass(repl_t *r)
{
    collect_t cc = {.r = r};
    pv_txn_t txn;
    int rc = pv_txn_begin(r->app->store, &txn, false);
    if (rc == 0) {
        rc = pv_changes_read(&txn, r->cursor, (size_t)r->app->cfg.sync_batch, collect_one, &cc);
        pv_txn_abort(&txn);
    }
    if (rc == 0)
        rc = cc.rc;
    if (rc == 0 && cc.entries && ops_reserve(r, cc.n) < 0)
        rc = -ENOMEM;
    if (rc < 0) {
        for (size_t i = 0; i < cc.n; i++)
            free(cc.e[i].body);
        free(cc.e);
        if (rc == -EINVAL)
            fail(r, "a video change with a malformed key or record after change %" PRIu64,
                 r->cursor);
        else
            fail(r, "cannot read the change log: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    if (cc.entries == 0) { /* caught up */
        free(cc.e);
        pass_ok(r, false, (int64_t)r->app->cfg.sync_interval * 1000);
        return;
    }
    if (cc.n > 1)
        qsort(cc.e, cc.n, sizeof(*cc.e), entry_cmp);
    for (size_t i = 0; i < cc.n; i++) {
        if (i + 1 < cc.n && memcmp(cc.e[i].key, cc.e[i + 1].key, 32) == 0) {
            free(cc.e[i].body); /* a later entry of the same video follows */
            continue;
        }
        ops_add(r, cc.e[i].del ? "DeleteItem" : "PutItem", cc.e[i].body, 1);
    }
    free(cc.e);
    r->batch_last = cc.last;
    r->batch_full = cc.entries >= (size_t)r->app->cfg.sync_batch;
    pv_target_state(&r->t, "sending");
    pv_target_refresh_lag(&r->t, r->cursor);
    run_ops(r, log_sent);
}

/* ---------------- 1. the full load ---------------- */

static void load_page(repl_t *r);

static int key_cmp(const void *a, const void *b) { return memcmp(a, b, 32); }

/* A Scan page answered: items not in the store go (conditional deletes);
 * then the next page, or the puts. */
static void scan_done(const pv_ddb_result_t *res, void *arg)
{
    repl_t *r = arg;
    r->in_flight--;
    if (r->t.stopping || res->rc == -ECANCELED)
        return;
    if (res->rc < 0) {
        fail_ddb(r, "Scan", res);
        pass_failed(r);
        return;
    }
    json_t *items = json_object_get(res->body, "Items");
    size_t n = json_array_size(items);
    if (ops_reserve(r, n) < 0) {
        fail(r, "out of memory");
        pass_failed(r);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(items, i);
        const char *u =
            json_string_value(json_object_get(json_object_get(it, PV_DDB_PARTITION_KEY), "S"));
        const char *v =
            json_string_value(json_object_get(json_object_get(it, PV_DDB_SORT_KEY), "S"));
        const char *s =
            json_string_value(json_object_get(json_object_get(it, PV_DDB_SEQ_ATTR), "N"));
        uint64_t seq = s ? strtoull(s, NULL, 10) : 0;
        if (seq > r->load_head) {
            refuse(r,
                   "table %s holds changes up to %" PRIu64 " but this store's log ends at %" PRIu64
                   ": another appliance writes there, or this store was restored to an "
                   "earlier point; give this one another dynamodb_table",
                   r->table, seq, r->load_head);
            return;
        }
        uint8_t key[32];
        if (u && v && pv_id_decode(u, key) == 0 && pv_id_decode(v, key + 16) == 0 &&
            bsearch(key, r->keys, r->n_keys, 32, key_cmp))
            continue; /* in the store: put below */
        /* conditional on seq <= H (every item here is, or the target
         * refused above): an item written past H by this pvd is not
         * possible yet (nothing past H was sent) */
        char below[24];
        snprintf(below, sizeof(below), "%" PRIu64, r->load_head + 1);
        json_t *del =
            json_pack("{s:s,s:{s:O,s:O},s:s,s:{s:s},s:{s:{s:s}}}", "TableName", r->table, "Key",
                      PV_DDB_PARTITION_KEY, json_object_get(it, PV_DDB_PARTITION_KEY),
                      PV_DDB_SORT_KEY, json_object_get(it, PV_DDB_SORT_KEY), "ConditionExpression",
                      COND_EXPR, "ExpressionAttributeNames", "#q", PV_DDB_SEQ_ATTR,
                      "ExpressionAttributeValues", ":q", "N", below);
        char *body = del ? json_dumps(del, JSON_COMPACT) : NULL;
        json_decref(del);
        if (!body) {
            fail(r, "out of memory");
            pass_failed(r);
            return;
        }
        ops_add(r, "DeleteItem", body, 1);
    }
    json_decref(r->scan_from);
    r->scan_from = json_object_get(res->body, "LastEvaluatedKey");
    json_incref(r->scan_from);
    r->scan_done = r->scan_from == NULL;
    run_ops(r, load_page);
}

static void scan_page(repl_t *r)
{
    json_t *req =
        json_pack("{s:s,s:s,s:{s:s,s:s,s:s},s:i}", "TableName", r->table, "ProjectionExpression",
                  "#a, #b, #c", "ExpressionAttributeNames", "#a", PV_DDB_PARTITION_KEY, "#b",
                  PV_DDB_SORT_KEY, "#c", PV_DDB_SEQ_ATTR, "Limit", 1000);
    if (req && r->scan_from)
        json_object_set(req, "ExclusiveStartKey", r->scan_from);
    int rc = req ? pv_ddb_call_json(r->ddb, "Scan", req, scan_done, r) : -ENOMEM;
    json_decref(req);
    if (rc < 0) {
        fail(r, "Scan: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    r->in_flight++;
}

/* A page of the store's videos, put with seq H: conditional PutItems, or
 * BatchWriteItems of 25 into a table made just now (no newer item can be
 * there, and BatchWriteItem takes no condition). */
static void load_page(repl_t *r)
{
    if (!r->scan_done) {
        scan_page(r);
        return;
    }
    if (r->load_next >= r->n_keys) {
        store_cursor(r, r->load_head);
        return;
    }
    size_t end = r->load_next + DDB_LOAD_PAGE;
    if (end > r->n_keys)
        end = r->n_keys;
    size_t n = end - r->load_next;
    pv_txn_t txn;
    int rc = ops_reserve(r, n);
    if (rc == 0)
        rc = pv_txn_begin(r->app->store, &txn, false);
    if (rc < 0) {
        fail(r, "cannot read the store: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    pv_sb_t batch = {0};
    int in_batch = 0;
    for (size_t i = r->load_next; i < end && rc == 0; i++) {
        pv_val_t v;
        if (pv_txn_get(&txn, PV_DB_VIDEOS, r->keys[i], 32, &v) < 0)
            continue; /* deleted after H: its delete is in the log */
        if (!r->created) {
            char *body;
            rc = put_body(r, v.data, v.len, r->load_head, &body);
            if (rc == 0)
                ops_add(r, "PutItem", body, 1);
            continue;
        }
        pv_video_t vid;
        if ((rc = pv_video_decode(v.data, v.len, &vid)) < 0)
            break;
        if (in_batch == 0) {
            pv_sb_puts(&batch, "{\"RequestItems\":{");
            pv_sb_json_str(&batch, r->table);
            pv_sb_puts(&batch, ":[");
        }
        pv_sb_puts(&batch, in_batch ? ",{\"PutRequest\":{\"Item\":" : "{\"PutRequest\":{\"Item\":");
        put_item(&batch, &vid, r->load_head);
        pv_sb_puts(&batch, "}}");
        pv_video_clear(&vid);
        if (++in_batch == DDB_BATCH_ITEMS || i + 1 == end) {
            pv_sb_puts(&batch, "]}}");
            char *body = sb_take(&batch);
            if (!body) {
                rc = -ENOMEM;
                break;
            }
            ops_add(r, "BatchWriteItem", body, in_batch);
            batch = (pv_sb_t){0};
            in_batch = 0;
        }
    }
    pv_txn_abort(&txn);
    if (in_batch) { /* the page's last keys were gone */
        pv_sb_puts(&batch, "]}}");
        char *body = sb_take(&batch);
        if (body)
            ops_add(r, "BatchWriteItem", body, in_batch);
        else
            rc = -ENOMEM;
    }
    if (rc < 0) {
        fail(r, "cannot load a video: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    r->load_next = end;
    run_ops(r, load_page);
}

typedef struct keys_collect {
    repl_t *r;
    size_t cap;
} keys_collect_t;

static int key_one(void *arg, const pv_val_t *key, const pv_val_t *val)
{
    (void)val;
    keys_collect_t *kc = arg;
    repl_t *r = kc->r;
    if (key->len != 32)
        return -EINVAL;
    if (r->n_keys == kc->cap) {
        size_t cap = kc->cap ? kc->cap * 2 : 256;
        void *p = realloc(r->keys, cap * 32);
        if (!p)
            return -ENOMEM;
        r->keys = p;
        kc->cap = cap;
    }
    memcpy(r->keys[r->n_keys++], key->data, 32);
    return 0;
}

/* The full load's start: head H and the keys of every video at H, in one
 * read transaction (keys only: 32 bytes a video, whatever the store). */
static void load_start(repl_t *r)
{
    load_free(r);
    keys_collect_t kc = {.r = r};
    pv_txn_t txn;
    pv_val_t v;
    int rc = pv_txn_begin(r->app->store, &txn, false);
    if (rc < 0)
        goto out;
    r->load_head = 0;
    if (pv_txn_get(&txn, PV_DB_META, "seq", 3, &v) == 0 && v.len == 8)
        r->load_head = pv_be64_get(v.data);
    rc = pv_txn_scan(&txn, PV_DB_VIDEOS, NULL, 0, NULL, 0, false, key_one, &kc);
    pv_txn_abort(&txn);
out:
    if (rc < 0) {
        fail(r, "cannot read the videos for the full load: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    pv_info("sync", "DynamoDB: loading table %s whole (%zu videos at change %" PRIu64 ")%s",
            r->table, r->n_keys, r->load_head, r->created ? ", new table" : "");
    pv_target_state(&r->t, "loading");
    r->loading = true;
    /* a table made just now is empty: no Scan */
    r->scan_done = r->created;
    load_page(r);
}

static int first_seq(void *arg, const pv_change_t *c)
{
    *(uint64_t *)arg = c->seq;
    return 1;
}

/* Whether the log still holds every entry after the cursor (it is
 * trimmed to the head while this target is off). */
static bool log_has_cursor(repl_t *r)
{
    pv_txn_t txn;
    pv_val_t v;
    uint64_t head = 0, first = 0;
    if (pv_txn_begin(r->app->store, &txn, false) < 0)
        return true; /* the log pass will say why */
    if (pv_txn_get(&txn, PV_DB_META, "seq", 3, &v) == 0 && v.len == 8)
        head = pv_be64_get(v.data);
    pv_changes_read(&txn, r->cursor, 1, first_seq, &first);
    pv_txn_abort(&txn);
    if (head <= r->cursor)
        return true;
    return first == r->cursor + 1;
}

/* ---------------- 0. the table ---------------- */

static void table_step(repl_t *r);

/* KeySchema must be (user_id HASH, video_id RANGE). */
static bool keys_match(const json_t *table)
{
    json_t *ks = json_object_get(table, "KeySchema");
    bool hash = false, range = false;
    for (size_t i = 0; i < json_array_size(ks); i++) {
        const char *name =
            json_string_value(json_object_get(json_array_get(ks, i), "AttributeName"));
        const char *type = json_string_value(json_object_get(json_array_get(ks, i), "KeyType"));
        if (!name || !type)
            return false;
        hash |= !strcmp(type, "HASH") && !strcmp(name, PV_DDB_PARTITION_KEY);
        range |= !strcmp(type, "RANGE") && !strcmp(name, PV_DDB_SORT_KEY);
    }
    return hash && range && json_array_size(ks) == 2;
}

static void table_wait(repl_t *r)
{
    pass_free(r);
    pv_target_state(&r->t, "waiting");
    pv_target_later(&r->t, DESCRIBE_POLL_MS);
}

static void created_done(const pv_ddb_result_t *res, void *arg)
{
    repl_t *r = arg;
    r->in_flight--;
    if (r->t.stopping || res->rc == -ECANCELED)
        return;
    if (res->rc < 0 && res->rc != -EBUSY) { /* EBUSY: made meanwhile by someone else */
        fail_ddb(r, "CreateTable", res);
        pass_failed(r);
        return;
    }
    if (res->rc == 0) {
        pv_info("sync", "DynamoDB: made table %s (on demand capacity)", r->table);
        r->created = true;
    }
    table_wait(r);
}

static void create_table(repl_t *r)
{
    json_t *req = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}],s:[{s:s,s:s},{s:s,s:s}],s:s}",
                            "TableName", r->table, "AttributeDefinitions", "AttributeName",
                            PV_DDB_PARTITION_KEY, "AttributeType", "S", "AttributeName",
                            PV_DDB_SORT_KEY, "AttributeType", "S", "KeySchema", "AttributeName",
                            PV_DDB_PARTITION_KEY, "KeyType", "HASH", "AttributeName",
                            PV_DDB_SORT_KEY, "KeyType", "RANGE", "BillingMode", "PAY_PER_REQUEST");
    int rc = req ? pv_ddb_call_json(r->ddb, "CreateTable", req, created_done, r) : -ENOMEM;
    json_decref(req);
    if (rc < 0) {
        fail(r, "CreateTable: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    r->in_flight++;
}

static void described(const pv_ddb_result_t *res, void *arg)
{
    repl_t *r = arg;
    r->in_flight--;
    if (r->t.stopping || res->rc == -ECANCELED)
        return;
    if (res->rc == -ENOENT && r->app->cfg.dynamodb_create) {
        create_table(r);
        return;
    }
    if (res->rc == -ENOENT) {
        fail(r, "DynamoDB table %s does not exist at %s (make it, or set dynamodb_create = true)",
             r->table, pv_ddb_host(r->ddb));
        pass_failed(r);
        return;
    }
    if (res->rc < 0) {
        fail_ddb(r, "DescribeTable", res);
        pass_failed(r);
        return;
    }
    json_t *t = json_object_get(res->body, "Table");
    const char *status = json_string_value(json_object_get(t, "TableStatus"));
    if (!status || strcmp(status, "ACTIVE") != 0) {
        table_wait(r); /* CREATING, UPDATING: look again */
        return;
    }
    if (!keys_match(t)) {
        refuse(r,
               "DynamoDB table %s is not keyed (" PV_DDB_PARTITION_KEY " HASH, " PV_DDB_SORT_KEY
               " RANGE) as schema/records.json says: give pv another dynamodb_table",
               r->table);
        return;
    }
    r->table_ready = true;
    if (r->created) /* empty: whatever the cursor said, the table needs everything */
        r->have_cursor = false;
    pass_go(r);
}

static void table_step(repl_t *r)
{
    pv_sb_t sb = {0};
    pv_sb_puts(&sb, "{\"TableName\":");
    pv_sb_json_str(&sb, r->table);
    pv_sb_puts(&sb, "}");
    int rc = sb.failed ? -ENOMEM : pv_ddb_call(r->ddb, "DescribeTable", sb.p, sb.len, described, r);
    pv_sb_free(&sb);
    if (rc < 0) {
        fail(r, "DescribeTable: %s", strerror(-rc));
        pass_failed(r);
        return;
    }
    r->in_flight++;
}

/* ---------------- credentials ---------------- */

static int install_creds(repl_t *r, const pv_aws_creds_t *c)
{
    int rc;
    if (r->ddb) {
        rc = pv_ddb_set_creds(r->ddb, c);
    } else {
        pv_ddb_config_t dc = {.endpoint = r->app->cfg.dynamodb_endpoint, .region = r->region};
        rc = pv_ddb_new(r->http, &dc, c, &r->ddb);
    }
    if (rc < 0)
        fail(r, "cannot make the DynamoDB client (endpoint, region or credentials): %s",
             strerror(-rc));
    return rc;
}

/* The chain S3 uses (src/cloud/credchain.h): the pass goes on or fails. */
static void on_creds(int rc, const pv_aws_creds_t *c, const char *why, void *arg)
{
    repl_t *r = arg;
    if (r->t.stopping)
        return;
    if (rc < 0)
        fail(r, "%s", why);
    if (rc < 0 || install_creds(r, c) < 0)
        pass_failed(r);
    else
        pass_go(r);
}

/* ---------------- a pass ---------------- */

static void pass(repl_t *r)
{
    if (r->t.busy || r->t.paused || r->t.stopping)
        return;
    r->t.busy = true;
    r->failed = false;
    r->t.st.next_retry_ms = 0;
    pv_credchain_get(r->cc, on_creds, r); /* on_creds may run inside */
}

static void pass_go(repl_t *r)
{
    if (!r->table_ready) {
        table_step(r);
        return;
    }
    if (!r->have_cursor || !log_has_cursor(r)) {
        load_start(r);
        return;
    }
    log_pass(r);
}

/* ---------------- messages ---------------- */

static void on_init(pv_actor_t *self, pv_msg_t *msg)
{
    repl_t *r = pv_actor_state(self);
    pv_msg_free(msg);
    r->t.timer = evtimer_new(pv_loop_base(r->loop), on_timer, r);
    r->pump = evtimer_new(pv_loop_base(r->loop), on_pump, r);
    pv_curlev_opts_t co = {.max_in_flight = DDB_IN_FLIGHT, .timeout_ms = 30000};
    int rc = r->t.timer && r->pump ? pv_curlev_new(pv_loop_base(r->loop), &co, &r->http) : -ENOMEM;
    if (rc == 0)
        rc = pv_credchain_new(r->http, r->app->cfg.aws_profile, r->app->cfg.aws_imds_endpoint,
                              &r->cc);
    if (rc == 0)
        rc = load_cursor(r);
    if (rc < 0) {
        pv_error("sync", "DynamoDB replication cannot start: %s", strerror(-rc));
        pv_target_state(&r->t, "refused");
        snprintf(r->t.st.last_error, sizeof(r->t.st.last_error), "cannot start: %s", strerror(-rc));
        return;
    }
    if (r->have_cursor)
        pv_info("sync", "replicating to %s from change %" PRIu64, r->t.st.where, r->cursor + 1);
    else
        pv_info("sync", "replicating to %s: a full load first", r->t.st.where);
    pass(r);
}

static void on_stop(pv_actor_t *self, pv_msg_t *msg)
{
    repl_t *r = pv_actor_state(self);
    pv_msg_free(msg);
    r->t.stopping = true;
    if (r->t.timer)
        evtimer_del(r->t.timer);
    if (r->pump)
        evtimer_del(r->pump);
    pv_ddb_free(r->ddb); /* each call's done runs (cancelled) and does nothing */
    r->ddb = NULL;
    pv_curlev_free(r->http);
    r->http = NULL;
    pv_loop_stop(r->loop);
}

static void on_ctl(pv_actor_t *self, pv_msg_t *msg)
{
    repl_t *r = pv_actor_state(self);
    pv_target_ctl(&r->t, msg, r->cursor, r->http);
}

static const pv_actor_fn ddb_on[DDB_MSG_COUNT] = {
    [PV_REPL_CTL] = on_ctl,
    [DDB_INIT] = on_init,
    [DDB_STOP] = on_stop,
};
static const pv_actor_def_t ddb_def = {"ddb", ddb_on, DDB_MSG_COUNT};

/* ---------------- start, stop ---------------- */

static pv_actor_t *ddb_actor(const pv_app_t *app)
{
    const struct pv_target *t = pv_sync_target(app, "ddb");
    return t ? t->actor : NULL;
}

int pv_ddb_repl_start(pv_app_t *app, char *err, size_t errlen)
{
    const pv_config_t *cfg = &app->cfg;
    if (!cfg->dynamodb_table[0])
        return 0;
    repl_t *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->app = app;
    r->t.app = app;
    r->t.log = "sync";
    r->t.what = "DynamoDB replication";
    r->t.m_cursor = PV_M_SYNC_DDB_CURSOR;
    r->t.m_lag_entries = PV_M_SYNC_DDB_LAG_ENTRIES;
    r->t.m_lag_seconds = PV_M_SYNC_DDB_LAG_SECONDS;
    r->t.m_failures = PV_M_SYNC_DDB_FAILURES;
    snprintf(r->table, sizeof(r->table), "%s", cfg->dynamodb_table);
    snprintf(r->t.st.target, sizeof(r->t.st.target), "ddb");
    if (cfg->dynamodb_region[0])
        snprintf(r->region, sizeof(r->region), "%s", cfg->dynamodb_region);
    else if (cfg->s3_region[0])
        snprintf(r->region, sizeof(r->region), "%s", cfg->s3_region);
    else if (pv_awscreds_load_region(cfg->aws_profile[0] ? cfg->aws_profile : NULL, r->region,
                                     sizeof(r->region)) < 0 ||
             !r->region[0])
        snprintf(r->region, sizeof(r->region), "us-east-1");
    if (cfg->dynamodb_endpoint[0])
        snprintf(r->t.st.where, sizeof(r->t.st.where), "dynamodb %.120s table %s",
                 cfg->dynamodb_endpoint, r->table);
    else
        snprintf(r->t.st.where, sizeof(r->t.st.where), "dynamodb %s table %s", r->region, r->table);
    pv_target_state(&r->t, "idle");
    r->loop = pv_loop_new("ddb");
    r->self = r->loop ? pv_actor_new(r->loop, &ddb_def, r) : NULL;
    pv_msg_t *init = r->self ? pv_msg_new(sizeof(*init), DDB_INIT) : NULL;
    int rc = init ? pv_sync_add_target(app, "ddb", PV_REPL_DDB_CURSOR, r->self) : -ENOMEM;
    if (rc < 0) {
        snprintf(err, errlen, rc == -ENOSPC ? "too many replication targets" : "out of memory");
        pv_msg_free(init);
        if (r->self)
            pv_actor_free(r->self);
        pv_loop_free(r->loop);
        free(r);
        return rc;
    }
    pv_actor_send(r->self, init);
    rc = pv_loop_start(r->loop);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start the ddb loop: %s", strerror(-rc));
        return rc; /* pv_ddb_repl_free frees the rest */
    }
    return 0;
}

void pv_ddb_repl_stop(pv_app_t *app)
{
    pv_actor_t *a = ddb_actor(app);
    if (!a)
        return;
    repl_t *r = pv_actor_state(a);
    pv_target_stop(&r->t, a, r->loop, DDB_STOP);
}

void pv_ddb_repl_free(pv_app_t *app)
{
    pv_actor_t *a = ddb_actor(app);
    if (!a)
        return;
    repl_t *r = pv_actor_state(a);
    pv_actor_free(a); /* pending messages: a cursor write's answer */
    for (int i = 0; i < app->n_targets; i++)
        if (app->targets[i].actor == a)
            app->targets[i].actor = NULL;
    if (r->t.timer)
        event_free(r->t.timer);
    if (r->pump)
        event_free(r->pump);
    pv_ddb_free(r->ddb);
    pv_curlev_free(r->http);
    pass_free(r);
    load_free(r);
    pv_credchain_free(r->cc);
    pv_loop_free(r->loop);
    free(r);
}
