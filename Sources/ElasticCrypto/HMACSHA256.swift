import COpenSSL

/// HMAC-SHA-256 keyed once, for many short messages (a directory entry's hash at every create,
/// unlink and listing): OpenSSL's one-shot `HMAC` fetches the digest and builds a context per
/// call, which cost more than the hashing. Not thread-safe: one instance per thread.
public final class HMACSHA256 {
    public static let size = 32

    nonisolated(unsafe) static let mac: OpaquePointer = {
        guard let m = EVP_MAC_fetch(nil, "HMAC", nil) else { fatalError("OpenSSL has no HMAC") }
        return m
    }()

    /// The context: keyed at init, reset to its key before each message.
    private let ctx: OpaquePointer
    /// The key, for an OpenSSL whose reset forgets it (`resetKeepsKey`).
    private let key: SecureBytes

    public init(key: SecureBytes) throws {
        guard let c = EVP_MAC_CTX_new(Self.mac) else { throw CryptoError.drain("EVP_MAC_CTX_new") }
        ctx = c
        self.key = key
        let ok = key.withUnsafeBytes { k in
            "SHA256".withCString { name in
                var params = [
                    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, UnsafeMutablePointer(mutating: name), 0),
                    OSSL_PARAM_construct_end(),
                ]
                return EVP_MAC_init(c, k.baseAddress!.assumingMemoryBound(to: UInt8.self), k.count, &params) == 1
            }
        }
        guard ok else {
            EVP_MAC_CTX_free(c)
            throw CryptoError.drain("EVP_MAC_init")
        }
    }

    deinit { EVP_MAC_CTX_free(ctx) }

    /// Whether `EVP_MAC_init` without a key starts a new message under the key already set.
    /// OpenSSL 3.0.0 to 3.0.2 accept the call but keep the previous message's state
    /// (openssl/openssl#17811): checked once per process against the one-shot `HMAC`, and
    /// where it fails every message passes the key again.
    public static let resetKeepsKey: Bool = {
        var k = [UInt8](repeating: 0x0B, count: 32)
        let key = SecureBytes(consuming: &k)
        guard let probe = try? HMACSHA256(key: key) else { return false }
        let message = Array("elastic: one key, many messages".utf8)
        let oneShot = try? KDF.hmacSHA256(key: key, data: message)
        for _ in 0..<2 {
            guard let m = try? probe.mac(reset: true, { message.withUnsafeBytes($0) }), m == oneShot else {
                return false
            }
        }
        return true
    }()

    /// The MAC of the concatenation of what `body` feeds, into the 32 bytes at `out`; `reset`
    /// false passes the key again (what an OpenSSL whose reset forgets it needs).
    public func mac(
        into out: UnsafeMutableRawPointer, reset: Bool = resetKeepsKey,
        _ body: ((UnsafeRawBufferPointer) -> Void) -> Void
    ) throws {
        var ok =
            reset
            ? EVP_MAC_init(ctx, nil, 0, nil) == 1  // the key set at init
            : key.withUnsafeBytes { k in
                EVP_MAC_init(ctx, k.baseAddress!.assumingMemoryBound(to: UInt8.self), k.count, nil) == 1
            }
        body { part in
            if ok && part.count > 0 {
                ok = EVP_MAC_update(ctx, part.baseAddress!.assumingMemoryBound(to: UInt8.self), part.count) == 1
            }
        }
        var n = 0
        guard ok, EVP_MAC_final(ctx, out.assumingMemoryBound(to: UInt8.self), &n, Self.size) == 1, n == Self.size
        else { throw CryptoError.drain("HMAC-SHA-256") }
    }

    /// The MAC of the concatenation of what `body` feeds.
    public func mac(reset: Bool = resetKeepsKey, _ body: ((UnsafeRawBufferPointer) -> Void) -> Void) throws
        -> [UInt8]
    {
        try [UInt8](unsafeUninitializedCapacity: Self.size) { b, n in
            try mac(into: b.baseAddress!, reset: reset, body)
            n = Self.size
        }
    }
}
