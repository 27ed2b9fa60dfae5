import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc

/// A directory's entries as its sealed entry set vouches for them: backing name → object ID,
/// loaded (and checked against the sealed digest) the first time the directory is used, then
/// kept with the directory's inode and changed only by ELASTIC's own creates, links, unlinks
/// and renames. Authoritative for the mount: a name the host removes, adds, moves or swaps is
/// refused when used. Guarded by the directory's namespace lock.
final class DirectoryEntries: @unchecked Sendable {
    var ids: EntryIDs
    var committed: EntryDigest
    let iv: [UInt8]

    init(ids: [String: ObjectID], committed: EntryDigest, iv: [UInt8]) {
        self.ids = EntryIDs(ids)
        self.committed = committed
        self.iv = iv
    }
}

/// Backing name → object ID, kept compact: names by a 64-bit hash with this process's random
/// seed (Swift's `Hasher`), 24 bytes an entry instead of a string each, so a cached directory
/// of a million entries costs tens of megabytes, not hundreds. The host, who never learns the
/// seed, cannot aim two names at one slot; a chance collision needs about 2^32 entries.
struct EntryIDs {
    private var byHash: [UInt64: ObjectID] = [:]

    init(_ ids: [String: ObjectID]) {
        byHash.reserveCapacity(ids.count)
        for (name, id) in ids { byHash[Self.key(name)] = id }
    }

    static func key(_ name: String) -> UInt64 {
        var h = Hasher()
        h.combine(name)
        return UInt64(bitPattern: Int64(h.finalize()))
    }

    subscript(name: String) -> ObjectID? {
        get { byHash[Self.key(name)] }
        set { byHash[Self.key(name)] = newValue }
    }

    var count: Int { byHash.count }
}

/// One directory's part of a namespace change: the entries it loses and gains.
struct EntryChange {
    let directory: Inode
    var remove: [(name: String, id: ObjectID)] = []
    var add: [(name: String, id: ObjectID)] = []
}

extension ElasticFilesystem {
    /// Runs `body` with the namespace lock of `dir` held (shared for lookups and listings,
    /// exclusive for changes) and its entries loaded.
    func withEntries<R>(_ dir: Inode, exclusive: Bool, _ body: (DirectoryEntries) throws -> R) throws -> R {
        try loadEntries(dir)
        if exclusive { return try dir.namespace.withWriteLock { try body(dir.entries!) } }
        return try dir.namespace.withReadLock { try body(dir.entries!) }
    }

    /// Both directories of a rename, exclusively, locked in inode order.
    func withEntries<R>(_ a: Inode, _ b: Inode, _ body: (DirectoryEntries, DirectoryEntries) throws -> R) throws -> R {
        if a === b { return try withEntries(a, exclusive: true) { try body($0, $0) } }
        try loadEntries(a)
        try loadEntries(b)
        let (first, second) = a.id < b.id ? (a, b) : (b, a)
        return try first.namespace.withWriteLock {
            try second.namespace.withWriteLock { try body(a.entries!, b.entries!) }
        }
    }

    /// Gives a directory made by this mount an empty, loaded entry set (no scan needed).
    func startEntries(_ dir: Inode, iv: [UInt8]) {
        dir.namespace.withWriteLock {
            guard dir.entries == nil else { return }
            dir.entries = DirectoryEntries(ids: [:], committed: .empty, iv: iv)
            dir.entriesLoaded.store(true, ordering: .releasing)
        }
        versions.note(VersionKey(ObjectID(iv), .entries), EntrySetState.version(of: .empty, session: clock.current))
    }

    private func loadEntries(_ dir: Inode) throws {
        if dir.entriesLoaded.load(ordering: .acquiring) { return }
        try dir.namespace.withWriteLock {
            guard dir.entries == nil else { return }
            do {
                dir.entries = try readEntries(dir)
            } catch let e as FormatError {
                logger.error(
                    "directory entries do not match their sealed set (an entry deleted, added, moved or swapped in BACKING, or the directory put back): refusing the directory",
                    metadata: ["fuse.ino": "\(dir.id)", "backing.ino": "\(dir.key.ino)", "why": "\(e)"])
                throw e
            }
            dir.entriesLoaded.store(true, ordering: .releasing)
        }
    }

    /// Scans `dir`, checks the result against its sealed entry set and settles a change a crash
    /// interrupted.
    private func readEntries(_ dir: Inode) throws -> DirectoryEntries {
        let crypto = try worker().crypto
        let iv = try dirIV(dir)
        return try withHandle(dir) { d in
            // (Under the content lock: record changes write the same file.)
            let info = try dir.content.withReadLock { try DirectoryIV.readInfo(from: d, with: crypto) }
            guard info.iv == iv else { throw FormatError.corruptMetadata("directory IV changed") }
            let found = try EntryScan.scan(d)
            if !readOnly { for name in found.leftovers { EntryScan.removeLeftover(d, name) } }
            if let bad = found.unreadable.first {
                throw FormatError.corruptMetadata("entry \(bad.name): \(bad.why)")
            }
            let digest = try EntryDigest.of(found.ids, dirIV: iv, with: crypto)
            // A removal cut off between its two steps (the IV file gone, the empty directory
            // left) counts only if the change under way removes it: then it is finished now.
            if !found.interrupted.isEmpty {
                guard info.entries.pending == digest, !readOnly else {
                    throw FormatError.corruptMetadata("directory \(found.interrupted[0]) without its IV")
                }
                for name in found.interrupted { try DirectoryIV.finishRemoval(d, name) }
            }
            guard info.entries.accepts(digest) else {
                throw FormatError.corruptMetadata(
                    "\(found.ids.count) entries in BACKING, \(info.entries.committed.count) in the sealed set, or other ones"
                )
            }
            let key = VersionKey(ObjectID(iv), .entries)
            guard versions.accepts(key, EntrySetState.version(of: digest, session: info.entries.session)) else {
                throw FormatError.corruptMetadata(
                    "an earlier version of the directory (its entries are not the ones the store recorded)")
            }
            if info.entries != EntrySetState(committed: digest), !readOnly {
                try DirectoryIV.writeEntrySet(EntrySetState(committed: digest), iv: iv, in: d, with: crypto)
                versions.note(key, EntrySetState.version(of: digest, session: clock.current))
            }
            return DirectoryEntries(ids: found.ids, committed: digest, iv: iv)
        }
    }

    /// The object ID the entry set of `dir` has for `name` (caller holds its namespace lock);
    /// nil for a name that does not exist. A name in BACKING that the set does not have was put
    /// there by someone else: EIO.
    func entryID(_ dir: Inode, _ entries: DirectoryEntries, _ name: String, dirfd: Int32) throws -> ObjectID? {
        if let id = entries.ids[name] { return id }
        if (try? Syscall.lstatat(dirfd, name)) != nil {
            throw refusedEntry(dir, name, "an entry not in the directory's sealed set")
        }
        return nil
    }

    /// Logs and returns the error for an entry that does not match the sealed set.
    func refusedEntry(_ dir: Inode, _ name: String, _ what: String) -> FormatError {
        logger.error(
            "directory entry refused: \(what)",
            metadata: ["fuse.ino": "\(dir.id)", "backing.name": "\(name)"])
        return FormatError.corruptMetadata(what)
    }

    /// Checks that the object `actual`, found as `name` in `dir`, is the one the sealed set
    /// names there (caller holds the namespace lock of `dir`).
    func checkEntry(_ dir: Inode, _ name: String, _ actual: ObjectID) throws {
        guard let entries = dir.entries else { return }
        guard let expected = entries.ids[name] else {
            throw refusedEntry(dir, name, "an entry not in the directory's sealed set")
        }
        guard actual == expected else {
            throw refusedEntry(
                dir, name, "another object than the one the directory's sealed set names (moved or swapped)")
        }
    }

    /// The `elastic.diriv` of `dir` open for writing, from this thread's three most recently
    /// used (a create in the directory of the last one costs no open). An epoch change (a directory's
    /// file was put back after a failed removal) reopens them.
    func dirivFile(_ dir: Inode) throws -> Int32 {
        let t = try worker()
        let epoch = dirivEpoch.load(ordering: .acquiring)
        // Least recently used last out: the (at most two) files of the change under way are the
        // most recent, so they are never the one closed.
        if let i = t.dirivFiles.firstIndex(where: { $0.inode == dir.id }) {
            let entry = t.dirivFiles.remove(at: i)
            if entry.epoch == epoch {
                t.dirivFiles.append(entry)
                return entry.fd
            }
            Syscall.close(entry.fd)
        }
        let fd = try withHandle(dir) { try DirectoryIV.openForUpdate($0) }
        if t.dirivFiles.count >= 3 { Syscall.close(t.dirivFiles.removeFirst().fd) }
        t.dirivFiles.append((dir.id, epoch, fd))
        return fd
    }

    /// Applies `changes` around `op`, which makes them in BACKING: each directory's sealed set
    /// first names the set to come as pending, `op` runs, then the new set is committed (a crash
    /// at any point leaves every directory matching one of the two). Callers hold the namespace
    /// locks of every directory involved, exclusively.
    ///
    /// With `answer`, the caller is told of success before any of it reaches BACKING: the
    /// directories' new times are set in memory, `answer` runs, and the rest follows with the
    /// locks still held, so every later request on those directories waits for it (see
    /// `EarlyAnswer`).
    func changingEntries<R>(_ changes: [EntryChange], answer: (() -> Void)? = nil, _ op: () throws -> R) throws -> R {
        if let answer {
            for change in changes { try stampChanged(change.directory) }
            answer()
        }
        let crypto = try worker().crypto
        var plans: [(entries: DirectoryEntries, change: EntryChange, next: EntryDigest, fd: Int32)] = []
        for change in changes {
            let entries = change.directory.entries!
            var next = entries.committed
            for r in change.remove {
                next.remove(try EntryDigest.hash(name: r.name, id: r.id, dirIV: entries.iv, with: crypto))
            }
            for a in change.add {
                next.add(try EntryDigest.hash(name: a.name, id: a.id, dirIV: entries.iv, with: crypto))
            }
            plans.append((entries, change, next, try dirivFile(change.directory)))
        }
        for p in plans {
            try DirectoryIV.writeEntrySet(
                EntrySetState(committed: p.entries.committed, pending: p.next), iv: p.entries.iv, fd: p.fd,
                with: crypto)
        }
        let result: R
        do { result = try op() } catch {
            for p in plans {
                try? DirectoryIV.writeEntrySet(
                    EntrySetState(committed: p.entries.committed), iv: p.entries.iv, fd: p.fd, with: crypto)
            }
            throw error
        }
        for p in plans {
            for r in p.change.remove { p.entries.ids[r.name] = nil }
            for a in p.change.add { p.entries.ids[a.name] = a.id }
            p.entries.committed = p.next
            versions.note(
                VersionKey(ObjectID(p.entries.iv), .entries), EntrySetState.version(of: p.next, session: clock.current))
            // Committed with the directory's new mtime and ctime, in one write.
            let dir = p.change.directory
            do {
                try dir.content.withWriteLock {
                    var record = try directoryInfo(dir).record
                    if answer == nil {
                        record.ctime = ObjectRecord.now()
                        record.mtime = record.ctime
                    }
                    try DirectoryIV.writeRecordAndEntrySet(
                        record, EntrySetState(committed: p.next), iv: p.entries.iv, fd: p.fd, with: crypto)
                    dir.directoryRecord.withLock { $0 = record }
                    versions.note(VersionKey(ObjectID(p.entries.iv), .record), record.sealedBy(crypto).version)
                }
            } catch {
                // The pending set is the one BACKING has: the next load settles it.
                logger.warning("could not commit a directory's entry set", metadata: ["why": "\(error)"])
            }
        }
        return result
    }

    /// Gives `dir` a new mtime and ctime in memory (served from now on; written with the
    /// committed entry set).
    private func stampChanged(_ dir: Inode) throws {
        try dir.content.withWriteLock {
            var record = try directoryInfo(dir).record
            record.ctime = ObjectRecord.now()
            record.mtime = record.ctime
            dir.directoryRecord.withLock { $0 = record }
        }
    }
}
