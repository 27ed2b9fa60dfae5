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
    }

    /// What was looked at.
    public struct Counts: Sendable, Equatable {
        public var directories = 0
        public var files = 0
        public var symlinks = 0
        public var others = 0
        public var blocks: Int64 = 0
        public var bytes: Int64 = 0
    }

    let store: UnlockedStore
    let crypto: CryptoWorker
    public private(set) var problems: [Problem] = []
    public private(set) var counts = Counts()
    /// Called after every object, for a progress display.
    public var progress: ((Counts) -> Void)?

    public init(store: UnlockedStore) throws {
        self.store = store
        crypto = try CryptoWorker(keys: store.keys)
    }

    /// Runs the whole check; the result is in `problems` and `counts`.
    public func run() throws {
        do { _ = try KeyStoreFile(directory: store.directory, keys: store.keys).load() } catch {
            problems.append(Problem(path: BackingNames.keyStore, what: "key store does not open: \(error)"))
        }
        let rootfd = try Syscall.openat(store.directory.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { Syscall.close(rootfd) }
        try checkDirectory(rootfd, path: "", isRoot: true)
    }

    func problem(_ path: String, _ what: String) {
        problems.append(Problem(path: path.isEmpty ? "/" : path, what: what))
    }

    static let rootInternal: Set<String> = [
        BackingNames.config, BackingNames.keyStore, BackingNames.lock, BackingNames.longLinks, BackingNames.dirIV,
    ]

    func checkDirectory(_ dirfd: Int32, path: String, isRoot: Bool) throws {
        counts.directories += 1
        let iv: [UInt8]
        do { iv = try DirectoryIV.read(from: dirfd) } catch {
            problem(path, "directory IV: \(error); no name in this directory can be read")
            return
        }
        var entries: [(name: String, type: UInt8)] = []
        try Syscall.forEachEntry(dirfd) { name, _, type in
            if name != "." && name != ".." { entries.append((name, type)) }
        }
        let names = Set(entries.map(\.name))
        for (backing, _) in entries {
            var encoded = backing
            if BackingNames.isInternal(backing) {
                if backing == BackingNames.dirIV || (isRoot && Self.rootInternal.contains(backing)) { continue }
                if backing.hasSuffix(BackingNames.longNameSuffix) {
                    let entry = String(backing.dropLast(BackingNames.longNameSuffix.count))
                    if !names.contains(entry) { problem(path + "/" + backing, "long-name sidecar without its entry") }
                    continue
                }
                guard BackingNames.isLongName(backing) else {
                    problem(path + "/" + backing, "a file ELASTIC does not know in the backing directory")
                    continue
                }
                switch LongNameSidecar.encodedName(dirfd, backingName: backing) {
                case .success(let full): encoded = full
                case .failure(.missing):
                    problem(path + "/" + backing, "long name without its sidecar")
                    continue
                case .failure(.mismatch):
                    problem(path + "/" + backing, "long-name sidecar does not match its entry")
                    continue
                }
            }
            let plain: String
            do { plain = String(decoding: try crypto.decryptName(encoded, dirIV: iv), as: UTF8.self) } catch {
                problem(path + "/" + backing, "name does not decrypt (not written by this store, or edited)")
                continue
            }
            try checkEntry(dirfd, backing: backing, path: path + "/" + plain)
            progress?(counts)
        }
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
            try checkDirectory(sub, path: path, isRoot: false)
        case S_IFREG:
            counts.files += 1
            checkXattrs(dirfd, backing, path)
            checkFile(dirfd, backing, path, size: Int64(st.st_size))
        case S_IFLNK:
            counts.symlinks += 1
            checkSymlink(dirfd, backing, path)
        default:
            counts.others += 1
            checkXattrs(dirfd, backing, path)
        }
    }

    func checkFile(_ dirfd: Int32, _ backing: String, _ path: String, size: Int64) {
        guard let plain = BlockLayout.plaintextSize(cipher: size) else {
            problem(path, "backing length \(size) is no valid encrypted length (truncated or extended by the host)")
            return
        }
        if size == 0 { return }
        let fd: Int32
        do { fd = try Syscall.openat(dirfd, backing, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) } catch {
            problem(path, "cannot open: \(error)")
            return
        }
        defer { Syscall.close(fd) }
        var header = [UInt8](repeating: 0, count: FileHeader.size)
        guard
            (try? header.withUnsafeMutableBytes { try Syscall.pread(fd, $0.baseAddress!, $0.count, 0) })
                == FileHeader.size,
            let h = try? FileHeader(decoding: header)
        else {
            problem(path, "file header is missing or corrupt")
            return
        }
        let cbs = Int(BlockLayout.cipherBlockSize)
        var cipher = [UInt8](repeating: 0, count: cbs)
        var out = [UInt8](repeating: 0, count: Int(BlockLayout.blockSize))
        let blocks = (plain + BlockLayout.blockSize - 1) / BlockLayout.blockSize
        var failed: [Int64] = []
        for index in 0..<blocks {
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
                                fileID: id, index: index, cipher: c.baseAddress!, length: length, output: o.baseAddress!
                            )
                        }
                    }
                }) != nil
            if !ok { failed.append(index) }
            counts.blocks += 1
        }
        counts.bytes += plain
        if !failed.isEmpty {
            let shown = failed.prefix(8).map(String.init).joined(separator: ", ") + (failed.count > 8 ? ", …" : "")
            problem(path, "\(failed.count) of \(blocks) blocks fail authentication (blocks \(shown))")
        }
    }

    func checkSymlink(_ dirfd: Int32, _ backing: String, _ path: String) {
        do {
            let sealed: [UInt8]
            switch try SymlinkCodec.reference(backingTarget: Syscall.readlinkat(dirfd, backing)) {
            case .inline(let s): sealed = s
            case .long(let id):
                let links = try Syscall.openat(
                    store.directory.fd, BackingNames.longLinks, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                defer { Syscall.close(links) }
                sealed = try Syscall.readFile(links, id, limit: 8192)
            }
            _ = try SymlinkCodec.open(sealed, with: crypto)
        } catch {
            problem(path, "symlink target does not open: \(error)")
        }
    }

    func checkXattrs(_ dirfd: Int32, _ backing: String, _ path: String) {
        guard let fd = try? Syscall.openat(dirfd, backing, LinuxConstants.oPath | O_NOFOLLOW | O_CLOEXEC) else {
            return
        }
        defer { Syscall.close(fd) }
        let proc = "/proc/self/fd/\(fd)"
        guard let list = try? Syscall.listxattr(proc) else { return }
        for raw in list.split(separator: 0) where raw.starts(with: XattrCodec.userPrefix) {
            let backingName = String(decoding: raw, as: UTF8.self)
            guard let name = XattrCodec.name(backingName: raw, with: crypto) else {
                problem(path, "extended attribute \(backingName) does not decrypt")
                continue
            }
            let shown = String(decoding: name, as: UTF8.self)
            guard let sealed = try? Syscall.getxattr(proc, backingName),
                (try? XattrCodec.openValue(sealed, backingName: backingName, with: crypto)) != nil
            else {
                problem(path, "extended attribute \(shown): value does not open")
                continue
            }
        }
    }
}
