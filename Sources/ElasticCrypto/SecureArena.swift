import COpenSSL
import Glibc
import Synchronization

/// The memory every `SecureBytes` lives in: pages of its own (mmap), locked in RAM (mlock) and
/// left out of core dumps (MADV_DONTDUMP) once, when they are mapped, and never unlocked or
/// returned, so freeing one secret can never unlock a page another secret shares. Secrets are
/// handed out in power-of-two slots of 32 bytes to 16 KiB (larger ones get pages of their own)
/// and wiped with `OPENSSL_cleanse` when freed.
final class SecureArena: @unchecked Sendable {  // free lists and counters only under `lock`
    static let shared = SecureArena()

    static let chunkSize = 64 << 10
    static let minSlot = 32
    static let maxSlot = 16 << 10
    static let classes = 10  // 32 << 0 ... 32 << 9 = 16 KiB

    private let lock = Mutex<Void>(())
    private var free: [[UnsafeMutableRawPointer]] = Array(repeating: [], count: SecureArena.classes)
    private var mappedBytes = 0
    private var lockFailures = 0

    /// Whether every page handed out so far is locked in RAM (mlock can fail for an unprivileged
    /// user over RLIMIT_MEMLOCK; the memory is still kept out of core dumps).
    var allLocked: Bool { lock.withLock { _ in lockFailures == 0 } }
    /// Bytes of locked pages mapped (for tests).
    var mapped: Int { lock.withLock { _ in mappedBytes } }

    static func sizeClass(_ count: Int) -> Int? {
        guard count <= maxSlot else { return nil }
        var c = 0, size = minSlot
        while size < count {
            size <<= 1
            c += 1
        }
        return c
    }

    /// Maps `bytes` (a multiple of the page size) of locked, undumpable memory.
    private func mapPages(_ bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED
        else {
            fatalError("SecureArena: cannot map \(bytes) bytes for key material")
        }
        _ = madvise(p, bytes, MADV_DONTDUMP)
        _ = madvise(p, bytes, MADV_WIPEONFORK)
        if mlock(p, bytes) != 0 { lockFailures += 1 }
        mappedBytes += bytes
        return p
    }

    /// Zeroed memory for `count` bytes of key material.
    func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        let size = max(count, 1)
        return lock.withLock { _ -> UnsafeMutableRawPointer in
            guard let c = Self.sizeClass(size) else {
                let pages = (size + 4095) & ~4095
                return mapPages(pages)
            }
            if free[c].isEmpty {
                let slot = Self.minSlot << c
                let chunk = mapPages(Self.chunkSize)
                for i in stride(from: Self.chunkSize - slot, through: 0, by: -slot) { free[c].append(chunk + i) }
            }
            return free[c].removeLast()
        }
    }

    /// Wipes and returns the memory `allocate(count)` gave.
    func deallocate(_ p: UnsafeMutableRawPointer, count: Int) {
        let size = max(count, 1)
        guard let c = Self.sizeClass(size) else {
            let pages = (size + 4095) & ~4095
            COpenSSL_cleanse(p, pages)
            _ = munlock(p, pages)  // its own pages: no neighbour shares them
            _ = munmap(p, pages)
            lock.withLock { _ in mappedBytes -= pages }
            return
        }
        COpenSSL_cleanse(p, Self.minSlot << c)
        lock.withLock { _ in free[c].append(p) }
    }
}
