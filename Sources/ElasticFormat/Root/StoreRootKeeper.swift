import ElasticCrypto
import ElasticSystem
import Glibc
import Synchronization

/// Reads, checks and rewrites `elastic.root` for one process. It remembers the newest counter
/// it has seen, so a root put back while the store is open is refused; every change of a
/// store-wide file goes through `change`, which names the new version in the root before the
/// file is replaced and finishes by naming only the new one (crash-safe either way).
public final class StoreRootKeeper: @unchecked Sendable {  // `serial` is a pthread mutex; the rest under `state`
    let directory: OpenDirectory
    let storeID: [UInt8]
    let key: SecureBytes

    struct State: ~Copyable {
        var newest: UInt64 = 0
        var witness: (any FreshnessWitness)? = nil
        var opener: WitnessOpener? = StoreRootKeeper.defaultOpener.withLock { $0 }
    }

    /// How every keeper of this process opens witnesses unless `bindWitness` names one: each
    /// executable sets it once at start (the format layer knows only `file:`).
    public static let defaultOpener = Mutex<WitnessOpener?>({ spec, storeID in
        guard spec.hasPrefix("file:") else {
            throw FormatError.invalidArgument("witness \(spec) cannot be opened by this program")
        }
        return try FileWitness(path: String(spec.dropFirst(5)), storeID: storeID)
    })
    private let state = Mutex(State())
    /// Held across a whole change (`exclusive`), outside `state`.
    private let serial: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()

    deinit {
        pthread_mutex_destroy(serial)
        serial.deallocate()
    }

    init(directory: OpenDirectory, storeID: [UInt8], keys: StoreKeys) {
        self.directory = directory
        self.storeID = storeID
        key = keys.root
    }

    /// Runs `body` alone: this process's lock, then an flock(2) on the backing directory against
    /// other processes (the daemon and `elastic slot` may change the store at the same time).
    public func exclusive<R>(_ body: () throws -> R) throws -> R {
        pthread_mutex_lock(serial)
        defer { pthread_mutex_unlock(serial) }
        guard flock(directory.fd, LOCK_EX) == 0 else { throw Errno(rawValue: errno) }
        defer { flock(directory.fd, LOCK_UN) }
        return try body()
    }

    /// The contents of `elastic.root` in `directory` (nil: there is none).
    static func readBytes(_ directory: OpenDirectory) throws -> [UInt8]? {
        do { return try Syscall.readFile(directory.fd, BackingNames.root, limit: 1 << 16) } catch let e as Errno
            where e == .noSuchFileOrDirectory
        {
            return nil
        }
    }

    /// The root on disk (nil: there is none), refused if older than one this process has seen.
    public func read() throws -> StoreRoot? { try decode(try Self.readBytes(directory)) }

    func decode(_ bytes: [UInt8]?) throws -> StoreRoot? {
        guard let bytes else { return nil }
        let root = try StoreRoot(decoding: bytes, key: key, storeID: storeID)
        try state.withLock { s in
            guard root.counter >= s.newest else {
                throw FormatError.integrity(
                    "\(BackingNames.root) was rolled back while the store was open (counter \(root.counter), "
                        + "this process already saw \(s.newest))")
            }
            s.newest = root.counter
        }
        return root
    }

    /// The root, which must exist (`bytes`: as read before, else from disk now).
    func readExisting(_ bytes: [UInt8]?? = nil) throws -> StoreRoot {
        guard let root = try (bytes.map { try decode($0) } ?? read()) else {
            throw FormatError.integrity(
                "\(BackingNames.root) is missing, but the configuration says the store has one (deleted or rolled back)"
            )
        }
        return root
    }

    /// Checks that `configBytes` (the `elastic.conf` just read) is the version the root names
    /// (`root`: the root's bytes read together with it; by default, the root on disk now).
    public func checkConfig(_ configBytes: [UInt8], root rootBytes: [UInt8]?? = nil) throws {
        let root = try readExisting(rootBytes)
        guard root.accepts(config: StoreRoot.digest(configBytes)) else {
            throw FormatError.integrity(
                "\(BackingNames.config) is not the version \(BackingNames.root) names (an older or replaced copy)")
        }
    }

    /// Checks that the key store's contents (nil: no file) are the version the root names.
    public func checkKeyStore(_ bytes: [UInt8]?) throws {
        let root = try readExisting()
        guard root.accepts(keyStore: StoreRoot.digest(bytes)) else {
            throw FormatError.integrity(
                "\(BackingNames.keyStore) is not the version \(BackingNames.root) names (an older or replaced copy)")
        }
    }

    /// Which store-wide file a change replaces.
    public enum File: Sendable {
        case config
        case keyStore
        var name: String { self == .config ? BackingNames.config : BackingNames.keyStore }
    }

    /// Replaces `file` with `contents` (by `write`), crash-safely: the root first names both the
    /// old and the new version, then `write` runs, then the root names only the new one. Refuses
    /// when what is on disk now is not what the root names. Call inside `exclusive`.
    public func change(_ file: File, to contents: [UInt8], write: () throws -> Void) throws {
        var root = try settled()
        let new = StoreRoot.digest(contents)
        switch file {
        case .config: (root.previousConfigDigest, root.configDigest) = (root.configDigest, new)
        case .keyStore: (root.previousKeyStoreDigest, root.keyStoreDigest) = (root.keyStoreDigest, new)
        }
        try commit(&root)
        try write()
        root.previousConfigDigest = nil
        root.previousKeyStoreDigest = nil
        try commit(&root)
    }

    /// The root, checked against the files on disk, with any change a crash interrupted settled
    /// to what the files hold (written back if it had to change).
    func settled() throws -> StoreRoot {
        var root = try readExisting()
        let config = StoreRoot.digest(try currentContents(.config))
        let keys = StoreRoot.digest(try currentContents(.keyStore))
        guard root.accepts(config: config) else {
            throw FormatError.integrity("\(BackingNames.config) is not the version \(BackingNames.root) names")
        }
        guard root.accepts(keyStore: keys) else {
            throw FormatError.integrity("\(BackingNames.keyStore) is not the version \(BackingNames.root) names")
        }
        if root.hasChangeInProgress {
            (root.configDigest, root.keyStoreDigest) = (config, keys)
            (root.previousConfigDigest, root.previousKeyStoreDigest) = (nil, nil)
            try commit(&root)
        }
        return root
    }

    func currentContents(_ file: File) throws -> [UInt8]? {
        do { return try Syscall.readFile(directory.fd, file.name, limit: 16 << 20) } catch let e as Errno
            where e == .noSuchFileOrDirectory
        {
            return nil
        }
    }

    /// Writes `root` as the next version: counter + 1, and the witness moved to the value the
    /// root expects (root first, witness second: a crash in between leaves the root one ahead,
    /// which `bindWitness` completes).
    func commit(_ root: inout StoreRoot) throws {
        try state.withLock { s in
            root.counter = max(root.counter, s.newest) + 1
            if let binding = root.witness { root.witness!.value = try witnessValue(binding, &s) + 1 }
            try Syscall.writeFileAtomically(
                directory.fd, BackingNames.root, try root.encode(key: key, storeID: storeID), mode: 0o400)
            s.newest = root.counter
            if let binding = root.witness { try s.witness!.advance(to: binding.value) }
        }
    }

    /// Writes the first root of a store; `replacing`: the configuration of a store made before
    /// roots, which stays acceptable until the new one is written (a crash in between).
    public func create(configBytes: [UInt8], keyStoreBytes: [UInt8]?, replacing old: [UInt8]? = nil) throws {
        var root = StoreRoot(
            counter: 0, configDigest: StoreRoot.digest(configBytes), keyStoreDigest: StoreRoot.digest(keyStoreBytes))
        root.previousConfigDigest = old.map { StoreRoot.digest($0) }
        try commit(&root)
    }

    /// Whether `rootBytes` is the root of an upgrade to roots that a crash interrupted before
    /// `configBytes` (the configuration from before it) was replaced.
    func isInterruptedUpgrade(of configBytes: [UInt8], root rootBytes: [UInt8]) -> Bool {
        guard let root = try? StoreRoot(decoding: rootBytes, key: key, storeID: storeID) else { return false }
        return root.previousConfigDigest == StoreRoot.digest(configBytes)
    }

    /// The first root of a copy of this store under new keys (`StoreRekeyer`): it continues
    /// this root's counter and witness binding, and expects the witness one ahead, so that the
    /// copy becomes current when the witness moves (`advanceWitness`) and this store is stale.
    /// Every object of the copy was written in `session`: its first mount records them all.
    public func successor(configBytes: [UInt8], keyStoreBytes: [UInt8]?, session: UInt64) throws -> StoreRoot {
        let current = try settled()
        var next = StoreRoot(
            counter: current.counter + 1, configDigest: StoreRoot.digest(configBytes),
            keyStoreDigest: StoreRoot.digest(keyStoreBytes))
        next.sessions.last = max(current.sessions.last + 1, session)
        next.sessions.reconcileFrom = 1
        if let binding = current.witness {
            let value = try state.withLock { s in try witnessValue(binding, &s) }
            next.witness = .init(spec: binding.spec, value: value + 1)
        }
        return next
    }

    /// Writes `root` as it is (the first root of a copy, from `successor`).
    public func write(successor root: StoreRoot) throws {
        try Syscall.writeFileAtomically(
            directory.fd, BackingNames.root, try root.encode(key: key, storeID: storeID), mode: 0o400)
    }

    /// Moves this store's witness to `value` (after `successor` took this store's place).
    public func advanceWitness(to value: UInt64) throws {
        try state.withLock { s in try s.witness?.advance(to: value) }
    }

    private func checkSameWitness(_ requested: String, _ binding: StoreRoot.WitnessBinding) throws {
        let asked = try state.withLock { s in try witness(for: requested, &s).spec }
        guard asked == binding.spec else {
            throw FormatError.integrity(
                "the store is bound to witness \(binding.spec), not \(asked) (a different store, or a swapped root)")
        }
    }

    /// The witness's value, checked against what the root on disk expects (`binding`): equal,
    /// or one behind after an interrupted update, which is completed here. Anything else is a
    /// rollback (or a replaced witness) and is refused, so no change is ever written on top of
    /// a rolled-back store.
    private func witnessValue(_ binding: StoreRoot.WitnessBinding, _ s: inout State, complete: Bool = true) throws
        -> UInt64
    {
        let w = try witness(for: binding.spec, &s)
        let value = try w.read()
        if binding.value == value { return value }
        if binding.value == value + 1 {
            guard complete else { return value }
            try w.advance(to: binding.value)
            return binding.value
        }
        if binding.value < value {
            throw FormatError.integrity(
                "the store was rolled back: its root expects witness value \(binding.value), but witness "
                    + "\(binding.spec) holds \(value), a newer version")
        }
        throw FormatError.integrity(
            "the root expects witness value \(binding.value), ahead of witness \(binding.spec) (\(value)): "
                + "the witness was replaced or reset")
    }

    private func witness(for spec: String, _ s: inout State) throws -> any FreshnessWitness {
        if let w = s.witness, w.spec == spec { return w }
        guard let opener = s.opener else {
            throw FormatError.integrity("the store is bound to witness \(spec), which this program cannot open")
        }
        let w = try opener(spec, storeID)
        s.witness = w
        return w
    }

    /// What `bindWitness` found.
    public enum WitnessState: Equatable, Sendable {
        /// No witness: a rollback of the whole store to an older consistent state goes unnoticed.
        case none
        /// The root and the witness agree (an interrupted update of the witness was finished).
        case verified(spec: String, value: UInt64)
        /// The store was bound to the witness now.
        case bound(spec: String, value: UInt64)
    }

    /// Checks the root against its witness, and binds the store to `requested` if it names none
    /// yet. The root must be no older than the witness: older means the whole store was rolled
    /// back. `opener` opens witnesses from their specs (also for later changes).
    public func bindWitness(requested: String?, opener: WitnessOpener? = nil, readOnly: Bool) throws
        -> WitnessState
    {
        if let opener { state.withLock { $0.opener = opener } }
        if readOnly {
            // Only reads: no lock (a read-only BACKING may be locked by this very process's
            // StoreLock on another descriptor), nothing written, no witness moved.
            let root = try readExisting()
            guard let binding = root.witness else {
                if let requested {
                    throw FormatError.invalidArgument("a read-only mount cannot bind the store to witness \(requested)")
                }
                return .none
            }
            if let requested { try checkSameWitness(requested, binding) }
            return .verified(
                spec: binding.spec, value: try state.withLock { s in try witnessValue(binding, &s, complete: false) })
        }
        return try exclusive {
            var root = try readExisting()
            guard let binding = root.witness else {
                guard let requested else { return .none }
                guard !readOnly else {
                    throw FormatError.invalidArgument("a read-only mount cannot bind the store to witness \(requested)")
                }
                let w = try state.withLock { s in
                    let w = try witness(for: requested, &s)
                    return (w, try w.create())
                }
                root.witness = .init(spec: w.0.spec, value: w.1)
                try commit(&root)
                return .bound(spec: w.0.spec, value: root.witness!.value)
            }
            if let requested { try checkSameWitness(requested, binding) }
            let value = try state.withLock { s in try witnessValue(binding, &s, complete: !readOnly) }
            return .verified(spec: binding.spec, value: value)
        }
    }
}
