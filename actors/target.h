/*
 * target.h — what every replicator (S3: replicate.c, PostgreSQL: pg.c,
 * DynamoDB: ddb.c) does the same way, kept once: its status for pvctl,
 * the timer of its next pass, pause / resume / now, the lag, and the
 * backoff after a failed pass. Each embeds a pv_target_core_t and keeps
 * its own client, cursor and passes.
 */
#ifndef PV_ACTORS_TARGET_H
#define PV_ACTORS_TARGET_H

#include "actors/replicate.h"

#include <event2/event.h>
#include <stdbool.h>

typedef struct pv_target_core {
    pv_app_t *app;
    const char *log;          /* the actor name logs carry: "sync", "pg" */
    const char *what;         /* "S3 replication", for log lines */
    int m_cursor, m_lag_entries, m_lag_seconds, m_failures; /* its metrics */
    struct event *timer;      /* the next pass */
    bool paused, busy, stopping, refused;
    int failures_in_row;
    pv_repl_status_t st;      /* counters, errors, state */
} pv_target_core_t;

void pv_target_state(pv_target_core_t *t, const char *state);
/* The next pass in ms. */
void pv_target_later(pv_target_core_t *t, int64_t ms);
/* st's head, cursor and lag (entries, seconds) as of now; the metrics. */
void pv_target_refresh_lag(pv_target_core_t *t, uint64_t cursor);
/* pvctl's PV_REPL_CTL (pause, resume, now, status), answered with the
 * status. can_go: a pass could start now (the loop's client exists). */
void pv_target_ctl(pv_target_core_t *t, pv_msg_t *msg, uint64_t cursor, bool can_go);
/* A failed pass (st.last_error says why): counted, logged (the first and
 * every tenth in a row), and the next one timed with capped exponential
 * backoff and jitter (1 s doubling to 5 min). Returns the wait in ms. */
int64_t pv_target_failed(pv_target_core_t *t, uint64_t cursor);

/* The store write of a pass's end: the target's cursor in META (u64
 * big-endian under key). */
int pv_target_put_cursor(pv_txn_t *txn, const char *key, uint64_t cursor);
/* Asks the target's loop to stop with a message of type stop_type (its
 * handler cancels what is in flight) and waits for it; without memory for
 * the message the loop stops as it is. */
void pv_target_stop(pv_target_core_t *t, pv_actor_t *actor, pv_loop_t *loop, int stop_type);

#endif
