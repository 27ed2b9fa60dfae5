import ElasticCrypto
import Synchronization

/// The version of one part of an object (a record, or a directory's entries): 16 bytes of
/// SHA-256 over what it holds, and the session that sealed it. Two versions are equal when
/// their digests are; the session only says when it was written (`VersionMap.admit`).
public struct ObjectVersion: Equatable, Sendable {
    let high: UInt64
    let low: UInt64
    public let session: UInt64

    public init(digestOf bytes: [UInt8], session: UInt64) {
        self = bytes.withUnsafeBytes { ObjectVersion(digestOf: $0, session: session) }
    }

    public init(digestOf bytes: UnsafeRawBufferPointer, session: UInt64) {
        var d = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &d) { KDF.sha256(bytes, into: $0.baseAddress!) }
        (high, low) = (UInt64(bigEndian: d.0), UInt64(bigEndian: d.1))
        self.session = session
    }

    init(high: UInt64, low: UInt64, session: UInt64) {
        (self.high, self.low, self.session) = (high, low, session)
    }

    static func load(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(b[at + $1]) } }

    public static func == (a: ObjectVersion, b: ObjectVersion) -> Bool { a.high == b.high && a.low == b.low }
}

/// Which part of an object a version is of.
public struct VersionKey: Hashable, Sendable, Comparable {
    public enum Part: UInt8, Sendable {
        /// The object's record (a file header's, or a directory's in `elastic.diriv`).
        case record = 0
        /// A directory's entry set.
        case entries = 1
    }
    public let id: ObjectID
    public let part: Part

    public init(_ id: ObjectID, _ part: Part) {
        self.id = id
        self.part = part
    }

    public static func < (a: VersionKey, b: VersionKey) -> Bool {
        (a.id.high, a.id.low, a.part.rawValue) < (b.id.high, b.id.low, b.part.rawValue)
    }
}

/// The last version of every object part the store recorded (`elastic.versions`, written at
/// the end of each read-write session and named by `elastic.root`), and what this session saw
/// or wrote since. An object read from BACKING must be the version the map holds: an older
/// consistent copy of a file or directory put back between mounts is refused like one put back
/// while mounted. After a crash (`reconcileFrom`), a version the map does not have is accepted
/// if the session that sealed it is one whose changes the map may lack, and is newer than the
/// map's; `reconciled` ends that once every object was seen. Thread-safe.
public final class VersionMap: Sendable {
    /// What `admit` found.
    public enum Verdict: Equatable, Sendable {
        /// The version the map holds.
        case current
        /// A version from a session the map may lack (after a crash): accepted and noted.
        case fromUnrecordedSession
        /// Another version than the one recorded (an older one put back), or an object the map
        /// should name and does not.
        case stale(recorded: ObjectVersion?)
    }

    struct State: ~Copyable {
        var base: SortedVersions
        /// This session's versions (nil: the object was removed).
        var overlay: [VersionKey: ObjectVersion?] = [:]
        var reconcileFrom: UInt64?
        /// Base entries seen by `admit` (for `reconciled`, which drops the others).
        var seen: [UInt64]
    }
    private let state: Mutex<State>

    /// A map holding `base`; `reconcileFrom`: the oldest session whose changes it may lack.
    public init(base: SortedVersions = SortedVersions(), reconcileFrom: UInt64?) {
        state = Mutex(
            State(
                base: base, reconcileFrom: reconcileFrom,
                seen: [UInt64](repeating: 0, count: (base.count + 63) / 64)))
    }

    /// The oldest session whose changes the map may lack (nil: it has them all).
    public var reconcileFrom: UInt64? { state.withLock { $0.reconcileFrom } }

    /// Checks `found`, read from BACKING, against the recorded version of `key`.
    public func admit(_ key: VersionKey, _ found: ObjectVersion) -> Verdict {
        state.withLock { s in
            if let mine = s.overlay[key] { return mine == found ? .current : .stale(recorded: mine) }
            let index = s.base.index(of: key)
            let recorded = index.map { s.base.version(at: $0) }
            if let index { s.seen[index / 64] |= 1 << UInt64(index % 64) }
            if recorded == found { return .current }
            if let from = s.reconcileFrom, found.session >= from, found.session >= (recorded?.session ?? 0) {
                s.overlay[key] = found
                return .fromUnrecordedSession
            }
            return .stale(recorded: recorded)
        }
    }

    /// `admit`, as a yes or no.
    public func accepts(_ key: VersionKey, _ found: ObjectVersion) -> Bool {
        if case .stale = admit(key, found) { return false }
        return true
    }

    /// Records `version` as the current one of `key` (written or accepted by this session).
    public func note(_ key: VersionKey, _ version: ObjectVersion) {
        state.withLock { $0.overlay[key] = version }
    }

    /// The object `id` is gone: any version of it read later is refused.
    public func remove(_ id: ObjectID) {
        state.withLock { s in
            s.overlay[VersionKey(id, .record)] = .some(nil)
            s.overlay[VersionKey(id, .entries)] = .some(nil)
        }
    }

    /// Every object was seen (`VersionWalk`): the map now has every change, and entries of the
    /// base that no walk reached (objects removed in a crashed session) are dropped.
    public func reconciled() {
        state.withLock { s in
            s.reconcileFrom = nil
            var kept = SortedVersions()
            for i in 0..<s.base.count where s.seen[i / 64] & (1 << UInt64(i % 64)) != 0 {
                kept.append(s.base.key(at: i), s.base.version(at: i))
            }
            s.base = kept
            s.seen = [UInt64](repeating: 0, count: (kept.count + 63) / 64)
        }
    }

    /// The base with this session's changes merged in: what `elastic.versions` holds next.
    public func merged() -> SortedVersions {
        state.withLock { s in
            let changes = s.overlay.sorted { $0.key < $1.key }
            var out = SortedVersions()
            var i = 0
            var j = 0
            while i < s.base.count || j < changes.count {
                let baseKey = i < s.base.count ? s.base.key(at: i) : nil
                if j < changes.count, baseKey == nil || changes[j].key <= baseKey! {
                    if let v = changes[j].value { out.append(changes[j].key, v) }
                    if changes[j].key == baseKey { i += 1 }
                    j += 1
                } else {
                    out.append(baseKey!, s.base.version(at: i))
                    i += 1
                }
            }
            return out
        }
    }

    /// `snapshot` (from `merged`) was recorded: it becomes the base, and the changes it holds
    /// leave the overlay (those made since stay).
    public func recorded(_ snapshot: SortedVersions) {
        state.withLock { s in
            s.overlay = s.overlay.filter { key, version in
                guard let version else { return snapshot.index(of: key) != nil }
                return snapshot.version(of: key).map { $0 != version || $0.session != version.session } ?? true
            }
            s.base = snapshot
            s.seen = [UInt64](repeating: ~0, count: (snapshot.count + 63) / 64)
        }
    }

    /// Whether anything changed since the base was recorded.
    public var hasChanges: Bool { state.withLock { !$0.overlay.isEmpty } }
}

/// Versions sorted by key in one flat buffer, 41 bytes each: object ID (16) ‖ part (1) ‖
/// digest (16) ‖ session (be64). Compact: about 41 MB for a million objects' records.
public struct SortedVersions: Sendable, Equatable {
    static let entrySize = 41
    private(set) var bytes: [UInt8] = []

    public init() {}

    public var count: Int { bytes.count / Self.entrySize }

    /// Appends an entry whose key is above every key held.
    mutating func append(_ key: VersionKey, _ v: ObjectVersion) {
        var w = ByteWriter()
        w.u64(key.id.high)
        w.u64(key.id.low)
        w.u8(key.part.rawValue)
        w.u64(v.high)
        w.u64(v.low)
        w.u64(v.session)
        bytes += w.bytes
    }

    func u64(_ at: Int) -> UInt64 { ObjectVersion.load(bytes, at) }

    func key(at i: Int) -> VersionKey {
        let o = i * Self.entrySize
        return VersionKey(ObjectID(high: u64(o), low: u64(o + 8)), VersionKey.Part(rawValue: bytes[o + 16]) ?? .record)
    }

    func version(at i: Int) -> ObjectVersion {
        let o = i * Self.entrySize + 17
        return ObjectVersion(high: u64(o), low: u64(o + 8), session: u64(o + 16))
    }

    /// Binary search for `key`.
    func index(of key: VersionKey) -> Int? {
        var (lo, hi) = (0, count)
        while lo < hi {
            let mid = (lo + hi) / 2
            let k = self.key(at: mid)
            if k == key { return mid }
            if k < key { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    /// The version held for `key`.
    public func version(of key: VersionKey) -> ObjectVersion? { index(of: key).map { version(at: $0) } }

    static let magic = Array("ELVM".utf8)
    static let formatVersion: UInt8 = 1

    /// Associated data: magic ‖ version ‖ store ID ‖ be64 session that wrote the file.
    static func aad(storeID: [UInt8], session: UInt64) -> [UInt8] {
        var w = ByteWriter()
        w.u64(session)
        return magic + [formatVersion] + storeID + w.bytes
    }

    /// `elastic.versions`: "ELVM" ‖ u8 1 ‖ AES-256-GCM(nonce ‖ be64 count ‖ entries ‖ tag),
    /// sealed under the root key, bound to the store and the session that wrote it.
    public func encode(key: SecureBytes, storeID: [UInt8], session: UInt64) throws -> [UInt8] {
        var w = ByteWriter()
        w.u64(UInt64(count))
        return Self.magic + [Self.formatVersion]
            + (try AESGCM(key: key).seal(w.bytes + bytes, aad: Self.aad(storeID: storeID, session: session)))
    }

    /// Opens `elastic.versions` as written by `session` (its keys strictly increasing).
    public init(decoding file: [UInt8], key: SecureBytes, storeID: [UInt8], session: UInt64) throws {
        guard file.count > 5, Array(file[0..<4]) == Self.magic, file[4] == Self.formatVersion else {
            throw FormatError.integrity("\(BackingNames.versions) is not a versions map (bad magic or version)")
        }
        let body: [UInt8]
        do {
            body = try AESGCM(key: key).open(
                Array(file[5...]), aad: Self.aad(storeID: storeID, session: session))
        } catch {
            throw FormatError.integrity(
                "\(BackingNames.versions) failed authentication (altered, or not this session's)")
        }
        var r = ByteReader(body)
        let n = try r.u64()
        guard UInt64(r.remaining) == n &* UInt64(Self.entrySize) else {
            throw FormatError.integrity("\(BackingNames.versions) has the wrong length")
        }
        bytes = Array(body[8...])
        for i in 0..<count {
            guard bytes[i * Self.entrySize + 16] <= 1, i == 0 || self.key(at: i - 1) < self.key(at: i) else {
                throw FormatError.integrity("\(BackingNames.versions) is not sorted")
            }
        }
    }
}
