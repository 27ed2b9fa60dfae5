import ElasticCrypto
import Synchronization

/// The session number records are sealed with, shared by every worker of a mount.
public final class SessionClock: Sendable {
    let value: Atomic<UInt64>
    public init(_ session: UInt64) { value = Atomic(session) }
    public var current: UInt64 { value.load(ordering: .acquiring) }
    /// Moves to `next` (a checkpoint ended the sub-session before it).
    public func advance(to next: UInt64) { value.store(next, ordering: .releasing) }
}

/// Per-thread crypto state for one store: keyed OpenSSL contexts for content (the AEAD of the
/// block format, `BlockFormat`), names and metadata. Not thread-safe: the FUSE layer keeps one
/// per worker thread.
public final class CryptoWorker {
    public let keys: StoreKeys
    /// The block format content is sealed and opened in.
    public let format: BlockFormat
    let content: AESGCM
    let names: AESSIV
    let metadata: AESGCM
    /// The pseudorandom function of content digests (`BlockTags`).
    let digestPRF: AESBlockCipher
    /// Keyed hashes of directory entries (`EntryDigest`) and of extended attributes (`XattrSet`).
    let entryMAC: HMACSHA256
    let xattrMAC: HMACSHA256
    /// Scratch for the nonces of one request (one RAND_bytes call per request).
    private var nonces: [UInt8] = []

    /// Where the session this worker's records and entry sets are sealed in comes from
    /// (`StoreRoot.Sessions`; it moves at every checkpoint of a mount).
    public let clock: SessionClock
    /// The session sealed into records now (0 for a worker that only reads).
    public var session: UInt64 { clock.current }

    public convenience init(keys: StoreKeys, format: BlockFormat = .current, session: UInt64 = 0) throws {
        try self.init(keys: keys, format: format, clock: SessionClock(session))
    }

    public init(keys: StoreKeys, format: BlockFormat = .current, clock: SessionClock) throws {
        self.keys = keys
        self.clock = clock
        self.format = format
        content = try format.contentCipher(keys)
        names = try AESSIV(key: keys.names)
        metadata = try AESGCM(key: keys.metadata)
        digestPRF = try AESBlockCipher(key: keys.contentDigest)
        entryMAC = try HMACSHA256(key: keys.entries)
        xattrMAC = try HMACSHA256(key: keys.xattrs)
    }

    // MARK: Content blocks

    /// Encrypts `count` plaintext bytes that start at block `first` (block-aligned) into
    /// consecutive cipher blocks at `output`. Returns the number of ciphertext bytes written.
    public func sealBlocks(
        fileID: UnsafeRawBufferPointer, first: Int64, plaintext: UnsafeRawPointer, count: Int,
        output: UnsafeMutableRawPointer
    ) throws -> Int {
        let bs = Int(BlockLayout.blockSize), ns = Int(BlockLayout.nonceSize), ov = Int(BlockLayout.overhead)
        let nblocks = (count + bs - 1) / bs
        if nonces.count < nblocks * ns { nonces = [UInt8](repeating: 0, count: max(nblocks * ns, 256 * ns)) }
        try nonces.withUnsafeMutableBytes { n in
            try content.nonces.fill(UnsafeMutableRawBufferPointer(rebasing: n[0..<(nblocks * ns)]))
            var out = 0
            for i in 0..<nblocks {
                let len = min(bs, count - i * bs)
                let dst = output + out
                dst.copyMemory(from: n.baseAddress! + i * ns, byteCount: ns)
                try format.withAAD(fileID: fileID, block: first + Int64(i)) { aad in
                    try content.seal(
                        nonce: dst, aad: aad, input: plaintext + i * bs, count: len, output: dst + ns,
                        tag: dst + ns + len)
                }
                out += len + ov
            }
        }
        return (nblocks - 1) * (bs + ov) + (count - (nblocks - 1) * bs) + ov
    }

    /// Decrypts one cipher block of `length` bytes (overhead included) into `output`; returns the
    /// plaintext length. In a file that may hold holes (`holes`, the record's `sparse`), an
    /// all-zero block is a hole and reads as zeros; in any other file it fails.
    public func openBlock(
        fileID: UnsafeRawBufferPointer, index: Int64, cipher: UnsafeRawPointer, length: Int,
        output: UnsafeMutableRawPointer, holes: Bool
    ) throws -> Int {
        let ns = Int(BlockLayout.nonceSize), ov = Int(BlockLayout.overhead)
        guard length > ov else { throw FormatError.corruptLength(Int64(length)) }
        let plainLen = length - ov
        do {
            try format.withAAD(fileID: fileID, block: index) { aad in
                try content.open(
                    nonce: cipher, aad: aad, input: cipher + ns, count: plainLen, output: output,
                    tag: cipher + ns + plainLen)
            }
        } catch CryptoError.authenticationFailure {
            if holes && Self.isAllZero(cipher, length) {
                output.initializeMemory(as: UInt8.self, repeating: 0, count: plainLen)
                return plainLen
            }
            throw FormatError.authenticationFailed(block: index)
        }
        return plainLen
    }

    /// Whether the `n` bytes at `p` are all zero (a hole's cipher block).
    public static func isAllZero(_ p: UnsafeRawPointer, _ n: Int) -> Bool {
        var acc: UInt8 = 0
        let b = p.assumingMemoryBound(to: UInt8.self)
        for i in 0..<n { acc |= b[i] }
        return acc == 0
    }

    // MARK: Names

    /// Encrypts one path component with AES-256-SIV, bound to the directory's IV, and encodes it
    /// as unpadded base64url. The result may exceed 255 bytes; see `LongName`.
    public func encryptName(_ bytes: [UInt8], dirIV: [UInt8]) throws -> String {
        guard !bytes.isEmpty, bytes.count <= 255, !bytes.contains(0), !bytes.contains(UInt8(ascii: "/")) else {
            throw FormatError.nameTooLong
        }
        return Base64URL.encode(try names.seal(bytes, ad: [dirIV]))
    }

    /// Decrypts an encoded name; throws `.invalidName` for anything that is not one of ours.
    public func decryptName(_ encoded: String, dirIV: [UInt8]) throws -> [UInt8] {
        guard let raw = Base64URL.decode(encoded), raw.count > AESSIV.tagSize else {
            throw FormatError.invalidName(encoded)
        }
        do {
            let plain = try names.open(raw, ad: [dirIV])
            guard !plain.isEmpty, plain.count <= 255, !plain.contains(0), !plain.contains(UInt8(ascii: "/")) else {
                throw FormatError.invalidName(encoded)
            }
            return plain
        } catch is CryptoError {
            throw FormatError.invalidName(encoded)
        }
    }

    // MARK: Metadata (symlink targets, xattr values)

    /// Seals `plain` under the metadata key; `context` is authenticated (what the value is for).
    public func sealMetadata(_ plain: [UInt8], context: [UInt8]) throws -> [UInt8] {
        try metadata.seal(plain, aad: context)
    }

    public func sealMetadata(_ plain: UnsafeRawBufferPointer, context: [UInt8]) throws -> [UInt8] {
        try metadata.seal(plain, aad: context)
    }

    public func openMetadata(_ sealed: [UInt8], context: [UInt8]) throws -> [UInt8] {
        do { return try metadata.open(sealed, aad: context) } catch is CryptoError {
            throw FormatError.corruptMetadata(String(decoding: context, as: UTF8.self))
        }
    }
}
