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
 * Messages are structs that embed pv_msg_t as their first member. The
 * receiver owns a message once it is delivered: it either forwards it (as a
 * reply, with pv_actor_reply) or frees it with pv_msg_free().
 *
 * Blocking work goes to a pv_pool_t (worker threads): the work function runs
 * on a worker and the same message is then delivered to reply_to.
 */
#ifndef PV_ACTOR_H
#define PV_ACTOR_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

#define PV_ACTOR_BATCH 64

typedef struct pv_loop pv_loop_t;
typedef struct pv_actor pv_actor_t;
typedef struct pv_msg pv_msg_t;
typedef struct pv_pool pv_pool_t;

struct pv_msg {
    pv_msg_t *_Atomic next;      /* mailbox link; owned by the queue */
    int type;                    /* receiver-defined message type */
    int status;                  /* result carried by replies: 0 / -errno */
    pv_actor_t *reply_to;        /* where an answer goes, or NULL */
    void *cookie;                /* opaque to the receiver, echoed back */
    void (*free_fn)(pv_msg_t *); /* releases the message; NULL: free() */
};

typedef void (*pv_actor_fn)(pv_actor_t *self, pv_msg_t *msg);

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
pv_actor_t *pv_actor_new(pv_loop_t *loop, const char *name, pv_actor_fn fn,
                         void *state);
/* Frees pending messages with their free_fn, then the actor. */
void pv_actor_free(pv_actor_t *actor);
void *pv_actor_state(pv_actor_t *actor);
const char *pv_actor_name(pv_actor_t *actor);
pv_loop_t *pv_actor_loop(pv_actor_t *actor);

/* Any thread. Ownership of msg passes to the receiver. */
void pv_actor_send(pv_actor_t *to, pv_msg_t *msg);
/* Send msg back to msg->reply_to with msg->status = status; frees it when
 * there is no reply address. */
void pv_actor_reply(pv_msg_t *msg, int status);
/* Allocate a zeroed message of `size` bytes (size >= sizeof(pv_msg_t)). */
void *pv_msg_new(size_t size, int type);
void pv_msg_free(pv_msg_t *msg);

/* Worker pool for blocking work (argon2id, image decoding, fsync). */
typedef void (*pv_work_fn)(pv_msg_t *msg);
pv_pool_t *pv_pool_new(const char *name, int threads);
/* Runs work(msg) on a worker, then sends msg to reply_to (or frees it when
 * reply_to is NULL). Fails with -ESHUTDOWN after pv_pool_stop. */
int pv_pool_submit(pv_pool_t *pool, pv_work_fn work, pv_actor_t *reply_to,
                   pv_msg_t *msg);
/* Finishes queued work, joins the threads. */
void pv_pool_stop(pv_pool_t *pool);
void pv_pool_free(pv_pool_t *pool);

#endif
