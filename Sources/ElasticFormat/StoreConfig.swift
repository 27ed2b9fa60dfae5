import ElasticCrypto

/// `elastic.conf`: the store's parameters and key slots, authenticated by an HMAC under a key
/// derived from the master key. Byte layout in docs/file-format.md.
public struct StoreConfig: Equatable, Sendable {
    public static let magic: [UInt8] = Array("ELASTIC\0".utf8)
    public static let currentVersion: UInt16 = 2
    /// Versions `parse` reads (version 1 only for `elastic migrate`).
    public static let readableVersions: ClosedRange<UInt16> = 1...2

    /// Feature flags. A store using a flag this build does not know is refused.
    public struct Features: OptionSet, Sendable, Equatable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Names encrypted with AES-256-SIV under a per-directory IV.
        public static let sivNames = Features(rawValue: 1 << 0)
        /// Names too long once encrypted are stored as `elastic.ln.*` plus a `.name` sidecar.
        public static let longNames = Features(rawValue: 1 << 1)
        /// `user.*` extended attributes with encrypted names and values.
        public static let xattrs = Features(rawValue: 1 << 2)
        /// `elastic.root` names the current `elastic.conf` and `elastic.keys` (`StoreRoot`).
        public static let storeRoot = Features(rawValue: 1 << 3)
        public static let known: Features = [.sivNames, .longNames, .xattrs, .storeRoot]
    }

    public var version: UInt16 = currentVersion
    public var features: Features = .known
    public var blockSize: UInt32 = UInt32(BlockLayout.blockSize)
    public var storeID: [UInt8]
    public var slots: [KeySlot]

    public init(storeID: [UInt8], slots: [KeySlot]) {
        self.storeID = storeID
        self.slots = slots
    }

    /// magic ‖ version ‖ features ‖ block size ‖ store ID.
    var fixedPrefix: [UInt8] {
        var w = ByteWriter()
        w.raw(Self.magic)
        w.u16(version)
        w.u32(features.rawValue)
        w.u32(blockSize)
        w.raw(storeID)
        return w.bytes
    }

    /// What a slot's wrapping authenticates: magic ‖ store ID ‖ slot ID ‖ kind ‖ parameters. The
    /// rest of the header (version, flags) is covered by the file's MAC, so an edit there is
    /// reported as an edited configuration rather than as a wrong key.
    func slotAAD(_ slot: KeySlot) -> [UInt8] { Self.magic + storeID + slot.id + [slot.kind.code] + slot.encodeParams() }

    /// Everything but the trailing MAC.
    func encodeBody() -> [UInt8] {
        var w = ByteWriter()
        w.raw(fixedPrefix)
        w.u8(UInt8(slots.count))
        for s in slots {
            let params = s.encodeParams()
            w.raw(s.id)
            w.u8(s.kind.code)
            w.u16(UInt16(params.count))
            w.raw(params)
            w.raw(s.wrapped)
        }
        return w.bytes
    }

    /// The full file: body ‖ HMAC-SHA-256(config key, body).
    public func encode(keys: StoreKeys) throws -> [UInt8] {
        let body = encodeBody()
        return body + (try KDF.hmacSHA256(key: keys.configMAC, data: body))
    }

    /// Parses the file without checking the MAC (which needs the master key): checks structure,
    /// version and feature flags, so an unsupported store is refused before any key is tried.
    public static func parse(_ bytes: [UInt8]) throws -> StoreConfig {
        var r = ByteReader(bytes)
        guard try r.raw(8) == magic else { throw FormatError.corruptConfig("not an ELASTIC store (bad magic)") }
        let version = try r.u16()
        guard readableVersions.contains(version) else { throw FormatError.unsupportedVersion(version) }
        let features = Features(rawValue: try r.u32())
        let unknown = features.subtracting(.known)
        guard unknown.isEmpty else { throw FormatError.unknownFeatureFlags(unknown.rawValue) }
        guard features.contains([.sivNames, .longNames]) else {
            throw FormatError.corruptConfig("required features missing")
        }
        let blockSize = try r.u32()
        guard blockSize == UInt32(BlockLayout.blockSize) else {
            throw FormatError.corruptConfig("block size \(blockSize)")
        }
        var config = StoreConfig(storeID: try r.raw(16), slots: [])
        config.version = version
        config.features = features
        let count = try r.u8()
        guard count > 0 else { throw FormatError.corruptConfig("no key slots") }
        for _ in 0..<count {
            let id = try r.raw(8)
            let code = try r.u8()
            let plen = try r.u16()
            let kind = try KeySlot.decodeParams(code: code, try r.raw(Int(plen)))
            config.slots.append(KeySlot(id: id, kind: kind, wrapped: try r.raw(KeySlot.wrappedSize)))
        }
        guard r.remaining == 32 else { throw FormatError.corruptConfig("trailing bytes") }
        return config
    }

    /// Checks the trailing MAC of `bytes` (the file this config was parsed from).
    public static func verifyMAC(_ bytes: [UInt8], keys: StoreKeys) throws {
        guard bytes.count > 32 else { throw FormatError.corruptConfig("truncated") }
        let body = Array(bytes[0..<(bytes.count - 32)])
        let mac = try KDF.hmacSHA256(key: keys.configMAC, data: body)
        guard KDF.constantTimeEqual(mac, Array(bytes[(bytes.count - 32)...])) else {
            throw FormatError.corruptConfig("authentication failed (the file was edited or damaged)")
        }
    }

    /// Wraps `master` into a new slot of `kind` using `secret`.
    public func makeSlot(kind: KeySlot.Kind, secret: [UInt8], master: SecureBytes) throws -> KeySlot {
        var slot = KeySlot(id: try Random.bytes(8), kind: kind, wrapped: [])
        let kek = try slot.keyEncryptionKey(secret: secret)
        var plain = master.withUnsafeBytes { Array($0) }
        defer { secureWipe(&plain) }
        slot.wrapped = try AESGCM(key: kek).seal(plain, aad: slotAAD(slot))
        return slot
    }

    /// Unwraps the master key from `slot`, or throws `.authenticationFailure` for a wrong secret.
    public func unwrap(_ slot: KeySlot, secret: [UInt8]) throws -> SecureBytes {
        let kek = try slot.keyEncryptionKey(secret: secret)
        var plain = try AESGCM(key: kek).open(slot.wrapped, aad: slotAAD(slot))
        guard plain.count == 32 else { throw FormatError.corruptConfig("wrapped key length") }
        return SecureBytes(consuming: &plain)
    }
}
