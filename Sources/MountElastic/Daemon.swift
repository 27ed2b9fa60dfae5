import CElasticLinux
import ElasticFormat
import ElasticRuntime
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
        // The daemon gets the notify pipe as fd 3 and no other inherited descriptor (a leaked
        // one, such as a caller's pipe, would otherwise stay open for the daemon's lifetime).
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 3)
        _ = CElasticLinux_spawn_closefrom(&actions, 4)
        // The daemon never holds the caller's stdio (a pipe reader would wait forever): it
        // reports through the notify pipe and logs to syslog.
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&actions, 0, 1)
        posix_spawn_file_actions_adddup2(&actions, 0, 2)
        let args = [CommandLine.arguments[0]] + CommandLine.arguments.dropFirst() + ["--notify-fd", "3"]
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
        var message: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while true {
            let n = read(readEnd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            message += chunk[0..<n]
            // Warnings ("w" ... "\n") come before the outcome: print them as they arrive.
            while message.first == UInt8(ascii: "w"), let nl = message.firstIndex(of: 10) {
                let line = "mount.elastic: warning: " + String(decoding: message[1...nl], as: UTF8.self)
                _ = line.withCString { write(2, $0, strlen($0)) }
                message.removeSubrange(...nl)
            }
            if message.first == UInt8(ascii: "1") { break }
        }
        close(readEnd)
        if message.first == UInt8(ascii: "1") { return .success }
        // The daemon failed before mounting: print why and pass on its exit code.
        let text =
            message.isEmpty
            ? "mount.elastic: error: the daemon exited before mounting\n" : String(decoding: message, as: UTF8.self)
        _ = text.withCString { write(2, $0, strlen($0)) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        let code = exited ? (status >> 8) & 0xff : Int32(ElasticExitCode.mountFailed.rawValue)
        return ElasticExitCode(rawValue: code) ?? .mountFailed
    }

    /// In the daemon, once mounted: report readiness and leave the caller's session.
    static func detach(notifyFD fd: Int32) {
        _ = setsid()
        var one = UInt8(ascii: "1")
        _ = write(fd, &one, 1)
        close(fd)
    }
}
