import ElasticFormat
import ElasticSystem
import Glibc

/// `user.*` extended attributes, stored as `XattrCodec` says. Other namespaces are not
/// supported (EOPNOTSUPP).
extension ElasticFilesystem {
    /// The most a listxattr(2) reply can hold (XATTR_LIST_MAX).
    static let listLimit = 65536

    func backingXattrName(_ name: [UInt8]) throws -> String {
        guard let enc = try XattrCodec.backingName(name, with: worker().crypto) else { throw Errno.notSupported }
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
        let sealed = try XattrCodec.sealValue(value, backingName: bname, with: worker().crypto)
        try withProcPath(i) { path in
            // Encrypted names are longer than the user's: a new name that would push the
            // backing list past what listxattr(2) can return (64 KiB) is refused here (ENOSPC),
            // so that listing never fails with E2BIG.
            let listed = try Syscall.listxattr(path)
            let present = listed.split(separator: 0).contains { $0.elementsEqual(bname.utf8) }
            if !present && listed.count + bname.utf8.count + 1 > Self.listLimit { throw Errno.noSpace }
            try Syscall.setxattr(path, bname, sealed, flags)
        }
        try touchChanged(i)  // an attribute change is a change (ctime)
    }

    func getxattr(_ ino: UInt64, _ name: [UInt8]) throws -> [UInt8] {
        let i = try inode(ino)
        let bname = try backingXattrName(name)
        let sealed = try withProcPath(i) { try Syscall.getxattr($0, bname) }
        return try XattrCodec.openValue(sealed, backingName: bname, with: worker().crypto)
    }

    /// Decrypted `user.*` names, each NUL-terminated (the listxattr format).
    func listxattr(_ ino: UInt64) throws -> [UInt8] {
        let i = try inode(ino)
        let raw = try withProcPath(i) { try Syscall.listxattr($0) }
        let crypto = try worker().crypto
        var out: [UInt8] = []
        for part in raw.split(separator: 0) {
            guard let name = XattrCodec.name(backingName: part, with: crypto) else { continue }
            out += name + [0]
        }
        return out
    }

    func removexattr(_ ino: UInt64, _ name: [UInt8]) throws {
        let i = try inode(ino)
        if readOnly { throw Errno.readOnlyFileSystem }
        let bname = try backingXattrName(name)
        try withProcPath(i) { try Syscall.removexattr($0, bname) }
        try touchChanged(i)
    }
}
