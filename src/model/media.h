/*
 * media.h — the links a photo's or video's JSON carries (urls.content,
 * ...): presigned GETs of the appliance's own /media routes, or, with
 * media_from_s3, presigned GETs of the replica in S3 for blobs S3 has
 * (the S3 replicator marks them in META as it goes). One definition of
 * where a download goes, for the JSON writers in photos.c and videos.c.
 *
 * Any thread: the HTTP loops make links; the S3 side is a hook of the
 * replicator's (the model does not talk to the cloud).
 */
#ifndef PV_MODEL_MEDIA_H
#define PV_MODEL_MEDIA_H

#include "base/crypto.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct pv_media pv_media_t;

/* Makes a presigned GET of key in S3 valid ttl seconds from now_s that
 * answers with Content-Type ctype; 0, or < 0 when it cannot (no
 * credentials yet): the link then points at the appliance. Any thread. */
typedef int (*pv_media_s3_fn)(void *ctx, const char *key, const char *ctype, int64_t now_s,
                              int64_t ttl, char *url, size_t size);

/* keys and ttl (seconds) for the appliance's links; store for the marks. */
pv_media_t *pv_media_new(const pv_keys_t *keys, int64_t ttl, pv_store_t *store);
void pv_media_free(pv_media_t *m);
/* Links to blobs S3 has go there: PREFIX/blobs/xx/<sha256>, made by fn
 * (the S3 replicator's, which holds the credentials). Once, before the
 * servers start. */
void pv_media_set_s3(pv_media_t *m, const char *prefix, pv_media_s3_fn fn, void *ctx);

/* Room for a link: an S3 one with a session token runs past 1,500 bytes. */
#define PV_MEDIA_URL_MAX 4096

/* The link to blob sha, served by the appliance at path (a /media route)
 * for owner, or in S3 when it is marked there; ctype: what the download
 * is (S3 answers with it). */
void pv_media_link(pv_media_t *m, const char *path, const uint8_t owner[16], const uint8_t sha[32],
                   const char *ctype, char *url, size_t size);

/* META: a blob S3 has acknowledged (empty value). S3 keeps blobs that the
 * appliance deletes (the log names them), so a mark stays true. */
#define PV_MEDIA_S3_MARK "sync/s3/blob/"
#define PV_MEDIA_S3_MARK_LEN (sizeof(PV_MEDIA_S3_MARK) - 1 + 64)
void pv_media_s3_mark_key(const uint8_t sha[32], char key[PV_MEDIA_S3_MARK_LEN + 1]);

#endif
