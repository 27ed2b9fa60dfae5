import COpenSSL

/// An ECDSA P-384 key with SHA-384 signatures (the SEV-SNP report signature scheme), through
/// OpenSSL's EVP interface. Signatures are returned as fixed-size big-endian R and S (48 bytes each).
public final class ECDSAP384: @unchecked Sendable {
    let pkey: OpaquePointer

    init(pkey: OpaquePointer) { self.pkey = pkey }
    deinit { EVP_PKEY_free(pkey) }

    /// A fresh key pair.
    public static func generate() throws -> ECDSAP384 {
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw CryptoError.drain("EVP_PKEY_CTX_new_from_name(EC)") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_CTX_set_group_name(ctx, "P-384") == 1, EVP_PKEY_generate(ctx, &key) == 1, let key else {
            throw CryptoError.drain("P-384 key generation")
        }
        return ECDSAP384(pkey: key)
    }

    /// A key from its DER (PKCS#8 or traditional) private-key encoding.
    public convenience init(privateKeyDER der: [UInt8]) throws {
        let key: OpaquePointer? = der.withUnsafeBufferPointer { b in
            var p: UnsafePointer<UInt8>? = b.baseAddress
            return d2i_AutoPrivateKey(nil, &p, b.count)
        }
        guard let key else { throw CryptoError.drain("d2i_AutoPrivateKey") }
        self.init(pkey: key)
    }

    /// The DER private key (for the simulator's state file only).
    public var privateKeyDER: [UInt8] {
        let n = i2d_PrivateKey(pkey, nil)
        guard n > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: Int(n))
        out.withUnsafeMutableBufferPointer { b in
            var p: UnsafeMutablePointer<UInt8>? = b.baseAddress
            _ = i2d_PrivateKey(pkey, &p)
        }
        return out
    }

    /// ECDSA-SHA-384 over `message`: (R, S), 48 bytes each, big-endian.
    public func sign(_ message: [UInt8]) throws -> (r: [UInt8], s: [UInt8]) {
        guard let md = EVP_MD_CTX_new() else { throw CryptoError.drain("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(md) }
        var der = [UInt8](repeating: 0, count: 128)
        var len = der.count
        let ok = message.withUnsafeBufferPointer { m in
            EVP_DigestSignInit(md, nil, EVP_sha384(), nil, pkey) == 1 && EVP_DigestSign(md, &der, &len, m.baseAddress, m.count) == 1
        }
        guard ok else { throw CryptoError.drain("ECDSA sign") }
        let sig: OpaquePointer? = der.withUnsafeBufferPointer { b in
            var p: UnsafePointer<UInt8>? = b.baseAddress
            return d2i_ECDSA_SIG(nil, &p, len)
        }
        guard let sig else { throw CryptoError.drain("d2i_ECDSA_SIG") }
        defer { ECDSA_SIG_free(sig) }
        var r = [UInt8](repeating: 0, count: 48), s = [UInt8](repeating: 0, count: 48)
        guard BN_bn2binpad(ECDSA_SIG_get0_r(sig), &r, 48) == 48, BN_bn2binpad(ECDSA_SIG_get0_s(sig), &s, 48) == 48 else {
            throw CryptoError.drain("BN_bn2binpad")
        }
        return (r, s)
    }

    /// Verifies an ECDSA-SHA-384 signature given as big-endian R and S.
    public func verify(_ message: [UInt8], r: [UInt8], s: [UInt8]) -> Bool {
        guard let sig = ECDSA_SIG_new() else { return false }
        defer { ECDSA_SIG_free(sig) }
        guard let br = BN_bin2bn(r, Int32(r.count), nil), let bs = BN_bin2bn(s, Int32(s.count), nil) else { return false }
        guard ECDSA_SIG_set0(sig, br, bs) == 1 else { BN_free(br); BN_free(bs); return false }
        var der = [UInt8](repeating: 0, count: 128)
        let n = der.withUnsafeMutableBufferPointer { b -> Int32 in
            var p: UnsafeMutablePointer<UInt8>? = b.baseAddress
            return i2d_ECDSA_SIG(sig, &p)
        }
        guard n > 0, let md = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(md) }
        let ok = message.withUnsafeBufferPointer { m in
            EVP_DigestVerifyInit(md, nil, EVP_sha384(), nil, pkey) == 1 && EVP_DigestVerify(md, der, Int(n), m.baseAddress, m.count) == 1
        }
        ERR_clear_error()
        return ok
    }
}
