/*
 * fuzz_records.c — every record decoder gets the same arbitrary bytes.
 * Records come from the store, but the store is restored from backups and
 * S3 snapshots, so its bytes are input like any other.
 *
 * Beyond "no crash, no leak": whatever decodes must encode again, and that
 * encoding must decode to the same struct (the codecs are lossless on
 * everything they accept).
 */
#include "base/records.h"
#include "base/pv.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROUND_TRIP(type, dec, enc, same)                                     \
    do {                                                                     \
        type a, b;                                                           \
        if (dec(data, size, &a) != 0)                                        \
            break;                                                           \
        char *buf = NULL;                                                    \
        size_t len = 0;                                                      \
        if (enc(&a, &buf, &len) != 0)                                        \
            abort(); /* decoded but cannot be written back */                \
        if (dec(buf, len, &b) != 0 || !same(&a, &b))                         \
            abort(); /* not lossless */                                      \
        free(buf);                                                           \
        CLEAR_##type(&a);                                                    \
        CLEAR_##type(&b);                                                    \
    } while (0)

#define CLEAR_pv_user_t(x) (void)(x)
#define CLEAR_pv_photo_t(x) (void)(x)
#define CLEAR_pv_token_t(x) (void)(x)
#define CLEAR_pv_video_t(x) pv_video_clear(x)

static int same_user(const pv_user_t *a, const pv_user_t *b) { return !memcmp(a, b, sizeof(*a)); }
static int same_photo(const pv_photo_t *a, const pv_photo_t *b) { return !memcmp(a, b, sizeof(*a)); }
static int same_token(const pv_token_t *a, const pv_token_t *b) { return !memcmp(a, b, sizeof(*a)); }

static int same_video(const pv_video_t *a, const pv_video_t *b)
{
    pv_video_t x = *a, y = *b;
    if (x.n_photos != y.n_photos ||
        (x.n_photos && memcmp(x.photo_ids, y.photo_ids, x.n_photos * PV_ID_LEN)))
        return 0;
    x.photo_ids = y.photo_ids = NULL;
    return !memcmp(&x, &y, sizeof(x));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ROUND_TRIP(pv_user_t, pv_user_decode, pv_user_encode, same_user);
    ROUND_TRIP(pv_photo_t, pv_photo_decode, pv_photo_encode, same_photo);
    ROUND_TRIP(pv_token_t, pv_token_decode, pv_token_encode, same_token);
    ROUND_TRIP(pv_video_t, pv_video_decode, pv_video_encode, same_video);
    return 0;
}
