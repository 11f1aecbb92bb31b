/*
 * image.c — turns the bytes of an uploaded photo into facts (type, size,
 * orientation, capture time), a thumbnail, and decoded frames for the
 * renderer.
 *
 * Shape: a file is read once into one padded buffer; a small pure header
 * probe per type (a table, below) finds the stored size, the EXIF block and
 * whether the data is complete, so that oversized or truncated files are
 * refused before any decoder allocates. JPEG, PNG and WebP then decode
 * through libavcodec directly (one packet, one frame, errors made fatal);
 * HEIC through libheif, which also applies the HEIF irot/imir transforms
 * (and the HEIF spec says to ignore EXIF orientation there, so we do).
 * EXIF is read with libexif. Pixels are then composited on white when the
 * output has no alpha, scaled with swscale, re-oriented on packed RGB(A)
 * by one table-driven copy, and converted to the caller's pixel format.
 *
 * No shared mutable state: everything lives in the call's own structures;
 * the only global is the pthread_once that quiets FFmpeg's logging (our logs
 * are JSON lines) and initialises libheif.
 */
#include "media/image.h"
#include "base/pv.h"
#include "media/image_jpeg.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>
#include <libexif/exif-data.h>
#include <libheif/heif.h>
#include <libswscale/swscale.h>

/* Uploads are bounded elsewhere; this only keeps one read from eating RAM. */
#define IMG_MAX_FILE (256LL << 20)
#define IMG_BAD "not a decodable image: "
#define IMG_JPEG_MAX_SCANS PV_JPEG_MAX_SCANS
/* What is read of a JPEG before deciding whether libjpeg streams the rest:
 * enough for the header segments (EXIF, ICC) of nearly every photo. */
#define IMG_HEAD (256 << 10)

/* ---- errors ---- */

static int img_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int img_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

#define img_bad(err, errlen, ...) img_errf(err, errlen, -EINVAL, IMG_BAD __VA_ARGS__)

/* An FFmpeg failure: out of memory stays that, anything else is the data's
 * fault (the decoder refused it). */
static int img_av_bad(char *err, size_t errlen, int averr, const char *what)
{
    char msg[AV_ERROR_MAX_STRING_SIZE] = "";
    if (averr == AVERROR(ENOMEM))
        return img_errf(err, errlen, -ENOMEM, "out of memory while decoding");
    av_strerror(averr, msg, sizeof(msg));
    return img_bad(err, errlen, "%s (%s)", what, msg);
}

/* ---- one-time init ---- */

static pthread_once_t img_once = PTHREAD_ONCE_INIT;

static void img_init_once(void)
{
    av_log_set_level(AV_LOG_QUIET);
    heif_init(NULL);
}

static void img_init(void)
{
    pthread_once(&img_once, img_init_once);
}

/* ---- byte helpers ---- */

static uint32_t rd_be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t rd_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t rd_le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t rd_le24(const uint8_t *p) { return (uint32_t)p[2] << 16 | rd_le16(p); }
static uint32_t rd_le32(const uint8_t *p) { return (uint32_t)p[3] << 24 | rd_le24(p); }

/* ---- what a probe finds in the header ---- */

typedef struct img_probe {
    int w, h;              /* stored size (before orientation); 0: unknown */
    bool complete;         /* the data reaches its end marker */
    bool lowres_ok;        /* the decoder may decode at 1/2^n (JPEG DCT) */
    const uint8_t *exif;   /* EXIF block inside the file buffer, or NULL */
    size_t exif_len;
    uint8_t *exif_owned;   /* HEIC: a copy we free */
    struct heif_context *heif;            /* HEIC only */
    struct heif_image_handle *heif_handle;
    bool alpha;            /* HEIC: primary image has alpha */
    int bytes_pp;          /* decoded bytes per pixel, at most (memory estimate) */
    /* JPEG only, from the frame header and the first scan header: */
    int jpeg_sof;          /* the SOFn marker (0xC0..) */
    int jpeg_bits;         /* sample precision */
    int jpeg_comps;        /* components */
    bool jpeg_multiscan;   /* progressive, or the first scan lacks components:
                              the decoder buffers every coefficient */
    uint64_t jpeg_coef;    /* bytes of all coefficients at full size */
    size_t jpeg_data;      /* offset of the first scan's data; 0: not reached */
} img_probe_t;

typedef struct img_type {
    const char *content_type;
    const char *name;
    enum AVCodecID codec; /* AV_CODEC_ID_NONE: decoded through libheif */
    bool (*sniff)(const uint8_t *d, size_t n);
    int (*probe)(const uint8_t *d, size_t n, img_probe_t *p, char *err, size_t errlen);
} img_type_t;

/* ---- sniffing ---- */

static bool sniff_jpeg(const uint8_t *d, size_t n)
{
    return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF;
}

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};

static bool sniff_png(const uint8_t *d, size_t n)
{
    return n >= 8 && memcmp(d, png_sig, 8) == 0;
}

static bool sniff_webp(const uint8_t *d, size_t n)
{
    return n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0;
}

static bool brand_in(const uint8_t *b, const char *const *list, size_t nlist)
{
    for (size_t i = 0; i < nlist; i++)
        if (memcmp(b, list[i], 4) == 0)
            return true;
    return false;
}

/* HEIF: an ftyp box whose major brand is an image brand, or whose
 * compatible brands name HEVC. "mif1" alone is also what AVIF files list
 * as compatible, so it only counts as the major brand. */
static bool sniff_heic(const uint8_t *d, size_t n)
{
    static const char *const major[] = {"heic", "heix", "hevc", "heim", "heis", "mif1", "msf1"};
    static const char *const hevc[] = {"heic", "heix", "hevc", "heim", "heis"};
    if (n < 12 || memcmp(d + 4, "ftyp", 4) != 0)
        return false;
    if (brand_in(d + 8, major, PV_ARRAY_LEN(major)))
        return true;
    size_t end = rd_be32(d);
    if (end > n)
        end = n;
    for (size_t off = 16; off + 4 <= end; off += 4)
        if (brand_in(d + off, hevc, PV_ARRAY_LEN(hevc)))
            return true;
    return false;
}

/* ---- header probes: pure, bounded, no allocation (except HEIC) ---- */

/* SOFn markers that carry the frame size; C4 (DHT), C8 (JPG), CC (DAC) are
 * not frames. Lossless and JPEG-LS frames cannot be decoded at lowres. */
static bool jpeg_is_sof(int m)
{
    return (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) || m == 0xF7;
}
static bool jpeg_is_lossless(int m)
{
    return m == 0xC3 || m == 0xC7 || m == 0xCB || m == 0xCF || m == 0xF7;
}

/* The frame header (P, Y, X, Nf, then Nf x (C, HV, Tq)): what libjpeg
 * needs to know whether it can decode it, and how many coefficients a
 * decoder that buffers them all (progressive, multi-scan) holds. */
static void jpeg_frame(int m, const uint8_t *s, size_t slen, img_probe_t *p)
{
    p->jpeg_sof = m;
    p->jpeg_bits = s[0];
    p->jpeg_comps = s[5];
    p->jpeg_multiscan = m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE;
    int hmax = 1, vmax = 1, nc = s[5];
    if (slen < 6 + 3 * (size_t)nc)
        return; /* the decoders refuse it */
    for (int c = 0; c < nc; c++) {
        int hv = s[6 + 3 * c + 1];
        hmax = (hv >> 4) > hmax ? hv >> 4 : hmax;
        vmax = (hv & 15) > vmax ? hv & 15 : vmax;
    }
    uint64_t mcu_w = ((uint64_t)p->w + 8 * hmax - 1) / (8 * hmax);
    uint64_t mcu_h = ((uint64_t)p->h + 8 * vmax - 1) / (8 * vmax);
    for (int c = 0; c < nc; c++) {
        int hv = s[6 + 3 * c + 1];
        p->jpeg_coef += mcu_w * (uint64_t)(hv >> 4) * mcu_h * (uint64_t)(hv & 15) * 128;
    }
}

static int probe_jpeg(const uint8_t *d, size_t n, img_probe_t *p, char *err, size_t errlen)
{
    size_t i = 2;
    for (;;) {
        while (i < n && d[i] == 0xFF && i + 1 < n && d[i + 1] == 0xFF)
            i++; /* fill bytes */
        if (i + 4 > n)
            return 0; /* ran out before the scan: incomplete */
        if (d[i] != 0xFF) {
            /* junk between segments: libjpeg and FFmpeg skip to a marker */
            const uint8_t *ff = memchr(d + i, 0xFF, n - i);
            if (!ff)
                return 0;
            i = (size_t)(ff - d);
            continue;
        }
        int m = d[i + 1];
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {
            i += 2; /* markers without a length */
            continue;
        }
        if (m == 0xD9)
            return img_bad(err, errlen, "JPEG ends before its image data");
        size_t seg = rd_be16(d + i + 2);
        if (seg < 2)
            return img_bad(err, errlen, "corrupt JPEG segment length");
        if (i + 2 + seg > n)
            return 0;
        const uint8_t *s = d + i + 4;
        size_t slen = seg - 2;
        if (m == 0xE1 && !p->exif && slen > 6 && memcmp(s, "Exif\0\0", 6) == 0) {
            p->exif = s;
            p->exif_len = slen;
        } else if (jpeg_is_sof(m) && p->w == 0) {
            if (slen < 6)
                return img_bad(err, errlen, "corrupt JPEG frame header");
            p->h = (int)rd_be16(s + 1);
            p->w = (int)rd_be16(s + 3);
            p->lowres_ok = !jpeg_is_lossless(m);
            if (p->w == 0 || p->h == 0)
                return img_bad(err, errlen, "JPEG frame has no size");
            jpeg_frame(m, s, slen, p);
        } else if (m == 0xDA) {
            if (p->w == 0)
                return img_bad(err, errlen, "JPEG scan before its frame header");
            if (slen >= 1 && s[0] < p->jpeg_comps)
                p->jpeg_multiscan = true;
            /* Entropy-coded data never holds FF D9 (FF is stuffed as FF 00),
             * so an EOI after the first scan means the data is all there.
             * FFmpeg would otherwise "emulate" a missing EOI and hand back a
             * half-grey picture. */
            size_t at = i + 2 + seg;
            p->jpeg_data = at;
            p->complete = memmem(d + at, n - at, "\xFF\xD9", 2) != NULL;
            /* Thousands of tiny progressive scans each walk every block: a
             * small file that decodes for minutes. libjpeg's cap: 1000. */
            size_t scans = 1;
            for (const uint8_t *q = d + at;
                 (q = memmem(q, (size_t)(d + n - q), "\xFF\xDA", 2)) != NULL; q += 2)
                if (++scans > IMG_JPEG_MAX_SCANS)
                    return img_bad(err, errlen, "JPEG has too many scans");
            return 0;
        }
        i += 2 + seg;
    }
}

static int probe_png(const uint8_t *d, size_t n, img_probe_t *p, char *err, size_t errlen)
{
    size_t i = 8;
    bool first = true, idat = false;
    while (i + 8 <= n) {
        uint32_t clen = rd_be32(d + i);
        const uint8_t *type = d + i + 4;
        if (clen > 0x7FFFFFFFu)
            return img_bad(err, errlen, "corrupt PNG chunk length");
        if (first) {
            if (memcmp(type, "IHDR", 4) != 0 || clen != 13)
                return img_bad(err, errlen, "PNG does not start with a header chunk");
            if (i + 16 > n)
                return 0;
            uint32_t w = rd_be32(d + i + 8), h = rd_be32(d + i + 12);
            if (w == 0 || h == 0 || w > INT_MAX || h > INT_MAX)
                return img_bad(err, errlen, "PNG header has an invalid size");
            p->w = (int)w;
            p->h = (int)h;
            /* colour type -> channels (3, palette: 1 index byte a pixel) */
            static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
            int depth = d[i + 16], ctype = d[i + 17];
            int ch = ctype <= 6 && channels[ctype] ? channels[ctype] : 4;
            p->bytes_pp = ch * (depth > 8 ? 2 : 1);
            first = false;
        }
        if ((size_t)clen + 12 > n - i)
            return 0; /* truncated chunk */
        if (memcmp(type, "eXIf", 4) == 0 && !p->exif) {
            p->exif = d + i + 8;
            p->exif_len = clen;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            idat = true;
        } else if (memcmp(type, "IEND", 4) == 0) {
            p->complete = idat;
            if (!idat)
                return img_bad(err, errlen, "PNG has no image data");
            return 0;
        }
        i += (size_t)clen + 12;
    }
    return 0;
}

/* The first chunk of a WebP file holds its size: VP8X (extended: canvas),
 * "VP8 " (lossy key frame header) or VP8L (lossless bit-packed header). */
static int webp_dims(const uint8_t *fourcc, const uint8_t *c, size_t clen, img_probe_t *p,
                     char *err, size_t errlen)
{
    if (memcmp(fourcc, "VP8X", 4) == 0 && clen >= 10) {
        p->w = (int)rd_le24(c + 4) + 1;
        p->h = (int)rd_le24(c + 7) + 1;
    } else if (memcmp(fourcc, "VP8 ", 4) == 0 && clen >= 10) {
        if (c[3] != 0x9D || c[4] != 0x01 || c[5] != 0x2A)
            return img_bad(err, errlen, "corrupt WebP (VP8) frame header");
        p->w = (int)(rd_le16(c + 6) & 0x3FFF);
        p->h = (int)(rd_le16(c + 8) & 0x3FFF);
    } else if (memcmp(fourcc, "VP8L", 4) == 0 && clen >= 5) {
        if (c[0] != 0x2F)
            return img_bad(err, errlen, "corrupt WebP (VP8L) header");
        uint32_t bits = rd_le32(c + 1);
        p->w = (int)(bits & 0x3FFF) + 1;
        p->h = (int)((bits >> 14) & 0x3FFF) + 1;
    } else {
        return img_bad(err, errlen, "WebP has no image header");
    }
    if (p->w <= 0 || p->h <= 0)
        return img_bad(err, errlen, "WebP has an invalid size");
    return 0;
}

static int probe_webp(const uint8_t *d, size_t n, img_probe_t *p, char *err, size_t errlen)
{
    size_t total = (size_t)rd_le32(d + 4) + 8, end = total < n ? total : n;
    size_t i = 12;
    bool first = true, truncated = total > n;
    while (i + 8 <= end) {
        const uint8_t *fourcc = d + i;
        size_t clen = rd_le32(d + i + 4), avail = end - i - 8;
        const uint8_t *c = d + i + 8;
        if (first) {
            int rc = webp_dims(fourcc, c, clen < avail ? clen : avail, p, err, errlen);
            if (rc < 0)
                return rc;
            first = false;
        }
        if (clen > avail) {
            truncated = true;
            break;
        }
        if (memcmp(fourcc, "ANIM", 4) == 0 || memcmp(fourcc, "ANMF", 4) == 0)
            return img_bad(err, errlen, "animated WebP is not supported");
        if (memcmp(fourcc, "EXIF", 4) == 0 && !p->exif) {
            p->exif = c;
            p->exif_len = clen;
        }
        i += 8 + clen + (clen & 1);
    }
    if (first && !truncated)
        return img_bad(err, errlen, "WebP has no image data");
    p->complete = !truncated;
    return 0;
}

/* libheif's Exif item starts with a 4-byte big-endian offset to the TIFF
 * header (usually 0, or 6 when "Exif\0\0" follows). */
static int heic_exif(struct heif_image_handle *h, img_probe_t *p)
{
    heif_item_id id;
    if (heif_image_handle_get_list_of_metadata_block_IDs(h, "Exif", &id, 1) < 1)
        return 0;
    size_t size = heif_image_handle_get_metadata_size(h, id);
    if (size < 4 || size > (16u << 20))
        return 0;
    uint8_t *buf = pv_fail("image_alloc") ? NULL : malloc(size);
    if (!buf)
        return -ENOMEM;
    struct heif_error e = heif_image_handle_get_metadata(h, id, buf);
    uint32_t off = rd_be32(buf);
    if (e.code != heif_error_Ok || off > size - 4) {
        free(buf);
        return 0; /* unreadable EXIF is absent EXIF */
    }
    p->exif_owned = buf;
    p->exif = buf + 4 + off;
    p->exif_len = size - 4 - off;
    return 0;
}

static int probe_heic(const uint8_t *d, size_t n, img_probe_t *p, char *err, size_t errlen)
{
    p->heif = pv_fail("image_alloc") ? NULL : heif_context_alloc();
    if (!p->heif)
        return img_errf(err, errlen, -ENOMEM, "out of memory");
    struct heif_error e = heif_context_read_from_memory_without_copy(p->heif, d, n, NULL);
    if (e.code != heif_error_Ok)
        return img_bad(err, errlen, "HEIC: %s", e.message);
    e = heif_context_get_primary_image_handle(p->heif, &p->heif_handle);
    if (e.code != heif_error_Ok)
        return img_bad(err, errlen, "HEIC: %s", e.message);
    p->w = heif_image_handle_get_width(p->heif_handle);
    p->h = heif_image_handle_get_height(p->heif_handle);
    if (p->w <= 0 || p->h <= 0)
        return img_bad(err, errlen, "HEIC image has no size");
    p->alpha = heif_image_handle_has_alpha_channel(p->heif_handle) != 0;
    /* libheif decodes to YCbCr, then converts to interleaved RGB(A). */
    int bits = heif_image_handle_get_luma_bits_per_pixel(p->heif_handle);
    p->bytes_pp = (p->alpha ? 4 : 3) * (bits > 8 ? 2 : 1) + 2;
    p->complete = true; /* libheif checks item extents when it decodes */
    if (heic_exif(p->heif_handle, p) < 0)
        return img_errf(err, errlen, -ENOMEM, "out of memory reading HEIC metadata");
    return 0;
}

static const img_type_t img_types[] = {
    {"image/jpeg", "JPEG", AV_CODEC_ID_MJPEG, sniff_jpeg, probe_jpeg},
    {"image/png", "PNG", AV_CODEC_ID_PNG, sniff_png, probe_png},
    {"image/webp", "WebP", AV_CODEC_ID_WEBP, sniff_webp, probe_webp},
    {"image/heic", "HEIC", AV_CODEC_ID_NONE, sniff_heic, probe_heic},
};

static const img_type_t *img_type_of(const void *buf, size_t len)
{
    if (!buf)
        return NULL;
    for (size_t i = 0; i < PV_ARRAY_LEN(img_types); i++)
        if (img_types[i].sniff(buf, len))
            return &img_types[i];
    return NULL;
}

const char *pv_image_sniff(const void *buf, size_t len)
{
    const img_type_t *t = img_type_of(buf, len);
    return t ? t->content_type : NULL;
}

bool pv_image_holds_file(const char *path)
{
    uint8_t head[4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, head, sizeof(head), 0);
    if (fd >= 0)
        close(fd);
    return n <= 0 || !sniff_jpeg(head, (size_t)n);
}

/* ---- EXIF: orientation and capture time ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool num_at(const char *s, int len, int *out)
{
    int v = 0;
    for (int i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* "YYYY:MM:DD HH:MM:SS" (some writers use '-' in the date) -> UTC ms. */
static int64_t exif_parse_datetime(const char *s)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, se;
    if (strlen(s) < 19 || (s[4] != ':' && s[4] != '-') || s[7] != s[4] || s[10] != ' ' ||
        s[13] != ':' || s[16] != ':')
        return INT64_MIN;
    if (!num_at(s, 4, &y) || !num_at(s + 5, 2, &mo) || !num_at(s + 8, 2, &d) ||
        !num_at(s + 11, 2, &h) || !num_at(s + 14, 2, &mi) || !num_at(s + 17, 2, &se))
        return INT64_MIN;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 ||
        mi > 59 || se > 60)
        return INT64_MIN;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    return secs * 1000;
}

/* "+HH:MM" / "-HH:MM" -> minutes east of UTC; false when malformed. */
static bool exif_parse_offset(const char *s, int *minutes)
{
    int h, m;
    if (strlen(s) < 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' || !num_at(s + 1, 2, &h) ||
        !num_at(s + 4, 2, &m) || h > 14 || m > 59)
        return false;
    *minutes = (s[0] == '-' ? -1 : 1) * (h * 60 + m);
    return true;
}

/* Copy an ASCII entry into out (NUL-terminated); false when absent. */
static bool exif_ascii(ExifData *ed, ExifIfd ifd, ExifTag tag, char *out, size_t outlen)
{
    ExifEntry *e = exif_content_get_entry(ed->ifd[ifd], tag);
    if (!e || e->format != EXIF_FORMAT_ASCII || !e->data || e->size == 0)
        return false;
    size_t n = e->size < outlen - 1 ? e->size : outlen - 1;
    memcpy(out, e->data, n);
    out[n] = '\0';
    return true;
}

static int exif_orientation(ExifData *ed)
{
    ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
    if (!e || e->format != EXIF_FORMAT_SHORT || e->components < 1 || !e->data || e->size < 2)
        return 1;
    int v = exif_get_short(e->data, exif_data_get_byte_order(ed));
    return v >= 1 && v <= 8 ? v : 1;
}

static int64_t exif_taken(ExifData *ed)
{
    char buf[64];
    if (!exif_ascii(ed, EXIF_IFD_EXIF, EXIF_TAG_DATE_TIME_ORIGINAL, buf, sizeof(buf)))
        return INT64_MIN;
    int64_t ms = exif_parse_datetime(buf);
    if (ms == INT64_MIN)
        return ms;
    int off;
    if (exif_ascii(ed, EXIF_IFD_EXIF, EXIF_TAG_OFFSET_TIME_ORIGINAL, buf, sizeof(buf)) &&
        exif_parse_offset(buf, &off))
        ms -= (int64_t)off * 60000;
    /* Sub-second digits, e.g. "042" -> 42 ms; only the first three count. */
    if (exif_ascii(ed, EXIF_IFD_EXIF, EXIF_TAG_SUB_SEC_TIME_ORIGINAL, buf, sizeof(buf))) {
        int frac = 0, scale = 100;
        for (int i = 0; i < 3 && buf[i] >= '0' && buf[i] <= '9'; i++, scale /= 10)
            frac += (buf[i] - '0') * scale;
        ms += frac;
    }
    return ms;
}

/* Parse an EXIF block (with or without its "Exif\0\0" header). Absent or
 * garbled EXIF leaves the defaults; only running out of memory fails. */
static int exif_read(const uint8_t *d, size_t n, int *orientation, int64_t *taken_ms)
{
    *orientation = 1;
    *taken_ms = INT64_MIN;
    if (!d || n < 8 || n > (64u << 20))
        return 0;
    bool has_hdr = n >= 6 && memcmp(d, "Exif\0\0", 6) == 0;
    uint8_t *tmp = NULL;
    if (!has_hdr) { /* libexif wants the header in front of the TIFF data */
        tmp = pv_fail("image_alloc") ? NULL : malloc(n + 6);
        if (!tmp)
            return -ENOMEM;
        memcpy(tmp, "Exif\0\0", 6);
        memcpy(tmp + 6, d, n);
        d = tmp;
        n += 6;
    }
    ExifData *ed = pv_fail("image_alloc") ? NULL : exif_data_new();
    if (!ed) {
        free(tmp);
        return -ENOMEM;
    }
    /* Read only: no "fixing" that invents mandatory tags with defaults. */
    exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
    exif_data_load_data(ed, d, (unsigned int)n);
    *orientation = exif_orientation(ed);
    *taken_ms = exif_taken(ed);
    exif_data_unref(ed);
    free(tmp);
    return 0;
}

/* ---- loading: read, sniff, probe, refuse, read EXIF ---- */

typedef struct img_src {
    AVBufferRef *buf;       /* the file, or its head (see img_load), + zeroed
                               FFmpeg padding */
    size_t len;             /* bytes in buf */
    size_t size;            /* the file's size */
    int fd;                 /* open until img_src_free: libjpeg reads it */
    bool libjpeg;           /* a JPEG that libjpeg decodes, from fd */
    const img_type_t *type;
    img_probe_t probe;
    int orientation;        /* the one we apply: EXIF, or 1 for HEIC */
    int exif_orientation;
    int64_t taken_ms;
    int64_t max_pixels;     /* refused above this, declared or decoded */
} img_src_t;

/* Test hook: JPEG through FFmpeg at full size, the path thumbnails took
 * before shrink-on-load; the unit test compares against it (SSIM). */
static bool img_force_full;

static void img_src_free(img_src_t *s)
{
    if (s->probe.heif_handle)
        heif_image_handle_release(s->probe.heif_handle);
    if (s->probe.heif)
        heif_context_free(s->probe.heif);
    free(s->probe.exif_owned);
    av_buffer_unref(&s->buf);
    if (s->fd >= 0)
        close(s->fd);
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

/* Read on until buf holds the first `upto` bytes of the file (fewer when
 * it shrank under us: then that is its size). */
static int img_read_more(img_src_t *s, size_t upto, char *err, size_t errlen)
{
    if (upto > s->size)
        upto = s->size;
    if (pv_fail("image_alloc") || av_buffer_realloc(&s->buf, upto + AV_INPUT_BUFFER_PADDING_SIZE) < 0)
        return img_errf(err, errlen, -ENOMEM, "out of memory reading image");
    while (s->len < upto) {
        ssize_t n = pread(s->fd, s->buf->data + s->len, upto - s->len, (off_t)s->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || pv_fail("image_io"))
            return img_errf(err, errlen, -EIO, "cannot read image: %s",
                            strerror(n < 0 ? errno : EIO));
        if (n == 0) {
            s->size = s->len; /* shrank under us: use what is there */
            break;
        }
        s->len += (size_t)n;
    }
    memset(s->buf->data + s->len, 0, AV_INPUT_BUFFER_PADDING_SIZE);
    return 0;
}

/* Open the file and read its head (all of it when small). */
static int img_read_file(const char *path, img_src_t *s, char *err, size_t errlen)
{
    s->fd = pv_fail("image_io") ? (errno = EIO, -1) : open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        return img_errf(err, errlen, -EIO, "cannot open image: %s", strerror(errno));
    struct stat st;
    if (fstat(s->fd, &st) < 0)
        return img_errf(err, errlen, -EIO, "cannot stat image: %s", strerror(errno));
    if (st.st_size > IMG_MAX_FILE)
        return img_errf(err, errlen, -EMSGSIZE, "image file too large (%lld bytes)",
                        (long long)st.st_size);
    s->size = (size_t)st.st_size;
    return img_read_more(s, IMG_HEAD, err, errlen);
}

/* A JPEG libjpeg decodes (8-bit, Huffman-coded, grey or 3-component; not
 * lossless, arithmetic-coded, CMYK or 12-bit: FFmpeg takes those), with
 * its first scan within what was read. */
static bool img_jpeg_streams(const img_probe_t *p)
{
    return !img_force_full && p->jpeg_data > 0 && p->jpeg_bits == 8 && p->jpeg_sof >= 0xC0 &&
           p->jpeg_sof <= 0xC2 && (p->jpeg_comps == 1 || p->jpeg_comps == 3);
}

/* Read, sniff, probe. A JPEG that libjpeg decodes is read only up to its
 * first scan (its head): libjpeg streams the rest from the file, and finds
 * truncated or damaged data itself. Anything else is read whole and
 * checked complete here. */
static int img_load(const char *path, img_src_t *s, int64_t max_pixels, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->max_pixels = max_pixels;
    img_init();
    int rc = img_read_file(path, s, err, errlen);
    if (rc < 0)
        return rc;
    s->type = img_type_of(s->buf->data, s->len);
    if (!s->type)
        return s->len == 0 ? img_bad(err, errlen, "empty file")
                           : img_bad(err, errlen, "not a JPEG, PNG, WebP or HEIC file");
    img_probe_t *p = &s->probe;
    bool jpeg = s->type->codec == AV_CODEC_ID_MJPEG;
    if (jpeg && s->len < s->size) {
        rc = s->type->probe(s->buf->data, s->len, p, err, errlen);
        if (rc < 0)
            return rc;
        if (!img_jpeg_streams(p))
            memset(p, 0, sizeof(*p)); /* probed again, whole */
    }
    if (!(jpeg && img_jpeg_streams(p))) {
        if ((rc = img_read_more(s, s->size, err, errlen)) < 0)
            return rc;
        if ((rc = s->type->probe(s->buf->data, s->len, p, err, errlen)) < 0)
            return rc;
    }
    s->libjpeg = jpeg && img_jpeg_streams(p);
    if ((int64_t)p->w * p->h > max_pixels)
        return img_errf(err, errlen, -EMSGSIZE,
                        "the photo is %d\u00d7%d (%.0f megapixels); this appliance takes photos "
                        "of at most %.0f megapixels",
                        p->w, p->h, (double)p->w * p->h / 1e6, (double)max_pixels / 1e6);
    if (p->bytes_pp <= 0)
        p->bytes_pp = 4; /* JPEG (yuv444 at most, 3) and WebP (yuva420p, < 4) */
    if (p->w <= 0 || p->h <= 0 || (!p->complete && s->len == s->size))
        return img_bad(err, errlen, "truncated or incomplete %s data", s->type->name);
    rc = exif_read(p->exif, p->exif_len, &s->exif_orientation, &s->taken_ms);
    if (rc < 0)
        return img_errf(err, errlen, rc, "out of memory reading EXIF");
    /* libheif has already applied irot/imir; HEIF says ignore EXIF's. */
    s->orientation = s->type->codec == AV_CODEC_ID_NONE ? 1 : s->exif_orientation;
    return 0;
}

/* ---- decoding ---- */

typedef struct img_pixels {
    AVFrame *frame;          /* decoded picture (points into heif for HEIC) */
    struct heif_image *heif; /* owns the HEIC pixels */
} img_pixels_t;

static void img_pixels_free(img_pixels_t *px)
{
    av_frame_free(&px->frame);
    if (px->heif)
        heif_image_release(px->heif);
    px->heif = NULL;
}

static int img_decode_av(const img_src_t *s, int lowres, img_pixels_t *px, char *err,
                         size_t errlen)
{
    const AVCodec *codec = avcodec_find_decoder(s->type->codec);
    if (!codec)
        return img_errf(err, errlen, -EIO, "no %s decoder in this FFmpeg", s->type->name);
    AVCodecContext *c = pv_fail("image_alloc") ? NULL : avcodec_alloc_context3(codec);
    AVPacket *pkt = pv_fail("image_alloc") ? NULL : av_packet_alloc();
    px->frame = pv_fail("image_alloc") ? NULL : av_frame_alloc();
    int rc;
    if (!c || !pkt || !px->frame) {
        rc = img_errf(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    c->thread_count = 1;
    c->max_pixels = s->max_pixels;
    c->err_recognition = AV_EF_EXPLODE; /* a damaged stream is an error */
    c->lowres = lowres <= codec->max_lowres ? lowres : codec->max_lowres;
    rc = pv_fail("image_decode") ? AVERROR(EIO) : avcodec_open2(c, codec, NULL);
    if (rc < 0) {
        rc = img_errf(err, errlen, rc == AVERROR(ENOMEM) ? -ENOMEM : -EIO,
                      "cannot open the %s decoder", s->type->name);
        goto out;
    }
    pkt->buf = av_buffer_ref(s->buf);
    if (!pkt->buf) {
        rc = img_errf(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    pkt->data = s->buf->data;
    pkt->size = (int)s->len;
    pkt->flags = AV_PKT_FLAG_KEY;
    rc = pv_fail("image_decode") ? AVERROR_INVALIDDATA : avcodec_send_packet(c, pkt);
    if (rc >= 0)
        rc = avcodec_send_packet(c, NULL); /* flush: the one frame comes out */
    if (rc >= 0 || rc == AVERROR_EOF)
        rc = avcodec_receive_frame(c, px->frame);
    if (rc < 0) {
        rc = img_av_bad(err, errlen, rc, s->type->name);
        goto out;
    }
    if (px->frame->width <= 0 || px->frame->height <= 0 || px->frame->decode_error_flags ||
        (px->frame->flags & AV_FRAME_FLAG_CORRUPT)) {
        rc = img_bad(err, errlen, "corrupt %s data", s->type->name);
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        av_frame_free(&px->frame);
    av_packet_free(&pkt);
    avcodec_free_context(&c);
    return rc;
}

static int img_decode_heic(const img_src_t *s, img_pixels_t *px, char *err, size_t errlen)
{
    bool alpha = s->probe.alpha;
    struct heif_error e = {heif_error_Decoder_plugin_error, heif_suberror_Unspecified, "failed"};
    if (!pv_fail("image_decode"))
        e = heif_decode_image(s->probe.heif_handle, &px->heif, heif_colorspace_RGB,
                              alpha ? heif_chroma_interleaved_RGBA : heif_chroma_interleaved_RGB,
                              NULL);
    if (e.code == heif_error_Memory_allocation_error)
        return img_errf(err, errlen, -ENOMEM, "out of memory decoding HEIC");
    if (e.code != heif_error_Ok)
        return img_bad(err, errlen, "HEIC: %s", e.message ? e.message : "decode failed");
    int stride = 0;
    const uint8_t *plane =
        heif_image_get_plane_readonly(px->heif, heif_channel_interleaved, &stride);
    int w = heif_image_get_width(px->heif, heif_channel_interleaved);
    int h = heif_image_get_height(px->heif, heif_channel_interleaved);
    if (!plane || w <= 0 || h <= 0 || stride <= 0)
        return img_bad(err, errlen, "HEIC decoded to nothing");
    /* What came out, not only what the header said: a grid or a lying
     * header must not pass a bigger picture than was admitted. */
    if ((int64_t)w * h > (int64_t)s->probe.w * s->probe.h || (int64_t)w * h > s->max_pixels)
        return img_errf(err, errlen, -EMSGSIZE, "HEIC decoded to %d\u00d7%d, more than the %d\u00d7%d it declares",
                        w, h, s->probe.w, s->probe.h);
    px->frame = pv_fail("image_alloc") ? NULL : av_frame_alloc();
    if (!px->frame)
        return img_errf(err, errlen, -ENOMEM, "out of memory");
    /* A view, not a copy: sws reads it; heif_image owns the bytes. */
    px->frame->format = alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24;
    px->frame->width = w;
    px->frame->height = h;
    px->frame->data[0] = (uint8_t *)plane;
    px->frame->linesize[0] = stride;
    return 0;
}

static int img_decode(const img_src_t *s, int lowres, img_pixels_t *px, char *err, size_t errlen)
{
    memset(px, 0, sizeof(*px));
    int rc = s->type->codec == AV_CODEC_ID_NONE ? img_decode_heic(s, px, err, errlen)
             : s->libjpeg ? pv_jpeg_decode(s->fd, lowres, &px->frame, err, errlen)
                          : img_decode_av(s, lowres, px, err, errlen);
    if (rc < 0)
        img_pixels_free(px);
    return rc;
}

/* ---- geometry ---- */

/* EXIF orientation as a mapping from a displayed pixel (x, y) to the
 * stored one: swap x/y first, then mirror the stored axes. */
typedef struct img_orient {
    bool swap, flip_x, flip_y;
} img_orient_t;

static const img_orient_t img_orients[9] = {
    [1] = {false, false, false}, [2] = {false, true, false}, [3] = {false, true, true},
    [4] = {false, false, true},  [5] = {true, false, false}, [6] = {true, false, true},
    [7] = {true, true, true},    [8] = {true, true, false},
};

static bool orient_swaps(int o) { return o >= 5 && o <= 8; }

/* Fit w x h inside max_w x max_h (<= 0: unbounded), aspect kept, never
 * upscaled. */
static void img_fit(int w, int h, int max_w, int max_h, int *ow, int *oh)
{
    *ow = w;
    *oh = h;
    long long mw = max_w > 0 ? max_w : w, mh = max_h > 0 ? max_h : h;
    if (w <= mw && h <= mh)
        return;
    if ((long long)w * mh > (long long)h * mw) { /* width-bound */
        *ow = (int)mw;
        *oh = (int)(((long long)h * mw * 2 + w) / (2LL * w));
    } else {
        *oh = (int)mh;
        *ow = (int)(((long long)w * mh * 2 + h) / (2LL * h));
    }
    if (*ow < 1)
        *ow = 1;
    if (*oh < 1)
        *oh = 1;
}

/* Largest JPEG lowres (1/2^n DCT) whose output still covers the target. */
static int img_pick_lowres(const img_src_t *s, int tw, int th)
{
    if (s->type->codec != AV_CODEC_ID_MJPEG || !s->probe.lowres_ok || img_force_full)
        return 0;
    int n = 0;
    while (n < 3) {
        int k = n + 1;
        int w = (s->probe.w + (1 << k) - 1) >> k, h = (s->probe.h + (1 << k) - 1) >> k;
        if (w < tw || h < th)
            break;
        n = k;
    }
    return n;
}

/* ---- pixel work ---- */

static AVFrame *img_frame_new(int fmt, int w, int h)
{
    AVFrame *f = pv_fail("image_alloc") ? NULL : av_frame_alloc();
    if (!f)
        return NULL;
    f->format = fmt;
    f->width = w;
    f->height = h;
    if (av_frame_get_buffer(f, 0) < 0) {
        av_frame_free(&f);
        return NULL;
    }
    return f;
}

static bool fmt_has_alpha(int fmt)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(fmt);
    return d && (d->flags & AV_PIX_FMT_FLAG_ALPHA);
}

static bool fmt_is_yuv(int fmt)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(fmt);
    return d && !(d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL)) && d->nb_components >= 3;
}

/* Scale/convert src into a new w x h frame of fmt. Full-range YUV sources
 * that are not the yuvj* formats carry their range in color_range, which
 * swscale does not read from the frame: pass it on. */
static int img_scale(const AVFrame *src, int fmt, int w, int h, AVFrame **out)
{
    *out = NULL;
    if (!sws_isSupportedInput(src->format) || !sws_isSupportedOutput(fmt))
        return -ENOTSUP;
    AVFrame *dst = img_frame_new(fmt, w, h);
    if (!dst)
        return -ENOMEM;
    struct SwsContext *sws =
        pv_fail("image_alloc")
            ? NULL
            : sws_getContext(src->width, src->height, src->format, w, h, fmt,
                             SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
    if (!sws) {
        av_frame_free(&dst);
        return -ENOMEM;
    }
    if (src->color_range == AVCOL_RANGE_JPEG && fmt_is_yuv(src->format)) {
        int *inv, *tab, sr, dr, br, co, sa;
        if (sws_getColorspaceDetails(sws, &inv, &sr, &tab, &dr, &br, &co, &sa) >= 0)
            sws_setColorspaceDetails(sws, inv, 1, tab, dr, br, co, sa);
    }
    sws_scale(sws, (const uint8_t *const *)src->data, src->linesize, 0, src->height, dst->data,
              dst->linesize);
    sws_freeContext(sws);
    if (fmt_is_yuv(fmt))
        dst->color_range = fmt == AV_PIX_FMT_YUVJ420P || fmt == AV_PIX_FMT_YUVJ422P ||
                                   fmt == AV_PIX_FMT_YUVJ444P
                               ? AVCOL_RANGE_JPEG
                               : AVCOL_RANGE_MPEG;
    *out = dst;
    return 0;
}

/* RGBA in place: blend onto white and make opaque (straight alpha). */
static void img_on_white(AVFrame *f)
{
    for (int y = 0; y < f->height; y++) {
        uint8_t *p = f->data[0] + (ptrdiff_t)y * f->linesize[0];
        for (int x = 0; x < f->width; x++, p += 4) {
            unsigned a = p[3], ia = 255 - a;
            for (int c = 0; c < 3; c++)
                p[c] = (uint8_t)((p[c] * a + 255 * ia + 127) / 255);
            p[3] = 255;
        }
    }
}

/* Copy a packed frame (bpp bytes per pixel) through an EXIF orientation.
 * Each displayed pixel's source address is linear in (x, y): compute the
 * origin and the two steps once. */
static int img_orient(const AVFrame *src, int orientation, AVFrame **out)
{
    const img_orient_t *o = &img_orients[orientation];
    int sw = src->width, sh = src->height;
    int dw = o->swap ? sh : sw, dh = o->swap ? sw : sh;
    int bpp = src->format == AV_PIX_FMT_RGBA ? 4 : 3;
    AVFrame *dst = img_frame_new(src->format, dw, dh);
    if (!dst)
        return -ENOMEM;
    ptrdiff_t ls = src->linesize[0];
    /* stored (sx, sy) of displayed (1, 0) and (0, 1), relative to (0, 0) */
    ptrdiff_t step_x = o->swap ? (o->flip_y ? -ls : ls) : (o->flip_x ? -bpp : bpp);
    ptrdiff_t step_y = o->swap ? (o->flip_x ? -bpp : bpp) : (o->flip_y ? -ls : ls);
    ptrdiff_t origin = (o->flip_x ? (ptrdiff_t)(sw - 1) * bpp : 0) +
                       (o->flip_y ? (ptrdiff_t)(sh - 1) * ls : 0);
    for (int y = 0; y < dh; y++) {
        const uint8_t *s = src->data[0] + origin + step_y * y;
        uint8_t *d = dst->data[0] + (ptrdiff_t)y * dst->linesize[0];
        for (int x = 0; x < dw; x++, s += step_x, d += bpp)
            memcpy(d, s, (size_t)bpp);
    }
    *out = dst;
    return 0;
}

/*
 * Decoded pixels -> a w x h (displayed) frame of fmt with orientation
 * applied. Alpha is kept only when fmt has alpha; otherwise it is blended
 * on white at full size first (so transparent pixels' colour does not
 * bleed into edges when scaling).
 */
static int img_render(const AVFrame *src, int orientation, int fmt, int w, int h, AVFrame **out)
{
    AVFrame *cur = NULL, *tmp = NULL;
    const AVFrame *in = src;
    int rc = 0;
    bool alpha = fmt_has_alpha(src->format), keep_alpha = fmt_has_alpha(fmt);
    if (alpha && !keep_alpha) {
        rc = img_scale(src, AV_PIX_FMT_RGBA, src->width, src->height, &cur);
        if (rc < 0)
            goto out;
        img_on_white(cur);
        in = cur;
    }
    if (orientation == 1) {
        rc = img_scale(in, fmt, w, h, out);
        goto out;
    }
    int packed = alpha && keep_alpha ? AV_PIX_FMT_RGBA : in == cur ? AV_PIX_FMT_RGBA
                                                                    : AV_PIX_FMT_RGB24;
    bool swap = orient_swaps(orientation);
    rc = img_scale(in, packed, swap ? h : w, swap ? w : h, &tmp);
    if (rc < 0)
        goto out;
    av_frame_free(&cur);
    rc = img_orient(tmp, orientation, &cur);
    if (rc < 0)
        goto out;
    if (fmt == packed) {
        *out = cur;
        cur = NULL;
    } else {
        rc = img_scale(cur, fmt, w, h, out);
    }
out:
    av_frame_free(&cur);
    av_frame_free(&tmp);
    return rc;
}

/* ---- thumbnail ---- */

int pv_image_encode_jpeg(const AVFrame *f, int q, AVPacket **out)
{
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
    if (!codec)
        return -EIO;
    AVCodecContext *c = pv_fail("image_alloc") ? NULL : avcodec_alloc_context3(codec);
    AVPacket *pkt = pv_fail("image_alloc") ? NULL : av_packet_alloc();
    AVFrame *in = pkt ? av_frame_clone(f) : NULL; /* a reference: quality and pts are set */
    int rc = c && in ? 0 : AVERROR(ENOMEM);
    if (rc == 0) {
        c->width = f->width;
        c->height = f->height;
        c->pix_fmt = AV_PIX_FMT_YUVJ420P;
        c->color_range = AVCOL_RANGE_JPEG;
        c->time_base = (AVRational){1, 25};
        c->flags |= AV_CODEC_FLAG_QSCALE;
        c->global_quality = FF_QP2LAMBDA * q; /* like -q:v q */
        in->quality = c->global_quality;
        in->pts = 0;
        rc = pv_fail("image_decode") ? AVERROR(EIO) : avcodec_open2(c, codec, NULL);
    }
    if (rc >= 0)
        rc = avcodec_send_frame(c, in);
    if (rc >= 0)
        rc = avcodec_send_frame(c, NULL);
    if (rc >= 0)
        rc = avcodec_receive_packet(c, pkt);
    av_frame_free(&in);
    avcodec_free_context(&c);
    if (rc < 0) {
        av_packet_free(&pkt);
        return rc == AVERROR(ENOMEM) ? -ENOMEM : -EIO;
    }
    *out = pkt;
    return 0;
}

static int img_encode_jpeg(AVFrame *f, const char *path, char *err, size_t errlen)
{
    AVPacket *pkt = NULL;
    int rc = pv_image_encode_jpeg(f, 4, &pkt);
    if (rc < 0)
        return img_errf(err, errlen, rc, rc == -ENOMEM ? "out of memory" : "cannot encode the thumbnail");
    int fd = pv_fail("image_io") ? -1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    rc = fd < 0 ? -EIO : pv_write_all(fd, pkt->data, (size_t)pkt->size);
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = -EIO;
    if (rc < 0)
        rc = img_errf(err, errlen, rc == -ENOSPC ? -ENOSPC : -EIO, "cannot write thumbnail %s", path);
    av_packet_free(&pkt);
    return rc;
}

/* ---- public ---- */

/* A decoder handing back pixels swscale cannot read is, to the user, an
 * image we cannot decode; otherwise we ran out of memory. */
static int img_render_err(const AVFrame *f, int rc, char *err, size_t errlen)
{
    if (rc == -ENOTSUP)
        return img_bad(err, errlen, "unsupported pixel format %s",
                       av_get_pix_fmt_name(f->format) ? av_get_pix_fmt_name(f->format) : "?");
    return img_errf(err, errlen, rc, "out of memory converting the image");
}

/* Stored (pre-orientation) full size: the header's for JPEG decoded at
 * lowres, else the decoded frame's (libheif's is after irot). */
static void img_full_size(const img_src_t *s, const AVFrame *f, int lowres, int *w, int *h)
{
    *w = lowres ? s->probe.w : f->width;
    *h = lowres ? s->probe.h : f->height;
}

/* Memory a decode at 1/2^lowres takes, at most: the picture, plus what
 * the decoder holds besides. FFmpeg: the file and (JPEG) an unescaped copy
 * of its scan. libjpeg: the head we read, its row buffers, and every
 * coefficient at full size when the file has several scans. */
static uint64_t img_estimate(const img_src_t *s, int lowres)
{
    const img_probe_t *p = &s->probe;
    uint64_t w = ((uint64_t)p->w + (1u << lowres) - 1) >> lowres;
    uint64_t h = ((uint64_t)p->h + (1u << lowres) - 1) >> lowres;
    if (s->libjpeg)
        return w * h * 3 + (p->jpeg_multiscan ? p->jpeg_coef : 0) + s->len +
               (uint64_t)p->w * 64 + (1u << 20);
    return w * h * (uint64_t)p->bytes_pp + 2 * (uint64_t)s->len;
}

int pv_image_ingest(const char *path, pv_image_info_t *info, const char *thumb_path, char *err,
                    size_t errlen)
{
    pv_image_limits_t lim = {PV_IMAGE_MAX_PIXELS, UINT64_MAX};
    return pv_image_ingest_limited(path, &lim, info, thumb_path, NULL, err, errlen);
}

int pv_image_ingest_limited(const char *path, const pv_image_limits_t *lim, pv_image_info_t *info,
                            const char *thumb_path, uint64_t *estimate, char *err, size_t errlen)
{
    img_src_t s;
    img_pixels_t px = {0};
    AVFrame *thumb = NULL;
    if (err && errlen)
        err[0] = '\0';
    int rc = img_load(path, &s, lim->max_pixels, err, errlen);
    if (rc < 0)
        goto out;
    bool swap = orient_swaps(s.orientation);
    int tw, th; /* thumbnail size, displayed */
    img_fit(swap ? s.probe.h : s.probe.w, swap ? s.probe.w : s.probe.h, PV_THUMB_MAX_SIDE,
            PV_THUMB_MAX_SIDE, &tw, &th);
    /* A DCT-scaled decode is a block average, sharper than swscale's
     * filter: leave at least a factor of two for the final scale (as
     * libvips' shrink-on-load does), or sharp edges alias (testsrc2 at
     * 3000x2000: SSIM 0.963 against the full decode at 1/8, 0.99 at 1/4). */
    int lowres = thumb_path ? img_pick_lowres(&s, 2 * (swap ? th : tw), 2 * (swap ? tw : th)) : 0;
    uint64_t need = img_estimate(&s, lowres);
    if (estimate)
        *estimate = need;
    if (need > lim->max_decode_bytes) { /* the caller decides: another pool, or no */
        rc = img_errf(err, errlen, -E2BIG, "decoding it takes about %llu MB",
                      (unsigned long long)(need >> 20));
        goto out;
    }
    rc = img_decode(&s, lowres, &px, err, errlen);
    if (rc < 0)
        goto out;
    int w, h;
    img_full_size(&s, px.frame, lowres, &w, &h);
    memset(info, 0, sizeof(*info));
    snprintf(info->content_type, sizeof(info->content_type), "%s", s.type->content_type);
    info->width = swap ? h : w;
    info->height = swap ? w : h;
    info->orientation = s.orientation;
    info->taken_ms = s.taken_ms;
    if (!thumb_path)
        goto out;
    img_fit(info->width, info->height, PV_THUMB_MAX_SIDE, PV_THUMB_MAX_SIDE, &tw, &th);
    rc = img_render(px.frame, s.orientation, AV_PIX_FMT_YUVJ420P, tw, th, &thumb);
    if (rc < 0) {
        rc = img_render_err(px.frame, rc, err, errlen);
        goto out;
    }
    rc = img_encode_jpeg(thumb, thumb_path, err, errlen);
out:
    av_frame_free(&thumb);
    img_pixels_free(&px);
    img_src_free(&s);
    return rc;
}

int pv_image_decode(const char *path, int pix_fmt, int max_w, int max_h, struct AVFrame **out,
                    char *err, size_t errlen)
{
    img_src_t s;
    img_pixels_t px = {0};
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(pix_fmt);
    if (!desc || (desc->flags & AV_PIX_FMT_FLAG_HWACCEL) || !sws_isSupportedOutput(pix_fmt))
        return img_errf(err, errlen, -EINVAL, "unsupported output pixel format %d", pix_fmt);
    int rc = img_load(path, &s, PV_IMAGE_MAX_PIXELS, err, errlen);
    if (rc < 0)
        goto out;
    bool swap = orient_swaps(s.orientation);
    int tw, th; /* output size, displayed */
    img_fit(swap ? s.probe.h : s.probe.w, swap ? s.probe.w : s.probe.h, max_w, max_h, &tw, &th);
    int lowres = img_pick_lowres(&s, swap ? th : tw, swap ? tw : th);
    rc = img_decode(&s, lowres, &px, err, errlen);
    if (rc < 0)
        goto out;
    int w, h;
    img_full_size(&s, px.frame, lowres, &w, &h);
    img_fit(swap ? h : w, swap ? w : h, max_w, max_h, &tw, &th);
    rc = img_render(px.frame, s.orientation, pix_fmt, tw, th, out);
    if (rc < 0)
        rc = img_render_err(px.frame, rc, err, errlen);
out:
    img_pixels_free(&px);
    img_src_free(&s);
    return rc;
}
