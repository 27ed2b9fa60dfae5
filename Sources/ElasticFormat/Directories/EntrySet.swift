import ElasticCrypto
import ElasticSystem
import Glibc

/// A 128-bit object ID: a file's ID (its header) or a directory's IV (its `elastic.diriv`).
public struct ObjectID: Hashable, Sendable {
    let high: UInt64
    let low: UInt64

    init(high: UInt64, low: UInt64) { (self.high, self.low) = (high, low) }

    public init(_ bytes: [UInt8]) {
        precondition(bytes.count == 16)
        var h: UInt64 = 0
        var l: UInt64 = 0
        for i in 0..<8 {
            h = h << 8 | UInt64(bytes[i])
            l = l << 8 | UInt64(bytes[8 + i])
        }
        (high, low) = (h, l)
    }

    public var bytes: [UInt8] {
        (0..<16).map { i in UInt8(truncatingIfNeeded: (i < 8 ? high : low) >> (8 * (7 - i % 8))) }
    }
}

/// The digest of a directory's entry set: how many entries and the XOR of one keyed hash per
/// entry, HMAC-SHA-256(entries key, directory IV ‖ be16(name length) ‖ backing name ‖ object ID).
/// Adding or removing an entry is one XOR, so a create, unlink or rename costs O(1) whatever the
/// directory's size; the host, who never learns the key nor the (sealed) digest, cannot make
/// another set of entries that gives the same one.
public struct EntryDigest: Equatable, Sendable {
    public private(set) var count: UInt64
    public private(set) var value: [UInt8]

    public static let empty = EntryDigest(count: 0, value: [UInt8](repeating: 0, count: 32))

    init(count: UInt64, value: [UInt8]) {
        self.count = count
        self.value = value
    }

    /// The hash of one entry.
    public static func hash(name: String, id: ObjectID, dirIV: [UInt8], with crypto: CryptoWorker) throws -> [UInt8] {
        var name = name
        return try crypto.entryMAC.mac { feed in
            dirIV.withUnsafeBytes(feed)
            withUnsafeBytes(of: UInt16(truncatingIfNeeded: name.utf8.count).bigEndian, feed)
            name.withUTF8 { feed(UnsafeRawBufferPointer($0)) }
            withUnsafeBytes(of: (id.high.bigEndian, id.low.bigEndian), feed)
        }
    }

    public mutating func add(_ hash: [UInt8]) {
        count &+= 1
        for i in 0..<32 { value[i] ^= hash[i] }
    }

    public mutating func remove(_ hash: [UInt8]) {
        count &-= 1
        for i in 0..<32 { value[i] ^= hash[i] }
    }

    /// The digest of `entries` (backing name → object ID) in the directory `dirIV`.
    public static func of(_ entries: [String: ObjectID], dirIV: [UInt8], with crypto: CryptoWorker) throws
        -> EntryDigest
    {
        var d = EntryDigest.empty
        for (name, id) in entries { d.add(try hash(name: name, id: id, dirIV: dirIV, with: crypto)) }
        return d
    }
}

/// A directory's sealed entry-set state, the third part of its `elastic.diriv`: the committed
/// digest and, while a create, unlink, rename or link is under way, the digest it will have
/// (so a crash at any point leaves a directory that matches one of the two). Sealed with
/// AES-256-GCM under the metadata key, bound to the directory's IV.
public struct EntrySetState: Equatable, Sendable {
    public var committed: EntryDigest
    public var pending: EntryDigest?
    /// The session that sealed this state (set by `seal`; 48 bits on disk). Not part of `==`.
    public internal(set) var session: UInt64 = 0

    public static func == (a: EntrySetState, b: EntrySetState) -> Bool {
        a.committed == b.committed && a.pending == b.pending
    }

    public init(committed: EntryDigest, pending: EntryDigest? = nil) {
        self.committed = committed
        self.pending = pending
    }

    static let version: UInt8 = 1
    /// version ‖ flags (bit 0: pending) ‖ session (be48) ‖ committed (be64 count ‖ 32) ‖
    /// pending (the same, zero when none).
    public static let plainSize = 8 + 2 * 40
    public static let sealedSize = 12 + plainSize + 16

    /// Writes the `plainSize` bytes of the state at `p` (no allocation: twice per change of names).
    func encode(into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: Self.version, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: pending == nil ? 0 : 1, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt16(truncatingIfNeeded: session >> 32).bigEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: UInt32(truncatingIfNeeded: session).bigEndian, toByteOffset: 4, as: UInt32.self)
        Self.encode(committed, into: p + 8)
        Self.encode(pending ?? .empty, into: p + 48)
    }

    /// be64 count ‖ the 32-byte XOR: 40 bytes at `p`.
    static func encode(_ d: EntryDigest, into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: d.count.bigEndian, toByteOffset: 0, as: UInt64.self)
        d.value.withUnsafeBytes { (p + 8).copyMemory(from: $0.baseAddress!, byteCount: 32) }
    }

    init(decoding b: [UInt8]) throws {
        var r = ByteReader(b)
        guard try r.u8() == Self.version else { throw FormatError.corruptMetadata("entry set version") }
        let flags = try r.u8()
        guard flags & ~1 == 0 else { throw FormatError.corruptMetadata("entry set flags") }
        let session = UInt64(try r.u16()) << 32 | UInt64(try r.u32())
        var digests: [EntryDigest] = []
        for _ in 0..<2 { digests.append(EntryDigest(count: try r.u64(), value: try r.raw(32))) }
        guard r.remaining == 0 else { throw FormatError.corruptMetadata("entry set length") }
        self.init(committed: digests[0], pending: flags & 1 != 0 ? digests[1] : nil)
        self.session = session
    }

    /// Associated data: "elastic/v2/entries" ‖ the directory's IV.
    static func aad(dirIV: [UInt8]) -> [UInt8] { aadLabel + dirIV }
    private static let aadLabel = Array(KeyLabels.entrySet.utf8)

    /// The sealed state, stamped with the session of `crypto`.
    public func seal(dirIV: [UInt8], with crypto: CryptoWorker) throws -> [UInt8] {
        var s = self
        s.session = crypto.session
        return try withUnsafeTemporaryAllocation(byteCount: Self.plainSize, alignment: 8) { plain in
            s.encode(into: plain.baseAddress!)
            return try crypto.sealMetadata(UnsafeRawBufferPointer(plain), context: Self.aad(dirIV: dirIV))
        }
    }

    public static func open(_ sealed: [UInt8], dirIV: [UInt8], with crypto: CryptoWorker) throws -> EntrySetState {
        guard sealed.count == sealedSize else { throw FormatError.corruptMetadata("entry set length") }
        do {
            return try EntrySetState(decoding: try crypto.openMetadata(sealed, context: aad(dirIV: dirIV)))
        } catch {
            throw FormatError.corruptMetadata("entry set failed authentication (edited, or another directory's)")
        }
    }

    /// The version of a directory's entries whose digest is `entries`, sealed in `session`.
    public static func version(of entries: EntryDigest, session: UInt64) -> ObjectVersion {
        withUnsafeTemporaryAllocation(byteCount: 40, alignment: 8) { b in
            encode(entries, into: b.baseAddress!)
            return ObjectVersion(digestOf: UnsafeRawBufferPointer(b), session: session)
        }
    }

    /// Whether `actual` is the committed set or the one a change under way leads to.
    public func accepts(_ actual: EntryDigest) -> Bool { actual == committed || actual == pending }
}
