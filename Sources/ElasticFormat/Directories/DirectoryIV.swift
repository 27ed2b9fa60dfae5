import ElasticCrypto
import ElasticSystem
import Glibc

/// A backing directory's `elastic.diriv`: its IV, 16 random bytes that every name in the
/// directory is encrypted under (so equal names in two directories look unrelated), followed
/// by the directory's sealed `ObjectRecord` (type, mode, owner, group) and its sealed
/// `EntrySetState` (the digest of its entries), both bound to the IV.
/// Written when the directory is made, read (and checked) before any name in it is used,
/// removed last when the directory is removed, and put back if that removal fails.
public enum DirectoryIV {
    public static let fileName = BackingNames.dirIV
    public static let size = BackingNames.dirIVSize
    /// IV ‖ sealed record ‖ sealed entry set.
    public static let fileSize = size + ObjectRecord.sealedSize + EntrySetState.sealedSize
    /// Where the sealed entry set starts.
    static let entrySetOffset = Int64(size + ObjectRecord.sealedSize)
    /// A version 1 directory's file: the IV alone (read only by `elastic migrate`).
    public static let v1FileSize = size

    /// Writes a fresh IV, `record` and the entry set `entries` (empty for a new directory) into
    /// the directory `dirfd`; returns the IV.
    @discardableResult
    public static func create(
        in dirfd: Int32, record: ObjectRecord, entries: EntrySetState = EntrySetState(committed: .empty),
        with crypto: CryptoWorker
    ) throws -> [UInt8] {
        let iv = try Random.bytes(size)
        let sealed = try record.seal(objectID: iv, with: crypto) + (try entries.seal(dirIV: iv, with: crypto))
        try Syscall.writeFileAtomically(dirfd, fileName, iv + sealed, mode: 0o600)
        return iv
    }

    static func contents(of dirfd: Int32, expecting length: Int) throws -> [UInt8] {
        let bytes: [UInt8]
        // Any failure (missing, not a file, unreadable) is damage, never "no such entry".
        do { bytes = try Syscall.readFile(dirfd, fileName, limit: Self.fileSize) } catch {
            throw FormatError.corruptMetadata("directory IV: \(error)")
        }
        guard bytes.count == length else { throw FormatError.corruptMetadata("directory IV of \(bytes.count) bytes") }
        return bytes
    }

    /// The IV of `dirfd` (its record is not opened: see `readRecord`).
    public static func read(from dirfd: Int32) throws -> [UInt8] {
        Array(try contents(of: dirfd, expecting: fileSize)[0..<size])
    }

    /// The IV and the authenticated record of `dirfd`.
    public static func readRecord(from dirfd: Int32, with crypto: CryptoWorker) throws -> (
        iv: [UInt8], record: ObjectRecord
    ) {
        let info = try readInfo(from: dirfd, with: crypto)
        return (info.iv, info.record)
    }

    /// The IV, the authenticated record and the authenticated entry-set state of `dirfd`.
    public static func readInfo(from dirfd: Int32, with crypto: CryptoWorker) throws -> (
        iv: [UInt8], record: ObjectRecord, entries: EntrySetState
    ) {
        let bytes = try contents(of: dirfd, expecting: fileSize)
        let iv = Array(bytes[0..<size])
        let recordEnd = size + ObjectRecord.sealedSize
        let record = try ObjectRecord.open(Array(bytes[size..<recordEnd]), objectID: iv, with: crypto)
        guard record.kind == .directory else { throw FormatError.corruptMetadata("a directory record of another type") }
        return (iv, record, try EntrySetState.open(Array(bytes[recordEnd...]), dirIV: iv, with: crypto))
    }

    /// The IV of a version 1 directory (`elastic migrate`).
    public static func readV1(from dirfd: Int32) throws -> [UInt8] { try contents(of: dirfd, expecting: v1FileSize) }

    /// Rewrites the record of `dirfd` in place (the IV stays).
    public static func writeRecord(_ record: ObjectRecord, iv: [UInt8], in dirfd: Int32, with crypto: CryptoWorker)
        throws
    {
        let fd = try openForUpdate(dirfd)
        defer { Syscall.close(fd) }
        try Syscall.pwrite(fd, try record.seal(objectID: iv, with: crypto), at: Int64(size))
    }

    /// The directory's `elastic.diriv`, open for writing in place (close it after).
    public static func openForUpdate(_ dirfd: Int32) throws -> Int32 {
        // O_NONBLOCK and a type check: a FIFO planted in its place must not block the daemon.
        let fd = try Syscall.openat(dirfd, fileName, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        do {
            guard try Syscall.fstat(fd).st_mode & S_IFMT == S_IFREG else {
                throw FormatError.corruptMetadata("directory IV: not a regular file")
            }
        } catch {
            Syscall.close(fd)
            throw error
        }
        return fd
    }

    /// Rewrites the entry-set state in place, through a descriptor from `openForUpdate`.
    public static func writeEntrySet(_ state: EntrySetState, iv: [UInt8], fd: Int32, with crypto: CryptoWorker) throws {
        try Syscall.pwrite(fd, try state.seal(dirIV: iv, with: crypto), at: entrySetOffset)
    }

    /// Rewrites the record and the entry-set state in place in one write, through a descriptor
    /// from `openForUpdate`.
    public static func writeRecordAndEntrySet(
        _ record: ObjectRecord, _ state: EntrySetState, iv: [UInt8], fd: Int32, with crypto: CryptoWorker
    ) throws {
        let sealed = try record.seal(objectID: iv, with: crypto) + (try state.seal(dirIV: iv, with: crypto))
        try Syscall.pwrite(fd, sealed, at: Int64(size))
    }

    /// Rewrites the entry-set state of the directory `dirfd` in place.
    public static func writeEntrySet(_ state: EntrySetState, iv: [UInt8], in dirfd: Int32, with crypto: CryptoWorker)
        throws
    {
        let fd = try openForUpdate(dirfd)
        defer { Syscall.close(fd) }
        try writeEntrySet(state, iv: iv, fd: fd, with: crypto)
    }

    /// Whether the directory holds nothing at all (not even its IV).
    public static func holdsNothing(_ dirfd: Int32) throws -> Bool {
        var empty = true
        try Syscall.forEachEntry(dirfd) { name, _, _ in
            if name != "." && name != ".." && !isJunk(name) { empty = false }
        }
        return empty
    }

    /// Removes `name` in `parentfd`, an empty directory without its IV (a removal a crash cut
    /// off), with whatever junk it holds.
    public static func finishRemoval(_ parentfd: Int32, _ name: String) throws {
        let fd = try Syscall.openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        defer { Syscall.close(fd) }
        var junk: [String] = []
        try Syscall.forEachEntry(fd) { name, _, _ in if isJunk(name) { junk.append(name) } }
        for name in junk { removeJunk(fd, name) }
        try Syscall.unlinkat(parentfd, name, AT_REMOVEDIR)
    }

    /// Whether the directory holds nothing but its IV (it may be removed or replaced); orphan
    /// long-name sidecars and crash leftovers do not count.
    public static func holdsOnlyItsIV(_ dirfd: Int32) throws -> Bool {
        var only = true
        try Syscall.forEachEntry(dirfd) { name, _, _ in
            if name != "." && name != ".." && name != fileName && !isJunk(name) { only = false }
        }
        return only
    }

    /// Not an entry and not the IV: a long-name sidecar (its entry, if any, counts), a new object
    /// a crash left under its temporary name, or a temporary file.
    static func isJunk(_ name: String) -> Bool {
        BackingNames.isCrashLeftover(name) || name.hasPrefix(EntryScan.newObjectPrefix)
            || (name.hasPrefix(BackingNames.longNamePrefix) && name.hasSuffix(BackingNames.longNameSuffix))
    }

    static func removeJunk(_ dirfd: Int32, _ name: String) {
        if name.hasPrefix(EntryScan.newObjectPrefix) {
            EntryScan.removeLeftover(dirfd, name)
        } else {
            _ = try? Syscall.unlinkat(dirfd, name, 0)
        }
    }

    /// Before removing a directory: if it holds nothing but its IV, removes the IV file and
    /// returns its contents (for `restore` if the removal fails; nil if there was none);
    /// otherwise throws `.directoryNotEmpty` and changes nothing.
    public static func removeFromEmptyDirectory(_ dirfd: Int32) throws -> [UInt8]? {
        var hasIV = false
        var empty = true
        var junk: [String] = []
        try Syscall.forEachEntry(dirfd) { name, _, _ in
            if name == "." || name == ".." { return }
            if name == fileName {
                hasIV = true
            } else if isJunk(name) {
                junk.append(name)
            } else {
                empty = false
            }
        }
        guard empty else { throw FormatError.directoryNotEmpty }
        // A sidecar whose entry is gone, or what a crash left: nothing of the user's.
        for name in junk { removeJunk(dirfd, name) }
        guard hasIV else { return nil }
        let iv = try Syscall.readFile(dirfd, fileName, limit: Self.fileSize)
        try Syscall.unlinkat(dirfd, fileName, 0)
        return iv
    }

    /// Puts back what `removeFromEmptyDirectory` took (best effort: the directory stays).
    public static func restore(_ iv: [UInt8], in dirfd: Int32) {
        _ = try? Syscall.writeFileAtomically(dirfd, fileName, iv, mode: 0o600)
    }

    /// Removes the IV of a directory whose creation failed half way.
    public static func discard(in dirfd: Int32) {
        _ = try? Syscall.unlinkat(dirfd, fileName, 0)
    }
}
