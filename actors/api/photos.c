/*
 * photos.c — uploading, listing, serving and deleting photos.
 *
 * An upload is streamed to a temp file by the HTTP layer (with its SHA-256)
 * and then goes through three owners:
 *   1. a worker thread splits a multipart body into one temp file per part,
 *      skips parts the user already has, decodes each image fully (so that
 *      nothing undecodable is kept), makes its thumbnail, and makes both
 *      blobs durable (temp -> fsync -> rename -> fsync dir);
 *   2. the store writer commits the records (dedupe re-checked inside the
 *      transaction, blob references counted) — only now is it acknowledged;
 *   3. the request's loop answers 201 (or 200 for an exact duplicate).
 * A multipart upload is all or nothing: one undecodable part refuses all.
 * Blobs made durable for a request whose commit then fails have no
 * reference; the store collects them at the next start.
 *
 * Between 1 and 2 the user may delete photos, and those may hold the same
 * blobs (a thumbnail is shared by every photo with the same pixels) or be
 * the very photo a part duplicates. So the blobs a part made durable are
 * pinned until the commit (store.h: a delete then leaves their files), and
 * a part the worker found to be a duplicate keeps its bytes until the
 * commit: if that photo is gone by then, the part goes back to a worker
 * for the ingest it skipped, and the commit is tried again.
 */
#include "actors/api/api.h"
#include "app/kit.h"
#include "app/metrics.h"
#include "base/pv.h"
#include "base/text.h"
#include "http/multipart.h"
#include "media/image.h"
#include "model/photos.h"
#include "model/usage.h"
#include "model/videos.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UPLOAD_MAX_PARTS 100

typedef struct upload_part {
    char tmp[512];              /* the part's bytes (temp file) */
    char thumb_tmp[512];        /* its thumbnail (temp file) */
    char filename[PV_FILENAME_MAX + 1];
    uint64_t bytes;
    uint8_t sha256[32];
    uint8_t thumb_sha256[32];
    pv_image_info_t info;
    bool duplicate;             /* the user already has these bytes */
    bool ingested;              /* decoded, thumbnailed, both blobs durable and pinned */
    bool big;                   /* decoded on the decode_big pool */
    pv_blob_pin_t pin, thumb_pin; /* its blobs, until its record is committed */
    pv_photo_t photo;           /* the record (new or existing) */
    json_t *json;               /* its answer, made inside the commit */
} upload_part_t;

typedef struct upload_call {
    pv_call_t base;
    pv_app_t *app;
    uint8_t user_id[16];
    bool multipart;
    char boundary[80];
    char body_path[512];        /* the request body, ours to remove */
    char raw_filename[PV_FILENAME_MAX + 1];
    int n;
    int status;                 /* HTTP status when failed in the worker */
    char code[48];
    char message[512];
    int n_big;                  /* parts waiting for the decode_big pool */
    uint64_t used;              /* user_storage_bytes: what the user held */
    int max_parts;              /* room in parts[]: 1 for a raw body */
    upload_part_t parts[];      /* ~1.8 KB each: sized per request */
} upload_call_t;

static const char *const g_types[] = {"image/jpeg", "image/png", "image/webp",
                                      "image/heic", "image/heif"};

static bool supported_type(const char *ct)
{
    for (size_t i = 0; i < PV_ARRAY_LEN(g_types); i++) {
        size_t n = strlen(g_types[i]);
        if (strncasecmp(ct, g_types[i], n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' '))
            return true;
    }
    return false;
}

/* Keep a display name: its last path segment, valid UTF-8 without control
 * characters (an invalid byte becomes U+FFFD), cut at a character. A name
 * that is not UTF-8 would make every later answer naming it fail. */
static void clean_filename(const char *in, char *out, size_t outlen)
{
    const char *slash = strrchr(in, '/'), *bslash = strrchr(in, '\\');
    if (slash)
        in = slash + 1;
    if (bslash && bslash + 1 > in)
        in = bslash + 1;
    const unsigned char *s = (const unsigned char *)in;
    size_t n = strlen(in), j = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = pv_utf8_len(s + i, n - i);
        const char *piece = (const char *)s + i;
        size_t plen = cl;
        if (cl == 0) { /* not UTF-8: the replacement character */
            piece = "\xef\xbf\xbd";
            plen = 3;
            cl = 1;
        } else if (cl == 1 && (s[i] < 0x20 || s[i] == 0x7f)) {
            i++;
            continue;
        }
        if (j + plen + 1 > outlen)
            break;
        memcpy(out + j, piece, plen);
        j += plen;
        i += cl;
    }
    out[j] = '\0';
}

__attribute__((format(printf, 4, 5))) static void upload_fail(upload_call_t *u, int status,
                                                               const char *code, const char *fmt, ...)
{
    u->status = status;
    snprintf(u->code, sizeof(u->code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->message, sizeof(u->message), fmt, ap);
    va_end(ap);
}

/* ---------------- worker side ---------------- */

static void part_cleanup(upload_part_t *p)
{
    if (*p->tmp)
        unlink(p->tmp);
    if (*p->thumb_tmp)
        unlink(p->thumb_tmp);
    *p->tmp = *p->thumb_tmp = '\0';
}

/* Does the user already have a photo with these bytes? (a hint; the
 * store writer decides). */
static bool already_have(pv_app_t *app, const uint8_t user[16], const uint8_t sha[32])
{
    uint8_t key[48];
    pv_key2(key, user, sha, 32);
    pv_txn_t txn;
    if (pv_txn_begin(app->store, &txn, false) < 0)
        return false;
    pv_val_t v;
    bool have = pv_txn_get(&txn, PV_DB_PHOTO_SHA, key, sizeof(key), &v) == 0;
    pv_txn_abort(&txn);
    return have;
}

/* The decode memory budget (decode_memory, B): a decode is estimated from
 * the photo's declared size and pixel format before any pixel is decoded
 * (a 630 KB PNG can declare 9000x9000 RGBA16: 650 MB). One that fits in
 * B / 2 / (work threads) runs on the work pool; a bigger one waits for the
 * one thread of the decode_big pool and may take B / 2; past that, or past
 * max_photo_pixels, it is refused (413). All decodes together stay within
 * B, and small uploads (the common case) never wait behind big ones. */
static pv_image_limits_t decode_limits(const pv_app_t *app, bool big)
{
    uint64_t half = app->cfg.decode_memory / 2;
    int n = pv_pool_threads(app->work);
    return (pv_image_limits_t){(int64_t)app->cfg.max_photo_pixels,
                               big ? half : half / (uint64_t)(n > 0 ? n : 1)};
}

/* Decode, thumbnail and make both blobs durable; -E2BIG: not on this pool. */
static int ingest_part(upload_call_t *u, upload_part_t *p, bool big)
{
    char err[200] = "";
    snprintf(p->thumb_tmp, sizeof(p->thumb_tmp), "%s/thumb-XXXXXX", pv_store_tmp_dir(u->app->store));
    int fd = mkstemp(p->thumb_tmp);
    if (fd < 0) {
        *p->thumb_tmp = '\0';
        return -errno;
    }
    close(fd);
    pv_image_limits_t lim = decode_limits(u->app, big);
    int rc = pv_image_ingest_limited(p->tmp, &lim, &p->info, p->thumb_tmp, NULL, err, sizeof(err));
    if (rc == -E2BIG && !big) { /* the caller sends it to decode_big */
        unlink(p->thumb_tmp);
        *p->thumb_tmp = '\0';
        return rc;
    }
    if (rc == -EINVAL || rc == -EMSGSIZE || rc == -E2BIG) {
        const char *name = *p->filename ? p->filename : "the photo";
        if (rc == -EINVAL)
            upload_fail(u, 415, "unsupported_media_type", "%s%s%s", *p->filename ? p->filename : "",
                        *p->filename ? ": " : "", err);
        else if (rc == -EMSGSIZE)
            upload_fail(u, 413, "photo_too_large", "%s: %s", name, err);
        else
            upload_fail(u, 413, "photo_too_large",
                        "%s: %s, more than this appliance gives one photo (decode_memory)", name, err);
        return rc;
    }
    if (rc < 0)
        return rc;
    if ((rc = pv_sha256_file(p->thumb_tmp, p->thumb_sha256, NULL)) < 0)
        return rc;
    if ((rc = pv_blob_commit_file(u->app->store, p->thumb_tmp, p->thumb_sha256, &p->thumb_pin)) < 0)
        return rc;
    *p->thumb_tmp = '\0';
    if ((rc = pv_blob_commit_file(u->app->store, p->tmp, p->sha256, &p->pin)) < 0)
        return rc;
    *p->tmp = '\0';
    p->ingested = true;
    return 0;
}


/* ---- splitting a multipart body into one temp file per "file" part ---- */

typedef struct split {
    upload_call_t *u;
    const char *tmp_dir;
    upload_part_t *parts;
    int max, n;
    upload_part_t *cur;      /* the file part being written, or NULL */
    int fd;
    EVP_MD_CTX *md;
    char *msg;
    size_t msglen;
} split_t;

static int split_begin(void *ctx, const pv_mp_part_t *h)
{
    split_t *sp = ctx;
    sp->cur = NULL;
    if (strcmp(h->name, "file") != 0)
        return 0; /* other form fields are ignored */
    if (sp->n == sp->max) {
        snprintf(sp->msg, sp->msglen, "at most %d files in one upload", sp->max);
        return -E2BIG;
    }
    upload_part_t *p = &sp->parts[sp->n++];
    memset(p, 0, sizeof(*p));
    clean_filename(h->filename, p->filename, sizeof(p->filename));
    snprintf(p->tmp, sizeof(p->tmp), "%s/part-XXXXXX", sp->tmp_dir);
    sp->fd = mkstemp(p->tmp);
    if (sp->fd < 0) {
        *p->tmp = '\0';
        return -errno;
    }
    if (!EVP_DigestInit_ex(sp->md, EVP_sha256(), NULL))
        return -ENOMEM;
    sp->cur = p;
    return 0;
}

static int split_data(void *ctx, const void *data, size_t len)
{
    split_t *sp = ctx;
    if (!sp->cur)
        return 0;
    EVP_DigestUpdate(sp->md, data, len);
    sp->cur->bytes += len;
    return pv_write_all(sp->fd, data, len);
}

static int split_end(void *ctx)
{
    split_t *sp = ctx;
    if (!sp->cur)
        return 0;
    EVP_DigestFinal_ex(sp->md, sp->cur->sha256, NULL);
    close(sp->fd);
    sp->fd = -1;
    if (sp->cur->bytes == 0) {
        snprintf(sp->msg, sp->msglen, "%s: the file is empty", sp->cur->filename);
        return -ENODATA; /* not an image: 415, like any undecodable file */
    }
    sp->cur = NULL;
    return 0;
}

/* Split `body` into parts[]; 0, -EINVAL (bad body, msg says why), -E2BIG,
 * or an I/O error. Temp files of parts are removed by part_cleanup. */
static int split_multipart(upload_call_t *u, const char *body)
{
    static const pv_mp_callbacks_t cb = {split_begin, split_data, split_end};
    split_t sp = {.u = u, .tmp_dir = pv_store_tmp_dir(u->app->store), .parts = u->parts,
                  .max = u->max_parts, .fd = -1, .msg = u->message,
                  .msglen = sizeof(u->message)};
    pv_multipart_t *mp = malloc(sizeof(*mp));
    sp.md = EVP_MD_CTX_new();
    int fd = open(body, O_RDONLY | O_CLOEXEC);
    int rc = !mp || !sp.md ? -ENOMEM : fd < 0 ? -errno : 0;
    if (rc == 0)
        rc = pv_multipart_init(mp, u->boundary, &cb, &sp);
    char buf[65536];
    while (rc == 0) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -errno;
        else if (n == 0)
            break;
        else
            rc = pv_multipart_feed(mp, buf, (size_t)n);
    }
    if (rc == 0)
        rc = pv_multipart_finish(mp);
    if (rc == 0 && sp.n == 0) {
        snprintf(u->message, sizeof(u->message), "no part named \"file\" in the upload");
        rc = -EINVAL;
    } else if ((rc == -EINVAL || rc == -EMSGSIZE) && !*u->message) {
        snprintf(u->message, sizeof(u->message), "the multipart body is malformed or truncated");
        rc = -EINVAL;
    }
    if (sp.fd >= 0)
        close(sp.fd);
    if (fd >= 0)
        close(fd);
    EVP_MD_CTX_free(sp.md);
    free(mp);
    u->n = sp.n;
    return rc;
}

/* Every part not ingested yet: a duplicate of one of the user's photos
 * (kept as it is: the commit decides), or decoded and made durable here,
 * or marked for decode_big. On failure every temp file goes. */
static int ingest_parts(upload_call_t *u)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < u->n; i++) {
        upload_part_t *p = &u->parts[i];
        if (p->ingested || p->big)
            continue;
        if (already_have(u->app, u->user_id, p->sha256)) {
            p->duplicate = true; /* its bytes stay until the commit */
            continue;
        }
        p->duplicate = false;
        /* A decode that holds the file takes about twice it besides its
         * pixels: a file that big goes to decode_big unread, not read here
         * to learn it. A JPEG streams: its header decides (ingest_part). */
        if (2 * p->bytes > decode_limits(u->app, false).max_decode_bytes &&
            pv_image_holds_file(p->tmp))
            rc = -E2BIG;
        else
            rc = ingest_part(u, p, false);
        if (rc == -E2BIG) { /* next step, on decode_big */
            p->big = true;
            u->n_big++;
            rc = 0;
        }
    }
    for (int i = 0; rc < 0 && i < u->n; i++)
        part_cleanup(&u->parts[i]);
    return rc;
}

static void upload_work(pv_msg_t *m)
{
    upload_call_t *u = (upload_call_t *)m;
    int rc = 0;
    if (u->multipart) {
        rc = split_multipart(u, u->body_path);
        unlink(u->body_path);
        if (rc == -EINVAL || rc == -E2BIG) {
            u->status = 400;
            snprintf(u->code, sizeof(u->code), "bad_multipart");
        } else if (rc == -ENODATA) {
            u->status = 415;
            snprintf(u->code, sizeof(u->code), "unsupported_media_type");
        }
    } else {
        u->n = 1;
        upload_part_t *p = &u->parts[0];
        snprintf(p->tmp, sizeof(p->tmp), "%s", u->body_path);
        snprintf(p->filename, sizeof(p->filename), "%s", u->raw_filename);
        rc = pv_sha256_file(p->tmp, p->sha256, &p->bytes);
    }
    if (rc == 0)
        rc = ingest_parts(u);
    for (int i = 0; rc < 0 && i < u->n; i++)
        part_cleanup(&u->parts[i]);
    u->base.result = rc;
}

/* Again, for parts whose photo was deleted after the worker found them
 * duplicates (upload_committed). */
static void upload_redo_work(pv_msg_t *m)
{
    upload_call_t *u = (upload_call_t *)m;
    u->base.result = ingest_parts(u);
}

/* The big parts, one upload at a time (the pool has one thread). */
static void upload_big_work(pv_msg_t *m)
{
    upload_call_t *u = (upload_call_t *)m;
    int rc = 0;
    for (int i = 0; rc == 0 && i < u->n; i++)
        if (u->parts[i].big && (rc = ingest_part(u, &u->parts[i], true)) == 0)
            u->parts[i].big = false;
    for (int i = 0; rc < 0 && i < u->n; i++)
        part_cleanup(&u->parts[i]);
    u->n_big = 0;
    u->base.result = rc;
}

/* ---------------- store side ---------------- */

/* user_storage_bytes: what the user holds plus this upload must fit. */
static int quota_check(pv_txn_t *txn, upload_call_t *u)
{
    uint64_t quota = u->app->cfg.user_storage_bytes, add = 0;
    if (!quota)
        return 0;
    pv_usage_t use;
    int rc = pv_user_usage(txn, u->user_id, &use);
    if (rc < 0)
        return rc;
    for (int i = 0; i < (u->n ? u->n : 1); i++) /* before the split: the body */
        add += u->parts[i].bytes;
    u->used = use.photo_bytes + use.video_bytes;
    return u->used + add > quota ? -EDQUOT : 0;
}

/* A part's answer, made while its records are written: if it cannot be
 * made, the write fails with it, and nothing is saved that the client
 * would not hear of. (apply may run again: the last one counts.) */
static int part_json(upload_call_t *u, upload_part_t *part)
{
    json_decref(part->json);
    part->json = pv_photo_json(u->app->media, &part->photo);
    if (part->json && part->duplicate &&
        json_object_set_new(part->json, "duplicate", json_true()) < 0)
        return -ENOMEM;
    return part->json ? 0 : -ENOMEM;
}

static int upload_apply(pv_txn_t *txn, void *arg)
{
    upload_call_t *u = arg;
    int64_t now = pv_now_ms();
    int qrc = quota_check(txn, u);
    if (qrc < 0)
        return qrc;
    for (int i = 0; i < u->n; i++) {
        upload_part_t *part = &u->parts[i];
        uint8_t skey[48];
        pv_key2(skey, u->user_id, part->sha256, 32);
        pv_val_t v;
        int rc = pv_txn_get(txn, PV_DB_PHOTO_SHA, skey, sizeof(skey), &v);
        if (rc == 0 && v.len == 16) {
            uint8_t id[16];
            memcpy(id, v.data, 16);
            part->duplicate = true;
            if ((rc = pv_photo_get(txn, u->user_id, id, &part->photo)) < 0 ||
                (rc = part_json(u, part)) < 0)
                return rc;
            continue;
        }
        if (!part->ingested)
            return -EAGAIN; /* a duplicate when the worker looked, deleted since */
        part->duplicate = false;
        pv_photo_t *p = &part->photo;
        *p = (pv_photo_t){.v = 1, .bytes = part->bytes, .width = (uint32_t)part->info.width,
                          .height = (uint32_t)part->info.height,
                          .orientation = part->info.orientation,
                          .taken_ms = part->info.taken_ms, .created_ms = now};
        pv_id_new(p->id);
        memcpy(p->user_id, u->user_id, 16);
        memcpy(p->sha256, part->sha256, 32);
        memcpy(p->thumb_sha256, part->thumb_sha256, 32);
        pv_strlcpy(p->content_type, part->info.content_type, sizeof(p->content_type));
        pv_strlcpy(p->filename, part->filename, sizeof(p->filename));
        if ((rc = pv_photo_put(txn, p)) < 0 ||
            (rc = pv_txn_put(txn, PV_DB_PHOTO_SHA, skey, sizeof(skey), p->id, 16, true)) < 0 ||
            (rc = pv_blob_ref(txn, p->sha256)) < 0 || (rc = pv_blob_ref(txn, p->thumb_sha256)) < 0 ||
            (rc = part_json(u, part)) < 0)
            return rc;
    }
    return 0;
}

/* ---------------- loop side ---------------- */

/* The call's message free_fn: every way it ends (answered, failed to
 * hand on, dropped at a stop) lets go of its temp files and pins. */
static void upload_msg_free(pv_msg_t *m)
{
    upload_call_t *u = (upload_call_t *)m;
    for (int i = 0; i < u->max_parts; i++) {
        upload_part_t *p = &u->parts[i];
        part_cleanup(p);
        json_decref(p->json);
        pv_blob_unpin(u->app->store, &p->pin);
        pv_blob_unpin(u->app->store, &p->thumb_pin);
    }
    free(m);
}

static void upload_free(pv_call_t *c) { pv_call_free(c); }

static void upload_ingested(pv_call_t *c);

static void upload_committed(pv_call_t *c)
{
    upload_call_t *u = (upload_call_t *)c;
    int rc = c->sreq.msg.status;
    if (rc == -EAGAIN) { /* a duplicate's photo was deleted meanwhile: ingest it, commit again */
        pv_call_work(c, u->app->work, upload_redo_work, upload_ingested);
        return;
    }
    if (rc == -EDQUOT) {
        pv_api_quota_exceeded(c->req, u->used, u->app->cfg.user_storage_bytes);
        upload_free(c);
        return;
    }
    if (rc < 0) {
        pv_api_fail(c->req, rc);
        upload_free(c);
        return;
    }
    /* Committed: from here on only what cannot fail but for a real lack
     * of memory (jansson), with the parts' answers made in the commit. */
    bool any_new = false;
    json_t *list = json_array();
    for (int i = 0; i < u->n; i++) {
        if (!u->parts[i].duplicate) {
            any_new = true;
            pv_metrics_add(u->app->metrics, PV_M_UPLOADS, 1);
            pv_metrics_add(u->app->metrics, PV_M_UPLOAD_BYTES, (long long)u->parts[i].photo.bytes);
        }
        json_array_append(list, u->parts[i].json);
    }
    json_t *body;
    if (u->multipart) {
        body = json_pack("{s:o}", "photos", list);
    } else {
        body = json_pack("{s:O}", "photo", json_array_get(list, 0));
        if (u->parts[0].duplicate)
            json_object_set_new(body, "duplicate", json_true());
        json_decref(list);
    }
    pv_http_respond_json(c->req, any_new ? 201 : 200, body);
    upload_free(c);
}

static void upload_ingested(pv_call_t *c)
{
    upload_call_t *u = (upload_call_t *)c;
    if (u->status) {
        pv_http_respond_error(c->req, u->status, u->code, u->message);
        upload_free(c);
        return;
    }
    if (c->result < 0) {
        pv_api_fail(c->req, c->result);
        upload_free(c);
        return;
    }
    if (u->n_big > 0) {
        pv_call_work(c, u->app->decode_big, upload_big_work, upload_ingested);
        return;
    }
    pv_call_store(c, upload_apply, upload_committed);
}

void pv_h_photo_upload(pv_http_req_t *req)
{
    const char *ct = pv_http_header(req, "Content-Type");
    const pv_http_body_file_t *bf = pv_http_body_file(req);
    if (!ct || !bf) {
        pv_http_respond_error(req, 415, "unsupported_media_type",
                              "send image/jpeg, image/png, image/webp or image/heic, or multipart/form-data");
        return;
    }
    bool multipart = strncasecmp(ct, "multipart/form-data", 19) == 0;
    if (!multipart && !supported_type(ct)) {
        pv_http_respond_error(req, 415, "unsupported_media_type",
                              "send image/jpeg, image/png, image/webp or image/heic, or multipart/form-data");
        return;
    }
    if (bf->bytes == 0) {
        pv_http_respond_error(req, 415, "unsupported_media_type",
                              "the upload is empty: send a photo (JPEG, PNG, WebP or HEIC)");
        return;
    }
    int max_parts = multipart ? UPLOAD_MAX_PARTS : 1;
    upload_call_t *u = pv_call_new(req, sizeof(*u) + (size_t)max_parts * sizeof(upload_part_t));
    if (!u) {
        pv_api_fail(req, -ENOMEM);
        return;
    }
    u->max_parts = max_parts;
    u->base.sreq.msg.free_fn = upload_msg_free;
    u->app = pv_api_app(req);
    u->multipart = multipart;
    pv_api_user_id(req, u->user_id);
    if (multipart && pv_multipart_boundary(ct, u->boundary, sizeof(u->boundary)) < 0) {
        pv_http_respond_error(req, 400, "bad_multipart", "the multipart boundary is missing or invalid");
        pv_call_free(&u->base);
        return;
    }
    const char *fn = pv_http_header(req, "X-Filename");
    clean_filename(fn ? fn : "", u->raw_filename, sizeof(u->raw_filename));
    snprintf(u->body_path, sizeof(u->body_path), "%s", bf->path);
    u->parts[0].bytes = bf->bytes;
    memcpy(u->parts[0].sha256, bf->sha256, 32);
    if (u->app->cfg.user_storage_bytes) { /* fail fast; the commit checks again */
        pv_txn_t txn;
        int qrc = pv_txn_begin(u->app->store, &txn, false);
        if (qrc == 0) {
            qrc = quota_check(&txn, u);
            pv_txn_abort(&txn);
        }
        if (qrc == -EDQUOT) {
            pv_api_quota_exceeded(req, u->used, u->app->cfg.user_storage_bytes);
            pv_call_free(&u->base);
            return;
        }
    }
    pv_http_body_file_taken(req); /* the worker renames or removes it */
    pv_call_work(&u->base, u->app->work, upload_work, upload_ingested);
}

/* ---------------- reads ---------------- */

/* The caller's photo {id}: 0, or an error answer was sent. */
static int load_own_photo(pv_http_req_t *req, const char *id_text, pv_photo_t *p)
{
    pv_app_t *app = pv_api_app(req);
    uint8_t uid[16], id[16];
    if (pv_api_user_id(req, uid) < 0 || !id_text || pv_id_decode(id_text, id) < 0) {
        pv_http_respond_error(req, 404, "not_found", "no such photo");
        return -ENOENT;
    }
    pv_txn_t txn;
    int rc = pv_txn_begin(app->store, &txn, false);
    if (rc == 0) {
        rc = pv_photo_get(&txn, uid, id, p);
        pv_txn_abort(&txn);
    }
    if (rc == -ENOENT)
        pv_http_respond_error(req, 404, "not_found", "no such photo");
    else if (rc < 0)
        pv_api_fail(req, rc);
    return rc;
}

void pv_h_photo_get(pv_http_req_t *req)
{
    pv_photo_t p;
    if (load_own_photo(req, pv_http_param(req, "id"), &p) == 0)
        pv_http_respond_json(req, 200, json_pack("{s:o}", "photo", pv_photo_json(pv_api_app(req)->media, &p)));
}

void pv_h_photo_content(pv_http_req_t *req)
{
    pv_photo_t p;
    if (load_own_photo(req, pv_http_param(req, "id"), &p) == 0)
        pv_api_serve_blob(req, p.sha256, p.content_type);
}

void pv_h_photo_thumbnail(pv_http_req_t *req)
{
    pv_photo_t p;
    if (load_own_photo(req, pv_http_param(req, "id"), &p) == 0)
        pv_api_serve_blob(req, p.thumb_sha256, "image/jpeg");
}

/* /media/photos/{id}/{content|thumbnail}: the owner comes from the
 * verified signature, so the same lookup keeps users apart. */
void pv_h_media_photo(pv_http_req_t *req)
{
    const char *what = pv_http_param(req, "what");
    pv_photo_t p;
    if (strcmp(what, "content") != 0 && strcmp(what, "thumbnail") != 0) {
        pv_http_respond_error(req, 404, "not_found", "no such object");
        return;
    }
    if (load_own_photo(req, pv_http_param(req, "id"), &p) != 0)
        return;
    if (what[0] == 'c')
        pv_api_serve_blob(req, p.sha256, p.content_type);
    else
        pv_api_serve_blob(req, p.thumb_sha256, "image/jpeg");
}

static int photo_item(pv_sb_t *sb, pv_http_req_t *req, const pv_val_t *v)
{
    pv_app_t *app = pv_api_app(req);
    pv_photo_t p;
    int rc = pv_photo_decode(v->data, v->len, &p);
    if (rc == 0)
        pv_photo_json_write(sb, app->media, &p);
    return rc;
}

void pv_h_photo_list(pv_http_req_t *req) { pv_api_list(req, PV_DB_PHOTOS, photo_item); }

/* ---------------- delete ---------------- */

typedef struct delete_call {
    pv_call_t base;
    uint8_t user_id[16], id[16];
} delete_call_t;

static int delete_apply(pv_txn_t *txn, void *arg)
{
    delete_call_t *d = arg;
    pv_photo_t p;
    int rc = pv_photo_get(txn, d->user_id, d->id, &p);
    if (rc < 0)
        return rc;
    if ((rc = pv_video_uses_photo(txn, d->user_id, d->id)) != 0)
        return rc < 0 ? rc : -EBUSY;
    uint8_t key[32], skey[48];
    pv_key2(key, d->user_id, d->id, 16);
    pv_key2(skey, d->user_id, p.sha256, 32);
    if ((rc = pv_txn_del(txn, PV_DB_PHOTOS, key, sizeof(key))) < 0 ||
        (rc = pv_txn_del(txn, PV_DB_PHOTO_SHA, skey, sizeof(skey))) < 0 ||
        (rc = pv_blob_unref(txn, p.sha256)) < 0 || (rc = pv_blob_unref(txn, p.thumb_sha256)) < 0)
        return rc;
    return 0;
}

static void delete_committed(pv_call_t *c)
{
    int rc = c->sreq.msg.status;
    if (rc == -ENOENT)
        pv_http_respond_error(c->req, 404, "not_found", "no such photo");
    else if (rc == -EBUSY)
        pv_http_respond_error(c->req, 409, "photo_in_use",
                              "a queued or running video uses this photo");
    else if (rc < 0)
        pv_api_fail(c->req, rc);
    else
        pv_http_respond(c->req, 204, NULL, NULL, 0);
    pv_call_free(c);
}

void pv_h_photo_delete(pv_http_req_t *req)
{
    const char *id = pv_http_param(req, "id");
    delete_call_t *d = pv_call_new(req, sizeof(*d));
    if (!d) {
        pv_api_fail(req, -ENOMEM);
        return;
    }
    if (pv_api_user_id(req, d->user_id) < 0 || !id || pv_id_decode(id, d->id) < 0) {
        pv_http_respond_error(req, 404, "not_found", "no such photo");
        pv_call_free(&d->base);
        return;
    }
    pv_call_store(&d->base, delete_apply, delete_committed);
}
