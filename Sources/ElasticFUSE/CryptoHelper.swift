import Glibc
import Synchronization

/// A second pair of hands for large requests: while a FUSE worker seals the first half of a
/// 1 MiB write, the helper thread seals the second half on the other core (a single writer
/// otherwise keeps only one core busy: the kernel sends its next write after our reply).
/// If the helper is busy the caller simply does all the work itself.
final class CryptoHelper: @unchecked Sendable {  // `job`, `finished`, `stopping` only under `mutex`
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let busy = Atomic<Bool>(false)
    private var job: (() -> Void)?
    private var finished = false
    private var stopping = false
    private var thread = pthread_t()

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
        let unmanaged = Unmanaged.passRetained(self)
        pthread_create(
            &thread, nil,
            { arg in
                let helper = Unmanaged<CryptoHelper>.fromOpaque(arg!).takeRetainedValue()
                helper.loop()
                return nil
            }, unmanaged.toOpaque())
    }

    /// Runs after `stop()`: the thread held the last reference until it returned.
    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    private func loop() {
        pthread_mutex_lock(mutex)
        while true {
            while job == nil && !stopping { pthread_cond_wait(cond, mutex) }
            if stopping { break }
            let j = job!
            pthread_mutex_unlock(mutex)
            j()
            pthread_mutex_lock(mutex)
            job = nil
            finished = true
            pthread_cond_broadcast(cond)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Runs `background` on the helper and `foreground` on this thread, and returns when both
    /// are done. Returns false (running nothing) if the helper is taken.
    func run(background: @escaping () -> Void, foreground: () -> Void) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        pthread_mutex_lock(mutex)
        finished = false
        job = background
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
        foreground()
        pthread_mutex_lock(mutex)
        while !finished { pthread_cond_wait(cond, mutex) }
        pthread_mutex_unlock(mutex)
        return true
    }

    /// Stops the thread (at unmount).
    func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
        pthread_join(thread, nil)
    }
}
