import COpenSSL
import Glibc

/// Key material: a fixed-size buffer in the `SecureArena` (locked in RAM, never in a core dump),
/// wiped with `OPENSSL_cleanse` when freed, compared in constant time and never printed. Reach
/// the bytes only through `withUnsafeBytes`.
// bytes written only during init
public final class SecureBytes: @unchecked Sendable, CustomStringConvertible, Equatable {
    private let pointer: UnsafeMutableRawPointer
    public let count: Int

    /// A zero-filled buffer of `count` bytes.
    public init(count: Int) {
        self.count = count
        pointer = SecureArena.shared.allocate(count)
    }

    /// Whether every secret so far is locked in RAM (see `SecureArena.allLocked`).
    public static var memoryLocked: Bool { SecureArena.shared.allLocked }

    /// Fresh random key material from OpenSSL's CSPRNG.
    public static func random(count: Int) throws -> SecureBytes {
        let s = SecureBytes(count: count)
        try s.withUnsafeMutableBytes { (p) throws in try Random.fill(p) }
        return s
    }

    /// Copies `bytes` into new key material. The caller wipes its own copy.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(count: bytes.count)
        if bytes.count > 0 { pointer.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
    }

    /// Copies `bytes` into new key material and wipes the array's storage.
    public convenience init(consuming bytes: inout [UInt8]) {
        self.init(count: bytes.count)
        bytes.withUnsafeMutableBytes { p in
            if p.count > 0 { pointer.copyMemory(from: p.baseAddress!, byteCount: p.count) }
            COpenSSL_cleanse(p.baseAddress, p.count)
        }
    }

    deinit {
        SecureArena.shared.deallocate(pointer, count: count)
    }

    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    public func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E)
        -> R
    {
        try body(UnsafeMutableRawBufferPointer(start: pointer, count: count))
    }

    public var description: String { "SecureBytes(<redacted \(count) bytes>)" }

    public static func == (a: SecureBytes, b: SecureBytes) -> Bool {
        a.count == b.count && CRYPTO_memcmp(a.pointer, b.pointer, a.count) == 0
    }
}

/// Wipes a byte array in place (for intermediates that held secrets).
public func secureWipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { COpenSSL_cleanse($0.baseAddress, $0.count) }
}

/// Wipes raw memory that held secrets (`OPENSSL_cleanse`, which the compiler cannot elide).
public func secureWipe(_ p: UnsafeMutableRawBufferPointer) {
    COpenSSL_cleanse(p.baseAddress, p.count)
}
