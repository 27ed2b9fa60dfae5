import COpenSSL
import Glibc
import Synchronization

/// Random nonces for one thread, drawn from OpenSSL's CSPRNG a page at a time: a nonce is
/// public, and one `RAND_bytes` call per nonce cost more than sealing a 4 KiB block (each call
/// re-keys the DRBG). Never for secrets. A child process after fork(2) draws afresh, so parent
/// and child never share a nonce.
public final class NoncePool {
    static let size = 4096
    private var buffer: UnsafeMutableRawPointer?  // allocated at the first draw
    private var left = 0
    private var generation = -1
    private var drawn = false

    public init() { _ = Self.forkWatch }

    deinit { buffer?.deallocate() }

    /// Fills `out` with random bytes (requests over a quarter of the pool go to `RAND_bytes`).
    public func fill(_ out: UnsafeMutableRawBufferPointer) throws {
        guard out.count > 0 else { return }
        // Large requests, and the first of a context (most seal once: a root, a map, a key
        // slot), straight from RAND_bytes; the pool is for contexts that seal again and again.
        guard out.count <= Self.size / 4, drawn else {
            drawn = true
            return try Random.fill(out)
        }
        let g = forks.load(ordering: .acquiring)
        let buffer = self.buffer ?? UnsafeMutableRawPointer.allocate(byteCount: Self.size, alignment: 16)
        self.buffer = buffer
        if left < out.count || g != generation {
            try Random.fill(UnsafeMutableRawBufferPointer(start: buffer, count: Self.size))
            (left, generation) = (Self.size, g)
        }
        let at = buffer + (Self.size - left)
        out.baseAddress!.copyMemory(from: at, byteCount: out.count)
        at.initializeMemory(as: UInt8.self, repeating: 0, count: out.count)  // handed out once
        left -= out.count
    }

    /// Registers, once per process, the fork handler that moves `forks` on in the child.
    private static let forkWatch: Void = {
        pthread_atfork(nil, nil) { forks.add(1, ordering: .releasing) }
    }()
}

/// How many times this process is a fork(2) child of a process that used a `NoncePool`.
private let forks = Atomic<Int>(0)
