#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/ec.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/rsa.h>
#include <openssl/bio.h>
#include <openssl/x509v3.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>

/// OPENSSL_cleanse through a plain function (keeps call sites uniform).
static inline void COpenSSL_cleanse(void *p, size_t n) { OPENSSL_cleanse(p, n); }
/// SSL_CTX_set_min_proto_version and friends are macros over SSL_CTX_ctrl.
static inline int COpenSSL_ctx_tls13_only(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1;
}
static inline long COpenSSL_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static inline int COpenSSL_set_host_name(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name) == 1; }
/// SHA-256 in one call without a provider fetch or a context allocation (a record's version
/// digest is taken at every write). The low-level functions are deprecated for new code but
/// are OpenSSL's own implementation, with the same assembly.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static inline void COpenSSL_sha256(const void *data, size_t n, unsigned char out[32]) {
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, data, n);
    SHA256_Final(out, &c);
    OPENSSL_cleanse(&c, sizeof c);
}
#pragma GCC diagnostic pop
#endif
