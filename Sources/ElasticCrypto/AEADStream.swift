/// Encryption of a message of any length in segments, each sealed with AES-256-GCM as soon as it
/// is fed and each authenticated before its plaintext is released: the STREAM construction of
/// Hoang, Reyhanitabar, Rogaway and Vizár (2015). A random 32-byte salt gives each stream its own
/// key, HKDF-SHA-256(key, salt, label) (the label is the caller's: ELASTIC uses "elastic/v1/aead-stream"); segment i is sealed under the nonce
/// 0^7 ‖ be32(i) ‖ last, where last is 1 only for the final segment, with the caller's AAD. So
/// segments cannot be reordered, dropped, or the stream cut short without the open failing.
/// Every segment but the last holds exactly `segmentSize` bytes. Not thread-safe.
public final class AEADStream {
    public static let saltSize = 32
    public static let segmentSize = 4096
    public static let tagSize = AESGCM.tagSize

    let gcm: AESGCM
    let aad: [UInt8]
    var counter: UInt32 = 0
    /// Set after the final segment or after a segment failed to open.
    public private(set) var finished = false

    /// A stream under `key` (32 bytes) with `salt` (`saltSize` random bytes, stored in the clear
    /// ahead of the segments) and `aad`, authenticated with every segment.
    public init(key: SecureBytes, salt: [UInt8], label: String, aad: [UInt8]) throws {
        guard key.count == AESGCM.keySize else {
            throw CryptoError.invalidLength(expected: AESGCM.keySize, got: key.count)
        }
        guard salt.count == Self.saltSize else {
            throw CryptoError.invalidLength(expected: Self.saltSize, got: salt.count)
        }
        gcm = try AESGCM(key: try KDF.hkdfSHA256(ikm: key, salt: salt, info: Array(label.utf8), length: AESGCM.keySize))
        self.aad = aad
    }

    func nextNonce(final: Bool, count: Int) throws -> [UInt8] {
        guard !finished else { throw CryptoError.openSSL("stream already finished") }
        guard final ? count <= Self.segmentSize : count == Self.segmentSize else {
            throw CryptoError.invalidLength(expected: Self.segmentSize, got: count)
        }
        guard counter < UInt32.max else { throw CryptoError.inputTooLarge(limit: Int(UInt32.max) * Self.segmentSize) }
        var nonce = [UInt8](repeating: 0, count: AESGCM.nonceSize)
        for i in 0..<4 { nonce[7 + i] = UInt8(truncatingIfNeeded: counter >> UInt32(24 - 8 * i)) }
        nonce[11] = final ? 1 : 0
        counter += 1
        if final { finished = true }
        return nonce
    }

    /// Seals one segment: `input` into `output` (same length) and the 16-byte `tag`.
    public func seal(
        _ input: UnsafeRawBufferPointer, final: Bool, output: UnsafeMutableRawPointer, tag: UnsafeMutableRawPointer
    ) throws {
        let nonce = try nextNonce(final: final, count: input.count)
        try aad.withUnsafeBytes { a in
            try gcm.seal(nonce: nonce, aad: a, input: input.baseAddress, count: input.count, output: output, tag: tag)
        }
    }

    /// Opens one segment; throws `.authenticationFailure` (and ends the stream) if it was altered,
    /// moved, or is not the final segment it claims to be.
    public func open(
        _ input: UnsafeRawBufferPointer, final: Bool, output: UnsafeMutableRawPointer, tag: UnsafeRawPointer
    ) throws {
        let nonce = try nextNonce(final: final, count: input.count)
        do {
            try aad.withUnsafeBytes { a in
                try gcm.open(
                    nonce: nonce, aad: a, input: input.baseAddress, count: input.count, output: output, tag: tag)
            }
        } catch {
            finished = true
            secureWipe(UnsafeMutableRawBufferPointer(start: output, count: input.count))
            throw error
        }
    }
}
