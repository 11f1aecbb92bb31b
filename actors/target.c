/*
 * target.c — the replicators' shared core: see target.h.
 */
#include "actors/target.h"
#include "app/metrics.h"
#include "base/crypto.h"
#include "base/pv.h"

#include <stdio.h>
#include <string.h>

#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 300000

void pv_target_state(pv_target_core_t *t, const char *state)
{
    snprintf(t->st.state, sizeof(t->st.state), "%s", state);
}

void pv_target_later(pv_target_core_t *t, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(t->timer, &tv);
}

static int first_time(void *arg, const pv_change_t *c)
{
    *(int64_t *)arg = c->time_ms;
    return 1;
}

void pv_target_refresh_lag(pv_target_core_t *t, uint64_t cursor)
{
    pv_store_stat_t ss;
    if (pv_store_stat(t->app->store, &ss) == 0)
        t->st.head = ss.last_seq;
    t->st.cursor = cursor;
    t->st.lag_seconds = 0;
    if (t->st.head > cursor) {
        pv_txn_t txn;
        int64_t ms = 0;
        if (pv_txn_begin(t->app->store, &txn, false) == 0) {
            pv_changes_read(&txn, cursor, 1, first_time, &ms);
            pv_txn_abort(&txn);
        }
        if (ms > 0 && pv_now_ms() > ms)
            t->st.lag_seconds = (double)(pv_now_ms() - ms) / 1000.0;
    }
    pv_metrics_t *m = t->app->metrics;
    pv_metrics_set(m, t->m_cursor, (long long)cursor);
    pv_metrics_set(m, t->m_lag_entries,
                   (long long)(t->st.head > cursor ? t->st.head - cursor : 0));
    pv_metrics_set(m, t->m_lag_seconds, (long long)t->st.lag_seconds);
}

void pv_target_ctl(pv_target_core_t *t, pv_msg_t *msg, uint64_t cursor, bool can_go)
{
    pv_repl_ctl_t *c = (pv_repl_ctl_t *)msg;
    switch (c->op) {
    case PV_REPL_PAUSE:
        if (!t->paused)
            pv_log(PV_LOG_INFO, t->log, NULL, NULL, "%s paused (pvctl)", t->what);
        t->paused = true;
        if (!t->busy) {
            evtimer_del(t->timer);
            pv_target_state(t, "paused");
        }
        break;
    case PV_REPL_RESUME:
    case PV_REPL_NOW:
        if (t->paused)
            pv_log(PV_LOG_INFO, t->log, NULL, NULL, "%s resumed (pvctl)", t->what);
        t->paused = false;
        if (!t->busy && !t->stopping && can_go) {
            evtimer_del(t->timer);
            if (c->op == PV_REPL_NOW)
                t->failures_in_row = 0; /* an operator's "now" skips the wait */
            pv_target_later(t, 0);
            if (!t->refused)
                pv_target_state(t, "sending");
        }
        break;
    default:
        break;
    }
    pv_target_refresh_lag(t, cursor);
    c->st = t->st;
    if (t->paused && !t->busy) /* a pass under way ends first */
        snprintf(c->st.state, sizeof(c->st.state), "paused");
    pv_actor_reply(msg, 0);
}

int64_t pv_target_failed(pv_target_core_t *t, uint64_t cursor)
{
    t->st.failures++;
    t->failures_in_row++;
    pv_metrics_add(t->app->metrics, t->m_failures, 1);
    int64_t delay = pv_backoff_ms(t->failures_in_row, BACKOFF_FIRST_MS, BACKOFF_MAX_MS);
    t->st.next_retry_ms = pv_now_ms() + delay;
    if (t->failures_in_row == 1 || t->failures_in_row % 10 == 0)
        pv_log(PV_LOG_WARN, t->log, NULL, NULL, "%s failed (%d in a row): %s; trying again in %.1f s",
               t->what, t->failures_in_row, t->st.last_error, (double)delay / 1000.0);
    pv_target_state(t, t->paused ? "paused" : t->refused ? "refused" : "waiting");
    pv_target_refresh_lag(t, cursor);
    pv_target_later(t, delay);
    return delay;
}

int pv_target_put_cursor(pv_txn_t *txn, const char *key, uint64_t cursor)
{
    uint8_t v[8];
    pv_be64_put(v, cursor);
    return pv_txn_put(txn, PV_DB_META, key, strlen(key), v, 8, false);
}

void pv_target_stop(pv_target_core_t *t, pv_actor_t *actor, pv_loop_t *loop, int stop_type)
{
    pv_msg_t *stop = pv_msg_new(sizeof(*stop), stop_type);
    if (stop) {
        pv_actor_send(actor, stop);
    } else { /* no memory for the message: stop the loop as it is */
        t->stopping = true;
        pv_loop_stop(loop);
    }
    pv_loop_join(loop);
}
