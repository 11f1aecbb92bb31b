/*
 * sink.c — the upload sink: a PV_BODY_FILE body streamed to a temp file,
 * hashed on the way, and made durable before the handler sees it.
 *
 * Writes stay on the loop: they land in the page cache, and the
 * connection reads at most PV_HTTP_IN_WINDOW ahead, so one write is short.
 * The final fsync is another matter (it takes as long as the disk needs),
 * so it runs on the io pool: the job is a message whose answer comes back
 * to the server's actor, where its continuation runs on the loop and
 * calls the connection back. The worker sees only the fd (and whether a
 * test asked it to fail); until the answer is in, the sink is busy and its
 * connection stays alive whatever the client does, so the fd is never
 * closed under the worker. Only when no pool takes the job does the fsync
 * run in place.
 *
 * The file is made with mkostemp in the store's tmp directory, so that the
 * handler can rename it into the blob store on the same file system; it is
 * unlinked when the request ends unless the handler took it.
 */
#include "base/pv.h"
#include "http/http_int.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An fsync on the io pool, answered to the server's actor. */
struct pv_sink_job {
    pv_msg_t msg;    /* first: a pool job; status carries the outcome */
    int fd;          /* the worker's one input */
    bool fail;       /* the http.fsync failpoint fired (decided on the loop) */
    pv_sink_t *sink; /* loop side, like what follows */
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

/* On an io worker: the one blocking call. */
static void sink_fsync_work(pv_msg_t *m)
{
    pv_sink_job_t *job = (pv_sink_job_t *)m;
    m->status = job->fail ? -EIO : fsync(job->fd) == 0 ? 0 : -errno;
}

/* Back on the server's loop (the job's continuation). */
static void sink_fsynced(pv_msg_t *m)
{
    pv_sink_job_t *job = (pv_sink_job_t *)m;
    pv_sink_done_fn done = job->done;
    void *arg = job->arg;
    int rc = m->status;

    job->sink->job = NULL;
    pv_msg_free(m);
    done(arg, rc);
}

int pv_sink_sync(pv_sink_t *s, pv_pool_t *io, pv_actor_t *home, pv_sink_done_fn done, void *arg)
{
    bool fail = pv_fail("http.fsync");
    pv_sink_job_t *job = io ? pv_msg_new(sizeof(*job), 0) : NULL;

    if (job) {
        job->fd = s->fd;
        job->fail = fail;
        job->sink = s;
        job->done = done;
        job->arg = arg;
        pv_msg_expect(&job->msg, home, sink_fsynced);
        if (pv_pool_submit(io, sink_fsync_work, &job->msg) == 0) {
            s->job = job; /* its answer cannot run before we return: same loop */
            return 1;
        }
        pv_msg_free(&job->msg);
    }
    if (fail)
        return -EIO;
    return fsync(s->fd) == 0 ? 0 : -errno;
}

bool pv_sink_busy(const pv_sink_t *s) { return s->job != NULL; }

void pv_sink_abandon(pv_sink_t *s) { s->job = NULL; }

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
