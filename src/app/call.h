/*
 * call.h — the one continuation framework: a unit of asynchronous work
 * that goes from its home actor to the store writer, a pool or another
 * actor, and comes back to run its next step on its home loop.
 *
 * A call is a message: pv_call_t starts with a pv_store_req_t (which starts
 * with a pv_msg_t), so one allocation serves as a message, a pool job and a
 * store write request. HTTP handlers make calls bound to their request's
 * loop (pv_call_new in src/app/kit.h); the admin actor embeds a call in
 * each pvctl request. Every step either hands the call on or finishes it.
 */
#ifndef PV_CALL_H
#define PV_CALL_H

#include "runtime/actor.h"
#include "store/store.h"

typedef struct pv_app pv_app_t;
typedef struct pv_call pv_call_t;
typedef struct pv_http_req pv_http_req_t;
typedef struct pv_http_loop pv_http_loop_t;
typedef void (*pv_call_fn)(pv_call_t *call);

struct pv_call {
    pv_store_req_t sreq;  /* first: a message and a store write request */
    pv_call_fn k;         /* the next step, run on home's loop */
    pv_actor_t *home;     /* the actor whose loop runs the steps */
    pv_app_t *app;
    int result;           /* what a step found, for the next (0 / -errno / own codes) */
    pv_msg_t *answer;     /* pv_call_ask: the asked actor's answer, ours to free */
    pv_http_req_t *req;   /* HTTP calls: the request being answered */
    pv_http_loop_t *hl;   /* HTTP calls: the request's loop */
};

/* Bind a zeroed call to its home actor. */
void pv_call_init(pv_call_t *call, pv_app_t *app, pv_actor_t *home);
void pv_call_free(pv_call_t *call);
/* Commit apply(txn, call) through the store writer; then k runs, with the
 * write's outcome in call->sreq.msg.status (apply may leave more in the
 * call, e.g. in result). */
void pv_call_store(pv_call_t *call, pv_store_apply_fn apply, pv_call_fn k);
/* Run work(&call->sreq.msg) on a pool thread; then k runs. The work sets
 * call->result. Returns 0, or < 0 when the pool refused (the call was not
 * handed on: the caller answers and frees it). */
int pv_call_pool(pv_call_t *call, pv_pool_t *pool, pv_work_fn work, pv_call_fn k);
/* The same at a priority (PV_PRIO_HIGH, PV_PRIO_LOW); -EAGAIN when that
 * priority's queue is full. */
int pv_call_pool_at(pv_call_t *call, pv_pool_t *pool, pv_work_fn work, pv_call_fn k, int prio);
/* Send msg (a message of `to`'s own set, with its type set) to another
 * actor; when it is answered, k runs with call->answer = msg (to free) and
 * call->result = its status. */
void pv_call_ask(pv_call_t *call, pv_actor_t *to, pv_msg_t *msg, pv_call_fn k);

#endif
