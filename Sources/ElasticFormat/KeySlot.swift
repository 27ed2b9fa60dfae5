import ElasticCrypto

/// One way to unlock a store: the master key wrapped (AES-256-GCM) under a key-encryption key.
public struct KeySlot: Equatable, Sendable {
    /// How the key-encryption key is obtained.
    public enum Kind: Equatable, Sendable {
        /// HKDF-SHA-256 over the bytes of a key file, with `salt`.
        case keyFile(salt: [UInt8])
        /// scrypt over a passphrase (cost 2^logN, r, p) with `salt`.
        case passphrase(salt: [UInt8], logN: UInt8, r: UInt32, p: UInt32)

        public var code: UInt8 {
            switch self {
            case .keyFile: return 1
            case .passphrase: return 2
            }
        }
        public var name: String {
            switch self {
            case .keyFile: return "keyfile"
            case .passphrase: return "passphrase"
            }
        }
    }

    public static let wrappedSize = AESGCM.nonceSize + 32 + AESGCM.tagSize
    /// The scrypt cost for new passphrase slots: N = 2^17, r = 8, p = 1 (128 MiB, about 0.4 s here).
    public static let defaultScrypt: (logN: UInt8, r: UInt32, p: UInt32) = (17, 8, 1)

    /// Random 8-byte identifier, shown by `elastic slot list` and used to remove a slot.
    public var id: [UInt8]
    public var kind: Kind
    /// nonce ‖ wrapped master key ‖ tag.
    public var wrapped: [UInt8]

    public var idHex: String { id.map { String($0, radix: 16).leftPadded(2) }.joined() }

    func encodeParams() -> [UInt8] {
        var w = ByteWriter()
        switch kind {
        case .keyFile(let salt): w.raw(salt)
        case .passphrase(let salt, let logN, let r, let p):
            w.raw(salt); w.u8(logN); w.u32(r); w.u32(p)
        }
        return w.bytes
    }

    static func decodeParams(code: UInt8, _ bytes: [UInt8]) throws -> Kind {
        var r = ByteReader(bytes)
        switch code {
        case 1:
            guard bytes.count == 32 else { throw FormatError.corruptConfig("key-file slot parameters") }
            return .keyFile(salt: try r.raw(32))
        case 2:
            guard bytes.count == 41 else { throw FormatError.corruptConfig("passphrase slot parameters") }
            let salt = try r.raw(32), logN = try r.u8(), rr = try r.u32(), p = try r.u32()
            guard logN >= 10, logN <= 24, rr >= 1, rr <= 32, p >= 1, p <= 16 else { throw FormatError.corruptConfig("scrypt parameters out of range") }
            return .passphrase(salt: salt, logN: logN, r: rr, p: p)
        default:
            throw FormatError.corruptConfig("unknown key slot kind \(code)")
        }
    }

    /// Derives this slot's key-encryption key from the secret (key-file bytes or passphrase).
    public func keyEncryptionKey(secret: [UInt8]) throws -> SecureBytes {
        switch kind {
        case .keyFile(let salt):
            return try secret.withUnsafeBytes { try KDF.hkdfSHA256(ikm: $0, salt: salt, info: Array("elastic/v1/slot/keyfile".utf8), length: 32) }
        case .passphrase(let salt, let logN, let r, let p):
            return try KDF.scrypt(password: secret, salt: salt, logN: logN, r: r, p: p, length: 32)
        }
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
