import CElasticLinux
import ElasticFormat
import Glibc

/// Going to the background the way mount(8) expects: the first process starts the real daemon
/// (itself with -f and a notify pipe) and exits only when the mount is ready or has failed.
enum Daemon {
    /// Starts `/proc/self/exe <same args> --notify-fd N` and waits for its readiness byte.
    static func spawnAndWait() -> ElasticExitCode {
        var fds: [Int32] = [0, 0]
        guard CElasticLinux_pipe_cloexec(&fds) == 0 else { return .mountFailed }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto itself clears close-on-exec for the write end only (glibc >= 2.29).
        posix_spawn_file_actions_adddup2(&actions, writeEnd, writeEnd)
        let args = [CommandLine.arguments[0]] + CommandLine.arguments.dropFirst() + ["--notify-fd", "\(writeEnd)"]
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, nil, &cargs, environ)
        close(writeEnd)
        guard rc == 0 else {
            close(readEnd)
            let s = "mount.elastic: error: cannot start the daemon: \(String(cString: strerror(rc)))\n"
            _ = s.withCString { write(2, $0, strlen($0)) }
            return .mountFailed
        }
        var byte: UInt8 = 0
        var n: Int
        repeat { n = read(readEnd, &byte, 1) } while n < 0 && errno == EINTR
        close(readEnd)
        if n == 1 && byte == UInt8(ascii: "1") { return .success }
        // The daemon failed before mounting: it printed why; pass on its exit code.
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        let code = exited ? (status >> 8) & 0xff : Int32(ElasticExitCode.mountFailed.rawValue)
        return ElasticExitCode(rawValue: code) ?? .mountFailed
    }

    /// In the daemon, once mounted: report readiness, leave the caller's session and terminal,
    /// and log to syslog from now on.
    static func detach(notifyFD fd: Int32) {
        _ = setsid()
        let devnull = open("/dev/null", O_RDWR)
        if devnull >= 0 {
            dup2(devnull, 0)
            dup2(devnull, 1)
            DaemonLogHandler.useSyslog.store(true, ordering: .relaxed)
            dup2(devnull, 2)
            if devnull > 2 { close(devnull) }
        }
        var one = UInt8(ascii: "1")
        _ = write(fd, &one, 1)
        close(fd)
    }
}
