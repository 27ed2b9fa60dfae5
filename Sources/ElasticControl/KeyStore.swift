import CElasticControlABI
import ElasticCrypto
import ElasticFormat
import Glibc
import Synchronization

/// The control file's named keys (ELASTIC_IOC_KEY), kept in memory and persisted sealed in
/// `elastic.keys` after every change. A key belongs to the uid that made it; root may use all.
final class KeyStore: Sendable {
    /// `enum elastic_key_type`.
    enum KeyType: UInt32, Sendable {
        case aes256 = 1, hmacSHA256 = 2, rsa = 3, ecP256 = 4, ecP384 = 5, ed25519 = 6

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
            guard let type = KeyType(rawValue: UInt32(stored.type)) else { throw .storageFailure("key \(stored.name) has unknown type \(stored.type)") }
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

    let file: KeyStoreFile
    let readOnly: Bool
    private let keys: Mutex<[String: Key]>

    /// Loads `file` (an empty store if it does not exist yet).
    init(file: KeyStoreFile, readOnly: Bool) throws {
        self.file = file
        self.readOnly = readOnly
        var loaded: [String: Key] = [:]
        for k in try file.load() { loaded[k.name] = try Key(k) }
        keys = Mutex(loaded)
    }

    /// A valid key name: 1..63 bytes of [A-Za-z0-9._-].
    static func isValidName(_ name: [UInt8]) -> Bool {
        (1..<Int(ELASTIC_KEY_NAME_MAX)).contains(name.count) && name.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f || c == 0x2d
        }
    }

    /// The key `name` if `uid` may use it.
    func key(_ name: String, uid: UInt32) throws(ControlError) -> Key {
        guard let k = keys.withLock({ $0[name] }) else { throw .notFound }
        guard uid == 0 || k.stored.owner == uid else { throw .accessDenied }
        return k
    }

    /// The keys `uid` may see, by name.
    func visible(to uid: UInt32) -> [Key] {
        keys.withLock { t in t.values.filter { uid == 0 || $0.stored.owner == uid } }.sorted { $0.stored.name < $1.stored.name }
    }

    /// A new key from random bytes or a fresh key pair.
    func create(name: String, type: KeyType, rsaBits: Int, flags: UInt32, owner: UInt32) throws(ControlError) {
        try checkWritable(name)
        var material: SecureBytes
        do {
            switch type {
            case .aes256, .hmacSHA256: material = try SecureBytes.random(count: 32)
            case .rsa: material = try AsymmetricKey.generate(.rsa(bits: rsaBits)).privateKeyDER()
            case .ecP256, .ecP384, .ed25519: material = try AsymmetricKey.generate(type.asymmetricKind!).privateKeyDER()
            }
        } catch { throw .invalid("key generation: \(error)") }
        try insert(StoredKey(name: name, owner: owner, type: UInt8(type.rawValue), flags: UInt8(flags), created: UInt64(time(nil)), material: material))
    }

    /// A key from the caller's bytes: a raw secret (AES: 32 bytes; HMAC: 16..64) or a private key.
    func importKey(name: String, type: KeyType, flags: UInt32, owner: UInt32, data: UnsafeRawBufferPointer) throws(ControlError) {
        try checkWritable(name)
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
        try insert(StoredKey(name: name, owner: owner, type: UInt8(type.rawValue), flags: UInt8(flags), created: UInt64(time(nil)), material: material))
    }

    func delete(name: String, uid: UInt32) throws(ControlError) {
        guard !readOnly else { throw .readOnly }
        try keys.withLock { (t: inout [String: Key]) throws(ControlError) in
            guard let k = t[name] else { throw .notFound }
            guard uid == 0 || k.stored.owner == uid else { throw .accessDenied }
            var next = t
            next[name] = nil
            try persist(next)
            t = next
        }
    }

    private func checkWritable(_ name: String) throws(ControlError) {
        guard !readOnly else { throw .readOnly }
        guard keys.withLock({ $0[name] }) == nil else { throw .exists }
    }

    private func insert(_ stored: StoredKey) throws(ControlError) {
        let key = try Key(stored)
        try keys.withLock { (t: inout [String: Key]) throws(ControlError) in
            guard t[stored.name] == nil else { throw .exists }
            guard t.count < KeyStoreFile.maxKeys else { throw .full }
            var next = t
            next[stored.name] = key
            try persist(next)
            t = next
        }
    }

    private func persist(_ t: [String: Key]) throws(ControlError) {
        do { try file.save(t.values.map(\.stored).sorted { $0.name < $1.name }) } catch { throw .storageFailure("\(error)") }
    }
}
