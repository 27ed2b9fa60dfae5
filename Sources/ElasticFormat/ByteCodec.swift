/// Big-endian writer for the store's binary structures.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }
    mutating func u32(_ v: UInt32) {
        for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) }
    }
    mutating func u64(_ v: UInt64) {
        u32(UInt32(v >> 32))
        u32(UInt32(truncatingIfNeeded: v))
    }
    mutating func raw(_ v: [UInt8]) { bytes += v }
}

/// Big-endian reader; every read past the end throws `corruptConfig`.
struct ByteReader {
    let bytes: [UInt8]
    var at = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var remaining: Int { bytes.count - at }
    private mutating func take(_ n: Int) throws -> Int {
        guard n >= 0, remaining >= n else { throw FormatError.corruptConfig("truncated") }
        defer { at += n }
        return at
    }
    mutating func raw(_ n: Int) throws -> [UInt8] {
        let start = try take(n)
        return Array(bytes[start..<(start + n)])
    }
    /// The next `MemoryLayout<T>.size` bytes as they lie in memory (a digest or tag kept as
    /// `SIMD2<UInt64>`).
    mutating func memory<T>(as: T.Type) throws -> T {
        let start = try take(MemoryLayout<T>.size)
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: start, as: T.self) }
    }
    mutating func u8() throws -> UInt8 { bytes[try take(1)] }
    mutating func u16() throws -> UInt16 {
        let s = try take(2)
        return UInt16(bytes[s]) << 8 | UInt16(bytes[s + 1])
    }
    mutating func u32() throws -> UInt32 {
        let s = try take(4)
        return UInt32(bytes[s]) << 24 | UInt32(bytes[s + 1]) << 16 | UInt32(bytes[s + 2]) << 8 | UInt32(bytes[s + 3])
    }
    mutating func u64() throws -> UInt64 { UInt64(try u32()) << 32 | UInt64(try u32()) }
}
