import ElasticCrypto
import Glibc
import Synchronization

/// Stopwatches, hash streams and key operations, by random 64-bit handle, owned by the process that opened them.
/// A missing, closed or foreign handle is `.badHandle` (EBADF); a process may hold at most
/// `perProcess` handles, and handles of processes that have exited are reclaimed.
final class HandleTable: Sendable {
    /// What a handle refers to. The streams are only touched under the table lock.
    enum Object: @unchecked Sendable {
        case stopwatch(startNanoseconds: UInt64)
        case hash(Digest)
        case aead(AEADStream, sealing: Bool)
        case signature(SignatureStream, verifying: Bool)
    }

    /// One open handle. Its own lock serializes the steps on it, so long operations (an RSA
    /// signature) on one handle never hold up the others.
    final class Entry: Sendable {
        let owner: Int32
        let object: Mutex<Object>
        init(owner: Int32, object: Object) {
            self.owner = owner
            self.object = Mutex(object)
        }
    }

    let perProcess: Int
    private let entries = Mutex<[UInt64: Entry]>([:])

    init(perProcess: Int) { self.perProcess = perProcess }

    func open(owner: Int32, _ object: Object) throws(ControlError) -> UInt64 {
        try entries.withLock { (t: inout [UInt64: Entry]) throws(ControlError) -> UInt64 in
            if t.values.filter({ $0.owner == owner }).count >= perProcess {
                t = t.filter { kill($0.value.owner, 0) == 0 || errno != ESRCH }  // reclaim exited owners
                guard t.values.filter({ $0.owner == owner }).count < perProcess else { throw ControlError.tooManyHandles }
            }
            var handle: UInt64 = 0
            repeat { handle = UInt64.random(in: 1...UInt64.max) } while t[handle] != nil
            t[handle] = Entry(owner: owner, object: object)
            return handle
        }
    }

    /// Runs `body` on the caller's own handle; `close` removes it first, so no other step can
    /// start on it.
    func use<R>(_ handle: UInt64, owner: Int32, close: Bool, _ body: (Object) throws(ControlError) -> R) throws(ControlError) -> R {
        let entry = try entries.withLock { (t: inout [UInt64: Entry]) throws(ControlError) -> Entry in
            guard let e = t[handle], e.owner == owner else { throw ControlError.badHandle }
            if close { t[handle] = nil }
            return e
        }
        return try entry.object.withLock { (o: inout Object) throws(ControlError) -> R in try body(o) }
    }
}
