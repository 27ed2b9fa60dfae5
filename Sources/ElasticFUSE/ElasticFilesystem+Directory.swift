import ElasticFormat
import ElasticSystem
import Glibc

/// An open directory: its backing descriptor and, from the first readdir on, a snapshot of its
/// decrypted entries (offsets are indexes into it, so seekdir/telldir are stable).
final class DirectoryHandle {
    let fd: Int32
    var entries: [(name: [UInt8], type: UInt8, backing: String)]? = nil
    init(fd: Int32) { self.fd = fd }
    deinit { Syscall.close(fd) }
}

extension ElasticFilesystem {
    /// Calls `body` for every entry of a backing directory (names as the backing stores them).
    func forEachBackingEntry(_ dirfd: Int32, _ body: (String, UInt64, UInt8) throws -> Void) throws {
        try Syscall.forEachEntry(dirfd, body)
    }

    func opendir(_ ino: UInt64) throws -> DirectoryHandle {
        let i = try inode(ino)
        return DirectoryHandle(
            fd: try withHandle(i) { d in try opening { try Syscall.reopen(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } })
    }

    /// Decrypted entries of a directory, which must be exactly those of its sealed entry set;
    /// entries whose names do not decrypt are skipped and logged.
    func listing(_ dir: Inode, fd: Int32) throws -> [(name: [UInt8], type: UInt8, backing: String)] {
        try withEntries(dir, exclusive: false) { entries in
            var listed = 0
            let out = try listingNames(dir, fd: fd) { backing in
                guard entries.ids[backing] != nil else {
                    throw refusedEntry(dir, backing, "an entry not in the directory's sealed set")
                }
                listed += 1
            }
            guard listed == entries.ids.count else {
                throw refusedEntry(
                    dir, "",
                    "\(entries.ids.count - listed) entries of the directory's sealed set are missing from BACKING")
            }
            return out
        }
    }

    /// The entries of `dir` whose names decrypt; `check` sees every entry's backing name first.
    private func listingNames(_ dir: Inode, fd: Int32, check: (String) throws -> Void) throws -> [(
        name: [UInt8], type: UInt8, backing: String
    )] {
        let iv = try dirIV(dir)
        let crypto = try worker().crypto
        var out: [(name: [UInt8], type: UInt8, backing: String)] = [
            (Array(".".utf8), UInt8(DT_DIR), "."), (Array("..".utf8), UInt8(DT_DIR), ".."),
        ]
        try forEachBackingEntry(fd) { name, _, type in
            var encoded = name
            if BackingNames.isInternal(name) && !BackingNames.isLongName(name) { return }
            try check(name)
            if BackingNames.isInternal(name) {
                switch LongNameSidecar.encodedName(fd, backingName: name) {
                case .success(let full):
                    encoded = full
                case .failure(.missing):
                    logger.warning("long name without its sidecar", metadata: ["backing.name": "\(name)"])
                    return
                case .failure(.mismatch):
                    logger.warning("long-name sidecar does not match its entry", metadata: ["backing.name": "\(name)"])
                    return
                }
            }
            // A regular backing file may hold a special file (its record says which): unknown
            // until looked up.
            let type = type == UInt8(DT_REG) ? UInt8(DT_UNKNOWN) : type
            if let known = names.plaintext(dirIV: iv, encoded: encoded) {
                out.append((known, type, name))
                return
            }
            do {
                let plain = try crypto.decryptName(encoded, dirIV: iv)
                names.insert(dirIV: iv, name: plain, encoded: encoded)
                out.append((plain, type, name))
            } catch {
                logger.warning("skipping entry whose name does not decrypt", metadata: ["backing.name": "\(name)"])
            }
        }
        return out
    }
}
