/*
 * records.h — the records kept in the store, as C structs, and their msgpack
 * codecs. schema/records.json is the single source of their shapes (field
 * names, types, versions); tests/unit/test_records.c checks that these
 * codecs write exactly the fields the schema names.
 *
 * Encoding: a msgpack map with short string keys, always including "v"
 * (record version, starting at 1). Decoders accept unknown keys (forward
 * compatibility) and reject missing required ones with -EINVAL.
 * Ids and hashes are binary (msgpack bin); times are int64 ms since epoch;
 * an absent time is PV_TIME_NONE (encoded as nil).
 */
#ifndef PV_RECORDS_H
#define PV_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_TIME_NONE INT64_MIN
#define PV_ID_LEN 16
#define PV_EMAIL_MAX 254
#define PV_FILENAME_MAX 255
#define PV_CTYPE_MAX 63
#define PV_PWHASH_MAX 127
#define PV_TITLE_MAX 200
#define PV_VIDEO_MAX_PHOTOS 200
#define PV_ERRMSG_MAX 255

typedef struct pv_user {
    uint32_t v;                    /* record version */
    uint8_t id[PV_ID_LEN];         /* time-ordered id */
    char email[PV_EMAIL_MAX + 1];  /* normalised (lower case, trimmed) */
    char pw_hash[PV_PWHASH_MAX + 1]; /* argon2id string (libsodium) */
    int64_t created_ms;
    bool disabled;                 /* tokens stop working at once */
} pv_user_t;

typedef struct pv_photo {
    uint32_t v;
    uint8_t id[PV_ID_LEN];
    uint8_t user_id[PV_ID_LEN];
    char filename[PV_FILENAME_MAX + 1];
    char content_type[PV_CTYPE_MAX + 1]; /* detected: image/jpeg ... */
    uint64_t bytes;
    uint8_t sha256[32];            /* the original's blob */
    uint8_t thumb_sha256[32];      /* the thumbnail's blob (JPEG) */
    uint32_t width, height;        /* after EXIF orientation */
    int orientation;               /* EXIF 1..8 (1 when none) */
    int64_t taken_ms;              /* EXIF DateTimeOriginal or PV_TIME_NONE */
    int64_t created_ms;
} pv_photo_t;

/* A public share link of a video (actors/api/shares.c), keyed in the store
 * by the SHA-256 of its token: the token itself is never stored. */
typedef struct pv_share {
    uint32_t v;
    uint8_t id[PV_ID_LEN];         /* what the owner lists and revokes by */
    uint8_t user_id[PV_ID_LEN];    /* the video's owner */
    uint8_t video_id[PV_ID_LEN];
    int64_t created_ms;
    int64_t expires_ms;
    char pw_hash[PV_PWHASH_MAX + 1]; /* argon2id string, or "" (no password) */
    uint64_t views;                /* share page loads */
} pv_share_t;

typedef struct pv_token {
    uint32_t v;
    uint8_t user_id[PV_ID_LEN];
    uint8_t family_id[PV_ID_LEN];  /* the rotation chain it belongs to */
    bool spent;                    /* already exchanged for a new pair */
    int64_t created_ms;
    int64_t expires_ms;
} pv_token_t;

enum pv_video_status {
    PV_VIDEO_QUEUED,
    PV_VIDEO_RUNNING,
    PV_VIDEO_READY,
    PV_VIDEO_FAILED,
    PV_VIDEO_CANCELLED,
};

typedef struct pv_video_opts {
    double seconds_per_photo;      /* default 3 */
    char transition[16];           /* "fade", "none", ... */
    double transition_seconds;     /* default 0.5 */
    char resolution[8];            /* "1080p" */
    char aspect[8];                /* "16:9" */
    int fps;                       /* 30 */
    bool ken_burns;
} pv_video_opts_t;

typedef struct pv_video {
    uint32_t v;
    uint8_t id[PV_ID_LEN];
    uint8_t user_id[PV_ID_LEN];
    int status;                    /* enum pv_video_status */
    double progress;               /* 0..1 */
    char error[PV_ERRMSG_MAX + 1]; /* empty when none */
    char title[PV_TITLE_MAX + 1];
    uint32_t n_photos;
    uint8_t (*photo_ids)[PV_ID_LEN]; /* n_photos ids; owned, see free */
    pv_video_opts_t opts;
    int64_t created_ms, started_ms, finished_ms; /* PV_TIME_NONE if not yet */
    double duration_s;
    uint32_t width, height;
    uint64_t bytes;
    uint8_t sha256[32];            /* the MP4 blob when ready */
    uint8_t poster_sha256[32];     /* the poster JPEG blob when ready */
} pv_video_t;

/* Encoders return a malloc'd buffer in *out (free()) or -ENOMEM. */
int pv_user_encode(const pv_user_t *u, char **out, size_t *len);
int pv_user_decode(const void *buf, size_t len, pv_user_t *u);
int pv_photo_encode(const pv_photo_t *p, char **out, size_t *len);
int pv_photo_decode(const void *buf, size_t len, pv_photo_t *p);
int pv_token_encode(const pv_token_t *t, char **out, size_t *len);
int pv_token_decode(const void *buf, size_t len, pv_token_t *t);
int pv_share_encode(const pv_share_t *s, char **out, size_t *len);
int pv_share_decode(const void *buf, size_t len, pv_share_t *s);
int pv_video_encode(const pv_video_t *v, char **out, size_t *len);
/* Allocates v->photo_ids; release with pv_video_clear. */
int pv_video_decode(const void *buf, size_t len, pv_video_t *v);
void pv_video_clear(pv_video_t *v);

const char *pv_video_status_name(int status);

/* 0 when every array, map, str and bin header in buf[0..len) declares no
 * more than the bytes that remain can hold (and nesting stays shallow);
 * -EINVAL otherwise. Run before msgpack-c's unpacker, which allocates an
 * array's slots from its header alone. */
int pv_msgpack_check(const uint8_t *buf, size_t len);

/* The blobs a logged record names (a change entry's kind and record):
 * a photo's original and thumbnail, a ready video's MP4 and poster. The
 * count (0..2) with the SHA-256s in out; -EINVAL for a record that does
 * not decode; 0 for other kinds. */
int pv_record_blobs(const char *kind, const void *rec, size_t len, uint8_t out[2][32]);

#endif
