import ElasticCrypto

/// `elastic.root`: the store's root of freshness, sealed under the store's root key. It names
/// the one current version of every store-wide file (`elastic.conf`, `elastic.keys`) by digest,
/// carries a counter that goes up at every change, and the witness (storage outside BACKING)
/// that holds the latest counter value. Byte layout in docs/file-format.md.
///
/// While a change of a store-wide file is in progress, the root names the previous digest too
/// (`previous*`), so that a crash between the two writes leaves a store that still opens; the
/// change ends by writing the root again without it.
public struct StoreRoot: Equatable, Sendable {
    static let magic = Array("ELRT".utf8)
    static let version: UInt8 = 1
    /// Digest length (SHA-256).
    public static let digestSize = 32
    /// The digest standing for "this file does not exist".
    public static let absent = [UInt8](repeating: 0, count: digestSize)

    /// Goes up by one at every write of the root.
    public var counter: UInt64
    public var configDigest: [UInt8]
    public var keyStoreDigest: [UInt8]
    /// Digests still accepted while a change is in progress (nil: none in progress).
    public var previousConfigDigest: [UInt8]?
    public var previousKeyStoreDigest: [UInt8]?
    /// The witness this store is bound to, and the value it holds once this root is complete.
    public var witness: WitnessBinding?
    /// The sessions that wrote objects, and the versions map that records them.
    public var sessions = Sessions()

    /// Read-write sessions (mounts, and offline tools that write objects): every record and
    /// entry set is stamped with the session that sealed it (`VersionMap`).
    public struct Sessions: Equatable, Sendable {
        /// The newest session started.
        public var last: UInt64 = 1
        /// That session has not ended cleanly (it is mounted, or it crashed).
        public var open = false
        /// The oldest session whose changes `elastic.versions` may lack (0: it has them all).
        /// A new store starts at 1: its first mount records every object.
        public var reconcileFrom: UInt64 = 1
        /// SHA-256 of `elastic.versions` (`absent`: there is none).
        public var mapDigest = StoreRoot.absent
        /// The session that wrote `elastic.versions` (its seal is bound to it).
        public var mapSession: UInt64 = 0
        /// `elastic.versions` was written when its session ended cleanly (nothing was being
        /// written then: it names every version up to `mapSession` exactly); false for a
        /// checkpoint's, which writes racing it may have sealed in `mapSession` too.
        public var mapComplete = false
        public init() {}
    }

    /// A witness named by `spec` ("file:PATH", "tpm:0x01500016") and the value the root expects.
    public struct WitnessBinding: Equatable, Sendable {
        public var spec: String
        public var value: UInt64
        public init(spec: String, value: UInt64) {
            self.spec = spec
            self.value = value
        }
    }

    public init(counter: UInt64, configDigest: [UInt8], keyStoreDigest: [UInt8]) {
        self.counter = counter
        self.configDigest = configDigest
        self.keyStoreDigest = keyStoreDigest
    }

    /// The digest a store-wide file's contents are named by (nil contents: the file is absent).
    public static func digest(_ contents: [UInt8]?) -> [UInt8] {
        guard let contents else { return absent }
        return KDF.sha256(contents)
    }

    /// Whether `digest` is one this root accepts for `elastic.conf` (`current` or in-progress).
    func accepts(config digest: [UInt8]) -> Bool {
        digest == configDigest || digest == previousConfigDigest
    }
    func accepts(keyStore digest: [UInt8]) -> Bool {
        digest == keyStoreDigest || digest == previousKeyStoreDigest
    }
    var hasChangeInProgress: Bool { previousConfigDigest != nil || previousKeyStoreDigest != nil }

    /// Associated data: magic ‖ version ‖ store ID, so a root of another store never opens here.
    static func aad(storeID: [UInt8]) -> [UInt8] { magic + [version] + storeID }

    /// "ELRT" ‖ u8 version ‖ AES-256-GCM(nonce ‖ sealed body ‖ tag).
    public func encode(key: SecureBytes, storeID: [UInt8]) throws -> [UInt8] {
        var w = ByteWriter()
        w.u64(counter)
        w.raw(configDigest)
        w.raw(keyStoreDigest)
        var flags: UInt8 = 0
        if previousConfigDigest != nil { flags |= 1 }
        if previousKeyStoreDigest != nil { flags |= 2 }
        if witness != nil { flags |= 4 }
        flags |= 8
        w.u8(flags)
        if let p = previousConfigDigest { w.raw(p) }
        if let p = previousKeyStoreDigest { w.raw(p) }
        if let wb = witness {
            let spec = Array(wb.spec.utf8)
            w.u16(UInt16(spec.count))
            w.raw(spec)
            w.u64(wb.value)
        }
        w.u64(sessions.last)
        w.u8((sessions.open ? 1 : 0) | (sessions.mapComplete ? 2 : 0))
        w.u64(sessions.reconcileFrom)
        w.raw(sessions.mapDigest)
        w.u64(sessions.mapSession)
        let aad = Self.aad(storeID: storeID)
        return Self.magic + [Self.version] + (try AESGCM(key: key).seal(w.bytes, aad: aad))
    }

    /// Opens and parses a root; a root that does not open under `key` for `storeID` throws
    /// `.integrity`.
    public init(decoding bytes: [UInt8], key: SecureBytes, storeID: [UInt8]) throws {
        guard bytes.count > 5, Array(bytes[0..<4]) == Self.magic else {
            throw FormatError.integrity("\(BackingNames.root) is not a store root (bad magic)")
        }
        guard bytes[4] == Self.version else {
            throw FormatError.integrity("\(BackingNames.root) has unknown version \(bytes[4])")
        }
        let body: [UInt8]
        do { body = try AESGCM(key: key).open(Array(bytes[5...]), aad: Self.aad(storeID: storeID)) } catch {
            throw FormatError.integrity("\(BackingNames.root) failed authentication (altered, or from another store)")
        }
        do {
            var r = ByteReader(body)
            self.init(counter: try r.u64(), configDigest: try r.raw(32), keyStoreDigest: try r.raw(32))
            let flags = try r.u8()
            guard flags & ~15 == 0 else { throw FormatError.corruptConfig("flags") }
            if flags & 1 != 0 { previousConfigDigest = try r.raw(32) }
            if flags & 2 != 0 { previousKeyStoreDigest = try r.raw(32) }
            if flags & 4 != 0 {
                let spec = String(decoding: try r.raw(Int(try r.u16())), as: UTF8.self)
                witness = WitnessBinding(spec: spec, value: try r.u64())
            }
            // (A root without sessions is from before them: its first mount records every object.)
            if flags & 8 != 0 {
                sessions.last = try r.u64()
                let state = try r.u8()
                guard state <= 3 else { throw FormatError.corruptConfig("session state") }
                sessions.open = state & 1 != 0
                sessions.mapComplete = state & 2 != 0
                sessions.reconcileFrom = try r.u64()
                sessions.mapDigest = try r.raw(32)
                sessions.mapSession = try r.u64()
            }
            guard r.remaining == 0 else { throw FormatError.corruptConfig("trailing bytes") }
        } catch {
            throw FormatError.integrity("\(BackingNames.root) is malformed")
        }
    }
}
