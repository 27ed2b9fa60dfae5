import ElasticSystem
import Glibc
import Synchronization

/// A reader-writer lock (`pthread_rwlock_t`) guarding one file's content: reads share it,
/// writes and truncates hold it alone, so no read ever sees a half-written block.
final class RWLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
    init() { pthread_rwlock_init(lock, nil) }
    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }
    func withReadLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
    func withWriteLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}

/// Identity of a backing object.
struct DevIno: Hashable {
    let dev: UInt64
    let ino: UInt64
    init(_ st: stat) {
        dev = UInt64(st.st_dev)
        ino = UInt64(st.st_ino)
    }
}

/// One object the kernel knows (has looked up): an `O_PATH` descriptor on its backing object.
/// Hard links share one `Inode`. `nlookup` is guarded by the inode table's mutex.
final class Inode: @unchecked Sendable {
    let id: UInt64
    let fd: Int32
    let key: DevIno
    let mode: mode_t
    var nlookup: UInt64 = 0
    /// Content lock (regular files).
    let content = RWLock()
    /// The file ID from the header, cached; cleared when the file is truncated to 0.
    let fileID = Mutex<[UInt8]?>(nil)
    /// The directory IV, loaded on first use (directories).
    let dirIV = Mutex<[UInt8]?>(nil)

    init(id: UInt64, fd: Int32, stat st: stat) {
        self.id = id
        self.fd = fd
        key = DevIno(st)
        mode = st.st_mode & S_IFMT
    }

    deinit { Syscall.close(fd) }

    var isDirectory: Bool { mode == S_IFDIR }
    var isRegular: Bool { mode == S_IFREG }
    var isSymlink: Bool { mode == S_IFLNK }
}

/// The table of known inodes, by FUSE inode number and by backing identity.
struct InodeTable {
    var byID: [UInt64: Inode] = [:]
    var byKey: [DevIno: Inode] = [:]
    var nextID: UInt64 = 3  // 1 is the root, 2 is reserved for the control file
}

/// The inode table behind a reader-writer lock: the hot path (ino -> Inode on every request)
/// only reads. Lock order: this lock is never held while taking an inode's content lock.
final class LockedInodeTable: @unchecked Sendable {
    private let lock = RWLock()
    private var table = InodeTable()

    func read<R>(_ body: (InodeTable) throws -> R) rethrows -> R {
        try lock.withReadLock { try body(table) }
    }
    func withLock<R>(_ body: (inout InodeTable) throws -> R) rethrows -> R {
        try lock.withWriteLock { try body(&table) }
    }
}
