import COpenSSL

/// A private key for signatures (RSA 2048–4096, ECDSA P-256/P-384, Ed25519) held in an OpenSSL
/// `EVP_PKEY`. Immutable once made, so one instance may sign on several threads at once (each
/// signature gets its own context).
public final class AsymmetricKey: @unchecked Sendable {  // the EVP_PKEY is never mutated after init
    /// The kinds of key ELASTIC makes and accepts.
    public enum Kind: Sendable, Equatable, CustomStringConvertible {
        case rsa(bits: Int)
        case ecP256
        case ecP384
        case ed25519

        public static let rsaBits = 2048...4096

        public var description: String {
            switch self {
            case .rsa(let bits): return "rsa-\(bits)"
            case .ecP256: return "ec-p256"
            case .ecP384: return "ec-p384"
            case .ed25519: return "ed25519"
            }
        }
    }

    /// The OpenSSL key; valid while this object lives.
    public let pkey: OpaquePointer
    public let kind: Kind

    init(pkey: OpaquePointer) throws {
        self.pkey = pkey
        do { kind = try Self.kind(of: pkey) } catch {
            EVP_PKEY_free(pkey)
            throw error
        }
    }

    deinit { EVP_PKEY_free(pkey) }

    /// A fresh key pair of `kind` (RSA with exponent 65537).
    public static func generate(_ kind: Kind) throws -> AsymmetricKey {
        let algorithm: String
        switch kind {
        case .rsa(let bits):
            guard Kind.rsaBits.contains(bits), bits % 8 == 0 else {
                throw CryptoError.unsupportedKey("RSA keys have 2048 to 4096 bits")
            }
            algorithm = "RSA"
        case .ecP256, .ecP384: algorithm = "EC"
        case .ed25519: algorithm = "ED25519"
        }
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, algorithm, nil) else {
            throw CryptoError.drain("EVP_PKEY_CTX_new_from_name(\(algorithm))")
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_keygen_init(ctx) == 1 else { throw CryptoError.drain("EVP_PKEY_keygen_init") }
        let configured: Bool
        switch kind {
        case .rsa(let bits): configured = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, Int32(bits)) == 1
        case .ecP256: configured = EVP_PKEY_CTX_set_group_name(ctx, "P-256") == 1
        case .ecP384: configured = EVP_PKEY_CTX_set_group_name(ctx, "P-384") == 1
        case .ed25519: configured = true
        }
        var key: OpaquePointer? = nil
        guard configured, EVP_PKEY_generate(ctx, &key) == 1, let key else {
            throw CryptoError.drain("\(kind) key generation")
        }
        return try AsymmetricKey(pkey: key)
    }

    /// A private key from PEM (PKCS#8 or traditional, unencrypted) or DER. Keys of other
    /// algorithms, curves or sizes are refused.
    public convenience init(privateKey bytes: UnsafeRawBufferPointer) throws {
        var key: OpaquePointer? = nil
        if bytes.starts(with: Array("-----BEGIN".utf8)) {
            if let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) {
                // A password callback that gives none: an encrypted PEM fails instead of prompting.
                key = PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
                BIO_free(bio)
            }
        } else {
            var p = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) as UnsafePointer<UInt8>?
            key = d2i_AutoPrivateKey(nil, &p, bytes.count)
        }
        guard let key else {
            ERR_clear_error()
            throw CryptoError.unsupportedKey("not an unencrypted private key in PEM or DER")
        }
        try self.init(pkey: key)
    }

    /// A public key from PEM (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`).
    public convenience init(publicKeyPEM pem: [UInt8]) throws {
        let key: OpaquePointer? = pem.withUnsafeBytes { b in
            guard let bio = BIO_new_mem_buf(b.baseAddress, Int32(b.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let key else {
            ERR_clear_error()
            throw CryptoError.unsupportedKey("not a PEM public key")
        }
        try self.init(pkey: key)
    }

    /// The public key as DER (SubjectPublicKeyInfo).
    public func publicKeyDER() throws -> [UInt8] {
        let n = i2d_PUBKEY(pkey, nil)
        guard n > 0 else { throw CryptoError.drain("i2d_PUBKEY") }
        var out = [UInt8](repeating: 0, count: Int(n))
        out.withUnsafeMutableBufferPointer { b in
            var p: UnsafeMutablePointer<UInt8>? = b.baseAddress
            _ = i2d_PUBKEY(pkey, &p)
        }
        return out
    }

    static func kind(of pkey: OpaquePointer) throws -> Kind {
        switch EVP_PKEY_get_base_id(pkey) {
        case EVP_PKEY_RSA:
            let bits = Int(EVP_PKEY_get_bits(pkey))
            guard Kind.rsaBits.contains(bits) else {
                throw CryptoError.unsupportedKey("RSA keys have 2048 to 4096 bits (this one has \(bits))")
            }
            return .rsa(bits: bits)
        case EVP_PKEY_EC:
            var name = [CChar](repeating: 0, count: 64)
            var n = 0
            guard EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, &name, name.count, &n) == 1 else {
                throw CryptoError.drain("EC group name")
            }
            switch String(decoding: name.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) {
            case "prime256v1", "P-256", "secp256r1": return .ecP256
            case "secp384r1", "P-384": return .ecP384
            case let other: throw CryptoError.unsupportedKey("EC keys are on P-256 or P-384 (this one is on \(other))")
            }
        case EVP_PKEY_ED25519: return .ed25519
        default: throw CryptoError.unsupportedKey("keys are RSA, EC (P-256, P-384) or Ed25519")
        }
    }

    /// The private key as DER (for storage inside the encrypted key store).
    public func privateKeyDER() throws -> SecureBytes {
        let n = i2d_PrivateKey(pkey, nil)
        guard n > 0 else { throw CryptoError.drain("i2d_PrivateKey") }
        let out = SecureBytes(count: Int(n))
        out.withUnsafeMutableBytes { b in
            var p: UnsafeMutablePointer<UInt8>? = b.baseAddress!.assumingMemoryBound(to: UInt8.self)
            _ = i2d_PrivateKey(pkey, &p)
        }
        return out
    }

    /// The public key as PEM (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`).
    public func publicKeyPEM() throws -> [UInt8] {
        try Self.pem { PEM_write_bio_PUBKEY($0, pkey) == 1 }
    }

    /// The private key as unencrypted PKCS#8 PEM.
    public func privateKeyPEM() throws -> SecureBytes {
        var pem = try Self.pem { PEM_write_bio_PKCS8PrivateKey($0, pkey, nil, nil, 0, nil, nil) == 1 }
        return SecureBytes(consuming: &pem)
    }

    static func pem(_ write: (OpaquePointer) -> Bool) throws -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.drain("BIO_new") }
        defer { BIO_free(bio) }
        guard write(bio) else { throw CryptoError.drain("PEM write") }
        var out = [UInt8](repeating: 0, count: Int(BIO_ctrl_pending(bio)))
        guard BIO_read(bio, &out, Int32(out.count)) == Int32(out.count) else { throw CryptoError.drain("BIO_read") }
        return out
    }
}
