import ElasticCrypto
import ElasticSystem
import Glibc

/// What a backing directory holds, as its entry set counts it: every entry but ELASTIC's own
/// files (`BackingNames.isInternal`, except long names, which are entries), with the object ID
/// each one names (a file's ID from its header, a directory's IV). Reads 24 bytes per file and
/// 16 per directory; authenticates nothing by itself: the digest of the result is compared with
/// the directory's sealed `EntrySetState`, and each object's own record with its ID when used.
public enum EntryScan {
    /// Prefix of the temporary name a new object is made under before it is moved into place
    /// (so a crash never leaves a named object without its header).
    public static let newObjectPrefix = "elastic.new."

    public struct Result: Sendable {
        /// Backing name → object ID.
        public var ids: [String: ObjectID] = [:]
        /// Backing name → the whole header of each regular backing file (`scan(withHeaders:)`).
        public var headers: [String: [UInt8]] = [:]
        /// Backing names of the subdirectories.
        public var directories: [String] = []
        /// Entries whose object ID cannot be read (no header, a node ELASTIC never makes), with why.
        public var unreadable: [(name: String, why: String)] = []
        /// Objects an interrupted create left under their temporary name.
        public var leftovers: [String] = []
        /// Empty directories without their `elastic.diriv`: a removal a crash cut off between
        /// the two steps (counted only if the directory's pending set leaves them out).
        public var interrupted: [String] = []
    }

    struct RemovalCutOff: Error {}

    /// Scans the backing directory `dirfd`; `withHeaders`: keeps each file's whole header.
    public static func scan(_ dirfd: Int32, withHeaders: Bool = false) throws -> Result {
        var result = Result()
        var names: [(String, UInt8)] = []
        try Syscall.forEachEntry(dirfd) { name, _, type in
            if name == "." || name == ".." { return }
            if BackingNames.isInternal(name) && !BackingNames.isLongName(name) {
                if name.hasPrefix(newObjectPrefix) || BackingNames.isCrashLeftover(name) {
                    result.leftovers.append(name)
                }
                return
            }
            names.append((name, type))
        }
        for (name, type) in names {
            do {
                let entry = try object(dirfd, name, type: type, withHeader: withHeaders)
                result.ids[name] = entry.id
                if let header = entry.header { result.headers[name] = header }
                if entry.isDirectory { result.directories.append(name) }
            } catch is RemovalCutOff {
                result.interrupted.append(name)
            } catch {
                result.unreadable.append((name, "\(error)"))
            }
        }
        return result
    }

    /// The object ID of the entry `name` in `dirfd`.
    public static func objectID(_ dirfd: Int32, _ name: String, type: UInt8 = UInt8(DT_UNKNOWN)) throws -> ObjectID {
        try object(dirfd, name, type: type, withHeader: false).id
    }

    /// `objectID`, with a file's whole header (`withHeader`) and whether it is a directory.
    static func object(_ dirfd: Int32, _ name: String, type: UInt8, withHeader: Bool) throws -> (
        id: ObjectID, header: [UInt8]?, isDirectory: Bool
    ) {
        var type = type
        if type == UInt8(DT_UNKNOWN) {
            let mode = try Syscall.lstatat(dirfd, name).st_mode & S_IFMT
            type = mode == S_IFDIR ? UInt8(DT_DIR) : mode == S_IFREG ? UInt8(DT_REG) : UInt8(DT_UNKNOWN)
        }
        let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        switch type {
        case UInt8(DT_REG):
            let fd = try Syscall.openat(dirfd, name, flags)
            defer { Syscall.close(fd) }
            let want = withHeader ? FileHeader.size : 24
            var b = [UInt8](repeating: 0, count: want)
            let n = try b.withUnsafeMutableBytes { try Syscall.pread(fd, $0.baseAddress!, want, 0) }
            guard n >= 24, Array(b[0..<4]) == FileHeader.magic else {
                throw FormatError.corruptHeader("no file header")
            }
            return (ObjectID(Array(b[8..<24])), withHeader ? Array(b[0..<n]) : nil, false)
        case UInt8(DT_DIR):
            let fd = try Syscall.openat(dirfd, name, flags | O_DIRECTORY)
            defer { Syscall.close(fd) }
            if (try? Syscall.lstatat(fd, DirectoryIV.fileName)) == nil, try DirectoryIV.holdsNothing(fd) {
                throw RemovalCutOff()
            }
            return (ObjectID(try DirectoryIV.read(from: fd)), nil, true)
        default:
            throw FormatError.corruptMetadata("a backing object of a type ELASTIC never makes")
        }
    }

    /// Removes what an interrupted create left (a file, or a directory holding at most its IV).
    public static func removeLeftover(_ dirfd: Int32, _ name: String) {
        guard name.hasPrefix(newObjectPrefix) || BackingNames.isCrashLeftover(name) else { return }
        if (try? Syscall.unlinkat(dirfd, name, 0)) != nil { return }
        if let fd = try? Syscall.openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) {
            DirectoryIV.discard(in: fd)
            Syscall.close(fd)
        }
        _ = try? Syscall.unlinkat(dirfd, name, AT_REMOVEDIR)
    }

    /// A fresh temporary name for a new object.
    public static func newObjectName() throws -> String {
        newObjectPrefix + Hex.encode(try Random.bytes(8))
    }

    /// Recomputes the entry set of `dirfd` from what it holds and seals it as committed (for
    /// `elastic fsck --repair` and the copy `rekey` and `migrate` make); returns the digest.
    @discardableResult
    public static func reseal(_ dirfd: Int32, iv: [UInt8], with crypto: CryptoWorker) throws -> EntryDigest {
        let found = try scan(dirfd)
        if let bad = found.unreadable.first {
            throw FormatError.corruptMetadata("entry \(bad.name): \(bad.why)")
        }
        // (Empty directories a cut-off removal left are finished: they hold nothing.)
        for name in found.interrupted { try DirectoryIV.finishRemoval(dirfd, name) }
        let digest = try EntryDigest.of(found.ids, dirIV: iv, with: crypto)
        try DirectoryIV.writeEntrySet(EntrySetState(committed: digest), iv: iv, in: dirfd, with: crypto)
        return digest
    }
}
