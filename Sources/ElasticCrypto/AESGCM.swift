import COpenSSL

/// AES-256-GCM with a key schedule set up once, in one OpenSSL context that both seals and
/// opens (GCM uses the same key schedule both ways; only the direction is switched per
/// message). One instance per thread: the context is not thread-safe. Per message only the
/// 12-byte nonce, the AAD and the data change.
public final class AESGCM {
    public static let keySize = 32
    public static let nonceSize = 12
    public static let tagSize = 16

    nonisolated(unsafe) static let cipher: OpaquePointer = {
        guard let c = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil) else { fatalError("OpenSSL has no AES-256-GCM") }
        return c
    }()

    /// Nonces for `seal(_:aad:)` and for callers that seal with this context (`sealBlocks`).
    public let nonces = NoncePool()

    /// The one context: the key schedule is its only copy of the key.
    private let ctx: OpaquePointer
    private var enc: OpaquePointer { ctx }
    private var dec: OpaquePointer { ctx }

    /// Sets up a context keyed with `key` (32 bytes).
    public init(key: SecureBytes) throws {
        guard key.count == Self.keySize else { throw CryptoError.invalidLength(expected: Self.keySize, got: key.count) }
        guard let c = EVP_CIPHER_CTX_new() else { throw CryptoError.drain("EVP_CIPHER_CTX_new") }
        ctx = c
        let ok = key.withUnsafeBytes { k -> Bool in
            EVP_CipherInit_ex2(c, Self.cipher, k.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, 1, nil) == 1
        }
        guard ok else {
            EVP_CIPHER_CTX_free(c)
            throw CryptoError.drain("EVP_CipherInit_ex2(AES-256-GCM)")
        }
    }

    deinit {
        EVP_CIPHER_CTX_free(ctx)  // frees (and cleanses) the key schedule
    }

    /// Encrypts `count` bytes from `input` into `output` (may be the same memory) and writes the
    /// 16-byte tag to `tag`.
    public func seal(
        nonce: UnsafeRawPointer, aad: UnsafeRawBufferPointer,
        input: UnsafeRawPointer?, count: Int, output: UnsafeMutableRawPointer?, tag: UnsafeMutableRawPointer
    ) throws {
        var outl: Int32 = 0
        var scratch = (UInt64(0), UInt64(0))
        let finalOK = { () -> Bool in
            withUnsafeMutableBytes(of: &scratch) { s in
                EVP_EncryptFinal_ex(self.enc, s.baseAddress!.assumingMemoryBound(to: UInt8.self), &outl) == 1
            }
        }
        guard EVP_CipherInit_ex2(enc, nil, nil, nonce.assumingMemoryBound(to: UInt8.self), 1, nil) == 1,
            aad.count == 0
                || EVP_EncryptUpdate(
                    enc, nil, &outl, aad.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) == 1,
            count == 0
                || EVP_EncryptUpdate(
                    enc, output!.assumingMemoryBound(to: UInt8.self), &outl, input!.assumingMemoryBound(to: UInt8.self),
                    Int32(count)) == 1,
            finalOK(),
            EVP_CIPHER_CTX_ctrl(enc, EVP_CTRL_GCM_GET_TAG, Int32(Self.tagSize), tag) == 1
        else { throw CryptoError.drain("AES-GCM seal") }
    }

    /// Decrypts and authenticates. Throws `.authenticationFailure` if the tag does not verify;
    /// `output` then holds no usable data.
    public func open(
        nonce: UnsafeRawPointer, aad: UnsafeRawBufferPointer,
        input: UnsafeRawPointer?, count: Int, output: UnsafeMutableRawPointer?, tag: UnsafeRawPointer
    ) throws {
        var outl: Int32 = 0
        var scratch = (UInt64(0), UInt64(0))
        guard EVP_CipherInit_ex2(dec, nil, nil, nonce.assumingMemoryBound(to: UInt8.self), 0, nil) == 1,
            aad.count == 0
                || EVP_DecryptUpdate(
                    dec, nil, &outl, aad.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) == 1,
            count == 0
                || EVP_DecryptUpdate(
                    dec, output!.assumingMemoryBound(to: UInt8.self), &outl, input!.assumingMemoryBound(to: UInt8.self),
                    Int32(count)) == 1,
            EVP_CIPHER_CTX_ctrl(dec, EVP_CTRL_GCM_SET_TAG, Int32(Self.tagSize), UnsafeMutableRawPointer(mutating: tag))
                == 1
        else { throw CryptoError.drain("AES-GCM open") }
        let ok = withUnsafeMutableBytes(of: &scratch) { s in
            EVP_DecryptFinal_ex(dec, s.baseAddress!.assumingMemoryBound(to: UInt8.self), &outl)
        }
        guard ok == 1 else {
            ERR_clear_error()
            throw CryptoError.authenticationFailure
        }
    }

    /// One-shot seal: returns nonce ‖ ciphertext ‖ tag with a fresh random nonce.
    public func seal(_ plaintext: [UInt8], aad: [UInt8]) throws -> [UInt8] {
        try plaintext.withUnsafeBytes { try seal($0, aad: aad) }
    }

    /// One-shot seal of the bytes at `plaintext`: nonce ‖ ciphertext ‖ tag.
    public func seal(_ plaintext: UnsafeRawBufferPointer, aad: [UInt8]) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: Self.nonceSize + plaintext.count + Self.tagSize) { b, n in
            let o = UnsafeMutableRawPointer(b.baseAddress!)
            try nonces.fill(UnsafeMutableRawBufferPointer(start: o, count: Self.nonceSize))
            try aad.withUnsafeBytes { (a) throws in
                try seal(
                    nonce: o, aad: a, input: plaintext.baseAddress, count: plaintext.count,
                    output: o + Self.nonceSize, tag: o + Self.nonceSize + plaintext.count)
            }
            n = b.count
        }
    }

    /// One-shot open of nonce ‖ ciphertext ‖ tag.
    public func open(_ sealed: [UInt8], aad: [UInt8]) throws -> [UInt8] {
        guard sealed.count >= Self.nonceSize + Self.tagSize else { throw CryptoError.authenticationFailure }
        let n = sealed.count - Self.nonceSize - Self.tagSize
        var out = [UInt8](repeating: 0, count: n)
        try sealed.withUnsafeBytes { (s) throws in
            try aad.withUnsafeBytes { (a) throws in
                try out.withUnsafeMutableBytes { (o) throws in
                    try open(
                        nonce: s.baseAddress!, aad: a, input: s.baseAddress! + Self.nonceSize, count: n,
                        output: o.baseAddress, tag: s.baseAddress! + Self.nonceSize + n)
                }
            }
        }
        return out
    }
}
