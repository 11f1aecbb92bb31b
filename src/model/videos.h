/*
 * videos.h — video records at the transaction level (src/model/videos.c).
 */
#ifndef PV_MODEL_VIDEOS_H
#define PV_MODEL_VIDEOS_H

#include <jansson.h>

#include "base/crypto.h"
#include "media/render.h"
#include "base/records.h"
#include "model/media.h"
#include "store/store.h"

int pv_video_load(pv_txn_t *txn, const uint8_t user[16], const uint8_t id[16], pv_video_t *v);
int pv_video_save(pv_txn_t *txn, const pv_video_t *v);
/* A video by id alone (pvctl): a scan, fine for an operator's command. */
int pv_video_find(pv_txn_t *txn, const uint8_t id[16], pv_video_t *v);
/* 1 when a queued or running video of the user uses the photo, 0, or < 0. */
int pv_video_uses_photo(pv_txn_t *txn, const uint8_t user[16], const uint8_t photo[16]);
/* A video's render options (size, seed from its id). */
int pv_video_render_opts(const pv_video_t *v, pv_render_opts_t *o, char *err, size_t errlen);
/* {"id", "status", ...}: URLs presigned for ttl seconds; live is the
 * progress of a running render (0..1), or < 0 to use the record's. */
json_t *pv_video_json(pv_media_t *media, const pv_video_t *v, double live);
/* SSE event texts (malloc'd). */
char *pv_video_event_status(pv_media_t *media, const pv_video_t *v, double live);
char *pv_video_event_progress(const uint8_t id[16], double progress);
char *pv_video_event_gone(const uint8_t id[16]);

#endif
