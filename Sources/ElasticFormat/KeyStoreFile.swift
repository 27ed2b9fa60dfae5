import ElasticCrypto
import ElasticSystem
import Glibc

/// One named key of the control file's key store, as persisted.
public struct StoredKey: Sendable {
    public var name: String
    public var owner: UInt32
    /// `enum elastic_key_type` of the control ABI.
    public var type: UInt8
    /// `ELASTIC_KEY_*` flags.
    public var flags: UInt8
    /// Seconds since the epoch.
    public var created: UInt64
    /// The raw secret (AES, HMAC) or the DER private key.
    public var material: SecureBytes

    public init(name: String, owner: UInt32, type: UInt8, flags: UInt8, created: UInt64, material: SecureBytes) {
        self.name = name
        self.owner = owner
        self.type = type
        self.flags = flags
        self.created = created
        self.material = material
    }
}

/// `elastic.keys` in the backing directory: the key store, sealed as one AES-256-GCM message
/// under the store subkey `elastic/v1/keystore/aes-256-gcm` (docs/file-format.md). Layout:
/// "ELKS" ‖ u8 version (1) ‖ nonce ‖ ciphertext ‖ tag, with the first five bytes as AAD.
/// Rewritten whole, atomically, on every change.
public struct KeyStoreFile: Sendable {
    static let magic = Array("ELKS".utf8) + [1]
    public static let maxKeys = 1024
    static let maxFileSize = 16 << 20

    let directory: OpenDirectory
    let key: SecureBytes
    /// The root that names the current version of the file (nil: a store without one).
    let root: StoreRootKeeper?

    /// The key store of the store whose backing directory is open as `directory`.
    public init(directory: OpenDirectory, keys: StoreKeys, root: StoreRootKeeper?) {
        self.directory = directory
        key = keys.keyStore
        self.root = root
    }

    /// The stored keys; none if the file does not exist yet.
    public func load() throws -> [StoredKey] {
        let sealed: [UInt8]
        do { sealed = try Syscall.readFile(directory.fd, BackingNames.keyStore, limit: Self.maxFileSize) } catch let e
            as Errno where e == .noSuchFileOrDirectory
        {
            try root?.checkKeyStore(nil)
            return []
        } catch let e as SystemError {
            throw FormatError.corruptMetadata("\(e)")
        }
        try root?.checkKeyStore(sealed)
        guard sealed.starts(with: Self.magic) else {
            throw FormatError.corruptMetadata("\(BackingNames.keyStore): not a key store")
        }
        var plain: [UInt8]
        do { plain = try AESGCM(key: key).open(Array(sealed[Self.magic.count...]), aad: Self.magic) } catch {
            throw FormatError.corruptMetadata(
                "\(BackingNames.keyStore) failed authentication (altered, or from another store)")
        }
        defer { secureWipe(&plain) }
        var r = ByteReader(plain)
        let count = Int(try r.u32())
        guard count <= Self.maxKeys else {
            throw FormatError.corruptMetadata("\(BackingNames.keyStore): \(count) keys")
        }
        var keys: [StoredKey] = []
        for _ in 0..<count {
            let name = String(decoding: try r.raw(Int(try r.u8())), as: UTF8.self)
            let owner = try r.u32(), type = try r.u8(), flags = try r.u8(), created = try r.u64()
            var material = try r.raw(Int(try r.u32()))
            keys.append(
                StoredKey(
                    name: name, owner: owner, type: type, flags: flags, created: created,
                    material: SecureBytes(consuming: &material)))
        }
        guard r.remaining == 0 else { throw FormatError.corruptMetadata("\(BackingNames.keyStore): trailing bytes") }
        return keys
    }

    /// Replaces the file with `keys` (write to a temporary name, fsync, rename).
    public func save(_ keys: [StoredKey]) throws {
        guard keys.count <= Self.maxKeys else {
            throw FormatError.invalidArgument("the key store holds at most \(Self.maxKeys) keys")
        }
        var w = ByteWriter()
        w.u32(UInt32(keys.count))
        for k in keys {
            let name = Array(k.name.utf8)
            precondition(name.count < 256)
            w.u8(UInt8(name.count))
            w.raw(name)
            w.u32(k.owner)
            w.u8(k.type)
            w.u8(k.flags)
            w.u64(k.created)
            w.u32(UInt32(k.material.count))
            k.material.withUnsafeBytes { w.bytes += $0 }
        }
        defer { secureWipe(&w.bytes) }
        let sealed = Self.magic + (try AESGCM(key: key).seal(w.bytes, aad: Self.magic))
        guard let root else {
            return try Syscall.writeFileAtomically(directory.fd, BackingNames.keyStore, sealed, mode: 0o600)
        }
        try root.exclusive {
            try root.change(.keyStore, to: sealed) {
                try Syscall.writeFileAtomically(directory.fd, BackingNames.keyStore, sealed, mode: 0o600)
            }
        }
    }
}
