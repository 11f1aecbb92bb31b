/*
 * s3xml.c — a small pure XML reader and S3's documents on top of it
 * (contract in s3xml.h).
 *
 * One pass over the buffer. The element stack is the path string itself
 * ("Root/Child/Leaf") plus the length of it at each depth, so a close tag
 * is checked against the name it must match and the callback gets the
 * whole path to switch on without keeping state of its own. Text is
 * checked where it is scanned (entities, UTF-8, controls) and handed out
 * raw; pv_xml_text decodes it into the caller's field, so nothing is
 * copied that nobody asked for. Why not libxml2: we read five small
 * documents of one shape each, and a reader that cannot expand entities
 * or fetch a DTD has no such attack surface to configure away.
 */
#include "cloud/s3xml.h"

#include "base/pv.h"
#include "base/text.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XML_MAX_NAME 64

typedef struct xp {
    const char *p, *end;                     /* what is left to read */
    pv_xml_fn fn;                            /* the caller's callback */
    void *arg;                               /* its argument */
    char path[PV_XML_MAX_PATH];              /* names from the root, '/'-joined */
    size_t off[PV_XML_MAX_DEPTH + 1];        /* path length at each depth */
    bool child[PV_XML_MAX_DEPTH + 1];        /* the element at depth has a child */
    bool words[PV_XML_MAX_DEPTH + 1];        /* ... has text other than blanks */
    bool markup[PV_XML_MAX_DEPTH + 1];       /* ... has a comment or PI inside */
    const char *text_at[PV_XML_MAX_DEPTH + 1]; /* where its content starts */
    int depth;                               /* open elements */
    bool root_done;                          /* the root element has closed */
} xp_t;

/* ---- characters ---- */

static bool xml_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static bool xml_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':';
}

static bool xml_name_char(char c)
{
    return xml_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* XML 1.0's Char production, for references. */
static bool xml_char_ok(uint32_t cp)
{
    return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
           (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

static const struct {
    const char *name;
    size_t len;
    char c;
} xml_named[] = {
    {"amp", 3, '&'}, {"lt", 2, '<'}, {"gt", 2, '>'}, {"quot", 4, '"'}, {"apos", 4, '\''},
};

/* The reference at s ('&' first, n bytes left): its code point and its
 * length, or 0 when it is not a valid one. */
static size_t xml_ref(const char *s, size_t n, uint32_t *cp)
{
    const char *semi = memchr(s, ';', n < 12 ? n : 12);
    if (!semi)
        return 0;
    size_t len = (size_t)(semi - s) + 1;
    const char *body = s + 1;
    size_t blen = len - 2;
    for (size_t i = 0; i < PV_ARRAY_LEN(xml_named); i++)
        if (blen == xml_named[i].len && memcmp(body, xml_named[i].name, blen) == 0) {
            *cp = (uint32_t)xml_named[i].c;
            return len;
        }
    if (blen < 2 || body[0] != '#')
        return 0;
    bool hex = body[1] == 'x';
    size_t i = hex ? 2 : 1;
    uint32_t v = 0;
    if (i == blen)
        return 0;
    for (; i < blen; i++) {
        int d = hex ? pv_hex_digit((unsigned char)body[i])
                    : (body[i] >= '0' && body[i] <= '9' ? body[i] - '0' : -1);
        if (d < 0 || v > 0x10FFFF)
            return 0;
        v = v * (hex ? 16 : 10) + (uint32_t)d;
    }
    if (!xml_char_ok(v))
        return 0;
    *cp = v;
    return len;
}

static size_t xml_utf8_put(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the text character at s (a reference, a UTF-8 sequence or
 * one byte), 0 if it is not allowed in text. */
static size_t xml_text_char(const char *s, size_t n, uint32_t *cp)
{
    unsigned char c = (unsigned char)*s;
    if (c == '&')
        return xml_ref(s, n, cp);
    if (c == '<')
        return 0;
    if (c < 0x80) {
        *cp = c;
        return xml_char_ok(c) ? 1 : 0;
    }
    *cp = 0x80; /* any non-ASCII: copied as is */
    return pv_utf8_len((const unsigned char *)s, n);
}

ssize_t pv_xml_text(const char *raw, size_t len, char *dst, size_t cap, bool cut)
{
    size_t i = 0, o = 0;
    if (cap == 0)
        return -EMSGSIZE;
    while (i < len) {
        uint32_t cp;
        size_t n = xml_text_char(raw + i, len - i, &cp);
        char enc[4];
        const char *from = raw + i;
        size_t out = n;
        if (n == 0)
            return -EINVAL;
        if (raw[i] == '&') {
            out = xml_utf8_put(cp, enc);
            from = enc;
        }
        if (o + out >= cap) {
            if (!cut)
                return -EMSGSIZE;
            break;
        }
        memcpy(dst + o, from, out);
        o += out;
        i += n;
    }
    dst[o] = '\0';
    return (ssize_t)o;
}

/* ---- the reader ---- */

static bool xp_starts(const xp_t *x, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(x->end - x->p) >= n && memcmp(x->p, s, n) == 0;
}

/* Skips past the next `stop` (a comment's or PI's end). */
static int xp_skip_past(xp_t *x, const char *stop)
{
    size_t n = strlen(stop);
    for (const char *q = x->p; (size_t)(x->end - q) >= n; q++)
        if (memcmp(q, stop, n) == 0) {
            x->p = q + n;
            return 0;
        }
    return -EINVAL;
}

/* Text up to the next '<'; only blanks outside the root. */
static int xp_text(xp_t *x)
{
    int d = x->depth;
    while (x->p < x->end && *x->p != '<') {
        uint32_t cp;
        size_t n = xml_text_char(x->p, (size_t)(x->end - x->p), &cp);
        if (n == 0)
            return -EINVAL;
        if (!xml_blank(*x->p)) {
            if (d == 0 || x->child[d])
                return -EINVAL; /* text outside the root, or mixed with children */
            x->words[d] = true;
        }
        x->p += n;
    }
    return 0;
}

static int xp_name(xp_t *x, const char **name, size_t *len)
{
    const char *s = x->p;
    if (s >= x->end || !xml_name_start(*s))
        return -EINVAL;
    while (x->p < x->end && xml_name_char(*x->p))
        x->p++;
    *name = s;
    *len = (size_t)(x->p - s);
    return *len <= XML_MAX_NAME ? 0 : -EMSGSIZE;
}

static void xp_blanks(xp_t *x)
{
    while (x->p < x->end && xml_blank(*x->p))
        x->p++;
}

/* name="value" or name='value' pairs, skipped; stops at '>' or '/'. */
static int xp_attributes(xp_t *x)
{
    for (;;) {
        const char *start = x->p;
        xp_blanks(x);
        if (x->p >= x->end)
            return -EINVAL;
        if (*x->p == '>' || *x->p == '/')
            return 0;
        const char *name;
        size_t len;
        if (x->p == start || xp_name(x, &name, &len) != 0)
            return -EINVAL; /* attributes are separated by blanks */
        xp_blanks(x);
        if (x->p >= x->end || *x->p++ != '=')
            return -EINVAL;
        xp_blanks(x);
        if (x->p >= x->end || (*x->p != '"' && *x->p != '\''))
            return -EINVAL;
        char q = *x->p++;
        while (x->p < x->end && *x->p != q) {
            if (*x->p == '<')
                return -EINVAL;
            x->p++;
        }
        if (x->p >= x->end)
            return -EINVAL;
        x->p++;
    }
}

static int xp_emit(xp_t *x, enum pv_xml_event ev, const char *text, size_t len)
{
    return x->fn(x->arg, ev, x->path, x->depth, text, len);
}

/* The end of the element at the top: its text if a leaf, then CLOSE. */
static int xp_close_top(xp_t *x, const char *text_end)
{
    int d = x->depth, rc;
    if (!x->child[d]) {
        if (x->markup[d])
            return -EINVAL;
        rc = xp_emit(x, PV_XML_TEXT, x->text_at[d], (size_t)(text_end - x->text_at[d]));
        if (rc)
            return rc;
    }
    rc = xp_emit(x, PV_XML_CLOSE, NULL, 0);
    if (rc)
        return rc;
    x->path[x->off[d - 1] ? x->off[d - 1] - 1 : 0] = '\0';
    x->depth--;
    if (x->depth == 0)
        x->root_done = true;
    return 0;
}

static int xp_open(xp_t *x)
{
    const char *name;
    size_t len;
    int rc, d = x->depth;
    x->p++; /* '<' */
    if (x->root_done)
        return -EINVAL; /* one root only */
    if ((rc = xp_name(x, &name, &len)) != 0 || (rc = xp_attributes(x)) != 0)
        return rc;
    if (d + 1 > PV_XML_MAX_DEPTH)
        return -EMSGSIZE;
    if (d > 0) {
        if (x->words[d])
            return -EINVAL; /* text mixed with children */
        x->child[d] = true;
    }
    size_t at = x->off[d];
    if (at + len + 2 > sizeof(x->path))
        return -EMSGSIZE;
    if (d > 0)
        x->path[at - 1] = '/';
    memcpy(x->path + at, name, len);
    x->path[at + len] = '\0';
    x->depth = ++d;
    x->off[d] = at + len + 1;
    x->child[d] = x->words[d] = x->markup[d] = false;
    bool empty = *x->p == '/';
    if (empty && (x->end - x->p < 2 || x->p[1] != '>'))
        return -EINVAL;
    x->p += empty ? 2 : 1;
    x->text_at[d] = x->p;
    rc = xp_emit(x, PV_XML_OPEN, NULL, 0);
    if (rc == 0 && empty)
        rc = xp_close_top(x, x->p);
    return rc;
}

static int xp_close(xp_t *x)
{
    const char *tag = x->p, *name;
    size_t len;
    int rc, d = x->depth;
    x->p += 2; /* "</" */
    if (d == 0)
        return -EINVAL;
    if ((rc = xp_name(x, &name, &len)) != 0)
        return rc;
    xp_blanks(x);
    if (x->p >= x->end || *x->p++ != '>')
        return -EINVAL;
    const char *top = x->path + (d > 1 ? x->off[d - 1] : 0);
    if (strlen(top) != len || memcmp(top, name, len) != 0)
        return -EINVAL;
    return xp_close_top(x, tag);
}

/* One step: a piece of text or one piece of markup. */
static int xp_step(xp_t *x)
{
    if (*x->p != '<')
        return xp_text(x);
    if (xp_starts(x, "<?") || xp_starts(x, "<!--")) {
        x->markup[x->depth] = true;
        return xp_skip_past(x, *(x->p + 1) == '?' ? "?>" : "-->");
    }
    if (xp_starts(x, "<!"))
        return -EINVAL; /* DOCTYPE, CDATA */
    if (xp_starts(x, "</"))
        return xp_close(x);
    return xp_open(x);
}

int pv_xml_parse(const char *buf, size_t len, pv_xml_fn fn, void *arg)
{
    xp_t x = {.p = buf, .end = buf + len, .fn = fn, .arg = arg};
    if (!buf || !fn)
        return -EINVAL;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        x.p += 3;
    while (x.p < x.end) {
        int rc = xp_step(&x);
        if (rc)
            return rc;
    }
    return x.root_done && x.depth == 0 ? 0 : -EINVAL;
}

/* ---- S3's documents ---- */

static int xml_int64(const char *raw, size_t len, int64_t max, int64_t *out)
{
    int64_t v = 0;
    if (len == 0 || len > 18)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (raw[i] < '0' || raw[i] > '9')
            return -EINVAL;
        v = v * 10 + (raw[i] - '0');
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int xml_bool(const char *raw, size_t len, bool *out)
{
    if (len == 4 && memcmp(raw, "true", 4) == 0)
        *out = true;
    else if (len == 5 && memcmp(raw, "false", 5) == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

/* An ETag: decoded, surrounding quotes removed, cut to fit. */
static int xml_etag(const char *raw, size_t len, char out[PV_S3_ETAG_MAX])
{
    char tmp[PV_S3_ETAG_MAX + 2];
    ssize_t n = pv_xml_text(raw, len, tmp, sizeof(tmp), true);
    if (n < 0)
        return (int)n;
    const char *s = tmp;
    if (n >= 2 && tmp[0] == '"' && tmp[n - 1] == '"') {
        tmp[n - 1] = '\0';
        s++;
    }
    pv_strlcpy(out, s, PV_S3_ETAG_MAX);
    return 0;
}

/* Decoded into a new string of at most max bytes. */
static int xml_strdup(const char *raw, size_t len, size_t max, char **out)
{
    char *s = pv_fail("s3xml_alloc") ? NULL : malloc(max + 1);
    if (!s)
        return -ENOMEM;
    ssize_t n = pv_xml_text(raw, len, s, max + 1, false);
    if (n < 0) {
        free(s);
        return (int)n;
    }
    free(*out);
    *out = s;
    return 0;
}

/* Grows an array of `size`-byte items to hold n+1, up to max. */
static int xml_grow(void **v, size_t *cap, size_t n, size_t size, size_t max)
{
    if (n >= max)
        return -EMSGSIZE;
    if (n < *cap)
        return 0;
    size_t c = *cap ? 2 * *cap : 16;
    void *p = pv_fail("s3xml_alloc") ? NULL : realloc(*v, c * size);
    if (!p)
        return -ENOMEM;
    *v = p;
    *cap = c;
    return 0;
}

static int xml_root(int depth, enum pv_xml_event ev, const char *path, const char *want)
{
    return depth == 1 && ev == PV_XML_OPEN && strcmp(path, want) != 0 ? -ENOENT : 0;
}

/* Error */

static int err_cb(void *arg, enum pv_xml_event ev, const char *path, int depth, const char *text,
                  size_t len)
{
    pv_s3_error_doc_t *e = arg;
    int rc = xml_root(depth, ev, path, "Error");
    if (rc || ev != PV_XML_TEXT || depth != 2)
        return rc;
    ssize_t n = 0;
    if (strcmp(path, "Error/Code") == 0)
        n = pv_xml_text(text, len, e->code, sizeof(e->code), true);
    else if (strcmp(path, "Error/Message") == 0)
        n = pv_xml_text(text, len, e->message, sizeof(e->message), true);
    else if (strcmp(path, "Error/RequestId") == 0)
        n = pv_xml_text(text, len, e->request_id, sizeof(e->request_id), true);
    return n < 0 ? (int)n : 0;
}

int pv_s3xml_error(const char *buf, size_t len, pv_s3_error_doc_t *out)
{
    *out = (pv_s3_error_doc_t){0};
    int rc = pv_xml_parse(buf, len, err_cb, out);
    if (rc == 0 && !out->code[0])
        rc = -EINVAL; /* an Error says what it is */
    if (rc)
        *out = (pv_s3_error_doc_t){0};
    return rc;
}

/* ListBucketResult */

typedef struct list_ctx {
    pv_s3_listing_t *l; /* being filled */
    size_t cap;         /* objects allocated */
} list_ctx_t;

static int list_object(list_ctx_t *c, const char *leaf, const char *text, size_t len)
{
    pv_s3_object_t *o = &c->l->objects[c->l->n - 1];
    if (strcmp(leaf, "Key") == 0)
        return o->key ? -EINVAL : xml_strdup(text, len, PV_S3_KEY_MAX, &o->key);
    if (strcmp(leaf, "Size") == 0)
        return xml_int64(text, len, INT64_MAX / 2, &o->size);
    if (strcmp(leaf, "ETag") == 0)
        return xml_etag(text, len, o->etag);
    if (strcmp(leaf, "LastModified") == 0) {
        ssize_t n = pv_xml_text(text, len, o->last_modified, sizeof(o->last_modified), true);
        return n < 0 ? (int)n : 0;
    }
    return 0;
}

static int list_cb(void *arg, enum pv_xml_event ev, const char *path, int depth, const char *text,
                   size_t len)
{
    list_ctx_t *c = arg;
    pv_s3_listing_t *l = c->l;
    int rc = xml_root(depth, ev, path, "ListBucketResult");
    if (rc)
        return rc;
    bool contents = strncmp(path, "ListBucketResult/Contents", 25) == 0;
    if (depth == 2 && contents && ev == PV_XML_OPEN) {
        rc = xml_grow((void **)&l->objects, &c->cap, l->n, sizeof(*l->objects), PV_S3_MAX_LIST);
        if (rc == 0)
            l->objects[l->n++] = (pv_s3_object_t){.size = -1};
        return rc;
    }
    if (depth == 2 && contents && ev == PV_XML_CLOSE) {
        const pv_s3_object_t *o = &l->objects[l->n - 1];
        return o->key && o->size >= 0 ? 0 : -EINVAL;
    }
    if (ev != PV_XML_TEXT)
        return 0;
    if (depth == 3 && contents)
        return list_object(c, path + 26, text, len);
    if (depth != 2)
        return 0;
    if (strcmp(path, "ListBucketResult/IsTruncated") == 0)
        return xml_bool(text, len, &l->truncated);
    if (strcmp(path, "ListBucketResult/NextContinuationToken") == 0)
        return xml_strdup(text, len, 4096, &l->next_token);
    return 0;
}

int pv_s3xml_listing(const char *buf, size_t len, pv_s3_listing_t *out)
{
    *out = (pv_s3_listing_t){0};
    list_ctx_t c = {.l = out};
    int rc = pv_xml_parse(buf, len, list_cb, &c);
    if (rc == 0 && out->truncated && !out->next_token)
        rc = -EINVAL; /* cannot go on */
    return rc;
}

void pv_s3_listing_free(pv_s3_listing_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->objects[i].key);
    free(l->objects);
    free(l->next_token);
    *l = (pv_s3_listing_t){0};
}

/* ListPartsResult */

typedef struct parts_ctx {
    pv_s3_parts_t *p; /* being appended to */
    size_t cap;       /* parts allocated */
    bool marker;      /* NextPartNumberMarker seen */
} parts_ctx_t;

static int parts_leaf(pv_s3_part_t *part, const char *leaf, const char *text, size_t len)
{
    int64_t v;
    int rc;
    if (strcmp(leaf, "PartNumber") == 0) {
        if ((rc = xml_int64(text, len, PV_S3_MAX_PARTS, &v)) != 0 || v < 1)
            return rc ? rc : -EINVAL;
        part->number = (int)v;
        return 0;
    }
    if (strcmp(leaf, "Size") == 0)
        return xml_int64(text, len, INT64_MAX / 2, &part->size);
    if (strcmp(leaf, "ETag") == 0)
        return xml_etag(text, len, part->etag);
    return 0;
}

static int parts_cb(void *arg, enum pv_xml_event ev, const char *path, int depth, const char *text,
                    size_t len)
{
    parts_ctx_t *c = arg;
    pv_s3_parts_t *p = c->p;
    int64_t v;
    int rc = xml_root(depth, ev, path, "ListPartsResult");
    if (rc)
        return rc;
    bool part = strncmp(path, "ListPartsResult/Part", 20) == 0 && (path[20] == '\0' || path[20] == '/');
    if (depth == 2 && part && ev == PV_XML_OPEN) {
        rc = xml_grow((void **)&p->v, &c->cap, p->n, sizeof(*p->v), PV_S3_MAX_PARTS);
        if (rc == 0)
            p->v[p->n++] = (pv_s3_part_t){.size = -1};
        return rc;
    }
    if (depth == 2 && part && ev == PV_XML_CLOSE)
        return p->v[p->n - 1].number > 0 && p->v[p->n - 1].size >= 0 ? 0 : -EINVAL;
    if (ev != PV_XML_TEXT)
        return 0;
    if (depth == 3 && part)
        return parts_leaf(&p->v[p->n - 1], path + 21, text, len);
    if (depth != 2)
        return 0;
    if (strcmp(path, "ListPartsResult/IsTruncated") == 0)
        return xml_bool(text, len, &p->truncated);
    if (strcmp(path, "ListPartsResult/NextPartNumberMarker") == 0) {
        if ((rc = xml_int64(text, len, PV_S3_MAX_PARTS, &v)) != 0)
            return rc;
        p->next_marker = (int)v;
        c->marker = true;
    }
    return 0;
}

int pv_s3xml_parts(const char *buf, size_t len, pv_s3_parts_t *out)
{
    parts_ctx_t c = {.p = out, .cap = out->n};
    out->truncated = false;
    out->next_marker = 0;
    int rc = pv_xml_parse(buf, len, parts_cb, &c);
    if (rc == 0 && out->truncated && !c.marker)
        rc = -EINVAL; /* cannot go on */
    return rc;
}

void pv_s3_parts_free(pv_s3_parts_t *p)
{
    if (!p)
        return;
    free(p->v);
    *p = (pv_s3_parts_t){0};
}

/* InitiateMultipartUploadResult, CompleteMultipartUploadResult */

typedef struct one_ctx {
    const char *root;  /* the document's root */
    const char *leaf;  /* path of the one value wanted */
    char *out;         /* where it goes */
    size_t cap;        /* its size */
    bool etag;         /* an ETag: quotes removed */
    bool found;        /* seen */
} one_ctx_t;

static int one_cb(void *arg, enum pv_xml_event ev, const char *path, int depth, const char *text,
                  size_t len)
{
    one_ctx_t *c = arg;
    int rc = xml_root(depth, ev, path, c->root);
    if (rc || ev != PV_XML_TEXT || strcmp(path, c->leaf) != 0)
        return rc;
    if (c->etag)
        rc = xml_etag(text, len, c->out);
    else {
        ssize_t n = pv_xml_text(text, len, c->out, c->cap, false);
        rc = n < 0 ? (int)n : 0;
    }
    c->found = rc == 0 && c->out[0];
    return rc;
}

static int one_value(const char *buf, size_t len, one_ctx_t *c)
{
    c->out[0] = '\0';
    int rc = pv_xml_parse(buf, len, one_cb, c);
    if (rc == 0 && !c->found)
        rc = -EINVAL;
    if (rc)
        c->out[0] = '\0';
    return rc;
}

int pv_s3xml_upload_id(const char *buf, size_t len, char *id, size_t cap)
{
    one_ctx_t c = {"InitiateMultipartUploadResult", "InitiateMultipartUploadResult/UploadId", id,
                   cap, false, false};
    return cap ? one_value(buf, len, &c) : -EMSGSIZE;
}

int pv_s3xml_complete(const char *buf, size_t len, char etag[PV_S3_ETAG_MAX])
{
    one_ctx_t c = {"CompleteMultipartUploadResult", "CompleteMultipartUploadResult/ETag", etag,
                   PV_S3_ETAG_MAX, true, false};
    return one_value(buf, len, &c);
}
