import ElasticFormat
import ElasticSystem
import Glibc

/// `user.*` extended attributes: the name after `user.` is encrypted like a file name (AES-SIV,
/// bound to "xattr"), the value is sealed with AES-256-GCM bound to the encrypted name.
/// Other namespaces are not supported (EOPNOTSUPP).
extension ElasticFilesystem {
    static let userPrefix = Array("user.".utf8)
    static let xattrIV = Array(KeyLabels.xattrName.utf8)
    /// The most a listxattr(2) reply can hold (XATTR_LIST_MAX).
    static let listLimit = 65536

    func backingXattrName(_ name: [UInt8]) throws -> String {
        guard name.starts(with: Self.userPrefix), name.count > Self.userPrefix.count else { throw Errno.notSupported }
        let enc =
            "user."
            + (try worker().crypto.encryptName(Array(name.dropFirst(Self.userPrefix.count)), dirIV: Self.xattrIV))
        guard enc.utf8.count <= 255 else { throw Errno.outOfRange }
        return enc
    }

    /// Runs `body` with a `/proc/self/fd` path to the backing object of `i` (the xattr calls
    /// have no `AT_EMPTY_PATH` form; the magic link reaches exactly the object, never a symlink's target).
    func withProcPath<R>(_ i: Inode, _ body: (String) throws -> R) throws -> R {
        try withHandle(i) { try body("/proc/self/fd/\($0)") }
    }

    func setxattr(_ ino: UInt64, _ name: [UInt8], _ value: [UInt8], _ flags: Int32) throws {
        let i = try inode(ino)
        if readOnly { throw Errno.readOnlyFileSystem }
        let bname = try backingXattrName(name)
        let sealed = try worker().crypto.sealMetadata(value, context: Array(bname.utf8))
        try withProcPath(i) { path in
            // Encrypted names are longer than the user's: a new name that would push the
            // backing list past what listxattr(2) can return (64 KiB) is refused here (ENOSPC),
            // so that listing never fails with E2BIG.
            let listed = try Syscall.listxattr(path)
            let present = listed.split(separator: 0).contains { $0.elementsEqual(bname.utf8) }
            if !present && listed.count + bname.utf8.count + 1 > Self.listLimit { throw Errno.noSpace }
            try Syscall.setxattr(path, bname, sealed, flags)
        }
    }

    func getxattr(_ ino: UInt64, _ name: [UInt8]) throws -> [UInt8] {
        let i = try inode(ino)
        let bname = try backingXattrName(name)
        let sealed = try withProcPath(i) { try Syscall.getxattr($0, bname) }
        return try worker().crypto.openMetadata(sealed, context: Array(bname.utf8))
    }

    /// Decrypted `user.*` names, each NUL-terminated (the listxattr format).
    func listxattr(_ ino: UInt64) throws -> [UInt8] {
        let i = try inode(ino)
        let raw = try withProcPath(i) { try Syscall.listxattr($0) }
        let crypto = try worker().crypto
        var out: [UInt8] = []
        for part in raw.split(separator: 0) where part.starts(with: Self.userPrefix) {
            let encoded = String(decoding: part.dropFirst(Self.userPrefix.count), as: UTF8.self)
            guard let plain = try? crypto.decryptName(encoded, dirIV: Self.xattrIV) else { continue }
            out += Self.userPrefix + plain + [0]
        }
        return out
    }

    func removexattr(_ ino: UInt64, _ name: [UInt8]) throws {
        let i = try inode(ino)
        if readOnly { throw Errno.readOnlyFileSystem }
        let bname = try backingXattrName(name)
        try withProcPath(i) { try Syscall.removexattr($0, bname) }
    }
}
