import CElasticLinux
import Glibc
@_exported import SystemPackage

/// Thin, typed wrappers over the Linux calls ELASTIC uses. Each returns its result or throws the
/// `Errno` read straight after the call; `EINTR` is retried everywhere except `close`.
public enum Syscall {
    @inline(__always)
    static func retrying<T: FixedWidthInteger>(_ body: () -> T) throws -> T {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = Errno(rawValue: errno)
            if e != .interrupted { throw e }
        }
    }

    /// The corresponding C call is `openat(2)`.
    public static func openat(_ dirfd: Int32, _ path: String, _ flags: Int32, _ mode: mode_t = 0) throws -> Int32 {
        try retrying { Glibc.openat(dirfd, path, flags, mode) }
    }

    /// `openat2` confined to `dirfd`'s tree: `path` may have several components, none of which
    /// may be a symlink or lead outside (ENOSYS on kernels before 5.6).
    public static func openBeneath(_ dirfd: Int32, _ path: String, _ flags: Int32) throws -> Int32 {
        try retrying { CElasticLinux_openat_beneath(dirfd, path, flags) }
    }

    /// Reopens an `O_PATH` descriptor with real access flags, through `/proc/self/fd`.
    public static func reopen(_ fd: Int32, _ flags: Int32) throws -> Int32 {
        try retrying { Glibc.open("/proc/self/fd/\(fd)", flags & ~O_NOFOLLOW) }
    }

    /// The corresponding C call is `close(2)`; errors are ignored (the fd is gone either way).
    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// The access mode and status flags of `fd`. The corresponding C call is `fcntl(F_GETFL)`.
    public static func fileStatusFlags(_ fd: Int32) throws -> Int32 {
        try retrying { Glibc.fcntl(fd, F_GETFL) }
    }

    /// The corresponding C call is `fstatat(2)` (`AT_SYMLINK_NOFOLLOW`).
    public static func lstatat(_ dirfd: Int32, _ name: String) throws -> stat {
        var st = stat()
        _ = try retrying { fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) }
        return st
    }

    /// `fstatat(fd, "", AT_EMPTY_PATH)`: stat of the object an (O_PATH) descriptor refers to.
    public static func fstat(_ fd: Int32) throws -> stat {
        var st = stat()
        _ = try retrying { fstatat(fd, "", &st, CElasticLinux_AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) }
        return st
    }

    /// The corresponding C call is `pread(2)`; loops until `count` bytes or end of file.
    public static func pread(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int, _ offset: Int64) throws -> Int {
        var done = 0
        while done < count {
            let n = try retrying { Glibc.pread(fd, buf + done, count - done, off_t(offset) + off_t(done)) }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// The corresponding C call is `preadv(2)`: one call (a short count means end of file).
    public static func preadv(_ fd: Int32, _ iov: UnsafePointer<iovec>, _ count: Int32, _ offset: Int64) throws -> Int {
        try retrying { Glibc.preadv(fd, iov, count, off_t(offset)) }
    }

    /// The corresponding C call is `pwrite(2)`; loops until every byte is written.
    public static func pwrite(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int, _ offset: Int64) throws {
        var done = 0
        while done < count {
            let n = try retrying { Glibc.pwrite(fd, buf + done, count - done, off_t(offset) + off_t(done)) }
            done += n
        }
    }

    /// `first` then `second`, from `offset`, in one `pwritev(2)` where the kernel takes them
    /// whole (the rest follows with `pwrite`), without an array of parts.
    public static func pwritev(
        _ fd: Int32, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, _ offset: Int64
    ) throws {
        var iov = (
            iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
            iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count)
        )
        let done = try withUnsafeMutableBytes(of: &iov) { v in
            try retrying { Glibc.pwritev(fd, v.baseAddress!.assumingMemoryBound(to: iovec.self), 2, off_t(offset)) }
        }
        // A short write: the rest, part by part.
        if done < first.count, let base = first.baseAddress {
            try pwrite(fd, base + done, first.count - done, offset + Int64(done))
        }
        let second0 = max(0, done - first.count)
        if second0 < second.count, let base = second.baseAddress {
            try pwrite(fd, base + second0, second.count - second0, offset + Int64(first.count + second0))
        }
    }

    /// The corresponding C call is `pwritev(2)`: `parts` written one after the other from
    /// `offset`, in one call when it writes them all (the rest follows with `pwrite`).
    public static func pwritev(_ fd: Int32, _ parts: [UnsafeRawBufferPointer], _ offset: Int64) throws {
        var iov = parts.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        var done = try retrying { Glibc.pwritev(fd, &iov, Int32(iov.count), off_t(offset)) }
        var at = offset
        for part in parts {
            let rest = min(part.count, max(0, done))
            if rest < part.count, let base = part.baseAddress {
                try pwrite(fd, base + rest, part.count - rest, at + Int64(rest))
            }
            done -= part.count
            at += Int64(part.count)
        }
    }

    /// Up to `count` bytes at `offset` (fewer at the end of the file).
    public static func preadBytes(_ fd: Int32, count: Int, at offset: Int64) throws -> [UInt8] {
        var b = [UInt8](repeating: 0, count: count)
        let n = try b.withUnsafeMutableBytes { count == 0 ? 0 : try pread(fd, $0.baseAddress!, count, offset) }
        return Array(b[0..<n])
    }

    /// Writes all of `bytes` at `offset`.
    public static func pwrite(_ fd: Int32, _ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try pwrite(fd, $0.baseAddress!, $0.count, offset) }
    }

    /// The corresponding C call is `ftruncate(2)`.
    public static func ftruncate(_ fd: Int32, _ size: Int64) throws {
        _ = try retrying { Glibc.ftruncate(fd, off_t(size)) }
    }

    /// The corresponding C call is `mkdirat(2)`.
    public static func mkdirat(_ dirfd: Int32, _ name: String, _ mode: mode_t) throws {
        _ = try retrying { Glibc.mkdirat(dirfd, name, mode) }
    }

    /// The corresponding C call is `unlinkat(2)`.
    public static func unlinkat(_ dirfd: Int32, _ name: String, _ flags: Int32) throws {
        _ = try retrying { Glibc.unlinkat(dirfd, name, flags) }
    }

    /// The corresponding C call is `symlinkat(2)`.
    public static func symlinkat(_ target: String, _ dirfd: Int32, _ name: String) throws {
        _ = try retrying { Glibc.symlinkat(target, dirfd, name) }
    }

    /// The corresponding C call is `readlinkat(2)`.
    public static func readlinkat(_ dirfd: Int32, _ name: String) throws -> String {
        var buf = [UInt8](repeating: 0, count: 4097)
        let n = try buf.withUnsafeMutableBufferPointer { (p) throws -> Int in
            try retrying { Glibc.readlinkat(dirfd, name, p.baseAddress!, 4096) }
        }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    /// The corresponding C call is `renameat2(2)`.
    public static func renameat2(_ olddir: Int32, _ old: String, _ newdir: Int32, _ new: String, _ flags: UInt32) throws
    {
        _ = try retrying { CElasticLinux_renameat2(olddir, old, newdir, new, flags) }
    }

    /// The corresponding C call is `linkat(2)` (`AT_SYMLINK_FOLLOW` on `/proc/self/fd/N`).
    public static func linkat(fd: Int32, _ newdir: Int32, _ new: String) throws {
        _ = try retrying { Glibc.linkat(AT_FDCWD, "/proc/self/fd/\(fd)", newdir, new, AT_SYMLINK_FOLLOW) }
    }

    /// The corresponding C call is `fchmodat(2)` on `/proc/self/fd/N`.
    public static func chmod(fd: Int32, _ mode: mode_t) throws {
        _ = try retrying { Glibc.chmod("/proc/self/fd/\(fd)", mode) }
    }

    /// The corresponding C call is `fchownat(2)` with `AT_EMPTY_PATH`.
    public static func chown(fd: Int32, _ uid: uid_t, _ gid: gid_t) throws {
        _ = try retrying { Glibc.fchownat(fd, "", uid, gid, CElasticLinux_AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) }
    }

    /// The corresponding C call is `fchownat(2)` (`AT_SYMLINK_NOFOLLOW`).
    public static func fchownat(_ dirfd: Int32, _ name: String, _ uid: uid_t, _ gid: gid_t) throws {
        _ = try retrying { Glibc.fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) }
    }

    /// The corresponding C call is `utimensat(2)`; `name` nil sets times on `dirfd` itself.
    public static func utimensat(_ dirfd: Int32, _ name: String, _ times: (timespec, timespec)) throws {
        var t = [times.0, times.1]
        _ = try retrying { Glibc.utimensat(dirfd, name, &t, AT_SYMLINK_NOFOLLOW) }
    }

    /// The corresponding C call is `fsync(2)` / `fdatasync(2)`.
    public static func fsync(_ fd: Int32, dataOnly: Bool) throws {
        _ = try retrying { dataOnly ? Glibc.fdatasync(fd) : Glibc.fsync(fd) }
    }

    /// The next offset at or after `offset` where `fd` holds data (`lseek(SEEK_DATA)`), or nil
    /// when only a hole follows: lets a reader skip the holes of a sparse file without reading them.
    public static func nextData(_ fd: Int32, from offset: Int64) throws -> Int64? {
        let r = Glibc.lseek(fd, off_t(offset), CElasticLinux_SEEK_DATA)
        if r < 0 {
            if errno == ENXIO { return nil }
            throw Errno(rawValue: errno)
        }
        return Int64(r)
    }

    /// The corresponding C call is `syncfs(2)`: everything of the filesystem `fd` is on.
    public static func syncfs(_ fd: Int32) throws {
        _ = try retrying { CElasticLinux_syncfs(fd) }
    }

    /// The corresponding C call is `fstatvfs(3)`.
    public static func fstatvfs(_ fd: Int32) throws -> statvfs {
        var s = statvfs()
        _ = try retrying { Glibc.fstatvfs(fd, &s) }
        return s
    }

    /// The corresponding C call is `mknodat(2)`.
    public static func mknodat(_ dirfd: Int32, _ name: String, _ mode: mode_t, _ dev: dev_t) throws {
        _ = try retrying { Glibc.mknodat(dirfd, name, mode, dev) }
    }

    /// The corresponding C call is `fallocate(2)`.
    public static func fallocate(_ fd: Int32, mode: Int32, offset: Int64, length: Int64) throws {
        _ = try retrying { CElasticLinux_fallocate(fd, mode, off_t(offset), off_t(length)) }
    }

    /// Reads a whole (small) file relative to a directory descriptor. The file must be a
    /// regular file (a FIFO or device the host planted is refused, never waited on) of at most
    /// `limit` bytes; symlinks are not followed. `requireRegular: false` is for files the user
    /// names (a key file may be a pipe).
    public static func readFile(_ dirfd: Int32, _ name: String, limit: Int = 1 << 20, requireRegular: Bool = true)
        throws -> [UInt8]
    {
        let fd = try openat(dirfd, name, O_RDONLY | O_CLOEXEC | (requireRegular ? O_NOFOLLOW | O_NONBLOCK : 0))
        defer { close(fd) }
        // Room for the size fstat reports (plus one byte to see growth), grown up to `limit`.
        var capacity = min(limit, 4096) + 1
        if requireRegular {
            let st = try fstat(fd)
            guard st.st_mode & S_IFMT == S_IFREG else { throw SystemError.notRegularFile(name) }
            guard Int(st.st_size) <= limit else { throw SystemError.fileTooLarge(name, limit: limit) }
            capacity = Int(st.st_size) + 1
        }
        var out = [UInt8](repeating: 0, count: capacity)
        var n = 0
        while true {
            let got = try out.withUnsafeMutableBytes { (p) throws -> Int in
                try pread(fd, p.baseAddress! + n, p.count - n, Int64(n))
            }
            n += got
            if got == 0 || n > limit { break }
            if n == out.count { out += [UInt8](repeating: 0, count: min(out.count, limit + 1 - out.count)) }
        }
        guard n <= limit else { throw SystemError.fileTooLarge(name, limit: limit) }
        out.removeSubrange(n...)
        return out
    }

    /// Calls `body` with the name, inode number and type of every entry of the directory open as
    /// `dirfd` (its own descriptor is not moved: the listing goes through a duplicate).
    public static func forEachEntry(_ dirfd: Int32, _ body: (String, UInt64, UInt8) throws -> Void) throws {
        let dupfd = try retrying { Glibc.openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard let d = fdopendir(dupfd) else {
            close(dupfd)
            throw Errno(rawValue: errno)
        }
        defer { closedir(d) }
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        while true {
            errno = 0
            guard let e = readdir(d) else {
                if errno != 0 { throw Errno(rawValue: errno) }
                return
            }
            // The record is d_reclen bytes, often less than sizeof(struct dirent): read the name
            // in place, up to its NUL, never the whole 256-byte array.
            let name = String(cString: (UnsafeRawPointer(e) + nameOffset).assumingMemoryBound(to: CChar.self))
            try body(name, UInt64(e.pointee.d_ino), e.pointee.d_type)
        }
    }

    /// Opens a directory once, to reach everything in it by name relative to the descriptor
    /// (so a path replaced later, by a symlink say, is never followed).
    public static func openDirectory(_ path: String) throws -> OpenDirectory {
        OpenDirectory(try openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
    }

    /// Writes a small file durably: to a temporary name, fsync, then rename over `name`.
    public static func writeFileAtomically(_ dirfd: Int32, _ name: String, _ bytes: [UInt8], mode: mode_t = 0o400)
        throws
    {
        let tmp = name + ".tmp"
        _ = try? unlinkat(dirfd, tmp, 0)
        let fd = try openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        do {
            try bytes.withUnsafeBytes { (p) throws in try pwrite(fd, p.baseAddress!, p.count, 0) }
            try fsync(fd, dataOnly: false)
            close(fd)
        } catch {
            close(fd)
            _ = try? unlinkat(dirfd, tmp, 0)
            throw error
        }
        try renameat2(dirfd, tmp, dirfd, name, 0)
        // The rename itself must reach the disk. `dirfd` may be an O_PATH descriptor, which
        // cannot be fsync'ed: sync the directory through a descriptor opened for reading.
        let dir = try openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(dir) }
        try fsync(dir, dataOnly: false)
    }

    /// Whether thread `tid` belongs to process `tgid` (`tgkill(tgid, tid, 0)`; EPERM still means it does).
    public static func isThread(_ tid: Int32, of tgid: Int32) -> Bool {
        CElasticLinux_tgkill(tgid, tid, 0) == 0 || errno == EPERM
    }
}

/// Errors of the system layer that are not an errno.
public enum SystemError: Error, Equatable, CustomStringConvertible {
    /// A file ELASTIC reads is not a regular file (a FIFO, device or directory in its place).
    case notRegularFile(String)
    /// A file ELASTIC reads is larger than it can be.
    case fileTooLarge(String, limit: Int)

    public var description: String {
        switch self {
        case .notRegularFile(let n): return "\(n) is not a regular file"
        case .fileTooLarge(let n, let limit): return "\(n) is larger than \(limit) bytes"
        }
    }
}

/// A directory descriptor owned by whoever holds this object; closed when the last holder lets go.
public final class OpenDirectory: Sendable {
    public let fd: Int32
    public init(_ fd: Int32) { self.fd = fd }
    deinit { Syscall.close(fd) }
}

/// Constants that need `_GNU_SOURCE`, re-exported for Swift.
public enum LinuxConstants {
    public static let oPath = CElasticLinux_O_PATH
    /// Reads that leave the access time alone (the owner's, or root's, own bookkeeping reads).
    public static let oNoAtime = CElasticLinux_O_NOATIME
    public static let renameNoReplace = CElasticLinux_RENAME_NOREPLACE
    public static let renameExchange = CElasticLinux_RENAME_EXCHANGE
    public static let fallocKeepSize = CElasticLinux_FALLOC_FL_KEEP_SIZE
}

/// Process-wide hardening for the daemon.
public enum ProcessHardening {
    /// No core dumps, no ptrace attach by others (`prctl(PR_SET_DUMPABLE, 0)`).
    public static func setNonDumpable() -> Bool { CElasticLinux_set_nondumpable() == 0 }
    /// Raises the open-file limit to its hard maximum (files open in the mount need descriptors).
    public static func raiseFileLimit() { _ = CElasticLinux_raise_nofile() }
    /// Locks the process's memory in RAM as it is touched, now and later
    /// (`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`): OpenSSL's key schedules and the
    /// plaintext buffers are never written to swap. False if the process may not (no
    /// CAP_IPC_LOCK and a low RLIMIT_MEMLOCK).
    public static func lockMemory() -> Bool { CElasticLinux_lock_memory() == 0 }
    /// Lowers the CPU priority of the calling thread only (Linux: nice is per thread).
    public static func niceCurrentThread(_ niceness: Int32) { _ = CElasticLinux_nice_thread(niceness) }
}

extension Syscall {
    /// The corresponding C call is `utimensat(fd, "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)`:
    /// sets the times of the object an O_PATH descriptor refers to, symlinks included.
    public static func utimes(fd: Int32, _ times: (timespec, timespec)) throws {
        var t = [times.0, times.1]
        _ = try retrying { Glibc.utimensat(fd, "", &t, CElasticLinux_AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) }
    }
}

extension Syscall {
    /// The corresponding C call is `setxattr(2)`.
    public static func setxattr(_ path: String, _ name: String, _ value: [UInt8], _ flags: Int32) throws {
        let r = value.withUnsafeBytes { CElasticLinux.setxattr(path, name, $0.baseAddress, $0.count, flags) }
        if r != 0 { throw Errno(rawValue: errno) }
    }

    /// The corresponding C call is `getxattr(2)` (size probe, then read; retried if it grew).
    public static func getxattr(_ path: String, _ name: String) throws -> [UInt8] {
        while true {
            let size = CElasticLinux.getxattr(path, name, nil, 0)
            if size < 0 { throw Errno(rawValue: errno) }
            var out = [UInt8](repeating: 0, count: size)
            let n = out.withUnsafeMutableBytes { CElasticLinux.getxattr(path, name, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == ERANGE { continue }
                throw Errno(rawValue: errno)
            }
            out.removeSubrange(n...)
            return out
        }
    }

    /// The corresponding C call is `listxattr(2)`: NUL-separated names.
    public static func listxattr(_ path: String) throws -> [UInt8] {
        while true {
            let size = CElasticLinux.listxattr(path, nil, 0)
            if size < 0 { throw Errno(rawValue: errno) }
            if size == 0 { return [] }
            var out = [UInt8](repeating: 0, count: size)
            let n = out.withUnsafeMutableBytes {
                CElasticLinux.listxattr(path, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count)
            }
            if n < 0 {
                if errno == ERANGE { continue }
                throw Errno(rawValue: errno)
            }
            out.removeSubrange(n...)
            return out
        }
    }

    /// The corresponding C call is `removexattr(2)`.
    public static func removexattr(_ path: String, _ name: String) throws {
        if CElasticLinux.removexattr(path, name) != 0 { throw Errno(rawValue: errno) }
    }
}

extension ProcessHardening {
    /// Unblocks every signal: a daemon started by a process that blocks signals (as thread pools
    /// do) inherits that mask and would otherwise never see SIGTERM.
    public static func unblockSignals() {
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
    }
}
