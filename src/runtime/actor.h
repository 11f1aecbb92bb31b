/*
 * actor.h — the message-passing runtime.
 *
 * A pv_loop_t is one thread running one libevent base (created with
 * EVENT_BASE_FLAG_NOLOCK: only its own thread touches it). An actor is bound
 * to one loop and its state is touched only by handlers running there.
 * Other threads reach an actor only through pv_actor_send(): the message is
 * pushed onto the actor's intrusive MPSC mailbox and, only when the mailbox
 * went from empty to non-empty, the actor's eventfd is written to wake its
 * loop. A wake-up handles at most PV_ACTOR_BATCH messages, then yields to
 * the loop so one busy actor cannot starve the others.
 *
 * Messages are structs that embed pv_msg_t as their first member. Each
 * actor owns its message set: an enum numbered from 0 in its own header and
 * a table of handlers indexed by it (pv_actor_def_t), so dispatch is one
 * array look-up and no actor switches on another's numbers. The receiver
 * owns a message once it is delivered: it either answers it with
 * pv_actor_reply or frees it with pv_msg_free().
 *
 * Answers are continuations: a request carries `k` and `reply_to`, and
 * pv_actor_reply sends it back to reply_to, whose loop runs k(msg) there.
 * The asker's actor never sees the answer as a typed message, so an actor
 * that serves many askers need not know any of them.
 *
 * Blocking work goes to a pv_pool_t (worker threads): the work function runs
 * on a worker and the same message then comes back to reply_to as an
 * answer, running its continuation there. Pools are the one way to run
 * blocking work: pvd names one per kind of work (see src/app/app.h).
 */
#ifndef PV_ACTOR_H
#define PV_ACTOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

#define PV_ACTOR_BATCH 64

typedef struct pv_loop pv_loop_t;
typedef struct pv_actor pv_actor_t;
typedef struct pv_msg pv_msg_t;
typedef struct pv_pool pv_pool_t;

typedef void (*pv_reply_fn)(pv_msg_t *msg);

struct pv_msg {
    pv_msg_t *_Atomic next;      /* mailbox link; owned by the queue */
    int type;                    /* index into the receiver's handler table */
    int status;                  /* result carried by answers: 0 / -errno */
    pv_actor_t *reply_to;        /* where the answer goes, or NULL */
    pv_reply_fn k;               /* continuation run on reply_to's loop */
    void *ctx;                   /* the asker's, for k; opaque to the receiver */
    bool is_reply;               /* on its way back: run k, not a handler */
    void (*free_fn)(pv_msg_t *); /* releases the message; NULL: free() */
};

/* A message handler: runs on the actor's loop and owns msg from then on. */
typedef void (*pv_actor_fn)(pv_actor_t *self, pv_msg_t *msg);

/* An actor's message set: on[type] handles messages of that type. */
typedef struct pv_actor_def {
    const char *name;            /* for logs */
    const pv_actor_fn *on;       /* handlers, indexed by the actor's enum */
    int n;                       /* entries in on[] */
} pv_actor_def_t;

/* Loops. pv_loop_new does not start the thread; pv_loop_start does. */
pv_loop_t *pv_loop_new(const char *name);
struct event_base *pv_loop_base(pv_loop_t *loop);
const char *pv_loop_name(pv_loop_t *loop);
int pv_loop_start(pv_loop_t *loop);
/* Run the loop on the calling thread until pv_loop_stop (tests, pvd main). */
int pv_loop_run(pv_loop_t *loop);
/* Ask the loop to exit after its current callback; safe from any thread. */
void pv_loop_stop(pv_loop_t *loop);
void pv_loop_join(pv_loop_t *loop);
/* Frees the base; actors must be freed first. */
void pv_loop_free(pv_loop_t *loop);
/* True when called from the loop's own thread. */
int pv_loop_is_current(pv_loop_t *loop);

/* Actors. Create and free on the owning loop's thread, or before it starts
 * and after it stopped. */
pv_actor_t *pv_actor_new(pv_loop_t *loop, const pv_actor_def_t *def, void *state);
/* Frees pending messages with their free_fn, then the actor. */
void pv_actor_free(pv_actor_t *actor);
void *pv_actor_state(pv_actor_t *actor);
const char *pv_actor_name(pv_actor_t *actor);
pv_loop_t *pv_actor_loop(pv_actor_t *actor);

/* Any thread. Ownership of msg passes to the receiver. */
void pv_actor_send(pv_actor_t *to, pv_msg_t *msg);
/* Answer msg: status set, back to msg->reply_to, where msg->k runs; freed
 * when there is no reply address. */
void pv_actor_reply(pv_msg_t *msg, int status);
/* Set the continuation and reply address of a request before sending it. */
static inline void pv_msg_expect(pv_msg_t *msg, pv_actor_t *reply_to, pv_reply_fn k)
{
    msg->reply_to = reply_to;
    msg->k = k;
}
/* Allocate a zeroed message of `size` bytes (size >= sizeof(pv_msg_t)). */
void *pv_msg_new(size_t size, int type);
void pv_msg_free(pv_msg_t *msg);

/* Worker pool for blocking work (argon2id, image decoding, fsync). */
typedef void (*pv_work_fn)(pv_msg_t *msg);
enum { PV_POOL_IDLE = 1 };
pv_pool_t *pv_pool_new(const char *name, int threads, int flags);
const char *pv_pool_name(pv_pool_t *pool);
/* Threads running (possibly fewer than asked if some could not start);
 * 0 once stopped. At most this many works run at the same time. */
int pv_pool_threads(pv_pool_t *pool);
/* Runs work(msg) on a worker, then answers msg (its continuation runs on
 * msg->reply_to's loop; freed when there is none). -ESHUTDOWN after
 * pv_pool_stop. Threads of a pool made with PV_POOL_IDLE run as SCHED_IDLE:
 * they take only the CPU that the loops leave. */
int pv_pool_submit(pv_pool_t *pool, pv_work_fn work, pv_msg_t *msg);
/* The same at a priority: a worker always takes PV_PRIO_HIGH work first
 * (logins before sign-ups on the hash pool). With a bound set, a full queue
 * of that priority refuses with -EAGAIN, so a flood waits in no queue. */
enum { PV_PRIO_HIGH, PV_PRIO_LOW };
int pv_pool_submit_at(pv_pool_t *pool, pv_work_fn work, pv_msg_t *msg, int prio);
/* At most max items waiting in each priority's queue (0: no bound). */
void pv_pool_set_max_queued(pv_pool_t *pool, int max);
/* Finishes queued work, joins the threads. */
void pv_pool_stop(pv_pool_t *pool);
void pv_pool_free(pv_pool_t *pool);

#endif
