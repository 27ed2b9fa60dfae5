import ElasticCrypto
import ElasticSystem
import Glibc

/// A sealed copy of a large file's block tags, kept after its last block (never read as
/// data): opening the file then reads one contiguous array instead of touching every page of
/// the backing file to collect the tags. Only a cache: it is sealed under the metadata key with
/// associated data `"elastic/v2/tag-snapshot" ‖ file ID ‖ be64(size) ‖ content digest`, so it
/// opens only for the exact version of the file the record names; a stale, cut or edited one
/// (every append or truncate drops it; an overwrite leaves it stale) is ignored and the tags
/// are read from the blocks. Written when the file's last handle closes.
///
/// Layout at `offset(size:)`: "ELTS" ‖ u8 version = 1 ‖ be64 block count ‖ nonce (12) ‖
/// ciphertext (16 × blocks: every tag in order, holes zero) ‖ tag (16).
public enum TagSnapshot {
    static let magic: [UInt8] = Array("ELTS".utf8)
    static let headerSize = 13
    /// Files of fewer blocks read their tags from the blocks (cheap enough).
    public static let minimumBlocks: Int64 = 8192
    /// Files of more blocks (above 4 GiB) have no snapshot (it is handled whole in memory:
    /// 16 MiB at most, a few copies of it while it is sealed or opened).
    public static let maximumBlocks: Int64 = 1 << 20

    /// Where the snapshot of a file of `size` plaintext bytes starts: the first page after its
    /// last block.
    public static func offset(size: Int64) -> Int64 { (BlockLayout.ciphertextSize(plain: size) + 4095) / 4096 * 4096 }

    public static func applies(size: Int64) -> Bool {
        let blocks = (size + BlockLayout.blockSize - 1) / BlockLayout.blockSize
        return blocks >= minimumBlocks && blocks <= maximumBlocks
    }

    static func aad(fileID: [UInt8], size: Int64, digest: BlockTag) -> [UInt8] {
        Array("elastic/v2/tag-snapshot".utf8) + fileID
            + withUnsafeBytes(of: UInt64(bitPattern: size).bigEndian) {
                Array($0)
            } + withUnsafeBytes(of: digest) { Array($0) }
    }

    /// Writes the snapshot of `tags` (the tags of the file `fileID` of `size` bytes) into its
    /// backing file `fd` (open for writing).
    public static func write(_ tags: BlockTags, fd: Int32, fileID: [UInt8], size: Int64, with crypto: CryptoWorker)
        throws
    {
        let blocks = (size + BlockLayout.blockSize - 1) / BlockLayout.blockSize
        let plain = tags.flat(blocks: blocks).withUnsafeBytes { Array($0) }
        let sealed = try crypto.sealMetadata(plain, context: aad(fileID: fileID, size: size, digest: tags.digest))
        let head = magic + [1] + withUnsafeBytes(of: UInt64(blocks).bigEndian) { Array($0) }
        try Syscall.pwrite(fd, head + sealed, at: offset(size: size))
        tags.changedSinceSnapshot = false
    }

    /// The tags of the file `fileID` of `size` bytes whose record names `digest`, from its
    /// snapshot in `fd`; nil when there is none for this version.
    public static func read(fd: Int32, fileID: [UInt8], size: Int64, digest: BlockTag, with crypto: CryptoWorker)
        -> BlockTags?
    {
        guard applies(size: size) else { return nil }
        let blocks = (size + BlockLayout.blockSize - 1) / BlockLayout.blockSize
        let length = headerSize + 12 + Int(blocks) * 16 + 16
        guard let bytes = try? Syscall.preadBytes(fd, count: length, at: offset(size: size)), bytes.count == length,
            Array(bytes[0..<4]) == magic, bytes[4] == 1,
            bytes[5..<13].reduce(UInt64(0), { $0 << 8 | UInt64($1) }) == UInt64(blocks),
            let plain = try? crypto.openMetadata(
                Array(bytes[headerSize...]), context: aad(fileID: fileID, size: size, digest: digest)),
            plain.count == Int(blocks) * 16
        else { return nil }
        let tags = plain.withUnsafeBytes { raw in
            (0..<Int(blocks)).map { raw.loadUnaligned(fromByteOffset: $0 * 16, as: BlockTag.self) }
        }
        return tags.withUnsafeBufferPointer { BlockTags(flat: $0, digest: digest) }
    }
}
