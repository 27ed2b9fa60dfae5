import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc

/// Symlinks, stored as `SymlinkCodec` says (the target sealed in the backing symlink, or in
/// `elastic.links/<id>` when too long).
extension ElasticFilesystem {
    func longLinksDir() throws -> Int32 {
        try withHandle(root) { rootfd in
            do {
                return try Syscall.openat(
                    rootfd, BackingNames.longLinks, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            } catch let e as Errno where e == .noSuchFileOrDirectory {
                do { try Syscall.mkdirat(rootfd, BackingNames.longLinks, 0o700) } catch let e as Errno
                    where e == .fileExists
                {}
                return try Syscall.openat(
                    rootfd, BackingNames.longLinks, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
        }
    }

    /// The long-link ID a backing symlink refers to, if any.
    func longLinkID(dirfd: Int32, name: String) throws -> String? {
        guard case .long(let id) = try SymlinkCodec.reference(backingTarget: Syscall.readlinkat(dirfd, name)) else {
            return nil
        }
        return id
    }

    func removeLongLink(_ id: String) {
        guard let d = try? longLinksDir() else { return }
        defer { Syscall.close(d) }
        _ = try? Syscall.unlinkat(d, id, 0)
    }

    /// The sealed target bytes of the backing symlink `name` in `dirfd` ("" for `dirfd` itself).
    func sealedTarget(dirfd: Int32, name: String) throws -> [UInt8] {
        switch try SymlinkCodec.reference(backingTarget: Syscall.readlinkat(dirfd, name)) {
        case .inline(let sealed):
            return sealed
        case .long(let id):
            let d = try longLinksDir()
            defer { Syscall.close(d) }
            do { return try Syscall.readFile(d, id, limit: 8192) } catch let e as SystemError {
                throw FormatError.corruptMetadata("\(e)")
            }
        }
    }

    /// Plaintext length of a symlink's target, without decrypting it (nor decoding it: a
    /// damaged target still has a size, so the link can be listed and removed; only readlink fails).
    func symlinkTargetLength(dirfd: Int32, name: String) throws -> Int {
        let target = try Syscall.readlinkat(dirfd, name)
        guard target.hasPrefix(BackingNames.longLinkPrefix), let id = try? longLinkID(dirfd: dirfd, name: name) else {
            return SymlinkCodec.plaintextLength(inlineTargetLength: target.utf8.count)
        }
        let d = try longLinksDir()
        defer { Syscall.close(d) }
        return SymlinkCodec.plaintextLength(longFileSize: Int(try Syscall.lstatat(d, id).st_size))
    }

    func readlink(_ ino: UInt64) throws -> [UInt8] {
        let i = try inode(ino)
        guard i.isSymlink else { throw Errno.invalidArgument }
        let sealed = try withHandle(i) { try sealedTarget(dirfd: $0, name: "") }
        return try SymlinkCodec.open(sealed, with: worker().crypto)
    }

    func symlink(_ target: [UInt8], _ parentID: UInt64, _ name: [UInt8], _ caller: Caller) throws -> Entry {
        let parent = try inode(parentID)
        guard !target.isEmpty else { throw Errno.noSuchFileOrDirectory }
        guard target.count <= SymlinkCodec.maxTarget else { throw Errno.fileNameTooLong }
        return try withNew(parent, name, caller) { n in try symlink(target, parent, n) }
    }

    private func symlink(_ target: [UInt8], _ parent: Inode, _ n: NewObject) throws -> Entry {
        let stored = try SymlinkCodec.seal(target, with: worker().crypto)
        let backingTarget = stored.backingTarget
        var longID: String? = nil
        if case .long(let id, let sealed) = stored {
            let d = try longLinksDir()
            defer { Syscall.close(d) }
            hasLongLinks.store(true, ordering: .relaxed)
            try Syscall.writeFileAtomically(d, id, sealed, mode: 0o400)
            longID = id
        }
        do {
            try Syscall.symlinkat(backingTarget, n.dirfd, n.b.name)
            try chownNew(n.dirfd, n.b.name, n.owner)
        } catch {
            if (error as? Errno) != .fileExists {
                _ = try? Syscall.unlinkat(n.dirfd, n.b.name, 0)
                removeSidecar(n.dirfd, n.b)
            }
            if let longID { removeLongLink(longID) }
            throw error
        }
        return try register(parent: parent, backingName: n.b.name, stat: try Syscall.lstatat(n.dirfd, n.b.name))
    }
}
