import ElasticCrypto
import ElasticSystem
import Glibc

/// Checks an unmounted store against every rule of its format: each directory's IV, each name
/// (and long-name sidecar), each file's length, header and every block, each symlink target,
/// each `user.*` extended attribute (name and value), the key store; the configuration was
/// already authenticated when the store was unlocked. Reports every problem with the plaintext
/// path it affects and goes on. Reads only; changes nothing.
public final class StoreChecker {
    /// One thing that does not hold.
    public struct Problem: Sendable, Equatable {
        /// The plaintext path inside the store ("/" for the root), or the backing name when no
        /// plaintext name is known.
        public let path: String
        public let what: String
        /// What `repair` did about it, once it ran.
        public var repaired: String? = nil
    }

    /// Where a damaged entry is and how it can be moved aside.
    struct Damaged {
        let problem: Int
        /// The backing directory, as a path of backing names from the store's root ("" = root).
        let directory: String
        let backing: String
        /// The entry's long-name sidecar, if it has one.
        let sidecar: String?
        /// Its plaintext path, when its name decrypts (then it goes to lost+found).
        let path: String?
    }
    var damaged: [Damaged] = []
    /// Objects whose attributes all open but are not the set their record names: `repair`
    /// makes the record name them (problem index, backing directory, backing name).
    var attributeSets: [(problem: Int, directory: String, backing: String)] = []
    /// Directories (backing paths from the root) whose entries do not match their sealed set,
    /// with the problem that says so: `repair` re-seals them to what they hold.
    var unsealed: [(directory: String, problem: Int)] = []
    /// The backing path of the directory being checked (backing names from the root).
    var currentDirectory = ""

    /// What was looked at.
    public struct Counts: Sendable, Equatable {
        public var directories = 0
        public var files = 0
        public var symlinks = 0
        public var others = 0
        public var blocks: Int64 = 0
        public var bytes: Int64 = 0
        /// Entries in /lost+found: moved aside by an earlier repair, left for the user; not
        /// checked again and not counted as problems.
        public var quarantined = 0
    }

    let store: UnlockedStore
    /// Reads with session 0; `repair` writes in a session of its own.
    var crypto: CryptoWorker
    /// The versions the store recorded (nil: its versions map does not open, reported).
    var versions: VersionMap?
    /// Problems that are versions the map does not name: `repair` accepts them as they are.
    var staleVersions: [Int] = []
    public private(set) var problems: [Problem] = []
    public private(set) var counts = Counts()
    /// Blocks of interrupted writes put back from the undo journal before the check (what the
    /// next read-write mount would have done).
    public private(set) var restoredFromJournal = 0
    /// Called after every object, for a progress display.
    public var progress: ((Counts) -> Void)?

    public init(store: UnlockedStore) throws {
        self.store = store
        crypto = try CryptoWorker(keys: store.keys)
    }

    /// Runs the whole check; the result is in `problems` and `counts`.
    public func run() throws {
        do { _ = try store.root.bindWitness(requested: nil, readOnly: true) } catch {
            problems.append(Problem(path: BackingNames.root, what: "\(error)"))
        }
        do { _ = try store.keyStoreFile().load() } catch {
            problems.append(Problem(path: BackingNames.keyStore, what: "key store does not open: \(error)"))
        }
        do { versions = try store.root.readVersions() } catch {
            problems.append(Problem(path: BackingNames.versions, what: "\(error)"))
            staleVersions.append(problems.count - 1)
        }
        let rootfd = try Syscall.openat(store.directory.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { Syscall.close(rootfd) }
        // A write a crash interrupted is not damage: it is undone first, as a mount would.
        restoredFromJournal = try UndoJournal.recover(rootfd: rootfd, with: crypto)
        try checkDirectory(rootfd, path: "", isRoot: true)
    }

    func problem(_ path: String, _ what: String) {
        problems.append(Problem(path: path.isEmpty ? "/" : path, what: what))
    }

    /// Checks `version` of `key` against the versions the store recorded.
    func checkVersion(_ key: VersionKey, _ version: ObjectVersion, _ path: String, _ what: String) {
        guard let versions, !versions.accepts(key, version) else { return }
        problem(path, "an earlier version of the \(what) than the store recorded (an older copy put back)")
        staleVersions.append(problems.count - 1)
    }

    /// A problem whose entry `repair` can move aside.
    func damagedEntry(_ dirfd: Int32, _ backing: String, plainPath: String?, shownAs path: String, _ what: String) {
        problem(path, what)
        let sidecar = BackingNames.isLongName(backing) ? BackingNames.sidecar(of: backing) : nil
        damaged.append(
            Damaged(
                problem: problems.count - 1, directory: currentDirectory, backing: backing, sidecar: sidecar,
                path: plainPath))
    }

    static let rootInternal: Set<String> = [
        BackingNames.config, BackingNames.keyStore, BackingNames.root, BackingNames.lock, BackingNames.longLinks,
        BackingNames.dirIV, BackingNames.undo,
        BackingNames.quarantine, BackingNames.versions,
    ]

    func checkDirectory(_ dirfd: Int32, path: String, isRoot: Bool) throws {
        counts.directories += 1
        let iv: [UInt8]
        let sealedSet: EntrySetState
        let record: ObjectRecord
        do { (iv, record, sealedSet) = try DirectoryIV.readInfo(from: dirfd, with: crypto) } catch {
            problem(path, "directory IV and record: \(error); no name in this directory can be read")
            return
        }
        checkVersion(VersionKey(ObjectID(iv), .record), record.version, path, "directory's record")
        if record.storeRoot != isRoot {
            problem(
                path,
                isRoot
                    ? "the top directory's record is not the store root's (another directory put in its place)"
                    : "a directory whose record is the store root's (the root moved into the tree)")
        }
        let cutOff = checkEntrySet(dirfd, iv: iv, sealedSet, path: path)
        var entries: [(name: String, type: UInt8)] = []
        try Syscall.forEachEntry(dirfd) { name, _, type in
            if name != "." && name != ".." { entries.append((name, type)) }
        }
        let names = Set(entries.map(\.name))
        for (backing, _) in entries where !cutOff.contains(backing) {
            var encoded = backing
            if BackingNames.isInternal(backing) {
                if backing == BackingNames.dirIV || (isRoot && Self.rootInternal.contains(backing)) { continue }
                if backing.hasSuffix(BackingNames.longNameSuffix) {
                    let entry = String(backing.dropLast(BackingNames.longNameSuffix.count))
                    if !names.contains(entry) { problem(path + "/" + backing, "long-name sidecar without its entry") }
                    continue
                }
                // What an interrupted create left: removed by the next mount, never an entry.
                if backing.hasPrefix(EntryScan.newObjectPrefix) || BackingNames.isCrashLeftover(backing) { continue }
                guard BackingNames.isLongName(backing) else {
                    damagedEntry(
                        dirfd, backing, plainPath: nil, shownAs: path + "/" + backing,
                        "a file ELASTIC does not know in the backing directory")
                    continue
                }
                switch LongNameSidecar.encodedName(dirfd, backingName: backing) {
                case .success(let full): encoded = full
                case .failure(.missing):
                    damagedEntry(
                        dirfd, backing, plainPath: nil, shownAs: path + "/" + backing, "long name without its sidecar")
                    continue
                case .failure(.mismatch):
                    damagedEntry(
                        dirfd, backing, plainPath: nil, shownAs: path + "/" + backing,
                        "long-name sidecar does not match its entry")
                    continue
                }
            }
            let plain: String
            do { plain = String(decoding: try crypto.decryptName(encoded, dirIV: iv), as: UTF8.self) } catch {
                damagedEntry(
                    dirfd, backing, plainPath: nil, shownAs: path + "/" + backing,
                    "name does not decrypt (not written by this store, or edited)")
                continue
            }
            if isRoot && plain == Self.lostAndFound {
                counts.quarantined += quarantinedEntries(dirfd, backing)
                continue
            }
            try checkEntry(dirfd, backing: backing, path: path + "/" + plain)
            progress?(counts)
        }
    }

    /// Whether the directory holds exactly the entries its sealed set names (or those of the
    /// change a crash interrupted, which the next mount settles). Returns the empty directories
    /// a removal cut off left, which that change accounts for (not checked further).
    func checkEntrySet(_ dirfd: Int32, iv: [UInt8], _ sealed: EntrySetState, path: String) -> Set<String> {
        do {
            let found = try EntryScan.scan(dirfd)
            // (Entries without a readable ID are reported, and moved, one by one.)
            if !found.unreadable.isEmpty { unsealed.append((currentDirectory, -1)) }
            guard found.unreadable.isEmpty else { return [] }
            let digest = try EntryDigest.of(found.ids, dirIV: iv, with: crypto)
            if !found.interrupted.isEmpty && sealed.pending == digest { return Set(found.interrupted) }
            if !found.interrupted.isEmpty { unsealed.append((currentDirectory, -1)) }
            if sealed.accepts(digest) {
                checkVersion(
                    VersionKey(ObjectID(iv), .entries), EntrySetState.version(of: digest, session: sealed.session),
                    path,
                    "directory's entries")
            }
            guard !sealed.accepts(digest) || !found.interrupted.isEmpty else { return [] }
            problem(
                path,
                "entries do not match the directory's sealed set: \(found.ids.count) in BACKING, \(sealed.committed.count) sealed (an entry deleted, added, moved or swapped, or the directory put back)"
            )
            unsealed.append((currentDirectory, problems.count - 1))
        } catch {
            problem(path, "entries cannot be listed: \(error)")
        }
        return []
    }

    func checkEntry(_ dirfd: Int32, backing: String, path: String) throws {
        let st: stat
        do { st = try Syscall.lstatat(dirfd, backing) } catch {
            problem(path, "cannot stat: \(error)")
            return
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            checkXattrs(dirfd, backing, path)
            let sub: Int32
            do { sub = try Syscall.openat(dirfd, backing, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) } catch {
                problem(path, "cannot open directory: \(error)")
                return
            }
            defer { Syscall.close(sub) }
            let outer = currentDirectory
            currentDirectory = outer.isEmpty ? backing : outer + "/" + backing
            defer { currentDirectory = outer }
            try checkDirectory(sub, path: path, isRoot: false)
        case S_IFREG:
            counts.files += 1
            checkXattrs(dirfd, backing, path)
            // (Special files are regular backing files too: `checkFile` counts them.)
            switch checkFile(dirfd, backing, path, st) {
            case .sound: break
            case .damaged(let what): damagedEntry(dirfd, backing, plainPath: path, shownAs: path, what)
            case .unreadable(let what): problem(path, what)
            }
        default:
            // v2 keeps symlinks, fifos, sockets and device nodes as regular backing files with a
            // record: a backing object of another type was put there by someone else.
            counts.others += 1
            damagedEntry(
                dirfd, backing, plainPath: path, shownAs: path,
                "a backing object of a type ELASTIC never makes (a symlink, device node or fifo put in BACKING)")
        }
    }

    /// A verdict on one entry: its data fails the format's checks (`damaged`: repair moves it),
    /// or the system would not let it be read (`unreadable`: reported only, never moved).
    enum Verdict {
        case sound
        case damaged(String)
        case unreadable(String)
    }

    /// What is wrong with a regular backing file (a regular or special file): its header and
    /// record, its length against the record's, and every data block.
    func checkFile(_ dirfd: Int32, _ backing: String, _ path: String, _ listed: stat) -> Verdict {
        let size = Int64(listed.st_size)
        let fd: Int32
        do { fd = try Syscall.openat(dirfd, backing, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) } catch {
            return .unreadable("cannot open: \(error)")
        }
        defer { Syscall.close(fd) }
        // What was opened is the regular file that was listed, not something swapped in since.
        guard let opened = try? Syscall.fstat(fd), opened.st_mode & S_IFMT == S_IFREG, opened.st_ino == listed.st_ino,
            opened.st_dev == listed.st_dev
        else { return .unreadable("changed while being checked") }
        var header = [UInt8](repeating: 0, count: FileHeader.size)
        let h: FileHeader
        do {
            guard
                try header.withUnsafeMutableBytes({ try Syscall.pread(fd, $0.baseAddress!, $0.count, 0) })
                    == FileHeader.size
            else { return .damaged("file header is missing or cut short") }
            h = try FileHeader(decoding: header, with: crypto)
        } catch {
            return .damaged("file header: \(error)")
        }
        checkVersion(VersionKey(ObjectID(h.fileID), .record), h.record.version, path, "file")
        let plain = h.record.size
        guard size >= BlockLayout.ciphertextSize(plain: plain) else {
            return .damaged(
                "backing length \(size) is shorter than the \(plain) bytes its record holds need (cut by the host)")
        }
        if h.record.kind == .symlink {
            counts.files -= 1
            counts.symlinks += 1
        } else if h.record.kind != .regular {
            counts.files -= 1
            counts.others += 1
        }
        let cbs = Int(BlockLayout.cipherBlockSize)
        var cipher = [UInt8](repeating: 0, count: cbs)
        var out = [UInt8](repeating: 0, count: Int(BlockLayout.blockSize))
        let blocks = (plain + BlockLayout.blockSize - 1) / BlockLayout.blockSize
        var failed: [Int64] = []
        var index: Int64 = 0
        while index < blocks {
            // Holes of a sparse file are skipped, not read (they read as zeros).
            let next: Int64?
            // (Only a file whose record allows holes may skip them: in any other, every block
            // is read, and a zeroed one fails.)
            do { next = h.record.sparse ? try BlockLayout.nextDataBlock(fd, from: index) : index } catch {
                return .unreadable("cannot look for its data blocks: \(error)")
            }
            guard let next, next < blocks else { break }
            index = next
            defer { index += 1 }
            let length = Int(BlockLayout.plaintextLength(block: index, fileSize: plain) + BlockLayout.overhead)
            let got = cipher.withUnsafeMutableBytes {
                (try? Syscall.pread(fd, $0.baseAddress!, length, BlockLayout.cipherOffset(block: index))) ?? -1
            }
            let ok =
                got == length
                && (try? h.fileID.withUnsafeBytes { id in
                    try cipher.withUnsafeBytes { c in
                        try out.withUnsafeMutableBytes { o in
                            try crypto.openBlock(
                                fileID: id, index: index, cipher: c.baseAddress!, length: length,
                                output: o.baseAddress!, holes: h.record.sparse)
                        }
                    }
                }) != nil
            if !ok { failed.append(index) }
            counts.blocks += 1
        }
        counts.bytes += plain
        guard failed.isEmpty else {
            let shown = failed.prefix(8).map(String.init).joined(separator: ", ") + (failed.count > 8 ? ", …" : "")
            return .damaged("\(failed.count) of \(blocks) blocks fail authentication (blocks \(shown))")
        }
        // Each block authenticates; together they must be the versions the record names.
        guard (try? BlockTags.load(fd: fd, size: plain, crypto: crypto).digest) == h.record.content else {
            return .damaged(
                "its blocks are not the versions its record names (a block put back to an older version, zeroed, "
                    + "cut or added)")
        }
        return .sound
    }

    /// Every `user.*` attribute must open, and together they must be the set the object's
    /// record names (its attribute digest; a record that does not open is reported elsewhere).
    func checkXattrs(_ dirfd: Int32, _ backing: String, _ path: String) {
        guard let fd = try? Syscall.openat(dirfd, backing, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC) else {
            return
        }
        defer { Syscall.close(fd) }
        let proc = "/proc/self/fd/\(fd)"
        guard let list = try? Syscall.listxattr(proc) else { return }
        var sound = true
        for raw in list.split(separator: 0) where raw.starts(with: XattrCodec.userPrefix) {
            let backingName = String(decoding: raw, as: UTF8.self)
            guard let name = XattrCodec.name(backingName: raw, with: crypto) else {
                problem(path, "extended attribute \(backingName) does not decrypt")
                sound = false
                continue
            }
            let shown = String(decoding: name, as: UTF8.self)
            guard let sealed = try? Syscall.getxattr(proc, backingName),
                (try? XattrCodec.openValue(sealed, backingName: backingName, with: crypto)) != nil
            else {
                problem(path, "extended attribute \(shown): value does not open")
                sound = false
                continue
            }
        }
        if sound, let record = try? BackingRecord.read(fd, with: crypto),
            let set = try? XattrSet.read(path: proc, with: crypto), !set.isNamed(by: record)
        {
            problem(
                path,
                "extended attributes are not the set its record names (one added, removed, copied in or put back)")
            attributeSets.append((problems.count - 1, currentDirectory, backing))
        }
    }

    /// How many entries /lost+found holds (its sidecars and IV aside).
    func quarantinedEntries(_ root: Int32, _ backing: String) -> Int {
        guard let fd = try? Syscall.openat(root, backing, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) else {
            return 0
        }
        defer { Syscall.close(fd) }
        var n = 0
        try? Syscall.forEachEntry(fd) { name, _, _ in
            if name != "." && name != ".." && (!BackingNames.isInternal(name) || BackingNames.isLongName(name)) {
                n += 1
            }
        }
        return n
    }

    /// The directory in the store that damaged entries are moved to.
    public static let lostAndFound = "lost+found"

    /// Moves every damaged entry the check found aside, so the rest of the store reads clean:
    /// an entry whose name decrypts goes to `/lost+found` (an ordinary directory of the store),
    /// named after its old path with "/" written as "%"; an entry whose name cannot be read goes
    /// to `elastic.quarantine` in BACKING, out of the mounted tree. Nothing is deleted. Run
    /// after `run()`; marks each problem with what was done.
    public func repair() throws {
        guard !damaged.isEmpty || !unsealed.isEmpty || !attributeSets.isEmpty || !staleVersions.isEmpty else { return }
        // What the repair writes is sealed in a session of its own, and the store's recorded
        // versions are forgotten: the next mount records every object as it is then.
        crypto = try CryptoWorker(keys: store.keys, session: try store.root.resetVersions())
        for i in staleVersions {
            problems[i].repaired = "accepted as the current version (the store's versions map was reset)"
        }
        let root = try Syscall.openat(store.directory.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { Syscall.close(root) }
        // Attributes the user keeps as they are (each opened under its name): the record names them.
        for a in attributeSets {
            do {
                let dirfd = try openDirectory(a.directory, beneath: root)
                defer { Syscall.close(dirfd) }
                let fd = try Syscall.openat(dirfd, a.backing, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC)
                defer { Syscall.close(fd) }
                let digest = try XattrSet.read(path: "/proc/self/fd/\(fd)", with: crypto).digest
                try BackingRecord.update(fd, with: crypto) {
                    $0.xattrs = digest
                    $0.xattrsChanging = false
                    $0.xattrsPending = .zero
                }
                problems[a.problem].repaired = "the record now names the attributes as they are"
            } catch {
                problems[a.problem].repaired = "not repaired: \(error)"
            }
        }
        defer { resealEntrySets(root) }
        var lostAndFound: (fd: Int32, iv: [UInt8])? = nil
        var quarantine: Int32? = nil
        defer {
            if let lostAndFound { Syscall.close(lostAndFound.fd) }
            if let quarantine { Syscall.close(quarantine) }
        }
        for d in damaged {
            do {
                let dirfd = try openDirectory(d.directory, beneath: root)
                defer { Syscall.close(dirfd) }
                if let path = d.path {
                    if lostAndFound == nil { lostAndFound = try openLostAndFound(root) }
                    let name = try moveToLostAndFound(d, dirfd: dirfd, path: path, into: lostAndFound!)
                    problems[d.problem].repaired = "moved to /\(Self.lostAndFound)/\(name)"
                } else {
                    if quarantine == nil { quarantine = try openQuarantine(root) }
                    // A short name of our own; the original backing name goes beside it.
                    let name = "q-" + Hex.encode(try Random.bytes(8))
                    try Syscall.writeFileAtomically(quarantine!, name + ".origin", Array(d.backing.utf8), mode: 0o400)
                    try Syscall.renameat2(dirfd, d.backing, quarantine!, name, LinuxConstants.renameNoReplace)
                    if let sidecar = d.sidecar, (try? Syscall.lstatat(dirfd, sidecar)) != nil {
                        try Syscall.renameat2(
                            dirfd, sidecar, quarantine!, name + BackingNames.longNameSuffix,
                            LinuxConstants.renameNoReplace)
                    }
                    problems[d.problem].repaired =
                        "moved out of the tree, to BACKING/\(BackingNames.quarantine)/\(name)"
                }
            } catch {
                problems[d.problem].repaired = "not repaired: \(error)"
            }
        }
    }

    /// The backing directory at `path` (backing names from the store's root, "" = the root),
    /// again, beneath `root` and without following symlinks.
    func openDirectory(_ path: String, beneath root: Int32) throws -> Int32 {
        path.isEmpty
            ? try Syscall.openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            : try Syscall.openBeneath(root, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    }

    /// After the moves: every directory that lost or gained entries, or whose entries did not
    /// match, gets a sealed set of what it now holds.
    func resealEntrySets(_ root: Int32) {
        var directories = unsealed
        for d in damaged { directories.append((d.directory, -1)) }
        if let lf = try? crypto.encryptName(Array(Self.lostAndFound.utf8), dirIV: try DirectoryIV.read(from: root)) {
            directories += [("", -1), (BackingNames.backingName(forEncoded: lf).name, -1)]
        }
        var done: Set<String> = []
        for (directory, index) in directories where !done.contains(directory) || index >= 0 {
            done.insert(directory)
            do {
                let fd = try openDirectory(directory, beneath: root)
                defer { Syscall.close(fd) }
                try EntryScan.reseal(fd, iv: try DirectoryIV.read(from: fd), with: crypto)
                if index >= 0 { problems[index].repaired = "the directory's entry set re-sealed to what it holds" }
            } catch let e as Errno where e == .noSuchFileOrDirectory && index < 0 {
                continue  // no lost+found
            } catch {
                if index >= 0 { problems[index].repaired = "not repaired: \(error)" }
            }
        }
    }

    func openLostAndFound(_ root: Int32) throws -> (fd: Int32, iv: [UInt8]) {
        let encoded = try crypto.encryptName(Array(Self.lostAndFound.utf8), dirIV: try DirectoryIV.read(from: root))
        let name = BackingNames.backingName(forEncoded: encoded).name
        if (try? Syscall.lstatat(root, name)) == nil {
            try Syscall.mkdirat(root, name, 0o700)
            let fd = try Syscall.openat(root, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            try DirectoryIV.create(
                in: fd, record: ObjectRecord(kind: .directory, mode: 0o700, uid: geteuid(), gid: getegid()),
                with: crypto)
            return (fd, try DirectoryIV.read(from: fd))
        }
        let fd = try Syscall.openat(root, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        return (fd, try DirectoryIV.read(from: fd))
    }

    func openQuarantine(_ root: Int32) throws -> Int32 {
        if (try? Syscall.lstatat(root, BackingNames.quarantine)) == nil {
            try Syscall.mkdirat(root, BackingNames.quarantine, 0o700)
        }
        return try Syscall.openat(root, BackingNames.quarantine, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    }

    /// Moves `d` into lost+found under a free name derived from `path`; returns that name.
    func moveToLostAndFound(_ d: Damaged, dirfd: Int32, path: String, into lf: (fd: Int32, iv: [UInt8])) throws
        -> String
    {
        let flat = String(path.drop { $0 == "/" }.map { $0 == "/" ? "%" : $0 })
        let base = String(flat.utf8.prefix(240)) ?? "entry"
        for attempt in 0..<100 {
            let name = attempt == 0 ? base : base + "~\(attempt)"
            let encoded = try crypto.encryptName(Array(name.utf8), dirIV: lf.iv)
            let b = BackingNames.backingName(forEncoded: encoded)
            try LongNameSidecar.write(lf.fd, backingName: b.name, encoded: encoded, isLong: b.isLong)
            do {
                try Syscall.renameat2(dirfd, d.backing, lf.fd, b.name, LinuxConstants.renameNoReplace)
            } catch let e as Errno where e == .fileExists {
                continue  // the sidecar written is that entry's own: same name, same content
            } catch {
                LongNameSidecar.remove(lf.fd, backingName: b.name, isLong: b.isLong)
                throw error
            }
            if let sidecar = d.sidecar { _ = try? Syscall.unlinkat(dirfd, sidecar, 0) }
            return name
        }
        throw FormatError.invalidArgument("no free name in /\(Self.lostAndFound) for \(path)")
    }
}
