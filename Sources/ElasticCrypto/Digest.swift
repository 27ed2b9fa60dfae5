import COpenSSL

/// A streaming SHA-2 digest (`EVP_DigestInit_ex2` / `Update` / `Final_ex`). Not thread-safe.
public final class Digest {
    public enum Algorithm: Sendable { case sha256, sha384, sha512 }
    let ctx: OpaquePointer
    public let size: Int

    public init(_ algorithm: Algorithm) throws {
        guard let ctx = EVP_MD_CTX_new() else { throw CryptoError.drain("EVP_MD_CTX_new") }
        self.ctx = ctx
        size = Int(EVP_MD_get_size(Self.md(algorithm)))
        guard EVP_DigestInit_ex2(ctx, Self.md(algorithm), nil) == 1 else {
            throw CryptoError.drain("EVP_DigestInit_ex2")
        }
    }

    static func md(_ algorithm: Algorithm) -> OpaquePointer? {
        switch algorithm {
        case .sha256: return EVP_sha256()
        case .sha384: return EVP_sha384()
        case .sha512: return EVP_sha512()
        }
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ data: UnsafeRawBufferPointer) throws {
        guard data.count == 0 || EVP_DigestUpdate(ctx, data.baseAddress, data.count) == 1 else {
            throw CryptoError.drain("EVP_DigestUpdate")
        }
    }

    public func finish() throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        var n: UInt32 = 0
        guard EVP_DigestFinal_ex(ctx, &out, &n) == 1 else { throw CryptoError.drain("EVP_DigestFinal_ex") }
        return Array(out[0..<Int(n)])
    }
}
