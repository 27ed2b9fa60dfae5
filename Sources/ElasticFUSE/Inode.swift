import ElasticFormat
import ElasticSystem
import Glibc
import Synchronization

/// A reader-writer lock (`pthread_rwlock_t`) guarding one file's content: reads share it,
/// writes and truncates hold it alone, so no read ever sees a half-written block.
final class RWLock: @unchecked Sendable {  // the pthread lock is the synchronisation
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

/// One name of an inode: the directory it is in and its backing name there.
struct Link: Equatable {
    let parent: Inode
    let name: String
    static func == (a: Link, b: Link) -> Bool { a.parent === b.parent && a.name == b.name }
    var key: NameKey { NameKey(parent: parent.id, name: name) }
}

/// A name in the inode table's index: parent inode number and backing name.
struct NameKey: Hashable {
    let parent: UInt64
    let name: String
}

/// The names of one inode: nearly always one, so that one is kept inline; hard links with many
/// names keep the others in a dictionary (every operation O(1), whatever the link count).
struct LinkSet {
    private(set) var first: Link?
    private var more: [NameKey: Link] = [:]

    var isEmpty: Bool { first == nil }
    var count: Int { (first == nil ? 0 : 1) + more.count }
    func contains(_ key: NameKey) -> Bool { first?.key == key || more[key] != nil }

    mutating func insert(_ link: Link) {
        if first == nil { first = link } else if first!.key != link.key { more[link.key] = link }
    }

    mutating func remove(_ key: NameKey) {
        if first?.key == key {
            first = more.popFirst()?.value
        } else {
            more[key] = nil
        }
    }

    /// Up to `n` names, the inline one first.
    func prefix(_ n: Int) -> [Link] {
        guard let first else { return [] }
        return [first] + more.values.prefix(n - 1)
    }

    /// Every name (for taking the inode out of the table).
    var all: [Link] { first.map { [$0] + Array(more.values) } ?? [] }
}

/// One object the kernel knows (has looked up). It holds no descriptor of its own: the backing
/// object is reached by name from its parent directory (`links`), and checked to be the same
/// object (`key`) every time; directories keep an `O_PATH` descriptor in the bounded
/// `HandleCache`. Hard links share one `Inode`.
// mutable fields: `nlookup` and `links` under the table lock, the cache fields under the cache lock
final class Inode: @unchecked Sendable {
    let id: UInt64
    let key: DevIno
    /// The type the kernel sees (`S_IFMT` bits): a special file's comes from its record.
    let mode: mode_t
    /// The backing object's type: a regular file for regular and special files.
    let backingType: mode_t
    /// Lookups the kernel holds (guarded by the table lock).
    var nlookup: UInt64 = 0
    /// The names the kernel knows this object by (guarded by the table lock). Empty for the
    /// root, and for an object whose last known name was removed (then only a pinned handle or
    /// an open file reaches it).
    var links = LinkSet()
    /// Open file handles (an object without a name is still used through them).
    let openCount = Atomic<Int>(0)
    /// Whether the object may have several names (its backing link count was above one when
    /// looked up, or a link was made): only then does removing a name look for survivors.
    let mayHaveOtherNames = Atomic<Bool>(false)

    // Handle cache state, guarded by the cache lock.
    var handle: BackingHandle?
    var cacheSlot = -1
    var referenced = false
    var pinned = false

    /// While an unlink of this object, answered early, finishes in BACKING: the directory whose
    /// namespace lock that unlink holds. Every request on this object waits for it first
    /// (`ElasticFilesystem.inode`), so none sees the name answered as gone but still there.
    /// Guarded by the table lock, read with the lookup that finds the inode.
    var removal: Inode?

    /// An overwrite of this file failed half way (the host refused a write): the file's
    /// blocks are neither its record's nor the write's, and its journal copy is kept for the
    /// next mount to finish it. Until then nothing reads or changes it (`header` fails).
    let unfinished = Atomic<Bool>(false)
    /// Content lock (regular files).
    let content = RWLock()
    /// The header of a regular backing file (file ID and record), read once: this copy is
    /// authoritative for as long as the inode lives (changes go through it to the backing
    /// file, under the content lock), so a record the host puts back is never seen.
    let header = Mutex<FileHeader?>(nil)
    /// The tags of the file's blocks, checked against the record's content digest when loaded
    /// (on first use while the file is open; dropped when the last handle closes). Used and
    /// changed under the content lock.
    let tags = Mutex<BlockTags?>(nil)
    /// The object's `user.*` attributes as its record's attribute digest vouches for them,
    /// from first use on (changed under the content lock).
    let xattrs = Mutex<XattrSet?>(nil)
    /// The directory IV, loaded on first use (directories).
    let dirIV = Mutex<[UInt8]?>(nil)
    /// The directory's record, loaded with its IV (directories; see `header` for files).
    let directoryRecord = Mutex<ObjectRecord?>(nil)
    /// Namespace lock (directories): lookups and listings share it; creates, links, unlinks
    /// and renames in the directory hold it alone. Guards `entries`.
    let namespace = RWLock()
    /// The directory's entries as its sealed set vouches for them, from first use on.
    var entries: DirectoryEntries?
    let entriesLoaded = Atomic<Bool>(false)

    /// An inode for the backing object `st`; `header` (regular backing files) gives its type.
    convenience init(id: UInt64, stat st: stat, header: FileHeader? = nil) {
        self.init(id: id, key: DevIno(st), backingType: st.st_mode & S_IFMT, header: header)
    }

    init(id: UInt64, key: DevIno, backingType: mode_t, header: FileHeader?) {
        self.id = id
        self.key = key
        self.backingType = backingType
        mode = header?.record.kind.fileType ?? backingType
        self.header.withLock { $0 = header }
    }

    var isDirectory: Bool { mode == S_IFDIR }
    var isRegular: Bool { mode == S_IFREG }
    /// Regular and special files: a backing file with a header.
    var hasHeader: Bool { backingType == S_IFREG }
    var isSymlink: Bool { mode == S_IFLNK }
}

/// The table of known inodes: by FUSE inode number, by backing identity and by name.
struct InodeTable {
    var byID: [UInt64: Inode] = [:]
    /// Objects that can be found again by their backing identity (a nameless object whose
    /// descriptor was closed is not: its inode number may be reused by the backing filesystem).
    var byKey: [DevIno: Inode] = [:]
    var byName: [NameKey: Inode] = [:]
    var nextID: UInt64 = 3  // 1 is the root, 2 is reserved for the control file
    /// Moves on at every change of the table (under its write lock): a name derived from the
    /// links while it stays the same is still right (`ThreadState.lastPath`).
    var generation: UInt64 = 0

    /// Records that `inode` is known as `link` (replacing whatever the index had for that name).
    mutating func addLink(_ inode: Inode, _ link: Link) {
        if let old = byName[link.key] {
            if old === inode { return }
            old.links.remove(link.key)
        }
        byName[link.key] = inode
        inode.links.insert(link)
    }

    /// Forgets the name `key`; returns the inode it named.
    @discardableResult
    mutating func removeLink(_ key: NameKey) -> Inode? {
        guard let inode = byName.removeValue(forKey: key) else { return nil }
        inode.links.remove(key)
        return inode
    }

    /// Takes `inode` out of every index.
    mutating func remove(_ inode: Inode) {
        byID[inode.id] = nil
        if byKey[inode.key] === inode { byKey[inode.key] = nil }
        for l in inode.links.all where byName[l.key] === inode { byName[l.key] = nil }
        inode.links = LinkSet()
    }
}

/// The inode table behind a reader-writer lock: the hot path (ino -> Inode on every request)
/// only reads. Lock order: table lock, then cache lock; neither is held while taking an
/// inode's content lock or making a system call.
final class LockedInodeTable: @unchecked Sendable {  // `table` only under `lock`
    private let lock = RWLock()
    private var table = InodeTable()

    func read<R>(_ body: (InodeTable) throws -> R) rethrows -> R {
        try lock.withReadLock { try body(table) }
    }
    func withLock<R>(_ body: (inout InodeTable) throws -> R) rethrows -> R {
        try lock.withWriteLock {
            table.generation &+= 1
            return try body(&table)
        }
    }
}
