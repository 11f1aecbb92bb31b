/*
 * photos.h — photo records at the transaction level (src/model/photos.c).
 */
#ifndef PV_MODEL_PHOTOS_H
#define PV_MODEL_PHOTOS_H

#include <jansson.h>

#include "base/crypto.h"
#include "base/pv.h"
#include "base/records.h"
#include "model/media.h"
#include "store/store.h"

/* Keyed user|id, newest first. */
int pv_photo_put(pv_txn_t *txn, const pv_photo_t *p);
int pv_photo_get(pv_txn_t *txn, const uint8_t user[16], const uint8_t id[16], pv_photo_t *p);
/* A photo's JSON object with fresh links (model/media.h): as text (the
 * one definition of its shape) and parsed. */
void pv_photo_json_write(pv_sb_t *sb, pv_media_t *media, const pv_photo_t *p);
json_t *pv_photo_json(pv_media_t *media, const pv_photo_t *p);

#endif
