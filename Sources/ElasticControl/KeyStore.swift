import CElasticControlABI
import ElasticCrypto
import ElasticFormat
import Glibc
import Synchronization

/// The control file's named keys (ELASTIC_IOC_KEY), kept in memory and persisted sealed in
/// `elastic.keys` after every change. Each uid has its own name space and quota; root reaches
/// another uid's key only by naming its owner (`UID:NAME`).
final class KeyStore: Sendable {
    /// `enum elastic_key_type`.
    enum KeyType: UInt32, Sendable {
        case aes256 = 1
        case hmacSHA256 = 2
        case rsa = 3
        case ecP256 = 4
        case ecP384 = 5
        case ed25519 = 6

        var isAsymmetric: Bool { self == .rsa || asymmetricKind != nil }

        var asymmetricKind: AsymmetricKey.Kind? {
            switch self {
            case .aes256, .hmacSHA256, .rsa: return nil
            case .ecP256: return .ecP256
            case .ecP384: return .ecP384
            case .ed25519: return .ed25519
            }
        }

        init(_ kind: AsymmetricKey.Kind) {
            switch kind {
            case .rsa: self = .rsa
            case .ecP256: self = .ecP256
            case .ecP384: self = .ecP384
            case .ed25519: self = .ed25519
            }
        }
    }

    /// One key, immutable once made.
    final class Key: Sendable {
        let stored: StoredKey
        let type: KeyType
        /// The parsed private key of RSA, EC and Ed25519 keys.
        let asymmetric: AsymmetricKey?

        init(_ stored: StoredKey) throws(ControlError) {
            guard let type = KeyType(rawValue: UInt32(stored.type)) else {
                throw .storageFailure("key \(stored.name) has unknown type \(stored.type)")
            }
            self.stored = stored
            self.type = type
            switch type {
            case .aes256, .hmacSHA256: asymmetric = nil
            case .rsa, .ecP256, .ecP384, .ed25519:
                do { asymmetric = try stored.material.withUnsafeBytes { try AsymmetricKey(privateKey: $0) } } catch {
                    throw .storageFailure("key \(stored.name): \(error)")
                }
            }
        }

        var bits: UInt32 {
            switch asymmetric?.kind {
            case .rsa(let bits)?: return UInt32(bits)
            case .ecP256?, .ed25519?: return 256
            case .ecP384?: return 384
            case nil: return UInt32(stored.material.count * 8)
            }
        }
        var exportable: Bool { UInt32(stored.flags) & ELASTIC_KEY_EXPORTABLE != 0 }
    }

    /// A key's place in the store: each uid has its own name space.
    struct KeyID: Hashable, Comparable {
        let owner: UInt32
        let name: String
        static func < (a: KeyID, b: KeyID) -> Bool { (a.owner, a.name) < (b.owner, b.name) }
    }

    /// How much of the store one uid may use (root is bound only by the store's totals).
    struct Quota: Sendable {
        var keysPerUID = Int(ELASTIC_KEYS_PER_UID)
        var bytesPerUID = Int(ELASTIC_KEY_BYTES_PER_UID)
    }

    let file: KeyStoreFile
    let readOnly: Bool
    let quota: Quota
    private let keys: Mutex<[KeyID: Key]>

    /// Loads `file` (an empty store if it does not exist yet).
    init(file: KeyStoreFile, readOnly: Bool, quota: Quota = Quota()) throws {
        self.file = file
        self.readOnly = readOnly
        self.quota = quota
        var loaded: [KeyID: Key] = [:]
        for k in try file.load() { loaded[KeyID(owner: k.owner, name: k.name)] = try Key(k) }
        keys = Mutex(loaded)
    }

    /// A valid key name: 1..63 bytes of [A-Za-z0-9._-].
    static func isValidName(_ name: [UInt8]) -> Bool {
        (1..<Int(ELASTIC_KEY_NAME_MAX)).contains(name.count)
            && name.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e
                    || c == 0x5f || c == 0x2d
            }
    }

    /// The key a request names, resolved for `uid`: "NAME" is the caller's own key;
    /// "UID:NAME" names another uid's key, which only root may use (anyone else gets EACCES,
    /// whether or not it exists, so the answer tells nothing about other users' keys).
    static func resolve(_ requested: String, uid: UInt32) throws(ControlError) -> KeyID {
        guard let colon = requested.firstIndex(of: ":") else { return KeyID(owner: uid, name: requested) }
        guard let owner = UInt32(requested[..<colon]) else { throw .invalid("a key is NAME or UID:NAME") }
        let name = String(requested[requested.index(after: colon)...])
        guard isValidName(Array(name.utf8)) else { throw .invalid("key name must be 1 to 63 of A-Z a-z 0-9 . _ -") }
        guard owner == uid || uid == 0 else { throw .accessDenied }
        return KeyID(owner: owner, name: name)
    }

    /// The key `requested` names, for `uid`.
    func key(_ requested: String, uid: UInt32) throws(ControlError) -> Key {
        let id = try Self.resolve(requested, uid: uid)
        guard let k = keys.withLock({ $0[id] }) else { throw .notFound }
        return k
    }

    /// The keys `uid` owns, or with `everyone` (root only) every uid's, in (owner, name) order.
    func list(uid: UInt32, everyone: Bool) -> [Key] {
        keys.withLock { t in t.filter { everyone || $0.key.owner == uid }.sorted { $0.key < $1.key }.map(\.value) }
    }

    /// A new key from random bytes or a fresh key pair.
    func create(name: String, type: KeyType, rsaBits: Int, flags: UInt32, uid: UInt32) throws(ControlError) {
        let id = try Self.resolve(name, uid: uid)
        try checkWritable(id)
        var material: SecureBytes
        do {
            switch type {
            case .aes256, .hmacSHA256: material = try SecureBytes.random(count: 32)
            case .rsa: material = try AsymmetricKey.generate(.rsa(bits: rsaBits)).privateKeyDER()
            case .ecP256, .ecP384, .ed25519: material = try AsymmetricKey.generate(type.asymmetricKind!).privateKeyDER()
            }
        } catch { throw .invalid("key generation: \(error)") }
        try insert(
            StoredKey(
                name: id.name, owner: id.owner, type: UInt8(type.rawValue), flags: UInt8(flags),
                created: UInt64(time(nil)), material: material), by: uid)
    }

    /// A key from the caller's bytes: a raw secret (AES: 32 bytes; HMAC: 16..64) or a private key.
    func importKey(name: String, type: KeyType, flags: UInt32, uid: UInt32, data: UnsafeRawBufferPointer)
        throws(ControlError)
    {
        let id = try Self.resolve(name, uid: uid)
        try checkWritable(id)
        let material: SecureBytes
        switch type {
        case .aes256:
            guard data.count == 32 else { throw .invalid("an AES-256 key is 32 bytes") }
            material = SecureBytes(copying: data)
        case .hmacSHA256:
            guard (16...64).contains(data.count) else { throw .invalid("an HMAC key is 16 to 64 bytes") }
            material = SecureBytes(copying: data)
        case .rsa, .ecP256, .ecP384, .ed25519:
            let key: AsymmetricKey
            do { key = try AsymmetricKey(privateKey: data) } catch { throw .invalid("\(error)") }
            guard KeyType(key.kind) == type else { throw .invalid("the key is \(key.kind), not the type asked for") }
            do { material = try key.privateKeyDER() } catch { throw .invalid("\(error)") }
        }
        try insert(
            StoredKey(
                name: id.name, owner: id.owner, type: UInt8(type.rawValue), flags: UInt8(flags),
                created: UInt64(time(nil)), material: material), by: uid)
    }

    func delete(name: String, uid: UInt32) throws(ControlError) {
        guard !readOnly else { throw .readOnly }
        let id = try Self.resolve(name, uid: uid)
        try keys.withLock { (t: inout [KeyID: Key]) throws(ControlError) in
            guard t[id] != nil else { throw .notFound }
            var next = t
            next[id] = nil
            try persist(next)
            t = next
        }
    }

    private func checkWritable(_ id: KeyID) throws(ControlError) {
        guard !readOnly else { throw .readOnly }
        guard keys.withLock({ $0[id] }) == nil else { throw .exists }
    }

    /// Adds a key within the owner's quota (root, `by` 0, is bound only by the store's totals).
    private func insert(_ stored: StoredKey, by uid: UInt32) throws(ControlError) {
        let key = try Key(stored)
        let id = KeyID(owner: stored.owner, name: stored.name)
        try keys.withLock { (t: inout [KeyID: Key]) throws(ControlError) in
            guard t[id] == nil else { throw .exists }
            guard t.count < KeyStoreFile.maxKeys else { throw .full }
            if uid != 0 {
                let own = t.values.filter { $0.stored.owner == stored.owner }
                guard own.count < quota.keysPerUID,
                    own.reduce(0, { $0 + $1.stored.material.count }) + stored.material.count <= quota.bytesPerUID
                else { throw .quotaExceeded }
            }
            var next = t
            next[id] = key
            try persist(next)
            t = next
        }
    }

    private func persist(_ t: [KeyID: Key]) throws(ControlError) {
        do { try file.save(t.sorted { $0.key < $1.key }.map(\.value.stored)) } catch {
            throw .storageFailure("\(error)")
        }
    }
}
