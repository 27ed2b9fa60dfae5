import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc

/// Symlink targets: sealed with AES-256-GCM under the metadata key and base64url-encoded as the
/// backing symlink's target; a target too long for that lives in `elastic.links/<id>`.
extension ElasticFilesystem {
    static let symlinkContext = Array(KeyLabels.symlink.utf8)
    static let maxBackingTarget = 4095

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
        let target = try Syscall.readlinkat(dirfd, name)
        guard target.hasPrefix(BackingNames.longLinkPrefix) else { return nil }
        let id = String(target.dropFirst(BackingNames.longLinkPrefix.count))
        guard !id.isEmpty, id.allSatisfy({ $0.isHexDigit }) else {
            throw FormatError.corruptMetadata("long link reference")
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
        if let id = try longLinkID(dirfd: dirfd, name: name) {
            let d = try longLinksDir()
            defer { Syscall.close(d) }
            do { return try Syscall.readFile(d, id, limit: 8192) } catch let e as SystemError {
                throw FormatError.corruptMetadata("\(e)")
            }
        }
        guard let raw = Base64URL.decode(try Syscall.readlinkat(dirfd, name)) else {
            throw FormatError.corruptMetadata("symlink target encoding")
        }
        return raw
    }

    /// Plaintext length of a symlink's target, without decrypting it.
    func symlinkTargetLength(dirfd: Int32, name: String) throws -> Int {
        let overhead = AESGCM.nonceSize + AESGCM.tagSize
        if let id = try longLinkID(dirfd: dirfd, name: name) {
            let d = try longLinksDir()
            defer { Syscall.close(d) }
            return max(0, Int(try Syscall.lstatat(d, id).st_size) - overhead)
        }
        let encoded = try Syscall.readlinkat(dirfd, name).utf8.count
        return max(0, encoded * 6 / 8 - overhead)
    }

    func readlink(_ ino: UInt64) throws -> [UInt8] {
        let i = try inode(ino)
        guard i.isSymlink else { throw Errno.invalidArgument }
        let sealed = try withHandle(i) { try sealedTarget(dirfd: $0, name: "") }
        return try worker().crypto.openMetadata(sealed, context: Self.symlinkContext)
    }

    func symlink(_ target: [UInt8], _ parentID: UInt64, _ name: [UInt8], _ caller: Caller) throws -> Entry {
        let parent = try inode(parentID)
        guard !target.isEmpty else { throw Errno.noSuchFileOrDirectory }
        guard target.count <= 4095 else { throw Errno.fileNameTooLong }
        return try withNew(parent, name, caller) { n in try symlink(target, parent, n) }
    }

    private func symlink(_ target: [UInt8], _ parent: Inode, _ n: NewObject) throws -> Entry {
        let sealed = try worker().crypto.sealMetadata(target, context: Self.symlinkContext)
        var backingTarget = Base64URL.encode(sealed)
        var longID: String? = nil
        if backingTarget.utf8.count > Self.maxBackingTarget {
            let id = Hex.encode(try Random.bytes(16))
            let d = try longLinksDir()
            defer { Syscall.close(d) }
            hasLongLinks.store(true, ordering: .relaxed)
            try Syscall.writeFileAtomically(d, id, sealed, mode: 0o400)
            longID = id
            backingTarget = BackingNames.longLinkPrefix + id
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
