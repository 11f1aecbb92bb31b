/*
 * photos.c — photo records at the transaction level: put, get, and the
 * one definition of a photo's JSON shape (with freshly presigned URLs).
 */
#include "model/photos.h"
#include "base/pv.h"
#include "base/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pv_photo_put(pv_txn_t *txn, const pv_photo_t *p)
{
    uint8_t key[32];
    pv_key2(key, p->user_id, p->id, 16);
    char *buf;
    size_t len;
    int rc = pv_photo_encode(p, &buf, &len);
    if (rc < 0)
        return rc;
    rc = pv_txn_put(txn, PV_DB_PHOTOS, key, sizeof(key), buf, len, true);
    free(buf);
    return rc;
}

int pv_photo_get(pv_txn_t *txn, const uint8_t user[16], const uint8_t id[16], pv_photo_t *p)
{
    uint8_t key[32];
    pv_key2(key, user, id, 16);
    pv_val_t v;
    int rc = pv_txn_get(txn, PV_DB_PHOTOS, key, sizeof(key), &v);
    return rc < 0 ? rc : pv_photo_decode(v.data, v.len, p);
}

/* The photo's JSON object, written straight as text: this is the one
 * definition of its shape (lists are written this way; pv_photo_json
 * parses it for the answers that nest it). URLs are presigned now. */
void pv_photo_json_write(pv_sb_t *sb, pv_media_t *media, const pv_photo_t *p)
{
    char id[PV_ID_TEXT], sha[65], created[32], taken[32];
    char path[128], url[PV_MEDIA_URL_MAX];
    pv_id_encode(p->id, id);
    pv_hex(p->sha256, 32, sha);
    pv_time_format(p->created_ms, created);
    pv_sb_printf(sb, "{\"id\":\"%s\",\"filename\":", id);
    pv_sb_json_str(sb, p->filename);
    pv_sb_puts(sb, ",\"content_type\":");
    pv_sb_json_str(sb, p->content_type);
    pv_sb_printf(sb, ",\"bytes\":%llu,\"sha256\":\"%s\",\"width\":%u,\"height\":%u,\"taken_at\":",
                 (unsigned long long)p->bytes, sha, p->width, p->height);
    if (p->taken_ms == PV_TIME_NONE) {
        pv_sb_puts(sb, "null");
    } else {
        pv_time_format(p->taken_ms, taken);
        pv_sb_printf(sb, "\"%s\"", taken);
    }
    pv_sb_printf(sb, ",\"created_at\":\"%s\",\"urls\":{\"content\":", created);
    snprintf(path, sizeof(path), "/media/photos/%s/content", id);
    pv_media_link(media, path, p->user_id, p->sha256, p->content_type, url, sizeof(url));
    pv_sb_json_str(sb, url);
    pv_sb_puts(sb, ",\"thumbnail\":");
    snprintf(path, sizeof(path), "/media/photos/%s/thumbnail", id);
    pv_media_link(media, path, p->user_id, p->thumb_sha256, "image/jpeg", url, sizeof(url));
    pv_sb_json_str(sb, url);
    pv_sb_puts(sb, "}}");
}

json_t *pv_photo_json(pv_media_t *media, const pv_photo_t *p)
{
    pv_sb_t sb = {0};
    pv_photo_json_write(&sb, media, p);
    json_t *j = sb.failed ? NULL : json_loadb(sb.p, sb.len, 0, NULL);
    pv_sb_free(&sb);
    return j;
}

