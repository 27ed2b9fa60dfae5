import ElasticCrypto
import ElasticSystem
import Glibc

/// Sessions and the versions map: a read-write mount (or an offline tool that writes objects)
/// starts a session, which moves the root (and its witness), and ends it by writing the
/// versions map and then the root that names it. A session the root still shows open when the
/// next one starts crashed: its changes are reconciled by the next walk (`VersionWalk`).
extension StoreRootKeeper {
    /// A session started by `beginSession`.
    public struct Session: Sendable {
        /// Its number: records and entry sets it seals carry it (`CryptoWorker.session`).
        public let number: UInt64
        /// The versions the store recorded, for checking what is read from BACKING.
        public let versions: VersionMap
        /// The session before it crashed (nil: it ended cleanly).
        public let crashed: UInt64?
    }

    /// The versions map and its state, as the root names them; throws `.integrity` when
    /// `elastic.versions` is not the file the root names (deleted, replaced or put back).
    func loadVersions(_ root: StoreRoot) throws -> (map: SortedVersions, reconcileFrom: UInt64?) {
        let s = root.sessions
        var reconcileFrom = s.reconcileFrom == 0 ? nil : s.reconcileFrom
        // A crashed session's changes since its last checkpoint may be missing from the map:
        // versions sealed since the session that wrote the map are accepted (a race with the
        // checkpoint can seal one in that very session).
        if s.open {
            // (A map written at a clean end names its session's versions exactly.)
            let since = s.mapDigest == StoreRoot.absent ? s.last : s.mapComplete ? s.mapSession + 1 : s.mapSession
            reconcileFrom = min(reconcileFrom ?? since, since)
        }
        let bytes: [UInt8]?
        do { bytes = try Syscall.readFile(directory.fd, BackingNames.versions, limit: 1 << 34) } catch let e as Errno
            where e == .noSuchFileOrDirectory
        {
            bytes = nil
        }
        guard let bytes else {
            guard s.mapDigest == StoreRoot.absent else {
                throw FormatError.integrity("\(BackingNames.versions) is missing, but \(BackingNames.root) names one")
            }
            return (SortedVersions(), reconcileFrom)
        }
        if StoreRoot.digest(bytes) == s.mapDigest {
            return (
                try SortedVersions(decoding: bytes, key: key, storeID: storeID, session: s.mapSession), reconcileFrom
            )
        }
        // The session that crashed may have written its map and died before the root: that
        // map is the one it sealed with its own number.
        if s.open, let map = try? SortedVersions(decoding: bytes, key: key, storeID: storeID, session: s.last) {
            return (map, reconcileFrom)
        }
        throw FormatError.integrity(
            "\(BackingNames.versions) is not the version \(BackingNames.root) names (an older or replaced copy)")
    }

    /// Starts a read-write session: the root is written with a new session number, marked open.
    public func beginSession() throws -> Session {
        try exclusive {
            var root = try settled()
            let (map, reconcileFrom) = try loadVersions(root)
            let crashed = root.sessions.open ? root.sessions.last : nil
            root.sessions.last += 1
            root.sessions.open = true
            root.sessions.reconcileFrom = reconcileFrom ?? 0
            try commit(&root)
            return Session(
                number: root.sessions.last, versions: VersionMap(base: map, reconcileFrom: reconcileFrom),
                crashed: crashed)
        }
    }

    /// The versions map for a session that only reads (a read-only mount, `elastic fsck`).
    public func readVersions() throws -> VersionMap {
        let root = try readExisting()
        let (map, reconcileFrom) = try loadVersions(root)
        return VersionMap(base: map, reconcileFrom: reconcileFrom)
    }

    /// Records `versions` as of sub-session `current` of a session that goes on (a
    /// checkpoint): the map, then the root naming it, with `current + 1` as the session now
    /// open. The caller moves its clock to `current + 1` after. Returns what was recorded.
    @discardableResult
    public func checkpoint(_ versions: VersionMap, current: UInt64) throws -> SortedVersions {
        try record(versions, current: current, ending: false)
    }

    /// Ends the session whose sub-session is `current` cleanly: writes what `versions` holds
    /// now, then the root that names it.
    public func endSession(_ versions: VersionMap, current: UInt64) throws {
        try record(versions, current: current, ending: true)
    }

    func record(_ versions: VersionMap, current: UInt64, ending: Bool) throws -> SortedVersions {
        let map = versions.merged()
        let bytes = try map.encode(key: key, storeID: storeID, session: current)
        try exclusive {
            var root = try settled()
            guard root.sessions.last == current, root.sessions.open else {
                throw FormatError.integrity("\(BackingNames.root) no longer shows session \(current) open")
            }
            try Syscall.writeFileAtomically(directory.fd, BackingNames.versions, bytes, mode: 0o600)
            root.sessions.open = !ending
            if !ending { root.sessions.last = current + 1 }
            root.sessions.reconcileFrom = versions.reconcileFrom ?? 0
            root.sessions.mapDigest = StoreRoot.digest(bytes)
            root.sessions.mapSession = current
            root.sessions.mapComplete = ending
            try commit(&root)
        }
        if !ending { versions.recorded(map) }
        return map
    }

    /// Forgets every recorded version (`elastic fsck --repair`, `elastic rekey`): the next
    /// read-write mount accepts the objects as they are and records them again. Returns the
    /// session number the caller writes objects with.
    public func resetVersions() throws -> UInt64 {
        try exclusive {
            var root = try settled()
            root.sessions.last += 1
            root.sessions.open = false
            root.sessions.reconcileFrom = 1
            root.sessions.mapDigest = StoreRoot.absent
            root.sessions.mapComplete = false
            try commit(&root)
            _ = try? Syscall.unlinkat(directory.fd, BackingNames.versions, 0)
            return root.sessions.last
        }
    }
}
