import ElasticSystem
import Glibc

/// One mount (or offline tool) per store at a time: an exclusive flock(2) on `elastic.lock` in
/// BACKING, held for as long as the holder lives (the kernel drops it when the process ends, so
/// a crashed daemon leaves no stale lock). The file holds the holder's pid, for the message a
/// second mount gets (digits only are shown); it is never trusted for anything else.
public final class StoreLock {
    public static let fileName = BackingNames.lock
    /// How long a second holder waits (20 ms each) before it is refused: 2 s.
    static let graceTries = 100
    let fd: Int32

    /// Why the lock could not be taken.
    public enum Failure: Error, CustomStringConvertible {
        case held(by: String)
        public var description: String {
            switch self {
            case .held(let who):
                return "the store is already in use (\(who)); one mount per store: unmount it first"
            }
        }
    }

    /// Takes the lock of the store opened at `directory`, recording this process's pid for
    /// whoever comes second. On a read-only BACKING the lock file is opened read-only (made by
    /// an earlier mount) or, failing that, the directory itself is locked.
    public init(directory: OpenDirectory) throws {
        var fd: Int32 = -1
        var writable = true
        do {
            fd = try Syscall.openat(
                directory.fd, Self.fileName, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        } catch let e as Errno where e == .readOnlyFileSystem {
            writable = false
            if let existing = try? Syscall.openat(
                directory.fd, Self.fileName, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            {
                fd = existing
            } else {
                fd = try Syscall.openat(directory.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            }
        }
        guard let st = try? Syscall.fstat(fd), st.st_mode & S_IFMT == S_IFREG || st.st_mode & S_IFMT == S_IFDIR else {
            Syscall.close(fd)
            throw FormatError.corruptMetadata("\(Self.fileName) is not a regular file")
        }
        // A daemon just unmounted may still be writing its versions map: it gets a moment.
        var locked = false
        for attempt in 0...Self.graceTries {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                locked = true
                break
            }
            if errno != EWOULDBLOCK || attempt == Self.graceTries { break }
            usleep(20_000)
        }
        guard locked else {
            let e = errno
            var buf = [UInt8](repeating: 0, count: 64)
            let n = pread(fd, &buf, buf.count, 0)
            Syscall.close(fd)
            guard e == EWOULDBLOCK else { throw Errno(rawValue: e) }
            // Digits only: the file is host-writable.
            let pid = String(decoding: buf.prefix(max(0, n)).filter { $0 >= 0x30 && $0 <= 0x39 }, as: UTF8.self)
            throw Failure.held(by: pid.isEmpty ? "another process holds its lock" : "by process \(pid)")
        }
        // A store being replaced (rekey) unlinks its lock file and configuration: a lock on
        // what is no longer the store protects nothing.
        let now = try Syscall.fstat(fd)
        guard now.st_nlink > 0 || now.st_mode & S_IFMT == S_IFDIR,
            (try? Syscall.lstatat(directory.fd, BackingNames.config)) != nil
        else {
            Syscall.close(fd)
            throw Failure.held(by: "it is being replaced")
        }
        if writable {
            let note = Array("\(getpid())\n".utf8)
            _ = ftruncate(fd, 0)
            _ = note.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
        self.fd = fd
    }

    deinit { Syscall.close(fd) }  // closing the descriptor releases the lock
}
