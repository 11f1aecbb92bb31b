/*
 * admit.c — which connections come in. A box on a public address meets
 * clients that open connections and hold them; each one costs a file
 * descriptor and some memory, and when descriptors run out nothing at all
 * gets in, health checks included. So connections are capped: on the public
 * listener in all (max_connections) and from one address (its IPv6 /64,
 * max_connections_per_ip), on the private listener apart
 * (max_private_connections) so that a public flood never takes the health
 * checks' share. A connection past a cap is refused at once and cheaply:
 * closed, or on plain HTTP sent a fixed 503 first. Then it costs nothing
 * more.
 *
 * Where the counts live, and why so:
 *  - Totals: one atomic counter per listener kind, shared by the servers of
 *    a group (pv_admit_share_t, refcounted by them). The loop that accepts
 *    counts a connection; the loop it was dealt to uncounts it at its
 *    close. A shared atomic is the one way for two loops to keep one number
 *    without a message per close, and relaxed order is enough: the count
 *    orders no other memory, only the accepting loop adds, and others only
 *    take away, so a stale read can only see more connections than there
 *    are, never let one too many in. The other way, a share of the cap per
 *    loop, refuses on one loop while another has room, and only once the
 *    connection has been dealt, not at the accept.
 *  - Per address: a table, which atomics cannot give cheaply. Only the
 *    accepting loop touches it (pv_http_server_t.addrs): it counts an
 *    address at accept, and a connection that ends on another loop sends
 *    its ticket back there as a PV_HTTP_SRV_GONE message. The ticket is the
 *    message that carried the socket to its loop, so a close never
 *    allocates, and connections keep being dealt round-robin (one address's
 *    connections spread over the loops like anyone's).
 *
 * A group is meant to accept on one of its servers (http.h); a second
 * accepting server keeps a table of its own, so its per-address counts
 * would be apart.
 */
#include "http/http_int.h"
#include "base/pv.h"

#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PV_ADMIT_LOG_EVERY_US (10 * 1000000LL) /* refusals: one log line per 10 s */

struct pv_admit_share {
    atomic_int conns[2]; /* [0] public, [1] private listeners, all loops */
    atomic_int refs;     /* servers of the group */
};

/* One address and its connections; n == 0 marks an empty slot. */
typedef struct admit_slot {
    uint8_t key[16];
    uint32_t n;
} admit_slot_t;

/* Open addressing with linear probing, at most half full, keyed SipHash so
 * that clients cannot aim addresses at one chain. */
struct pv_admit_table {
    admit_slot_t *slot;
    size_t cap; /* a power of two */
    size_t used;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
};

static atomic_int *admit_total(pv_admit_share_t *sh, int kind)
{
    return &sh->conns[kind == PV_LISTEN_PRIVATE];
}

/* ---------------------------------------------------------------- *
 * Addresses
 * ---------------------------------------------------------------- */

/* The peer's address in 16 bytes, IPv4 as ::ffff:a.b.c.d (so an IPv4
 * client counts the same on a dual-stack socket). false: not IP. */
static bool admit_addr(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa->sa_family == AF_INET) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

/* What the per-address cap counts under: an IPv4 address as it is, an IPv6
 * one by its /64 (a host with privacy addresses, or a subscriber, holds a
 * whole /64 and could pick a fresh address per connection). */
static void admit_key(const uint8_t addr[16], uint8_t key[16])
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(key, addr, 16);
    if (memcmp(addr, v4mapped, 12) != 0)
        memset(key + 8, 0, 8);
}

static bool admit_exempt(const pv_http_server_t *s, const uint8_t addr[16])
{
    for (size_t i = 0; i < s->nexempt; i++)
        if (memcmp(s->exempt[i], addr, 16) == 0)
            return true;
    return false;
}

/* cfg.ip_cap_exempt ("a, b c") into s->exempt. 0, -EINVAL (*bad: the
 * list from the entry that is no address on), -ENOMEM. */
static int admit_parse_exempt(pv_http_server_t *s, const char **bad)
{
    const char *list = s->cfg.ip_cap_exempt;
    size_t most = 1;
    if (!list || !*list)
        return 0;
    for (const char *p = list; *p; p++)
        most += *p == ',' || *p == ' ';
    s->exempt = pv_fail("http.alloc") ? NULL : calloc(most, sizeof(*s->exempt));
    if (!s->exempt)
        return -ENOMEM;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (!n)
            break;
        char entry[INET6_ADDRSTRLEN];
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
        struct sockaddr_in a4 = {.sin_family = AF_INET};
        bool fits = n < sizeof(entry);
        if (fits) {
            memcpy(entry, p, n);
            entry[n] = '\0';
        }
        if (fits && inet_pton(AF_INET, entry, &a4.sin_addr) == 1) {
            admit_addr((const struct sockaddr *)&a4, s->exempt[s->nexempt++]);
        } else if (fits && inet_pton(AF_INET6, entry, &a6.sin6_addr) == 1) {
            admit_addr((const struct sockaddr *)&a6, s->exempt[s->nexempt++]);
        } else {
            *bad = p;
            return -EINVAL;
        }
        p += n;
    }
    return 0;
}

/* ---------------------------------------------------------------- *
 * The per-address table (the accepting loop's only)
 * ---------------------------------------------------------------- */

static size_t admit_home(const pv_admit_table_t *t, const uint8_t key[16])
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;
    crypto_shorthash(h, key, 16, t->hkey);
    memcpy(&v, h, sizeof(v));
    return (size_t)v & (t->cap - 1);
}

/* The slot holding key, or the empty one where it would go. The table is
 * never full, so the probe ends. */
static admit_slot_t *admit_find(const pv_admit_table_t *t, const uint8_t key[16])
{
    for (size_t i = admit_home(t, key);; i = (i + 1) & (t->cap - 1)) {
        admit_slot_t *sl = &t->slot[i];
        if (!sl->n || memcmp(sl->key, key, 16) == 0)
            return sl;
    }
}

static uint32_t admit_count(const pv_admit_table_t *t, const uint8_t key[16])
{
    /* cap 0: made, but its first slots could not be (a failed grow) */
    return t && t->cap ? admit_find(t, key)->n : 0;
}

/* Doubles the table (or makes it). 0 or -ENOMEM. */
static int admit_grow(pv_http_server_t *s)
{
    pv_admit_table_t *t = s->addrs;
    if (!t) {
        t = pv_fail("http.alloc") ? NULL : calloc(1, sizeof(*t));
        if (!t)
            return -ENOMEM;
        crypto_shorthash_keygen(t->hkey);
        s->addrs = t;
    }
    size_t cap = t->cap ? t->cap * 2 : 64;
    admit_slot_t *old = t->slot, *nw = pv_fail("http.alloc") ? NULL : calloc(cap, sizeof(*nw));
    if (!nw)
        return -ENOMEM;
    size_t old_cap = t->cap;
    t->slot = nw;
    t->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].n)
            *admit_find(t, old[i].key) = old[i];
    free(old);
    return 0;
}

static int admit_inc(pv_http_server_t *s, const uint8_t key[16])
{
    if ((!s->addrs || (s->addrs->used + 1) * 2 > s->addrs->cap) && admit_grow(s) < 0)
        return -ENOMEM;
    admit_slot_t *sl = admit_find(s->addrs, key);
    if (!sl->n) {
        memcpy(sl->key, key, 16);
        s->addrs->used++;
    }
    sl->n++;
    return 0;
}

/* One connection of key is gone. An address with none left leaves the
 * table, and the entries after it move back so that no probe chain breaks
 * (Knuth's algorithm R: no tombstones to sweep later). */
static void admit_dec(pv_admit_table_t *t, const uint8_t key[16])
{
    admit_slot_t *sl = t ? admit_find(t, key) : NULL;
    if (!sl || !sl->n || --sl->n)
        return;
    t->used--;
    size_t mask = t->cap - 1, hole = (size_t)(sl - t->slot);
    for (size_t j = (hole + 1) & mask; t->slot[j].n; j = (j + 1) & mask) {
        size_t home = admit_home(t, t->slot[j].key);
        if (((hole - home) & mask) < ((j - home) & mask)) {
            t->slot[hole] = t->slot[j];
            t->slot[j].n = 0;
            hole = j;
        }
    }
}

/* ---------------------------------------------------------------- *
 * Refusing
 * ---------------------------------------------------------------- */

/* Counts a refusal and says so in the log at most once per 10 s, with how
 * many there were: a flood must not become a flood of log lines. */
static void admit_note(pv_http_server_t *s, const char *why)
{
    s->refused++;
    int64_t now = pv_mono_us();
    if (s->refused_log_us && now - s->refused_log_us < PV_ADMIT_LOG_EVERY_US)
        return;
    pv_log(PV_LOG_WARN, PV_HTTP_LOG, NULL, NULL, "refused %llu connection%s (last: %s)",
           (unsigned long long)s->refused, s->refused == 1 ? "" : "s", why);
    s->refused = 0;
    s->refused_log_us = now;
}

/* The answer to a plain-HTTP connection past a cap: fixed, so that the
 * refusal costs no allocation and no head to build. */
#define PV_ADMIT_BUSY_BODY                                                                         \
    "{\"error\":{\"code\":\"too_many_connections\","                                               \
    "\"message\":\"too many connections; try again in a moment\"}}"
_Static_assert(sizeof(PV_ADMIT_BUSY_BODY) - 1 == 97, "the 503's Content-Length below");

void pv_admit_refuse(pv_http_server_t *s, evutil_socket_t fd, bool tls, const char *why)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "Content-Type: application/json; charset=utf-8\r\n"
                               "Content-Length: 97\r\n"
                               "Retry-After: 1\r\n"
                               "Connection: close\r\n"
                               "\r\n" PV_ADMIT_BUSY_BODY;
    admit_note(s, why);
    if (!tls) {
        /* One try, never a wait: a socket buffer that is full drops it.
         * What the client sent is read first (once), so that the close is
         * less likely to go out as a reset ahead of the answer. */
        char sink[2048];
        (void)recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        (void)send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(fd, SHUT_WR);
    }
    evutil_closesocket(fd);
}

/* ---------------------------------------------------------------- *
 * Tickets
 * ---------------------------------------------------------------- */

/* A ticket freed with its message: never delivered (its server's mailbox
 * freed with the server), or done with. */
static void admit_ticket_free(pv_msg_t *m)
{
    pv_conn_ticket_t *t = (pv_conn_ticket_t *)m;
    if (t->fd >= 0)
        evutil_closesocket(t->fd);
    if (t->share)
        atomic_fetch_sub_explicit(admit_total(t->share, t->kind), 1, memory_order_relaxed);
    free(t);
}

pv_conn_ticket_t *pv_admit_accept(pv_http_server_t *s, int kind, bool tls, evutil_socket_t fd,
                                  const struct sockaddr *sa, int salen)
{
    const pv_http_config_t *cfg = &s->cfg;
    atomic_int *total = admit_total(s->share, kind);
    bool public = kind != PV_LISTEN_PRIVATE;
    int cap = public ? cfg->max_connections : cfg->max_private_connections;
    uint8_t addr[16], key[16];

    if (salen < 0 || (size_t)salen > sizeof(struct sockaddr_storage)) {
        evutil_closesocket(fd);
        return NULL;
    }
    if (atomic_load_explicit(total, memory_order_relaxed) >= cap) {
        pv_admit_refuse(s, fd, tls, public ? "max_connections" : "max_private_connections");
        return NULL;
    }
    bool per_addr = public && admit_addr(sa, addr) && !admit_exempt(s, addr);
    if (per_addr) {
        admit_key(addr, key);
        if (admit_count(s->addrs, key) >= (uint32_t)cfg->max_connections_per_ip) {
            pv_admit_refuse(s, fd, tls, "max_connections_per_ip");
            return NULL;
        }
    }
    /* Part of accepting: without it there is no connection yet to answer
     * on (the seam calls it http.accept, like the accept itself). */
    pv_conn_ticket_t *t = pv_fail("http.accept") ? NULL : calloc(1, sizeof(*t));
    if (t)
        t->msg.type = PV_HTTP_SRV_CONN;
    if (t && per_addr && admit_inc(s, key) < 0) {
        pv_msg_free(&t->msg); /* no free_fn yet: nothing of it counted */
        t = NULL;
    }
    if (!t) {
        evutil_closesocket(fd);
        return NULL;
    }
    atomic_fetch_add_explicit(total, 1, memory_order_relaxed);
    t->msg.free_fn = admit_ticket_free;
    t->fd = fd;
    t->kind = kind;
    t->tls = tls;
    memcpy(&t->sa, sa, (size_t)salen);
    t->share = s->share;
    if (per_addr) {
        t->acceptor = s;
        memcpy(t->key, key, 16);
    }
    return t;
}

void pv_admit_release(pv_http_server_t *here, pv_conn_ticket_t *t)
{
    if (t->fd >= 0)
        evutil_closesocket(t->fd);
    t->fd = -1;
    if (t->share)
        atomic_fetch_sub_explicit(admit_total(t->share, t->kind), 1, memory_order_relaxed);
    t->share = NULL;
    pv_http_server_t *a = t->acceptor;
    if (a && a != here && !here->freeing) {
        t->msg.type = PV_HTTP_SRV_GONE; /* back to the loop that counts it */
        pv_actor_send(a->actor, &t->msg);
        return;
    }
    if (a && a == here) /* (a server being freed: its group's counts go with it) */
        admit_dec(here->addrs, t->key);
    t->acceptor = NULL;
    pv_msg_free(&t->msg);
}

void pv_admit_gone(pv_http_server_t *s, pv_conn_ticket_t *t)
{
    if (t->acceptor == s)
        admit_dec(s->addrs, t->key);
    t->acceptor = NULL;
    pv_msg_free(&t->msg);
}

/* ---------------------------------------------------------------- *
 * A server's part
 * ---------------------------------------------------------------- */

int pv_admit_init(pv_http_server_t *s, const char **bad)
{
    s->share = pv_fail("http.alloc") ? NULL : calloc(1, sizeof(*s->share));
    if (!s->share)
        return -ENOMEM;
    atomic_init(&s->share->refs, 1);
    return admit_parse_exempt(s, bad);
}

static void admit_share_drop(pv_admit_share_t *sh)
{
    if (sh && atomic_fetch_sub_explicit(&sh->refs, 1, memory_order_acq_rel) == 1)
        free(sh);
}

void pv_admit_group(pv_http_server_t **servers, int n)
{
    for (int i = 1; i < n; i++) {
        admit_share_drop(servers[i]->share);
        servers[i]->share = servers[0]->share;
        atomic_fetch_add_explicit(&servers[0]->share->refs, 1, memory_order_relaxed);
    }
}

void pv_admit_free(pv_http_server_t *s)
{
    if (s->addrs)
        free(s->addrs->slot);
    free(s->addrs);
    s->addrs = NULL;
    free(s->exempt);
    s->exempt = NULL;
    admit_share_drop(s->share);
    s->share = NULL;
}

int pv_admit_conns(const pv_http_server_t *s, int kind)
{
    return s->share ? atomic_load_explicit(admit_total(s->share, kind), memory_order_relaxed) : 0;
}
