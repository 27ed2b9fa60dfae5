import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc

/// Symlinks (format v2): a regular backing file like any other object, whose record says
/// "symlink" and holds the target's length, and whose one content block holds the target,
/// sealed and bound to the file ID like file data. So the host can neither plant a backing
/// symlink (refused like a device node) nor turn a file into a link by editing a type.
extension ElasticFilesystem {
    /// Longest target (PATH_MAX - 1): one block.
    static let maxSymlinkTarget = 4095

    func readlink(_ ino: UInt64) throws -> [UInt8] {
        let i = try inode(ino)
        guard i.isSymlink, i.hasHeader else { throw Errno.invalidArgument }
        let fd = try openBacking(i, O_RDONLY | O_CLOEXEC)
        defer { Syscall.close(fd) }
        let (p, n) = try read(ino, fd: fd, size: Self.maxSymlinkTarget, offset: 0)
        let h = try header(i)
        guard n == Int(h.record.size), n > 0 else { throw FormatError.corruptLength(Int64(n)) }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }

    func symlink(_ target: [UInt8], _ parentID: UInt64, _ name: [UInt8], _ caller: Caller) throws -> Entry {
        let parent = try inode(parentID)
        guard !target.isEmpty else { throw Errno.noSuchFileOrDirectory }
        guard target.count <= Self.maxSymlinkTarget else { throw Errno.fileNameTooLong }
        return try withNew(parent, name, caller) { n in
            var record = newRecord(.symlink, 0o777, n)
            record.size = Int64(target.count)
            let (fd, header) = try createBacking(n, record) { fd, header in
                let t = try worker()
                let tags = BlockTags()
                try target.withUnsafeBytes { src in
                    try storeBlocks(
                        t, fd: fd, fileID: header.fileID, first: 0, from: src.baseAddress!, count: target.count,
                        tags: tags)
                }
                // The record names the target's block (its content digest).
                var sealed = header
                sealed.record.content = tags.digest
                let bytes = try sealed.sealedRecord(with: t.crypto)
                try Syscall.pwrite(fd, bytes, at: FileHeader.recordOffset)
                remember(sealed.fileID, sealed.record, sealedBy: t.crypto)
                return sealed
            }
            defer { Syscall.close(fd) }
            return try register(parent: parent, backingName: n.b.name, stat: try Syscall.fstat(fd), header: header)
        }
    }
}
