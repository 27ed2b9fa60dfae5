import COpenSSL

/// Key derivation and hashing through OpenSSL: HKDF-SHA-256 (RFC 5869), scrypt, HMAC and SHA-2.
public enum KDF {
    /// HKDF-SHA-256 extract-and-expand (RFC 5869), one derivation (`HKDFExpander` for many).
    public static func hkdfSHA256(ikm: SecureBytes, salt: [UInt8], info: [UInt8], length: Int) throws -> SecureBytes {
        try ikm.withUnsafeBytes { (k) throws -> SecureBytes in
            try hkdfSHA256(ikm: k, salt: salt, info: info, length: length)
        }
    }

    /// HKDF-SHA-256 over raw input key material.
    public static func hkdfSHA256(ikm: UnsafeRawBufferPointer, salt: [UInt8], info: [UInt8], length: Int) throws
        -> SecureBytes
    {
        let expander = try HKDFExpander(ikm: ikm, salt: salt)
        return try info.withUnsafeBytes { try expander.expand(info: $0, length: length) }
    }

    /// scrypt (RFC 7914). The corresponding C call is `EVP_PBE_scrypt`.
    public static func scrypt(password: [UInt8], salt: [UInt8], logN: UInt8, r: UInt32, p: UInt32, length: Int) throws
        -> SecureBytes
    {
        let out = SecureBytes(count: length)
        let n = UInt64(1) << UInt64(logN)
        let maxmem = n * 128 * UInt64(r) * 2 + (1 << 20)
        let ok = out.withUnsafeMutableBytes { o -> Int32 in
            password.withUnsafeBufferPointer { pw in
                salt.withUnsafeBufferPointer { s in
                    pw.withMemoryRebound(to: CChar.self) { pwc in
                        EVP_PBE_scrypt(
                            pwc.baseAddress, pwc.count, s.baseAddress, s.count, n, UInt64(r), UInt64(p), maxmem,
                            o.baseAddress!.assumingMemoryBound(to: UInt8.self), length)
                    }
                }
            }
        }
        guard ok == 1 else { throw CryptoError.drain("scrypt") }
        return out
    }

    /// HMAC-SHA-256. The corresponding C call is `HMAC`.
    public static func hmacSHA256(key: SecureBytes, data: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var outLen: UInt32 = 0
        let r = key.withUnsafeBytes { k in
            data.withUnsafeBufferPointer { d in
                HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), d.baseAddress, d.count, &out, &outLen)
            }
        }
        guard r != nil, outLen == 32 else { throw CryptoError.drain("HMAC") }
        return out
    }

    /// SHA-256 (`sha256(_:into:)`).
    public static func sha256(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        data.withUnsafeBytes { d in out.withUnsafeMutableBytes { sha256(d, into: $0.baseAddress!) } }
        return out
    }

    /// SHA-256 of `data` into the 32 bytes at `out` (no provider fetch or context allocation:
    /// it runs for every record written).
    public static func sha256(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        COpenSSL_sha256(data.baseAddress, data.count, out.assumingMemoryBound(to: UInt8.self))
    }

    /// Constant-time comparison. The corresponding C call is `CRYPTO_memcmp`.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count
            && a.withUnsafeBytes { x in
                b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) == 0 }
            }
    }
}
