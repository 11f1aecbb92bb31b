/*
 * sink.c — the upload sink: a PV_BODY_FILE body streamed to a temp file,
 * hashed on the way, and made durable before the handler sees it.
 *
 * Writes stay on the loop: they land in the page cache, and the
 * connection reads at most PV_HTTP_IN_WINDOW ahead, so one write is short.
 * The final fsync is another matter (it takes as long as the disk needs),
 * so it runs off the loop and its outcome comes back to the loop as a
 * callback; until then the sink is busy and its connection stays alive,
 * whatever the client does. Only when nothing off the loop can be had does
 * the fsync run in place.
 *
 * The file is made with mkostemp in the store's tmp directory, so that the
 * handler can rename it into the blob store on the same file system; it is
 * unlinked when the request ends unless the handler took it.
 */
#include "http/http_int.h"
#include "base/pv.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* An fsync handed to a thread; the loop hears back through efd. */
struct pv_sink_job {
    int fd;
    int efd;
    _Atomic int result; /* 0 or -errno, written by the thread */
    struct event *ev;
    pv_sink_t *sink;
    pv_sink_done_fn done;
    void *arg;
};

void pv_sink_init(pv_sink_t *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

int pv_sink_open(pv_sink_t *s, const char *dir)
{
    if (!dir)
        dir = "/tmp";
    size_t cap = strlen(dir) + sizeof("/.pv-upload-XXXXXX");
    s->path = pv_fail("http.alloc") ? NULL : malloc(cap);
    if (!s->path)
        return -ENOMEM;
    snprintf(s->path, cap, "%s/.pv-upload-XXXXXX", dir);
    if (pv_fail("http.tmpfile"))
        return -EIO;
    s->fd = mkostemp(s->path, O_CLOEXEC);
    if (s->fd < 0)
        return -errno;
    s->made = true;
    s->file.path = s->path;
    s->md = pv_fail("http.alloc") ? NULL : EVP_MD_CTX_new();
    if (!s->md || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1)
        return -ENOMEM;
    return 0;
}

int pv_sink_write(pv_sink_t *s, const void *p, size_t n)
{
    int rc = pv_fail("http.write") ? -EIO : pv_write_all(s->fd, p, n);
    if (rc < 0)
        return rc;
    EVP_DigestUpdate(s->md, p, n);
    return 0;
}

void pv_sink_finish(pv_sink_t *s, uint64_t bytes)
{
    EVP_DigestFinal_ex(s->md, s->file.sha256, NULL);
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
    s->file.bytes = bytes;
}

static void sink_job_free(pv_sink_job_t *job)
{
    if (job->ev)
        event_free(job->ev);
    if (job->efd >= 0)
        close(job->efd);
    free(job);
}

static void *sink_fsync_thread(void *arg)
{
    pv_sink_job_t *job = arg;
    uint64_t one = 1;
    int rc = fsync(job->fd) == 0 ? 0 : -errno;
    atomic_store_explicit(&job->result, rc, memory_order_release);
    /* The eventfd write is what hands the job back to the loop. */
    while (write(job->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    return NULL;
}

static void sink_fsync_done(evutil_socket_t fd, short what, void *arg)
{
    pv_sink_job_t *job = arg;
    uint64_t v;

    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno == EAGAIN)
        return; /* spurious */
    int rc = atomic_load_explicit(&job->result, memory_order_acquire);
    pv_sink_done_fn done = job->done;
    void *done_arg = job->arg;
    job->sink->job = NULL;
    sink_job_free(job);
    done(done_arg, rc);
}

int pv_sink_sync(pv_sink_t *s, struct event_base *base, pv_sink_done_fn done, void *arg)
{
    pv_sink_job_t *job = calloc(1, sizeof(*job));
    pthread_attr_t attr;
    pthread_t th;

    if (!job)
        goto inline_sync;
    job->fd = s->fd;
    job->sink = s;
    job->done = done;
    job->arg = arg;
    job->efd = eventfd(0, EFD_CLOEXEC);
    if (job->efd < 0)
        goto inline_sync;
    job->ev = event_new(base, job->efd, EV_READ, sink_fsync_done, job);
    if (!job->ev || event_add(job->ev, NULL) < 0)
        goto inline_sync;
    if (pv_fail("http.fsync")) {
        atomic_store(&job->result, -EIO);
        uint64_t one = 1;
        if (write(job->efd, &one, sizeof(one)) < 0)
            goto inline_sync;
        s->job = job;
        return 1;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, sink_fsync_thread, job);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        goto inline_sync;
    s->job = job;
    return 1;

inline_sync:
    if (job)
        sink_job_free(job);
    return fsync(s->fd) == 0 ? 0 : -errno;
}

bool pv_sink_busy(const pv_sink_t *s) { return s->job != NULL; }

void pv_sink_abandon(pv_sink_t *s)
{
    pv_sink_job_t *job = s->job;
    if (!job)
        return;
    /* Wait for its thread: it holds the fd. */
    uint64_t v;
    while (read(job->efd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    sink_job_free(job);
    s->job = NULL;
}

void pv_sink_close(pv_sink_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

void pv_sink_release(pv_sink_t *s)
{
    pv_sink_close(s);
    if (s->made && !s->taken)
        unlink(s->path);
    s->made = false;
    free(s->path);
    s->path = NULL;
    if (s->md)
        EVP_MD_CTX_free(s->md);
    s->md = NULL;
}
