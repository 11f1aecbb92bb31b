/* Unit tests for the actor runtime: ordering, no loss under contention,
 * batching, request/answer continuations, dispatch tables, stop with
 * messages pending, and the pool. */
#include "runtime/actor.h"
#include "base/pv.h"
#include "t.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>

#define PRODUCERS 4
#define PER_PRODUCER 250000 /* 4 x 250k = 1e6 messages */

typedef struct seq_msg {
    pv_msg_t msg;
    int producer;
    long seq;
} seq_msg_t;

typedef struct counter_state {
    long next_seq[PRODUCERS]; /* per-sender ordering check */
    long received;
    long out_of_order;
    long target;
    pv_loop_t *loop;
    int max_batch_seen;       /* unused by the handler: batching via runs */
} counter_state_t;

/* A test actor with one message type, 0, handled by fn. */
#define ONE_MSG_DEF(var, nm, fn)                                                                  \
    static const pv_actor_fn var##_on[1] = {fn};                                                 \
    static const pv_actor_def_t var = {nm, var##_on, 1}

static void counter_fn(pv_actor_t *self, pv_msg_t *m)
{
    counter_state_t *st = pv_actor_state(self);
    seq_msg_t *sm = (seq_msg_t *)m;
    if (sm->seq != st->next_seq[sm->producer])
        st->out_of_order++;
    st->next_seq[sm->producer] = sm->seq + 1;
    st->received++;
    pv_msg_free(m);
    if (st->received == st->target)
        pv_loop_stop(st->loop);
}

typedef struct producer_arg {
    pv_actor_t *to;
    int id;
    long n;
} producer_arg_t;

static void *producer(void *arg)
{
    producer_arg_t *pa = arg;
    for (long i = 0; i < pa->n; i++) {
        seq_msg_t *m = pv_msg_new(sizeof(*m), 0);
        m->producer = pa->id;
        m->seq = i;
        pv_actor_send(pa->to, &m->msg);
    }
    return NULL;
}

TEST(million_messages_no_loss_per_sender_order)
{
    pv_loop_t *loop = pv_loop_new("t");
    counter_state_t st = {.target = (long)PRODUCERS * PER_PRODUCER, .loop = loop};
    ONE_MSG_DEF(def, "counter", counter_fn);
    pv_actor_t *a = pv_actor_new(loop, &def, &st);
    CHECK(a != NULL);
    CHECK_EQ_INT(pv_loop_start(loop), 0);
    pthread_t th[PRODUCERS];
    producer_arg_t pa[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        pa[i] = (producer_arg_t){a, i, PER_PRODUCER};
        pthread_create(&th[i], NULL, producer, &pa[i]);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    pv_loop_join(loop);
    CHECK_EQ_INT(st.received, st.target);
    CHECK_EQ_INT(st.out_of_order, 0);
    pv_actor_free(a);
    pv_loop_free(loop);
}

/* ---- request/reply between two loops ---- */
typedef struct pingpong {
    int replies;
    int sum;
    int on_client_loop;       /* continuations that ran on the client's loop */
    pv_loop_t *loop;
} pingpong_t;

static void doubler_fn(pv_actor_t *self, pv_msg_t *m)
{
    seq_msg_t *sm = (seq_msg_t *)m;
    sm->seq *= 2;
    pv_actor_reply(m, 0);
}

/* The asker's continuation: runs on the client's loop, never the server's. */
static void doubled(pv_msg_t *m)
{
    pingpong_t *pp = m->ctx;
    seq_msg_t *sm = (seq_msg_t *)m;
    pp->sum += (int)sm->seq;
    pp->on_client_loop += pv_loop_is_current(pp->loop);
    pp->replies++;
    pv_msg_free(m);
    if (pp->replies == 100)
        pv_loop_stop(pp->loop);
}

TEST(request_reply_across_loops)
{
    pv_loop_t *l1 = pv_loop_new("server"), *l2 = pv_loop_new("client");
    pingpong_t pp = {.loop = l2};
    ONE_MSG_DEF(server_def, "doubler", doubler_fn);
    static const pv_actor_def_t client_def = {"client", NULL, 0}; /* answers only */
    pv_actor_t *server = pv_actor_new(l1, &server_def, NULL);
    pv_actor_t *client = pv_actor_new(l2, &client_def, &pp);
    pv_loop_start(l1);
    pv_loop_start(l2);
    for (int i = 1; i <= 100; i++) {
        seq_msg_t *m = pv_msg_new(sizeof(*m), 0);
        m->seq = i;
        m->msg.ctx = &pp;
        pv_msg_expect(&m->msg, client, doubled);
        pv_actor_send(server, &m->msg);
    }
    pv_loop_join(l2);
    pv_loop_stop(l1);
    pv_loop_join(l1);
    CHECK_EQ_INT(pp.replies, 100);
    CHECK_EQ_INT(pp.sum, 2 * 5050);
    CHECK_EQ_INT(pp.on_client_loop, 100);
    pv_actor_free(server);
    pv_actor_free(client);
    pv_loop_free(l1);
    pv_loop_free(l2);
}

/* ---- batching: a busy actor yields; a second actor on the loop runs ---- */
typedef struct batch_state {
    int handled;
    int runs_when_other_ran; /* how many messages had been handled when the
                                other actor got its turn */
    pv_loop_t *loop;
} batch_state_t;

static void busy_fn(pv_actor_t *self, pv_msg_t *m)
{
    batch_state_t *bs = pv_actor_state(self);
    bs->handled++;
    pv_msg_free(m);
}

static void other_fn(pv_actor_t *self, pv_msg_t *m)
{
    batch_state_t *bs = pv_actor_state(self);
    bs->runs_when_other_ran = bs->handled;
    pv_msg_free(m);
    pv_loop_stop(bs->loop);
}

TEST(batch_bound_lets_other_actors_run)
{
    pv_loop_t *loop = pv_loop_new("t");
    batch_state_t bs = {.loop = loop};
    ONE_MSG_DEF(busy_def, "busy", busy_fn);
    ONE_MSG_DEF(other_def, "other", other_fn);
    pv_actor_t *busy = pv_actor_new(loop, &busy_def, &bs);
    pv_actor_t *other = pv_actor_new(loop, &other_def, &bs);
    for (int i = 0; i < 10 * PV_ACTOR_BATCH; i++)
        pv_actor_send(busy, pv_msg_new(sizeof(pv_msg_t), 0));
    pv_actor_send(other, pv_msg_new(sizeof(pv_msg_t), 0));
    pv_loop_run(loop); /* on this thread until other_fn stops it */
    /* The other actor ran before the busy one drained all ten batches. */
    CHECK(bs.runs_when_other_ran < 10 * PV_ACTOR_BATCH);
    CHECK(bs.runs_when_other_ran > 0);
    pv_actor_free(busy);
    pv_actor_free(other);
    pv_loop_free(loop);
}

/* ---- stop with messages pending: they are freed, none leak (ASan) ---- */
static int g_freed;
static void counted_free(pv_msg_t *m)
{
    g_freed++;
    free(m);
}

TEST(stop_with_pending_messages_frees_them)
{
    pv_loop_t *loop = pv_loop_new("t");
    ONE_MSG_DEF(def, "never-runs", busy_fn);
    pv_actor_t *a = pv_actor_new(loop, &def, NULL);
    g_freed = 0;
    for (int i = 0; i < 1000; i++) {
        pv_msg_t *m = pv_msg_new(sizeof(pv_msg_t), 0);
        m->free_fn = counted_free;
        pv_actor_send(a, m);
    }
    pv_actor_free(a);
    CHECK_EQ_INT(g_freed, 1000);
    pv_loop_free(loop);
}

/* ---- pool: work runs off the loop, result comes back as a message ---- */
typedef struct work_msg {
    pv_msg_t msg;
    long in, out;
    pthread_t ran_on;
} work_msg_t;

static void square_work(pv_msg_t *m)
{
    work_msg_t *w = (work_msg_t *)m;
    w->out = w->in * w->in;
    w->ran_on = pthread_self();
}

typedef struct pool_state {
    long sum;
    int n;
    int on_loop_thread;
    pv_loop_t *loop;
} pool_state_t;

static void squared(pv_msg_t *m)
{
    pool_state_t *ps = m->ctx;
    work_msg_t *w = (work_msg_t *)m;
    ps->sum += w->out;
    if (pthread_equal(w->ran_on, pthread_self()))
        ps->on_loop_thread++;
    ps->n++;
    pv_msg_free(m);
    if (ps->n == 50)
        pv_loop_stop(ps->loop);
}

TEST(pool_runs_work_and_replies)
{
    pv_loop_t *loop = pv_loop_new("t");
    pool_state_t ps = {.loop = loop};
    static const pv_actor_def_t def = {"pool-client", NULL, 0};
    pv_actor_t *a = pv_actor_new(loop, &def, &ps);
    pv_pool_t *pool = pv_pool_new("workers", 3, 0);
    CHECK_EQ_INT(pv_pool_threads(pool), 3);
    long expect = 0;
    for (long i = 1; i <= 50; i++) {
        work_msg_t *w = pv_msg_new(sizeof(*w), 0);
        w->in = i;
        expect += i * i;
        w->msg.ctx = &ps;
        pv_msg_expect(&w->msg, a, squared);
        CHECK_EQ_INT(pv_pool_submit(pool, square_work, &w->msg), 0);
    }
    pv_loop_run(loop);
    CHECK_EQ_INT(ps.n, 50);
    CHECK_EQ_INT(ps.sum, expect);
    CHECK_EQ_INT(ps.on_loop_thread, 0);
    pv_pool_stop(pool);
    CHECK_EQ_INT(pv_pool_threads(pool), 0);
    work_msg_t *late = pv_msg_new(sizeof(*late), 0);
    CHECK_EQ_INT(pv_pool_submit(pool, square_work, &late->msg), -ESHUTDOWN);
    free(late);
    pv_pool_free(pool);
    pv_actor_free(a);
    pv_loop_free(loop);
}

TEST(failure_seam_makes_creation_fail_cleanly)
{
    pv_fail_reset("actor_new:1,msg_new:1");
    pv_loop_t *loop = pv_loop_new("t");
    CHECK(loop != NULL);
    ONE_MSG_DEF(def, "x", busy_fn);
    CHECK(pv_actor_new(loop, &def, NULL) == NULL);
    CHECK(pv_msg_new(sizeof(pv_msg_t), 0) == NULL);
    pv_actor_t *a = pv_actor_new(loop, &def, NULL);
    CHECK(a != NULL);
    pv_actor_free(a);
    pv_loop_free(loop);
    pv_fail_reset("");
}

/* ---- pool priorities and bounds: high work first; a full queue says so ---- */
static atomic_int g_gate;          /* the first item waits until this is 1 */
static atomic_int g_started;       /* the first item is running */
static atomic_int g_order_n;
static long g_order[16];

static void gated_work(pv_msg_t *m)
{
    work_msg_t *w = (work_msg_t *)m;
    if (w->in == 0) {
        atomic_store(&g_started, 1);
        while (!atomic_load(&g_gate))
            ;
    }
    g_order[atomic_fetch_add(&g_order_n, 1)] = w->in;
}

TEST(pool_takes_high_priority_first_and_bounds_each_queue)
{
    pv_pool_t *pool = pv_pool_new("prio", 1, 0);
    pv_pool_set_max_queued(pool, 2);
    atomic_store(&g_gate, 0);
    atomic_store(&g_started, 0);
    atomic_store(&g_order_n, 0);
    work_msg_t *w[6];
    for (int i = 0; i < 6; i++) {
        w[i] = pv_msg_new(sizeof(*w[i]), 0);
        w[i]->in = i;
    }
    /* 0 holds the only thread (queued first, then taken) */
    CHECK_EQ_INT(pv_pool_submit(pool, gated_work, &w[0]->msg), 0);
    while (!atomic_load(&g_started)) { /* the thread took it off the queue */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK_EQ_INT(pv_pool_submit_at(pool, gated_work, &w[1]->msg, PV_PRIO_LOW), 0);
    CHECK_EQ_INT(pv_pool_submit_at(pool, gated_work, &w[2]->msg, PV_PRIO_LOW), 0);
    CHECK_EQ_INT(pv_pool_submit_at(pool, gated_work, &w[5]->msg, PV_PRIO_LOW), -EAGAIN);
    CHECK_EQ_INT(pv_pool_submit_at(pool, gated_work, &w[3]->msg, PV_PRIO_HIGH), 0);
    CHECK_EQ_INT(pv_pool_submit_at(pool, gated_work, &w[4]->msg, PV_PRIO_HIGH), 0);
    atomic_store(&g_gate, 1);
    pv_pool_stop(pool); /* finishes the queue */
    CHECK_EQ_INT(atomic_load(&g_order_n), 5);
    CHECK_EQ_INT(g_order[0], 0);
    CHECK_EQ_INT(g_order[1], 3); /* both high ones before any low one */
    CHECK_EQ_INT(g_order[2], 4);
    CHECK_EQ_INT(g_order[3], 1);
    CHECK_EQ_INT(g_order[4], 2);
    free(w[5]);
    pv_pool_free(pool);
}

/* ---- dispatch: each type goes to its own handler; an unknown type, or
 * an answer without a continuation, is dropped and freed (ASan counts) ---- */
typedef struct disp_state {
    int a, b;
    pv_loop_t *loop;
} disp_state_t;
static void disp_a(pv_actor_t *self, pv_msg_t *m)
{
    ((disp_state_t *)pv_actor_state(self))->a++;
    pv_msg_free(m);
}
static void disp_b(pv_actor_t *self, pv_msg_t *m)
{
    disp_state_t *ds = pv_actor_state(self);
    ds->b++;
    pv_msg_free(m);
    pv_loop_stop(ds->loop);
}

TEST(dispatch_table_routes_by_type_and_drops_unknown)
{
    pv_loop_t *loop = pv_loop_new("t");
    disp_state_t ds = {.loop = loop};
    static const pv_actor_fn on[3] = {disp_a, NULL, disp_b};
    static const pv_actor_def_t def = {"disp", on, 3};
    pv_actor_t *a = pv_actor_new(loop, &def, &ds);
    g_freed = 0;
    int types[] = {0, 1, 7, -1, 0, 2}; /* 1: a hole in the table; 7, -1: not ours */
    for (size_t i = 0; i < PV_ARRAY_LEN(types); i++) {
        pv_msg_t *m = pv_msg_new(sizeof(pv_msg_t), 0);
        m->type = types[i];
        if (types[i] != 0 && types[i] != 2)
            m->free_fn = counted_free;
        pv_actor_send(a, m);
    }
    pv_msg_t *lost = pv_msg_new(sizeof(pv_msg_t), 0); /* an answer with nowhere to run */
    lost->free_fn = counted_free;
    lost->reply_to = a;
    pv_actor_reply(lost, 0);
    pv_loop_run(loop);
    CHECK_EQ_INT(ds.a, 2);
    CHECK_EQ_INT(ds.b, 1);
    CHECK_EQ_INT(g_freed, 4);
    pv_actor_free(a);
    pv_loop_free(loop);
}

int main(void)
{
    RUN(million_messages_no_loss_per_sender_order);
    RUN(request_reply_across_loops);
    RUN(batch_bound_lets_other_actors_run);
    RUN(stop_with_pending_messages_frees_them);
    RUN(pool_runs_work_and_replies);
    RUN(failure_seam_makes_creation_fail_cleanly);
    RUN(dispatch_table_routes_by_type_and_drops_unknown);
    RUN(pool_takes_high_priority_first_and_bounds_each_queue);
    return t_done("actor");
}
