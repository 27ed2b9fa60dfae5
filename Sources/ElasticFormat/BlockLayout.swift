/// Where plaintext bytes live in a backing file.
///
/// A backing file is empty (plaintext size 0), or a `FileHeader` followed by blocks. Each block
/// holds up to 4096 plaintext bytes as nonce (12) ‖ ciphertext ‖ tag (16); every block but the
/// last is full. So the plaintext size follows from the ciphertext size alone.
public enum BlockLayout {
    public static let headerSize: Int64 = Int64(FileHeader.size)
    public static let blockSize: Int64 = 4096
    public static let nonceSize: Int64 = 12
    public static let tagSize: Int64 = 16
    public static let overhead: Int64 = nonceSize + tagSize
    public static let cipherBlockSize: Int64 = blockSize + overhead
    /// Largest plaintext size: keeps every ciphertext offset within `Int64`.
    public static let maxPlaintextSize: Int64 = (Int64.max - headerSize) / cipherBlockSize * blockSize

    /// Ciphertext length of a file holding `plain` plaintext bytes.
    public static func ciphertextSize(plain: Int64) -> Int64 {
        precondition(plain >= 0 && plain <= maxPlaintextSize)
        if plain == 0 { return 0 }
        let full = plain / blockSize
        let rest = plain % blockSize
        return headerSize + full * cipherBlockSize + (rest > 0 ? rest + overhead : 0)
    }

    /// Plaintext length of a backing file of `cipher` bytes, or nil when no plaintext size maps
    /// to it (a truncated header or a last block shorter than its overhead).
    public static func plaintextSize(cipher: Int64) -> Int64? {
        if cipher == 0 { return 0 }
        if cipher < headerSize { return nil }
        if cipher == headerSize { return 0 }
        let body = cipher - headerSize
        let full = body / cipherBlockSize
        let rest = body % cipherBlockSize
        if rest == 0 { return full * blockSize }
        if rest <= overhead { return nil }
        return full * blockSize + rest - overhead
    }

    /// Plaintext size to report in stat: corrupt lengths round down to the last whole block
    /// so that tools see a sane size and the read of the broken tail fails with EIO.
    public static func reportedSize(cipher: Int64) -> Int64 {
        if let p = plaintextSize(cipher: cipher) { return p }
        if cipher < headerSize { return 0 }
        return (cipher - headerSize) / cipherBlockSize * blockSize
    }

    /// Offset in the backing file where block `index` starts.
    public static func cipherOffset(block index: Int64) -> Int64 { headerSize + index * cipherBlockSize }

    /// Index of the block holding plaintext offset `offset`.
    public static func blockIndex(_ offset: Int64) -> Int64 { offset / blockSize }

    /// The blocks `[first, last]` touched by `length > 0` bytes at `offset`.
    public static func blocks(offset: Int64, length: Int64) -> ClosedRange<Int64> {
        precondition(length > 0)
        return blockIndex(offset)...blockIndex(offset + length - 1)
    }

    /// Plaintext bytes held by block `index` of a file of `plain` bytes (0 if past the end).
    public static func plaintextLength(block index: Int64, fileSize plain: Int64) -> Int64 {
        let start = index * blockSize
        if start >= plain { return 0 }
        return min(blockSize, plain - start)
    }
}
