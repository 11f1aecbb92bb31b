/*
 * actor.c — loops, actors, mailboxes and the worker pool.
 *
 * Mailbox: Vyukov's intrusive MPSC queue with a stub node. Producers do one
 * atomic exchange on `head`; the single consumer (the actor's loop) walks
 * from `tail`. A separate counter, `pending`, tells a producer whether its
 * message turned the mailbox from empty to non-empty: only that producer
 * writes the actor's eventfd (memcached's notify pattern, h2o's "wake only
 * on empty -> non-empty"). The consumer subtracts what it handled; if
 * anything is left it re-activates its own event rather than looping, so a
 * run handles at most PV_ACTOR_BATCH messages (Pony's batch) and other
 * events on the loop get their turn.
 *
 * Why a counter beside the queue: "is the queue empty" cannot be read
 * race-free from the producer side of a Vyukov queue. The counter may dip
 * below zero for a moment (the consumer handled a message whose producer
 * has not counted it yet); what matters is that exactly one producer sees
 * the 0 -> 1 transition after the consumer has drained everything it saw.
 */
#include "runtime/actor.h"
#include "base/pv.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct pv_loop {
    struct event_base *base;  /* NOLOCK: touched only by the loop thread */
    char name[32];
    pthread_t thread;         /* valid when started */
    bool started;
    int stop_fd;              /* eventfd: pv_loop_stop from any thread */
    struct event *stop_ev;
    _Atomic pthread_t owner;  /* thread running the loop now */
    atomic_bool running;
};

struct pv_actor {
    pv_loop_t *loop;          /* the loop that runs this actor */
    char name[32];
    const pv_actor_def_t *def; /* the actor's message set and handlers */
    void *state;              /* owned by the actor's handler */
    pv_msg_t *_Atomic head;   /* producers push here (xchg) */
    pv_msg_t *tail;           /* consumer side */
    pv_msg_t stub;            /* keeps the queue never truly empty */
    atomic_long pending;      /* pushed - handled; see the file comment */
    int wake_fd;              /* eventfd written on empty -> non-empty */
    struct event *wake_ev;
};

static pthread_once_t g_evthread_once = PTHREAD_ONCE_INIT;
static void evthread_init(void) { evthread_use_pthreads(); }

/* ---------------- mailbox ---------------- */

static void mq_init(pv_actor_t *a)
{
    atomic_store_explicit(&a->stub.next, NULL, memory_order_relaxed);
    atomic_store_explicit(&a->head, &a->stub, memory_order_relaxed);
    a->tail = &a->stub;
    atomic_store(&a->pending, 0);
}

static void mq_push(pv_actor_t *a, pv_msg_t *m)
{
    atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
    /* acq_rel: publish m's contents to the consumer, order with other
     * producers' exchanges. */
    pv_msg_t *prev = atomic_exchange_explicit(&a->head, m, memory_order_acq_rel);
    /* release: the consumer's acquire load of prev->next sees m whole. */
    atomic_store_explicit(&prev->next, m, memory_order_release);
}

/* Consumer only. NULL when empty or when a push is half done (then the
 * pending counter is still > 0 and the actor runs again). */
static pv_msg_t *mq_pop(pv_actor_t *a)
{
    pv_msg_t *tail = a->tail;
    pv_msg_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &a->stub) {
        if (!next)
            return NULL;
        a->tail = next;
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next) {
        a->tail = next;
        return tail;
    }
    if (tail != atomic_load_explicit(&a->head, memory_order_acquire))
        return NULL; /* a producer is between its exchange and its link */
    mq_push(a, &a->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next) {
        a->tail = next;
        return tail;
    }
    return NULL;
}

/* ---------------- loops ---------------- */

static void loop_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    pv_loop_t *loop = arg;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n; /* an eventfd read only fails when nothing was written */
    event_base_loopbreak(loop->base);
}

pv_loop_t *pv_loop_new(const char *name)
{
    pthread_once(&g_evthread_once, evthread_init);
    pv_loop_t *loop = calloc(1, sizeof(*loop));
    if (!loop || pv_fail("loop_new"))
        goto fail;
    snprintf(loop->name, sizeof(loop->name), "%s", name);
    struct event_config *cfg = event_config_new();
    if (!cfg)
        goto fail;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    loop->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!loop->base)
        goto fail;
    loop->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->stop_fd < 0)
        goto fail;
    loop->stop_ev = event_new(loop->base, loop->stop_fd, EV_READ | EV_PERSIST,
                              loop_stop_cb, loop);
    if (!loop->stop_ev || event_add(loop->stop_ev, NULL) < 0)
        goto fail;
    return loop;
fail:
    if (loop) {
        if (loop->stop_ev)
            event_free(loop->stop_ev);
        if (loop->stop_fd > 0)
            close(loop->stop_fd);
        if (loop->base)
            event_base_free(loop->base);
        free(loop);
    }
    return NULL;
}

struct event_base *pv_loop_base(pv_loop_t *loop) { return loop->base; }
const char *pv_loop_name(pv_loop_t *loop) { return loop->name; }

int pv_loop_run(pv_loop_t *loop)
{
    atomic_store(&loop->owner, pthread_self());
    atomic_store(&loop->running, true);
    int rc = event_base_loop(loop->base, EVLOOP_NO_EXIT_ON_EMPTY);
    atomic_store(&loop->running, false);
    return rc < 0 ? -EIO : 0;
}

static void *loop_thread(void *arg)
{
    pv_loop_t *loop = arg;
    pv_loop_run(loop);
    return NULL;
}

int pv_loop_start(pv_loop_t *loop)
{
    if (pv_fail("loop_start"))
        return -EAGAIN;
    int rc = pthread_create(&loop->thread, NULL, loop_thread, loop);
    if (rc != 0)
        return -rc;
    loop->started = true;
    return 0;
}

void pv_loop_stop(pv_loop_t *loop)
{
    uint64_t one = 1;
    ssize_t n = write(loop->stop_fd, &one, sizeof(one));
    (void)n; /* eventfd writes fail only on counter overflow */
}

void pv_loop_join(pv_loop_t *loop)
{
    if (loop->started) {
        pthread_join(loop->thread, NULL);
        loop->started = false;
    }
}

void pv_loop_free(pv_loop_t *loop)
{
    if (!loop)
        return;
    event_free(loop->stop_ev);
    close(loop->stop_fd);
    event_base_free(loop->base);
    free(loop);
}

int pv_loop_is_current(pv_loop_t *loop)
{
    return atomic_load(&loop->running) &&
           pthread_equal(atomic_load(&loop->owner), pthread_self());
}

/* ---------------- actors ---------------- */

/* An answer runs its continuation; a request goes to the handler for its
 * type in the receiver's own table. */
static void deliver(pv_actor_t *a, pv_msg_t *m)
{
    if (m->is_reply) {
        m->is_reply = false;
        m->k(m);
        return;
    }
    if (m->type >= 0 && m->type < a->def->n && a->def->on[m->type]) {
        a->def->on[m->type](a, m);
        return;
    }
    pv_error("actor", "%s: no handler for message type %d; dropped", a->name, m->type);
    pv_msg_free(m);
}

static void actor_run(evutil_socket_t fd, short what, void *arg)
{
    pv_actor_t *a = arg;
    if (what & EV_READ) {
        uint64_t v;
        ssize_t n = read(fd, &v, sizeof(v));
        (void)n; /* EAGAIN when we re-activated ourselves: fine */
    }
    long handled = 0;
    pv_msg_t *m;
    while (handled < PV_ACTOR_BATCH && (m = mq_pop(a)) != NULL) {
        handled++;
        deliver(a, m);
    }
    long left = atomic_fetch_sub(&a->pending, handled) - handled;
    if (left > 0)
        event_active(a->wake_ev, 0, 0); /* more to do: yield, then go on */
}

pv_actor_t *pv_actor_new(pv_loop_t *loop, const pv_actor_def_t *def, void *state)
{
    pv_actor_t *a = calloc(1, sizeof(*a));
    if (!a || pv_fail("actor_new"))
        goto fail;
    a->loop = loop;
    snprintf(a->name, sizeof(a->name), "%s", def->name);
    a->def = def;
    a->state = state;
    mq_init(a);
    a->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->wake_fd < 0)
        goto fail;
    a->wake_ev = event_new(loop->base, a->wake_fd, EV_READ | EV_PERSIST,
                           actor_run, a);
    if (!a->wake_ev || event_add(a->wake_ev, NULL) < 0)
        goto fail;
    return a;
fail:
    if (a) {
        if (a->wake_ev)
            event_free(a->wake_ev);
        if (a->wake_fd > 0)
            close(a->wake_fd);
        free(a);
    }
    return NULL;
}

void pv_actor_free(pv_actor_t *a)
{
    if (!a)
        return;
    pv_msg_t *m;
    while ((m = mq_pop(a)) != NULL)
        pv_msg_free(m);
    event_free(a->wake_ev);
    close(a->wake_fd);
    free(a);
}

void *pv_actor_state(pv_actor_t *a) { return a->state; }
const char *pv_actor_name(pv_actor_t *a) { return a->name; }
pv_loop_t *pv_actor_loop(pv_actor_t *a) { return a->loop; }

void pv_actor_send(pv_actor_t *to, pv_msg_t *msg)
{
    mq_push(to, msg);
    if (atomic_fetch_add(&to->pending, 1) == 0) {
        uint64_t one = 1;
        ssize_t n = write(to->wake_fd, &one, sizeof(one));
        (void)n; /* cannot overflow: at most one write per wake-up */
    }
}

void pv_actor_reply(pv_msg_t *msg, int status)
{
    msg->status = status;
    if (msg->reply_to && msg->k) {
        msg->is_reply = true;
        pv_actor_send(msg->reply_to, msg);
        return;
    }
    if (msg->reply_to)
        pv_error("actor", "an answer to %s has no continuation; dropped",
                 msg->reply_to->name);
    pv_msg_free(msg);
}

void *pv_msg_new(size_t size, int type)
{
    if (size < sizeof(pv_msg_t) || pv_fail("msg_new"))
        return NULL;
    pv_msg_t *m = calloc(1, size);
    if (m)
        m->type = type;
    return m;
}

void pv_msg_free(pv_msg_t *msg)
{
    if (!msg)
        return;
    if (msg->free_fn)
        msg->free_fn(msg);
    else
        free(msg);
}

/* ---------------- worker pool ---------------- */

typedef struct pool_item {
    struct pool_item *next;
    pv_work_fn work;
    pv_msg_t *msg;
} pool_item_t;

struct pv_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pool_item_t *first[2], *last[2]; /* FIFOs of work: [PV_PRIO_HIGH], [PV_PRIO_LOW] */
    int queued[2];              /* items in each FIFO */
    int max_queued;             /* per FIFO; 0: unbounded */
    bool stopping;
    int n;
    int flags;                  /* PV_POOL_IDLE */
    pthread_t *threads;
    char name[32];
};

/* SCHED_IDLE: a flood of such work (argon2id) then takes only the CPU the
 * loops leave idle, and a waking loop preempts it at once (a niced thread
 * would keep the core for the rest of its slice). */
static void pool_thread_idle(pv_pool_t *p)
{
    struct sched_param sp = {0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        pv_debug("pool", "%s: cannot lower the threads' priority", p->name);
}

static void *pool_thread(void *arg)
{
    pv_pool_t *p = arg;
    if (p->flags & PV_POOL_IDLE)
        pool_thread_idle(p);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->first[0] && !p->first[1] && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        int q = p->first[0] ? 0 : 1; /* high priority first, always */
        pool_item_t *it = p->first[q];
        if (!it) { /* stopping and drained */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->first[q] = it->next;
        if (!p->first[q])
            p->last[q] = NULL;
        p->queued[q]--;
        pthread_mutex_unlock(&p->mu);

        it->work(it->msg);
        pv_actor_reply(it->msg, it->msg->status);
        free(it);
    }
}

pv_pool_t *pv_pool_new(const char *name, int threads, int flags)
{
    if (threads < 1)
        threads = 1;
    pv_pool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->threads = calloc((size_t)threads, sizeof(pthread_t));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->flags = flags;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_thread, p) != 0)
            break;
        p->n++;
    }
    if (p->n == 0) {
        pv_pool_free(p);
        return NULL;
    }
    return p;
}

const char *pv_pool_name(pv_pool_t *p) { return p->name; }
int pv_pool_threads(pv_pool_t *p) { return p->n; }

void pv_pool_set_max_queued(pv_pool_t *p, int max)
{
    pthread_mutex_lock(&p->mu);
    p->max_queued = max > 0 ? max : 0;
    pthread_mutex_unlock(&p->mu);
}

int pv_pool_submit(pv_pool_t *p, pv_work_fn work, pv_msg_t *msg)
{
    return pv_pool_submit_at(p, work, msg, PV_PRIO_HIGH);
}

int pv_pool_submit_at(pv_pool_t *p, pv_work_fn work, pv_msg_t *msg, int prio)
{
    int q = prio == PV_PRIO_LOW ? 1 : 0;
    pool_item_t *it = pv_fail("pool_submit") ? NULL : malloc(sizeof(*it));
    if (!it)
        return -ENOMEM;
    it->next = NULL;
    it->work = work;
    it->msg = msg;
    pthread_mutex_lock(&p->mu);
    if (p->stopping || (p->max_queued && p->queued[q] >= p->max_queued)) {
        int rc = p->stopping ? -ESHUTDOWN : -EAGAIN;
        pthread_mutex_unlock(&p->mu);
        free(it);
        return rc;
    }
    if (p->last[q])
        p->last[q]->next = it;
    else
        p->first[q] = it;
    p->last[q] = it;
    p->queued[q]++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void pv_pool_stop(pv_pool_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    p->n = 0;
}

void pv_pool_free(pv_pool_t *p)
{
    if (!p)
        return;
    if (p->n)
        pv_pool_stop(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}
