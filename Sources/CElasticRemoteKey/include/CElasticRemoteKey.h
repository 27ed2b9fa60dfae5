#ifndef CELASTIC_REMOTE_KEY_H
#define CELASTIC_REMOTE_KEY_H
/*
 * Keys whose private half never leaves ELASTIC's key store: an OpenSSL 3 provider
 * ("elastic-remote") whose keys hold only the public key and a signing callback, so that
 * X509_sign, X509_REQ_sign and libssl's handshake signatures go to the control file.
 * OpenSSL types appear as opaque structs here (Swift sees them as OpaquePointer, the same
 * type COpenSSL's functions take).
 */
#include <stddef.h>

struct evp_pkey_st;
struct ossl_lib_ctx_st;

/*
 * Signs `msg` (the whole message: the key store hashes it) with the remote key.
 * `digest`: "SHA256", "SHA384", "SHA512", or NULL for pure Ed25519. `pss`: 1 for RSA-PSS
 * (MGF1 with the same digest, salt length = digest length), 0 for PKCS #1 v1.5 (RSA) or the
 * key's only scheme. On entry *siglen is the room at `sig`; on return the signature's length.
 * Returns 1 on success, 0 on failure.
 */
typedef int (*elastic_remote_sign_fn)(void *context, const char *digest, int pss, const unsigned char *msg,
                                      size_t msglen, unsigned char *sig, size_t *siglen);
/* Called once when the last reference to the key goes. */
typedef void (*elastic_remote_release_fn)(void *context);

/* The library context with the default provider and "elastic-remote" loaded (made once;
 * fetches without a property query prefer the default provider). NULL on failure. */
struct ossl_lib_ctx_st *CElasticRemoteKey_libctx(void);

/* A key in that context whose public half is the DER SubjectPublicKeyInfo `spki` (EC, RSA or
 * Ed25519) and whose signatures `sign` makes. The key owns `context` from here on: `release`
 * is called once, when the key goes, or before returning NULL on failure. */
struct evp_pkey_st *CElasticRemoteKey_new(const unsigned char *spki, size_t spki_len, elastic_remote_sign_fn sign,
                                          elastic_remote_release_fn release, void *context);

#endif
