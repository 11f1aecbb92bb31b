/*
 * call.c — calls: see call.h. Each hand-off sets the continuation that the
 * runtime runs when the message comes back to the call's home loop.
 */
#include "app/call.h"
#include "app/app.h"

#include <stdlib.h>

/* Back from the store writer (the write's outcome is in sreq.msg.status)
 * or from a pool (the work set what it found in the call). */
static void resume(pv_msg_t *msg)
{
    pv_call_t *call = (pv_call_t *)msg;
    call->k(call);
}

/* Another actor answered msg, which carries the call as its context. */
static void answered(pv_msg_t *msg)
{
    pv_call_t *call = msg->ctx;
    call->answer = msg;
    call->result = msg->status;
    call->k(call);
}

void pv_call_init(pv_call_t *call, pv_app_t *app, pv_actor_t *home)
{
    call->app = app;
    call->home = home;
}

void pv_call_free(pv_call_t *call) { pv_msg_free(&call->sreq.msg); }

void pv_call_store(pv_call_t *call, pv_store_apply_fn apply, pv_call_fn k)
{
    call->k = k;
    call->sreq.apply = apply;
    call->sreq.arg = call;
    pv_msg_expect(&call->sreq.msg, call->home, resume);
    pv_store_submit(call->app->store, &call->sreq);
}

int pv_call_pool_at(pv_call_t *call, pv_pool_t *pool, pv_work_fn work, pv_call_fn k, int prio)
{
    call->k = k;
    pv_msg_expect(&call->sreq.msg, call->home, resume);
    return pv_pool_submit_at(pool, work, &call->sreq.msg, prio);
}

int pv_call_pool(pv_call_t *call, pv_pool_t *pool, pv_work_fn work, pv_call_fn k)
{
    return pv_call_pool_at(call, pool, work, k, PV_PRIO_HIGH);
}

void pv_call_ask(pv_call_t *call, pv_actor_t *to, pv_msg_t *msg, pv_call_fn k)
{
    call->k = k;
    call->answer = NULL;
    msg->ctx = call;
    pv_msg_expect(msg, call->home, answered);
    pv_actor_send(to, msg);
}
