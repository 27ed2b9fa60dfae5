import COpenSSL

/// Raw AES-256 on whole 16-byte blocks (ECB, no padding), keyed once. Not a mode for data: it
/// is the pseudorandom function under fixed-length, two-block CBC-MAC terms (the content
/// digests of ElasticFormat), where every input block is distinct by construction. One
/// instance per thread: the context is not thread-safe.
public final class AESBlockCipher {
    public static let keySize = 32
    public static let blockSize = 16

    nonisolated(unsafe) static let cipher: OpaquePointer = {
        guard let c = EVP_CIPHER_fetch(nil, "AES-256-ECB", nil) else { fatalError("OpenSSL has no AES-256-ECB") }
        return c
    }()

    private let ctx: OpaquePointer

    public init(key: SecureBytes) throws {
        guard key.count == Self.keySize else { throw CryptoError.invalidLength(expected: Self.keySize, got: key.count) }
        guard let c = EVP_CIPHER_CTX_new() else { throw CryptoError.drain("EVP_CIPHER_CTX_new") }
        ctx = c
        let ok = key.withUnsafeBytes { k -> Bool in
            EVP_CipherInit_ex2(c, Self.cipher, k.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, 1, nil) == 1
                && EVP_CIPHER_CTX_set_padding(c, 0) == 1
        }
        guard ok else {
            EVP_CIPHER_CTX_free(c)
            throw CryptoError.drain("EVP_CipherInit_ex2(AES-256-ECB)")
        }
    }

    deinit { EVP_CIPHER_CTX_free(ctx) }

    /// Encrypts `blocks` 16-byte blocks from `input` into `output` (may be the same memory).
    public func encrypt(_ input: UnsafeRawPointer, blocks: Int, output: UnsafeMutableRawPointer) throws {
        guard blocks > 0 else { return }
        var outl: Int32 = 0
        guard
            EVP_EncryptUpdate(
                ctx, output.assumingMemoryBound(to: UInt8.self), &outl, input.assumingMemoryBound(to: UInt8.self),
                Int32(blocks * Self.blockSize)) == 1, Int(outl) == blocks * Self.blockSize
        else { throw CryptoError.drain("AES-256-ECB") }
    }
}
