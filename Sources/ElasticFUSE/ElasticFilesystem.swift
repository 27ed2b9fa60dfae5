import CElasticLinux
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
public final class ElasticFilesystem: @unchecked Sendable {
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
    let names = NameCache()
    let threads: ThreadStateKey
    let isRoot = geteuid() == 0
    /// Whether the store has any symlink target in `elastic.links` (only then does unlink have
    /// to look at what it removes).
    let hasLongLinks = Atomic<Bool>(false)
    /// Whether the kernel accepted HANDLE_KILLPRIV_V2 (so setuid/setgid clearing is ours).
    var killPrivV2: Bool { CElasticLinux_fuse_killpriv_v2_enabled() != 0 }
    /// Timeout the kernel may cache entries and attributes for.
    let cacheTimeout: Double
    /// Seals the second half of large writes on the other core (nil: one thread only).
    let helper: CryptoHelper?
    /// Serves the ioctls of the control file `/.elastic`.
    let control: ControlDispatcher
    /// The control file belongs to the mounting user, mode 0600, or 0660 with `ctl_group`.
    let controlOwner: (uid: uid_t, gid: gid_t, mode: mode_t)
    let mountTime = timespec(tv_sec: time(nil), tv_nsec: 0)

    public init(store: UnlockedStore, logger: Logger, debug: Bool = false, readOnly: Bool = false,
                cacheTimeout: Double = 1.0, parallelCrypto: Bool = true, time: TimePlatform = TimePlatform(secureTSC: false),
                attestation: (any AttestationProvider)? = nil, controlGroup: gid_t? = nil) throws {
        self.store = store
        controlOwner = (getuid(), controlGroup ?? getgid(), controlGroup == nil ? 0o600 : 0o660)
        control = try ControlDispatcher(master: store.master, keyStore: KeyStoreFile(backing: store.backing, keys: store.keys),
                                        readOnly: readOnly, time: time, attestation: attestation)
        self.cacheTimeout = cacheTimeout
        helper = parallelCrypto ? CryptoHelper() : nil
        self.logger = logger
        self.debug = debug
        self.readOnly = readOnly
        let fd = try Syscall.openat(AT_FDCWD, store.backing, LinuxConstants.oPath | O_DIRECTORY | O_CLOEXEC)
        root = Inode(id: Self.rootID, fd: fd, stat: try Syscall.fstat(fd))
        root.nlookup = 1
        threads = ThreadStateKey(keys: store.keys)
        hasLongLinks.store((try? Syscall.lstatat(fd, BackingNames.longLinks)) != nil, ordering: .relaxed)
        inodes.withLock { $0.byID[Self.rootID] = root; $0.byKey[root.key] = root }
    }

    // MARK: Inode table

    func inode(_ ino: UInt64) throws -> Inode {
        if ino == Self.rootID { return root }
        if ino == Self.controlID { throw Errno.notPermitted }  // the control file only opens and answers ioctls
        guard let i = inodes.read({ $0.byID[ino] }) else { throw Errno.staleNFSFileHandle }
        return i
    }

    /// Registers (or finds) the inode for `name` in `parent` and counts one lookup.
    func register(parent: Inode, backingName: String, stat st: stat) throws -> Entry {
        let key = DevIno(st)
        if let found = inodes.withLock({ t -> Inode? in
            guard let i = t.byKey[key] else { return nil }
            i.nlookup += 1
            return i
        }) {
            return Entry(inode: found, attr: try attributes(of: found, stat: st))
        }
        let fd = try Syscall.openat(parent.fd, backingName, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC)
        let fresh = try Syscall.fstat(fd)
        let inode = inodes.withLock { t -> Inode in
            if let i = t.byKey[DevIno(fresh)] {
                i.nlookup += 1
                return i
            }
            let i = Inode(id: t.nextID, fd: fd, stat: fresh)
            t.nextID += 1
            i.nlookup = 1
            t.byID[i.id] = i
            t.byKey[i.key] = i
            return i
        }
        if inode.fd != fd { Syscall.close(fd) }
        return Entry(inode: inode, attr: try attributes(of: inode, stat: fresh))
    }

    func forget(_ ino: UInt64, _ n: UInt64) {
        forget([(ino, n)])
    }

    /// Drops lookups; inodes that reach zero leave the table. Their descriptors are closed
    /// after the table lock is released (closing can be slow, and every request reads the table).
    func forget(_ list: [(ino: UInt64, n: UInt64)]) {
        var released: [Inode] = []
        inodes.withLock { t in
            for (ino, n) in list where ino != Self.rootID {
                guard let i = t.byID[ino] else { continue }
                i.nlookup = i.nlookup > n ? i.nlookup - n : 0
                if i.nlookup == 0 {
                    t.byID[ino] = nil
                    if t.byKey[i.key] === i { t.byKey[i.key] = nil }
                    released.append(i)
                }
            }
        }
        released.removeAll()
    }

    func worker() throws -> ThreadState { try threads.current() }

    // MARK: Attributes

    /// The stat the kernel sees: our inode number and the plaintext size.
    func attributes(of inode: Inode, stat st: stat) throws -> stat {
        var a = st
        a.st_ino = ino_t(inode.id)
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            a.st_size = off_t(BlockLayout.reportedSize(cipher: Int64(st.st_size)))
        case S_IFLNK:
            a.st_size = off_t(try symlinkTargetLength(inode))
        default:
            break
        }
        return a
    }

    func getattr(_ ino: UInt64) throws -> stat {
        let i = try inode(ino)
        return try attributes(of: i, stat: try Syscall.fstat(i.fd))
    }

    // MARK: Names

    /// The directory IV of `dir`, read from its `elastic.diriv` once and cached.
    func dirIV(_ dir: Inode) throws -> [UInt8] {
        if let iv = dir.dirIV.withLock({ $0 }) { return iv }
        let iv = try Syscall.readFile(dir.fd, BackingNames.dirIV, limit: 64)
        guard iv.count == BackingNames.dirIVSize else { throw FormatError.corruptMetadata("directory IV of inode \(dir.id)") }
        dir.dirIV.withLock { $0 = iv }
        return iv
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

    func isControlName(_ parent: Inode, _ name: [UInt8]) -> Bool { parent.id == Self.rootID && name == Self.controlName }

    /// Refuses to create the reserved control-file name at the root.
    func checkCreatable(_ parent: Inode, _ name: [UInt8]) throws {
        if isControlName(parent, name) { throw Errno.notPermitted }
        if readOnly { throw Errno.readOnlyFileSystem }
    }

    func writeSidecar(_ parent: Inode, _ b: (name: String, encoded: String, isLong: Bool)) throws {
        guard b.isLong else { return }
        try Syscall.writeFileAtomically(parent.fd, BackingNames.sidecar(of: b.name), Array(b.encoded.utf8), mode: 0o400)
    }

    func removeSidecar(_ parent: Inode, _ b: (name: String, encoded: String, isLong: Bool)) {
        guard b.isLong else { return }
        _ = try? Syscall.unlinkat(parent.fd, BackingNames.sidecar(of: b.name), 0)
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
        let st = try Syscall.lstatat(parent.fd, b.name)
        return try register(parent: parent, backingName: b.name, stat: st)
    }

    // MARK: Ownership of new objects

    /// Owner for a new object in `parent`: the caller, with the group inherited from a setgid
    /// parent directory (as ext4 does).
    func newOwner(_ parent: Inode, _ caller: Caller) throws -> (uid: uid_t, gid: gid_t, setgidParent: Bool) {
        let pst = try Syscall.fstat(parent.fd)
        if pst.st_mode & S_ISGID != 0 { return (caller.uid, pst.st_gid, true) }
        return (caller.uid, caller.gid, false)
    }

    func chownNew(_ parent: Inode, _ bname: String, _ owner: (uid: uid_t, gid: gid_t, setgidParent: Bool)) throws {
        guard isRoot else { return }
        try Syscall.fchownat(parent.fd, bname, owner.uid, owner.gid)
    }

    // MARK: Create

    /// What every create-like operation starts with: the parent, the (checked) backing name
    /// with its long-name sidecar already written, and the owner of the new object.
    func prepareNew(_ parentID: UInt64, _ name: [UInt8], _ caller: Caller) throws
        -> (parent: Inode, b: (name: String, encoded: String, isLong: Bool), owner: (uid: uid_t, gid: gid_t, setgidParent: Bool))
    {
        let parent = try inode(parentID)
        try checkCreatable(parent, name)
        let b = try backingName(parent, name)
        let owner = try newOwner(parent, caller)
        try writeSidecar(parent, b)
        return (parent, b, owner)
    }

    func mkdir(_ parentID: UInt64, _ name: [UInt8], _ mode: mode_t, _ caller: Caller) throws -> Entry {
        let (parent, b, owner) = try prepareNew(parentID, name, caller)
        do {
            try Syscall.mkdirat(parent.fd, b.name, 0o700)
        } catch {
            if (error as? Errno) != .fileExists { removeSidecar(parent, b) }
            throw error
        }
        do {
            let dfd = try Syscall.openat(parent.fd, b.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            defer { Syscall.close(dfd) }
            try Syscall.writeFileAtomically(dfd, BackingNames.dirIV, try Random.bytes(BackingNames.dirIVSize), mode: 0o400)
            try chownNew(parent, b.name, owner)
            var m = mode & 0o7777
            if owner.setgidParent { m |= S_ISGID }
            try Syscall.chmod(fd: dfd, m)
        } catch {
            let dfd = try? Syscall.openat(parent.fd, b.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if let dfd { _ = try? Syscall.unlinkat(dfd, BackingNames.dirIV, 0); Syscall.close(dfd) }
            _ = try? Syscall.unlinkat(parent.fd, b.name, AT_REMOVEDIR)
            removeSidecar(parent, b)
            throw error
        }
        return try register(parent: parent, backingName: b.name, stat: try Syscall.lstatat(parent.fd, b.name))
    }

    func mknod(_ parentID: UInt64, _ name: [UInt8], _ mode: mode_t, _ rdev: dev_t, _ caller: Caller) throws -> Entry {
        let (parent, b, owner) = try prepareNew(parentID, name, caller)
        do {
            try Syscall.mknodat(parent.fd, b.name, mode, rdev)
            try chownNew(parent, b.name, owner)
        } catch {
            if (error as? Errno) != .fileExists { _ = try? Syscall.unlinkat(parent.fd, b.name, 0); removeSidecar(parent, b) }
            throw error
        }
        return try register(parent: parent, backingName: b.name, stat: try Syscall.lstatat(parent.fd, b.name))
    }

    /// Creates and opens a regular file; returns the entry and the backing descriptor.
    func create(_ parentID: UInt64, _ name: [UInt8], _ mode: mode_t, _ flags: Int32, _ caller: Caller) throws -> (Entry, Int32) {
        let (parent, b, owner) = try prepareNew(parentID, name, caller)
        let openFlags = Self.backingFlags(flags)
        let fd: Int32
        do {
            fd = try Syscall.openat(parent.fd, b.name, openFlags | O_CREAT | O_EXCL | O_NOFOLLOW, mode & 0o7777)
        } catch let e as Errno where e == .fileExists && flags & O_EXCL == 0 {
            // Created by someone else since the kernel's lookup: open it as it is.
            let fd = try Syscall.openat(parent.fd, b.name, openFlags | O_NOFOLLOW)
            let entry = try register(parent: parent, backingName: b.name, stat: try Syscall.fstat(fd))
            if flags & O_TRUNC != 0 { try truncate(entry.inode, fd: fd, to: 0) }
            return (entry, fd)
        } catch {
            if (error as? Errno) != .fileExists { removeSidecar(parent, b) }  // an existing entry keeps its sidecar
            throw error
        }
        do {
            try chownNew(parent, b.name, owner)
            // chown clears setuid/setgid: put the requested mode back exactly.
            if mode & (S_ISUID | S_ISGID) != 0 { try Syscall.chmod(fd: fd, mode & 0o7777) }
            return (try register(parent: parent, backingName: b.name, stat: try Syscall.fstat(fd)), fd)
        } catch {
            Syscall.close(fd)
            throw error
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
        let fd = try Syscall.reopen(i.fd, Self.backingFlags(flags))
        if flags & O_TRUNC != 0 {
            do {
                try dropPrivilegeBits(fd: fd, caller: caller)
                try truncate(i, fd: fd, to: 0)
            } catch {
                Syscall.close(fd)
                throw error
            }
        }
        return fd
    }

    // MARK: Remove

    func unlink(_ parentID: UInt64, _ name: [UInt8]) throws {
        let parent = try inode(parentID)
        if isControlName(parent, name) { throw Errno.notPermitted }
        let b = try backingName(parent, name)
        var longLink: String? = nil
        if hasLongLinks.load(ordering: .relaxed) {
            let st = try Syscall.lstatat(parent.fd, b.name)
            if st.st_mode & S_IFMT == S_IFLNK && st.st_nlink == 1 { longLink = try? longLinkID(dirfd: parent.fd, name: b.name) }
        }
        try Syscall.unlinkat(parent.fd, b.name, 0)
        removeSidecar(parent, b)
        if let longLink { removeLongLink(longLink) }
    }

    func rmdir(_ parentID: UInt64, _ name: [UInt8]) throws {
        let parent = try inode(parentID)
        let b = try backingName(parent, name)
        let dfd = try Syscall.openat(parent.fd, b.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        defer { Syscall.close(dfd) }
        let iv = try removeDirIVIfEmpty(dfd)
        do {
            try Syscall.unlinkat(parent.fd, b.name, AT_REMOVEDIR)
        } catch {
            if let iv { try? Syscall.writeFileAtomically(dfd, BackingNames.dirIV, iv, mode: 0o400) }
            throw error
        }
        removeSidecar(parent, b)
    }

    /// If the backing directory holds nothing but its IV, removes the IV and returns it (so it
    /// can be restored if the removal of the directory fails); otherwise throws ENOTEMPTY.
    func removeDirIVIfEmpty(_ dfd: Int32) throws -> [UInt8]? {
        var hasIV = false
        try forEachBackingEntry(dfd) { name, _, _ in
            if name == "." || name == ".." { return }
            if name == BackingNames.dirIV { hasIV = true; return }
            throw Errno.directoryNotEmpty
        }
        guard hasIV else { return nil }
        let iv = try Syscall.readFile(dfd, BackingNames.dirIV, limit: 64)
        try Syscall.unlinkat(dfd, BackingNames.dirIV, 0)
        return iv
    }

    // MARK: Rename and link

    func rename(_ parentID: UInt64, _ name: [UInt8], _ newParentID: UInt64, _ newName: [UInt8], _ flags: UInt32) throws {
        let parent = try inode(parentID), newParent = try inode(newParentID)
        if isControlName(parent, name) { throw Errno.notPermitted }
        try checkCreatable(newParent, newName)
        let from = try backingName(parent, name), to = try backingName(newParent, newName)
        let exchange = flags & LinuxConstants.renameExchange != 0
        var restoreIV: (fd: Int32, iv: [UInt8])? = nil
        var replacedLongLink: String? = nil
        if !exchange, flags & LinuxConstants.renameNoReplace == 0, let dst = try? Syscall.lstatat(newParent.fd, to.name) {
            let src = try Syscall.lstatat(parent.fd, from.name)
            if DevIno(src) == DevIno(dst) { return }  // same object: rename(2) does nothing
            if dst.st_mode & S_IFMT == S_IFDIR {
                guard src.st_mode & S_IFMT == S_IFDIR else { throw Errno.isDirectory }
                let dfd = try Syscall.openat(newParent.fd, to.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if let iv = try removeDirIVIfEmpty(dfd) { restoreIV = (dfd, iv) } else { Syscall.close(dfd) }
            } else if dst.st_mode & S_IFMT == S_IFLNK, dst.st_nlink == 1 {
                replacedLongLink = try? longLinkID(dirfd: newParent.fd, name: to.name)
            }
        }
        defer { if let r = restoreIV { Syscall.close(r.fd) } }
        try writeSidecar(newParent, to)
        do {
            try Syscall.renameat2(parent.fd, from.name, newParent.fd, to.name, flags)
        } catch {
            if let r = restoreIV { try? Syscall.writeFileAtomically(r.fd, BackingNames.dirIV, r.iv, mode: 0o400) }
            throw error
        }
        if exchange {
            try writeSidecar(parent, from)
        } else {
            removeSidecar(parent, from)
            if let l = replacedLongLink { removeLongLink(l) }
        }
    }

    func link(_ ino: UInt64, _ newParentID: UInt64, _ newName: [UInt8]) throws -> Entry {
        let i = try inode(ino)
        let newParent = try inode(newParentID)
        try checkCreatable(newParent, newName)
        let b = try backingName(newParent, newName)
        try writeSidecar(newParent, b)
        do {
            try Syscall.linkat(fd: i.fd, newParent.fd, b.name)
        } catch {
            if (error as? Errno) != .fileExists { removeSidecar(newParent, b) }
            throw error
        }
        return try register(parent: newParent, backingName: b.name, stat: try Syscall.lstatat(newParent.fd, b.name))
    }

    // MARK: Attributes (set)

    func setattr(_ ino: UInt64, _ attr: stat, _ toSet: Int32, fh: Int32?, caller: Caller) throws -> stat {
        let i = try inode(ino)
        if readOnly { throw Errno.readOnlyFileSystem }
        if toSet & FUSE_SET_ATTR_SIZE != 0 {
            guard i.isRegular else { throw i.isDirectory ? Errno.isDirectory : Errno.invalidArgument }
            let size = Int64(attr.st_size)
            guard size >= 0 else { throw Errno.invalidArgument }
            let fd = try fh ?? Syscall.reopen(i.fd, O_RDWR | O_CLOEXEC)
            defer { if fh == nil { Syscall.close(fd) } }
            if toSet & FUSE_SET_ATTR_MODE == 0 { try dropPrivilegeBits(fd: fd, caller: caller) }
            try truncate(i, fd: fd, to: size)
        }
        if toSet & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID) != 0 {
            let uid = toSet & FUSE_SET_ATTR_UID != 0 ? attr.st_uid : uid_t.max
            let gid = toSet & FUSE_SET_ATTR_GID != 0 ? attr.st_gid : gid_t.max
            try Syscall.chown(fd: i.fd, uid, gid)
        }
        if toSet & FUSE_SET_ATTR_MODE != 0 && !i.isSymlink {
            try Syscall.chmod(fd: i.fd, attr.st_mode & 0o7777)
        }
        if toSet & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME) != 0 {
            func time(_ set: Int32, _ now: Int32, _ t: timespec) -> timespec {
                if toSet & now != 0 { return timespec(tv_sec: 0, tv_nsec: 0x3fff_ffff) }
                if toSet & set != 0 { return t }
                return timespec(tv_sec: 0, tv_nsec: 0x3fff_fffe)
            }
            let at = time(FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, attr.st_atim)
            let mt = time(FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, attr.st_mtim)
            try Syscall.utimes(fd: i.fd, (at, mt))
        }
        return try attributes(of: i, stat: try Syscall.fstat(i.fd))
    }

    // MARK: Filesystem

    func statfs() throws -> statvfs {
        var s = try Syscall.fstatvfs(root.fd)
        s.f_namemax = 255
        return s
    }
}
