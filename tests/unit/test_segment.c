/*
 * test_segment.c — change-log segments (src/store/segment.c): what the S3
 * replicator writes and a restore reads. Round trips, the key, and every
 * kind of malformed segment refused before a single entry is applied.
 */
#include "store/segment.h"
#include "base/records.h"
#include "t.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

typedef struct seen {
    int n;
    uint64_t seqs[16];
    char kinds[16][8];
    bool del[16];
    size_t klen[16], rlen[16];
} seen_t;

static int see(void *arg, const pv_change_t *c)
{
    seen_t *s = arg;
    if (s->n < 16) {
        s->seqs[s->n] = c->seq;
        snprintf(s->kinds[s->n], sizeof(s->kinds[0]), "%s", c->kind);
        s->del[s->n] = c->del;
        s->klen[s->n] = c->key.len;
        s->rlen[s->n] = c->record.len;
    }
    s->n++;
    return 0;
}

static pv_change_t change(uint64_t seq, const char *kind, bool del, const char *key, const char *rec)
{
    pv_change_t c = {.seq = seq, .time_ms = 1700000000000 + (int64_t)seq, .kind = kind, .del = del};
    c.key.data = key;
    c.key.len = strlen(key);
    c.record.data = rec;
    c.record.len = del ? 0 : strlen(rec);
    return c;
}

TEST(round_trip_and_key)
{
    pv_segment_t *s = pv_segment_new();
    CHECK(s != NULL);
    pv_change_t a = change(7, "user", false, "k1", "rec-one");
    pv_change_t b = change(9, "photo", false, "k2k2", "rec-two!");
    pv_change_t c = change(12, "photo", true, "k2k2", "");
    CHECK_EQ_INT(pv_segment_add(s, &a), 0);
    CHECK_EQ_INT(pv_segment_add(s, &b), 0);
    CHECK_EQ_INT(pv_segment_add(s, &c), 0);
    CHECK_EQ_INT(pv_segment_add(s, &b), -EINVAL); /* not ascending */
    CHECK_EQ_INT((int)pv_segment_count(s), 3);
    CHECK_EQ_INT((int)pv_segment_first(s), 7);
    CHECK_EQ_INT((int)pv_segment_last(s), 12);
    CHECK(pv_segment_first_time(s) == 1700000000007);
    char key[PV_SEGMENT_KEY_MAX];
    pv_segment_key(s, key);
    CHECK_EQ_STR(key, "log/00000000000000000007-00000000000000000012.msgpack");
    size_t len = 0;
    const void *bytes = pv_segment_bytes(s, &len);
    CHECK(bytes != NULL && len > 0);
    seen_t seen = {0};
    uint64_t first = 0, last = 0;
    CHECK_EQ_INT(pv_segment_read(bytes, len, &first, &last, see, &seen), 0);
    CHECK_EQ_INT((int)first, 7);
    CHECK_EQ_INT((int)last, 12);
    CHECK_EQ_INT(seen.n, 3);
    CHECK_EQ_INT((int)seen.seqs[1], 9);
    CHECK_EQ_STR(seen.kinds[1], "photo");
    CHECK(!seen.del[1] && seen.del[2]);
    CHECK_EQ_INT((int)seen.klen[1], 4);
    CHECK_EQ_INT((int)seen.rlen[1], 8);
    CHECK_EQ_INT((int)seen.rlen[2], 0);
    pv_segment_free(s);
}

/* Pack a segment by hand, with one thing wrong. */
static size_t pack_bad(int fault, char *out, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    const char *fmt = fault == 1 ? "pv-segmenx" : "pv-segment";
    msgpack_pack_str(&pk, strlen(fmt));
    msgpack_pack_str_body(&pk, fmt, strlen(fmt));
    msgpack_pack_int(&pk, fault == 2 ? 2 : 1);
    msgpack_pack_uint64(&pk, 5);
    msgpack_pack_uint64(&pk, fault == 3 ? 9 : 6); /* last does not match */
    msgpack_pack_array(&pk, 2);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_array(&pk, 6);
        msgpack_pack_uint64(&pk, fault == 4 ? 5 : (uint64_t)(5 + i)); /* not ascending */
        msgpack_pack_int64(&pk, 1);
        const char *kind = fault == 5 && i == 1 ? "token" : "photo";
        msgpack_pack_str(&pk, strlen(kind));
        msgpack_pack_str_body(&pk, kind, strlen(kind));
        if (fault == 6 && i == 1)
            msgpack_pack_true(&pk); /* deleted, yet with a record */
        else
            msgpack_pack_false(&pk);
        msgpack_pack_bin(&pk, 2);
        msgpack_pack_bin_body(&pk, "kk", 2);
        msgpack_pack_bin(&pk, 3);
        msgpack_pack_bin_body(&pk, "rec", 3);
    }
    if (fault == 7)
        msgpack_pack_nil(&pk); /* trailing bytes */
    size_t n = sb.size < cap ? sb.size : cap;
    memcpy(out, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

TEST(malformed_refused_whole)
{
    char buf[512];
    seen_t seen = {0};
    size_t n = pack_bad(0, buf, sizeof(buf));
    CHECK_EQ_INT(pv_segment_read(buf, n, NULL, NULL, see, &seen), 0);
    CHECK_EQ_INT(seen.n, 2);
    for (int fault = 1; fault <= 7; fault++) {
        seen_t none = {0};
        n = pack_bad(fault, buf, sizeof(buf));
        CHECK_EQ_INT(pv_segment_read(buf, n, NULL, NULL, see, &none), -EINVAL);
        CHECK_EQ_INT(none.n, 0); /* nothing applied from a bad segment */
    }
    /* truncated at every length */
    n = pack_bad(0, buf, sizeof(buf));
    for (size_t cut = 0; cut < n; cut++) {
        seen_t none = {0};
        CHECK_EQ_INT(pv_segment_read(buf, cut, NULL, NULL, see, &none), -EINVAL);
        CHECK_EQ_INT(none.n, 0);
    }
}

TEST(blobs_of_records)
{
    pv_photo_t p = {0};
    memset(p.sha256, 0xab, 32);
    memset(p.thumb_sha256, 0xcd, 32);
    snprintf(p.content_type, sizeof(p.content_type), "image/jpeg");
    char *buf = NULL;
    size_t len = 0;
    CHECK_EQ_INT(pv_photo_encode(&p, &buf, &len), 0);
    uint8_t out[2][32];
    CHECK_EQ_INT(pv_record_blobs("photo", buf, len, out), 2);
    CHECK(out[0][0] == 0xab && out[1][31] == 0xcd);
    CHECK_EQ_INT(pv_record_blobs("user", buf, len, out), 0);
    CHECK_EQ_INT(pv_record_blobs("photo", "junk", 4, out), -EINVAL);
    free(buf);
}

int main(void)
{
    RUN(round_trip_and_key);
    RUN(malformed_refused_whole);
    RUN(blobs_of_records);
    return t_done("segment");
}
