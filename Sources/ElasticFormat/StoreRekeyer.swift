import ElasticCrypto
import ElasticSystem
import Glibc

/// Replaces a store's master key: writes the whole store again under a new master key, next to
/// BACKING (`<BACKING>.rekey-<random>`, same parent, so the same filesystem), then exchanges the
/// two directories with one `renameat2(RENAME_EXCHANGE)` and removes the old one. A crash
/// before the exchange leaves BACKING as it was (the half-written copy is removed by the next
/// rekey); after it, BACKING is the new store. The new store has one key slot: the one given
/// (the other slots, and every copy of the old master key, open nothing of it). Needs as much
/// free space as the store takes. Every name, block, symlink target, extended attribute and
/// the key store is decrypted with the old keys and sealed with the new ones; owners, modes,
/// times and hard links are kept.
public final class StoreRekeyer {
    /// What was written, for the progress display and the summary.
    public struct Counts: Sendable, Equatable {
        public var directories = 0
        public var files = 0
        public var bytes: Int64 = 0
    }

    let source: UnlockedStore
    let oldCrypto: CryptoWorker
    let newKeys: StoreKeys
    let newCrypto: CryptoWorker
    let newMaster: SecureBytes
    /// The one slot of a rekeyed store; nil for a migration, which keeps the master key and
    /// every slot.
    let slot: (kind: KeySlot.Kind, secret: [UInt8])?
    /// The source's store format version (1: `elastic migrate`).
    let sourceVersion: UInt16
    public private(set) var counts = Counts()
    public var progress: ((Counts) -> Void)?
    /// Source (dev, ino) of files with several names -> the path (from the new root) where the
    /// first name went. Directories are open only while being copied, so descriptors stay
    /// bounded by the tree's depth.
    var linked: [FileIdentity: String] = [:]

    /// A backing object's identity (device, inode).
    struct FileIdentity: Hashable {
        let dev: UInt64
        let ino: UInt64
        init(_ st: stat) {
            dev = UInt64(st.st_dev)
            ino = UInt64(st.st_ino)
        }
    }

    /// A rekey: the store written again under a new master key, with `slot` as its one slot.
    public init(source: UnlockedStore, slot: (kind: KeySlot.Kind, secret: [UInt8])) throws {
        guard source.config.version == StoreConfig.currentVersion else { throw FormatError.needsMigration("") }
        self.source = source
        oldCrypto = try CryptoWorker(keys: source.keys)
        newMaster = try SecureBytes.random(count: 32)
        newKeys = try StoreKeys(master: newMaster)
        newCrypto = try CryptoWorker(keys: newKeys, session: Self.copySession(source))
        self.slot = slot
        sourceVersion = source.config.version
    }

    /// A migration (`elastic migrate`): a store of an older format written again in the
    /// current one, with the same master key and key slots.
    public init(migrating source: UnlockedStore) throws {
        guard let master = source.master else { throw FormatError.invalidArgument("the master key is needed") }
        guard source.config.version < StoreConfig.currentVersion else {
            throw FormatError.invalidArgument(
                "the store is in the current format (version \(StoreConfig.currentVersion)) already")
        }
        self.source = source
        oldCrypto = try CryptoWorker(keys: source.keys)
        newMaster = master
        newKeys = source.keys
        newCrypto = try CryptoWorker(keys: newKeys, session: Self.copySession(source))
        slot = nil
        sourceVersion = source.config.version
    }

    /// The session the copy is written in: the one after the source's last (1 for a store
    /// without a root, made before sessions).
    static func copySession(_ source: UnlockedStore) -> UInt64 {
        ((try? source.root.read())??.sessions.last ?? 0) + 1
    }

    /// Why a rekey will not start (nothing was changed).
    public enum Refusal: Error, CustomStringConvertible {
        case notTheStore(String)
        case quarantineNotEmpty
        public var description: String {
            switch self {
            case .notTheStore(let why): return "cannot rekey in place: \(why)"
            case .quarantineNotEmpty:
                return
                    "\(BackingNames.quarantine) in BACKING holds what elastic fsck --repair moved aside; a rekey would drop it: look at it, empty it, then rekey"
            }
        }
    }

    /// Names of rekey copies: `<name>.rekey-` and 12 lowercase hex digits.
    static func isRekeyCopy(_ entry: String, of name: String) -> Bool {
        guard entry.hasPrefix(name + ".rekey-") else { return false }
        let suffix = entry.utf8.dropFirst(name.utf8.count + 7)
        return suffix.count == 12 && suffix.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// `name` in `parent` must be the very directory the store was opened at, on the same
    /// filesystem as `parent` (not a symlink, not a mount point), or the exchange would miss it.
    func checkPlace(_ parent: Int32, _ name: String) throws {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/") else {
            throw Refusal.notTheStore("give BACKING as a path that ends in its own name")
        }
        let here = try Syscall.lstatat(parent, name)
        let store = try Syscall.fstat(source.directory.fd)
        let up = try Syscall.fstat(parent)
        guard here.st_mode & S_IFMT == S_IFDIR, here.st_dev == store.st_dev, here.st_ino == store.st_ino else {
            throw Refusal.notTheStore(
                "\(name) is not the directory the store was opened at (a symlink?): give the real path")
        }
        guard up.st_dev == store.st_dev else {
            throw Refusal.notTheStore(
                "BACKING is a mount point; its parent is another filesystem, so the new copy cannot replace it in one step"
            )
        }
    }

    /// The source must not be mounted (hold its `StoreLock`). `backing` is the path the store
    /// was opened by.
    public func run(backing: String) throws {
        var path = backing
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let slash = path.lastIndex(of: "/")
        let parentPath = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let parent = try Syscall.openDirectory(parentPath)
        try checkPlace(parent.fd, name)
        // Never rekey a rolled-back store: the root must agree with its witness.
        try source.upgradeToRoot()
        _ = try source.root.bindWitness(requested: nil, readOnly: false)
        // Writes a crash interrupted are undone first, as a mount would, so they are copied
        // as the files' records name them.
        _ = try UndoJournal.recover(rootfd: source.directory.fd, with: oldCrypto)
        if let q = try? Syscall.openat(
            source.directory.fd, BackingNames.quarantine, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        {
            var empty = true
            try? Syscall.forEachEntry(q) { n, _, _ in if n != "." && n != ".." { empty = false } }
            Syscall.close(q)
            if !empty { throw Refusal.quarantineNotEmpty }
        }
        // Slot changes (`elastic slot add/remove`) lock the directory itself: not during a rekey.
        guard flock(source.directory.fd, LOCK_EX) == 0 else { throw Errno(rawValue: errno) }
        defer { flock(source.directory.fd, LOCK_UN) }
        // Leftovers of an interrupted rekey.
        var leftovers: [String] = []
        try Syscall.forEachEntry(parent.fd) { entry, _, _ in
            if Self.isRekeyCopy(entry, of: name) { leftovers.append(entry) }
        }
        for entry in leftovers
        where (try? Syscall.openat(parent.fd, entry + "/" + BackingNames.dirIV, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)).map(
            {
                Syscall.close($0)
                return true
            }) ?? false
        {
            try Self.removeTree(parent.fd, entry)
        }
        let tmpName = name + ".rekey-" + Hex.encode(try Random.bytes(6))
        try Syscall.mkdirat(parent.fd, tmpName, 0o700)
        var exchanged = false
        var successor: StoreRoot? = nil
        do {
            let dest = OpenDirectory(
                try Syscall.openat(parent.fd, tmpName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))
            let root = try Syscall.openat(source.directory.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            defer { Syscall.close(root) }
            newRootFD = dest.fd
            defer { newRootFD = nil }
            try copyDirectory(from: root, to: dest.fd, path: "")
            try copyRootAttributes(from: root, to: dest.fd)
            let keyStoreBytes = try copyKeyStore(to: dest)
            // The same store ID: the copy succeeds this store (its root continues this one's
            // counter and witness), under keys that share nothing with the old ones.
            var config = StoreConfig(storeID: source.config.storeID, slots: source.config.slots)
            config.features = source.config.features.union(.storeRoot)
            if let slot {
                config.slots = [try config.makeSlot(kind: slot.kind, secret: slot.secret, master: newMaster)]
            }
            let configBytes = try config.encode(keys: newKeys)
            successor = try source.root.successor(
                configBytes: configBytes, keyStoreBytes: keyStoreBytes, session: newCrypto.session)
            try StoreRootKeeper(directory: dest, storeID: config.storeID, keys: newKeys).write(successor: successor!)
            try Syscall.writeFileAtomically(dest.fd, BackingNames.config, configBytes, mode: 0o400)
            try Syscall.syncfs(dest.fd)
            // The moment of change: BACKING becomes the new store in one step.
            try checkPlace(parent.fd, name)
            try Syscall.renameat2(parent.fd, name, parent.fd, tmpName, LinuxConstants.renameExchange)
            exchanged = true
            try Syscall.fsync(parent.fd, dataOnly: false)
        } catch {
            // Before the exchange the copy is ours to drop; after it, `tmpName` is the old store.
            if !exchanged { try? Self.removeTree(parent.fd, tmpName) }
            if !exchanged { throw error }
        }
        // The witness moves: from now on the old store is a rollback. (A crash before this
        // leaves the new root one ahead of the witness, which the next mount completes.)
        if let value = successor?.witness?.value { try source.root.advanceWitness(to: value) }
        // The old store: its configuration first, so nothing can open it while it goes.
        _ = try? Syscall.unlinkat(parent.fd, tmpName + "/" + BackingNames.config, 0)
        do { try Self.removeTree(parent.fd, tmpName) } catch {
            throw FormatError.invalidArgument(
                "the store was rekeyed, but the old copy \(parentPath)/\(tmpName) could not be removed (\(error)); it holds the old ciphertext: remove it"
            )
        }
    }

    /// The root directory's owner, mode, times and extended attributes.
    func copyRootAttributes(from src: Int32, to dst: Int32) throws {
        let st = try Syscall.fstat(src)
        try resealXattrs(from: src, to: dst)
        guard fchown(dst, st.st_uid, st.st_gid) == 0, fchmod(dst, st.st_mode & 0o7777) == 0 else {
            throw Errno(rawValue: errno)
        }
        var times = [st.st_atim, st.st_mtim]
        guard futimens(dst, &times) == 0 else { throw Errno(rawValue: errno) }
    }

    /// Re-seals the key store into `dest`; returns the new file's contents (nil: there is none).
    func copyKeyStore(to dest: OpenDirectory) throws -> [UInt8]? {
        guard (try? Syscall.lstatat(source.directory.fd, BackingNames.keyStore)) != nil else { return nil }
        let keys = try source.keyStoreFile().load()
        try KeyStoreFile(directory: dest, keys: newKeys, root: nil).save(keys)
        return try Syscall.readFile(dest.fd, BackingNames.keyStore, limit: 16 << 20)
    }

    func copyDirectory(from src: Int32, to dst: Int32, path: String) throws {
        counts.directories += 1
        let oldIV: [UInt8]
        let record: ObjectRecord
        if sourceVersion == 1 {
            let st = try Syscall.fstat(src)
            (oldIV, record) = (
                try DirectoryIV.readV1(from: src),
                ObjectRecord(kind: .directory, mode: st.st_mode, uid: st.st_uid, gid: st.st_gid)
            )
        } else {
            (oldIV, record) = try DirectoryIV.readRecord(from: src, with: oldCrypto)
        }
        var sealed = record
        sealed.storeRoot = path.isEmpty  // the copy's root is the store's root; no other directory
        try DirectoryIV.create(in: dst, record: sealed, with: newCrypto)
        let newIV = try DirectoryIV.read(from: dst)
        var entries: [String] = []
        try Syscall.forEachEntry(src) { name, _, _ in if name != "." && name != ".." { entries.append(name) } }
        for backing in entries {
            var encoded = backing
            if BackingNames.isInternal(backing) {
                guard BackingNames.isLongName(backing) else { continue }  // IV, config, keys, sidecars, links: rebuilt
                guard case .success(let full) = LongNameSidecar.encodedName(src, backingName: backing) else {
                    throw FormatError.corruptMetadata(
                        "long name \(backing) without a valid sidecar: run elastic fsck --repair first")
                }
                encoded = full
            }
            let plain = try oldCrypto.decryptName(encoded, dirIV: oldIV)
            let newEncoded = try newCrypto.encryptName(plain, dirIV: newIV)
            let b = BackingNames.backingName(forEncoded: newEncoded)
            try LongNameSidecar.write(dst, backingName: b.name, encoded: newEncoded, isLong: b.isLong)
            try copyEntry(src, backing, dst, b.name, path: path.isEmpty ? b.name : path + "/" + b.name)
            progress?(counts)
        }
        try EntryScan.reseal(dst, iv: newIV, with: newCrypto)
    }

    func copyEntry(_ src: Int32, _ name: String, _ dst: Int32, _ newName: String, path: String) throws {
        let st = try Syscall.lstatat(src, name)
        let type = st.st_mode & S_IFMT
        if type != S_IFDIR && st.st_nlink > 1, let first = linked[FileIdentity(st)] {
            let fd = try Syscall.openat(try newRoot(), first, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC)
            defer { Syscall.close(fd) }
            try Syscall.linkat(fd: fd, dst, newName)
            return
        }
        switch type {
        case S_IFDIR:
            try Syscall.mkdirat(dst, newName, 0o700)
            let s = try Syscall.openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            defer { Syscall.close(s) }
            let d = try Syscall.openat(dst, newName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            defer { Syscall.close(d) }
            try copyDirectory(from: s, to: d, path: path)
        case S_IFREG:
            counts.files += 1
            try copyFile(src, name, dst, newName, listed: st)
        case S_IFLNK:
            // A v1 symlink (a backing symlink): v2 keeps it as a regular file whose record says
            // so and whose one block holds the target.
            guard sourceVersion == 1 else {
                throw FormatError.corruptMetadata("\(path): a backing symlink, which ELASTIC v2 never makes")
            }
            let old: [UInt8]
            switch try SymlinkCodec.reference(backingTarget: Syscall.readlinkat(src, name)) {
            case .inline(let sealed): old = sealed
            case .long(let id):
                let links = try Syscall.openat(
                    source.directory.fd, BackingNames.longLinks, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                defer { Syscall.close(links) }
                old = try Syscall.readFile(links, id, limit: 8192)
            }
            let target = try SymlinkCodec.open(old, with: oldCrypto)
            guard !target.isEmpty, target.count < Int(BlockLayout.blockSize) else {
                throw FormatError.corruptMetadata("\(path): symlink target length")
            }
            var record = ObjectRecord(
                kind: .symlink, mode: 0o777, uid: st.st_uid, gid: st.st_gid, size: Int64(target.count),
                times: st.st_mtim)
            record.ctime = st.st_ctim
            try writeObject(dst, newName, record, content: target)
        default:
            // A v1 special file (a backing node): v2 keeps it as a regular file with its record.
            guard sourceVersion == 1, let kind = ObjectRecord.Kind(fileType: st.st_mode) else {
                throw FormatError.corruptMetadata("\(path): a backing object of a type ELASTIC never makes")
            }
            var record = ObjectRecord(
                kind: kind, mode: st.st_mode, uid: st.st_uid, gid: st.st_gid, rdev: UInt64(st.st_rdev),
                times: st.st_mtim)
            record.ctime = st.st_ctim
            try writeObject(dst, newName, record, content: [])
        }
        try copyXattrs(src, name, dst, newName, type: type)
        // Directories mirror their owner and mode on the backing directory (what is served is
        // their record); every other object is a backing file of mode 0600.
        if type == S_IFDIR { try Syscall.fchownat(dst, newName, st.st_uid, st.st_gid) }
        if type == S_IFDIR {
            let fd = try Syscall.openat(dst, newName, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC)
            defer { Syscall.close(fd) }
            try Syscall.chmod(fd: fd, st.st_mode & 0o7777)
        }
        try Syscall.utimensat(dst, newName, (st.st_atim, st.st_mtim))
        if type != S_IFDIR && st.st_nlink > 1 { linked[FileIdentity(st)] = path }
    }

    /// Creates the v2 backing file `name` in `dst`: header with `record`, then `content` (at
    /// most one block).
    func writeObject(_ dst: Int32, _ name: String, _ record: ObjectRecord, content: [UInt8]) throws {
        let out = try Syscall.openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        defer { Syscall.close(out) }
        var header = try FileHeader.new(record)
        guard !content.isEmpty else {
            try Syscall.pwrite(out, try header.encode(with: newCrypto), at: 0)
            return
        }
        var sealed = [UInt8](repeating: 0, count: content.count + Int(BlockLayout.overhead))
        let n = try header.fileID.withUnsafeBytes { id in
            try content.withUnsafeBytes { c in
                try sealed.withUnsafeMutableBytes { s in
                    try newCrypto.sealBlocks(
                        fileID: id, first: 0, plaintext: c.baseAddress!, count: content.count, output: s.baseAddress!)
                }
            }
        }
        try sealed.withUnsafeBytes {
            _ = try Syscall.pwrite(out, $0.baseAddress!, n, BlockLayout.cipherOffset(block: 0))
            var tag = BlockTags.tag(ofSealed: $0.baseAddress!, length: n)
            let tags = BlockTags()
            try tags.set(first: 0, tags: &tag, count: 1, crypto: newCrypto)
            header.record.content = tags.digest
        }
        try Syscall.pwrite(out, try header.encode(with: newCrypto), at: 0)
    }

    /// The new store's root (the first destination directory opened).
    var newRootFD: Int32?
    func newRoot() throws -> Int32 {
        guard let fd = newRootFD else { throw FormatError.invalidArgument("no destination root") }
        return fd
    }

    /// Copies a regular backing file (v2: a regular or special file; v1: a regular file) into
    /// a v2 file under the new keys, holes kept.
    func copyFile(_ src: Int32, _ name: String, _ dst: Int32, _ newName: String, listed: stat) throws {
        let size = Int64(listed.st_size)
        let out = try Syscall.openat(dst, newName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        defer { Syscall.close(out) }
        let input = try Syscall.openat(src, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        defer { Syscall.close(input) }
        // What was opened is the regular file that was listed, not something swapped in since.
        let opened = try Syscall.fstat(input)
        guard opened.st_mode & S_IFMT == S_IFREG, FileIdentity(opened) == FileIdentity(listed) else {
            throw FormatError.corruptMetadata("\(name) changed while being copied")
        }
        let sourceHeaderSize = Int64(sourceVersion == 1 ? FileHeader.v1Size : FileHeader.size)
        var header = [UInt8](repeating: 0, count: Int(sourceHeaderSize))
        let oldID: [UInt8]
        var record: ObjectRecord
        /// A v2 source's block tags, checked against its record: each block copied must carry its.
        var sourceTags: BlockTags?
        if sourceVersion == 1 {
            guard let plain = BlockLayout.v1PlaintextSize(cipher: size) else { throw FormatError.corruptLength(size) }
            record = ObjectRecord(
                kind: .regular, mode: listed.st_mode, uid: listed.st_uid, gid: listed.st_gid, size: plain,
                times: listed.st_mtim)
            record.ctime = listed.st_ctim
            if size == 0 {
                oldID = []
            } else {
                guard
                    try header.withUnsafeMutableBytes({ try Syscall.pread(input, $0.baseAddress!, $0.count, 0) })
                        == header.count
                else { throw FormatError.corruptHeader("short header") }
                oldID = try FileHeader.v1FileID(header)
            }
        } else {
            guard
                try header.withUnsafeMutableBytes({ try Syscall.pread(input, $0.baseAddress!, $0.count, 0) })
                    == header.count
            else { throw FormatError.corruptHeader("short header") }
            let h = try FileHeader(decoding: header, with: oldCrypto)
            guard size >= BlockLayout.ciphertextSize(plain: h.record.size) else {
                throw FormatError.corruptLength(size)
            }
            // Every block must be the version the record names: nothing the host put back is
            // sealed again under the new key.
            let tags = try BlockTags.load(fd: input, size: h.record.size, crypto: oldCrypto)
            guard tags.digest == h.record.content else {
                throw FormatError.integrity("\(name): its blocks are not the versions its record names (run fsck)")
            }
            (oldID, record, sourceTags) = (h.fileID, h.record, tags)
        }
        let plain = record.size
        var newHeader = try FileHeader.new(record)
        let newTags = BlockTags()
        try newHeader.encode(with: newCrypto).withUnsafeBytes {
            _ = try Syscall.pwrite(out, $0.baseAddress!, $0.count, 0)
        }
        if plain == 0 { return }
        let bs = Int(BlockLayout.blockSize), ov = Int(BlockLayout.overhead)
        var cipher = [UInt8](repeating: 0, count: bs + ov)
        var text = [UInt8](repeating: 0, count: bs)
        var sealed = [UInt8](repeating: 0, count: bs + ov)
        let blocks = (plain + BlockLayout.blockSize - 1) / BlockLayout.blockSize
        // The copy has the source's length and its holes: only blocks holding data are written.
        try Syscall.ftruncate(out, BlockLayout.ciphertextSize(plain: plain))
        var index: Int64 = 0
        var sawHole = false
        while index < blocks {
            // Holes are skipped only where the source allows them (every v1 file; a v2 file whose
            // record says so); the copy's record then allows them too.
            let mayHaveHoles = sourceVersion == 1 || record.sparse
            guard
                let next = mayHaveHoles
                    ? try BlockLayout.nextDataBlock(input, from: index, headerSize: sourceHeaderSize) : index,
                next < blocks
            else {
                sawHole = true
                break
            }
            if next > index { sawHole = true }
            index = next
            defer { index += 1 }
            let length = Int(BlockLayout.plaintextLength(block: index, fileSize: plain))
            let offset = BlockLayout.cipherOffset(block: index)
            let got = try cipher.withUnsafeMutableBytes {
                try Syscall.pread(
                    input, $0.baseAddress!, length + ov,
                    BlockLayout.cipherOffset(block: index, headerSize: sourceHeaderSize))
            }
            guard got == length + ov else { throw FormatError.corruptLength(Int64(got)) }
            // The block read now must be the one checked (the host may swap it meanwhile).
            if let sourceTags,
                cipher.withUnsafeBytes({ BlockTags.tag(ofSealed: $0.baseAddress!, length: length + ov) })
                    != sourceTags.tag(index)
            {
                throw FormatError.integrity("\(name): block \(index) changed while being copied")
            }
            // An all-zero cipher block is a hole (written as zeros where the filesystem had to):
            // it stays one.
            if mayHaveHoles && cipher.withUnsafeBytes({ CryptoWorker.isAllZero($0.baseAddress!, length + ov) }) {
                sawHole = true
                continue
            }
            do {
                _ = try oldID.withUnsafeBytes { id in
                    try cipher.withUnsafeBytes { c in
                        try text.withUnsafeMutableBytes { t in
                            try oldCrypto.openBlock(
                                fileID: id, index: index, cipher: c.baseAddress!, length: length + ov,
                                output: t.baseAddress!, holes: mayHaveHoles)
                        }
                    }
                }
            }
            let n = try newHeader.fileID.withUnsafeBytes { id in
                try text.withUnsafeBytes { t in
                    try sealed.withUnsafeMutableBytes { s in
                        try newCrypto.sealBlocks(
                            fileID: id, first: index, plaintext: t.baseAddress!, count: length, output: s.baseAddress!)
                    }
                }
            }
            try sealed.withUnsafeBytes {
                _ = try Syscall.pwrite(out, $0.baseAddress!, n, offset)
                var tag = BlockTags.tag(ofSealed: $0.baseAddress!, length: n)
                try newTags.set(first: index, tags: &tag, count: 1, crypto: newCrypto)
            }
        }
        counts.bytes += plain
        // The record names the copy's blocks; a v1 file with holes: it must allow them.
        newHeader.record.content = newTags.digest
        if sawHole { newHeader.record.sparse = true }
        try Syscall.pwrite(out, try newHeader.sealedRecord(with: newCrypto), at: FileHeader.recordOffset)
    }

    func copyXattrs(_ src: Int32, _ name: String, _ dst: Int32, _ newName: String, type: mode_t) throws {
        guard type == S_IFREG || type == S_IFDIR else { return }
        let sfd = try Syscall.openat(src, name, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC)
        defer { Syscall.close(sfd) }
        let dfd = try Syscall.openat(dst, newName, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC)
        defer { Syscall.close(dfd) }
        try resealXattrs(from: sfd, to: dfd)
    }

    /// Every `user.*` attribute of `src`, decrypted with the old keys, onto `dst` with the new;
    /// `dst`'s record then names them. A v2 source's attributes must be the set its record names.
    func resealXattrs(from src: Int32, to dst: Int32) throws {
        let from = "/proc/self/fd/\(src)", to = "/proc/self/fd/\(dst)"
        // The values copied must be the ones checked: each read again must carry its tag.
        let checked = try XattrSet.read(path: from, with: oldCrypto)
        if sourceVersion > 1,
            !checked.isNamed(by: try BackingRecord.read(src, with: oldCrypto))
        {
            throw FormatError.integrity("extended attributes are not the set the object's record names")
        }
        for raw in try Syscall.listxattr(from).split(separator: 0) where raw.starts(with: XattrCodec.userPrefix) {
            let oldName = String(decoding: raw, as: UTF8.self)
            guard let plainName = XattrCodec.name(backingName: raw, with: oldCrypto),
                let newXattr = try XattrCodec.backingName(plainName, with: newCrypto)
            else { throw FormatError.corruptMetadata("extended attribute \(oldName)") }
            let sealed = try Syscall.getxattr(from, oldName)
            guard sealed.count >= 16, XattrSet.tag(ofSealed: sealed) == checked.tags[oldName] else {
                throw FormatError.integrity("an extended attribute changed while being copied")
            }
            let value = try XattrCodec.openValue(sealed, backingName: oldName, with: oldCrypto)
            try Syscall.setxattr(
                to, newXattr, try XattrCodec.sealValue(value, backingName: newXattr, with: newCrypto), 0)
        }
        let digest = try XattrSet.read(path: to, with: newCrypto).digest
        try BackingRecord.update(dst, with: newCrypto) {
            $0.xattrs = digest
            $0.xattrsChanging = false
            $0.xattrsPending = .zero
        }
    }

    /// Removes a directory tree under `parent` without following symlinks; throws the first
    /// failure (after trying everything).
    static func removeTree(_ parent: Int32, _ name: String) throws {
        guard let fd = try? Syscall.openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) else {
            try Syscall.unlinkat(parent, name, 0)
            return
        }
        var entries: [String] = []
        var failure: (any Error)? = nil
        do { try Syscall.forEachEntry(fd) { n, _, _ in if n != "." && n != ".." { entries.append(n) } } } catch {
            failure = error
        }
        for n in entries {
            do {
                let st = try Syscall.lstatat(fd, n)
                if st.st_mode & S_IFMT == S_IFDIR { try removeTree(fd, n) } else { try Syscall.unlinkat(fd, n, 0) }
            } catch {
                if failure == nil { failure = error }
            }
        }
        Syscall.close(fd)
        do { try Syscall.unlinkat(parent, name, AT_REMOVEDIR) } catch { if failure == nil { failure = error } }
        if let failure { throw failure }
    }
}
