import ElasticCrypto
import ElasticSystem
import Glibc

/// The life cycle of a backing directory's IV: `elastic.diriv`, 16 random bytes that every name
/// in the directory is encrypted under (so equal names in two directories look unrelated).
/// Written when the directory is made, read (and checked) before any name in it is used,
/// removed last when the directory is removed, and put back if that removal fails.
public enum DirectoryIV {
    public static let fileName = BackingNames.dirIV
    public static let size = BackingNames.dirIVSize

    /// Writes a fresh IV into the new directory `dirfd`.
    public static func create(in dirfd: Int32) throws {
        try Syscall.writeFileAtomically(dirfd, fileName, try Random.bytes(size), mode: 0o400)
    }

    /// The IV of `dirfd`; anything but a regular file of exactly `size` bytes is refused.
    public static func read(from dirfd: Int32) throws -> [UInt8] {
        let iv: [UInt8]
        do { iv = try Syscall.readFile(dirfd, fileName, limit: 64) } catch let e as SystemError {
            throw FormatError.corruptMetadata("directory IV: \(e)")
        }
        guard iv.count == size else { throw FormatError.corruptMetadata("directory IV of \(iv.count) bytes") }
        return iv
    }

    /// Before removing a directory: if it holds nothing but its IV, removes the IV and returns
    /// it (for `restore` if the removal fails; nil if there was none); otherwise throws
    /// `.directoryNotEmpty` and changes nothing.
    public static func removeFromEmptyDirectory(_ dirfd: Int32) throws -> [UInt8]? {
        var hasIV = false
        var empty = true
        try Syscall.forEachEntry(dirfd) { name, _, _ in
            if name == "." || name == ".." { return }
            if name == fileName { hasIV = true } else { empty = false }
        }
        guard empty else { throw FormatError.directoryNotEmpty }
        guard hasIV else { return nil }
        let iv = try Syscall.readFile(dirfd, fileName, limit: 64)
        try Syscall.unlinkat(dirfd, fileName, 0)
        return iv
    }

    /// Puts back an IV that `removeFromEmptyDirectory` took (best effort: the directory stays).
    public static func restore(_ iv: [UInt8], in dirfd: Int32) {
        _ = try? Syscall.writeFileAtomically(dirfd, fileName, iv, mode: 0o400)
    }

    /// Removes the IV of a directory whose creation failed half way.
    public static func discard(in dirfd: Int32) {
        _ = try? Syscall.unlinkat(dirfd, fileName, 0)
    }
}
