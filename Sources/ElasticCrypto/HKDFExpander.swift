import COpenSSL
import Glibc

/// HKDF-SHA-256 (RFC 5869) for many derivations from one input key: the extract step and the
/// HMAC key schedule are done once, and each `expand` copies the keyed HMAC state instead of
/// setting up an HKDF context (about 20 µs less per call). Thread-safe: the keyed state is only
/// ever copied.
public final class HKDFExpander: @unchecked Sendable {  // `template` is only duplicated, never changed
    let template: OpaquePointer

    /// Extracts PRK = HMAC-SHA-256(salt, ikm) (an empty salt is HashLen zeros) and keys HMAC with it.
    public init(ikm: SecureBytes, salt: [UInt8] = []) throws {
        template = try ikm.withUnsafeBytes { k in try Self.keyedHMAC(ikm: k, salt: salt) }
    }

    public init(ikm: UnsafeRawBufferPointer, salt: [UInt8] = []) throws {
        template = try Self.keyedHMAC(ikm: ikm, salt: salt)
    }

    /// An HMAC-SHA-256 context keyed with the extracted PRK.
    static func keyedHMAC(ikm: UnsafeRawBufferPointer, salt: [UInt8]) throws -> OpaquePointer {
        let prk = try salt.withUnsafeBytes { s in try hmac(key: s, ikm) }
        guard let mac = EVP_MAC_fetch(nil, "HMAC", nil) else { throw CryptoError.drain("EVP_MAC_fetch(HMAC)") }
        defer { EVP_MAC_free(mac) }
        guard let ctx = EVP_MAC_CTX_new(mac) else { throw CryptoError.drain("EVP_MAC_CTX_new") }
        do { try prk.withUnsafeBytes { p in try initialize(ctx, key: p) } } catch {
            EVP_MAC_CTX_free(ctx)
            throw error
        }
        return ctx
    }

    deinit { EVP_MAC_CTX_free(template) }

    static func initialize(_ ctx: OpaquePointer, key: UnsafeRawBufferPointer) throws {
        let digest = strdup("SHA256")
        defer { free(digest) }
        var params = [OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()]
        guard EVP_MAC_init(ctx, key.baseAddress?.assumingMemoryBound(to: UInt8.self), key.count, &params) == 1 else {
            throw CryptoError.drain("EVP_MAC_init")
        }
    }

    /// One-shot HMAC-SHA-256 (the extract step).
    static func hmac(key: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer) throws -> SecureBytes {
        guard let mac = EVP_MAC_fetch(nil, "HMAC", nil) else { throw CryptoError.drain("EVP_MAC_fetch(HMAC)") }
        defer { EVP_MAC_free(mac) }
        guard let ctx = EVP_MAC_CTX_new(mac) else { throw CryptoError.drain("EVP_MAC_CTX_new") }
        defer { EVP_MAC_CTX_free(ctx) }
        try initialize(ctx, key: key)
        let out = SecureBytes(count: 32)
        var n = 0
        let ok = out.withUnsafeMutableBytes { o in
            EVP_MAC_update(ctx, data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count) == 1
                && EVP_MAC_final(ctx, o.baseAddress!.assumingMemoryBound(to: UInt8.self), &n, 32) == 1
        }
        guard ok, n == 32 else { throw CryptoError.drain("HMAC") }
        return out
    }

    /// OKM = T(1) ‖ T(2) ‖ …, T(i) = HMAC(PRK, T(i−1) ‖ info ‖ i), the first `length` bytes (≤ 8160).
    public func expand(info: UnsafeRawBufferPointer, length: Int) throws -> SecureBytes {
        let out = SecureBytes(count: length)
        try out.withUnsafeMutableBytes { try expand(info: info, into: $0) }
        return out
    }

    /// Expands straight into `output` (its whole length, ≤ 8160 bytes), with no allocation
    /// besides OpenSSL's copy of the HMAC state.
    public func expand(info: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        let length = output.count
        guard length > 0, length <= 255 * 32 else { throw CryptoError.invalidLength(expected: 32, got: length) }
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) {
            (block: UnsafeMutableBufferPointer<UInt8>) throws in
            defer { secureWipe(UnsafeMutableRawBufferPointer(block)) }
            var previous = 0
            var counter: UInt8 = 1
            var at = 0
            while at < length {
                guard let ctx = EVP_MAC_CTX_dup(template) else { throw CryptoError.drain("EVP_MAC_CTX_dup") }
                defer { EVP_MAC_CTX_free(ctx) }
                var n = 0
                guard EVP_MAC_update(ctx, block.baseAddress, previous) == 1,
                    EVP_MAC_update(ctx, info.baseAddress?.assumingMemoryBound(to: UInt8.self), info.count) == 1,
                    EVP_MAC_update(ctx, &counter, 1) == 1,
                    EVP_MAC_final(ctx, block.baseAddress, &n, 32) == 1, n == 32
                else { throw CryptoError.drain("HMAC") }
                let take = min(32, length - at)
                UnsafeMutableRawBufferPointer(rebasing: output[at..<(at + take)]).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(block)[0..<take]))
                at += take
                previous = 32
                counter &+= 1
            }
        }
    }
}
