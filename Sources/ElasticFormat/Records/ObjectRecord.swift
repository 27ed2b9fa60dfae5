import ElasticCrypto
import Glibc

/// What ELASTIC knows about an object that the host must not decide: its type, permission bits
/// (setuid, setgid and sticky included), owner, group, device number and, for regular files,
/// the plaintext length. Sealed with AES-256-GCM under the metadata key and bound to the
/// object's ID, so the host can neither edit one nor move one onto another object. The backing
/// object's own owner, mode and size are never consulted. Layout in docs/file-format.md.
public struct ObjectRecord: Equatable, Sendable {
    /// The object types a record names (its backing object is a regular file for all but
    /// directories).
    public enum Kind: UInt8, Sendable {
        case regular = 1
        case directory, symlink, fifo, socket, characterDevice, blockDevice

        /// The `S_IFMT` bits of this kind.
        public var fileType: mode_t {
            switch self {
            case .regular: return S_IFREG
            case .directory: return S_IFDIR
            case .symlink: return S_IFLNK
            case .fifo: return S_IFIFO
            case .socket: return S_IFSOCK
            case .characterDevice: return S_IFCHR
            case .blockDevice: return S_IFBLK
            }
        }

        public init?(fileType: mode_t) {
            switch fileType & S_IFMT {
            case S_IFREG: self = .regular
            case S_IFDIR: self = .directory
            case S_IFLNK: self = .symlink
            case S_IFIFO: self = .fifo
            case S_IFSOCK: self = .socket
            case S_IFCHR: self = .characterDevice
            case S_IFBLK: self = .blockDevice
            default: return nil
            }
        }
    }

    /// Plaintext record length.
    public static let plainSize = 112
    /// Sealed length: nonce ‖ record ‖ tag.
    public static let sealedSize = 12 + plainSize + 16
    static let version: UInt8 = 2

    public var kind: Kind
    /// Permission bits, `0o7777` at most.
    public var mode: mode_t
    public var uid: uid_t
    public var gid: gid_t
    public var rdev: UInt64
    /// Regular files: the plaintext length; symlinks: the target's length. Others: 0.
    public var size: Int64
    /// Modification and change times (of every object; a directory's change with its entries).
    public var mtime = timespec()
    public var ctime = timespec()
    /// Regular files: whether the file may hold holes (it was grown past its end by truncate,
    /// fallocate or a write beyond it). Only then does an all-zero cipher block read as zeros;
    /// in any other file it is a block the host zeroed, and fails.
    public var sparse = false
    /// Directories: whether this is the store's root directory (set when the store is made,
    /// never on another directory), so no other directory can be put in its place.
    public var storeRoot = false
    /// Regular files and symlinks: the content digest of their blocks (`BlockTags`), so the
    /// record names the exact version of every block; zero for an object without blocks.
    public var content: BlockTag = .zero
    /// Every object: the digest of its `user.*` extended attributes (`XattrSet`); zero: none.
    public var xattrs: BlockTag = .zero
    /// An attribute change was under way: `xattrsPending` is the digest it will give (set
    /// before the backing call, cleared with the new digest after it), so after a crash the
    /// attributes found must give either digest, and are settled to it.
    public var xattrsChanging = false
    public var xattrsPending: BlockTag = .zero
    /// The session (read-write mount, or offline tool) that sealed this record: `seal` writes
    /// its worker's session here. After a crash, a record that differs from the version the
    /// store last recorded is accepted only if that session is one the versions map may lack
    /// (`VersionMap`). Not part of `==`: it says when, not what.
    public internal(set) var session: UInt64 = 0

    public init(
        kind: Kind, mode: mode_t, uid: uid_t, gid: gid_t, rdev: UInt64 = 0, size: Int64 = 0, times: timespec? = nil
    ) {
        self.kind = kind
        self.mode = mode & 0o7777
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.size = size
        let t = times ?? Self.now()
        (mtime, ctime) = (t, t)
    }

    /// The current time (CLOCK_REALTIME), for mtime and ctime.
    public static func now() -> timespec {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return t
    }

    public static func == (a: ObjectRecord, b: ObjectRecord) -> Bool {
        a.kind == b.kind && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.rdev == b.rdev
            && a.size == b.size && a.sparse == b.sparse && a.storeRoot == b.storeRoot && a.content == b.content
            && a.xattrs == b.xattrs && a.xattrsChanging == b.xattrsChanging
            && a.xattrsPending == b.xattrsPending
            && a.mtime.tv_sec == b.mtime.tv_sec
            && a.mtime.tv_nsec == b.mtime.tv_nsec && a.ctime.tv_sec == b.ctime.tv_sec
            && a.ctime.tv_nsec == b.ctime.tv_nsec
    }

    /// `st_mode`: type and permission bits.
    public var statMode: mode_t { kind.fileType | mode }

    static let sparseFlag: UInt16 = 1
    static let storeRootFlag: UInt16 = 2
    static let xattrsChangingFlag: UInt16 = 4

    /// version ‖ kind ‖ u16 flags (bit 0: sparse) ‖ mode ‖ uid ‖ gid ‖ rdev ‖ size ‖ mtime (i64
    /// seconds ‖ u32 nanoseconds) ‖ ctime (the same) ‖ content digest (16) ‖ attribute digest (16) ‖ pending attribute
    /// digest (16; zero unless a change is under way) ‖ session (u64).
    var encoded: [UInt8] { withEncoding { Array($0) } }

    /// `body` with `encoded` in a stack buffer (no allocation: records are sealed at every write).
    func withEncoding<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeTemporaryAllocation(byteCount: Self.plainSize, alignment: 8) { b in
            encode(into: b.baseAddress!)
            return try body(b)
        }
    }

    /// Writes the `plainSize` bytes of `encoded` at `p` (no allocation: once per write).
    func encode(into p: UnsafeMutableRawPointer) {
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) {
            p.storeBytes(of: v.bigEndian, toByteOffset: at, as: T.self)
        }
        put(Self.version, 0)
        put(kind.rawValue, 1)
        put(
            (sparse ? Self.sparseFlag : 0) | (storeRoot ? Self.storeRootFlag : 0)
                | (xattrsChanging ? Self.xattrsChangingFlag : 0), 2)
        put(UInt32(mode), 4)
        put(uid, 8)
        put(gid, 12)
        put(rdev, 16)
        put(UInt64(bitPattern: size), 24)
        put(UInt64(bitPattern: Int64(mtime.tv_sec)), 32)
        put(UInt32(truncatingIfNeeded: mtime.tv_nsec), 40)
        put(UInt64(bitPattern: Int64(ctime.tv_sec)), 44)
        put(UInt32(truncatingIfNeeded: ctime.tv_nsec), 52)
        p.storeBytes(of: content, toByteOffset: 56, as: BlockTag.self)
        p.storeBytes(of: xattrs, toByteOffset: 72, as: BlockTag.self)
        p.storeBytes(of: xattrsChanging ? xattrsPending : .zero, toByteOffset: 88, as: BlockTag.self)
        put(session, 104)
    }

    init(decoding b: [UInt8]) throws {
        var r = ByteReader(b)
        guard try r.u8() == Self.version, let kind = Kind(rawValue: try r.u8()) else {
            throw FormatError.corruptMetadata("object record version or type")
        }
        let flags = try r.u16()
        guard flags & ~(Self.sparseFlag | Self.storeRootFlag | Self.xattrsChangingFlag) == 0,
            kind == .regular || flags & Self.sparseFlag == 0, kind == .directory || flags & Self.storeRootFlag == 0
        else {
            throw FormatError.corruptMetadata("object record flags")
        }
        let mode = mode_t(try r.u32())
        guard mode & ~0o7777 == 0 else { throw FormatError.corruptMetadata("object record mode") }
        self.init(kind: kind, mode: mode, uid: try r.u32(), gid: try r.u32(), rdev: try r.u64(), times: timespec())
        sparse = flags & Self.sparseFlag != 0
        storeRoot = flags & Self.storeRootFlag != 0
        xattrsChanging = flags & Self.xattrsChangingFlag != 0
        size = Int64(bitPattern: try r.u64())
        for which in 0..<2 {
            let sec = Int(Int64(bitPattern: try r.u64())), nsec = try r.u32()
            guard nsec < 1_000_000_000 else { throw FormatError.corruptMetadata("object record time") }
            let t = timespec(tv_sec: sec, tv_nsec: Int(nsec))
            if which == 0 { mtime = t } else { ctime = t }
        }
        content = try r.memory(as: BlockTag.self)
        xattrs = try r.memory(as: BlockTag.self)
        xattrsPending = try r.memory(as: BlockTag.self)
        guard xattrsChanging || xattrsPending == .zero else {
            throw FormatError.corruptMetadata("object record pending attribute digest")
        }
        session = try r.u64()
        guard size >= 0, size <= BlockLayout.maxPlaintextSize, r.remaining == 0,
            kind == .regular || (kind == .symlink && size > 0 && size < 4096) || (kind != .symlink && size == 0)
        else {
            throw FormatError.corruptMetadata("object record size")
        }
    }

    /// Associated data: "elastic/v2/record" ‖ the object's ID.
    static func aad(objectID: [UInt8]) -> [UInt8] { aadLabel + objectID }
    private static let aadLabel = Array(KeyLabels.objectRecord.utf8)

    /// The sealed record (`sealedSize` bytes) for the object `objectID`, stamped with the
    /// session of `crypto`.
    public func seal(objectID: [UInt8], with crypto: CryptoWorker) throws -> [UInt8] {
        try sealedBy(crypto).withEncoding {
            try crypto.sealMetadata(UnsafeRawBufferPointer($0), context: Self.aad(objectID: objectID))
        }
    }

    /// `seal(objectID:with:)` and the version of what it seals (`sealedBy(crypto).version`),
    /// from one encoding (the session is its last field).
    public func sealWithVersion(objectID: [UInt8], with crypto: CryptoWorker) throws -> (
        sealed: [UInt8], version: ObjectVersion
    ) {
        let content = sealedBy(crypto)  // (the session read once: a checkpoint may move it on)
        return try content.withEncoding { plain in
            let p = plain.baseAddress!
            p.storeBytes(of: UInt64(0), toByteOffset: Self.plainSize - 8, as: UInt64.self)
            let version = ObjectVersion(digestOf: UnsafeRawBufferPointer(plain), session: content.session)
            p.storeBytes(of: content.session.bigEndian, toByteOffset: Self.plainSize - 8, as: UInt64.self)
            return (
                try crypto.sealMetadata(UnsafeRawBufferPointer(plain), context: Self.aad(objectID: objectID)), version
            )
        }
    }

    /// This record as `seal` writes it with `crypto` (stamped with its session).
    public func sealedBy(_ crypto: CryptoWorker) -> ObjectRecord {
        var r = self
        r.session = crypto.session
        return r
    }

    /// The version of this record for `VersionMap`: a digest of what it says (not of when: the
    /// session is carried beside it), and the session that sealed it.
    public var version: ObjectVersion {
        var content = self
        content.session = 0
        return content.withEncoding { ObjectVersion(digestOf: UnsafeRawBufferPointer($0), session: session) }
    }

    /// Opens a sealed record of `objectID`; a record of another object, or an edited one, throws.
    public static func open(_ sealed: [UInt8], objectID: [UInt8], with crypto: CryptoWorker) throws -> ObjectRecord {
        guard sealed.count == sealedSize else { throw FormatError.corruptMetadata("object record length") }
        do {
            return try ObjectRecord(decoding: try crypto.openMetadata(sealed, context: aad(objectID: objectID)))
        } catch {
            throw FormatError.corruptMetadata("object record failed authentication (edited, or another object's)")
        }
    }
}
