/*
 * multipart.c — the streaming multipart/form-data parser (see multipart.h).
 *
 * The body is a byte stream searched for the delimiter "\r\n--boundary".
 * The stream is treated as if it began with "\r\n", so a body that starts
 * with "--boundary" (the usual case) needs no special path. Likewise a
 * part's data starts as if after "\r\n": RFC 2046 lets a part with no body
 * end its headers with the delimiter's own CRLF ("...\r\n\r\n--b"). Those
 * lent bytes (mp->lent) are never data: a mismatch replays only the rest.
 * While part data
 * is scanned, bytes that might be the start of the delimiter are held back
 * (they are a prefix of the delimiter, so they are never copied: on a
 * mismatch they are replayed from mp->delim). A boundary may not contain
 * CR, so the only place the delimiter can restart after a mismatch is the
 * current byte: no KMP table is needed.
 *
 * A part's header block is collected (up to PV_MP_HEADER_MAX) and parsed in
 * place once its blank line arrives: quoted-string escapes and RFC 5987
 * percent-escapes only ever shrink text, so they decode over their source.
 */
#include "http/multipart.h"
#include "base/pv.h"
#include "base/text.h"

#include <errno.h>
#include <string.h>

enum mp_state {
    MP_PREAMBLE,   /* before the first delimiter: discarded */
    MP_AFTER_DELIM,/* just after a delimiter: "--", padding or CRLF next */
    MP_DASH2,      /* saw "-", need the second */
    MP_PAD,        /* transport padding (SP/HT) before the CRLF */
    MP_LF,         /* saw CR after a delimiter, need LF */
    MP_HEADERS,    /* collecting a part's header block */
    MP_DATA,       /* a part's body */
    MP_EPILOGUE,   /* after the close delimiter: discarded */
};

/* ---- small character classes ---- */

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* RFC 7230 tchar */
static bool is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 2046 bchars */
static bool is_bchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("'()+_,-./:=? ", c) != NULL;
}

static bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

static bool ieq(const char *a, size_t an, const char *b)
{
    size_t bn = strlen(b);
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}


/* Names and filenames must be UTF-8 without controls. Returns 0 or
 * -EINVAL, and in *fit how many bytes of whole characters fit in cap - 1. */
static int text_check(const char *src, size_t n, size_t cap, size_t *fit)
{
    const unsigned char *s = (const unsigned char *)src;
    *fit = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = pv_utf8_len(s + i, n - i);
        if (cl == 0 || is_ctl(s[i]))
            return -EINVAL;
        i += cl;
        if (i < cap)
            *fit = i;
    }
    return 0;
}

/* Copies a decoded name/filename into a field; a long one is cut at a
 * character boundary. */
static int copy_text(char *dst, size_t cap, const char *src, size_t n)
{
    size_t keep;
    if (text_check(src, n, cap, &keep) != 0)
        return -EINVAL;
    memcpy(dst, src, keep);
    dst[keep] = '\0';
    return 0;
}

/* ---- header parameters: shared by Content-Type and Content-Disposition ---- */

static void skip_ows(char **pp)
{
    while (is_ows(**pp))
        (*pp)++;
}

/* A token at *pp; its length in *n. */
static int read_token(char **pp, char **tok, size_t *n)
{
    char *p = *pp;
    while (is_tchar(*p))
        p++;
    if (p == *pp)
        return -EINVAL;
    *tok = *pp;
    *n = (size_t)(p - *pp);
    *pp = p;
    return 0;
}

/* A parameter value at *pp, a quoted-string (escapes undone in place) or
 * an unquoted run up to ';' or whitespace. The value starts at *val. */
static int read_value(char **pp, char **val, size_t *n)
{
    char *p = *pp, *w;

    if (*p != '"') {
        char *s = p;
        while (*p && *p != ';' && !is_ows(*p)) {
            if (*p == '"' || is_ctl((unsigned char)*p))
                return -EINVAL;
            p++;
        }
        if (p == s)
            return -EINVAL;
        *val = s;
        *n = (size_t)(p - s);
        *pp = p;
        return 0;
    }
    w = *val = ++p;
    for (;; p++) {
        if (*p == '\0')
            return -EINVAL; /* unterminated */
        if (*p == '"')
            break;
        if (*p == '\\' && p[1] != '\0')
            p++;
        if (is_ctl((unsigned char)*p) && *p != '\t')
            return -EINVAL;
        *w++ = *p;
    }
    *n = (size_t)(w - *val);
    *pp = p + 1;
    return 0;
}

/* Next "; name=value" at *pp: 1 with name/value, 0 at the end, -EINVAL. */
static int next_param(char **pp, char **name, size_t *nn, char **val, size_t *vn)
{
    skip_ows(pp);
    while (**pp == ';') { /* empty parameters (";;", a trailing ";") */
        (*pp)++;
        skip_ows(pp);
    }
    if (**pp == '\0')
        return 0;
    if (read_token(pp, name, nn) != 0)
        return -EINVAL;
    skip_ows(pp);
    if (**pp != '=')
        return -EINVAL;
    (*pp)++;
    skip_ows(pp);
    if (read_value(pp, val, vn) != 0)
        return -EINVAL;
    skip_ows(pp);
    if (**pp != ';' && **pp != '\0')
        return -EINVAL;
    return 1;
}

/* The media type at *pp, which must be followed by the end, OWS or ';'. */
static int read_media_type(char **pp, char **type, size_t *n)
{
    char *t, *sub;
    size_t tn, sn;

    skip_ows(pp);
    if (read_token(pp, &t, &tn) != 0 || **pp != '/')
        return -EINVAL;
    (*pp)++;
    if (read_token(pp, &sub, &sn) != 0)
        return -EINVAL;
    if (**pp != '\0' && **pp != ';' && !is_ows(**pp))
        return -EINVAL;
    *type = t;
    *n = tn + 1 + sn;
    return 0;
}

int pv_multipart_boundary(const char *content_type, char *out, size_t outlen)
{
    char buf[1024], *p = buf, *type, *name, *val;
    size_t tn, nn, vn, bn = 0;
    int r;

    if (!content_type || !out || strlen(content_type) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, content_type);
    if (read_media_type(&p, &type, &tn) != 0 ||
        !ieq(type, tn, "multipart/form-data"))
        return -EINVAL;
    while ((r = next_param(&p, &name, &nn, &val, &vn)) == 1) {
        if (!ieq(name, nn, "boundary"))
            continue;
        if (bn != 0 || vn == 0 || vn > PV_MP_BOUNDARY_MAX || vn + 1 > outlen)
            return -EINVAL; /* a second boundary, an empty or long one */
        memcpy(out, val, vn);
        out[vn] = '\0';
        bn = vn;
    }
    if (r < 0 || bn == 0)
        return -EINVAL;
    for (size_t i = 0; i < bn; i++)
        if (!is_bchar(out[i]))
            return -EINVAL;
    return out[bn - 1] == ' ' ? -EINVAL : 0;
}

/* ---- part headers ---- */

/* RFC 5987 ext-value: charset'language'pct-encoded, decoded in place.
 * 1 when decoded (UTF-8), 0 for another charset (ignored), -EINVAL. */
static int ext_value(char *v, size_t n, char **out, size_t *outn)
{
    char *q1 = memchr(v, '\'', n), *q2, *end = v + n;

    if (!q1 || !(q2 = memchr(q1 + 1, '\'', (size_t)(end - q1 - 1))))
        return -EINVAL;
    if (!ieq(v, (size_t)(q1 - v), "utf-8"))
        return 0;
    size_t len = (size_t)(end - q2 - 1);
    ssize_t dn = pv_pct_decode(q2 + 1, len, q2 + 1, len, 0);
    if (dn < 0)
        return -EINVAL;
    *out = q2 + 1;
    *outn = (size_t)dn;
    return 1;
}

enum { CD_NAME = 1, CD_FILENAME = 2, CD_FILENAME_EXT = 4 };

static int disposition_param(pv_mp_part_t *part, unsigned *seen, char *name,
                             size_t nn, char *val, size_t vn)
{
    unsigned bit;
    int r;

    if (ieq(name, nn, "name")) {
        bit = CD_NAME;
        r = copy_text(part->name, sizeof(part->name), val, vn);
    } else if (ieq(name, nn, "filename")) {
        bit = CD_FILENAME;
        /* filename* wins whichever comes first */
        size_t fit;
        r = (*seen & CD_FILENAME_EXT)
                ? text_check(val, vn, 0, &fit) /* validate only */
                : copy_text(part->filename, sizeof(part->filename), val, vn);
    } else if (ieq(name, nn, "filename*")) {
        char *dec;
        size_t dn;
        bit = CD_FILENAME_EXT;
        r = ext_value(val, vn, &dec, &dn);
        if (r == 1)
            r = copy_text(part->filename, sizeof(part->filename), dec, dn);
        else if (r == 0)
            bit = 0; /* another charset: fall back to filename= */
    } else {
        return 0; /* other parameters are not ours */
    }
    if (r < 0 || (*seen & bit))
        return -EINVAL;
    *seen |= bit;
    if (bit & (CD_FILENAME | CD_FILENAME_EXT))
        part->has_filename = true;
    return 0;
}

static int parse_disposition(pv_mp_part_t *part, char *v)
{
    char *p = v, *t, *name, *val;
    size_t tn, nn, vn;
    unsigned seen = 0;
    int r;

    skip_ows(&p);
    if (read_token(&p, &t, &tn) != 0 || !ieq(t, tn, "form-data"))
        return -EINVAL;
    if (*p != '\0' && *p != ';' && !is_ows(*p))
        return -EINVAL;
    while ((r = next_param(&p, &name, &nn, &val, &vn)) == 1)
        if (disposition_param(part, &seen, name, nn, val, vn) != 0)
            return -EINVAL;
    if (r < 0 || !(seen & CD_NAME))
        return -EINVAL;
    return 0;
}

static int parse_content_type(pv_mp_part_t *part, char *v)
{
    char *p = v, *type;
    size_t n;

    if (read_media_type(&p, &type, &n) != 0 || n >= sizeof(part->content_type))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        part->content_type[i] = lower(type[i]);
    part->content_type[n] = '\0';
    return 0;
}

/* One "Name: value" line, NUL-terminated, without its CRLF. */
static int parse_header_line(pv_mp_part_t *part, char *line, unsigned *seen)
{
    char *p = line, *name, *v;
    size_t nn;

    if (read_token(&p, &name, &nn) != 0 || *p != ':')
        return -EINVAL; /* also rejects folded (obsolete) continuation lines */
    v = p + 1;
    for (char *c = v; *c; c++)
        if (is_ctl((unsigned char)*c) && *c != '\t')
            return -EINVAL;
    if (ieq(name, nn, "content-disposition")) {
        if (*seen & 1)
            return -EINVAL;
        *seen |= 1;
        return parse_disposition(part, v);
    }
    if (ieq(name, nn, "content-type")) {
        if (*seen & 2)
            return -EINVAL;
        *seen |= 2;
        return parse_content_type(part, v);
    }
    return 0; /* Content-Transfer-Encoding and others: not used (RFC 7578) */
}

/* The whole block in mp->hdr: lines each ending in CRLF, then CRLF. */
static int parse_headers(pv_multipart_t *mp)
{
    char *p = mp->hdr, *end = mp->hdr + mp->hdr_len - 2; /* before the blank line */
    unsigned seen = 0;

    memset(&mp->part, 0, sizeof(mp->part));
    while (p < end) {
        char *cr = memchr(p, '\r', (size_t)(end - p));
        if (!cr || cr[1] != '\n')
            return -EINVAL;
        *cr = '\0';
        if (memchr(p, '\n', (size_t)(cr - p)) || memchr(p, '\0', (size_t)(cr - p)))
            return -EINVAL; /* bare LF or NUL inside a line */
        if (parse_header_line(&mp->part, p, &seen) != 0)
            return -EINVAL;
        p = cr + 2;
    }
    return (seen & 1) ? 0 : -EINVAL; /* Content-Disposition is required */
}

/* ---- the stream ---- */

static int fail(pv_multipart_t *mp, int err)
{
    if (mp->err == 0)
        mp->err = err < 0 ? err : -ECANCELED;
    return mp->err;
}

static int emit(pv_multipart_t *mp, const void *data, size_t len)
{
    if (len == 0 || mp->state != MP_DATA || !mp->cb.part_data)
        return 0;
    int r = mp->cb.part_data(mp->ctx, data, len);
    return r ? fail(mp, r) : 0;
}

/*
 * Searches p[0..n) for the delimiter, passing part bytes on (in MP_DATA).
 * Returns bytes consumed: all of them, or up to the delimiter's last byte
 * (then *found). Negative on a callback error.
 */
static long scan(pv_multipart_t *mp, const char *p, size_t n, bool *found)
{
    size_t i = 0, run = 0; /* p[run..i) is data not yet passed on */

    *found = false;
    while (i < n) {
        if (mp->match == 0) {
            const char *cr = memchr(p + i, '\r', n - i);
            if (!cr) {
                i = n;
                break;
            }
            i = (size_t)(cr - p);
            if (emit(mp, p + run, i - run) != 0)
                return mp->err;
            mp->match = 1;
            mp->lent = 0;
            run = ++i;
            continue;
        }
        if (p[i] == mp->delim[mp->match]) {
            run = ++i;
            if (++mp->match == mp->delim_len) {
                mp->match = mp->lent = 0;
                *found = true;
                return (long)i;
            }
            continue;
        }
        /* Not the delimiter after all: the held bytes were data. The
         * current byte is looked at again from match 0. */
        if (emit(mp, mp->delim + mp->lent, mp->match - mp->lent) != 0)
            return mp->err;
        mp->match = 0;
        mp->lent = 0;
        run = i;
    }
    if (emit(mp, p + run, i - run) != 0)
        return mp->err;
    return (long)n;
}

static int begin_part(pv_multipart_t *mp)
{
    if (parse_headers(mp) != 0)
        return fail(mp, -EINVAL);
    if (mp->parts >= PV_MP_MAX_PARTS)
        return fail(mp, -EMSGSIZE);
    mp->parts++;
    mp->state = MP_DATA;
    mp->match = mp->lent = 2; /* the header block's last CRLF, lent */
    if (mp->cb.part_begin) {
        int r = mp->cb.part_begin(mp->ctx, &mp->part);
        if (r)
            return fail(mp, r);
    }
    return 0;
}

/* Collects header bytes until the blank line; returns bytes used. */
static long headers(pv_multipart_t *mp, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (mp->hdr_len >= PV_MP_HEADER_MAX)
            return fail(mp, -EMSGSIZE);
        mp->hdr[mp->hdr_len++] = p[i];
        if (p[i] != '\n')
            continue;
        size_t L = mp->hdr_len;
        if ((L == 2 && mp->hdr[0] == '\r') ||
            (L >= 4 && memcmp(mp->hdr + L - 4, "\r\n\r\n", 4) == 0)) {
            mp->hdr[L] = '\0';
            int r = begin_part(mp);
            return r ? r : (long)(i + 1);
        }
    }
    return (long)n;
}

/* One byte after a delimiter: "--" ends the body, optional SP/HT then CRLF
 * starts a part. */
static int after_delim(pv_multipart_t *mp, char c)
{
    switch (mp->state) {
    case MP_AFTER_DELIM:
        if (c == '-') {
            mp->state = MP_DASH2;
            return 0;
        }
        /* fall through */
    case MP_PAD:
        if (is_ows(c)) {
            mp->state = MP_PAD;
            return 0;
        }
        if (c != '\r')
            return fail(mp, -EINVAL);
        mp->state = MP_LF;
        return 0;
    case MP_DASH2:
        if (c != '-')
            return fail(mp, -EINVAL);
        mp->state = MP_EPILOGUE;
        return 0;
    case MP_LF:
        if (c != '\n')
            return fail(mp, -EINVAL);
        mp->state = MP_HEADERS;
        mp->hdr_len = 0;
        return 0;
    }
    return fail(mp, -EINVAL);
}

int pv_multipart_feed(pv_multipart_t *mp, const void *data, size_t len)
{
    const char *p = data;
    bool found;
    long used;

    while (len > 0 && mp->err == 0) {
        switch (mp->state) {
        case MP_PREAMBLE:
        case MP_DATA:
            used = scan(mp, p, len, &found);
            if (used < 0)
                return (int)used;
            if (found && mp->state == MP_DATA && mp->cb.part_end) {
                int r = mp->cb.part_end(mp->ctx);
                if (r)
                    return fail(mp, r);
            }
            if (found)
                mp->state = MP_AFTER_DELIM;
            break;
        case MP_HEADERS:
            used = headers(mp, p, len);
            if (used < 0)
                return (int)used;
            break;
        case MP_EPILOGUE:
            return 0;
        default:
            if (after_delim(mp, *p) != 0)
                return mp->err;
            used = 1;
            break;
        }
        p += used;
        len -= (size_t)used;
    }
    return mp->err;
}

int pv_multipart_init(pv_multipart_t *mp, const char *boundary,
                      const pv_mp_callbacks_t *cb, void *ctx)
{
    size_t n = boundary ? strlen(boundary) : 0;

    memset(mp, 0, sizeof(*mp) - sizeof(mp->hdr));
    mp->hdr[0] = '\0';
    if (n == 0 || n > PV_MP_BOUNDARY_MAX || boundary[n - 1] == ' ')
        return mp->err = -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!is_bchar(boundary[i]))
            return mp->err = -EINVAL;
    if (cb)
        mp->cb = *cb;
    mp->ctx = ctx;
    memcpy(mp->delim, "\r\n--", 4);
    memcpy(mp->delim + 4, boundary, n);
    mp->delim_len = 4 + n;
    /* As if the body began with CRLF: "--boundary" at offset 0 matches. */
    mp->match = mp->lent = 2;
    mp->state = MP_PREAMBLE;
    return 0;
}

int pv_multipart_finish(pv_multipart_t *mp)
{
    if (mp->err)
        return mp->err;
    return mp->state == MP_EPILOGUE ? 0 : -EINVAL;
}

bool pv_multipart_done(const pv_multipart_t *mp)
{
    return mp->err == 0 && mp->state == MP_EPILOGUE;
}

int pv_multipart_parts(const pv_multipart_t *mp) { return mp->parts; }
