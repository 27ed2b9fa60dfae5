import ElasticCrypto
import ElasticSystem
import Glibc
import Synchronization

/// A secret that can open key slots.
public enum UnlockSecret {
    case keyFile([UInt8])
    case passphrase([UInt8])

    /// A secret for a platform's sealed slots (slot-kind code `platform`): what the platform
    /// derives for a slot's recorded parameters.
    case sealed(platform: UInt8, unseal: ([UInt8]) throws -> [UInt8])

    func matches(_ kind: KeySlot.Kind) -> Bool {
        switch (self, kind) {
        case (.keyFile, .keyFile), (.passphrase, .passphrase): return true
        case (.sealed(let a, _), .sealed(let b, _, _)): return a == b
        default: return false
        }
    }
    /// The secret for `slot`.
    func bytes(for slot: KeySlot) throws -> [UInt8] {
        switch (self, slot.kind) {
        case (.keyFile(let b), _), (.passphrase(let b), _): return b
        case (.sealed(_, let unseal), .sealed(_, _, let parameters)): return try unseal(parameters)
        default: throw FormatError.wrongKey("slot kind mismatch")
        }
    }
}

/// An unlocked store: its backing directory (opened once; every file in it is reached
/// relative to that descriptor), configuration, master key and subkeys.
public final class UnlockedStore: Sendable {
    /// The path the user gave, for messages only.
    public let backing: String
    public let directory: OpenDirectory
    public let keys: StoreKeys
    /// The configuration and the master key; slot changes hold the lock across the rewrite,
    /// and an flock(2) on the backing directory against other processes, and start from the
    /// configuration on disk, so two of them never lose one another's slot.
    private let state: Mutex<(config: StoreConfig, master: SecureBytes?)>

    public var config: StoreConfig { state.withLock { $0.config } }
    /// The master key, until `forgetMaster()`: the daemon lets go of it once it has derived
    /// what it needs (`keys` and the control file's derive root); the CLI keeps it to wrap new
    /// key slots.
    public var master: SecureBytes? { state.withLock { $0.master } }

    /// `elastic.root`: which versions of the store-wide files are current, and its witness.
    public let root: StoreRootKeeper

    init(backing: String, directory: OpenDirectory, config: StoreConfig, master: SecureBytes) throws {
        self.backing = backing
        self.directory = directory
        keys = try StoreKeys(master: master)
        root = StoreRootKeeper(directory: directory, storeID: config.storeID, keys: keys)
        state = Mutex((config, master))
    }

    /// The control file's key store, checked against (and changed through) the root.
    public func keyStoreFile() -> KeyStoreFile {
        KeyStoreFile(directory: directory, keys: keys, root: config.features.contains(.storeRoot) ? root : nil)
    }

    /// Gives a store made before roots existed (version 1, being migrated) its `elastic.root`
    /// and the feature flag that makes every later open require it. Does nothing for a store
    /// that has one (every version 2 store).
    @discardableResult
    public func upgradeToRoot() throws -> Bool {
        try root.exclusive {
            try state.withLock { s in
                let (current, bytes) = try Store.readConfig(directory: directory, backing: backing)
                try StoreConfig.verifyMAC(bytes, keys: keys)
                s.config = current
                guard !current.features.contains(.storeRoot) else { return false }
                var next = current
                next.features.insert(.storeRoot)
                let nextBytes = try next.encode(keys: keys)
                try root.create(
                    configBytes: nextBytes, keyStoreBytes: try root.currentContents(.keyStore), replacing: bytes)
                try Syscall.writeFileAtomically(directory.fd, BackingNames.config, nextBytes, mode: 0o400)
                _ = try root.settled()  // the old configuration is no longer acceptable
                s.config = next
                return true
            }
        }
    }

    /// Runs a change of the configuration under both locks, starting from what is on disk (and
    /// authenticated) now.
    private func changingConfig<R>(_ body: (inout (config: StoreConfig, master: SecureBytes?)) throws -> R) throws -> R
    {
        try root.exclusive {
            try state.withLock { s in
                let (current, bytes) = try Store.readConfig(directory: directory, backing: backing)
                try StoreConfig.verifyMAC(bytes, keys: keys)
                try root.checkConfig(bytes)
                s.config = current
                return try body(&s)
            }
        }
    }

    /// Replaces `elastic.conf` with `next` through the root (inside `changingConfig`).
    private func write(_ next: StoreConfig) throws {
        let bytes = try next.encode(keys: keys)
        try root.change(.config, to: bytes) {
            try Syscall.writeFileAtomically(directory.fd, BackingNames.config, bytes, mode: 0o400)
        }
    }

    /// Frees (wipes) the master key; only the derived keys remain.
    public func forgetMaster() { state.withLock { $0.master = nil } }

    /// Adds a key slot and rewrites the configuration atomically.
    @discardableResult
    public func addSlot(kind: KeySlot.Kind, secret: [UInt8]) throws -> KeySlot {
        try changingConfig { s in
            guard s.config.slots.count < 255 else { throw FormatError.invalidArgument("too many key slots") }
            guard let master = s.master else {
                throw FormatError.invalidArgument("the master key was already let go of")
            }
            let slot = try s.config.makeSlot(kind: kind, secret: secret, master: master)
            var next = s.config
            next.slots.append(slot)
            try write(next)
            s.config = next
            return slot
        }
    }

    /// Removes the slot whose hex ID starts with `idPrefix`; refuses to remove the last slot.
    public func removeSlot(idPrefix: String) throws -> KeySlot {
        try changingConfig { s in
            let matches = s.config.slots.filter { $0.idHex.hasPrefix(idPrefix.lowercased()) }
            guard matches.count == 1, !idPrefix.isEmpty else {
                throw FormatError.invalidArgument(
                    matches.isEmpty ? "no key slot \(idPrefix)" : "slot id prefix \(idPrefix) is ambiguous")
            }
            guard s.config.slots.count > 1 else {
                throw FormatError.invalidArgument("refusing to remove the last key slot (the store would be lost)")
            }
            var next = s.config
            next.slots.removeAll { $0.id == matches[0].id }
            try write(next)
            s.config = next
            return matches[0]
        }
    }
}

/// Creating and unlocking stores in a backing directory.
public enum Store {
    /// Creates a new store in `backing` (an empty or missing directory) with one slot.
    public static func create(backing: String, kind: KeySlot.Kind, secret: [UInt8]) throws -> UnlockedStore {
        if mkdir(backing, 0o700) != 0 && errno != EEXIST { throw Errno(rawValue: errno) }
        let directory = try Syscall.openDirectory(backing)
        guard try isEmptyDirectory(directory.fd) else {
            throw FormatError.invalidArgument("\(backing) is not empty; a new store needs an empty directory")
        }
        let master = try SecureBytes.random(count: 32)
        var config = StoreConfig(storeID: try Random.bytes(16), slots: [])
        config.slots.append(try config.makeSlot(kind: kind, secret: secret, master: master))
        let store = try UnlockedStore(backing: backing, directory: directory, config: config, master: master)
        let top = try Syscall.fstat(directory.fd)
        var record = ObjectRecord(kind: .directory, mode: top.st_mode, uid: top.st_uid, gid: top.st_gid)
        record.storeRoot = true
        // Sealed in session 1, the first of every store (`StoreRoot.Sessions`).
        try DirectoryIV.create(in: directory.fd, record: record, with: try CryptoWorker(keys: store.keys, session: 1))
        let bytes = try config.encode(keys: store.keys)
        try store.root.create(configBytes: bytes, keyStoreBytes: nil)
        try Syscall.writeFileAtomically(directory.fd, BackingNames.config, bytes, mode: 0o400)
        return store
    }

    /// Reads and parses `elastic.conf` (no key needed).
    public static func readConfig(backing: String) throws -> (StoreConfig, [UInt8]) {
        try readConfig(directory: try Syscall.openDirectory(backing), backing: backing)
    }

    static func readConfig(directory: OpenDirectory, backing: String) throws -> (StoreConfig, [UInt8]) {
        let bytes: [UInt8]
        do { bytes = try Syscall.readFile(directory.fd, BackingNames.config, limit: 1 << 16) } catch let e as Errno
            where e == .noSuchFileOrDirectory
        {
            throw FormatError.invalidArgument(
                "\(backing) is not an ELASTIC store (no \(BackingNames.config)); create one with `elastic init`")
        } catch let e as SystemError {
            throw FormatError.corruptConfig("\(e)")
        }
        return (try StoreConfig.parse(bytes), bytes)
    }

    /// Opens the store with `secret`: tries every slot of the matching kind, then checks the
    /// configuration's MAC with the unwrapped key.
    public static func unlock(backing: String, secret: UnlockSecret, migrating: Bool = false) throws -> UnlockedStore {
        let directory = try Syscall.openDirectory(backing)
        // The configuration and the root as one snapshot: a change by another process (which
        // holds the lock exclusively) is either wholly before or wholly after it.
        guard flock(directory.fd, LOCK_SH) == 0 else { throw Errno(rawValue: errno) }
        let snapshot = Result {
            (try readConfig(directory: directory, backing: backing), try StoreRootKeeper.readBytes(directory))
        }
        flock(directory.fd, LOCK_UN)
        let ((config, bytes), rootBytes) = try snapshot.get()
        if config.version < StoreConfig.currentVersion && !migrating { throw FormatError.needsMigration(backing) }
        let candidates = config.slots.filter { secret.matches($0.kind) }
        guard !candidates.isEmpty else {
            let kinds = Set(config.slots.map(\.kind.name)).sorted().joined(separator: ", ")
            throw FormatError.wrongKey("the store has no key slot of that kind (it has: \(kinds))")
        }
        var refusals: [String] = []
        for slot in candidates {
            var slotSecret: [UInt8]
            do { slotSecret = try secret.bytes(for: slot) } catch {
                refusals.append("slot \(slot.idHex): \(error)")
                continue
            }
            defer { secureWipe(&slotSecret) }
            guard let master = try? config.unwrap(slot, secret: slotSecret) else { continue }
            let store = try UnlockedStore(backing: backing, directory: directory, config: config, master: master)
            try StoreConfig.verifyMAC(bytes, keys: store.keys)
            if config.features.contains(.storeRoot) {
                try store.root.checkConfig(bytes, root: rootBytes)
            } else if config.version >= 2 {
                throw FormatError.integrity("a version \(config.version) configuration without \(BackingNames.root)")
            } else if let rootBytes, !store.root.isInterruptedUpgrade(of: bytes, root: rootBytes) {
                throw FormatError.integrity(
                    "\(BackingNames.config) is from before the store had \(BackingNames.root) (an old copy put back)")
            }
            return store
        }
        switch secret {
        case .keyFile: throw FormatError.wrongKey("wrong key: the key file opens none of the store's key slots")
        case .passphrase: throw FormatError.wrongKey("wrong passphrase: it opens none of the store's key slots")
        case .sealed(let platform, _):
            let name = KeySlot.sealedPlatformName(platform)
            let detail = refusals.isEmpty ? "" : " (" + refusals.joined(separator: "; ") + ")"
            throw FormatError.wrongKey("this VM's \(name) sealed key opens none of the store's \(name) slots\(detail)")
        }
    }

    static func isEmptyDirectory(_ dirfd: Int32) throws -> Bool {
        var empty = true
        try Syscall.forEachEntry(dirfd) { name, _, _ in if name != "." && name != ".." { empty = false } }
        return empty
    }
}
