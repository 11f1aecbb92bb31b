/*
 * tls.c — the server's TLS context and its first-start certificate.
 *
 * The context is deliberately narrow: TLS 1.2 and 1.3 only, forward-secret
 * key exchange (ECDHE / TLS 1.3 groups) with AEAD ciphers only, the
 * server's preference order, no compression (CRIME), no renegotiation.
 * Session tickets stay on (cheap resumption for browsers reconnecting).
 *
 * pv_tls_ensure_self_signed makes the certificate that lets the appliance
 * serve HTTPS on first boot before anyone installs a real one. Both files
 * are written to a temp name, fsync'd and renamed, so a crash never leaves
 * a half-written key; the key is 0600 from the moment it exists.
 */
#include "http/http.h"
#include "base/pv.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_ACTOR "tls"

static const char pv_tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char pv_tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
    "TLS_CHACHA20_POLY1305_SHA256";

/* Puts "what: <openssl reason>" into err and clears the error queue. */
static void pv_tls_err(char *err, size_t errlen, const char *what,
                       const char *file)
{
    char reason[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    if (err && errlen)
        snprintf(err, errlen, "%s%s%s%s%s", what, file ? " " : "",
                 file ? file : "", reason[0] ? ": " : "", reason);
}

SSL_CTX *pv_tls_ctx_new(const char *cert_file, const char *key_file,
                        char *err, size_t errlen)
{
    SSL_CTX *ctx = pv_fail("tls.ctx") ? NULL : SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        pv_tls_err(err, errlen, "cannot create a TLS context", NULL);
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, pv_tls12_ciphers) ||
        !SSL_CTX_set_ciphersuites(ctx, pv_tls13_suites) ||
        !SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384")) {
        pv_tls_err(err, errlen, "cannot set TLS parameters", NULL);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_PRIORITIZE_CHACHA);
    /* A connection's 16 KiB read and write buffers go back while empty
     * (as nginx has them): an idle or slow client holds ~35 KiB less. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    static const unsigned char sid_ctx[] = "pvd";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        pv_tls_err(err, errlen, "cannot load certificate", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL 3 already compares the key with the certificate here. */
        bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) ==
                        X509_R_KEY_VALUES_MISMATCH;
        pv_tls_err(err, errlen,
                   mismatch ? "private key does not match certificate"
                            : "cannot load private key",
                   key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        pv_tls_err(err, errlen, "private key does not match certificate",
                   key_file);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- self-signed certificate ---- */

static int pv_x509_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static X509 *pv_make_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;

    if (!x)
        return NULL;
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f; /* a positive serial number */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto fail;
    if (!X509_set_version(x, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -300) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600) ||
        !X509_set_pubkey(x, key))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    (const unsigned char *)"localhost", -1,
                                    -1, 0) ||
        !X509_set_issuer_name(x, name))
        goto fail;
    if (pv_x509_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        pv_x509_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
        pv_x509_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
        pv_x509_ext(x, NID_subject_alt_name,
                    "DNS:localhost,IP:127.0.0.1,IP:::1") < 0 ||
        pv_x509_ext(x, NID_subject_key_identifier, "hash") < 0)
        goto fail;
    if (!X509_sign(x, key, EVP_sha256()))
        goto fail;
    BN_free(bn);
    return x;
fail:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

/* Writes a PEM to path atomically: temp file with mode, fsync, rename. */
static int pv_write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *x)
{
    char tmp[PATH_MAX];
    int rc = -EIO;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = pv_fail("tls.write") ? (errno = EIO, -1) : mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -(errno ? errno : EIO);
    if (fchmod(fd, mode) < 0) {
        rc = -errno;
        close(fd);
        goto out;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        rc = -errno;
        close(fd);
        goto out;
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_X509(f, x);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        ok = 0;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok)
        goto out;
    if (rename(tmp, path) < 0) {
        rc = -errno;
        goto out;
    }
    return 0;
out:
    unlink(tmp);
    return rc;
}

/* The directory part of path, for its fsync after the renames. */
static void pv_dir_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, cap, ".");
        return;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0)
        n = 1;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, path, n);
    out[n] = '\0';
}

int pv_tls_ensure_self_signed(const char *cert_file, const char *key_file)
{
    char dir[PATH_MAX];
    X509 *x = NULL;
    int rc;

    if (access(cert_file, F_OK) == 0 && access(key_file, F_OK) == 0)
        return 0;
    EVP_PKEY *key = pv_fail("tls.keygen") ? NULL : EVP_EC_gen("P-256");
    if (!key) {
        rc = -EIO;
        goto out;
    }
    x = pv_make_cert(key);
    if (!x) {
        rc = -EIO;
        goto out;
    }
    /* Key first: a certificate never exists without its key. */
    rc = pv_write_pem(key_file, 0600, key, NULL);
    if (rc == 0)
        rc = pv_write_pem(cert_file, 0644, NULL, x);
    if (rc == 0) {
        pv_dir_of(key_file, dir, sizeof(dir));
        pv_fsync_dir(dir);
        pv_dir_of(cert_file, dir, sizeof(dir));
        pv_fsync_dir(dir);
        pv_info(LOG_ACTOR, "made a self-signed certificate %s", cert_file);
    }
out:
    if (rc < 0)
        pv_error(LOG_ACTOR, "cannot make a self-signed certificate: %s",
                 strerror(-rc));
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}
