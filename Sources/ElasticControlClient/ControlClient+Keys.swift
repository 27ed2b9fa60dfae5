import CElasticControlABI
import ElasticSystem
import Glibc

/// The key store and keyed operations (ELASTIC_IOC_KEY, ELASTIC_IOC_KEYOP).
extension ControlClient {
    /// `enum elastic_key_type`, by its CLI name.
    public enum KeyType: String, CaseIterable, Sendable {
        case aes256 = "aes256"
        case hmacSHA256 = "hmac-sha256"
        case rsa = "rsa"
        case ecP256 = "ec-p256"
        case ecP384 = "ec-p384"
        case ed25519 = "ed25519"

        var code: UInt32 {
            switch self {
            case .aes256: return UInt32(ELASTIC_KEY_AES256.rawValue)
            case .hmacSHA256: return UInt32(ELASTIC_KEY_HMAC_SHA256.rawValue)
            case .rsa: return UInt32(ELASTIC_KEY_RSA.rawValue)
            case .ecP256: return UInt32(ELASTIC_KEY_EC_P256.rawValue)
            case .ecP384: return UInt32(ELASTIC_KEY_EC_P384.rawValue)
            case .ed25519: return UInt32(ELASTIC_KEY_ED25519.rawValue)
            }
        }
        init?(code: UInt32) {
            guard let t = Self.allCases.first(where: { $0.code == code }) else { return nil }
            self = t
        }
    }

    /// What INFO and LIST say of a key.
    public struct KeyInfo: Sendable {
        public let name: String
        public let type: KeyType?
        public let bits: UInt32
        public let exportable: Bool
        public let owner: UInt32
        public let created: UInt64
    }

    /// `enum elastic_sign_scheme`, by its CLI name.
    public enum SignatureScheme: String, CaseIterable, Sendable {
        case `default`, pss, pkcs1, ecdsa, ed25519
        var code: UInt32 {
            switch self {
            case .default: return UInt32(ELASTIC_SIGN_DEFAULT.rawValue)
            case .pss: return UInt32(ELASTIC_SIGN_RSA_PSS.rawValue)
            case .pkcs1: return UInt32(ELASTIC_SIGN_RSA_PKCS1.rawValue)
            case .ecdsa: return UInt32(ELASTIC_SIGN_ECDSA.rawValue)
            case .ed25519: return UInt32(ELASTIC_SIGN_ED25519.rawValue)
            }
        }
    }

    static func request(_ op: elastic_key_op, name: String?) throws -> ControlRequest<elastic_key> {
        let r = ControlRequest<elastic_key>()
        r.op = UInt32(op.rawValue)
        if let name { try setName(r, \.name, name) }
        return r
    }

    /// Key names are NUL-terminated in ELASTIC_KEY_NAME_MAX bytes.
    static func setName<Layout, Field>(
        _ r: ControlRequest<Layout>, _ field: WritableKeyPath<Layout, Field>, _ name: String
    ) throws {
        let bytes = Array(name.utf8)
        guard bytes.count < Int(ELASTIC_KEY_NAME_MAX) else { throw Errno.fileNameTooLong }
        try r.set(field, bytes)
    }

    static func info(_ r: ControlRequest<elastic_key>, name: String) -> KeyInfo {
        KeyInfo(
            name: name, type: KeyType(code: r.type), bits: r.bits, exportable: r.flags & ELASTIC_KEY_EXPORTABLE != 0,
            owner: r.owner, created: r.created)
    }

    /// A new key (RSA: `bits` 2048..4096).
    public func createKey(_ name: String, type: KeyType, bits: UInt32 = 0, exportable: Bool) throws {
        let r = try Self.request(ELASTIC_KEY_CREATE, name: name)
        r.type = type.code
        r.bits = bits
        r.flags = exportable ? ELASTIC_KEY_EXPORTABLE : 0
        try call(CElasticControlABI_IOC_KEY, r)
    }

    /// A key from a raw secret (AES, HMAC) or a private key in PEM or DER.
    public func importKey(_ name: String, type: KeyType, material: [UInt8], exportable: Bool) throws {
        guard !material.isEmpty, material.count <= Int(ELASTIC_KEY_DATA_MAX) else { throw Errno.invalidArgument }
        let r = try Self.request(ELASTIC_KEY_IMPORT, name: name)
        r.type = type.code
        r.flags = exportable ? ELASTIC_KEY_EXPORTABLE : 0
        r.length = UInt32(material.count)
        try r.set(\.data, material)
        try call(CElasticControlABI_IOC_KEY, r)
    }

    public func keyInfo(_ name: String) throws -> KeyInfo {
        let r = try Self.request(ELASTIC_KEY_INFO, name: name)
        try call(CElasticControlABI_IOC_KEY, r)
        return Self.info(r, name: name)
    }

    /// The caller's keys by name; with `everyone` (root only), every uid's keys.
    public func listKeys(everyone: Bool = false) throws -> [KeyInfo] {
        var out: [KeyInfo] = []
        while true {
            let r = try Self.request(ELASTIC_KEY_LIST, name: nil)
            r.index = UInt32(out.count)
            r.flags = everyone ? ELASTIC_KEY_LIST_ALL : 0
            do { try call(CElasticControlABI_IOC_KEY, r) } catch let e as Errno where e == .noSuchFileOrDirectory {
                return out
            }
            out.append(Self.info(r, name: r.string(\.name)))
        }
    }

    /// The public key as PEM.
    public func publicKey(_ name: String) throws -> [UInt8] {
        let r = try Self.request(ELASTIC_KEY_PUBLIC, name: name)
        try call(CElasticControlABI_IOC_KEY, r)
        return r.prefix(\.data, Int(r.length))
    }

    /// The private key (PKCS#8 PEM) or raw secret of an exportable key.
    public func exportKey(_ name: String) throws -> [UInt8] {
        let r = try Self.request(ELASTIC_KEY_EXPORT, name: name)
        try call(CElasticControlABI_IOC_KEY, r)
        return r.prefix(\.data, Int(r.length))
    }

    public func deleteKey(_ name: String) throws {
        let r = try Self.request(ELASTIC_KEY_DELETE, name: name)
        try call(CElasticControlABI_IOC_KEY, r)
    }

    // MARK: Streams

    /// One step of a keyed operation; returns the output data and tag.
    func step(
        _ step: elastic_keyop_step, handle: UInt64, data: ArraySlice<UInt8>, tag: [UInt8] = [],
        setup: (ControlRequest<elastic_keyop>) throws -> Void = { _ in }
    ) throws -> (handle: UInt64, data: [UInt8], tag: [UInt8]) {
        guard data.count <= Int(ELASTIC_KEY_DATA_MAX) else { throw Errno.invalidArgument }
        let r = ControlRequest<elastic_keyop>()
        r.step = UInt32(step.rawValue)
        r.handle = handle
        r.length = UInt32(data.count)
        try r.set(\.data, data)
        try r.set(\.tag, tag)
        try setup(r)
        try call(CElasticControlABI_IOC_KEYOP, r)
        return (r.handle, r.prefix(\.data, Int(r.length)), Array(r.bytes(\.tag)))
    }

    func initOperation(
        _ op: elastic_keyop_operation, key: String, data: [UInt8] = [], scheme: SignatureScheme = .default,
        hash: HashAlgorithm? = nil
    ) throws -> (handle: UInt64, data: [UInt8]) {
        let r = try step(ELASTIC_STEP_INIT, handle: 0, data: data[...]) { r in
            r.operation = UInt32(op.rawValue)
            r.scheme = scheme.code
            r.hash = hash?.code ?? 0
            try Self.setName(r, \.name, key)
        }
        return (r.handle, r.data)
    }

    /// Reads exactly `n` bytes unless the input ends first.
    static func readFull(_ n: Int, _ read: (Int) throws -> [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        while out.count < n {
            let chunk = try read(n - out.count)
            if chunk.isEmpty { break }
            out += chunk
        }
        return out
    }

    /// The magic of `elastic encrypt` output: "ELAE", version 1 (docs/control-abi.md).
    public static let encryptedMagic: [UInt8] = Array("ELAE".utf8) + [1]

    /// Encrypts everything `read` yields into `write`: the header (magic, key name, salt), then
    /// segments of ciphertext and tag.
    public func encrypt(key: String, aad: [UInt8], read: (Int) throws -> [UInt8], write: ([UInt8]) throws -> Void)
        throws
    {
        let segment = Int(ELASTIC_STREAM_SEGMENT)
        let (handle, salt) = try initOperation(ELASTIC_OP_ENCRYPT, key: key, data: aad)
        try write(Self.encryptedMagic + [UInt8(key.utf8.count)] + Array(key.utf8) + salt)
        var current = try Self.readFull(segment, read)
        while true {
            let next = current.count == segment ? try Self.readFull(segment, read) : []
            let final = next.isEmpty
            let out = try step(final ? ELASTIC_STEP_FINAL : ELASTIC_STEP_UPDATE, handle: handle, data: current[...])
            try write(out.data + out.tag)
            if final { return }
            current = next
        }
    }

    /// The key name an `elastic encrypt` output names, and its header length.
    public static func encryptedHeader(_ prefix: [UInt8]) throws -> (key: String, length: Int) {
        let m = encryptedMagic.count
        guard prefix.count > m, prefix.starts(with: encryptedMagic) else { throw Errno.illegalByteSequence }
        let n = Int(prefix[m])
        guard prefix.count >= m + 1 + n + Int(ELASTIC_STREAM_SALT) else { throw Errno.illegalByteSequence }
        return (String(decoding: prefix[(m + 1)..<(m + 1 + n)], as: UTF8.self), m + 1 + n + Int(ELASTIC_STREAM_SALT))
    }

    /// Decrypts an `elastic encrypt` output; each segment is written only after it verified.
    /// Throws EBADMSG if anything was altered, reordered or cut off.
    ///
    /// Without `key`, the key named in the input is used, but only as one of the caller's own
    /// keys: input never chooses another uid's key (a qualified `UID:NAME` in it is refused).
    /// Returns the key that opened it.
    @discardableResult
    public func decrypt(key: String?, aad: [UInt8], read: (Int) throws -> [UInt8], write: ([UInt8]) throws -> Void)
        throws -> String
    {
        let m = Self.encryptedMagic.count
        var head = try Self.readFull(m + 1, read)
        guard head.count == m + 1, head.starts(with: Self.encryptedMagic) else { throw Errno.illegalByteSequence }
        head += try Self.readFull(Int(head[m]) + Int(ELASTIC_STREAM_SALT), read)
        let (named, length) = try Self.encryptedHeader(head)
        if key == nil && named.contains(":") { throw KeyChoiceError.inputNamesAnotherUsersKey(named) }
        let chosen = key ?? named
        let salt = Array(head[(length - Int(ELASTIC_STREAM_SALT))..<length])
        let (handle, _) = try initOperation(ELASTIC_OP_DECRYPT, key: chosen, data: salt + aad)
        let segment = Int(ELASTIC_STREAM_SEGMENT) + 16
        var current = try Self.readFull(segment, read)
        while true {
            guard current.count >= 16 else {
                _ = try? step(ELASTIC_STEP_FINAL, handle: handle, data: [][...], tag: [UInt8](repeating: 0, count: 16))
                throw Errno.badMessage  // cut off inside a tag
            }
            let next = current.count == segment ? try Self.readFull(segment, read) : []
            let final = next.isEmpty
            let body = current[..<(current.count - 16)]
            let out = try step(
                final ? ELASTIC_STEP_FINAL : ELASTIC_STEP_UPDATE, handle: handle, data: body,
                tag: Array(current.suffix(16)))
            try write(out.data)
            if final { return chosen }
            current = next
        }
    }

    /// Why `decrypt` will not use the key its input names.
    public enum KeyChoiceError: Error, CustomStringConvertible {
        case inputNamesAnotherUsersKey(String)
        public var description: String {
            switch self {
            case .inputNamesAnotherUsersKey(let k):
                return
                    "the input names another user's key (\(k)); the input never chooses whose key is used: pass --key explicitly"
            }
        }
    }

    /// A signature (SIGN), or the HMAC (HMAC), over everything `read` yields.
    public func sign(
        key: String, hmac: Bool = false, scheme: SignatureScheme = .default, hash: HashAlgorithm? = nil,
        read: (Int) throws -> [UInt8]
    ) throws -> [UInt8] {
        let (handle, _) = try initOperation(
            hmac ? ELASTIC_OP_HMAC : ELASTIC_OP_SIGN, key: key, scheme: scheme, hash: hash)
        try feed(handle, read)
        return try step(ELASTIC_STEP_FINAL, handle: handle, data: [][...]).data
    }

    /// Whether `signature` is valid over everything `read` yields.
    public func verify(
        key: String, signature: [UInt8], scheme: SignatureScheme = .default, hash: HashAlgorithm? = nil,
        read: (Int) throws -> [UInt8]
    ) throws -> Bool {
        let (handle, _) = try initOperation(ELASTIC_OP_VERIFY, key: key, scheme: scheme, hash: hash)
        try feed(handle, read)
        do { _ = try step(ELASTIC_STEP_FINAL, handle: handle, data: signature[...]) } catch let e as Errno
            where e == .badMessage
        {
            return false
        }
        return true
    }

    func feed(_ handle: UInt64, _ read: (Int) throws -> [UInt8]) throws {
        while true {
            let chunk = try read(Int(ELASTIC_KEY_DATA_MAX))
            if chunk.isEmpty { return }
            var at = 0
            while at < chunk.count {
                let n = min(chunk.count - at, Int(ELASTIC_KEY_DATA_MAX))
                _ = try step(ELASTIC_STEP_UPDATE, handle: handle, data: chunk[at..<(at + n)])
                at += n
            }
        }
    }
}
