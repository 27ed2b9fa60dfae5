import COpenSSL

/// Signature schemes over `AsymmetricKey`s. RSA-PSS uses MGF1 with the message digest and a salt
/// as long as the digest; ECDSA signatures are DER (as `openssl dgst` writes them).
public enum SignatureScheme: Sendable, Equatable {
    case rsaPSS, rsaPKCS1v15, ecdsa, ed25519

    /// Whether this scheme goes with a key of `kind`.
    public func fits(_ kind: AsymmetricKey.Kind) -> Bool {
        switch (self, kind) {
        case (.rsaPSS, .rsa), (.rsaPKCS1v15, .rsa), (.ecdsa, .ecP256), (.ecdsa, .ecP384), (.ed25519, .ed25519):
            return true
        default: return false
        }
    }
}

/// A signature or MAC computed over data fed in pieces: `update` as often as needed, then `sign`
/// or `verify` once. Ed25519 signs the whole message in one pass (RFC 8032), so its input is
/// buffered up to `ed25519Limit`. Not thread-safe.
public final class SignatureStream {
    public static let ed25519Limit = 1 << 20
    let ctx: OpaquePointer
    let macKey: OpaquePointer?
    let oneShot: Bool
    var buffered: [UInt8] = []
    var finished = false

    /// Whether `update` keeps the message in memory until the end (Ed25519).
    public var buffersMessage: Bool { oneShot }
    /// Whether this stream signs or verifies with an RSA key (a slow last step).
    public let isRSA: Bool

    /// Signing (or verifying) with `key` under `scheme`; `digest` is required for RSA and ECDSA and
    /// must be nil for Ed25519.
    public init(key: AsymmetricKey, scheme: SignatureScheme, digest: Digest.Algorithm?, verifying: Bool) throws {
        guard scheme.fits(key.kind) else {
            throw CryptoError.unsupportedKey("\(scheme) does not go with a \(key.kind) key")
        }
        guard (scheme == .ed25519) == (digest == nil) else {
            throw CryptoError.unsupportedKey("Ed25519 takes no digest; the other schemes need one")
        }
        guard let ctx = EVP_MD_CTX_new() else { throw CryptoError.drain("EVP_MD_CTX_new") }
        self.ctx = ctx
        macKey = nil
        oneShot = scheme == .ed25519
        if case .rsa = key.kind { isRSA = true } else { isRSA = false }
        var pctx: OpaquePointer? = nil
        let md = digest.flatMap(Digest.md)
        let ok =
            verifying
            ? EVP_DigestVerifyInit(ctx, &pctx, md, nil, key.pkey) : EVP_DigestSignInit(ctx, &pctx, md, nil, key.pkey)
        guard ok == 1 else { throw CryptoError.drain("EVP_DigestSignInit") }
        switch scheme {
        case .rsaPSS:
            guard EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1,
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1
            else { throw CryptoError.drain("RSA-PSS parameters") }
        case .rsaPKCS1v15:
            guard EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 else {
                throw CryptoError.drain("RSA PKCS#1 parameters")
            }
        case .ecdsa, .ed25519: break
        }
    }

    /// HMAC-SHA-256 with `key`; verifying compares in constant time.
    public init(hmacKey key: SecureBytes) throws {
        guard let ctx = EVP_MD_CTX_new() else { throw CryptoError.drain("EVP_MD_CTX_new") }
        self.ctx = ctx
        oneShot = false
        isRSA = false
        macKey = key.withUnsafeBytes { k in
            EVP_PKEY_new_raw_private_key(
                EVP_PKEY_HMAC, nil, k.baseAddress?.assumingMemoryBound(to: UInt8.self), k.count)
        }
        guard let macKey, EVP_DigestSignInit(ctx, nil, EVP_sha256(), nil, macKey) == 1 else {
            throw CryptoError.drain("HMAC init")
        }
    }

    deinit {
        EVP_MD_CTX_free(ctx)
        if let macKey { EVP_PKEY_free(macKey) }
        secureWipe(&buffered)
    }

    public func update(_ data: UnsafeRawBufferPointer) throws {
        guard !finished else { throw CryptoError.openSSL("signature already finished") }
        if oneShot {
            guard buffered.count + data.count <= Self.ed25519Limit else {
                throw CryptoError.inputTooLarge(limit: Self.ed25519Limit)
            }
            buffered += data
        } else if data.count > 0 {
            // EVP_DigestSignUpdate and EVP_DigestVerifyUpdate are the same call for a digest context.
            guard EVP_DigestUpdate(ctx, data.baseAddress, data.count) == 1 else {
                throw CryptoError.drain("EVP_DigestUpdate")
            }
        }
    }

    /// The signature (or MAC) over everything fed so far.
    public func sign() throws -> [UInt8] {
        guard !finished else { throw CryptoError.openSSL("signature already finished") }
        finished = true
        var length = 0
        if oneShot {
            guard EVP_DigestSign(ctx, nil, &length, buffered, buffered.count) == 1 else {
                throw CryptoError.drain("EVP_DigestSign")
            }
            var out = [UInt8](repeating: 0, count: length)
            guard EVP_DigestSign(ctx, &out, &length, buffered, buffered.count) == 1 else {
                throw CryptoError.drain("EVP_DigestSign")
            }
            return Array(out.prefix(length))
        }
        guard EVP_DigestSignFinal(ctx, nil, &length) == 1 else { throw CryptoError.drain("EVP_DigestSignFinal") }
        var out = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSignFinal(ctx, &out, &length) == 1 else { throw CryptoError.drain("EVP_DigestSignFinal") }
        return Array(out.prefix(length))
    }

    /// Whether `signature` is valid over everything fed so far.
    public func verify(_ signature: [UInt8]) throws -> Bool {
        if macKey != nil { return KDF.constantTimeEqual(try sign(), signature) }
        guard !finished else { throw CryptoError.openSSL("signature already finished") }
        finished = true
        let r =
            oneShot
            ? EVP_DigestVerify(ctx, signature, signature.count, buffered, buffered.count)
            : EVP_DigestVerifyFinal(ctx, signature, signature.count)
        ERR_clear_error()
        return r == 1
    }
}
