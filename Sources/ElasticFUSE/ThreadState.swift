import ElasticFormat
import ElasticSystem
import Glibc

/// Per-worker-thread state: keyed crypto contexts and page-aligned buffers sized for the largest
/// request (max_write plus a block on each side). Reached through a pthread key; never shared.
final class ThreadState {
    static let maxRequest = 1 << 20
    static let plainCapacity = maxRequest + 2 * Int(BlockLayout.blockSize)
    static let cipherCapacity =
        (plainCapacity / Int(BlockLayout.blockSize) + 1) * Int(BlockLayout.cipherBlockSize)
        + Int(BlockLayout.headerSize)

    let crypto: CryptoWorker
    let plain: UnsafeMutableRawPointer
    let cipher: UnsafeMutableRawPointer
    /// The `elastic.diriv` files this thread last changed entry sets in (at most three, least
    /// recently used first), kept open: by directory inode and the epoch they were opened in.
    var dirivFiles: [(inode: UInt64, epoch: UInt64, fd: Int32)] = []
    /// The bytes the last kept overwrite replaced (still in `undo.scratch`): where, in which
    /// backing file, and how many. A write or truncate that fails before its record puts them
    /// back (`rollBack`), so the file stays what its record names.
    var kept: (fd: Int32, offset: Int64, count: Int)?
    /// The backing path this thread last gave the journal: for which inode, made at which
    /// generation of the inode table (`ElasticFilesystem.backingPath`).
    var lastPath: (inode: UInt64, generation: UInt64, path: String)?
    /// This thread's slot of the undo journal, and a buffer for the old bytes it keeps.
    private(set) var undo: (journal: UndoJournal, slot: Int, scratch: UnsafeMutableRawPointer)?

    init(keys: StoreKeys, clock: SessionClock, undo journal: UndoJournal?) throws {
        crypto = try CryptoWorker(keys: keys, clock: clock)
        plain = UnsafeMutableRawPointer.allocate(byteCount: Self.plainCapacity, alignment: 4096)
        cipher = UnsafeMutableRawPointer.allocate(byteCount: Self.cipherCapacity, alignment: 4096)
        undo = journal.map {
            ($0, $0.acquire(), UnsafeMutableRawPointer.allocate(byteCount: Self.cipherCapacity, alignment: 4096))
        }
    }

    /// Leaves this thread's journal slot armed for the next mount (`UndoJournal.pin`) and
    /// takes another.
    func keepJournalSlot() throws {
        guard let u = undo else { return }
        // (Another slot from now on, even if marking this one fails: never written again.)
        undo = (u.journal, u.journal.acquire(), u.scratch)
        try u.journal.pin(u.slot)
    }

    deinit {
        for f in dirivFiles { Syscall.close(f.fd) }
        if let undo {
            undo.journal.release(undo.slot)
            undo.scratch.deallocate()
        }
        // The plaintext buffer held file contents: wipe it before it goes back to the allocator.
        memset(plain, 0, Self.plainCapacity)
        plain.deallocate()
        cipher.deallocate()
    }
}

/// A pthread-key slot holding one `ThreadState` per thread, released when the thread exits.
final class ThreadStateKey: @unchecked Sendable {  // `key` is set once in init; pthread keys are thread-safe
    private var key = pthread_key_t()
    private let keys: StoreKeys
    private let clock: SessionClock
    private let undo: UndoJournal?

    init(keys: StoreKeys, clock: SessionClock, undo: UndoJournal?) {
        self.keys = keys
        self.clock = clock
        self.undo = undo
        pthread_key_create(&key) { p in
            guard let p else { return }
            Unmanaged<ThreadState>.fromOpaque(p).release()
        }
    }

    func current() throws -> ThreadState {
        if let p = pthread_getspecific(key) { return Unmanaged<ThreadState>.fromOpaque(p).takeUnretainedValue() }
        let s = try ThreadState(keys: keys, clock: clock, undo: undo)
        pthread_setspecific(key, Unmanaged.passRetained(s).toOpaque())
        return s
    }
}
