/*
 * The "elastic-remote" OpenSSL 3 provider: key management and signatures for keys whose
 * private half stays in ELASTIC's key store. A remote key holds a default-provider public key
 * (for every parameter OpenSSL asks about) and a callback that signs whole messages. Public
 * keys of the same types can be imported too (public-only), so EVP_PKEY_eq can compare a
 * certificate's key with a remote key; remote keys never export (so OpenSSL never moves one
 * to another provider, where it could not sign), and signatures of this provider need a
 * remote key.
 */
#include "CElasticRemoteKey.h"

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PROVIDER_NAME "elastic-remote"
#define PROPERTY "provider=elastic-remote"
#define PARAM_REMOTE "elastic-remote-key"

enum key_kind { KIND_EC = 1, KIND_RSA = 2, KIND_ED25519 = 3 };

/* What CElasticRemoteKey_new hands to the import function (by address), marked so that no
 * other parameter of that name is taken for one. */
#define REMOTE_MAGIC 0x454c4b52u /* "ELKR" */
struct remote_source {
    unsigned magic;
    EVP_PKEY *pub;
    elastic_remote_sign_fn sign;
    elastic_remote_release_fn release;
    void *context;
    int imported;
};

struct key {
    enum key_kind kind;
    EVP_PKEY *pub;                /* default provider, public only */
    elastic_remote_sign_fn sign;  /* NULL: a public key imported for comparison */
    elastic_remote_release_fn release;
    void *context;
};

static OSSL_LIB_CTX *libctx;
static pthread_once_t libctx_once = PTHREAD_ONCE_INIT;

static enum key_kind kind_of(const EVP_PKEY *pub) {
    if (EVP_PKEY_is_a(pub, "EC")) return KIND_EC;
    if (EVP_PKEY_is_a(pub, "RSA")) return KIND_RSA;
    if (EVP_PKEY_is_a(pub, "ED25519")) return KIND_ED25519;
    return 0;
}

static const char *type_name(enum key_kind kind) {
    return kind == KIND_EC ? "EC" : kind == KIND_RSA ? "RSA" : "ED25519";
}

/* ---- key management ---- */

static void *key_new(void *provctx, enum key_kind kind) {
    (void)provctx;
    struct key *k = OPENSSL_zalloc(sizeof(*k));
    if (k != NULL) k->kind = kind;
    return k;
}
static void *ec_new(void *provctx) { return key_new(provctx, KIND_EC); }
static void *rsa_new(void *provctx) { return key_new(provctx, KIND_RSA); }
static void *ed25519_new(void *provctx) { return key_new(provctx, KIND_ED25519); }

static void key_free(void *keydata) {
    struct key *k = keydata;
    if (k == NULL) return;
    if (k->release != NULL) k->release(k->context);
    EVP_PKEY_free(k->pub);
    OPENSSL_free(k);
}

static int key_has(const void *keydata, int selection) {
    const struct key *k = keydata;
    if (k == NULL || k->pub == NULL) return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && k->sign == NULL) return 0;
    return 1;
}

static int key_import(void *keydata, int selection, const OSSL_PARAM params[]) {
    struct key *k = keydata;
    if (k == NULL || k->pub != NULL) return 0;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, PARAM_REMOTE);
    if (p != NULL) {
        struct remote_source *src = NULL;
        if (p->data_type != OSSL_PARAM_OCTET_STRING || p->data_size != sizeof(src)) return 0;
        memcpy(&src, p->data, sizeof(src));
        if (src == NULL || src->magic != REMOTE_MAGIC || src->pub == NULL || kind_of(src->pub) != k->kind
            || !EVP_PKEY_up_ref(src->pub))
            return 0;
        k->pub = src->pub;
        k->sign = src->sign;
        k->release = src->release;
        k->context = src->context;
        src->imported = 1;
        return 1;
    }
    /* A public key of the same type, for comparisons only. */
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY))
        return 0;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(libctx, type_name(k->kind), "provider=default");
    EVP_PKEY *pub = NULL;
    int ok = ctx != NULL && EVP_PKEY_fromdata_init(ctx) > 0
        && EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, (OSSL_PARAM *)params) > 0;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) return 0;
    k->pub = pub;
    return 1;
}

/* What import takes: the remote key's source, then a public key's parameters (what export
 * gives, without the first). */
static const OSSL_PARAM key_types[] = {
    OSSL_PARAM_octet_string(PARAM_REMOTE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *key_import_types(int selection) {
    (void)selection;
    return key_types;
}

/* A remote key never leaves this provider: OpenSSL would sign with the copy and fail. */
static int key_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg) {
    const struct key *k = keydata;
    if (k == NULL || k->pub == NULL || k->sign != NULL) return 0;
    return EVP_PKEY_export(k->pub, selection & ~OSSL_KEYMGMT_SELECT_PRIVATE_KEY, cb, cbarg);
}

static const OSSL_PARAM *key_export_types(int selection) {
    (void)selection;
    return key_types + 1;
}

static int key_get_params(void *keydata, OSSL_PARAM params[]) {
    const struct key *k = keydata;
    if (k == NULL || k->pub == NULL) return 0;
    return EVP_PKEY_get_params(k->pub, params);
}

static const OSSL_PARAM *key_gettable_params(void *provctx) {
    (void)provctx;
    static const OSSL_PARAM gettable[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_END,
    };
    return gettable;
}

static int key_match(const void *a, const void *b, int selection) {
    (void)selection;
    const struct key *x = a, *y = b;
    return x != NULL && y != NULL && x->pub != NULL && y->pub != NULL && EVP_PKEY_eq(x->pub, y->pub) == 1;
}

static const char *ec_operation(int id) { return id == OSSL_OP_SIGNATURE ? "ECDSA" : NULL; }
static const char *rsa_operation(int id) { return id == OSSL_OP_SIGNATURE ? "RSA" : NULL; }
static const char *ed25519_operation(int id) { return id == OSSL_OP_SIGNATURE ? "ED25519" : NULL; }

#define KEYMGMT_FUNCS(prefix)                                                                 \
    static const OSSL_DISPATCH prefix##_keymgmt[] = {                                         \
        {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))prefix##_new},                                \
        {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))key_free},                                   \
        {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))key_has},                                     \
        {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))key_import},                               \
        {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))key_import_types},                   \
        {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))key_export},                               \
        {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))key_export_types},                   \
        {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))key_get_params},                       \
        {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))key_gettable_params},             \
        {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))key_match},                                 \
        {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))prefix##_operation},         \
        {0, NULL},                                                                            \
    };
KEYMGMT_FUNCS(ec)
KEYMGMT_FUNCS(rsa)
KEYMGMT_FUNCS(ed25519)

/* ---- signatures ---- */

struct sig {
    struct key *key;
    char digest[16]; /* "SHA256", "SHA384", "SHA512"; "" for Ed25519 */
    int pss;
    unsigned char *buf;
    size_t len, cap;
};

static void *sig_newctx(void *provctx, const char *propq) {
    (void)provctx;
    (void)propq;
    return OPENSSL_zalloc(sizeof(struct sig));
}

static void sig_freectx(void *ctx) {
    struct sig *s = ctx;
    if (s == NULL) return;
    OPENSSL_clear_free(s->buf, s->cap);
    OPENSSL_free(s);
}

static void *sig_dupctx(void *ctx) {
    const struct sig *s = ctx;
    struct sig *d = OPENSSL_memdup(s, sizeof(*s));
    if (d == NULL) return NULL;
    d->buf = NULL;
    d->cap = 0;
    if (s->len > 0) {
        d->buf = OPENSSL_memdup(s->buf, s->len);
        if (d->buf == NULL) {
            OPENSSL_free(d);
            return NULL;
        }
        d->cap = s->len;
    }
    return d;
}

/* The canonical name of a digest the key store signs with ("" when none is given). */
static int set_digest(struct sig *s, const char *name) {
    if (name == NULL || name[0] == '\0') {
        strcpy(s->digest, s->key != NULL && s->key->kind == KIND_ED25519 ? "" : "SHA256");
        return 1;
    }
    if (s->key != NULL && s->key->kind == KIND_ED25519) return 0; /* pure Ed25519 only */
    EVP_MD *md = EVP_MD_fetch(libctx, name, "provider=default");
    if (md == NULL) return 0;
    const char *canonical = EVP_MD_is_a(md, "SHA256") ? "SHA256"
        : EVP_MD_is_a(md, "SHA384")                   ? "SHA384"
        : EVP_MD_is_a(md, "SHA512")                   ? "SHA512"
                                                      : NULL;
    EVP_MD_free(md);
    if (canonical == NULL) return 0;
    strcpy(s->digest, canonical);
    return 1;
}

static size_t digest_size(const struct sig *s) {
    return strcmp(s->digest, "SHA384") == 0 ? 48 : strcmp(s->digest, "SHA512") == 0 ? 64 : 32;
}

static int sig_set_ctx_params(void *ctx, const OSSL_PARAM params[]) {
    struct sig *s = ctx;
    if (params == NULL) return 1;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_digest(s, name)) return 0;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE);
    if (p != NULL) {
        int mode = 0;
        const char *text = NULL;
        if (p->data_type == OSSL_PARAM_UTF8_STRING && OSSL_PARAM_get_utf8_string_ptr(p, &text))
            mode = strcmp(text, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0      ? RSA_PKCS1_PSS_PADDING
                : strcmp(text, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING
                                                                    : 0;
        else if (!OSSL_PARAM_get_int(p, &mode))
            return 0;
        if (s->key == NULL || s->key->kind != KIND_RSA) return 0;
        if (mode != RSA_PKCS1_PSS_PADDING && mode != RSA_PKCS1_PADDING) return 0;
        s->pss = mode == RSA_PKCS1_PSS_PADDING;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN);
    if (p != NULL) {
        /* The key store's PSS salt is the digest's length: that, or "digest", or -1 (RSA_PSS_SALTLEN_DIGEST). */
        int len = 0;
        const char *text = NULL;
        if (p->data_type == OSSL_PARAM_UTF8_STRING && OSSL_PARAM_get_utf8_string_ptr(p, &text)) {
            /* "digest", or the digest's length in decimal (how OpenSSL 3.0 passes a number). */
            char *end = NULL;
            long n = strtol(text, &end, 10);
            if (strcmp(text, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) != 0
                && (end == text || *end != '\0' || (n != RSA_PSS_SALTLEN_DIGEST && (size_t)n != digest_size(s))))
                return 0;
        } else if (!OSSL_PARAM_get_int(p, &len) || (len != RSA_PSS_SALTLEN_DIGEST && (size_t)len != digest_size(s))) {
            return 0;
        }
    }
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST);
    if (p != NULL) {
        const char *name = NULL;
        struct sig probe = *s;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_digest(&probe, name)) return 0;
        if (strcmp(probe.digest, s->digest) != 0) return 0;
    }
    return 1;
}

static const OSSL_PARAM *sig_settable_ctx_params(void *ctx, void *provctx) {
    (void)ctx;
    (void)provctx;
    static const OSSL_PARAM settable[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END,
    };
    return settable;
}

/* The DER AlgorithmIdentifier of this signature, for X.509 (RSA-PSS is not offered there). */
static int algorithm_id(const struct sig *s, unsigned char **der) {
    int nid = NID_undef, ptype = V_ASN1_UNDEF;
    int d = strcmp(s->digest, "SHA384") == 0 ? 384 : strcmp(s->digest, "SHA512") == 0 ? 512 : 256;
    switch (s->key->kind) {
    case KIND_EC:
        nid = d == 256 ? NID_ecdsa_with_SHA256 : d == 384 ? NID_ecdsa_with_SHA384 : NID_ecdsa_with_SHA512;
        break;
    case KIND_RSA:
        if (s->pss) return 0;
        nid = d == 256 ? NID_sha256WithRSAEncryption : d == 384 ? NID_sha384WithRSAEncryption : NID_sha512WithRSAEncryption;
        ptype = V_ASN1_NULL;
        break;
    case KIND_ED25519: nid = NID_ED25519; break;
    }
    X509_ALGOR *a = X509_ALGOR_new();
    if (a == NULL || !X509_ALGOR_set0(a, OBJ_nid2obj(nid), ptype, NULL)) {
        X509_ALGOR_free(a);
        return 0;
    }
    int n = i2d_X509_ALGOR(a, der);
    X509_ALGOR_free(a);
    return n;
}

static int sig_get_ctx_params(void *ctx, OSSL_PARAM params[]) {
    struct sig *s = ctx;
    OSSL_PARAM *p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID);
    if (p != NULL) {
        if (s->key == NULL) return 0;
        unsigned char *der = NULL;
        int n = algorithm_id(s, &der);
        int ok = n > 0 && OSSL_PARAM_set_octet_string(p, der, (size_t)n);
        OPENSSL_free(der);
        if (!ok) return 0;
    }
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p != NULL && !OSSL_PARAM_set_utf8_string(p, s->digest)) return 0;
    return 1;
}

static const OSSL_PARAM *sig_gettable_ctx_params(void *ctx, void *provctx) {
    (void)ctx;
    (void)provctx;
    static const OSSL_PARAM gettable[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_END,
    };
    return gettable;
}

static int sig_digest_sign_init(void *ctx, const char *mdname, void *provkey, const OSSL_PARAM params[]) {
    struct sig *s = ctx;
    struct key *k = provkey;
    if (s == NULL || k == NULL || k->sign == NULL) return 0; /* only remote keys sign here */
    s->key = k;
    s->pss = 0;
    s->len = 0;
    if (!set_digest(s, mdname)) return 0;
    return sig_set_ctx_params(s, params);
}

static int sig_digest_sign_update(void *ctx, const unsigned char *data, size_t len) {
    struct sig *s = ctx;
    if (len == 0) return 1;
    if (len > ((size_t)1 << 30) - s->len) return 0; /* a signed message is far smaller */
    if (s->len + len > s->cap) {
        size_t cap = s->cap * 2 > s->len + len ? s->cap * 2 : s->len + len;
        unsigned char *b = OPENSSL_clear_realloc(s->buf, s->cap, cap);
        if (b == NULL) return 0;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 1;
}

static int sign_message(struct sig *s, unsigned char *sig, size_t *siglen, size_t sigsize, const unsigned char *msg,
                        size_t len) {
    if (sig == NULL) {
        *siglen = (size_t)EVP_PKEY_get_size(s->key->pub);
        return 1;
    }
    size_t room = sigsize;
    if (!s->key->sign(s->key->context, s->digest[0] ? s->digest : NULL, s->pss, msg, len, sig, &room)) return 0;
    *siglen = room;
    return 1;
}

static int sig_digest_sign_final(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize) {
    struct sig *s = ctx;
    return sign_message(s, sig, siglen, sigsize, s->buf, s->len);
}

static int sig_digest_sign(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize, const unsigned char *tbs,
                           size_t tbslen) {
    return sign_message(ctx, sig, siglen, sigsize, tbs, tbslen);
}

static const OSSL_DISPATCH signature_funcs[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))sig_newctx},
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx},
    {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_sign_update},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))sig_digest_sign},
    {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params},
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable_ctx_params},
    {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))sig_settable_ctx_params},
    {0, NULL},
};

/* ---- the provider ---- */

static const OSSL_ALGORITHM keymgmt_algorithms[] = {
    {"EC:id-ecPublicKey", PROPERTY, ec_keymgmt, "ELASTIC remote EC key"},
    {"RSA:rsaEncryption", PROPERTY, rsa_keymgmt, "ELASTIC remote RSA key"},
    {"ED25519", PROPERTY, ed25519_keymgmt, "ELASTIC remote Ed25519 key"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM signature_algorithms[] = {
    {"ECDSA", PROPERTY, signature_funcs, "ELASTIC key store ECDSA"},
    {"RSA:rsaEncryption", PROPERTY, signature_funcs, "ELASTIC key store RSA"},
    {"ED25519", PROPERTY, signature_funcs, "ELASTIC key store Ed25519"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *provider_query(void *provctx, int operation, int *no_cache) {
    (void)provctx;
    *no_cache = 0;
    switch (operation) {
    case OSSL_OP_KEYMGMT: return keymgmt_algorithms;
    case OSSL_OP_SIGNATURE: return signature_algorithms;
    default: return NULL;
    }
}

static const OSSL_DISPATCH provider_funcs[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))provider_query},
    {0, NULL},
};

static int provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
                         void **provctx) {
    (void)in;
    *out = provider_funcs;
    *provctx = (void *)handle;
    return 1;
}

static void make_libctx(void) {
    OSSL_LIB_CTX *c = OSSL_LIB_CTX_new();
    if (c == NULL) return;
    if (OSSL_PROVIDER_load(c, "default") == NULL || !OSSL_PROVIDER_add_builtin(c, PROVIDER_NAME, provider_init)
        || OSSL_PROVIDER_load(c, PROVIDER_NAME) == NULL || !EVP_set_default_properties(c, "?provider=default")) {
        OSSL_LIB_CTX_free(c);
        return;
    }
    libctx = c;
}

struct ossl_lib_ctx_st *CElasticRemoteKey_libctx(void) {
    pthread_once(&libctx_once, make_libctx);
    return libctx;
}

struct evp_pkey_st *CElasticRemoteKey_new(const unsigned char *spki, size_t spki_len, elastic_remote_sign_fn sign,
                                          elastic_remote_release_fn release, void *context) {
    if (CElasticRemoteKey_libctx() == NULL || sign == NULL) {
        if (release != NULL) release(context);
        return NULL;
    }
    const unsigned char *p = spki;
    EVP_PKEY *pub = d2i_PUBKEY_ex(NULL, &p, (long)spki_len, libctx, "provider=default");
    if (pub == NULL || p != spki + spki_len || kind_of(pub) == 0) {
        EVP_PKEY_free(pub);
        if (release != NULL) release(context);
        return NULL;
    }
    struct remote_source src = {REMOTE_MAGIC, pub, sign, release, context, 0};
    struct remote_source *ref = &src;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(PARAM_REMOTE, &ref, sizeof(ref)),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(libctx, type_name(kind_of(pub)), PROPERTY);
    EVP_PKEY *key = NULL;
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) <= 0)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pub);
    /* On failure the context is released here, unless a key took it (and freeing it released it). */
    if (key == NULL && !src.imported && release != NULL) release(context);
    return key;
}
