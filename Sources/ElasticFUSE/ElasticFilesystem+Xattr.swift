import ElasticFormat
import ElasticSystem
import Glibc

/// `user.*` extended attributes, stored as `XattrCodec` says and vouched for by the object's
/// record (its attribute digest, `XattrSet`): the set is read and checked the first time the
/// object's attributes are used, then kept; names are listed from it, every value read must
/// carry the tag it holds, and every change rewrites the record. Other namespaces are not
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

    /// The record of `i`: a directory's or a file's.
    func record(of i: Inode) throws -> ObjectRecord {
        i.isDirectory ? try directoryInfo(i).record : try header(i).record
    }

    /// The attributes of `i`, checked against its record on first use (an interrupted change
    /// is settled: the record then names what is there). Call with its content write lock held.
    func xattrSet(_ i: Inode) throws -> XattrSet {
        if let set = i.xattrs.withLock({ $0 }) { return set }
        let crypto = try worker().crypto
        let record = try record(of: i)
        let set = try withProcPath(i) { try XattrSet.read(path: $0, with: crypto) }
        guard set.isNamed(by: record) else {
            logger.error(
                "extended attributes are not the set the object's record names: refusing them",
                metadata: ["fuse.ino": "\(i.id)", "backing.ino": "\(i.key.ino)"])
            throw FormatError.integrity("extended attributes are not the set the object's record names")
        }
        if record.xattrsChanging && !readOnly {
            try writeXattrRecord(i) {
                $0.xattrs = set.digest
                $0.xattrsChanging = false
                $0.xattrsPending = .zero
            }
        }
        i.xattrs.withLock { $0 = set }
        return set
    }

    /// The attributes of `i`, loaded (under its content write lock) if need be.
    func loadedXattrSet(_ i: Inode) throws -> XattrSet {
        if let set = i.xattrs.withLock({ $0 }) { return set }
        return try i.content.withWriteLock { try xattrSet(i) }
    }

    /// Rewrites `i`'s record (a directory's or a file's). Call with its content write lock held.
    func writeXattrRecord(_ i: Inode, _ change: (inout ObjectRecord) -> Void) throws {
        if i.isDirectory {
            try writeDirectoryRecord(i, change)
        } else if i.hasHeader {
            try withWritableBacking(i) { fd in try updateRecord(i, fd: fd, change) }
        }
    }

    /// Runs `change` (the backing call) on `i`'s attributes and `update` on its set, then
    /// writes the record with the new digest (and ctime: an attribute change is a change).
    func changeXattrs(
        _ i: Inode, check: (XattrSet) throws -> Void, _ change: (String) throws -> Void,
        _ update: (inout XattrSet) throws -> Void
    ) throws {
        try i.content.withWriteLock {
            let set = try xattrSet(i)
            try check(set)
            // Two-phase: the record names the digest to come as pending, the backing call, then
            // the record names it (a crash in between leaves the old set or the new one, and
            // the record accepts exactly those two).
            var next = set
            try update(&next)
            try writeXattrRecord(i) {
                $0.xattrsChanging = true
                $0.xattrsPending = next.digest
            }
            do {
                try withProcPath(i, change)
            } catch {
                try? writeXattrRecord(i) {
                    $0.xattrsChanging = false
                    $0.xattrsPending = .zero
                }
                throw error
            }
            try writeXattrRecord(i) {
                $0.xattrs = next.digest
                $0.xattrsChanging = false
                $0.xattrsPending = .zero
            }
            i.xattrs.withLock { $0 = next }
        }
    }

    func setxattr(_ ino: UInt64, _ name: [UInt8], _ value: [UInt8], _ flags: Int32) throws {
        let i = try inode(ino)
        if readOnly { throw Errno.readOnlyFileSystem }
        let bname = try backingXattrName(name)
        let crypto = try worker().crypto
        let sealed = try XattrCodec.sealValue(value, backingName: bname, with: crypto)
        try changeXattrs(
            i,
            check: { set in
                // XATTR_CREATE (1) and XATTR_REPLACE (2) against the set the record names.
                let exists = set.tags[bname] != nil
                if flags & 1 != 0 && exists { throw Errno.fileExists }
                if flags & 2 != 0 && !exists { throw Errno.noData }
            },
            { path in
                // Encrypted names are longer than the user's: a new name that would push the
                // backing list past what listxattr(2) can return (64 KiB) is refused here
                // (ENOSPC), so that listing never fails with E2BIG.
                let listed = try Syscall.listxattr(path)
                let present = listed.split(separator: 0).contains { $0.elementsEqual(bname.utf8) }
                if !present && listed.count + bname.utf8.count + 1 > Self.listLimit { throw Errno.noSpace }
                try Syscall.setxattr(path, bname, sealed, flags)
            }, { try $0.set(bname, sealed: sealed, with: crypto) })
    }

    func getxattr(_ ino: UInt64, _ name: [UInt8]) throws -> [UInt8] {
        let i = try inode(ino)
        let bname = try backingXattrName(name)
        _ = try loadedXattrSet(i)
        return try i.content.withReadLock {
            guard let expected = try xattrSet(i).tags[bname] else { throw Errno.noData }
            let sealed = try withProcPath(i) { try Syscall.getxattr($0, bname) }
            guard sealed.count >= 16, XattrSet.tag(ofSealed: sealed) == expected else {
                logger.error(
                    "extended attribute is not the value the object's record names: refusing it",
                    metadata: ["fuse.ino": "\(i.id)", "backing.ino": "\(i.key.ino)"])
                throw FormatError.integrity("an extended attribute is not the value the object's record names")
            }
            return try XattrCodec.openValue(sealed, backingName: bname, with: worker().crypto)
        }
    }

    /// Decrypted `user.*` names, each NUL-terminated (the listxattr format), from the checked set.
    func listxattr(_ ino: UInt64) throws -> [UInt8] {
        let i = try inode(ino)
        let names = try loadedXattrSet(i).tags.keys.sorted()
        let crypto = try worker().crypto
        var out: [UInt8] = []
        for name in names {
            guard let plain = XattrCodec.name(backingName: ArraySlice(name.utf8), with: crypto) else { continue }
            out += plain + [0]
        }
        return out
    }

    func removexattr(_ ino: UInt64, _ name: [UInt8]) throws {
        let i = try inode(ino)
        if readOnly { throw Errno.readOnlyFileSystem }
        let bname = try backingXattrName(name)
        let crypto = try worker().crypto
        try changeXattrs(
            i, check: { if $0.tags[bname] == nil { throw Errno.noData } },
            { path in try Syscall.removexattr(path, bname) }, { try $0.remove(bname, with: crypto) })
    }
}
