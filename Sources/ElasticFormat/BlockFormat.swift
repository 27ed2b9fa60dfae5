import ElasticCrypto

/// A version of the content-block format, named by the `version` field of every file header:
/// which AEAD seals the blocks and what each block is bound to. Readers look a file's format up
/// by its header (`forVersion`), so a new version is one more entry here, and files of an
/// unknown version are refused with a message that names it.
public struct BlockFormat: Sendable, Equatable {
    /// The AEADs blocks can be sealed with.
    public enum AEAD: Sendable, Equatable {
        /// AES-256-GCM with a random 96-bit nonce per block, 128-bit tag (`BlockLayout`).
        case aes256GCM
    }

    public let version: UInt16
    public let aead: AEAD

    /// Version 1: AES-256-GCM, each block bound to its file (16-byte file ID) and its index,
    /// after a 24-byte header without a record (read only by `elastic migrate`).
    public static let v1 = BlockFormat(version: 1, aead: .aes256GCM)
    /// Version 2: the same blocks after a 92-byte header holding the object's sealed record.
    public static let v2 = BlockFormat(version: 2, aead: .aes256GCM)
    /// What new files are written in.
    public static let current = v2
    public static let known = [v1, v2]

    /// The format of a file whose header says `version`.
    public static func forVersion(_ version: UInt16) throws -> BlockFormat {
        guard let f = known.first(where: { $0.version == version }) else {
            throw FormatError.corruptHeader("block format version \(version) is not one this ELASTIC reads")
        }
        return f
    }

    /// The content cipher of this format under the store's content key.
    func contentCipher(_ keys: StoreKeys) throws -> AESGCM {
        switch aead {
        case .aes256GCM: return try AESGCM(key: keys.content)
        }
    }

    /// Runs `body` with the associated data of block `block` of file `fileID`:
    /// v1 and v2: file ID (16) ‖ be64(block index).
    @inline(__always)
    func withAAD<R>(fileID: UnsafeRawBufferPointer, block: Int64, _ body: (UnsafeRawBufferPointer) throws -> R)
        rethrows -> R
    {
        var aad: (UInt64, UInt64, UInt64) = (0, 0, UInt64(bitPattern: block).bigEndian)
        return try withUnsafeMutableBytes(of: &aad) { a in
            a.copyMemory(from: UnsafeRawBufferPointer(rebasing: fileID[0..<16]))
            return try body(UnsafeRawBufferPointer(a))
        }
    }
}
