import ElasticCrypto
import ElasticSystem
import Glibc

/// A key file: 32 random bytes written as 64 hex digits and a newline, mode 0600.
public enum KeyFile {
    /// Creates `path` with a fresh key (O_EXCL: never overwrites). Returns the key bytes.
    public static func create(at path: String) throws -> [UInt8] {
        var key = try Random.bytes(32)
        var text = Array((Hex.encode(key) + "\n").utf8)
        defer { secureWipe(&text) }
        let fd = try Syscall.openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        defer { Syscall.close(fd) }
        do {
            try text.withUnsafeBytes { try Syscall.pwrite(fd, $0.baseAddress!, $0.count, 0) }
            try Syscall.fsync(fd, dataOnly: false)
        } catch {
            secureWipe(&key)
            _ = unlink(path)
            throw error
        }
        return key
    }

    /// Reads a key file: 64 hex digits (surrounding white space ignored), or at least 32 raw bytes.
    public static func read(at path: String) throws -> [UInt8] {
        var raw: [UInt8]
        do { raw = try Syscall.readFile(AT_FDCWD, path, limit: 4096, requireRegular: false) } catch {
            throw FormatError.keySource("cannot read key file \(path): \(error)")
        }
        defer { secureWipe(&raw) }
        let trimmed = raw.filter { !($0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09) }
        if trimmed.count == 64, let key = Hex.decode(trimmed) { return key }
        guard raw.count >= 32 else {
            throw FormatError.keySource("key file \(path) is too short (need 64 hex digits or 32+ bytes)")
        }
        return raw
    }
}
