import Synchronization

/// Remembers name encryptions in both directions. AES-SIV is deterministic per directory IV,
/// so an entry never goes stale; the cache only saves the cost of re-keying OpenSSL's SIV
/// context for every lookup, unlink and listing (a large share of metadata-heavy workloads).
/// Bounded: it starts over when full.
final class NameCache: Sendable {
    private struct Tables {
        var forward: [[UInt8]: String] = [:]  // dirIV ‖ plaintext name -> encoded
        var reverse: [[UInt8]: [UInt8]] = [:]  // dirIV ‖ encoded -> plaintext name
    }
    static let limit = 200_000
    private let tables = Mutex(Tables())

    func encoded(dirIV: [UInt8], name: [UInt8]) -> String? {
        let key = dirIV + name
        return tables.withLock { $0.forward[key] }
    }

    func plaintext(dirIV: [UInt8], encoded: String) -> [UInt8]? {
        let key = dirIV + Array(encoded.utf8)
        return tables.withLock { $0.reverse[key] }
    }

    func insert(dirIV: [UInt8], name: [UInt8], encoded: String) {
        let f = dirIV + name, r = dirIV + Array(encoded.utf8)
        tables.withLock { t in
            if t.forward.count >= Self.limit {
                t.forward.removeAll(keepingCapacity: true)
                t.reverse.removeAll(keepingCapacity: true)
            }
            t.forward[f] = encoded
            t.reverse[r] = name
        }
    }
}
