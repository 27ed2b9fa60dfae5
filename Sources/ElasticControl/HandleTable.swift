import CElasticControlABI
import ElasticCrypto
import ElasticSystem
import Glibc
import Synchronization

/// Stopwatches, hash streams and key operations, by random 64-bit handle, owned by the process
/// that opened them and indexed by it. A missing, closed or foreign handle is `.badHandle`
/// (EBADF). Handles are reclaimed the moment their process exits (a pidfd per owning process,
/// watched by `ProcessWatcher`), and bounded per process, per uid and in all; bytes a handle
/// buffers are bounded per uid.
final class HandleTable: Sendable {
    /// What a handle refers to. The streams are only touched under the entry's lock.
    enum Object: @unchecked Sendable {  // each stream is used only under its Entry's mutex
        case stopwatch(startNanoseconds: UInt64, trusted: Bool)
        case hash(Digest)
        case aead(AEADStream, sealing: Bool)
        case signature(SignatureStream, verifying: Bool)
    }

    /// One open handle. Its own lock serializes the steps on it, so long operations (an RSA
    /// signature) on one handle never hold up the others.
    final class Entry: Sendable {
        let uid: UInt32
        let object: Mutex<Object>
        /// Its last step is slow (an RSA signature): run off the FUSE threads.
        let slowFinal: Bool
        /// Bytes this handle holds buffered (charged to its uid).
        let buffered = Atomic<Int>(0)
        init(uid: UInt32, object: Object, slowFinal: Bool) {
            self.uid = uid
            self.object = Mutex(object)
            self.slowFinal = slowFinal
        }
    }

    struct Limits: Sendable {
        var perProcess = Int(ELASTIC_HANDLES_PER_PROCESS)
        var perUID = Int(ELASTIC_HANDLES_PER_UID)
        var total = Int(ELASTIC_HANDLES_MAX)
        var bufferedPerUID = Int(ELASTIC_BUFFERED_PER_UID)
    }

    /// The handles of one live process.
    struct Process {
        let token: UInt64
        var handles: [UInt64: Entry] = [:]
    }

    struct Usage {
        var handles = 0
        var bytes = 0
    }

    struct State {
        var processes: [Int32: Process] = [:]
        var perUID: [UInt32: Usage] = [:]
        var total = 0

        mutating func release(_ e: Entry) {
            let bytes = e.buffered.load(ordering: .relaxed)
            perUID[e.uid, default: Usage()].handles -= 1
            perUID[e.uid, default: Usage()].bytes -= bytes
            if perUID[e.uid]?.handles == 0 { perUID[e.uid] = nil }
            total -= 1
        }
    }

    let limits: Limits
    private let state = Mutex(State())
    private let watcher: ProcessWatcher

    init(limits: Limits = Limits()) throws {
        self.limits = limits
        let box = WeakBox()
        watcher = try ProcessWatcher { pid, token in box.table?.reclaim(pid, token: token) }
        box.table = self
    }

    /// Lets the watcher's thread reach the table without keeping it alive.
    final class WeakBox: @unchecked Sendable {  // set once, before the watcher can call
        weak var table: HandleTable?
    }

    /// Opens a handle for process `owner` (a thread group id) of `uid`.
    func open(owner: Int32, uid: UInt32, _ object: Object, slowFinal: Bool = false) throws(ControlError) -> UInt64 {
        do {
            return try openOnce(owner: owner, uid: uid, object, slowFinal: slowFinal)
        } catch .tooManyHandles {
            // Exits are reported by another thread: a process that has just exited may still
            // count. Collect those now, then decide.
            guard reclaimExited() > 0 else { throw .tooManyHandles }
            return try openOnce(owner: owner, uid: uid, object, slowFinal: slowFinal)
        }
    }

    /// Reclaims the handles of every process that has exited, whether or not its exit was
    /// reported yet; returns how many processes that were.
    @discardableResult
    func reclaimExited() -> Int {
        let owners = state.withLock { s in s.processes.map { ($0.key, $0.value.token) } }
        let gone = owners.filter { watcher.hasExited($0.1) }
        for (pid, token) in gone { reclaim(pid, token: token) }
        return gone.count
    }

    private func openOnce(owner: Int32, uid: UInt32, _ object: Object, slowFinal: Bool) throws(ControlError) -> UInt64 {
        // A process seen for the first time (or again, with its pid reused) gets a watch.
        let known = state.withLock { s -> UInt64? in s.processes[owner]?.token }
        var fresh: UInt64? = nil
        if known == nil || watcher.hasExited(known!) {
            if let known { reclaim(owner, token: known) }
            do { fresh = try watcher.watch(owner) } catch { throw .invalid("caller process gone") }
        }
        let result = state.withLock { (s: inout State) -> Result<UInt64, ControlError> in
            if let fresh {
                if s.processes[owner] == nil {
                    s.processes[owner] = Process(token: fresh)
                } else {
                    watcher.unwatch(fresh)
                }
            }
            guard let process = s.processes[owner] else { return .failure(.invalid("caller process gone")) }
            let usage = s.perUID[uid] ?? Usage()
            guard process.handles.count < limits.perProcess, usage.handles < limits.perUID, s.total < limits.total
            else {
                return .failure(.tooManyHandles)
            }
            var handle: UInt64 = 0
            repeat { handle = UInt64.random(in: 1...UInt64.max) } while process.handles[handle] != nil
            s.processes[owner]!.handles[handle] = Entry(uid: uid, object: object, slowFinal: slowFinal)
            s.perUID[uid, default: Usage()].handles += 1
            s.total += 1
            return .success(handle)
        }
        return try result.get()
    }

    /// Runs `body` on the caller's own handle; `close` removes it first, so no other step can
    /// start on it.
    func use<R>(_ handle: UInt64, owner: Int32, close: Bool, _ body: (Entry, Object) throws(ControlError) -> R)
        throws(ControlError) -> R
    {
        var idle: UInt64? = nil
        let entry = try state.withLock { (s: inout State) throws(ControlError) -> Entry in
            guard let e = s.processes[owner]?.handles[handle] else { throw ControlError.badHandle }
            if close {
                s.processes[owner]!.handles[handle] = nil
                s.release(e)
                // A process without handles needs no watch (its pidfd is closed).
                if s.processes[owner]!.handles.isEmpty { idle = s.processes.removeValue(forKey: owner)!.token }
            }
            return e
        }
        if let idle { watcher.unwatch(idle) }
        return try entry.object.withLock { (o: inout Object) throws(ControlError) -> R in try body(entry, o) }
    }

    /// Whether the last step of `handle` is slow (see `Entry.slowFinal`); false if unknown.
    func hasSlowFinal(_ handle: UInt64, owner: Int32) -> Bool {
        state.withLock { $0.processes[owner]?.handles[handle]?.slowFinal ?? false }
    }

    /// Charges `bytes` more buffered data of `entry` to its uid (EDQUOT past the uid's limit).
    func charge(_ entry: Entry, bytes: Int) throws(ControlError) {
        try state.withLock { (s: inout State) throws(ControlError) in
            let usage = s.perUID[entry.uid] ?? Usage()
            guard usage.bytes + bytes <= limits.bufferedPerUID else { throw ControlError.quotaExceeded }
            entry.buffered.add(bytes, ordering: .relaxed)
            // A handle closed meanwhile was already released: its uid's usage is gone with it.
            if s.perUID[entry.uid] != nil { s.perUID[entry.uid]!.bytes += bytes }
        }
    }

    /// Drops every handle of a process that exited.
    func reclaim(_ pid: Int32, token: UInt64) {
        var dropped: [Entry] = []
        state.withLock { s in
            guard let p = s.processes[pid], p.token == token else { return }
            s.processes[pid] = nil
            for e in p.handles.values {
                s.release(e)
                dropped.append(e)
            }
        }
        watcher.unwatch(token)
        dropped.removeAll()  // the streams are freed here, outside the lock
    }

    /// Open handles: in all, and of `uid` (for tests and limits).
    func count(uid: UInt32? = nil) -> Int {
        state.withLock { s in uid.map { s.perUID[$0]?.handles ?? 0 } ?? s.total }
    }

    /// Processes that hold handles.
    var processCount: Int { state.withLock { $0.processes.count } }
}
