import COpenSSL

/// An ECDSA P-384 key with SHA-384 signatures (the SEV-SNP report signature scheme). Signatures
/// are fixed-size big-endian R and S (48 bytes each), as in the SNP report.
public final class ECDSAP384: @unchecked Sendable {  // wraps an immutable AsymmetricKey
    let key: AsymmetricKey

    init(key: AsymmetricKey) throws {
        guard key.kind == .ecP384 else { throw CryptoError.unsupportedKey("not a P-384 key") }
        self.key = key
    }

    /// A key for verifying (a certificate's public key; signing with it fails).
    public convenience init(publicKey: AsymmetricKey) throws { try self.init(key: publicKey) }

    /// The public half, for a certificate.
    public var publicKey: AsymmetricKey { key }

    /// A fresh key pair.
    public static func generate() throws -> ECDSAP384 { try ECDSAP384(key: try AsymmetricKey.generate(.ecP384)) }

    /// A key from its DER (PKCS#8 or traditional) private-key encoding.
    public convenience init(privateKeyDER der: [UInt8]) throws {
        try self.init(key: try der.withUnsafeBytes { try AsymmetricKey(privateKey: $0) })
    }

    /// The DER private key (for the simulator's state file only).
    public var privateKeyDER: [UInt8] {
        (try? key.privateKeyDER().withUnsafeBytes { Array($0) }) ?? []
    }

    /// ECDSA-SHA-384 over `message`: (R, S), 48 bytes each, big-endian.
    public func sign(_ message: [UInt8]) throws -> (r: [UInt8], s: [UInt8]) {
        let stream = try SignatureStream(key: key, scheme: .ecdsa, digest: .sha384, verifying: false)
        try message.withUnsafeBytes { try stream.update($0) }
        let der = try stream.sign()
        let sig: OpaquePointer? = der.withUnsafeBufferPointer { b in
            var p: UnsafePointer<UInt8>? = b.baseAddress
            return d2i_ECDSA_SIG(nil, &p, b.count)
        }
        guard let sig else { throw CryptoError.drain("d2i_ECDSA_SIG") }
        defer { ECDSA_SIG_free(sig) }
        var r = [UInt8](repeating: 0, count: 48), s = [UInt8](repeating: 0, count: 48)
        guard BN_bn2binpad(ECDSA_SIG_get0_r(sig), &r, 48) == 48, BN_bn2binpad(ECDSA_SIG_get0_s(sig), &s, 48) == 48
        else {
            throw CryptoError.drain("BN_bn2binpad")
        }
        return (r, s)
    }

    /// Verifies an ECDSA-SHA-384 signature given as big-endian R and S.
    public func verify(_ message: [UInt8], r: [UInt8], s: [UInt8]) -> Bool {
        guard let sig = ECDSA_SIG_new() else { return false }
        defer { ECDSA_SIG_free(sig) }
        guard let br = BN_bin2bn(r, Int32(r.count), nil), let bs = BN_bin2bn(s, Int32(s.count), nil) else {
            return false
        }
        guard ECDSA_SIG_set0(sig, br, bs) == 1 else {
            BN_free(br)
            BN_free(bs)
            return false
        }
        var der = [UInt8](repeating: 0, count: 128)
        let n = der.withUnsafeMutableBufferPointer { b -> Int32 in
            var p: UnsafeMutablePointer<UInt8>? = b.baseAddress
            return i2d_ECDSA_SIG(sig, &p)
        }
        guard n > 0, let stream = try? SignatureStream(key: key, scheme: .ecdsa, digest: .sha384, verifying: true),
            (try? message.withUnsafeBytes({ try stream.update($0) })) != nil
        else { return false }
        return (try? stream.verify(Array(der.prefix(Int(n))))) ?? false
    }
}
