import CElasticFUSEInit
import CFuse3
import ElasticControl
import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc
import Logging
import Synchronization

/// Who is asking: from `fuse_req_ctx`.
struct Caller {
    let uid: uid_t
    let gid: gid_t
}

/// A looked-up object, ready to become a `fuse_entry_param`.
struct Entry {
    let inode: Inode
    let attr: stat
}

/// The encrypted filesystem over one backing directory. Holds the inode table and the store's
/// keys; every FUSE operation lands on a method here (through `Operations`).
public final class ElasticFilesystem: @unchecked Sendable {  // immutable fields; the tables behind their own locks
    public static let controlName: [UInt8] = Array(".elastic".utf8)
    static let rootID = UInt64(FUSE_ROOT_ID)
    /// The control file's inode number (never used for backing objects).
    static let controlID: UInt64 = 2

    let store: UnlockedStore
    let logger: Logger
    let debug: Bool
    let readOnly: Bool
    let root: Inode
    let inodes = LockedInodeTable()
    /// Descriptors of directories (bounded) and of pinned objects.
    let handles = HandleCache(capacity: HandleCache.defaultCapacity())
    let names = NameCache()
    /// The version of every object's record and every directory's entries the store recorded,
    /// and what this mount wrote or accepted since: whatever is read again from BACKING (a
    /// header after its inode was forgotten, a directory's record or entries) must be that one.
    let versions: VersionMap
    /// The session this mount seals records in (0 on a read-only mount); it moves at every
    /// checkpoint.
    let clock: SessionClock
    /// Serializes checkpoints and the end of the session; true once the session ended.
    let sessionEnded = Mutex(false)
    /// Changes when a directory's `elastic.diriv` is put back (a failed removal): descriptors
    /// threads keep on those files (`dirivFile`) are then reopened.
    let dirivEpoch = Atomic<UInt64>(0)
    let threads: ThreadStateKey
    /// Where writers keep the bytes they overwrite (nil on a read-only mount).
    let undo: UndoJournal?
    /// Inodes of files whose failed overwrite the next mount finishes from a kept journal copy,
    /// and of the directories above them: their names must not move or go until then (the copy
    /// finds the file by its path).
    let keptCopyPaths = Mutex<Set<UInt64>>([])
    /// The libfuse session while it runs (for notifications to the kernel; set by `FUSESession`).
    nonisolated(unsafe) var session: OpaquePointer?
    let isRoot = geteuid() == 0
    /// Whether the kernel accepted HANDLE_KILLPRIV_V2 (so setuid/setgid clearing is ours).
    var killPrivV2: Bool { CElasticFUSEInit_fuse_killpriv_v2_enabled() != 0 }
    /// Timeout the kernel may cache entries and attributes for.
    let cacheTimeout: Double
    /// Seals the second half of large writes on the other core (nil: one thread only).
    let helper: CryptoHelper?
    /// Serves the ioctls of the control file `/.elastic`.
    let control: ControlDispatcher
    /// Runs slow control requests off the FUSE threads.
    let slow = SlowRequestQueue()
    /// The control file belongs to the mounting user, mode 0600, or 0660 with `ctl_group`.
    let controlOwner: (uid: uid_t, gid: gid_t, mode: mode_t)
    let mountTime = timespec(tv_sec: time(nil), tv_nsec: 0)

    /// A filesystem over `store`, whose control file `control` serves.
    public init(
        store: UnlockedStore, control: ControlDispatcher, logger: Logger, debug: Bool = false, readOnly: Bool = false,
        cacheTimeout: Double = 1.0, parallelCrypto: Bool = true, controlGroup: gid_t? = nil,
        versions: VersionMap, session: UInt64
    ) throws {
        clock = SessionClock(session)
        self.store = store
        self.versions = versions
        controlOwner = (getuid(), controlGroup ?? getgid(), controlGroup == nil ? 0o600 : 0o660)
        self.control = control
        self.cacheTimeout = cacheTimeout
        helper = parallelCrypto ? CryptoHelper() : nil
        self.logger = logger
        self.debug = debug
        self.readOnly = readOnly
        let rootHandle = BackingHandle(
            try Syscall.openat(store.directory.fd, ".", LinuxConstants.oPath | O_DIRECTORY | O_CLOEXEC))
        root = Inode(id: Self.rootID, stat: try Syscall.fstat(rootHandle.fd))
        root.nlookup = 1
        handles.pin(root, rootHandle)
        // Blocks a killed overwrite left half written are repaired first (`UndoJournal`).
        let restored =
            readOnly ? 0 : try UndoJournal.recover(rootfd: store.directory.fd, with: CryptoWorker(keys: store.keys))
        if restored > 0 {
            logger.notice(
                "repaired blocks an interrupted write left half written (put back or finished from the journal)",
                metadata: ["blocks": "\(restored)"])
        }
        if readOnly && UndoJournal.hasRecords(rootfd: store.directory.fd) {
            logger.warning(
                "the undo journal holds what a crash left: a file whose write it interrupted fails (EIO) until the store is mounted read-write once"
            )
        }
        // After a crash (or on a new store), every object's version is read now, so the map
        // names each one again and only those are accepted from here on.
        if !readOnly, let from = versions.reconcileFrom {
            var walk = VersionWalk(map: versions, crypto: try CryptoWorker(keys: store.keys, clock: clock))
            walk.run(rootfd: store.directory.fd)
            logger.notice(
                "read the version of every object (the store's versions map lacked the changes of session \(from) on)",
                metadata: ["objects": "\(walk.objects)", "refused": "\(walk.refused.count)"])
            for r in walk.refused {
                logger.error("object refused: \(r.what)", metadata: ["path": "\(r.path)"])
            }
            if walk.incomplete > 0 {
                logger.error(
                    "not every object's version could be read: versions sealed since session \(from) stay acceptable until the store is repaired (elastic fsck --repair)",
                    metadata: ["unreadable": "\(walk.incomplete)"])
            }
        }
        undo =
            readOnly
            ? nil : try UndoJournal(rootfd: store.directory.fd, maxPayload: ThreadState.cipherCapacity)
        threads = ThreadStateKey(keys: store.keys, clock: clock, undo: undo)
        inodes.withLock {
            $0.byID[Self.rootID] = root
            $0.byKey[root.key] = root
        }
        // The top directory must be the store's root (its record says so): refused at mount
        // (exit 14, store integrity).
        do { _ = try directoryInfo(root) } catch let e as FormatError {
            throw FormatError.integrity("the top directory of BACKING: \(e)")
        }
    }

    // MARK: Sessions

    /// Records the versions of everything changed since the last checkpoint (`elastic.versions`
    /// and the root, which moves the witness), so that after a crash nothing older than this
    /// moment can be put back. Nothing to do on a read-only mount or when nothing changed.
    public func checkpoint() throws {
        try sessionEnded.withLock { ended in
            guard !ended, !readOnly, versions.hasChanges else { return }
            let current = clock.current
            try store.root.checkpoint(versions, current: current)
            clock.advance(to: current + 1)
        }
    }

    /// Ends the session cleanly (at unmount): the versions map and the root, marked closed.
    public func endSession() throws {
        try sessionEnded.withLock { ended in
            guard !ended, !readOnly else { return }
            ended = true
            try store.root.endSession(versions, current: clock.current)
            // Every write's record followed: nothing in the undo journal counts any more.
            try? undo?.clear()
        }
    }

    // MARK: Inode table

    func inode(_ ino: UInt64) throws -> Inode {
        if ino == Self.rootID { return root }
        if ino == Self.controlID { throw Errno.notPermitted }  // the control file only opens and answers ioctls
        guard let (i, removal) = inodes.read({ t in t.byID[ino].map { ($0, $0.removal) } }) else {
            throw Errno.staleNFSFileHandle
        }
        removal?.namespace.withReadLock {}  // an unlink of `i` answered early: done first
        return i
    }

    /// Registers (or finds) the inode named `backingName` in `parent`, whose backing stat is
    /// `st`, and counts one lookup. The caller holds the namespace lock of `parent`: the object
    /// must be the one the parent's sealed entry set names.
    func register(parent: Inode, backingName: String, stat st: stat, header known: FileHeader? = nil) throws -> Entry {
        let key = DevIno(st)
        let backingType = st.st_mode & S_IFMT
        guard backingType == S_IFREG || backingType == S_IFDIR else {
            logger.error(
                "backing object of a type ELASTIC never makes (a symlink, device node or fifo put in BACKING): refused",
                metadata: ["backing.name": "\(backingName)", "backing.ino": "\(st.st_ino)"])
            throw FormatError.corruptMetadata("backing object type")
        }
        // A regular backing file: its header (type, owner, mode, size), unless this very name
        // already leads to the inode that holds it. A name new to the inode may be a new
        // object that reuses a deleted one's backing inode number: the file ID tells.
        let link = Link(parent: parent, name: backingName)
        var header = known
        if backingType == S_IFREG, header == nil,
            !inodes.read({ t in
                t.byKey[key].map { $0.backingType == backingType && $0.links.contains(link.key) } ?? false
            })
        {
            header = try withHandle(parent) { try readHeader(dirfd: $0, name: backingName, expected: key) }
        }
        // It must be the object the parent's sealed entry set names here (checked before the
        // name is attached to any inode).
        if parent.entries != nil {
            let id: [UInt8]
            if backingType == S_IFDIR {
                id = try withHandle(parent) { d in
                    let fd = try Syscall.openat(d, backingName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    defer { Syscall.close(fd) }
                    guard DevIno(try Syscall.fstat(fd)) == key else { throw Errno.staleNFSFileHandle }
                    return try DirectoryIV.read(from: fd)
                }
            } else if let header {
                id = header.fileID
            } else if let cached = inodes.read({ $0.byKey[key] })?.header.withLock({ $0 }) {
                id = cached.fileID
            } else {
                header = try withHandle(parent) { try readHeader(dirfd: $0, name: backingName, expected: key) }
                id = header!.fileID
            }
            try checkEntry(parent, backingName, ObjectID(id))
        }
        var regained: Inode? = nil
        // (Retried once with the header when the inode the check above found was forgotten
        // before the table lock was taken: a new inode needs its header.)
        for attempt in 0..<2 {
            if attempt == 1 {
                header = try withHandle(parent) { try readHeader(dirfd: $0, name: backingName, expected: key) }
            }
            guard let inode = registering(key, backingType, link, header, &regained) else { continue }
            if st.st_nlink > 1 { inode.mayHaveOtherNames.store(true, ordering: .relaxed) }
            if let regained { handles.unpin(regained) }  // it has a name again
            do {
                return Entry(inode: inode, attr: try attributes(of: inode, stat: st))
            } catch {
                forget(inode.id, 1)  // the kernel never hears of this lookup, so it will not forget it
                throw error
            }
        }
        throw Errno.staleNFSFileHandle
    }

    /// The table part of `register`: the inode for `key` with `link` added and one lookup
    /// counted, or nil when a new inode would be needed and `header` is missing.
    private func registering(
        _ key: DevIno, _ backingType: mode_t, _ link: Link, _ header: FileHeader?, _ regained: inout Inode?
    ) -> Inode? {
        inodes.withLock { t -> Inode? in
            if let found = t.byKey[key], found.backingType == backingType {
                let sameObject = header.map { h in found.header.withLock { $0?.fileID } == h.fileID } ?? true
                if sameObject {
                    found.nlookup += 1
                    if found.links.isEmpty { regained = found }
                    t.addLink(found, link)
                    return found
                }
                // A deleted object's inode, its backing inode number now another's: it keeps
                // its number for the kernel but can no longer be reached.
                for l in found.links.all where t.byName[l.key] === found { t.byName[l.key] = nil }
                found.links = LinkSet()
            }
            if backingType == S_IFREG && header == nil { return nil }
            let i = Inode(id: t.nextID, key: key, backingType: backingType, header: header)
            t.nextID += 1
            i.nlookup = 1
            t.byID[i.id] = i
            t.byKey[i.key] = i
            t.addLink(i, link)
            return i
        }
    }

    func forget(_ ino: UInt64, _ n: UInt64) {
        forget([(ino, n)])
    }

    /// Drops lookups; inodes that reach zero leave the table and the handle cache (their
    /// descriptors are closed once the locks are released).
    func forget(_ list: [(ino: UInt64, n: UInt64)]) {
        var released: [Inode] = []
        inodes.withLock { t in
            for (ino, n) in list where ino != Self.rootID {
                guard let i = t.byID[ino] else { continue }
                i.nlookup = i.nlookup > n ? i.nlookup - n : 0
                if i.nlookup == 0 {
                    t.remove(i)
                    released.append(i)
                }
            }
        }
        for i in released { handles.drop(i) }
    }

    func worker() throws -> ThreadState { try threads.current() }

    // MARK: Reaching backing objects

    /// Some names of `i` to try (none: the object has no name left).
    func links(_ i: Inode) -> [Link] { inodes.read { _ in i.links.prefix(4) } }

    /// Runs `body` with the parent directory's descriptor and the backing name of each known
    /// name of `i` until `check` accepts what `body` returned: the object found under that name
    /// is `i` itself. A name that no longer leads to `i` (a rename in flight, or the host moved
    /// things) is skipped; if none does, ESTALE.
    func atName<R>(_ i: Inode, _ body: (Int32, String) throws -> R, check: (R) -> Bool) throws -> R {
        for _ in 0..<3 {
            let names = links(i)
            if names.isEmpty { break }
            for l in names {
                do {
                    let r = try withHandle(l.parent) { try body($0, l.name) }
                    if check(r) { return r }
                } catch let e as Errno
                    where e == .noSuchFileOrDirectory || e == .notDirectory || e == .staleNFSFileHandle
                {
                    continue
                }
            }
            if links(i).map(\.key) == names.map(\.key) { break }  // nothing moved meanwhile: give up
        }
        if !links(i).isEmpty {
            logger.warning(
                "backing object no longer under its name",
                metadata: ["fuse.ino": "\(i.id)", "backing.ino": "\(i.key.ino)"])
        }
        throw Errno.staleNFSFileHandle
    }

    /// An `O_PATH` descriptor on the backing object of `i`, checked to be that object:
    /// cached for directories (bounded), opened for this use only for everything else.
    func handle(_ i: Inode) throws -> BackingHandle {
        if let h = handles.lookup(i) { return h }
        if let h = try? openAlongPath(i) { return h }
        let (h, _) = try atName(
            i,
            { dirfd, name -> (BackingHandle, DevIno) in
                let h = BackingHandle(
                    try opening { try Syscall.openat(dirfd, name, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC) })
                return (h, DevIno(try Syscall.fstat(h.fd)))
            }, check: { $0.1 == i.key })
        return i.isDirectory ? handles.insert(i, h) : h
    }

    /// The fast way to a handle whose parents' handles were evicted: from the nearest ancestor
    /// with a cached handle, open the whole relative path at once (`openat2`, confined beneath
    /// that ancestor, no symlinks), a few thousand bytes of path per call, so a deep tree costs
    /// a few system calls rather than one per level. The object reached is checked to be `i`;
    /// the directory at the end of each step is cached. Any surprise (a rename in flight, an
    /// old kernel): nil, and the caller goes level by level.
    func openAlongPath(_ i: Inode) throws -> BackingHandle? {
        // From `i` up to a cached ancestor, along each object's first name.
        let (chain, anchor): ([(Inode, String)], BackingHandle?) = inodes.read { _ in
            var chain: [(Inode, String)] = []
            var cur = i
            while true {
                if cur !== i, let h = handles.lookup(cur) { return (chain, h) }
                guard let l = cur.links.first, chain.count < 1 << 16 else { return (chain, nil) }
                chain.append((cur, l.name))
                cur = l.parent
            }
        }
        guard var dir = anchor, chain.count > 1 else { return nil }
        var rest = Array(chain.reversed())[...]
        while !rest.isEmpty {
            // The longest run of names that fits in one path.
            var path = "", taken = 0
            for (_, name) in rest {
                if taken > 0 && path.utf8.count + 1 + name.utf8.count > 3072 { break }
                path += (taken > 0 ? "/" : "") + name
                taken += 1
            }
            let end = rest[rest.startIndex + taken - 1].0
            let h = BackingHandle(
                try opening { try Syscall.openBeneath(dir.fd, path, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC) })
            guard DevIno(try Syscall.fstat(h.fd)) == end.key else { return nil }
            rest = rest.dropFirst(taken)
            if end === i { return i.isDirectory ? handles.insert(i, h) : h }
            guard end.isDirectory else { return nil }
            dir = handles.insert(end, h)
        }
        return nil
    }

    /// Runs `body`, which opens a descriptor; if the process is out of descriptors, gives back
    /// half of the handle cache and tries once more (files open in the mount matter more than
    /// cached directory handles).
    func opening<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as Errno where e == .tooManyOpenFiles {
            let dropped = handles.shrink()
            logger.notice("out of descriptors: released cached directory handles", metadata: ["released": "\(dropped)"])
            return try body()
        }
    }

    /// Runs `body` with a descriptor on `i` that stays open until `body` returns.
    func withHandle<R>(_ i: Inode, _ body: (Int32) throws -> R) throws -> R {
        let h = try handle(i)
        return try withExtendedLifetime(h) { try body(h.fd) }
    }

    /// The backing stat of `i`: through its cached handle, or by name (one `fstatat`).
    func backingStat(_ i: Inode) throws -> stat {
        if let h = handles.lookup(i) { return try withExtendedLifetime(h) { try Syscall.fstat(h.fd) } }
        return try atName(i, { try Syscall.lstatat($0, $1) }, check: { DevIno($0) == i.key })
    }

    /// Opens the backing file of `i` for I/O. Never blocks on a FIFO the host put in its place,
    /// never follows a symlink, and checks the object opened is `i`'s.
    func openBacking(_ i: Inode, _ flags: Int32) throws -> Int32 {
        if let h = handles.lookup(i) {
            return try withExtendedLifetime(h) { try opening { try Syscall.reopen(h.fd, flags) } }
        }
        let (fd, st) = try atName(
            i,
            { dirfd, name -> (Int32, stat) in
                let fd = try opening { try Syscall.openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK) }
                guard let st = try? Syscall.fstat(fd) else {
                    Syscall.close(fd)
                    throw Errno.staleNFSFileHandle
                }
                return (fd, st)
            },
            check: { r in
                let ok = DevIno(r.1) == i.key && r.1.st_mode & S_IFMT == S_IFREG
                if !ok { Syscall.close(r.0) }
                return ok
            })
        _ = st
        return fd
    }

    /// Runs `body` with a descriptor open read-write on the backing file of `i` (a file with a
    /// header): the cached one, or one opened now and cached. Owner, mode and times come in
    /// threes, by path, from tar, cp -a and rsync: the file is opened once for all of them.
    func withWritableBacking<R>(_ i: Inode, _ body: (Int32) throws -> R) throws -> R {
        if let h = handles.lookup(i), h.writable { return try withExtendedLifetime(h) { try body(h.fd) } }
        let opened = BackingHandle(try openBacking(i, O_RDWR | O_CLOEXEC), writable: true)
        let cached = keepWritable(i, opened)
        return try withExtendedLifetime(cached) { try body(cached.fd) }
    }

    /// Caches `h` (read-write on the backing file of `i`) unless `i` holds a handle already;
    /// returns the writable handle to use.
    @discardableResult
    func keepWritable(_ i: Inode, _ h: BackingHandle) -> BackingHandle {
        let cached = handles.insert(i, h)
        return cached.writable ? cached : h
    }

    /// Keeps a descriptor on `victim`, about to lose the name `key`, if the kernel may still
    /// reach it afterwards (an open file, a directory, or a handle already cached). Returns
    /// whether it did (undo with `handles.unpin` if the removal fails).
    func pinIfStillReachable(_ victim: Inode?, losing key: NameKey) -> Bool {
        guard let victim else { return false }
        let lastName = inodes.read { _ in victim.links.count == 1 && victim.links.contains(key) }
        guard lastName else { return false }
        let inUse = victim.openCount.load(ordering: .relaxed) > 0 || victim.isDirectory || handles.lookup(victim) != nil
        guard inUse, let h = try? handle(victim) else { return false }
        handles.pin(victim, h)
        return true
    }

    /// After the name `key` was removed: the inode it named loses it; one without names and
    /// without a pinned descriptor can no longer be found by its backing identity.
    func nameRemoved(_ key: NameKey) {
        inodes.withLock { t in
            guard let i = t.removeLink(key), i.links.isEmpty else { return }
            if !handles.isPinned(i), t.byKey[i.key] === i { t.byKey[i.key] = nil }
        }
    }

    // MARK: Attributes

    /// The stat the kernel sees: our inode number and the plaintext size. `at` locates the
    /// object by name (a symlink's size is its target's length); without it, a handle is used.
    func attributes(of inode: Inode, stat st: stat) throws -> stat {
        var a = st
        a.st_ino = ino_t(inode.id)
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            // Type, owner, mode, device and size come from the record, never the backing file.
            guard let r = inode.header.withLock({ $0?.record }) else { throw FormatError.corruptHeader("no header") }
            a.st_mode = r.statMode
            a.st_uid = r.uid
            a.st_gid = r.gid
            a.st_rdev = dev_t(r.rdev)
            a.st_size = off_t(r.size)
            a.st_mtim = r.mtime
            a.st_ctim = r.ctime
        case S_IFDIR:
            let r = try directoryInfo(inode).record
            a.st_mode = r.statMode
            a.st_uid = r.uid
            a.st_gid = r.gid
            a.st_mtim = r.mtime
            a.st_ctim = r.ctime
        default:
            throw FormatError.corruptMetadata("backing object type")  // never registered
        }
        return a
    }

    /// Attributes of `ino`; `fh` (an open file's backing descriptor) answers without a name.
    func getattr(_ ino: UInt64, fh: Int32?) throws -> stat {
        let i = try inode(ino)
        if let fh, i.hasHeader { return try attributes(of: i, stat: try Syscall.fstat(fh)) }
        return try attributes(of: i, stat: try backingStat(i))
    }

    // MARK: Names

    /// The directory IV of `dir` (`DirectoryIV`), read once and cached.
    func dirIV(_ dir: Inode) throws -> [UInt8] {
        if let iv = dir.dirIV.withLock({ $0 }) { return iv }
        return try directoryInfo(dir).iv
    }

    /// The IV and record of directory `dir`, read once and kept: this copy is authoritative
    /// while the inode lives (a record the host puts back later is never read).
    func directoryInfo(_ dir: Inode) throws -> (iv: [UInt8], record: ObjectRecord) {
        if let iv = dir.dirIV.withLock({ $0 }), let r = dir.directoryRecord.withLock({ $0 }) { return (iv, r) }
        let info: (iv: [UInt8], record: ObjectRecord)
        do {
            info = try withHandle(dir) { d in try opening { try DirectoryIV.readRecord(from: d, with: worker().crypto) }
            }
            // Only the store's root directory has the root's record, and it always does.
            guard info.record.storeRoot == (dir === root) else {
                throw FormatError.corruptMetadata(
                    dir === root ? "the top directory is not the store's root" : "the store's root moved into the tree")
            }
        } catch let e as FormatError {
            logger.error(
                "directory IV or record failed its checks: refusing the directory",
                metadata: ["fuse.ino": "\(dir.id)", "backing.ino": "\(dir.key.ino)", "why": "\(e)"])
            throw e
        }
        if !versions.accepts(VersionKey(ObjectID(info.iv), .record), info.record.version) {
            logger.error(
                "directory record is an earlier version than the store recorded: refusing the directory",
                metadata: ["fuse.ino": "\(dir.id)", "backing.ino": "\(dir.key.ino)"])
            throw FormatError.integrity("an earlier version of the directory's record")
        }
        dir.dirIV.withLock { $0 = info.iv }
        dir.directoryRecord.withLock { $0 = info.record }
        return info
    }

    /// Changes the record of directory `dir` and writes it back in place.
    func updateDirectoryRecord(_ dir: Inode, _ change: (inout ObjectRecord) -> Void) throws {
        try dir.content.withWriteLock { try writeDirectoryRecord(dir, change) }
    }

    /// `updateDirectoryRecord` with `dir`'s content write lock held.
    func writeDirectoryRecord(_ dir: Inode, _ change: (inout ObjectRecord) -> Void) throws {
        var (iv, record) = try directoryInfo(dir)
        record.ctime = ObjectRecord.now()
        change(&record)
        let crypto = try worker().crypto
        try withHandle(dir) { d in try DirectoryIV.writeRecord(record, iv: iv, in: d, with: crypto) }
        dir.directoryRecord.withLock { $0 = record }
        versions.note(VersionKey(ObjectID(iv), .record), record.sealedBy(crypto).version)
    }

    /// The backing name of `name` in `parent` (and whether it is the long form).
    func backingName(_ parent: Inode, _ name: [UInt8]) throws -> (name: String, encoded: String, isLong: Bool) {
        guard name.count <= 255 else { throw Errno.fileNameTooLong }
        let iv = try dirIV(parent)
        let encoded: String
        if let cached = names.encoded(dirIV: iv, name: name) {
            encoded = cached
        } else {
            encoded = try worker().crypto.encryptName(name, dirIV: iv)
            names.insert(dirIV: iv, name: name, encoded: encoded)
        }
        let b = BackingNames.backingName(forEncoded: encoded)
        return (b.name, encoded, b.isLong)
    }

    func isControlName(_ parent: Inode, _ name: [UInt8]) -> Bool {
        parent.id == Self.rootID && name == Self.controlName
    }

    /// Refuses to create the reserved control-file name at the root.
    func checkCreatable(_ parent: Inode, _ name: [UInt8]) throws {
        if isControlName(parent, name) { throw Errno.notPermitted }
        if readOnly { throw Errno.readOnlyFileSystem }
    }

    func writeSidecar(_ dirfd: Int32, _ b: (name: String, encoded: String, isLong: Bool)) throws {
        try LongNameSidecar.write(dirfd, backingName: b.name, encoded: b.encoded, isLong: b.isLong)
    }

    func removeSidecar(_ dirfd: Int32, _ b: (name: String, encoded: String, isLong: Bool)) {
        LongNameSidecar.remove(dirfd, backingName: b.name, isLong: b.isLong)
    }

    // MARK: Lookup

    /// The control file's attributes.
    var controlAttributes: stat {
        var st = stat()
        st.st_ino = ino_t(Self.controlID)
        st.st_mode = S_IFREG | controlOwner.mode
        st.st_nlink = 1
        st.st_uid = controlOwner.uid
        st.st_gid = controlOwner.gid
        st.st_blksize = 4096
        st.st_atim = mountTime
        st.st_mtim = mountTime
        st.st_ctim = mountTime
        return st
    }

    func lookup(_ parentID: UInt64, _ name: [UInt8]) throws -> Entry {
        let parent = try inode(parentID)
        let b = try backingName(parent, name)
        return try withEntries(parent, exclusive: false) { entries in
            let st: stat
            do { st = try withHandle(parent) { try Syscall.lstatat($0, b.name) } } catch let e as Errno
                where e == .noSuchFileOrDirectory
            {
                if entries.ids[b.name] != nil {
                    throw refusedEntry(parent, b.name, "an entry of the directory's sealed set is missing from BACKING")
                }
                throw e
            }
            return try register(parent: parent, backingName: b.name, stat: st)
        }
    }

    // MARK: Ownership of new objects

    /// Owner for a new object in `parent`: the caller, with the group inherited from a setgid
    /// parent directory (as ext4 does), as the parent's record says.
    func newOwner(_ parent: Inode, _ caller: Caller) throws -> (uid: uid_t, gid: gid_t, setgidParent: Bool) {
        let p = try directoryInfo(parent).record
        if p.mode & S_ISGID != 0 { return (caller.uid, p.gid, true) }
        return (caller.uid, caller.gid, false)
    }

    func chownNew(_ dirfd: Int32, _ bname: String, _ owner: (uid: uid_t, gid: gid_t, setgidParent: Bool)) throws {
        guard isRoot else { return }
        try Syscall.fchownat(dirfd, bname, owner.uid, owner.gid)
    }

    // MARK: Create

    typealias NewObject = (
        parent: Inode, dirfd: Int32, b: (name: String, encoded: String, isLong: Bool),
        owner: (uid: uid_t, gid: gid_t, setgidParent: Bool)
    )

    /// What every create-like operation starts with: the parent (its descriptor and its
    /// namespace lock held for `body`), the checked backing name, free in the parent's entry
    /// set, with its long-name sidecar already written, and the owner of the new object.
    /// A name the sealed set already has fails with EEXIST, or goes to `existing` when given.
    func withNew<R>(
        _ parent: Inode, _ name: [UInt8], _ caller: Caller,
        existing: (NewObject) throws -> R = { _ in throw Errno.fileExists }, _ body: (NewObject) throws -> R
    ) throws -> R {
        try checkCreatable(parent, name)
        let b = try backingName(parent, name)
        return try withEntries(parent, exclusive: true) { entries in
            try withHandle(parent) { dirfd in
                let owner = try newOwner(parent, caller)
                // (A name in BACKING but not in the set fails when the new object is moved into
                // place: `publish` tells it apart.)
                if entries.ids[b.name] != nil { return try existing((parent, dirfd, b, owner)) }
                try writeSidecar(dirfd, b)
                return try body((parent, dirfd, b, owner))
            }
        }
    }

    /// Moves a new object, complete under its temporary name, into place as `n` (never over an
    /// existing entry), adding it to the parent's entry set.
    func publish(_ n: NewObject, temporary: String, id: ObjectID) throws {
        do {
            try changingEntries([EntryChange(directory: n.parent, add: [(n.b.name, id)])]) {
                try Syscall.renameat2(n.dirfd, temporary, n.dirfd, n.b.name, LinuxConstants.renameNoReplace)
            }
        } catch let e as Errno where e == .fileExists {
            // The name is not in the sealed set (checked before): someone else put it in BACKING.
            throw refusedEntry(n.parent, n.b.name, "an entry not in the directory's sealed set")
        }
    }

    func mkdir(_ parentID: UInt64, _ name: [UInt8], _ mode: mode_t, _ caller: Caller) throws -> Entry {
        let parent = try inode(parentID)
        return try withNew(parent, name, caller) { n in
            // Made complete under a temporary name, then moved into place.
            let temporary = try EntryScan.newObjectName()
            let iv: [UInt8]
            do {
                try Syscall.mkdirat(n.dirfd, temporary, 0o700)
                let dfd = try Syscall.openat(n.dirfd, temporary, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                defer { Syscall.close(dfd) }
                var m = mode & 0o7777
                if n.owner.setgidParent { m |= S_ISGID }
                let record = newRecord(.directory, m, n), crypto = try worker().crypto
                iv = try DirectoryIV.create(in: dfd, record: record, with: crypto)
                versions.note(VersionKey(ObjectID(iv), .record), record.sealedBy(crypto).version)
                // The backing directory mirrors owner and mode (what is served is the record's).
                try chownNew(n.dirfd, temporary, n.owner)
                try Syscall.chmod(fd: dfd, m)
                try publish(n, temporary: temporary, id: ObjectID(iv))
            } catch {
                EntryScan.removeLeftover(n.dirfd, temporary)
                if (error as? Errno) != .fileExists { removeSidecar(n.dirfd, n.b) }
                throw error
            }
            let entry = try register(
                parent: parent, backingName: n.b.name, stat: try Syscall.lstatat(n.dirfd, n.b.name))
            startEntries(entry.inode, iv: iv)
            return entry
        }
    }

    /// The record of a new regular or special file: the mode as asked (the kernel applied the
    /// umask), the owner `withNew` chose (on a mount by another user than root: that user, who
    /// owns every backing object).
    func newRecord(_ kind: ObjectRecord.Kind, _ mode: mode_t, _ n: NewObject, rdev: dev_t = 0) -> ObjectRecord {
        // (A mount by another user than root: that user owns everything, with the group a
        // setgid parent directory passes on, as the backing filesystem would do.)
        let (uid, gid) =
            isRoot ? (n.owner.uid, n.owner.gid) : (geteuid(), n.owner.setgidParent ? n.owner.gid : getegid())
        let isDevice = kind == .characterDevice || kind == .blockDevice
        return ObjectRecord(kind: kind, mode: mode, uid: uid, gid: gid, rdev: isDevice ? UInt64(rdev) : 0)
    }

    /// Creates the backing file of a new regular or special file, with its header: a regular
    /// file of mode 0600 whatever the object's type and mode (those live in the record).
    /// Returns the descriptor (open read-write) and the header; nothing is left on failure.
    /// The object is made complete under a temporary name (header, then `fill`: a symlink's
    /// target) and moved into place with the parent's entry set, so a crash never leaves a
    /// named object without its header.
    func createBacking(
        _ n: NewObject, _ record: ObjectRecord, flags: Int32 = O_RDWR | O_CLOEXEC,
        fill: (Int32, FileHeader) throws -> FileHeader = { $1 }
    ) throws -> (Int32, FileHeader) {
        let temporary = try EntryScan.newObjectName()
        var fd: Int32 = -1
        do {
            fd = try opening {
                // Read-write whatever was asked: the header is written through it.
                try Syscall.openat(
                    n.dirfd, temporary, (flags & ~O_ACCMODE) | O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
            }
            let header = try fill(fd, try writeNewHeader(fd: fd, record))
            try publish(n, temporary: temporary, id: ObjectID(header.fileID))
            return (fd, header)
        } catch {
            if fd >= 0 { Syscall.close(fd) }
            _ = try? Syscall.unlinkat(n.dirfd, temporary, 0)
            if (error as? Errno) != .fileExists { removeSidecar(n.dirfd, n.b) }  // an existing entry keeps its sidecar
            throw error
        }
    }

    func mknod(_ parentID: UInt64, _ name: [UInt8], _ mode: mode_t, _ rdev: dev_t, _ caller: Caller) throws -> Entry {
        let parent = try inode(parentID)
        guard let kind = ObjectRecord.Kind(fileType: mode), kind != .directory, kind != .symlink else {
            throw Errno.invalidArgument
        }
        return try withNew(parent, name, caller) { n in
            let (fd, header) = try createBacking(n, newRecord(kind, mode, n, rdev: rdev))
            defer { Syscall.close(fd) }
            return try register(parent: parent, backingName: n.b.name, stat: try Syscall.fstat(fd), header: header)
        }
    }

    /// Creates and opens a regular file; returns the entry and the backing descriptor.
    func create(_ parentID: UInt64, _ name: [UInt8], _ mode: mode_t, _ flags: Int32, _ caller: Caller) throws -> (
        Entry, Int32
    ) {
        let parent = try inode(parentID)
        let openFlags = Self.backingFlags(flags)
        // Created since the kernel's lookup (a name the sealed set has): opened as it is.
        func openExisting(_ n: NewObject) throws -> (Entry, Int32) {
            if flags & O_EXCL != 0 { throw Errno.fileExists }
            let fd = try Syscall.openat(n.dirfd, n.b.name, openFlags | O_NOFOLLOW | O_NONBLOCK)
            do {
                let st = try Syscall.fstat(fd)
                guard st.st_mode & S_IFMT == S_IFREG else { throw Errno.fileExists }
                let entry = try register(parent: parent, backingName: n.b.name, stat: st)
                guard entry.inode.isRegular else {
                    forget(entry.inode.id, 1)
                    throw Errno.fileExists
                }
                entry.inode.openCount.add(1, ordering: .relaxed)
                if flags & O_TRUNC != 0 { try truncateOnOpen(entry.inode, fd: fd, caller: caller) }
                return (entry, fd)
            } catch {
                Syscall.close(fd)
                throw error
            }
        }
        return try withNew(parent, name, caller, existing: openExisting) { n in
            let (fd, header) = try createBacking(n, newRecord(.regular, mode, n), flags: openFlags)
            do {
                let entry = try register(
                    parent: parent, backingName: n.b.name, stat: try Syscall.fstat(fd), header: header)
                entry.inode.openCount.add(1, ordering: .relaxed)
                return (entry, fd)
            } catch {
                Syscall.close(fd)
                throw error
            }
        }
    }

    /// Flags for opening a backing file: read-modify-write needs read access; O_APPEND, O_TRUNC
    /// and O_DIRECT are handled by ELASTIC (the kernel passes append offsets, truncation is ours).
    static func backingFlags(_ flags: Int32) -> Int32 {
        var f = flags & ~(O_APPEND | O_TRUNC | O_CREAT | O_EXCL | O_NOCTTY | 0o40000 /* O_DIRECT */)
        if f & O_ACCMODE == O_WRONLY { f = (f & ~O_ACCMODE) | O_RDWR }
        return f | O_CLOEXEC
    }

    func open(_ ino: UInt64, _ flags: Int32, _ caller: Caller) throws -> Int32 {
        let i = try inode(ino)
        if readOnly && (flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0) { throw Errno.readOnlyFileSystem }
        let fd = try openBacking(i, Self.backingFlags(flags))
        if flags & O_TRUNC != 0 {
            do {
                try truncateOnOpen(i, fd: fd, caller: caller)
            } catch {
                Syscall.close(fd)
                throw error
            }
        }
        i.openCount.add(1, ordering: .relaxed)
        return fd
    }

    /// O_TRUNC: setuid/setgid cleared for a caller other than root, the file emptied, and
    /// mtime and ctime set even when it was empty already.
    func truncateOnOpen(_ i: Inode, fd: Int32, caller: Caller) throws {
        try i.content.withWriteLock { try dropPrivilegeBits(i, fd: fd, caller: caller) }
        try truncate(i, fd: fd, to: 0)
        try i.content.withWriteLock { try updateRecord(i, fd: fd) { $0.mtime = $0.ctime } }
    }

    /// The kernel closed a file handle of `ino`.
    func release(_ ino: UInt64, fd: Int32) {
        // A plain read-write descriptor stays cached for the metadata changes that follow a
        // close (tar sets owner, mode and times next); any other is closed.
        let i = try? inode(ino)
        let special = O_SYNC | O_DSYNC | O_APPEND | 0o40000 /* O_DIRECT */ | LinuxConstants.oPath
        if let i, !readOnly, i.hasHeader, let flags = try? Syscall.fileStatusFlags(fd), flags & special == 0,
            flags & O_ACCMODE == O_RDWR
        {
            keepWritable(i, BackingHandle(fd, writable: true))
        } else {
            Syscall.close(fd)
        }
        guard let i, i.openCount.subtract(1, ordering: .relaxed).newValue == 0,
            i.tags.withLock({ $0 }) != nil  // (a file never read or written holds none: no lock to take)
        else { return }
        // Block tags are kept while the file is open (memory grows with open files, not with
        // the store): the next open loads and checks them again, from a snapshot for a large file.
        i.content.withWriteLock {
            guard i.openCount.load(ordering: .relaxed) == 0, let tags = i.tags.withLock({ $0 }) else { return }
            i.tags.withLock { $0 = nil }
            // (Not for a file with holes: the sealed array would fill them with bytes.)
            guard !readOnly, tags.changedSinceSnapshot, let h = try? header(i), !h.record.sparse,
                TagSnapshot.applies(size: h.record.size)
            else { return }
            do {
                try withWritableBacking(i) { w in
                    try TagSnapshot.write(tags, fd: w, fileID: h.fileID, size: h.record.size, with: worker().crypto)
                }
            } catch {
                logger.warning("could not keep a snapshot of a file's block tags", metadata: ["why": "\(error)"])
            }
        }
    }

    // MARK: Remove

    /// Removes the name `name` from `parentID`. When nothing could see the file between the
    /// answer and the removal in BACKING (a known object, not open, no other name, not a
    /// directory), `answer` tells the kernel of success as soon as the name is known to be in
    /// the sealed set; the removal follows with the parent's namespace lock still held, every
    /// request on the file waits for it (`Inode.removal`), and the parent keeps a lookup
    /// meanwhile, so the kernel cannot make it forget the directory whose lock is held.
    func unlink(_ parentID: UInt64, _ name: [UInt8], answer: EarlyAnswer? = nil) throws {
        let parent = try inode(parentID)
        if isControlName(parent, name) { throw Errno.notPermitted }
        let b = try backingName(parent, name)
        let key = NameKey(parent: parent.id, name: b.name)
        var answered: Inode? = nil
        defer {
            if answered != nil, parent !== root { forget(parent.id, 1) }
        }
        try withEntries(parent, exclusive: true) { entries in
            try withHandle(parent) { dirfd in
                guard let id = try entryID(parent, entries, b.name, dirfd: dirfd) else {
                    throw Errno.noSuchFileOrDirectory
                }
                let victim = inodes.read { $0.byName[key] }
                try refuseIfKeptCopyPath(key)
                var early: (() -> Void)? = nil
                if let answer, let victim, unobservableOnceUnlinked(victim, key) {
                    early = {
                        self.inodes.withLock { _ in
                            victim.removal = parent
                            if parent !== self.root { parent.nlookup += 1 }
                        }
                        answered = victim
                        answer.send()
                    }
                }
                defer { if let answered { inodes.withLock { _ in answered.removal = nil } } }
                // A file that keeps other names gets a new ctime: opened now, while this name leads to it.
                let survivor = openIfOtherNamesRemain(victim, dirfd, b.name)
                defer { if let survivor { Syscall.close(survivor) } }
                let pinned = pinIfStillReachable(victim, losing: key)
                let lastName: Bool
                do {
                    lastName = try changingEntries(
                        [EntryChange(directory: parent, remove: [(b.name, id)])], answer: early
                    ) {
                        // (An unlink answered early removes the only name of an object with no
                        // other: no need to ask BACKING.)
                        let links = early != nil ? 1 : (try? Syscall.lstatat(dirfd, b.name))?.st_nlink
                        try Syscall.unlinkat(dirfd, b.name, 0)
                        return links == 1
                    }
                } catch {
                    if pinned, let victim { handles.unpin(victim) }
                    throw error
                }
                if lastName { versions.remove(id) }
                nameRemoved(key)
                removeSidecar(dirfd, b)
                if let survivor, let victim { try? touchChanged(victim, fd: survivor) }
            }
        }
    }

    /// Throws if `key` names a file whose failed overwrite waits for the next mount, or a
    /// directory above one (`keptCopyPaths`).
    func refuseIfKeptCopyPath(_ key: NameKey) throws {
        guard let i = inodes.read({ $0.byName[key] }), keptCopyPaths.withLock({ $0.contains(i.id) }) else { return }
        logger.error(
            "not moving or removing a name on the path of a file whose failed write the next mount finishes",
            metadata: ["fuse.ino": "\(i.id)"])
        throw FormatError.integrity("a failed write waits for the next mount on this path")
    }

    /// Whether the object `victim`, named `key`, can no longer be reached by any request once
    /// the kernel hears that `key` is gone: not a directory, not open, and no other name.
    func unobservableOnceUnlinked(_ victim: Inode, _ key: NameKey) -> Bool {
        !victim.isDirectory && victim.openCount.load(ordering: .relaxed) == 0
            && !victim.mayHaveOtherNames.load(ordering: .relaxed)
            && inodes.read { _ in victim.links.count == 1 && victim.links.contains(key) }
    }

    /// After an unlink answered early failed in BACKING (the name is still there): the kernel
    /// drops its negative entry at once. Called with no namespace lock held (the kernel may
    /// hold the directory's lock for a request that waits for one).
    func nameStillThere(parent: UInt64, name: UnsafePointer<CChar>) {
        guard let session else { return }
        _ = fuse_lowlevel_notify_inval_entry(session, parent, name, strlen(name))
    }

    /// Waits until the removals already answered in the directory named `key` (if it is one)
    /// are in BACKING: they hold its namespace lock until then. Before its emptiness is checked;
    /// the kernel holds the directory's lock meanwhile, so no new one starts.
    func waitForAnsweredRemovals(in key: NameKey) {
        if let dir = inodes.read({ $0.byName[key] }), dir.isDirectory { dir.namespace.withWriteLock {} }
    }

    /// A writable descriptor on `victim` (a file with a header, named `name` in `dirfd`) when it
    /// has names besides this one, for `touchChanged` once the name is gone.
    func openIfOtherNamesRemain(_ victim: Inode?, _ dirfd: Int32, _ name: String) -> Int32? {
        guard let victim, victim.hasHeader, victim.mayHaveOtherNames.load(ordering: .relaxed),
            let st = try? Syscall.lstatat(dirfd, name), st.st_nlink > 1, DevIno(st) == victim.key
        else { return nil }
        return try? Syscall.openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
    }

    func rmdir(_ parentID: UInt64, _ name: [UInt8]) throws {
        let parent = try inode(parentID)
        let b = try backingName(parent, name)
        let key = NameKey(parent: parent.id, name: b.name)
        waitForAnsweredRemovals(in: key)
        try withEntries(parent, exclusive: true) { entries in
            try withHandle(parent) { dirfd in
                guard let id = try entryID(parent, entries, b.name, dirfd: dirfd) else {
                    throw Errno.noSuchFileOrDirectory
                }
                let dfd = try Syscall.openat(dirfd, b.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                defer { Syscall.close(dfd) }
                try checkEmptyAsSealed(parent, b.name, dfd)
                guard try DirectoryIV.holdsOnlyItsIV(dfd) else { throw Errno.directoryNotEmpty }
                let victim = inodes.read { $0.byName[key] }
                let pinned = pinIfStillReachable(victim, losing: key)
                do {
                    // The IV file goes after the parent's set names the removal as pending, so
                    // a crash between the two steps leaves what the next load finishes.
                    try changingEntries([EntryChange(directory: parent, remove: [(b.name, id)])]) {
                        try removeEmptyDirectory(dirfd, b.name, dfd)
                    }
                } catch {
                    if pinned, let victim { handles.unpin(victim) }
                    throw error
                }
                versions.remove(id)
                nameRemoved(key)
                removeSidecar(dirfd, b)
            }
        }
    }

    /// Removes the empty directory `name` (open as `dfd`): its IV file, then itself (the IV put
    /// back if that fails).
    func removeEmptyDirectory(_ dirfd: Int32, _ name: String, _ dfd: Int32) throws {
        let iv = try opening { try DirectoryIV.removeFromEmptyDirectory(dfd) }
        do { try Syscall.unlinkat(dirfd, name, AT_REMOVEDIR) } catch {
            if let iv {
                DirectoryIV.restore(iv, in: dfd)
                dirivEpoch.add(1, ordering: .releasing)
            }
            throw error
        }
    }

    /// Before a directory goes: its sealed set must say it is empty too (a directory whose
    /// entries the host removed is not silently dropped with them).
    func checkEmptyAsSealed(_ parent: Inode, _ name: String, _ dfd: Int32) throws {
        let info = try DirectoryIV.readInfo(from: dfd, with: worker().crypto)
        let state = info.entries
        // The recorded version counts too: an emptier IV file put back is not believed.
        let key = VersionKey(ObjectID(info.iv), .entries)
        let candidates = [state.committed] + (state.pending.map { [$0] } ?? [])
        guard
            candidates.contains(where: { versions.accepts(key, EntrySetState.version(of: $0, session: state.session)) })
        else {
            throw refusedEntry(
                parent, name, "an earlier version of the directory (its entries are not the ones the store recorded)")
        }
        guard state.committed.count != 0 && state.pending?.count != 0 else { return }
        let found = try EntryScan.scan(dfd)
        if found.ids.isEmpty && found.unreadable.isEmpty {
            throw refusedEntry(parent, name, "an empty directory whose sealed set has \(state.committed.count) entries")
        }
        throw Errno.directoryNotEmpty
    }

    // MARK: Rename and link

    func rename(_ parentID: UInt64, _ name: [UInt8], _ newParentID: UInt64, _ newName: [UInt8], _ flags: UInt32) throws
    {
        let parent = try inode(parentID), newParent = try inode(newParentID)
        if isControlName(parent, name) { throw Errno.notPermitted }
        // Only NOREPLACE and EXCHANGE: a whiteout (RENAME_WHITEOUT, for overlayfs) would be a
        // backing device node, which v2 never makes; unsupported flags are EINVAL, as rename(2) says.
        guard flags & ~(LinuxConstants.renameNoReplace | LinuxConstants.renameExchange) == 0 else {
            throw Errno.invalidArgument
        }
        try checkCreatable(newParent, newName)
        let from = try backingName(parent, name), to = try backingName(newParent, newName)
        waitForAnsweredRemovals(in: NameKey(parent: newParent.id, name: to.name))
        try withEntries(parent, newParent) { fromEntries, toEntries in
            try withHandle(parent) { fromfd in
                try withHandle(newParent) { tofd in
                    guard let moved = try entryID(parent, fromEntries, from.name, dirfd: fromfd) else {
                        throw Errno.noSuchFileOrDirectory
                    }
                    let replaced = try entryID(newParent, toEntries, to.name, dirfd: tofd)
                    try refuseIfKeptCopyPath(NameKey(parent: parent.id, name: from.name))
                    if replaced != nil { try refuseIfKeptCopyPath(NameKey(parent: newParent.id, name: to.name)) }
                    let changes = try Self.renameChanges(
                        parent, from.name, moved, newParent, to.name, replaced, flags: flags)
                    try rename(parent, fromfd, from, newParent, tofd, to, flags, changes)
                }
            }
        }
    }

    /// What a rename does to the entry sets of both directories (one change when they are the same).
    static func renameChanges(
        _ parent: Inode, _ from: String, _ moved: ObjectID, _ newParent: Inode, _ to: String, _ replaced: ObjectID?,
        flags: UInt32
    ) throws -> [EntryChange] {
        var source = EntryChange(directory: parent, remove: [(from, moved)])
        var target = EntryChange(directory: newParent, add: [(to, moved)])
        if flags & LinuxConstants.renameExchange != 0 {
            guard let replaced else { throw Errno.noSuchFileOrDirectory }
            source.add.append((from, replaced))
            target.remove.append((to, replaced))
        } else if let replaced {
            if flags & LinuxConstants.renameNoReplace != 0 { throw Errno.fileExists }
            target.remove.append((to, replaced))
        }
        guard parent !== newParent else {
            return [EntryChange(directory: parent, remove: source.remove + target.remove, add: source.add + target.add)]
        }
        return [source, target]
    }

    private func rename(
        _ parent: Inode, _ fromfd: Int32, _ from: (name: String, encoded: String, isLong: Bool),
        _ newParent: Inode, _ tofd: Int32, _ to: (name: String, encoded: String, isLong: Bool), _ flags: UInt32,
        _ changes: [EntryChange]
    ) throws {
        let exchange = flags & LinuxConstants.renameExchange != 0
        let fromKey = NameKey(parent: parent.id, name: from.name), toKey = NameKey(parent: newParent.id, name: to.name)
        var replacedDirectory: Int32? = nil
        defer { if let fd = replacedDirectory { Syscall.close(fd) } }
        var victim: Inode? = nil
        // The object the rename removes (its last name replaced): its version goes with it.
        var replacedID: ObjectID? = nil
        if !exchange, flags & LinuxConstants.renameNoReplace == 0, let dst = try? Syscall.lstatat(tofd, to.name) {
            let src = try Syscall.lstatat(fromfd, from.name)
            if DevIno(src) == DevIno(dst) { return }  // same object: rename(2) does nothing
            if dst.st_mode & S_IFMT == S_IFDIR {
                guard src.st_mode & S_IFMT == S_IFDIR else { throw Errno.isDirectory }
                let dfd = try Syscall.openat(tofd, to.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                replacedDirectory = dfd
                guard try DirectoryIV.holdsOnlyItsIV(dfd) else { throw Errno.directoryNotEmpty }
                try checkEmptyAsSealed(newParent, to.name, dfd)
            }
            victim = inodes.read { $0.byName[toKey] }
            if dst.st_nlink == 1 || dst.st_mode & S_IFMT == S_IFDIR { replacedID = newParent.entries?.ids[to.name] }
        }
        let pinned = pinIfStillReachable(victim, losing: toKey)
        // Renamed files get a new ctime (as on ext4): opened now, through their old names.
        let movedFD = openForCtime(fromfd, from.name)
        let otherFD = exchange ? openForCtime(tofd, to.name) : nil
        // A replaced file that keeps other names gets a new ctime too (its link count drops).
        let survivorFD = exchange ? nil : openIfOtherNamesRemain(victim, tofd, to.name)
        defer { for fd in [movedFD, otherFD, survivorFD] { if let fd { Syscall.close(fd) } } }
        try writeSidecar(tofd, to)
        do {
            if let dfd = replacedDirectory {
                try replaceDirectory(parent, fromfd, from.name, newParent, tofd, to.name, dfd)
            } else {
                try changingEntries(changes) { try Syscall.renameat2(fromfd, from.name, tofd, to.name, flags) }
            }
        } catch {
            if pinned, let victim { handles.unpin(victim) }
            throw error
        }
        if let replacedID { versions.remove(replacedID) }
        if victim != nil { nameRemoved(toKey) }
        // The moved objects keep their inodes under their new names.
        let (moved, other) = inodes.withLock { t -> (Inode?, Inode?) in
            let moved = t.removeLink(fromKey)
            let other = exchange ? t.removeLink(toKey) : nil
            if let moved { t.addLink(moved, Link(parent: newParent, name: to.name)) }
            if let other { t.addLink(other, Link(parent: parent, name: from.name)) }
            return (moved, other)
        }
        for (inode, fd) in [(moved, movedFD), (other, otherFD), (victim, survivorFD)] {
            if let inode, let fd, inode.hasHeader, (try? DevIno(Syscall.fstat(fd))) == inode.key {
                try? touchChanged(inode, fd: fd)
            }
        }
        for inode in [moved, other] where inode?.isDirectory == true { try? touchChanged(inode!) }
        if exchange {
            try writeSidecar(fromfd, from)
        } else {
            removeSidecar(fromfd, from)
        }
    }

    /// A directory renamed over an empty one, in two changes no crash can tear: the two are
    /// exchanged, then the old one (now under the source name, `dfd`) is removed.
    private func replaceDirectory(
        _ parent: Inode, _ fromfd: Int32, _ from: String, _ newParent: Inode, _ tofd: Int32, _ to: String, _ dfd: Int32
    ) throws {
        guard let moved = parent.entries?.ids[from], let old = newParent.entries?.ids[to] else {
            throw Errno.noSuchFileOrDirectory
        }
        let exchange = LinuxConstants.renameExchange
        try changingEntries(try Self.renameChanges(parent, from, moved, newParent, to, old, flags: exchange)) {
            try Syscall.renameat2(fromfd, from, tofd, to, exchange)
        }
        do {
            try changingEntries([EntryChange(directory: parent, remove: [(from, old)])]) {
                try removeEmptyDirectory(fromfd, from, dfd)
            }
        } catch {
            // Put the two back as they were: the rename failed as a whole.
            try? changingEntries(try Self.renameChanges(parent, from, old, newParent, to, moved, flags: exchange)) {
                try Syscall.renameat2(fromfd, from, tofd, to, exchange)
            }
            throw error
        }
    }

    func link(_ ino: UInt64, _ newParentID: UInt64, _ newName: [UInt8]) throws -> Entry {
        let i = try inode(ino)
        let newParent = try inode(newParentID)
        return try withNew(newParent, newName, Caller(uid: 0, gid: 0)) { n in
            do {
                guard i.hasHeader else { throw Errno.notPermitted }
                try changingEntries([
                    EntryChange(directory: newParent, add: [(n.b.name, ObjectID(try header(i).fileID))])
                ]) {
                    try withHandle(i) { try Syscall.linkat(fd: $0, n.dirfd, n.b.name) }
                }
            } catch {
                if (error as? Errno) != .fileExists { removeSidecar(n.dirfd, n.b) }
                throw error
            }
            let st = try Syscall.lstatat(n.dirfd, n.b.name)
            let entry = try register(parent: newParent, backingName: n.b.name, stat: st)
            i.mayHaveOtherNames.store(true, ordering: .relaxed)
            try touchChanged(i)  // a new name changes the file's ctime
            return Entry(inode: entry.inode, attr: try attributes(of: entry.inode, stat: st))
        }
    }

    /// A writable descriptor on the regular backing file `name` in `dirfd` (nil for anything else).
    func openForCtime(_ dirfd: Int32, _ name: String) -> Int32? {
        guard let st = try? Syscall.lstatat(dirfd, name), st.st_mode & S_IFMT == S_IFREG else { return nil }
        return try? Syscall.openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
    }

    /// Sets the ctime of `i` (a file with a header, or a directory) to now, through its record.
    func touchChanged(_ i: Inode, fd given: Int32? = nil) throws {
        if i.isDirectory { return try updateDirectoryRecord(i) { _ in } }
        guard i.hasHeader else { return }
        if let given { return try i.content.withWriteLock { try updateRecord(i, fd: given) { _ in } } }
        try withWritableBacking(i) { fd in try i.content.withWriteLock { try updateRecord(i, fd: fd) { _ in } } }
    }

    // MARK: Attributes (set)

    func setattr(_ ino: UInt64, _ attr: stat, _ toSet: Int32, fh: Int32?, caller: Caller) throws -> stat {
        let i = try inode(ino)
        if readOnly { throw Errno.readOnlyFileSystem }
        if toSet & FUSE_SET_ATTR_SIZE != 0 {
            guard i.isRegular else { throw i.isDirectory ? Errno.isDirectory : Errno.invalidArgument }
            let size = Int64(attr.st_size)
            guard size >= 0 else { throw Errno.invalidArgument }
            func resize(_ fd: Int32) throws {
                if toSet & FUSE_SET_ATTR_MODE == 0 {
                    try i.content.withWriteLock { try dropPrivilegeBits(i, fd: fd, caller: caller) }
                }
                try truncate(i, fd: fd, to: size)
            }
            if let fh { try resize(fh) } else { try withWritableBacking(i, resize) }
        }
        let owner = toSet & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID) != 0
        let mode = toSet & FUSE_SET_ATTR_MODE != 0
        if i.hasHeader && (owner || mode) {
            try changeRecord(i, owner: owner ? attr : nil, toSet: toSet, mode: mode ? attr.st_mode : nil)
        }
        if i.isDirectory && (owner || mode) {
            try updateDirectoryRecord(i) { r in
                if toSet & FUSE_SET_ATTR_UID != 0 { r.uid = attr.st_uid }
                if toSet & FUSE_SET_ATTR_GID != 0 { r.gid = attr.st_gid }
                if mode { r.mode = attr.st_mode & 0o7777 }
            }
        }
        // A file with a header: through its read-write descriptor, which rewriting the record needs too.
        func through(_ body: (Int32) throws -> stat) throws -> stat {
            i.hasHeader ? try withWritableBacking(i, body) : try withHandle(i, body)
        }
        return try through { fd in
            if owner && !i.hasHeader {
                let uid = toSet & FUSE_SET_ATTR_UID != 0 ? attr.st_uid : uid_t.max
                let gid = toSet & FUSE_SET_ATTR_GID != 0 ? attr.st_gid : gid_t.max
                try Syscall.chown(fd: fd, uid, gid)
            }
            if mode && !i.isSymlink && !i.hasHeader {
                try Syscall.chmod(fd: fd, attr.st_mode & 0o7777)
            }
            if toSet & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME) != 0 {
                func time(_ set: Int32, _ now: Int32, _ t: timespec) -> timespec {
                    if toSet & now != 0 { return timespec(tv_sec: 0, tv_nsec: 0x3fff_ffff) }
                    if toSet & set != 0 { return t }
                    return timespec(tv_sec: 0, tv_nsec: 0x3fff_fffe)
                }
                let at = time(FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, attr.st_atim)
                let mt = time(FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, attr.st_mtim)
                try Syscall.utimes(fd: fd, (at, mt))
                if i.isDirectory {
                    try updateDirectoryRecord(i) { r in
                        if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 {
                            r.mtime = r.ctime
                        } else if toSet & FUSE_SET_ATTR_MTIME != 0 {
                            r.mtime = attr.st_mtim
                        }
                    }
                } else if i.hasHeader {
                    // The served mtime and ctime are the record's (atime stays the backing file's).
                    try withWritableBacking(i) { w in
                        try i.content.withWriteLock {
                            try updateRecord(i, fd: w) { r in
                                if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 {
                                    r.mtime = r.ctime
                                } else if toSet & FUSE_SET_ATTR_MTIME != 0 {
                                    r.mtime = attr.st_mtim
                                }
                            }
                        }
                    }
                }
            }
            return try attributes(of: i, stat: try Syscall.fstat(fd))
        }
    }

    /// chown and chmod of a regular or special file: its record (and its ctime). A change of
    /// owner or group clears setuid, and setgid if group-executable (as Linux does, for root
    /// too); a mode given in the same request wins.
    func changeRecord(_ i: Inode, owner: stat?, toSet: Int32, mode: mode_t?) throws {
        try withWritableBacking(i) { fd in
            try i.content.withWriteLock {
                try updateRecord(i, fd: fd) { r in
                    if let owner {
                        if toSet & FUSE_SET_ATTR_UID != 0 { r.uid = owner.st_uid }
                        if toSet & FUSE_SET_ATTR_GID != 0 { r.gid = owner.st_gid }
                        r.mode = Self.withoutPrivilegeBits(r.mode)
                    }
                    if let mode { r.mode = mode & 0o7777 }
                }
            }
        }
    }

    // MARK: Filesystem

    func statfs() throws -> statvfs {
        var s = try withHandle(root) { try Syscall.fstatvfs($0) }
        s.f_namemax = 255
        return s
    }
}
