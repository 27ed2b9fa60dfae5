/// Where plaintext bytes live in a backing file.
///
/// A backing file is a `FileHeader` followed by blocks. Each block holds up to 4096 plaintext
/// bytes as nonce (12) ‖ ciphertext ‖ tag (16); every block but the last is full. The plaintext
/// size is the header's record's; the ciphertext must be at least as long as that size needs
/// (anything after it is never read). v1 files (24-byte header, size from the ciphertext
/// length, empty files without a header) are read only by `elastic migrate`: `headerSize`
/// arguments select them.
public enum BlockLayout {
    public static let headerSize: Int64 = Int64(FileHeader.size)
    public static let blockSize: Int64 = 4096
    public static let nonceSize: Int64 = 12
    public static let tagSize: Int64 = 16
    public static let overhead: Int64 = nonceSize + tagSize
    public static let cipherBlockSize: Int64 = blockSize + overhead
    /// Largest plaintext size: keeps every ciphertext offset within `Int64`.
    public static let maxPlaintextSize: Int64 = (Int64.max - headerSize) / cipherBlockSize * blockSize

    /// Ciphertext length of a file holding `plain` plaintext bytes (header included).
    public static func ciphertextSize(plain: Int64, headerSize: Int64 = headerSize) -> Int64 {
        precondition(plain >= 0 && plain <= maxPlaintextSize)
        let full = plain / blockSize
        let rest = plain % blockSize
        return headerSize + full * cipherBlockSize + (rest > 0 ? rest + overhead : 0)
    }

    /// Plaintext length of a v1 backing file of `cipher` bytes, or nil when no plaintext size
    /// maps to it (a truncated header or a last block shorter than its overhead).
    public static func v1PlaintextSize(cipher: Int64) -> Int64? {
        let headerSize = Int64(FileHeader.v1Size)
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

    /// Offset in the backing file where block `index` starts.
    public static func cipherOffset(block index: Int64, headerSize: Int64 = headerSize) -> Int64 {
        headerSize + index * cipherBlockSize
    }

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
