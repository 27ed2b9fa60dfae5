import ElasticCrypto

/// One way to unlock a store: the master key wrapped (AES-256-GCM) under a key-encryption key.
public struct KeySlot: Equatable, Sendable {
    /// How the key-encryption key is obtained.
    public enum Kind: Equatable, Sendable {
        /// HKDF-SHA-256 over the bytes of a key file, with `salt`.
        case keyFile(salt: [UInt8])
        /// scrypt over a passphrase (cost 2^logN, r, p) with `salt`.
        case passphrase(salt: [UInt8], logN: UInt8, r: UInt32, p: UInt32)
        /// HKDF-SHA-256 over a secret a platform derives for this VM (SEV-SNP: a MSG_KEY_REQ
        /// key) from `parameters`, which only the platform reads. `platform` is the slot-kind
        /// code, 3 and up (`sealedPlatformNames`).
        case sealed(platform: UInt8, salt: [UInt8], parameters: [UInt8])

        public var code: UInt8 {
            switch self {
            case .keyFile: return 1
            case .passphrase: return 2
            case .sealed(let platform, _, _): return platform
            }
        }
        public var name: String {
            switch self {
            case .keyFile: return "keyfile"
            case .passphrase: return "passphrase"
            case .sealed(let platform, _, _): return KeySlot.sealedPlatformName(platform)
            }
        }
    }

    /// Slot-kind codes of sealing platforms and their names (which also name their HKDF label).
    public static let sealedPlatformNames: [UInt8: String] = [3: "snp"]
    /// The most bytes of platform parameters a slot may carry.
    public static let sealedParametersMax = 1024

    public static func sealedPlatformName(_ code: UInt8) -> String { sealedPlatformNames[code] ?? "platform-\(code)" }

    public static let wrappedSize = AESGCM.nonceSize + 32 + AESGCM.tagSize
    /// The scrypt cost for new passphrase slots: N = 2^17, r = 8, p = 1 (128 MiB, about 0.4 s here).
    public static let defaultScrypt: (logN: UInt8, r: UInt32, p: UInt32) = (17, 8, 1)

    /// The most scrypt a slot may ask for. A slot is tried before the configuration's MAC can be
    /// checked, so these bound what a slot the host adds can cost a mount: at most 1 GiB of
    /// memory (128 · r · 2^logN bytes) and 2^24 units of work (2^logN · r · p; about 16 times
    /// the default, some seconds).
    public static let scryptLimits = (
        logN: UInt8(10)...UInt8(20), r: UInt32(1)...UInt32(16), p: UInt32(1)...UInt32(4),
        memory: UInt64(1) << 30, work: UInt64(1) << 24
    )

    /// Whether scrypt(2^logN, r, p) is within `scryptLimits`.
    public static func scryptAllowed(logN: UInt8, r: UInt32, p: UInt32) -> Bool {
        let l = scryptLimits
        guard l.logN.contains(logN), l.r.contains(r), l.p.contains(p) else { return false }
        let n = UInt64(1) << UInt64(logN)
        return 128 * UInt64(r) * n <= l.memory && n * UInt64(r) * UInt64(p) <= l.work
    }

    /// Random 8-byte identifier, shown by `elastic slot list` and used to remove a slot.
    public var id: [UInt8]
    public var kind: Kind
    /// nonce ‖ wrapped master key ‖ tag.
    public var wrapped: [UInt8]

    public var idHex: String { Hex.encode(id) }

    func encodeParams() -> [UInt8] {
        var w = ByteWriter()
        switch kind {
        case .keyFile(let salt): w.raw(salt)
        case .passphrase(let salt, let logN, let r, let p):
            w.raw(salt)
            w.u8(logN)
            w.u32(r)
            w.u32(p)
        case .sealed(_, let salt, let parameters):
            w.raw(salt)
            w.raw(parameters)
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
            guard scryptAllowed(logN: logN, r: rr, p: p) else {
                throw FormatError.corruptConfig(
                    "a passphrase slot asks for scrypt N=2^\(logN) r=\(rr) p=\(p), beyond the limits (at most 1 GiB and 2^24 work)"
                )
            }
            return .passphrase(salt: salt, logN: logN, r: rr, p: p)
        case let code where sealedPlatformNames[code] != nil:
            // The platform checks its parameters when it unseals; here only their size.
            guard bytes.count > 32, bytes.count <= 32 + sealedParametersMax else {
                throw FormatError.corruptConfig("\(sealedPlatformName(code)) slot parameters")
            }
            return .sealed(platform: code, salt: try r.raw(32), parameters: try r.raw(bytes.count - 32))
        default:
            throw FormatError.corruptConfig("unknown key slot kind \(code)")
        }
    }

    /// Derives this slot's key-encryption key from the secret (key-file bytes or passphrase).
    public func keyEncryptionKey(secret: [UInt8]) throws -> SecureBytes {
        switch kind {
        case .keyFile(let salt):
            return try secret.withUnsafeBytes {
                try KDF.hkdfSHA256(ikm: $0, salt: salt, info: Array(KeyLabels.keyFileSlot.utf8), length: 32)
            }
        case .passphrase(let salt, let logN, let r, let p):
            return try KDF.scrypt(password: secret, salt: salt, logN: logN, r: r, p: p, length: 32)
        case .sealed(let platform, let salt, _):
            let label = KeyLabels.sealedSlot(platform: KeySlot.sealedPlatformName(platform))
            return try secret.withUnsafeBytes {
                try KDF.hkdfSHA256(ikm: $0, salt: salt, info: Array(label.utf8), length: 32)
            }
        }
    }
}
