import CElasticLinux
import Glibc
import Synchronization

/// Tells when processes exit: each watched process gets a pidfd (pidfd_open(2)), and one thread
/// waits on all of them with epoll. `onExit` runs on that thread with the process id and the
/// token `watch` returned, so a later process that reuses the pid is never mistaken for it.
/// The thread starts with the first watch and stops when the watcher is released.
public final class ProcessWatcher: Sendable {
    /// The pidfds and the epoll set, shared with the thread (which outlives no user of it).
    final class Core: @unchecked Sendable {  // `watched` only under its mutex; fds immutable
        let epfd: Int32
        let wakeup: Int32
        let watched = Mutex<[UInt64: (pid: Int32, pidfd: Int32)]>([:])
        let nextToken = Atomic<UInt64>(1)
        let onExit: @Sendable (Int32, UInt64) -> Void

        init(onExit: @escaping @Sendable (Int32, UInt64) -> Void) throws {
            let ep = CElasticLinux_epoll_create()
            guard ep >= 0 else { throw Errno(rawValue: errno) }
            let ev = CElasticLinux_eventfd()
            guard ev >= 0 else {
                close(ep)
                throw Errno(rawValue: errno)
            }
            guard CElasticLinux_epoll_add(ep, ev, 0) == 0 else {
                close(ep)
                close(ev)
                throw Errno(rawValue: errno)
            }
            epfd = ep
            wakeup = ev
            self.onExit = onExit
        }

        deinit {
            for (_, w) in watched.withLock({ $0 }) { close(w.pidfd) }
            close(epfd)
            close(wakeup)
        }

        /// The thread's loop: token 0 is the wake-up eventfd (stop).
        func run() {
            var ready = [UInt64](repeating: 0, count: 64)
            while true {
                let n = ready.withUnsafeMutableBufferPointer { CElasticLinux_epoll_wait(epfd, $0.baseAddress, 64, -1) }
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                for token in ready[0..<Int(n)] {
                    if token == 0 { return }
                    guard let w = unwatch(token) else { continue }
                    onExit(w.pid, token)
                }
            }
        }

        func unwatch(_ token: UInt64) -> (pid: Int32, pidfd: Int32)? {
            guard let w = watched.withLock({ $0.removeValue(forKey: token) }) else { return nil }
            _ = CElasticLinux_epoll_del(epfd, w.pidfd)
            close(w.pidfd)
            return w
        }
    }

    private let core: Core
    private let started = Atomic<Bool>(false)

    public init(onExit: @escaping @Sendable (_ pid: Int32, _ token: UInt64) -> Void) throws {
        core = try Core(onExit: onExit)
    }

    deinit {
        var one: UInt64 = 1
        _ = write(core.wakeup, &one, 8)  // the thread, if any, stops and lets go of the core
    }

    /// Starts watching `pid`; returns the token `onExit` will name it by. ESRCH if it is gone.
    public func watch(_ pid: Int32) throws -> UInt64 {
        startIfNeeded()
        let pidfd = CElasticLinux_pidfd_open(pid)
        guard pidfd >= 0 else { throw Errno(rawValue: errno) }
        let token = core.nextToken.wrappingAdd(1, ordering: .relaxed).oldValue
        core.watched.withLock { $0[token] = (pid, pidfd) }
        guard CElasticLinux_epoll_add(core.epfd, pidfd, token) == 0 else {
            let e = Errno(rawValue: errno)
            _ = core.unwatch(token)
            throw e
        }
        return token
    }

    /// Stops watching (`onExit` will not run for `token`).
    public func unwatch(_ token: UInt64) { _ = core.unwatch(token) }

    /// Whether the process behind `token` has exited already (its exit may not be reported yet).
    public func hasExited(_ token: UInt64) -> Bool {
        guard let fd = core.watched.withLock({ $0[token]?.pidfd }) else { return true }
        return CElasticLinux_readable_now(fd) == 1
    }

    private func startIfNeeded() {
        guard started.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        let retained = Unmanaged.passRetained(core)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { arg in
                let core = Unmanaged<Core>.fromOpaque(arg!).takeRetainedValue()
                core.run()
                return nil
            }, retained.toOpaque())
        if rc == 0 { pthread_detach(thread) } else { retained.release() }
    }
}
