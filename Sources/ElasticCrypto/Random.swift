import COpenSSL

/// OpenSSL's CSPRNG (`RAND_bytes`).
public enum Random {
    /// Fills `buffer` with random bytes. The corresponding C call is `RAND_bytes`.
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) throws {
        guard buffer.count > 0 else { return }
        guard RAND_bytes(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(buffer.count)) == 1 else {
            throw CryptoError.drain("RAND_bytes")
        }
    }

    /// `count` random bytes.
    public static func bytes(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { (p) throws in try fill(p) }
        return out
    }
}
