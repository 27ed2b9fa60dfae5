import ElasticSystem
import Glibc
import Synchronization

/// Runs slow control requests (RSA key generation, RSA signatures, attestation) on a thread of
/// their own at a lower CPU priority, so they never take the FUSE worker threads that serve
/// file operations. Fair between uids: the thread takes one request from each uid with work in
/// turn, and a uid may have at most `perUID` requests waiting or running (then `.busy`, EAGAIN).
public final class SlowRequestQueue: @unchecked Sendable {  // all state under `mutex`
    public static let defaultPerUID = 4

    public let perUID: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queues: [UInt32: [() -> Void]] = [:]
    /// Uids with queued work, in the order they are served.
    private var turn: [UInt32] = []
    private var inFlight: [UInt32: Int] = [:]
    private var stopping = false
    private var threads: [pthread_t] = []

    /// `workers` threads (at nice +`niceness`), each uid at most `perUID` requests in flight.
    public init(workers: Int = 1, perUID: Int = SlowRequestQueue.defaultPerUID, niceness: Int32 = 10) {
        self.perUID = perUID
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
        for _ in 0..<max(1, workers) {
            let context = Unmanaged.passRetained(WorkerContext(queue: self, niceness: niceness)).toOpaque()
            var t = pthread_t()
            if pthread_create(
                &t, nil,
                { arg in
                    let c = Unmanaged<WorkerContext>.fromOpaque(arg!).takeRetainedValue()
                    ProcessHardening.niceCurrentThread(c.niceness)
                    c.queue.loop()
                    return nil
                }, context) == 0
            {
                threads.append(t)
            } else {
                Unmanaged<WorkerContext>.fromOpaque(context).release()
            }
        }
    }

    private final class WorkerContext {
        let queue: SlowRequestQueue
        let niceness: Int32
        init(queue: SlowRequestQueue, niceness: Int32) {
            self.queue = queue
            self.niceness = niceness
        }
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Queues `work` for `uid`; `.busy` if the uid already has `perUID` requests in flight.
    public func submit(uid: UInt32, _ work: @escaping () -> Void) throws(ControlError) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard !stopping else { throw .busy }
        guard inFlight[uid, default: 0] < perUID else { throw .busy }
        inFlight[uid, default: 0] += 1
        if queues[uid, default: []].isEmpty { turn.append(uid) }
        queues[uid, default: []].append(work)
        pthread_cond_signal(cond)
    }

    private func loop() {
        pthread_mutex_lock(mutex)
        while true {
            while turn.isEmpty && !stopping { pthread_cond_wait(cond, mutex) }
            if turn.isEmpty && stopping { break }
            let uid = turn.removeFirst()
            let work = queues[uid]!.removeFirst()
            if queues[uid]!.isEmpty { queues[uid] = nil } else { turn.append(uid) }  // next uid's turn first
            pthread_mutex_unlock(mutex)
            work()
            pthread_mutex_lock(mutex)
            inFlight[uid]! -= 1
            if inFlight[uid] == 0 { inFlight[uid] = nil }
        }
        pthread_mutex_unlock(mutex)
    }

    /// Runs what is queued, then stops the threads (at unmount).
    public func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
        for t in threads { pthread_join(t, nil) }
        threads = []
    }
}
