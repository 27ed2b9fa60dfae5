import ElasticCrypto
import ElasticSystem
import Glibc

/// Reads the version of every object in the store (each directory's record and entries, each
/// file's record) and admits it into a `VersionMap`: after a crash, the first read-write mount
/// walks the store so that the map names every object again, and from then on only the
/// recorded version of each is accepted. Reads only: what fails to read or is refused is
/// reported (by plaintext path where its name decrypts) and left for the mount to refuse on
/// access.
public struct VersionWalk {
    /// One object whose version was refused or could not be read.
    public struct Refusal: Sendable, Equatable {
        public let path: String
        public let what: String
    }

    let map: VersionMap
    let crypto: CryptoWorker
    public private(set) var objects = 0
    public private(set) var refused: [Refusal] = []
    /// Directories whose entries could not be read (their subtrees were not walked).
    public private(set) var incomplete = 0

    public init(map: VersionMap, crypto: CryptoWorker) {
        self.map = map
        self.crypto = crypto
    }

    /// Walks the tree under the store's root directory `rootfd`; once every directory was
    /// read, the map is `reconciled`.
    public mutating func run(rootfd: Int32) {
        walk(rootfd, path: "")
        if incomplete == 0 { map.reconciled() }
    }

    mutating func refuse(_ path: String, _ what: String) {
        refused.append(Refusal(path: path.isEmpty ? "/" : path, what: what))
    }

    mutating func admit(_ key: VersionKey, _ version: ObjectVersion, _ path: String, _ what: String) {
        objects += 1
        if case .stale = map.admit(key, version) {
            refuse(path, "an earlier version of the \(what) than the store recorded")
        }
    }

    /// The plaintext path of entry `name` of a directory at `path` (the backing name if it
    /// does not decrypt).
    func plainPath(_ dirfd: Int32, _ path: String, _ name: String, iv: [UInt8]) -> String {
        var encoded = name
        if BackingNames.isLongName(name),
            case .success(let full) = LongNameSidecar.encodedName(dirfd, backingName: name)
        {
            encoded = full
        }
        guard let plain = try? crypto.decryptName(encoded, dirIV: iv) else { return path + "/" + name }
        return path + "/" + String(decoding: plain, as: UTF8.self)
    }

    mutating func walk(_ dirfd: Int32, path: String) {
        let info: (iv: [UInt8], record: ObjectRecord, entries: EntrySetState)
        let found: EntryScan.Result
        do {
            info = try DirectoryIV.readInfo(from: dirfd, with: crypto)
            found = try EntryScan.scan(dirfd, withHeaders: true)
        } catch {
            incomplete += 1
            refuse(path, "directory cannot be read: \(error)")
            return
        }
        let id = ObjectID(info.iv)
        admit(VersionKey(id, .record), info.record.version, path, "directory's record")
        let digest: EntryDigest
        do { digest = try EntryDigest.of(found.ids, dirIV: info.iv, with: crypto) } catch {
            incomplete += 1
            refuse(path, "entries cannot be hashed: \(error)")
            return
        }
        guard found.unreadable.isEmpty, info.entries.accepts(digest) else {
            // The mount refuses this directory when it loads it; nothing below it is reachable.
            incomplete += 1
            refuse(path, "entries do not match the directory's sealed set")
            return
        }
        admit(
            VersionKey(id, .entries), EntrySetState.version(of: digest, session: info.entries.session), path,
            "directory's entries")
        for (name, header) in found.headers {
            do {
                let h = try FileHeader(decoding: header, with: crypto)
                objects += 1
                if case .stale = map.admit(VersionKey(ObjectID(h.fileID), .record), h.record.version) {
                    refuse(
                        plainPath(dirfd, path, name, iv: info.iv),
                        "an earlier version of the file than the store recorded")
                }
            } catch {
                // Its recorded version must stay: the walk is not complete without it.
                incomplete += 1
                refuse(plainPath(dirfd, path, name, iv: info.iv), "file header: \(error)")
            }
        }
        for name in found.directories {
            let sub: Int32
            do { sub = try Syscall.openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) } catch {
                incomplete += 1
                refuse(plainPath(dirfd, path, name, iv: info.iv), "directory cannot be opened: \(error)")
                continue
            }
            walk(sub, path: plainPath(dirfd, path, name, iv: info.iv))
            Syscall.close(sub)
        }
    }
}
