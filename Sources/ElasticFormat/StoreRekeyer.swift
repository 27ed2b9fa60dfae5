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
    let slot: (kind: KeySlot.Kind, secret: [UInt8])
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

    public init(source: UnlockedStore, slot: (kind: KeySlot.Kind, secret: [UInt8])) throws {
        self.source = source
        oldCrypto = try CryptoWorker(keys: source.keys)
        newMaster = try SecureBytes.random(count: 32)
        newKeys = try StoreKeys(master: newMaster)
        newCrypto = try CryptoWorker(keys: newKeys)
        self.slot = slot
    }

    /// The source must not be mounted (hold its `StoreLock`). `backing` is the path the store
    /// was opened by.
    public func run(backing: String) throws {
        let path = backing.hasSuffix("/") && backing.count > 1 ? String(backing.dropLast()) : backing
        let slash = path.lastIndex(of: "/")
        let parentPath = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let parent = try Syscall.openDirectory(parentPath)
        // Leftovers of an interrupted rekey.
        try Syscall.forEachEntry(parent.fd) { entry, _, _ in
            if entry.hasPrefix(name + ".rekey-") { Self.removeTree(parent.fd, entry) }
        }
        let tmpName = name + ".rekey-" + Hex.encode(try Random.bytes(6))
        try Syscall.mkdirat(parent.fd, tmpName, 0o700)
        do {
            let dest = OpenDirectory(
                try Syscall.openat(parent.fd, tmpName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))
            let root = try Syscall.openat(source.directory.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            defer { Syscall.close(root) }
            newRootFD = dest.fd
            defer { newRootFD = nil }
            try copyDirectory(from: root, to: dest.fd, path: "")
            try copyKeyStore(to: dest)
            var config = StoreConfig(storeID: try Random.bytes(16), slots: [])
            config.slots = [try config.makeSlot(kind: slot.kind, secret: slot.secret, master: newMaster)]
            try Store.write(config, keys: newKeys, directory: dest)
            try Syscall.syncfs(dest.fd)
            // The moment of change: BACKING becomes the new store in one step.
            try Syscall.renameat2(parent.fd, name, parent.fd, tmpName, LinuxConstants.renameExchange)
            try Syscall.fsync(parent.fd, dataOnly: false)
        } catch {
            Self.removeTree(parent.fd, tmpName)
            throw error
        }
        Self.removeTree(parent.fd, tmpName)  // now the old store
    }

    func copyKeyStore(to dest: OpenDirectory) throws {
        guard (try? Syscall.lstatat(source.directory.fd, BackingNames.keyStore)) != nil else { return }
        let keys = try KeyStoreFile(directory: source.directory, keys: source.keys).load()
        try KeyStoreFile(directory: dest, keys: newKeys).save(keys)
    }

    func copyDirectory(from src: Int32, to dst: Int32, path: String) throws {
        counts.directories += 1
        let oldIV = try DirectoryIV.read(from: src)
        try DirectoryIV.create(in: dst)
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
            try copyFile(src, name, dst, newName, size: Int64(st.st_size))
        case S_IFLNK:
            let old: [UInt8]
            switch try SymlinkCodec.reference(backingTarget: Syscall.readlinkat(src, name)) {
            case .inline(let sealed): old = sealed
            case .long(let id):
                let links = try Syscall.openat(
                    source.directory.fd, BackingNames.longLinks, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                defer { Syscall.close(links) }
                old = try Syscall.readFile(links, id, limit: 8192)
            }
            let stored = try SymlinkCodec.seal(try SymlinkCodec.open(old, with: oldCrypto), with: newCrypto)
            if case .long(let id, let sealed) = stored {
                let links = try Self.longLinksDirectory(try newRoot())
                defer { Syscall.close(links) }
                try Syscall.writeFileAtomically(links, id, sealed, mode: 0o400)
            }
            try Syscall.symlinkat(stored.backingTarget, dst, newName)
        default:
            try Syscall.mknodat(dst, newName, st.st_mode & (S_IFMT | 0o7777), st.st_rdev)
        }
        try copyXattrs(src, name, dst, newName, type: type)
        try Syscall.fchownat(dst, newName, st.st_uid, st.st_gid)
        if type != S_IFLNK {
            let fd = try Syscall.openat(dst, newName, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC)
            defer { Syscall.close(fd) }
            try Syscall.chmod(fd: fd, st.st_mode & 0o7777)
        }
        try Syscall.utimensat(dst, newName, (st.st_atim, st.st_mtim))
        if type != S_IFDIR && st.st_nlink > 1 { linked[FileIdentity(st)] = path }
    }

    /// The new store's root (the first destination directory opened).
    var newRootFD: Int32?
    func newRoot() throws -> Int32 {
        guard let fd = newRootFD else { throw FormatError.invalidArgument("no destination root") }
        return fd
    }

    static func longLinksDirectory(_ root: Int32) throws -> Int32 {
        if (try? Syscall.lstatat(root, BackingNames.longLinks)) == nil {
            try Syscall.mkdirat(root, BackingNames.longLinks, 0o700)
        }
        return try Syscall.openat(root, BackingNames.longLinks, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    }

    func copyFile(_ src: Int32, _ name: String, _ dst: Int32, _ newName: String, size: Int64) throws {
        guard let plain = BlockLayout.plaintextSize(cipher: size) else {
            throw FormatError.corruptLength(size)
        }
        let out = try Syscall.openat(dst, newName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        defer { Syscall.close(out) }
        if plain == 0 && size == 0 { return }
        let input = try Syscall.openat(src, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        defer { Syscall.close(input) }
        var header = [UInt8](repeating: 0, count: FileHeader.size)
        guard
            try header.withUnsafeMutableBytes({ try Syscall.pread(input, $0.baseAddress!, $0.count, 0) })
                == FileHeader.size
        else { throw FormatError.corruptHeader("short header") }
        let oldID = try FileHeader(decoding: header).fileID
        let newHeader = try FileHeader.random()
        try newHeader.encoded.withUnsafeBytes { _ = try Syscall.pwrite(out, $0.baseAddress!, $0.count, 0) }
        let bs = Int(BlockLayout.blockSize), ov = Int(BlockLayout.overhead)
        var cipher = [UInt8](repeating: 0, count: bs + ov)
        var text = [UInt8](repeating: 0, count: bs)
        var sealed = [UInt8](repeating: 0, count: bs + ov)
        let blocks = (plain + BlockLayout.blockSize - 1) / BlockLayout.blockSize
        // The copy has the source's length and its holes: only blocks holding data are written.
        try Syscall.ftruncate(out, BlockLayout.ciphertextSize(plain: plain))
        var index: Int64 = 0
        while index < blocks {
            guard let next = try BlockLayout.nextDataBlock(input, from: index), next < blocks else { break }
            index = next
            defer { index += 1 }
            let length = Int(BlockLayout.plaintextLength(block: index, fileSize: plain))
            let offset = BlockLayout.cipherOffset(block: index)
            let got = try cipher.withUnsafeMutableBytes {
                try Syscall.pread(input, $0.baseAddress!, length + ov, offset)
            }
            guard got == length + ov else { throw FormatError.corruptLength(Int64(got)) }
            // An all-zero cipher block is a hole (written as zeros where the filesystem had to):
            // it stays one.
            if cipher.withUnsafeBytes({ CryptoWorker.isAllZero($0.baseAddress!, length + ov) }) { continue }
            _ = try oldID.withUnsafeBytes { id in
                try cipher.withUnsafeBytes { c in
                    try text.withUnsafeMutableBytes { t in
                        try oldCrypto.openBlock(
                            fileID: id, index: index, cipher: c.baseAddress!, length: length + ov,
                            output: t.baseAddress!)
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
            try sealed.withUnsafeBytes { _ = try Syscall.pwrite(out, $0.baseAddress!, n, offset) }
        }
        counts.bytes += plain
    }

    func copyXattrs(_ src: Int32, _ name: String, _ dst: Int32, _ newName: String, type: mode_t) throws {
        guard type == S_IFREG || type == S_IFDIR else { return }
        let sfd = try Syscall.openat(src, name, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC)
        defer { Syscall.close(sfd) }
        let dfd = try Syscall.openat(dst, newName, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC)
        defer { Syscall.close(dfd) }
        let from = "/proc/self/fd/\(sfd)", to = "/proc/self/fd/\(dfd)"
        for raw in try Syscall.listxattr(from).split(separator: 0) where raw.starts(with: XattrCodec.userPrefix) {
            let oldName = String(decoding: raw, as: UTF8.self)
            guard let plainName = XattrCodec.name(backingName: raw, with: oldCrypto),
                let newXattr = try XattrCodec.backingName(plainName, with: newCrypto)
            else { throw FormatError.corruptMetadata("extended attribute \(oldName)") }
            let value = try XattrCodec.openValue(
                try Syscall.getxattr(from, oldName), backingName: oldName, with: oldCrypto)
            try Syscall.setxattr(
                to, newXattr, try XattrCodec.sealValue(value, backingName: newXattr, with: newCrypto), 0)
        }
    }

    /// Removes a directory tree under `parent` (best effort; used on the old or the partial copy).
    static func removeTree(_ parent: Int32, _ name: String) {
        guard let fd = try? Syscall.openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) else {
            _ = try? Syscall.unlinkat(parent, name, 0)
            return
        }
        var entries: [(String, UInt8)] = []
        try? Syscall.forEachEntry(fd) { n, _, t in if n != "." && n != ".." { entries.append((n, t)) } }
        for (n, t) in entries {
            if t == UInt8(DT_DIR) { removeTree(fd, n) } else { _ = try? Syscall.unlinkat(fd, n, 0) }
        }
        Syscall.close(fd)
        _ = try? Syscall.unlinkat(parent, name, AT_REMOVEDIR)
    }
}
