import ElasticCrypto

/// One way to unlock a store: the master key wrapped (AES-256-GCM) under a key-encryption key.
public struct KeySlot: Equatable, Sendable {
    /// How the key-encryption key is obtained.
    public enum Kind: Equatable, Sendable {
        /// HKDF-SHA-256 over the bytes of a key file, with `salt`.
        case keyFile(salt: [UInt8])
        /// scrypt over a passphrase (cost 2^logN, r, p) with `salt`.
        case passphrase(salt: [UInt8], logN: UInt8, r: UInt32, p: UInt32)
        /// HKDF-SHA-256 over a key the SEV-SNP firmware derives (MSG_KEY_REQ) with `request`.
        case snp(salt: [UInt8], request: SNPSealParameters)

        public var code: UInt8 {
            switch self {
            case .keyFile: return 1
            case .passphrase: return 2
            case .snp: return 3
            }
        }
        public var name: String {
            switch self {
            case .keyFile: return "keyfile"
            case .passphrase: return "passphrase"
            case .snp: return "snp"
            }
        }
    }

    public static let wrappedSize = AESGCM.nonceSize + 32 + AESGCM.tagSize
    /// The scrypt cost for new passphrase slots: N = 2^17, r = 8, p = 1 (128 MiB, about 0.4 s here).
    public static let defaultScrypt: (logN: UInt8, r: UInt32, p: UInt32) = (17, 8, 1)

    /// The most scrypt a slot may ask for. A slot is tried before the configuration's MAC can be
    /// checked, so these bound what a slot the host adds can cost a mount: at most 1 GiB of
    /// memory (128 · r · 2^logN bytes) and 2^24 units of work (2^logN · r · p; about 16 times
    /// the default, some seconds).
    public static let scryptLimits = (logN: UInt8(10)...UInt8(20), r: UInt32(1)...UInt32(16), p: UInt32(1)...UInt32(4),
                                      memory: UInt64(1) << 30, work: UInt64(1) << 24)

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
            w.raw(salt); w.u8(logN); w.u32(r); w.u32(p)
        case .snp(let salt, let q):
            w.raw(salt); w.u8(q.rootKey); w.raw(u64(q.fields)); w.u32(q.vmpl); w.u32(q.guestSVN); w.raw(u64(q.tcbVersion))
            w.raw(u64(q.policy)); w.raw(q.measurement)
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
                throw FormatError.corruptConfig("a passphrase slot asks for scrypt N=2^\(logN) r=\(rr) p=\(p), beyond the limits (at most 1 GiB and 2^24 work)")
            }
            return .passphrase(salt: salt, logN: logN, r: rr, p: p)
        case 3:
            guard bytes.count == SNPSealParameters.encodedSize + 32 else { throw FormatError.corruptConfig("SNP slot parameters") }
            let salt = try r.raw(32)
            let root = try r.u8(), fields = u64(try r.raw(8)), vmpl = try r.u32(), svn = try r.u32(), tcb = u64(try r.raw(8))
            let policy = u64(try r.raw(8)), measurement = try r.raw(48)
            guard root <= 1 else { throw FormatError.corruptConfig("SNP root key") }
            return .snp(salt: salt, request: SNPSealParameters(rootKey: root, fields: fields, vmpl: vmpl, guestSVN: svn, tcbVersion: tcb, policy: policy, measurement: measurement))
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
        case .snp(let salt, _):
            return try secret.withUnsafeBytes { try KDF.hkdfSHA256(ikm: $0, salt: salt, info: Array("elastic/v1/slot/snp".utf8), length: 32) }
        }
    }
}


/// The MSG_KEY_REQ parameters an SNP slot was sealed with, recorded so the same key is derived
/// again at mount; plus the launch measurement and policy seen at sealing (not secret: the host
/// knows them) so a refusal can name what changed. TCB and measurement are little-endian as in
/// the firmware ABI; everything else in the config is big-endian.
public struct SNPSealParameters: Equatable, Sendable {
    public static let encodedSize = 1 + 8 + 4 + 4 + 8 + 8 + 48
    public var rootKey: UInt8
    public var fields: UInt64
    public var vmpl: UInt32
    public var guestSVN: UInt32
    public var tcbVersion: UInt64
    public var policy: UInt64
    public var measurement: [UInt8]
    public init(rootKey: UInt8, fields: UInt64, vmpl: UInt32, guestSVN: UInt32, tcbVersion: UInt64, policy: UInt64, measurement: [UInt8]) {
        self.rootKey = rootKey
        self.fields = fields
        self.vmpl = vmpl
        self.guestSVN = guestSVN
        self.tcbVersion = tcbVersion
        self.policy = policy
        self.measurement = measurement
    }
}

func u64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
func u64(_ b: [UInt8]) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[$1]) << (8 * UInt64($1)) } }
