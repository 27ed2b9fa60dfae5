import ElasticCrypto
import ElasticSystem
import Glibc

/// The record of a backing object reached by a descriptor (any kind, `O_PATH` included): a
/// directory's from its `elastic.diriv`, a file's from its header. For the offline tools
/// (fsck, rekey, migrate); the daemon keeps records in its inodes.
public enum BackingRecord {
    public static func read(_ fd: Int32, with crypto: CryptoWorker) throws -> ObjectRecord {
        if try Syscall.fstat(fd).st_mode & S_IFMT == S_IFDIR {
            let d = try Syscall.reopen(fd, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            defer { Syscall.close(d) }
            return try DirectoryIV.readRecord(from: d, with: crypto).record
        }
        let f = try Syscall.reopen(fd, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        defer { Syscall.close(f) }
        return try FileHeader(decoding: try Syscall.preadBytes(f, count: FileHeader.size, at: 0), with: crypto).record
    }

    /// Rewrites the record of the backing object `fd` in place with `change` applied.
    public static func update(_ fd: Int32, with crypto: CryptoWorker, _ change: (inout ObjectRecord) -> Void) throws {
        if try Syscall.fstat(fd).st_mode & S_IFMT == S_IFDIR {
            let d = try Syscall.reopen(fd, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            defer { Syscall.close(d) }
            var (iv, record) = try DirectoryIV.readRecord(from: d, with: crypto)
            change(&record)
            try DirectoryIV.writeRecord(record, iv: iv, in: d, with: crypto)
            return
        }
        let f = try Syscall.reopen(fd, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        defer { Syscall.close(f) }
        var header = try FileHeader(decoding: try Syscall.preadBytes(f, count: FileHeader.size, at: 0), with: crypto)
        change(&header.record)
        try Syscall.pwrite(f, try header.sealedRecord(with: crypto), at: FileHeader.recordOffset)
    }
}
