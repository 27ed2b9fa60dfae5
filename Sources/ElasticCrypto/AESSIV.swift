import COpenSSL

/// AES-SIV (RFC 5297): deterministic authenticated encryption, used for file names so that the
/// same name in the same directory always encrypts to the same backing name.
/// Output layout: 16-byte synthetic IV (the tag) ‖ ciphertext. Not thread-safe; one per thread.
public final class AESSIV {
    public static let tagSize = 16
    private let ctx: OpaquePointer
    private let cipher: OpaquePointer
    private let key: SecureBytes

    /// `key` is 32, 48 or 64 bytes (AES-128/192/256-SIV).
    public init(key: SecureBytes) throws {
        let name: String
        switch key.count {
        case 32: name = "AES-128-SIV"
        case 48: name = "AES-192-SIV"
        case 64: name = "AES-256-SIV"
        default: throw CryptoError.invalidLength(expected: 64, got: key.count)
        }
        guard let c = EVP_CIPHER_fetch(nil, name, nil), let x = EVP_CIPHER_CTX_new() else {
            throw CryptoError.drain("AES-SIV setup")
        }
        cipher = c
        ctx = x
        self.key = key
    }

    deinit {
        EVP_CIPHER_CTX_free(ctx)
        EVP_CIPHER_free(cipher)
    }

    /// Encrypts `plaintext` with the associated-data components `ad` (each one a separate S2V input).
    public func seal(_ plaintext: [UInt8], ad: [[UInt8]]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.tagSize + plaintext.count)
        var outl: Int32 = 0
        let ok = key.withUnsafeBytes { k -> Bool in
            guard EVP_EncryptInit_ex2(ctx, cipher, k.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, nil) == 1
            else { return false }
            for a in ad {
                guard
                    a.withUnsafeBufferPointer({ EVP_EncryptUpdate(ctx, nil, &outl, $0.baseAddress, Int32($0.count)) })
                        == 1
                else { return false }
            }
            return out.withUnsafeMutableBufferPointer { o -> Bool in
                plaintext.withUnsafeBufferPointer { p -> Bool in
                    EVP_EncryptUpdate(
                        ctx, o.baseAddress! + Self.tagSize, &outl, p.baseAddress ?? UnsafePointer(o.baseAddress!),
                        Int32(p.count)) == 1
                        && EVP_EncryptFinal_ex(ctx, o.baseAddress! + Self.tagSize, &outl) == 1
                        && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, Int32(Self.tagSize), o.baseAddress!) == 1
                }
            }
        }
        guard ok else { throw CryptoError.drain("AES-SIV seal") }
        return out
    }

    /// Decrypts and verifies; throws `.authenticationFailure` on any mismatch.
    public func open(_ sealed: [UInt8], ad: [[UInt8]]) throws -> [UInt8] {
        guard sealed.count >= Self.tagSize else { throw CryptoError.authenticationFailure }
        // At least one byte, so an empty plaintext still has an output address for OpenSSL.
        let length = sealed.count - Self.tagSize
        var out = [UInt8](repeating: 0, count: max(1, length))
        var outl: Int32 = 0
        var tag = Array(sealed[0..<Self.tagSize])
        let ok = key.withUnsafeBytes { k -> Bool in
            guard EVP_DecryptInit_ex2(ctx, cipher, k.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, nil) == 1,
                EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, Int32(Self.tagSize), &tag) == 1
            else { return false }
            for a in ad {
                guard
                    a.withUnsafeBufferPointer({ EVP_DecryptUpdate(ctx, nil, &outl, $0.baseAddress, Int32($0.count)) })
                        == 1
                else { return false }
            }
            return out.withUnsafeMutableBufferPointer { o -> Bool in
                sealed.withUnsafeBufferPointer { s -> Bool in
                    let dst = o.baseAddress!
                    return EVP_DecryptUpdate(
                        ctx, dst, &outl, s.baseAddress! + Self.tagSize, Int32(s.count - Self.tagSize)) == 1
                        && EVP_DecryptFinal_ex(ctx, dst, &outl) == 1
                }
            }
        }
        guard ok else {
            ERR_clear_error()
            throw CryptoError.authenticationFailure
        }
        out.removeLast(out.count - length)
        return out
    }
}
