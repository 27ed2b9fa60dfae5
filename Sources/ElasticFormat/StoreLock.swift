import ElasticSystem
import Glibc

/// One mount (or offline tool) per store at a time: an exclusive flock(2) on `elastic.lock` in
/// BACKING, held for as long as the holder lives (the kernel drops it when the process ends, so
/// a crashed daemon leaves no stale lock). The file holds the holder's pid and mount point, for
/// the message a second mount gets; its content is never trusted for anything else.
public final class StoreLock {
    public static let fileName = BackingNames.lock
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

    /// Takes the lock of the store opened at `directory`, recording `purpose` (e.g. "mounted on
    /// /secure") for whoever comes second.
    public init(directory: OpenDirectory, purpose: String) throws {
        let fd = try Syscall.openat(
            directory.fd, Self.fileName, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        let st = try Syscall.fstat(fd)
        guard st.st_mode & S_IFMT == S_IFREG else {
            Syscall.close(fd)
            throw FormatError.corruptMetadata("\(Self.fileName) is not a regular file")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            var buf = [UInt8](repeating: 0, count: 256)
            let n = pread(fd, &buf, buf.count, 0)
            Syscall.close(fd)
            guard e == EWOULDBLOCK else { throw Errno(rawValue: e) }
            // Printable ASCII only: the file is host-writable.
            let text = String(decoding: buf.prefix(max(0, n)).filter { $0 >= 0x20 && $0 < 0x7F }, as: UTF8.self)
            throw Failure.held(by: text.isEmpty ? "another process holds its lock" : text)
        }
        let note = Array("pid \(getpid()), \(purpose)".utf8)
        _ = ftruncate(fd, 0)
        _ = note.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    deinit { Syscall.close(fd) }  // closing the descriptor releases the lock
}
