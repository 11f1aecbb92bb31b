/*
 * sync.c — the change log's consumer side: how far it may be trimmed.
 *
 * Every mutation appends a change entry in the same transaction
 * (src/store.c). Replicators (S3 now: actors/replicate.c) each keep a
 * durable cursor; the log is trimmed only below every enabled target's
 * cursor. With
 * no target configured — the appliance's embedded default — nobody will
 * ever read the entries, so everything up to the head is trimmed: without
 * this a store that is full stays full even after deletes, because each
 * delete appends another entry.
 *
 * The trimmer is a timer on the core loop; each pass trims a bounded number
 * of entries in one store write, so a long backlog never makes one huge
 * transaction.
 */
#include "actors/sync.h"
#include "app/metrics.h"
#include "base/pv.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRIM_BATCH 4096

typedef struct sync_state {
    pv_app_t *app;
    struct event *timer;
    bool alarm;              /* the log is past changelog_alarm_bytes */
    int64_t alarm_logged_ms; /* when that was last said */
    bool busy;               /* a trim write is in flight */
    uint64_t trimmed;        /* entries removed so far (for logs) */
} sync_state_t;

typedef struct trim_req {
    pv_store_req_t sreq;     /* answered to the actor: trimmed() */
    pv_actor_t *self;
    uint64_t upto;           /* trim entries with seq <= upto */
    uint64_t removed;        /* out */
} trim_req_t;

typedef struct trim_count {
    uint64_t upto;           /* in: nothing above this goes */
    uint64_t last;           /* seq of the last entry that may go */
    size_t n;
} trim_count_t;

/* Counts only entries at or below upto: an entry a target still needs
 * must neither go nor be counted as gone (counting it made a log held
 * back by S3 look like a backlog, and the trimmer spun on it). */
static int count_one(void *arg, const pv_change_t *c)
{
    trim_count_t *tc = arg;
    if (c->seq > tc->upto)
        return 1;
    tc->last = c->seq;
    tc->n++;
    return 0;
}

/* The lowest cursor of the enabled targets (each kept in META under its
 * cursor_key; a target with none yet holds everything); with none enabled,
 * the head. */
static uint64_t trim_limit(pv_app_t *app, uint64_t head)
{
    uint64_t limit = head;
    if (app->n_targets == 0)
        return limit;
    pv_txn_t txn;
    if (pv_txn_begin(app->store, &txn, false) < 0)
        return 0;
    for (int i = 0; i < app->n_targets; i++) {
        const char *key = app->targets[i].cursor_key;
        pv_val_t v;
        uint64_t cursor = 0;
        if (pv_txn_get(&txn, PV_DB_META, key, strlen(key), &v) == 0 && v.len == 8)
            cursor = pv_be64_get(v.data);
        if (cursor < limit)
            limit = cursor;
    }
    pv_txn_abort(&txn);
    return limit;
}

int pv_sync_add_target(pv_app_t *app, const char *name, const char *cursor_key,
                       pv_actor_t *actor)
{
    if (app->n_targets >= PV_TARGETS_MAX)
        return -ENOSPC;
    struct pv_target *t = &app->targets[app->n_targets++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    snprintf(t->cursor_key, sizeof(t->cursor_key), "%s", cursor_key);
    t->actor = actor;
    return 0;
}

const struct pv_target *pv_sync_target(const pv_app_t *app, const char *name)
{
    for (int i = 0; i < app->n_targets; i++)
        if (strcmp(app->targets[i].name, name) == 0)
            return &app->targets[i];
    return NULL;
}

static int trim_apply(pv_txn_t *txn, void *arg)
{
    trim_req_t *t = arg;
    trim_count_t tc = {.upto = t->upto};
    t->removed = 0; /* the writer may run this again after growing the map */
    /* At most TRIM_BATCH entries, none above upto: the last one to go. */
    int rc = pv_changes_read(txn, 0, TRIM_BATCH, count_one, &tc);
    if (rc < 0 || tc.n == 0)
        return rc < 0 ? rc : 0;
    rc = pv_changes_trim(txn, tc.last);
    t->removed = rc == 0 ? tc.n : 0;
    return rc;
}

static void trimmed(pv_msg_t *msg);

#define ALARM_REPEAT_MS (10 * 60 * 1000)

/* The disk alarm: a replication target far behind keeps the log from
 * being trimmed, and the log grows with every write. Said in the log when
 * it starts, every ten minutes while it lasts, and when it ends; always in
 * the metrics and pvctl status. */
static void alarm_check(sync_state_t *st, const pv_store_stat_t *ss)
{
    uint64_t bytes = ss->bytes[PV_DB_CHANGES], limit = st->app->cfg.changelog_alarm_bytes;
    bool on = bytes > limit;
    pv_metrics_set(st->app->metrics, PV_M_CHANGELOG_BYTES, (long long)bytes);
    pv_metrics_set(st->app->metrics, PV_M_CHANGELOG_ALARM, on);
    int64_t now = pv_now_ms();
    if (on && (!st->alarm || now - st->alarm_logged_ms >= ALARM_REPEAT_MS)) {
        pv_warn("sync", "the change log kept for replication takes %llu MB (%llu entries), past "
                "changelog_alarm_bytes (%llu MB): a replication target is far behind "
                "(pvctl sync status)", (unsigned long long)(bytes >> 20),
                (unsigned long long)ss->entries[PV_DB_CHANGES], (unsigned long long)(limit >> 20));
        st->alarm_logged_ms = now;
    } else if (!on && st->alarm) {
        pv_info("sync", "the change log is back under changelog_alarm_bytes (%llu MB)",
                (unsigned long long)(bytes >> 20));
    }
    st->alarm = on;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    pv_actor_t *self = arg;
    sync_state_t *st = pv_actor_state(self);
    pv_store_stat_t ss;
    if (st->busy || pv_store_stat(st->app->store, &ss) < 0)
        return;
    alarm_check(st, &ss);
    uint64_t upto = trim_limit(st->app, ss.last_seq);
    if (ss.entries[PV_DB_CHANGES] == 0 || upto == 0)
        return;
    trim_req_t *t = pv_msg_new(sizeof(*t), 0);
    if (!t)
        return;
    t->upto = upto;
    t->self = self;
    t->sreq.apply = trim_apply;
    t->sreq.arg = t;
    pv_msg_expect(&t->sreq.msg, self, trimmed);
    st->busy = true;
    pv_store_submit(st->app->store, &t->sreq);
}

/* A trim came back from the store writer. */
static void trimmed(pv_msg_t *msg)
{
    trim_req_t *t = (trim_req_t *)msg;
    pv_actor_t *self = t->self;
    sync_state_t *st = pv_actor_state(self);
    st->busy = false;
    if (msg->status < 0)
        pv_log(PV_LOG_WARN, "sync", NULL, NULL, "trimming the change log failed: %s",
               strerror(-msg->status));
    else
        st->trimmed += t->removed;
    bool more = msg->status == 0 && t->removed == TRIM_BATCH;
    pv_msg_free(msg);
    if (more) /* a backlog: go on at once rather than at the next tick */
        on_timer(-1, 0, self);
}

int pv_sync_start(pv_app_t *app)
{
    sync_state_t *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->app = app;
    /* No messages of its own yet: replicators will steer it (pause, now). */
    static const pv_actor_def_t def = {"sync", NULL, 0};
    app->sync = pv_actor_new(app->core, &def, st);
    if (!app->sync) {
        free(st);
        return -ENOMEM;
    }
    st->timer = event_new(pv_loop_base(app->core), -1, EV_PERSIST, on_timer, app->sync);
    struct timeval tv = {app->cfg.changelog_trim_seconds, 0};
    if (!st->timer || event_add(st->timer, &tv) < 0)
        return -ENOMEM;
    return 0;
}

void pv_sync_free(pv_app_t *app)
{
    if (!app->sync)
        return;
    sync_state_t *st = pv_actor_state(app->sync);
    pv_actor_free(app->sync);
    app->sync = NULL;
    if (st->timer)
        event_free(st->timer);
    free(st);
}
